//! One collection run: list the open partitions of every source, diff them
//! against the store, copy what is new or changed through [`crate::copy`],
//! inspect what was copied, and record it. The crash-safety argument is in
//! `design.md` beside this file.

mod fetch;
mod inspect;
mod job;
mod list;
mod plan;

pub use fetch::{fetch_notified, fetch_one, FetchContext, Fetched};
use job::copy_job;
use list::list_partition;
use plan::{partitions_of, Partition};

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use crate::copy::CopySettings;
use crate::model::findings::{Finding, FindingSet};
use crate::model::object::{ObjectRecord, SourceRef};
use crate::model::report::{OperationError, Stats};
use crate::progress;
use crate::progress::collect::BackfillPartition;
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
    /// How the progress store names this scope.
    fn key(&self) -> progress::collect::ScopeKey<'_> {
        progress::collect::ScopeKey {
            reader_account_id: &self.reader_account_id,
            bucket: self.source.bucket(),
            root: &self.root,
        }
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
    /// New or changed keys one run takes from one partition; the rest wait
    /// for the next run (see `list.rs` for which go first).
    pub max_keys_per_partition_per_run: usize,
    /// Objects larger than this are not copied: one `object_malformed`
    /// finding per version (ETag), remembered in the store.
    pub max_object_bytes: u64,
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

/// Completion of one listed partition in a backfill: when its last job
/// finishes without error, the partition is marked done so a resumed backfill
/// does not list it again.
struct PartitionDone {
    marker: BackfillPartition,
    remaining: std::sync::atomic::AtomicUsize,
    failed: std::sync::atomic::AtomicBool,
}

/// One object to copy, with what the listing and the store said of it.
struct CopyJob {
    partition: Option<Arc<PartitionDone>>,
    scope: SourceScope,
    /// The partition's region (for log lines).
    region: String,
    source: SourceRef,
    listed: ListedObject,
    previous: Option<ObjectRecord>,
    adopt_first: bool,
}

/// Shared run state: the outcome under a mutex, counters lock-free.
struct Run<'a> {
    archive: &'a dyn Archive,
    store: &'a dyn ProgressStore,
    settings: &'a CollectSettings,
    now: DateTime<Utc>,
    counters: &'a Counters,
    cancel: &'a CancellationToken,
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
    /// The run's findings, each once; moved into the outcome at the end.
    findings: Mutex<FindingSet>,
    /// Keys the order in which a partition's surplus keys are taken (see
    /// `list.rs`): random per process, so a member cannot choose it.
    draw: std::collections::hash_map::RandomState,
    /// The account that controls each source bucket (the one whose role
    /// reads it), named as `bucket_owner` on findings about its files.
    bucket_owners: std::collections::BTreeMap<String, String>,
    /// What a copy needs behind `Arc`s, so each copy runs as a task of its
    /// own (see `job::copy_spawned`); `None`: copies run on the caller's task.
    shared: Option<SharedContext>,
}

/// The part of a run's context a spawned copy task holds.
struct SharedContext {
    archive: Arc<dyn Archive>,
    copy: Arc<crate::copy::CopySettings>,
}

impl Run<'_> {
    fn refused(&self) -> std::sync::MutexGuard<'_, BTreeSet<(String, String)>> {
        self.refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn findings(&self) -> std::sync::MutexGuard<'_, FindingSet> {
        self.findings
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
        self.finding_recorded(finding);
    }

    /// Records `finding` (once per run); `false` when the store failed to.
    fn finding_recorded(&self, mut finding: Finding) -> bool {
        if finding.bucket_owner.is_none() {
            finding.bucket_owner = self.bucket_owners.get(&finding.bucket).cloned();
        }
        // One finding per (kind, object) per run, even if two checks see it.
        if !self.findings().claim(&finding) {
            return true;
        }
        match self.store.record_finding(finding) {
            Ok(recorded) => {
                if recorded.new {
                    recorded.log_new();
                }
                self.findings().push(recorded);
                true
            }
            Err(error) => {
                self.error("-", "record_finding", &error);
                false
            }
        }
    }
}

