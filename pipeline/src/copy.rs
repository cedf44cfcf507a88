//! Copying one source object into the archive: stream it from the source,
//! hash the raw and the inflated bytes on the way, PUT it with SSE-KMS, a
//! SHA-256 checksum, Object Lock and provenance metadata, then prove the copy
//! with a HEAD before anyone may call it done. See `collect/design.md` for the
//! crash-safety argument.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;

use crate::cloudtrail::gzip::{GzipInspector, InflateError, InflateLimits};
use crate::error::SeamError;
use crate::seams::{
    Archive, ArchivedHead, LockMode, ObjectMeta, ObjectRecord, PutSpec, SourceRef, TrailSource,
    UploadedPart,
};

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
    /// CloudTrail's own digest metadata, preserved verbatim.
    pub const PRESERVED: [&str; 3] = [
        "signature",
        "signature-algorithm",
        "backfill-generation-timestamp",
    ];
}

/// How copies are made; fixed for a run.
#[derive(Debug, Clone)]
pub struct CopySettings {
    pub archive_prefix: String,
    /// Full key ARN when known, so HEAD's answer can be compared exactly.
    pub kms_key_id: String,
    pub lock_mode: LockMode,
    pub retention_days: u32,
    /// Objects larger than this go up as multipart, in parts of this size, so
    /// memory per in-flight object never exceeds it.
    pub multipart_threshold_bytes: u64,
    pub inflate_limits: InflateLimits,
}

/// Why the content of a copied object could not be read as one gzip member.
/// Recorded in the store and in the archive's metadata; the raw bytes are
/// archived regardless, as evidence.
pub fn content_error_name(error: &InflateError) -> &'static str {
    match error {
        InflateError::NotGzip => "not_gzip",
        InflateError::Corrupt(_) => "corrupt",
        InflateError::Truncated => "truncated",
        InflateError::TrailingData { .. } => "trailing_data",
        InflateError::TooLarge { .. } => "too_large",
        InflateError::RatioExceeded { .. } => "ratio_exceeded",
    }
}

/// A verified copy.
#[derive(Debug, Clone)]
pub struct Copied {
    pub record: ObjectRecord,
    pub archive_key: String,
    pub bytes: u64,
    pub inflate_error: Option<InflateError>,
    /// The raw bytes when the object was small enough to be held for one PUT;
    /// the caller parses small digests and logs from it without a second GET.
    pub small_body: Option<Bytes>,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("reading the source failed: {0}")]
    Source(SeamError),
    #[error("writing the archive failed: {0}")]
    Archive(SeamError),
    /// The archive holds the object, but not as required. Never recorded as done.
    #[error("archive copy is invalid: {0}")]
    Invalid(String),
}

impl CopyError {
    pub fn is_retryable(&self) -> bool {
        match self {
            CopyError::Source(error) | CopyError::Archive(error) => error.is_retryable(),
            // A failed verification is worth one more full copy.
            CopyError::Invalid(_) => true,
        }
    }
}

/// The Object Lock date for a copy made now: the retention period counted
/// from now, which is never earlier than the file's own date plus the period.
pub fn retain_until(now: DateTime<Utc>, retention_days: u32) -> DateTime<Utc> {
    let until = now + Duration::days(i64::from(retention_days));
    // Whole seconds: S3 stores retain-until with second precision.
    DateTime::from_timestamp(until.timestamp(), 0).unwrap_or(until)
}

fn header_safe(value: &str, max_len: usize) -> Option<String> {
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

/// The value S3 reports as `x-amz-checksum-sha256` for what we uploaded.
pub fn expected_checksum(raw_sha256: &[u8; 32], parts: &[UploadedPart]) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    if parts.is_empty() {
        return engine.encode(raw_sha256);
    }
    // Composite checksum of a multipart upload: SHA-256 over the parts'
    // binary SHA-256s, then `-<part count>`.
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        if let Ok(decoded) = engine.decode(&part.sha256_base64) {
            context.update(&decoded);
        }
    }
    format!(
        "{}-{}",
        engine.encode(context.finish().as_ref()),
        parts.len()
    )
}

