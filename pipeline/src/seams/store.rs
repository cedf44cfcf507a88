//! The durable progress store (redb in production).

use chrono::{DateTime, Utc};

use crate::model::error::SeamError;
use crate::model::findings::{AnnouncedTo, Finding};
use crate::model::object::{ObjectRecord, SourceRef};

/// A folder of one source (its key up to and including the last `/`, `""`
/// for keys without one) that received object records since validation last
/// settled it, and the mark of the newest such record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreshFolder {
    pub folder: String,
    /// Changes whenever another record is written under the folder.
    pub mark: u64,
}

/// The folder of a source key for [`FreshFolder`]: up to and including the
/// last `/`.
pub fn key_folder(key: &str) -> &str {
    key.rfind('/').map_or("", |slash| &key[..=slash])
}

/// One batch of a source's records ([`ProgressStore::objects_batch`]).
#[derive(Debug, Default)]
pub struct ObjectBatch {
    /// Source key and record, in key order.
    pub records: Vec<(String, ObjectRecord)>,
    /// Where the next batch starts; `None` when none is left.
    pub next: Option<String>,
}

/// Durable progress: what has been archived and verified, which partitions
/// were listed, which findings were already reported. A cache of what the
/// archive proves; it can be rebuilt from the archive's metadata.
pub trait ProgressStore: Send + Sync {
    fn object(&self, source: &SourceRef) -> Result<Option<ObjectRecord>, SeamError>;
    /// Records a verified copy (called only after the archive confirmed
    /// it) and marks its folder fresh ([`Self::fresh_folders`]) in the same
    /// step: a record is never written without its folder being marked,
    /// so incremental validation cannot miss it.
    fn record_object(&self, source: &SourceRef, record: &ObjectRecord) -> Result<(), SeamError>;
    /// The folders of one source (reader account + bucket) with records
    /// written since they were last settled, in key order. What an
    /// incremental validation reads instead of every record of the source.
    fn fresh_folders(&self, account_id: &str, bucket: &str) -> Result<Vec<FreshFolder>, SeamError>;
    /// Forgets `fresh` once its records were validated, unless a record was
    /// written under the folder since `fresh` was read (its mark changed):
    /// then it stays fresh for the next run.
    fn settle_folder(
        &self,
        account_id: &str,
        bucket: &str,
        fresh: &FreshFolder,
    ) -> Result<(), SeamError>;
    /// Hands every record under one source prefix to `visit`, in key order,
    /// one at a time, until `visit` answers `false`: a scan that holds one
    /// record, not the prefix.
    fn for_each_object_under(
        &self,
        account_id: &str,
        bucket: &str,
        key_prefix: &str,
        visit: &mut dyn FnMut(&str, ObjectRecord) -> bool,
    ) -> Result<(), SeamError> {
        self.for_each_object_from(account_id, bucket, key_prefix, key_prefix, visit)
    }
    /// [`Self::for_each_object_under`] starting at the first key at or after
    /// `start_key` (a key under `key_prefix`, or the prefix itself): a scan
    /// of the end of a folder whose keys sort by time, without reading the
    /// records before it.
    fn for_each_object_from(
        &self,
        account_id: &str,
        bucket: &str,
        key_prefix: &str,
        start_key: &str,
        visit: &mut dyn FnMut(&str, ObjectRecord) -> bool,
    ) -> Result<(), SeamError> {
        for (key, record) in self.objects_under(account_id, bucket, key_prefix)? {
            if key.as_str() >= start_key && !visit(&key, record) {
                break;
            }
        }
        Ok(())
    }
    /// At most `limit` records of one source (account + bucket) from
    /// `start_key` on (`""`: the first), in key order, and where the next
    /// batch starts (`None`: none is left): a walk over a large source that
    /// holds one batch at a time.
    fn objects_batch(
        &self,
        account_id: &str,
        bucket: &str,
        start_key: &str,
        limit: usize,
    ) -> Result<ObjectBatch, SeamError> {
        let limit = limit.max(1);
        let mut batch = Vec::new();
        self.for_each_object_from(account_id, bucket, "", start_key, &mut |key, record| {
            batch.push((key.to_string(), record));
            batch.len() < limit
        })?;
        // The first key after the last one read (keys sort by bytes).
        let next = match batch.last() {
            Some((key, _)) if batch.len() == limit => Some(format!("{key}\0")),
            _ => None,
        };
        Ok(ObjectBatch {
            records: batch,
            next,
        })
    }
    /// Every record under one source prefix (account + bucket + key prefix).
    fn objects_under(
        &self,
        account_id: &str,
        bucket: &str,
        key_prefix: &str,
    ) -> Result<Vec<(String, ObjectRecord)>, SeamError>;
    /// Hands every object record to `visit`, one at a time (the reader
    /// account, bucket and key in the [`SourceRef`]): for reports over the
    /// whole store, without holding it in memory.
    fn for_each_object(
        &self,
        visit: &mut dyn FnMut(SourceRef, ObjectRecord),
    ) -> Result<(), SeamError>;
    /// Hands every state value under `prefix` to `visit`, one at a time.
    fn for_each_state_under(
        &self,
        prefix: &str,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Result<(), SeamError> {
        for (name, value) in self.state_under(prefix)? {
            visit(&name, &value);
        }
        Ok(())
    }
    /// Free-form small state values (cursors, sweep times, chain heads).
    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>, SeamError>;
    fn put_state(&self, name: &str, value: &[u8]) -> Result<(), SeamError>;
    fn state_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, SeamError>;
    /// The recorded finding with this identity ([`Finding::dedup_key`]);
    /// `None` when none is recorded or its record cannot be read (it is then
    /// recorded again, and reported as new: never silently lost).
    fn finding(&self, identity: &str) -> Result<Option<Finding>, SeamError>;
    /// Stores `finding` under its identity, replacing any earlier record.
    fn put_finding(&self, identity: &str, finding: &Finding) -> Result<(), SeamError>;
    /// Hands every recorded finding (none of them `new`) to `visit`, one at
    /// a time, without holding them all: a flood of findings must not make
    /// every later run hold them in memory.
    fn for_each_finding(&self, visit: &mut dyn FnMut(Finding)) -> Result<(), SeamError>;

    /// Every recorded finding, none of them `new` (for listings that print
    /// them all, e.g. `trailvault findings`).
    fn findings(&self) -> Result<Vec<Finding>, SeamError> {
        let mut out = Vec::new();
        self.for_each_finding(&mut |finding| out.push(finding))?;
        Ok(out)
    }

    /// Records a finding; returns it with `first_seen` and `new` settled
    /// (`new` is false if the same finding was recorded by an earlier run,
    /// whose `first_seen` and acknowledgement it keeps, except an
    /// acknowledged state finding, which is re-opened). A finding recorded
    /// for the first time is stored unannounced in the same write. The rules
    /// are [`Finding::recorded_over`], the same for every store:
    /// implementations provide only the record primitives above.
    fn record_finding(&self, finding: Finding) -> Result<Finding, SeamError> {
        let identity = finding.dedup_key();
        let previous = self.finding(&identity)?;
        let (reported, to_store) = finding.recorded_over(previous.as_ref());
        if let Some(stored) = to_store {
            self.put_finding(&identity, &stored)?;
        }
        Ok(reported)
    }

    /// Marks the recorded finding with `finding`'s identity as acknowledged
    /// at `at`; `false` when none is recorded or it already was.
    fn acknowledge_finding(&self, finding: &Finding, at: DateTime<Utc>) -> Result<bool, SeamError> {
        let identity = finding.dedup_key();
        let Some(recorded) = self.finding(&identity)? else {
            return Ok(false);
        };
        match recorded.acknowledged(at) {
            Some(acknowledged) => {
                self.put_finding(&identity, &acknowledged)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Every recorded finding whose announcement (ledger or notifier) has
    /// not succeeded yet: what the next announcement retries.
    fn unannounced_findings(&self) -> Result<Vec<Finding>, SeamError> {
        let mut findings = Vec::new();
        self.for_each_finding(&mut |finding| {
            if finding.unannounced.is_some() {
                findings.push(finding);
            }
        })?;
        Ok(findings)
    }

    /// Notes that the recorded finding with `finding`'s identity was
    /// announced to `to`; `false` when none is recorded or nothing was left
    /// to do there.
    fn mark_announced(&self, finding: &Finding, to: AnnouncedTo) -> Result<bool, SeamError> {
        let identity = finding.dedup_key();
        let Some(recorded) = self.finding(&identity)? else {
            return Ok(false);
        };
        match recorded.announced_to(to) {
            Some(announced) => {
                self.put_finding(&identity, &announced)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Makes everything recorded so far durable.
    fn flush(&self) -> Result<(), SeamError>;
}