/// What a collection run works with; one per run.
pub struct Collector<'a> {
    /// Shared with the copy tasks the run spawns.
    pub archive: Arc<dyn Archive>,
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
    let recovering = progress::collect::in_flight(store);
    // Durable before the first PUT of this run.
    if let Err(error) = progress::collect::mark_in_flight(store, now).and_then(|()| store.flush()) {
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
        archive: archive.as_ref(),
        store,
        settings,
        now,
        counters,
        cancel,
        window,
        recovering,
        jobs_failed: AtomicU64::new(0),
        refused: Mutex::default(),
        outcome: Mutex::new(CollectOutcome::default()),
        findings: Mutex::default(),
        draw: std::collections::hash_map::RandomState::new(),
        bucket_owners: bucket_owners(&scopes),
        shared: Some(SharedContext {
            archive: archive.clone(),
            copy: Arc::new(settings.copy.clone()),
        }),
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
                let _ = progress::collect::record_sweep(store, scope.key(), run.now);
            }
        }
    }
    // Clean only if every copy this run started ended recorded.
    if !cancel.is_cancelled() && run.jobs_failed.load(Ordering::Relaxed) == 0 {
        if let Err(error) = progress::collect::clear_in_flight(store) {
            run.error("-", "record the end of the run", &error);
        }
    }
    if let Err(error) = store.flush() {
        run.error("-", "flush_store", &error);
    }
    let mut outcome = std::mem::take(&mut *run.outcome());
    outcome.findings = std::mem::take(&mut *run.findings()).into_vec();
    outcome.stats.partitions_listed = counters.partitions_listed.load(Ordering::Relaxed);
    outcome.stats.objects_listed = counters.objects_listed.load(Ordering::Relaxed);
    outcome.stats.objects_copied = counters.objects_copied.load(Ordering::Relaxed);
    outcome.stats.bytes_copied = counters.bytes_copied.load(Ordering::Relaxed);
    outcome
}

