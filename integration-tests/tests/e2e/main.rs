//! The one end-to-end test binary (linking the AWS SDK is slow: keep a single binary
//! and add modules). Every test needs the emulator: `scripts/test`, or
//! `scripts/emulator start` with `TRAILVAULT_TEST_ENDPOINT=http://127.0.0.1:4566`,
//! and `--test-threads=1` (tests reset the shared emulator).
//! Shared helpers belong in the library (`trailvault_integration_tests`).

mod alerts;
mod archive_conformance;
mod cli;
mod collect;
mod edges;
mod faults;
mod intake;
mod metrics;
mod ops;
mod policies;
mod regions;
mod report;
mod shards;
mod sim;
mod stacks;
mod verify;
