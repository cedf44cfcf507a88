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
