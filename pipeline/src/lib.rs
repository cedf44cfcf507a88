//! What trailvault does, independent of how it talks to the world.
//!
//! This crate holds the CloudTrail model (key names, gzip, digests, public keys),
//! the stages of a run (collect, validate), the findings and the report, and the
//! narrow seams ([`seams`]) through which the stages reach storage and services.
//! It has no AWS SDK dependency: `infra` implements the seams with the SDK and
//! sled, and [`memory`] implements them in memory for the unit tests here.

pub mod cloudtrail;
pub mod collect;
pub mod copy;
pub mod error;
pub mod expiry;
pub mod findings;
pub mod ledger;
pub mod memory;
pub mod report;
pub mod retention;
pub mod seams;
pub mod verify;

pub use error::SeamError;
