//! The CloudTrail file formats, as specified in `docs/cloudtrail-format.md`.
//!
//! Everything here is pure, synchronous logic over bytes and strings that a member
//! account controls, so every function returns a typed error instead of panicking,
//! and the callers turn those errors into findings:
//!
//! * [`claims`] — which account a log's records or a digest claim, read in one
//!   bounded pass.
//! * [`keys`] — S3 key names of log and digest files (docs/cloudtrail-format.md §1): parse and build.
//! * [`gzip`] — a push-based, bounded, single-member gzip inspector that hashes the
//!   raw and the inflated bytes while an object streams past (docs/cloudtrail-format.md §4, §7).
//! * [`digest`] — the digest JSON (docs/cloudtrail-format.md §2), the string to sign (docs/cloudtrail-format.md §3.3) and the
//!   RSASSA-PKCS1-v1_5 / SHA-256 signature check (docs/cloudtrail-format.md §3.2).
//! * [`notification`] — the bodies that announce a delivered file: CloudTrail's SNS
//!   notification, S3 event notifications and EventBridge "Object Created" events.
//! * [`public_keys`] — CloudTrail public keys, their MD5 fingerprints and the
//!   `list-public-keys` JSON shape (docs/cloudtrail-format.md §5).

pub mod claims;
pub mod digest;
pub mod gzip;
pub mod keys;
pub mod notification;
pub mod public_keys;
