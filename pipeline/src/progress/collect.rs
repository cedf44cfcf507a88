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
//! * `collect-pending/<reader>/<bucket>/<partition prefix>` —
//!   [`PendingPartition`]: the last listing of the partition held more new
//!   keys than a run takes (`[collect] max_keys_per_partition_per_run`); every
//!   run lists it again, open or not, until a listing defers nothing. An empty
//!   value is a cleared marker.

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

const PENDING: &str = "collect-pending/";
const PENDING_VERSION: u8 = 1;

/// A partition that still holds keys a run deferred, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPartition {
    pub v: u8,
    /// The scope root the partition was planned under (its own root or a
    /// foreign account's folder beside it share the scope's root).
    pub scope_root: String,
    pub root: String,
    pub family: String,
    pub region: String,
    pub date: chrono::NaiveDate,
}

fn pending_name(reader_account_id: &str, bucket: &str, partition_prefix: &str) -> String {
    format!("{PENDING}{reader_account_id}/{bucket}/{partition_prefix}")
}

/// Records that `partition` (at `partition_prefix`) still holds deferred keys.
pub fn mark_pending(
    store: &dyn ProgressStore,
    reader_account_id: &str,
    bucket: &str,
    partition_prefix: &str,
    partition: &PendingPartition,
) -> Result<(), SeamError> {
    let bytes = serde_json::to_vec(partition).map_err(|e| SeamError::Permanent(e.to_string()))?;
    store.put_state(
        &pending_name(reader_account_id, bucket, partition_prefix),
        &bytes,
    )
}

/// Records that the partition's last listing deferred nothing (a no-op when
/// it was never pending).
pub fn clear_pending(
    store: &dyn ProgressStore,
    reader_account_id: &str,
    bucket: &str,
    partition_prefix: &str,
) -> Result<(), SeamError> {
    let name = pending_name(reader_account_id, bucket, partition_prefix);
    match store.get_state(&name)? {
        Some(value) if !value.is_empty() => store.put_state(&name, b""),
        _ => Ok(()),
    }
}

/// The pending partitions of one scope. Unreadable records are skipped:
/// the partition is then listed by the sweep, as any other.
pub fn pending(
    store: &dyn ProgressStore,
    scope: ScopeKey<'_>,
) -> Result<Vec<PendingPartition>, SeamError> {
    let prefix = format!("{PENDING}{}/{}/", scope.reader_account_id, scope.bucket);
    Ok(store
        .state_under(&prefix)?
        .into_iter()
        .filter_map(|(_, value)| serde_json::from_slice::<PendingPartition>(&value).ok())
        .filter(|partition| partition.scope_root == scope.root)
        .collect())
}

impl PendingPartition {
    pub fn new(
        scope_root: &str,
        root: &str,
        family: &str,
        region: &str,
        date: chrono::NaiveDate,
    ) -> PendingPartition {
        PendingPartition {
            v: PENDING_VERSION,
            scope_root: scope_root.to_string(),
            root: root.to_string(),
            family: family.to_string(),
            region: region.to_string(),
            date,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsuite::memory::MemoryStore;

    #[test]
    fn pending_partitions_are_listed_per_scope_until_cleared() {
        let store = MemoryStore::default();
        let scope = ScopeKey {
            reader_account_id: "222222222201",
            bucket: "b",
            root: "AWSLogs/222222222201/",
        };
        let other = ScopeKey {
            root: "prefix/AWSLogs/222222222201/",
            ..scope
        };
        let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let partition =
            PendingPartition::new(scope.root, scope.root, "CloudTrail", "us-east-1", date);
        let prefix = "AWSLogs/222222222201/CloudTrail/us-east-1/2026/11/02/";
        mark_pending(&store, "222222222201", "b", prefix, &partition).unwrap();
        assert_eq!(pending(&store, scope).unwrap(), vec![partition]);
        assert!(pending(&store, other).unwrap().is_empty());
        clear_pending(&store, "222222222201", "b", prefix).unwrap();
        assert!(pending(&store, scope).unwrap().is_empty());
    }
}
