//! Findings: evidence that history was lost or altered, or that the archive is
//! not as locked as required. Kinds and JSON follow `docs/cli-contract.md`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    LogFileMissing,
    LogFileHashMismatch,
    LogFileTrailingData,
    LogFileUnreferenced,
    DigestMissing,
    DigestSignatureInvalid,
    DigestPublicKeyUnknown,
    DigestMoved,
    DigestMalformed,
    DigestLinkMismatch,
    ChainGap,
    ChainHeadStale,
    /// Archived digests of a chain stay unvalidated (see the contract).
    ChainValidationLagging,
    SourceObjectModified,
    AccountMismatch,
    ObjectMalformed,
    ArchiveCopyInvalid,
    ArchiveMisconfigured,
    /// A source bucket is owned by another account than the one whose
    /// history it is read as (a squatted bucket name): nothing is archived.
    SourceBucketNotOwned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Warning,
}

impl FindingKind {
    pub const ALL: [FindingKind; 19] = [
        FindingKind::LogFileMissing,
        FindingKind::LogFileHashMismatch,
        FindingKind::LogFileTrailingData,
        FindingKind::LogFileUnreferenced,
        FindingKind::DigestMissing,
        FindingKind::DigestSignatureInvalid,
        FindingKind::DigestPublicKeyUnknown,
        FindingKind::DigestMoved,
        FindingKind::DigestMalformed,
        FindingKind::DigestLinkMismatch,
        FindingKind::ChainGap,
        FindingKind::ChainHeadStale,
        FindingKind::ChainValidationLagging,
        FindingKind::SourceObjectModified,
        FindingKind::AccountMismatch,
        FindingKind::ObjectMalformed,
        FindingKind::ArchiveCopyInvalid,
        FindingKind::ArchiveMisconfigured,
        FindingKind::SourceBucketNotOwned,
    ];

    /// Whether the finding describes a current state that each run observes
    /// again (an unlocked archive, a stale chain head) rather than a fact
    /// about history, which stays open once found. A state finding is
    /// reported, and keeps exit status 3, on every run that observes it,
    /// whatever was acknowledged before (see [`Finding::recorded_over`]).
    pub fn is_state(self) -> bool {
        matches!(
            self,
            FindingKind::ArchiveMisconfigured
                | FindingKind::ChainHeadStale
                | FindingKind::ChainValidationLagging
                | FindingKind::SourceBucketNotOwned
        )
    }

    /// Severity per the contract: warnings are anomalies that can have an
    /// innocent cause; everything else is evidence of loss or alteration.
    pub fn severity(self) -> Severity {
        match self {
            FindingKind::LogFileUnreferenced
            | FindingKind::ChainGap
            | FindingKind::ChainHeadStale
            | FindingKind::ObjectMalformed => Severity::Warning,
            _ => Severity::Critical,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::LogFileMissing => "log_file_missing",
            FindingKind::LogFileHashMismatch => "log_file_hash_mismatch",
            FindingKind::LogFileTrailingData => "log_file_trailing_data",
            FindingKind::LogFileUnreferenced => "log_file_unreferenced",
            FindingKind::DigestMissing => "digest_missing",
            FindingKind::DigestSignatureInvalid => "digest_signature_invalid",
            FindingKind::DigestPublicKeyUnknown => "digest_public_key_unknown",
            FindingKind::DigestMoved => "digest_moved",
            FindingKind::DigestMalformed => "digest_malformed",
            FindingKind::DigestLinkMismatch => "digest_link_mismatch",
            FindingKind::ChainGap => "chain_gap",
            FindingKind::ChainHeadStale => "chain_head_stale",
            FindingKind::ChainValidationLagging => "chain_validation_lagging",
            FindingKind::SourceObjectModified => "source_object_modified",
            FindingKind::AccountMismatch => "account_mismatch",
            FindingKind::ObjectMalformed => "object_malformed",
            FindingKind::ArchiveCopyInvalid => "archive_copy_invalid",
            FindingKind::ArchiveMisconfigured => "archive_misconfigured",
            FindingKind::SourceBucketNotOwned => "source_bucket_not_owned",
        }
    }

