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

use crate::cloudtrail::gzip::{inflate_single_member, InflateError};
use crate::cloudtrail::keys::{parse_trail_key, Family, KeyError, TrailKey};
use crate::copy::{adoptable_copy, copy_object, record_from_head, CopyError, CopySettings};
use crate::error::SeamError;
use crate::findings::{Finding, FindingKind};
use crate::report::{OperationError, Stats};
use crate::seams::{Archive, Clock, ListedObject, ProgressStore, SourceRef, TrailSource};

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
    /// Digests copied in this run: their chains need validation.
    pub digests_copied: BTreeSet<SourceRef>,
    /// Accounts that had an operational error.
    pub failed_accounts: BTreeSet<String>,
}

#[derive(Serialize, Deserialize)]
struct Discovery {
    at: i64,
    /// family folder name -> regions
    families: BTreeMap<String, Vec<String>>,
}

#[derive(Clone)]
struct Partition {
    scope: SourceScope,
    family: String,
    region: String,
    date: NaiveDate,
}

impl Partition {
    fn prefix(&self) -> String {
        format!(
            "{}{}/{}/{}/",
            self.scope.root,
            self.family,
            self.region,
            self.date.format("%Y/%m/%d")
        )
    }
}

struct CopyJob {
    scope: SourceScope,
    source: SourceRef,
    listed: ListedObject,
    previous: Option<crate::seams::ObjectRecord>,
    adopt_first: bool,
}

/// Shared run state: the outcome under a mutex, counters lock-free.
struct Run<'a> {
    archive: &'a dyn Archive,
    store: &'a dyn ProgressStore,
    settings: &'a CollectSettings,
    now: DateTime<Utc>,
    counters: &'a Counters,
    outcome: Mutex<CollectOutcome>,
}

impl Run<'_> {
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
        match self.store.record_finding(finding) {
            Ok(recorded) => {
                if recorded.new {
                    warn!(kind = %recorded.kind, account_id = %recorded.account_id, key = %recorded.key, detail = %recorded.detail, "finding");
                }
                self.outcome().findings.push(recorded);
            }
            Err(error) => self.error("-", "record_finding", &error),
        }
    }
}

