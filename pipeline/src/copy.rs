//! Copying one source object into the archive: stream it from the source,
//! hash the raw and the inflated bytes on the way, PUT it with SSE-KMS, a
//! SHA-256 checksum, Object Lock and provenance metadata, then prove the copy
//! with a HEAD before anyone may call it done. See `collect/design.md` for the
//! crash-safety argument.

use std::cell::RefCell;
use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;

use crate::cloudtrail::digest::sha256;
use crate::cloudtrail::gzip::{BodyInspector, GzipInspector, InflateError, InflateLimits};
use crate::model::error::SeamError;
use crate::model::findings::Finding;
use crate::model::object::{ObjectRecord, SourceRef};
use crate::seams::{
    Archive, ArchivedHead, LockMode, ObjectMeta, PutSpec, TrailSource, UploadedPart,
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
    /// What the caller's [`ContentCheck`] found, when the object inflated
    /// within the limits.
    pub content_findings: Vec<Finding>,
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

/// Reads back the version a PUT (or completed multipart upload) stored under
/// `spec` and checks it: the checksum, the SSE-KMS key, the Object Lock mode
/// and date, the provenance. What fails is `CopyError::Invalid`.
pub async fn verify_stored(
    archive: &dyn Archive,
    spec: &PutSpec,
    version_id: Option<&str>,
    expected_checksum: &str,
) -> Result<ArchivedHead, CopyError> {
    let head = archive
        .head(&spec.key, version_id)
        .await
        .map_err(CopyError::Archive)?
        .ok_or_else(|| CopyError::Invalid(format!("{} is absent right after its PUT", spec.key)))?;
    let problems = check_archived(&head, spec, expected_checksum);
    if !problems.is_empty() {
        return Err(CopyError::Invalid(problems.join("; ")));
    }
    Ok(head)
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

/// Adopts `head`, the copy of `source` an interrupted attempt left in the
/// archive (see [`adoptable_copy`]), instead of copying a second version. The
/// source body is read and analysed again as for a copy, so the object's
/// content findings are not lost with the attempt that made it; `Ok(None)`
/// when the body is not the archived bytes (copy it again). A body too large
/// to hold (a multipart copy) is adopted on its metadata alone: its content
/// was never held for the content check, and validation judges it.
pub async fn adopt_copy(
    trail_source: &dyn TrailSource,
    archive: &dyn Archive,
    settings: &CopySettings,
    source: &SourceRef,
    head: &ArchivedHead,
    now: DateTime<Utc>,
    content_check: Option<ContentCheck>,
) -> Result<Option<Copied>, CopyError> {
    let adopted = |record: ObjectRecord, inflate_error, content_findings| Copied {
        bytes: record.size,
        record,
        archive_key: source.archive_key(&settings.archive_prefix),
        inflate_error,
        content_findings,
    };
    let threshold = settings.multipart_threshold_bytes;
    if head.size > threshold {
        // Too large to hold: its hashes come from the archived bytes (a
        // multipart copy's checksum is composite and its metadata was
        // written before its content was known).
        let archive_key = source.archive_key(&settings.archive_prefix);
        let (record, inflate_error) = record_from_bytes(
            archive,
            &archive_key,
            head,
            now.timestamp(),
            settings.inflate_limits,
        )
        .await
        .map_err(CopyError::Archive)?;
        return Ok(record.map(|record| adopted(record, inflate_error, Vec::new())));
    }
    let Some(mut record) = record_from_head(head, now.timestamp()) else {
        return Ok(None);
    };
    let object = trail_source
        .get(&source.key)
        .await
        .map_err(CopyError::Source)?;
    if object.meta.etag != record.etag {
        return Ok(None);
    }
    let mut body = object.body;
    let mut buffer = BytesMut::with_capacity(usize::try_from(head.size).unwrap_or(0));
    while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk.map_err(CopyError::Source)?);
        if buffer.len() as u64 > threshold {
            return Ok(None);
        }
    }
    let analysis = analyze_body(&buffer.freeze(), settings.inflate_limits, content_check).await?;
    if head.checksum_sha256.as_deref()
        != Some(expected_checksum(&analysis.raw_sha256, &[]).as_str())
    {
        return Ok(None);
    }
    record.content_sha256 = analysis.content.as_ref().ok().copied();
    let inflate_error = analysis.content.err();
    Ok(Some(adopted(
        record,
        inflate_error,
        analysis.content_findings,
    )))
}

