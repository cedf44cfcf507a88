//! Running trailvault unattended, against the emulator: `retention` extends
//! short locks and never shortens them, source expiry removes only validated
//! objects, the `run` daemon stops cleanly on SIGTERM mid-copy with nothing
//! lost, `status` shows runs, lag and chain heads, and a run that finds the
//! store held by a live one is skipped (exit 0) while a second daemon is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::DateTime as SdkDateTime;
use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
use chrono::{DateTime, NaiveTime, Utc};
use trailvault_integration_tests::harness;
use trailvault_integration_tests::sim::{
    ChainSelector, ConfigOptions, ProvisionOptions, Sim, Tamper,
};

use crate::cli::{command, options_in, run, trailvault_bin, write_config, write_throttled_config};
use crate::collect::{
    archive_versions, assert_archive_matches_sources, provision, source_objects, stat,
};

/// Retain-until of every archive version: (key, version id) -> date.
async fn locks(sim: &Sim) -> BTreeMap<(String, String), DateTime<Utc>> {
    let s3 = harness::s3_client(&sim.collector_sdk_config());
    let mut out = BTreeMap::new();
    for (key, versions) in archive_versions(sim).await {
        for version in versions {
            let head = s3
                .head_object()
                .bucket(&sim.org.archive_bucket)
                .key(&key)
                .version_id(&version)
                .send()
                .await
                .unwrap_or_else(|e| panic!("head {key}: {e:?}"));
            let until = head
                .object_lock_retain_until_date()
                .unwrap_or_else(|| panic!("{key} has no retain-until"));
            let until = DateTime::from_timestamp(until.secs(), 0).unwrap();
            out.insert((key.clone(), version), until);
        }
    }
    out
}

/// The day folder of an archive key (`.../YYYY/MM/DD/<file>`), midnight UTC.
fn day_folder(key: &str) -> DateTime<Utc> {
    let parts: Vec<&str> = key.rsplit('/').skip(1).take(3).collect();
    let date = chrono::NaiveDate::parse_from_str(
        &format!("{}-{}-{}", parts[2], parts[1], parts[0]),
        "%Y-%m-%d",
    )
    .unwrap_or_else(|e| panic!("{key}: {e}"));
    date.and_time(NaiveTime::MIN).and_utc()
}

