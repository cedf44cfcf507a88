//! The top floor: one entry point per command, composing the stages.
//!
//! A job takes the [`World`] (every seam, the clock and the cancellation),
//! the [`JobSettings`] and what the command line asked, runs the stages in
//! order and returns the report; the binary wires the world and prints.
//! Jobs are the only part of the pipeline that import several stages.
//!
//! * `collect`, `backfill` and each run of `run`: [`collect::collect`];
//! * `verify`: [`verify::verify`];
//! * `retention`: [`retention::retention`];
//! * `rebuild-state`: [`rebuild::rebuild`];
//! * `findings`: [`findings::findings`];
//! * `status`: [`status::status`];
//! * `report`: [`report::report`].

pub mod collect;
pub mod findings;
pub mod intake;
pub mod keys;
pub mod ownership;
pub mod rebuild;
pub mod report;
pub mod retention;
pub mod sources;
pub mod status;
pub mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::alerts;
use crate::collect::CollectSettings;
use crate::model::report::Report;
use crate::progress::runs::{self, RunRecord};
use crate::seams::{
    AccountDirectory, Archive, Clock, EventBus, Notifier, ProgressStore, PublicKeyDirectory,
    SourceConnector,
};
use crate::verify::VerifySettings;

pub use sources::{AccountSelection, Scope, SourceSpec};

/// The two stages of shutdown.
#[derive(Clone, Default)]
pub struct Cancellation {
    /// Stop taking work: no new partition, copy or version is started.
    pub stop: CancellationToken,
    /// Abandon requests in flight (the retry layer returns `Cancelled`).
    pub abort: CancellationToken,
}

impl Cancellation {
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

/// Everything a job reaches outside itself.
pub struct World {
    pub archive: Arc<dyn Archive>,
    pub store: Arc<dyn ProgressStore>,
    /// The organization's ACTIVE accounts (asked only when discovery is on).
    pub accounts: Arc<dyn AccountDirectory>,
    /// Member sessions to the sources, for this run.
    pub connector: Arc<dyn SourceConnector>,
    /// CloudTrail `ListPublicKeys` (used when no keys file is given).
    pub public_keys: Arc<dyn PublicKeyDirectory>,
    /// Where new findings are published, when configured.
    pub notifier: Option<Arc<dyn Notifier>>,
    /// Where each new finding is put as an event, when configured.
    pub events: Option<Arc<dyn EventBus>>,
    pub clock: Arc<dyn Clock>,
    pub cancel: Cancellation,
    /// Identifies the run (logs, member session names).
    pub run_id: String,
}

/// What the jobs need from the configuration, fixed for the process.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub accounts: AccountSelection,
    pub sources: Vec<SourceSpec>,
    /// Copies (archive prefix, key, lock, limits), listing and concurrency.
    pub collect: CollectSettings,
    /// Validate the chains a collection touched.
    pub verify_after_collect: bool,
    /// Validation; `full` is set per run.
    pub verify: VerifySettings,
    /// CloudTrail public keys from a file instead of `ListPublicKeys`
    /// (the command line's `--public-keys` takes precedence).
    pub public_keys_file: Option<PathBuf>,
    /// `[retention] source_retention_days`: source expiry when set.
    pub source_retention_days: Option<u32>,
    /// The progress store's path: the status snapshot is written beside it.
    pub store_path: PathBuf,
}

/// Announces every recorded finding not announced yet (see
/// [`crate::alerts`]); `to_ledger` false when the archive is not locked down
/// (nothing is written to it: those findings are only published, and written
/// to the ledger by a later run).
pub async fn announce(world: &World, settings: &JobSettings, report: &mut Report, to_ledger: bool) {
    let ledger = to_ledger.then_some(alerts::LedgerTarget {
        archive: world.archive.as_ref(),
        settings: &settings.collect.copy,
        shard: settings.accounts.shard,
    });
    let announcer = alerts::Announcer {
        store: world.store.as_ref(),
        ledger,
        notifier: world.notifier.as_deref(),
        events: world.events.as_deref(),
        run_id: &world.run_id,
    };
    alerts::announce(&announcer, report).await;
}

/// Ends a run: flushes the store, records the run's summary (`run/…`) and
/// writes the status snapshot beside the store.
pub fn finish_run(world: &World, settings: &JobSettings, report: &mut Report) {
    let interrupted = world.cancel.stop.is_cancelled();
    if let Err(error) = world.store.flush() {
        report.error("-", "flush_store", error.to_string());
    }
    report.finished_at = world.clock.now();
    let store = world.store.as_ref();
    let record = RunRecord::from_report(report, interrupted);
    if let Err(error) = runs::record_run(store, &record, runs::RUN_SLOTS) {
        warn!(%error, "cannot record the run summary");
    }
    if let Err(error) = store.flush() {
        warn!(%error, "cannot flush the progress store");
    }
    write_status_snapshot(world, settings);
}

fn write_status_snapshot(world: &World, settings: &JobSettings) {
    let store = world.store.as_ref();
    let path = &settings.store_path;
    match status::StatusView::from_store(store, &settings.accounts.ids, world.clock.now()) {
        Ok(view) => {
            if let Err(error) = status::write_snapshot(path, &view) {
                warn!(%error, path = %status::snapshot_path(path).display(), "cannot write the status snapshot");
            }
        }
        Err(error) => warn!(%error, "cannot read the status from the store"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn abort_follows_stop_when_asked() {
        let cancel = Cancellation::default();
        let follower = cancel.abort_on_stop();
        assert!(!cancel.abort.is_cancelled());
        cancel.stop.cancel();
        follower.await.unwrap();
        assert!(cancel.abort.is_cancelled());
    }
}
