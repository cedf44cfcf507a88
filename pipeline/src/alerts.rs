//! Announcing findings: every recorded finding that is not announced yet goes
//! to the archive's findings ledger (see [`crate::ledger`]) and to the
//! notifier (SNS), and stays "unannounced" in the store until each of the two
//! succeeded.
//!
//! Why: a member can plant hundreds of junk files so that one run's findings
//! make a message SNS refuses (256 KiB), and a run can crash between
//! recording a finding and announcing it. Either way, a real deletion hidden
//! among the junk must still be alerted. So:
//!
//! * the store records a new finding together with its "unannounced" state
//!   ([`Finding::recorded_over`]); a crash before the announcement loses
//!   nothing: the next run announces it;
//! * every run announces every unannounced finding, its own and those earlier
//!   runs could not announce, and clears each part (ledger, notifier) per
//!   finding once it succeeded ([`ProgressStore::mark_announced`]); a part
//!   that failed is an operational error of the run and is retried by every
//!   later run until it succeeds;
//! * the notifier gets messages of at most [`MESSAGE_BUDGET_BYTES`] (subject
//!   included): as many parts as needed, critical findings first, each part
//!   self-describing (run id, command, part i of n, the totals of the whole
//!   announcement) and carrying whole findings, so a part that fails leaves
//!   only its own findings unannounced;
//! * at most [`MAX_MESSAGES_PER_RUN`] messages a run: past that, the last
//!   message counts the findings not itemized, by kind and severity (the
//!   ledger and `trailvault findings` hold each one), so a flood cannot turn
//!   into thousands of messages. Critical findings come first, and among
//!   findings of one severity the rarest kinds first: one real deletion among
//!   100,000 planted files of another kind is itemized in the first message;
//! * the ledger gets entries of at most [`LEDGER_ENTRY_BUDGET_BYTES`], so a
//!   flood of findings stays readable by `rebuild-state`.
//!
//! * the event bus (EventBridge), when configured, gets one event per
//!   finding (`detail-type` [`EVENT_DETAIL_TYPE`]), in calls of at most
//!   [`MAX_EVENTS_PER_CALL`] entries and [`MAX_EVENT_BYTES`]; the bus can
//!   refuse single entries of a call, and only the findings whose entry it
//!   took are marked, the others are retried by the next run.
//!
//! A finding is announced once every part succeeded. Without a notifier or
//! an event bus, that part counts as done. Nothing is written
//! to an archive that is not locked down: then the ledger part stays to do
//! and the findings are only published.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::copy::CopySettings;
use crate::ledger::{self, LedgerEntry};
use crate::model::findings::{AnnouncedTo, Finding, FindingKind, Severity};
use crate::model::report::Report;
use crate::model::shard::Shard;
use crate::seams::{
    Archive, BusEvent, EventBus, Notifier, ProgressStore, MAX_EVENTS_PER_CALL, MAX_EVENT_BYTES,
};

/// Largest message (subject + body) sent to the notifier. SNS accepts 256
/// KiB; an SQS queue subscribed to the topic receives the message inside
/// SNS's JSON envelope, where escaping can double quote-heavy text (a source
/// key may be full of `"`), and SQS too stops at 256 KiB: 120 KiB stays under
/// both.
pub const MESSAGE_BUDGET_BYTES: usize = 120 * 1024;

/// Largest ledger entry written at once (the ledger reads back entries up to
/// 64 MiB).
pub const LEDGER_ENTRY_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// The most messages one announcement sends; the last of them then counts
/// what the others could not itemize.
pub const MAX_MESSAGES_PER_RUN: usize = 25;

/// The longest `detail` a message carries for one finding (the ledger and the
/// store keep the whole text), so that every finding fits a message.
const MESSAGE_DETAIL_CHARS: usize = 4096;

/// The `source` of every event trailvault puts on the bus.
pub const EVENT_SOURCE: &str = "trailvault";

/// The `detail-type` of the event of one finding.
pub const EVENT_DETAIL_TYPE: &str = "trailvault finding";

/// Where findings are announced, and what the announcement may touch.
pub struct Announcer<'a> {
    /// Where the findings and their announcement state are recorded.
    pub store: &'a dyn ProgressStore,
    /// The archive's findings ledger; `None` when the archive is not locked
    /// down (nothing is written to it; the ledger part stays to do).
    pub ledger: Option<LedgerTarget<'a>>,
    /// The alert topic, when one is configured.
    pub notifier: Option<&'a dyn Notifier>,
    /// The event bus, when one is configured.
    pub events: Option<&'a dyn EventBus>,
    /// Names the run in every message.
    pub run_id: &'a str,
}

/// The archive holding the findings ledger.
#[derive(Clone, Copy)]
pub struct LedgerTarget<'a> {
    pub archive: &'a dyn Archive,
    pub settings: &'a CopySettings,
    /// The run's shard, named in its ledger keys.
    pub shard: Option<Shard>,
}

