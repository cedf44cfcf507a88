//! Retention enforcement (`trailvault retention [--apply] [--full]`).
//!
//! Every archived version must stay under Object Lock until at least its
//! file's date plus `retention_days`. The file's date is the day folder of its
//! CloudTrail key, capped by the time it was copied (a name cannot date a file
//! after it reached the archive, and an attacker-chosen name must not be able
//! to lock an object for decades). A copy made by `collect` is locked from the
//! copy time, so it only falls short when `retention_days` was raised later.
//!
//! A short lock is extended with `PutObjectRetention` when applying, and only
//! ever extended: the new date is the later of the current and the required
//! one, and a `COMPLIANCE` lock is never asked to become `GOVERNANCE`.
//! What cannot be fixed (a version without any lock, a refused extension, a
//! version that vanished, bucket settings) becomes a finding.
//!
//! Which versions: the store's records (one current version per source
//! object) by default, or every version the archive lists with `--full`.
//!
//! The same command runs source expiry when configured ([`crate::retention::expiry`]).

pub mod expiry;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cloudtrail::keys::parse_trail_key;
use crate::copy::meta;
use crate::model::error::SeamError;
use crate::model::findings::{Finding, FindingKind, FindingSet};
use crate::model::object::ArchivedSource;
use crate::model::object::SourceRef;
use crate::model::report::OperationError;
use crate::model::time::{utc_text, utc_text_or};
use crate::progress;
use crate::seams::{Archive, ArchivedHead, BucketProtection, LockMode, ProgressStore};

/// How a retention run behaves; fixed for a run.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    pub archive_prefix: String,
    /// The configured lock mode: a weaker lock (GOVERNANCE when COMPLIANCE is
    /// configured) is upgraded; a stronger one is kept.
    pub lock_mode: LockMode,
    pub retention_days: u32,
    /// HEADs (and PutObjectRetention calls) in flight at once.
    pub concurrency: usize,
    /// Extend short locks; otherwise only plan.
    pub apply: bool,
}

/// One archived version to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub archive_key: String,
    /// `None`: the current version (a store record without a version id).
    pub version_id: Option<String>,
    /// Seconds since the epoch, when the store knows it (otherwise read from
    /// the version's `tv-copied-at` metadata).
    pub copied_at: Option<i64>,
}

/// A lock that is (or was, when applied) shorter or weaker than required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub archive_key: String,
    pub version_id: String,
    pub current_mode: Option<LockMode>,
    pub current_until: Option<DateTime<Utc>>,
    /// The mode the lock gets (never weaker than the current one).
    pub mode: LockMode,
    /// The date the lock gets: the later of the current and the required one.
    pub until: DateTime<Utc>,
    /// The file's date plus the retention period.
    pub required_until: DateTime<Utc>,
    /// The extension was made and confirmed by a HEAD.
    pub applied: bool,
}

/// What a retention run found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionOutcome {
    /// Versions whose lock was read.
    pub checked: u64,
    /// Versions already locked long and strongly enough.
    pub compliant: u64,
    /// Versions short of the requirement: the plan (dry run) or what was done.
    pub changes: Vec<Change>,
    /// Changes applied and confirmed.
    pub extended: u64,
    /// Bucket-level problems (also raised as one `archive_misconfigured`).
    pub bucket_problems: Vec<String>,
    /// Lifecycle settings worth fixing that put no history at risk.
    pub lifecycle_warnings: Vec<String>,
    /// Source expiry (`[retention] source_retention_days`); `None` when off.
    pub source_expiry: Option<crate::retention::expiry::ExpiryOutcome>,
    #[serde(skip)]
    pub findings: Vec<Finding>,
    #[serde(skip)]
    pub errors: Vec<OperationError>,
}

/// Whole seconds: S3 keeps retain-until dates to the second.
fn whole_seconds(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(time.timestamp(), 0).unwrap_or(time)
}

/// The date a file's retention counts from: its CloudTrail day folder
/// (midnight UTC), never later than when it was copied nor than `now`.
/// `None` when neither the key nor the copy time tells.
pub fn file_date(
    source_key: Option<&str>,
    copied_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let folder = source_key
        .and_then(|key| parse_trail_key(key).ok())
        .map(|key| key.date.and_time(NaiveTime::MIN).and_utc());
    let date = match (folder, copied_at) {
        (Some(folder), Some(copied)) => folder.min(copied),
        (Some(folder), None) => folder,
        (None, Some(copied)) => copied,
        (None, None) => return None,
    };
    Some(date.min(now))
}

/// The retain-until date a file of `file_date` needs.
pub fn required_until(file_date: DateTime<Utc>, retention_days: u32) -> DateTime<Utc> {
    whole_seconds(file_date + Duration::days(i64::from(retention_days)))
}

/// What a version's lock needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Compliant,
    /// Extend (or upgrade) to this mode and date.
    Extend {
        mode: LockMode,
        until: DateTime<Utc>,
    },
}

/// Judges one version's lock against the requirement. Never plans a shorter
/// date or a weaker mode than the current one.
pub fn judge(head: &ArchivedHead, required: DateTime<Utc>, configured: LockMode) -> Verdict {
    let mode = match head.lock_mode {
        Some(LockMode::Compliance) => LockMode::Compliance,
        _ => configured,
    };
    let long_enough = head
        .retain_until
        .is_some_and(|until| until + Duration::seconds(1) >= required);
    if long_enough && head.lock_mode == Some(mode) {
        return Verdict::Compliant;
    }
    let until = head.retain_until.map_or(required, |current| {
        if current > required {
            current
        } else {
            required
        }
    });
    Verdict::Extend { mode, until }
}

