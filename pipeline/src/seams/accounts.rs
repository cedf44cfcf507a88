//! The organization's account list.

use async_trait::async_trait;

use crate::model::error::SeamError;

/// The member accounts of the organization (AWS Organizations `ListAccounts`).
#[async_trait]
pub trait AccountDirectory: Send + Sync {
    /// The ids of the organization's ACTIVE accounts, every page.
    async fn active_accounts(&self) -> Result<Vec<String>, SeamError>;
}
