//! The retention report: the contract's report with a `retention` section.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use trailvault_pipeline::model::report::Report;
use trailvault_pipeline::model::time::{utc_text, utc_text_or};
use trailvault_pipeline::retention::expiry::ExpiryOutcome;
use trailvault_pipeline::retention::RetentionOutcome;
use trailvault_pipeline::seams::LockMode;

use super::finding_line;

/// The retention report: the contract's report with a `retention` object
/// (checked, compliant, extended, bucket problems and the plan).
pub fn print_retention(report: &Report, outcome: &RetentionOutcome, apply: bool, json: bool) {
    if json {
        let mut value = match serde_json::to_value(report) {
            Ok(value) => value,
            Err(error) => {
                eprintln!("trailvault: cannot serialize the report: {error}");
                return;
            }
        };
        let mut section = serde_json::to_value(outcome).unwrap_or_default();
        section["applied"] = serde_json::Value::Bool(apply);
        value["retention"] = section;
        super::stdout::json(&value, true);
        return;
    }
    let mut out = String::new();
    let time = |t: Option<DateTime<Utc>>| utc_text_or(t, "none");
    let _ = writeln!(
        out,
        "trailvault retention ({}): {} versions checked, {} compliant, {} short{}",
        if apply { "applied" } else { "dry run" },
        outcome.checked,
        outcome.compliant,
        outcome.changes.len(),
        if apply {
            format!(", {} extended", outcome.extended)
        } else {
            String::new()
        }
    );
    for problem in &outcome.bucket_problems {
        let _ = writeln!(out, "  bucket: {problem}");
    }
    for warning in &outcome.lifecycle_warnings {
        let _ = writeln!(out, "  lifecycle (warning): {warning}");
    }
    for change in &outcome.changes {
        let current_mode = change.current_mode.map_or("no lock", LockMode::as_str);
        let state = if change.applied {
            "extended"
        } else if apply {
            "NOT extended"
        } else {
            "would extend"
        };
        let _ = writeln!(
            out,
            "  {state} {} (version {}): {} {} -> {} {} (required {})",
            change.archive_key,
            change.version_id,
            current_mode,
            time(change.current_until),
            change.mode.as_str(),
            time(Some(change.until)),
            time(Some(change.required_until)),
        );
    }
    if !apply && !outcome.changes.is_empty() {
        let _ = writeln!(
            out,
            "  dry run: nothing was changed; run `trailvault retention --apply` to extend"
        );
    }
    if let Some(expiry) = &outcome.source_expiry {
        print_source_expiry(&mut out, expiry, apply);
    }
    let _ = writeln!(out, "  errors            {}", report.errors.len());
    for error in &report.errors {
        let _ = writeln!(
            out,
            "    {} {}: {}",
            error.account_id, error.operation, error.message
        );
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
    if let Some(line) = super::earlier_open_line(report) {
        let _ = writeln!(out, "    {line}");
    }
    super::stdout::text(&out);
}

/// Source files listed one per line in the human report, at most.
const MAX_EXPIRY_LINES: usize = 100;

/// The source expiry part of the human retention report.
fn print_source_expiry(out: &mut String, expiry: &ExpiryOutcome, apply: bool) {
    let kept: Vec<String> = expiry
        .kept
        .iter()
        .map(|(reason, count)| format!("{count} {}", reason.as_str()))
        .collect();
    let _ = writeln!(
        out,
        "  source expiry (source_retention_days = {}: files named before {}): {} {}, {} already gone, kept: {}",
        expiry.source_retention_days,
        utc_text(expiry.cutoff),
        if apply {
            expiry.deleted
        } else {
            expiry.changes.len() as u64
        },
        if apply { "deleted" } else { "to delete" },
        expiry.already_gone,
        if kept.is_empty() {
            "none".to_string()
        } else {
            kept.join(", ")
        }
    );
    for change in expiry.changes.iter().take(MAX_EXPIRY_LINES) {
        let _ = writeln!(
            out,
            "    {} s3://{}/{}",
            if change.applied {
                "deleted"
            } else {
                "would delete"
            },
            change.bucket,
            change.key
        );
    }
    if expiry.changes.len() > MAX_EXPIRY_LINES {
        let _ = writeln!(
            out,
            "    ... and {} more (--json lists every one)",
            expiry.changes.len() - MAX_EXPIRY_LINES
        );
    }
    if !apply && !expiry.changes.is_empty() {
        let _ = writeln!(
            out,
            "  dry run: no source file was deleted; run `trailvault retention --apply` to delete"
        );
    }
}
