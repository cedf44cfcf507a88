//! The read-back check after a PUT: the archive must report the checksum,
//! the KMS key and the lock the copy asked for before the copy counts.

use base64::Engine as _;
use chrono::Duration;

use crate::seams::{Archive, ArchivedHead, PutSpec, UploadedPart};

use super::{meta, same_kms_key, CopyError};

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