/// Each source bucket's reading account; a bucket two accounts read (a
/// misconfiguration) names no owner.
fn bucket_owners(scopes: &[SourceScope]) -> std::collections::BTreeMap<String, String> {
    let mut owners: std::collections::BTreeMap<String, Option<String>> = Default::default();
    for scope in scopes {
        owners
            .entry(scope.source.bucket().to_string())
            .and_modify(|owner| {
                if owner.as_deref() != Some(scope.reader_account_id.as_str()) {
                    *owner = None;
                }
            })
            .or_insert_with(|| Some(scope.reader_account_id.clone()));
    }
    owners
        .into_iter()
        .filter_map(|(bucket, owner)| Some((bucket, owner?)))
        .collect()
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
    use crate::copy::{adopt_copy, copy_object, retain_until, Copied};
    use crate::model::error::SeamError;
    use crate::model::findings::FindingKind;
    use crate::model::object::SourceRef;
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
            max_keys_per_partition_per_run: 10_000,
            max_object_bytes: 1 << 30,
        }
    }

    struct World {
        source: Arc<MemorySource>,
        archive: Arc<MemoryArchive>,
        store: MemoryStore,
        clock: FixedClock,
        settings: CollectSettings,
    }

    impl World {
        fn new() -> World {
            World {
                source: Arc::new(MemorySource::new("trail-bucket")),
                archive: Arc::new(MemoryArchive::new("archive-bucket")),
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
                archive: self.archive.clone(),
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
                self.archive.as_ref(),
                &self.settings.copy,
                &self.source_ref(key),
                self.clock.now(),
                None,
            )
            .await
            .unwrap();
            progress::collect::mark_in_flight(&self.store, self.clock.now()).unwrap();
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
        assert!(
            !progress::collect::in_flight(&world.store),
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
            world.archive.as_ref(),
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
    async fn a_copy_whose_read_back_failed_after_the_put_landed_is_adopted_by_the_next_run() {
        let world = World::new();
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, log_body(MEMBER), &[]);
        world
            .archive
            .failing_version_heads
            .store(1, Ordering::Relaxed);
        // The HEAD after the PUT fails for good (the seam already retried it):
        // the copy is not recorded and not copied again in this run.
        let outcome = world.run(Window::Incremental).await;
        assert_eq!(outcome.errors.len(), 1, "{:?}", outcome.errors);
        assert_eq!(world.archive.puts.load(Ordering::Relaxed), 1);
        assert!(world
            .store
            .object(&world.source_ref(&key))
            .unwrap()
            .is_none());
        // The next run looks before it copies and adopts the landed copy.
        let rerun = world.run(Window::Incremental).await;
        assert!(rerun.errors.is_empty(), "{:?}", rerun.errors);
        assert_eq!(rerun.stats.objects_adopted, 1);
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
        let etag = world.source.list_all("").await.unwrap()[0].etag.clone();
        world.source.put(&key, log_body("333333333333"), &[]);
        let mut forged = head.clone();
        forged.metadata.insert(
            crate::copy::meta::SOURCE_ETAG.to_string(),
            world.source.list_all("").await.unwrap()[0].etag.clone(),
        );
        assert_ne!(etag, forged.metadata[crate::copy::meta::SOURCE_ETAG]);
        let adopted = adopt_copy(
            world.source.as_ref(),
            world.archive.as_ref(),
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
        // The superseded copy is remembered beside the current one's record.
        let superseded = progress::superseded::under(&world.store, &sources[0]).unwrap();
        assert_eq!(superseded.len(), 1, "{superseded:?}");
        let current = world
            .store
            .object(&world.source_ref(&key))
            .unwrap()
            .unwrap();
        assert_ne!(
            Some(superseded[0].version_id.clone()),
            current.archive_version_id
        );
        assert_eq!(superseded[0].source, world.source_ref(&key));
        assert!(superseded[0].copied_at.is_some());
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
        // ~3 MiB of records (inflated on the blocking pool), one of them
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
            assert!(json.len() > 2 << 20);
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
    async fn a_failed_request_is_not_copied_again_on_top_of_the_seams_retries() {
        let world = World::new();
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, log_body(MEMBER), &[]);
        world
            .source
            .fail_gets(&key, SeamError::Transient("503 Slow Down".into()));
        let outcome = world.run(Window::Incremental).await;
        assert_eq!(outcome.errors.len(), 1, "{:?}", outcome.errors);
        assert_eq!(
            world.source.gets.load(Ordering::Relaxed),
            1,
            "the seam retries requests; the copy does not multiply them"
        );
    }

    #[tokio::test]
    async fn a_body_broken_mid_stream_is_copied_again_up_to_the_attempt_limit() {
        let world = World::new();
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, gzip(&noise(64 * 1024, 7)), &[]);
        world.source.break_bodies(&key, 1000);
        let outcome = world.run(Window::Incremental).await;
        assert_eq!(outcome.errors.len(), 1, "{:?}", outcome.errors);
        assert_eq!(
            world.source.gets.load(Ordering::Relaxed),
            u64::from(world.settings.copy_attempts),
            "one GET per whole-copy attempt"
        );
        assert_eq!(world.archive.version_count(&world.archive_key(&key)), 0);
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
        assert!(progress::collect::in_flight(&world.store));
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

    fn junk_key(day: u32, index: usize) -> String {
        format!("AWSLogs/{MEMBER}/CloudTrail/us-east-1/2026/11/{day:02}/aaa-junk-{index:04}")
    }

    #[tokio::test]
    async fn a_flooded_partition_yields_its_real_files_first_and_the_rest_over_runs() {
        let mut world = World::new();
        world.settings.max_keys_per_partition_per_run = 5;
        world.source.set_page_size(4);
        // Junk sorts before the real files and outnumbers the cap.
        for index in 0..12 {
            world
                .source
                .put(&junk_key(27, index), b"junk".to_vec(), &[]);
        }
        let real: Vec<String> = ["AAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBB", "CCCCCCCCCCCCCCCC"]
            .iter()
            .map(|unique| log_key(27, "0900", unique))
            .collect();
        for key in &real {
            world.source.put(key, log_body(MEMBER), &[]);
        }
        let first = world.run(Window::Incremental).await;
        assert_eq!(first.stats.objects_copied, 5, "{:?}", first.errors);
        assert_eq!(first.stats.objects_deferred, 10);
        assert_eq!(first.stats.objects_listed, 15);
        for key in &real {
            assert_eq!(
                world.archive.version_count(&world.archive_key(key)),
                1,
                "{key}: real files go first"
            );
        }
        assert_eq!(
            kinds(&first)
                .iter()
                .filter(|(kind, _)| *kind == FindingKind::ObjectMalformed)
                .count(),
            2,
            "findings bounded by the cap"
        );
        let second = world.run(Window::Incremental).await;
        assert_eq!(second.stats.objects_copied, 5);
        assert_eq!(second.stats.objects_deferred, 5);
        let third = world.run(Window::Incremental).await;
        assert_eq!(third.stats.objects_copied, 5);
        assert_eq!(third.stats.objects_deferred, 0);
        assert_eq!(
            world.archive.keys().len(),
            15,
            "everything archived in the end"
        );
        let fourth = world.run(Window::Incremental).await;
        assert_eq!(fourth.stats.objects_copied, 0);
        assert_eq!(fourth.stats.objects_skipped, 15);
    }

    #[tokio::test]
    async fn a_closed_partition_with_deferred_keys_is_listed_until_drained() {
        let mut world = World::new();
        world.settings.max_keys_per_partition_per_run = 4;
        // Day 23 is outside the lookback (2 days): only the sweep lists it.
        for index in 0..10 {
            world
                .source
                .put(&junk_key(23, index), b"junk".to_vec(), &[]);
        }
        let first = world.run(Window::Incremental).await;
        assert_eq!(first.stats.objects_copied, 4);
        assert_eq!(first.stats.objects_deferred, 6);
        // Within the sweep interval the pending partition is listed anyway.
        let second = world.run(Window::Incremental).await;
        assert_eq!(second.stats.objects_copied, 4);
        let third = world.run(Window::Incremental).await;
        assert_eq!(third.stats.objects_copied, 2);
        assert_eq!(third.stats.objects_deferred, 0);
        let lists_before = world.source.lists.load(Ordering::Relaxed);
        world.run(Window::Incremental).await;
        assert_eq!(
            world.source.lists.load(Ordering::Relaxed) - lists_before,
            3,
            "drained: back to the open partitions only"
        );
    }

    #[tokio::test]
    async fn a_backfill_does_not_mark_a_partition_with_deferred_keys_done() {
        let mut world = World::new();
        world.settings.max_keys_per_partition_per_run = 3;
        for index in 0..5 {
            world
                .source
                .put(&junk_key(10, index), b"junk".to_vec(), &[]);
        }
        let range = Window::Range {
            from: chrono::NaiveDate::from_ymd_opt(2026, 11, 10).unwrap(),
            to: chrono::NaiveDate::from_ymd_opt(2026, 11, 10).unwrap(),
        };
        let first = world.run(range).await;
        assert_eq!(first.stats.objects_copied, 3);
        assert_eq!(first.stats.objects_deferred, 2);
        let second = world.run(range).await;
        assert_eq!(
            second.stats.partitions_skipped, 0,
            "not done while keys remain"
        );
        assert_eq!(second.stats.objects_copied, 2);
        let third = world.run(range).await;
        assert_eq!(third.stats.partitions_skipped, 1);
    }

    #[tokio::test]
    async fn an_oversized_object_is_one_finding_per_version_and_never_copied() {
        let mut world = World::new();
        world.settings.max_object_bytes = 1024;
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, noise(2048, 3), &[]);
        let first = world.run(Window::Incremental).await;
        assert_eq!(
            kinds(&first),
            vec![(FindingKind::ObjectMalformed, key.clone())]
        );
        assert!(first.findings[0].detail.contains("2048 bytes"));
        assert!(first.findings[0].new);
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        assert_eq!(world.source.gets.load(Ordering::Relaxed), 0, "never read");
        assert_eq!(world.archive.keys().len(), 0);
        let second = world.run(Window::Incremental).await;
        assert!(second.findings.is_empty(), "{:?}", second.findings);
        assert_eq!(second.stats.objects_skipped, 1);
        assert!(!progress::collect::in_flight(&world.store));
        // A new version is judged again: small enough now, it is copied.
        world.source.put(&key, log_body(MEMBER), &[]);
        let third = world.run(Window::Incremental).await;
        assert_eq!(third.stats.objects_copied, 1);
    }

    /// A source whose listing reports every object as 1 byte: an object that
    /// grows between its listing and its GET.
    struct ListsSmall(Arc<MemorySource>);

    #[async_trait::async_trait]
    impl TrailSource for ListsSmall {
        fn bucket(&self) -> &str {
            self.0.bucket()
        }
        async fn list_page(
            &self,
            prefix: &str,
            continuation: Option<String>,
        ) -> Result<crate::seams::ListingPage<ListedObject>, SeamError> {
            let mut page = self.0.list_page(prefix, continuation).await?;
            for object in &mut page.items {
                object.size = 1;
            }
            Ok(page)
        }
        async fn list_folders_page(
            &self,
            prefix: &str,
            continuation: Option<String>,
        ) -> Result<crate::seams::ListingPage<String>, SeamError> {
            self.0.list_folders_page(prefix, continuation).await
        }
        async fn get(&self, key: &str) -> Result<crate::seams::SourceObject, SeamError> {
            self.0.get(key).await
        }
        async fn delete(&self, key: &str) -> Result<(), SeamError> {
            TrailSource::delete(self.0.as_ref(), key).await
        }
    }

    #[tokio::test]
    async fn an_object_grown_after_its_listing_is_judged_not_copied() {
        let mut world = World::new();
        world.settings.max_object_bytes = 1024;
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, noise(4096, 5), &[]);
        let mut scope = world.scope();
        scope.source = Arc::new(ListsSmall(world.source.clone()));
        let counters = Counters::default();
        let cancel = CancellationToken::new();
        let collector = Collector {
            archive: world.archive.clone(),
            store: &world.store,
            clock: &world.clock,
            settings: &world.settings,
            cancel: &cancel,
            counters: &counters,
        };
        let outcome = collect(collector, vec![scope], Window::Incremental).await;
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        assert_eq!(
            kinds(&outcome),
            vec![(FindingKind::ObjectMalformed, key.clone())]
        );
        assert!(outcome.findings[0].detail.contains("4096 bytes"));
        assert_eq!(world.archive.keys().len(), 0);
        assert_eq!(world.archive.open_uploads(), 0);
        // The listing now shows its real size: judged already, skipped.
        let again = world.run(Window::Incremental).await;
        assert!(again.findings.is_empty(), "{:?}", again.findings);
        assert_eq!(again.stats.objects_skipped, 1);
    }

    #[tokio::test]
    async fn discovery_accepts_a_bounded_number_of_folders_and_reports_the_rest_once() {
        let world = World::new();
        let mut scope = world.scope();
        scope.regions = Vec::new();
        let real = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&real, log_body(MEMBER), &[]);
        let root = format!("AWSLogs/{MEMBER}/");
        // Planted folders that sort before the real ones.
        for index in 0..(plan::MAX_OTHER_REGIONS + 5) {
            world.source.put(
                &format!(
                    "{root}CloudTrail/aa-fake{}-1/2026/11/27/x",
                    (b'a' + index as u8) as char
                ),
                b"x".to_vec(),
                &[],
            );
        }
        world.source.put(
            &format!("{root}CloudTrail/not_a_region/x"),
            b"x".to_vec(),
            &[],
        );
        for index in 0..(plan::MAX_OTHER_FAMILIES + 3) {
            world.source.put(
                &format!("{root}CloudTrail-A{index}/us-east-1/2026/11/27/x"),
                b"x".to_vec(),
                &[],
            );
        }
        world
            .source
            .put(&format!("{root}elasticloadbalancing/x"), b"x".to_vec(), &[]);
        for index in 0..(plan::MAX_FOREIGN_ROOTS + 4) {
            world.source.put(
                &format!("AWSLogs/3333333333{index:02}/CloudTrail/us-east-1/2026/11/27/x"),
                b"x".to_vec(),
                &[],
            );
        }
        let counters = Counters::default();
        let cancel = CancellationToken::new();
        let collector = Collector {
            archive: world.archive.clone(),
            store: &world.store,
            clock: &world.clock,
            settings: &world.settings,
            cancel: &cancel,
            counters: &counters,
        };
        let outcome = collect(collector, vec![scope.clone()], Window::Incremental).await;
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        assert_eq!(world.archive.version_count(&world.archive_key(&real)), 1);
        let roots: Vec<(FindingKind, String)> = kinds(&outcome)
            .into_iter()
            .filter(|(_, key)| key.ends_with('/'))
            .collect();
        assert_eq!(
            roots,
            vec![
                (FindingKind::ObjectMalformed, root.clone()),
                (FindingKind::ObjectMalformed, "AWSLogs/".to_string()),
            ],
            "one finding per root"
        );
        let own = outcome
            .findings
            .iter()
            .find(|finding| finding.key == root)
            .unwrap();
        assert!(own.detail.starts_with("9 folder(s)"), "{}", own.detail);
        // Partitions: own root 1 + 8 other regions in CloudTrail, 4 other
        // families with us-east-1; 16 foreign roots with one region each;
        // every one over today and the sweep window of 6 days.
        let partitions = counters.partitions_total.load(Ordering::Relaxed);
        assert_eq!(partitions, (1 + 8 + 4 + 16) * 6);
    }

    #[tokio::test]
    async fn keys_the_archive_cannot_hold_are_quarantined_once_and_the_run_ends_clean() {
        let world = World::new();
        // 34 bytes of "archive/<member>/trail-bucket/" + this > 1,024.
        let long = format!(
            "AWSLogs/{MEMBER}/CloudTrail/us-east-1/2026/11/27/{}.json.gz",
            "x".repeat(1000)
        );
        let control = format!(
            "AWSLogs/{MEMBER}/CloudTrail/us-east-1/2026/11/27/a\n2026 INFO forged\x1b[2J.json.gz"
        );
        world.source.put(&long, log_body(MEMBER), &[]);
        world.source.put(&control, log_body(MEMBER), &[]);
        let range = Window::Range {
            from: chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
            to: chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
        };
        let first = world.run(range).await;
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        assert_eq!(first.stats.objects_copied, 2);
        for key in [&long, &control] {
            let source = world.source_ref(key);
            let archive_key = source.archive_key("archive");
            assert!(
                archive_key.starts_with(&format!(
                    "archive/_trailvault/quarantine/{MEMBER}/trail-bucket/"
                )),
                "{archive_key}"
            );
            assert!(archive_key.len() <= crate::model::object::MAX_S3_KEY_BYTES);
            let head = world
                .archive
                .latest_head(&archive_key)
                .expect("quarantined copy");
            let encoded = &head.metadata[crate::copy::meta::SOURCE_KEY];
            assert_eq!(
                crate::model::text::decode_url_encoded(encoded).unwrap(),
                **key
            );
            let finding = first
                .findings
                .iter()
                .find(|f| f.key == **key)
                .expect("a finding names the original key");
            assert_eq!(finding.kind, FindingKind::ObjectMalformed);
            assert!(finding
                .detail
                .contains("cannot be archived under its own name"));
            assert_eq!(finding.archive_key.as_deref(), Some(archive_key.as_str()));
            assert_eq!(finding.bucket_owner.as_deref(), Some(MEMBER));
            assert!(world.store.object(&source).unwrap().is_some(), "recorded");
        }
        assert!(
            !progress::collect::in_flight(&world.store),
            "the marker clears"
        );
        // The backfill finished the partition, and nothing is copied again.
        let second = world.run(range).await;
        assert!(second.errors.is_empty(), "{:?}", second.errors);
        assert_eq!(second.stats.partitions_skipped, 1);
        assert_eq!(second.stats.objects_copied, 0);
        let third = world.run(Window::Incremental).await;
        assert!(third.errors.is_empty(), "{:?}", third.errors);
        assert_eq!(third.stats.objects_copied, 0);
        assert_eq!(world.archive.keys().len(), 2);
    }

    #[tokio::test]
    async fn findings_name_the_bucket_owner_besides_the_claimed_account() {
        let world = World::new();
        let foreign = "AWSLogs/333333333333/CloudTrail/us-east-1/2026/11/27/333333333333_CloudTrail_us-east-1_20261127T0900Z_AAAAAAAAAAAAAAAA.json.gz";
        world.source.put(foreign, log_body("333333333333"), &[]);
        let outcome = world.run(Window::Incremental).await;
        let finding = outcome
            .findings
            .iter()
            .find(|f| f.key == foreign)
            .expect("account_mismatch");
        // The finding names the bucket's owner besides the account it is about.
        assert_eq!(finding.bucket_owner.as_deref(), Some(MEMBER));
        assert!(finding.detail.contains("333333333333"));
    }

    #[tokio::test]
    async fn a_fetched_log_is_copied_like_a_collected_one() {
        let world = World::new();
        let collected_key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        let fetched_key = log_key(27, "0905", "BBBBBBBBBBBBBBBB");
        world.source.put(&collected_key, log_body(MEMBER), &[]);
        world.run(Window::Incremental).await;
        // Delivered after the run, with a body claiming another account.
        world
            .source
            .put(&fetched_key, log_body("333333333333"), &[]);
        let cancel = CancellationToken::new();
        let context = FetchContext {
            archive: world.archive.as_ref(),
            store: &world.store,
            settings: &world.settings,
            now: world.clock.now(),
            cancel: &cancel,
        };
        let fetched = fetch_one(
            context,
            world.source.clone(),
            MEMBER,
            &world.source_ref(&fetched_key),
        )
        .await;
        assert!(fetched.errors.is_empty(), "{:?}", fetched.errors);
        let record = fetched.record.expect("fetched");
        // Same record and archive metadata as the collected one: same fields set.
        let collected = world
            .store
            .object(&world.source_ref(&collected_key))
            .unwrap()
            .unwrap();
        assert_eq!(record.v, collected.v);
        assert!(record.content_sha256.is_some() && record.content_error.is_none());
        assert!(record.archive_version_id.is_some());
        let head = |key: &str| world.archive.latest_head(&world.archive_key(key)).unwrap();
        let names = |key: &str| head(key).metadata.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&fetched_key), names(&collected_key));
        assert_eq!(head(&fetched_key).lock_mode, head(&collected_key).lock_mode);
        // `inspect` ran: the content's claim is a finding, recorded once.
        assert_eq!(
            fetched
                .findings
                .iter()
                .map(|f| (f.kind, f.key.clone()))
                .collect::<Vec<_>>(),
            vec![(FindingKind::AccountMismatch, fetched_key.clone())]
        );
        assert!(fetched.findings[0].new);
        assert!(!progress::collect::in_flight(&world.store));
        // Already recorded: a second fetch copies nothing.
        let context = FetchContext {
            archive: world.archive.as_ref(),
            store: &world.store,
            settings: &world.settings,
            now: world.clock.now(),
            cancel: &cancel,
        };
        let again = fetch_one(
            context,
            world.source.clone(),
            MEMBER,
            &world.source_ref(&fetched_key),
        )
        .await;
        assert_eq!(again.record, Some(record));
        assert_eq!(
            world
                .archive
                .version_count(&world.archive_key(&fetched_key)),
            1
        );
        // Absent at the source: no record, no error.
        let context = FetchContext {
            archive: world.archive.as_ref(),
            store: &world.store,
            settings: &world.settings,
            now: world.clock.now(),
            cancel: &cancel,
        };
        let absent = fetch_one(
            context,
            world.source.clone(),
            MEMBER,
            &world.source_ref("AWSLogs/nope"),
        )
        .await;
        assert!(absent.record.is_none() && absent.errors.is_empty());
    }

    #[tokio::test]
    async fn a_fetch_leaves_the_marker_of_an_unclean_run_and_adopts_its_copy() {
        let world = World::new();
        let key = log_key(27, "0900", "AAAAAAAAAAAAAAAA");
        world.source.put(&key, log_body(MEMBER), &[]);
        world.copy_and_die(&key).await;
        let cancel = CancellationToken::new();
        let context = FetchContext {
            archive: world.archive.as_ref(),
            store: &world.store,
            settings: &world.settings,
            now: world.clock.now(),
            cancel: &cancel,
        };
        let fetched = fetch_one(
            context,
            world.source.clone(),
            MEMBER,
            &world.source_ref(&key),
        )
        .await;
        assert!(fetched.record.is_some(), "{:?}", fetched.errors);
        assert_eq!(
            world.archive.version_count(&world.archive_key(&key)),
            1,
            "adopted, not copied again"
        );
        assert!(
            progress::collect::in_flight(&world.store),
            "the earlier run's marker stays"
        );
    }

    /// A source that notes the thread each GET runs on, and holds it a
    /// moment (as CPU work would).
    struct ThreadNoting {
        inner: Arc<MemorySource>,
        threads: Mutex<BTreeSet<String>>,
    }

    #[async_trait::async_trait]
    impl TrailSource for ThreadNoting {
        fn bucket(&self) -> &str {
            self.inner.bucket()
        }

        async fn list_page(
            &self,
            prefix: &str,
            continuation: Option<String>,
        ) -> Result<crate::seams::ListingPage<ListedObject>, SeamError> {
            self.inner.list_page(prefix, continuation).await
        }

        async fn list_folders_page(
            &self,
            prefix: &str,
            continuation: Option<String>,
        ) -> Result<crate::seams::ListingPage<String>, SeamError> {
            self.inner.list_folders_page(prefix, continuation).await
        }

        async fn get(&self, key: &str) -> Result<crate::seams::SourceObject, SeamError> {
            self.threads
                .lock()
                .unwrap()
                .insert(format!("{:?}", std::thread::current().id()));
            std::thread::sleep(std::time::Duration::from_millis(3));
            self.inner.get(key).await
        }

        async fn delete(&self, key: &str) -> Result<(), SeamError> {
            TrailSource::delete(self.inner.as_ref(), key).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copies_run_as_tasks_of_their_own_on_the_runtime_threads() {
        let world = World::new();
        for index in 0..40 {
            world.source.put(
                &log_key(27, "0900", &format!("{index:016}")),
                log_body(MEMBER),
                &[],
            );
        }
        let noting = Arc::new(ThreadNoting {
            inner: world.source.clone(),
            threads: Mutex::default(),
        });
        let scope = SourceScope {
            source: noting.clone(),
            ..world.scope()
        };
        let counters = Counters::default();
        let cancel = CancellationToken::new();
        let test_thread = format!("{:?}", std::thread::current().id());
        let outcome = collect(
            Collector {
                archive: world.archive.clone(),
                store: &world.store,
                clock: &world.clock,
                settings: &world.settings,
                cancel: &cancel,
                counters: &counters,
            },
            vec![scope],
            Window::Incremental,
        )
        .await;
        assert_eq!(outcome.stats.objects_copied, 40, "{:?}", outcome.errors);
        let threads = noting.threads.lock().unwrap().clone();
        // Not the thread driving the run (the test's), and more than one.
        assert!(!threads.contains(&test_thread), "{threads:?}");
        assert!(threads.len() >= 2, "{threads:?}");
    }
}