/// Re-reads one archived version and hashes it again: the raw bytes and the
/// single inflated gzip member, within `limits`. Small objects are hashed on
/// the blocking pool in one go, so the CPU work of one never holds up the
/// GETs of others; large ones stream.
pub async fn rehash_archived(
    archive: &dyn Archive,
    key: &str,
    version_id: &str,
    limits: InflateLimits,
) -> Result<crate::cloudtrail::gzip::InspectOutcome, SeamError> {
    let object = archive.get(key, Some(version_id)).await?;
    let mut body = object.body;
    let mut held = BytesMut::new();
    while let Some(chunk) = body.next().await {
        held.extend_from_slice(&chunk?);
        if held.len() as u64 > REHASH_HOLD_BYTES {
            let mut inspector = GzipInspector::new(limits);
            inspector.update(&held);
            while let Some(chunk) = body.next().await {
                inspector.update(&chunk?);
            }
            return Ok(inspector.finish());
        }
    }
    tokio::task::spawn_blocking(move || crate::cloudtrail::gzip::inspect(&held, limits))
        .await
        .map_err(|error| SeamError::Transient(format!("hashing failed: {error}")))
}

/// Objects up to this size are held whole while they are re-hashed.
const REHASH_HOLD_BYTES: u64 = 16 * 1024 * 1024;

/// [`record_from_head`], reading the archived bytes where the metadata does
/// not tell: the raw hash of a multipart copy (its checksum is composite) and
/// its content hash or content error (written before they were known).
/// `None` for a version without any SHA-256 checksum (never a verified copy).
pub async fn record_from_archive(
    archive: &dyn Archive,
    key: &str,
    head: &ArchivedHead,
    copied_at: i64,
    limits: InflateLimits,
) -> Result<Option<ObjectRecord>, SeamError> {
    if let Some(record) = record_from_head(head, copied_at)
        .filter(|record| record.content_sha256.is_some() || record.content_error.is_some())
    {
        return Ok(Some(record));
    }
    Ok(record_from_bytes(archive, key, head, copied_at, limits)
        .await?
        .0)
}

/// The store record of an archived version hashed again from its bytes, and
/// why its content could not be read, if so.
async fn record_from_bytes(
    archive: &dyn Archive,
    key: &str,
    head: &ArchivedHead,
    copied_at: i64,
    limits: InflateLimits,
) -> Result<(Option<ObjectRecord>, Option<InflateError>), SeamError> {
    if head.checksum_sha256.is_none() {
        return Ok((None, None));
    }
    let version = head.version_id.as_deref().unwrap_or("null");
    let outcome = rehash_archived(archive, key, version, limits).await?;
    let inflate_error = outcome.inflated.as_ref().err().cloned();
    let record = ObjectRecord {
        raw_sha256: outcome.raw_sha256,
        content_sha256: outcome
            .inflated
            .as_ref()
            .ok()
            .map(|inflated| inflated.sha256),
        content_error: inflate_error
            .as_ref()
            .map(|error| content_error_name(error).to_string()),
        ..record_with(head, [0; 32], copied_at)
    };
    Ok((Some(record), inflate_error))
}

/// Rebuilds a store record from an archived version's metadata (used to adopt
/// a copy after a crash and to rebuild a lost store).
pub fn record_from_head(head: &ArchivedHead, copied_at: i64) -> Option<ObjectRecord> {
    let engine = base64::engine::general_purpose::STANDARD;
    let checksum = head.checksum_sha256.as_deref()?;
    let raw_sha256: [u8; 32] = engine.decode(checksum).ok()?.try_into().ok()?;
    Some(record_with(head, raw_sha256, copied_at))
}

/// The record of an archived version: provenance and hashes from its metadata.
fn record_with(head: &ArchivedHead, raw_sha256: [u8; 32], copied_at: i64) -> ObjectRecord {
    let content_sha256 = head.metadata.get(meta::CONTENT_SHA256).and_then(|text| {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok().map(|_| out)
    });
    ObjectRecord {
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
    }
}

