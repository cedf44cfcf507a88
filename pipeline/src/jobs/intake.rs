//! Event-driven intake: what `run` does between its sweeps when a queue is
//! configured. Each message names delivered trail files; each file named is
//! copied through the one copy path ([`collect::fetch_notified`]: in-flight
//! marker, adoption, size cap, content checks, `inspect`, store record),
//! the chains of new digests are validated at once (the verify job's
//! [`validate`]), and the message is deleted only after the store recorded
//! every copy. See `intake.md` beside this file for the invariants.
//!
//! A message is a hint, never a fact: a body that cannot be read, names too
//! many keys, a bucket that is no configured source, a key outside the
//! configured prefix, organization, Regions or accounts, or a key that is no
//! CloudTrail key is counted and sent to the dead-letter queue; nothing it
//! names is read. What it names is read and checked exactly as a listing
//! run reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::cloudtrail::keys::{parse_trail_key, Family};
use crate::cloudtrail::notification::{parse_notice, Notice, Notified};
use crate::collect::{self, FetchContext};
use crate::model::object::{SourceRef, MAX_S3_KEY_BYTES};
use crate::model::report::Report;
use crate::progress::lag::LagTracker;
use crate::seams::{NotificationQueue, QueueMessage, TrailSource};

use super::collect::check_archive;
use super::ownership::{self, Verdict};
use super::sources::{self, filter_accounts, Scope, SourceSpec};
use super::verify::{announce, merge_verify, validate};
use super::{JobSettings, World};

/// `[intake]` as the job uses it.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    /// Most objects one message may name; more and it is dead-lettered.
    pub max_keys_per_message: usize,
    /// Messages asked for per receive (SQS: at most 10).
    pub max_messages: u32,
    /// Long-poll wait of one receive (SQS: at most 20 s).
    pub wait: Duration,
    /// How long a received message stays invisible; extended every half of
    /// it while the message is worked on.
    pub visibility: Duration,
    /// `--public-keys` / `[verify] public_keys_file` for the validation of
    /// new digests.
    pub keys_file: Option<PathBuf>,
}

/// What intake did, summed over a stretch of messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntakeStats {
    pub messages_received: u64,
    /// Objects named by accepted messages.
    pub objects_notified: u64,
    /// Objects copied into the archive (not known to the store before).
    pub objects_copied: u64,
    /// Messages deleted after every object they name was recorded.
    pub messages_deleted: u64,
    /// Messages that announce nothing (test events, other S3 events): deleted.
    pub messages_ignored: u64,
    /// Messages sent to the dead-letter queue, by reason label.
    pub messages_rejected: BTreeMap<String, u64>,
    /// Messages left on the queue after an error, to be received again (and
    /// moved to the dead-letter queue by its redrive policy when that keeps
    /// happening).
    pub messages_retried: u64,
}

impl IntakeStats {
    pub fn rejected(&self) -> u64 {
        self.messages_rejected.values().sum()
    }
}

/// One batch of messages: its numbers, and a report of the copies' errors,
/// findings and validation (`command` "intake").
pub struct IntakeBatch {
    pub stats: IntakeStats,
    pub report: Report,
}

impl IntakeBatch {
    /// Whether the batch did anything worth printing.
    pub fn is_quiet(&self) -> bool {
        self.stats.messages_received == 0
            && self.report.errors.is_empty()
            && self.report.findings.is_empty()
    }
}

/// Why a message is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Constant label (metrics): `not_json`, `unknown_bucket`, …
    pub label: &'static str,
    pub detail: String,
}

impl Rejection {
    fn new(label: &'static str, detail: impl Into<String>) -> Rejection {
        Rejection {
            label,
            detail: detail.into(),
        }
    }
}

/// One notified object, admitted: where it is read and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// Reading account, bucket, key.
    pub target: SourceRef,
    /// The account whose history it is (its `AWSLogs/<account>/` folder).
    pub member_account_id: String,
    pub region: String,
    pub digest: bool,
}

