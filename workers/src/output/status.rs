//! The status text of `trailvault status` (the view itself is
//! `trailvault_pipeline::jobs::status`).

use std::fmt::Write as _;

use trailvault_pipeline::jobs::status::StatusView;
use trailvault_pipeline::model::report::exit;
use trailvault_pipeline::model::time::{utc_text, utc_text_or};

use super::finding_line;

/// `status`: the view as JSON, or the human table; the exit status.
pub fn print_status(view: &StatusView, json: bool) -> i32 {
    if json {
        if !super::stdout::json(view, true) {
            return exit::OPERATIONAL_ERRORS;
        }
    } else {
        super::stdout::text(&human(view));
    }
    exit::OK
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

/// Runs shown by the human table.
const RUNS_SHOWN: usize = 10;

/// The compact human table.
pub fn human(view: &StatusView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trailvault status at {}{}",
        utc_text(view.generated_at),
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
                utc_text(run.started_at),
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
            utc_text_or(account.newest_file_time, "-"),
            age_text(account.lag_seconds)
        );
    }
    let _ = writeln!(
        out,
        "\nchain heads (newest validated digest, age, validation lag behind the archive)"
    );
    if view.chains.is_empty() {
        let _ = writeln!(out, "  none (run verify)");
    }
    for chain in &view.chains {
        let lag = match (chain.validation_lag_seconds, chain.unvalidated_since) {
            (Some(seconds), Some(since)) if seconds > 0 => format!(
                "  lag {} (unvalidated since {})",
                age_text(Some(seconds)),
                utc_text(since)
            ),
            (Some(_), _) => "  lag 0".to_string(),
            (None, _) => "  lag -".to_string(),
        };
        let _ = writeln!(
            out,
            "  {:<12}  {:<14}  {:<20}  {:<20}  {:>7}{lag}{}{}",
            chain.account_id.as_deref().unwrap_or("-"),
            chain.region.as_deref().unwrap_or("-"),
            chain.trail.as_deref().unwrap_or("-"),
            utc_text_or(chain.head_end, "-"),
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
            utc_text(finding.first_seen),
            finding_line(finding)
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
    use chrono::{DateTime, Utc};
    use trailvault_pipeline::model::findings::{Finding, FindingKind};
    use trailvault_pipeline::seams::ProgressStore;
    use trailvault_pipeline::testsuite::memory::MemoryStore;

    #[test]
    fn the_table_shows_ages_and_open_findings() {
        let store = MemoryStore::default();
        let now = DateTime::parse_from_rfc3339("2026-01-01T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let state = serde_json::json!({
            "v": 1,
            "validated": {"spans": []},
            "head": {"key": "AWSLogs/222222222201/CloudTrail-Digest/us-east-1/2026/01/01/222222222201_CloudTrail-Digest_us-east-1_Trail_us-east-1_20260101T020000Z.json.gz",
                     "end": "2026-01-01T02:00:00Z", "start": null, "sha256": null,
                     "signature": null, "valid": true}
        });
        store
            .put_state("chain/222222222201/b/x", state.to_string().as_bytes())
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
        let view = StatusView::from_store(&store, &[], now).unwrap();
        let text = human(&view);
        assert!(text.contains("2h00m"), "{text}");
        assert!(
            text.contains("lag -"),
            "state without a recorded lag: {text}"
        );
        let lagging = serde_json::json!({
            "v": 1,
            "validated": {"spans": []},
            "head": null,
            "lag": {"newest_archived": "2026-01-01T03:00:00Z",
                    "unvalidated_since": "2026-01-01T00:00:00Z"}
        });
        store
            .put_state(
                "chain/222222222201/b/AWSLogs/222222222201/CloudTrail-Digest/us-east-1/Trail_us-east-1",
                lagging.to_string().as_bytes(),
            )
            .unwrap();
        let text = human(&StatusView::from_store(&store, &[], now).unwrap());
        assert!(
            text.contains("lag 3h00m (unvalidated since 2026-01-01T00:00:00Z)"),
            "{text}"
        );
        assert!(
            text.contains("open findings: 1 (1 critical; 1 acknowledged)"),
            "{text}"
        );
        assert!(text.contains("CRITICAL digest_missing"), "{text}");
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
