//! `trailvault verify` (and the validation at the end of `collect`) against
//! the emulator: a clean organization validates with zero findings; every
//! attack of the simulator yields exactly its finding on the right object;
//! incremental runs read only new digests; new findings reach SNS.

use std::path::{Path, PathBuf};

use trailvault_integration_tests::harness;
use trailvault_integration_tests::sim::{ConfigOptions, ProvisionOptions, Sim, Tamper};

use crate::cli::{options_in, run, write_config};
use crate::collect::{finding_kinds, ledger_keys, provision, stat};

fn config_with_keys(sim: &Sim, dir: &Path) -> PathBuf {
    write_config(sim, dir, options_in(sim, dir))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_organization_validates_with_zero_findings() {
    let mut sim = provision(
        ProvisionOptions {
            members: 3,
            history_hours: 48,
            ..ProvisionOptions::default()
        },
        48,
    )
    .await;
    // Backfill digests in two chains.
    sim.deliver_late_log(Default::default())
        .await
        .expect("late log");
    sim.deliver_late_log(Default::default())
        .await
        .expect("second late log");
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_keys(&sim, dir.path());

    let collect = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(
        collect.code, 0,
        "clean collect+verify must exit 0:\n{}",
        collect.stdout
    );
    let report = collect.json();
    assert!(
        report["findings"].as_array().unwrap().is_empty(),
        "{}",
        report["findings"]
    );
    // 3 members x 2 regions x (per-account + org trail) chains of 48 hourly digests, plus backfill.
    assert!(
        stat(&report, "digests_validated") >= 3 * 2 * 2 * 48,
        "{}",
        report["stats"]
    );
    assert!(stat(&report, "log_files_validated") > 0);

    // Incremental: nothing new, nothing read.
    let again = run(&sim, &config, &["--json", "verify"]);
    assert_eq!(again.code, 0);
    assert_eq!(stat(&again.json(), "digests_validated"), 0);

    // --full re-reads and re-hashes everything, still clean.
    let full = run(&sim, &config, &["--json", "verify", "--full"]);
    assert_eq!(full.code, 0, "{}", full.stdout);
    assert!(stat(&full.json(), "digests_validated") >= 3 * 2 * 2 * 48);
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_validation_reads_only_new_digests() {
    let mut sim = provision(
        ProvisionOptions {
            members: 2,
            org_trail: false,
            history_hours: 10,
            ..ProvisionOptions::default()
        },
        8,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // The heads are 2+ hours old until the last hours arrive: allow that.
    let options = ConfigOptions {
        chain_head_stale_hours: 6,
        ..options_in(&sim, dir.path())
    };
    let config = write_config(&sim, dir.path(), options);
    let first = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(first.code, 0, "{}", first.stdout);
    let chains = 2 * 2;
    assert_eq!(stat(&first.json(), "digests_validated"), chains * 8);
    sim.deliver_hours(2).await.unwrap();
    let second = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(second.code, 0, "{}", second.stdout);
    assert_eq!(
        stat(&second.json(), "digests_validated"),
        chains * 2,
        "only the two new hours of each chain"
    );
}

/// Every attack, made before collection, yields exactly its expected finding
/// on the object it touched (plus the ones the simulator documents as
/// consequences), and nothing else is flagged.
#[tokio::test(flavor = "multi_thread")]
async fn each_attack_yields_exactly_its_finding_on_the_right_object() {
    let mut failures = Vec::new();
    for tamper in Tamper::ALL {
        let mut sim = provision(
            ProvisionOptions {
                members: 2,
                history_hours: 12,
                seed: Some(7),
                ..ProvisionOptions::default()
            },
            12,
        )
        .await;
        let victim = sim.chain(sim.default_selector()).unwrap().clone();
        let report = sim
            .tamper(tamper)
            .await
            .unwrap_or_else(|e| panic!("tamper {tamper}: {e:#}"));
        let dir = tempfile::tempdir().unwrap();
        let config = config_with_keys(&sim, dir.path());
        let result = run(&sim, &config, &["--json", "collect"]);
        if result.code != 3 {
            failures.push(format!("{tamper}: exit {} (expected 3)", result.code));
            continue;
        }
        let found = finding_kinds(&result.json());
        let mut allowed: Vec<(String, String)> =
            vec![(report.expected_finding.to_string(), report.key.clone())];
        allowed.extend(
            report
                .also_expected
                .iter()
                .map(|e| (e.kind.to_string(), e.key.clone())),
        );
        // A deleted newest digest is proven missing by the sibling chains of the
        // same trail (other regions), which name the hour it should cover.
        if tamper == Tamper::DeleteNewestDigest {
            allowed.extend(
                report
                    .touched
                    .iter()
                    .map(|key| ("digest_missing".to_string(), key.clone())),
            );
        }
        // A deleted digest leaves the logs it listed listed by no digest.
        if matches!(
            tamper,
            Tamper::DeleteDigest | Tamper::DeleteTwoConsecutiveDigests | Tamper::DeleteNewestDigest
        ) {
            allowed.extend(
                victim
                    .digests
                    .iter()
                    .filter(|digest| report.touched.contains(&digest.key))
                    .flat_map(|digest| &digest.logs)
                    .map(|log| ("log_file_unreferenced".to_string(), log.key.clone())),
            );
        }
        // A planted file that is not CloudTrail output is also listed by no digest.
        if matches!(tamper, Tamper::GzipBomb | Tamper::NotGzip) {
            allowed.push(("log_file_unreferenced".to_string(), report.key.clone()));
        }
        // The expected finding and each documented consequence must be there;
        // a deleted newest digest shows as a stale head or, when sibling
        // chains are ahead of it, as the missing digest itself.
        let primary_present = if tamper == Tamper::DeleteNewestDigest {
            found.contains(&allowed[0])
                || report
                    .touched
                    .iter()
                    .any(|key| found.contains(&("digest_missing".to_string(), key.clone())))
        } else {
            allowed[..1 + report.also_expected.len()]
                .iter()
                .all(|expected| found.contains(expected))
        };
        let unexpected: Vec<_> = found.iter().filter(|f| !allowed.contains(f)).collect();
        if !primary_present || !unexpected.is_empty() {
            failures.push(format!(
                "{tamper}: expected {allowed:?}\n    found {found:?}"
            ));
        }
        if tamper == Tamper::DeleteTwoConsecutiveDigests {
            let missing: Vec<_> = found
                .iter()
                .filter(|(kind, _)| kind == "digest_missing")
                .collect();
            if missing.len() != 2 {
                failures.push(format!(
                    "{tamper}: each deleted digest is reported by itself, found {missing:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "attacks not reported as expected:\n  {}",
        failures.join("\n  ")
    );
}

/// Asserts that the queue receives no message within a second.
async fn assert_no_message(sqs: &aws_sdk_sqs::Client, queue_url: &str, why: &str) {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(received.messages().is_empty(), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn new_findings_are_published_once_to_sns() {
    let mut sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            history_hours: 6,
            ..ProvisionOptions::default()
        },
        6,
    )
    .await;
    let endpoint = harness::test_endpoint();
    let audit_root = harness::sdk_config(&endpoint, &sim.org.audit_account_id, "root-secret", None);
    let sns = aws_sdk_sns::Client::new(&audit_root);
    let sqs = aws_sdk_sqs::Client::new(&audit_root);
    let topic = sns
        .create_topic()
        .name("trailvault-findings")
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    let queue_url = sqs
        .create_queue()
        .queue_name("trailvault-findings-inbox")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .unwrap();
    // As on AWS, the queue must let the topic deliver.
    let queue_policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic}}
        }]
    });
    sqs.set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::Policy,
            queue_policy.to_string(),
        )
        .send()
        .await
        .unwrap();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .send()
        .await
        .unwrap();

    let deleted = sim.tamper(Tamper::DeleteLog).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_keys(&sim, dir.path());
    let text = std::fs::read_to_string(&config).unwrap()
        + &format!("\n[alerts]\nsns_topic_arn = \"{topic}\"\n");
    std::fs::write(&config, text).unwrap();

    assert_eq!(run(&sim, &config, &["--json", "collect"]).code, 3);
    let messages = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let bodies: Vec<String> = messages
        .messages()
        .iter()
        .filter_map(|m| m.body().map(str::to_string))
        .collect();
    assert_eq!(bodies.len(), 1, "one message per run: {bodies:?}");
    // SQS receives the SNS envelope; the finding JSON is inside its Message.
    let envelope: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    let message: serde_json::Value =
        serde_json::from_str(envelope["Message"].as_str().unwrap_or(&bodies[0])).unwrap();
    let findings = message["findings"].as_array().expect("findings array");
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "log_file_missing" && f["key"] == deleted.key.as_str()),
        "{message}"
    );
    assert!(message["summary"].as_str().unwrap().contains("new finding"));

    // The same findings are not new the next time: no second message.
    assert_eq!(run(&sim, &config, &["--json", "verify", "--full"]).code, 3);
    assert_no_message(&sqs, &queue_url, "old findings are not published again").await;
    let listed = run(
        &sim,
        &config,
        &["--json", "findings", "--kind", "log_file_missing"],
    );
    assert_eq!(listed.json()["findings"].as_array().unwrap().len(), 1);

    // Open until acknowledged: an incremental collect that finds nothing new
    // still reports it (not new) and exits 3.
    let open = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(open.code, 3, "{}", open.stderr);
    let open_findings = open.json()["findings"].as_array().unwrap().clone();
    assert!(
        open_findings
            .iter()
            .any(|f| f["kind"] == "log_file_missing" && f["new"] == false),
        "{open_findings:?}"
    );
    let acknowledged = run(
        &sim,
        &config,
        &[
            "--json",
            "findings",
            "--kind",
            "log_file_missing",
            "--acknowledge",
        ],
    );
    assert_eq!(acknowledged.code, 0, "{}", acknowledged.stderr);
    let listed = acknowledged.json();
    assert!(
        listed["findings"][0]["acknowledged_at"].is_string(),
        "{listed}"
    );
    let others_open = run(&sim, &config, &["--json", "findings"]).json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["acknowledged_at"].is_null())
        .count();
    let after = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(
        after.code,
        if others_open == 0 { 0 } else { 3 },
        "only open findings keep exit 3: {}",
        after.stdout
    );
    assert!(after.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["kind"] != "log_file_missing"));
    // Found again by a full audit, it stays acknowledged and is not published.
    let audit = run(&sim, &config, &["--json", "verify", "--full"]).json();
    assert!(audit["findings"].as_array().unwrap().iter().any(|f| {
        f["kind"] == "log_file_missing" && f["acknowledged_at"].is_string() && f["new"] == false
    }));
    assert_no_message(&sqs, &queue_url, "nothing new to publish").await;

    // The findings and the acknowledgement are in the archive's ledger too: a
    // lost store gets them back, and nothing is reported or published as new.
    assert!(!ledger_keys(&sim).await.is_empty());
    let first_seen = listed["findings"][0]["first_seen"].clone();
    std::fs::remove_dir_all(dir.path().join("store")).expect("delete the store");
    let rebuilt = run(&sim, &config, &["--json", "rebuild-state"]);
    let report = rebuilt.json();
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["new"] == false),
        "{report}"
    );
    let restored = run(
        &sim,
        &config,
        &["--json", "findings", "--kind", "log_file_missing"],
    )
    .json();
    assert_eq!(restored["findings"][0]["first_seen"], first_seen);
    assert!(restored["findings"][0]["acknowledged_at"].is_string());
    assert_no_message(
        &sqs,
        &queue_url,
        "nothing published again after the rebuild",
    )
    .await;
}

