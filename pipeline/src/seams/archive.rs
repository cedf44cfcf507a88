//! The locked archive bucket, written with the audit identity.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::error::SeamError;

use super::source::SourceObject;

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
