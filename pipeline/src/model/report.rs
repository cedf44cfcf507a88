//! The run report of `docs/cli-contract.md` (`--json`) and the exit status rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::collections::{BTreeMap, HashSet};

use crate::model::findings::{Finding, FindingKind, FindingSet, Severity};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub accounts: u64,
    pub accounts_failed: u64,
    pub partitions_listed: u64,
    /// Backfill partitions already completed by an earlier (interrupted) run.
    pub partitions_skipped: u64,
    pub objects_listed: u64,
    pub objects_copied: u64,
    pub objects_skipped: u64,
    pub objects_adopted: u64,
    /// New or changed objects a run left for the next one: a partition
    /// listed more than `[collect] max_keys_per_partition_per_run` of them.
    #[serde(default)]
    pub objects_deferred: u64,
    pub bytes_copied: u64,
    pub digests_validated: u64,
    pub log_files_validated: u64,
    pub errors: u64,
}

/// An operational error: something could not be done (an account could not be
/// reached, an object could not be copied after retries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationError {
    pub account_id: String,
    pub operation: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub command: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub stats: Stats,
    pub errors: Vec<OperationError>,
    pub findings: Vec<Finding>,
    /// Overrides the operator asked for (e.g. collecting into an unlocked
    /// archive); empty in a normal run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    /// The open findings of earlier runs that `findings` does not list (a
    /// report lists at most [`MAX_LISTED_EARLIER_FINDINGS`] of them, so a
    /// flood of findings cannot make every later report grow with it).
    #[serde(default, skip_serializing_if = "EarlierOpen::is_empty")]
    pub earlier_open: EarlierOpen,
    /// Why the run did nothing, when it did nothing on purpose: another run
    /// still holds the progress store ([`Report::skipped_while_active`]).
    /// Absent in a run that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// [`Report::skipped`] of a run that found the previous one still running.
pub const SKIPPED_WHILE_ACTIVE: &str = "previous run still active";

/// How many open findings of earlier runs a report lists (critical first,
/// then the most recently found); the rest are counted in
/// [`Report::earlier_open`]. `trailvault findings` lists every one.
pub const MAX_LISTED_EARLIER_FINDINGS: usize = 1000;

/// Open findings of earlier runs counted but not listed in a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlierOpen {
    /// How many are not listed.
    pub not_listed: u64,
    /// Of those, how many are critical.
    pub critical: u64,
    /// Their count by kind.
    pub by_kind: BTreeMap<FindingKind, u64>,
}

impl EarlierOpen {
    pub fn is_empty(&self) -> bool {
        self.not_listed == 0
    }

    fn count(&mut self, finding: &Finding) {
        self.not_listed += 1;
        if finding.severity == Severity::Critical {
            self.critical += 1;
        }
        *self.by_kind.entry(finding.kind).or_default() += 1;
    }
}

/// Gathers the open findings of earlier runs one at a time (as the store
/// streams them), keeping the [`MAX_LISTED_EARLIER_FINDINGS`] most
/// important and counting the rest: memory stays bounded however many
/// findings are on record.
pub struct EarlierFindings<'a> {
    scope: &'a FindingScope,
    in_report: HashSet<String>,
    kept: Vec<Finding>,
    limit: usize,
    dropped: EarlierOpen,
}

