//! The queue that announces newly delivered trail files (SQS in the audit
//! account, fed by CloudTrail's SNS notifications, S3 event notifications or
//! EventBridge).

use std::time::Duration;

use async_trait::async_trait;

use crate::model::error::SeamError;

/// One message as the queue handed it out. Its body is whatever a sender
/// wrote: never trusted (see `crate::jobs::intake`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// The queue's id for the message (stable across redeliveries).
    pub id: String,
    /// The handle of this delivery: deleting and extending visibility use it.
    pub receipt: String,
    pub body: String,
    /// How many times the queue handed the message out, this time included.
    pub receive_count: u32,
}

/// A queue of notifications, with its dead-letter queue.
#[async_trait]
pub trait NotificationQueue: Send + Sync {
    /// Up to `max_messages` messages, waiting at most `wait` for the first
    /// (long polling); each is invisible to other receivers for `visibility`.
    async fn receive(
        &self,
        max_messages: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, SeamError>;
    /// Keeps the delivery invisible for another `visibility` from now, while
    /// it is worked on.
    async fn extend_visibility(&self, receipt: &str, visibility: Duration)
        -> Result<(), SeamError>;
    /// Removes the message for good: only once its work is recorded.
    async fn delete(&self, receipt: &str) -> Result<(), SeamError>;
    /// Sends the message's body, with `reason`, to the dead-letter queue,
    /// then deletes it from this queue.
    async fn dead_letter(&self, message: &QueueMessage, reason: &str) -> Result<(), SeamError>;
}
