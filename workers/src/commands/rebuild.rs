//! `rebuild-state [--no-verify]`: rebuilds a lost or damaged progress store
//! from the archive's own metadata, then validates every chain.

use std::path::Path;

use trailvault_config::Config;
use trailvault_pipeline::jobs::rebuild as job;
use trailvault_pipeline::model::report::exit;

use super::check_keys_file;
use crate::output::print_report;
use crate::shutdown::Shutdown;
use crate::wiring;

pub async fn rebuild(config: &Config, keys: Option<&Path>, no_verify: bool, json: bool) -> i32 {
    let shutdown = Shutdown::on_signals();
    let wired = match wiring::wire_for_command(config, shutdown.abort.clone()).await {
        Ok(wired) => wired,
        Err(code) => return code,
    };
    if !no_verify && check_keys_file(config, keys).is_err() {
        return exit::USAGE;
    }
    let world = wiring::world(&wired, &shutdown);
    let report = job::rebuild(&world, &wired.settings, keys, no_verify).await;
    print_report(&report, json);
    report.exit_code()
}