/// Announces every recorded finding not announced yet (this run's new ones
/// and those earlier runs could not announce): writes them to the ledger,
/// publishes them, and clears each part per finding once it succeeded.
/// Failures are operational errors of `report`; what failed is retried by
/// the next run.
pub async fn announce(announcer: &Announcer<'_>, report: &mut Report) {
    let pending = unannounced(announcer.store, report);
    if pending.is_empty() {
        return;
    }
    let new_now: HashSet<String> = report
        .findings
        .iter()
        .filter(|f| f.new)
        .map(Finding::dedup_key)
        .collect();
    if let Some(target) = announcer.ledger {
        let to_ledger: Vec<&Finding> = pending
            .iter()
            .filter(|f| f.awaits(AnnouncedTo::Ledger))
            .collect();
        write_ledger(announcer.store, target, report, &to_ledger).await;
    }
    let to_publish: Vec<&Finding> = pending
        .iter()
        .filter(|f| f.awaits(AnnouncedTo::Notifier))
        .collect();
    match announcer.notifier {
        Some(notifier) => {
            publish(
                announcer.store,
                notifier,
                announcer.run_id,
                report,
                &to_publish,
                &new_now,
            )
            .await;
        }
        // Nothing to publish to: that part is done.
        None => mark(announcer.store, report, &to_publish, AnnouncedTo::Notifier),
    }
    let to_bus: Vec<&Finding> = pending
        .iter()
        .filter(|f| f.awaits(AnnouncedTo::Events))
        .collect();
    match announcer.events {
        Some(bus) => {
            put_events(
                announcer.store,
                bus,
                announcer.run_id,
                report,
                &to_bus,
                &new_now,
            )
            .await;
        }
        None => mark(announcer.store, report, &to_bus, AnnouncedTo::Events),
    }
}

/// The recorded findings not announced yet: critical first, then the rarest
/// kinds first (a planted flood of one kind cannot push a rare real finding
/// out of the itemized messages), then oldest first.
/// When the store cannot be read, this run's new findings (the store holds
/// them unannounced, so the next run retries them).
fn unannounced(store: &dyn ProgressStore, report: &mut Report) -> Vec<Finding> {
    let mut pending = match store.unannounced_findings() {
        Ok(pending) => pending,
        Err(error) => {
            report.error("-", "read unannounced findings", error.to_string());
            report
                .findings
                .iter()
                .filter(|f| f.new)
                .cloned()
                .map(|mut f| {
                    f.unannounced = Some(crate::model::findings::Unannounced::ALL);
                    f
                })
                .collect()
        }
    };
    let mut per_kind: BTreeMap<FindingKind, usize> = BTreeMap::new();
    for finding in &pending {
        *per_kind.entry(finding.kind).or_default() += 1;
    }
    let rank = |f: &Finding| {
        (
            f.severity != Severity::Critical,
            per_kind.get(&f.kind).copied().unwrap_or(0),
            f.kind,
            f.first_seen,
        )
    };
    pending.sort_by_cached_key(|f| (rank(f), f.dedup_key()));
    pending
}

/// Notes in the store that `findings` were announced to `to`.
fn mark(store: &dyn ProgressStore, report: &mut Report, findings: &[&Finding], to: AnnouncedTo) {
    let mut failures = 0usize;
    let mut last_error = None;
    for finding in findings {
        if let Err(error) = store.mark_announced(finding, to) {
            failures += 1;
            last_error = Some(error);
        }
    }
    if let Some(error) = last_error {
        report.error(
            "-",
            "record the announcement of findings",
            format!("{failures} finding(s) will be announced again: {error}"),
        );
    }
}

/// The finding as an announcement shows it: without the store's bookkeeping,
/// `new` when this run found it.
fn announced_copy(finding: &Finding, new_now: &HashSet<String>) -> Finding {
    let mut copy = finding.clone();
    copy.unannounced = None;
    copy.new = new_now.contains(&finding.dedup_key());
    copy
}

/// Writes `findings` to the ledger in entries of bounded size; each entry
/// written marks its findings.
async fn write_ledger(
    store: &dyn ProgressStore,
    target: LedgerTarget<'_>,
    report: &mut Report,
    findings: &[&Finding],
) {
    if findings.is_empty() {
        return;
    }
    let recorded_at = Utc::now();
    let sizes: Vec<usize> = findings.iter().map(|f| json_len(f)).collect();
    let parts = pack(&sizes, LEDGER_ENTRY_BUDGET_BYTES);
    let numbered = parts.len() > 1;
    for (index, part) in parts.iter().enumerate() {
        let mut entry = LedgerEntry::new(&report.command, recorded_at);
        entry.shard = target.shard;
        let members: Vec<&Finding> = part.iter().map(|&i| findings[i]).collect();
        entry.findings = members
            .iter()
            .map(|f| {
                let mut copy = (*f).clone();
                copy.unannounced = None;
                copy
            })
            .collect();
        let part_number = numbered.then_some(index + 1);
        match ledger::append_part(target.archive, target.settings, &entry, part_number).await {
            Ok(_) => mark(store, report, &members, AnnouncedTo::Ledger),
            Err(error) => report.error(
                "-",
                "write the findings ledger",
                format!(
                    "{} finding(s) will be written by the next run: {error}",
                    members.len()
                ),
            ),
        }
    }
}