/// The findings of `report` of `kind` on `key`.
fn findings_on<'r>(
    report: &'r serde_json::Value,
    kind: &str,
    key: &str,
) -> Vec<&'r serde_json::Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|finding| finding["kind"] == kind && finding["key"] == key)
        .collect()
}

/// Issue 12, item 1: a member denies the collector one listed log file before
/// collection, to freeze validation of its chain, and deletes a later digest of
/// the same chain. Within the grace period the unreadable log is an operational
/// error and the chain is validated past it (the deleted digest is found) while
/// `status` shows the chain lagging; after the grace period the log is
/// `log_file_missing`, with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_listed_log_does_not_freeze_its_chain() {
    let mut sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            history_hours: 12,
            seed: Some(12),
            ..ProvisionOptions::default()
        },
        12,
    )
    .await;
    let selector = sim.default_selector();
    let (_, denied) = sim.listed_log_from(selector, 1).unwrap();
    let deleted = sim.tamper(Tamper::DeleteDigest).await.unwrap();
    sim.deny_source_object(selector, &denied).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_keys(&sim, dir.path());

    let first = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(first.code, 3, "{}\n{}", first.stdout, first.stderr);
    let report = first.json();
    assert!(
        report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |error| error["operation"].as_str().unwrap_or("").contains(&denied)
                    || error["message"].as_str().unwrap_or("").contains(&denied)
            ),
        "the unreadable log is an operational error: {}",
        report["errors"]
    );
    assert!(
        !findings_on(&report, "digest_missing", &deleted.key).is_empty(),
        "the chain is validated past the unreadable log: {}",
        report["findings"]
    );
    assert!(
        findings_on(&report, "log_file_missing", &denied).is_empty(),
        "not a finding within the grace period: {}",
        report["findings"]
    );
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|finding| finding["kind"] == "chain_validation_lagging"),
        "{}",
        report["findings"]
    );
    let status = run(&sim, &config, &["--json", "status"]).json();
    let lagging: Vec<&serde_json::Value> = status["chains"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|chain| chain["validation_lag_seconds"].as_i64().unwrap_or(0) > 3600)
        .collect();
    assert_eq!(lagging.len(), 1, "{}", status["chains"]);
    assert!(lagging[0]["unvalidated_since"].is_string());
    let human = run(&sim, &config, &["status"]);
    assert!(
        human.stdout.contains("unvalidated since"),
        "{}",
        human.stdout
    );

    // After the grace period (0 hours from now on): the log is missing, with
    // the reason, and the chain is validated to its head.
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("unreferenced_grace_hours"));
    let text = text.replacen(
        "unreferenced_grace_hours",
        "unreadable_grace_hours = 0\nunreferenced_grace_hours",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let second = run(&sim, &config, &["--json", "verify"]);
    assert_eq!(second.code, 3, "{}\n{}", second.stdout, second.stderr);
    let report = second.json();
    let missing = findings_on(&report, "log_file_missing", &denied);
    assert_eq!(missing.len(), 1, "{}", report["findings"]);
    assert_eq!(missing[0]["severity"], "critical");
    assert!(
        missing[0]["detail"]
            .as_str()
            .unwrap()
            .contains("refused to hand it over"),
        "{}",
        missing[0]
    );
    assert!(!findings_on(&report, "digest_missing", &deleted.key).is_empty());
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|finding| finding["kind"] != "chain_validation_lagging"),
        "{}",
        report["findings"]
    );
    let status = run(&sim, &config, &["--json", "status"]).json();
    assert!(
        status["chains"]
            .as_array()
            .unwrap()
            .iter()
            .all(|chain| chain["validation_lag_seconds"] == 0),
        "{}",
        status["chains"]
    );
}

