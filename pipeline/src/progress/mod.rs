//! What the progress store remembers, one typed and versioned record per
//! store key family. This is the only place that knows a store key string.

pub mod lag;
pub mod pubkey;
pub mod runs;
pub mod superseded;
pub mod validation;
