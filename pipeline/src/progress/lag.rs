//! `lag/<account>` — [`LagRecord`]: the newest CloudTrail file time (log
//! delivery or digest end, from the key name) archived for a member account,
//! written after each collection by [`LagTracker`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::cloudtrail::keys::{parse_trail_key, FileName};
use crate::model::error::SeamError;
use crate::model::findings::Finding;
use crate::model::object::{ObjectRecord, SourceRef};
use crate::seams::ProgressStore;

/// Layout version of a lag record.
const RECORD_VERSION: u8 = 1;
const LAG_PREFIX: &str = "lag/";

/// `lag/<account>`: the newest archived file of a member account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LagRecord {
    pub v: u8,
    pub newest_file_time: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn decode(bytes: &[u8]) -> Option<LagRecord> {
    serde_json::from_slice::<LagRecord>(bytes)
        .ok()
        .filter(|record| record.v == RECORD_VERSION)
}

/// The recorded lag of `account_id`; `None` when none (or an unreadable one)
/// is recorded.
pub fn get(store: &dyn ProgressStore, account_id: &str) -> Result<Option<LagRecord>, SeamError> {
    Ok(store
        .get_state(&format!("{LAG_PREFIX}{account_id}"))?
        .and_then(|bytes| decode(&bytes)))
}

/// Records that `account_id`'s newest archived file is `newest_file_time`.
pub fn put(
    store: &dyn ProgressStore,
    account_id: &str,
    newest_file_time: DateTime<Utc>,
    updated_at: DateTime<Utc>,
) -> Result<(), SeamError> {
    let record = LagRecord {
        v: RECORD_VERSION,
        newest_file_time,
        updated_at,
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| SeamError::Permanent(e.to_string()))?;
    store.put_state(&format!("{LAG_PREFIX}{account_id}"), &bytes)
}

/// Every readable lag record, by account.
pub fn all(store: &dyn ProgressStore) -> Result<Vec<(String, LagRecord)>, SeamError> {
    Ok(store
        .state_under(LAG_PREFIX)?
        .into_iter()
        .filter_map(|(name, bytes)| {
            let account = name.strip_prefix(LAG_PREFIX)?.to_string();
            decode(&bytes).map(|record| (account, record))
        })
        .collect())
}

/// The time a CloudTrail key names (log delivery or digest end) and the
/// account folder it is in.
fn file_time(key: &str) -> Option<(String, DateTime<Utc>)> {
    let parsed = parse_trail_key(key).ok()?;
    let time = match &parsed.file {
        FileName::Log { delivered_at, .. } => delivered_at.and_utc(),
        FileName::Digest { end_time, .. } => end_time.and_utc(),
    };
    Some((parsed.account_id, time))
}

/// A [`ProgressStore`] that notes, per member account, the newest file time
/// of every object recorded through it; [`LagTracker::save`] writes them as
/// `lag/<account>`. Names dated after `now` (plus a delivery hour) are
/// ignored: a planted future name must not hide a stalled account.
pub struct LagTracker<'a> {
    inner: &'a dyn ProgressStore,
    now: DateTime<Utc>,
    newest: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

impl<'a> LagTracker<'a> {
    pub fn new(inner: &'a dyn ProgressStore, now: DateTime<Utc>) -> LagTracker<'a> {
        LagTracker {
            inner,
            now,
            newest: Mutex::new(BTreeMap::new()),
        }
    }

    fn newest(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DateTime<Utc>>> {
        self.newest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn note(&self, key: &str) {
        let Some((account, time)) = file_time(key) else {
            return;
        };
        if time > self.now + Duration::hours(1) {
            return;
        }
        let mut newest = self.newest();
        let entry = newest.entry(account).or_insert(time);
        if time > *entry {
            *entry = time;
        }
    }

    /// Writes `lag/<account>` for every account seen, never moving a newer
    /// recorded time back.
    pub fn save(&self) -> Result<usize, SeamError> {
        let newest = self.newest().clone();
        for (account, time) in &newest {
            let previous = get(self.inner, account)?.map(|record| record.newest_file_time);
            let newest_file_time = previous.map_or(*time, |previous| previous.max(*time));
            put(self.inner, account, newest_file_time, self.now)?;
        }
        Ok(newest.len())
    }
}

impl ProgressStore for LagTracker<'_> {
    fn object(&self, source: &SourceRef) -> Result<Option<ObjectRecord>, SeamError> {
        self.inner.object(source)
    }

    fn record_object(&self, source: &SourceRef, record: &ObjectRecord) -> Result<(), SeamError> {
        self.inner.record_object(source, record)?;
        self.note(&source.key);
        Ok(())
    }

    fn fresh_folders(
        &self,
        account_id: &str,
        bucket: &str,
    ) -> Result<Vec<crate::seams::FreshFolder>, SeamError> {
        self.inner.fresh_folders(account_id, bucket)
    }

    fn settle_folder(
        &self,
        account_id: &str,
        bucket: &str,
        fresh: &crate::seams::FreshFolder,
    ) -> Result<(), SeamError> {
        self.inner.settle_folder(account_id, bucket, fresh)
    }

    fn for_each_object_from(
        &self,
        account_id: &str,
        bucket: &str,
        key_prefix: &str,
        start_key: &str,
        visit: &mut dyn FnMut(&str, ObjectRecord) -> bool,
    ) -> Result<(), SeamError> {
        self.inner
            .for_each_object_from(account_id, bucket, key_prefix, start_key, visit)
    }

    fn objects_under(
        &self,
        account_id: &str,
        bucket: &str,
        key_prefix: &str,
    ) -> Result<Vec<(String, ObjectRecord)>, SeamError> {
        self.inner.objects_under(account_id, bucket, key_prefix)
    }

    fn for_each_object(
        &self,
        visit: &mut dyn FnMut(SourceRef, ObjectRecord),
    ) -> Result<(), SeamError> {
        self.inner.for_each_object(visit)
    }

    fn for_each_state_under(
        &self,
        prefix: &str,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Result<(), SeamError> {
        self.inner.for_each_state_under(prefix, visit)
    }

    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>, SeamError> {
        self.inner.get_state(name)
    }

    fn put_state(&self, name: &str, value: &[u8]) -> Result<(), SeamError> {
        self.inner.put_state(name, value)
    }

    fn state_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, SeamError> {
        self.inner.state_under(prefix)
    }

    fn finding(&self, identity: &str) -> Result<Option<Finding>, SeamError> {
        self.inner.finding(identity)
    }

    fn put_finding(&self, identity: &str, finding: &Finding) -> Result<(), SeamError> {
        self.inner.put_finding(identity, finding)
    }

    fn for_each_finding(&self, visit: &mut dyn FnMut(Finding)) -> Result<(), SeamError> {
        self.inner.for_each_finding(visit)
    }

    fn flush(&self) -> Result<(), SeamError> {
        self.inner.flush()
    }
}
