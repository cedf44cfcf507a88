//! `trailvault collect` against the emulator (AUTH=true): exact archive
//! contents, incremental reruns, late files, broken members, kill -9, hostile
//! content.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_s3::types::ChecksumMode;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use trailvault_integration_tests::harness;
use trailvault_integration_tests::sim::{policies, ConfigOptions, ProvisionOptions, Sim, Tamper};

use crate::cli::{command, options_in, run, write_config, write_throttled_config};

/// Every object of every source bucket: (reading account, bucket, key) -> bytes.
pub async fn source_objects(sim: &Sim) -> BTreeMap<(String, String, String), Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut sources: Vec<(String, String)> = sim
        .org
        .members
        .iter()
        .filter(|_| sim.org.per_account_trails)
        .map(|m| (m.account_id.clone(), m.trail_bucket.clone()))
        .collect();
    if let Some(org) = &sim.org.org_trail {
        sources.push((org.management_account_id.clone(), org.bucket.clone()));
    }
    for (account, bucket) in sources {
        let s3 = sim.root_s3(&account).expect("root client");
        let mut token = None;
        loop {
            let page = s3
                .list_objects_v2()
                .bucket(&bucket)
                .set_continuation_token(token.take())
                .send()
                .await
                .expect("list source");
            for object in page.contents() {
                let key = object.key().unwrap().to_string();
                let body = s3
                    .get_object()
                    .bucket(&bucket)
                    .key(&key)
                    .send()
                    .await
                    .expect("get source")
                    .body
                    .collect()
                    .await
                    .unwrap()
                    .into_bytes()
                    .to_vec();
                out.insert((account.clone(), bucket.clone(), key), body);
            }
            match page.next_continuation_token() {
                Some(next) => token = Some(next.to_string()),
                None => break,
            }
        }
    }
    out
}

/// Every version of a copy in the archive: key -> version ids (the findings
/// ledger's objects are not copies; see [`ledger_keys`]).
pub async fn archive_versions(sim: &Sim) -> BTreeMap<String, Vec<String>> {
    let mut all = all_archive_versions(sim).await;
    all.retain(|key, _| !trailvault_pipeline::ledger::is_ledger_key(&sim.org.archive_prefix, key));
    all
}

/// The keys of the findings ledger in the archive.
pub async fn ledger_keys(sim: &Sim) -> Vec<String> {
    all_archive_versions(sim)
        .await
        .into_keys()
        .filter(|key| trailvault_pipeline::ledger::is_ledger_key(&sim.org.archive_prefix, key))
        .collect()
}