impl<'a> EarlierFindings<'a> {
    pub fn new(report: &Report, scope: &'a FindingScope) -> EarlierFindings<'a> {
        EarlierFindings::with_limit(report, scope, MAX_LISTED_EARLIER_FINDINGS)
    }

    fn with_limit(report: &Report, scope: &'a FindingScope, limit: usize) -> EarlierFindings<'a> {
        EarlierFindings {
            scope,
            in_report: report.findings.iter().map(Finding::dedup_key).collect(),
            kept: Vec::new(),
            limit,
            dropped: EarlierOpen::default(),
        }
    }

    /// Takes one recorded finding: kept when it is an open fact about
    /// history in scope that the report does not hold yet. A finding about
    /// a current state ([`FindingKind::is_state`]) is reported only while a
    /// run observes it.
    pub fn offer(&mut self, mut finding: Finding) {
        if finding.kind.is_state() || !finding.is_open() || !self.scope.covers(&finding) {
            return;
        }
        if self.in_report.contains(&finding.dedup_key()) {
            return;
        }
        finding.new = false;
        // The store's bookkeeping; the run announces them.
        finding.unannounced = None;
        self.kept.push(finding);
        if self.kept.len() >= self.limit.saturating_mul(2).max(1) {
            self.trim();
        }
    }

    /// Critical first, then the most recently found, then by identity (a
    /// stable order).
    fn trim(&mut self) {
        self.kept.sort_by(|a, b| {
            (a.severity != Severity::Critical)
                .cmp(&(b.severity != Severity::Critical))
                .then(b.first_seen.cmp(&a.first_seen))
                .then_with(|| a.dedup_key().cmp(&b.dedup_key()))
        });
        for finding in self.kept.drain(self.limit.min(self.kept.len())..) {
            self.dropped.count(&finding);
        }
    }

    /// Lists the kept findings in `report` and counts the others.
    pub fn finish(mut self, report: &mut Report) {
        self.trim();
        report.add_findings(self.kept);
        let carried = &mut report.earlier_open;
        carried.not_listed += self.dropped.not_listed;
        carried.critical += self.dropped.critical;
        for (kind, count) in self.dropped.by_kind {
            *carried.by_kind.entry(kind).or_default() += count;
        }
    }
}

/// Which recorded findings a run limited by `--account` and `--region`
/// covers (all when both are empty). As for validation, an account covers
/// the findings about its own files and those in the buckets its role reads
/// (an organization trail's bucket, read by the log-archive account).
#[derive(Debug, Clone, Default)]
pub struct FindingScope {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    /// Source bucket -> the account whose role reads it, where that is not
    /// the account the findings name.
    pub readers: std::collections::BTreeMap<String, String>,
}

impl FindingScope {
    pub fn covers(&self, finding: &Finding) -> bool {
        let account_covered = self.accounts.is_empty()
            || self.accounts.contains(&finding.account_id)
            || self
                .readers
                .get(&finding.bucket)
                .is_some_and(|reader| self.accounts.contains(reader));
        let region_covered = self.regions.is_empty()
            || finding
                .region
                .as_ref()
                .is_none_or(|region| self.regions.contains(region));
        account_covered && region_covered
    }
}

/// Exit statuses of the contract.
pub mod exit {
    pub const OK: i32 = 0;
    pub const OPERATIONAL_ERRORS: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const FINDINGS: i32 = 3;
}

impl Report {
    pub fn new(command: &str) -> Report {
        let now = Utc::now();
        Report {
            command: command.to_string(),
            started_at: now,
            finished_at: now,
            stats: Stats::default(),
            errors: Vec::new(),
            findings: Vec::new(),
            overrides: Vec::new(),
            earlier_open: EarlierOpen::default(),
            skipped: None,
        }
    }

    /// The report of a one-shot run that found the progress store held by a
    /// live run (a scheduled run that overran its interval): nothing was
    /// done, which is neither an error nor a finding, so the exit status is
    /// 0 and no failed-run alarm fires. The next run catches up.
    pub fn skipped_while_active(command: &str) -> Report {
        Report {
            skipped: Some(SKIPPED_WHILE_ACTIVE.to_string()),
            ..Report::new(command)
        }
    }

    pub fn error(&mut self, account_id: &str, operation: &str, message: impl Into<String>) {
        self.stats.errors += 1;
        self.errors.push(OperationError {
            account_id: account_id.to_string(),
            operation: operation.to_string(),
            message: message.into(),
        });
    }

    /// Adds the findings recorded by earlier runs that are still open in this
    /// run's `scope`, as not new, so the report and the exit status answer
    /// "is there evidence of lost or altered history?" and not only "was some
    /// found just now?". A fact about history stays open once found; findings
    /// about a current state ([`FindingKind::is_state`]) are reported only
    /// while a run observes them. See [`EarlierFindings`] for the bound.
    pub fn include_open_findings(&mut self, recorded: Vec<Finding>, scope: &FindingScope) {
        let mut earlier = EarlierFindings::new(self, scope);
        for finding in recorded {
            earlier.offer(finding);
        }
        earlier.finish(self);
    }

    /// Adds `findings` that the report does not hold yet (by identity).
    pub fn add_findings(&mut self, findings: impl IntoIterator<Item = Finding>) {
        let mut set = FindingSet::of(std::mem::take(&mut self.findings));
        for finding in findings {
            set.insert(finding);
        }
        self.findings = set.into_vec();
    }

    /// 3 if any open finding is present (new or from an earlier run; an
    /// acknowledged one no longer counts), else 1 if any operational error,
    /// else 0. "If both 1 and 3 apply, 3 wins."
    pub fn exit_code(&self) -> i32 {
        if self.findings.iter().any(Finding::is_open) || !self.earlier_open.is_empty() {
            exit::FINDINGS
        } else if !self.errors.is_empty() {
            exit::OPERATIONAL_ERRORS
        } else {
            exit::OK
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::findings::FindingKind;

    #[test]
    fn a_run_skipped_while_another_is_active_exits_0_and_says_why() {
        let report = Report::skipped_while_active("collect");
        assert_eq!(report.exit_code(), exit::OK);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["skipped"], "previous run still active");
        assert_eq!(json["command"], "collect");
        assert_eq!(json["stats"]["objects_copied"], 0);
        // A run that ran says nothing about skipping, and older reports
        // without the field still read.
        let ran = serde_json::to_value(Report::new("collect")).unwrap();
        assert!(ran.get("skipped").is_none());
        let read: Report = serde_json::from_value(ran).unwrap();
        assert_eq!(read.skipped, None);
    }

    #[test]
    fn a_report_lists_a_bounded_number_of_earlier_findings_and_counts_the_rest() {
        let at = |minutes: i64| Utc::now() - chrono::Duration::minutes(minutes);
        let finding = |kind, key: &str, minutes_ago| {
            let mut finding = Finding::new(kind, "111111111111", "b", key, "d".into());
            finding.first_seen = at(minutes_ago);
            finding
        };
        let mut report = Report::new("collect");
        report.findings.push(Finding {
            new: true,
            ..finding(FindingKind::LogFileUnreferenced, "already", 0)
        });
        let scope = FindingScope::default();
        let mut earlier = EarlierFindings::with_limit(&report, &scope, 2);
        // Offered in an order unrelated to importance, more than twice the
        // limit so that trimming happens while offering.
        earlier.offer(finding(FindingKind::LogFileUnreferenced, "w-old", 50));
        earlier.offer(finding(FindingKind::LogFileUnreferenced, "already", 50));
        earlier.offer(finding(FindingKind::LogFileUnreferenced, "w-new", 1));
        earlier.offer(finding(FindingKind::LogFileUnreferenced, "w-mid", 10));
        earlier.offer(finding(FindingKind::DigestMissing, "c-old", 100));
        earlier.offer(finding(FindingKind::LogFileUnreferenced, "w-older", 70));
        earlier.offer(finding(FindingKind::ArchiveMisconfigured, "state", 0));
        earlier.finish(&mut report);

        let listed: Vec<&str> = report.findings.iter().map(|f| f.key.as_str()).collect();
        // The run's own finding stays as it reported it; the critical one
        // comes before the newer warnings, then the newest warning.
        assert_eq!(listed.len(), 3);
        assert!(listed.contains(&"already") && listed.contains(&"c-old"));
        assert!(listed.contains(&"w-new"));
        assert_eq!(report.earlier_open.not_listed, 3);
        assert_eq!(report.earlier_open.critical, 0);
        assert_eq!(
            report
                .earlier_open
                .by_kind
                .get(&FindingKind::LogFileUnreferenced),
            Some(&3)
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["earlier_open"]["not_listed"], 3);
        assert_eq!(json["earlier_open"]["by_kind"]["log_file_unreferenced"], 3);

        // Counted findings alone keep the exit status at 3.
        let mut counted_only = Report::new("verify");
        counted_only.earlier_open = report.earlier_open.clone();
        assert_eq!(counted_only.exit_code(), exit::FINDINGS);
        assert!(serde_json::to_value(Report::new("verify")).unwrap()["earlier_open"].is_null());
    }

    #[test]
    fn open_findings_in_scope_are_reported_once_and_not_as_new() {
        let finding = |kind, account: &str, key: &str, region: Option<&str>| {
            let mut finding = Finding::new(kind, account, "b", key, "d".into()).with_region(region);
            finding.new = true;
            finding
        };
        let mut report = Report::new("verify");
        report.findings.push(finding(
            FindingKind::LogFileMissing,
            "111111111111",
            "k1",
            Some("us-east-1"),
        ));
        let recorded = vec![
            // Found again by this run: kept once, as this run reported it.
            finding(
                FindingKind::LogFileMissing,
                "111111111111",
                "k1",
                Some("us-east-1"),
            ),
            // Open from an earlier run.
            finding(
                FindingKind::DigestMissing,
                "111111111111",
                "k2",
                Some("us-east-1"),
            ),
            finding(FindingKind::AccountMismatch, "111111111111", "k3", None),
            // Out of scope: another account, another region.
            finding(
                FindingKind::DigestMissing,
                "222222222222",
                "k4",
                Some("us-east-1"),
            ),
            finding(
                FindingKind::DigestMissing,
                "111111111111",
                "k5",
                Some("eu-west-1"),
            ),
            // Acknowledged by an operator: no longer open.
            Finding {
                acknowledged_at: Some(Utc::now()),
                ..finding(
                    FindingKind::DigestMissing,
                    "111111111111",
                    "k8",
                    Some("us-east-1"),
                )
            },
            // States a run observes again.
            finding(
                FindingKind::ChainHeadStale,
                "111111111111",
                "k6",
                Some("us-east-1"),
            ),
            finding(
                FindingKind::ArchiveMisconfigured,
                "111111111111",
                "k7",
                None,
            ),
        ];
        report.include_open_findings(
            recorded,
            &FindingScope {
                accounts: vec!["111111111111".to_string()],
                regions: vec!["us-east-1".to_string()],
                ..FindingScope::default()
            },
        );
        let mut keys: Vec<(&str, bool)> = report
            .findings
            .iter()
            .map(|f| (f.key.as_str(), f.new))
            .collect();
        keys.sort();
        assert_eq!(keys, vec![("k1", true), ("k2", false), ("k3", false)]);
        assert_eq!(report.exit_code(), exit::FINDINGS);

        let mut unscoped = Report::new("collect");
        unscoped.include_open_findings(
            vec![finding(
                FindingKind::DigestMissing,
                "222222222222",
                "k4",
                Some("eu-west-1"),
            )],
            &FindingScope::default(),
        );
        assert_eq!(unscoped.findings.len(), 1);
        assert_eq!(
            unscoped.exit_code(),
            exit::FINDINGS,
            "an open finding keeps 3"
        );
        // A run that finds an acknowledged finding again reports it, without 3.
        unscoped.findings[0].acknowledged_at = Some(Utc::now());
        assert_eq!(unscoped.exit_code(), exit::OK);
        unscoped.error("-", "op", "failed");
        assert_eq!(unscoped.exit_code(), exit::OPERATIONAL_ERRORS);

        // The reading account of an organization trail's bucket covers the
        // findings about its members' files there.
        let org_finding = finding(FindingKind::DigestMissing, "222222222222", "k9", None);
        let reader_scope = FindingScope {
            accounts: vec!["999999999999".to_string()],
            readers: [("b".to_string(), "999999999999".to_string())].into(),
            ..FindingScope::default()
        };
        assert!(reader_scope.covers(&org_finding));
        let without_readers = FindingScope {
            readers: Default::default(),
            ..reader_scope
        };
        assert!(!without_readers.covers(&org_finding));
    }

    #[test]
    fn findings_win_over_errors_in_the_exit_code() {
        let mut report = Report::new("collect");
        assert_eq!(report.exit_code(), 0);
        report.error("111122223333", "assume_role", "denied");
        assert_eq!(report.exit_code(), 1);
        report.findings.push(Finding::new(
            FindingKind::DigestMissing,
            "111122223333",
            "b",
            "k",
            "gone".into(),
        ));
        assert_eq!(report.exit_code(), 3);
    }

    #[test]
    fn report_json_has_the_contract_fields() {
        let mut report = Report::new("verify");
        report.findings.push(Finding::new(
            FindingKind::DigestMoved,
            "111122223333",
            "b",
            "k",
            "moved".into(),
        ));
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        for field in [
            "command",
            "started_at",
            "finished_at",
            "stats",
            "errors",
            "findings",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        let finding = &json["findings"][0];
        for field in [
            "kind",
            "severity",
            "account_id",
            "region",
            "trail",
            "bucket",
            "key",
            "archive_key",
            "detail",
            "first_seen",
            "new",
        ] {
            assert!(finding.get(field).is_some(), "missing finding.{field}");
        }
        assert_eq!(finding["kind"], "digest_moved");
        assert_eq!(finding["severity"], "critical");
        assert!(finding["region"].is_null());
    }
}
