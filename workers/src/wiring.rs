//! Wires the seams together: infra builds them from the configuration, and
//! each run gets a [`World`] of them. No domain logic here.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use trailvault_config::Config;
use trailvault_infra::connect::{self, Connected, OpenStoreError};
use trailvault_infra::store::SledStore;
use trailvault_pipeline::jobs::{JobSettings, World};
use trailvault_pipeline::seams::SystemClock;

use crate::settings;
use crate::shutdown::Shutdown;

/// Everything the commands need from the outside world, for the process.
pub struct Wired {
    pub connected: Connected,
    pub settings: JobSettings,
}

pub fn open_store(config: &Config) -> Result<Arc<SledStore>, OpenStoreError> {
    connect::open_store(config)
}

/// Opens the store and the audit identity's clients; `cancel` abandons their
/// retries.
pub async fn wire(config: &Config, cancel: CancellationToken) -> Result<Wired, OpenStoreError> {
    let connected = connect::connect(config, cancel).await?;
    let settings = settings::job_settings(config, &connected.kms_key_arn);
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
