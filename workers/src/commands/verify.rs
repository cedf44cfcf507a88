//! `verify [--full]`: validates the archive's digest chains.

use std::path::Path;

use trailvault_config::Config;
use trailvault_pipeline::jobs::verify as job;
use trailvault_pipeline::model::report::exit;

use super::check_keys_file;
use crate::cli::Scope;
use crate::output::print_report;
use crate::shutdown::Shutdown;
use crate::wiring;

pub async fn verify(
    config: &Config,
    scope: &Scope,
    keys: Option<&Path>,
    full: bool,
    json: bool,
) -> i32 {
    // Nothing worth finishing is in flight: a signal abandons validation
    // (it resumes from its state next time).
    let shutdown = Shutdown::on_signals();
    let _abort = shutdown.abort_on_stop();
    let wired = match wiring::wire_or_skip(config, shutdown.abort.clone(), "verify", json).await {
        Ok(wired) => wired,
        Err(code) => return code,
    };
    if check_keys_file(config, keys).is_err() {
        return exit::USAGE;
    }
    let world = wiring::world(&wired, &shutdown);
    let report = job::verify(&world, &wired.settings, &scope.to_job(), keys, full).await;
    print_report(&report, json);
    report.exit_code()
}