/// Bucket-level settings the archive needs: versioning, an Object Lock
/// default retention at least as long (and as strong) as configured,
/// default SSE-KMS encryption and a bucket policy.
pub fn bucket_problems(protection: &BucketProtection, settings: &RetentionSettings) -> Vec<String> {
    let mut problems = Vec::new();
    if !protection.versioning_enabled {
        problems.push("versioning is not enabled".to_string());
    }
    match protection.default_retention {
        None => problems.push("no Object Lock default retention".to_string()),
        Some((mode, days)) => {
            if days < settings.retention_days {
                problems.push(format!(
                    "Object Lock default retention is {days} days, less than retention_days = {}",
                    settings.retention_days
                ));
            }
            if mode == LockMode::Governance && settings.lock_mode == LockMode::Compliance {
                problems.push(
                    "Object Lock default retention mode is GOVERNANCE, COMPLIANCE is configured"
                        .to_string(),
                );
            }
        }
    }
    if protection.default_sse_kms_key.is_none() {
        problems.push("default encryption is not SSE-KMS".to_string());
    }
    problems.extend(protection.bucket_policy_problems(settings.retention_days));
    // Object Lock keeps locked versions whatever a lifecycle rule says, but a rule
    // that expires history before the retention period is a configuration
    // that fights the archive's purpose.
    if let Some(lifecycle) = &protection.lifecycle {
        let retention_days = i64::from(settings.retention_days);
        for (what, days) in [
            ("current", lifecycle.expiration_days),
            ("noncurrent", lifecycle.noncurrent_expiration_days),
        ] {
            if let Some(days) = days.filter(|days| i64::from(*days) < retention_days) {
                problems.push(format!("a lifecycle rule expires {what} versions after {days} days, less than retention_days = {retention_days}"));
            }
        }
    }
    problems
}

/// Lifecycle settings that cost money or tidiness but put no history at risk.
pub fn lifecycle_warnings(protection: &BucketProtection) -> Vec<String> {
    match &protection.lifecycle {
        None => vec![
            "no lifecycle configuration: incomplete multipart uploads are never aborted"
                .to_string(),
        ],
        Some(lifecycle) if lifecycle.abort_incomplete_multipart_days.is_none() => {
            vec!["no lifecycle rule aborts incomplete multipart uploads".to_string()]
        }
        Some(_) => Vec::new(),
    }
}

/// Store records read per step of a [`Targets::Store`] walk.
const STORE_TARGETS_BATCH: usize = 1024;

/// The store's records of `sources`: the current version of each source
/// object, and every version a newer copy superseded, at once (tests; a run
/// walks [`Targets::Store`] a batch at a time).
pub fn targets_from_store(
    store: &dyn ProgressStore,
    sources: &[ArchivedSource],
    archive_prefix: &str,
) -> Result<Vec<Target>, SeamError> {
    let mut walk = StoreTargets::new(sources, archive_prefix);
    let mut targets = Vec::new();
    while let Some(batch) = walk.next_batch(store)? {
        targets.extend(batch);
    }
    Ok(targets)
}

/// A walk over the store's targets of some sources: each source's records in
/// key order, a batch at a time, then the versions newer copies superseded.
#[derive(Debug, Clone)]
struct StoreTargets {
    sources: Vec<ArchivedSource>,
    archive_prefix: String,
    /// The source being read, its next record key (`None`: its records are
    /// read, its superseded versions are next).
    at: usize,
    resume: Option<String>,
    batch: usize,
}

impl StoreTargets {
    fn new(sources: &[ArchivedSource], archive_prefix: &str) -> StoreTargets {
        let mut unique = sources.to_vec();
        unique.sort();
        unique.dedup();
        StoreTargets {
            sources: unique,
            archive_prefix: archive_prefix.to_string(),
            at: 0,
            resume: Some(String::new()),
            batch: STORE_TARGETS_BATCH,
        }
    }

    /// The next batch of targets; `None` when every source is read.
    fn next_batch(&mut self, store: &dyn ProgressStore) -> Result<Option<Vec<Target>>, SeamError> {
        let Some(source) = self.sources.get(self.at).cloned() else {
            return Ok(None);
        };
        let source_ref = |key: String| SourceRef {
            account_id: source.reader_account_id.clone(),
            bucket: source.bucket.clone(),
            key,
        };
        let mut targets = Vec::new();
        match self.resume.take() {
            Some(start) => {
                let batch = store.objects_batch(
                    &source.reader_account_id,
                    &source.bucket,
                    &start,
                    self.batch,
                )?;
                targets.extend(batch.records.into_iter().map(|(key, record)| Target {
                    archive_key: source_ref(key).archive_key(&self.archive_prefix),
                    version_id: record.archive_version_id,
                    copied_at: Some(record.copied_at),
                }));
                self.resume = batch.next;
            }
            None => {
                for superseded in progress::superseded::under(store, &source)? {
                    targets.push(Target {
                        archive_key: superseded.source.archive_key(&self.archive_prefix),
                        version_id: Some(superseded.version_id),
                        copied_at: superseded.copied_at,
                    });
                }
                self.at += 1;
                self.resume = Some(String::new());
            }
        }
        Ok(Some(targets))
    }
}

/// The versions a retention run checks.
#[derive(Debug)]
pub enum Targets {
    /// Known up front.
    Listed(Vec<Target>),
    /// The store's records of `sources` (the current copy of each source
    /// object and every version a newer copy superseded), read a batch at a
    /// time while the versions are checked, then `extra` (the findings
    /// ledger, which the store does not record).
    Store {
        sources: Vec<ArchivedSource>,
        archive_prefix: String,
        extra: Vec<Target>,
    },
    /// Every version the archive lists under this prefix (`--full`),
    /// walked one listing page at a time: a whole archive's versions are
    /// never held at once.
    Archive(String),
}

impl Targets {
    /// Every version under the archive prefix (`--full`).
    pub fn whole_archive(archive_prefix: &str) -> Targets {
        Targets::Archive(if archive_prefix.is_empty() {
            String::new()
        } else {
            format!("{archive_prefix}/")
        })
    }

