//! Copies a killed run left behind: adopting a landed-but-unrecorded copy
//! instead of writing a second version, and re-hashing archived bytes (also
//! what `verify --full` and `rebuild-state` do).

use base64::Engine as _;
use bytes::BytesMut;
use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::cloudtrail::gzip::{GzipInspector, InflateError, InflateLimits};
use crate::model::error::SeamError;
use crate::model::object::{ObjectRecord, SourceRef};
use crate::seams::{Archive, ArchivedHead, TrailSource};

use super::{
    analyze_body, content_error_name, expected_checksum, meta, same_kms_key, ContentCheck, Copied,
    CopyError, CopySettings,
};

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
        buffer.extend_from_slice(&chunk.map_err(CopyError::SourceBody)?);
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
pub(super) const REHASH_HOLD_BYTES: u64 = 16 * 1024 * 1024;

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
pub(super) async fn record_from_bytes(
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
pub(super) fn record_with(
    head: &ArchivedHead,
    raw_sha256: [u8; 32],
    copied_at: i64,
) -> ObjectRecord {
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
