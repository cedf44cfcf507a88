//! `status`: what it shows, read from the store's records (`run/…`, `lag/…`,
//! the validation state of each chain and the findings).
//!
//! One process at a time holds the store, and a running daemon holds it.
//! So every run also writes the status as a JSON snapshot beside the store
//! (`<store path>.status.json`), and `status` reads that when it cannot open
//! the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::cloudtrail::keys::{parse_trail_key, FileName};
use crate::model::error::SeamError;
use crate::model::findings::{Finding, Severity};
use crate::progress::lag;
use crate::progress::runs::{last_runs, RunRecord};
use crate::progress::validation::{chain_heads, ChainHeadView};
use crate::seams::ProgressStore;

/// Layout version of the status view (and its snapshot).
const VIEW_VERSION: u8 = 1;
/// Critical findings listed in full by `status` (the counts cover all).
const CRITICAL_LISTED: usize = 50;

/// Keeps the [`CRITICAL_LISTED`] most recently found, newest first.
fn newest_first(critical: &mut Vec<Finding>) {
    critical.sort_by_key(|finding| std::cmp::Reverse(finding.first_seen));
    critical.truncate(CRITICAL_LISTED);
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
    /// End of the newest archived digest of the chain, as the last
    /// validation run saw it.
    #[serde(default)]
    pub newest_archived_end: Option<DateTime<Utc>>,
    /// Archived history of the chain not validated yet, at the last
    /// validation run: from the window of the oldest archived digest not
    /// validated to the newest archived digest's end; 0 when every archived
    /// digest is validated.
    #[serde(default)]
    pub validation_lag_seconds: Option<i64>,
    /// Start of that unvalidated history (`None`: nothing is behind).
    #[serde(default)]
    pub unvalidated_since: Option<DateTime<Utc>>,
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

fn chain_head(view: ChainHeadView) -> ChainHead {
    let mut head = ChainHead {
        backfill: view.chain_id.ends_with("_backfill"),
        chain_id: view.chain_id,
        account_id: None,
        region: None,
        trail: None,
        head_end: None,
        head_key: None,
        head_valid: None,
        age_seconds: None,
        newest_archived_end: view.lag.map(|lag| lag.newest_archived),
        validation_lag_seconds: view.lag.map(|lag| lag.lag().num_seconds()),
        unvalidated_since: view.lag.and_then(|lag| lag.unvalidated_since),
    };
    if let Some((key, end, valid)) = view.head {
        if let Ok(parsed) = parse_trail_key(&key) {
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
        head.head_end = Some(end);
        head.head_key = Some(key);
        head.head_valid = Some(valid);
    }
    if head.account_id.is_none() {
        // No validated head yet (validation is stuck at the chain's first
        // digest): the chain's name says whose it is.
        if let Some((account, region, trail)) = named_in_chain_id(&head.chain_id) {
            head.account_id = Some(account);
            head.region = Some(region);
            head.trail = Some(trail);
        }
    }
    head
}

/// Account, region and trail from
/// `<reader>/<bucket>/<root>CloudTrail-Digest/<region>/<trail>_<home>[_backfill]`.
fn named_in_chain_id(chain_id: &str) -> Option<(String, String, String)> {
    let (root, rest) = chain_id.rsplit_once("/CloudTrail-Digest/")?;
    let account = root.rsplit('/').next()?.to_string();
    let (region, name) = rest.split_once('/')?;
    let name = name.strip_suffix("_backfill").unwrap_or(name);
    let (trail, _home) = name.rsplit_once('_')?;
    Some((account, region.to_string(), trail.to_string()))
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
        for (account, record) in lag::all(store)? {
            lags.insert(account, Some(record.newest_file_time));
        }
        let accounts = lags
            .into_iter()
            .map(|(account_id, newest_file_time)| AccountLag {
                account_id,
                newest_file_time,
                lag_seconds: None,
            })
            .collect();
        let chains = chain_heads(store)?.into_iter().map(chain_head).collect();
        let mut findings = FindingsSummary::default();
        let mut critical = Vec::new();
        store.for_each_finding(&mut |mut finding| {
            // Recorded findings: none of them is new to `status`.
            finding.new = false;
            if !finding.is_open() {
                findings.acknowledged += 1;
                return;
            }
            findings.open += 1;
            *findings
                .by_kind
                .entry(finding.kind.as_str().to_string())
                .or_default() += 1;
            if finding.severity == Severity::Critical {
                findings.critical_total += 1;
                critical.push(finding);
                // Bounded however many are on record: keep the newest.
                if critical.len() >= CRITICAL_LISTED * 64 {
                    newest_first(&mut critical);
                }
            }
        })?;
        newest_first(&mut critical);
        findings.critical = critical;
        let mut view = StatusView {
            v: VIEW_VERSION,
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

    /// The status before the first run: the configured accounts, nothing
    /// archived, validated or found yet (shown without creating a store).
    pub fn never_run(configured_accounts: &[String], now: DateTime<Utc>) -> StatusView {
        StatusView {
            v: VIEW_VERSION,
            generated_at: now,
            source: "store".to_string(),
            runs: Vec::new(),
            accounts: configured_accounts
                .iter()
                .map(|account_id| AccountLag {
                    account_id: account_id.clone(),
                    newest_file_time: None,
                    lag_seconds: None,
                })
                .collect(),
            chains: Vec::new(),
            findings: FindingsSummary::default(),
        }
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
        .filter(|view| view.v == VIEW_VERSION)
}

/// How `status` reaches the store.
pub enum StoreAccess<'a> {
    /// trailvault never ran: there is no store yet.
    NeverRun,
    /// The store.
    Open(&'a dyn ProgressStore),
    /// The store could not be opened (a running trailvault holds it): the
    /// snapshot the last run wrote is shown instead; `error` says why.
    Held { error: String },
}

/// The `status` job: the view read from the store, or from the snapshot
/// beside `store_path` when the store is held. The error is the message to
/// show when nothing can be read.
pub fn status(
    access: StoreAccess<'_>,
    store_path: &Path,
    configured_accounts: &[String],
    now: DateTime<Utc>,
) -> Result<StatusView, String> {
    match access {
        StoreAccess::NeverRun => Ok(StatusView::never_run(configured_accounts, now)),
        StoreAccess::Open(store) => StatusView::from_store(store, configured_accounts, now)
            .map_err(|error| format!("cannot read the status from the store: {error}")),
        StoreAccess::Held { error } => match read_snapshot(store_path) {
            Some(mut view) => {
                info!(error = %error, "the store is in use; showing the snapshot of the last run");
                view.source = "snapshot".to_string();
                view.refresh_ages(now);
                Ok(view)
            }
            None => Err(error),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::findings::FindingKind;
    use crate::model::object::SourceRef;
    use crate::model::report::Report;
    use crate::progress::lag::LagTracker;
    use crate::progress::runs::{record_run, RUN_SLOTS};
    use crate::testsuite::memory::MemoryStore;
    use crate::testsuite::placeholder_record;
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

    const LOG: &str = "AWSLogs/222222222201/CloudTrail/us-east-1/2026/01/01/222222222201_CloudTrail_us-east-1_20260101T0105Z_abcdefghijklmnop.json.gz";
    const DIGEST: &str = "AWSLogs/222222222201/CloudTrail-Digest/us-east-1/2026/01/01/222222222201_CloudTrail-Digest_us-east-1_Trail_us-east-1_20260101T020000Z.json.gz";
    const FUTURE: &str = "AWSLogs/222222222201/CloudTrail/us-east-1/2099/01/01/222222222201_CloudTrail_us-east-1_20990101T0105Z_abcdefghijklmnop.json.gz";

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
            tracker
                .record_object(&source, &placeholder_record())
                .unwrap();
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
        // The record's bytes stay as they were.
        let stored = store.get_state("lag/222222222201").unwrap().unwrap();
        assert_eq!(
            String::from_utf8(stored).unwrap(),
            r#"{"v":1,"newest_file_time":"2026-01-01T02:00:00Z","updated_at":"2026-01-01T03:00:00Z"}"#
        );
        // An older file later does not move the lag back.
        let later = LagTracker::new(&store, now);
        let source = SourceRef {
            account_id: "999999999999".into(),
            bucket: "b".into(),
            key: LOG.into(),
        };
        later.record_object(&source, &placeholder_record()).unwrap();
        later.save().unwrap();
        let view = StatusView::from_store(&store, &[], now).unwrap();
        assert_eq!(
            view.accounts[0].newest_file_time,
            Some(at("2026-01-01T02:00:00Z"))
        );
    }

    #[test]
    fn status_shows_how_far_validation_trails_the_archive() {
        let store = MemoryStore::default();
        let now = at("2026-01-01T12:00:00Z");
        // Stuck at the chain's first digest: no head yet, eight hours behind.
        let stuck = serde_json::json!({
            "v": 1,
            "validated": {"spans": []},
            "head": null,
            "lag": {"newest_archived": "2026-01-01T11:05:00Z",
                    "unvalidated_since": "2026-01-01T03:05:00Z"}
        });
        store
            .put_state(
                "chain/333333333333/b/AWSLogs/o-abc123def4/222222222201/CloudTrail-Digest/eu-west-1/Org_Trail_us-east-1",
                stuck.to_string().as_bytes(),
            )
            .unwrap();
        let view = StatusView::from_store(&store, &[], now).unwrap();
        let chain = &view.chains[0];
        assert_eq!(chain.validation_lag_seconds, Some(8 * 3600));
        assert_eq!(chain.unvalidated_since, Some(at("2026-01-01T03:05:00Z")));
        assert_eq!(chain.newest_archived_end, Some(at("2026-01-01T11:05:00Z")));
        assert_eq!(chain.account_id.as_deref(), Some("222222222201"));
        assert_eq!(chain.region.as_deref(), Some("eu-west-1"));
        assert_eq!(chain.trail.as_deref(), Some("Org_Trail"));
        assert_eq!(chain.head_end, None);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["chains"][0]["validation_lag_seconds"], 8 * 3600);
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

        // The snapshot round-trips and ages are recomputed when read later.
        let dir = std::env::temp_dir().join(format!("trailvault-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store_path = dir.join("store");
        write_snapshot(&store_path, &view).unwrap();
        assert!(dir.join("store.status.json").exists());
        let mut read = read_snapshot(&store_path).unwrap();
        read.refresh_ages(now + Duration::hours(1));
        assert_eq!(read.chains[0].age_seconds, Some(3 * 3600));
        let held = status(
            StoreAccess::Held {
                error: "held".into(),
            },
            &store_path,
            &[],
            now + Duration::hours(1),
        )
        .unwrap();
        assert_eq!(held.source, "snapshot");
        assert_eq!(held.chains[0].age_seconds, Some(3 * 3600));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            status(
                StoreAccess::Held {
                    error: "held".into()
                },
                &store_path,
                &[],
                now
            ),
            Err("held".to_string())
        );
    }

    #[test]
    fn the_never_run_status_is_the_status_of_an_empty_store() {
        let now = at("2026-01-01T04:00:00Z");
        let accounts = ["111111111111".to_string(), "222222222222".to_string()];
        assert_eq!(
            StatusView::never_run(&accounts, now),
            StatusView::from_store(&MemoryStore::default(), &accounts, now).unwrap()
        );
    }
}