/// Largest inflated body the copy keeps for the content check; larger content
/// is checked on a second, streaming inflate of the held body.
pub const KEEP_INFLATED_BYTES: u64 = 2 * 1024 * 1024;

/// Bodies up to this size that inflate to at most [`INLINE_INFLATED_BYTES`] are
/// analyzed on the task that copies them (a fraction of a millisecond; a
/// hand-off to the blocking pool costs more); the others on the blocking pool,
/// so that no body, not even a small gzip bomb, holds up the other copies.
const INLINE_ANALYSIS_BYTES: usize = 16 * 1024;
const INLINE_INFLATED_BYTES: u64 = 256 * 1024;

/// An object's inflated content as a [`ContentCheck`] gets it: the bytes the
/// copy's inflate kept, or, for content larger than [`KEEP_INFLATED_BYTES`], a
/// second streaming inflate of the held body (bounded like the first), so a
/// large file is checked without holding its content.
pub enum Inflated<'a> {
    Bytes(&'a [u8]),
    Stream(&'a mut dyn std::io::Read),
}

/// A check of an object's inflated content (for example which accounts its
/// records claim), run while the copy holds the object.
pub type ContentCheck = Box<dyn FnOnce(Inflated<'_>) -> Vec<Finding> + Send>;

thread_local! {
    /// One reusable inflater and output buffer per thread of the copy path.
    static BODY_INSPECTOR: RefCell<BodyInspector> = RefCell::new(BodyInspector::default());
}

/// What hashing and inflating a whole (small) body found.
struct Analysis {
    raw_len: u64,
    raw_sha256: [u8; 32],
    content: Result<[u8; 32], InflateError>,
    content_findings: Vec<Finding>,
}

/// One pass over a body held in memory: SHA-256 of the raw bytes, the single
/// gzip member inflated once, hashed and checked against `limits`, and `check`
/// run on the inflated bytes when they are valid and at most
/// [`KEEP_INFLATED_BYTES`]. `None` when `inline` and the body is too large to
/// analyze on an async task: `check` is then left in place.
fn analyze(
    body: &[u8],
    limits: InflateLimits,
    check: &mut Option<ContentCheck>,
    inline: bool,
) -> Option<Analysis> {
    if inline && body.len() > INLINE_ANALYSIS_BYTES {
        return None;
    }
    let effective = if inline {
        InflateLimits {
            max_inflated_bytes: limits.max_inflated_bytes.min(INLINE_INFLATED_BYTES),
            max_ratio: limits.max_ratio,
        }
    } else {
        limits
    };
    BODY_INSPECTOR.with_borrow_mut(|inspector| {
        let (outcome, kept) = inspector.inspect(body, effective, KEEP_INFLATED_BYTES);
        if inline
            && matches!(outcome.inflated, Err(InflateError::TooLarge { .. }))
            && limits.max_inflated_bytes > INLINE_INFLATED_BYTES
        {
            return None;
        }
        let content_findings = match (kept, check.take()) {
            (Some(inflated), Some(check)) => check(Inflated::Bytes(inflated)),
            // Inflated cleanly but too large to keep: read it again as a stream.
            (None, Some(check)) if outcome.inflated.is_ok() => {
                let decoder = flate2::read::GzDecoder::new(body);
                let mut stream = std::io::BufReader::with_capacity(
                    64 * 1024,
                    std::io::Read::take(decoder, limits.max_inflated_bytes),
                );
                check(Inflated::Stream(&mut stream))
            }
            _ => Vec::new(),
        };
        Some(Analysis {
            raw_len: outcome.raw_len,
            raw_sha256: outcome.raw_sha256,
            content: outcome.inflated.map(|inflated| inflated.sha256),
            content_findings,
        })
    })
}

/// [`analyze`] on this task when the body is small, else on the blocking pool.
async fn analyze_body(
    body: &Bytes,
    limits: InflateLimits,
    mut check: Option<ContentCheck>,
) -> Result<Analysis, CopyError> {
    if let Some(analysis) = analyze(body, limits, &mut check, true) {
        return Ok(analysis);
    }
    let held = body.clone();
    tokio::task::spawn_blocking(move || analyze(&held, limits, &mut check, false))
        .await
        .map_err(|error| CopyError::Invalid(format!("hashing the body failed: {error}")))?
        .ok_or_else(|| CopyError::Invalid("the body was not analyzed".to_string()))
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
    content_check: Option<ContentCheck>,
) -> Result<Copied, CopyError> {
    let object = trail_source
        .get(&source.key)
        .await
        .map_err(CopyError::Source)?;
    let source_meta = object.meta;
    let mut body = object.body;
    let threshold = usize::try_from(settings.multipart_threshold_bytes).unwrap_or(usize::MAX);
    // Sized once from the response's length (bounded by the threshold), so the
    // body is never moved while it arrives.
    let expected = usize::try_from(source_meta.size).unwrap_or(usize::MAX);
    let mut buffer = BytesMut::with_capacity(expected.min(threshold.saturating_add(1)));
    while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk.map_err(CopyError::Source)?);
        if buffer.len() > threshold {
            // Too large to hold: the rest streams through a multipart upload.
            let spec = put_spec(settings, source, &source_meta, None, now);
            let (version_id, parts, analysis) =
                copy_multipart(archive, settings, &spec, buffer, &mut body, content_check).await?;
            return verified_copy(
                archive,
                spec,
                &source_meta,
                version_id,
                &parts,
                analysis,
                now,
            )
            .await;
        }
    }
    let body = buffer.freeze();
    let analysis = analyze_body(&body, settings.inflate_limits, content_check).await?;
    let spec = put_spec(settings, source, &source_meta, Some(&analysis.content), now);
    let version_id = archive
        .put(&spec, body, analysis.raw_sha256)
        .await
        .map_err(CopyError::Archive)?;
    verified_copy(archive, spec, &source_meta, version_id, &[], analysis, now).await
}

