//! Source expiry (`[retention] source_retention_days`, run by `trailvault
//! retention`): deletes trail files from the member accounts' buckets once
//! the archive holds them and validation stands behind them. Off unless
//! configured; a dry run (the plan) unless `--apply`; and it needs a member
//! role that may delete (the member template's `AllowSourceExpiry`).
//!
//! A source object is deleted only when all of these hold:
//!
//! 1. **Old enough**: the time in its key name (a log file's delivery minute,
//!    a digest's end) is before `now − source_retention_days`.
//! 2. **Archived**: the store has its verified record (written only after the
//!    archive confirmed the copy), and the source's current listing shows the
//!    record's ETag: never delete content that differs from what was archived.
//! 3. **Chain-validated**: verify vouched for exactly the archived content —
//!    a digest validated cleanly (valid on its own, no finding on its links),
//!    or a log file such a digest lists with the hash the archived copy has
//!    (`validated/…` state, see `progress/validation.rs`). The vouched hash must equal
//!    the record's content hash, so a later copy with other content is not
//!    covered by an earlier validation.
//! 4. **No finding** names the object (a modified source, a broken archive
//!    copy, a link mismatch...): evidence stays where it is.
//!
//! Everything else is kept and counted by [`KeepReason`]. Which objects are
//! looked at comes from the store (source objects it has no record of are
//! never deleted; those seen in a listed partition count as `not_archived`).
//! Only day partitions holding a candidate are listed, once each; a
//! partition whose every record was deleted (or was already gone), with
//! nothing unarchived beside them, is marked
//! expired (`progress::expired`) and not listed again for
//! the records copied before the mark.
//!
//! The deletion is a plain `DeleteObject` of the current version, not
//! conditional on the ETag just listed: content written over a file between
//! the listing and the deletion (milliseconds; CloudTrail never overwrites)
//! would go with it. The member template grants `s3:DeleteObject` only, never
//! `s3:DeleteObjectVersion`, so in a versioned trail bucket nothing is
//! destroyed: the data stays behind a delete marker for the bucket's own
//! lifecycle rules.
//!
//! A deletion refused with AccessDenied is reported once per account, with a
//! hint, and that account's other deletions are not attempted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cloudtrail::keys::{parse_trail_key, FileName, TrailKey};
use crate::model::error::SeamError;
use crate::model::object::ObjectRecord;
use crate::model::report::OperationError;
use crate::progress::expired::ExpiredPartition;
use crate::progress::validation::{evidence_matches, read_validated, validated_id};
use crate::seams::{ProgressStore, TrailSource};

/// What the operator is told when a member role may not delete.
pub const DELETE_DENIED_HINT: &str = "the member role may not delete trail files: deploy infra/cloudformation/member-account.json in this account with AllowSourceExpiry=true, or unset [retention] source_retention_days; no other deletion was attempted in this account";

/// Partitions worked on at once (each is one LIST, then its deletions).
const MAX_PARTITION_CONCURRENCY: usize = 16;

/// How an expiry run behaves; fixed for a run.
#[derive(Debug, Clone)]
pub struct ExpirySettings {
    pub source_retention_days: u32,
    /// Partitions worked on at once (capped at 16).
    pub concurrency: usize,
    /// Delete; otherwise only plan.
    pub apply: bool,
}

/// One place trail files are delivered, read (and deleted) with one member
/// session: the records under `root` of `reader_account_id`'s bucket.
pub struct ExpiryScope<'a> {
    /// The account whose role reads the bucket (the store's namespace).
    pub reader_account_id: String,
    pub source: &'a dyn TrailSource,
    /// `[<prefix>/]AWSLogs/[<o-id>/]<member account>/`; empty for everything.
    pub root: String,
    /// Only these delivering regions; empty for all.
    pub regions: Vec<String>,
}

