//! The edges of the source (issue 13): a bucket squatted under a member's
//! name, keys the archive cannot hold, and the copy `verify` makes of a log
//! collection never listed — each against the emulator (AUTH=true).
//!
//! What the emulator cannot enforce, and the canary that says so: S3's
//! `ExpectedBucketOwner` (accepted, not enforced: AWS answers 403) and the
//! 1,024-byte key limit (AWS answers `KeyTooLongError`). trailvault sends the
//! one and enforces the other itself; the canaries below fail the day the
//! emulator starts enforcing them, so the tests can then lean on it.

use std::io::{Read as _, Write as _};

use aws_sdk_s3::primitives::ByteStream;
use chrono::Utc;
use trailvault_integration_tests::harness;
use trailvault_integration_tests::sim::{policies, ProvisionOptions};
use trailvault_pipeline::model::object::SourceRef;
use trailvault_pipeline::model::text::decode_url_encoded;

use crate::cli::{options_in, run, write_config};
use crate::collect::{archive_key, archive_versions, finding_kinds, provision, stat};

/// An account of nobody in the simulation: the squatter.
const SQUATTER: &str = "999999999913";

fn two_members() -> ProvisionOptions {
    ProvisionOptions {
        members: 2,
        org_trail: false,
        ..ProvisionOptions::default()
    }
}

/// The keys of a bucket, as `s3` lists them.
async fn keys_of(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .set_continuation_token(token.take())
            .send()
            .await
            .expect("list");
        for object in page.contents() {
            keys.push(decode_url_encoded(object.key().unwrap()).expect("decode"));
        }
        match page.next_continuation_token() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    keys
}

async fn body_of(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

/// Canary: the emulator accepts a request whose `ExpectedBucketOwner` names
/// another account (AWS refuses it with 403). trailvault sends it on every
/// source request anyway (see `infra/src/s3/source.rs`) and checks ownership
/// actively; when this fails, the emulator enforces it: extend
/// `a_bucket_squatted_under_a_members_name_is_refused` to show the 403.
#[tokio::test(flavor = "multi_thread")]
async fn canary_the_emulator_does_not_enforce_expected_bucket_owner() {
    let sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            ..ProvisionOptions::default()
        },
        1,
    )
    .await;
    let member = &sim.org.members[0];
    let s3 = sim.root_s3(&member.account_id).unwrap();
    let listed = s3
        .list_objects_v2()
        .bucket(&member.trail_bucket)
        .expected_bucket_owner(SQUATTER)
        .max_keys(1)
        .send()
        .await;
    assert!(
        listed.is_ok(),
        "the emulator now enforces ExpectedBucketOwner ({listed:?}): rely on it in the squat test"
    );
}

/// Canary: the emulator stores a key longer than S3's 1,024 bytes (AWS
/// answers KeyTooLongError). trailvault quarantines such archive keys itself.
#[tokio::test(flavor = "multi_thread")]
async fn canary_the_emulator_does_not_enforce_the_key_length() {
    let sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            ..ProvisionOptions::default()
        },
        1,
    )
    .await;
    let member = &sim.org.members[0];
    let s3 = sim.root_s3(&member.account_id).unwrap();
    let put = s3
        .put_object()
        .bucket(&member.trail_bucket)
        .key("k".repeat(1100))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert!(
        put.is_ok(),
        "the emulator now refuses keys over 1,024 bytes ({put:?}): the quarantine test can lean on it"
    );
}

