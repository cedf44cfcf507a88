//! In-memory twins of every seam, for tests here and in the other crates.

pub mod memory;
