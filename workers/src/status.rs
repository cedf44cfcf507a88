//! What `trailvault status` shows, and the records it is built from:
//!
//! * `run/<slot>` — [`RunRecord`]: the summary of one run (command, times,
//!   stats, error and finding counts, exit code). The store cannot delete,
//!   so the last [`RUN_SLOTS`] runs live in a ring of slots: a new run takes
//!   a free slot or the one of the oldest run.
//! * `lag/<account>` — [`LagRecord`]: the newest CloudTrail file time (log
//!   delivery or digest end, from the key name) archived for a member account,
//!   written after each collection by [`LagTracker`].
//! * `chain/…` — the validation state of each digest chain (written by
//!   verify); status reads the head's key, end time and validity.
//!
//! The store is one sled instance per process, and a running daemon holds it.
//! So every run also writes the status as a JSON snapshot beside the store
//! (`<store path>.status.json`), and `status` reads that when it cannot open
//! the store.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use trailvault_pipeline::cloudtrail::keys::{parse_trail_key, FileName};
use trailvault_pipeline::model::findings::{Finding, Severity};
use trailvault_pipeline::model::object::{ObjectRecord, SourceRef};
use trailvault_pipeline::model::report::{Report, Stats};
use trailvault_pipeline::seams::ProgressStore;
use trailvault_pipeline::SeamError;

/// Layout version of every record written here.
const RECORD_VERSION: u8 = 1;
/// How many run summaries are kept.
pub const RUN_SLOTS: usize = 100;
const RUN_PREFIX: &str = "run/";
const LAG_PREFIX: &str = "lag/";
const CHAIN_PREFIX: &str = "chain/";
/// Critical findings listed in full by `status` (the counts cover all).
const CRITICAL_LISTED: usize = 50;

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

/// `lag/<account>`: the newest archived file of a member account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LagRecord {
    pub v: u8,
    pub newest_file_time: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The time a CloudTrail key names (log delivery or digest end) and the
/// account folder it is in.
fn file_time(key: &str) -> Option<(String, DateTime<Utc>)> {
    let parsed = parse_trail_key(key).ok()?;
    let time = match &parsed.file {
        FileName::Log { delivered_at, .. } => delivered_at.and_utc(),
        FileName::Digest { end_time, .. } => end_time.and_utc(),
    };
    Some((parsed.account_id, time))
}

/// A [`ProgressStore`] that notes, per member account, the newest file time
/// of every object recorded through it; [`LagTracker::save`] writes them as
/// `lag/<account>`. Names dated after `now` (plus a delivery hour) are
/// ignored: a planted future name must not hide a stalled account.
pub struct LagTracker<'a> {
    inner: &'a dyn ProgressStore,
    now: DateTime<Utc>,
    newest: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

