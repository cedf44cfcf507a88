//! `run/<slot>` — [`RunRecord`]: the summary of one run (command, times,
//! stats, error and finding counts, exit code). The store cannot delete, so
//! the last [`RUN_SLOTS`] runs live in a ring of slots: a new run takes a free
//! slot or the one of the oldest run.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::error::SeamError;
use crate::model::findings::Severity;
use crate::model::report::{Report, Stats};
use crate::seams::ProgressStore;

/// Layout version of a run record.
const RECORD_VERSION: u8 = 1;
/// How many run summaries are kept.
pub const RUN_SLOTS: usize = 100;
const RUN_PREFIX: &str = "run/";

/// The summary of one run, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub v: u8,
    pub command: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub stats: Stats,
    pub errors: u64,
    pub findings: u64,
    pub new_findings: u64,
    pub critical_findings: u64,
    pub exit_code: i32,
    /// Stopped by SIGTERM/SIGINT before it finished.
    #[serde(default)]
    pub interrupted: bool,
}

impl RunRecord {
    pub fn from_report(report: &Report, interrupted: bool) -> RunRecord {
        RunRecord {
            v: RECORD_VERSION,
            command: report.command.clone(),
            started_at: report.started_at,
            finished_at: report.finished_at,
            stats: report.stats.clone(),
            errors: report.errors.len() as u64,
            findings: report.findings.len() as u64,
            new_findings: report.findings.iter().filter(|f| f.new).count() as u64,
            critical_findings: report
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Critical)
                .count() as u64,
            exit_code: report.exit_code(),
            interrupted,
        }
    }

    fn decode(bytes: &[u8]) -> Option<RunRecord> {
        serde_json::from_slice::<RunRecord>(bytes)
            .ok()
            .filter(|record| record.v == RECORD_VERSION)
    }
}

/// Records `record`, keeping the last `slots` runs.
pub fn record_run(
    store: &dyn ProgressStore,
    record: &RunRecord,
    slots: usize,
) -> Result<(), SeamError> {
    let slots = slots.max(1);
    let existing = store.state_under(RUN_PREFIX)?;
    let mut used: BTreeMap<usize, Option<DateTime<Utc>>> = BTreeMap::new();
    for (name, bytes) in &existing {
        let Some(slot) = name
            .strip_prefix(RUN_PREFIX)
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|slot| *slot < slots)
        else {
            continue;
        };
        used.insert(slot, RunRecord::decode(bytes).map(|r| r.started_at));
    }
    let slot = (0..slots)
        .find(|slot| !used.contains_key(slot))
        .or_else(|| {
            // Unreadable records go first, then the oldest run.
            used.iter()
                .min_by_key(|(_, started)| **started)
                .map(|(slot, _)| *slot)
        })
        .unwrap_or(0);
    let bytes = serde_json::to_vec(record).map_err(|e| SeamError::Permanent(e.to_string()))?;
    store.put_state(&format!("{RUN_PREFIX}{slot:03}"), &bytes)
}

/// Every recorded run, newest first.
pub fn last_runs(store: &dyn ProgressStore) -> Result<Vec<RunRecord>, SeamError> {
    let mut runs: Vec<RunRecord> = store
        .state_under(RUN_PREFIX)?
        .iter()
        .filter_map(|(_, bytes)| RunRecord::decode(bytes))
        .collect();
    runs.sort_by_key(|run| std::cmp::Reverse(run.started_at));
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::findings::{Finding, FindingKind};
    use crate::testsuite::memory::MemoryStore;
    use chrono::Duration;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn run_at(started: DateTime<Utc>) -> RunRecord {
        let mut report = Report::new("collect");
        report.started_at = started;
        report.finished_at = started + Duration::seconds(3);
        report.stats.objects_copied = 5;
        RunRecord::from_report(&report, false)
    }

    #[test]
    fn run_records_keep_the_last_n_newest_first() {
        let store = MemoryStore::default();
        let base = at("2026-01-01T00:00:00Z");
        for minute in 0..7 {
            record_run(&store, &run_at(base + Duration::minutes(minute)), 5).unwrap();
        }
        let runs = last_runs(&store).unwrap();
        assert_eq!(runs.len(), 5);
        let starts: Vec<i64> = runs
            .iter()
            .map(|r| (r.started_at - base).num_minutes())
            .collect();
        assert_eq!(starts, vec![6, 5, 4, 3, 2]);
        assert_eq!(runs[0].stats.objects_copied, 5);
        assert_eq!(store.state_under("run/").unwrap().len(), 5);
        // A garbled slot is reused first.
        store.put_state("run/001", b"{").unwrap();
        record_run(&store, &run_at(base + Duration::minutes(10)), 5).unwrap();
        let runs = last_runs(&store).unwrap();
        assert_eq!(runs.len(), 5);
        assert_eq!((runs[0].started_at - base).num_minutes(), 10);
    }

    #[test]
    fn run_records_count_findings_and_exit_code() {
        let mut report = Report::new("verify");
        report.error("1", "op", "failed");
        report.findings.push(Finding::new(
            FindingKind::DigestMissing,
            "1",
            "b",
            "k",
            "gone".into(),
        ));
        let mut old = Finding::new(FindingKind::ChainGap, "1", "b", "k2", "gap".into());
        old.new = false;
        report.findings.push(old);
        let record = RunRecord::from_report(&report, true);
        assert_eq!(
            (
                record.errors,
                record.findings,
                record.new_findings,
                record.critical_findings,
                record.exit_code,
                record.interrupted
            ),
            (1, 2, 1, 1, 3, true)
        );
    }
}
