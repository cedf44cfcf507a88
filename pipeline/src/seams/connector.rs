//! Access to the buckets where CloudTrail delivers files.

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::error::SeamError;
use crate::seams::TrailSource;

/// Opens sources: a session as the reading account (an assumed member role,
/// or static source credentials), a client for the bucket, with the request
/// rate limit and the retries. Sessions are cached for the connector's life
/// (one run): an account is reached once, however many buckets it reads.
#[async_trait]
pub trait SourceConnector: Send + Sync {
    /// `bucket` read as `reader_account_id`; an error when that account's
    /// session cannot be opened (the account is out of reach).
    async fn source(
        &self,
        reader_account_id: &str,
        bucket: &str,
    ) -> Result<Arc<dyn TrailSource>, SeamError>;
}
