//! What trailvault does, independent of how it talks to the world.
//!
//! Four floors, each using only the ones below it:
//!
//! * ground: [`cloudtrail`] (file formats), [`model`] (source refs, records,
//!   findings, the report, errors) and [`seams`] (one trait per outside thing);
//! * building blocks: [`copy`] (one verified copy, read-back check, adoption,
//!   re-hash), [`progress`] (one typed record per store key family) and
//!   [`ledger`] (the findings ledger in the archive);
//! * stages, side by side and never importing each other: [`collect`],
//!   [`verify`], [`retention`], [`rebuild`], [`alerts`];
//! * top floor: [`jobs`]: one entry point per command, composing the stages.
//!   It is the only module that imports several stages.
//!
//! It has no AWS SDK dependency: `infra` implements the seams with the SDK and
//! redb, and `testsuite` (for tests, and other crates' tests with the
//! `testsuite` feature) implements them in memory, with the conformance suite
//! every implementation must pass.

pub mod alerts;
pub mod cloudtrail;
pub mod collect;
pub mod copy;
pub mod jobs;
pub mod ledger;
pub mod model;
pub mod progress;
pub mod rebuild;
pub mod retention;
pub mod seams;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
pub mod verify;

pub use model::error::SeamError;
