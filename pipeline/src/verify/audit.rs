//! The full run's audit of the archive itself, one slice of a source at a
//! time (`slices.rs` lists the archived versions): re-read and re-hash every
//! non-digest object from the archive's bytes (digests are re-read by chain
//! validation), compare with what the store recorded at copy time, and cover
//! objects the store does not know.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::StreamExt;

use crate::cloudtrail::keys::parse_trail_key;
use crate::copy::{content_error_name, rehash_archived};
use crate::model::findings::{Finding, FindingKind};
use crate::model::object::{quarantine_prefix, ObjectRecord, SourceRef};
use crate::seams::ArchivedVersion;

use super::{Ctx, OpError, Scope};
use crate::model::object::ArchivedSource;

/// One non-digest archived object as re-hashed from the archive.
#[derive(Debug, Clone)]
pub(crate) struct AuditedObject {
    pub content_sha256: Option<[u8; 32]>,
    pub content_error: Option<String>,
}

/// The audit of one source. Only what differs from the store is held (the
/// memory of a full run follows the anomalies, not the archive): a
/// non-digest object whose archive bytes agree with its store record is
/// looked up in the store.
#[derive(Debug, Default)]
pub(crate) struct Audited {
    pub bucket: String,
    /// Non-digest objects by source key, hashed from archive bytes, whose
    /// content hash or content error differs from the store's record, or
    /// that the store does not record.
    pub objects: HashMap<String, AuditedObject>,
    /// Recorded objects the archive holds no version of.
    pub missing: HashSet<String>,
    /// Objects that could not be read (the log checks report an error for them).
    pub unreadable: HashSet<String>,
    /// Archived objects the store does not know: (source key, version id).
    pub archive_only: Vec<(String, String)>,
}

fn is_digest_key(key: &str) -> bool {
    parse_trail_key(key).is_ok_and(|key| key.is_digest())
}

/// The archived versions of a source's quarantined copies (keys the
/// archive cannot hold under their own name), listed once per source when a
/// slice first records one: quarantined keys are rare, and their folder is
/// not ordered like the source's keys.
#[derive(Default)]
pub(crate) struct QuarantineListing {
    /// By archive key; `None` until listed.
    versions: Option<HashMap<String, Vec<ArchivedVersion>>>,
    /// The listing failed (reported once): the slices that need it are not
    /// audited, and it is not asked again in this run.
    failed: bool,
}

impl QuarantineListing {
    /// The versions under `archive_key`, listing the folder first if need be;
    /// `None` when it cannot be listed (reported).
    async fn versions_of(
        &mut self,
        ctx: &Ctx<'_>,
        source: &ArchivedSource,
        archive_key: &str,
    ) -> Option<Vec<ArchivedVersion>> {
        if self.failed {
            return None;
        }
        if self.versions.is_none() {
            let reader = source.reader_account_id.as_str();
            let folder = format!(
                "{}{reader}/{}/",
                quarantine_prefix(&ctx.settings.archive_prefix),
                source.bucket
            );
            match ctx.archive.list_versions(&folder).await {
                Ok(listed) => {
                    let mut by_key: HashMap<String, Vec<ArchivedVersion>> = HashMap::new();
                    for version in listed {
                        by_key.entry(version.key.clone()).or_default().push(version);
                    }
                    self.versions = Some(by_key);
                }
                Err(error) => {
                    self.failed = true;
                    ctx.error(&OpError::new(
                        reader,
                        format!("list versions s3://{}/{folder}", ctx.archive.bucket()),
                        error,
                    ));
                    return None;
                }
            }
        }
        Some(
            self.versions
                .as_ref()
                .and_then(|versions| versions.get(archive_key))
                .cloned()
                .unwrap_or_default(),
        )
    }
}