    pub fn parse(text: &str) -> Option<FindingKind> {
        FindingKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding as the contract's JSON shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    pub account_id: String,
    pub region: Option<String>,
    pub trail: Option<String>,
    pub bucket: String,
    /// The account that controls `bucket` (whose role read it, and whose
    /// ownership of it was checked), when it is known and may differ from
    /// `account_id`, the account the path or the content claims: a file
    /// planted under `AWSLogs/<B>/` in A's bucket names B here and A there.
    /// Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_owner: Option<String>,
    pub key: String,
    pub archive_key: Option<String>,
    pub detail: String,
    pub first_seen: DateTime<Utc>,
    pub new: bool,
    /// When an operator acknowledged the finding (`trailvault findings
    /// --acknowledge`); an acknowledged finding is no longer open. Absent
    /// while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// What is still to be done to announce this finding, on the store's
    /// record (and so in `trailvault findings`): set when the store records
    /// the finding for the first time (or re-opens an acknowledged state
    /// finding), each part cleared once it succeeded. Absent once announced,
    /// and in a run's report. See [`crate::alerts`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unannounced: Option<Unannounced>,
}

/// The parts of announcing a recorded finding that have not succeeded yet;
/// every run retries them until they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unannounced {
    /// Not yet written to the archive's findings ledger.
    pub ledger: bool,
    /// Not yet published to the notifier (SNS).
    pub publish: bool,
    /// Not yet put on the event bus (EventBridge). Records written before
    /// the event bus existed lack it: read as still to do, so a finding they
    /// left unannounced is never lost on the way.
    #[serde(default = "still_to_do")]
    pub events: bool,
}

fn still_to_do() -> bool {
    true
}

impl Unannounced {
    /// Nothing done yet.
    pub const ALL: Unannounced = Unannounced {
        ledger: true,
        publish: true,
        events: true,
    };

    fn any(self) -> bool {
        self.ledger || self.publish || self.events
    }
}

/// Where a finding is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnouncedTo {
    /// The archive's findings ledger.
    Ledger,
    /// The notifier (or: no notifier is configured, nothing to publish).
    Notifier,
    /// The event bus, one event per finding (or: no bus is configured).
    Events,
}

impl Finding {
    /// What recording this finding does when `previous` is the record already
    /// kept under its identity: the finding as the run reports it, and the
    /// record to store (`None`: keep the previous one).
    ///
    /// * First sighting: reported `new`; stored with every announcement part
    ///   to do ([`Unannounced::ALL`]), in the same write as the finding, so a
    ///   crash before the announcement loses nothing: the next run announces.
    /// * Seen before: keeps its `first_seen` and acknowledgement and is not
    ///   new (newness belongs to the run that found it).
    /// * Except a state finding ([`FindingKind::is_state`]) that an operator
    ///   acknowledged: observed again, the state is back (or never went), so
    ///   it is re-opened: reported `new` and open, stored without the
    ///   acknowledgement and announced again. Acknowledging a state says
    ///   "seen"; it never silences a later observation.
    ///
    /// A stored record is never `new`, and a reported one never carries
    /// `unannounced` (that is the store's bookkeeping).
    pub fn recorded_over(self, previous: Option<&Finding>) -> (Finding, Option<Finding>) {
        match previous {
            Some(previous) if self.kind.is_state() && previous.acknowledged_at.is_some() => {
                let mut reported = self;
                reported.new = true;
                reported.acknowledged_at = None;
                reported.unannounced = None;
                let mut stored = reported.clone();
                stored.new = false;
                stored.unannounced = Some(Unannounced::ALL);
                (reported, Some(stored))
            }
            Some(previous) => {
                let mut seen = self;
                seen.first_seen = previous.first_seen;
                seen.acknowledged_at = previous.acknowledged_at;
                seen.new = false;
                seen.unannounced = None;
                (seen, None)
            }
            None => {
                let mut reported = self;
                reported.unannounced = None;
                let mut stored = reported.clone();
                stored.new = false;
                stored.unannounced = Some(Unannounced::ALL);
                (reported, Some(stored))
            }
        }
    }

