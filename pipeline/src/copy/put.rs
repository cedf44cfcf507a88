//! What an archived copy carries: the metadata names, the Object Lock date
//! and the PUT spec (SSE-KMS key, lock, provenance and preserved metadata).

use chrono::{DateTime, Duration, Utc};

use crate::cloudtrail::gzip::InflateError;
use crate::model::object::SourceRef;
use crate::seams::{ObjectMeta, PutSpec};

use std::collections::BTreeMap;

use super::{content_error_name, CopySettings};

/// Metadata names written on every archived object (S3 user metadata, sent
/// as `x-amz-meta-<name>`). The archive key already carries the source
/// account, bucket and key; these carry what the key cannot.
pub mod meta {
    pub const SOURCE_ACCOUNT: &str = "tv-source-account";
    pub const SOURCE_ETAG: &str = "tv-source-etag";
    pub const SOURCE_VERSION: &str = "tv-source-version";
    pub const CONTENT_SHA256: &str = "tv-content-sha256";
    pub const CONTENT_ERROR: &str = "tv-content-error";
    pub const COPIED_AT: &str = "tv-copied-at";
    /// On a quarantined copy only (see
    /// [`crate::model::object::QUARANTINE_FOLDER`]): the source key, which
    /// its archive key cannot carry, percent-encoded so any key is a legal
    /// header value.
    pub const SOURCE_KEY: &str = "tv-source-key";
    /// CloudTrail's own digest metadata, preserved verbatim.
    pub const PRESERVED: [&str; 3] = [
        "signature",
        "signature-algorithm",
        "backfill-generation-timestamp",
    ];
}

/// The Object Lock date for a copy made now: the retention period counted
/// from now, which is never earlier than the file's own date plus the period.
pub fn retain_until(now: DateTime<Utc>, retention_days: u32) -> DateTime<Utc> {
    let until = now + Duration::days(i64::from(retention_days));
    // Whole seconds: S3 stores retain-until with second precision.
    DateTime::from_timestamp(until.timestamp(), 0).unwrap_or(until)
}

pub(super) fn header_safe(value: &str, max_len: usize) -> Option<String> {
    let safe = !value.is_empty()
        && value.len() <= max_len
        && value.bytes().all(|b| (0x20..0x7f).contains(&b));
    safe.then(|| value.to_string())
}

/// Builds the PUT for `source`; `content` is known for single PUTs only (a
/// multipart upload must declare its metadata before the last byte is read).
pub fn put_spec(
    settings: &CopySettings,
    source: &SourceRef,
    source_meta: &ObjectMeta,
    content: Option<&Result<[u8; 32], InflateError>>,
    now: DateTime<Utc>,
) -> PutSpec {
    let mut metadata = BTreeMap::new();
    metadata.insert(meta::SOURCE_ACCOUNT.to_string(), source.account_id.clone());
    if let Some(etag) = header_safe(&source_meta.etag, 128) {
        metadata.insert(meta::SOURCE_ETAG.to_string(), etag);
    }
    if let Some(version) = source_meta
        .version_id
        .as_deref()
        .and_then(|v| header_safe(v, 1024))
    {
        metadata.insert(meta::SOURCE_VERSION.to_string(), version);
    }
    match content {
        Some(Ok(sha256)) => {
            metadata.insert(meta::CONTENT_SHA256.to_string(), hex::encode(sha256));
        }
        Some(Err(error)) => {
            metadata.insert(
                meta::CONTENT_ERROR.to_string(),
                content_error_name(error).to_string(),
            );
        }
        None => {}
    }
    metadata.insert(meta::COPIED_AT.to_string(), now.timestamp().to_string());
    if source.quarantine(&settings.archive_prefix).is_some() {
        metadata.insert(
            meta::SOURCE_KEY.to_string(),
            crate::model::text::percent_encode(&source.key),
        );
    }
    for name in meta::PRESERVED {
        // Attacker-controlled: only printable ASCII of sane length survives;
        // anything else is dropped and the digest then fails validation.
        if let Some(value) = source_meta
            .metadata
            .get(name)
            .and_then(|v| header_safe(v, 1024))
        {
            metadata.insert(name.to_string(), value);
        }
    }
    PutSpec {
        key: source.archive_key(&settings.archive_prefix),
        kms_key_id: settings.kms_key_id.clone(),
        lock_mode: settings.lock_mode,
        retain_until: retain_until(now, settings.retention_days),
        metadata,
        content_type: source_meta
            .content_type
            .as_deref()
            .and_then(|v| header_safe(v, 256)),
        content_encoding: source_meta
            .content_encoding
            .as_deref()
            .and_then(|v| header_safe(v, 64)),
    }
}

/// `true` when the configured key (id or ARN) names the key S3 reported.
pub fn same_kms_key(configured: &str, reported: &str) -> bool {
    configured == reported
        || reported.ends_with(&format!("key/{configured}"))
        || configured.ends_with(&format!("key/{reported}"))
}