/// Re-reads and re-hashes the archive of one slice of `source` (its store
/// `records` and its archived versions `by_key`, by source key). `None`
/// when the quarantine folder cannot be listed (reported).
pub(crate) async fn audit_slice(
    ctx: &Ctx<'_>,
    source: &ArchivedSource,
    scope: &Scope<'_>,
    records: &[(String, ObjectRecord)],
    mut by_key: BTreeMap<String, Vec<ArchivedVersion>>,
    quarantine: &tokio::sync::Mutex<QuarantineListing>,
) -> Option<Audited> {
    let reader = source.reader_account_id.as_str();
    // Recorded keys the archive holds under a quarantine key (too long, or
    // with control characters): their copies live in the quarantine folder.
    let prefix = ctx.settings.archive_prefix.as_str();
    for (key, _) in records {
        let source_ref = SourceRef {
            account_id: reader.to_string(),
            bucket: source.bucket.clone(),
            key: key.clone(),
        };
        if source_ref.quarantine(prefix).is_none() {
            continue;
        }
        let archive_key = source_ref.archive_key(prefix);
        let versions = quarantine
            .lock()
            .await
            .versions_of(ctx, source, &archive_key)
            .await?;
        if !versions.is_empty() {
            by_key.entry(key.clone()).or_default().extend(versions);
        }
    }
    let recorded: HashMap<&str, &ObjectRecord> = records
        .iter()
        .map(|(key, record)| (key.as_str(), record))
        .collect();
    let account_of = |key: &str| {
        parse_trail_key(key)
            .map(|trail_key| (trail_key.account_id, Some(trail_key.region)))
            .unwrap_or_else(|_| (reader.to_string(), None))
    };
    let in_scope = |key: &str| {
        let (account, region) = account_of(key);
        scope.covers(reader, &account, region.as_deref())
    };
    let archive_finding = |key: &str, detail: String| {
        let (account, region) = account_of(key);
        let archive_key = SourceRef {
            account_id: reader.to_string(),
            bucket: source.bucket.clone(),
            key: key.to_string(),
        }
        .archive_key(&ctx.settings.archive_prefix);
        Finding::new(
            FindingKind::ArchiveCopyInvalid,
            &account,
            &source.bucket,
            key,
            detail,
        )
        .with_region(region.as_deref())
        .with_archive_key(Some(&archive_key))
    };

    let mut audited = Audited {
        bucket: source.bucket.clone(),
        ..Audited::default()
    };
    // Recorded as verified, yet absent: the archive lost an object.
    for (key, _) in records {
        if !by_key.contains_key(key) && in_scope(key) && !is_digest_key(key) {
            audited.missing.insert(key.clone());
            ctx.finding(archive_finding(
                key,
                "the store records a verified copy, but the archive holds no version of it"
                    .to_string(),
            ));
        }
    }

    let mut jobs = Vec::new();
    for (key, versions) in &by_key {
        if !in_scope(key) {
            continue;
        }
        let record = recorded.get(key.as_str()).copied();
        let chosen = record
            .and_then(|record| record.archive_version_id.as_deref())
            .and_then(|id| versions.iter().find(|version| version.version_id == id))
            .or_else(|| versions.iter().find(|version| version.is_latest))
            .or_else(|| versions.last());
        let Some(chosen) = chosen else {
            continue;
        };
        if record.is_none() {
            audited
                .archive_only
                .push((key.clone(), chosen.version_id.clone()));
        }
        if is_digest_key(key) {
            continue;
        }
        jobs.push((key.as_str(), chosen, record));
    }

    // Each re-hash is judged as it arrives: the outcomes of a whole source
    // are never held at once.
    let mut results = futures::stream::iter(jobs)
        .map(|(key, version, record)| async move {
            let _reading = ctx.read_permit().await;
            let outcome = rehash_archived(
                ctx.archive,
                &version.key,
                &version.version_id,
                ctx.settings.inflate_limits,
            )
            .await;
            (key, version, record, outcome)
        })
        .buffer_unordered(ctx.settings.concurrency.max(1));
    while let Some((key, version, record, outcome)) = results.next().await {
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                ctx.error(&OpError::new(
                    &account_of(key).0,
                    format!("get s3://{}/{}", ctx.archive.bucket(), version.key),
                    error,
                ));
                audited.unreadable.insert(key.to_string());
                continue;
            }
        };
        if let Some(record) = record {
            if outcome.raw_sha256 != record.raw_sha256 {
                ctx.finding(archive_finding(
                    key,
                    format!(
                        "archive version {} hashes to SHA-256 {}, but the copy verified at copy time hashed to {}",
                        version.version_id,
                        hex::encode(outcome.raw_sha256),
                        hex::encode(record.raw_sha256)
                    ),
                ));
            }
        }
        let (content_sha256, content_error) = match &outcome.inflated {
            Ok(inflated) => (Some(inflated.sha256), None),
            Err(error) => (None, Some(content_error_name(error).to_string())),
        };
        let agrees = record.is_some_and(|record| {
            record.content_sha256 == content_sha256 && record.content_error == content_error
        });
        if !agrees {
            audited.objects.insert(
                key.to_string(),
                AuditedObject {
                    content_sha256,
                    content_error,
                },
            );
        }
    }
    drop(results);
    debug_assert!(audited.objects.len() + audited.unreadable.len() <= by_key.len());
    Some(audited)
}
