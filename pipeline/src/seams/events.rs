//! Where findings are put as events, one event per finding (EventBridge).

use async_trait::async_trait;

use crate::model::error::SeamError;

/// Most entries one `PutEvents` call takes.
pub const MAX_EVENTS_PER_CALL: usize = 10;

/// Largest entry, and largest sum of entries in one call, `PutEvents` takes
/// (256 KiB), counted as [`BusEvent::size`] does.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// One event to put on the bus.
/// Room for `arn:<partition>:s3:::` in front of a resource (the longest
/// partition name, `aws-iso-b`, with room to spare).
pub const S3_ARN_PREFIX_ROOM: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEvent {
    /// The event's `source` (`trailvault`).
    pub source: String,
    /// The event's `detail-type` (`trailvault finding`).
    pub detail_type: String,
    /// The S3 buckets or objects the event is about, as `bucket` or
    /// `bucket/key`: the bus writes each as an ARN of its own partition
    /// (`arn:<partition>:s3:::bucket/key`).
    pub resources: Vec<String>,
    /// The event's `detail`: a JSON object.
    pub detail: String,
}

impl BusEvent {
    /// The entry size EventBridge counts against its limits: the UTF-8 bytes
    /// of the source, detail type, detail and every resource as an ARN (no
    /// `Time` is sent).
    pub fn size(&self) -> usize {
        self.source.len()
            + self.detail_type.len()
            + self.detail.len()
            + self
                .resources
                .iter()
                .map(|resource| resource.len() + S3_ARN_PREFIX_ROOM)
                .sum::<usize>()
    }
}

/// What the bus did with one entry of a call.
pub type EntryOutcome = Result<(), String>;

/// An event bus (EventBridge).
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Puts `events` (at most [`MAX_EVENTS_PER_CALL`], together at most
    /// [`MAX_EVENT_BYTES`]) on the bus. `Ok` holds one outcome per event, in
    /// order: a bus can refuse some entries of a call and take the others.
    /// `Err` when the call as a whole failed (no entry was taken).
    async fn put_events(&self, events: &[BusEvent]) -> Result<Vec<EntryOutcome>, SeamError>;
}
