//! Where new findings are published.

use async_trait::async_trait;

use crate::model::error::SeamError;

/// Where new findings are published (SNS).
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn publish(&self, subject: &str, message: &str) -> Result<(), SeamError>;
}