impl<'a> LagTracker<'a> {
    pub fn new(inner: &'a dyn ProgressStore, now: DateTime<Utc>) -> LagTracker<'a> {
        LagTracker {
            inner,
            now,
            newest: Mutex::new(BTreeMap::new()),
        }
    }

    fn newest(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DateTime<Utc>>> {
        self.newest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn note(&self, key: &str) {
        let Some((account, time)) = file_time(key) else {
            return;
        };
        if time > self.now + Duration::hours(1) {
            return;
        }
        let mut newest = self.newest();
        let entry = newest.entry(account).or_insert(time);
        if time > *entry {
            *entry = time;
        }
    }

    /// Writes `lag/<account>` for every account seen, never moving a newer
    /// recorded time back.
    pub fn save(&self) -> Result<usize, SeamError> {
        let newest = self.newest().clone();
        for (account, time) in &newest {
            let name = format!("{LAG_PREFIX}{account}");
            let previous = self
                .inner
                .get_state(&name)?
                .and_then(|bytes| serde_json::from_slice::<LagRecord>(&bytes).ok())
                .filter(|record| record.v == RECORD_VERSION)
                .map(|record| record.newest_file_time);
            let record = LagRecord {
                v: RECORD_VERSION,
                newest_file_time: previous.map_or(*time, |previous| previous.max(*time)),
                updated_at: self.now,
            };
            let bytes =
                serde_json::to_vec(&record).map_err(|e| SeamError::Permanent(e.to_string()))?;
            self.inner.put_state(&name, &bytes)?;
        }
        Ok(newest.len())
    }
}

impl ProgressStore for LagTracker<'_> {
    fn object(&self, source: &SourceRef) -> Result<Option<ObjectRecord>, SeamError> {
        self.inner.object(source)
    }

    fn record_object(&self, source: &SourceRef, record: &ObjectRecord) -> Result<(), SeamError> {
        self.inner.record_object(source, record)?;
        self.note(&source.key);
        Ok(())
    }

    fn objects_under(
        &self,
        account_id: &str,
        bucket: &str,
        key_prefix: &str,
    ) -> Result<Vec<(String, ObjectRecord)>, SeamError> {
        self.inner.objects_under(account_id, bucket, key_prefix)
    }

    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>, SeamError> {
        self.inner.get_state(name)
    }

    fn put_state(&self, name: &str, value: &[u8]) -> Result<(), SeamError> {
        self.inner.put_state(name, value)
    }

    fn state_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, SeamError> {
        self.inner.state_under(prefix)
    }

    fn finding(&self, identity: &str) -> Result<Option<Finding>, SeamError> {
        self.inner.finding(identity)
    }

    fn put_finding(&self, identity: &str, finding: &Finding) -> Result<(), SeamError> {
        self.inner.put_finding(identity, finding)
    }

    fn findings(&self) -> Result<Vec<Finding>, SeamError> {
        self.inner.findings()
    }

    fn flush(&self) -> Result<(), SeamError> {
        self.inner.flush()
    }
}

/// One member account's lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLag {
    pub account_id: String,
    /// `None`: nothing archived for it yet.
    pub newest_file_time: Option<DateTime<Utc>>,
    /// Seconds from the newest file to now.
    pub lag_seconds: Option<i64>,
}

/// The head of one digest chain, as validation left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// `<reader>/<bucket>/<root>CloudTrail-Digest/<region>/<trail>_<home>[_backfill]`.
    pub chain_id: String,
    pub account_id: Option<String>,
    pub region: Option<String>,
    pub trail: Option<String>,
    pub backfill: bool,
    pub head_end: Option<DateTime<Utc>>,
    pub head_key: Option<String>,
    /// Whether the head digest passed its own checks.
    pub head_valid: Option<bool>,
    pub age_seconds: Option<i64>,
}

/// Open findings (recorded and not acknowledged): counts by kind and the
/// critical ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingsSummary {
    pub open: u64,
    /// Findings an operator acknowledged (not counted above).
    #[serde(default)]
    pub acknowledged: u64,
    pub critical_total: u64,
    pub by_kind: BTreeMap<String, u64>,
    /// The newest critical findings (at most 50).
    pub critical: Vec<Finding>,
}

/// Everything `status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub v: u8,
    /// When the numbers were read from the store.
    pub generated_at: DateTime<Utc>,
    /// `store`, or `snapshot` when a running trailvault holds the store.
    pub source: String,
    pub runs: Vec<RunRecord>,
    pub accounts: Vec<AccountLag>,
    pub chains: Vec<ChainHead>,
    pub findings: FindingsSummary,
}

/// The parts of verify's chain state that status needs (the full layout is
/// `trailvault_pipeline::verify::state::ChainState`; extra fields are ignored).
#[derive(Deserialize)]
struct ChainStateHead {
    v: u8,
    head: Option<HeadLink>,
}

#[derive(Deserialize)]
struct HeadLink {
    key: String,
    end: DateTime<Utc>,
    valid: bool,
}

fn chain_head(name: &str, bytes: &[u8]) -> Option<ChainHead> {
    let chain_id = name.strip_prefix(CHAIN_PREFIX)?.to_string();
    let state = serde_json::from_slice::<ChainStateHead>(bytes)
        .ok()
        .filter(|state| state.v == 1)?;
    let mut head = ChainHead {
        backfill: chain_id.ends_with("_backfill"),
        chain_id,
        account_id: None,
        region: None,
        trail: None,
        head_end: None,
        head_key: None,
        head_valid: None,
        age_seconds: None,
    };
    if let Some(link) = state.head {
        if let Ok(parsed) = parse_trail_key(&link.key) {
            head.account_id = Some(parsed.account_id.clone());
            head.region = Some(parsed.region.clone());
            if let FileName::Digest {
                trail_name,
                backfill,
                ..
            } = &parsed.file
            {
                head.trail = Some(trail_name.clone());
                head.backfill = *backfill;
            }
        }
        head.head_end = Some(link.end);
        head.head_key = Some(link.key);
        head.head_valid = Some(link.valid);
    }
    Some(head)
}

