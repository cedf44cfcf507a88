//! What the stages talk about: where a copy came from ([`object`]), what the
//! store remembers of it, findings, the report of a run and the errors at the
//! seams. No I/O here.

pub mod asff;
pub mod error;
pub mod findings;
pub mod object;
pub mod report;
pub mod shard;
pub mod text;
pub mod time;

pub use error::SeamError;
pub use findings::{Finding, FindingKind, Severity};
pub use object::{ArchivedSource, ObjectRecord, SourceRef};
pub use report::Report;
