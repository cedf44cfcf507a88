//! What the progress store remembers, one typed and versioned record per
//! store key family. This is the only place that knows a store key string;
//! the stages read and write through the functions here.
//!
//! | key family | module | what |
//! | --- | --- | --- |
//! | `collect/in-flight` | [`collect`] | a run may have copies in flight |
//! | `discovery/…`, `sweep/…` | [`collect`] | folders found under a root; last redelivery sweep |
//! | `backfill-done/…` | [`collect`] | a backfill finished a partition |
//! | `collect-pending/…` | [`collect`] | a partition whose listing held more new keys than a run takes |
//! | `oversize/…` | [`oversize`] | source objects (by ETag) judged too large to copy |
//! | `chain/…` | [`validation`] | per-chain validation state and head ([`validation::chain_heads`] for status) |
//! | `logrefs/…`, `validated/…` | [`validation`] | logs digests list; what validated cleanly |
//! | `unreferenced/…` | [`validation`] | up to when an area's logs were checked for references |
//! | `fresh-index/…` | [`validation`] | a source whose incremental validation starts from the store's fresh folders |
//! | `superseded/…` | [`superseded`] | archive versions a newer copy superseded |
//! | `expired/…` | [`expired`] | partitions source expiry emptied |
//! | `pubkey/…` | [`pubkey`] | CloudTrail public keys fetched with `ListPublicKeys` |
//! | `pending/…` | [`pending`] | checks validation could not make yet (an unreadable listed log, keys that cannot be obtained), since when |
//! | `run/…` | [`runs`] | the last runs' summaries |
//! | `lag/…` | [`lag`] | each account's newest archived file |
//! | `shard` | [`shard`] | the shard (`K/N`, or none) the store serves |
//!
//! Archived-object records and findings have their own seam methods
//! ([`crate::seams::ProgressStore`]); their key layout belongs to each store.

pub mod collect;
pub mod expired;
pub mod lag;
pub mod oversize;
pub mod pending;
pub mod pubkey;
pub mod runs;
pub mod shard;
pub mod superseded;
pub mod validation;