/// Uploads a body too large to hold in parts of the threshold size, `held`
/// (what arrived so far) first, then the rest of `body`, inspecting the bytes
/// and running `content_check` on them (see [`StreamedCheck`]) as they pass;
/// an upload that fails on the way is aborted, so none is left behind.
/// Returns the version, the parts and the analysis.
async fn copy_multipart(
    archive: &dyn Archive,
    settings: &CopySettings,
    spec: &PutSpec,
    held: BytesMut,
    body: &mut crate::seams::ByteStream,
    content_check: Option<ContentCheck>,
) -> Result<(Option<String>, Vec<UploadedPart>, Analysis), CopyError> {
    let upload_id = archive
        .create_multipart(spec)
        .await
        .map_err(CopyError::Archive)?;
    let mut inspector = GzipInspector::new(settings.inflate_limits);
    let mut checked =
        content_check.map(|check| StreamedCheck::start(check, settings.inflate_limits));
    let mut parts = Vec::new();
    let uploaded = upload_parts(
        archive,
        settings,
        spec,
        &upload_id,
        held,
        body,
        &mut inspector,
        &mut checked,
        &mut parts,
    )
    .await;
    let completed = match uploaded {
        Ok(()) => archive
            .complete_multipart(&spec.key, &upload_id, &parts)
            .await
            .map_err(CopyError::Archive),
        Err(error) => Err(error),
    };
    let version_id = match completed {
        Ok(version_id) => version_id,
        Err(error) => {
            let _ = archive.abort_multipart(&spec.key, &upload_id).await;
            return Err(error);
        }
    };
    let outcome = inspector.finish();
    // The check's verdict counts only for content that inflated cleanly
    // within the limits, as for a held body.
    let content_findings = match (checked, &outcome.inflated) {
        (Some(checked), Ok(_)) => checked.finish().await,
        _ => Vec::new(),
    };
    let analysis = Analysis {
        raw_len: outcome.raw_len,
        raw_sha256: outcome.raw_sha256,
        content: outcome.inflated.map(|inflated| inflated.sha256),
        content_findings,
    };
    Ok((version_id, parts, analysis))
}

