//! What the commands print: the contract's JSON report on stdout with
//! `--json`, otherwise a short human summary; the retention report, the
//! status text, finding lines and the progress display.

pub mod log_fields;
pub mod progress;
pub mod report_html;
pub mod retention;
pub mod status;
pub mod stdout;

use std::fmt::Write as _;

use trailvault_pipeline::model::findings::{Finding, Severity};
use trailvault_pipeline::model::report::Report;
use trailvault_pipeline::model::text::escape_control;
use trailvault_pipeline::model::time::utc_text;

pub fn print_report(report: &Report, json: bool) {
    if json {
        stdout::json(report, true);
    } else {
        stdout::text(&human_summary(report));
    }
}

/// One report of the daemon: with `--json`, one object per line (a stream
/// of reports).
pub fn print_run(report: &Report, json: bool) {
    if json {
        stdout::json(report, false);
    } else {
        print_report(report, false);
    }
}

/// `findings`: the JSON report, or one line per finding and the counts.
pub fn print_findings(report: &Report, acknowledged_now: Option<usize>, json: bool) {
    if json {
        print_report(report, true);
        return;
    }
    let mut out = String::new();
    for finding in &report.findings {
        let _ = writeln!(
            out,
            "{} {}",
            utc_text(finding.first_seen),
            finding_line(finding)
        );
    }
    let _ = writeln!(out, "{} finding(s)", report.findings.len());
    if let Some(count) = acknowledged_now {
        let _ = writeln!(out, "{count} acknowledged now");
    }
    stdout::text(&out);
}

pub fn human_summary(report: &Report) -> String {
    let stats = &report.stats;
    let mut out = String::new();
    if let Some(reason) = &report.skipped {
        let _ = writeln!(out, "trailvault {}: skipped: {reason}", report.command);
        return out;
    }
    let seconds = (report.finished_at - report.started_at).num_milliseconds() as f64 / 1000.0;
    let _ = writeln!(
        out,
        "trailvault {}: finished in {seconds:.1}s",
        report.command
    );
    if report.command != "verify" && report.command != "findings" {
        let _ = writeln!(
            out,
            "  accounts          {} ({} failed)",
            stats.accounts, stats.accounts_failed
        );
        let _ = writeln!(out, "  partitions listed {}", stats.partitions_listed);
        let _ = writeln!(
            out,
            "  objects           {} listed, {} copied, {} already archived, {} recovered from an interrupted run",
            stats.objects_listed, stats.objects_copied, stats.objects_skipped, stats.objects_adopted
        );
        if stats.objects_deferred > 0 {
            let _ = writeln!(
                out,
                "  deferred          {} objects left for the next runs (collect.max_keys_per_partition_per_run)",
                stats.objects_deferred
            );
        }
        let _ = writeln!(out, "  bytes copied      {}", stats.bytes_copied);
    }
    if stats.digests_validated > 0 || report.command == "verify" {
        let _ = writeln!(
            out,
            "  validated         {} digests, {} log files",
            stats.digests_validated, stats.log_files_validated
        );
    }
    for note in &report.overrides {
        let _ = writeln!(out, "  OVERRIDE          {note}");
    }
    let _ = writeln!(out, "  errors            {}", report.errors.len());
    for error in &report.errors {
        let line = format!(
            "{} {}: {}",
            error.account_id, error.operation, error.message
        );
        let _ = writeln!(out, "    {}", escape_control(&line));
    }
    let new = report.findings.iter().filter(|f| f.new).count();
    let _ = writeln!(
        out,
        "  findings          {} ({new} new)",
        report.findings.len()
    );
    for finding in &report.findings {
        let _ = writeln!(out, "    {}", finding_line(finding));
    }
    if let Some(line) = earlier_open_line(report) {
        let _ = writeln!(out, "    {line}");
    }
    out
}