/// Issue 12, item 2: an unsigned digest planted where CloudTrail would deliver
/// one lists log files that do not exist yet; forged logs uploaded later under
/// those names are referenced by no verified digest, so they are
/// `log_file_unreferenced` once their grace period has passed.
#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_digest_does_not_vouch_for_forged_logs_uploaded_later() {
    let sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            history_hours: 12,
            seed: Some(13),
            ..ProvisionOptions::default()
        },
        12,
    )
    .await;
    let planted = sim
        .plant_unsigned_digest(sim.default_selector(), 3, 2)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_keys(&sim, dir.path());

    let first = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(first.code, 3, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(
        finding_kinds(&first.json()),
        vec![(
            "digest_signature_invalid".to_string(),
            planted.digest_key.clone()
        )]
    );

    sim.upload_forged_logs(&planted).await.unwrap();
    let second = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(second.code, 3, "{}\n{}", second.stdout, second.stderr);
    let report = second.json();
    for (key, _) in &planted.logs {
        let unreferenced = findings_on(&report, "log_file_unreferenced", key);
        assert_eq!(unreferenced.len(), 1, "{key}: {}", report["findings"]);
        assert_eq!(unreferenced[0]["new"], true);
    }
    // The planted digest keeps its own finding.
    assert_eq!(
        findings_on(&report, "digest_signature_invalid", &planted.digest_key).len(),
        1,
        "{}",
        report["findings"]
    );
}