/// A [`ContentCheck`] run on a blocking thread while an object too large to
/// hold streams past: the raw bytes are handed over a bounded channel,
/// inflated there again (bounded by the inflated-size limit) and parsed as
/// they arrive, so memory stays bounded and the copy never waits on more than
/// a few chunks.
struct StreamedCheck {
    sender: Option<tokio::sync::mpsc::Sender<Bytes>>,
    task: tokio::task::JoinHandle<Vec<Finding>>,
}

impl StreamedCheck {
    fn start(check: ContentCheck, limits: InflateLimits) -> StreamedCheck {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(8);
        let task = tokio::task::spawn_blocking(move || {
            let raw = ChannelReader {
                receiver,
                current: Bytes::new(),
            };
            let decoder = flate2::read::GzDecoder::new(raw);
            let mut stream = std::io::BufReader::with_capacity(
                64 * 1024,
                std::io::Read::take(decoder, limits.max_inflated_bytes),
            );
            check(Inflated::Stream(&mut stream))
        });
        StreamedCheck {
            sender: Some(sender),
            task,
        }
    }

    /// Hands the next raw bytes over; once the check has stopped reading
    /// (it has its verdict), nothing more is sent.
    async fn feed(&mut self, bytes: Bytes) {
        if let Some(sender) = &self.sender {
            if sender.send(bytes).await.is_err() {
                self.sender = None;
            }
        }
    }

    async fn finish(mut self) -> Vec<Finding> {
        self.sender = None;
        self.task.await.unwrap_or_default()
    }
}

/// The raw bytes of a [`StreamedCheck`] as a blocking reader.
struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(bytes) => self.current = bytes,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[allow(clippy::too_many_arguments)]
async fn upload_parts(
    archive: &dyn Archive,
    settings: &CopySettings,
    spec: &PutSpec,
    upload_id: &str,
    mut buffer: BytesMut,
    body: &mut crate::seams::ByteStream,
    inspector: &mut GzipInspector,
    checked: &mut Option<StreamedCheck>,
    parts: &mut Vec<UploadedPart>,
) -> Result<(), CopyError> {
    let threshold = usize::try_from(settings.multipart_threshold_bytes).unwrap_or(usize::MAX);
    inspector.update(&buffer);
    if let Some(checked) = checked {
        checked.feed(Bytes::copy_from_slice(&buffer)).await;
    }
    loop {
        while buffer.len() >= threshold {
            let part = buffer.split_to(threshold).freeze();
            upload_part(archive, &spec.key, upload_id, parts, part)
                .await
                .map_err(CopyError::Archive)?;
        }
        let Some(chunk) = body.next().await else {
            break;
        };
        let chunk = chunk.map_err(CopyError::Source)?;
        inspector.update(&chunk);
        buffer.extend_from_slice(&chunk);
        if let Some(checked) = checked {
            checked.feed(chunk).await;
        }
    }
    if !buffer.is_empty() {
        upload_part(archive, &spec.key, upload_id, parts, buffer.freeze())
            .await
            .map_err(CopyError::Archive)?;
    }
    Ok(())
}