/// Checks one notified object against the configured sources: the bucket
/// is a source's, the key is a CloudTrail key under that source's prefix
/// (and organization), of one of its Regions, of an account the
/// configuration covers (`accounts` for per-account trails; the include /
/// exclude filters for an organization trail's members, whose former
/// members are collected too).
pub fn admit(
    notified: &Notified,
    specs: &[SourceSpec],
    settings_accounts: &sources::AccountSelection,
    accounts: &[String],
) -> Result<Admitted, Rejection> {
    let shown = format!(
        "s3://{}/{}",
        crate::model::text::escape_control(&notified.bucket),
        crate::model::text::escape_control(&notified.key)
    );
    if notified.key.len() > MAX_S3_KEY_BYTES {
        return Err(Rejection::new(
            "key_too_long",
            format!("a key of {} bytes", notified.key.len()),
        ));
    }
    let parsed = parse_trail_key(&notified.key)
        .map_err(|error| Rejection::new("not_cloudtrail_key", format!("{shown}: {error}")))?;
    let region_ok = |regions: &[String]| regions.is_empty() || regions.contains(&parsed.region);
    let prefix_ok = |key_prefix: &str| parsed.prefix == key_prefix.trim_matches('/');
    let mut bucket_known = false;
    for spec in specs {
        match spec {
            SourceSpec::PerAccount {
                bucket_template,
                key_prefix,
                regions,
            } => {
                if SourceSpec::bucket_for(bucket_template, &parsed.account_id) != notified.bucket {
                    bucket_known |= bucket_template_could_name(bucket_template, &notified.bucket);
                    continue;
                }
                bucket_known = true;
                if parsed.org_id.is_none()
                    && prefix_ok(key_prefix)
                    && region_ok(regions)
                    && accounts.contains(&parsed.account_id)
                {
                    return Ok(Admitted {
                        target: SourceRef {
                            account_id: parsed.account_id.clone(),
                            bucket: notified.bucket.clone(),
                            key: notified.key.clone(),
                        },
                        member_account_id: parsed.account_id.clone(),
                        region: parsed.region.clone(),
                        digest: parsed.family == Family::Digest,
                    });
                }
            }
            SourceSpec::Organization {
                bucket,
                org_id,
                key_prefix,
                reader_account_id,
                regions,
            } => {
                if *bucket != notified.bucket {
                    continue;
                }
                bucket_known = true;
                let member_selected = !filter_accounts(
                    [parsed.account_id.clone()].into_iter().collect(),
                    &settings_accounts.include,
                    &settings_accounts.exclude,
                    &[],
                )
                .is_empty();
                if parsed.org_id.as_deref() == Some(org_id.as_str())
                    && prefix_ok(key_prefix)
                    && region_ok(regions)
                    && member_selected
                {
                    return Ok(Admitted {
                        target: SourceRef {
                            account_id: reader_account_id.clone(),
                            bucket: notified.bucket.clone(),
                            key: notified.key.clone(),
                        },
                        member_account_id: parsed.account_id.clone(),
                        region: parsed.region.clone(),
                        digest: parsed.family == Family::Digest,
                    });
                }
            }
        }
    }
    if bucket_known {
        Err(Rejection::new(
            "outside_sources",
            format!("{shown} is outside the configured prefix, organization, Regions or accounts of its bucket"),
        ))
    } else {
        Err(Rejection::new(
            "unknown_bucket",
            format!("{shown}: the bucket is no configured source"),
        ))
    }
}

/// Whether `bucket` has the shape of `template` for some account (only to
/// tell "a key outside the sources" from "a bucket nobody configured").
fn bucket_template_could_name(template: &str, bucket: &str) -> bool {
    let Some((before, after)) = template.split_once(sources::ACCOUNT_ID_PLACEHOLDER) else {
        return template == bucket;
    };
    bucket.len() >= before.len() + after.len() + 12
        && bucket.starts_with(before)
        && bucket.ends_with(after)
}

