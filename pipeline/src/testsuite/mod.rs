//! What tests here and in the other crates share: in-memory twins of every
//! seam ([`memory`]) and the conformance suite every store implementation
//! must pass ([`conformance`]). Built for this crate's tests and, with the
//! `testsuite` feature, for other crates' tests.

pub mod archive_conformance;
/// Signed digest chains in a memory archive, for the validation and expiry tests.
#[cfg(test)]
pub(crate) mod chains;
pub mod conformance;
pub mod memory;
pub mod queue;

use crate::model::object::ObjectRecord;

/// An object record that only has to exist (tests that count, walk or age
/// records, not those that judge their hashes).
pub fn placeholder_record() -> ObjectRecord {
    ObjectRecord {
        v: 1,
        etag: "e".into(),
        size: 1,
        raw_sha256: [0; 32],
        content_sha256: None,
        content_error: None,
        archive_version_id: None,
        copied_at: 0,
    }
}