/// Why a source object old enough to be considered was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepReason {
    /// Named at or after the cutoff.
    TooYoung,
    /// At the source without a verified record in the store (counted for
    /// partitions that were listed).
    NotArchived,
    /// The source's ETag differs from the archived copy's: not what was archived.
    SourceChanged,
    /// No cleanly validated digest vouches for the archived content: never
    /// listed by one, listed with another hash, a digest with a problem of its
    /// own or on its links, an Insights or non-CloudTrail file.
    NotValidated,
    /// A finding names the object.
    OpenFinding,
    /// Its partition could not be listed, so the source's ETag is unknown.
    Unconfirmed,
    /// The member role may not delete (reported once per account).
    DeleteDenied,
    /// The deletion failed (an operational error says why).
    DeleteFailed,
}

impl KeepReason {
    pub fn as_str(self) -> &'static str {
        match self {
            KeepReason::TooYoung => "too_young",
            KeepReason::NotArchived => "not_archived",
            KeepReason::SourceChanged => "source_changed",
            KeepReason::NotValidated => "not_validated",
            KeepReason::OpenFinding => "open_finding",
            KeepReason::Unconfirmed => "unconfirmed",
            KeepReason::DeleteDenied => "delete_denied",
            KeepReason::DeleteFailed => "delete_failed",
        }
    }
}

/// One source object deleted, or planned to be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SourceDeletion {
    /// The account whose role deletes it (the reading account).
    pub account_id: String,
    pub bucket: String,
    pub key: String,
    /// Deleted (with `--apply`); otherwise planned.
    pub applied: bool,
}

/// What an expiry run found and did.
#[derive(Debug, Clone, Serialize)]
pub struct ExpiryOutcome {
    pub source_retention_days: u32,
    /// Files named before this are old enough.
    pub cutoff: DateTime<Utc>,
    /// Source objects deleted in this run.
    pub deleted: u64,
    /// Old enough, archived and validated, but no longer at the source
    /// (deleted by an earlier run, or by someone else).
    pub already_gone: u64,
    /// Source objects kept, by reason.
    pub kept: BTreeMap<KeepReason, u64>,
    /// The plan (dry run) or the deletions made, sorted.
    pub changes: Vec<SourceDeletion>,
    #[serde(skip)]
    pub errors: Vec<OperationError>,
}

impl ExpiryOutcome {
    pub fn new(settings: &ExpirySettings, now: DateTime<Utc>) -> ExpiryOutcome {
        ExpiryOutcome {
            source_retention_days: settings.source_retention_days,
            cutoff: cutoff(now, settings.source_retention_days),
            deleted: 0,
            already_gone: 0,
            kept: BTreeMap::new(),
            changes: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn keep(&mut self, reason: KeepReason, count: u64) {
        if count > 0 {
            *self.kept.entry(reason).or_default() += count;
        }
    }

    fn merge(&mut self, other: ExpiryOutcome) {
        self.deleted += other.deleted;
        self.already_gone += other.already_gone;
        for (reason, count) in other.kept {
            self.keep(reason, count);
        }
        self.changes.extend(other.changes);
        self.errors.extend(other.errors);
    }
}

/// Files named before this time are old enough to be deleted.
pub fn cutoff(now: DateTime<Utc>, source_retention_days: u32) -> DateTime<Utc> {
    now - Duration::days(i64::from(source_retention_days))
}

/// The time a key's name gives the file: a log file's delivery minute, a
/// digest's end.
pub fn named_time(key: &TrailKey) -> DateTime<Utc> {
    match &key.file {
        FileName::Log { delivered_at, .. } => delivered_at.and_utc(),
        FileName::Digest { end_time, .. } => end_time.and_utc(),
    }
}

/// One record of a partition, old enough.
struct Entry {
    key: String,
    record: ObjectRecord,
    parsed: TrailKey,
}

/// The records of one day partition of one scope: those old enough, and how
/// many are too young.
struct Partition<'s> {
    scope: &'s ExpiryScope<'s>,
    prefix: String,
    entries: Vec<Entry>,
    young: u64,
}

/// What every partition task shares.
struct Shared<'a> {
    store: &'a dyn ProgressStore,
    settings: &'a ExpirySettings,
    now: DateTime<Utc>,
    cutoff: DateTime<Utc>,
    cancel: &'a CancellationToken,
    /// (bucket, key) of every recorded finding.
    findings: HashSet<(String, String)>,
    /// Accounts whose role refused a deletion this run.
    denied: Mutex<BTreeSet<String>>,
}

