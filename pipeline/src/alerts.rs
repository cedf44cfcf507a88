//! Announcing a run's new findings: an entry in the archive's findings ledger
//! (see [`crate::ledger`]), then one message to the notifier (SNS).

use chrono::Utc;

use crate::copy::CopySettings;
use crate::ledger::{self, LedgerEntry};
use crate::model::findings::{Finding, Severity};
use crate::model::report::Report;
use crate::seams::{Archive, Notifier};

/// Records the run's new findings in the archive's findings ledger, then
/// publishes them to the notifier.
pub async fn announce(
    archive: &dyn Archive,
    settings: &CopySettings,
    notifier: Option<&dyn Notifier>,
    report: &mut Report,
) {
    let mut entry = LedgerEntry::new(&report.command, Utc::now());
    entry.findings = new_findings(report);
    if entry.is_empty() {
        return;
    }
    append_to_ledger(archive, settings, report, &entry).await;
    publish(notifier, report, &entry.findings).await;
}

fn new_findings(report: &Report) -> Vec<Finding> {
    report.findings.iter().filter(|f| f.new).cloned().collect()
}

/// Writes `entry` to the findings ledger; a failure is an operational error
/// of the run (the store still holds everything).
pub async fn append_to_ledger(
    archive: &dyn Archive,
    settings: &CopySettings,
    report: &mut Report,
    entry: &LedgerEntry,
) {
    if let Err(error) = ledger::append(archive, settings, entry).await {
        report.error("-", "write the findings ledger", error.to_string());
    }
}

/// Publishes the run's new findings to the notifier without writing the
/// ledger (nothing is written to an archive that is not locked down).
pub async fn publish_alerts(notifier: Option<&dyn Notifier>, report: &mut Report) {
    let new = new_findings(report);
    publish(notifier, report, &new).await;
}

/// One message per run: a summary line and the findings as JSON.
async fn publish(notifier: Option<&dyn Notifier>, report: &mut Report, new: &[Finding]) {
    let Some(notifier) = notifier else {
        return;
    };
    if new.is_empty() {
        return;
    }
    let (subject, message) = message(report, new);
    if let Err(error) = notifier.publish(&subject, &message).await {
        report.error("-", "sns:Publish", error.to_string());
    }
}

/// The subject (a summary line) and the JSON body announcing `new`.
fn message(report: &Report, new: &[Finding]) -> (String, String) {
    let critical = new
        .iter()
        .filter(|f| f.severity == Severity::Critical)
        .count();
    let summary = format!(
        "trailvault {}: {} new finding(s), {critical} critical",
        report.command,
        new.len()
    );
    let message = serde_json::json!({
        "summary": summary,
        "command": report.command,
        "started_at": report.started_at,
        "findings": new,
    });
    (summary, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::findings::FindingKind;
    use crate::testsuite::memory::MemoryNotifier;

    #[tokio::test]
    async fn one_message_per_run_names_the_new_findings() {
        let mut report = Report::new("verify");
        report.findings.push(Finding::new(
            FindingKind::DigestMissing,
            "111111111111",
            "b",
            "k",
            "gone".into(),
        ));
        let mut old = Finding::new(FindingKind::ChainGap, "111111111111", "b", "k2", "x".into());
        old.new = false;
        report.findings.push(old);
        let notifier = MemoryNotifier::default();
        publish_alerts(Some(&notifier), &mut report).await;
        let messages = notifier.messages.lock().unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(
            messages[0].0,
            "trailvault verify: 1 new finding(s), 1 critical"
        );
        let body: serde_json::Value = serde_json::from_str(&messages[0].1).unwrap();
        assert_eq!(body["command"], "verify");
        assert_eq!(body["findings"].as_array().unwrap().len(), 1);
        assert!(report.errors.is_empty());
    }
}