impl StatusView {
    /// Reads the status from the store. `configured_accounts` are listed
    /// even before anything was archived for them.
    pub fn from_store(
        store: &dyn ProgressStore,
        configured_accounts: &[String],
        now: DateTime<Utc>,
    ) -> Result<StatusView, SeamError> {
        let runs = last_runs(store)?;
        let mut lags: BTreeMap<String, Option<DateTime<Utc>>> = configured_accounts
            .iter()
            .map(|account| (account.clone(), None))
            .collect();
        for (name, bytes) in store.state_under(LAG_PREFIX)? {
            let Some(account) = name.strip_prefix(LAG_PREFIX) else {
                continue;
            };
            if let Some(record) = serde_json::from_slice::<LagRecord>(&bytes)
                .ok()
                .filter(|r| r.v == RECORD_VERSION)
            {
                lags.insert(account.to_string(), Some(record.newest_file_time));
            }
        }
        let accounts = lags
            .into_iter()
            .map(|(account_id, newest_file_time)| AccountLag {
                account_id,
                newest_file_time,
                lag_seconds: None,
            })
            .collect();
        let chains = store
            .state_under(CHAIN_PREFIX)?
            .iter()
            .filter_map(|(name, bytes)| chain_head(name, bytes))
            .collect();
        let mut findings = FindingsSummary::default();
        let mut critical = Vec::new();
        for mut finding in store.findings()? {
            // Recorded findings: none of them is new to `status`.
            finding.new = false;
            if !finding.is_open() {
                findings.acknowledged += 1;
                continue;
            }
            findings.open += 1;
            *findings
                .by_kind
                .entry(finding.kind.as_str().to_string())
                .or_default() += 1;
            if finding.severity == Severity::Critical {
                findings.critical_total += 1;
                critical.push(finding);
            }
        }
        critical.sort_by_key(|finding| std::cmp::Reverse(finding.first_seen));
        critical.truncate(CRITICAL_LISTED);
        findings.critical = critical;
        let mut view = StatusView {
            v: RECORD_VERSION,
            generated_at: now,
            source: "store".to_string(),
            runs,
            accounts,
            chains,
            findings,
        };
        view.refresh_ages(now);
        Ok(view)
    }

    /// Recomputes lags and ages against `now` (a snapshot is read later
    /// than it was written).
    pub fn refresh_ages(&mut self, now: DateTime<Utc>) {
        for account in &mut self.accounts {
            account.lag_seconds = account
                .newest_file_time
                .map(|time| (now - time).num_seconds());
        }
        for chain in &mut self.chains {
            chain.age_seconds = chain.head_end.map(|end| (now - end).num_seconds());
        }
    }
}

/// Where the status snapshot of the store at `store_path` is kept.
pub fn snapshot_path(store_path: &Path) -> PathBuf {
    let name = store_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trailvault-store".to_string());
    store_path.with_file_name(format!("{name}.status.json"))
}

/// Writes the snapshot atomically (temporary file, then rename).
pub fn write_snapshot(store_path: &Path, view: &StatusView) -> std::io::Result<()> {
    let path = snapshot_path(store_path);
    let temporary = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(view).map_err(std::io::Error::other)?;
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, &path)
}

pub fn read_snapshot(store_path: &Path) -> Option<StatusView> {
    let bytes = std::fs::read(snapshot_path(store_path)).ok()?;
    serde_json::from_slice::<StatusView>(&bytes)
        .ok()
        .filter(|view| view.v == RECORD_VERSION)
}

/// `5m`, `2h05m`, `3d04h`; `-` for unknown.
pub fn age_text(seconds: Option<i64>) -> String {
    let Some(seconds) = seconds else {
        return "-".to_string();
    };
    let sign = if seconds < 0 { "-" } else { "" };
    let seconds = seconds.unsigned_abs();
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{sign}{days}d{hours:02}h")
    } else if hours > 0 {
        format!("{sign}{hours}h{minutes:02}m")
    } else if seconds >= 60 {
        format!("{sign}{minutes}m")
    } else {
        format!("{sign}{seconds}s")
    }
}

