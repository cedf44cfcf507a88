//! `findings [--account ID] [--kind KIND] [--since TIME] [--acknowledge]`:
//! lists the recorded findings; acknowledges the listed open ones. With
//! `--format asff`, prints them in the AWS Security Finding Format.

use tokio_util::sync::CancellationToken;
use trailvault_config::Config;
use trailvault_pipeline::jobs::findings::{self as job, FindingsFilter, Ledger};
use trailvault_pipeline::model::asff::{asff_document, AsffProduct};
use trailvault_pipeline::model::report::exit;

use crate::output::print_findings;
use crate::wiring;

/// How the findings are printed.
pub enum Output {
    Text,
    /// The `--json` report.
    Json,
    /// `{"Findings":[...]}` in ASFF, for this importing account and Region.
    Asff(AsffProduct),
}

/// The account and Region of `--format asff`: `--asff-account-id`, else
/// `[alerts] asff_account_id`; the Region is `[aws] region`.
pub fn asff_product(config: &Config, account_id: Option<String>) -> Result<AsffProduct, i32> {
    match account_id.or_else(|| config.alerts.asff_account_id.clone()) {
        Some(account_id) => Ok(AsffProduct {
            account_id,
            region: config.aws.region.clone(),
        }),
        None => {
            eprintln!(
                "trailvault: --format asff needs the Security Hub account that imports the \
                 findings: pass --asff-account-id ID or set [alerts] asff_account_id"
            );
            Err(exit::USAGE)
        }
    }
}

pub async fn findings(
    config: &Config,
    accounts: &[String],
    kinds: &[String],
    since: Option<&str>,
    acknowledge: bool,
    output: Output,
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
            shard: wired.settings.accounts.shard,
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
    match output {
        Output::Asff(product) => {
            for error in &outcome.report.errors {
                eprintln!("trailvault: {}: {}", error.operation, error.message);
            }
            let document = asff_document(&outcome.report.findings, &product, chrono::Utc::now());
            if !crate::output::stdout::json(&document, true) {
                return exit::OPERATIONAL_ERRORS;
            }
        }
        Output::Json => print_findings(&outcome.report, acknowledged_now, true),
        Output::Text => print_findings(&outcome.report, acknowledged_now, false),
    }
    outcome.report.exit_code()
}
