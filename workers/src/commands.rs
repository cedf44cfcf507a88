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
use trailvault_pipeline::findings::{Finding, FindingKind};
use trailvault_pipeline::report::{exit, Report};
use trailvault_pipeline::seams::{ProgressStore, SystemClock};

use crate::cli::{Cli, Command, Scope};
use crate::output::{finding_line, print_report};
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

fn not_implemented(command: &str) -> i32 {
    eprintln!("trailvault: `{command}` is not implemented yet; nothing was done");
    exit::USAGE
}

/// Cancels `token` on SIGINT or SIGTERM: stop taking work, let in-flight
/// copies finish, flush the store.
fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = interrupt => {}
            () = terminate => {}
        }
        warn!("shutdown requested: finishing in-flight copies");
        token.cancel();
    });
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
                        keys: None,
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
        } => list_findings(&config, &accounts, &kinds, since.as_deref(), json),
        Command::Verify { scope, keys, full } => {
            run_verify(config, &scope, keys.public_keys.as_deref(), full, json).await
        }
        Command::Retention { .. } => not_implemented("retention"),
        Command::Run { .. } => not_implemented("run"),
        Command::Status => not_implemented("status"),
        Command::RebuildState => rebuild_state(config, json).await,
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
            "{spinner} {msg} [{bar:30}] {pos}/{len} objects, {elapsed} (eta {eta})",
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

async fn run_collect(config: Config, scope: &Scope, options: CollectOptions, json: bool) -> i32 {
    let CollectOptions {
        window,
        allow_unlocked,
        verify,
        keys,
    } = options;
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    let command = if matches!(window, Window::Incremental) {
        "collect"
    } else {
        "backfill"
    };
    let mut report = Report::new(command);
    let wired = match wiring::wire(config, cancel.clone()).await {
        Ok(wired) => wired,
        Err(error) => {
            eprintln!("trailvault: {error:#}");
            return exit::USAGE;
        }
    };
    if !check_archive(&wired, &mut report, allow_unlocked).await {
        report.finished_at = Utc::now();
        print_report(&report, json);
        return report.exit_code();
    }
    let accounts = match wiring::accounts(&wired, scope).await {
        Ok(accounts) => accounts,
        Err(error) => {
            report.error("-", "list accounts", format!("{error:#}"));
            report.finished_at = Utc::now();
            print_report(&report, json);
            return report.exit_code();
        }
    };
    info!(accounts = accounts.len(), run_id = %wired.run_id, "collection started");
    let (scopes, session_errors) = wiring::scopes(&wired, &accounts, scope).await;
    for error in session_errors {
        report.stats.errors += 1;
        report.errors.push(error);
    }
    let settings = wiring::collect_settings(&wired);
    let counters = Arc::new(Counters::default());
    let done = CancellationToken::new();
    let progress = progress_display(counters.clone(), done.clone());
    let outcome = collect::collect(
        collect::Collector {
            archive: wired.archive.as_ref(),
            store: wired.store.as_ref(),
            clock: &SystemClock,
            settings: &settings,
            cancel: &cancel,
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
    report.stats = trailvault_pipeline::report::Stats {
        accounts: report.stats.accounts,
        accounts_failed: report.stats.accounts_failed,
        errors: errors_before + outcome.stats.errors,
        ..outcome.stats
    };
    report.errors.extend(outcome.errors);
    report.findings.extend(outcome.findings);
    if cancel.is_cancelled() {
        report.error(
            "-",
            "collect",
            "interrupted by a signal; the next run continues where this one stopped",
        );
    } else if verify && wired.config.collect.verify_after_collect {
        merge_verify(
            &mut report,
            validation::run(&wired, &accounts, &scope.accounts, keys.as_deref(), false).await,
        );
    }
    validation::publish_alerts(&wired, &mut report).await;
    if let Err(error) = wired.store.flush() {
        report.error("-", "flush_store", error.to_string());
    }
    report.finished_at = Utc::now();
    print_report(&report, json);
    report.exit_code()
}

/// Rebuilds the store from the archive: every current archive version carries
/// its provenance (source account in the key, source ETag, checksums, content
/// hash) so the next collect copies nothing again.
async fn rebuild_state(config: Config, json: bool) -> i32 {
    use futures::StreamExt as _;
    use trailvault_pipeline::seams::SourceRef;

    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    let mut report = Report::new("rebuild-state");
    let wired = match wiring::wire(config, cancel.clone()).await {
        Ok(wired) => wired,
        Err(error) => {
            eprintln!("trailvault: {error:#}");
            return exit::USAGE;
        }
    };
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
            report.finished_at = Utc::now();
            print_report(&report, json);
            return report.exit_code();
        }
    };
    let latest: Vec<_> = versions.into_iter().filter(|v| v.is_latest).collect();
    report.stats.objects_listed = latest.len() as u64;
    let now = Utc::now().timestamp();
    let results = futures::stream::iter(latest)
        .take_while(|_| std::future::ready(!cancel.is_cancelled()))
        .map(|version| {
            let archive = wired.archive.clone();
            async move {
                let head = archive.head(&version.key, Some(&version.version_id)).await;
                (version, head)
            }
        })
        .buffer_unordered(wired.config.collect.concurrency)
        .collect::<Vec<_>>()
        .await;
    for (version, head) in results {
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
        match trailvault_pipeline::copy::record_from_head(&head, copied_at) {
            Some(record) => match wired.store.record_object(&source, &record) {
                Ok(()) => report.stats.objects_copied += 1,
                Err(error) => report.error(&source.account_id, "record_object", error.to_string()),
            },
            None => report.error(
                &source.account_id,
                "rebuild",
                format!(
                    "{} has no SHA-256 checksum; not recorded (collect will copy it again)",
                    version.key
                ),
            ),
        }
    }
    if let Err(error) = wired.store.flush() {
        report.error("-", "flush_store", error.to_string());
    }
    info!(
        recorded = report.stats.objects_copied,
        "store rebuilt from the archive"
    );
    report.finished_at = Utc::now();
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
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    let mut report = Report::new("verify");
    let wired = match wiring::wire(config, cancel).await {
        Ok(wired) => wired,
        Err(error) => {
            eprintln!("trailvault: {error:#}");
            return exit::USAGE;
        }
    };
    // A keys file that cannot be read is a usage error: nothing was done.
    if let Some(path) = keys.or(wired.config.verify.public_keys_file.as_deref()) {
        if let Err(error) = validation::keys_from_file(path) {
            eprintln!("trailvault: {error:#}");
            return exit::USAGE;
        }
    }
    let accounts = match wiring::accounts(
        &wired,
        &Scope {
            accounts: Vec::new(),
            regions: Vec::new(),
        },
    )
    .await
    {
        Ok(accounts) => accounts,
        Err(error) => {
            report.error("-", "list accounts", format!("{error:#}"));
            report.finished_at = Utc::now();
            print_report(&report, json);
            return report.exit_code();
        }
    };
    report.stats.accounts = accounts.len() as u64;
    merge_verify(
        &mut report,
        validation::run(&wired, &accounts, &scope.accounts, keys, full).await,
    );
    validation::publish_alerts(&wired, &mut report).await;
    if let Err(error) = wired.store.flush() {
        report.error("-", "flush_store", error.to_string());
    }
    report.finished_at = Utc::now();
    print_report(&report, json);
    report.exit_code()
}

fn list_findings(
    config: &Config,
    accounts: &[String],
    kinds: &[String],
    since: Option<&str>,
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
    let store = match wiring::open_store(config) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("trailvault: {error:#}");
            return exit::OPERATIONAL_ERRORS;
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