    /// This record acknowledged at `at`; `None` when it already was. The
    /// announcement still to do, if any, stays to do.
    pub fn acknowledged(&self, at: DateTime<Utc>) -> Option<Finding> {
        if self.acknowledged_at.is_some() {
            return None;
        }
        let mut acknowledged = self.clone();
        acknowledged.acknowledged_at = Some(at);
        Some(acknowledged)
    }

    /// This record with its announcement to `to` done; `None` when there was
    /// nothing left to do there. Once every part is done the record is
    /// announced (`unannounced` absent).
    pub fn announced_to(&self, to: AnnouncedTo) -> Option<Finding> {
        let pending = self.unannounced?;
        let left = match to {
            AnnouncedTo::Ledger if pending.ledger => Unannounced {
                ledger: false,
                ..pending
            },
            AnnouncedTo::Notifier if pending.publish => Unannounced {
                publish: false,
                ..pending
            },
            AnnouncedTo::Events if pending.events => Unannounced {
                events: false,
                ..pending
            },
            _ => return None,
        };
        let mut announced = self.clone();
        announced.unannounced = left.any().then_some(left);
        Some(announced)
    }

    /// Whether announcing to `to` is still to do.
    pub fn awaits(&self, to: AnnouncedTo) -> bool {
        self.unannounced.is_some_and(|pending| match to {
            AnnouncedTo::Ledger => pending.ledger,
            AnnouncedTo::Notifier => pending.publish,
            AnnouncedTo::Events => pending.events,
        })
    }
}

impl Finding {
    /// A new finding about one object; `first_seen` and `new` are settled by
    /// the store when the finding is recorded.
    pub fn new(
        kind: FindingKind,
        account_id: &str,
        bucket: &str,
        key: &str,
        detail: String,
    ) -> Finding {
        Finding {
            kind,
            severity: kind.severity(),
            account_id: account_id.to_string(),
            region: None,
            trail: None,
            bucket: bucket.to_string(),
            bucket_owner: None,
            key: key.to_string(),
            archive_key: None,
            detail,
            first_seen: Utc::now(),
            new: true,
            acknowledged_at: None,
            unannounced: None,
        }
    }

    /// Open until acknowledged: what keeps a run's exit status at 3.
    pub fn is_open(&self) -> bool {
        self.acknowledged_at.is_none()
    }

    pub fn with_bucket_owner(mut self, owner: Option<&str>) -> Finding {
        self.bucket_owner = owner.map(str::to_string);
        self
    }

    pub fn with_region(mut self, region: Option<&str>) -> Finding {
        self.region = region.map(str::to_string);
        self
    }

    pub fn with_trail(mut self, trail: Option<&str>) -> Finding {
        self.trail = trail.map(str::to_string);
        self
    }

    pub fn with_archive_key(mut self, archive_key: Option<&str>) -> Finding {
        self.archive_key = archive_key.map(str::to_string);
        self
    }

    /// Logs a finding recorded for the first time (with its account and
    /// region, as every log line of a run has).
    pub fn log_new(&self) {
        tracing::warn!(
            kind = %self.kind,
            account_id = %self.account_id,
            region = self.region.as_deref().unwrap_or("-"),
            key = %self.key,
            detail = %self.detail,
            "finding"
        );
    }

    /// Identity used to report a finding as new only once across runs: the
    /// same kind on the same object is the same finding, whatever the detail.
    /// Except a change of a source object: each change (its ETags and content
    /// hashes are in the detail) is an event of its own, so a second rewrite
    /// of a file already reported, or acknowledged, is reported again.
    pub fn dedup_key(&self) -> String {
        let key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}",
            self.kind.as_str(),
            self.account_id,
            self.bucket,
            self.key
        );
        if self.kind == FindingKind::SourceObjectModified {
            format!("{key}\u{0}{}", self.detail)
        } else {
            key
        }
    }
}

/// A run's findings, each identity ([`Finding::dedup_key`]) once, in the order
/// first seen: the one place a run de-duplicates findings (the store does it
/// across runs). Lookups are hashed, so a run with very many findings (a
/// member can plant thousands of malformed files) stays linear.
#[derive(Debug, Clone, Default)]
pub struct FindingSet {
    identities: std::collections::HashSet<String>,
    findings: Vec<Finding>,
}

