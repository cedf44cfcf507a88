//! The findings job: lists the recorded findings that pass a filter; when
//! asked, acknowledges the open ones among them, so they no longer keep runs
//! at exit status 3 (they stay recorded and listed).

use chrono::{DateTime, Utc};

use crate::alerts;
use crate::copy::CopySettings;
use crate::ledger::LedgerEntry;
use crate::model::findings::FindingKind;
use crate::model::report::Report;
use crate::seams::{Archive, ProgressStore};

/// Which findings to list.
#[derive(Debug, Clone, Default)]
pub struct FindingsFilter {
    /// Only findings about these accounts (empty: all).
    pub accounts: Vec<String>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<FindingKind>,
    /// Only findings first seen at or after this time.
    pub since: Option<DateTime<Utc>>,
}

impl FindingsFilter {
    /// The filter of `findings --account … --kind … --since …`; the error is
    /// the usage message.
    pub fn parse(
        accounts: &[String],
        kinds: &[String],
        since: Option<&str>,
    ) -> Result<FindingsFilter, String> {
        let mut wanted_kinds = Vec::new();
        for kind in kinds {
            match FindingKind::parse(kind) {
                Some(parsed) => wanted_kinds.push(parsed),
                None => return Err(format!("unknown finding kind `{kind}`")),
            }
        }
        let since = match since.map(parse_since) {
            Some(Ok(time)) => Some(time),
            Some(Err(())) => return Err("--since must be RFC 3339 or YYYY-MM-DD".to_string()),
            None => None,
        };
        Ok(FindingsFilter {
            accounts: accounts.to_vec(),
            kinds: wanted_kinds,
            since,
        })
    }
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, ()> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|time| time.and_utc())
        .ok_or(())
}

/// Where acknowledgements are written besides the store: the archive's
/// findings ledger.
pub struct Ledger<'a> {
    pub archive: &'a dyn Archive,
    pub settings: &'a CopySettings,
    /// The process's shard, named in the ledger key.
    pub shard: Option<crate::model::shard::Shard>,
}

/// What the findings job did.
pub struct FindingsOutcome {
    /// The findings listed (none of them new), errors included.
    pub report: Report,
    /// How many were acknowledged by this call.
    pub acknowledged_now: usize,
}

/// The findings job: the recorded findings passing `filter`; with
/// `acknowledge`, the open ones among them are acknowledged in the store and
/// (with `ledger`) in the findings ledger. A state finding
/// ([`FindingKind::is_state`]) is acknowledged too, but that only records
/// that an operator saw it: the next run that observes the state re-opens it
/// (see [`crate::model::findings::Finding::recorded_over`]). The listing
/// shows each finding as stored, `unannounced` included.
pub async fn findings(
    store: &dyn ProgressStore,
    ledger: Option<Ledger<'_>>,
    filter: &FindingsFilter,
    acknowledge: bool,
) -> FindingsOutcome {
    let mut report = Report::new("findings");
    match store.findings() {
        Ok(findings) => {
            report.findings = findings
                .into_iter()
                .filter(|f| filter.accounts.is_empty() || filter.accounts.contains(&f.account_id))
                .filter(|f| filter.kinds.is_empty() || filter.kinds.contains(&f.kind))
                .filter(|f| filter.since.is_none_or(|since| f.first_seen >= since))
                .map(|mut f| {
                    f.new = false;
                    f
                })
                .collect();
        }
        Err(error) => report.error("-", "read findings", error.to_string()),
    }
    let mut entry = LedgerEntry::new("findings", Utc::now());
    entry.shard = ledger.as_ref().and_then(|ledger| ledger.shard);
    if acknowledge {
        let mut failures = Vec::new();
        for finding in report.findings.iter_mut().filter(|f| f.is_open()) {
            match store.acknowledge_finding(finding, entry.recorded_at) {
                Ok(true) => {
                    finding.acknowledged_at = Some(entry.recorded_at);
                    entry.acknowledged.push(finding.clone());
                }
                Ok(false) => {}
                Err(error) => failures.push((finding.account_id.clone(), error.to_string())),
            }
        }
        for (account_id, message) in failures {
            report.error(&account_id, "acknowledge finding", message);
        }
        if let Err(error) = store.flush() {
            report.error("-", "flush_store", error.to_string());
        }
        if let (Some(ledger), false) = (&ledger, entry.is_empty()) {
            alerts::append_to_ledger(ledger.archive, ledger.settings, &mut report, &entry).await;
        }
    }
    report.finished_at = Utc::now();
    FindingsOutcome {
        report,
        acknowledged_now: entry.acknowledged.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::findings::Finding;
    use crate::testsuite::memory::MemoryStore;

    #[test]
    fn filters_are_parsed_and_garbage_refused() {
        let filter =
            FindingsFilter::parse(&[], &["digest_missing".into()], Some("2026-01-02")).unwrap();
        assert_eq!(filter.kinds, vec![FindingKind::DigestMissing]);
        assert_eq!(
            filter.since.unwrap().to_rfc3339(),
            "2026-01-02T00:00:00+00:00"
        );
        assert!(FindingsFilter::parse(&[], &["nope".into()], None)
            .unwrap_err()
            .contains("unknown finding kind `nope`"));
        assert!(FindingsFilter::parse(&[], &[], Some("yesterday")).is_err());
    }

    #[tokio::test]
    async fn acknowledging_marks_the_listed_open_findings() {
        let store = MemoryStore::default();
        for account in ["111111111111", "222222222222"] {
            store
                .record_finding(Finding::new(
                    FindingKind::DigestMissing,
                    account,
                    "b",
                    "k",
                    "gone".into(),
                ))
                .unwrap();
        }
        let filter = FindingsFilter::parse(&["111111111111".into()], &[], None).unwrap();
        let outcome = findings(&store, None, &filter, true).await;
        assert_eq!(outcome.acknowledged_now, 1);
        assert_eq!(outcome.report.findings.len(), 1);
        assert!(!outcome.report.findings[0].new);
        assert_eq!(outcome.report.exit_code(), 0);
        let again = findings(&store, None, &filter, true).await;
        assert_eq!(again.acknowledged_now, 0);
        let open = store
            .findings()
            .unwrap()
            .iter()
            .filter(|f| f.is_open())
            .count();
        assert_eq!(open, 1);
    }
}
