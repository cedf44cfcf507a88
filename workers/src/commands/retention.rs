//! `retention [--apply] [--full]`: checks (and extends) every archived
//! version's Object Lock and the bucket's settings; with `[retention]
//! source_retention_days`, also plans (and deletes) expired source files.

use trailvault_config::Config;
use trailvault_pipeline::jobs::retention as job;

use crate::output::retention::print_retention;
use crate::shutdown::Shutdown;
use crate::wiring;

pub async fn retention(config: &Config, apply: bool, full: bool, json: bool) -> i32 {
    let shutdown = Shutdown::on_signals();
    let wired = match wiring::wire_or_skip(config, shutdown.abort.clone(), "retention", json).await
    {
        Ok(wired) => wired,
        Err(code) => return code,
    };
    let world = wiring::world(&wired, &shutdown);
    let (report, outcome) = job::retention(&world, &wired.settings, apply, full).await;
    print_retention(&report, &outcome, apply, json);
    report.exit_code()
}
