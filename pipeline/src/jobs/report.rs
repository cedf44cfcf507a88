//! `report`: the coverage report's data. Per member account, Region and day
//! (the grid): the trail files collected, what validation vouched for, and
//! the open findings about them; beside it the chain heads and their age,
//! the open findings with their evidence keys and the run history.
//!
//! Read from the progress store alone (no AWS call), one record at a time:
//! objects (`for_each_object`), validation evidence (`validated/…`) and
//! findings are streamed, and only the grid's cells are held.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::cloudtrail::keys::{parse_trail_key, Family, DIGEST_FOLDER};
use crate::jobs::status::{AccountLag, ChainHead, StatusView};
use crate::model::error::SeamError;
use crate::model::findings::{Finding, FindingKind, Severity};
use crate::progress::runs::RunRecord;
use crate::progress::validation::{PartitionRecord, STATE_VERSION, VALIDATED_PREFIX};
use crate::seams::ProgressStore;

/// Layout version of the report's JSON.
const REPORT_VERSION: u8 = 1;
/// Days the grid shows unless asked otherwise, and at most.
pub const DEFAULT_DAYS: u32 = 31;
pub const MAX_DAYS: u32 = 366;
/// Open findings listed in full (the counts cover all).
pub const FINDINGS_LISTED: usize = 500;

/// What the report is asked for.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    /// Days of the grid, ending with today (UTC); 1..=[`MAX_DAYS`].
    pub days: u32,
    /// The archive bucket: evidence links are `s3://<bucket>/<archive key>`.
    pub archive_bucket: String,
    /// Listed in the lag table even before anything was archived for them.
    pub configured_accounts: Vec<String>,
}

/// How a cell of the grid reads, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    /// Open findings about files of this day.
    Findings,
    /// Files collected, not every digest validated (yet).
    Collected,
    /// Files collected and every archived digest of the day validated.
    Validated,
}

impl CellStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CellStatus::Findings => "findings",
            CellStatus::Collected => "collected",
            CellStatus::Validated => "validated",
        }
    }
}

/// One member account, Region and day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellCounts {
    /// Log files archived (every `CloudTrail*` folder).
    pub log_files: u64,
    /// Digest files archived.
    pub digests: u64,
    /// Log files a cleanly validated digest vouches for.
    pub log_files_validated: u64,
    /// Digests validated cleanly.
    pub digests_validated: u64,
    /// Open findings that say history is missing (`chain_gap`,
    /// `digest_missing`, `log_file_missing`).
    pub gaps: u64,
    /// Every open finding about a file of this day (gaps included).
    pub findings: u64,
    /// Open findings by kind.
    pub kinds: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub account_id: String,
    pub region: String,
    pub day: NaiveDate,
    pub status: CellStatus,
    #[serde(flatten)]
    pub counts: CellCounts,
}

/// The open findings: the newest listed, all counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFindings {
    pub open: u64,
    pub critical: u64,
    /// Open findings about no file of the grid's days (older, or not a
    /// trail key, e.g. `archive_misconfigured`).
    pub outside_grid: u64,
    /// Critical first, then newest first; at most [`FINDINGS_LISTED`].
    pub listed: Vec<Finding>,
    pub not_listed: u64,
}

/// Everything the coverage report shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageReport {
    pub v: u8,
    pub generated_at: DateTime<Utc>,
    pub archive_bucket: String,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// Cells with anything in them, by account, Region and day.
    pub cells: Vec<Cell>,
    pub accounts: Vec<AccountLag>,
    pub chains: Vec<ChainHead>,
    pub findings: OpenFindings,
    /// Newest first.
    pub runs: Vec<RunRecord>,
}

impl CoverageReport {
    /// Every day of the grid, oldest first.
    pub fn days(&self) -> Vec<NaiveDate> {
        self.first_day
            .iter_days()
            .take_while(|day| *day <= self.last_day)
            .collect()
    }
}

fn is_gap(kind: FindingKind) -> bool {
    matches!(
        kind,
        FindingKind::ChainGap | FindingKind::DigestMissing | FindingKind::LogFileMissing
    )
}

