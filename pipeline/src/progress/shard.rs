//! `shard` — [`ShardRecord`]: which shard (`K/N`, or none) a progress store
//! belongs to. Recorded by the first run; every later run checks it, so a
//! store opened by another shard, with another N, or by an unsharded run
//! is an error rather than progress silently applied to other accounts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::error::SeamError;
use crate::model::shard::Shard;
use crate::seams::ProgressStore;

/// Layout version of a shard record.
const RECORD_VERSION: u8 = 1;
const SHARD_KEY: &str = "shard";

/// `shard`: the shard this store serves (`None`: every account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub v: u8,
    pub shard: Option<Shard>,
    pub recorded_at: DateTime<Utc>,
}

/// Why a run may not use a store.
#[derive(Debug, thiserror::Error)]
pub enum ShardMismatch {
    #[error("this progress store belongs to {recorded}; this run is {wanted}: give each shard its own store (a sharded run's store path gets a `.shard-K-of-N` suffix)")]
    Other { recorded: String, wanted: String },
    #[error("the progress store's shard record is unreadable: {0}")]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] SeamError),
}

fn describe(shard: Option<Shard>) -> String {
    shard.map_or_else(|| "an unsharded run".to_string(), |s| format!("shard {s}"))
}

/// Records `shard` in a store that has no shard record yet, or checks that
/// the recorded one is the same. A store with progress but no record (from
/// before sharding) is taken as an unsharded store.
pub fn claim(
    store: &dyn ProgressStore,
    shard: Option<Shard>,
    now: DateTime<Utc>,
) -> Result<(), ShardMismatch> {
    match store.get_state(SHARD_KEY)? {
        Some(bytes) => {
            let record: ShardRecord = serde_json::from_slice(&bytes)
                .map_err(|error| ShardMismatch::Unreadable(error.to_string()))?;
            if record.v != RECORD_VERSION {
                return Err(ShardMismatch::Unreadable(format!(
                    "layout version {} is not {RECORD_VERSION}",
                    record.v
                )));
            }
            if record.shard != shard {
                return Err(ShardMismatch::Other {
                    recorded: describe(record.shard),
                    wanted: describe(shard),
                });
            }
            Ok(())
        }
        None => {
            if shard.is_some() && store_has_progress(store)? {
                return Err(ShardMismatch::Other {
                    recorded: describe(None),
                    wanted: describe(shard),
                });
            }
            let record = ShardRecord {
                v: RECORD_VERSION,
                shard,
                recorded_at: now,
            };
            let bytes =
                serde_json::to_vec(&record).map_err(|e| SeamError::Permanent(e.to_string()))?;
            store.put_state(SHARD_KEY, &bytes)?;
            Ok(())
        }
    }
}

/// Whether any object was recorded (a store used before shard records).
fn store_has_progress(store: &dyn ProgressStore) -> Result<bool, SeamError> {
    let mut any = false;
    store.for_each_object(&mut |_, _| any = true)?;
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsuite::memory::MemoryStore;

    #[test]
    fn a_store_serves_one_shard_only() {
        let now = Utc::now();
        let one = Shard::new(1, 3).unwrap();
        let store = MemoryStore::default();
        claim(&store, Some(one), now).unwrap();
        claim(&store, Some(one), now).unwrap();
        let error = claim(&store, Some(Shard::new(2, 3).unwrap()), now).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("belongs to shard 1/3; this run is shard 2/3"),
            "{error}"
        );
        let error = claim(&store, Some(Shard::new(1, 4).unwrap()), now).unwrap_err();
        assert!(error.to_string().contains("shard 1/4"), "{error}");
        let error = claim(&store, None, now).unwrap_err();
        assert!(error.to_string().contains("an unsharded run"), "{error}");

        let unsharded = MemoryStore::default();
        claim(&unsharded, None, now).unwrap();
        assert!(claim(&unsharded, Some(one), now).is_err());
    }
}