fn time_text(time: Option<DateTime<Utc>>) -> String {
    time.map_or_else(
        || "-".to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// Runs shown by the human table.
const RUNS_SHOWN: usize = 10;

/// The compact human table.
pub fn human(view: &StatusView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trailvault status at {}{}",
        time_text(Some(view.generated_at)),
        if view.source == "snapshot" {
            " (snapshot written by the last run; a running trailvault holds the store)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "\nlast runs ({} recorded)", view.runs.len());
    if view.runs.is_empty() {
        let _ = writeln!(out, "  none");
    } else {
        let _ = writeln!(
            out,
            "  {:<20}  {:<13}  {:>8}  {:>4}  {:>8}  {:>8}  {:>6}  {:>8}",
            "started", "command", "duration", "exit", "copied", "digests", "errors", "findings"
        );
        for run in view.runs.iter().take(RUNS_SHOWN) {
            let seconds = (run.finished_at - run.started_at).num_milliseconds() as f64 / 1000.0;
            let _ = writeln!(
                out,
                "  {:<20}  {:<13}  {:>7.1}s  {:>4}  {:>8}  {:>8}  {:>6}  {:>8}{}",
                time_text(Some(run.started_at)),
                run.command,
                seconds,
                run.exit_code,
                run.stats.objects_copied,
                run.stats.digests_validated,
                run.errors,
                format!("{} ({} new)", run.findings, run.new_findings),
                if run.interrupted { "  interrupted" } else { "" }
            );
        }
    }
    let _ = writeln!(out, "\naccounts (newest archived file, lag)");
    if view.accounts.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for account in &view.accounts {
        let _ = writeln!(
            out,
            "  {:<12}  {:<20}  {:>7}",
            account.account_id,
            time_text(account.newest_file_time),
            age_text(account.lag_seconds)
        );
    }
    let _ = writeln!(out, "\nchain heads (newest validated digest, age)");
    if view.chains.is_empty() {
        let _ = writeln!(out, "  none (run verify)");
    }
    for chain in &view.chains {
        let _ = writeln!(
            out,
            "  {:<12}  {:<14}  {:<20}  {:<20}  {:>7}{}{}",
            chain.account_id.as_deref().unwrap_or("-"),
            chain.region.as_deref().unwrap_or("-"),
            chain.trail.as_deref().unwrap_or("-"),
            time_text(chain.head_end),
            age_text(chain.age_seconds),
            if chain.backfill { "  backfill" } else { "" },
            if chain.head_valid == Some(false) {
                "  INVALID"
            } else {
                ""
            }
        );
    }
    let findings = &view.findings;
    let _ = writeln!(
        out,
        "\nopen findings: {} ({} critical; {} acknowledged)",
        findings.open, findings.critical_total, findings.acknowledged
    );
    for (kind, count) in &findings.by_kind {
        let _ = writeln!(out, "  {kind:<26}  {count}");
    }
    for finding in findings.critical.iter().take(RUNS_SHOWN) {
        let _ = writeln!(
            out,
            "  {} {}",
            time_text(Some(finding.first_seen)),
            crate::output::finding_line(finding)
        );
    }
    if findings.critical_total as usize > RUNS_SHOWN {
        let _ = writeln!(
            out,
            "  ... {} more critical (trailvault findings)",
            findings.critical_total as usize - RUNS_SHOWN
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailvault_pipeline::model::findings::FindingKind;
    use trailvault_pipeline::testsuite::memory::MemoryStore;

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

    const LOG: &str = "AWSLogs/222222222201/CloudTrail/us-east-1/2026/01/01/222222222201_CloudTrail_us-east-1_20260101T0105Z_abcdefghijklmnop.json.gz";
    const DIGEST: &str = "AWSLogs/222222222201/CloudTrail-Digest/us-east-1/2026/01/01/222222222201_CloudTrail-Digest_us-east-1_Trail_us-east-1_20260101T020000Z.json.gz";
    const FUTURE: &str = "AWSLogs/222222222201/CloudTrail/us-east-1/2099/01/01/222222222201_CloudTrail_us-east-1_20990101T0105Z_abcdefghijklmnop.json.gz";

    fn record() -> ObjectRecord {
        ObjectRecord {
            v: 1,
            etag: "e".into(),
            size: 1,
            raw_sha256: [0; 32],
            content_sha256: None,
            content_error: None,
            archive_version_id: None,
            copied_at: 0,
        }
    }

    #[test]
    fn lag_is_the_newest_file_name_time_and_never_moves_back() {
        let store = MemoryStore::default();
        let now = at("2026-01-01T03:00:00Z");
        let tracker = LagTracker::new(&store, now);
        for key in [LOG, DIGEST, FUTURE, "not-a-trail-key"] {
            let source = SourceRef {
                account_id: "999999999999".into(),
                bucket: "b".into(),
                key: key.into(),
            };
            tracker.record_object(&source, &record()).unwrap();
        }
        assert_eq!(tracker.save().unwrap(), 1);
        assert_eq!(
            store.objects_under("999999999999", "b", "").unwrap().len(),
            4
        );
        let view = StatusView::from_store(&store, &["222222222202".to_string()], now).unwrap();
        assert_eq!(
            view.accounts,
            vec![
                AccountLag {
                    account_id: "222222222201".into(),
                    newest_file_time: Some(at("2026-01-01T02:00:00Z")),
                    lag_seconds: Some(3600),
                },
                AccountLag {
                    account_id: "222222222202".into(),
                    newest_file_time: None,
                    lag_seconds: None,
                },
            ]
        );
        // An older file later does not move the lag back.
        let later = LagTracker::new(&store, now);
        let source = SourceRef {
            account_id: "999999999999".into(),
            bucket: "b".into(),
            key: LOG.into(),
        };
        later.record_object(&source, &record()).unwrap();
        later.save().unwrap();
        let view = StatusView::from_store(&store, &[], now).unwrap();
        assert_eq!(
            view.accounts[0].newest_file_time,
            Some(at("2026-01-01T02:00:00Z"))
        );
    }

    #[test]
    fn status_reads_chain_heads_and_findings() {
        let store = MemoryStore::default();
        let now = at("2026-01-01T04:00:00Z");
        let state = serde_json::json!({
            "v": 1,
            "validated": {"spans": []},
            "listed": {"spans": []},
            "head": {"key": DIGEST, "end": "2026-01-01T02:00:00Z", "start": null,
                     "sha256": null, "signature": null, "valid": true}
        });
        let name =
            "chain/222222222201/b/AWSLogs/222222222201/CloudTrail-Digest/us-east-1/Trail_us-east-1";
        store.put_state(name, state.to_string().as_bytes()).unwrap();
        store
            .put_state("chain/x/other-version", b"{\"v\":9}")
            .unwrap();
        store
            .record_finding(Finding::new(
                FindingKind::DigestMissing,
                "222222222201",
                "b",
                "k",
                "gone".into(),
            ))
            .unwrap();
        store
            .record_finding(Finding::new(
                FindingKind::ChainGap,
                "222222222201",
                "b",
                "k",
                "gap".into(),
            ))
            .unwrap();
        let acknowledged = store
            .record_finding(Finding::new(
                FindingKind::LogFileMissing,
                "222222222201",
                "b",
                "k2",
                "triaged".into(),
            ))
            .unwrap();
        assert!(store.acknowledge_finding(&acknowledged, now).unwrap());
        record_run(&store, &run_at(now - Duration::minutes(5)), RUN_SLOTS).unwrap();
        let view = StatusView::from_store(&store, &[], now).unwrap();
        assert_eq!(view.runs.len(), 1);
        assert_eq!(view.chains.len(), 1);
        let chain = &view.chains[0];
        assert_eq!(chain.account_id.as_deref(), Some("222222222201"));
        assert_eq!(chain.trail.as_deref(), Some("Trail"));
        assert_eq!(chain.age_seconds, Some(7200));
        assert!(!chain.backfill);
        assert_eq!(view.findings.open, 2, "the acknowledged one is not open");
        assert_eq!(view.findings.acknowledged, 1);
        assert_eq!(view.findings.critical_total, 1);
        assert_eq!(view.findings.by_kind["chain_gap"], 1);
        let text = human(&view);
        assert!(text.contains("2h00m"), "{text}");
        assert!(
            text.contains("open findings: 2 (1 critical; 1 acknowledged)"),
            "{text}"
        );
        assert!(text.contains("CRITICAL digest_missing"), "{text}");

        // The snapshot round-trips and ages are recomputed when read later.
        let dir = std::env::temp_dir().join(format!("trailvault-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store_path = dir.join("store");
        write_snapshot(&store_path, &view).unwrap();
        assert!(dir.join("store.status.json").exists());
        let mut read = read_snapshot(&store_path).unwrap();
        read.refresh_ages(now + Duration::hours(1));
        assert_eq!(read.chains[0].age_seconds, Some(3 * 3600));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ages_read_compactly() {
        assert_eq!(age_text(None), "-");
        assert_eq!(age_text(Some(42)), "42s");
        assert_eq!(age_text(Some(300)), "5m");
        assert_eq!(age_text(Some(2 * 3600 + 5 * 60)), "2h05m");
        assert_eq!(age_text(Some(3 * 86_400 + 4 * 3600)), "3d04h");
        assert_eq!(age_text(Some(-120)), "-2m");
    }
}