/// Deletes (with `apply`, otherwise plans) the source objects of `scopes`
/// that are old enough, archived unchanged and chain-validated; see the
/// module docs. Stops taking partitions when `cancel` fires.
pub async fn expire(
    _lock_confirmed: &super::LockConfirmed,
    scopes: &[ExpiryScope<'_>],
    store: &dyn ProgressStore,
    settings: &ExpirySettings,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> ExpiryOutcome {
    let mut outcome = ExpiryOutcome::new(settings, now);
    let mut findings = HashSet::new();
    let read = store.for_each_finding(&mut |finding| {
        findings.insert((finding.bucket, finding.key));
    });
    match read {
        Ok(()) => {}
        Err(error) => {
            // Without the findings nothing may be judged deletable.
            outcome.errors.push(OperationError {
                account_id: "-".to_string(),
                operation: "read findings (source expiry)".to_string(),
                message: error.to_string(),
            });
            return outcome;
        }
    };
    let shared = Shared {
        store,
        settings,
        now,
        cutoff: outcome.cutoff,
        cancel,
        findings,
        denied: Mutex::default(),
    };

    // One scope at a time: its records are in memory while it is worked on.
    let concurrency = settings.concurrency.clamp(1, MAX_PARTITION_CONCURRENCY);
    let mut seen: HashSet<(&str, &str, &str)> = HashSet::new();
    for scope in scopes {
        if cancel.is_cancelled() {
            break;
        }
        let bucket = scope.source.bucket();
        if !seen.insert((&scope.reader_account_id, bucket, &scope.root)) {
            continue;
        }
        let records = match store.objects_under(&scope.reader_account_id, bucket, &scope.root) {
            Ok(records) => records,
            Err(error) => {
                outcome.errors.push(OperationError {
                    account_id: scope.reader_account_id.clone(),
                    operation: format!("read_store s3://{bucket}/{}", scope.root),
                    message: error.to_string(),
                });
                continue;
            }
        };
        let mut partitions: BTreeMap<String, Partition<'_>> = BTreeMap::new();
        for (key, record) in records {
            let Ok(parsed) = parse_trail_key(&key) else {
                // Not a CloudTrail name: no digest can vouch for it.
                outcome.keep(KeepReason::NotValidated, 1);
                continue;
            };
            if !scope.regions.is_empty() && !scope.regions.contains(&parsed.region) {
                continue;
            }
            let prefix = parsed.partition_prefix();
            let partition = partitions
                .entry(prefix.clone())
                .or_insert_with(|| Partition {
                    scope,
                    prefix,
                    entries: Vec::new(),
                    young: 0,
                });
            let named = named_time(&parsed);
            if named >= shared.cutoff {
                partition.young += 1;
            } else {
                partition.entries.push(Entry {
                    key,
                    record,
                    parsed,
                });
            }
        }
        let shared_ref = &shared;
        let results: Vec<ExpiryOutcome> = futures::stream::iter(partitions.into_values())
            .take_while(|_| std::future::ready(!cancel.is_cancelled()))
            .map(|partition| expire_partition(shared_ref, partition))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for result in results {
            outcome.merge(result);
        }
    }
    outcome.changes.sort();
    info!(
        cutoff = %outcome.cutoff,
        planned = outcome.changes.len(),
        deleted = outcome.deleted,
        already_gone = outcome.already_gone,
        kept = outcome.kept.values().sum::<u64>(),
        apply = settings.apply,
        "source expiry"
    );
    outcome
}

async fn expire_partition(shared: &Shared<'_>, partition: Partition<'_>) -> ExpiryOutcome {
    let mut outcome = ExpiryOutcome::new(shared.settings, shared.now);
    let scope = partition.scope;
    let reader = scope.reader_account_id.as_str();
    let bucket = scope.source.bucket();
    let store_error = |outcome: &mut ExpiryOutcome, operation: String, error: SeamError| {
        outcome.errors.push(OperationError {
            account_id: reader.to_string(),
            operation,
            message: error.to_string(),
        });
    };

    // Store side: age, earlier runs, findings, validation.
    outcome.keep(KeepReason::TooYoung, partition.young);
    if partition.entries.is_empty() {
        return outcome;
    }
    // Every record ends deleted or gone: the partition can be marked.
    let mut complete = partition.young == 0;
    let marker = ExpiredPartition::new(reader, bucket, &partition.prefix);
    let done_at = match marker.done_at(shared.store) {
        Ok(done_at) => done_at,
        Err(error) => {
            store_error(&mut outcome, format!("read state {}", marker.name()), error);
            return outcome;
        }
    };
    let mut evidence: Option<(String, BTreeMap<String, String>)> = None;
    let mut candidates: Vec<&Entry> = Vec::new();
    for entry in &partition.entries {
        if done_at.is_some_and(|done| entry.record.copied_at <= done) {
            outcome.already_gone += 1;
            continue;
        }
        if shared
            .findings
            .contains(&(bucket.to_string(), entry.key.clone()))
        {
            outcome.keep(KeepReason::OpenFinding, 1);
            complete = false;
            continue;
        }
        let (name, id) = validated_id(reader, bucket, &entry.parsed);
        if evidence.as_ref().is_none_or(|(loaded, _)| *loaded != name) {
            match read_validated(shared.store, &name) {
                Ok(files) => evidence = Some((name, files)),
                Err(error) => {
                    store_error(&mut outcome, format!("read state {name}"), error);
                    return outcome;
                }
            }
        }
        let vouched = evidence
            .as_ref()
            .and_then(|(_, files)| files.get(&id))
            .is_some_and(|hash| {
                entry
                    .record
                    .content_sha256
                    .is_some_and(|content| evidence_matches(hash, &content))
            });
        if vouched {
            candidates.push(entry);
        } else {
            outcome.keep(KeepReason::NotValidated, 1);
            complete = false;
        }
    }
    if candidates.is_empty() {
        return outcome;
    }

    // Source side: the current listing must show the archived ETag.
    let listed = match scope.source.list_all(&partition.prefix).await {
        Ok(listed) => listed,
        Err(error) => {
            outcome.errors.push(OperationError {
                account_id: reader.to_string(),
                operation: format!("list s3://{bucket}/{}", partition.prefix),
                message: error.to_string(),
            });
            outcome.keep(KeepReason::Unconfirmed, candidates.len() as u64);
            return outcome;
        }
    };
    let recorded: HashSet<&str> = partition.entries.iter().map(|e| e.key.as_str()).collect();
    let unarchived = listed
        .iter()
        .filter(|object| !recorded.contains(object.key.as_str()))
        .filter(|object| {
            parse_trail_key(&object.key).map_or(true, |key| named_time(&key) < shared.cutoff)
        })
        .count();
    outcome.keep(KeepReason::NotArchived, unarchived as u64);
    // A record may still appear for those (a copy adopted after a crash keeps
    // its earlier copy time): no marker may cover them.
    complete &= unarchived == 0;
    let etags: HashMap<&str, &str> = listed
        .iter()
        .map(|object| (object.key.as_str(), object.etag.as_str()))
        .collect();
    let mut doomed: Vec<&Entry> = Vec::new();
    for entry in candidates {
        match etags.get(entry.key.as_str()) {
            None => outcome.already_gone += 1,
            Some(etag) if *etag != entry.record.etag => {
                outcome.keep(KeepReason::SourceChanged, 1);
                complete = false;
            }
            Some(_) => doomed.push(entry),
        }
    }
    let change = |entry: &Entry, applied: bool| SourceDeletion {
        account_id: reader.to_string(),
        bucket: bucket.to_string(),
        key: entry.key.clone(),
        applied,
    };
    if !shared.settings.apply {
        outcome
            .changes
            .extend(doomed.iter().map(|entry| change(entry, false)));
        return outcome;
    }

    for entry in doomed {
        if shared.cancel.is_cancelled() {
            complete = false;
            break;
        }
        if lock(&shared.denied).contains(reader) {
            outcome.keep(KeepReason::DeleteDenied, 1);
            complete = false;
            continue;
        }
        match scope.source.delete(&entry.key).await {
            Ok(()) => {
                outcome.deleted += 1;
                outcome.changes.push(change(entry, true));
            }
            Err(SeamError::AccessDenied(message)) => {
                outcome.keep(KeepReason::DeleteDenied, 1);
                complete = false;
                if lock(&shared.denied).insert(reader.to_string()) {
                    warn!(account_id = reader, %message, "source expiry: the member role may not delete");
                    outcome.errors.push(OperationError {
                        account_id: reader.to_string(),
                        operation: format!("s3:DeleteObject s3://{bucket}/{}", entry.key),
                        message: format!("access denied: {message}; {DELETE_DENIED_HINT}"),
                    });
                }
            }
            Err(error) => {
                outcome.keep(KeepReason::DeleteFailed, 1);
                complete = false;
                let region = crate::cloudtrail::keys::parse_trail_key(&entry.key)
                    .map_or_else(|_| "-".to_string(), |key| key.region);
                warn!(account_id = reader, region, key = %entry.key, %error, "source expiry: delete failed");
                outcome.errors.push(OperationError {
                    account_id: reader.to_string(),
                    operation: format!("s3:DeleteObject s3://{bucket}/{}", entry.key),
                    message: error.to_string(),
                });
            }
        }
    }
    if complete {
        if let Err(error) = marker.mark(shared.store, shared.now) {
            store_error(
                &mut outcome,
                format!("write state {}", marker.name()),
                error,
            );
        }
    }
    outcome
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::Ordering;

    use chrono::TimeZone;

    use super::*;
    use crate::model::findings::{Finding, FindingKind};
    use crate::testsuite::chains::*;

    const HOURS: usize = 6;

    fn first_end() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 5, 4).unwrap()
    }

    /// When verify runs: half an hour after the newest digest.
    fn verified_at() -> DateTime<Utc> {
        first_end() + Duration::hours(HOURS as i64 - 1) + Duration::minutes(30)
    }

    /// Long after everything: every file is old enough for one day.
    fn later() -> DateTime<Utc> {
        verified_at() + Duration::days(10)
    }

    fn settings(days: u32, apply: bool) -> ExpirySettings {
        ExpirySettings {
            source_retention_days: days,
            concurrency: 4,
            apply,
        }
    }

    async fn expire_world(
        world: &World,
        days: u32,
        apply: bool,
        now: DateTime<Utc>,
    ) -> ExpiryOutcome {
        let scopes = [ExpiryScope {
            reader_account_id: READER.into(),
            source: world.source.as_ref(),
            root: String::new(),
            regions: Vec::new(),
        }];
        expire(
            &crate::retention::LockConfirmed::for_tests(),
            &scopes,
            &world.store,
            &settings(days, apply),
            now,
            &CancellationToken::new(),
        )
        .await
    }

    /// One organization-trail chain of six hours (hour 3 empty, the others
    /// with two log files each), in the source.
    fn world_with(chain: &[SimDigest]) -> World {
        let world = World::new(verified_at());
        for digest in chain {
            world.put_digest(digest);
        }
        world
    }

    fn chain() -> Vec<SimDigest> {
        build_chain(&Trail::org("us-east-1"), first_end(), HOURS)
    }

    async fn verified(world: &World) {
        let outcome = world.run(&crate::testsuite::chains::settings()).await;
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    }

    fn keys_of(digests: &[SimDigest]) -> BTreeSet<String> {
        digests
            .iter()
            .flat_map(|digest| {
                std::iter::once(digest.key.clone()).chain(digest.logs.iter().map(|l| l.key.clone()))
            })
            .collect()
    }

    fn planned(outcome: &ExpiryOutcome) -> BTreeSet<String> {
        outcome.changes.iter().map(|c| c.key.clone()).collect()
    }

    fn kept(outcome: &ExpiryOutcome, reason: KeepReason) -> u64 {
        outcome.kept.get(&reason).copied().unwrap_or(0)
    }

    #[test]
    fn the_age_comes_from_the_name_and_the_cutoff_from_the_setting() {
        let trail = Trail::org("us-east-1");
        let delivered = Utc.with_ymd_and_hms(2026, 3, 1, 23, 50, 0).unwrap();
        let log = parse_trail_key(&trail.log_key(delivered, "ABCDEFGHIJKLMNOP")).unwrap();
        assert_eq!(named_time(&log), delivered);
        let end = Utc.with_ymd_and_hms(2026, 3, 2, 0, 5, 4).unwrap();
        let digest = parse_trail_key(&trail.digest_key(end, false)).unwrap();
        assert_eq!(named_time(&digest), end);
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
        assert_eq!(cutoff(now, 0), now);
        assert_eq!(
            cutoff(now, 9),
            Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
        );
    }

    #[tokio::test]
    async fn only_old_archived_unchanged_validated_files_are_deleted() {
        let chain = chain();
        let trail = Trail::org("us-east-1");
        let world = world_with(&chain);
        // Archived but listed by no digest: an Insights file.
        let insight_key = chain[1].logs[0]
            .key
            .replace("/CloudTrail/", "/CloudTrail-Insight/")
            .replace("_CloudTrail_", "_CloudTrail-Insight_");
        world.source.put(&insight_key, gzip(b"{}"), &[]);
        world.archive_all().await;
        verified(&world).await;
        // At the source but never archived.
        let planted = trail.log(chain[1].end - Duration::minutes(20), "PLANTED000000000");
        world.put_log(&planted);
        // Changed at the source after it was archived.
        let changed = chain[1].logs[0].key.clone();
        world.source.put(&changed, gzip(b"{\"Records\":[]}"), &[]);
        // Named by a finding.
        let flagged = chain[2].logs[0].key.clone();
        world
            .store
            .record_finding(Finding::new(
                FindingKind::LogFileHashMismatch,
                ACCOUNT,
                BUCKET,
                &flagged,
                "test".into(),
            ))
            .unwrap();

        // Cutoff at the end of digest 4: digests 4 and 5 and the logs of
        // hour 5 are too young; the logs of hour 4 are old enough.
        let now = chain[4].end + Duration::days(1);
        let before = world.source.keys();
        let plan = expire_world(&world, 1, false, now).await;
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        let mut expected = keys_of(&chain[..4]);
        expected.extend(chain[4].logs.iter().map(|log| log.key.clone()));
        expected.remove(&changed);
        expected.remove(&flagged);
        assert_eq!(planned(&plan), expected);
        assert_eq!(plan.changes.len(), 10);
        assert!(plan.changes.iter().all(|change| !change.applied));
        assert_eq!(plan.deleted, 0);
        assert_eq!(kept(&plan, KeepReason::TooYoung), 4, "{:?}", plan.kept);
        assert_eq!(kept(&plan, KeepReason::SourceChanged), 1);
        assert_eq!(kept(&plan, KeepReason::OpenFinding), 1);
        assert_eq!(
            kept(&plan, KeepReason::NotValidated),
            1,
            "the Insights file"
        );
        assert_eq!(kept(&plan, KeepReason::NotArchived), 1, "the planted file");
        // A dry run deletes nothing.
        assert_eq!(world.source.keys(), before);
        assert_eq!(world.source.deletes.load(Ordering::Relaxed), 0);

        let archived = world.archive.keys();
        let applied = expire_world(&world, 1, true, now).await;
        assert!(applied.errors.is_empty(), "{:?}", applied.errors);
        assert_eq!(applied.deleted, 10);
        assert_eq!(planned(&applied), expected);
        assert!(applied.changes.iter().all(|change| change.applied));
        let remaining: BTreeSet<String> = world.source.keys().into_iter().collect();
        let before: BTreeSet<String> = before.into_iter().collect();
        assert_eq!(
            remaining,
            before
                .difference(&expected)
                .cloned()
                .collect::<BTreeSet<_>>()
        );
        for key in [
            &changed,
            &flagged,
            &insight_key,
            &planted.key,
            &chain[4].key,
        ] {
            assert!(remaining.contains(key), "{key} must stay");
        }
        // The archive is not touched.
        assert_eq!(world.archive.keys(), archived);

        // Nothing more to delete; the deleted files are gone.
        let again = expire_world(&world, 1, true, now).await;
        assert_eq!(again.deleted, 0);
        assert_eq!(again.already_gone, 10);
        assert!(again.changes.is_empty());
    }

    #[tokio::test]
    async fn fully_expired_partitions_are_not_listed_again() {
        let chain = chain();
        let world = world_with(&chain);
        world.archive_all().await;
        verified(&world).await;
        let all = keys_of(&chain);
        let applied = expire_world(&world, 1, true, later()).await;
        assert!(applied.errors.is_empty(), "{:?}", applied.errors);
        assert_eq!(applied.deleted as usize, all.len());
        assert!(applied.kept.is_empty(), "{:?}", applied.kept);
        assert!(world.source.keys().is_empty());
        let lists = world.source.lists.load(Ordering::Relaxed);
        let again = expire_world(&world, 1, true, later()).await;
        assert_eq!(again.already_gone as usize, all.len());
        assert_eq!(again.deleted, 0);
        assert_eq!(
            world.source.lists.load(Ordering::Relaxed),
            lists,
            "marked partitions are not listed"
        );
    }

    #[tokio::test]
    async fn nothing_is_deleted_before_validation_or_after_the_content_changed() {
        let chain = chain();
        let world = world_with(&chain);
        world.archive_all().await;
        // Archived, not validated yet.
        let plan = expire_world(&world, 1, false, later()).await;
        assert!(plan.changes.is_empty());
        assert_eq!(
            kept(&plan, KeepReason::NotValidated) as usize,
            keys_of(&chain).len()
        );

        verified(&world).await;
        // The source object changes and is archived again (as collect does):
        // the listing and the record agree, but validation vouched for the
        // earlier content.
        let log = &chain[0].logs[0];
        world.source.put(&log.key, gzip(b"{\"Records\":[{}]}"), &[]);
        world.archive_key(&log.key).await;
        let plan = expire_world(&world, 1, false, later()).await;
        assert!(!planned(&plan).contains(&log.key));
        assert_eq!(kept(&plan, KeepReason::NotValidated), 1);
        assert_eq!(plan.changes.len(), keys_of(&chain).len() - 1);
    }

    #[tokio::test]
    async fn an_invalid_digest_vouches_for_nothing() {
        let chain = chain();
        let world = world_with(&chain);
        // Digest 2 without its signature metadata: invalid.
        world.source.put(&chain[2].key, chain[2].raw.clone(), &[]);
        world.archive_all().await;
        let outcome = world.run(&crate::testsuite::chains::settings()).await;
        assert_eq!(outcome.findings.len(), 1, "{:?}", outcome.findings);
        let plan = expire_world(&world, 1, false, later()).await;
        let mut expected = keys_of(&chain);
        expected.remove(&chain[2].key);
        for log in &chain[2].logs {
            expected.remove(&log.key);
        }
        assert_eq!(planned(&plan), expected);
        assert_eq!(kept(&plan, KeepReason::OpenFinding), 1);
        assert_eq!(kept(&plan, KeepReason::NotValidated), 2);
    }

    #[tokio::test]
    async fn a_digest_found_wanting_later_withdraws_what_it_vouched_for() {
        let mut chain = chain();
        // The source holds an authentic-looking digest 3 whose content is not
        // what digest 4 chained.
        let original = chain.clone();
        edit_and_resign(&mut chain[3], |object| {
            object.insert("extra".into(), 1.into());
        });
        let world = world_with(&chain);
        // First only digests 4 and 5 are archived: 4 starts the archive's
        // coverage, nothing to link to, clean.
        let early: Vec<&str> = chain[..4].iter().map(|d| d.key.as_str()).collect();
        world.archive_all_except(&early).await;
        verified(&world).await;
        let plan = expire_world(&world, 1, false, later()).await;
        let vouched = keys_of(&original[4..]);
        assert_eq!(planned(&plan), vouched);

        // The earlier digests arrive: digest 4's link to digest 3 fails.
        world.archive_all().await;
        let outcome = world.run(&crate::testsuite::chains::settings()).await;
        let kinds: Vec<(FindingKind, String)> = outcome
            .findings
            .iter()
            .map(|f| (f.kind, f.key.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![(FindingKind::DigestLinkMismatch, chain[4].key.clone())]
        );
        let plan = expire_world(&world, 1, false, later()).await;
        let planned = planned(&plan);
        assert!(!planned.contains(&chain[4].key));
        for log in &chain[4].logs {
            assert!(!planned.contains(&log.key), "{} was withdrawn", log.key);
        }
        assert!(planned.contains(&chain[5].key) && planned.contains(&chain[3].key));
        assert_eq!(kept(&plan, KeepReason::NotValidated), 2);
        assert_eq!(kept(&plan, KeepReason::OpenFinding), 1);
    }

    #[tokio::test]
    async fn a_role_that_may_not_delete_is_reported_once_per_account() {
        let chain = chain();
        let world = world_with(&chain);
        world.archive_all().await;
        verified(&world).await;
        world
            .source
            .fail_deletes(SeamError::AccessDenied("DeleteObject: AccessDenied".into()));
        let before = world.source.keys();
        let outcome = expire_world(&world, 1, true, later()).await;
        assert_eq!(outcome.errors.len(), 1, "{:?}", outcome.errors);
        assert_eq!(outcome.errors[0].account_id, READER);
        assert!(outcome.errors[0].message.contains("AllowSourceExpiry"));
        assert_eq!(outcome.deleted, 0);
        assert!(outcome.changes.is_empty());
        assert_eq!(
            kept(&outcome, KeepReason::DeleteDenied) as usize,
            keys_of(&chain).len()
        );
        assert!(world.source.deletes.load(Ordering::Relaxed) <= 2);
        assert_eq!(world.source.keys(), before);

        // Any other failure is an error per object; the rest goes on.
        world
            .source
            .fail_deletes(SeamError::Permanent("boom".into()));
        let outcome = expire_world(&world, 1, true, later()).await;
        assert_eq!(outcome.errors.len(), keys_of(&chain).len());
        assert_eq!(
            kept(&outcome, KeepReason::DeleteFailed) as usize,
            keys_of(&chain).len()
        );
    }

    #[tokio::test]
    async fn cancellation_stops_before_anything_is_listed_or_deleted() {
        let chain = chain();
        let world = world_with(&chain);
        world.archive_all().await;
        verified(&world).await;
        let lists = world.source.lists.load(Ordering::Relaxed);
        let scopes = [ExpiryScope {
            reader_account_id: READER.into(),
            source: world.source.as_ref(),
            root: String::new(),
            regions: Vec::new(),
        }];
        let cancel = CancellationToken::new();
        cancel.cancel();
        let outcome = expire(
            &crate::retention::LockConfirmed::for_tests(),
            &scopes,
            &world.store,
            &settings(1, true),
            later(),
            &cancel,
        )
        .await;
        assert_eq!(outcome.deleted, 0);
        assert_eq!(world.source.lists.load(Ordering::Relaxed), lists);
        assert_eq!(world.source.deletes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn regions_outside_the_scope_are_left_alone() {
        let chain = chain();
        let world = world_with(&chain);
        world.archive_all().await;
        verified(&world).await;
        let scopes = [ExpiryScope {
            reader_account_id: READER.into(),
            source: world.source.as_ref(),
            root: String::new(),
            regions: vec!["eu-west-1".into()],
        }];
        let outcome = expire(
            &crate::retention::LockConfirmed::for_tests(),
            &scopes,
            &world.store,
            &settings(1, true),
            later(),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(outcome.deleted, 0);
        assert!(outcome.kept.is_empty());
        assert_eq!(world.source.keys().len(), keys_of(&chain).len());
    }
}
