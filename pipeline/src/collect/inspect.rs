//! What a copied file says about itself: its key name, its gzip framing and
//! the accounts its content claims, each checked against where it was found.

use crate::cloudtrail::claims::{BodyKind, ClaimScanner, Claims, ClaimsError};
use crate::cloudtrail::gzip::{InflateError, InflatedSink};
use crate::cloudtrail::keys::{Family, KeyError, TrailKey};
use crate::copy::{ContentCheck, ContentChecker};
use crate::model::findings::{Finding, FindingKind};

use super::CopyJob;

/// The check of a copied body's content: which accounts its records (or its
/// digest) claim, and whether a log is CloudTrail records JSON at all.
pub(super) fn claims_check(job: &CopyJob, parsed_key: &Result<TrailKey, KeyError>) -> ContentCheck {
    let member = job.scope.member_account_id.clone();
    let bucket = job.source.bucket.clone();
    let key = job.source.key.clone();
    let trail_key = parsed_key.as_ref().ok();
    let is_digest = trail_key.is_some_and(TrailKey::is_digest);
    let is_log_family = trail_key.is_some_and(|k| matches!(&k.family, Family::Log { .. }));
    let kind = if is_digest {
        BodyKind::Digest
    } else {
        BodyKind::Log
    };
    Box::new(ClaimsCheck {
        member,
        bucket,
        key,
        is_log_family,
        scanner: ClaimScanner::new(kind),
        kind,
    })
}

/// The claims check: a [`ClaimScanner`] fed as the copy inflates.
struct ClaimsCheck {
    member: String,
    bucket: String,
    key: String,
    is_log_family: bool,
    kind: BodyKind,
    scanner: ClaimScanner,
}

impl InflatedSink for ClaimsCheck {
    fn inflated(&mut self, bytes: &[u8]) {
        self.scanner.update(bytes);
    }
}

impl ContentChecker for ClaimsCheck {
    fn restart(&mut self) {
        self.scanner = ClaimScanner::new(self.kind);
    }

    fn finish(self: Box<Self>) -> Vec<Finding> {
        let ClaimsCheck {
            member,
            bucket,
            key,
            is_log_family,
            scanner,
            ..
        } = *self;
        content_claims(&member, &bucket, &key, is_log_family, scanner.finish())
    }
}

/// Findings about a freshly copied object: a name or content that claims
/// another account, or a body that cannot be CloudTrail output.
pub(super) fn inspect(
    job: &CopyJob,
    inflate_error: Option<&InflateError>,
    content_findings: Vec<Finding>,
    parsed_key: Result<TrailKey, KeyError>,
) -> Vec<Finding> {
    let member = job.scope.member_account_id.as_str();
    let bucket = job.source.bucket.as_str();
    let key = job.source.key.as_str();
    let mut findings = Vec::new();
    let trail_key: Option<TrailKey> = match parsed_key {
        Ok(trail_key) => Some(trail_key),
        Err(KeyError::AccountMismatch { folder, file }) => {
            findings.push(Finding::new(
                FindingKind::AccountMismatch,
                member,
                bucket,
                key,
                format!("file name claims account {file} inside the folder of account {folder}"),
            ));
            None
        }
        Err(error) => {
            findings.push(Finding::new(
                FindingKind::ObjectMalformed,
                member,
                bucket,
                key,
                format!("not a CloudTrail file name: {error}"),
            ));
            None
        }
    };
    let region = trail_key.as_ref().map(|k| k.region.clone());
    let is_digest = trail_key.as_ref().is_some_and(TrailKey::is_digest);
    if let Some(trail_key) = &trail_key {
        if trail_key.account_id != member {
            findings.push(Finding::new(
                FindingKind::AccountMismatch,
                member,
                bucket,
                key,
                format!(
                    "key claims account {} in the source of account {member}",
                    trail_key.account_id
                ),
            ));
        }
    }
    match inflate_error {
        None => {}
        Some(InflateError::TrailingData { extra_bytes }) if !is_digest => findings.push(Finding::new(
            FindingKind::LogFileTrailingData,
            member,
            bucket,
            key,
            format!("{extra_bytes} bytes follow the first gzip member; readers that inflate every member see content CloudTrail never hashed"),
        )),
        // Digest problems are judged by validation (digest_malformed).
        Some(_) if is_digest => {}
        Some(error) => findings.push(Finding::new(FindingKind::ObjectMalformed, member, bucket, key, format!("cannot be read as CloudTrail output: {error}; raw bytes archived as evidence"))),
    }
    // Account claims inside the content, found by `claims_check` while the
    // copy held the inflated bytes.
    findings.extend(content_findings);
    for finding in &mut findings {
        finding.region = region.clone();
    }
    findings
}

/// The findings about what a body claims (`claims`: the scan of its
/// inflated content).
pub(super) fn content_claims(
    member: &str,
    bucket: &str,
    key: &str,
    is_log_family: bool,
    claims: Result<Claims, ClaimsError>,
) -> Vec<Finding> {
    if let Ok(Claims::Digest(claim)) = claims {
        return match claim {
            Some(claimed) if claimed != member => vec![Finding::new(
                FindingKind::AccountMismatch,
                member,
                bucket,
                key,
                format!("digest body claims account {claimed} in the source of account {member}"),
            )],
            _ => Vec::new(),
        };
    }
    match claims {
        // Digest problems are judged by validation (digest_malformed).
        Ok(Claims::Digest(_)) => Vec::new(),
        Ok(Claims::Log(claimed)) => {
            let others: Vec<String> = claimed
                .into_iter()
                .filter(|account| account != member)
                .collect();
            if others.is_empty() {
                Vec::new()
            } else {
                vec![Finding::new(
                    FindingKind::AccountMismatch,
                    member,
                    bucket,
                    key,
                    format!(
                        "records claim recipient account(s) {} in the source of account {member}",
                        others.join(", ")
                    ),
                )]
            }
        }
        Err(error) if is_log_family => vec![Finding::new(
            FindingKind::ObjectMalformed,
            member,
            bucket,
            key,
            format!("log body is not CloudTrail records JSON: {error}"),
        )],
        Err(_) => Vec::new(),
    }
}
