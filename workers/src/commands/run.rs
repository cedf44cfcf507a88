//! `trailvault run --interval DURATION`: collection plus validation on a
//! schedule.
//!
//! Runs never overlap: the next one starts `interval` after the previous one
//! started, or right after it finished when it overran (logged). The store is
//! opened once for the life of the daemon (one process at a time holds its
//! file) and every run is recorded in it (`run/…`). While idle between
//! runs a signal ends the daemon at once; during a run, see `shutdown.rs`.
//! With `--metrics-addr` (or `[metrics] addr`) it serves its metrics
//! (`crate::metrics`), brought up to date after every run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};
use trailvault_config::Config;
use trailvault_infra::retry::observe_retries;
use trailvault_pipeline::collect::Window;
use trailvault_pipeline::jobs::collect::{self as job, CollectRequest};
use trailvault_pipeline::jobs::status::StatusView;
use trailvault_pipeline::model::report::exit;
use trailvault_pipeline::seams::ProgressStore;

use super::check_keys_file;
use crate::cli::Scope;
use crate::metrics::{server, Metrics};
use crate::output::print_run;
use crate::output::progress::Progress;
use crate::shutdown::Shutdown;
use crate::wiring;

/// How the daemon runs.
pub struct RunOptions {
    /// `--interval`: required without `[intake]`, which has its own sweep cadence.
    pub interval: Option<Duration>,
    pub keys: Option<PathBuf>,
    /// Where to serve the metrics; `None`: nowhere.
    pub metrics_addr: Option<SocketAddr>,
    pub json: bool,
}

/// Runs collection plus validation every `interval` until a signal.
pub async fn run(config: &Config, scope: &Scope, options: RunOptions) -> i32 {
    let RunOptions {
        interval,
        keys,
        metrics_addr,
        json,
    } = options;
    let shutdown = Shutdown::on_signals();
    // A keys file that cannot be read is a usage error: nothing was done.
    if check_keys_file(config, keys.as_deref()).is_err() {
        return exit::USAGE;
    }
    if interval.is_none() && config.intake.queue_url.is_none() {
        eprintln!(
            "trailvault: run needs --interval (time between runs) unless [intake] is configured"
        );
        return exit::USAGE;
    }
    // One queue cannot be split by shard: a shard would take (and delete)
    // another shard's notifications. Refused before any work.
    if let (Some(_), Some(shard)) = (&config.intake.queue_url, &config.shard.spec) {
        eprintln!(
            "trailvault: event-driven intake ([intake] queue_url) does not run sharded (shard {shard}): every consumer of the queue takes every account's notifications; run the intake daemon unsharded (it makes no LIST per file) and shard `collect` runs without [intake]"
        );
        return exit::USAGE;
    }
    // An address that cannot be served is a usage error too, found before
    // any work.
    let metrics = Arc::new(Metrics::new());
    let _endpoint = match metrics_addr {
        Some(addr) => match server::serve(addr, metrics.clone()).await {
            Ok(endpoint) => {
                observe_retries(metrics.clone());
                info!(addr = %endpoint.addr, "serving metrics on http://{}/metrics", endpoint.addr);
                Some(endpoint)
            }
            Err(error) => {
                eprintln!("trailvault: cannot serve metrics on {addr}: {error}");
                return exit::USAGE;
            }
        },
        None => None,
    };
    let wired = match wiring::wire(config, shutdown.abort.clone()).await {
        Ok(wired) => wired,
        Err(error) if error.held() => {
            eprintln!(
                "trailvault: another trailvault process (a daemon or a run) holds the progress store at {}; the daemon does not run twice on one store",
                error.path.display()
            );
            return exit::USAGE;
        }
        Err(error) => {
            eprintln!("trailvault: {error}");
            return exit::USAGE;
        }
    };
    let store = wired.connected.store.clone();
    let configured = crate::settings::configured_accounts(config);
    let refresh_status = || {
        if metrics_addr.is_none() {
            return;
        }
        match StatusView::from_store(store.as_ref(), &configured, chrono::Utc::now()) {
            Ok(view) => metrics.record_status(&view),
            Err(error) => warn!(%error, "cannot read the status for the metrics"),
        }
    };
    refresh_status();
    // With a queue, the listing is the reconciliation sweep, on its own cadence.
    let intake = super::intake::Intake::new(config, &wired, keys.clone());
    let interval = match &intake {
        Some(intake) => {
            info!(
                sweep_interval_seconds = intake.sweep_interval.as_secs(),
                "event-driven intake on: the queue between sweeps, the listing every sweep interval (instead of --interval)"
            );
            if interval.is_some() {
                info!("--interval is not used with [intake]: the sweep runs every sweep_interval_seconds");
            }
            intake.sweep_interval
        }
        None => match interval {
            Some(interval) => interval,
            // Checked above, before any work.
            None => return exit::USAGE,
        },
    };
    info!(
        interval_seconds = interval.as_secs(),
        "daemon started; SIGTERM or SIGINT stops it"
    );
    let request = CollectRequest {
        window: Window::Incremental,
        scope: scope.to_job(),
        allow_unlocked: false,
        verify: true,
        keys_file: keys,
    };
    let mut runs: u64 = 0;
    while !shutdown.stop.is_cancelled() {
        let started = Instant::now();
        runs += 1;
        let world = wiring::world(&wired, &shutdown);
        let report = job::collect(&world, &wired.settings, &request, &Progress::default()).await;
        // The metrics first: whoever reads the report line may scrape at once.
        metrics.record_run(&report);
        refresh_status();
        print_run(&report, json);
        info!(
            run = runs,
            exit_code = report.exit_code(),
            copied = report.stats.objects_copied,
            findings = report.findings.len(),
            errors = report.errors.len(),
            "scheduled run finished"
        );
        if shutdown.stop.is_cancelled() {
            break;
        }
        let next = started + interval;
        let now = Instant::now();
        if now >= next {
            warn!(
                took_seconds = (now - started).as_secs(),
                interval_seconds = interval.as_secs(),
                "the run took longer than the interval; the next one starts now"
            );
            continue;
        }
        if let Some(intake) = &intake {
            intake.until(&wired, &shutdown, next, &metrics, json).await;
            refresh_status();
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = shutdown.stop.cancelled() => break,
        }
    }
    if let Err(error) = wired.connected.store.flush() {
        warn!(%error, "cannot flush the progress store");
        return exit::OPERATIONAL_ERRORS;
    }
    info!(runs, "daemon stopped");
    exit::OK
}
