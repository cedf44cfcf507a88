//! Event-driven intake's counters: messages received, objects they named,
//! messages refused (dead-lettered) by reason.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use trailvault_pipeline::jobs::intake::IntakeBatch;

use super::{OperationLabels, Text};

#[derive(Default)]
pub(super) struct IntakeMetrics {
    messages_received: Counter,
    objects_notified: Counter,
    messages_deleted: Counter,
    messages_retried: Counter,
    /// By reason: `operation` holds the reason label.
    messages_rejected: Family<OperationLabels, Counter>,
}

impl IntakeMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "intake_messages_received",
            "Messages received from the intake queue",
            self.messages_received.clone(),
        );
        registry.register(
            "intake_objects_notified",
            "Trail files named by accepted intake messages",
            self.objects_notified.clone(),
        );
        registry.register(
            "intake_messages_deleted",
            "Intake messages deleted after every file they name was recorded (or that announce nothing)",
            self.messages_deleted.clone(),
        );
        registry.register(
            "intake_messages_retried",
            "Intake messages left on the queue after an error, to be received again",
            self.messages_retried.clone(),
        );
        registry.register(
            "intake_messages_rejected",
            "Intake messages refused and sent to the dead-letter queue, by reason (label operation)",
            self.messages_rejected.clone(),
        );
    }

    pub(super) fn record(&self, batch: &IntakeBatch) {
        let stats = &batch.stats;
        self.messages_received.inc_by(stats.messages_received);
        self.objects_notified.inc_by(stats.objects_notified);
        self.messages_deleted
            .inc_by(stats.messages_deleted + stats.messages_ignored);
        self.messages_retried.inc_by(stats.messages_retried);
        for (reason, count) in &stats.messages_rejected {
            self.messages_rejected
                .get_or_create(&OperationLabels {
                    operation: Text::from(reason.as_str()),
                })
                .inc_by(*count);
        }
    }
}
