//! trailvault's proof against real services: a harness for the local AWS emulator
//! (`harness`) and a trail simulator that plays AWS CloudTrail on it (`sim`).
//!
//! Used by the `trailsim` binary and by the single end-to-end test binary
//! (`tests/e2e`); shared test helpers live here rather than in the test crate.

pub mod faults;
pub mod harness;
pub mod sim;
pub mod stacks;
pub mod templates;
