//! `collect`: one incremental collection run (and the validation of the
//! chains it touched).

use std::path::PathBuf;

use trailvault_config::Config;
use trailvault_pipeline::collect::Window;
use trailvault_pipeline::jobs::collect::{self as job, CollectRequest};

use crate::cli::Scope;
use crate::output::print_report;
use crate::output::progress::Progress;
use crate::shutdown::Shutdown;
use crate::wiring;

pub async fn collect(
    config: &Config,
    scope: &Scope,
    keys: Option<PathBuf>,
    allow_unlocked: bool,
    no_verify: bool,
    json: bool,
) -> i32 {
    let request = CollectRequest {
        window: Window::Incremental,
        scope: scope.to_job(),
        allow_unlocked,
        verify: !no_verify,
        keys_file: keys,
    };
    run_collect(config, &request, json).await
}

/// Wires, runs the collect job once and prints: `collect` and `backfill`.
pub async fn run_collect(config: &Config, request: &CollectRequest, json: bool) -> i32 {
    let shutdown = Shutdown::on_signals();
    let command = if matches!(request.window, Window::Incremental) {
        "collect"
    } else {
        "backfill"
    };
    let wired = match wiring::wire_or_skip(config, shutdown.abort.clone(), command, json).await {
        Ok(wired) => wired,
        Err(code) => return code,
    };
    let world = wiring::world(&wired, &shutdown);
    let report = job::collect(&world, &wired.settings, request, &Progress::default()).await;
    print_report(&report, json);
    report.exit_code()
}