    /// The targets one at a time; a listing page that cannot be read ends
    /// the walk with its error.
    fn into_stream<'a>(
        self,
        archive: &'a dyn Archive,
        store: &'a dyn ProgressStore,
    ) -> futures::stream::BoxStream<'a, Result<Target, OperationError>> {
        match self {
            Targets::Listed(targets) => futures::stream::iter(targets.into_iter().map(Ok)).boxed(),
            Targets::Store {
                sources,
                archive_prefix,
                extra,
            } => {
                let walk = StoreTargets::new(&sources, &archive_prefix);
                futures::stream::unfold(Some(walk), move |walk| async move {
                    let mut walk = walk?;
                    match walk.next_batch(store) {
                        Ok(Some(batch)) => Some((batch.into_iter().map(Ok).collect(), Some(walk))),
                        Ok(None) => None,
                        Err(error) => Some((
                            vec![Err(OperationError {
                                account_id: "-".to_string(),
                                operation: "read_store".to_string(),
                                message: error.to_string(),
                            })],
                            None,
                        )),
                    }
                })
                .flat_map(futures::stream::iter)
                .chain(futures::stream::iter(extra.into_iter().map(Ok)))
                .boxed()
            }
            Targets::Archive(list_prefix) => futures::stream::unfold(Some(None), move |state| {
                let list_prefix = list_prefix.clone();
                async move {
                    let marker = state?;
                    match archive.list_versions_page(&list_prefix, marker).await {
                        Ok(page) => {
                            let next = page.next.map(Some);
                            let targets: Vec<Result<Target, OperationError>> = page
                                .versions
                                .into_iter()
                                .map(|version| {
                                    Ok(Target {
                                        archive_key: version.key,
                                        version_id: Some(version.version_id),
                                        copied_at: None,
                                    })
                                })
                                .collect();
                            Some((targets, next))
                        }
                        Err(error) => Some((
                            vec![Err(OperationError {
                                account_id: "-".to_string(),
                                operation: format!(
                                    "list versions of s3://{}/{list_prefix}",
                                    archive.bucket()
                                ),
                                message: error.to_string(),
                            })],
                            None,
                        )),
                    }
                }
            })
            .flat_map(futures::stream::iter)
            .boxed(),
        }
    }
}

/// Every version the archive lists under the prefix, at once (tests and
/// small archives; `--full` walks [`Targets::whole_archive`] by pages).
pub async fn targets_from_archive(
    archive: &dyn Archive,
    archive_prefix: &str,
) -> Result<Vec<Target>, SeamError> {
    let list_prefix = if archive_prefix.is_empty() {
        String::new()
    } else {
        format!("{archive_prefix}/")
    };
    targets_under(archive, &list_prefix).await
}

/// Every version the archive lists under `list_prefix` (for example the
/// findings ledger, which the store does not record).
pub async fn targets_under(
    archive: &dyn Archive,
    list_prefix: &str,
) -> Result<Vec<Target>, SeamError> {
    Ok(archive
        .list_versions(list_prefix)
        .await?
        .into_iter()
        .map(|version| Target {
            archive_key: version.key,
            version_id: Some(version.version_id),
            copied_at: None,
        })
        .collect())
}

/// Where a finding about an archived version points: the source account,
/// bucket and key when the archive key maps back to one.
fn finding_for(
    kind: FindingKind,
    archive_bucket: &str,
    settings: &RetentionSettings,
    archive_key: &str,
    detail: String,
) -> Finding {
    match SourceRef::from_archive_key(&settings.archive_prefix, archive_key) {
        Some(source) => {
            let parsed = parse_trail_key(&source.key).ok();
            let account = parsed
                .as_ref()
                .map_or(source.account_id.as_str(), |key| key.account_id.as_str());
            Finding::new(kind, account, &source.bucket, &source.key, detail)
                .with_region(parsed.as_ref().map(|key| key.region.as_str()))
                .with_archive_key(Some(archive_key))
        }
        None => Finding::new(kind, "-", archive_bucket, archive_key, detail)
            .with_archive_key(Some(archive_key)),
    }
}

/// What happened to one version.
enum Checked {
    Compliant,
    Change(Change, Option<Finding>),
    Finding(Finding),
    Error(OperationError),
    /// Cancelled before it was read.
    Skipped,
    /// The listing that would have named more versions failed.
    Unlisted(OperationError),
}

