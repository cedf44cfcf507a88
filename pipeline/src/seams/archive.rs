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

/// Where a versions listing goes on: the key and version id markers S3's
/// `ListObjectVersions` hands back.
pub type VersionMarker = (String, Option<String>);

/// One page of a versions listing (S3: up to 1,000 versions), and where the
/// next page starts (`None`: the listing is complete).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionsPage {
    pub versions: Vec<ArchivedVersion>,
    pub next: Option<VersionMarker>,
}

/// Bucket-level protection as read from the archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketProtection {
    pub versioning_enabled: bool,
    pub default_retention: Option<(LockMode, u32)>,
    pub default_sse_kms_key: Option<String>,
    /// What the bucket policy refuses; `None` when there is no policy or it
    /// could not be read.
    pub bucket_policy: Option<BucketPolicyGuards>,
    /// The enabled lifecycle rules, summarised; `None` without a lifecycle configuration.
    pub lifecycle: Option<Lifecycle>,
}

/// The statements of the archive's bucket policy that a run relies on, as
/// read from the policy (not merely a word in it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketPolicyGuards {
    /// An unconditional Deny, to everyone, of `s3:DeleteObject` and
    /// `s3:DeleteObjectVersion` on the objects.
    pub denies_object_deletion: bool,
    /// A Deny, to everyone, of `s3:PutObject` naming a lock mode other than
    /// COMPLIANCE (`s3:object-lock-mode`).
    pub denies_weaker_lock_puts: bool,
    /// The fewest whole days of remaining retention a put may ask for: a
    /// Deny, to everyone, of `s3:PutObject` with `NumericLessThan` on
    /// `s3:object-lock-remaining-retention-days`; `None` without one.
    pub min_put_retention_days: Option<u32>,
}

impl BucketProtection {
    /// What the bucket policy fails to refuse, for an archive whose copies are
    /// kept `retention_days`. A put asks for exactly `retention_days` from the
    /// collector's clock, which S3 may count one whole day fewer: a threshold
    /// of `retention_days - 1` is enough.
    pub fn bucket_policy_problems(&self, retention_days: u32) -> Vec<String> {
        let Some(guards) = &self.bucket_policy else {
            return vec!["no bucket policy could be read".to_string()];
        };
        let mut problems = Vec::new();
        if !guards.denies_object_deletion {
            problems.push(
                "the bucket policy does not deny s3:DeleteObject and s3:DeleteObjectVersion to everyone"
                    .to_string(),
            );
        }
        if !guards.denies_weaker_lock_puts {
            problems.push(
                "the bucket policy does not deny puts with a lock mode other than COMPLIANCE"
                    .to_string(),
            );
        }
        let needed = retention_days.saturating_sub(1);
        match guards.min_put_retention_days {
            None => problems.push(
                "the bucket policy does not deny puts retained less than the retention period (s3:object-lock-remaining-retention-days)"
                    .to_string(),
            ),
            Some(days) if days < needed => problems.push(format!(
                "the bucket policy denies only puts retained less than {days} days, retention_days = {retention_days} needs at least {needed}"
            )),
            Some(_) => {}
        }
        problems
    }
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
    /// One page of the versions under `prefix`, from `marker` on: what a
    /// walk over a whole archive reads, one page held at a time.
    async fn list_versions_page(
        &self,
        prefix: &str,
        marker: Option<VersionMarker>,
    ) -> Result<VersionsPage, SeamError>;
    /// Every version under `prefix` (for small prefixes: the findings
    /// ledger, one object's versions); a whole archive is walked by pages
    /// ([`Self::list_versions_page`]).
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ArchivedVersion>, SeamError> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = self.list_versions_page(prefix, marker).await?;
            out.extend(page.versions);
            match page.next {
                Some(next) => marker = Some(next),
                None => return Ok(out),
            }
        }
    }
    async fn put_retention(
        &self,
        key: &str,
        version_id: &str,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<(), SeamError>;
    async fn protection(&self) -> Result<BucketProtection, SeamError>;
}