impl FindingSet {
    /// A set holding `findings` (later duplicates dropped).
    pub fn of(findings: Vec<Finding>) -> FindingSet {
        let mut set = FindingSet::default();
        for finding in findings {
            set.insert(finding);
        }
        set
    }

    /// Claims `finding`'s identity for this run: `false` when it was already
    /// claimed. A claimed finding is added later with [`FindingSet::push`]
    /// (once the store has settled it), or never if recording it failed.
    pub fn claim(&mut self, finding: &Finding) -> bool {
        self.identities.insert(finding.dedup_key())
    }

    /// Adds a finding whose identity was claimed.
    pub fn push(&mut self, finding: Finding) {
        debug_assert!(self.identities.contains(&finding.dedup_key()));
        self.findings.push(finding);
    }

    /// Claims and adds `finding`; `false` (and nothing added) for a duplicate.
    pub fn insert(&mut self, finding: Finding) -> bool {
        if !self.claim(&finding) {
            return false;
        }
        self.findings.push(finding);
        true
    }

    pub fn len(&self) -> usize {
        self.findings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }

    pub fn into_vec(self) -> Vec<Finding> {
        self.findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_contract_names() {
        for kind in FindingKind::ALL {
            assert_eq!(FindingKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(FindingKind::parse("nope"), None);
    }

    #[test]
    fn severities_follow_the_contract() {
        assert_eq!(FindingKind::ChainGap.severity(), Severity::Warning);
        assert_eq!(FindingKind::ObjectMalformed.severity(), Severity::Warning);
        assert_eq!(FindingKind::DigestMissing.severity(), Severity::Critical);
        assert_eq!(
            FindingKind::ArchiveMisconfigured.severity(),
            Severity::Critical
        );
    }

    #[test]
    fn dedup_key_ignores_detail_but_not_object() {
        let a = Finding::new(
            FindingKind::DigestMissing,
            "111122223333",
            "b",
            "k1",
            "x".into(),
        );
        let b = Finding::new(
            FindingKind::DigestMissing,
            "111122223333",
            "b",
            "k1",
            "y".into(),
        );
        let c = Finding::new(
            FindingKind::DigestMissing,
            "111122223333",
            "b",
            "k2",
            "x".into(),
        );
        assert_eq!(a.dedup_key(), b.dedup_key());
        assert_ne!(a.dedup_key(), c.dedup_key());

        // Two different rewrites of one source object are two findings.
        let change = |detail: &str| {
            Finding::new(
                FindingKind::SourceObjectModified,
                "111122223333",
                "b",
                "k1",
                detail.into(),
            )
        };
        assert_eq!(
            change("ETag 1 -> 2").dedup_key(),
            change("ETag 1 -> 2").dedup_key()
        );
        assert_ne!(
            change("ETag 1 -> 2").dedup_key(),
            change("ETag 2 -> 3").dedup_key()
        );
    }

    #[test]
    fn a_finding_set_keeps_each_identity_once_in_first_seen_order() {
        let make = |kind, key: &str, detail: &str| {
            Finding::new(kind, "111122223333", "b", key, detail.to_string())
        };
        let mut set = FindingSet::of(vec![
            make(FindingKind::LogFileMissing, "k1", "a"),
            make(FindingKind::LogFileMissing, "k1", "a"),
            make(FindingKind::DigestMissing, "k1", "a"),
        ]);
        assert_eq!(set.len(), 2);
        let late = make(FindingKind::LogFileMissing, "k2", "a");
        assert!(set.claim(&late));
        assert!(!set.claim(&late), "claimed once");
        assert!(!set.insert(make(FindingKind::DigestMissing, "k1", "a")));
        set.push(late);
        let kinds: Vec<_> = set
            .into_vec()
            .into_iter()
            .map(|f| (f.kind, f.key))
            .collect();
        assert_eq!(
            kinds,
            [
                (FindingKind::LogFileMissing, "k1".to_string()),
                (FindingKind::DigestMissing, "k1".to_string()),
                (FindingKind::LogFileMissing, "k2".to_string()),
            ]
        );
    }
}
