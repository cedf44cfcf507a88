//! `findings [--account ID] [--kind KIND] [--since TIME] [--acknowledge]`:
//! lists the recorded findings; acknowledges the listed open ones.

use tokio_util::sync::CancellationToken;
use trailvault_config::Config;
use trailvault_pipeline::jobs::findings::{self as job, FindingsFilter, Ledger};
use trailvault_pipeline::model::report::exit;

use crate::output::print_findings;
use crate::wiring;

pub async fn findings(
    config: &Config,
    accounts: &[String],
    kinds: &[String],
    since: Option<&str>,
    acknowledge: bool,
    json: bool,
) -> i32 {
    let filter = match FindingsFilter::parse(accounts, kinds, since) {
        Ok(filter) => filter,
        Err(message) => {
            eprintln!("trailvault: {message}");
            return exit::USAGE;
        }
    };
    // Acknowledging also writes to the archive's findings ledger: it needs
    // the archive; listing needs only the store.
    let outcome = if acknowledge {
        let wired = match wiring::wire_for_command(config, CancellationToken::new()).await {
            Ok(wired) => wired,
            Err(code) => return code,
        };
        let ledger = Ledger {
            archive: wired.connected.archive.as_ref(),
            settings: &wired.settings.collect.copy,
        };
        job::findings(wired.connected.store.as_ref(), Some(ledger), &filter, true).await
    } else {
        let store = match wiring::open_store(config) {
            Ok(store) => store,
            Err(error) => {
                eprintln!("trailvault: {error}");
                return exit::OPERATIONAL_ERRORS;
            }
        };
        job::findings(store.as_ref(), None, &filter, false).await
    };
    let acknowledged_now = acknowledge.then_some(outcome.acknowledged_now);
    print_findings(&outcome.report, acknowledged_now, json);
    outcome.report.exit_code()
}
