//! `trailvault run --interval DURATION`: collection plus validation on a
//! schedule, and the shutdown every command shares.
//!
//! Runs never overlap: the next one starts `interval` after the previous one
//! started, or right after it finished when it overran (logged). The store is
//! opened once for the life of the daemon (sled allows one instance per
//! process) and every run is recorded in it (`run/…`, see `status.rs`).
//!
//! Shutdown (SIGTERM or SIGINT): the first signal stops taking work: no new
//! copy starts, in-flight copies finish (their retries are bounded by the
//! retry budget), validation is abandoned, the store is flushed and the
//! process exits 0. While idle between runs it exits at once. A second signal
//! abandons in-flight requests too, which is safe: an interrupted copy left an
//! intent, and the next run adopts or redoes it.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use trailvault_config::Config;
use trailvault_pipeline::collect::Window;
use trailvault_pipeline::model::report::exit;
use trailvault_pipeline::seams::ProgressStore;

use crate::cli::Scope;
use crate::commands::{collect_once, finish_run, CollectOptions};
use crate::output::print_report;
use crate::wiring;

/// The two stages of shutdown.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Stop taking work: no new partition, copy or version is started.
    pub stop: CancellationToken,
    /// Abandon requests in flight (the retry layer returns `Cancelled`).
    pub abort: CancellationToken,
}

impl Shutdown {
    /// A shutdown driven by SIGTERM/SIGINT: the first signal stops, the
    /// second aborts.
    pub fn on_signals() -> Shutdown {
        let shutdown = Shutdown::default();
        let handle = shutdown.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            for signals in 1u32.. {
                #[cfg(unix)]
                let terminated = async {
                    match terminate.as_mut() {
                        Some(signal) => {
                            signal.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let terminated = std::future::pending::<()>();
                let interrupted = async {
                    if tokio::signal::ctrl_c().await.is_err() {
                        // No SIGINT handler could be installed: SIGTERM only.
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    () = interrupted => {}
                    () = terminated => {}
                }
                if signals == 1 {
                    warn!("shutdown requested: no new work is started, in-flight copies finish (signal again to abandon them)");
                    handle.stop.cancel();
                } else {
                    warn!("second shutdown signal: abandoning requests in flight (the next run adopts or redoes them)");
                    handle.abort.cancel();
                    break;
                }
            }
        });
        shutdown
    }

    /// Once `stop` fires, abort as well: for stages with no copies in flight
    /// worth finishing (validation, listing).
    pub fn abort_on_stop(&self) -> tokio::task::JoinHandle<()> {
        let handle = self.clone();
        tokio::spawn(async move {
            handle.stop.cancelled().await;
            handle.abort.cancel();
        })
    }
}

/// Parses `30s`, `5m`, `1h`, `1h30m`, `1d`: whole numbers with units in
/// decreasing order (d, h, m, s), each at most once. Zero and anything else
/// is refused.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)];
    let refuse =
        || format!("--interval must be a duration like 30s, 5m, 1h or 1h30m, not `{text}`");
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(refuse());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut next_unit = 0;
    for character in trimmed.chars() {
        if character.is_ascii_digit() {
            digits.push(character);
            continue;
        }
        let Some(position) = UNITS[next_unit..]
            .iter()
            .position(|(unit, _)| *unit == character.to_ascii_lowercase())
        else {
            return Err(refuse());
        };
        if digits.is_empty() {
            return Err(refuse());
        }
        let index = next_unit + position;
        let amount: u64 = digits.parse().map_err(|_| refuse())?;
        total = amount
            .checked_mul(UNITS[index].1)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(refuse)?;
        digits.clear();
        next_unit = index + 1;
    }
    if !digits.is_empty() {
        return Err(refuse());
    }
    if total == 0 {
        return Err(format!("--interval must be longer than zero, not `{text}`"));
    }
    // A year bounds the timer arithmetic; nobody schedules less often.
    if total > 366 * 86_400 {
        return Err(format!("--interval `{text}` is longer than a year"));
    }
    Ok(Duration::from_secs(total))
}

fn print_run(report: &trailvault_pipeline::model::report::Report, json: bool) {
    if json {
        // One object per line: a stream of reports.
        match serde_json::to_string(report) {
            Ok(text) => println!("{text}"),
            Err(error) => eprintln!("trailvault: cannot serialize the report: {error}"),
        }
    } else {
        print_report(report, false);
    }
}

/// Runs collection plus validation every `interval` until a signal.
pub async fn run(
    config: Config,
    interval: Duration,
    scope: Scope,
    keys: Option<std::path::PathBuf>,
    json: bool,
) -> i32 {
    let shutdown = Shutdown::on_signals();
    // A keys file that cannot be read is a usage error: nothing was done.
    if let Some(path) = keys
        .as_deref()
        .or(config.verify.public_keys_file.as_deref())
    {
        if let Err(error) = crate::validation::keys_from_file(path) {
            eprintln!("trailvault: {error:#}");
            return exit::USAGE;
        }
    }
    let mut wired = match wiring::wire(config, shutdown.abort.clone()).await {
        Ok(wired) => wired,
        Err(error) => {
            eprintln!("trailvault: {error:#}");
            return exit::USAGE;
        }
    };
    info!(
        interval_seconds = interval.as_secs(),
        "daemon started; SIGTERM or SIGINT stops it"
    );
    let mut runs: u64 = 0;
    while !shutdown.stop.is_cancelled() {
        let started = Instant::now();
        runs += 1;
        wired.run_id = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let mut report = collect_once(
            &wired,
            &scope,
            &CollectOptions {
                window: Window::Incremental,
                allow_unlocked: false,
                verify: true,
                keys: keys.clone(),
            },
            &shutdown,
        )
        .await;
        finish_run(&wired, &mut report, shutdown.stop.is_cancelled());
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
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = shutdown.stop.cancelled() => break,
        }
    }
    if let Err(error) = wired.store.flush() {
        warn!(%error, "cannot flush the progress store");
        return exit::OPERATIONAL_ERRORS;
    }
    info!(runs, "daemon stopped");
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_garbage_is_refused() {
        let ok = [
            ("30s", 30),
            ("5m", 300),
            ("1h", 3600),
            ("1h30m", 5400),
            ("1d2h3m4s", 93_784),
            (" 90s ", 90),
            ("2H", 7200),
        ];
        for (text, seconds) in ok {
            assert_eq!(
                parse_interval(text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
        for text in [
            "",
            "0",
            "0s",
            "0h0m",
            "5",
            "m",
            "5x",
            "1m1h",
            "1h1h",
            "-5m",
            "1.5h",
            "5 m",
            "99999999999999999999s",
            "400d",
            "1h30",
            "h1",
        ] {
            assert!(parse_interval(text).is_err(), "{text:?} accepted");
        }
        assert!(parse_interval("0s").unwrap_err().contains("zero"));
    }

    #[tokio::test]
    async fn abort_follows_stop_when_asked() {
        let shutdown = Shutdown::default();
        let follower = shutdown.abort_on_stop();
        assert!(!shutdown.abort.is_cancelled());
        shutdown.stop.cancel();
        follower.await.unwrap();
        assert!(shutdown.abort.is_cancelled());
    }
}
