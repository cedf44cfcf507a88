//! One collection run: list the open partitions of every source, diff them
//! against the store, copy what is new or changed through [`crate::copy`],
//! inspect what was copied, and record it. The crash-safety argument is in
//! `collect/design.md` beside this file.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::cloudtrail::claims::{DigestClaim, LogClaims};
use crate::cloudtrail::gzip::InflateError;
use crate::cloudtrail::keys::{parse_trail_key, Family, KeyError, TrailKey};
use crate::copy::{
    adopt_copy, adoptable_copy, copy_object, retain_until, ContentCheck, Copied, CopyError,
    CopySettings, Inflated,
};
use crate::model::error::SeamError;
use crate::model::findings::{Finding, FindingKind};
use crate::model::object::SourceRef;
use crate::model::report::{OperationError, Stats};
use crate::seams::{Archive, Clock, ListedObject, ProgressStore, TrailSource};

/// One place where one member account's trail files are delivered, read
/// through one session.
#[derive(Clone)]
pub struct SourceScope {
    /// The account whose role reads the bucket: the archive namespace.
    pub reader_account_id: String,
    /// The account the files belong to (the `AWSLogs/<account>/` folder).
    pub member_account_id: String,
    pub source: Arc<dyn TrailSource>,
    /// `[<prefix>/]AWSLogs/[<o-id>/]<member account>/`.
    pub root: String,
    /// Empty: discovered from the bucket's folders.
    pub regions: Vec<String>,
    /// Also collect other accounts' folders found beside `root` (per-account
    /// buckets: such files are hostile or misrouted and raise `account_mismatch`).
    pub foreign_accounts: bool,
}

impl SourceScope {
    fn state_name(&self, what: &str) -> String {
        format!(
            "{what}/{}/{}/{}",
            self.reader_account_id,
            self.source.bucket(),
            self.root
        )
    }
}

/// Which day partitions a run lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Today and the lookback days, plus the redelivery window when its
    /// periodic sweep is due.
    Incremental,
    /// Every day in the range (backfill), inclusive.
    Range { from: NaiveDate, to: NaiveDate },
}

#[derive(Debug, Clone)]
pub struct CollectSettings {
    pub copy: CopySettings,
    pub concurrency: usize,
    pub list_concurrency: usize,
    pub lookback_days: u32,
    pub redelivery_sweep_days: u32,
    /// How often the redelivery window and the folder discovery are refreshed.
    pub sweep_interval: Duration,
    pub copy_attempts: u32,
}

/// Live counters, read by the progress display while the run goes on.
#[derive(Debug, Default)]
pub struct Counters {
    pub partitions_total: AtomicU64,
    pub partitions_listed: AtomicU64,
    pub objects_listed: AtomicU64,
    pub objects_to_copy: AtomicU64,
    pub objects_copied: AtomicU64,
    pub bytes_copied: AtomicU64,
}

/// What a collection run produced.
#[derive(Debug, Default)]
pub struct CollectOutcome {
    pub stats: Stats,
    pub errors: Vec<OperationError>,
    pub findings: Vec<Finding>,
    /// Accounts that had an operational error.
    pub failed_accounts: BTreeSet<String>,
}

#[derive(Serialize, Deserialize)]
struct Discovery {
    at: i64,
    /// root -> family folder name -> regions
    roots: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// Family folder name -> regions.
type Families = BTreeMap<String, Vec<String>>;

#[derive(Clone)]
struct Partition {
    scope: SourceScope,
    /// The scope's root, or a foreign account's folder found beside it.
    root: String,
    family: String,
    region: String,
    date: NaiveDate,
}

impl Partition {
    fn prefix(&self) -> String {
        format!(
            "{}{}/{}/{}/",
            self.root,
            self.family,
            self.region,
            self.date.format("%Y/%m/%d")
        )
    }
}

/// Completion of one listed partition in a backfill: when its last job
/// finishes without error, the partition is marked done so a resumed backfill
/// does not list it again.
struct PartitionDone {
    state_name: String,
    remaining: std::sync::atomic::AtomicUsize,
    failed: std::sync::atomic::AtomicBool,
}

struct CopyJob {
    partition: Option<Arc<PartitionDone>>,
    scope: SourceScope,
    /// The partition's region (for log lines).
    region: String,
    source: SourceRef,
    listed: ListedObject,
    previous: Option<crate::model::object::ObjectRecord>,
    adopt_first: bool,
}

/// Shared run state: the outcome under a mutex, counters lock-free.
struct Run<'a> {
    archive: &'a dyn Archive,
    store: &'a dyn ProgressStore,
    settings: &'a CollectSettings,
    now: DateTime<Utc>,
    counters: &'a Counters,
    window: Window,
    /// The previous run did not end cleanly: look in the archive before
    /// copying anything (see `collect/design.md`).
    recovering: bool,
    /// Copies that did not end recorded: they may have left an unrecorded
    /// archive version, so the next run must look before copying.
    jobs_failed: AtomicU64,
    /// Sources (reader, bucket) that refused a listing for good (access
    /// denied, no such bucket): their other partitions are not listed, so one
    /// refusal is one error, not one per partition.
    refused: Mutex<BTreeSet<(String, String)>>,
    outcome: Mutex<CollectOutcome>,
}

/// Store state naming a run that may have copies in flight; durable before
/// the first PUT, cleared only by a run that ended cleanly.
const IN_FLIGHT: &str = "collect/in-flight";

impl Run<'_> {
    fn refused(&self) -> std::sync::MutexGuard<'_, BTreeSet<(String, String)>> {
        self.refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn outcome(&self) -> std::sync::MutexGuard<'_, CollectOutcome> {
        self.outcome
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn error(&self, account_id: &str, operation: &str, error: &dyn std::fmt::Display) {
        warn!(account_id, operation, %error, "operation failed");
        let mut outcome = self.outcome();
        outcome.stats.errors += 1;
        outcome.failed_accounts.insert(account_id.to_string());
        outcome.errors.push(OperationError {
            account_id: account_id.to_string(),
            operation: operation.to_string(),
            message: error.to_string(),
        });
    }

    fn finding(&self, finding: Finding) {
        // One finding per (kind, object) per run, even if two checks see it.
        if self
            .outcome()
            .findings
            .iter()
            .any(|seen| seen.dedup_key() == finding.dedup_key())
        {
            return;
        }
        match self.store.record_finding(finding) {
            Ok(recorded) => {
                if recorded.new {
                    recorded.log_new();
                }
                self.outcome().findings.push(recorded);
            }
            Err(error) => self.error("-", "record_finding", &error),
        }
    }
}

/// What a collection run works with; one per run.
pub struct Collector<'a> {
    pub archive: &'a dyn Archive,
    pub store: &'a dyn ProgressStore,
    pub clock: &'a dyn Clock,
    pub settings: &'a CollectSettings,
    pub cancel: &'a CancellationToken,
    pub counters: &'a Counters,
}