/// A member's bucket name taken by another account (the member deleted its
/// bucket; the squatter created one of the same name, opened it to the
/// member's role and filled it with "history"): refused with
/// `source_bucket_not_owned`, nothing of it archived; the other member is
/// collected as usual.
#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_squatted_under_a_members_name_is_refused() {
    let sim = provision(two_members(), 2).await;
    let victim = sim.org.members[1].clone();
    let owner_s3 = sim.root_s3(&victim.account_id).unwrap();
    // What the squatter will serve: the member's own files.
    let mut files = Vec::new();
    for key in keys_of(owner_s3, &victim.trail_bucket).await {
        let body = body_of(owner_s3, &victim.trail_bucket, &key).await;
        owner_s3
            .delete_object()
            .bucket(&victim.trail_bucket)
            .key(&key)
            .send()
            .await
            .expect("empty the bucket");
        files.push((key, body));
    }
    assert!(!files.is_empty());
    owner_s3
        .delete_bucket()
        .bucket(&victim.trail_bucket)
        .send()
        .await
        .expect("delete the member's bucket");
    let squatter = harness::s3_client(&harness::sdk_config(
        &sim.org.endpoint,
        SQUATTER,
        "squatter-secret",
        None,
    ));
    squatter
        .create_bucket()
        .bucket(&victim.trail_bucket)
        .send()
        .await
        .expect("squat the name");
    let open_to_the_member = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": victim.role_arn},
            "Action": ["s3:ListBucket", "s3:GetObject"],
            "Resource": [
                format!("arn:aws:s3:::{}", victim.trail_bucket),
                format!("arn:aws:s3:::{}/*", victim.trail_bucket)
            ]
        }]
    });
    squatter
        .put_bucket_policy()
        .bucket(&victim.trail_bucket)
        .policy(open_to_the_member.to_string())
        .send()
        .await
        .expect("open the squatted bucket");
    for (key, body) in &files {
        squatter
            .put_object()
            .bucket(&victim.trail_bucket)
            .key(key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .expect("fill the squatted bucket");
    }
    // The member template's s3:ResourceAccount condition stands in the role.
    let reader_policy = policies::reader_permissions_policy(&victim.account_id, &["b"]).unwrap();
    assert!(
        reader_policy.to_string().contains("s3:ResourceAccount"),
        "{reader_policy}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    let result = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert_eq!(
        result.code, 3,
        "a refused bucket is a finding:\n{}",
        result.stderr
    );
    let report = result.json();
    let refused: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "source_bucket_not_owned")
        .collect();
    assert_eq!(refused.len(), 1, "{report}");
    assert_eq!(refused[0]["severity"], "critical");
    assert_eq!(refused[0]["account_id"], victim.account_id.as_str());
    assert_eq!(refused[0]["bucket"], victim.trail_bucket.as_str());
    assert!(
        report["errors"].as_array().unwrap().is_empty(),
        "{}",
        report["errors"]
    );
    let versions = archive_versions(&sim).await;
    let victim_prefix = archive_key(&sim, &victim.account_id, &victim.trail_bucket, "");
    assert!(
        !versions.keys().any(|key| key.starts_with(&victim_prefix)),
        "nothing of the squatted bucket is archived"
    );
    let other = &sim.org.members[0];
    let other_prefix = archive_key(&sim, &other.account_id, &other.trail_bucket, "");
    assert!(
        versions.keys().any(|key| key.starts_with(&other_prefix)),
        "the other member is collected"
    );
    // Seen again on the next run (a state, not a one-off).
    let again = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert!(finding_kinds(&again.json())
        .iter()
        .any(|(kind, _)| kind == "source_bucket_not_owned"));
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// A ~1,000-byte key and keys with a carriage return and ESC, delivered into a member
/// bucket: each is archived under a quarantine key with the original in
/// `tv-source-key`, raises `object_malformed` naming it, the run ends clean
/// and the next copies nothing; no raw control character reaches the human
/// output or the log.
#[tokio::test(flavor = "multi_thread")]
async fn keys_the_archive_cannot_hold_are_quarantined_and_escaped() {
    let sim = provision(two_members(), 2).await;
    let member = &sim.org.members[0];
    let s3 = sim.root_s3(&member.account_id).unwrap();
    let today = Utc::now().format("%Y/%m/%d");
    let region = &sim.org.home_region;
    let folder = format!("AWSLogs/{}/CloudTrail/{region}/{today}/", member.account_id);
    let long = format!("{folder}{}.json.gz", "L".repeat(1000 - folder.len() - 8));
    assert_eq!(long.len(), 1000);
    // A carriage return, not a newline: the emulator's policy matching
    // (`bucket/*`) does not match a newline in a key, so the member role may
    // not read such an object there (AWS's `*` matches it). The newline case
    // is covered by the unit tests of the copy path and the log formatter.
    let newline =
        format!("{folder}a\rFORGED-LINE 2026-01-01T00:00:00Z  INFO collection finished.json.gz");
    let escape = format!("{folder}b\u{1b}[2J\u{1b}]0;owned\u{7}.json.gz");
    let body = gzip(
        format!(
            r#"{{"Records":[{{"eventName":"GetObject","recipientAccountId":"{}"}}]}}"#,
            member.account_id
        )
        .as_bytes(),
    );
    for key in [&long, &newline, &escape] {
        s3.put_object()
            .bucket(&member.trail_bucket)
            .key(key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .expect("deliver a hostile key");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    let first = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert_eq!(first.code, 3, "{}", first.stderr);
    let report = first.json();
    assert!(
        report["errors"].as_array().unwrap().is_empty(),
        "{}",
        report["errors"]
    );
    let kinds = finding_kinds(&report);
    let collector = harness::s3_client(&sim.collector_sdk_config());
    for key in [&long, &newline, &escape] {
        assert!(
            kinds.contains(&("object_malformed".to_string(), key.clone())),
            "object_malformed names {key:?}: {kinds:?}"
        );
        let source = SourceRef {
            account_id: member.account_id.clone(),
            bucket: member.trail_bucket.clone(),
            key: key.clone(),
        };
        let quarantined = source.archive_key(&sim.org.archive_prefix);
        assert!(
            quarantined.starts_with(&format!(
                "{}/_trailvault/quarantine/{}/{}/",
                sim.org.archive_prefix, member.account_id, member.trail_bucket
            )),
            "{quarantined}"
        );
        let head = collector
            .head_object()
            .bucket(&sim.org.archive_bucket)
            .key(&quarantined)
            .send()
            .await
            .unwrap_or_else(|error| panic!("{quarantined} archived: {error:?}"));
        let encoded = head
            .metadata()
            .and_then(|metadata| metadata.get("tv-source-key"))
            .expect("tv-source-key");
        assert_eq!(&decode_url_encoded(encoded).unwrap(), key);
        assert_eq!(
            head.object_lock_mode().map(|mode| mode.as_str()),
            Some("COMPLIANCE")
        );
    }
    // Nothing over S3's limit was written to the archive.
    let versions = archive_versions(&sim).await;
    assert!(versions.keys().all(|key| key.len() <= 1024));
    assert!(versions
        .keys()
        .all(|key| !key.chars().any(char::is_control)));
    assert!(
        !first.stderr.contains('\u{1b}') && !first.stderr.contains('\r'),
        "no ESC or carriage return in the log"
    );
    assert!(
        !first
            .stderr
            .lines()
            .any(|line| line.starts_with("FORGED-LINE")),
        "no forged log line:\n{}",
        first.stderr
    );

    // The next run: no operational error, nothing copied again.
    let second = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    let report = second.json();
    assert!(
        report["errors"].as_array().unwrap().is_empty(),
        "{}",
        report["errors"]
    );
    assert_eq!(stat(&report, "objects_copied"), 0, "{report}");
    // Human output lists them escaped.
    let listed = run(&sim, &config, &["findings"]);
    for text in [&listed.stdout, &listed.stderr] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\r'),
            "{text:?}"
        );
        assert!(
            !text.lines().any(|line| line.starts_with("FORGED-LINE")),
            "{text}"
        );
    }
    assert!(
        listed.stdout.contains("a\\rFORGED-LINE"),
        "{}",
        listed.stdout
    );
    assert!(
        listed.stdout.contains("b\\x1b[2J\\x1b]0;owned\\x07"),
        "{}",
        listed.stdout
    );
}