/// The open findings of earlier runs a report counts without listing them.
pub fn earlier_open_line(report: &Report) -> Option<String> {
    let earlier = &report.earlier_open;
    if earlier.is_empty() {
        return None;
    }
    let kinds: Vec<String> = earlier
        .by_kind
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    Some(format!(
        "... and {} more open findings of earlier runs ({} critical: {}); `trailvault findings` lists them",
        earlier.not_listed,
        earlier.critical,
        kinds.join(", ")
    ))
}

pub fn finding_line(finding: &Finding) -> String {
    let severity = match finding.severity {
        Severity::Critical => "CRITICAL",
        Severity::Warning => "warning",
    };
    let new = if finding.new { " [new]" } else { "" };
    let acknowledged = if finding.is_open() {
        ""
    } else {
        " [acknowledged]"
    };
    let owner = match &finding.bucket_owner {
        Some(owner) if *owner != finding.account_id => format!(" (bucket of {owner})"),
        _ => String::new(),
    };
    // Keys and details are the member's words: escaped, so a key with a
    // newline cannot forge a line, nor one with ESC drive the terminal.
    let line = format!(
        "{severity} {}{new}{acknowledged} {} s3://{}/{}{owner}: {}",
        finding.kind, finding.account_id, finding.bucket, finding.key, finding.detail
    );
    escape_control(&line).into_owned()
}

/// `report` without `--json`: where the page went and what it shows.
pub fn report_summary(
    report: &trailvault_pipeline::jobs::report::CoverageReport,
    html: Option<&std::path::Path>,
) -> String {
    use trailvault_pipeline::jobs::report::CellStatus;
    let count = |status: CellStatus| report.cells.iter().filter(|c| c.status == status).count();
    let mut out = String::new();
    if let Some(file) = html {
        let _ = writeln!(out, "wrote {}", file.display());
    }
    let _ = writeln!(
        out,
        "{} to {}: {} account-Region-days validated, {} collected (not all validated), {} with findings",
        report.first_day,
        report.last_day,
        count(CellStatus::Validated),
        count(CellStatus::Collected),
        count(CellStatus::Findings)
    );
    let _ = writeln!(
        out,
        "open findings: {} ({} critical); chains: {}; runs recorded: {}",
        report.findings.open,
        report.findings.critical,
        report.chains.len(),
        report.runs.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailvault_pipeline::model::findings::FindingKind;

    #[test]
    fn summary_names_counts_errors_and_findings() {
        let mut report = Report::new("collect");
        report.stats.objects_copied = 7;
        report.error("222222222222", "sts:AssumeRole", "AccessDenied");
        report.findings.push(Finding::new(
            FindingKind::AccountMismatch,
            "222222222222",
            "b",
            "k",
            "claims 333333333333".into(),
        ));
        report.error(
            "222222222222",
            "copy s3://b/k\n2026-01-01T00:00:00Z INFO forged",
            "\u{1b}[2Jcleared",
        );
        let mut hostile = Finding::new(
            FindingKind::ObjectMalformed,
            "333333333333",
            "b",
            "evil\nkey\u{1b}]0;title\u{7}",
            "named \u{1b}[31m".into(),
        );
        hostile.bucket_owner = Some("222222222222".into());
        report.findings.push(hostile);
        let text = human_summary(&report);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "no raw control characters: {text:?}"
        );
        assert!(
            text.contains("s3://b/k\\n2026-01-01T00:00:00Z INFO forged: \\x1b[2Jcleared"),
            "{text}"
        );
        assert!(
            text.contains(
                "333333333333 s3://b/evil\\nkey\\x1b]0;title\\x07 (bucket of 222222222222): named \\x1b[31m"
            ),
            "{text}"
        );
        assert_eq!(
            text.lines().count(),
            human_summary(&Report::new("collect")).lines().count() + 4,
            "one line per error and finding: {text}"
        );
        assert!(text.contains("7 copied"), "{text}");
        assert!(
            text.contains("222222222222 sts:AssumeRole: AccessDenied"),
            "{text}"
        );
        assert!(
            text.contains("CRITICAL account_mismatch [new] 222222222222 s3://b/k"),
            "{text}"
        );
    }
}