/// Checks an archived version against what the copy required; returns every
/// problem found (empty = valid).
pub fn check_archived(head: &ArchivedHead, spec: &PutSpec, expected_checksum: &str) -> Vec<String> {
    let mut problems = Vec::new();
    match head.checksum_sha256.as_deref() {
        Some(found) if found == expected_checksum => {}
        Some(found) => problems.push(format!("checksum {found} != expected {expected_checksum}")),
        None => problems.push("no SHA-256 checksum stored".to_string()),
    }
    match head.sse_kms_key_id.as_deref() {
        Some(found) if same_kms_key(&spec.kms_key_id, found) => {}
        Some(found) => problems.push(format!("encrypted with {found}, not {}", spec.kms_key_id)),
        None => problems.push("not encrypted with SSE-KMS".to_string()),
    }
    match head.lock_mode {
        Some(mode) if mode == spec.lock_mode => {}
        Some(mode) => problems.push(format!(
            "lock mode {} != {}",
            mode.as_str(),
            spec.lock_mode.as_str()
        )),
        None => problems.push("no Object Lock retention".to_string()),
    }
    match head.retain_until {
        Some(until) if until + Duration::seconds(1) >= spec.retain_until => {}
        Some(until) => problems.push(format!(
            "retained until {until}, required {}",
            spec.retain_until
        )),
        None => problems.push("no retain-until date".to_string()),
    }
    if head.metadata.get(meta::SOURCE_ETAG) != spec.metadata.get(meta::SOURCE_ETAG) {
        problems.push("provenance metadata differs".to_string());
    }
    problems
}

/// If the archive's current version of `spec.key` is already a valid copy of
/// this source version (a run died between PUT and recording it), returns it
/// so it can be recorded instead of copied a second time.
pub async fn adoptable_copy(
    archive: &dyn Archive,
    settings: &CopySettings,
    key: &str,
    source_etag: &str,
) -> Result<Option<ArchivedHead>, SeamError> {
    let Some(head) = archive.head(key, None).await? else {
        return Ok(None);
    };
    if head.metadata.get(meta::SOURCE_ETAG).map(String::as_str) != Some(source_etag) {
        return Ok(None);
    }
    let valid = head.checksum_sha256.is_some()
        && head
            .sse_kms_key_id
            .as_deref()
            .is_some_and(|found| same_kms_key(&settings.kms_key_id, found))
        && head.lock_mode == Some(settings.lock_mode)
        && head.retain_until.is_some();
    Ok(valid.then_some(head))
}

/// Rebuilds a store record from an archived version's metadata (used to adopt
/// a copy after a crash and to rebuild a lost store).
pub fn record_from_head(head: &ArchivedHead, copied_at: i64) -> Option<ObjectRecord> {
    let engine = base64::engine::general_purpose::STANDARD;
    let checksum = head.checksum_sha256.as_deref()?;
    let raw_sha256: [u8; 32] = engine.decode(checksum).ok()?.try_into().ok()?;
    let content_sha256 = head.metadata.get(meta::CONTENT_SHA256).and_then(|text| {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok().map(|_| out)
    });
    Some(ObjectRecord {
        v: 1,
        etag: head
            .metadata
            .get(meta::SOURCE_ETAG)
            .cloned()
            .unwrap_or_default(),
        size: head.size,
        raw_sha256,
        content_sha256,
        content_error: head.metadata.get(meta::CONTENT_ERROR).cloned(),
        archive_version_id: head.version_id.clone(),
        copied_at,
    })
}