async fn all_archive_versions(sim: &Sim) -> BTreeMap<String, Vec<String>> {
    let s3 = harness::s3_client(&sim.collector_sdk_config());
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut key_marker = None;
    let mut version_marker = None;
    loop {
        let page = s3
            .list_object_versions()
            .bucket(&sim.org.archive_bucket)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .expect("list archive versions");
        for version in page.versions() {
            out.entry(version.key().unwrap().to_string())
                .or_default()
                .push(version.version_id().unwrap_or("null").to_string());
        }
        if !page.is_truncated().unwrap_or(false) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
    out
}

pub fn archive_key(sim: &Sim, account: &str, bucket: &str, key: &str) -> String {
    format!("{}/{account}/{bucket}/{key}", sim.org.archive_prefix)
}

fn sha256_b64(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The simulator seed of every e2e test that does not choose one.
const E2E_SEED: u64 = 0x7a11_5eed;

pub async fn provision(options: ProvisionOptions, hours: u32) -> Sim {
    let endpoint = harness::test_endpoint();
    harness::reset(&endpoint).await.expect("reset the emulator");
    let mut sim = Sim::provision(
        &endpoint,
        ProvisionOptions {
            history_hours: hours.max(options.history_hours),
            // A fixed seed: which hours are empty is then the same on every run
            // (a random one made a two-hour chain without any log 2 % of the time).
            seed: options.seed.or(Some(E2E_SEED)),
            ..options
        },
    )
    .await
    .expect("provision");
    sim.deliver_hours(hours).await.expect("deliver");
    sim
}

pub fn stat(report: &serde_json::Value, name: &str) -> u64 {
    report["stats"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("stats.{name} missing in {report}"))
}

pub fn finding_kinds(report: &serde_json::Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// CloudTrail's own object metadata, which copies must carry over verbatim.
const PRESERVED_METADATA: [&str; 3] = [
    "signature",
    "signature-algorithm",
    "backfill-generation-timestamp",
];

/// Why a copy's content could not be read as one gzip member (`tv-content-error`).
const CONTENT_ERRORS: [&str; 6] = [
    "not_gzip",
    "corrupt",
    "truncated",
    "trailing_data",
    "too_large",
    "ratio_exceeded",
];

/// The SHA-256 (hex) of the inflated bytes of `raw`'s single gzip member, as
/// trailvault must record it, or `None` when there is no such content within
/// `max_inflated_bytes` (not gzip, corrupt, trailing data, too large): then
/// trailvault must record a content error instead. Independent of the pipeline's
/// inflater: flate2 with the integrity checks of RFC 1952.
fn inflated_sha256_hex(raw: &[u8], max_inflated_bytes: u64) -> Option<String> {
    use std::io::Read as _;
    let mut decoder = flate2::bufread::GzDecoder::new(raw);
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut inflated = 0u64;
    loop {
        let read = decoder.read(&mut buffer).ok()?;
        if read == 0 {
            break;
        }
        inflated += read as u64;
        if inflated > max_inflated_bytes {
            return None;
        }
        context.update(&buffer[..read]);
    }
    if !decoder.into_inner().is_empty() {
        return None;
    }
    Some(hex::encode(context.finish().as_ref()))
}

/// Asserts that the archive holds exactly one verified version per source
/// object, with the required encryption, checksum, lock and provenance. Each
/// copy must have been made after its source object was written and before now.
pub async fn assert_archive_matches_sources(sim: &Sim) {
    check_archive_against_sources(sim, None).await;
}

/// [`assert_archive_matches_sources`], and every copy was made by runs that
/// started at `runs_started` or later.
pub async fn assert_archive_matches_sources_since(sim: &Sim, runs_started: DateTime<Utc>) {
    check_archive_against_sources(sim, Some(runs_started)).await;
}

async fn check_archive_against_sources(sim: &Sim, runs_started: Option<DateTime<Utc>>) {
    let checked_at = Utc::now();
    let sources = source_objects(sim).await;
    let versions = archive_versions(sim).await;
    let expected_keys: BTreeSet<String> = sources
        .keys()
        .map(|(a, b, k)| archive_key(sim, a, b, k))
        .collect();
    let archived_keys: BTreeSet<String> = versions.keys().cloned().collect();
    assert_eq!(
        archived_keys, expected_keys,
        "archive keys differ from source objects"
    );
    for (key, ids) in &versions {
        assert_eq!(ids.len(), 1, "{key} has {} versions: {ids:?}", ids.len());
    }
    let s3 = harness::s3_client(&sim.collector_sdk_config());
    let retention = chrono::Duration::days(i64::from(sim.org.retention_days));
    let slack = chrono::Duration::minutes(1);
    // The bound of the generated configuration (the tests do not change it).
    let max_inflated_bytes = ConfigOptions::new(std::path::Path::new("store")).max_inflated_bytes;
    for ((account, bucket, key), body) in &sources {
        let source = sim
            .root_s3(account)
            .expect("root client")
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("head source {key}: {e:?}"));
        let source_metadata = source.metadata().cloned().unwrap_or_default();
        let head = s3
            .head_object()
            .bucket(&sim.org.archive_bucket)
            .key(archive_key(sim, account, bucket, key))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap_or_else(|e| panic!("head {key}: {e:?}"));
        assert_eq!(
            head.ssekms_key_id(),
            Some(sim.org.kms_key_arn.as_str()),
            "{key} KMS key"
        );
        assert_eq!(
            head.checksum_sha256(),
            Some(sha256_b64(body).as_str()),
            "{key} checksum"
        );
        assert_eq!(
            head.object_lock_mode().map(|m| m.as_str()),
            Some("COMPLIANCE"),
            "{key} lock mode"
        );

        // When: after the source was written (second precision) and after the
        // runs started, before now; locked for the retention period from then.
        let written = source
            .last_modified()
            .map(|t| t.secs())
            .unwrap_or_else(|| panic!("source {key} has no LastModified"));
        let earliest = runs_started.map_or(written - 1, |t| t.timestamp().max(written - 1));
        let metadata = head.metadata().cloned().unwrap_or_default();
        let copied_at: i64 = metadata
            .get("tv-copied-at")
            .unwrap_or_else(|| panic!("{key} has no tv-copied-at: {metadata:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{key} tv-copied-at {metadata:?}: {e}"));
        assert!(
            (earliest..=checked_at.timestamp()).contains(&copied_at),
            "{key} copied at {copied_at}, expected within [{earliest}, {}]",
            checked_at.timestamp()
        );
        let until = head.object_lock_retain_until_date().expect("retain-until");
        let (min_until, max_until) = (
            earliest + (retention - slack).num_seconds(),
            (checked_at + retention + slack).timestamp(),
        );
        assert!(
            (min_until..=max_until).contains(&until.secs()),
            "{key} retained until {until}, expected within [{min_until}, {max_until}] (epoch s)"
        );

        // Provenance and content, exactly; nothing else.
        let mut expected = BTreeMap::new();
        expected.insert("tv-source-account", account.clone());
        let source_etag = source.e_tag().expect("source ETag").trim_matches('"');
        assert!(!source_etag.is_empty(), "source {key} has an empty ETag");
        expected.insert("tv-source-etag", source_etag.to_string());
        if let Some(version) = source.version_id() {
            expected.insert("tv-source-version", version.to_string());
        }
        match inflated_sha256_hex(body, max_inflated_bytes) {
            Some(sha256) => {
                expected.insert("tv-content-sha256", sha256);
            }
            None => {
                let error = metadata
                    .get("tv-content-error")
                    .unwrap_or_else(|| panic!("{key} has no tv-content-error: {metadata:?}"));
                let not_gzip = !body.starts_with(&[0x1f, 0x8b]);
                assert!(
                    if not_gzip {
                        error == "not_gzip"
                    } else {
                        CONTENT_ERRORS.contains(&error.as_str())
                    },
                    "{key} tv-content-error {error:?}"
                );
                expected.insert("tv-content-error", error.clone());
            }
        }
        expected.insert("tv-copied-at", copied_at.to_string());
        for name in PRESERVED_METADATA {
            if let Some(value) = source_metadata.get(name) {
                expected.insert(name, value.clone());
            }
        }
        let actual: BTreeMap<&str, String> = metadata
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        assert_eq!(
            actual, expected,
            "{key} metadata (source: {source_metadata:?})"
        );

        if key.contains("/CloudTrail-Digest/") {
            // The simulator signs every digest: the comparison above is not vacuous.
            assert_eq!(
                metadata.get("signature-algorithm").map(String::as_str),
                Some("SHA256withRSA"),
                "{key} signature-algorithm"
            );
            assert_eq!(
                metadata.get("signature").map(String::len),
                Some(512),
                "{key} signature"
            );
            if key.ends_with("_backfill.json.gz") {
                assert!(
                    metadata.contains_key("backfill-generation-timestamp"),
                    "{key} backfill timestamp"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn collect_archives_every_file_once_and_reruns_copy_nothing() {
    // Deployed with the shipped templates (CreateStack): trailvault runs as the
    // audit stack's collector role.
    let (mut sim, _stacks) = crate::stacks::stacks_sim(
        ProvisionOptions {
            members: 3,
            ..ProvisionOptions::default()
        },
        4,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));

    let started = Utc::now();
    let first = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert_eq!(
        first.code, 0,
        "first collect failed:\n{}\n{}",
        first.stdout, first.stderr
    );
    let report = first.json();
    let source_count = source_objects(&sim).await.len() as u64;
    assert!(
        source_count > 50,
        "the simulation should deliver a fair number of files, got {source_count}"
    );
    assert_eq!(stat(&report, "objects_copied"), source_count);
    assert_eq!(stat(&report, "accounts"), 3);
    assert!(
        report["findings"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_archive_matches_sources_since(&sim, started).await;

    // Nothing new: nothing copied, everything listed is skipped.
    let second = run(&sim, &config, &["--json", "collect", "--no-verify"]).json();
    assert_eq!(stat(&second, "objects_copied"), 0);
    assert_eq!(stat(&second, "objects_skipped"), source_count);

    // A late file whose name sorts before files already copied is collected.
    let late = sim
        .deliver_late_log(Default::default())
        .await
        .expect("late delivery");
    let third = run(&sim, &config, &["--json", "collect", "--no-verify"]).json();
    assert_eq!(
        stat(&third, "objects_copied"),
        2,
        "the late log and its backfill digest: {third}"
    );
    let versions = archive_versions(&sim).await;
    assert!(
        versions.contains_key(&archive_key(
            &sim,
            &late.log.account_id,
            &late.log.bucket,
            &late.log.key
        )),
        "late log not archived"
    );
    assert_archive_matches_sources_since(&sim, started).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_that_cannot_be_assumed_does_not_stop_the_others() {
    let sim = provision(
        ProvisionOptions {
            members: 3,
            org_trail: false,
            broken_members: vec![1],
            ..ProvisionOptions::default()
        },
        2,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    let result = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert_eq!(
        result.code, 1,
        "a failed account must give exit 1:\n{}",
        result.stderr
    );
    let report = result.json();
    let errors = report["errors"].as_array().unwrap();
    let broken = &sim.org.members[1].account_id;
    assert!(
        errors
            .iter()
            .any(|e| e["account_id"] == broken.as_str() && e["operation"] == "sts:AssumeRole"),
        "{report}"
    );
    let versions = archive_versions(&sim).await;
    for member in &sim.org.members {
        let archived = versions
            .keys()
            .any(|key| key.contains(&format!("/{}/", member.trail_bucket)));
        assert_eq!(
            archived, !member.broken,
            "member {} archived={archived}",
            member.account_id
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_external_id_is_refused_and_reported() {
    let sim = provision(
        ProvisionOptions {
            members: 2,
            org_trail: false,
            ..ProvisionOptions::default()
        },
        1,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&sim.org.external_id, "wrong-external-id");
    std::fs::write(&config, text).unwrap();
    let result = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert_eq!(result.code, 1);
    let report = result.json();
    assert_eq!(report["errors"].as_array().unwrap().len(), 2, "{report}");
    let refused: BTreeSet<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "sts:AssumeRole")
        .filter_map(|e| e["account_id"].as_str())
        .collect();
    let members: BTreeSet<&str> = sim
        .org
        .members
        .iter()
        .map(|m| m.account_id.as_str())
        .collect();
    assert_eq!(refused, members, "{report}");
    assert!(archive_versions(&sim).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_requiring_another_external_id_does_not_stop_the_others() {
    let sim = provision(
        ProvisionOptions {
            members: 3,
            org_trail: false,
            ..ProvisionOptions::default()
        },
        2,
    )
    .await;
    // Member 1's administrator changes the ExternalId its reader role requires;
    // the trusted principal stays the collector.
    let other = &sim.org.members[1];
    let other_external_id = format!("{}-rotated", sim.org.external_id);
    let trust = policies::reader_trust_policy(
        &other.account_id,
        &sim.org.collector.principal_arn,
        &other_external_id,
    )
    .expect("trust policy");
    let member_root = harness::sdk_config(
        &sim.org.endpoint,
        &other.account_id,
        "sim-root-secret",
        None,
    );
    aws_sdk_iam::Client::new(&member_root)
        .update_assume_role_policy()
        .role_name(&sim.org.role_name)
        .policy_document(trust.to_string())
        .send()
        .await
        .expect("update the trust policy");
    // The emulator now refuses exactly the configured ExternalId for that role.
    assert!(sim
        .assume_role_as_collector(&other.role_arn, Some(&sim.org.external_id))
        .await
        .is_err());
    sim.assume_role_as_collector(&other.role_arn, Some(&other_external_id))
        .await
        .expect("the collector may assume the role with its new ExternalId");

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    let result = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert_eq!(
        result.code, 1,
        "a refused account must give exit 1:\n{}",
        result.stderr
    );
    let report = result.json();
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "only the refused member fails: {report}");
    assert_eq!(
        errors[0]["account_id"],
        other.account_id.as_str(),
        "{report}"
    );
    assert_eq!(errors[0]["operation"], "sts:AssumeRole", "{report}");

    // Every object of the other members is archived, nothing of the refused one.
    let sources = source_objects(&sim).await;
    let expected: BTreeSet<String> = sources
        .keys()
        .filter(|(_, bucket, _)| *bucket != other.trail_bucket)
        .map(|(a, b, k)| archive_key(&sim, a, b, k))
        .collect();
    assert!(
        expected.len() < sources.len() && !expected.is_empty(),
        "the refused member and the others all have files"
    );
    let archived: BTreeSet<String> = archive_versions(&sim).await.into_keys().collect();
    assert_eq!(archived, expected, "archived = the other members' objects");
    assert_eq!(stat(&report, "objects_copied"), expected.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_any_point_leaves_exactly_one_verified_version_per_object() {
    let sim = provision(
        ProvisionOptions {
            members: 3,
            history_hours: 12,
            ..ProvisionOptions::default()
        },
        12,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let options = ConfigOptions {
        concurrency: 4,
        ..options_in(&sim, dir.path())
    };
    let config = write_config(&sim, dir.path(), options.clone());
    // The killed runs read each source bucket at 25 requests/s, so every kill
    // below lands mid-run on any host; the final runs are not capped.
    let throttled = write_throttled_config(&sim, dir.path(), options, 25);
    let started = Utc::now();
    let mut killed = 0;
    for delay_ms in [300u64, 600, 900, 1200] {
        let mut child = command(&sim, &throttled, &["collect", "--no-verify"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        let _ = child.wait();
    }
    assert!(
        killed >= 2,
        "the runs finished too fast to be killed mid-run ({killed} kills)"
    );
    // The kills landed after copies began, so the final run met a store behind
    // the archive, not an empty archive.
    let archived_before_final = archive_versions(&sim).await.len() as u64;
    let source_count = source_objects(&sim).await.len() as u64;
    assert!(
        archived_before_final > 0,
        "no copy was made before the kills: they proved nothing about a crash mid-copy"
    );
    let finish = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert_eq!(finish.code, 0, "{}", finish.stderr);
    let report = finish.json();
    let (copied, adopted, skipped) = (
        stat(&report, "objects_copied"),
        stat(&report, "objects_adopted"),
        stat(&report, "objects_skipped"),
    );
    eprintln!(
        "{killed} kills; {archived_before_final} of {source_count} objects archived before the final run, \
         which copied {copied}, adopted {adopted} (archived by a killed run, not yet recorded) and skipped {skipped}"
    );
    // Every object is accounted for exactly once by the final run.
    assert_eq!(copied + adopted + skipped, source_count, "{report}");
    assert_archive_matches_sources_since(&sim, started).await;
    let again = run(&sim, &config, &["--json", "collect", "--no-verify"]).json();
    assert_eq!(stat(&again, "objects_copied"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_content_is_archived_as_evidence_and_raises_findings() {
    let mut sim = provision(
        ProvisionOptions {
            members: 2,
            org_trail: false,
            ..ProvisionOptions::default()
        },
        2,
    )
    .await;
    let planted = sim
        .tamper(Tamper::PlantInOtherAccount)
        .await
        .expect("plant");
    let bomb = sim.tamper(Tamper::GzipBomb).await.expect("bomb");
    let not_gzip = sim.tamper(Tamper::NotGzip).await.expect("not gzip");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    let started = Utc::now();
    let result = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert_eq!(
        result.code, 3,
        "findings must give exit 3:\n{}",
        result.stderr
    );
    let kinds = finding_kinds(&result.json());
    for (tamper, kind) in [
        (&planted, "account_mismatch"),
        (&bomb, "object_malformed"),
        (&not_gzip, "object_malformed"),
    ] {
        assert!(
            kinds.contains(&(kind.to_string(), tamper.key.clone())),
            "expected {kind} on {}: {kinds:?}",
            tamper.key
        );
    }
    assert_eq!(kinds.len(), 3, "nothing else is flagged: {kinds:?}");
    // Raw bytes are archived under the account whose role read them.
    let versions = archive_versions(&sim).await;
    for tamper in [&planted, &bomb, &not_gzip] {
        let reader = sim
            .org
            .members
            .iter()
            .find(|m| m.trail_bucket == tamper.bucket)
            .map(|m| m.account_id.clone())
            .unwrap();
        assert!(
            versions.contains_key(&archive_key(&sim, &reader, &tamper.bucket, &tamper.key)),
            "{} not archived under reader {reader}",
            tamper.key
        );
    }
    assert_archive_matches_sources_since(&sim, started).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_object_changed_after_archiving_is_kept_in_both_versions() {
    let mut sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            ..ProvisionOptions::default()
        },
        2,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    assert_eq!(run(&sim, &config, &["collect", "--no-verify"]).code, 0);
    let modified = sim.tamper(Tamper::ModifyLog).await.expect("modify");
    let result = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert_eq!(result.code, 3);
    let report = result.json();
    assert_eq!(stat(&report, "objects_copied"), 1);
    assert!(
        finding_kinds(&report)
            .contains(&("source_object_modified".to_string(), modified.key.clone())),
        "{report}"
    );
    let versions = archive_versions(&sim).await;
    let reader = &sim.org.members[0].account_id;
    assert_eq!(
        versions[&archive_key(&sim, reader, &modified.bucket, &modified.key)].len(),
        2,
        "both versions kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configuration_exits_2_and_names_the_field() {
    let sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            ..ProvisionOptions::default()
        },
        1,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[collect]", "[collect]\nconcurrencyy = 3");
    std::fs::write(&config, text).unwrap();
    let result = run(&sim, &config, &["collect"]);
    assert_eq!(result.code, 2);
    assert!(result.stderr.contains("concurrencyy"), "{}", result.stderr);
    assert!(archive_versions(&sim).await.is_empty(), "nothing was done");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unlocked_archive_is_refused_unless_overridden() {
    let sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            ..ProvisionOptions::default()
        },
        1,
    )
    .await;
    // The audit account's root removes the archive's default retention.
    let audit_root = sim.root_s3(&sim.org.audit_account_id).expect("audit root");
    audit_root
        .put_object_lock_configuration()
        .bucket(&sim.org.archive_bucket)
        .object_lock_configuration(
            aws_sdk_s3::types::ObjectLockConfiguration::builder()
                .object_lock_enabled(aws_sdk_s3::types::ObjectLockEnabled::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("remove the default retention");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));

    let refused = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    let report = refused.json();
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(findings[0]["kind"], "archive_misconfigured");
    assert!(
        findings[0]["detail"]
            .as_str()
            .unwrap()
            .contains("Object Lock default retention"),
        "{report}"
    );
    assert!(
        archive_versions(&sim).await.is_empty(),
        "nothing may be written to an unlocked archive"
    );

    let overridden = run(
        &sim,
        &config,
        &["--json", "collect", "--allow-unlocked-archive"],
    );
    assert_eq!(
        overridden.code, 3,
        "the finding stays: {}",
        overridden.stderr
    );
    let report = overridden.json();
    assert!(
        report["overrides"][0]
            .as_str()
            .unwrap()
            .contains("--allow-unlocked-archive"),
        "{report}"
    );
    assert!(stat(&report, "objects_copied") > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_store_is_rebuilt_from_the_archive_and_nothing_is_copied_again() {
    let sim = provision(
        ProvisionOptions {
            members: 2,
            ..ProvisionOptions::default()
        },
        3,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // The simulated history ended hours ago: its chain heads are not stale here.
    let options = ConfigOptions {
        chain_head_stale_hours: 24 * 30,
        ..options_in(&sim, dir.path())
    };
    let store = options.store_path.clone();
    let config = write_config(&sim, dir.path(), options);
    let started = Utc::now();
    let first = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let copied = stat(&first.json(), "objects_copied");
    let digests = stat(&first.json(), "digests_validated");
    assert!(digests > 0);

    std::fs::remove_dir_all(&store).expect("delete the store");
    let rebuilt = run(&sim, &config, &["--json", "rebuild-state"]);
    assert_eq!(rebuilt.code, 0, "{}", rebuilt.stderr);
    let report = rebuilt.json();
    assert_eq!(
        stat(&report, "objects_copied"),
        copied,
        "every archived object is recorded again"
    );
    assert_eq!(
        stat(&report, "digests_validated"),
        digests,
        "every chain is validated again from the archive: {report}"
    );

    // Verify continues where it was: no digest is read again.
    let verified = run(&sim, &config, &["--json", "verify"]);
    assert_eq!(verified.code, 0, "{}", verified.stderr);
    assert_eq!(stat(&verified.json(), "digests_validated"), 0);
    let after = run(&sim, &config, &["--json", "collect", "--no-verify"]).json();
    assert_eq!(stat(&after, "objects_copied"), 0, "{after}");
    assert_eq!(stat(&after, "objects_skipped"), copied);
    assert_archive_matches_sources_since(&sim, started).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_backfill_resumes_and_ends_with_one_verified_version_per_object() {
    let sim = provision(
        ProvisionOptions {
            members: 3,
            history_hours: 72,
            ..ProvisionOptions::default()
        },
        72,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let options = ConfigOptions {
        concurrency: 2,
        ..options_in(&sim, dir.path())
    };
    let config = write_config(&sim, dir.path(), options.clone());
    // The killed backfill reads each source bucket at 100 requests/s: a day
    // partition takes about a second, the whole backfill many, on any host.
    let throttled = write_throttled_config(&sim, dir.path(), options, 100);
    let since = (Utc::now() - chrono::Duration::days(3))
        .format("%Y-%m-%d")
        .to_string();

    let started = Utc::now();
    let mut child = command(&sim, &throttled, &["backfill", "--since", &since])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let killed = child.try_wait().unwrap().is_none();
    if killed {
        child.kill().unwrap();
    }
    let _ = child.wait();
    assert!(
        killed,
        "the backfill finished before it could be killed; make the data set larger"
    );

    let resumed = run(&sim, &config, &["--json", "backfill", "--since", &since]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let report = resumed.json();
    assert!(
        stat(&report, "partitions_skipped") > 0,
        "completed partitions are not listed again: {}",
        report["stats"]
    );
    assert!(
        stat(&report, "digests_validated") > 0,
        "the backfill validates the chains it covered"
    );
    assert_archive_matches_sources_since(&sim, started).await;
}

/// The config written by `write_config`, with `lines` added to its `[collect]` table.
fn with_collect_lines(config: &std::path::Path, lines: &str) {
    let text = std::fs::read_to_string(config).expect("read config");
    assert!(text.contains("[collect]\n"), "{text}");
    let text = text.replacen("[collect]\n", &format!("[collect]\n{lines}"), 1);
    std::fs::write(config, text).expect("write config");
}

/// The log-file keys (folder `CloudTrail/`) of member 0's bucket, by partition prefix.
async fn member_log_partitions(sim: &Sim) -> BTreeMap<String, Vec<String>> {
    let member = &sim.org.members[0];
    let s3 = sim.root_s3(&member.account_id).expect("root client");
    let mut partitions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(&member.trail_bucket)
            .set_continuation_token(token.take())
            .send()
            .await
            .expect("list source");
        for object in page.contents() {
            let key = object.key().unwrap();
            if let Ok(trail_key) = trailvault_pipeline::cloudtrail::keys::parse_trail_key(key) {
                partitions
                    .entry(trail_key.partition_prefix())
                    .or_default()
                    .push(key.to_string());
            }
        }
        match page.next_continuation_token() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    partitions
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flooded_partition_is_collected_over_runs_with_its_real_files_first() {
    let sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            ..ProvisionOptions::default()
        },
        2,
    )
    .await;
    let partitions = member_log_partitions(&sim).await;
    let largest = partitions
        .values()
        .map(Vec::len)
        .max()
        .expect("delivered files");
    let (flooded, real) = partitions
        .iter()
        .find(|(prefix, _)| prefix.contains("/CloudTrail/"))
        .map(|(prefix, keys)| (prefix.clone(), keys.clone()))
        .expect("a log partition");
    // Every partition fits in one run but for the flooded one, whose junk sorts
    // before its real files and outnumbers the cap twice over.
    let cap = largest + 2;
    let member = &sim.org.members[0];
    let s3 = sim.root_s3(&member.account_id).expect("root client");
    let junk: Vec<String> = (0..2 * cap)
        .map(|index| format!("{flooded}0000-junk-{index:04}"))
        .collect();
    for key in &junk {
        s3.put_object()
            .bucket(&member.trail_bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"junk"))
            .send()
            .await
            .expect("plant junk");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    with_collect_lines(
        &config,
        &format!("max_keys_per_partition_per_run = {cap}\n"),
    );
    let started = Utc::now();

    let first = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert_eq!(first.code, 3, "junk raises findings:\n{}", first.stderr);
    let report = first.json();
    let deferred = stat(&report, "objects_deferred");
    assert_eq!(
        deferred,
        (real.len() + junk.len() - cap) as u64,
        "the flooded partition yields {cap} keys, the rest wait: {report}"
    );
    assert!(
        first
            .stderr
            .contains("partition holds more new keys than one run takes"),
        "logged: {}",
        first.stderr
    );
    let archived = archive_versions(&sim).await;
    for key in &real {
        assert!(
            archived.contains_key(&archive_key(
                &sim,
                &member.account_id,
                &member.trail_bucket,
                key
            )),
            "the real file {key} goes before the junk that sorts first"
        );
    }
    let junk_findings = finding_kinds(&report)
        .into_iter()
        .filter(|(kind, key)| kind == "object_malformed" && junk.contains(key))
        .count();
    assert_eq!(
        junk_findings,
        cap - real.len(),
        "findings bounded by the cap"
    );

    // The next runs take the rest, then nothing is left.
    let mut runs = 1;
    let mut left = deferred;
    while left > 0 {
        runs += 1;
        assert!(runs <= 4, "still {left} deferred after {runs} runs");
        let next = run(&sim, &config, &["--json", "collect", "--no-verify"]).json();
        let now_left = stat(&next, "objects_deferred");
        assert_eq!(stat(&next, "objects_copied"), left - now_left, "{next}");
        left = now_left;
    }
    let last = run(&sim, &config, &["--json", "collect", "--no-verify"]).json();
    assert_eq!(stat(&last, "objects_copied"), 0);
    assert_eq!(stat(&last, "objects_deferred"), 0);
    // Every file, junk included (as evidence), archived once.
    assert_archive_matches_sources_since(&sim, started).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_above_max_object_bytes_is_one_finding_and_never_copied() {
    let sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            ..ProvisionOptions::default()
        },
        2,
    )
    .await;
    let partitions = member_log_partitions(&sim).await;
    let (prefix, real) = partitions
        .iter()
        .find(|(prefix, _)| prefix.contains("/CloudTrail/"))
        .expect("a log partition");
    // Named like a real log of the partition, one byte over the bound.
    let name = real[0].rsplit_once('/').unwrap().1;
    let (stamp, _unique) = name.rsplit_once('_').expect("a log file name");
    let big_key = format!("{prefix}{stamp}_ZZZZZZZZZZZZZZZZ.json.gz");
    let member = &sim.org.members[0];
    let s3 = sim.root_s3(&member.account_id).expect("root client");
    let max_object_bytes: usize = 1024 * 1024;
    s3.put_object()
        .bucket(&member.trail_bucket)
        .key(&big_key)
        .body(aws_sdk_s3::primitives::ByteStream::from(vec![
            7u8;
            max_object_bytes
                + 1
        ]))
        .send()
        .await
        .expect("plant a large object");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    with_collect_lines(&config, &format!("max_object_bytes = {max_object_bytes}\n"));

    let first = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert_eq!(first.code, 3, "{}", first.stderr);
    let report = first.json();
    let about_big: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|finding| finding["key"] == big_key.as_str())
        .collect();
    assert_eq!(about_big.len(), 1, "{report}");
    assert_eq!(about_big[0]["kind"], "object_malformed");
    assert_eq!(about_big[0]["new"], true);
    let detail = about_big[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("{} bytes", max_object_bytes + 1)),
        "{detail}"
    );
    assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{report}");
    let big_archive_key = archive_key(&sim, &member.account_id, &member.trail_bucket, &big_key);
    assert!(
        !archive_versions(&sim).await.contains_key(&big_archive_key),
        "not copied"
    );

    // The next run neither raises it again nor tries to copy it.
    let second = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    let report = second.json();
    assert_eq!(stat(&report, "objects_copied"), 0, "{report}");
    assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{report}");
    for finding in report["findings"].as_array().unwrap() {
        assert!(
            finding["key"] != big_key.as_str() || finding["new"] == false,
            "raised again: {finding}"
        );
    }
    assert!(
        !archive_versions(&sim).await.contains_key(&big_archive_key),
        "not copied"
    );
}
