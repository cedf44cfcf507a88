//! The run report of `docs/cli-contract.md` (`--json`) and the exit status rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::findings::{Finding, FindingSet};

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
    /// while a run observes them.
    pub fn include_open_findings(&mut self, recorded: Vec<Finding>, scope: &FindingScope) {
        self.add_findings(
            recorded
                .into_iter()
                .filter(|f| !f.kind.is_state() && f.is_open() && scope.covers(f))
                .map(|mut f| {
                    f.new = false;
                    // The store's bookkeeping; the run announces them.
                    f.unannounced = None;
                    f
                }),
        );
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
        if self.findings.iter().any(Finding::is_open) {
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
        let keys: Vec<(&str, bool)> = report
            .findings
            .iter()
            .map(|f| (f.key.as_str(), f.new))
            .collect();
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