enum Upload {
    /// Still under the threshold: the whole object is in `buffer`.
    Single { buffer: BytesMut },
    Multipart {
        upload_id: String,
        buffer: BytesMut,
        parts: Vec<UploadedPart>,
    },
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Copies `source` (as listed) into the archive and verifies the copy.
/// Streaming: at most `multipart_threshold_bytes` of the body is held at once.
pub async fn copy_object(
    trail_source: &dyn TrailSource,
    archive: &dyn Archive,
    settings: &CopySettings,
    source: &SourceRef,
    now: DateTime<Utc>,
) -> Result<Copied, CopyError> {
    let object = trail_source
        .get(&source.key)
        .await
        .map_err(CopyError::Source)?;
    let source_meta = object.meta;
    let mut body = object.body;
    let threshold = usize::try_from(settings.multipart_threshold_bytes).unwrap_or(usize::MAX);
    let mut inspector = GzipInspector::new(settings.inflate_limits);
    let mut upload = Upload::Single {
        buffer: BytesMut::new(),
    };
    let mut multipart_spec: Option<PutSpec> = None;

    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(CopyError::Source)?;
        inspector.update(&chunk);
        match &mut upload {
            Upload::Single { buffer } => {
                buffer.extend_from_slice(&chunk);
                if buffer.len() > threshold {
                    let spec = put_spec(settings, source, &source_meta, None, now);
                    let upload_id = archive
                        .create_multipart(&spec)
                        .await
                        .map_err(CopyError::Archive)?;
                    let pending = std::mem::take(buffer);
                    upload = Upload::Multipart {
                        upload_id,
                        buffer: pending,
                        parts: Vec::new(),
                    };
                    multipart_spec = Some(spec);
                }
            }
            Upload::Multipart { buffer, .. } => buffer.extend_from_slice(&chunk),
        }
        if let Upload::Multipart {
            upload_id,
            buffer,
            parts,
        } = &mut upload
        {
            while buffer.len() >= threshold {
                let part = buffer.split_to(threshold).freeze();
                let uploaded = upload_part(
                    archive,
                    &source_key(&multipart_spec),
                    upload_id,
                    parts.len(),
                    part,
                )
                .await;
                match uploaded {
                    Ok(done) => parts.push(done),
                    Err(error) => {
                        let _ = archive
                            .abort_multipart(&source_key(&multipart_spec), upload_id)
                            .await;
                        return Err(CopyError::Archive(error));
                    }
                }
            }
        }
    }
    let outcome = inspector.finish();
    let raw_sha256 = outcome.raw_sha256;
    let content = outcome
        .inflated
        .as_ref()
        .map(|inflated| inflated.sha256)
        .map_err(Clone::clone);

    let (spec, version_id, parts, small_body) = match upload {
        Upload::Single { buffer } => {
            let body = buffer.freeze();
            debug_assert_eq!(sha256(&body), raw_sha256);
            let spec = put_spec(settings, source, &source_meta, Some(&content), now);
            let version_id = archive
                .put(&spec, body.clone(), raw_sha256)
                .await
                .map_err(CopyError::Archive)?;
            (spec, version_id, Vec::new(), Some(body))
        }
        Upload::Multipart {
            upload_id,
            buffer,
            mut parts,
        } => {
            let Some(spec) = multipart_spec else {
                return Err(CopyError::Invalid(
                    "multipart upload without a spec".to_string(),
                ));
            };
            if !buffer.is_empty() {
                match upload_part(archive, &spec.key, &upload_id, parts.len(), buffer.freeze())
                    .await
                {
                    Ok(done) => parts.push(done),
                    Err(error) => {
                        let _ = archive.abort_multipart(&spec.key, &upload_id).await;
                        return Err(CopyError::Archive(error));
                    }
                }
            }
            let version_id = archive
                .complete_multipart(&spec.key, &upload_id, &parts)
                .await
                .map_err(CopyError::Archive)?;
            (spec, version_id, parts, None)
        }
    };

    let checksum = expected_checksum(&raw_sha256, &parts);
    let head = archive
        .head(&spec.key, version_id.as_deref())
        .await
        .map_err(CopyError::Archive)?
        .ok_or_else(|| CopyError::Invalid(format!("{} is absent right after its PUT", spec.key)))?;
    let problems = check_archived(&head, &spec, &checksum);
    if !problems.is_empty() {
        return Err(CopyError::Invalid(problems.join("; ")));
    }

    let inflate_error = content.as_ref().err().cloned();
    let record = ObjectRecord {
        v: 1,
        etag: source_meta.etag.clone(),
        size: outcome.raw_len,
        raw_sha256,
        content_sha256: content.as_ref().ok().copied(),
        content_error: inflate_error
            .as_ref()
            .map(|e| content_error_name(e).to_string()),
        archive_version_id: head.version_id.clone().or(version_id),
        copied_at: now.timestamp(),
    };
    Ok(Copied {
        record,
        archive_key: spec.key,
        bytes: outcome.raw_len,
        inflate_error,
        small_body,
    })
}

fn source_key(spec: &Option<PutSpec>) -> String {
    spec.as_ref().map(|s| s.key.clone()).unwrap_or_default()
}

async fn upload_part(
    archive: &dyn Archive,
    key: &str,
    upload_id: &str,
    index: usize,
    part: Bytes,
) -> Result<UploadedPart, SeamError> {
    let part_number =
        i32::try_from(index + 1).map_err(|_| SeamError::Permanent("too many parts".to_string()))?;
    let digest = sha256(&part);
    archive
        .upload_part(key, upload_id, part_number, part, digest)
        .await
}
