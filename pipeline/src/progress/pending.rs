//! Checks validation could not make yet, and since when (`verify/design.md`,
//! "What an unreadable object does"):
//!
//! * `pending/log/<reader>/<bucket>/<source key>` — [`PendingRecord`]: a log
//!   file a digest lists, not archived, that its source refuses to hand over
//!   (AccessDenied, or any failure other than "not found").
//! * `pending/pubkey/<region>` — [`PendingRecord`]: CloudTrail public keys of
//!   a delivering region could not be obtained (`ListPublicKeys` failed).
//!
//! Until the grace period has passed since `first_failed_at`, such a check is
//! an operational error of the run and is tried again next run; after it, a
//! finding. The record is emptied once the check could be made.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::error::SeamError;
use crate::model::object::SourceRef;
use crate::seams::ProgressStore;

/// Layout version of a pending record.
const RECORD_VERSION: u8 = 1;
const LOG_PREFIX: &str = "pending/log/";
const PUBKEY_PREFIX: &str = "pending/pubkey/";

/// A check that keeps failing: since when, and the last reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    pub v: u8,
    /// The first run that could not make the check.
    pub first_failed_at: DateTime<Utc>,
    /// The latest run that could not make it.
    pub last_failed_at: DateTime<Utc>,
    /// Why, as the latest failure said.
    pub last_error: String,
}

fn decode(bytes: &[u8]) -> Option<PendingRecord> {
    serde_json::from_slice::<PendingRecord>(bytes)
        .ok()
        .filter(|record| record.v == RECORD_VERSION)
}

fn log_name(source: &SourceRef) -> String {
    format!(
        "{LOG_PREFIX}{}/{}/{}",
        source.account_id, source.bucket, source.key
    )
}

fn pubkey_name(region: &str) -> String {
    format!("{PUBKEY_PREFIX}{region}")
}

/// Records a failure at `now`: keeps the first failure time of an existing
/// record (an unreadable or other-version one starts over), and returns the
/// record as stored.
fn note_failure(
    store: &dyn ProgressStore,
    name: &str,
    now: DateTime<Utc>,
    error: &str,
) -> Result<PendingRecord, SeamError> {
    let first_failed_at = store
        .get_state(name)?
        .and_then(|bytes| decode(&bytes))
        .map_or(now, |record| record.first_failed_at.min(now));
    let record = PendingRecord {
        v: RECORD_VERSION,
        first_failed_at,
        last_failed_at: now,
        last_error: error.to_string(),
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| SeamError::Permanent(e.to_string()))?;
    store.put_state(name, &bytes)?;
    Ok(record)
}

/// Forgets a check that could be made: the value is emptied (the store has
/// no delete; an empty value reads as nothing pending). No write when
/// nothing is recorded.
fn clear(store: &dyn ProgressStore, name: &str) -> Result<(), SeamError> {
    if store
        .get_state(name)?
        .is_some_and(|bytes| !bytes.is_empty())
    {
        store.put_state(name, &[])?;
    }
    Ok(())
}

/// A listed log file could not be read from its source at `now`.
pub fn log_unreadable(
    store: &dyn ProgressStore,
    source: &SourceRef,
    now: DateTime<Utc>,
    error: &str,
) -> Result<PendingRecord, SeamError> {
    note_failure(store, &log_name(source), now, error)
}

/// A listed log file was read (or proven absent): nothing pending any more.
pub fn log_resolved(store: &dyn ProgressStore, source: &SourceRef) -> Result<(), SeamError> {
    clear(store, &log_name(source))
}

/// The public keys of `region` could not be obtained at `now`.
pub fn keys_unavailable(
    store: &dyn ProgressStore,
    region: &str,
    now: DateTime<Utc>,
    error: &str,
) -> Result<PendingRecord, SeamError> {
    note_failure(store, &pubkey_name(region), now, error)
}

/// The public keys of `region` answered again.
pub fn keys_available(store: &dyn ProgressStore, region: &str) -> Result<(), SeamError> {
    clear(store, &pubkey_name(region))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsuite::memory::MemoryStore;
    use chrono::Duration;

    #[test]
    fn the_first_failure_is_kept_until_resolved() {
        let store = MemoryStore::default();
        let source = SourceRef {
            account_id: "r".into(),
            bucket: "b".into(),
            key: "AWSLogs/1/CloudTrail/x.json.gz".into(),
        };
        let t0 = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        let first = log_unreadable(&store, &source, t0, "AccessDenied").unwrap();
        assert_eq!(first.first_failed_at, t0);
        let later = t0 + Duration::hours(5);
        let second = log_unreadable(&store, &source, later, "still denied").unwrap();
        assert_eq!(second.first_failed_at, t0);
        assert_eq!(second.last_failed_at, later);
        assert_eq!(second.last_error, "still denied");
        assert!(store
            .get_state("pending/log/r/b/AWSLogs/1/CloudTrail/x.json.gz")
            .unwrap()
            .is_some());
        log_resolved(&store, &source).unwrap();
        let again = log_unreadable(&store, &source, later, "denied again").unwrap();
        assert_eq!(again.first_failed_at, later, "a resolved check starts over");

        let keys = keys_unavailable(&store, "eu-west-1", t0, "throttled").unwrap();
        assert_eq!(keys.first_failed_at, t0);
        assert_eq!(
            keys_unavailable(&store, "eu-west-1", later, "x")
                .unwrap()
                .first_failed_at,
            t0
        );
        keys_available(&store, "eu-west-1").unwrap();
        assert_eq!(
            store.get_state("pending/pubkey/eu-west-1").unwrap(),
            Some(Vec::new())
        );
        // Other-version records start over.
        store
            .put_state("pending/pubkey/us-east-1", b"{\"v\":9}")
            .unwrap();
        assert_eq!(
            keys_unavailable(&store, "us-east-1", later, "x")
                .unwrap()
                .first_failed_at,
            later
        );
    }
}
