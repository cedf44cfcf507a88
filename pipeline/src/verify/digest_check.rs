//! The checks of one digest on its own (docs/cloudtrail-format.md §9.2 step 2): read its archived
//! copy, inflate exactly one gzip member, parse, compare with where it was
//! found, and verify CloudTrail's RSA signature over the original location.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use tracing::warn;

use crate::cloudtrail::digest::{sha256, verify_signature, Digest};
use crate::cloudtrail::gzip::{inflate_single_member, InflateLimits};
use crate::model::error::SeamError;
use crate::model::findings::FindingKind;
use crate::model::time::utc_text;
use crate::seams::ByteStream;

use super::inventory::{ChainId, DigestEntry};
use super::{Ctx, KeyFailure, OpError};
use crate::progress::validation::LinkInfo;

/// CloudTrail's digest metadata as preserved on the archived copy
/// ([`crate::copy::meta::PRESERVED`]).
const META_SIGNATURE: &str = "signature";
const META_SIGNATURE_ALGORITHM: &str = "signature-algorithm";
const META_BACKFILL_GENERATION: &str = "backfill-generation-timestamp";

const SIGNATURE_ALGORITHM: &str = "SHA256withRSA";
const HASH_ALGORITHM: &str = "SHA-256";

/// Why a digest fails its own checks: the finding to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub kind: FindingKind,
    pub detail: String,
}

/// A digest after its own checks.
#[derive(Debug, Clone)]
pub(crate) struct Examined {
    pub key: String,
    /// End time from the key.
    pub end: DateTime<Utc>,
    /// SHA-256 of the exact inflated bytes, when they inflated.
    pub content_sha256: Option<[u8; 32]>,
    /// The copy's `signature` metadata.
    pub signature: Option<String>,
    /// The parsed body, when it parsed (even if another check failed).
    pub digest: Option<Digest>,
    /// The first failed check, if any.
    pub problem: Option<Problem>,
    /// A check that could not be made yet (the public key could not be
    /// obtained, within the grace period): the digest is not judged in this
    /// run, and its claims do not count.
    pub pending: Option<OpError>,
}

impl Examined {
    fn failed(entry: &DigestEntry, kind: FindingKind, detail: String) -> Examined {
        Examined {
            key: entry.key.clone(),
            end: entry.end,
            content_sha256: None,
            signature: None,
            digest: None,
            problem: Some(Problem { kind, detail }),
            pending: None,
        }
    }

    /// Passed every check of its own: its claims (links, log files) count.
    pub fn valid(&self) -> bool {
        self.problem.is_none() && self.pending.is_none() && self.digest.is_some()
    }

    /// The signed body, only when valid.
    pub fn valid_digest(&self) -> Option<&Digest> {
        self.digest.as_ref().filter(|_| self.valid())
    }

    /// Whether the body read is this digest's own (parsed, and found where
    /// CloudTrail delivered it), so its log list is this window's list.
    pub fn lists_own_window(&self, chain: &ChainId) -> bool {
        self.digest.as_ref().is_some_and(|digest| {
            digest.digest_s3_bucket == chain.bucket && digest.digest_s3_object == self.key
        }) && !matches!(
            self.problem.as_ref().map(|problem| problem.kind),
            Some(FindingKind::ArchiveCopyInvalid)
        )
    }

    /// Start of the delivery window this digest covers.
    pub fn window_start(&self) -> DateTime<Utc> {
        match self.valid_digest() {
            Some(digest) => digest.digest_start_time.parsed.min(self.end),
            None => self.end - Duration::hours(1),
        }
    }

    pub fn link_info(&self) -> LinkInfo {
        LinkInfo {
            key: self.key.clone(),
            end: self.end,
            start: self
                .digest
                .as_ref()
                .map(|digest| digest.digest_start_time.parsed),
            sha256: self.content_sha256.map(hex::encode),
            signature: self.signature.clone(),
            valid: self.valid(),
        }
    }
}