/// A log file a digest names that collection never listed (gone from the
/// bucket during the collection, back afterwards, with a body that claims
/// another account) is copied by `verify` through collection's own path:
/// the same archive metadata as a collected log, `inspect`'s
/// `account_mismatch`, and a store record the next collection trusts.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_fetched_by_verify_is_copied_like_a_collected_one() {
    let sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            ..ProvisionOptions::default()
        },
        3,
    )
    .await;
    let member = &sim.org.members[0];
    let s3 = sim.root_s3(&member.account_id).unwrap();
    let chain = sim
        .org
        .chains
        .iter()
        .find(|chain| chain.digests.iter().any(|digest| digest.logs.len() >= 2))
        .expect("a digest with two logs");
    let digest = chain
        .digests
        .iter()
        .find(|digest| digest.logs.len() >= 2)
        .unwrap();
    let hidden = digest.logs[0].key.clone();
    let collected = digest.logs[1].key.clone();
    let original = body_of(s3, &member.trail_bucket, &hidden).await;
    s3.delete_object()
        .bucket(&member.trail_bucket)
        .key(&hidden)
        .send()
        .await
        .expect("hide the log");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));
    let collect = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    assert!(collect.json()["errors"].as_array().unwrap().is_empty());
    // Back, claiming another account in its records.
    let claimed = String::from_utf8(gunzip(&original))
        .unwrap()
        .replace(&member.account_id, "333333333333");
    s3.put_object()
        .bucket(&member.trail_bucket)
        .key(&hidden)
        .body(ByteStream::from(gzip(claimed.as_bytes())))
        .send()
        .await
        .expect("put the log back");

    let verify = run(&sim, &config, &["--json", "verify"]);
    let report = verify.json();
    assert!(
        report["errors"].as_array().unwrap().is_empty(),
        "{}",
        report["errors"]
    );
    let kinds = finding_kinds(&report);
    assert!(
        kinds.contains(&("account_mismatch".to_string(), hidden.clone())),
        "the fetched copy was inspected: {kinds:?}"
    );
    let fetched_mismatch = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "account_mismatch" && f["key"] == hidden.as_str())
        .unwrap();
    assert_eq!(fetched_mismatch["bucket_owner"], member.account_id.as_str());
    let collector = harness::s3_client(&sim.collector_sdk_config());
    let head = |key: String| {
        let collector = collector.clone();
        let bucket = sim.org.archive_bucket.clone();
        async move {
            collector
                .head_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .unwrap_or_else(|error| panic!("{key}: {error:?}"))
        }
    };
    let fetched_head = head(archive_key(
        &sim,
        &member.account_id,
        &member.trail_bucket,
        &hidden,
    ))
    .await;
    let collected_head = head(archive_key(
        &sim,
        &member.account_id,
        &member.trail_bucket,
        &collected,
    ))
    .await;
    let names = |head: &aws_sdk_s3::operation::head_object::HeadObjectOutput| {
        let mut names: Vec<String> = head
            .metadata()
            .map(|metadata| metadata.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    };
    assert_eq!(names(&fetched_head), names(&collected_head));
    assert_eq!(
        fetched_head.object_lock_mode(),
        collected_head.object_lock_mode()
    );
    assert_eq!(fetched_head.ssekms_key_id(), collected_head.ssekms_key_id());
    // The store record is the one collection makes: nothing to copy again.
    let again = run(&sim, &config, &["--json", "collect", "--no-verify"]);
    let again = again.json();
    assert_eq!(stat(&again, "objects_copied"), 0, "{again}");
    assert_eq!(
        archive_versions(&sim).await
            [&archive_key(&sim, &member.account_id, &member.trail_bucket, &hidden)]
            .len(),
        1
    );
}
