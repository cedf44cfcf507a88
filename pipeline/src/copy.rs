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

use crate::cloudtrail::gzip::{
    inflate_single_member, inspect, GzipInspector, InflateError, InflateLimits,
};
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
    /// The inflated content when the object was held for one PUT and inflated
    /// to at most [`KEEP_INFLATED_BYTES`]: the caller checks small digests and
    /// logs from it without a second GET or a second inflate.
    pub inflated: Option<Vec<u8>>,
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

/// Largest inflated body kept in memory after a copy, for the caller's
/// content checks; larger ones are only hashed, as a stream.
pub const KEEP_INFLATED_BYTES: u64 = 2 * 1024 * 1024;

/// What hashing and inflating a whole (small) body found.
struct Analysis {
    raw_len: u64,
    raw_sha256: [u8; 32],
    content: Result<[u8; 32], InflateError>,
    inflated: Option<Vec<u8>>,
}

/// One pass over a body held in memory: SHA-256 of the raw bytes, the single
/// gzip member inflated once (kept when small) and hashed. Bodies that inflate
/// beyond [`KEEP_INFLATED_BYTES`] are judged again by the streaming inspector
/// with the configured limits, without keeping anything.
fn analyze(body: &[u8], limits: InflateLimits) -> Analysis {
    let raw_sha256 = sha256(body);
    let keep_limits = InflateLimits {
        max_inflated_bytes: limits.max_inflated_bytes.min(KEEP_INFLATED_BYTES),
        max_ratio: limits.max_ratio,
    };
    let (content, inflated) = match inflate_single_member(body, keep_limits) {
        Ok(inflated) => (Ok(sha256(&inflated)), Some(inflated)),
        Err(InflateError::TooLarge { .. }) if limits.max_inflated_bytes > KEEP_INFLATED_BYTES => {
            let outcome = inspect(body, limits);
            (outcome.inflated.map(|inflated| inflated.sha256), None)
        }
        Err(error) => (Err(error), None),
    };
    Analysis {
        raw_len: body.len() as u64,
        raw_sha256,
        content,
        inflated,
    }
}

/// Copies `source` (as listed) into the archive and verifies the copy.
/// Streaming: at most `multipart_threshold_bytes` of the body is held at once.
/// Hashing and inflating run on the blocking pool, so one large body never
/// holds up the other copies in flight.
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
    let mut upload = Upload::Single {
        buffer: BytesMut::new(),
    };
    // Only for multipart uploads: bodies too large to hold are inspected as they stream.
    let mut streaming: Option<(GzipInspector, PutSpec)> = None;

    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(CopyError::Source)?;
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
                    let mut inspector = GzipInspector::new(settings.inflate_limits);
                    inspector.update(&pending);
                    streaming = Some((inspector, spec));
                    upload = Upload::Multipart {
                        upload_id,
                        buffer: pending,
                        parts: Vec::new(),
                    };
                }
            }
            Upload::Multipart { buffer, .. } => {
                if let Some((inspector, _)) = &mut streaming {
                    inspector.update(&chunk);
                }
                buffer.extend_from_slice(&chunk);
            }
        }
        if let (
            Upload::Multipart {
                upload_id,
                buffer,
                parts,
            },
            Some((_, spec)),
        ) = (&mut upload, &streaming)
        {
            while buffer.len() >= threshold {
                let part = buffer.split_to(threshold).freeze();
                if let Err(error) = upload_part(archive, &spec.key, upload_id, parts, part).await {
                    let _ = archive.abort_multipart(&spec.key, upload_id).await;
                    return Err(CopyError::Archive(error));
                }
            }
        }
    }

    let (spec, version_id, parts, analysis) = match upload {
        Upload::Single { buffer } => {
            let body = buffer.freeze();
            let limits = settings.inflate_limits;
            let held = body.clone();
            let analysis = tokio::task::spawn_blocking(move || analyze(&held, limits))
                .await
                .map_err(|error| CopyError::Invalid(format!("hashing the body failed: {error}")))?;
            let spec = put_spec(settings, source, &source_meta, Some(&analysis.content), now);
            let version_id = archive
                .put(&spec, body, analysis.raw_sha256)
                .await
                .map_err(CopyError::Archive)?;
            (spec, version_id, Vec::new(), analysis)
        }
        Upload::Multipart {
            upload_id,
            buffer,
            mut parts,
        } => {
            let Some((inspector, spec)) = streaming else {
                return Err(CopyError::Invalid(
                    "multipart upload without a spec".to_string(),
                ));
            };
            if !buffer.is_empty() {
                if let Err(error) =
                    upload_part(archive, &spec.key, &upload_id, &mut parts, buffer.freeze()).await
                {
                    let _ = archive.abort_multipart(&spec.key, &upload_id).await;
                    return Err(CopyError::Archive(error));
                }
            }
            let version_id = archive
                .complete_multipart(&spec.key, &upload_id, &parts)
                .await
                .map_err(CopyError::Archive)?;
            let outcome = inspector.finish();
            let analysis = Analysis {
                raw_len: outcome.raw_len,
                raw_sha256: outcome.raw_sha256,
                content: outcome.inflated.map(|inflated| inflated.sha256),
                inflated: None,
            };
            (spec, version_id, parts, analysis)
        }
    };

    let checksum = expected_checksum(&analysis.raw_sha256, &parts);
    let head = archive
        .head(&spec.key, version_id.as_deref())
        .await
        .map_err(CopyError::Archive)?
        .ok_or_else(|| CopyError::Invalid(format!("{} is absent right after its PUT", spec.key)))?;
    let problems = check_archived(&head, &spec, &checksum);
    if !problems.is_empty() {
        return Err(CopyError::Invalid(problems.join("; ")));
    }

    let inflate_error = analysis.content.as_ref().err().cloned();
    let record = ObjectRecord {
        v: 1,
        etag: source_meta.etag.clone(),
        size: analysis.raw_len,
        raw_sha256: analysis.raw_sha256,
        content_sha256: analysis.content.as_ref().ok().copied(),
        content_error: inflate_error
            .as_ref()
            .map(|e| content_error_name(e).to_string()),
        archive_version_id: head.version_id.clone().or(version_id),
        copied_at: now.timestamp(),
    };
    Ok(Copied {
        record,
        archive_key: spec.key,
        bytes: analysis.raw_len,
        inflate_error,
        inflated: analysis.inflated,
    })
}

async fn upload_part(
    archive: &dyn Archive,
    key: &str,
    upload_id: &str,
    parts: &mut Vec<UploadedPart>,
    part: Bytes,
) -> Result<(), SeamError> {
    let part_number = i32::try_from(parts.len() + 1)
        .map_err(|_| SeamError::Permanent("too many parts".to_string()))?;
    let digest = sha256(&part);
    parts.push(
        archive
            .upload_part(key, upload_id, part_number, part, digest)
            .await?,
    );
    Ok(())
}