/// Publishes `findings` in messages that fit the budget; each message
/// published marks its findings.
async fn publish(
    store: &dyn ProgressStore,
    notifier: &dyn Notifier,
    run_id: &str,
    report: &mut Report,
    findings: &[&Finding],
    new_now: &HashSet<String>,
) {
    if findings.is_empty() {
        return;
    }
    let shown: Vec<Finding> = findings
        .iter()
        .map(|f| for_message(&announced_copy(f, new_now)))
        .collect();
    let messages = messages(
        &report.command,
        run_id,
        report.started_at,
        &shown,
        MAX_MESSAGES_PER_RUN,
    );
    let total = messages.len();
    for message in messages {
        match notifier.publish(&message.subject, &message.body).await {
            Ok(()) => {
                let members: Vec<&Finding> = message.members.iter().map(|&i| findings[i]).collect();
                mark(store, report, &members, AnnouncedTo::Notifier);
            }
            Err(error) => report.error(
                "-",
                "sns:Publish",
                format!(
                    "part {} of {total} ({} finding(s), published by the next run): {error}",
                    message.part,
                    message.members.len()
                ),
            ),
        }
    }
}

/// Puts one event per finding on the bus, in calls within the bus's limits;
/// each entry the bus took marks its finding.
async fn put_events(
    store: &dyn ProgressStore,
    bus: &dyn EventBus,
    run_id: &str,
    report: &mut Report,
    findings: &[&Finding],
    new_now: &HashSet<String>,
) {
    if findings.is_empty() {
        return;
    }
    let events: Vec<BusEvent> = findings
        .iter()
        .map(|f| finding_event(&report.command, run_id, &announced_copy(f, new_now)))
        .collect();
    let mut refused = 0usize;
    let mut last_refusal = None;
    for call in calls(&events) {
        let batch: Vec<BusEvent> = call.iter().map(|&i| events[i].clone()).collect();
        match bus.put_events(&batch).await {
            Ok(outcomes) => {
                let mut taken = Vec::new();
                for (position, &index) in call.iter().enumerate() {
                    // A missing outcome is not proof the bus took it.
                    match outcomes.get(position) {
                        Some(Ok(())) => taken.push(findings[index]),
                        Some(Err(error)) => {
                            refused += 1;
                            last_refusal = Some(error.clone());
                        }
                        None => {
                            refused += 1;
                            last_refusal = Some("no outcome for the entry".to_string());
                        }
                    }
                }
                mark(store, report, &taken, AnnouncedTo::Events);
            }
            Err(error) => {
                refused += call.len();
                last_refusal = Some(error.to_string());
            }
        }
    }
    if let Some(error) = last_refusal {
        report.error(
            "-",
            "events:PutEvents",
            format!(
                "{refused} of {} finding event(s) not put on the bus (put by the next run): {error}",
                events.len()
            ),
        );
    }
}

/// The body of a finding's event: the finding as the report shows it, and
/// the run that announced it.
#[derive(Serialize)]
struct EventDetail<'a> {
    command: &'a str,
    run_id: &'a str,
    #[serde(flatten)]
    finding: &'a Finding,
}

/// The event of one finding: `detail` is the finding (its `detail` text cut
/// like a message's, every text field cut further if the entry would still
/// exceed the bus's limit), `resources` the source object's ARN.
pub fn finding_event(command: &str, run_id: &str, finding: &Finding) -> BusEvent {
    let mut shown = for_message(finding);
    let mut event = event_of(command, run_id, &shown);
    if event.size() > EVENT_BUDGET_BYTES {
        // Only a hostile key or trail name gets here (S3 keys are at most 1
        // KiB, but escaping can multiply them): keep a bounded prefix.
        for field in [&mut shown.key, &mut shown.detail, &mut shown.bucket] {
            cut_chars(field, EVENT_FIELD_CHARS);
        }
        for field in [&mut shown.archive_key, &mut shown.trail, &mut shown.region] {
            if let Some(text) = field.as_mut() {
                cut_chars(text, EVENT_FIELD_CHARS);
            }
        }
        event = event_of(command, run_id, &shown);
    }
    debug_assert!(event.size() <= MAX_EVENT_BYTES);
    event
}

/// Room kept under [`MAX_EVENT_BYTES`] for one event.
const EVENT_BUDGET_BYTES: usize = 200 * 1024;

/// How much of each text field an oversized event keeps.
const EVENT_FIELD_CHARS: usize = 1024;

fn cut_chars(text: &mut String, max_chars: usize) {
    if text.chars().count() > max_chars {
        *text = text.chars().take(max_chars).collect();
        text.push_str(" … (cut)");
    }
}

fn event_of(command: &str, run_id: &str, finding: &Finding) -> BusEvent {
    let detail = serde_json::to_string(&EventDetail {
        command,
        run_id,
        finding,
    })
    .unwrap_or_default();
    let resources = if finding.bucket.is_empty() {
        Vec::new()
    } else if finding.key.is_empty() {
        vec![finding.bucket.clone()]
    } else {
        vec![format!("{}/{}", finding.bucket, finding.key)]
    };
    BusEvent {
        source: EVENT_SOURCE.to_string(),
        detail_type: EVENT_DETAIL_TYPE.to_string(),
        resources,
        detail,
    }
}

