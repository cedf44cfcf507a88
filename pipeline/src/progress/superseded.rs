//! `superseded/<reader>/<bucket>/<key>\0<version id>`: an archive version a
//! newer copy of the same source object superseded (the source object changed
//! after it was archived; both versions are kept), valued with its copy time
//! in seconds (empty when unknown). Retention checks these versions' locks.

use crate::model::error::SeamError;
use crate::model::object::{ArchivedSource, SourceRef};
use crate::seams::ProgressStore;

const PREFIX: &str = "superseded/";

/// One superseded archive version of a source object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded {
    pub source: SourceRef,
    pub version_id: String,
    /// Seconds since the epoch, when known.
    pub copied_at: Option<i64>,
}

fn name(source: &SourceRef, version_id: &str) -> String {
    format!(
        "{PREFIX}{}/{}/{}\u{0}{version_id}",
        source.account_id, source.bucket, source.key
    )
}

/// Records that `version_id` of `source`'s copy was superseded.
pub fn record(
    store: &dyn ProgressStore,
    source: &SourceRef,
    version_id: &str,
    copied_at: Option<i64>,
) -> Result<(), SeamError> {
    let value = copied_at.map(|t| t.to_string()).unwrap_or_default();
    store.put_state(&name(source, version_id), value.as_bytes())
}

/// Every superseded version recorded for one source bucket.
pub fn under(
    store: &dyn ProgressStore,
    source: &ArchivedSource,
) -> Result<Vec<Superseded>, SeamError> {
    let prefix = format!("{PREFIX}{}/{}/", source.reader_account_id, source.bucket);
    let mut out = Vec::new();
    for (state_name, value) in store.state_under(&prefix)? {
        let Some((key, version_id)) = state_name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('\u{0}'))
        else {
            continue;
        };
        out.push(Superseded {
            source: SourceRef {
                account_id: source.reader_account_id.clone(),
                bucket: source.bucket.clone(),
                key: key.to_string(),
            },
            version_id: version_id.to_string(),
            copied_at: std::str::from_utf8(&value)
                .ok()
                .and_then(|text| text.parse().ok()),
        });
    }
    Ok(out)
}
