//! The narrow traits through which the stages reach the world. `infra`
//! implements them with the AWS SDK and sled; [`crate::memory`] implements them
//! in memory so every stage is testable without a network.

use std::collections::BTreeMap;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::error::SeamError;
use crate::findings::Finding;

/// A body arriving in chunks. Chunks are dropped as soon as they are consumed,
/// which is what bounds memory per in-flight object.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, SeamError>> + Send>>;

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    /// As S3 returns it, quotes stripped.
    pub etag: String,
}

/// What a GET returns besides the body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub etag: String,
    pub version_id: Option<String>,
    /// User metadata without the `x-amz-meta-` prefix, keys lowercase.
    pub metadata: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
}

pub struct SourceObject {
    pub meta: ObjectMeta,
    pub body: ByteStream,
}

/// A bucket where CloudTrail delivers files, read with one member session.
#[async_trait]
pub trait TrailSource: Send + Sync {
    fn bucket(&self) -> &str;
    /// Every object under `prefix`, all pages.
    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, SeamError>;
    /// The "folders" directly under `prefix` (delimiter `/`), each ending in `/`.
    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, SeamError>;
    async fn get(&self, key: &str) -> Result<SourceObject, SeamError>;
    /// Deletes the current version of `key` (S3 `DeleteObject` without a
    /// version id: a versioned bucket keeps the data behind a delete marker).
    /// Deleting a key that is already gone succeeds. Only source expiry calls
    /// this, and only with the member role's explicit delete permission.
    async fn delete(&self, key: &str) -> Result<(), SeamError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockMode {
    Compliance,
    Governance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }
}

/// Everything the archive needs to store one verified copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutSpec {
    pub key: String,
    pub kms_key_id: String,
    pub lock_mode: LockMode,
    pub retain_until: DateTime<Utc>,
    /// Provenance and preserved CloudTrail metadata (without `x-amz-meta-`).
    pub metadata: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
}

/// What HEAD tells about an archived version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivedHead {
    pub version_id: Option<String>,
    pub size: u64,
    /// `x-amz-checksum-sha256` as S3 returns it: base64, with `-N` for multipart.
    pub checksum_sha256: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub lock_mode: Option<LockMode>,
    pub retain_until: Option<DateTime<Utc>>,
    pub metadata: BTreeMap<String, String>,
}

/// One version in the archive, from a versions listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedVersion {
    pub key: String,
    pub version_id: String,
    pub is_latest: bool,
    pub size: u64,
}

/// Bucket-level protection as read from the archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketProtection {
    pub versioning_enabled: bool,
    pub default_retention: Option<(LockMode, u32)>,
    pub default_sse_kms_key: Option<String>,
    pub has_bucket_policy: bool,
    /// The enabled lifecycle rules, summarised; `None` without a lifecycle configuration.
    pub lifecycle: Option<Lifecycle>,
}

/// What the archive's lifecycle rules do, as far as retention cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// Shortest "abort incomplete multipart uploads after N days" of any enabled rule.
    pub abort_incomplete_multipart_days: Option<i32>,
    /// Shortest noncurrent-version expiration of any enabled rule.
    pub noncurrent_expiration_days: Option<i32>,
    /// Shortest current-version expiration of any enabled rule.
    pub expiration_days: Option<i32>,
}

/// A finished part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    pub part_number: i32,
    pub etag: String,
    pub sha256_base64: String,
}

/// The locked archive bucket, written with the audit identity.
#[async_trait]
pub trait Archive: Send + Sync {
    fn bucket(&self) -> &str;
    /// Single PUT with `x-amz-checksum-sha256` = `sha256`; returns the version id.
    async fn put(
        &self,
        spec: &PutSpec,
        body: Bytes,
        sha256: [u8; 32],
    ) -> Result<Option<String>, SeamError>;
    async fn create_multipart(&self, spec: &PutSpec) -> Result<String, SeamError>;
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
        sha256: [u8; 32],
    ) -> Result<UploadedPart, SeamError>;
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<Option<String>, SeamError>;
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), SeamError>;
    /// HEAD with checksums enabled; `Ok(None)` when the key (or version) is absent.
    async fn head(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ArchivedHead>, SeamError>;
    async fn get(&self, key: &str, version_id: Option<&str>) -> Result<SourceObject, SeamError>;
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ArchivedVersion>, SeamError>;
    async fn put_retention(
        &self,
        key: &str,
        version_id: &str,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<(), SeamError>;
    async fn protection(&self) -> Result<BucketProtection, SeamError>;
}

/// Where a source object came from: the account whose role read it, the
/// bucket and the key. Archive keys and store keys derive from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceRef {
    pub account_id: String,
    pub bucket: String,
    pub key: String,
}