/// Reads at most `cap` bytes; `Ok(None)` if the body is longer.
async fn read_capped(mut body: ByteStream, cap: usize) -> Result<Option<Vec<u8>>, SeamError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if out.len().saturating_add(chunk.len()) > cap {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// Reads the archived copy of `entry` and runs every check of its own.
/// `Err` only for operational failures (the archive or the key provider could
/// not answer); everything about the content is in [`Examined::problem`].
pub(crate) async fn examine_digest(
    ctx: &Ctx<'_>,
    chain: &ChainId,
    entry: &DigestEntry,
) -> Result<Examined, OpError> {
    let source = chain.source_ref(&entry.key);
    let archive_key = source.archive_key(&ctx.settings.archive_prefix);
    let reading = ctx.read_permit().await;
    let object = match ctx
        .archive
        .get(&archive_key, entry.version_id.as_deref())
        .await
    {
        Ok(object) => object,
        Err(error) if error.is_not_found() => {
            return Ok(Examined::failed(
                entry,
                FindingKind::ArchiveCopyInvalid,
                format!(
                    "the store records a verified copy of this digest at {archive_key} (version {}), but the archive has no such object",
                    entry.version_id.as_deref().unwrap_or("latest")
                ),
            ));
        }
        Err(error) => {
            return Err(OpError::new(
                &chain.account,
                format!("get s3://{}/{archive_key}", ctx.archive.bucket()),
                error,
            ))
        }
    };
    let metadata = object.meta.metadata;
    let read = read_capped(object.body, ctx.settings.max_digest_bytes)
        .await
        .map_err(|error| {
            OpError::new(
                &chain.account,
                format!("read s3://{}/{archive_key}", ctx.archive.bucket()),
                error,
            )
        })?;
    drop(reading);
    let Some(raw) = read else {
        return Ok(Examined::failed(
            entry,
            FindingKind::DigestMalformed,
            format!(
                "the digest object is larger than {} bytes; CloudTrail digests are a few kilobytes",
                ctx.settings.max_digest_bytes
            ),
        ));
    };
    if let Some(expected) = entry.raw_sha256 {
        let found = sha256(&raw);
        if found != expected {
            return Ok(Examined::failed(
                entry,
                FindingKind::ArchiveCopyInvalid,
                format!(
                    "the archived bytes at {archive_key} hash to SHA-256 {}, but the copy verified at copy time hashed to {}",
                    hex::encode(found),
                    hex::encode(expected)
                ),
            ));
        }
    }
    let mut examined = inspect_digest_bytes(
        chain,
        entry,
        &raw,
        &metadata,
        ctx.settings.max_digest_bytes,
        ctx.settings.inflate_limits,
    );
    if examined.problem.is_none() {
        match check_signature(ctx, chain, &examined, &metadata).await? {
            Signature::Checked(problem) => examined.problem = problem,
            Signature::Pending(error) => examined.pending = Some(error),
        }
    }
    Ok(examined)
}

/// Every check that needs no key: gzip, JSON, location, key name, algorithms,
/// metadata. Pure; never panics, whatever the bytes.
pub(crate) fn inspect_digest_bytes(
    chain: &ChainId,
    entry: &DigestEntry,
    raw: &[u8],
    metadata: &BTreeMap<String, String>,
    max_digest_bytes: usize,
    inflate_limits: InflateLimits,
) -> Examined {
    let signature = metadata
        .get(META_SIGNATURE)
        .filter(|value| !value.is_empty())
        .cloned();
    let limits = InflateLimits {
        max_inflated_bytes: inflate_limits
            .max_inflated_bytes
            .min(u64::try_from(max_digest_bytes).unwrap_or(u64::MAX)),
        max_ratio: inflate_limits.max_ratio,
    };
    let inflated = match inflate_single_member(raw, limits) {
        Ok(inflated) => inflated,
        Err(error) => {
            let mut examined = Examined::failed(
                entry,
                FindingKind::DigestMalformed,
                format!("the digest is not one clean gzip member: {error}"),
            );
            examined.signature = signature;
            return examined;
        }
    };
    let content_sha256 = sha256(&inflated);
    let mut examined = Examined {
        key: entry.key.clone(),
        end: entry.end,
        content_sha256: Some(content_sha256),
        signature,
        digest: None,
        problem: None,
        pending: None,
    };
    let digest = match Digest::parse(&inflated, max_digest_bytes) {
        Ok(digest) => digest,
        Err(error) => {
            examined.problem = Some(Problem {
                kind: FindingKind::DigestMalformed,
                detail: format!("the digest body cannot be read: {error}"),
            });
            return examined;
        }
    };
    if !digest.absent_fields.is_empty() {
        warn!(key = %entry.key, fields = ?digest.absent_fields, "digest lacks optional fields");
    }
    examined.problem = body_problem(
        chain,
        entry,
        &digest,
        metadata,
        examined.signature.is_some(),
    );
    examined.digest = Some(digest);
    examined
}

fn body_problem(
    chain: &ChainId,
    entry: &DigestEntry,
    digest: &Digest,
    metadata: &BTreeMap<String, String>,
    has_signature: bool,
) -> Option<Problem> {
    let problem = |kind, detail| Some(Problem { kind, detail });
    if digest.digest_s3_bucket != chain.bucket || digest.digest_s3_object != entry.key {
        return problem(
            FindingKind::DigestMoved,
            format!(
                "the digest says CloudTrail delivered it to s3://{}/{}, but its copy came from s3://{}/{}; a digest found elsewhere than where it was delivered vouches for nothing at that place",
                digest.digest_s3_bucket, digest.digest_s3_object, chain.bucket, entry.key
            ),
        );
    }
    if digest.aws_account_id != chain.account {
        return problem(
            FindingKind::AccountMismatch,
            format!(
                "the digest body names account {} but its key is in the folder of account {}",
                digest.aws_account_id, chain.account
            ),
        );
    }
    if digest.digest_end_time.parsed != entry.end {
        return problem(
            FindingKind::DigestMalformed,
            format!(
                "digestEndTime {} differs from the time {} in the digest's key",
                digest.digest_end_time.original,
                utc_text(entry.end)
            ),
        );
    }
    if digest.digest_start_time.parsed > digest.digest_end_time.parsed {
        return problem(
            FindingKind::DigestMalformed,
            format!(
                "digestStartTime {} is after digestEndTime {}",
                digest.digest_start_time.original, digest.digest_end_time.original
            ),
        );
    }
    if let Some(algorithm) = &digest.digest_signature_algorithm {
        if !algorithm.eq_ignore_ascii_case(SIGNATURE_ALGORITHM) {
            return problem(
                FindingKind::DigestMalformed,
                format!(
                    "digestSignatureAlgorithm is {algorithm:?}, expected {SIGNATURE_ALGORITHM}"
                ),
            );
        }
    }
    if let Some(previous) = &digest.previous {
        if !previous.hash_algorithm.eq_ignore_ascii_case(HASH_ALGORITHM) {
            return problem(
                FindingKind::DigestMalformed,
                format!(
                    "previousDigestHashAlgorithm is {:?}, expected {HASH_ALGORITHM}",
                    previous.hash_algorithm
                ),
            );
        }
    }
    if let Some((index, log)) = digest
        .log_files
        .iter()
        .enumerate()
        .find(|(_, log)| !log.hash_algorithm.eq_ignore_ascii_case(HASH_ALGORITHM))
    {
        return problem(
            FindingKind::DigestMalformed,
            format!(
                "logFiles entry {index} has hashAlgorithm {:?}, expected {HASH_ALGORITHM}",
                log.hash_algorithm
            ),
        );
    }
    if chain.backfill && !metadata.contains_key(META_BACKFILL_GENERATION) {
        return problem(
            FindingKind::DigestMalformed,
            format!("backfill digest without {META_BACKFILL_GENERATION} metadata"),
        );
    }
    if !has_signature {
        return problem(
            FindingKind::DigestSignatureInvalid,
            "signature metadata missing: the archived copy has no x-amz-meta-signature, so CloudTrail's signature cannot be checked (the copy preserves it; it was absent at the source)".to_string(),
        );
    }
    match metadata.get(META_SIGNATURE_ALGORITHM) {
        Some(algorithm) if algorithm.eq_ignore_ascii_case(SIGNATURE_ALGORITHM) => None,
        Some(algorithm) => problem(
            FindingKind::DigestSignatureInvalid,
            format!(
                "signature-algorithm metadata is {algorithm:?}, expected {SIGNATURE_ALGORITHM}"
            ),
        ),
        None => problem(
            FindingKind::DigestSignatureInvalid,
            "signature-algorithm metadata missing".to_string(),
        ),
    }
}

/// The outcome of the signature check.
enum Signature {
    /// Made: `None` when the signature verified, else the finding.
    Checked(Option<Problem>),
    /// The public key could not be obtained, within the grace period.
    Pending(OpError),
}

/// Looks the key up in the delivering region and verifies the signature. A
/// key provider that fails (not: answers that it knows no such key) leaves
/// the digest pending until `unreadable_grace` has passed since the region's
/// first failure, then the digest is `digest_public_key_unknown` with the
/// reason: a provider that never answers must not stop its chains forever.
async fn check_signature(
    ctx: &Ctx<'_>,
    chain: &ChainId,
    examined: &Examined,
    metadata: &BTreeMap<String, String>,
) -> Result<Signature, OpError> {
    let (Some(digest), Some(content_sha256), Some(signature)) = (
        examined.digest.as_ref(),
        examined.content_sha256.as_ref(),
        examined.signature.as_deref(),
    ) else {
        return Ok(Signature::Checked(None));
    };
    let fingerprint = digest.digest_public_key_fingerprint.as_str();
    let operation = format!("find public key {fingerprint} in {}", chain.region);
    let mut lookup = ctx
        .public_key(&chain.region, fingerprint, examined.end)
        .await;
    if matches!(lookup, Ok(None)) && chain.backfill {
        let generated = metadata
            .get(META_BACKFILL_GENERATION)
            .and_then(|text| parse_generation_time(text));
        if let Some(generated) = generated {
            lookup = ctx.public_key(&chain.region, fingerprint, generated).await;
        }
    }
    let key = match lookup {
        Ok(key) => key,
        Err(error) => {
            return match ctx.key_failure(&chain.account, &chain.region, operation, error)? {
                KeyFailure::Pending(error) => Ok(Signature::Pending(error)),
                KeyFailure::Expired(record) => Ok(Signature::Checked(Some(Problem {
                    kind: FindingKind::DigestPublicKeyUnknown,
                    detail: format!(
                        "the CloudTrail public key with fingerprint {fingerprint:?} could not be obtained for the delivering region {}: ListPublicKeys has failed since {} (last error: {}), longer than the grace period of {} hours, so this digest's signature cannot be checked",
                        chain.region,
                        utc_text(record.first_failed_at),
                        record.last_error,
                        ctx.settings.unreadable_grace.num_hours()
                    ),
                }))),
            };
        }
    };
    let Some(key) = key.filter(|key| key.fingerprint().eq_ignore_ascii_case(fingerprint)) else {
        return Ok(Signature::Checked(Some(Problem {
            kind: FindingKind::DigestPublicKeyUnknown,
            detail: format!(
                "no CloudTrail public key with fingerprint {fingerprint:?} is known for the delivering region {} (searched around {})",
                chain.region,
                utc_text(examined.end)
            ),
        })));
    };
    let message = digest.string_to_sign(content_sha256);
    match verify_signature(&key, message.as_bytes(), signature) {
        Ok(()) => Ok(Signature::Checked(None)),
        Err(error) => Ok(Signature::Checked(Some(Problem {
            kind: FindingKind::DigestSignatureInvalid,
            detail: format!(
                "CloudTrail's signature does not verify with key {fingerprint} over this digest's content (SHA-256 {}) and original location s3://{}/{}: {error}",
                hex::encode(content_sha256),
                digest.digest_s3_bucket,
                digest.digest_s3_object
            ),
        }))),
    }
}

/// `backfill-generation-timestamp`: its format is not documented (the AWS
/// CLI accepts any ISO 8601 through dateutil), so RFC 3339 and the common
/// ISO 8601 forms without a zone (read as UTC), with `T` or a space, with or
/// without fractional seconds, and the compact `YYYYMMDDTHHMMSSZ`.
fn parse_generation_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    let naive = text.strip_suffix('Z').unwrap_or(text);
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y%m%dT%H%M%S",
    ]
    .iter()
    .find_map(|format| chrono::NaiveDateTime::parse_from_str(naive, format).ok())
    .map(|time| time.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_times_in_the_usual_iso_8601_forms_are_read() {
        let expected = DateTime::parse_from_rfc3339("2026-03-01T10:20:30Z")
            .unwrap()
            .with_timezone(&Utc);
        for text in [
            "2026-03-01T10:20:30Z",
            "2026-03-01T11:20:30+01:00",
            "2026-03-01T10:20:30",
            "2026-03-01 10:20:30",
            "2026-03-01T10:20:30.000Z",
            " 2026-03-01T10:20:30Z ",
            "20260301T102030Z",
        ] {
            assert_eq!(parse_generation_time(text), Some(expected), "{text:?}");
        }
        for text in ["", "yesterday", "2026-13-01T00:00:00Z", "1700000000"] {
            assert_eq!(parse_generation_time(text), None, "{text:?}");
        }
    }
}
