//! The durable progress store (sled in production).

use chrono::{DateTime, Utc};

use crate::model::error::SeamError;
use crate::model::findings::Finding;
use crate::model::object::{ObjectRecord, SourceRef};

/// Durable progress: what has been archived and verified, which partitions
/// were listed, which findings were already reported. A cache of what the
/// archive proves; it can be rebuilt from the archive's metadata.
pub trait ProgressStore: Send + Sync {
    fn object(&self, source: &SourceRef) -> Result<Option<ObjectRecord>, SeamError>;
    /// Records a verified copy. Called only after the archive confirmed it.
    fn record_object(&self, source: &SourceRef, record: &ObjectRecord) -> Result<(), SeamError>;
    /// Every record under one source prefix (account + bucket + key prefix).
    fn objects_under(
        &self,
        account_id: &str,
        bucket: &str,
        key_prefix: &str,
    ) -> Result<Vec<(String, ObjectRecord)>, SeamError>;
    /// Free-form small state values (cursors, sweep times, chain heads).
    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>, SeamError>;
    fn put_state(&self, name: &str, value: &[u8]) -> Result<(), SeamError>;
    fn state_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, SeamError>;
    /// Records a finding; returns it with `first_seen` and `new` settled
    /// (`new` is false if the same finding was recorded by an earlier run,
    /// whose `first_seen` and acknowledgement it keeps).
    fn record_finding(&self, finding: Finding) -> Result<Finding, SeamError>;
    fn findings(&self) -> Result<Vec<Finding>, SeamError>;
    /// Marks the recorded finding with `finding`'s identity as acknowledged
    /// at `at`; `false` when none is recorded or it already was.
    fn acknowledge_finding(&self, finding: &Finding, at: DateTime<Utc>) -> Result<bool, SeamError>;
    /// Makes everything recorded so far durable.
    fn flush(&self) -> Result<(), SeamError>;
}