/// What became of one message.
#[derive(Debug)]
enum Handled {
    /// Every object recorded (or nothing announced): delete it.
    Done {
        copied: u64,
        notified: u64,
        digests: Vec<(String, String)>,
    },
    Ignored(String),
    Rejected(Rejection),
    /// An error: leave it for redelivery.
    Retry,
}

/// Consumes `queue` until `until` or until `world.cancel.stop` fires,
/// calling `on_batch` after each receive that did something. Messages are
/// handled one at a time (copies share the run's in-flight marker, and the
/// daemon never sweeps while intake runs), each object in the order named.
pub async fn intake_until(
    world: &World,
    settings: &JobSettings,
    intake: &IntakeSettings,
    queue: &dyn NotificationQueue,
    until: tokio::time::Instant,
    on_batch: &mut (dyn FnMut(&IntakeBatch) + Send),
) {
    // Nothing is written into an archive that is not locked down: the sweep
    // reports it; the messages wait on the queue.
    let mut scratch = Report::new("intake");
    if !check_archive(
        world,
        &mut scratch,
        false,
        settings.collect.copy.retention_days,
    )
    .await
    {
        warn!("the archive is not locked down; intake waits for the next sweep");
        wait_until(world, until).await;
        return;
    }
    let accounts = match sources::accounts(world, &settings.accounts, &Scope::default()).await {
        Ok(accounts) => accounts,
        Err(error) => {
            let mut report = Report::new("intake");
            report.error("-", "list accounts", error);
            on_batch(&IntakeBatch {
                stats: IntakeStats::default(),
                report,
            });
            wait_until(world, until).await;
            return;
        }
    };
    let mut sessions: BTreeMap<(String, String), Option<Arc<dyn TrailSource>>> = BTreeMap::new();
    while !world.cancel.stop.is_cancelled() {
        let now = tokio::time::Instant::now();
        if now >= until {
            return;
        }
        let wait = intake.wait.min(until - now);
        let received = tokio::select! {
            received = queue.receive(intake.max_messages, wait, intake.visibility) => received,
            () = world.cancel.stop.cancelled() => return,
        };
        let mut batch = IntakeBatch {
            stats: IntakeStats::default(),
            report: Report::new("intake"),
        };
        let messages = match received {
            Ok(messages) => messages,
            Err(error) => {
                warn!(%error, "cannot receive from the intake queue");
                batch
                    .report
                    .error("-", "sqs:ReceiveMessage", error.to_string());
                on_batch(&batch);
                // Not a busy loop when the queue is out of reach.
                tokio::select! {
                    () = tokio::time::sleep(intake.wait.min(Duration::from_secs(5))) => {}
                    () = world.cancel.stop.cancelled() => return,
                }
                continue;
            }
        };
        let mut chains: BTreeSet<(String, String)> = BTreeSet::new();
        for message in messages {
            batch.stats.messages_received += 1;
            let handled = with_visibility(
                queue,
                &message,
                intake.visibility,
                handle(
                    world,
                    settings,
                    intake,
                    &accounts,
                    &mut sessions,
                    &message,
                    &mut batch.report,
                ),
            )
            .await;
            settle(queue, &message, handled, &mut batch, &mut chains).await;
        }
        if !chains.is_empty() && !world.cancel.stop.is_cancelled() {
            validate_chains(
                world,
                settings,
                intake,
                &accounts,
                &chains,
                &mut batch.report,
            )
            .await;
        }
        if !batch.report.findings.is_empty() {
            announce(world, settings, &mut batch.report).await;
        }
        batch.report.finished_at = world.clock.now();
        if !batch.is_quiet() {
            on_batch(&batch);
        }
    }
}