/// Reads the stored version back, checks it, and describes the copy.
async fn verified_copy(
    archive: &dyn Archive,
    spec: PutSpec,
    source_meta: &ObjectMeta,
    version_id: Option<String>,
    parts: &[UploadedPart],
    analysis: Analysis,
    now: DateTime<Utc>,
) -> Result<Copied, CopyError> {
    let checksum = expected_checksum(&analysis.raw_sha256, parts);
    let head = verify_stored(archive, &spec, version_id.as_deref(), &checksum).await?;
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
        content_findings: analysis.content_findings,
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

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write as _;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    const LIMITS: InflateLimits = InflateLimits {
        max_inflated_bytes: 64 * 1024 * 1024,
        max_ratio: 100_000,
    };

    /// A check that reports the inflated length it saw, as a finding's detail
    /// (`stream:` when it read the content as a stream).
    fn length_check() -> Option<ContentCheck> {
        Some(Box::new(|inflated: Inflated<'_>| {
            let seen = match inflated {
                Inflated::Bytes(bytes) => bytes.len().to_string(),
                Inflated::Stream(stream) => {
                    let mut all = Vec::new();
                    stream.read_to_end(&mut all).unwrap();
                    format!("stream:{}", all.len())
                }
            };
            vec![Finding::new(
                crate::model::findings::FindingKind::AccountMismatch,
                "111111111111",
                "bucket",
                "key",
                seen,
            )]
        }))
    }

    fn seen_length(analysis: &Analysis) -> Option<usize> {
        analysis
            .content_findings
            .first()
            .and_then(|finding| finding.detail.parse().ok())
    }

    fn streamed_length(analysis: &Analysis) -> Option<usize> {
        analysis
            .content_findings
            .first()
            .and_then(|finding| finding.detail.strip_prefix("stream:")?.parse().ok())
    }

    #[test]
    fn small_bodies_are_analyzed_inline_and_agree_with_the_blocking_path() {
        let log = br#"{"Records":[{"eventVersion":"1.08","recipientAccountId":"111111111111"}]}"#;
        let raw = gzip(log);
        let inline = analyze(&raw, LIMITS, &mut length_check(), true).expect("analyzed inline");
        let full = analyze(&raw, LIMITS, &mut length_check(), false).unwrap();
        assert_eq!(inline.raw_sha256, sha256(&raw));
        assert_eq!(inline.raw_sha256, full.raw_sha256);
        assert_eq!(inline.content, Ok(sha256(log)));
        assert_eq!(seen_length(&inline), Some(log.len()));
        assert_eq!(seen_length(&full), Some(log.len()));
    }

    #[test]
    fn a_small_bomb_goes_to_the_blocking_path_with_the_real_limits() {
        let zeros = vec![0u8; 4 * 1024 * 1024];
        let raw = gzip(&zeros);
        assert!(raw.len() <= INLINE_ANALYSIS_BYTES);
        let mut check = length_check();
        assert!(analyze(&raw, LIMITS, &mut check, true).is_none());
        assert!(check.is_some(), "the check is left for the blocking path");
        let full = analyze(&raw, LIMITS, &mut check, false).unwrap();
        assert_eq!(full.content, Ok(sha256(&zeros)), "within the real limits");
        assert_eq!(seen_length(&full), None, "too large to keep");
        assert_eq!(
            streamed_length(&full),
            Some(zeros.len()),
            "checked on a second, streaming inflate"
        );

        // When the real limit is below the inline bound, the inline verdict is final.
        let tight = InflateLimits {
            max_inflated_bytes: 1024,
            max_ratio: 100_000,
        };
        let verdict = analyze(&raw, tight, &mut length_check(), true).expect("final verdict");
        assert_eq!(verdict.content, Err(InflateError::TooLarge { limit: 1024 }));
        assert!(verdict.content_findings.is_empty());
    }

    #[test]
    fn a_large_body_is_analyzed_on_the_blocking_pool_with_its_check() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let raw = gzip(&noise);
        assert!(raw.len() > INLINE_ANALYSIS_BYTES);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let analysis = runtime
            .block_on(analyze_body(&Bytes::from(raw), LIMITS, length_check()))
            .unwrap();
        assert_eq!(analysis.content, Ok(sha256(&noise)));
        assert_eq!(seen_length(&analysis), Some(noise.len()));
    }

    #[test]
    fn the_reused_inspector_carries_nothing_from_one_body_to_the_next() {
        let bodies: Vec<Vec<u8>> = vec![
            br#"{"Records":[]}"#.to_vec(),
            vec![b'a'; 300_000],
            b"short".to_vec(),
        ];
        // A broken body in between must not leave state behind either.
        let mut raws: Vec<Vec<u8>> = bodies.iter().map(|body| gzip(body)).collect();
        raws.insert(1, b"not gzip at all".to_vec());
        let mut truncated = gzip(&bodies[1]);
        truncated.truncate(truncated.len() / 2);
        raws.insert(3, truncated);
        for raw in &raws {
            let reused = analyze(raw, LIMITS, &mut length_check(), false).unwrap();
            let (fresh, kept) =
                crate::cloudtrail::gzip::inspect_keeping(raw, LIMITS, KEEP_INFLATED_BYTES);
            assert_eq!(reused.raw_sha256, fresh.raw_sha256);
            assert_eq!(reused.content, fresh.inflated.map(|i| i.sha256));
            assert_eq!(seen_length(&reused), kept.map(|k| k.len()));
        }
    }
}