/// Groups events into `PutEvents` calls: at most [`MAX_EVENTS_PER_CALL`]
/// each, their sizes adding up to at most [`MAX_EVENT_BYTES`].
fn calls(events: &[BusEvent]) -> Vec<Vec<usize>> {
    let sizes: Vec<usize> = events.iter().map(BusEvent::size).collect();
    pack(&sizes, MAX_EVENT_BYTES)
        .into_iter()
        .flat_map(|group| {
            group
                .chunks(MAX_EVENTS_PER_CALL)
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One message to the notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub subject: String,
    pub body: String,
    /// 1-based.
    pub part: usize,
    /// Indexes of the findings it carries.
    pub members: Vec<usize>,
}

/// The body of one message. Every part names the run and the whole
/// announcement, so a reader of any part knows what it is a part of.
#[derive(Serialize)]
struct Body<'a> {
    summary: &'a str,
    command: &'a str,
    run_id: &'a str,
    started_at: DateTime<Utc>,
    part: usize,
    parts: usize,
    /// Findings in the whole announcement (all parts).
    findings_total: usize,
    critical_total: usize,
    findings: Vec<&'a Finding>,
    /// In the last part when the announcement had more findings than
    /// [`MAX_MESSAGES_PER_RUN`] messages carry: those not itemized.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_itemized: Option<NotItemized>,
}

/// The findings an announcement counts without itemizing them.
#[derive(Debug, Default, Serialize)]
struct NotItemized {
    findings: usize,
    critical: usize,
    by_kind: BTreeMap<FindingKind, usize>,
    note: &'static str,
}

/// Splits `findings` (critical first, as given) into messages of at most
/// [`MESSAGE_BUDGET_BYTES`] each, subject included, and at most
/// `max_messages` of them: past that, the last one counts the findings the
/// others could not itemize (its `members` are those findings).
pub fn messages(
    command: &str,
    run_id: &str,
    started_at: DateTime<Utc>,
    findings: &[Finding],
    max_messages: usize,
) -> Vec<Message> {
    let critical = findings
        .iter()
        .filter(|f| f.severity == Severity::Critical)
        .count();
    let earlier = findings.iter().filter(|f| !f.new).count();
    let summary = if earlier == 0 {
        format!(
            "trailvault {command}: {} new finding(s), {critical} critical",
            findings.len()
        )
    } else {
        format!(
            "trailvault {command}: {} new finding(s) ({earlier} not announced by earlier runs), {critical} critical",
            findings.len()
        )
    };
    let body_of =
        |part: usize, parts: usize, members: Vec<&Finding>, not_itemized: Option<NotItemized>| {
            serde_json::to_string(&Body {
                summary: &summary,
                command,
                run_id,
                started_at,
                part,
                parts,
                findings_total: findings.len(),
                critical_total: critical,
                findings: members,
                not_itemized,
            })
            .unwrap_or_default()
        };
    let subject_of = |part: usize, parts: usize| {
        if parts == 1 {
            summary.clone()
        } else {
            format!("{summary} [part {part}/{parts}]")
        }
    };
    // The envelope of the largest part numbers, and the longest subject; the
    // counts of the last part when it does not itemize (every kind named).
    let overflow_room = NotItemized {
        findings: findings.len(),
        critical: findings.len(),
        by_kind: FindingKind::ALL
            .iter()
            .map(|&kind| (kind, findings.len()))
            .collect(),
        note: NOT_ITEMIZED_NOTE,
    };
    let envelope = body_of(
        findings.len(),
        findings.len(),
        Vec::new(),
        Some(overflow_room),
    )
    .len()
        + subject_of(findings.len(), findings.len()).len();
    let room = MESSAGE_BUDGET_BYTES.saturating_sub(envelope);
    // Each finding plus the comma that separates it.
    let sizes: Vec<usize> = findings.iter().map(|f| json_len(f) + 1).collect();
    let mut parts = pack(&sizes, room);
    // Past the cap, the last message counts the rest instead of listing them.
    let mut overflow: Option<(Vec<usize>, NotItemized)> = None;
    if parts.len() > max_messages.max(1) {
        let rest: Vec<usize> = parts.drain(max_messages.max(1) - 1..).flatten().collect();
        let mut counts = NotItemized {
            note: NOT_ITEMIZED_NOTE,
            ..NotItemized::default()
        };
        for &index in &rest {
            let finding = &findings[index];
            counts.findings += 1;
            if finding.severity == Severity::Critical {
                counts.critical += 1;
            }
            *counts.by_kind.entry(finding.kind).or_default() += 1;
        }
        overflow = Some((rest, counts));
    }
    let count = parts.len() + usize::from(overflow.is_some());
    let mut out: Vec<Message> = parts
        .into_iter()
        .enumerate()
        .map(|(index, members)| {
            let part = index + 1;
            let body = body_of(
                part,
                count,
                members.iter().map(|&i| &findings[i]).collect(),
                None,
            );
            let subject = subject_of(part, count);
            debug_assert!(body.len() + subject.len() <= MESSAGE_BUDGET_BYTES || members.len() == 1);
            Message {
                subject,
                body,
                part,
                members,
            }
        })
        .collect();
    if let Some((members, counts)) = overflow {
        out.push(Message {
            subject: subject_of(count, count),
            body: body_of(count, count, Vec::new(), Some(counts)),
            part: count,
            members,
        });
    }
    out
}

const NOT_ITEMIZED_NOTE: &str =
    "more findings than the messages of one run carry: counted here; the findings ledger and `trailvault findings` list each one";

/// A finding as a message carries it: its `detail` cut to
/// [`MESSAGE_DETAIL_CHARS`] (the attacker can make it long), so that every
/// finding fits a message (keys are at most 1 KiB in S3).
fn for_message(finding: &Finding) -> Finding {
    let mut shown = finding.clone();
    if shown.detail.chars().count() > MESSAGE_DETAIL_CHARS {
        shown.detail = shown.detail.chars().take(MESSAGE_DETAIL_CHARS).collect();
        shown
            .detail
            .push_str(" … (cut; `trailvault findings` shows all)");
    }
    shown
}

fn json_len(finding: &Finding) -> usize {
    serde_json::to_vec(finding).map_or(0, |bytes| bytes.len())
}

/// Groups consecutive items so that each group's sizes add up to at most
/// `budget`; an item larger than the budget goes alone. Never an empty group.
fn pack(sizes: &[usize], budget: usize) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut used = 0usize;
    for (index, &size) in sizes.iter().enumerate() {
        if !current.is_empty() && used + size > budget {
            groups.push(std::mem::take(&mut current));
            used = 0;
        }
        current.push(index);
        used += size;
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::error::SeamError;
    use crate::model::findings::FindingKind;
    use crate::testsuite::memory::{MemoryEventBus, MemoryNotifier, MemoryStore};
    use async_trait::async_trait;
    use std::sync::Mutex;

    fn finding(kind: FindingKind, key: &str) -> Finding {
        Finding::new(kind, "111111111111", "b", key, "gone".into())
    }

    fn record(store: &MemoryStore, report: &mut Report, finding: Finding) {
        let recorded = store.record_finding(finding).unwrap();
        report.findings.push(recorded);
    }

    fn announcer<'a>(store: &'a MemoryStore, notifier: Option<&'a dyn Notifier>) -> Announcer<'a> {
        Announcer {
            store,
            ledger: None,
            notifier,
            events: None,
            run_id: "run-1",
        }
    }

    fn bodies(notifier: &MemoryNotifier) -> Vec<serde_json::Value> {
        notifier
            .messages
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| serde_json::from_str(body).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_small_announcement_is_one_message_naming_the_new_findings() {
        let store = MemoryStore::default();
        let mut report = Report::new("verify");
        record(
            &store,
            &mut report,
            finding(FindingKind::DigestMissing, "k"),
        );
        // Recorded and announced by an earlier run: not announced again.
        let old = finding(FindingKind::ChainGap, "k2");
        store.record_finding(old.clone()).unwrap();
        store.mark_announced(&old, AnnouncedTo::Ledger).unwrap();
        store.mark_announced(&old, AnnouncedTo::Notifier).unwrap();
        record(&store, &mut report, old);
        let notifier = MemoryNotifier::default();
        announce(&announcer(&store, Some(&notifier)), &mut report).await;
        let messages = notifier.messages.lock().unwrap().clone();
        assert_eq!(messages.len(), 1);
        assert_eq!(
            messages[0].0,
            "trailvault verify: 1 new finding(s), 1 critical"
        );
        let body: serde_json::Value = serde_json::from_str(&messages[0].1).unwrap();
        assert_eq!(body["command"], "verify");
        assert_eq!(body["run_id"], "run-1");
        assert_eq!(
            (body["part"].as_u64(), body["parts"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(body["findings"].as_array().unwrap().len(), 1);
        assert_eq!(body["findings"][0]["new"], true);
        assert!(body["findings"][0].get("unannounced").is_none());
        assert!(report.errors.is_empty());
        // Published, but the ledger part (no ledger here) is still to do.
        let pending = store.unannounced_findings().unwrap();
        assert_eq!(pending.len(), 1);
        assert!(pending[0].awaits(AnnouncedTo::Ledger));
        assert!(!pending[0].awaits(AnnouncedTo::Notifier));
    }

    #[tokio::test]
    async fn a_flood_is_split_into_parts_that_each_fit_critical_first() {
        let store = MemoryStore::default();
        let mut report = Report::new("collect");
        let long = "x".repeat(900);
        for index in 0..400 {
            let mut junk = finding(
                FindingKind::ObjectMalformed,
                &format!("junk/{index}/{long}"),
            );
            junk.archive_key = Some(format!("archive/{index}/{long}"));
            record(&store, &mut report, junk);
        }
        record(
            &store,
            &mut report,
            finding(FindingKind::LogFileMissing, "real"),
        );
        let notifier = MemoryNotifier::default();
        announce(&announcer(&store, Some(&notifier)), &mut report).await;
        let messages = notifier.messages.lock().unwrap().clone();
        assert!(messages.len() >= 6, "{} messages", messages.len());
        for (subject, body) in &messages {
            assert!(subject.len() + body.len() <= MESSAGE_BUDGET_BYTES);
        }
        let bodies = bodies(&notifier);
        let total: usize = bodies
            .iter()
            .map(|b| b["findings"].as_array().unwrap().len())
            .sum();
        assert_eq!(total, 401);
        for (index, body) in bodies.iter().enumerate() {
            assert_eq!(body["part"].as_u64(), Some(index as u64 + 1));
            assert_eq!(body["parts"].as_u64(), Some(messages.len() as u64));
            assert_eq!(body["findings_total"], 401);
            assert_eq!(body["critical_total"], 1);
            assert_eq!(body["run_id"], "run-1");
        }
        assert_eq!(bodies[0]["findings"][0]["key"], "real", "critical first");
        assert!(messages[1]
            .0
            .ends_with(&format!("[part 2/{}]", messages.len())));
        assert!(report.errors.is_empty());
        assert!(store
            .unannounced_findings()
            .unwrap()
            .iter()
            .all(|f| !f.awaits(AnnouncedTo::Notifier)));
    }

    #[tokio::test]
    async fn a_flood_past_the_message_cap_is_counted_and_rare_kinds_are_itemized_first() {
        let store = MemoryStore::default();
        let mut report = Report::new("collect");
        let long = "x".repeat(700);
        for index in 0..6000 {
            record(
                &store,
                &mut report,
                finding(
                    FindingKind::ObjectMalformed,
                    &format!("junk/{index}/{long}"),
                ),
            );
        }
        for index in 0..3 {
            record(
                &store,
                &mut report,
                finding(FindingKind::LogFileUnreferenced, &format!("rare/{index}")),
            );
        }
        record(
            &store,
            &mut report,
            finding(FindingKind::DigestMissing, "real"),
        );
        let notifier = MemoryNotifier::default();
        announce(&announcer(&store, Some(&notifier)), &mut report).await;
        let messages = notifier.messages.lock().unwrap().clone();
        assert_eq!(messages.len(), MAX_MESSAGES_PER_RUN);
        for (subject, body) in &messages {
            assert!(subject.len() + body.len() <= MESSAGE_BUDGET_BYTES);
        }
        let bodies = bodies(&notifier);
        let first: Vec<&str> = bodies[0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .take(4)
            .map(|f| f["key"].as_str().unwrap())
            .collect();
        assert_eq!(first, vec!["real", "rare/0", "rare/1", "rare/2"]);
        let itemized: usize = bodies
            .iter()
            .map(|b| b["findings"].as_array().unwrap().len())
            .sum();
        let last = bodies.last().unwrap();
        assert!(last["findings"].as_array().unwrap().is_empty());
        let counted = last["not_itemized"]["findings"].as_u64().unwrap() as usize;
        assert!(counted > 0);
        assert_eq!(itemized + counted, 6004);
        assert_eq!(
            last["not_itemized"]["by_kind"]["object_malformed"].as_u64(),
            Some(counted as u64)
        );
        assert_eq!(last["parts"].as_u64(), Some(MAX_MESSAGES_PER_RUN as u64));
        // Counted is announced: the next run does not send them again.
        assert!(report.errors.is_empty());
        assert!(store
            .unannounced_findings()
            .unwrap()
            .iter()
            .all(|f| !f.awaits(AnnouncedTo::Notifier)));
    }

    #[test]
    fn a_finding_with_a_huge_detail_still_fits_a_message() {
        let mut huge = finding(FindingKind::DigestMalformed, &"\"".repeat(1024));
        huge.detail = "\"\\".repeat(200_000);
        let shown = for_message(&huge);
        let messages = messages("verify", "r", Utc::now(), &[shown], MAX_MESSAGES_PER_RUN);
        assert_eq!(messages.len(), 1);
        assert!(messages[0].body.len() + messages[0].subject.len() <= MESSAGE_BUDGET_BYTES);
    }

    /// Refuses the first `failures` publishes.
    struct FlakyNotifier {
        failures: Mutex<usize>,
        inner: MemoryNotifier,
    }

    #[async_trait]
    impl Notifier for FlakyNotifier {
        async fn publish(&self, subject: &str, message: &str) -> Result<(), SeamError> {
            {
                let mut failures = self.failures.lock().unwrap();
                if *failures > 0 {
                    *failures -= 1;
                    return Err(SeamError::AccessDenied("topic policy".into()));
                }
            }
            self.inner.publish(subject, message).await
        }
    }

    #[tokio::test]
    async fn what_could_not_be_published_is_published_by_the_next_run() {
        let store = MemoryStore::default();
        let notifier = FlakyNotifier {
            failures: Mutex::new(1),
            inner: MemoryNotifier::default(),
        };
        let mut first = Report::new("collect");
        record(
            &store,
            &mut first,
            finding(FindingKind::LogFileMissing, "k"),
        );
        announce(&announcer(&store, Some(&notifier)), &mut first).await;
        assert_eq!(first.errors.len(), 1, "{:?}", first.errors);
        assert_eq!(first.errors[0].operation, "sns:Publish");
        assert!(notifier.inner.messages.lock().unwrap().is_empty());

        // The next run finds nothing new: the finding is published anyway.
        let mut second = Report::new("collect");
        record(
            &store,
            &mut second,
            finding(FindingKind::LogFileMissing, "k"),
        );
        assert!(!second.findings[0].new);
        announce(&announcer(&store, Some(&notifier)), &mut second).await;
        assert!(second.errors.is_empty());
        let bodies = bodies(&notifier.inner);
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0]["findings"][0]["key"], "k");
        assert_eq!(bodies[0]["findings"][0]["new"], false);
        assert!(bodies[0]["summary"]
            .as_str()
            .unwrap()
            .contains("1 not announced by earlier runs"));

        // Published once: the third run publishes nothing.
        let mut third = Report::new("collect");
        announce(&announcer(&store, Some(&notifier)), &mut third).await;
        assert_eq!(notifier.inner.messages.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn without_a_notifier_the_publish_part_is_done() {
        let store = MemoryStore::default();
        let mut report = Report::new("verify");
        record(
            &store,
            &mut report,
            finding(FindingKind::DigestMissing, "k"),
        );
        announce(&announcer(&store, None), &mut report).await;
        let pending = store.unannounced_findings().unwrap();
        assert!(!pending[0].awaits(AnnouncedTo::Notifier));
        assert!(pending[0].awaits(AnnouncedTo::Ledger));
    }

    fn copy_settings() -> CopySettings {
        CopySettings {
            archive_prefix: "archive".into(),
            kms_key_id: "key".into(),
            lock_mode: crate::seams::LockMode::Compliance,
            retention_days: 30,
            multipart_threshold_bytes: 5 * 1024 * 1024,
            inflate_limits: crate::cloudtrail::gzip::InflateLimits {
                max_inflated_bytes: 1 << 20,
                max_ratio: 100,
            },
        }
    }

    #[tokio::test]
    async fn the_ledger_part_is_cleared_only_when_the_ledger_write_succeeded() {
        let store = MemoryStore::default();
        let archive = crate::testsuite::memory::MemoryArchive::new("archive-bucket");
        let settings = copy_settings();
        let notifier = MemoryNotifier::default();
        let announcer = Announcer {
            store: &store,
            ledger: Some(LedgerTarget {
                archive: &archive,
                settings: &settings,
                shard: None,
            }),
            notifier: Some(&notifier),
            events: None,
            run_id: "run-1",
        };
        // The archive stores under another key than asked: the ledger write
        // fails its verification.
        *archive.wrong_kms_key.lock().unwrap() = Some("other".into());
        let mut first = Report::new("verify");
        record(&store, &mut first, finding(FindingKind::DigestMissing, "k"));
        announce(&announcer, &mut first).await;
        assert_eq!(first.errors.len(), 1, "{:?}", first.errors);
        assert_eq!(first.errors[0].operation, "write the findings ledger");
        assert_eq!(notifier.messages.lock().unwrap().len(), 1, "alerted anyway");
        let pending = store.unannounced_findings().unwrap();
        assert!(pending[0].awaits(AnnouncedTo::Ledger));

        *archive.wrong_kms_key.lock().unwrap() = None;
        let mut second = Report::new("verify");
        announce(&announcer, &mut second).await;
        assert!(second.errors.is_empty(), "{:?}", second.errors);
        assert!(store.unannounced_findings().unwrap().is_empty());
        assert_eq!(notifier.messages.lock().unwrap().len(), 1, "published once");
        let restored = MemoryStore::default();
        // The first write landed but failed its check; both read back as one.
        ledger::restore(&archive, &restored, "archive", None)
            .await
            .unwrap();
        assert_eq!(restored.findings().unwrap().len(), 1);
    }

    fn events_announcer<'a>(store: &'a MemoryStore, bus: &'a MemoryEventBus) -> Announcer<'a> {
        Announcer {
            store,
            ledger: None,
            notifier: None,
            events: Some(bus),
            run_id: "run-1",
        }
    }

    #[tokio::test]
    async fn each_finding_is_one_event_in_calls_of_at_most_ten() {
        let store = MemoryStore::default();
        let bus = MemoryEventBus::default();
        let mut report = Report::new("collect");
        for index in 0..23 {
            record(
                &store,
                &mut report,
                finding(FindingKind::ObjectMalformed, &format!("junk/{index}")),
            );
        }
        record(
            &store,
            &mut report,
            finding(FindingKind::LogFileMissing, "real"),
        );
        announce(&events_announcer(&store, &bus), &mut report).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(*bus.calls.lock().unwrap(), vec![10, 10, 4]);
        let events = bus.events.lock().unwrap().clone();
        assert_eq!(events.len(), 24);
        assert!(events
            .iter()
            .all(|e| e.source == "trailvault" && e.detail_type == "trailvault finding"));
        let first: serde_json::Value = serde_json::from_str(&events[0].detail).unwrap();
        assert_eq!(first["key"], "real", "critical first");
        assert_eq!(first["kind"], "log_file_missing");
        assert_eq!(first["severity"], "critical");
        assert_eq!(first["account_id"], "111111111111");
        assert_eq!(first["command"], "collect");
        assert_eq!(first["run_id"], "run-1");
        assert_eq!(first["new"], true);
        assert!(first.get("unannounced").is_none());
        assert_eq!(events[0].resources, vec!["b/real".to_string()]);
        assert!(store
            .unannounced_findings()
            .unwrap()
            .iter()
            .all(|f| !f.awaits(AnnouncedTo::Events)));
    }

    #[tokio::test]
    async fn a_refused_entry_leaves_only_its_finding_for_the_next_run() {
        let store = MemoryStore::default();
        let bus = MemoryEventBus::default();
        bus.refuse_containing
            .lock()
            .unwrap()
            .push("\"key\":\"refused\"".into());
        let mut first = Report::new("verify");
        record(
            &store,
            &mut first,
            finding(FindingKind::DigestMissing, "taken"),
        );
        record(
            &store,
            &mut first,
            finding(FindingKind::DigestMissing, "refused"),
        );
        announce(&events_announcer(&store, &bus), &mut first).await;
        assert_eq!(first.errors.len(), 1, "{:?}", first.errors);
        assert_eq!(first.errors[0].operation, "events:PutEvents");
        assert!(
            first.errors[0].message.starts_with("1 of 2"),
            "{}",
            first.errors[0].message
        );
        let waiting: Vec<String> = store
            .unannounced_findings()
            .unwrap()
            .into_iter()
            .filter(|f| f.awaits(AnnouncedTo::Events))
            .map(|f| f.key)
            .collect();
        assert_eq!(waiting, vec!["refused".to_string()]);

        // The bus takes it next run; the other one is not sent twice.
        bus.refuse_containing.lock().unwrap().clear();
        let mut second = Report::new("verify");
        announce(&events_announcer(&store, &bus), &mut second).await;
        assert!(second.errors.is_empty(), "{:?}", second.errors);
        let keys: Vec<String> = bus
            .events
            .lock()
            .unwrap()
            .iter()
            .map(|e| {
                serde_json::from_str::<serde_json::Value>(&e.detail).unwrap()["key"].to_string()
            })
            .collect();
        assert_eq!(keys, vec!["\"taken\"", "\"refused\""]);
    }

    #[tokio::test]
    async fn a_failed_call_leaves_its_findings_and_the_sns_part_is_kept_apart() {
        let store = MemoryStore::default();
        let bus = MemoryEventBus::default();
        *bus.failing_calls.lock().unwrap() = 1;
        let notifier = MemoryNotifier::default();
        let announcer = Announcer {
            store: &store,
            ledger: None,
            notifier: Some(&notifier),
            events: Some(&bus),
            run_id: "run-1",
        };
        let mut first = Report::new("collect");
        record(
            &store,
            &mut first,
            finding(FindingKind::LogFileMissing, "k"),
        );
        announce(&announcer, &mut first).await;
        assert_eq!(first.errors.len(), 1, "{:?}", first.errors);
        let pending = store.unannounced_findings().unwrap();
        assert!(pending[0].awaits(AnnouncedTo::Events));
        assert!(!pending[0].awaits(AnnouncedTo::Notifier));

        let mut second = Report::new("collect");
        announce(&announcer, &mut second).await;
        assert!(second.errors.is_empty(), "{:?}", second.errors);
        assert_eq!(bus.events.lock().unwrap().len(), 1);
        assert_eq!(notifier.messages.lock().unwrap().len(), 1, "SNS not again");
    }

    #[test]
    fn a_hostile_finding_still_makes_an_event_within_the_limit() {
        let mut hostile = finding(FindingKind::DigestMalformed, &"\u{1}".repeat(1024));
        hostile.detail = "\"\\".repeat(200_000);
        hostile.trail = Some("\u{2}".repeat(100_000));
        hostile.region = Some("\u{3}".repeat(100_000));
        hostile.archive_key = Some("\"".repeat(100_000));
        let event = finding_event("verify", "run", &hostile);
        assert!(event.size() <= MAX_EVENT_BYTES, "{}", event.size());
        let detail: serde_json::Value = serde_json::from_str(&event.detail).unwrap();
        assert_eq!(detail["kind"], "digest_malformed");
        // Many large ones go in several calls, each within the limit.
        let events = vec![event; 12];
        for call in calls(&events) {
            assert!(call.len() <= MAX_EVENTS_PER_CALL);
            assert!(call.iter().map(|&i| events[i].size()).sum::<usize>() <= MAX_EVENT_BYTES);
        }
    }

    #[test]
    fn packing_keeps_order_and_budget() {
        assert_eq!(pack(&[], 10), Vec::<Vec<usize>>::new());
        assert_eq!(pack(&[4, 4, 4], 10), vec![vec![0, 1], vec![2]]);
        assert_eq!(pack(&[20, 1, 1], 10), vec![vec![0], vec![1, 2]]);
    }
}
