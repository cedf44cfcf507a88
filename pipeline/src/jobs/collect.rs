//! The collect job: what `collect`, `backfill` and each run of `run` do.
//! Archive lock-down check → accounts → source scopes → collection →
//! validation of the touched chains → open findings in scope → announcement.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tracing::{error, info};

use crate::collect::{self, Counters, Window};
use crate::model::findings::{Finding, FindingKind};
use crate::model::report::{Report, Stats};
use crate::progress::lag::LagTracker;

use super::sources::{self, Scope};
use super::verify::{announce, include_open_findings, merge_verify, validate};
use super::{JobSettings, World};

/// What one collection is asked to do.
#[derive(Debug, Clone)]
pub struct CollectRequest {
    pub window: Window,
    pub scope: Scope,
    /// Collect even if the archive is not locked down (shown in the report).
    pub allow_unlocked: bool,
    /// Validate the chains afterwards (also subject to `verify_after_collect`).
    pub verify: bool,
    /// `--public-keys`: keys from this file instead of the configured source.
    pub keys_file: Option<PathBuf>,
}

/// Shows the progress of the copies while they run.
#[async_trait]
pub trait ProgressDisplay: Send + Sync {
    /// Copying starts: `counters` move from now on.
    fn start(&self, counters: Arc<Counters>);
    /// Copying is over: stop showing (and wait until the display is gone).
    async fn finish(&self);
}

/// No progress display.
pub struct NoProgress;

#[async_trait]
impl ProgressDisplay for NoProgress {
    fn start(&self, _counters: Arc<Counters>) {}
    async fn finish(&self) {}
}

/// Before writing, the archive must be locked down: versioning, Object Lock
/// default retention, default SSE-KMS encryption and a bucket policy that
/// denies deletion, weaker locks and puts retained less than `retention_days`
/// (see [`crate::seams::BucketProtection::bucket_policy_problems`]).
pub async fn check_archive(
    world: &World,
    report: &mut Report,
    allow_unlocked: bool,
    retention_days: u32,
) -> bool {
    let archive = world.archive.as_ref();
    let protection = match archive.protection().await {
        Ok(protection) => protection,
        Err(error) => {
            report.error(
                "-",
                &format!("read the configuration of s3://{}", archive.bucket()),
                error.to_string(),
            );
            return false;
        }
    };
    let mut problems = Vec::new();
    if !protection.versioning_enabled {
        problems.push("versioning is not enabled".to_string());
    }
    if protection.default_retention.is_none() {
        problems.push("no Object Lock default retention".to_string());
    }
    if protection.default_sse_kms_key.is_none() {
        problems.push("default encryption is not SSE-KMS".to_string());
    }
    problems.extend(protection.bucket_policy_problems(retention_days));
    if problems.is_empty() {
        return true;
    }
    let detail = format!("archive bucket is not locked down: {}", problems.join("; "));
    let finding = Finding::new(
        FindingKind::ArchiveMisconfigured,
        "-",
        archive.bucket(),
        "",
        detail.clone(),
    );
    // A state: reported (and exit 3) on every run that observes it, even
    // when the store cannot record it.
    match world.store.record_finding(finding.clone()) {
        Ok(recorded) => report.findings.push(recorded),
        Err(error) => {
            report.error("-", "record_finding", error.to_string());
            report.findings.push(finding);
        }
    }
    if allow_unlocked {
        report.overrides.push(format!(
            "--allow-unlocked-archive: collected although {detail}"
        ));
        return true;
    }
    error!(%detail, "refusing to collect into an unlocked archive (override: --allow-unlocked-archive)");
    // Nothing was collected: an operational error as well as a finding, so
    // the run never looks like a quiet one (exit 3 wins over 1).
    report.error(
        "-",
        "collect",
        format!(
            "refused to write into s3://{}: {detail} (override: --allow-unlocked-archive)",
            archive.bucket()
        ),
    );
    false
}

/// One collection run (and the validation of the chains it touched) without
/// ending the run. Stops taking work when `world.cancel.stop` fires.
pub async fn collect_once(
    world: &World,
    settings: &JobSettings,
    request: &CollectRequest,
    progress: &dyn ProgressDisplay,
) -> Report {
    let window = request.window;
    let scope = &request.scope;
    let command = if matches!(window, Window::Incremental) {
        "collect"
    } else {
        "backfill"
    };
    let mut report = Report::new(command);
    if !check_archive(
        world,
        &mut report,
        request.allow_unlocked,
        settings.collect.copy.retention_days,
    )
    .await
    {
        // Nothing is written to an archive that is not locked down, not even
        // the ledger; the findings are still published.
        super::announce(world, settings, &mut report, false).await;
        return report;
    }
    let accounts = match sources::accounts(world, &settings.accounts, scope).await {
        Ok(accounts) => accounts,
        Err(error) => {
            report.error("-", "list accounts", error);
            return report;
        }
    };
    info!(accounts = accounts.len(), run_id = %world.run_id, "collection started");
    let (scopes, session_errors, source_findings) = sources::scopes(
        world,
        &settings.sources,
        &settings.accounts,
        &accounts,
        scope,
    )
    .await;
    for error in session_errors {
        report.stats.errors += 1;
        report.errors.push(error);
    }
    for finding in source_findings {
        match world.store.record_finding(finding.clone()) {
            Ok(recorded) => report.findings.push(recorded),
            Err(error) => {
                report.error("-", "record_finding", error.to_string());
                report.findings.push(finding);
            }
        }
    }
    let counters = Arc::new(Counters::default());
    progress.start(counters.clone());
    // Notes the newest file per account as copies are recorded (`lag/…`).
    let tracker = LagTracker::new(world.store.as_ref(), world.clock.now());
    let outcome = collect::collect(
        collect::Collector {
            archive: world.archive.clone(),
            store: &tracker,
            clock: world.clock.as_ref(),
            settings: &settings.collect,
            cancel: &world.cancel.stop,
            counters: &counters,
        },
        scopes,
        window,
    )
    .await;
    progress.finish().await;
    collect::log_summary(&outcome);
    if let Err(error) = tracker.save() {
        report.error("-", "record_lag", error.to_string());
    }
    report.stats.accounts = accounts.len() as u64;
    let mut failed: BTreeSet<String> = outcome.failed_accounts.clone();
    failed.extend(
        report
            .errors
            .iter()
            .map(|e| e.account_id.clone())
            .filter(|id| id != "-"),
    );
    report.stats.accounts_failed = failed.len() as u64;
    let errors_before = report.stats.errors;
    report.stats = Stats {
        accounts: report.stats.accounts,
        accounts_failed: report.stats.accounts_failed,
        errors: errors_before + outcome.stats.errors,
        ..outcome.stats
    };
    report.errors.extend(outcome.errors);
    report.findings.extend(outcome.findings);
    if world.cancel.stop.is_cancelled() {
        report.error(
            "-",
            "collect",
            "interrupted by a signal; the next run continues where this one stopped",
        );
    } else if request.verify && settings.verify_after_collect {
        // No copies are in flight any more: a signal now abandons validation
        // (it resumes from its state next time).
        let abort = world.cancel.abort_on_stop();
        merge_verify(
            &mut report,
            validate(
                world,
                settings,
                &accounts,
                scope,
                request.keys_file.as_deref(),
                false,
            )
            .await,
        );
        abort.abort();
    }
    include_open_findings(world, settings, &mut report, scope);
    announce(world, settings, &mut report).await;
    report
}