/// Account folder, folder, Region and day of a partition prefix
/// `…/<account>/<folder>/<region>/YYYY/MM/DD/`.
fn partition_of(prefix: &str) -> Option<(&str, &str, &str, NaiveDate)> {
    let mut segments = prefix.strip_suffix('/')?.rsplit('/');
    let day = segments.next()?;
    let month = segments.next()?;
    let year = segments.next()?;
    let region = segments.next()?;
    let folder = segments.next()?;
    let account = segments.next()?;
    let date = NaiveDate::parse_from_str(&format!("{year}-{month}-{day}"), "%Y-%m-%d").ok()?;
    Some((account, folder, region, date))
}

/// Keeps the [`FINDINGS_LISTED`] to list: critical first, newest first.
fn keep_listed(listed: &mut Vec<Finding>) {
    listed.sort_by(|a, b| {
        let rank = |f: &Finding| u8::from(f.severity != Severity::Critical);
        rank(a)
            .cmp(&rank(b))
            .then(b.first_seen.cmp(&a.first_seen))
            .then(a.key.cmp(&b.key))
    });
    listed.truncate(FINDINGS_LISTED);
}

/// The `report` job.
pub fn report(
    store: &dyn ProgressStore,
    request: &ReportRequest,
    now: DateTime<Utc>,
) -> Result<CoverageReport, SeamError> {
    let days = request.days.clamp(1, MAX_DAYS);
    let last_day = now.date_naive();
    let first_day = last_day - Duration::days(i64::from(days) - 1);
    let in_grid = |day: NaiveDate| first_day <= day && day <= last_day;
    let mut cells: BTreeMap<(String, String, NaiveDate), CellCounts> = BTreeMap::new();

    store.for_each_object(&mut |source, _record| {
        let Ok(key) = parse_trail_key(&source.key) else {
            return;
        };
        if !in_grid(key.date) {
            return;
        }
        let cell = cells
            .entry((key.account_id, key.region, key.date))
            .or_default();
        match key.family {
            Family::Digest => cell.digests += 1,
            Family::Log { .. } => cell.log_files += 1,
        }
    })?;

    store.for_each_state_under(VALIDATED_PREFIX, &mut |name, value| {
        // `validated/<reader>/<bucket>/<partition prefix>`
        let Some(rest) = name.strip_prefix(VALIDATED_PREFIX) else {
            return;
        };
        let Some(prefix) = rest.splitn(3, '/').nth(2) else {
            return;
        };
        let Some((account, folder, region, day)) = partition_of(prefix) else {
            return;
        };
        if !in_grid(day) {
            return;
        }
        let Ok(record) = serde_json::from_slice::<PartitionRecord<BTreeMap<String, String>>>(value)
        else {
            return;
        };
        if record.v != STATE_VERSION {
            return;
        }
        let cell = cells
            .entry((account.to_string(), region.to_string(), day))
            .or_default();
        let vouched = record.files.len() as u64;
        if folder == DIGEST_FOLDER {
            cell.digests_validated += vouched;
        } else {
            cell.log_files_validated += vouched;
        }
    })?;

    let mut findings = OpenFindings::default();
    let mut listed = Vec::new();
    store.for_each_finding(&mut |mut finding| {
        if !finding.is_open() {
            return;
        }
        finding.new = false;
        findings.open += 1;
        if finding.severity == Severity::Critical {
            findings.critical += 1;
        }
        match parse_trail_key(&finding.key) {
            Ok(key) if in_grid(key.date) => {
                let cell = cells
                    .entry((key.account_id, key.region, key.date))
                    .or_default();
                cell.findings += 1;
                if is_gap(finding.kind) {
                    cell.gaps += 1;
                }
                *cell
                    .kinds
                    .entry(finding.kind.as_str().to_string())
                    .or_default() += 1;
            }
            _ => findings.outside_grid += 1,
        }
        listed.push(finding);
        // Bounded however many are on record.
        if listed.len() >= FINDINGS_LISTED * 8 {
            keep_listed(&mut listed);
        }
    })?;
    keep_listed(&mut listed);
    findings.not_listed = findings.open - listed.len() as u64;
    findings.listed = listed;

    let status = StatusView::from_store(store, &request.configured_accounts, now)?;
    let cells = cells
        .into_iter()
        .map(|((account_id, region, day), counts)| {
            let status = if counts.findings > 0 {
                CellStatus::Findings
            } else if counts.digests > 0 && counts.digests_validated >= counts.digests {
                CellStatus::Validated
            } else {
                CellStatus::Collected
            };
            Cell {
                account_id,
                region,
                day,
                status,
                counts,
            }
        })
        .collect();
    Ok(CoverageReport {
        v: REPORT_VERSION,
        generated_at: now,
        archive_bucket: request.archive_bucket.clone(),
        first_day,
        last_day,
        cells,
        accounts: status.accounts,
        chains: status.chains,
        findings,
        runs: status.runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::object::SourceRef;
    use crate::model::report::Report;
    use crate::progress::runs::{record_run, RUN_SLOTS};
    use crate::testsuite::memory::MemoryStore;

    const ACCOUNT: &str = "222222222201";

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn log(day: &str, minute: u32) -> String {
        let compact = day.replace('/', "");
        format!(
            "AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{day}/{ACCOUNT}_CloudTrail_us-east-1_{compact}T01{minute:02}Z_abcdefghijklmnop.json.gz"
        )
    }

    fn digest(day: &str, hour: u32) -> String {
        let compact = day.replace('/', "");
        format!(
            "AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/{day}/{ACCOUNT}_CloudTrail-Digest_us-east-1_Trail_us-east-1_{compact}T{hour:02}0000Z.json.gz"
        )
    }

    fn archive(store: &MemoryStore, key: &str) {
        let source = SourceRef {
            account_id: ACCOUNT.into(),
            bucket: "trail-bucket".into(),
            key: key.into(),
        };
        store
            .record_object(&source, &crate::testsuite::placeholder_record())
            .unwrap();
    }

    fn vouch(store: &MemoryStore, partition: &str, ids: &[&str]) {
        let record = PartitionRecord {
            v: STATE_VERSION,
            files: ids
                .iter()
                .map(|id| (id.to_string(), "00".to_string()))
                .collect::<BTreeMap<_, _>>(),
        };
        store
            .put_state(
                &format!("validated/{ACCOUNT}/trail-bucket/{partition}"),
                &serde_json::to_vec(&record).unwrap(),
            )
            .unwrap();
    }

    fn request(days: u32) -> ReportRequest {
        ReportRequest {
            days,
            archive_bucket: "archive".into(),
            configured_accounts: vec![ACCOUNT.into()],
        }
    }

    #[test]
    fn the_grid_counts_collected_validated_and_found_per_account_region_and_day() {
        let store = MemoryStore::default();
        let now = at("2026-01-03T12:00:00Z");
        // Jan 1: collected and validated. Jan 2: collected, a digest tampered.
        // Jan 3: collected, not validated yet. Far older: outside the grid.
        for (day, _) in [("2026/01/01", 0), ("2026/01/02", 0), ("2026/01/03", 0)] {
            archive(&store, &log(day, 5));
            archive(&store, &log(day, 10));
            archive(&store, &digest(day, 2));
        }
        archive(&store, &log("2025/06/01", 5));
        archive(&store, "not/a/trail/key");
        vouch(
            &store,
            "AWSLogs/222222222201/CloudTrail-Digest/us-east-1/2026/01/01/",
            &["d1"],
        );
        vouch(
            &store,
            "AWSLogs/222222222201/CloudTrail/us-east-1/2026/01/01/",
            &["l1", "l2"],
        );
        vouch(
            &store,
            "AWSLogs/222222222201/CloudTrail/us-east-1/2025/06/01/",
            &["old"],
        );
        store
            .put_state("validated/broken", b"not json at all")
            .unwrap();
        store
            .record_finding(
                Finding::new(
                    FindingKind::DigestSignatureInvalid,
                    ACCOUNT,
                    "trail-bucket",
                    &digest("2026/01/02", 2),
                    "signature <b>does not</b> verify".into(),
                )
                .with_archive_key(Some("archive/prefix/key")),
            )
            .unwrap();
        store
            .record_finding(Finding::new(
                FindingKind::DigestMissing,
                ACCOUNT,
                "trail-bucket",
                &digest("2026/01/02", 3),
                "gone".into(),
            ))
            .unwrap();
        let acknowledged = store
            .record_finding(Finding::new(
                FindingKind::LogFileMissing,
                ACCOUNT,
                "trail-bucket",
                &log("2026/01/03", 10),
                "triaged".into(),
            ))
            .unwrap();
        store.acknowledge_finding(&acknowledged, now).unwrap();
        store
            .record_finding(Finding::new(
                FindingKind::ArchiveMisconfigured,
                "-",
                "archive",
                "",
                "versioning off".into(),
            ))
            .unwrap();
        let mut run = Report::new("collect");
        run.started_at = now - Duration::hours(1);
        run.finished_at = now - Duration::minutes(59);
        record_run(&store, &RunRecord::from_report(&run, false), RUN_SLOTS).unwrap();

        let report = report(&store, &request(3), now).unwrap();
        assert_eq!(
            report.first_day,
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
        );
        assert_eq!(report.days().len(), 3);
        let by_day: BTreeMap<String, &Cell> = report
            .cells
            .iter()
            .map(|cell| (cell.day.to_string(), cell))
            .collect();
        assert_eq!(by_day.len(), 3, "{:?}", report.cells);
        let first = by_day["2026-01-01"];
        assert_eq!(first.status, CellStatus::Validated);
        assert_eq!(
            (first.account_id.as_str(), first.region.as_str()),
            (ACCOUNT, "us-east-1")
        );
        assert_eq!(first.counts.log_files, 2);
        assert_eq!(first.counts.digests, 1);
        assert_eq!(first.counts.digests_validated, 1);
        assert_eq!(first.counts.log_files_validated, 2);
        let second = by_day["2026-01-02"];
        assert_eq!(second.status, CellStatus::Findings);
        assert_eq!(second.counts.findings, 2);
        assert_eq!(second.counts.gaps, 1, "digest_missing is a gap");
        assert_eq!(second.counts.kinds["digest_signature_invalid"], 1);
        let third = by_day["2026-01-03"];
        assert_eq!(
            third.status,
            CellStatus::Collected,
            "acknowledged: not open"
        );
        assert_eq!(third.counts.findings, 0);

        assert_eq!(report.findings.open, 3);
        assert_eq!(report.findings.critical, 3);
        assert_eq!(report.findings.outside_grid, 1, "archive_misconfigured");
        assert_eq!(report.findings.listed.len(), 3);
        assert_eq!(report.findings.not_listed, 0);
        assert!(report.findings.listed.iter().all(|f| !f.new));
        assert_eq!(report.runs.len(), 1);
        assert_eq!(report.accounts[0].account_id, ACCOUNT);
        // JSON round-trips.
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(
            serde_json::from_str::<CoverageReport>(&json).unwrap(),
            report
        );
        assert!(json.contains("\"status\":\"findings\""));
    }

    #[test]
    fn findings_listed_are_bounded_critical_first() {
        let store = MemoryStore::default();
        let now = at("2026-01-03T12:00:00Z");
        for n in 0..(FINDINGS_LISTED + 20) {
            store
                .record_finding(Finding::new(
                    FindingKind::ChainGap,
                    ACCOUNT,
                    "b",
                    &format!("k{n}"),
                    "gap".into(),
                ))
                .unwrap();
        }
        store
            .record_finding(Finding::new(
                FindingKind::LogFileHashMismatch,
                ACCOUNT,
                "b",
                "critical",
                "altered".into(),
            ))
            .unwrap();
        let report = report(&store, &request(1), now).unwrap();
        assert_eq!(report.findings.open, FINDINGS_LISTED as u64 + 21);
        assert_eq!(report.findings.listed.len(), FINDINGS_LISTED);
        assert_eq!(report.findings.not_listed, 21);
        assert_eq!(report.findings.listed[0].key, "critical");
        assert_eq!(report.cells, vec![], "no trail keys, no cells");
    }

    #[test]
    fn partitions_are_read_from_the_right() {
        assert_eq!(
            partition_of("p/AWSLogs/o-abc/111/CloudTrail/eu-west-1/2026/02/29/"),
            None,
            "no such day"
        );
        assert_eq!(
            partition_of("AWSLogs/o-abc/111/CloudTrail/eu-west-1/2024/02/29/"),
            Some((
                "111",
                "CloudTrail",
                "eu-west-1",
                NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
            ))
        );
        assert_eq!(partition_of("2024/02/29"), None);
        assert_eq!(partition_of(""), None);
    }

    #[test]
    fn days_are_bounded() {
        let store = MemoryStore::default();
        let now = at("2026-01-03T12:00:00Z");
        assert_eq!(report(&store, &request(0), now).unwrap().days().len(), 1);
        assert_eq!(
            report(&store, &request(100_000), now).unwrap().days().len(),
            MAX_DAYS as usize
        );
    }
}
