//! The commands of `CLI-CONTRACT.md`.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use trailvault_config::Config;
use trailvault_pipeline::collect::{self, Counters, Window};
use trailvault_pipeline::ledger::LedgerEntry;
use trailvault_pipeline::model::findings::{Finding, FindingKind};
use trailvault_pipeline::model::report::{exit, Report};
use trailvault_pipeline::seams::{ProgressStore, SystemClock};

use crate::cli::{Cli, Command, Scope};
use crate::daemon::{self, Shutdown};
use crate::output::{finding_line, print_report};
use crate::status::{self, LagTracker, RunRecord, StatusView};
use crate::validation;
use crate::wiring;

fn load_config(cli: &Cli) -> Result<Config, i32> {
    let Some(path) = &cli.config else {
        eprintln!("trailvault: no configuration: pass --config FILE or set TRAILVAULT_CONFIG");
        return Err(exit::USAGE);
    };
    Config::load(path).map_err(|error| {
        eprintln!("trailvault: {}: {error}", path.display());
        exit::USAGE
    })
}

pub async fn dispatch(cli: Cli) -> i32 {
    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let json = cli.json;
    match cli.command {
        Command::Collect {
            scope,
            keys,
            allow_unlocked_archive,
            no_verify,
        } => {
            let options = CollectOptions {
                window: Window::Incremental,
                allow_unlocked: allow_unlocked_archive,
                verify: !no_verify,
                keys: keys.public_keys,
            };
            run_collect(config, &scope, options, json).await
        }
        Command::Backfill {
            scope,
            keys,
            since,
            until,
        } => match backfill_window(&since, until.as_deref()) {
            Ok(window) => {
                run_collect(
                    config,
                    &scope,
                    CollectOptions {
                        window,
                        allow_unlocked: false,
                        verify: true,
                        keys: keys.public_keys,
                    },
                    json,
                )
                .await
            }
            Err(message) => {
                eprintln!("trailvault: {message}");
                exit::USAGE
            }
        },
        Command::Findings {
            accounts,
            kinds,
            since,
            acknowledge,
        } => {
            list_findings(
                config,
                &accounts,
                &kinds,
                since.as_deref(),
                acknowledge,
                json,
            )
            .await
        }
        Command::Verify { scope, keys, full } => {
            run_verify(config, &scope, keys.public_keys.as_deref(), full, json).await
        }
        Command::Retention { apply, full } => run_retention(config, apply, full, json).await,
        Command::Run {
            interval,
            scope,
            keys,
        } => daemon::run(config, interval, scope, keys.public_keys, json).await,
        Command::Status => show_status(&config, json),
        Command::RebuildState { keys, no_verify } => {
            rebuild_state(config, keys.public_keys.as_deref(), no_verify, json).await
        }
    }
}