/// Runs one collection over `scopes`. Errors of one scope never stop the
/// others; they are reported in the outcome.
pub async fn collect(
    collector: Collector<'_>,
    scopes: Vec<SourceScope>,
    window: Window,
) -> CollectOutcome {
    let Collector {
        archive,
        store,
        clock,
        settings,
        cancel,
        counters,
    } = collector;
    let now = clock.now();
    // A previous run that did not end cleanly may have left copies in the
    // archive that it never recorded: this run looks before it copies.
    let recovering = match store.get_state(IN_FLIGHT) {
        Ok(marker) => marker.is_some_and(|value| !value.is_empty()),
        Err(_) => true,
    };
    // Durable before the first PUT of this run.
    if let Err(error) = store
        .put_state(IN_FLIGHT, now.to_rfc3339().as_bytes())
        .and_then(|()| store.flush())
    {
        let mut outcome = CollectOutcome::default();
        outcome.stats.errors = 1;
        outcome.errors.push(OperationError {
            account_id: "-".to_string(),
            operation: "record the run in the progress store".to_string(),
            message: format!("{error}; nothing was copied"),
        });
        return outcome;
    }
    if recovering {
        info!("the previous run did not end cleanly: checking the archive before each copy");
    }
    let run = Run {
        archive,
        store,
        settings,
        now,
        counters,
        window,
        recovering,
        jobs_failed: AtomicU64::new(0),
        refused: Mutex::default(),
        outcome: Mutex::new(CollectOutcome::default()),
    };
    let run = &run;

    // 1. Partitions of every scope (discovery is cached between runs).
    let partition_lists = futures::stream::iter(scopes.iter().cloned())
        .map(|scope| async move {
            // Regions are listed (or discovered) here: every region of the account.
            let span = info_span!("account", account_id = %scope.member_account_id, region = "all", bucket = %scope.source.bucket());
            partitions_of(run, &scope, window).instrument(span).await
        })
        .buffer_unordered(settings.list_concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let partitions: Vec<Partition> = partition_lists.into_iter().flatten().collect();
    counters
        .partitions_total
        .store(partitions.len() as u64, Ordering::Relaxed);

    // 2. List partitions and copy what they hold, both bounded.
    futures::stream::iter(partitions)
        .take_while(|_| std::future::ready(!cancel.is_cancelled()))
        .map(|partition| async move {
            let span = info_span!("account", account_id = %partition.scope.member_account_id, region = %partition.region);
            list_partition(run, partition).instrument(span).await
        })
        .buffer_unordered(settings.list_concurrency.max(1))
        .flat_map(futures::stream::iter)
        .take_while(|_| std::future::ready(!cancel.is_cancelled()))
        .for_each_concurrent(settings.concurrency.max(1), |job| async move {
            let span = info_span!("account", account_id = %job.scope.member_account_id, region = %job.region);
            copy_job(run, job).instrument(span).await
        })
        .await;

    // 3. Mark the sweeps done for scopes that listed without error.
    if matches!(window, Window::Incremental) && !cancel.is_cancelled() {
        let failed = run.outcome().failed_accounts.clone();
        for scope in &scopes {
            if !failed.contains(&scope.member_account_id)
                && !failed.contains(&scope.reader_account_id)
            {
                let _ = store.put_state(
                    &scope.state_name("sweep"),
                    run.now.timestamp().to_string().as_bytes(),
                );
            }
        }
    }
    // Clean only if every copy this run started ended recorded.
    if !cancel.is_cancelled() && run.jobs_failed.load(Ordering::Relaxed) == 0 {
        if let Err(error) = store.put_state(IN_FLIGHT, b"") {
            run.error("-", "record the end of the run", &error);
        }
    }
    if let Err(error) = store.flush() {
        run.error("-", "flush_store", &error);
    }
    let mut outcome = std::mem::take(&mut *run.outcome());
    outcome.stats.partitions_listed = counters.partitions_listed.load(Ordering::Relaxed);
    outcome.stats.objects_listed = counters.objects_listed.load(Ordering::Relaxed);
    outcome.stats.objects_copied = counters.objects_copied.load(Ordering::Relaxed);
    outcome.stats.bytes_copied = counters.bytes_copied.load(Ordering::Relaxed);
    outcome
}

async fn discover(
    run: &Run<'_>,
    scope: &SourceScope,
) -> Result<BTreeMap<String, Families>, SeamError> {
    let name = scope.state_name("discovery");
    if let Some(bytes) = run.store.get_state(&name)? {
        if let Ok(cached) = serde_json::from_slice::<Discovery>(&bytes) {
            let fresh = run.now.timestamp() - cached.at < run.settings.sweep_interval.num_seconds();
            let regions_match = scope.regions.is_empty()
                || cached
                    .roots
                    .values()
                    .flat_map(|families| families.values())
                    .all(|regions| *regions == scope.regions);
            if fresh && regions_match {
                return Ok(cached.roots);
            }
        }
    }
    let mut roots = BTreeMap::new();
    roots.insert(
        scope.root.clone(),
        families_under(scope, &scope.root).await?,
    );
    if scope.foreign_accounts {
        for root in foreign_account_roots(scope).await? {
            let families = families_under(scope, &root).await?;
            roots.insert(root, families);
        }
    }
    let cached = Discovery {
        at: run.now.timestamp(),
        roots: roots.clone(),
    };
    if let Ok(bytes) = serde_json::to_vec(&cached) {
        run.store.put_state(&name, &bytes)?;
    }
    Ok(roots)
}

/// Folders of other accounts beside the scope's own (`AWSLogs/<other>/` in a
/// per-account bucket): hostile or misrouted, collected as evidence.
async fn foreign_account_roots(scope: &SourceScope) -> Result<Vec<String>, SeamError> {
    let Some(parent) = scope
        .root
        .strip_suffix(&format!("{}/", scope.member_account_id))
    else {
        return Ok(Vec::new());
    };
    Ok(scope
        .source
        .list_folders(parent)
        .await?
        .into_iter()
        .filter(|folder| *folder != scope.root)
        .filter(|folder| {
            folder
                .strip_prefix(parent)
                .and_then(|rest| rest.strip_suffix('/'))
                .is_some_and(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect())
}

async fn families_under(scope: &SourceScope, root: &str) -> Result<Families, SeamError> {
    let mut families = BTreeMap::new();
    for folder in scope.source.list_folders(root).await? {
        let family = folder
            .trim_start_matches(root)
            .trim_end_matches('/')
            .to_string();
        // CloudTrail, CloudTrail-Digest, CloudTrail-Insight and any other sibling.
        if family != "CloudTrail" && !family.starts_with("CloudTrail-") {
            continue;
        }
        let regions = if scope.regions.is_empty() {
            let family_root = format!("{root}{family}/");
            scope
                .source
                .list_folders(&family_root)
                .await?
                .iter()
                .map(|f| {
                    f.trim_start_matches(&family_root)
                        .trim_end_matches('/')
                        .to_string()
                })
                .filter(|region| !region.is_empty())
                .collect()
        } else {
            scope.regions.clone()
        };
        families.insert(family, regions);
    }
    Ok(families)
}

/// The dates an incremental run lists for `scope`: the open partitions, plus
/// the redelivery window when its sweep is due.
fn incremental_dates(run: &Run<'_>, scope: &SourceScope) -> Result<Vec<NaiveDate>, SeamError> {
    let today = run.now.date_naive();
    let sweep_due = match run.store.get_state(&scope.state_name("sweep"))? {
        Some(bytes) => {
            let last: i64 = String::from_utf8_lossy(&bytes).parse().unwrap_or(0);
            run.now.timestamp() - last >= run.settings.sweep_interval.num_seconds()
        }
        None => true,
    };
    let back = if sweep_due {
        run.settings
            .redelivery_sweep_days
            .max(run.settings.lookback_days)
    } else {
        run.settings.lookback_days
    };
    Ok((0..=i64::from(back))
        .map(|days| today - Duration::days(days))
        .collect())
}

async fn partitions_of(run: &Run<'_>, scope: &SourceScope, window: Window) -> Vec<Partition> {
    let roots = match discover(run, scope).await {
        Ok(roots) => roots,
        Err(error) => {
            run.error(
                &scope.member_account_id,
                &format!("list s3://{}/{}", scope.source.bucket(), scope.root),
                &error,
            );
            return Vec::new();
        }
    };
    let dates = match window {
        Window::Incremental => match incremental_dates(run, scope) {
            Ok(dates) => dates,
            Err(error) => {
                run.error(&scope.member_account_id, "read_store", &error);
                return Vec::new();
            }
        },
        Window::Range { from, to } => from.iter_days().take_while(|day| *day <= to).collect(),
    };
    debug!(
        roots = roots.len(),
        dates = dates.len(),
        "partitions planned"
    );
    let mut partitions = Vec::new();
    for (root, families) in &roots {
        for (family, regions) in families {
            for region in regions {
                for date in &dates {
                    partitions.push(Partition {
                        scope: scope.clone(),
                        root: root.clone(),
                        family: family.clone(),
                        region: region.clone(),
                        date: *date,
                    });
                }
            }
        }
    }
    partitions
}

async fn list_partition(run: &Run<'_>, partition: Partition) -> Vec<CopyJob> {
    let prefix = partition.prefix();
    let scope = &partition.scope;
    let done_name = format!(
        "backfill-done/{}/{}/{prefix}",
        scope.reader_account_id,
        scope.source.bucket()
    );
    let backfill = matches!(run.window, Window::Range { .. });
    if backfill && run.store.get_state(&done_name).ok().flatten().is_some() {
        run.counters
            .partitions_listed
            .fetch_add(1, Ordering::Relaxed);
        run.outcome().stats.partitions_skipped += 1;
        return Vec::new();
    }
    let source_id = (
        scope.reader_account_id.clone(),
        scope.source.bucket().to_string(),
    );
    if run.refused().contains(&source_id) {
        return Vec::new();
    }
    let listed = match scope.source.list(&prefix).await {
        Ok(listed) => listed,
        Err(error) => {
            if matches!(error, SeamError::AccessDenied(_) | SeamError::NotFound(_)) {
                run.refused().insert(source_id);
            }
            run.error(
                &scope.member_account_id,
                &format!("list s3://{}/{prefix}", scope.source.bucket()),
                &error,
            );
            return Vec::new();
        }
    };
    run.counters
        .partitions_listed
        .fetch_add(1, Ordering::Relaxed);
    run.counters
        .objects_listed
        .fetch_add(listed.len() as u64, Ordering::Relaxed);
    let mut jobs = Vec::new();
    let mut skipped = 0u64;
    for object in listed {
        if object.key.ends_with('/') {
            continue;
        }
        let source = SourceRef {
            account_id: scope.reader_account_id.clone(),
            bucket: scope.source.bucket().to_string(),
            key: object.key.clone(),
        };
        let previous = match run.store.object(&source) {
            Ok(previous) => previous,
            Err(error) => {
                run.error(&scope.member_account_id, "read_store", &error);
                continue;
            }
        };
        if previous
            .as_ref()
            .is_some_and(|record| record.etag == object.etag)
        {
            skipped += 1;
            continue;
        }
        let adopt_first = run.recovering;
        jobs.push(CopyJob {
            partition: None,
            scope: scope.clone(),
            region: partition.region.clone(),
            source,
            listed: object,
            previous,
            adopt_first,
        });
    }
    if backfill {
        if jobs.is_empty() {
            if let Err(error) = run.store.put_state(&done_name, b"1") {
                run.error(&scope.member_account_id, "record_partition_done", &error);
            }
        } else {
            let tracker = Arc::new(PartitionDone {
                state_name: done_name,
                remaining: std::sync::atomic::AtomicUsize::new(jobs.len()),
                failed: std::sync::atomic::AtomicBool::new(false),
            });
            for job in &mut jobs {
                job.partition = Some(tracker.clone());
            }
        }
    }
    run.outcome().stats.objects_skipped += skipped;
    run.counters
        .objects_to_copy
        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
    jobs
}

async fn copy_job(run: &Run<'_>, job: CopyJob) {
    let succeeded = copy_one(run, &job).await;
    if !succeeded {
        run.jobs_failed.fetch_add(1, Ordering::Relaxed);
    }
    let Some(partition) = &job.partition else {
        return;
    };
    if !succeeded {
        partition.failed.store(true, Ordering::Relaxed);
    }
    let last = partition.remaining.fetch_sub(1, Ordering::AcqRel) == 1;
    if last && !partition.failed.load(Ordering::Relaxed) {
        if let Err(error) = run.store.put_state(&partition.state_name, b"1") {
            run.error(
                &job.scope.member_account_id,
                "record_partition_done",
                &error,
            );
        }
    }
}

/// Copies one object; `true` when it ended recorded (copied or adopted).
async fn copy_one(run: &Run<'_>, job: &CopyJob) -> bool {
    let settings = &run.settings.copy;
    let archive_key = job.source.archive_key(&settings.archive_prefix);
    let member = job.scope.member_account_id.as_str();
    let parsed_key = parse_trail_key(&job.source.key);

    // A previous run may have died between PUT and recording: adopt its copy.
    let mut adopted = None;
    if job.adopt_first {
        match adopt(run, job, &archive_key, &parsed_key).await {
            Ok(found) => adopted = found,
            Err(error) => {
                run.error(
                    member,
                    &format!("adopt s3://{}/{archive_key}", run.archive.bucket()),
                    &error,
                );
                return false;
            }
        }
    }

    let attempts = run.settings.copy_attempts.max(1);
    let mut attempt = 0;
    let copied = loop {
        if let Some(copied) = adopted.take() {
            debug!(key = %job.source.key, "adopted the copy of an interrupted attempt");
            run.outcome().stats.objects_adopted += 1;
            break copied;
        }
        attempt += 1;
        match copy_object(
            job.scope.source.as_ref(),
            run.archive,
            settings,
            &job.source,
            run.now,
            Some(claims_check(job, &parsed_key)),
        )
        .await
        {
            Ok(copied) => {
                run.counters.objects_copied.fetch_add(1, Ordering::Relaxed);
                run.counters
                    .bytes_copied
                    .fetch_add(copied.bytes, Ordering::Relaxed);
                break copied;
            }
            Err(error) if error.is_retryable() && attempt < attempts => {
                debug!(key = %job.source.key, attempt, %error, "copy attempt failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                    .await;
                // The failed attempt's PUT may have landed (the error came
                // after it): adopt that copy rather than make a second one.
                // A copy that failed verification is not adopted.
                if !matches!(error, CopyError::Invalid(_)) {
                    match adopt(run, job, &archive_key, &parsed_key).await {
                        Ok(found) => adopted = found,
                        Err(error) => {
                            debug!(key = %job.source.key, %error, "cannot check for a landed copy")
                        }
                    }
                }
            }
            Err(CopyError::Invalid(problem)) => {
                let finding = Finding::new(
                    FindingKind::ArchiveCopyInvalid,
                    member,
                    &job.source.bucket,
                    &job.source.key,
                    format!("copy failed verification after {attempt} attempts: {problem}"),
                )
                .with_archive_key(Some(&archive_key));
                run.finding(finding);
                return false;
            }
            Err(error) => {
                run.error(
                    member,
                    &format!("copy s3://{}/{}", job.source.bucket, job.source.key),
                    &error,
                );
                return false;
            }
        }
    };

    let Copied {
        record,
        inflate_error,
        content_findings,
        ..
    } = copied;
    if let Some(previous) = &job.previous {
        let detail = format!(
            "source object changed after it was archived: ETag {} -> {}, content SHA-256 {} -> {}; both versions are kept in the archive",
            previous.etag,
            record.etag,
            previous.content_sha256.map(hex::encode).unwrap_or_else(|| "-".into()),
            record.content_sha256.map(hex::encode).unwrap_or_else(|| "-".into()),
        );
        run.finding(
            Finding::new(
                FindingKind::SourceObjectModified,
                member,
                &job.source.bucket,
                &job.source.key,
                detail,
            )
            .with_archive_key(Some(&archive_key)),
        );
    }
    for finding in inspect(job, inflate_error.as_ref(), content_findings, parsed_key) {
        run.finding(finding.with_archive_key(Some(&archive_key)));
    }
    // The copy this one supersedes stays in the archive as evidence, and in
    // the store for retention (its record is replaced below).
    if let Some(previous) = &job.previous {
        if let Some(version) = previous
            .archive_version_id
            .as_deref()
            .filter(|version| record.archive_version_id.as_deref() != Some(*version))
        {
            let recorded = crate::progress::superseded::record(
                run.store,
                &job.source,
                version,
                Some(previous.copied_at),
            );
            if let Err(error) = recorded {
                run.error(member, "record_superseded", &error);
            }
        }
    }
    finish(run, job, record)
}

/// The archive's copy of this source version, left by an interrupted attempt
/// (see [`crate::copy::adopt_copy`]); `Ok(None)` when there is none to adopt.
async fn adopt(
    run: &Run<'_>,
    job: &CopyJob,
    archive_key: &str,
    parsed_key: &Result<TrailKey, KeyError>,
) -> Result<Option<Copied>, CopyError> {
    let settings = &run.settings.copy;
    let Some(head) = adoptable_copy(run.archive, settings, archive_key, &job.listed.etag)
        .await
        .map_err(CopyError::Archive)?
    else {
        return Ok(None);
    };
    let adopted = adopt_copy(
        job.scope.source.as_ref(),
        run.archive,
        settings,
        &job.source,
        &head,
        run.now,
        Some(claims_check(job, parsed_key)),
    )
    .await?;
    if adopted.is_some() {
        // Locked as long as a copy made then must be: the retention period
        // may have grown since the interrupted run.
        let copied_at = head
            .metadata
            .get(crate::copy::meta::COPIED_AT)
            .and_then(|t| t.parse::<i64>().ok())
            .and_then(|t| DateTime::from_timestamp(t, 0))
            .unwrap_or(run.now);
        let required = retain_until(copied_at, settings.retention_days);
        if head
            .retain_until
            .is_some_and(|until| until + Duration::seconds(1) < required)
        {
            let version = head.version_id.as_deref().ok_or_else(|| {
                CopyError::Invalid(format!("{archive_key} has no version id to extend"))
            })?;
            run.archive
                .put_retention(archive_key, version, settings.lock_mode, required)
                .await
                .map_err(CopyError::Archive)?;
        }
    }
    Ok(adopted)
}

fn finish(run: &Run<'_>, job: &CopyJob, record: crate::model::object::ObjectRecord) -> bool {
    if let Err(error) = run.store.record_object(&job.source, &record) {
        run.error(&job.scope.member_account_id, "record_object", &error);
        return false;
    }
    true
}

/// The check of a copied body's content: which accounts its records (or its
/// digest) claim, and whether a log is CloudTrail records JSON at all.
fn claims_check(job: &CopyJob, parsed_key: &Result<TrailKey, KeyError>) -> ContentCheck {
    let member = job.scope.member_account_id.clone();
    let bucket = job.source.bucket.clone();
    let key = job.source.key.clone();
    let trail_key = parsed_key.as_ref().ok();
    let is_digest = trail_key.is_some_and(TrailKey::is_digest);
    let is_log_family = trail_key.is_some_and(|k| matches!(&k.family, Family::Log { .. }));
    Box::new(move |inflated| {
        content_claims(&member, &bucket, &key, is_digest, is_log_family, inflated)
    })
}

/// Findings about a freshly copied object: a name or content that claims
/// another account, or a body that cannot be CloudTrail output.
fn inspect(
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

/// Parses inflated content, held or streamed.
fn parse_json<T: serde::de::DeserializeOwned>(inflated: Inflated<'_>) -> serde_json::Result<T> {
    match inflated {
        Inflated::Bytes(bytes) => serde_json::from_slice(bytes),
        Inflated::Stream(stream) => serde_json::from_reader(stream),
    }
}

fn content_claims(
    member: &str,
    bucket: &str,
    key: &str,
    is_digest: bool,
    is_log_family: bool,
    inflated: Inflated<'_>,
) -> Vec<Finding> {
    if is_digest {
        return match parse_json::<DigestClaim>(inflated) {
            Ok(DigestClaim(Some(claimed))) if claimed != member => vec![Finding::new(
                FindingKind::AccountMismatch,
                member,
                bucket,
                key,
                format!("digest body claims account {claimed} in the source of account {member}"),
            )],
            _ => Vec::new(),
        };
    }
    match parse_json::<LogClaims>(inflated) {
        Ok(LogClaims(claimed)) => {
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

/// Info line summarising a finished run (the binary prints the full report).
pub fn log_summary(outcome: &CollectOutcome) {
    info!(
        listed = outcome.stats.objects_listed,
        copied = outcome.stats.objects_copied,
        skipped = outcome.stats.objects_skipped,
        errors = outcome.errors.len(),
        findings = outcome.findings.len(),
        "collection finished"
    );
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use chrono::TimeZone;

    use super::*;
    use crate::cloudtrail::gzip::InflateLimits;
    use crate::seams::LockMode;
    use crate::testsuite::memory::{FixedClock, MemoryArchive, MemorySource, MemoryStore};

    const MEMBER: &str = "222222222201";

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn log_body(account: &str) -> Vec<u8> {
        gzip(
            format!(
                r#"{{"Records":[{{"eventName":"GetObject","recipientAccountId":"{account}"}}]}}"#
            )
            .as_bytes(),
        )
    }

    /// `len` incompressible bytes (xorshift from `seed`).
    fn noise(len: usize, mut state: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state & 0xff) as u8
            })
            .collect()
    }

    fn log_key(day: u32, hhmm: &str, unique: &str) -> String {
        format!("AWSLogs/{MEMBER}/CloudTrail/us-east-1/2026/11/{day:02}/{MEMBER}_CloudTrail_us-east-1_202611{day:02}T{hhmm}Z_{unique}.json.gz")
    }

    fn settings() -> CollectSettings {
        CollectSettings {
            copy: CopySettings {
                archive_prefix: "archive".into(),
                kms_key_id: "arn:aws:kms:us-east-1:111111111111:key/k".into(),
                lock_mode: LockMode::Compliance,
                retention_days: 10,
                multipart_threshold_bytes: 5 * 1024 * 1024,
                inflate_limits: InflateLimits {
                    max_inflated_bytes: 1 << 20,
                    max_ratio: 100,
                },
            },
            concurrency: 4,
            list_concurrency: 2,
            lookback_days: 2,
            redelivery_sweep_days: 5,
            sweep_interval: Duration::hours(24),
            copy_attempts: 2,
        }
    }

    struct World {
        source: Arc<MemorySource>,
        archive: MemoryArchive,
        store: MemoryStore,
        clock: FixedClock,
        settings: CollectSettings,
    }

    impl World {
        fn new() -> World {
            World {
                source: Arc::new(MemorySource::new("trail-bucket")),
                archive: MemoryArchive::new("archive-bucket"),
                store: MemoryStore::default(),
                clock: FixedClock::at(Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()),
                settings: settings(),
            }
        }

        fn scope(&self) -> SourceScope {
            SourceScope {
                reader_account_id: MEMBER.into(),
                member_account_id: MEMBER.into(),
                source: self.source.clone(),
                root: format!("AWSLogs/{MEMBER}/"),
                regions: vec!["us-east-1".into()],
                foreign_accounts: true,
            }
        }

        async fn run(&self, window: Window) -> CollectOutcome {
            let counters = Counters::default();
            let cancel = CancellationToken::new();
            let collector = Collector {
                archive: &self.archive,
                store: &self.store,
                clock: &self.clock,
                settings: &self.settings,
                cancel: &cancel,
                counters: &counters,
            };
            collect(collector, vec![self.scope()], window).await
        }

        fn archive_key(&self, key: &str) -> String {
            format!("archive/{MEMBER}/trail-bucket/{key}")
        }

        fn source_ref(&self, key: &str) -> SourceRef {
            SourceRef {
                account_id: MEMBER.into(),
                bucket: "trail-bucket".into(),
                key: key.to_string(),
            }
        }

        /// What a run killed after its PUT and before recording leaves: a
        /// valid copy in the archive, nothing in the store, the in-flight
        /// marker set.
        async fn copy_and_die(&self, key: &str) -> Copied {
            let copied = copy_object(
                self.source.as_ref(),
                &self.archive,
                &self.settings.copy,
                &self.source_ref(key),
                self.clock.now(),
                None,
            )
            .await
            .unwrap();
            self.store
                .put_state(IN_FLIGHT, b"2026-11-27T11:00:00Z")
                .unwrap();
            copied
        }
    }

    fn kinds(outcome: &CollectOutcome) -> Vec<(FindingKind, String)> {
        outcome
            .findings
            .iter()
            .map(|f| (f.kind, f.key.clone()))
            .collect()
    }

    #[tokio::test]
    async fn copies_each_object_once_and_reruns_copy_nothing() {
        let world = World::new();
        for (day, hhmm, unique) in [
            (27, "1005", "AAAAAAAAAAAAAAAA"),
            (26, "2355", "BBBBBBBBBBBBBBBB"),
            (25, "0005", "CCCCCCCCCCCCCCCC"),
        ] {
            world
                .source
                .put(&log_key(day, hhmm, unique), log_body(MEMBER), &[]);
        }
        let first = world.run(Window::Incremental).await;
        assert_eq!(first.stats.objects_copied, 3, "{:?}", first.errors);
        assert!(first.findings.is_empty(), "{:?}", first.findings);
        for key in world.archive.keys() {
            assert_eq!(world.archive.version_count(&key), 1);
            let head = world.archive.latest_head(&key).unwrap();
            assert_eq!(
                head.metadata
                    .get(crate::copy::meta::SOURCE_ACCOUNT)
                    .map(String::as_str),
                Some(MEMBER)
            );
            assert!(head
                .metadata
                .contains_key(crate::copy::meta::CONTENT_SHA256));
        }
        let second = world.run(Window::Incremental).await;
        assert_eq!(second.stats.objects_copied, 0);
        assert_eq!(second.stats.objects_skipped, 3);
        assert_eq!(
            world.source.gets.load(Ordering::Relaxed),
            3,
            "a rerun reads no object"
        );
    }

    #[tokio::test]
    async fn a_late_file_that_sorts_before_copied_files_is_collected() {
        let world = World::new();
        world.source.put(
            &log_key(27, "1100", "ZZZZZZZZZZZZZZZZ"),
            log_body(MEMBER),
            &[],
        );
        assert_eq!(world.run(Window::Incremental).await.stats.objects_copied, 1);
        let late = log_key(27, "0100", "AAAAAAAAAAAAAAAA");
        world.source.put(&late, log_body(MEMBER), &[]);
        let rerun = world.run(Window::Incremental).await;
        assert_eq!(rerun.stats.objects_copied, 1);
        assert_eq!(world.archive.version_count(&world.archive_key(&late)), 1);
    }

    #[tokio::test]
    async fn closed_partitions_are_listed_only_by_the_periodic_sweep() {
        let world = World::new();
        let old = log_key(23, "0100", "OOOOOOOOOOOOOOOO");
        world.source.put(&old, log_body(MEMBER), &[]);
        // The first run sweeps the redelivery window (5 days back): collected.
        assert_eq!(world.run(Window::Incremental).await.stats.objects_copied, 1);
        let lists_after_first = world.source.lists.load(Ordering::Relaxed);
        // Within the sweep interval only today and the lookback days are listed.
        world.run(Window::Incremental).await;
        let listed = world.source.lists.load(Ordering::Relaxed) - lists_after_first;
        assert_eq!(
            listed, 3,
            "one LIST per open partition (today + 2 lookback days), discovery cached"
        );
        // After the interval, the sweep lists the closed partitions again.
        let redelivered = log_key(23, "0200", "RRRRRRRRRRRRRRRR");
        world.source.put(&redelivered, log_body(MEMBER), &[]);
        world.clock.set(world.clock.now() + Duration::hours(25));
        assert_eq!(world.run(Window::Incremental).await.stats.objects_copied, 1);
    }

    #[tokio::test]
    async fn an_interrupted_copy_is_adopted_not_duplicated() {
        let world = World::new();
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, log_body(MEMBER), &[]);
        let source = world.source_ref(&key);
        let copied = world.copy_and_die(&key).await;
        assert_eq!(copied.record.size, log_body(MEMBER).len() as u64);
        let rerun = world.run(Window::Incremental).await;
        assert_eq!(rerun.stats.objects_adopted, 1);
        assert_eq!(rerun.stats.objects_copied, 0);
        assert_eq!(world.archive.version_count(&world.archive_key(&key)), 1);
        assert_eq!(
            world.store.get_state(IN_FLIGHT).unwrap().as_deref(),
            Some(&b""[..]),
            "a clean run clears the marker"
        );
        // A clean run's successor copies without looking first.
        let heads_before = world.archive.heads.load(Ordering::Relaxed);
        world.source.put(
            &log_key(27, "0901", "CCCCCCCCCCCCCCCC"),
            log_body(MEMBER),
            &[],
        );
        assert_eq!(world.run(Window::Incremental).await.stats.objects_copied, 1);
        assert_eq!(
            world.archive.heads.load(Ordering::Relaxed) - heads_before,
            1,
            "only the verification HEAD"
        );
        assert_eq!(
            world.store.object(&source).unwrap().map(|r| r.raw_sha256),
            Some(copied.record.raw_sha256)
        );
    }

    #[tokio::test]
    async fn an_interrupted_copy_of_a_changed_object_is_adopted_and_reported() {
        let world = World::new();
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, log_body(MEMBER), &[]);
        world.run(Window::Incremental).await;
        // The member rewrites the file, claiming another account; a run
        // archives the new content and dies before recording it.
        world.source.put(&key, log_body("333333333333"), &[]);
        world.copy_and_die(&key).await;
        let rerun = world.run(Window::Incremental).await;
        assert_eq!(rerun.stats.objects_adopted, 1);
        assert_eq!(rerun.stats.objects_copied, 0);
        assert_eq!(
            world.archive.version_count(&world.archive_key(&key)),
            2,
            "the old and the new content, no third version"
        );
        let mut found = kinds(&rerun);
        found.sort();
        assert_eq!(
            found,
            vec![
                (FindingKind::SourceObjectModified, key.clone()),
                (FindingKind::AccountMismatch, key.clone()),
            ],
            "the adopted copy's findings are not lost with the run that made it"
        );
    }

    #[tokio::test]
    async fn an_interrupted_multipart_copy_is_adopted_with_its_hashes_read_back() {
        let mut world = World::new();
        world.settings.copy.multipart_threshold_bytes = 64 * 1024;
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        let noise = noise(300 * 1024, 0x2545_f491_u64);
        world.source.put(&key, gzip(&noise), &[]);
        let copied = world.copy_and_die(&key).await;
        let archive_key = world.archive_key(&key);
        let head = world.archive.latest_head(&archive_key).unwrap();
        assert!(
            head.checksum_sha256.as_deref().unwrap().contains('-'),
            "multipart"
        );
        assert!(
            crate::copy::record_from_head(&head, 0).is_none(),
            "a composite checksum tells no raw hash"
        );
        // What rebuild-state records from the archive matches the copy.
        let rebuilt = crate::copy::record_from_archive(
            &world.archive,
            &archive_key,
            &head,
            copied.record.copied_at,
            world.settings.copy.inflate_limits,
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(rebuilt, copied.record);

        let rerun = world.run(Window::Incremental).await;
        assert!(rerun.errors.is_empty(), "{:?}", rerun.errors);
        assert_eq!(rerun.stats.objects_adopted, 1);
        assert_eq!(
            world.archive.version_count(&archive_key),
            1,
            "no second copy"
        );
        let recorded = world
            .store
            .object(&world.source_ref(&key))
            .unwrap()
            .unwrap();
        assert_eq!(recorded.content_sha256, copied.record.content_sha256);
        assert_eq!(recorded.raw_sha256, copied.record.raw_sha256);
    }

    #[tokio::test]
    async fn an_adopted_copy_is_locked_as_long_as_the_retention_now_requires() {
        let mut world = World::new();
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, log_body(MEMBER), &[]);
        world.settings.copy.retention_days = 1;
        world.copy_and_die(&key).await;
        // The retention period grew before the next run.
        world.settings.copy.retention_days = 30;
        let rerun = world.run(Window::Incremental).await;
        assert!(rerun.errors.is_empty(), "{:?}", rerun.errors);
        assert_eq!(rerun.stats.objects_adopted, 1);
        let archive_key = world.archive_key(&key);
        assert_eq!(world.archive.version_count(&archive_key), 1);
        let until = world
            .archive
            .latest_head(&archive_key)
            .unwrap()
            .retain_until;
        assert_eq!(
            until,
            Some(retain_until(world.clock.now(), 30)),
            "extended before it was recorded"
        );
    }

    #[tokio::test]
    async fn a_copy_whose_verification_failed_after_the_put_landed_is_adopted_on_retry() {
        let world = World::new();
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, log_body(MEMBER), &[]);
        world
            .archive
            .failing_version_heads
            .store(1, Ordering::Relaxed);
        let outcome = world.run(Window::Incremental).await;
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        assert_eq!(outcome.stats.objects_adopted, 1);
        assert_eq!(world.archive.version_count(&world.archive_key(&key)), 1);
        assert_eq!(world.archive.puts.load(Ordering::Relaxed), 1);
        let recorded = world.store.object(&world.source_ref(&key)).unwrap();
        assert!(recorded.is_some(), "recorded");
    }

    #[tokio::test]
    async fn an_archived_copy_of_other_bytes_is_not_adopted() {
        let world = World::new();
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, log_body(MEMBER), &[]);
        let source = world.source_ref(&key);
        let copied = world.copy_and_die(&key).await;
        let head = world
            .archive
            .head(&copied.archive_key, None)
            .await
            .unwrap()
            .unwrap();
        // Same ETag claimed, other bytes: the archived copy is not this body's.
        let etag = world.source.list("").await.unwrap()[0].etag.clone();
        world.source.put(&key, log_body("333333333333"), &[]);
        let mut forged = head.clone();
        forged.metadata.insert(
            crate::copy::meta::SOURCE_ETAG.to_string(),
            world.source.list("").await.unwrap()[0].etag.clone(),
        );
        assert_ne!(etag, forged.metadata[crate::copy::meta::SOURCE_ETAG]);
        let adopted = adopt_copy(
            world.source.as_ref(),
            &world.archive,
            &world.settings.copy,
            &source,
            &forged,
            world.clock.now(),
            None,
        )
        .await
        .unwrap();
        assert!(adopted.is_none(), "checksum differs from the body read now");
    }

    #[tokio::test]
    async fn a_changed_source_object_is_archived_again_and_reported() {
        let world = World::new();
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, log_body(MEMBER), &[]);
        world.run(Window::Incremental).await;
        world.source.put(&key, gzip(br#"{"Records":[]}"#), &[]);
        let rerun = world.run(Window::Incremental).await;
        assert_eq!(rerun.stats.objects_copied, 1);
        assert_eq!(
            kinds(&rerun),
            vec![(FindingKind::SourceObjectModified, key.clone())]
        );
        assert_eq!(world.archive.version_count(&world.archive_key(&key)), 2);
        // Retention checks both versions, not only the one the store now
        // records for the key.
        let sources = [crate::model::object::ArchivedSource {
            reader_account_id: MEMBER.into(),
            bucket: "trail-bucket".into(),
        }];
        let targets =
            crate::retention::targets_from_store(&world.store, &sources, "archive").unwrap();
        let mut versions: Vec<Option<String>> =
            targets.iter().map(|t| t.version_id.clone()).collect();
        versions.sort();
        versions.dedup();
        assert_eq!(versions.len(), 2, "{targets:?}");
        assert!(targets
            .iter()
            .all(|t| t.archive_key == world.archive_key(&key) && t.copied_at.is_some()));
        // Acknowledged, then rewritten again: a new event, reported as new.
        let first = &rerun.findings[0];
        assert!(world
            .store
            .acknowledge_finding(first, world.clock.now())
            .unwrap());
        world.source.put(&key, gzip(br#"{"Records":[{}]}"#), &[]);
        let again = world.run(Window::Incremental).await;
        assert_eq!(
            kinds(&again),
            vec![(FindingKind::SourceObjectModified, key.clone())]
        );
        assert!(again.findings[0].new && again.findings[0].is_open());
        assert_eq!(world.archive.version_count(&world.archive_key(&key)), 3);
    }

    #[tokio::test]
    async fn hostile_files_are_archived_as_evidence_with_findings() {
        let world = World::new();
        let spoofed_name = format!("AWSLogs/{MEMBER}/CloudTrail/us-east-1/2026/11/27/333333333333_CloudTrail_us-east-1_20261127T0900Z_AAAAAAAAAAAAAAAA.json.gz");
        let spoofed_content = log_key(27, "0905", "BBBBBBBBBBBBBBBB");
        let bomb = log_key(27, "0910", "CCCCCCCCCCCCCCCC");
        let not_gzip = log_key(27, "0915", "DDDDDDDDDDDDDDDD");
        let appended = log_key(27, "0920", "EEEEEEEEEEEEEEEE");
        world.source.put(&spoofed_name, log_body(MEMBER), &[]);
        world
            .source
            .put(&spoofed_content, log_body("333333333333"), &[]);
        world.source.put(&bomb, gzip(&vec![0u8; 4 << 20]), &[]);
        world
            .source
            .put(&not_gzip, br#"{"Records":[]}"#.to_vec(), &[]);
        let mut two_members = log_body(MEMBER);
        two_members.extend(gzip(br#"{"Records":[{"eventName":"Forged"}]}"#));
        world.source.put(&appended, two_members, &[]);
        let outcome = world.run(Window::Incremental).await;
        let mut found = kinds(&outcome);
        found.sort();
        let mut expected = vec![
            (FindingKind::AccountMismatch, spoofed_name.clone()),
            (FindingKind::AccountMismatch, spoofed_content.clone()),
            (FindingKind::ObjectMalformed, bomb.clone()),
            (FindingKind::ObjectMalformed, not_gzip.clone()),
            (FindingKind::LogFileTrailingData, appended.clone()),
        ];
        expected.sort();
        assert_eq!(found, expected);
        for key in [&spoofed_name, &spoofed_content, &bomb, &not_gzip, &appended] {
            assert_eq!(
                world.archive.version_count(&world.archive_key(key)),
                1,
                "{key} archived as evidence"
            );
        }
        assert_eq!(outcome.stats.objects_copied, 5);
    }

    #[tokio::test]
    async fn account_claims_in_large_logs_are_checked_too() {
        let mut world = World::new();
        world.settings.copy.inflate_limits = InflateLimits {
            max_inflated_bytes: 64 << 20,
            max_ratio: 10_000,
        };
        // ~3 MiB of records (more than the copy keeps inflated), one of them
        // far down claiming another account; and a large clean file.
        let large = |odd_one: Option<&str>| {
            let mut json = String::from(r#"{"Records":["#);
            for index in 0..20_000 {
                let account = match odd_one {
                    Some(other) if index == 19_000 => other,
                    _ => MEMBER,
                };
                if index > 0 {
                    json.push(',');
                }
                json.push_str(&format!(
                    r#"{{"eventName":"GetObject","requestParameters":{{"bucketName":"b","key":"k/{index:0>120}"}},"recipientAccountId":"{account}"}}"#
                ));
            }
            json.push_str("]}");
            assert!(json.len() as u64 > crate::copy::KEEP_INFLATED_BYTES);
            gzip(json.as_bytes())
        };
        let spoofed = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        let clean = log_key(27, "0905", "BBBBBBBBBBBBBBBB");
        world.source.put(&spoofed, large(Some("333333333333")), &[]);
        world.source.put(&clean, large(None), &[]);
        let outcome = world.run(Window::Incremental).await;
        assert_eq!(outcome.stats.objects_copied, 2, "{:?}", outcome.errors);
        assert_eq!(
            kinds(&outcome),
            vec![(FindingKind::AccountMismatch, spoofed)]
        );
        assert!(outcome.findings[0].detail.contains("333333333333"));
    }

    #[tokio::test]
    async fn account_claims_in_multipart_logs_are_checked_as_they_stream() {
        let mut world = World::new();
        world.settings.copy.multipart_threshold_bytes = 64 * 1024;
        world.settings.copy.inflate_limits = InflateLimits {
            max_inflated_bytes: 64 << 20,
            max_ratio: 10_000,
        };
        // Records with hard-to-compress keys, so the gzip spans several parts.
        let log = |odd_one: Option<&str>| {
            let mut state = 0x853c_49e6_748f_ea9b_u64;
            let mut json = String::from(r#"{"Records":["#);
            for index in 0..12_000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let account = match odd_one {
                    Some(other) if index == 11_900 => other,
                    _ => MEMBER,
                };
                if index > 0 {
                    json.push(',');
                }
                json.push_str(&format!(
                    r#"{{"eventName":"GetObject","requestParameters":{{"key":"{state:016x}{:016x}"}},"recipientAccountId":"{account}"}}"#,
                    state.rotate_left(17)
                ));
            }
            json.push_str("]}");
            gzip(json.as_bytes())
        };
        let spoofed = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        let clean = log_key(27, "0905", "BBBBBBBBBBBBBBBB");
        let spoofed_body = log(Some("333333333333"));
        assert!(
            spoofed_body.len() > 2 * 64 * 1024,
            "{} bytes",
            spoofed_body.len()
        );
        world.source.put(&spoofed, spoofed_body, &[]);
        world.source.put(&clean, log(None), &[]);
        let outcome = world.run(Window::Incremental).await;
        assert_eq!(outcome.stats.objects_copied, 2, "{:?}", outcome.errors);
        assert!(world
            .archive
            .latest_head(&world.archive_key(&spoofed))
            .unwrap()
            .checksum_sha256
            .unwrap()
            .contains('-'));
        assert_eq!(
            kinds(&outcome),
            vec![(FindingKind::AccountMismatch, spoofed)]
        );
    }

    #[tokio::test]
    async fn a_copy_that_fails_verification_is_a_finding_and_never_done() {
        let world = World::new();
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, log_body(MEMBER), &[]);
        *world.archive.wrong_kms_key.lock().unwrap() =
            Some("arn:aws:kms:us-east-1:999999999999:key/evil".into());
        let outcome = world.run(Window::Incremental).await;
        assert_eq!(
            kinds(&outcome),
            vec![(FindingKind::ArchiveCopyInvalid, key.clone())]
        );
        let source = SourceRef {
            account_id: MEMBER.into(),
            bucket: "trail-bucket".into(),
            key,
        };
        assert_eq!(
            world.store.object(&source).unwrap(),
            None,
            "never recorded as done"
        );
        assert_eq!(
            world.archive.puts.load(Ordering::Relaxed),
            2,
            "retried once"
        );
    }

    #[tokio::test]
    async fn large_objects_go_up_in_bounded_parts() {
        let mut world = World::new();
        world.settings.copy.inflate_limits = InflateLimits {
            max_inflated_bytes: 1 << 30,
            max_ratio: 1 << 20,
        };
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        // Incompressible content so the raw object spans three parts.
        let noise = noise(12 << 20, 0x1234_5678_u64);
        let body = gzip(&noise);
        world.source.put(&key, body.clone(), &[]);
        let outcome = world.run(Window::Incremental).await;
        assert_eq!(
            outcome.stats.objects_copied, 1,
            "{:?} {:?}",
            outcome.errors, outcome.findings
        );
        let archive_key = world.archive_key(&key);
        assert_eq!(
            world.archive.latest_body(&archive_key).as_deref(),
            Some(body.as_slice())
        );
        assert!(world
            .archive
            .latest_head(&archive_key)
            .unwrap()
            .checksum_sha256
            .unwrap()
            .ends_with("-3"));
    }

    #[tokio::test]
    async fn a_body_that_breaks_mid_multipart_leaves_no_upload_behind() {
        let mut world = World::new();
        world.settings.copy.multipart_threshold_bytes = 64 * 1024;
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        let noise = noise(512 * 1024, 0x9e37_79b9_u64);
        world.source.put(&key, gzip(&noise), &[]);
        world.source.break_bodies(&key, 200 * 1024);
        let outcome = world.run(Window::Incremental).await;
        assert_eq!(outcome.stats.objects_copied, 0);
        assert_eq!(outcome.errors.len(), 1, "{:?}", outcome.errors);
        assert_eq!(world.archive.version_count(&world.archive_key(&key)), 0);
        assert_eq!(
            world.archive.open_uploads(),
            0,
            "every attempt's multipart upload was aborted"
        );
    }

    #[tokio::test]
    async fn a_bucket_that_refuses_listing_is_one_error_not_one_per_partition() {
        let mut world = World::new();
        world.settings.list_concurrency = 1;
        world.source.put(
            &log_key(27, "0900", "AAAAAAAAAAAAAAAA"),
            log_body(MEMBER),
            &[],
        );
        world
            .source
            .fail_lists(SeamError::AccessDenied("s3:ListBucket".into()));
        let outcome = world.run(Window::Incremental).await;
        assert_eq!(outcome.errors.len(), 1, "{:?}", outcome.errors);
        assert_eq!(outcome.errors[0].account_id, MEMBER);
        assert!(outcome.failed_accounts.contains(MEMBER));
    }

    #[tokio::test]
    async fn a_source_that_denies_access_is_an_error_not_a_crash() {
        let world = World::new();
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, log_body(MEMBER), &[]);
        world
            .source
            .fail_gets(&key, SeamError::AccessDenied("kms:Decrypt".into()));
        let outcome = world.run(Window::Incremental).await;
        assert_eq!(outcome.errors.len(), 1);
        assert!(outcome.failed_accounts.contains(MEMBER));
        assert_eq!(
            world.source.gets.load(Ordering::Relaxed),
            1,
            "permanent errors are not retried"
        );
        // A run with a failed copy is not clean: the next one looks in the
        // archive before copying.
        assert!(world
            .store
            .get_state(IN_FLIGHT)
            .unwrap()
            .is_some_and(|v| !v.is_empty()));
    }

    #[tokio::test]
    async fn a_resumed_backfill_does_not_list_completed_partitions_again() {
        let world = World::new();
        let ok_key = log_key(10, "0100", "AAAAAAAAAAAAAAAA");
        let failing_key = log_key(11, "0100", "BBBBBBBBBBBBBBBB");
        world.source.put(&ok_key, log_body(MEMBER), &[]);
        world.source.put(&failing_key, log_body(MEMBER), &[]);
        world.source.fail_gets(
            &failing_key,
            SeamError::AccessDenied("transient policy glitch".into()),
        );
        let range = Window::Range {
            from: chrono::NaiveDate::from_ymd_opt(2026, 11, 9).unwrap(),
            to: chrono::NaiveDate::from_ymd_opt(2026, 11, 11).unwrap(),
        };
        let first = world.run(range).await;
        assert_eq!(first.stats.objects_copied, 1);
        assert_eq!(first.errors.len(), 1);
        assert_eq!(first.stats.partitions_skipped, 0);
        // The resumed run skips the two completed days and retries the third.
        let lists_before = world.source.lists.load(Ordering::Relaxed);
        world.source.clear_failures();
        let second = world.run(range).await;
        assert_eq!(second.stats.partitions_skipped, 2, "{:?}", second.errors);
        assert_eq!(second.stats.objects_copied, 1);
        assert_eq!(
            world.source.lists.load(Ordering::Relaxed) - lists_before,
            1,
            "only the unfinished partition is listed"
        );
        let third = world.run(range).await;
        assert_eq!(third.stats.partitions_skipped, 3);
        assert_eq!(third.stats.objects_copied, 0);
    }

    #[tokio::test]
    async fn another_accounts_folder_in_a_member_bucket_is_collected_as_evidence() {
        let world = World::new();
        let foreign = "AWSLogs/333333333333/CloudTrail/us-east-1/2026/11/27/333333333333_CloudTrail_us-east-1_20261127T0900Z_AAAAAAAAAAAAAAAA.json.gz";
        world.source.put(foreign, log_body("333333333333"), &[]);
        world.source.put(
            &log_key(27, "0900", "BBBBBBBBBBBBBBBB"),
            log_body(MEMBER),
            &[],
        );
        let outcome = world.run(Window::Incremental).await;
        assert_eq!(outcome.stats.objects_copied, 2);
        assert_eq!(
            kinds(&outcome),
            vec![(FindingKind::AccountMismatch, foreign.to_string())]
        );
        // Archived under the account whose role read it, never the claimed one.
        assert_eq!(world.archive.version_count(&world.archive_key(foreign)), 1);
        // Discovery (including the foreign folder scan) is cached: a rerun makes
        // one LIST per open partition of each root and nothing else.
        let before = world.source.lists.load(Ordering::Relaxed);
        world.run(Window::Incremental).await;
        assert_eq!(world.source.lists.load(Ordering::Relaxed) - before, 2 * 3);
    }
}
