//! CloudTrail's public keys: what validation asks for, and where they come from.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::cloudtrail::public_keys::PublicKey;
use crate::model::error::SeamError;

/// Public keys by (delivering region, fingerprint).
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// The key with `fingerprint` for digests delivered in `region`. `around`
    /// is the digest's end time (for a backfill digest not found that way, a
    /// second call passes its `backfill-generation-timestamp`); on a cache
    /// miss an implementation calling `ListPublicKeys` should ask for
    /// `[around − 1h, around + 2h]` (docs/cloudtrail-format.md §5.3) and cache the answer.
    async fn find(
        &self,
        region: &str,
        fingerprint: &str,
        around: DateTime<Utc>,
    ) -> Result<Option<PublicKey>, SeamError>;
}

/// One key as CloudTrail `ListPublicKeys` returns it: DER bytes (already
/// base64-decoded), the API's fingerprint and the validity window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPublicKey {
    pub der: Vec<u8>,
    pub fingerprint: Option<String>,
    pub validity_start: Option<DateTime<Utc>>,
    pub validity_end: Option<DateTime<Utc>>,
}

/// CloudTrail `ListPublicKeys`, called by the audit identity (a member
/// cannot forge its answer).
#[async_trait]
pub trait PublicKeyDirectory: Send + Sync {
    /// Every key that signed digests in `[start, end]` in `region`.
    async fn list_public_keys(
        &self,
        region: &str,
        window: (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<Vec<ListedPublicKey>, SeamError>;
}
