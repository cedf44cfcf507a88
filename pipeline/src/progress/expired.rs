//! `expired/<reader>/<bucket>/<partition prefix>`: source expiry deleted (or
//! found gone) every record of a day partition at `done_at` (epoch seconds),
//! so records copied before then need no new listing of that partition.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::error::SeamError;
use crate::seams::ProgressStore;

const PREFIX: &str = "expired/";
const VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct ExpiredMarker {
    v: u8,
    done_at: i64,
}

/// One source partition as the store names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredPartition(String);

impl ExpiredPartition {
    pub fn new(reader_account_id: &str, bucket: &str, partition_prefix: &str) -> ExpiredPartition {
        ExpiredPartition(format!(
            "{PREFIX}{reader_account_id}/{bucket}/{partition_prefix}"
        ))
    }

    /// The store name, for error messages.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// When the partition was marked expired (epoch seconds); `None` when it
    /// never was or the marker is unreadable (the partition is then listed).
    pub fn done_at(&self, store: &dyn ProgressStore) -> Result<Option<i64>, SeamError> {
        Ok(store
            .get_state(&self.0)?
            .and_then(|bytes| serde_json::from_slice::<ExpiredMarker>(&bytes).ok())
            .filter(|marker| marker.v == VERSION)
            .map(|marker| marker.done_at))
    }

    pub fn mark(&self, store: &dyn ProgressStore, at: DateTime<Utc>) -> Result<(), SeamError> {
        let marker = ExpiredMarker {
            v: VERSION,
            done_at: at.timestamp(),
        };
        let bytes = serde_json::to_vec(&marker).map_err(|e| SeamError::Permanent(e.to_string()))?;
        store.put_state(&self.0, &bytes)
    }
}