async fn check_one(
    archive: &dyn Archive,
    settings: &RetentionSettings,
    target: Target,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> Checked {
    if cancel.is_cancelled() {
        return Checked::Skipped;
    }
    let bucket = archive.bucket();
    let key = target.archive_key.as_str();
    let error = |operation: &str, error: &SeamError| {
        Checked::Error(OperationError {
            account_id: SourceRef::from_archive_key(&settings.archive_prefix, key)
                .map_or_else(|| "-".to_string(), |s| s.account_id),
            operation: format!("{operation} s3://{bucket}/{key}"),
            message: error.to_string(),
        })
    };
    let head = match archive.head(key, target.version_id.as_deref()).await {
        Ok(Some(head)) => head,
        Ok(None) => {
            return Checked::Finding(finding_for(
                FindingKind::ArchiveCopyInvalid,
                bucket,
                settings,
                key,
                format!(
                    "archived version {} is gone from the archive",
                    target.version_id.as_deref().unwrap_or("(current)")
                ),
            ))
        }
        Err(failure) => return error("head", &failure),
    };
    let copied_at = target
        .copied_at
        .or_else(|| {
            head.metadata
                .get(meta::COPIED_AT)
                .and_then(|t| t.parse().ok())
        })
        .and_then(|seconds| DateTime::from_timestamp(seconds, 0));
    let source_key = SourceRef::from_archive_key(&settings.archive_prefix, key).map(|s| s.key);
    let Some(date) = file_date(source_key.as_deref(), copied_at, now) else {
        return Checked::Error(OperationError {
            account_id: "-".to_string(),
            operation: format!("retention s3://{bucket}/{key}"),
            message: "neither the key nor the metadata tells the file's date; not judged"
                .to_string(),
        });
    };
    let required = required_until(date, settings.retention_days);
    debug!(key, current = ?head.retain_until, mode = ?head.lock_mode, %required, "lock judged");
    let (mode, until) = match judge(&head, required, settings.lock_mode) {
        Verdict::Compliant => return Checked::Compliant,
        Verdict::Extend { mode, until } => (mode, until),
    };
    // A copy is verified locked before it is recorded: a version without
    // any lock is evidence in itself, whether or not it can be locked now.
    let unlocked = (head.lock_mode.is_none() || head.retain_until.is_none()).then(|| {
        finding_for(
            FindingKind::ArchiveCopyInvalid,
            bucket,
            settings,
            key,
            "archived version has no Object Lock retention".to_string(),
        )
    });
    let Some(version_id) = target.version_id.clone().or(head.version_id.clone()) else {
        return Checked::Finding(finding_for(
            FindingKind::ArchiveCopyInvalid,
            bucket,
            settings,
            key,
            format!(
                "retained until {}, required {}, and the version has no id to extend",
                utc_text_or(head.retain_until, "never"),
                utc_text(required)
            ),
        ));
    };
    let mut change = Change {
        archive_key: key.to_string(),
        version_id,
        current_mode: head.lock_mode,
        current_until: head.retain_until,
        mode,
        until,
        required_until: required,
        applied: false,
    };
    if !settings.apply {
        return Checked::Change(change, unlocked);
    }
    if let Err(failure) = archive
        .put_retention(key, &change.version_id, mode, until)
        .await
    {
        if failure.is_retryable() || matches!(failure, SeamError::Cancelled) {
            return error("put_object_retention", &failure);
        }
        return Checked::Finding(finding_for(
            FindingKind::ArchiveCopyInvalid,
            bucket,
            settings,
            key,
            format!(
                "retained until {} ({}), required {}; extending the lock was refused: {failure}",
                utc_text_or(head.retain_until, "never"),
                head.lock_mode.map_or("no lock", LockMode::as_str),
                utc_text(required)
            ),
        ));
    }
    // Believe the archive, not the PUT's answer.
    match archive.head(key, Some(&change.version_id)).await {
        Ok(Some(after)) => {
            if judge(&after, required, settings.lock_mode) == Verdict::Compliant {
                change.applied = true;
                Checked::Change(change, unlocked)
            } else {
                Checked::Finding(finding_for(
                    FindingKind::ArchiveCopyInvalid,
                    bucket,
                    settings,
                    key,
                    format!(
                        "the lock was extended to {} but the archive reports {} ({})",
                        utc_text(until),
                        utc_text_or(after.retain_until, "never"),
                        after.lock_mode.map_or("no lock", LockMode::as_str)
                    ),
                ))
            }
        }
        Ok(None) => Checked::Finding(finding_for(
            FindingKind::ArchiveCopyInvalid,
            bucket,
            settings,
            key,
            "archived version vanished while its lock was extended".to_string(),
        )),
        Err(failure) => error("head", &failure),
    }
}

/// Checks (and with `apply`, extends) the locks of `targets`. Findings are
/// recorded in the store; stops taking new versions when `cancel` fires.
pub async fn enforce(
    archive: &dyn Archive,
    store: &dyn ProgressStore,
    settings: &RetentionSettings,
    targets: Vec<Target>,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> RetentionOutcome {
    enforce_targets(
        archive,
        store,
        settings,
        Targets::Listed(targets),
        now,
        cancel,
    )
    .await
}

/// [`enforce`] over [`Targets`], taking the versions as they are listed.
pub async fn enforce_targets(
    archive: &dyn Archive,
    store: &dyn ProgressStore,
    settings: &RetentionSettings,
    targets: Targets,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> RetentionOutcome {
    let mut outcome = RetentionOutcome::default();
    // Each result is counted as it arrives: the results of a whole archive
    // are never held at once.
    let mut results = targets
        .into_stream(archive, store)
        .take_while(|_| std::future::ready(!cancel.is_cancelled()))
        .map(|target| async move {
            match target {
                Ok(target) => check_one(archive, settings, target, now, cancel).await,
                Err(error) => Checked::Unlisted(error),
            }
        })
        .buffer_unordered(settings.concurrency.max(1));
    let mut findings = FindingSet::default();
    while let Some(result) = results.next().await {
        match result {
            Checked::Skipped => continue,
            Checked::Unlisted(error) => {
                warn!(operation = %error.operation, message = %error.message, "retention listing failed");
                outcome.errors.push(error);
                continue;
            }
            Checked::Compliant => outcome.compliant += 1,
            Checked::Change(change, finding) => {
                if change.applied {
                    outcome.extended += 1;
                }
                outcome.changes.push(change);
                if let Some(finding) = finding {
                    findings.insert(finding);
                }
            }
            Checked::Finding(finding) => {
                findings.insert(finding);
            }
            Checked::Error(error) => {
                warn!(account_id = %error.account_id, operation = %error.operation, message = %error.message, "retention check failed");
                outcome.errors.push(error);
            }
        }
        outcome.checked += 1;
    }
    outcome
        .changes
        .sort_by(|a, b| (&a.archive_key, &a.version_id).cmp(&(&b.archive_key, &b.version_id)));
    for finding in findings.into_vec() {
        record(store, &mut outcome, finding);
    }
    info!(
        checked = outcome.checked,
        compliant = outcome.compliant,
        short = outcome.changes.len(),
        extended = outcome.extended,
        findings = outcome.findings.len(),
        "retention checked"
    );
    outcome
}

fn record(store: &dyn ProgressStore, outcome: &mut RetentionOutcome, finding: Finding) {
    match store.record_finding(finding) {
        Ok(recorded) => {
            if recorded.new {
                recorded.log_new();
            }
            outcome.findings.push(recorded);
        }
        Err(error) => outcome.errors.push(OperationError {
            account_id: "-".to_string(),
            operation: "record_finding".to_string(),
            message: error.to_string(),
        }),
    }
}

/// Checks the bucket-level settings; a problem is one `archive_misconfigured`
/// finding (the same one `collect` raises, so it is reported new once).
pub async fn check_bucket(
    archive: &dyn Archive,
    store: &dyn ProgressStore,
    settings: &RetentionSettings,
    outcome: &mut RetentionOutcome,
) {
    let protection = match archive.protection().await {
        Ok(protection) => protection,
        Err(error) => {
            outcome.errors.push(OperationError {
                account_id: "-".to_string(),
                operation: format!("read the configuration of s3://{}", archive.bucket()),
                message: error.to_string(),
            });
            return;
        }
    };
    outcome.lifecycle_warnings = lifecycle_warnings(&protection);
    let problems = bucket_problems(&protection, settings);
    if problems.is_empty() {
        return;
    }
    let finding = Finding::new(
        FindingKind::ArchiveMisconfigured,
        "-",
        archive.bucket(),
        "",
        format!("archive bucket is not locked down: {}", problems.join("; ")),
    );
    outcome.bucket_problems = problems;
    record(store, outcome, finding);
}

/// Proof that this run confirmed the archive is locked down: the bucket's
/// settings and every checked version's lock were read without a failure and
/// the bucket showed no problem. Only [`check`] makes one, and source expiry
/// ([`expiry::expire`]) takes one: a source file is never deleted on the word
/// of an earlier run, a failed read or an unlocked archive.
#[derive(Debug)]
pub struct LockConfirmed(());

impl LockConfirmed {
    #[cfg(test)]
    pub(crate) fn for_tests() -> LockConfirmed {
        LockConfirmed(())
    }
}

/// Retention's check of one run: the bucket's settings ([`check_bucket`]),
/// then every target version's lock ([`enforce`]; extended when
/// `settings.apply`). `targets` is the list of versions, or the operation
/// that failed to produce it. The outcome carries the bucket's problems and
/// findings first; the proof comes only when the whole check went through.
pub async fn check(
    archive: &dyn Archive,
    store: &dyn ProgressStore,
    settings: &RetentionSettings,
    targets: Result<Targets, OperationError>,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> (RetentionOutcome, Option<LockConfirmed>) {
    let mut bucket = RetentionOutcome::default();
    check_bucket(archive, store, settings, &mut bucket).await;
    let mut confirmed = bucket.errors.is_empty() && bucket.bucket_problems.is_empty();
    let mut outcome = match targets {
        Ok(targets) => {
            match &targets {
                Targets::Listed(listed) => info!(
                    versions = listed.len(),
                    apply = settings.apply,
                    "retention check started"
                ),
                Targets::Store { sources, .. } => info!(
                    sources = sources.len(),
                    apply = settings.apply,
                    "retention check of the store's versions started"
                ),
                Targets::Archive(prefix) => info!(
                    prefix = %prefix,
                    apply = settings.apply,
                    "retention check of every archived version started"
                ),
            }
            let checked = enforce_targets(archive, store, settings, targets, now, cancel).await;
            confirmed &= checked.errors.is_empty();
            checked
        }
        Err(error) => {
            confirmed = false;
            let mut failed = RetentionOutcome::default();
            failed.errors.push(error);
            failed
        }
    };
    confirmed &= !cancel.is_cancelled();
    outcome.bucket_problems = bucket.bucket_problems;
    outcome.lifecycle_warnings = bucket.lifecycle_warnings;
    outcome.findings.splice(0..0, bucket.findings);
    outcome.errors.splice(0..0, bucket.errors);
    (outcome, confirmed.then_some(LockConfirmed(())))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;

    use bytes::Bytes;

    use super::*;
    use crate::model::object::ObjectRecord;
    use crate::seams::PutSpec;
    use crate::testsuite::memory::{MemoryArchive, MemoryStore};

    const READER: &str = "222222222201";
    const BUCKET: &str = "aws-cloudtrail-logs-222222222201";
    const PREFIX: &str = "archive";

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn log_key(day: &str) -> String {
        let compact = day.replace('-', "");
        let folders = day.replace('-', "/");
        format!("AWSLogs/{READER}/CloudTrail/us-east-1/{folders}/{READER}_CloudTrail_us-east-1_{compact}T0105Z_abcdefghijklmnop.json.gz")
    }

    fn settings(days: u32, apply: bool) -> RetentionSettings {
        RetentionSettings {
            archive_prefix: PREFIX.to_string(),
            lock_mode: LockMode::Compliance,
            retention_days: days,
            concurrency: 4,
            apply,
        }
    }

    /// Archives `key` as collect would, locked until `until`, and records it.
    async fn archived(
        archive: &MemoryArchive,
        store: &MemoryStore,
        key: &str,
        copied_at: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> String {
        let source = SourceRef {
            account_id: READER.into(),
            bucket: BUCKET.into(),
            key: key.into(),
        };
        let body = Bytes::from_static(b"body");
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        let sha: [u8; 32] = digest.as_ref().try_into().unwrap();
        let spec = PutSpec {
            key: source.archive_key(PREFIX),
            kms_key_id: "key".into(),
            lock_mode: LockMode::Compliance,
            retain_until: until,
            metadata: BTreeMap::from([(
                meta::COPIED_AT.to_string(),
                copied_at.timestamp().to_string(),
            )]),
            content_type: None,
            content_encoding: None,
        };
        let version = archive.put(&spec, body, sha).await.unwrap();
        store
            .record_object(
                &source,
                &ObjectRecord {
                    v: 1,
                    etag: "e".into(),
                    size: 4,
                    raw_sha256: sha,
                    content_sha256: None,
                    content_error: None,
                    archive_version_id: version,
                    copied_at: copied_at.timestamp(),
                },
            )
            .unwrap();
        spec.key
    }

    fn sources() -> Vec<ArchivedSource> {
        vec![ArchivedSource {
            reader_account_id: READER.into(),
            bucket: BUCKET.into(),
        }]
    }

    #[test]
    fn file_dates_come_from_the_day_folder_capped_by_copy_time_and_now() {
        let now = at("2026-03-10T12:00:00Z");
        let key = log_key("2026-03-01");
        assert_eq!(
            file_date(Some(&key), Some(at("2026-03-02T08:00:00Z")), now),
            Some(at("2026-03-01T00:00:00Z"))
        );
        // A name from the future cannot push the date past the copy time.
        let future = log_key("2099-01-01");
        assert_eq!(
            file_date(Some(&future), Some(at("2026-03-02T08:00:00Z")), now),
            Some(at("2026-03-02T08:00:00Z"))
        );
        assert_eq!(file_date(Some(&future), None, now), Some(now));
        assert_eq!(
            file_date(
                Some("not/a/trail/key"),
                Some(at("2026-03-02T08:00:00Z")),
                now
            ),
            Some(at("2026-03-02T08:00:00Z"))
        );
        assert_eq!(file_date(Some("junk"), None, now), None);
        assert_eq!(
            required_until(at("2026-03-01T00:00:00Z"), 30),
            at("2026-03-31T00:00:00Z")
        );
    }

    #[test]
    fn judging_never_shortens_or_weakens() {
        let required = at("2026-04-01T00:00:00Z");
        let head = |mode: Option<LockMode>, until: Option<&str>| ArchivedHead {
            lock_mode: mode,
            retain_until: until.map(at),
            ..ArchivedHead::default()
        };
        let cases = [
            // (mode, until, configured, verdict)
            (
                Some(LockMode::Compliance),
                Some("2026-05-01T00:00:00Z"),
                LockMode::Compliance,
                Verdict::Compliant,
            ),
            (
                Some(LockMode::Compliance),
                Some("2026-03-31T23:59:59Z"),
                LockMode::Compliance,
                Verdict::Compliant,
            ),
            (
                Some(LockMode::Compliance),
                Some("2026-03-01T00:00:00Z"),
                LockMode::Compliance,
                Verdict::Extend {
                    mode: LockMode::Compliance,
                    until: required,
                },
            ),
            // Stronger than configured: kept.
            (
                Some(LockMode::Compliance),
                Some("2026-03-01T00:00:00Z"),
                LockMode::Governance,
                Verdict::Extend {
                    mode: LockMode::Compliance,
                    until: required,
                },
            ),
            // Weaker than configured, long enough: upgraded, date kept.
            (
                Some(LockMode::Governance),
                Some("2026-06-01T00:00:00Z"),
                LockMode::Compliance,
                Verdict::Extend {
                    mode: LockMode::Compliance,
                    until: at("2026-06-01T00:00:00Z"),
                },
            ),
            (
                None,
                None,
                LockMode::Compliance,
                Verdict::Extend {
                    mode: LockMode::Compliance,
                    until: required,
                },
            ),
        ];
        for (mode, until, configured, expected) in cases {
            assert_eq!(
                judge(&head(mode, until), required, configured),
                expected,
                "{mode:?} {until:?} {configured:?}"
            );
        }
    }

    #[test]
    fn bucket_problems_name_each_missing_setting() {
        let good = BucketProtection {
            versioning_enabled: true,
            default_retention: Some((LockMode::Compliance, 400)),
            default_sse_kms_key: Some("k".into()),
            bucket_policy: Some(crate::seams::BucketPolicyGuards {
                denies_object_deletion: true,
                denies_weaker_lock_puts: true,
                min_put_retention_days: Some(364),
            }),
            lifecycle: None,
        };
        assert!(bucket_problems(&good, &settings(365, false)).is_empty());
        let short = BucketProtection {
            default_retention: Some((LockMode::Governance, 30)),
            ..good.clone()
        };
        let problems = bucket_problems(&short, &settings(365, false));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("30 days"));
        let bare = BucketProtection::default();
        assert_eq!(bucket_problems(&bare, &settings(1, false)).len(), 4);
    }

    #[test]
    fn the_bucket_policy_must_refuse_deletes_weak_locks_and_short_retention() {
        let guards = crate::seams::BucketPolicyGuards {
            denies_object_deletion: true,
            denies_weaker_lock_puts: true,
            min_put_retention_days: Some(364),
        };
        let with = |guards: Option<crate::seams::BucketPolicyGuards>| BucketProtection {
            bucket_policy: guards,
            ..BucketProtection::default()
        };
        assert!(with(Some(guards.clone()))
            .bucket_policy_problems(365)
            .is_empty());
        assert_eq!(
            with(Some(guards.clone())).bucket_policy_problems(366).len(),
            1
        );
        assert_eq!(with(None).bucket_policy_problems(1).len(), 1);
        let cases: [fn(&mut crate::seams::BucketPolicyGuards); 3] = [
            |g| g.denies_object_deletion = false,
            |g| g.denies_weaker_lock_puts = false,
            |g| g.min_put_retention_days = None,
        ];
        for weaken in cases {
            let mut weak = guards.clone();
            weaken(&mut weak);
            assert_eq!(with(Some(weak)).bucket_policy_problems(365).len(), 1);
        }
    }

    #[test]
    fn lifecycle_rules_are_checked_against_the_retention_period() {
        let good = BucketProtection {
            versioning_enabled: true,
            default_retention: Some((LockMode::Compliance, 400)),
            default_sse_kms_key: Some("k".into()),
            bucket_policy: Some(crate::seams::BucketPolicyGuards {
                denies_object_deletion: true,
                denies_weaker_lock_puts: true,
                min_put_retention_days: Some(364),
            }),
            lifecycle: Some(crate::seams::Lifecycle {
                abort_incomplete_multipart_days: Some(1),
                noncurrent_expiration_days: Some(400),
                expiration_days: None,
            }),
        };
        assert!(bucket_problems(&good, &settings(365, false)).is_empty());
        assert!(lifecycle_warnings(&good).is_empty());
        let early = BucketProtection {
            lifecycle: Some(crate::seams::Lifecycle {
                abort_incomplete_multipart_days: None,
                noncurrent_expiration_days: Some(30),
                expiration_days: Some(90),
            }),
            ..good.clone()
        };
        let problems = bucket_problems(&early, &settings(365, false));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.contains("noncurrent versions after 30 days")));
        assert_eq!(
            lifecycle_warnings(&early),
            vec!["no lifecycle rule aborts incomplete multipart uploads"]
        );
        let none = BucketProtection {
            lifecycle: None,
            ..good
        };
        assert!(
            bucket_problems(&none, &settings(365, false)).is_empty(),
            "no lifecycle is not a lock problem"
        );
        assert_eq!(lifecycle_warnings(&none).len(), 1);
    }

    /// A default run reads the store's targets a batch at a time while they
    /// are checked: every record of every source, each superseded version,
    /// then the extra targets, each once.
    #[tokio::test]
    async fn store_targets_are_walked_in_batches_and_each_checked_once() {
        let archive = MemoryArchive::new("archive-bucket");
        let store = MemoryStore::default();
        let now = at("2026-03-10T12:00:00Z");
        let copied = at("2026-03-02T08:00:00Z");
        let mut keys = Vec::new();
        for day in 1..=5 {
            let key = log_key(&format!("2026-03-0{day}"));
            keys.push(archived(&archive, &store, &key, copied, now + Duration::days(400)).await);
        }
        let superseded = SourceRef {
            account_id: READER.into(),
            bucket: BUCKET.into(),
            key: log_key("2026-03-01"),
        };
        progress::superseded::record(&store, &superseded, "old-version", Some(0)).unwrap();
        let mut other_sources = sources();
        other_sources.push(ArchivedSource {
            reader_account_id: "333333333301".into(),
            bucket: "empty".into(),
        });
        other_sources.push(sources()[0].clone());

        let mut walk = StoreTargets::new(&other_sources, PREFIX);
        walk.batch = 2;
        let mut sizes = Vec::new();
        let mut walked = Vec::new();
        while let Some(batch) = walk.next_batch(&store).unwrap() {
            sizes.push(batch.len());
            walked.extend(batch);
        }
        assert!(sizes.iter().all(|size| *size <= 2), "{sizes:?}");
        assert_eq!(
            walked,
            targets_from_store(&store, &other_sources, PREFIX).unwrap()
        );
        let mut expected: Vec<(String, Option<String>)> = keys
            .iter()
            .map(|key| (key.clone(), archive.latest_head(key).unwrap().version_id))
            .collect();
        expected.push((superseded.archive_key(PREFIX), Some("old-version".into())));
        let got: Vec<(String, Option<String>)> = walked
            .iter()
            .map(|target| (target.archive_key.clone(), target.version_id.clone()))
            .collect();
        assert_eq!(got, expected);

        let extra = Target {
            archive_key: format!("{PREFIX}/_trailvault/findings/x.json"),
            version_id: None,
            copied_at: None,
        };
        let outcome = enforce_targets(
            &archive,
            &store,
            &settings(30, false),
            Targets::Store {
                sources: other_sources,
                archive_prefix: PREFIX.into(),
                extra: vec![extra],
            },
            now,
            &CancellationToken::new(),
        )
        .await;
        // The five records, the superseded version and the extra target
        // (the last two are not in the archive: errors, not silence).
        assert_eq!(outcome.checked, 7, "{outcome:#?}");
        assert_eq!(outcome.compliant, 5, "{outcome:#?}");
    }

    #[tokio::test]
    async fn dry_run_plans_and_apply_extends_short_locks_only() {
        let archive = MemoryArchive::new("archive-bucket");
        let store = MemoryStore::default();
        let now = at("2026-03-10T12:00:00Z");
        let copied = at("2026-03-02T08:00:00Z");
        // Collected with retention_days = 1: locked one day from the copy.
        let short = archived(
            &archive,
            &store,
            &log_key("2026-03-01"),
            copied,
            copied + Duration::days(1),
        )
        .await;
        // Locked far beyond any requirement: must stay as it is.
        let long_until = at("2030-01-01T00:00:00Z");
        let long = archived(&archive, &store, &log_key("2026-03-02"), copied, long_until).await;

        let targets = targets_from_store(&store, &sources(), PREFIX).unwrap();
        assert_eq!(targets.len(), 2);
        let cancel = CancellationToken::new();
        let plan = enforce(
            &archive,
            &store,
            &settings(30, false),
            targets.clone(),
            now,
            &cancel,
        )
        .await;
        assert_eq!(plan.checked, 2);
        assert_eq!(plan.compliant, 1);
        assert_eq!(plan.extended, 0);
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].archive_key, short);
        assert_eq!(plan.changes[0].until, at("2026-03-31T00:00:00Z"));
        assert!(!plan.changes[0].applied);
        assert!(plan.findings.is_empty() && plan.errors.is_empty());
        // The dry run changed nothing.
        assert_eq!(
            archive.latest_head(&short).unwrap().retain_until,
            Some(copied + Duration::days(1))
        );

        let applied = enforce(
            &archive,
            &store,
            &settings(30, true),
            targets.clone(),
            now,
            &cancel,
        )
        .await;
        assert_eq!(applied.extended, 1);
        assert!(applied.changes[0].applied);
        assert_eq!(
            archive.latest_head(&short).unwrap().retain_until,
            Some(at("2026-03-31T00:00:00Z"))
        );
        assert_eq!(
            archive.latest_head(&long).unwrap().retain_until,
            Some(long_until)
        );

        // A shorter period afterwards plans nothing: never shortens.
        let again = enforce(&archive, &store, &settings(5, true), targets, now, &cancel).await;
        assert_eq!((again.compliant, again.changes.len()), (2, 0));
        assert_eq!(
            archive.latest_head(&short).unwrap().retain_until,
            Some(at("2026-03-31T00:00:00Z"))
        );
    }

    #[tokio::test]
    async fn full_mode_checks_every_version() {
        let archive = MemoryArchive::new("archive-bucket");
        let store = MemoryStore::default();
        let copied = at("2026-03-02T08:00:00Z");
        let key = log_key("2026-03-01");
        archived(&archive, &store, &key, copied, copied + Duration::days(1)).await;
        // A second version of the same key (the source was modified): the
        // store only knows the newest one.
        archived(&archive, &store, &key, copied, copied + Duration::days(1)).await;
        let from_store = targets_from_store(&store, &sources(), PREFIX).unwrap();
        assert_eq!(from_store.len(), 1);
        let all = targets_from_archive(&archive, PREFIX).await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|t| t.copied_at.is_none()));
        let outcome = enforce(
            &archive,
            &store,
            &settings(30, true),
            all,
            at("2026-03-10T00:00:00Z"),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(outcome.extended, 2, "{outcome:?}");
    }

    #[tokio::test]
    async fn full_mode_walks_the_archive_page_by_page() {
        let archive = MemoryArchive::new("archive-bucket");
        let store = MemoryStore::default();
        let copied = at("2026-03-02T08:00:00Z");
        for day in ["2026-03-01", "2026-03-02", "2026-03-03"] {
            let key = log_key(day);
            archived(&archive, &store, &key, copied, copied + Duration::days(1)).await;
            archived(&archive, &store, &key, copied, copied + Duration::days(1)).await;
        }
        archive
            .version_page_size
            .store(4, std::sync::atomic::Ordering::Relaxed);
        let outcome = enforce_targets(
            &archive,
            &store,
            &settings(30, true),
            Targets::whole_archive(PREFIX),
            at("2026-03-10T00:00:00Z"),
            &CancellationToken::new(),
        )
        .await;
        assert!(outcome.errors.is_empty(), "{outcome:?}");
        assert_eq!(outcome.checked, 6, "every version of every page");
        assert_eq!(outcome.extended, 6);
        assert_eq!(
            archive
                .version_pages
                .load(std::sync::atomic::Ordering::Relaxed),
            2,
            "six versions in pages of four"
        );
    }

    #[tokio::test]
    async fn a_listing_page_that_fails_is_an_error_and_confirms_no_lock() {
        let archive = MemoryArchive::new("archive-bucket");
        let store = MemoryStore::default();
        let copied = at("2026-03-02T08:00:00Z");
        for day in ["2026-03-01", "2026-03-02", "2026-03-03"] {
            archived(
                &archive,
                &store,
                &log_key(day),
                copied,
                copied + Duration::days(40),
            )
            .await;
        }
        archive
            .version_page_size
            .store(2, std::sync::atomic::Ordering::Relaxed);
        archive
            .fail_later_version_pages
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let (outcome, confirmed) = check(
            &archive,
            &store,
            &settings(30, false),
            Ok(Targets::whole_archive(PREFIX)),
            at("2026-03-10T00:00:00Z"),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(outcome.checked, 2, "the first page was checked");
        assert_eq!(outcome.errors.len(), 1, "{outcome:?}");
        assert!(outcome.errors[0].operation.starts_with("list versions"));
        assert!(confirmed.is_none(), "a partial walk confirms nothing");
    }

    #[tokio::test]
    async fn the_findings_ledger_is_judged_by_when_it_was_written() {
        let archive = MemoryArchive::new("archive-bucket");
        let store = MemoryStore::default();
        let written = at("2026-03-02T08:00:00Z");
        let copy = crate::copy::CopySettings {
            archive_prefix: PREFIX.into(),
            kms_key_id: "key".into(),
            lock_mode: LockMode::Compliance,
            retention_days: 30,
            multipart_threshold_bytes: 5 << 20,
            inflate_limits: crate::cloudtrail::gzip::InflateLimits {
                max_inflated_bytes: 1 << 20,
                max_ratio: 100,
            },
        };
        let mut entry = crate::ledger::LedgerEntry::new("verify", written);
        entry.findings = vec![Finding::new(
            FindingKind::DigestMissing,
            READER,
            BUCKET,
            "k",
            "gone".into(),
        )];
        crate::ledger::append(&archive, &copy, &entry)
            .await
            .unwrap();
        let all = targets_from_archive(&archive, PREFIX).await.unwrap();
        assert_eq!(all.len(), 1);
        let now = at("2026-03-10T00:00:00Z");
        let compliant = enforce(
            &archive,
            &store,
            &settings(30, true),
            all.clone(),
            now,
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(compliant.compliant, 1, "{compliant:?}");
        assert!(compliant.errors.is_empty() && compliant.findings.is_empty());
        // Raising the retention extends the ledger's lock like a copy's.
        let longer = enforce(
            &archive,
            &store,
            &settings(60, true),
            all,
            now,
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(longer.extended, 1, "{longer:?}");
    }

    #[tokio::test]
    async fn what_cannot_be_fixed_becomes_a_finding() {
        // An archive that reports one version without a lock and refuses
        // retention changes.
        let hostile = MemoryArchive::new("archive-bucket");
        hostile.refuse_retention.store(true, Ordering::Relaxed);
        let store = MemoryStore::default();
        let copied = at("2026-03-02T08:00:00Z");
        let short_key = log_key("2026-03-01");
        archived(
            &hostile,
            &store,
            &short_key,
            copied,
            copied + Duration::days(1),
        )
        .await;
        let unlocked = archived(
            &hostile,
            &store,
            &log_key("2026-03-02"),
            copied,
            at("2030-01-01T00:00:00Z"),
        )
        .await;
        hostile.report_unlocked(&unlocked);
        // A record whose archived version is gone.
        let gone = SourceRef {
            account_id: READER.into(),
            bucket: BUCKET.into(),
            key: log_key("2026-03-03"),
        };
        let mut record = store
            .objects_under(READER, BUCKET, &short_key)
            .unwrap()
            .remove(0)
            .1;
        record.archive_version_id = Some("v999".into());
        store.record_object(&gone, &record).unwrap();

        let now = at("2026-03-10T00:00:00Z");
        let targets = targets_from_store(&store, &sources(), PREFIX).unwrap();
        let cancel = CancellationToken::new();
        // Dry run: the unlocked version is a finding already; the short one is planned.
        let plan = enforce(
            &hostile,
            &store,
            &settings(30, false),
            targets.clone(),
            now,
            &cancel,
        )
        .await;
        let kinds: Vec<(FindingKind, String)> = plan
            .findings
            .iter()
            .map(|f| (f.kind, f.key.clone()))
            .collect();
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        assert!(kinds.contains(&(FindingKind::ArchiveCopyInvalid, log_key("2026-03-02"))));
        assert!(kinds.contains(&(FindingKind::ArchiveCopyInvalid, gone.key.clone())));
        assert_eq!(plan.changes.len(), 2, "short and unlocked are planned");
        assert_eq!(hostile.retention_refused.load(Ordering::Relaxed), 0);

        let applied = enforce(&hostile, &store, &settings(30, true), targets, now, &cancel).await;
        assert_eq!(applied.extended, 0);
        assert_eq!(applied.findings.len(), 3, "{:?}", applied.findings);
        assert!(applied
            .findings
            .iter()
            .any(|f| f.key == short_key && f.detail.contains("refused")));
        assert!(applied
            .findings
            .iter()
            .all(|f| !f.new || f.key == short_key));
        assert_eq!(
            applied.findings[0]
                .archive_key
                .as_deref()
                .map(|k| k.starts_with("archive/")),
            Some(true)
        );
    }

    #[tokio::test]
    async fn bucket_settings_raise_one_misconfigured_finding() {
        let archive = MemoryArchive::new("archive-bucket");
        let store = MemoryStore::default();
        let mut outcome = RetentionOutcome::default();
        // The memory archive's default retention is one day.
        check_bucket(&archive, &store, &settings(1, false), &mut outcome).await;
        assert!(outcome.findings.is_empty());
        check_bucket(&archive, &store, &settings(30, false), &mut outcome).await;
        assert_eq!(outcome.findings.len(), 1);
        assert_eq!(outcome.findings[0].kind, FindingKind::ArchiveMisconfigured);
        // The default retention, and the bucket policy's put threshold (0 days),
        // are both short of 30 days: two problems, one finding.
        assert_eq!(
            outcome.bucket_problems.len(),
            2,
            "{:?}",
            outcome.bucket_problems
        );
        assert!(outcome.bucket_problems[1].contains("at least 29"));
    }

    #[tokio::test]
    async fn cancellation_stops_taking_versions() {
        let archive = MemoryArchive::new("archive-bucket");
        let store = MemoryStore::default();
        let copied = at("2026-03-02T08:00:00Z");
        archived(&archive, &store, &log_key("2026-03-01"), copied, copied).await;
        let cancel = CancellationToken::new();
        cancel.cancel();
        let targets = targets_from_store(&store, &sources(), PREFIX).unwrap();
        let outcome = enforce(
            &archive,
            &store,
            &settings(30, true),
            targets,
            copied,
            &cancel,
        )
        .await;
        assert_eq!(outcome.checked, 0);
        assert_eq!(archive.heads.load(Ordering::Relaxed), 0);
    }
}
