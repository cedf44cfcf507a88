//! `oversize/<reader>/<bucket>/<key>`: a source object judged too large to
//! copy (`[collect] max_object_bytes`), with the ETag it had then. The finding
//! is raised once per judged version: a later listing of the same ETag is
//! skipped without another finding or another attempt; a changed ETag is
//! judged again.

use serde::{Deserialize, Serialize};

use crate::model::error::SeamError;
use crate::model::object::SourceRef;
use crate::seams::ProgressStore;

const PREFIX: &str = "oversize/";
const VERSION: u8 = 1;

/// What was judged: one version (ETag) of one source object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Oversize {
    pub v: u8,
    pub etag: String,
    pub size: u64,
    /// Epoch seconds of the judgement.
    pub judged_at: i64,
}

fn name(source: &SourceRef) -> String {
    format!(
        "{PREFIX}{}/{}/{}",
        source.account_id, source.bucket, source.key
    )
}

/// Whether this version (`etag`) of `source` was already judged too large.
/// An unreadable record counts as not judged: judging again raises the same
/// finding, which the store records once.
pub fn judged(store: &dyn ProgressStore, source: &SourceRef, etag: &str) -> bool {
    store
        .get_state(&name(source))
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice::<Oversize>(&bytes).ok())
        .is_some_and(|record| record.etag == etag)
}

/// Records that `etag` of `source` (of `size` bytes) was judged too large.
pub fn record(
    store: &dyn ProgressStore,
    source: &SourceRef,
    etag: &str,
    size: u64,
    judged_at: i64,
) -> Result<(), SeamError> {
    let record = Oversize {
        v: VERSION,
        etag: etag.to_string(),
        size,
        judged_at,
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| SeamError::Permanent(e.to_string()))?;
    store.put_state(&name(source), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsuite::memory::MemoryStore;

    #[test]
    fn a_judged_version_is_remembered_and_a_new_one_is_not() {
        let store = MemoryStore::default();
        let source = SourceRef {
            account_id: "222222222201".into(),
            bucket: "b".into(),
            key: "AWSLogs/222222222201/CloudTrail/us-east-1/2026/11/27/big".into(),
        };
        assert!(!judged(&store, &source, "e1"));
        record(&store, &source, "e1", 5 << 30, 1).unwrap();
        assert!(judged(&store, &source, "e1"));
        assert!(
            !judged(&store, &source, "e2"),
            "a changed ETag is judged again"
        );
    }
}