async fn wait_until(world: &World, until: tokio::time::Instant) {
    tokio::select! {
        () = tokio::time::sleep_until(until) => {}
        () = world.cancel.stop.cancelled() => {}
    }
}

/// Runs `work` while keeping `message` invisible: its visibility is
/// extended every half of `visibility`.
async fn with_visibility<F: std::future::Future<Output = Handled>>(
    queue: &dyn NotificationQueue,
    message: &QueueMessage,
    visibility: Duration,
    work: F,
) -> Handled {
    tokio::pin!(work);
    let period = (visibility / 2).max(Duration::from_secs(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            handled = &mut work => return handled,
            _ = ticker.tick() => {
                if let Err(error) = queue.extend_visibility(&message.receipt, visibility).await {
                    warn!(message_id = %message.id, %error, "cannot extend the visibility of an intake message");
                }
            }
        }
    }
}

/// Deletes, dead-letters or leaves the message as `handled` says, counting.
async fn settle(
    queue: &dyn NotificationQueue,
    message: &QueueMessage,
    handled: Handled,
    batch: &mut IntakeBatch,
    chains: &mut BTreeSet<(String, String)>,
) {
    let stats = &mut batch.stats;
    match handled {
        Handled::Done {
            copied,
            notified,
            digests,
        } => {
            stats.objects_notified += notified;
            stats.objects_copied += copied;
            batch.report.stats.objects_copied += copied;
            chains.extend(digests);
            match queue.delete(&message.receipt).await {
                Ok(()) => stats.messages_deleted += 1,
                // Received again later: the store already knows its objects.
                Err(error) => {
                    warn!(message_id = %message.id, %error, "cannot delete an intake message")
                }
            }
        }
        Handled::Ignored(why) => {
            info!(message_id = %message.id, what = %why, "intake message announces nothing");
            stats.messages_ignored += 1;
            if let Err(error) = queue.delete(&message.receipt).await {
                warn!(message_id = %message.id, %error, "cannot delete an intake message");
            }
        }
        Handled::Rejected(rejection) => {
            warn!(
                message_id = %message.id,
                reason = rejection.label,
                detail = %rejection.detail,
                "intake message refused; moved to the dead-letter queue"
            );
            *stats
                .messages_rejected
                .entry(rejection.label.to_string())
                .or_default() += 1;
            let reason = format!("{}: {}", rejection.label, rejection.detail);
            if let Err(error) = queue.dead_letter(message, &reason).await {
                batch.report.error(
                    "-",
                    "move an intake message to the dead-letter queue",
                    format!("message {}: {error}", message.id),
                );
            }
        }
        Handled::Retry => stats.messages_retried += 1,
    }
}