impl SourceRef {
    /// `<prefix>/<source account>/<source bucket>/<source key>`.
    pub fn archive_key(&self, archive_prefix: &str) -> String {
        if archive_prefix.is_empty() {
            format!("{}/{}/{}", self.account_id, self.bucket, self.key)
        } else {
            format!(
                "{}/{}/{}/{}",
                archive_prefix, self.account_id, self.bucket, self.key
            )
        }
    }

    /// The inverse of [`SourceRef::archive_key`]; `None` if the key is not
    /// under the prefix or has too few segments.
    pub fn from_archive_key(archive_prefix: &str, archive_key: &str) -> Option<SourceRef> {
        let rest = if archive_prefix.is_empty() {
            archive_key
        } else {
            archive_key
                .strip_prefix(archive_prefix)?
                .strip_prefix('/')?
        };
        let (account_id, rest) = rest.split_once('/')?;
        let (bucket, key) = rest.split_once('/')?;
        if account_id.is_empty() || bucket.is_empty() || key.is_empty() {
            return None;
        }
        Some(SourceRef {
            account_id: account_id.to_string(),
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

/// What the store remembers of one archived source object. Small on purpose:
/// the store must stay well under 512 bytes per object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Record layout version.
    pub v: u8,
    pub etag: String,
    pub size: u64,
    #[serde(with = "hex32")]
    pub raw_sha256: [u8; 32],
    /// SHA-256 of the single inflated gzip member, when the file inflated cleanly.
    #[serde(with = "opt_hex32")]
    pub content_sha256: Option<[u8; 32]>,
    /// Why the content could not be inflated (`trailing_data`, `not_gzip`, ...).
    pub content_error: Option<String>,
    pub archive_version_id: Option<String>,
    /// Seconds since the epoch.
    pub copied_at: i64,
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<[u8; 32]>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_some(&hex::encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Some(out))
    }
}

/// Durable progress: what has been archived and verified, which partitions
/// were listed, which findings were already reported. A cache of what the
/// archive proves; it can be rebuilt from the archive's metadata.
pub trait ProgressStore: Send + Sync {
    fn object(&self, source: &SourceRef) -> Result<Option<ObjectRecord>, SeamError>;
    /// Records a verified copy. Called only after the archive confirmed it.
    fn record_object(&self, source: &SourceRef, record: &ObjectRecord) -> Result<(), SeamError>;
    /// Every record under one source prefix (account + bucket + key prefix).
    fn objects_under(
        &self,
        account_id: &str,
        bucket: &str,
        key_prefix: &str,
    ) -> Result<Vec<(String, ObjectRecord)>, SeamError>;
    /// Free-form small state values (cursors, sweep times, chain heads).
    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>, SeamError>;
    fn put_state(&self, name: &str, value: &[u8]) -> Result<(), SeamError>;
    fn state_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, SeamError>;
    /// Records a finding; returns it with `first_seen` and `new` settled
    /// (`new` is false if the same finding was recorded by an earlier run,
    /// whose `first_seen` and acknowledgement it keeps).
    fn record_finding(&self, finding: Finding) -> Result<Finding, SeamError>;
    fn findings(&self) -> Result<Vec<Finding>, SeamError>;
    /// Marks the recorded finding with `finding`'s identity as acknowledged
    /// at `at`; `false` when none is recorded or it already was.
    fn acknowledge_finding(&self, finding: &Finding, at: DateTime<Utc>) -> Result<bool, SeamError>;
    /// Makes everything recorded so far durable.
    fn flush(&self) -> Result<(), SeamError>;
}

/// Where new findings are published (SNS).
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn publish(&self, subject: &str, message: &str) -> Result<(), SeamError>;
}

/// Wall-clock time, replaceable in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_keys_round_trip() {
        let source = SourceRef {
            account_id: "111122223333".into(),
            bucket: "aws-cloudtrail-logs-111122223333".into(),
            key: "org/AWSLogs/o-abc/111122223333/CloudTrail/us-east-1/2026/01/01/x.json.gz".into(),
        };
        for prefix in ["", "archive", "a/b"] {
            let key = source.archive_key(prefix);
            assert_eq!(
                SourceRef::from_archive_key(prefix, &key),
                Some(source.clone()),
                "prefix {prefix:?}"
            );
        }
        assert_eq!(
            source.archive_key("archive"),
            format!(
                "archive/111122223333/aws-cloudtrail-logs-111122223333/{}",
                source.key
            )
        );
        assert_eq!(SourceRef::from_archive_key("archive", "other/1/b/k"), None);
        assert_eq!(SourceRef::from_archive_key("archive", "archive/1/b"), None);
    }

    #[test]
    fn object_records_serialize_compactly_and_round_trip() {
        let record = ObjectRecord {
            v: 1,
            etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
            size: 1234,
            raw_sha256: [7; 32],
            content_sha256: Some([9; 32]),
            content_error: None,
            archive_version_id: Some("v1".into()),
            copied_at: 1_700_000_000,
        };
        let json = serde_json::to_vec(&record).unwrap();
        let back: ObjectRecord = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, record);
    }
}