/// Runs one collection over `scopes`. Errors of one scope never stop the
/// others; they are reported in the outcome.
pub async fn collect(
    scopes: Vec<SourceScope>,
    archive: &dyn Archive,
    store: &dyn ProgressStore,
    clock: &dyn Clock,
    settings: &CollectSettings,
    window: Window,
    cancel: &CancellationToken,
    counters: &Counters,
) -> CollectOutcome {
    let run = Run {
        archive,
        store,
        settings,
        now: clock.now(),
        counters,
        outcome: Mutex::new(CollectOutcome::default()),
    };
    let run = &run;

    // 1. Partitions of every scope (discovery is cached between runs).
    let partition_lists = futures::stream::iter(scopes.iter().cloned())
        .map(|scope| async move {
            let span = info_span!("account", account_id = %scope.member_account_id, bucket = %scope.source.bucket());
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
            let region = parse_trail_key(&job.source.key).map(|k| k.region).unwrap_or_default();
            let span = info_span!("account", account_id = %job.scope.member_account_id, region = %region);
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
) -> Result<BTreeMap<String, Vec<String>>, SeamError> {
    let name = scope.state_name("discovery");
    if let Some(bytes) = run.store.get_state(&name)? {
        if let Ok(cached) = serde_json::from_slice::<Discovery>(&bytes) {
            let fresh = run.now.timestamp() - cached.at < run.settings.sweep_interval.num_seconds();
            let regions_match = scope.regions.is_empty()
                || cached
                    .families
                    .values()
                    .all(|regions| *regions == scope.regions);
            if fresh && regions_match {
                return Ok(cached.families);
            }
        }
    }
    let mut families = BTreeMap::new();
    for folder in scope.source.list_folders(&scope.root).await? {
        let family = folder
            .trim_start_matches(&scope.root)
            .trim_end_matches('/')
            .to_string();
        // CloudTrail, CloudTrail-Digest, CloudTrail-Insight and any other sibling.
        if family != "CloudTrail" && !family.starts_with("CloudTrail-") {
            continue;
        }
        let regions = if scope.regions.is_empty() {
            let family_root = format!("{}{}/", scope.root, family);
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
    let cached = Discovery {
        at: run.now.timestamp(),
        families: families.clone(),
    };
    if let Ok(bytes) = serde_json::to_vec(&cached) {
        run.store.put_state(&name, &bytes)?;
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
    let families = match discover(run, scope).await {
        Ok(families) => families,
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
        families = families.len(),
        dates = dates.len(),
        "partitions planned"
    );
    let mut partitions = Vec::new();
    for (family, regions) in &families {
        for region in regions {
            for date in &dates {
                partitions.push(Partition {
                    scope: scope.clone(),
                    family: family.clone(),
                    region: region.clone(),
                    date: *date,
                });
            }
        }
    }
    partitions
}

async fn list_partition(run: &Run<'_>, partition: Partition) -> Vec<CopyJob> {
    let prefix = partition.prefix();
    let scope = &partition.scope;
    let listed = match scope.source.list(&prefix).await {
        Ok(listed) => listed,
        Err(error) => {
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
        let adopt_first = run.store.has_intent(&source).unwrap_or(true);
        jobs.push(CopyJob {
            scope: scope.clone(),
            source,
            listed: object,
            previous,
            adopt_first,
        });
    }
    // Intents are durable before the first byte is written, so a crash
    // anywhere after this point makes the rerun look in the archive first.
    let mut intent_failed = false;
    for job in jobs.iter().filter(|job| !job.adopt_first) {
        intent_failed |= run.store.record_intent(&job.source).is_err();
    }
    if intent_failed || (!jobs.is_empty() && run.store.flush().is_err()) {
        run.error(
            &scope.member_account_id,
            "record_intent",
            &"the progress store refused a write",
        );
        return Vec::new();
    }
    run.outcome().stats.objects_skipped += skipped;
    run.counters
        .objects_to_copy
        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
    jobs
}

async fn copy_job(run: &Run<'_>, job: CopyJob) {
    let settings = &run.settings.copy;
    let archive_key = job.source.archive_key(&settings.archive_prefix);
    let member = job.scope.member_account_id.as_str();

    // A previous run may have died between PUT and recording: adopt its copy.
    if job.adopt_first && job.previous.is_none() {
        match adoptable_copy(run.archive, settings, &archive_key, &job.listed.etag).await {
            Ok(Some(head)) => {
                if let Some(record) = record_from_head(&head, run.now.timestamp()) {
                    debug!(key = %job.source.key, "adopted copy of an interrupted run");
                    finish(run, &job, record, None);
                    run.outcome().stats.objects_adopted += 1;
                    return;
                }
            }
            Ok(None) => {}
            Err(error) => {
                run.error(
                    member,
                    &format!("head s3://{}/{archive_key}", run.archive.bucket()),
                    &error,
                );
                return;
            }
        }
    }

    let attempts = run.settings.copy_attempts.max(1);
    let mut attempt = 0;
    let copied = loop {
        attempt += 1;
        match copy_object(
            job.scope.source.as_ref(),
            run.archive,
            settings,
            &job.source,
            run.now,
        )
        .await
        {
            Ok(copied) => break copied,
            Err(error) if error.is_retryable() && attempt < attempts => {
                debug!(key = %job.source.key, attempt, %error, "copy attempt failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                    .await;
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
                return;
            }
            Err(error) => {
                run.error(
                    member,
                    &format!("copy s3://{}/{}", job.source.bucket, job.source.key),
                    &error,
                );
                return;
            }
        }
    };

    run.counters.objects_copied.fetch_add(1, Ordering::Relaxed);
    run.counters
        .bytes_copied
        .fetch_add(copied.bytes, Ordering::Relaxed);
    if let Some(previous) = &job.previous {
        let detail = format!(
            "source object changed after it was archived: ETag {} -> {}, content SHA-256 {} -> {}; both versions are kept in the archive",
            previous.etag,
            copied.record.etag,
            previous.content_sha256.map(hex::encode).unwrap_or_else(|| "-".into()),
            copied.record.content_sha256.map(hex::encode).unwrap_or_else(|| "-".into()),
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
    for finding in inspect(&job, &copied) {
        run.finding(finding.with_archive_key(Some(&archive_key)));
    }
    let is_digest = parse_trail_key(&job.source.key).is_ok_and(|key| key.is_digest());
    finish(
        run,
        &job,
        copied.record,
        is_digest.then(|| job.source.clone()),
    );
}

fn finish(
    run: &Run<'_>,
    job: &CopyJob,
    record: crate::seams::ObjectRecord,
    digest: Option<SourceRef>,
) {
    if let Err(error) = run.store.record_object(&job.source, &record) {
        run.error(&job.scope.member_account_id, "record_object", &error);
        return;
    }
    let _ = run.store.clear_intent(&job.source);
    if let Some(digest) = digest {
        run.outcome().digests_copied.insert(digest);
    }
}

#[derive(Deserialize)]
struct RecordsOnly {
    #[serde(rename = "Records")]
    records: Vec<RecipientOnly>,
}

#[derive(Deserialize)]
struct RecipientOnly {
    #[serde(rename = "recipientAccountId")]
    recipient_account_id: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct DigestAccountOnly {
    #[serde(rename = "awsAccountId")]
    aws_account_id: Option<serde_json::Value>,
}

/// Largest inflated body that is parsed for its account claims at copy time.
const MAX_PARSED_BYTES: u64 = 64 * 1024 * 1024;

/// Findings about a freshly copied object: a name or content that claims
/// another account, or a body that cannot be CloudTrail output.
fn inspect(job: &CopyJob, copied: &crate::copy::Copied) -> Vec<Finding> {
    let member = job.scope.member_account_id.as_str();
    let bucket = job.source.bucket.as_str();
    let key = job.source.key.as_str();
    let mut findings = Vec::new();
    let trail_key: Option<TrailKey> = match parse_trail_key(key) {
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
    match &copied.inflate_error {
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
    // Account claims inside the content (small bodies only: large ones were
    // streamed and are checked by validation).
    if copied.inflate_error.is_none() {
        if let Some(body) = &copied.small_body {
            let limits = crate::cloudtrail::gzip::InflateLimits {
                max_inflated_bytes: MAX_PARSED_BYTES,
                max_ratio: u64::MAX,
            };
            if let Ok(inflated) = inflate_single_member(body, limits) {
                findings.extend(content_claims(
                    member,
                    bucket,
                    key,
                    is_digest,
                    trail_key.as_ref(),
                    &inflated,
                ));
            }
        }
    }
    for finding in &mut findings {
        finding.region = region.clone();
    }
    findings
}

fn content_claims(
    member: &str,
    bucket: &str,
    key: &str,
    is_digest: bool,
    trail_key: Option<&TrailKey>,
    inflated: &[u8],
) -> Vec<Finding> {
    let claims_other = |value: &Option<serde_json::Value>| {
        value
            .as_ref()
            .and_then(|v| v.as_str())
            .is_some_and(|claimed| claimed != member)
    };
    if is_digest {
        return match serde_json::from_slice::<DigestAccountOnly>(inflated) {
            Ok(digest) if claims_other(&digest.aws_account_id) => vec![Finding::new(
                FindingKind::AccountMismatch,
                member,
                bucket,
                key,
                format!(
                    "digest body claims account {} in the source of account {member}",
                    digest
                        .aws_account_id
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
            )],
            _ => Vec::new(),
        };
    }
    let is_log_family = trail_key.is_some_and(|k| matches!(&k.family, Family::Log { .. }));
    match serde_json::from_slice::<RecordsOnly>(inflated) {
        Ok(log) => {
            let others: BTreeSet<String> = log
                .records
                .iter()
                .filter(|record| claims_other(&record.recipient_account_id))
                .filter_map(|record| {
                    record
                        .recipient_account_id
                        .as_ref()
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                })
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
                        others.into_iter().collect::<Vec<_>>().join(", ")
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
