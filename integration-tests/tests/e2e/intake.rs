//! Event-driven intake (`[intake]`) on the emulator: CloudTrail-shaped
//! notifications published to an SNS topic reach the intake queue; the
//! daemon archives the files they name without listing the trail bucket
//! (the proxy counts every request), refuses a hostile message into the
//! dead-letter queue, and its reconciliation sweep still collects a file
//! whose notification never came.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use trailvault_integration_tests::faults::{FaultPlan, FaultProxy};
use trailvault_integration_tests::harness;
use trailvault_integration_tests::sim::policies::{
    queue_arn, INTAKE_DEAD_LETTER_QUEUE_NAME, INTAKE_QUEUE_NAME,
};
use trailvault_integration_tests::sim::{ObjectRef, ProvisionOptions, Sim};

use crate::cli::command;
use crate::collect::{archive_key, provision};
use crate::faults::config_through;
use crate::ops::stdout_lines;

/// Seconds between two listing sweeps in this test: long enough for the
/// notified files to be archived in between, short enough to wait for one.
const SWEEP_SECONDS: u64 = 40;

/// The daemon, killed if the test fails before it is stopped.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Queues {
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
    topic_arn: String,
    queue_url: String,
    dead_letter_queue_url: String,
}

/// The intake queue and its dead-letter queue in the audit account, named
/// as the audit template names them (so the collector's policy, rendered
/// from it, lets it use them), and a topic standing in for the trail's,
/// subscribed by the queue under the template's queue policy.
async fn queues(sim: &Sim) -> Queues {
    let audit = &sim.org.audit_account_id;
    let root = harness::sdk_config(&sim.org.endpoint, audit, "root-secret", None);
    let sqs = aws_sdk_sqs::Client::new(&root);
    let sns = aws_sdk_sns::Client::new(&root);
    let mut urls = Vec::new();
    for name in [INTAKE_QUEUE_NAME, INTAKE_DEAD_LETTER_QUEUE_NAME] {
        let url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .expect("queue URL")
            .to_string();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("queue ARN");
        assert_eq!(
            arn,
            queue_arn(audit, name),
            "the collector's policy names the queue by this ARN"
        );
        urls.push(url);
    }
    let topic_arn = sns
        .create_topic()
        .name("trail-notifications")
        .send()
        .await
        .expect("create topic")
        .topic_arn()
        .expect("topic ARN")
        .to_string();
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TrailTopicsSendNotifications",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn(audit, INTAKE_QUEUE_NAME),
            "Condition": {"ArnEquals": {"aws:SourceArn": [topic_arn.clone()]}}
        }]
    });
    sqs.set_queue_attributes()
        .queue_url(&urls[0])
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .expect("queue policy");
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn(audit, INTAKE_QUEUE_NAME))
        .send()
        .await
        .expect("subscribe");
    Queues {
        sqs,
        sns,
        topic_arn,
        dead_letter_queue_url: urls.pop().unwrap(),
        queue_url: urls.pop().unwrap(),
    }
}

/// CloudTrail's notification of one delivered file.
async fn notify(queues: &Queues, object: &ObjectRef) {
    queues
        .sns
        .publish()
        .topic_arn(&queues.topic_arn)
        .message(
            serde_json::json!({"s3Bucket": object.bucket, "s3ObjectKey": [object.key]}).to_string(),
        )
        .send()
        .await
        .expect("publish");
}

fn new_objects(sim: &Sim, before: &HashSet<ObjectRef>) -> Vec<ObjectRef> {
    sim.delivered_objects()
        .into_iter()
        .filter(|object| !before.contains(object))
        .collect()
}

