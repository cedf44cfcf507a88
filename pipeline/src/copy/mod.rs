//! Copying one source object into the archive: stream it from the source,
//! hash the raw and the inflated bytes on the way, PUT it with SSE-KMS, a
//! SHA-256 checksum, Object Lock and provenance metadata, then prove the copy
//! with a HEAD before anyone may call it done. See `../collect/design.md` for the
//! crash-safety argument.

mod adopt;
mod multipart;
mod put;
mod readback;

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::cloudtrail::gzip::{BodyInspector, InflateError, InflateLimits, InflatedSink, NoSink};
use crate::model::error::SeamError;
use crate::model::findings::Finding;
use crate::model::object::{ObjectRecord, SourceRef};
use crate::seams::{Archive, LockMode, ObjectMeta, PutSpec, TrailSource, UploadedPart};

pub use adopt::{
    adopt_copy, adoptable_copy, record_from_archive, record_from_head, rehash_archived,
};
use multipart::copy_multipart;
pub use put::{meta, put_spec, retain_until, same_kms_key};
pub use readback::{check_archived, expected_checksum, verify_stored};

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
    /// The source request failed (already retried by the seam under the
    /// run's retry policy).
    #[error("reading the source failed: {0}")]
    Source(SeamError),
    /// The source body broke after the GET succeeded (a reset mid-stream): no
    /// request-level retry can resume it, only a whole new copy.
    #[error("reading the source failed: {0}")]
    SourceBody(SeamError),
    #[error("writing the archive failed: {0}")]
    Archive(SeamError),
    /// The archive holds the object, but not as required. Never recorded as done.
    #[error("archive copy is invalid: {0}")]
    Invalid(String),
}

impl CopyError {
    /// Whether starting the whole copy again can help. Each request was
    /// already retried by its seam (infra's retry policy), so a failed request
    /// is final here; what no request retry can mend is a body broken
    /// mid-stream and a copy that failed verification.
    pub fn calls_for_another_copy(&self) -> bool {
        match self {
            CopyError::SourceBody(error) => error.is_retryable(),
            CopyError::Invalid(_) => true,
            CopyError::Source(_) | CopyError::Archive(_) => false,
        }
    }
}

/// Bodies up to this size that inflate to at most [`INLINE_INFLATED_BYTES`] are
/// analyzed on the task that copies them (a fraction of a millisecond; a
/// hand-off to the blocking pool costs more); the others on the blocking pool,
/// so that no body, not even a small gzip bomb, holds up the other copies.
const INLINE_ANALYSIS_BYTES: usize = 16 * 1024;
const INLINE_INFLATED_BYTES: u64 = 256 * 1024;

/// A check of an object's inflated content (for example which accounts its
/// records claim), fed the inflated bytes as the copy's single inflate
/// produces them, whatever the body's size: the content is never inflated
/// twice nor held.
pub trait ContentChecker: InflatedSink + Send {
    /// Forgets what it was fed: the content is about to be inflated again
    /// from its start (the inline analysis of a small body gave up).
    fn restart(&mut self);
    /// The content inflated cleanly within the limits: what the check found.
    /// Not called otherwise.
    fn finish(self: Box<Self>) -> Vec<Finding>;
}

/// A boxed [`ContentChecker`], as the copy functions take it.
pub type ContentCheck = Box<dyn ContentChecker>;

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
/// gzip member inflated once, hashed and checked against `limits`, its bytes
/// fed to `check` as they are produced, and the check's findings when the
/// content was valid. `None` when `inline` and the body is too large to
/// analyze on an async task: `check` is then left in place, restarted.
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
        let outcome = match check.as_mut() {
            Some(check) => inspector.inspect_into(body, effective, &mut **check),
            None => inspector.inspect_into(body, effective, &mut NoSink),
        };
        if inline
            && matches!(outcome.inflated, Err(InflateError::TooLarge { .. }))
            && limits.max_inflated_bytes > INLINE_INFLATED_BYTES
        {
            if let Some(check) = check.as_mut() {
                check.restart();
            }
            return None;
        }
        let content_findings = match check.take() {
            Some(check) if outcome.inflated.is_ok() => check.finish(),
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
        buffer.extend_from_slice(&chunk.map_err(CopyError::SourceBody)?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudtrail::digest::sha256;
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

    /// A check that reports the inflated length it was fed, as a finding's
    /// detail.
    #[derive(Default)]
    struct LengthCheck {
        seen: usize,
    }

    impl InflatedSink for LengthCheck {
        fn inflated(&mut self, bytes: &[u8]) {
            self.seen += bytes.len();
        }
    }

    impl ContentChecker for LengthCheck {
        fn restart(&mut self) {
            self.seen = 0;
        }

        fn finish(self: Box<Self>) -> Vec<Finding> {
            vec![Finding::new(
                crate::model::findings::FindingKind::AccountMismatch,
                "111111111111",
                "bucket",
                "key",
                self.seen.to_string(),
            )]
        }
    }

    fn length_check() -> Option<ContentCheck> {
        Some(Box::new(LengthCheck::default()))
    }

    fn seen_length(analysis: &Analysis) -> Option<usize> {
        analysis
            .content_findings
            .first()
            .and_then(|finding| finding.detail.parse().ok())
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
        assert_eq!(
            seen_length(&full),
            Some(zeros.len()),
            "the restarted check saw the content once, from its start"
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
            let fresh = crate::cloudtrail::gzip::inspect(raw, LIMITS);
            assert_eq!(reused.raw_sha256, fresh.raw_sha256);
            assert_eq!(
                seen_length(&reused),
                fresh.inflated.as_ref().ok().map(|i| i.len as usize)
            );
            assert_eq!(reused.content, fresh.inflated.map(|i| i.sha256));
        }
    }
}