async fn handle(
    world: &World,
    settings: &JobSettings,
    intake: &IntakeSettings,
    accounts: &[String],
    sessions: &mut BTreeMap<(String, String), Option<Arc<dyn TrailSource>>>,
    message: &QueueMessage,
    report: &mut Report,
) -> Handled {
    let objects = match parse_notice(&message.body, intake.max_keys_per_message) {
        Ok(Notice::Objects(objects)) => objects,
        Ok(Notice::Nothing(why)) => return Handled::Ignored(why),
        Err(error) => return Handled::Rejected(Rejection::new(error.label(), error.to_string())),
    };
    // Every object is admitted before any is read: a message naming one
    // foreign key is refused as a whole (the sweep still finds its good ones).
    let mut admitted = Vec::with_capacity(objects.len());
    for notified in &objects {
        match admit(notified, &settings.sources, &settings.accounts, accounts) {
            Ok(object) if !admitted.contains(&object) => admitted.push(object),
            Ok(_) => {}
            Err(rejection) => return Handled::Rejected(rejection),
        }
    }
    let mut copied = 0;
    let mut digests = Vec::new();
    let mut failed = false;
    // Notes the newest file per account, as a listing run does (`lag/…`).
    let tracker = LagTracker::new(world.store.as_ref(), world.clock.now());
    for object in &admitted {
        if world.cancel.stop.is_cancelled() {
            failed = true;
            break;
        }
        let slot = (
            object.target.account_id.clone(),
            object.target.bucket.clone(),
        );
        if !sessions.contains_key(&slot) {
            let opened = match world.connector.source(&slot.0, &slot.1).await {
                Ok(source) => match ownership::check(&slot.0, source.as_ref()).await {
                    Verdict::Read => Ok(Some(source)),
                    Verdict::Refuse(finding) => {
                        // Recorded as the sweep records it, so it is announced.
                        match world.store.record_finding(finding.clone()) {
                            Ok(recorded) => report.add_findings([recorded]),
                            Err(error) => {
                                report.error(&slot.0, "record_finding", error.to_string());
                                report.add_findings([finding]);
                            }
                        }
                        Ok(None)
                    }
                    Verdict::Error(error) => Err(error),
                },
                Err(error) => Err(error),
            };
            match opened {
                Ok(opened) => {
                    sessions.insert(slot.clone(), opened);
                }
                Err(error) => {
                    report.error(&slot.0, &format!("open s3://{}", slot.1), error.to_string());
                    return Handled::Retry;
                }
            }
        }
        let Some(source) = sessions.get(&slot).cloned().flatten() else {
            return Handled::Rejected(Rejection::new(
                "bucket_not_owned",
                format!(
                    "s3://{} is not owned by account {}, which reads it",
                    slot.1, slot.0
                ),
            ));
        };
        let before = world.store.object(&object.target).ok().flatten();
        let context = FetchContext {
            archive: world.archive.as_ref(),
            store: &tracker,
            settings: &settings.collect,
            now: world.clock.now(),
            cancel: &world.cancel.stop,
        };
        let fetched =
            collect::fetch_notified(context, source, &object.member_account_id, &object.target)
                .await;
        report.add_findings(fetched.findings);
        if fetched.absent {
            return Handled::Rejected(Rejection::new(
                "object_not_found",
                format!(
                    "s3://{}/{} does not exist",
                    object.target.bucket,
                    crate::model::text::escape_control(&object.target.key)
                ),
            ));
        }
        if !fetched.errors.is_empty() {
            report.stats.errors += fetched.errors.len() as u64;
            report.errors.extend(fetched.errors);
            failed = true;
            continue;
        }
        if let Some(record) = &fetched.record {
            if before.as_ref().map(|b| &b.etag) != Some(&record.etag) {
                copied += 1;
                report.stats.bytes_copied += record.size;
            }
        }
        if object.digest {
            digests.push((object.member_account_id.clone(), object.region.clone()));
        }
    }
    if let Err(error) = tracker.save() {
        report.error("-", "record_lag", error.to_string());
    }
    if failed {
        return Handled::Retry;
    }
    Handled::Done {
        copied,
        notified: admitted.len() as u64,
        digests,
    }
}

/// Validates the chains new digests extend: one validation per (member
/// account, Region), through the verify job's incremental validation.
async fn validate_chains(
    world: &World,
    settings: &JobSettings,
    intake: &IntakeSettings,
    accounts: &[String],
    chains: &BTreeSet<(String, String)>,
    report: &mut Report,
) {
    if !settings.verify_after_collect {
        return;
    }
    let abort = world.cancel.abort_on_stop();
    for (member, region) in chains {
        let scope = Scope {
            accounts: vec![member.clone()],
            regions: vec![region.clone()],
        };
        let mut readers: Vec<String> = accounts.to_vec();
        if !readers.contains(member) {
            readers.push(member.clone());
        }
        merge_verify(
            report,
            validate(
                world,
                settings,
                &readers,
                &scope,
                intake.keys_file.as_deref(),
                false,
            )
            .await,
        );
    }
    abort.abort();
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