/// A progress bar on a terminal; otherwise a progress log line every 15 s.
fn progress_display(
    counters: Arc<Counters>,
    done: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return Some(tokio::spawn(async move {
            let started = std::time::Instant::now();
            loop {
                tokio::select! {
                    () = done.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(15)) => {}
                }
                let copied = counters.objects_copied.load(Ordering::Relaxed);
                let rate = copied as f64 / started.elapsed().as_secs_f64().max(0.001);
                info!(
                    partitions_listed = counters.partitions_listed.load(Ordering::Relaxed),
                    partitions_total = counters.partitions_total.load(Ordering::Relaxed),
                    objects_copied = copied,
                    objects_to_copy = counters.objects_to_copy.load(Ordering::Relaxed),
                    bytes_copied = counters.bytes_copied.load(Ordering::Relaxed),
                    objects_per_second = format!("{rate:.1}"),
                    "progress"
                );
            }
        }));
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} objects, {per_sec}, {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(tokio::spawn(async move {
        loop {
            let listed = counters.partitions_listed.load(Ordering::Relaxed);
            let total = counters.partitions_total.load(Ordering::Relaxed);
            bar.set_length(counters.objects_to_copy.load(Ordering::Relaxed));
            bar.set_position(counters.objects_copied.load(Ordering::Relaxed));
            bar.set_message(format!(
                "partitions {listed}/{total}, {} MB",
                counters.bytes_copied.load(Ordering::Relaxed) / 1_000_000
            ));
            tokio::select! {
                () = done.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        bar.finish_and_clear();
    }))
}

/// Before writing, the archive must be locked down: versioning, Object Lock
/// default retention, default SSE-KMS encryption and a deny policy.
async fn check_archive(wired: &wiring::Wired, report: &mut Report, allow_unlocked: bool) -> bool {
    let protection = match wired.archive.protection().await {
        Ok(protection) => protection,
        Err(error) => {
            report.error(
                "-",
                &format!("read the configuration of s3://{}", wired.archive.bucket()),
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
    if !protection.has_bucket_policy {
        problems.push("no bucket policy with Deny statements could be read".to_string());
    }
    if problems.is_empty() {
        return true;
    }
    let detail = format!("archive bucket is not locked down: {}", problems.join("; "));
    let finding = Finding::new(
        FindingKind::ArchiveMisconfigured,
        "-",
        wired.archive.bucket(),
        "",
        detail.clone(),
    );
    match wired.store.record_finding(finding) {
        Ok(recorded) => report.findings.push(recorded),
        Err(error) => report.error("-", "record_finding", error.to_string()),
    }
    if allow_unlocked {
        report.overrides.push(format!(
            "--allow-unlocked-archive: collected although {detail}"
        ));
        return true;
    }
    error!(%detail, "refusing to collect into an unlocked archive (override: --allow-unlocked-archive)");
    false
}

/// The inclusive day range of `backfill --since DATE [--until DATE]`.
fn backfill_window(since: &str, until: Option<&str>) -> Result<Window, String> {
    let parse = |text: &str, flag: &str| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| format!("{flag} must be a date like 2026-01-31, not `{text}`"))
    };
    let from = parse(since, "--since")?;
    let today = Utc::now().date_naive();
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

pub struct CollectOptions {
    pub window: Window,
    pub allow_unlocked: bool,
    /// Validate the chains afterwards (also subject to `verify_after_collect`).
    pub verify: bool,
    pub keys: Option<std::path::PathBuf>,
}

/// One collection run (and the validation of the chains it touched) over an
/// already wired store and archive: what `collect`, `backfill` and each run
/// of the daemon do. Stops taking work when `shutdown.stop` fires.
pub async fn collect_once(
    wired: &wiring::Wired,
    scope: &Scope,
    options: &CollectOptions,
    shutdown: &Shutdown,
) -> Report {
    let window = options.window;
    let command = if matches!(window, Window::Incremental) {
        "collect"
    } else {
        "backfill"
    };
    let mut report = Report::new(command);
    if !check_archive(wired, &mut report, options.allow_unlocked).await {
        // Nothing is written to an archive that is not locked down, not even
        // the ledger; the finding is still published.
        validation::publish_alerts(wired, &mut report).await;
        return report;
    }
    let accounts = match wiring::accounts(wired, scope).await {
        Ok(accounts) => accounts,
        Err(error) => {
            report.error("-", "list accounts", format!("{error:#}"));
            return report;
        }
    };
    info!(accounts = accounts.len(), run_id = %wired.run_id, "collection started");
    let (scopes, session_errors) = wiring::scopes(wired, &accounts, scope).await;
    for error in session_errors {
        report.stats.errors += 1;
        report.errors.push(error);
    }
    let settings = wiring::collect_settings(wired);
    let counters = Arc::new(Counters::default());
    let done = CancellationToken::new();
    let progress = progress_display(counters.clone(), done.clone());
    // Notes the newest file per account as copies are recorded (`lag/…`).
    let tracker = LagTracker::new(wired.store.as_ref(), Utc::now());
    let outcome = collect::collect(
        collect::Collector {
            archive: wired.archive.as_ref(),
            store: &tracker,
            clock: &SystemClock,
            settings: &settings,
            cancel: &shutdown.stop,
            counters: &counters,
        },
        scopes,
        window,
    )
    .await;
    done.cancel();
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    collect::log_summary(&outcome);
    if let Err(error) = tracker.save() {
        report.error("-", "record_lag", error.to_string());
    }
    report.stats.accounts = accounts.len() as u64;
    let mut failed: std::collections::BTreeSet<String> = outcome.failed_accounts.clone();
    failed.extend(
        report
            .errors
            .iter()
            .map(|e| e.account_id.clone())
            .filter(|id| id != "-"),
    );
    report.stats.accounts_failed = failed.len() as u64;
    let errors_before = report.stats.errors;
    report.stats = trailvault_pipeline::model::report::Stats {
        accounts: report.stats.accounts,
        accounts_failed: report.stats.accounts_failed,
        errors: errors_before + outcome.stats.errors,
        ..outcome.stats
    };
    report.errors.extend(outcome.errors);
    report.findings.extend(outcome.findings);
    if shutdown.stop.is_cancelled() {
        report.error(
            "-",
            "collect",
            "interrupted by a signal; the next run continues where this one stopped",
        );
    } else if options.verify && wired.config.collect.verify_after_collect {
        // No copies are in flight any more: a signal now abandons validation
        // (it resumes from its state next time).
        let abort = shutdown.abort_on_stop();
        merge_verify(
            &mut report,
            validation::run(wired, &accounts, scope, options.keys.as_deref(), false).await,
        );
        abort.abort();
    }
    validation::include_open_findings(wired, &mut report, scope);
    validation::announce(wired, &mut report).await;
    report
}

/// Ends a run: flushes the store, records the run's summary (`run/…`) and
/// writes the status snapshot beside the store.
pub fn finish_run(wired: &wiring::Wired, report: &mut Report, interrupted: bool) {
    if let Err(error) = wired.store.flush() {
        report.error("-", "flush_store", error.to_string());
    }
    report.finished_at = Utc::now();
    let store = wired.store.as_ref();
    let record = RunRecord::from_report(report, interrupted);
    if let Err(error) = status::record_run(store, &record, status::RUN_SLOTS) {
        warn!(%error, "cannot record the run summary");
    }
    if let Err(error) = store.flush() {
        warn!(%error, "cannot flush the progress store");
    }
    write_status_snapshot(&wired.config, store);
}

fn write_status_snapshot(config: &Config, store: &dyn ProgressStore) {
    match StatusView::from_store(store, &config.accounts.ids, Utc::now()) {
        Ok(view) => {
            if let Err(error) = status::write_snapshot(&config.store.path, &view) {
                warn!(%error, path = %status::snapshot_path(&config.store.path).display(), "cannot write the status snapshot");
            }
        }
        Err(error) => warn!(%error, "cannot read the status from the store"),
    }
}

async fn run_collect(config: Config, scope: &Scope, options: CollectOptions, json: bool) -> i32 {
    let shutdown = Shutdown::on_signals();
    let wired = match wiring::wire(config, shutdown.abort.clone()).await {
        Ok(wired) => wired,
        Err(error) => {
            eprintln!("trailvault: {error:#}");
            return exit::USAGE;
        }
    };
    let mut report = collect_once(&wired, scope, &options, &shutdown).await;
    finish_run(&wired, &mut report, shutdown.stop.is_cancelled());
    print_report(&report, json);
    report.exit_code()
}

/// `retention [--apply] [--full]`: checks (and extends) every archived
/// version's Object Lock and the bucket's settings; with `[retention]
/// source_retention_days`, also plans (and deletes) expired source files.
async fn run_retention(config: Config, apply: bool, full: bool, json: bool) -> i32 {
    use trailvault_pipeline::retention::{self, RetentionSettings};

    let shutdown = Shutdown::on_signals();
    let mut report = Report::new("retention");
    let wired = match wiring::wire(config, shutdown.abort.clone()).await {
        Ok(wired) => wired,
        Err(error) => {
            eprintln!("trailvault: {error:#}");
            return exit::USAGE;
        }
    };
    let settings = RetentionSettings {
        archive_prefix: wired.config.archive.prefix.clone(),
        lock_mode: wiring::collect_settings(&wired).copy.lock_mode,
        retention_days: wired.config.archive.retention_days,
        concurrency: wired.config.collect.concurrency,
        apply,
    };
    let expiry_days = wired.config.retention.source_retention_days;
    let accounts: Result<Vec<String>, String> = if !full || expiry_days.is_some() {
        wiring::accounts(&wired, &Scope::default())
            .await
            .map_err(|error| format!("{error:#}"))
    } else {
        Ok(Vec::new())
    };
    let targets = if full {
        retention::targets_from_archive(wired.archive.as_ref(), &settings.archive_prefix)
            .await
            .map_err(|error| {
                (
                    format!("list versions of s3://{}", wired.archive.bucket()),
                    error.to_string(),
                )
            })
    } else {
        match &accounts {
            Ok(accounts) => match retention::targets_from_store(
                wired.store.as_ref(),
                &validation::archived_sources(&wired.config, accounts),
                &settings.archive_prefix,
            ) {
                // The findings ledger is not in the store: its few objects
                // are listed.
                Ok(mut targets) => {
                    let ledger =
                        trailvault_pipeline::ledger::ledger_prefix(&settings.archive_prefix);
                    match retention::targets_under(wired.archive.as_ref(), &ledger).await {
                        Ok(ledger_targets) => {
                            targets.extend(ledger_targets);
                            Ok(targets)
                        }
                        Err(error) => Err((
                            format!("list versions of s3://{}/{ledger}", wired.archive.bucket()),
                            error.to_string(),
                        )),
                    }
                }
                Err(error) => Err(("read_store".to_string(), error.to_string())),
            },
            Err(message) => Err(("list accounts".to_string(), message.clone())),
        }
    };
    let mut outcome = retention::RetentionOutcome::default();
    retention::check_bucket(
        wired.archive.as_ref(),
        wired.store.as_ref(),
        &settings,
        &mut outcome,
    )
    .await;
    // Source expiry only runs when this run confirmed the archive is locked
    // down: bucket settings and every version's lock read without a failure.
    let mut archive_confirmed = outcome.errors.is_empty() && outcome.bucket_problems.is_empty();
    match targets {
        Ok(targets) => {
            info!(
                versions = targets.len(),
                apply, full, "retention check started"
            );
            let checked = retention::enforce(
                wired.archive.as_ref(),
                wired.store.as_ref(),
                &settings,
                targets,
                Utc::now(),
                &shutdown.stop,
            )
            .await;
            archive_confirmed &= checked.errors.is_empty();
            let bucket_problems = std::mem::take(&mut outcome.bucket_problems);
            let bucket_findings = std::mem::take(&mut outcome.findings);
            let bucket_errors = std::mem::take(&mut outcome.errors);
            outcome = checked;
            outcome.bucket_problems = bucket_problems;
            outcome.findings.splice(0..0, bucket_findings);
            outcome.errors.splice(0..0, bucket_errors);
        }
        Err((operation, message)) => {
            archive_confirmed = false;
            report.error("-", &operation, message);
        }
    }
    if let Some(days) = expiry_days {
        if shutdown.stop.is_cancelled() {
            // Reported as interrupted below.
        } else if !archive_confirmed {
            report.error(
                "-",
                "source expiry",
                "skipped: this run could not confirm that the archive is locked down (see the bucket problems and errors); nothing was deleted from the sources",
            );
        } else {
            match &accounts {
                Ok(accounts) => {
                    let expired =
                        source_expiry(&wired, accounts, days, apply, &shutdown.stop).await;
                    outcome.errors.extend(expired.1);
                    outcome.source_expiry = Some(expired.0);
                }
                Err(message) => report.error("-", "list accounts", message.clone()),
            }
        }
    }
    report.stats.objects_listed = outcome.checked;
    report.stats.errors += outcome.errors.len() as u64;
    report.errors.extend(std::mem::take(&mut outcome.errors));
    report
        .findings
        .extend(std::mem::take(&mut outcome.findings));
    if shutdown.stop.is_cancelled() {
        report.error(
            "-",
            "retention",
            "interrupted by a signal; versions not reached were not checked",
        );
    }
    validation::announce(&wired, &mut report).await;
    finish_run(&wired, &mut report, shutdown.stop.is_cancelled());
    print_retention(&report, &outcome, apply, json);
    report.exit_code()
}

/// Source expiry over every source of `accounts`, each read (and deleted)
/// with its member session: the outcome, and the operational errors
/// (accounts out of reach included).
async fn source_expiry(
    wired: &wiring::Wired,
    accounts: &[String],
    days: u32,
    apply: bool,
    cancel: &CancellationToken,
) -> (
    trailvault_pipeline::retention::expiry::ExpiryOutcome,
    Vec<trailvault_pipeline::model::report::OperationError>,
) {
    use trailvault_pipeline::retention::expiry::{self, ExpiryScope, ExpirySettings};

    let (scopes, mut errors) = wiring::scopes(wired, accounts, &Scope::default()).await;
    let expiry_scopes: Vec<ExpiryScope<'_>> = scopes
        .iter()
        .map(|scope| ExpiryScope {
            reader_account_id: scope.reader_account_id.clone(),
            source: scope.source.as_ref(),
            root: scope.root.clone(),
            regions: scope.regions.clone(),
        })
        .collect();
    let settings = ExpirySettings {
        source_retention_days: days,
        concurrency: wired.config.collect.concurrency,
        apply,
    };
    info!(
        scopes = expiry_scopes.len(),
        source_retention_days = days,
        apply,
        "source expiry started"
    );
    let mut outcome = expiry::expire(
        &expiry_scopes,
        wired.store.as_ref(),
        &settings,
        Utc::now(),
        cancel,
    )
    .await;
    errors.append(&mut outcome.errors);
    (outcome, errors)
}

/// The retention report: the contract's report with a `retention` object
/// (checked, compliant, extended, bucket problems and the plan).
fn print_retention(
    report: &Report,
    outcome: &trailvault_pipeline::retention::RetentionOutcome,
    apply: bool,
    json: bool,
) {
    if json {
        let mut value = match serde_json::to_value(report) {
            Ok(value) => value,
            Err(error) => {
                eprintln!("trailvault: cannot serialize the report: {error}");
                return;
            }
        };
        let mut section = serde_json::to_value(outcome).unwrap_or_default();
        section["applied"] = serde_json::Value::Bool(apply);
        value["retention"] = section;
        match serde_json::to_string_pretty(&value) {
            Ok(text) => println!("{text}"),
            Err(error) => eprintln!("trailvault: cannot serialize the report: {error}"),
        }
        return;
    }
    let time = |t: Option<chrono::DateTime<Utc>>| {
        t.map_or_else(
            || "none".to_string(),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
    };
    println!(
        "trailvault retention ({}): {} versions checked, {} compliant, {} short{}",
        if apply { "applied" } else { "dry run" },
        outcome.checked,
        outcome.compliant,
        outcome.changes.len(),
        if apply {
            format!(", {} extended", outcome.extended)
        } else {
            String::new()
        }
    );
    for problem in &outcome.bucket_problems {
        println!("  bucket: {problem}");
    }
    for warning in &outcome.lifecycle_warnings {
        println!("  lifecycle (warning): {warning}");
    }
    for change in &outcome.changes {
        let current_mode = change
            .current_mode
            .map_or("no lock", trailvault_pipeline::seams::LockMode::as_str);
        let state = if change.applied {
            "extended"
        } else if apply {
            "NOT extended"
        } else {
            "would extend"
        };
        println!(
            "  {state} {} (version {}): {} {} -> {} {} (required {})",
            change.archive_key,
            change.version_id,
            current_mode,
            time(change.current_until),
            change.mode.as_str(),
            time(Some(change.until)),
            time(Some(change.required_until)),
        );
    }
    if !apply && !outcome.changes.is_empty() {
        println!("  dry run: nothing was changed; run `trailvault retention --apply` to extend");
    }
    if let Some(expiry) = &outcome.source_expiry {
        print_source_expiry(expiry, apply);
    }
    println!("  errors            {}", report.errors.len());
    for error in &report.errors {
        println!(
            "    {} {}: {}",
            error.account_id, error.operation, error.message
        );
    }
    let new = report.findings.iter().filter(|f| f.new).count();
    println!("  findings          {} ({new} new)", report.findings.len());
    for finding in &report.findings {
        println!("    {}", finding_line(finding));
    }
}

/// Source files listed one per line in the human report, at most.
const MAX_EXPIRY_LINES: usize = 100;

/// The source expiry part of the human retention report.
fn print_source_expiry(
    expiry: &trailvault_pipeline::retention::expiry::ExpiryOutcome,
    apply: bool,
) {
    let kept: Vec<String> = expiry
        .kept
        .iter()
        .map(|(reason, count)| format!("{count} {}", reason.as_str()))
        .collect();
    println!(
        "  source expiry (source_retention_days = {}: files named before {}): {} {}, {} already gone, kept: {}",
        expiry.source_retention_days,
        expiry.cutoff.format("%Y-%m-%dT%H:%M:%SZ"),
        if apply {
            expiry.deleted
        } else {
            expiry.changes.len() as u64
        },
        if apply { "deleted" } else { "to delete" },
        expiry.already_gone,
        if kept.is_empty() {
            "none".to_string()
        } else {
            kept.join(", ")
        }
    );
    for change in expiry.changes.iter().take(MAX_EXPIRY_LINES) {
        println!(
            "    {} s3://{}/{}",
            if change.applied {
                "deleted"
            } else {
                "would delete"
            },
            change.bucket,
            change.key
        );
    }
    if expiry.changes.len() > MAX_EXPIRY_LINES {
        println!(
            "    ... and {} more (--json lists every one)",
            expiry.changes.len() - MAX_EXPIRY_LINES
        );
    }
    if !apply && !expiry.changes.is_empty() {
        println!(
            "  dry run: no source file was deleted; run `trailvault retention --apply` to delete"
        );
    }
}

/// `status [--json]`: last runs, per-account lag, chain heads, open findings.
/// Reads the store, or the snapshot the last run wrote when a running
/// trailvault holds the store. Always exit 0 once the config is valid
/// (status is informational), 1 when nothing can be read.
fn show_status(config: &Config, json: bool) -> i32 {
    let now = Utc::now();
    if !config.store.path.exists() {
        // Never run: show the empty status without creating a store.
        let empty = trailvault_pipeline::testsuite::memory::MemoryStore::default();
        return match StatusView::from_store(&empty, &config.accounts.ids, now) {
            Ok(view) => print_status(&view, json),
            Err(error) => {
                eprintln!("trailvault: {error}");
                exit::OPERATIONAL_ERRORS
            }
        };
    }
    let view = match wiring::open_store(config) {
        Ok(store) => {
            let view = StatusView::from_store(store.as_ref(), &config.accounts.ids, now);
            drop(store);
            match view {
                Ok(view) => view,
                Err(error) => {
                    eprintln!("trailvault: cannot read the status from the store: {error}");
                    return exit::OPERATIONAL_ERRORS;
                }
            }
        }
        Err(error) => match status::read_snapshot(&config.store.path) {
            Some(mut view) => {
                info!(error = %format!("{error:#}"), "the store is in use; showing the snapshot of the last run");
                view.source = "snapshot".to_string();
                view.refresh_ages(now);
                view
            }
            None => {
                eprintln!("trailvault: {error:#}");
                return exit::OPERATIONAL_ERRORS;
            }
        },
    };
    print_status(&view, json)
}

fn print_status(view: &StatusView, json: bool) -> i32 {
    if json {
        match serde_json::to_string_pretty(view) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("trailvault: cannot serialize the status: {error}");
                return exit::OPERATIONAL_ERRORS;
            }
        }
    } else {
        print!("{}", status::human(view));
    }
    exit::OK
}

/// Rebuilds the store from the archive: every current archive version carries
/// its provenance (source account in the key, source ETag, checksums, content
/// hash) so the next collect copies nothing again.
async fn rebuild_state(
    config: Config,
    keys: Option<&std::path::Path>,
    no_verify: bool,
    json: bool,
) -> i32 {
    use futures::StreamExt as _;
    use trailvault_pipeline::model::object::SourceRef;

    let shutdown = Shutdown::on_signals();
    let cancel = shutdown.stop.clone();
    let mut report = Report::new("rebuild-state");
    let wired = match wiring::wire(config, shutdown.abort.clone()).await {
        Ok(wired) => wired,
        Err(error) => {
            eprintln!("trailvault: {error:#}");
            return exit::USAGE;
        }
    };
    if !no_verify && check_keys_file(&wired, keys).is_err() {
        return exit::USAGE;
    }
    let prefix = &wired.config.archive.prefix;
    let list_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let versions = match wired.archive.list_versions(&list_prefix).await {
        Ok(versions) => versions,
        Err(error) => {
            report.error(
                "-",
                &format!(
                    "list versions of s3://{}/{list_prefix}",
                    wired.archive.bucket()
                ),
                error.to_string(),
            );
            finish_run(&wired, &mut report, cancel.is_cancelled());
            print_report(&report, json);
            return report.exit_code();
        }
    };
    // The findings ledger is read back below, not recorded as copies; the
    // versions newer copies superseded are remembered for retention.
    let (latest, superseded): (Vec<_>, Vec<_>) = versions
        .into_iter()
        .filter(|v| !trailvault_pipeline::ledger::is_ledger_key(prefix, &v.key))
        .partition(|v| v.is_latest);
    for version in &superseded {
        if let Some(source) = SourceRef::from_archive_key(prefix, &version.key) {
            let recorded = trailvault_pipeline::progress::superseded::record(
                wired.store.as_ref(),
                &source,
                &version.version_id,
                None,
            );
            if let Err(error) = recorded {
                report.error(&source.account_id, "record_superseded", error.to_string());
            }
        }
    }
    report.stats.objects_listed = latest.len() as u64;
    let now = Utc::now().timestamp();
    // Each HEAD is recorded as it arrives: the heads (with their metadata)
    // of a whole archive are never held at once.
    let mut heads = futures::stream::iter(latest)
        .take_while(|_| std::future::ready(!cancel.is_cancelled()))
        .map(|version| {
            let archive = wired.archive.clone();
            async move {
                let head = archive.head(&version.key, Some(&version.version_id)).await;
                (version, head)
            }
        })
        .buffer_unordered(wired.config.collect.concurrency);
    // The rebuilt store also knows each account's newest file (`lag/…`).
    let tracker = LagTracker::new(wired.store.as_ref(), Utc::now());
    while let Some((version, head)) = heads.next().await {
        let Some(source) = SourceRef::from_archive_key(prefix, &version.key) else {
            report.error(
                "-",
                "rebuild",
                format!(
                    "{} is not an archive key of this configuration",
                    version.key
                ),
            );
            continue;
        };
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => continue,
            Err(error) => {
                report.error(&source.account_id, "rebuild", error.to_string());
                continue;
            }
        };
        let copied_at = head
            .metadata
            .get(trailvault_pipeline::copy::meta::COPIED_AT)
            .and_then(|t| t.parse().ok())
            .unwrap_or(now);
        let limits = wiring::collect_settings(&wired).copy.inflate_limits;
        let record = trailvault_pipeline::copy::record_from_archive(
            wired.archive.as_ref(),
            &version.key,
            &head,
            copied_at,
            limits,
        )
        .await;
        match record {
            Ok(Some(record)) => match tracker.record_object(&source, &record) {
                Ok(()) => report.stats.objects_copied += 1,
                Err(error) => report.error(&source.account_id, "record_object", error.to_string()),
            },
            Err(error) => report.error(&source.account_id, "rebuild", error.to_string()),
            Ok(None) => report.error(
                &source.account_id,
                "rebuild",
                format!(
                    "{} has no SHA-256 checksum; not recorded (collect will copy it again)",
                    version.key
                ),
            ),
        }
    }
    if let Err(error) = tracker.save() {
        report.error("-", "record_lag", error.to_string());
    }
    // The findings recorded so far, with their acknowledgements, so the
    // validation below does not report them as new again.
    match trailvault_pipeline::ledger::restore(wired.archive.as_ref(), wired.store.as_ref(), prefix)
        .await
    {
        Ok(restored) => {
            info!(
                entries = restored.entries,
                findings = restored.findings,
                acknowledged = restored.acknowledged,
                "findings ledger read back"
            );
            for (key, reason) in restored.unreadable {
                report.error("-", &format!("read the findings ledger {key}"), reason);
            }
        }
        Err(error) => report.error("-", "read the findings ledger", error.to_string()),
    }
    info!(
        recorded = report.stats.objects_copied,
        "store rebuilt from the archive"
    );
    // The chain state is rebuilt too, so the next runs continue from here.
    if !no_verify && !cancel.is_cancelled() {
        let abort = shutdown.abort_on_stop();
        validate_into(&wired, &mut report, &Scope::default(), keys, false).await;
        abort.abort();
    }
    finish_run(&wired, &mut report, cancel.is_cancelled());
    print_report(&report, json);
    report.exit_code()
}

fn merge_verify(
    report: &mut Report,
    outcome: anyhow::Result<trailvault_pipeline::verify::VerifyOutcome>,
) {
    match outcome {
        Ok(outcome) => {
            info!(
                chains = outcome.chains,
                digests = outcome.stats.digests_validated,
                log_files = outcome.stats.log_files_validated,
                findings = outcome.findings.len(),
                "validation finished"
            );
            report.stats.digests_validated += outcome.stats.digests_validated;
            report.stats.log_files_validated += outcome.stats.log_files_validated;
            report.stats.errors += outcome.errors.len() as u64;
            report.errors.extend(outcome.errors);
            for finding in outcome.findings {
                if !report
                    .findings
                    .iter()
                    .any(|seen| seen.dedup_key() == finding.dedup_key())
                {
                    report.findings.push(finding);
                }
            }
        }
        Err(error) => report.error("-", "verify", format!("{error:#}")),
    }
}

async fn run_verify(
    config: Config,
    scope: &Scope,
    keys: Option<&std::path::Path>,
    full: bool,
    json: bool,
) -> i32 {
    // Nothing worth finishing is in flight: a signal abandons validation
    // (it resumes from its state next time).
    let shutdown = Shutdown::on_signals();
    let _abort = shutdown.abort_on_stop();
    let mut report = Report::new("verify");
    let wired = match wiring::wire(config, shutdown.abort.clone()).await {
        Ok(wired) => wired,
        Err(error) => {
            eprintln!("trailvault: {error:#}");
            return exit::USAGE;
        }
    };
    if check_keys_file(&wired, keys).is_err() {
        return exit::USAGE;
    }
    validate_into(&wired, &mut report, scope, keys, full).await;
    finish_run(&wired, &mut report, shutdown.stop.is_cancelled());
    print_report(&report, json);
    report.exit_code()
}

/// Validates the chains of every configured account (limited to `scope`) into
/// `report`, adds the open findings in scope and publishes the new ones.
async fn validate_into(
    wired: &wiring::Wired,
    report: &mut Report,
    scope: &Scope,
    keys: Option<&std::path::Path>,
    full: bool,
) {
    let accounts = match wiring::accounts(wired, &Scope::default()).await {
        Ok(accounts) => accounts,
        Err(error) => {
            report.error("-", "list accounts", format!("{error:#}"));
            return;
        }
    };
    report.stats.accounts = accounts.len() as u64;
    merge_verify(
        report,
        validation::run(wired, &accounts, scope, keys, full).await,
    );
    validation::include_open_findings(wired, report, scope);
    validation::announce(wired, report).await;
}

/// A keys file that cannot be read is a usage error: nothing is done.
fn check_keys_file(wired: &wiring::Wired, keys: Option<&std::path::Path>) -> Result<(), ()> {
    if let Some(path) = keys.or(wired.config.verify.public_keys_file.as_deref()) {
        if let Err(error) = validation::keys_from_file(path) {
            eprintln!("trailvault: {error:#}");
            return Err(());
        }
    }
    Ok(())
}

/// `findings`: lists the recorded findings that pass the filter; with
/// `acknowledge`, marks the open ones among them as acknowledged, so they no
/// longer keep runs at exit status 3 (they stay recorded and listed).
async fn list_findings(
    config: Config,
    accounts: &[String],
    kinds: &[String],
    since: Option<&str>,
    acknowledge: bool,
    json: bool,
) -> i32 {
    let mut wanted_kinds = Vec::new();
    for kind in kinds {
        match FindingKind::parse(kind) {
            Some(parsed) => wanted_kinds.push(parsed),
            None => {
                eprintln!("trailvault: unknown finding kind `{kind}`");
                return exit::USAGE;
            }
        }
    }
    let since = match since.map(parse_since) {
        Some(Ok(time)) => Some(time),
        Some(Err(())) => {
            eprintln!("trailvault: --since must be RFC 3339 or YYYY-MM-DD");
            return exit::USAGE;
        }
        None => None,
    };
    // Acknowledging also writes to the archive's findings ledger: it needs
    // the archive; listing needs only the store.
    let (store, wired) = if acknowledge {
        match wiring::wire(config, CancellationToken::new()).await {
            Ok(wired) => (wired.store.clone(), Some(wired)),
            Err(error) => {
                eprintln!("trailvault: {error:#}");
                return exit::USAGE;
            }
        }
    } else {
        match wiring::open_store(&config) {
            Ok(store) => (store, None),
            Err(error) => {
                eprintln!("trailvault: {error:#}");
                return exit::OPERATIONAL_ERRORS;
            }
        }
    };
    let mut report = Report::new("findings");
    match store.findings() {
        Ok(findings) => {
            report.findings = findings
                .into_iter()
                .filter(|f| accounts.is_empty() || accounts.contains(&f.account_id))
                .filter(|f| wanted_kinds.is_empty() || wanted_kinds.contains(&f.kind))
                .filter(|f| since.is_none_or(|since| f.first_seen >= since))
                .map(|mut f| {
                    f.new = false;
                    f
                })
                .collect();
        }
        Err(error) => report.error("-", "read findings", error.to_string()),
    }
    let mut entry = LedgerEntry::new("findings", Utc::now());
    if acknowledge {
        let mut failures = Vec::new();
        for finding in report.findings.iter_mut().filter(|f| f.is_open()) {
            match store.acknowledge_finding(finding, entry.recorded_at) {
                Ok(true) => {
                    finding.acknowledged_at = Some(entry.recorded_at);
                    entry.acknowledged.push(finding.clone());
                }
                Ok(false) => {}
                Err(error) => failures.push((finding.account_id.clone(), error.to_string())),
            }
        }
        for (account_id, message) in failures {
            report.error(&account_id, "acknowledge finding", message);
        }
        if let Err(error) = store.flush() {
            report.error("-", "flush_store", error.to_string());
        }
        if let (Some(wired), false) = (&wired, entry.is_empty()) {
            validation::append_to_ledger(wired, &mut report, &entry).await;
        }
    }
    report.finished_at = Utc::now();
    if json {
        print_report(&report, true);
    } else {
        for finding in &report.findings {
            println!(
                "{} {}",
                finding.first_seen.format("%Y-%m-%dT%H:%M:%SZ"),
                finding_line(finding)
            );
        }
        println!("{} finding(s)", report.findings.len());
        if acknowledge {
            println!("{} acknowledged now", entry.acknowledged.len());
        }
    }
    report.exit_code()
}

fn parse_since(text: &str) -> Result<chrono::DateTime<Utc>, ()> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|time| time.and_utc())
        .ok_or(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backfill_ranges_are_checked() {
        let today = Utc::now().date_naive();
        assert_eq!(
            backfill_window("2026-01-01", Some("2026-01-31")),
            Ok(Window::Range {
                from: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                to: chrono::NaiveDate::from_ymd_opt(2026, 1, 31).unwrap()
            })
        );
        assert_eq!(
            backfill_window("2026-01-01", None)
                .map(|w| matches!(w, Window::Range { to, .. } if to == today)),
            Ok(true)
        );
        assert!(backfill_window("2026-02-01", Some("2026-01-01"))
            .unwrap_err()
            .contains("after"));
        assert!(backfill_window("yesterday", None)
            .unwrap_err()
            .contains("--since"));
        let tomorrow = (today + chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string();
        assert!(backfill_window("2026-01-01", Some(&tomorrow))
            .unwrap_err()
            .contains("future"));
    }
}