/// A copy of `config` with another `retention_days`.
fn with_retention_days(config: &Path, days: u32, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap();
    let (before, after) = text
        .split_once("retention_days = ")
        .expect("retention_days");
    let rest = after.split_once('\n').map_or("", |(_, rest)| rest);
    let path = config.with_file_name(name);
    std::fs::write(&path, format!("{before}retention_days = {days}\n{rest}")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_extends_short_locks_and_never_shortens() {
    // The bucket's default retention is 3 days; the copies are made with 1,
    // of files from the last two hours.
    let sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            retention_days: 3,
            history_hours: 2,
            ..ProvisionOptions::default()
        },
        2,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let three_days = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    let one_day = with_retention_days(&three_days, 1, "one-day.toml");
    let collect = run(&sim, &one_day, &["--json", "collect", "--no-verify"]);
    assert_eq!(collect.code, 0, "{}", collect.stdout);
    let copied = stat(&collect.json(), "objects_copied");
    assert!(copied > 4, "only {copied} objects copied");
    let before = locks(&sim).await;
    assert_eq!(before.len() as u64, copied);
    let now = Utc::now();
    for ((key, _), until) in &before {
        assert!(
            *until < now + chrono::Duration::days(2),
            "{key} should be locked for about one day, is until {until}"
        );
    }

    // Dry run: the plan names every version, nothing changes.
    let dry = run(&sim, &three_days, &["--json", "retention"]);
    assert_eq!(dry.code, 0, "{}", dry.stdout);
    let report = dry.json();
    assert_eq!(report["command"], "retention");
    assert_eq!(report["retention"]["checked"], copied);
    assert_eq!(report["retention"]["extended"], 0);
    assert_eq!(report["retention"]["applied"], false);
    let plan = report["retention"]["changes"].as_array().unwrap();
    assert_eq!(plan.len() as u64, copied, "{report}");
    assert!(plan.iter().all(|change| change["applied"] == false));
    assert_eq!(locks(&sim).await, before, "a dry run changes nothing");
    let human = run(&sim, &three_days, &["retention"]);
    assert_eq!(human.code, 0);
    assert!(human.stdout.contains("would extend"), "{}", human.stdout);

    // One version already locked far longer than required.
    let long_key = before.keys().next().unwrap().clone();
    let long_until = (now + chrono::Duration::days(10)).timestamp();
    harness::s3_client(&sim.collector_sdk_config())
        .put_object_retention()
        .bucket(&sim.org.archive_bucket)
        .key(&long_key.0)
        .version_id(&long_key.1)
        .retention(
            ObjectLockRetention::builder()
                .mode(ObjectLockRetentionMode::Compliance)
                .retain_until_date(SdkDateTime::from_secs(long_until))
                .build(),
        )
        .send()
        .await
        .expect("extend one lock by hand");

    let applied = run(&sim, &three_days, &["--json", "retention", "--apply"]);
    assert_eq!(applied.code, 0, "{}", applied.stdout);
    let report = applied.json();
    assert_eq!(report["retention"]["extended"], copied - 1, "{report}");
    assert_eq!(report["retention"]["compliant"], 1);
    let after = locks(&sim).await;
    for ((key, version), until) in &after {
        if (key, version) == (&long_key.0, &long_key.1) {
            assert_eq!(until.timestamp(), long_until, "{key} was shortened");
            continue;
        }
        let required = day_folder(key) + chrono::Duration::days(3);
        assert!(
            *until >= required,
            "{key} locked until {until}, required {required}"
        );
        assert!(*until > before[&(key.clone(), version.clone())]);
    }

    // Nothing is short any more; a smaller period shortens nothing.
    let again = run(&sim, &three_days, &["--json", "retention", "--apply"]).json();
    assert_eq!(again["retention"]["changes"].as_array().unwrap().len(), 0);
    let shorter = run(
        &sim,
        &one_day,
        &["--json", "retention", "--apply", "--full"],
    );
    assert_eq!(shorter.code, 0, "{}", shorter.stdout);
    let report = shorter.json();
    assert_eq!(
        report["retention"]["checked"], copied,
        "--full lists every version"
    );
    assert_eq!(report["retention"]["changes"].as_array().unwrap().len(), 0);
    assert_eq!(locks(&sim).await, after, "never shortened");

    // The bucket's default retention is shorter than a 30-day requirement:
    // a finding, exit 3.
    let thirty = with_retention_days(&three_days, 30, "thirty.toml");
    let misconfigured = run(&sim, &thirty, &["--json", "retention"]);
    assert_eq!(misconfigured.code, 3, "{}", misconfigured.stdout);
    let report = misconfigured.json();
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "archive_misconfigured"
                && f["detail"].as_str().unwrap().contains("3 days")),
        "{report}"
    );
}

/// A copy of `config` with source expiry on.
fn with_source_retention_days(config: &Path, days: u32, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap();
    let path = config.with_file_name(name);
    std::fs::write(
        &path,
        format!("{text}\n[retention]\nsource_retention_days = {days}\n"),
    )
    .unwrap();
    path
}

/// The keys of `account`'s trail bucket, with their bodies.
async fn trail_files(sim: &Sim, account: &str) -> BTreeMap<String, Vec<u8>> {
    source_objects(sim)
        .await
        .into_iter()
        .filter(|((owner, _, _), _)| owner == account)
        .map(|((_, _, key), body)| (key, body))
        .collect()
}

fn planned_keys(report: &serde_json::Value) -> BTreeSet<String> {
    report["retention"]["source_expiry"]["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no source expiry plan in {report}"))
        .iter()
        .map(|change| change["key"].as_str().unwrap().to_owned())
        .collect()
}

fn kept(report: &serde_json::Value, reason: &str) -> u64 {
    report["retention"]["source_expiry"]["kept"][reason]
        .as_u64()
        .unwrap_or(0)
}

/// `members` members with their own trails and three hours of history;
/// member 0's role may delete (the member template with
/// AllowSourceExpiry=true).
async fn expiry_sim(members: usize) -> Sim {
    let sim = provision(
        ProvisionOptions {
            members,
            org_trail: false,
            history_hours: 3,
            ..ProvisionOptions::default()
        },
        3,
    )
    .await;
    sim.allow_source_expiry(0)
        .await
        .expect("grant member 0 delete");
    sim
}