/// The collect job: one collection run, then the end of the run (store
/// flushed, run recorded, status snapshot written).
pub async fn collect(
    world: &World,
    settings: &JobSettings,
    request: &CollectRequest,
    progress: &dyn ProgressDisplay,
) -> Report {
    let mut report = collect_once(world, settings, request, progress).await;
    super::finish_run(world, settings, &mut report);
    report
}

/// The inclusive day range of `backfill --since DATE [--until DATE]`; the
/// error is the usage message.
pub fn backfill_window(
    since: &str,
    until: Option<&str>,
    today: chrono::NaiveDate,
) -> Result<Window, String> {
    let parse = |text: &str, flag: &str| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| format!("{flag} must be a date like 2026-01-31, not `{text}`"))
    };
    let from = parse(since, "--since")?;
    let to = match until {
        Some(text) => parse(text, "--until")?,
        None => today,
    };
    if from > to {
        return Err(format!("--since {from} is after --until {to}"));
    }
    if to > today {
        return Err(format!("--until {to} is in the future"));
    }
    Ok(Window::Range { from, to })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsuite::memory::{
        FixedClock, MemoryAccounts, MemoryArchive, MemoryConnector, MemoryNotifier,
        MemoryPublicKeys, MemoryStore,
    };

    fn world(archive: Arc<MemoryArchive>, notifier: Arc<MemoryNotifier>) -> World {
        World {
            archive,
            store: Arc::new(MemoryStore::default()),
            accounts: Arc::new(MemoryAccounts::default()),
            connector: Arc::new(MemoryConnector::default()),
            public_keys: Arc::new(MemoryPublicKeys::default()),
            notifier: Some(notifier),
            events: None,
            clock: Arc::new(FixedClock::at(chrono::Utc::now())),
            cancel: super::super::Cancellation::default(),
            run_id: "run".to_string(),
        }
    }

    #[tokio::test]
    async fn an_acknowledged_unlocked_archive_is_still_refused_reported_and_open() {
        let archive = Arc::new(MemoryArchive::new("archive"));
        archive.protection.lock().unwrap().bucket_policy = None;
        let notifier = Arc::new(MemoryNotifier::default());
        let world = world(archive, notifier);
        let mut first = Report::new("collect");
        assert!(!check_archive(&world, &mut first, false, 1).await);
        assert_eq!(first.errors.len(), 1);
        assert_eq!(first.errors[0].operation, "collect");
        for finding in &first.findings {
            assert!(world
                .store
                .acknowledge_finding(finding, chrono::Utc::now())
                .unwrap());
        }
        let mut again = Report::new("collect");
        assert!(!check_archive(&world, &mut again, false, 1).await);
        assert_eq!(again.findings.len(), 1);
        assert_eq!(again.findings[0].kind, FindingKind::ArchiveMisconfigured);
        assert!(again.findings[0].is_open());
        assert!(again.findings[0].new, "re-opened, so announced again");
        assert_eq!(again.errors.len(), 1, "a refused collect is an error too");
        assert_eq!(again.exit_code(), 3, "3 wins over 1");
    }

    #[test]
    fn backfill_ranges_are_checked() {
        let today = chrono::Utc::now().date_naive();
        assert_eq!(
            backfill_window("2026-01-01", Some("2026-01-31"), today),
            Ok(Window::Range {
                from: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                to: chrono::NaiveDate::from_ymd_opt(2026, 1, 31).unwrap()
            })
        );
        assert_eq!(
            backfill_window("2026-01-01", None, today)
                .map(|w| matches!(w, Window::Range { to, .. } if to == today)),
            Ok(true)
        );
        assert!(backfill_window("2026-02-01", Some("2026-01-01"), today)
            .unwrap_err()
            .contains("after"));
        assert!(backfill_window("yesterday", None, today)
            .unwrap_err()
            .contains("--since"));
        let tomorrow = (today + chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string();
        assert!(backfill_window("2026-01-01", Some(&tomorrow), today)
            .unwrap_err()
            .contains("future"));
    }
}