/// Waits until the archive holds every one of `objects`.
async fn wait_archived(sim: &Sim, objects: &[ObjectRef], limit: Duration, what: &str) {
    let root = harness::sdk_config(
        &sim.org.endpoint,
        &sim.org.audit_account_id,
        "root-secret",
        None,
    );
    let s3 = harness::s3_client(&root);
    let started = Instant::now();
    let mut missing: Vec<&ObjectRef> = objects.iter().collect();
    while !missing.is_empty() {
        let mut still = Vec::new();
        for object in missing {
            let found = s3
                .head_object()
                .bucket(&sim.org.archive_bucket)
                .key(archive_key(
                    sim,
                    &object.account_id,
                    &object.bucket,
                    &object.key,
                ))
                .send()
                .await
                .is_ok();
            if !found {
                still.push(object);
            }
        }
        missing = still;
        assert!(
            missing.is_empty() || started.elapsed() < limit,
            "{what}: not archived within {limit:?}: {missing:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The reports the daemon printed so far (one JSON document per line).
fn drain(lines: &Receiver<String>) -> Vec<serde_json::Value> {
    lines
        .try_iter()
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect()
}

fn lists_of(proxy: &FaultProxy, bucket: &str) -> u64 {
    proxy
        .counts()
        .get(&format!("ListObjectsV2 {bucket}"))
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn notified_files_are_archived_without_a_listing_and_the_sweep_catches_a_lost_one() {
    let mut sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            regions: vec!["us-east-1".to_owned()],
            history_hours: 12,
            ..ProvisionOptions::default()
        },
        2,
    )
    .await;
    let member = sim.org.members[0].clone();
    let queues = queues(&sim).await;
    // The collector consumes the queue; it cannot feed it (nor read the
    // dead-letter queue), whatever its code does.
    let collector = aws_sdk_sqs::Client::new(&sim.collector_sdk_config());
    assert!(
        collector
            .send_message()
            .queue_url(&queues.queue_url)
            .message_body("{}")
            .send()
            .await
            .is_err(),
        "the collector may not send to the intake queue"
    );
    assert!(
        collector
            .receive_message()
            .queue_url(&queues.dead_letter_queue_url)
            .send()
            .await
            .is_err(),
        "the collector may not read the dead-letter queue"
    );
    let proxy = FaultProxy::start(&sim.org.endpoint, FaultPlan::none()).expect("proxy");
    let dir = tempfile::tempdir().unwrap();
    let config = config_through(&sim, dir.path(), &proxy);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[intake]\nqueue_url = \"{}\"\ndead_letter_queue_url = \"{}\"\nmax_keys_per_message = 10\nsweep_interval_seconds = {SWEEP_SECONDS}\nvisibility_timeout_seconds = 30\nwait_seconds = 1\n",
        queues.queue_url, queues.dead_letter_queue_url
    ));
    std::fs::write(&config, text).unwrap();

    // A shard must not consume the queue: it would take (and delete) the
    // other shards' notifications. Refused before any work, nothing received.
    let sharded = command(
        &sim,
        &config,
        &["--shard", "0/2", "run", "--interval", "1h"],
    )
    .output()
    .expect("run the sharded daemon");
    let stderr = String::from_utf8_lossy(&sharded.stderr);
    assert_eq!(sharded.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not run sharded"), "{stderr}");

    let mut daemon = Daemon(
        command(&sim, &config, &["--json", "run", "--interval", "1h"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the daemon"),
    );
    let lines = stdout_lines(&mut daemon.0);
    // The first sweep lists and archives the history.
    let first: serde_json::Value = serde_json::from_str(
        &lines
            .recv_timeout(Duration::from_secs(120))
            .expect("the first sweep's report"),
    )
    .unwrap();
    assert_eq!(first["command"], "collect", "{first}");
    assert_eq!(first["errors"].as_array().unwrap().len(), 0, "{first}");
    let sweep_ended = Instant::now();
    assert!(
        lists_of(&proxy, &member.trail_bucket) > 0,
        "the sweep lists"
    );
    proxy.reset_counts();

    // An hour of files delivered, each announced as CloudTrail announces it
    // (one announced twice: SNS delivers at least once).
    let before: HashSet<ObjectRef> = sim.delivered_objects().into_iter().collect();
    // About one hour in seven is empty (a digest only): deliver until a log came.
    let mut notified = Vec::new();
    while notified.len() < 2 {
        sim.deliver_hours(1).await.expect("deliver an hour");
        notified = new_objects(&sim, &before);
    }
    for object in &notified {
        notify(&queues, object).await;
    }
    notify(&queues, &notified[0]).await;
    // Hostile: a bucket that is no source, and a body that is no notification.
    queues
        .sns
        .publish()
        .topic_arn(&queues.topic_arn)
        .message(
            serde_json::json!({"s3Bucket": "attacker-bucket", "s3ObjectKey": [notified[0].key]})
                .to_string(),
        )
        .send()
        .await
        .expect("publish");
    queues
        .sqs
        .send_message()
        .queue_url(&queues.queue_url)
        .message_body("{\"garbage\": ")
        .send()
        .await
        .expect("send garbage");

    wait_archived(&sim, &notified, Duration::from_secs(20), "notified files").await;
    let delivered_to_archived = sweep_ended.elapsed();
    assert_eq!(
        lists_of(&proxy, &member.trail_bucket),
        0,
        "archived without listing the trail bucket: {:?}",
        proxy.counts()
    );
    assert!(
        delivered_to_archived < Duration::from_secs(SWEEP_SECONDS - 5),
        "the next sweep may have started: the no-LIST check needs the files archived sooner"
    );
    let heads = proxy
        .counts()
        .get(&format!("HeadObject {}", member.trail_bucket))
        .copied()
        .unwrap_or(0);
    assert!(
        heads >= notified.len() as u64,
        "one HEAD per notified file: {heads}"
    );

    // Both hostile messages end in the dead-letter queue, with the reason.
    let mut reasons = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while reasons.len() < 2 && Instant::now() < deadline {
        let received = queues
            .sqs
            .receive_message()
            .queue_url(&queues.dead_letter_queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive from the dead-letter queue");
        for message in received.messages() {
            let reason = message
                .message_attributes()
                .and_then(|a| a.get("trailvault-reason"))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_string();
            reasons.push(reason);
        }
    }
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("not_json"), "{reasons:?}");
    assert!(reasons[1].starts_with("unknown_bucket"), "{reasons:?}");

    // The intake reports: the copies, and the new digest's chain validated.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut intake_reports = Vec::new();
    loop {
        intake_reports.extend(
            drain(&lines)
                .into_iter()
                .filter(|r| r["command"] == "intake"),
        );
        let copied: u64 = intake_reports
            .iter()
            .map(|r| r["stats"]["objects_copied"].as_u64().unwrap_or(0))
            .sum();
        if copied >= notified.len() as u64 || Instant::now() > deadline {
            let validated: u64 = intake_reports
                .iter()
                .map(|r| r["stats"]["digests_validated"].as_u64().unwrap_or(0))
                .sum();
            assert_eq!(
                copied,
                notified.len() as u64,
                "each copied once: {intake_reports:#?}"
            );
            assert!(
                validated >= 1,
                "the new digest's chain validated: {intake_reports:#?}"
            );
            for report in &intake_reports {
                assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{report}");
                // Only part of the simulated history is delivered: the chain's head
                // is old, a state finding every validation repeats. Nothing else.
                for finding in report["findings"].as_array().unwrap() {
                    assert_eq!(finding["kind"], "chain_head_stale", "{report}");
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Everything handled was deleted: the queue is empty.
    let left = queues
        .sqs
        .receive_message()
        .queue_url(&queues.queue_url)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    assert!(left.messages().is_empty(), "{:?}", left.messages());

    // An hour whose notifications are lost: the next sweep collects it.
    let before: HashSet<ObjectRef> = sim.delivered_objects().into_iter().collect();
    sim.deliver_hours(1).await.expect("deliver another hour");
    let unannounced = new_objects(&sim, &before);
    assert!(!unannounced.is_empty());
    wait_archived(
        &sim,
        &unannounced,
        Duration::from_secs(SWEEP_SECONDS + 60),
        "files whose notification was lost",
    )
    .await;
    assert!(
        lists_of(&proxy, &member.trail_bucket) > 0,
        "collected by the sweep"
    );
    let sweeps: Vec<serde_json::Value> = drain(&lines)
        .into_iter()
        .filter(|r| r["command"] == "collect")
        .collect();
    drop(daemon);
    eprintln!(
        "intake: {} notified files archived {delivered_to_archived:?} after the first sweep; later sweeps: {}",
        notified.len(),
        sweeps.len()
    );
}

/// Time from a file's notification to its copy in the archive, over about
/// 100 notified files (logs and digests of several chains), and to the end
/// of the validation of their digests. A measurement, not a check (run it
/// with `--ignored intake_latency`); the figures go to stderr.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run with --ignored intake_latency"]
async fn intake_latency() {
    let mut sim = provision(
        ProvisionOptions {
            members: 4,
            org_trail: false,
            regions: vec!["us-east-1".to_owned(), "eu-west-1".to_owned()],
            history_hours: 12,
            ..ProvisionOptions::default()
        },
        2,
    )
    .await;
    let queues = queues(&sim).await;
    let dir = tempfile::tempdir().unwrap();
    // Every request of the daemon goes through the counting proxy.
    let proxy = FaultProxy::start(&sim.org.endpoint, FaultPlan::none()).expect("proxy");
    let config = config_through(&sim, dir.path(), &proxy);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[intake]\nqueue_url = \"{}\"\ndead_letter_queue_url = \"{}\"\nsweep_interval_seconds = 3600\nwait_seconds = 1\n",
        queues.queue_url, queues.dead_letter_queue_url
    ));
    std::fs::write(&config, text).unwrap();
    let mut daemon = Daemon(
        command(&sim, &config, &["--json", "run", "--interval", "1h"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the daemon"),
    );
    let lines = stdout_lines(&mut daemon.0);
    lines
        .recv_timeout(Duration::from_secs(180))
        .expect("the first sweep's report");
    let before: HashSet<ObjectRef> = sim.delivered_objects().into_iter().collect();
    let mut notified = Vec::new();
    while notified.len() < 100 && sim.deliverable_hours() > 0 {
        sim.deliver_hours(1).await.expect("deliver an hour");
        notified = new_objects(&sim, &before);
    }
    let root = harness::sdk_config(
        &sim.org.endpoint,
        &sim.org.audit_account_id,
        "root-secret",
        None,
    );
    let s3 = harness::s3_client(&root);
    let counts_before = proxy.counts();
    let mut published = Vec::new();
    for object in &notified {
        notify(&queues, object).await;
        published.push(Instant::now());
    }
    let mut latencies = vec![None; notified.len()];
    let deadline = Instant::now() + Duration::from_secs(120);
    while latencies.iter().any(Option::is_none) && Instant::now() < deadline {
        for (index, object) in notified.iter().enumerate() {
            if latencies[index].is_some() {
                continue;
            }
            let archived = s3
                .head_object()
                .bucket(&sim.org.archive_bucket)
                .key(archive_key(
                    &sim,
                    &object.account_id,
                    &object.bucket,
                    &object.key,
                ))
                .send()
                .await
                .is_ok();
            if archived {
                latencies[index] = Some(published[index].elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut archived: Vec<Duration> = latencies.iter().flatten().copied().collect();
    archived.sort();
    // The intake reports until every digest was validated.
    let digests = notified
        .iter()
        .filter(|o| o.key.contains("CloudTrail-Digest/"))
        .count() as u64;
    let mut validated = 0;
    let mut copied = 0;
    let validation_deadline = Instant::now() + Duration::from_secs(60);
    while (copied < notified.len() as u64 || validated < digests)
        && Instant::now() < validation_deadline
    {
        for report in drain(&lines) {
            copied += report["stats"]["objects_copied"].as_u64().unwrap_or(0);
            validated += report["stats"]["digests_validated"].as_u64().unwrap_or(0);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_verified = published[0].elapsed();
    let intake = intake_counts(&counts_before, &proxy.counts(), notified.len() as u64);
    let percentile = |p: usize| archived[(archived.len() * p / 100).min(archived.len() - 1)];
    eprintln!(
        "intake latency: {} files ({digests} digests) notified; {} archived; notification -> archived p50 {:?}, p95 {:?}, max {:?}; first notification -> last digest validated {:?} (copied {copied}, digests validated {validated})",
        notified.len(),
        archived.len(),
        percentile(50),
        percentile(95),
        archived.last().unwrap(),
        all_verified,
    );
    eprintln!("intake requests (trailbench cost --intake): {intake}");
    if let Ok(path) = std::env::var("TRAILVAULT_INTAKE_COUNTS") {
        std::fs::write(&path, intake.to_string()).expect("write the intake counts");
    }
    assert_eq!(
        archived.len(),
        notified.len(),
        "every notified file archived"
    );
}

/// The requests made while the notified files were archived and validated
/// (one key per notification), as `trailbench cost --intake` reads them:
/// SQS actions by name, S3 listings of every bucket summed.
fn intake_counts(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    notifications: u64,
) -> serde_json::Value {
    let mut requests = std::collections::BTreeMap::<String, u64>::new();
    for (what, count) in after {
        let delta = count - before.get(what).copied().unwrap_or(0);
        let name = if let Some(action) = what.strip_prefix("sqs ") {
            action
        } else if what.starts_with("ListObjectsV2 ") {
            "ListObjectsV2"
        } else if what.starts_with("HeadObject ") {
            "HeadObject"
        } else {
            continue;
        };
        *requests.entry(name.to_owned()).or_default() += delta;
    }
    requests.entry("ListObjectsV2".to_owned()).or_default();
    serde_json::json!({
        "notifications": notifications,
        "objects": notifications,
        "requests": requests,
    })
}