#[tokio::test(flavor = "multi_thread")]
async fn source_expiry_removes_only_validated_objects() {
    // Two members with their own trails; only member 0's role may delete
    // (the member template with AllowSourceExpiry=true).
    let sim = expiry_sim(2).await;
    let may_delete = sim.org.members[0].account_id.clone();
    let read_only = sim.org.members[1].account_id.clone();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    let collect = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(collect.code, 0, "{}", collect.stdout);
    assert!(stat(&collect.json(), "digests_validated") > 0);

    // Off unless configured: no plan, nothing listed for it.
    let off = run(&sim, &config, &["--json", "retention"]);
    assert_eq!(off.code, 0, "{}", off.stdout);
    assert!(off.json()["retention"]["source_expiry"].is_null());

    // Every file the simulator delivered is named in the past and listed by
    // a validly signed digest: with 0 days, all are old enough.
    let expiring = with_source_retention_days(&config, 0, "expiring.toml");
    let deletable = trail_files(&sim, &may_delete).await;
    let denied = trail_files(&sim, &read_only).await;
    assert!(deletable.len() > 4, "{} files", deletable.len());

    // At member 0's source: one archived log file changed after it was
    // archived, and one file that was never archived.
    let changed = deletable
        .keys()
        .find(|key| key.contains("/CloudTrail/"))
        .unwrap()
        .clone();
    let original = deletable[&changed].clone();
    let planted = format!(
        "{}_PLANTED000000000.json.gz",
        changed.rsplit_once('_').unwrap().0
    );
    let bucket = &sim.org.members[0].trail_bucket;
    let member_s3 = sim.root_s3(&may_delete).unwrap();
    for (key, body) in [
        (&changed, b"changed".to_vec()),
        (&planted, b"planted".to_vec()),
    ] {
        member_s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body))
            .send()
            .await
            .expect("change the source");
    }
    let archived = archive_versions(&sim).await;

    // Dry run: the plan names every validated, unchanged file, deletes nothing.
    let dry = run(&sim, &expiring, &["--json", "retention"]);
    assert_eq!(dry.code, 0, "{}", dry.stdout);
    let report = dry.json();
    let expected: BTreeSet<String> = deletable
        .keys()
        .chain(denied.keys())
        .filter(|key| **key != changed)
        .cloned()
        .collect();
    assert_eq!(planned_keys(&report), expected, "{report}");
    let expiry = &report["retention"]["source_expiry"];
    assert_eq!(expiry["source_retention_days"], 0);
    assert_eq!(expiry["deleted"], 0);
    assert_eq!(kept(&report, "source_changed"), 1, "{expiry}");
    assert_eq!(kept(&report, "not_archived"), 1, "{expiry}");
    assert!(expiry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|change| change["applied"] == false));
    assert_eq!(
        trail_files(&sim, &may_delete).await.len(),
        deletable.len() + 1
    );
    let human = run(&sim, &expiring, &["retention"]);
    assert_eq!(human.code, 0);
    assert!(human.stdout.contains("would delete"), "{}", human.stdout);

    // Applied: member 0 loses exactly the plan; member 1's role may not
    // delete, which is one error with a hint, and its files stay.
    let applied = run(&sim, &expiring, &["--json", "retention", "--apply"]);
    assert_eq!(applied.code, 1, "{}", applied.stdout);
    let report = applied.json();
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!(errors[0]["account_id"], read_only.as_str());
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("AllowSourceExpiry"),
        "{report}"
    );
    let expiry = &report["retention"]["source_expiry"];
    let gone: BTreeSet<String> = deletable
        .keys()
        .filter(|key| **key != changed)
        .cloned()
        .collect();
    assert_eq!(expiry["deleted"], gone.len() as u64, "{expiry}");
    assert_eq!(planned_keys(&report), gone);
    assert_eq!(kept(&report, "delete_denied"), denied.len() as u64);
    let remaining: BTreeSet<String> = trail_files(&sim, &may_delete).await.into_keys().collect();
    assert_eq!(
        remaining,
        BTreeSet::from([changed.clone(), planted.clone()]),
        "only the changed and the unarchived file stay"
    );
    assert_eq!(trail_files(&sim, &read_only).await, denied);
    // The archive keeps everything.
    assert_eq!(archive_versions(&sim).await, archived);

    // Put the source back as it was archived: the next collect copies
    // nothing, verify finds nothing (deleted sources are no evidence of
    // anything), and the restored file is expired in turn.
    member_s3
        .put_object()
        .bucket(bucket)
        .key(&changed)
        .body(aws_sdk_s3::primitives::ByteStream::from(original))
        .send()
        .await
        .expect("restore");
    member_s3
        .delete_object()
        .bucket(bucket)
        .key(&planted)
        .send()
        .await
        .expect("remove the planted file");
    let again = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(again.code, 0, "{}", again.stdout);
    assert_eq!(stat(&again.json(), "objects_copied"), 0);
    let verify = run(&sim, &config, &["--json", "verify", "--full"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    let last = run(&sim, &expiring, &["--json", "retention", "--apply"]).json();
    let expiry = &last["retention"]["source_expiry"];
    assert_eq!(
        planned_keys(&last),
        BTreeSet::from([changed.clone()]),
        "{expiry}"
    );
    assert_eq!(expiry["already_gone"], gone.len() as u64, "{expiry}");
    assert!(trail_files(&sim, &may_delete).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn source_expiry_keeps_what_validation_does_not_vouch_for() {
    let mut sim = expiry_sim(1).await;
    let member = sim.org.members[0].account_id.clone();
    // The newest digest of one chain (one that lists log files) loses its
    // signature before collection: that digest, and the log files it lists,
    // are vouched for by nothing.
    let selector = (0..sim.org.regions.len())
        .map(|region| ChainSelector {
            region,
            ..sim.default_selector()
        })
        .find(|selector| {
            sim.chain(*selector)
                .unwrap()
                .head()
                .is_some_and(|head| !head.logs.is_empty())
        })
        .expect("a chain whose newest digest lists log files");
    let chain = sim.chain(selector).unwrap().clone();
    let tampered = sim
        .tamper_on(Tamper::RemoveSignatureMetadata, selector)
        .await
        .unwrap();
    let unvouched: BTreeSet<String> = chain
        .digests
        .iter()
        .filter(|digest| digest.key == tampered.key)
        .flat_map(|digest| digest.logs.iter().map(|log| log.key.clone()))
        .chain([tampered.key.clone()])
        .collect();
    assert!(unvouched.len() > 1, "the digest lists log files");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    let collect = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(collect.code, 3, "{}", collect.stdout);

    let before = trail_files(&sim, &member).await;
    let expiring = with_source_retention_days(&config, 0, "expiring.toml");
    let applied = run(&sim, &expiring, &["--json", "retention", "--apply"]);
    assert_eq!(applied.code, 0, "{}", applied.stdout);
    let report = applied.json();
    let remaining: BTreeSet<String> = trail_files(&sim, &member).await.into_keys().collect();
    assert!(
        unvouched.is_subset(&remaining),
        "kept: {unvouched:?}\nremaining: {remaining:?}"
    );
    assert!(
        kept(&report, "not_validated") + kept(&report, "open_finding") >= unvouched.len() as u64,
        "{report}"
    );
    assert!(
        remaining.len() < before.len(),
        "the validated files of the other chains expire"
    );
    let planned = planned_keys(&report);
    assert!(planned.is_disjoint(&unvouched), "{planned:?}");
    assert_eq!(
        planned.len() + remaining.len(),
        before.len(),
        "every file is deleted or kept"
    );
}

/// Sends SIGTERM to `child`.
pub(crate) fn terminate(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}

/// Waits for `child` to exit, at most `limit`.
pub(crate) fn wait_for_exit(child: &mut Child, limit: Duration) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("trailvault did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The daemon's stdout, line by line, on a channel.
pub(crate) fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_stops_cleanly_on_sigterm_mid_copy_with_nothing_lost() {
    let sim = provision(
        ProvisionOptions {
            members: 3,
            ..ProvisionOptions::default()
        },
        6,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let options = ConfigOptions {
        concurrency: 4,
        ..options_in(&sim, dir.path())
    };
    let config = write_config(&sim, dir.path(), options.clone());
    // The daemon reads each source bucket at 10 requests/s, so its run lasts
    // seconds on any host and the SIGTERM below lands mid-run.
    let throttled = write_throttled_config(&sim, dir.path(), options, 10);
    let mut daemon = command(&sim, &throttled, &["--json", "run", "--interval", "1h"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = stdout_lines(&mut daemon);
    // SIGTERM as soon as copies land in the archive: it meets copies in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while archive_versions(&sim).await.is_empty() {
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "the daemon exited before SIGTERM"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no copy landed in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    terminate(&daemon);
    let code = wait_for_exit(&mut daemon, Duration::from_secs(120));
    assert_eq!(code, 0, "SIGTERM must end the daemon with exit 0");
    let reports: Vec<serde_json::Value> = lines
        .try_iter()
        .map(|line| serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(reports.len(), 1, "one run, interrupted: {reports:?}");
    let interrupted = &reports[0];
    assert!(
        interrupted["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("interrupted")),
        "the run finished before SIGTERM: {interrupted}"
    );
    // In-flight copies finished rather than failing.
    assert!(
        interrupted["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["operation"] == "collect"),
        "{interrupted}"
    );
    let copied_before = stat(interrupted, "objects_copied");
    assert!(copied_before > 0, "copies were under way: {interrupted}");

    // The store was flushed: what was recorded stays recorded, and the next
    // collect finishes the job with exactly one verified version per object.
    let status = run(&sim, &config, &["--json", "status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let view = status.json();
    assert_eq!(view["runs"][0]["command"], "collect");
    assert_eq!(view["runs"][0]["interrupted"], true);
    let finish = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert_eq!(finish.code, 0, "{}", finish.stdout);
    let report = finish.json();
    assert_eq!(
        stat(&report, "objects_copied") + stat(&report, "objects_adopted") + copied_before,
        archive_versions(&sim).await.len() as u64,
        "nothing copied twice: {report}"
    );
    assert!(
        stat(&report, "objects_copied") > 0,
        "the daemon stopped mid-run: {report}"
    );
    assert_archive_matches_sources(&sim).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_runs_on_schedule_and_exits_at_once_when_idle() {
    // Usage errors need no emulator and do nothing.
    for interval in ["0", "0s", "5x", "1h1h", ""] {
        let output = std::process::Command::new(trailvault_bin())
            .env_clear()
            .args([
                "--config",
                "/nonexistent.toml",
                "run",
                "--interval",
                interval,
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "--interval {interval:?}");
    }

    let sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            history_hours: 2,
            ..ProvisionOptions::default()
        },
        2,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    let started = Instant::now();
    let mut daemon = command(&sim, &config, &["--json", "run", "--interval", "3s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = stdout_lines(&mut daemon);
    let first: serde_json::Value =
        serde_json::from_str(&lines.recv_timeout(Duration::from_secs(60)).unwrap()).unwrap();
    let second: serde_json::Value =
        serde_json::from_str(&lines.recv_timeout(Duration::from_secs(60)).unwrap()).unwrap();
    assert!(stat(&first, "objects_copied") > 0, "{first}");
    assert!(first["findings"].as_array().unwrap().is_empty(), "{first}");
    assert!(stat(&first, "digests_validated") > 0, "validated: {first}");
    assert_eq!(stat(&second, "objects_copied"), 0, "{second}");
    let first_started: DateTime<Utc> = first["started_at"].as_str().unwrap().parse().unwrap();
    let second_started: DateTime<Utc> = second["started_at"].as_str().unwrap().parse().unwrap();
    let first_finished: DateTime<Utc> = first["finished_at"].as_str().unwrap().parse().unwrap();
    assert!(second_started >= first_finished, "runs overlapped");
    assert!(
        second_started - first_started >= chrono::Duration::milliseconds(2900),
        "the second run started {} after the first",
        second_started - first_started
    );
    assert!(started.elapsed() >= Duration::from_secs(3));

    // While the daemon holds the store, status reads the snapshot of its last run.
    let status = run(&sim, &config, &["--json", "status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let view = status.json();
    assert_eq!(view["source"], "snapshot");
    assert!(!view["runs"].as_array().unwrap().is_empty(), "{view}");

    // Idle between runs: a signal ends it at once.
    let signalled = Instant::now();
    terminate(&daemon);
    let code = wait_for_exit(&mut daemon, Duration::from_secs(10));
    assert_eq!(code, 0);
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "took {:?} to stop",
        signalled.elapsed()
    );
    let status = run(&sim, &config, &["--json", "status"]).json();
    assert_eq!(status["source"], "store");
    assert!(status["runs"].as_array().unwrap().len() >= 2, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_the_last_runs_lag_chain_heads_and_findings() {
    let sim = provision(
        ProvisionOptions {
            members: 2,
            org_trail: false,
            history_hours: 3,
            ..ProvisionOptions::default()
        },
        3,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    let empty = run(&sim, &config, &["--json", "status"]);
    assert_eq!(empty.code, 0);
    assert!(empty.json()["runs"].as_array().unwrap().is_empty());

    let collect = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(collect.code, 0, "{}", collect.stdout);
    let collected = collect.json();
    let status = run(&sim, &config, &["--json", "status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let view = status.json();
    assert_eq!(view["source"], "store");
    let runs = view["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["command"], "collect");
    assert_eq!(runs[0]["exit_code"], 0);
    assert_eq!(runs[0]["interrupted"], false);
    assert_eq!(runs[0]["started_at"], collected["started_at"]);
    assert_eq!(
        runs[0]["stats"]["objects_copied"],
        collected["stats"]["objects_copied"]
    );
    // Every member: files at most a couple of hours old.
    let accounts = view["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 2, "{view}");
    for account in accounts {
        let lag = account["lag_seconds"].as_i64().unwrap_or(i64::MAX);
        assert!((0..3 * 3600).contains(&lag), "{account}");
    }
    // 2 members x 2 regions: one chain each, heads under an hour old.
    let chains = view["chains"].as_array().unwrap();
    assert_eq!(chains.len(), 4, "{view}");
    for chain in chains {
        assert_eq!(chain["head_valid"], true, "{chain}");
        assert_eq!(chain["backfill"], false, "{chain}");
        let age = chain["age_seconds"].as_i64().unwrap();
        assert!((0..3600).contains(&age), "{chain}");
        assert!(chain["head_key"]
            .as_str()
            .unwrap()
            .contains("/CloudTrail-Digest/"));
    }
    assert_eq!(view["findings"]["open"], 0);

    // Verify is recorded too; the human table names the sections.
    assert_eq!(run(&sim, &config, &["verify"]).code, 0);
    let human = run(&sim, &config, &["status"]);
    assert_eq!(human.code, 0);
    for section in [
        "last runs (2 recorded)",
        "accounts",
        "chain heads",
        "open findings: 0",
    ] {
        assert!(
            human.stdout.contains(section),
            "{section}:\n{}",
            human.stdout
        );
    }
    assert!(human.stdout.contains("verify"), "{}", human.stdout);

    // Config errors are exit 2.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[store]", "[store]\nbogus = 1");
    std::fs::write(&config, text).unwrap();
    assert_eq!(run(&sim, &config, &["status"]).code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_finds_the_store_held_is_skipped_and_a_second_daemon_is_refused() {
    let sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            history_hours: 2,
            ..ProvisionOptions::default()
        },
        2,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    // The daemon holds the store from start to exit: a live run.
    let mut daemon = command(&sim, &config, &["--json", "run", "--interval", "1h"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = stdout_lines(&mut daemon);
    let first: serde_json::Value =
        serde_json::from_str(&lines.recv_timeout(Duration::from_secs(60)).unwrap()).unwrap();
    assert!(stat(&first, "objects_copied") > 0, "{first}");
    let versions_before = archive_versions(&sim).await.len();

    // A scheduled one-shot run meanwhile: skipped, exit 0, and it says why.
    let yesterday = (Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    for (args, command_name) in [
        (vec!["--json", "collect"], "collect"),
        (
            vec!["--json", "backfill", "--since", yesterday.as_str()],
            "backfill",
        ),
        (vec!["--json", "verify"], "verify"),
        (vec!["--json", "retention"], "retention"),
    ] {
        let skipped = run(&sim, &config, &args);
        assert_eq!(skipped.code, 0, "{args:?}: {}", skipped.stderr);
        let report = skipped.json();
        assert_eq!(report["command"], command_name, "{report}");
        assert_eq!(report["skipped"], "previous run still active", "{report}");
        assert_eq!(stat(&report, "objects_copied"), 0, "{report}");
        assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    }
    // Without --json the summary says so too.
    let text = run(&sim, &config, &["collect"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("skipped: previous run still active"),
        "{}",
        text.stdout
    );
    assert_eq!(archive_versions(&sim).await.len(), versions_before);

    // A second daemon on the same store never overlaps the first.
    let second = run(&sim, &config, &["--json", "run", "--interval", "1h"]);
    assert_eq!(second.code, 2, "{}", second.stdout);
    assert!(
        second.stderr.contains("holds the progress store"),
        "{}",
        second.stderr
    );
    assert!(second.stdout.is_empty(), "{}", second.stdout);

    terminate(&daemon);
    assert_eq!(wait_for_exit(&mut daemon, Duration::from_secs(30)), 0);
    // Once the daemon is gone, runs run again.
    let after = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(after.code, 0, "{}", after.stdout);
    assert!(after.json().get("skipped").is_none(), "{}", after.stdout);
}
