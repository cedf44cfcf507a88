//! What collection remembers between runs:
//!
//! * `collect/in-flight` — the start time of a run that may have copies in
//!   flight: durable before its first PUT, emptied only by a run that ended
//!   cleanly; a non-empty marker makes the next run look in the archive before
//!   copying (see `collect/design.md`).
//! * `discovery/<reader>/<bucket>/<root>` — [`Discovery`]: the family folders
//!   and regions found under a root (and foreign account roots beside it), so
//!   a run between sweeps lists no folders.
//! * `sweep/<reader>/<bucket>/<root>` — when the redelivery window of a scope
//!   was last listed in full (epoch seconds, as text).
//! * `backfill-done/<reader>/<bucket>/<partition prefix>` — a backfill listed
//!   the partition and copied all of it; a resumed backfill skips it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::error::SeamError;
use crate::seams::ProgressStore;

const IN_FLIGHT: &str = "collect/in-flight";

/// Whether the last run may have left copies in flight. An unreadable marker
/// counts as dirty: looking before copying is always safe.
pub fn in_flight(store: &dyn ProgressStore) -> bool {
    match store.get_state(IN_FLIGHT) {
        Ok(marker) => marker.is_some_and(|value| !value.is_empty()),
        Err(_) => true,
    }
}

/// Marks a run started at `now` as having copies in flight (flush after).
pub fn mark_in_flight(store: &dyn ProgressStore, now: DateTime<Utc>) -> Result<(), SeamError> {
    store.put_state(IN_FLIGHT, now.to_rfc3339().as_bytes())
}

/// Records that the run ended with every copy it started recorded.
pub fn clear_in_flight(store: &dyn ProgressStore) -> Result<(), SeamError> {
    store.put_state(IN_FLIGHT, b"")
}

/// One source scope as the store names it: reading account, bucket, root.
#[derive(Debug, Clone, Copy)]
pub struct ScopeKey<'a> {
    pub reader_account_id: &'a str,
    pub bucket: &'a str,
    pub root: &'a str,
}

impl ScopeKey<'_> {
    fn name(&self, family: &str) -> String {
        format!(
            "{family}/{}/{}/{}",
            self.reader_account_id, self.bucket, self.root
        )
    }
}

/// The folders found under a scope's roots, cached between sweeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Discovery {
    /// Epoch seconds of the listing.
    pub at: i64,
    /// root -> family folder name -> regions
    pub roots: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// The cached discovery of `scope`; `None` when absent or unreadable.
pub fn discovery(
    store: &dyn ProgressStore,
    scope: ScopeKey<'_>,
) -> Result<Option<Discovery>, SeamError> {
    Ok(store
        .get_state(&scope.name("discovery"))?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

pub fn record_discovery(
    store: &dyn ProgressStore,
    scope: ScopeKey<'_>,
    discovery: &Discovery,
) -> Result<(), SeamError> {
    let bytes = serde_json::to_vec(discovery).map_err(|e| SeamError::Permanent(e.to_string()))?;
    store.put_state(&scope.name("discovery"), &bytes)
}

/// When the redelivery window of `scope` was last swept (epoch seconds); `0`
/// for an unreadable value, `None` when never.
pub fn last_sweep(
    store: &dyn ProgressStore,
    scope: ScopeKey<'_>,
) -> Result<Option<i64>, SeamError> {
    Ok(store
        .get_state(&scope.name("sweep"))?
        .map(|bytes| String::from_utf8_lossy(&bytes).parse().unwrap_or(0)))
}

pub fn record_sweep(
    store: &dyn ProgressStore,
    scope: ScopeKey<'_>,
    at: DateTime<Utc>,
) -> Result<(), SeamError> {
    store.put_state(&scope.name("sweep"), at.timestamp().to_string().as_bytes())
}

/// One partition of a backfill, as the store names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillPartition(String);

impl BackfillPartition {
    pub fn new(reader_account_id: &str, bucket: &str, partition_prefix: &str) -> BackfillPartition {
        BackfillPartition(format!(
            "backfill-done/{reader_account_id}/{bucket}/{partition_prefix}"
        ))
    }

    /// Whether a backfill already listed and copied all of it (an unreadable
    /// marker counts as not done: listing again is safe).
    pub fn is_done(&self, store: &dyn ProgressStore) -> bool {
        store.get_state(&self.0).ok().flatten().is_some()
    }

    pub fn mark_done(&self, store: &dyn ProgressStore) -> Result<(), SeamError> {
        store.put_state(&self.0, b"1")
    }
}
