//! `run` with `[intake]`: between sweeps, the daemon consumes the intake
//! queue (`trailvault_pipeline::jobs::intake`); each batch that did
//! something is printed as an `intake` report, logged and counted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;
use trailvault_config::Config;
use trailvault_pipeline::jobs::intake::{intake_until, IntakeBatch, IntakeSettings};
use trailvault_pipeline::seams::NotificationQueue;

use crate::metrics::Metrics;
use crate::output::print_run;
use crate::shutdown::Shutdown;
use crate::wiring::{self, Wired};

/// The queue and how to consume it, when `[intake]` is configured.
pub struct Intake {
    queue: Arc<dyn NotificationQueue>,
    settings: IntakeSettings,
    /// The sweep's cadence while intake is on.
    pub sweep_interval: Duration,
}

impl Intake {
    pub fn new(config: &Config, wired: &Wired, keys: Option<PathBuf>) -> Option<Intake> {
        let queue = wired.connected.queue.clone()?;
        let intake = &config.intake;
        Some(Intake {
            queue,
            settings: IntakeSettings {
                max_keys_per_message: intake.max_keys_per_message as usize,
                max_messages: 10,
                wait: Duration::from_secs(u64::from(intake.wait_seconds)),
                visibility: Duration::from_secs(u64::from(intake.visibility_timeout_seconds)),
                keys_file: keys,
            },
            sweep_interval: Duration::from_secs(intake.sweep_interval_seconds),
        })
    }

    /// Consumes the queue until `until` (the next sweep) or a signal.
    pub async fn until(
        &self,
        wired: &Wired,
        shutdown: &Shutdown,
        until: tokio::time::Instant,
        metrics: &Metrics,
        json: bool,
    ) {
        let world = wiring::world(wired, shutdown);
        let mut on_batch = |batch: &IntakeBatch| {
            print_run(&batch.report, json);
            metrics.record_intake(batch);
            info!(
                received = batch.stats.messages_received,
                notified = batch.stats.objects_notified,
                copied = batch.stats.objects_copied,
                deleted = batch.stats.messages_deleted,
                rejected = batch.stats.rejected(),
                retried = batch.stats.messages_retried,
                digests_validated = batch.report.stats.digests_validated,
                findings = batch.report.findings.len(),
                errors = batch.report.errors.len(),
                "intake batch handled"
            );
        };
        intake_until(
            &world,
            &wired.settings,
            &self.settings,
            self.queue.as_ref(),
            until,
            &mut on_batch,
        )
        .await;
    }
}
