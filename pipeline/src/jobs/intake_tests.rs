//! Intake against the in-memory twins: the queue, the connector, the archive.

use std::io::Write as _;
use std::sync::atomic::Ordering;

use chrono::TimeZone;

use super::*;
use crate::cloudtrail::gzip::InflateLimits;
use crate::collect::CollectSettings;
use crate::copy::CopySettings;
use crate::jobs::{AccountSelection, Cancellation};
use crate::seams::LockMode;
use crate::testsuite::memory::{
    FixedClock, MemoryAccounts, MemoryArchive, MemoryConnector, MemoryPublicKeys, MemoryStore,
};
use crate::testsuite::queue::MemoryQueue;
use crate::verify::VerifySettings;
use crate::SeamError;

const MEMBER: &str = "222222222201";
const OTHER: &str = "222222222202";
const BUCKET: &str = "trail-222222222201";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn log_body(account: &str) -> Vec<u8> {
    gzip(
        format!(r#"{{"Records":[{{"eventName":"GetObject","recipientAccountId":"{account}"}}]}}"#)
            .as_bytes(),
    )
}

fn log_key(account: &str, unique: &str) -> String {
    format!("AWSLogs/{account}/CloudTrail/us-east-1/2026/11/27/{account}_CloudTrail_us-east-1_20261127T1155Z_{unique}.json.gz")
}

fn notification(bucket: &str, keys: &[&str]) -> String {
    let inner = serde_json::json!({"s3Bucket": bucket, "s3ObjectKey": keys}).to_string();
    serde_json::json!({
        "Type": "Notification",
        "MessageId": "sns-1",
        "TopicArn": "arn:aws:sns:us-east-1:222222222201:trail",
        "Message": inner,
    })
    .to_string()
}

fn job_settings() -> JobSettings {
    let inflate_limits = InflateLimits {
        max_inflated_bytes: 1 << 20,
        max_ratio: 100,
    };
    JobSettings {
        accounts: AccountSelection {
            ids: vec![MEMBER.into(), OTHER.into()],
            ..AccountSelection::default()
        },
        sources: vec![SourceSpec::PerAccount {
            bucket_template: "trail-{account_id}".into(),
            key_prefix: String::new(),
            regions: Vec::new(),
        }],
        collect: CollectSettings {
            copy: CopySettings {
                archive_prefix: "archive".into(),
                kms_key_id: "arn:aws:kms:us-east-1:111111111111:key/k".into(),
                lock_mode: LockMode::Compliance,
                retention_days: 1,
                multipart_threshold_bytes: 5 * 1024 * 1024,
                inflate_limits,
            },
            concurrency: 1,
            list_concurrency: 1,
            lookback_days: 2,
            redelivery_sweep_days: 5,
            sweep_interval: chrono::Duration::hours(24),
            copy_attempts: 1,
            max_keys_per_partition_per_run: 10_000,
            max_object_bytes: 1 << 30,
        },
        verify_after_collect: false,
        verify: VerifySettings {
            archive_prefix: "archive".into(),
            chain_head_stale: chrono::Duration::hours(3),
            unreferenced_grace: chrono::Duration::hours(24),
            unreadable_grace: chrono::Duration::hours(24),
            max_digest_bytes: 1 << 20,
            inflate_limits,
            full: false,
            concurrency: 1,
        },
        public_keys_file: None,
        source_retention_days: None,
        store_path: std::env::temp_dir().join("trailvault-intake-test-store"),
    }
}

fn intake_settings() -> IntakeSettings {
    IntakeSettings {
        max_keys_per_message: 5,
        max_messages: 10,
        wait: Duration::from_secs(1),
        visibility: Duration::from_secs(60),
        keys_file: None,
    }
}

struct Fixture {
    world: World,
    connector: Arc<MemoryConnector>,
    archive: Arc<MemoryArchive>,
    queue: MemoryQueue,
}

impl Fixture {
    fn new() -> Fixture {
        let connector = Arc::new(MemoryConnector::default());
        let archive = Arc::new(MemoryArchive::new("archive-bucket"));
        let world = World {
            archive: archive.clone(),
            store: Arc::new(MemoryStore::default()),
            accounts: Arc::new(MemoryAccounts::default()),
            connector: connector.clone(),
            public_keys: Arc::new(MemoryPublicKeys::default()),
            notifier: None,
            events: None,
            clock: Arc::new(FixedClock::at(
                chrono::Utc
                    .with_ymd_and_hms(2026, 11, 27, 12, 0, 0)
                    .unwrap(),
            )),
            cancel: Cancellation::default(),
            run_id: "run".into(),
        };
        Fixture {
            world,
            connector,
            archive,
            queue: MemoryQueue::default(),
        }
    }

    /// Consumes the queue for `seconds` (paused time), returning the batches' sums.
    async fn drain(&self, seconds: u64) -> (IntakeStats, Vec<Report>) {
        let mut stats = IntakeStats::default();
        let mut reports = Vec::new();
        let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
        intake_until(
            &self.world,
            &job_settings(),
            &intake_settings(),
            &self.queue,
            until,
            &mut |batch: &IntakeBatch| {
                stats.messages_received += batch.stats.messages_received;
                stats.objects_notified += batch.stats.objects_notified;
                stats.objects_copied += batch.stats.objects_copied;
                stats.messages_deleted += batch.stats.messages_deleted;
                stats.messages_ignored += batch.stats.messages_ignored;
                stats.messages_retried += batch.stats.messages_retried;
                for (label, count) in &batch.stats.messages_rejected {
                    *stats.messages_rejected.entry(label.clone()).or_default() += count;
                }
                reports.push(batch.report.clone());
            },
        )
        .await;
        (stats, reports)
    }
}

#[tokio::test(start_paused = true)]
async fn a_notified_log_is_copied_without_a_listing_and_its_message_deleted() {
    let fixture = Fixture::new();
    let source = fixture.connector.bucket(MEMBER, BUCKET);
    let key = log_key(MEMBER, "a");
    source.put(&key, log_body(MEMBER), &[]);
    fixture.queue.send(&notification(BUCKET, &[&key]));

    let (stats, reports) = fixture.drain(5).await;
    assert_eq!(stats.messages_received, 1);
    assert_eq!(stats.objects_notified, 1);
    assert_eq!(stats.objects_copied, 1);
    assert_eq!(stats.messages_deleted, 1);
    assert_eq!(fixture.queue.pending(), 0);
    assert!(reports.iter().all(|r| r.errors.is_empty()), "{reports:#?}");
    assert_eq!(source.lists.load(Ordering::Relaxed), 0, "no listing");
    assert_eq!(source.heads.load(Ordering::Relaxed), 1);
    let target = SourceRef {
        account_id: MEMBER.into(),
        bucket: BUCKET.into(),
        key: key.clone(),
    };
    let record = fixture
        .world
        .store
        .object(&target)
        .unwrap()
        .expect("recorded");
    assert!(fixture
        .archive
        .latest_body(&target.archive_key("archive"))
        .is_some());

    // The same notification again (SNS delivers at least once) and a
    // duplicate S3 event: nothing is copied again, both are deleted.
    fixture.queue.send(&notification(BUCKET, &[&key]));
    fixture.queue.send(
        &serde_json::json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": BUCKET}, "object": {"key": key}}}]})
        .to_string(),
    );
    let (again, _) = fixture.drain(5).await;
    assert_eq!(again.messages_deleted, 2);
    assert_eq!(again.objects_copied, 0);
    assert_eq!(
        fixture
            .archive
            .version_count(&target.archive_key("archive")),
        1
    );
    assert_eq!(fixture.world.store.object(&target).unwrap(), Some(record));
    assert_eq!(source.gets.load(Ordering::Relaxed), 1, "read once");
}

#[tokio::test(start_paused = true)]
async fn hostile_messages_go_to_the_dead_letter_queue_and_nothing_is_read() {
    let fixture = Fixture::new();
    let source = fixture.connector.bucket(MEMBER, BUCKET);
    let key = log_key(MEMBER, "a");
    source.put(&key, log_body(MEMBER), &[]);
    let foreign = fixture.connector.bucket(MEMBER, "attacker-bucket");
    foreign.put(&key, log_body(MEMBER), &[]);
    let unlisted = "999999999999";
    let many: Vec<String> = (0..6).map(|i| log_key(MEMBER, &i.to_string())).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let bodies = [
        (notification("attacker-bucket", &[&key]), "unknown_bucket"),
        // A good key and a foreign one: refused as a whole.
        (
            notification(BUCKET, &[&key, "AWSLogs/../../etc/passwd"]),
            "not_cloudtrail_key",
        ),
        (
            notification(&format!("trail-{unlisted}"), &[&log_key(unlisted, "x")]),
            "outside_sources",
        ),
        (
            notification(BUCKET, &[&format!("other/{}", log_key(MEMBER, "p"))]),
            "outside_sources",
        ),
        (notification(BUCKET, &many), "too_many_keys"),
        (notification(BUCKET, &[&"k".repeat(1100)]), "key_too_long"),
        ("{garbage".to_string(), "not_json"),
        ("x".repeat(300_000), "oversized"),
        (
            notification(BUCKET, &[&log_key(MEMBER, "neverdelivered")]),
            "object_not_found",
        ),
    ];
    for (body, _) in &bodies {
        fixture.queue.send(body);
    }
    let (stats, _) = fixture.drain(5).await;
    assert_eq!(stats.messages_received, bodies.len() as u64);
    assert_eq!(stats.rejected(), bodies.len() as u64, "{stats:?}");
    assert_eq!(stats.messages_deleted, 0);
    let dead = fixture.queue.dead();
    assert_eq!(dead.len(), bodies.len());
    for ((body, label), (dead_body, reason)) in bodies.iter().zip(&dead) {
        assert_eq!(body, dead_body);
        assert!(reason.starts_with(label), "{reason} is not {label}");
    }
    assert_eq!(fixture.queue.pending(), 0);
    assert_eq!(foreign.gets.load(Ordering::Relaxed), 0);
    assert_eq!(foreign.heads.load(Ordering::Relaxed), 0);
    assert_eq!(source.gets.load(Ordering::Relaxed), 0);
    assert!(fixture.archive.keys().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_copy_leaves_the_message_for_redelivery() {
    let fixture = Fixture::new();
    let source = fixture.connector.bucket(MEMBER, BUCKET);
    let key = log_key(MEMBER, "a");
    source.put(&key, log_body(MEMBER), &[]);
    source.fail_gets(&key, SeamError::Transient("connection reset".into()));
    fixture.queue.send(&notification(BUCKET, &[&key]));
    let (stats, reports) = fixture.drain(5).await;
    assert_eq!(stats.messages_retried, 1);
    assert_eq!(stats.messages_deleted, 0);
    assert_eq!(fixture.queue.pending(), 1, "still on the queue");
    assert!(fixture.queue.dead().is_empty());
    assert!(reports.iter().any(|r| !r.errors.is_empty()));

    // The visibility runs out; the source answers again.
    source.clear_failures();
    fixture.queue.expire();
    let (again, _) = fixture.drain(5).await;
    assert_eq!(again.objects_copied, 1);
    assert_eq!(again.messages_deleted, 1);
    assert_eq!(fixture.queue.pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn test_events_are_deleted_and_an_unreachable_queue_is_reported() {
    let fixture = Fixture::new();
    fixture
        .queue
        .send(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"trail-222222222201"}"#);
    let (stats, _) = fixture.drain(3).await;
    assert_eq!(stats.messages_ignored, 1);
    assert_eq!(fixture.queue.pending(), 0);
    assert!(fixture.queue.dead().is_empty());

    *fixture.queue.failing.lock().unwrap() =
        Some(SeamError::AccessDenied("sqs:ReceiveMessage".into()));
    let (_, reports) = fixture.drain(3).await;
    assert!(!reports.is_empty());
    assert!(reports
        .iter()
        .all(|r| r.errors.iter().all(|e| e.operation == "sqs:ReceiveMessage")));
}

#[tokio::test(start_paused = true)]
async fn visibility_is_extended_while_a_message_is_worked_on() {
    let fixture = Fixture::new();
    let message = QueueMessage {
        id: "m".into(),
        receipt: "r".into(),
        body: String::new(),
        receive_count: 1,
    };
    let handled = with_visibility(&fixture.queue, &message, Duration::from_secs(10), async {
        tokio::time::sleep(Duration::from_secs(26)).await;
        Handled::Retry
    })
    .await;
    assert!(matches!(handled, Handled::Retry));
    // Every 5 s during 26 s.
    assert_eq!(fixture.queue.extensions.load(Ordering::Relaxed), 5);
}

#[test]
fn admission_follows_the_configured_sources() {
    let settings = job_settings();
    let accounts = vec![MEMBER.to_string()];
    let organization = vec![SourceSpec::Organization {
        bucket: "org-bucket".into(),
        org_id: "o-abcdefghij".into(),
        key_prefix: "trails".into(),
        reader_account_id: "333333333333".into(),
        regions: vec!["us-east-1".into()],
    }];
    let mut excluding = settings.accounts.clone();
    excluding.exclude = vec![OTHER.into()];
    let org_key = |account: &str, region: &str| {
        format!("trails/AWSLogs/o-abcdefghij/{account}/CloudTrail-Digest/{region}/2026/11/27/{account}_CloudTrail-Digest_{region}_org-trail_{region}_20261127T115500Z.json.gz")
    };
    let notified = |bucket: &str, key: &str| Notified {
        bucket: bucket.into(),
        key: key.into(),
    };
    // Per-account trail.
    let admitted = admit(
        &notified(BUCKET, &log_key(MEMBER, "a")),
        &settings.sources,
        &settings.accounts,
        &accounts,
    )
    .unwrap();
    assert_eq!(admitted.target.account_id, MEMBER);
    assert!(!admitted.digest);
    let refused = |n: Notified, specs: &[SourceSpec], selection: &AccountSelection| {
        admit(&n, specs, selection, &accounts).unwrap_err().label
    };
    assert_eq!(
        refused(
            notified("trail-222222222202", &log_key(OTHER, "a")),
            &settings.sources,
            &settings.accounts
        ),
        "outside_sources",
        "an account this run does not cover"
    );
    assert_eq!(
        refused(
            notified(BUCKET, &log_key(OTHER, "a")),
            &settings.sources,
            &settings.accounts
        ),
        "outside_sources",
        "another account's file in this account's bucket"
    );
    // Organization trail: reader account, org, prefix, Region, filters.
    let admitted = admit(
        &notified("org-bucket", &org_key(OTHER, "us-east-1")),
        &organization,
        &settings.accounts,
        &accounts,
    )
    .unwrap();
    assert_eq!(admitted.target.account_id, "333333333333");
    assert_eq!(admitted.member_account_id, OTHER);
    assert!(admitted.digest);
    for (key, selection) in [
        (org_key(OTHER, "eu-west-1"), &settings.accounts),
        (org_key(OTHER, "us-east-1"), &excluding),
        (
            org_key(OTHER, "us-east-1").replace("o-abcdefghij", "o-zzzzzzzzzz"),
            &settings.accounts,
        ),
        (
            org_key(OTHER, "us-east-1").replace("trails/", "other/"),
            &settings.accounts,
        ),
    ] {
        assert_eq!(
            refused(notified("org-bucket", &key), &organization, selection),
            "outside_sources",
            "{key}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_bucket_its_reader_does_not_own_is_never_read() {
    let fixture = Fixture::new();
    let source = fixture.connector.bucket(MEMBER, BUCKET);
    let key = log_key(MEMBER, "a");
    source.put(&key, log_body(MEMBER), &[]);
    source.set_ownership(crate::seams::BucketOwnership::NotOwned(
        "999999999999".into(),
    ));
    fixture.queue.send(&notification(BUCKET, &[&key]));
    let (stats, reports) = fixture.drain(3).await;
    assert_eq!(stats.messages_rejected.get("bucket_not_owned"), Some(&1));
    assert_eq!(source.heads.load(Ordering::Relaxed), 0);
    assert_eq!(source.gets.load(Ordering::Relaxed), 0);
    let findings: Vec<_> = reports.iter().flat_map(|r| r.findings.clone()).collect();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(
        findings[0].new,
        "recorded in the store, to be announced: {findings:#?}"
    );
}
