//! Wires the seams together: infra builds them from the configuration, and
//! each run gets a [`World`] of them. No domain logic here.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;
use trailvault_config::Config;
use trailvault_infra::connect::{self, Connected, OpenStoreError};
use trailvault_infra::store::{OpenFailure, RedbStore};
use trailvault_pipeline::jobs::{JobSettings, World};
use trailvault_pipeline::model::error::SeamError;
use trailvault_pipeline::model::report::Report;
use trailvault_pipeline::progress::shard;
use trailvault_pipeline::seams::SystemClock;

use crate::output::print_report;
use crate::settings;
use crate::shutdown::Shutdown;

/// Everything the commands need from the outside world, for the process.
pub struct Wired {
    pub connected: Connected,
    pub settings: JobSettings,
}

pub fn open_store(config: &Config) -> Result<Arc<RedbStore>, OpenStoreError> {
    connect::open_store(config)
}

/// Opens the store and the audit identity's clients; `cancel` abandons their
/// retries.
pub async fn wire(config: &Config, cancel: CancellationToken) -> Result<Wired, OpenStoreError> {
    let connected = connect::connect(config, cancel).await?;
    let settings = settings::job_settings(config, &connected.kms_key_arn);
    // A store serves one shard (or none): a mix-up is an error, not
    // progress applied to another shard's accounts.
    let claimed = shard::claim(
        connected.store.as_ref(),
        settings.accounts.shard,
        chrono::Utc::now(),
    );
    if let Err(error) = claimed {
        return Err(OpenStoreError {
            path: config.store.path.clone(),
            source: OpenFailure::Failed(SeamError::Permanent(error.to_string())),
        });
    }
    Ok(Wired {
        connected,
        settings,
    })
}

/// [`wire`] for a command: a failure is printed and becomes the usage exit
/// status (the configuration names a store or an identity that cannot be used).
pub async fn wire_for_command(config: &Config, cancel: CancellationToken) -> Result<Wired, i32> {
    wire(config, cancel).await.map_err(|error| {
        eprintln!("trailvault: {error}");
        trailvault_pipeline::model::report::exit::USAGE
    })
}

/// [`wire`] for a one-shot command that is also scheduled (collect,
/// backfill, verify, retention): when another run still holds the progress
/// store, the run is skipped — its report says "skipped: previous run still
/// active" and the exit status is 0 — so a run that overran its schedule
/// does not make the next one fail and fire the failed-run alarm. Other
/// failures are as in [`wire_for_command`]. `Err` carries the exit status.
pub async fn wire_or_skip(
    config: &Config,
    cancel: CancellationToken,
    command: &str,
    json: bool,
) -> Result<Wired, i32> {
    match wire(config, cancel).await {
        Ok(wired) => Ok(wired),
        Err(error) if error.held() => {
            warn!(store = %error.path.display(), "the progress store is held by another run; this run is skipped");
            let report = Report::skipped_while_active(command);
            print_report(&report, json);
            Err(report.exit_code())
        }
        Err(error) => {
            eprintln!("trailvault: {error}");
            Err(trailvault_pipeline::model::report::exit::USAGE)
        }
    }
}

/// A run's identity: its start time, which names the member sessions.
pub fn run_id() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// The seams of one run.
pub fn world(wired: &Wired, shutdown: &Shutdown) -> World {
    let connected = &wired.connected;
    let run_id = run_id();
    World {
        archive: connected.archive.clone(),
        store: connected.store.clone(),
        accounts: connected.accounts.clone(),
        connector: connected.source_connector(&run_id),
        public_keys: connected.public_keys.clone(),
        notifier: connected.notifier.clone(),
        events: connected.events.clone(),
        clock: Arc::new(SystemClock),
        cancel: shutdown.cancellation(),
        run_id,
    }
}
