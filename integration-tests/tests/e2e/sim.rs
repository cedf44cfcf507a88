//! The trail simulator against the emulator: what it provisions (and that the
//! security boundaries hold), what it delivers (key shapes, metadata, signatures,
//! chain links), late deliveries, tampering, and saved state.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use trailvault_integration_tests::harness;
use trailvault_integration_tests::sim::{
    gunzip_single_member, public_keys_from_json, sha256_hex, verify_digest_object, ChainSelector,
    DigestBody, ProvisionOptions, Sim, Tamper, TrailKind, DIGEST_FAMILY, INSIGHT_FAMILY,
    LOG_FAMILY,
};

async fn fresh_sim(options: ProvisionOptions) -> Sim {
    let endpoint = harness::test_endpoint();
    harness::reset(&endpoint).await.expect("reset the emulator");
    Sim::provision(&endpoint, options).await.expect("provision")
}

async fn list_keys(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.unwrap_or_else(|error| panic!("list s3://{bucket}/{prefix}: {error:?}"));
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|object| object.key().map(str::to_owned)),
        );
    }
    keys.sort();
    keys
}

async fn get(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> (Vec<u8>, HashMap<String, String>) {
    let response = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|error| panic!("get s3://{bucket}/{key}: {error:?}"));
    let metadata = response.metadata().cloned().unwrap_or_default();
    let body = response.body.collect().await.unwrap().into_bytes().to_vec();
    (body, metadata)
}

async fn exists(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bool {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => true,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|service| service.is_not_found()) =>
        {
            false
        }
        Err(error) => panic!("head s3://{bucket}/{key}: {error:?}"),
    }
}

fn exported_key(sim: &Sim) -> Vec<u8> {
    let keys = public_keys_from_json(&sim.public_keys_json()).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].0, sim.signing_key().fingerprint());
    keys[0].1.clone()
}

/// Checks a digest key against docs/cloudtrail-format.md §1.2 for its chain; returns the timestamp.
fn digest_key_timestamp(key: &str, root: &str, account: &str, region: &str, trail: &str) -> String {
    let name = key
        .strip_prefix(&format!("{root}/{DIGEST_FAMILY}/{region}/"))
        .unwrap_or_else(|| panic!("{key} is outside {root}/{DIGEST_FAMILY}/{region}/"));
    let (folder, file) = name.split_at(11);
    assert!(
        folder.len() == 11 && folder.ends_with('/'),
        "{key}: day folder"
    );
    let stamp = file
        .strip_prefix(&format!(
            "{account}_CloudTrail-Digest_{region}_{trail}_us-east-1_"
        ))
        .and_then(|rest| rest.strip_suffix(".json.gz"))
        .unwrap_or_else(|| panic!("{key}: file name"));
    assert_eq!(stamp.len(), 16, "{key}: timestamp");
    assert_eq!(
        folder,
        format!("{}/{}/{}/", &stamp[..4], &stamp[4..6], &stamp[6..8])
    );
    stamp.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_signed_chains_and_enforces_trust_boundaries() {
    let mut sim = fresh_sim(ProvisionOptions {
        members: 3,
        broken_members: vec![2],
        history_hours: 3,
        ..ProvisionOptions::default()
    })
    .await;
    let report = sim.deliver_hours(3).await.expect("deliver 3 hours");
    assert_eq!(report.chains, 12);
    assert_eq!(report.digests, 36);
    assert!(report.last_digest_end.unwrap() < chrono::Utc::now());
    assert_eq!(sim.deliverable_hours(), 0);
    assert!(sim.deliver_hours(1).await.is_err(), "the future is refused");
    let public_key = exported_key(&sim);

    // Every chain: the expected objects exist, digests carry their metadata, verify,
    // and link hour to hour.
    for chain in &sim.org.chains {
        let owner_client = sim
            .root_s3(if chain.trail == TrailKind::Organization {
                "999999999999"
            } else {
                &chain.account_id
            })
            .unwrap();
        let listed = list_keys(owner_client, &chain.bucket, &format!("{}/", chain.key_root)).await;
        let digests: Vec<&String> = listed
            .iter()
            .filter(|key| key.contains(&format!("/{DIGEST_FAMILY}/{}/", chain.region)))
            .collect();
        assert_eq!(digests.len(), 3, "chain {}: {listed:#?}", chain.index);
        let expected_logs: Vec<&String> = chain
            .digests
            .iter()
            .flat_map(|digest| digest.logs.iter().map(|log| &log.key))
            .collect();
        for log_key in &expected_logs {
            assert!(listed.contains(log_key), "{log_key} not delivered");
            assert!(
                log_key.contains(&format!("/{LOG_FAMILY}/{}/", chain.region))
                    || log_key.contains(&format!("/{INSIGHT_FAMILY}/{}/", chain.region))
            );
        }
        let mut previous: Option<(Vec<u8>, DigestBody, String)> = None;
        for record in &chain.digests {
            let stamp = digest_key_timestamp(
                &record.key,
                &chain.key_root,
                &chain.account_id,
                &chain.region,
                &chain.trail_name,
            );
            assert_eq!(stamp, record.end.format("%Y%m%dT%H%M%SZ").to_string());
            let (raw, metadata) = get(owner_client, &chain.bucket, &record.key).await;
            assert_eq!(&raw[..2], &[0x1f, 0x8b]);
            assert_eq!(
                metadata.get("signature-algorithm").map(String::as_str),
                Some("SHA256withRSA")
            );
            let signature = &metadata["signature"];
            assert_eq!(signature.len(), 512);
            assert!(signature
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)));
            assert!(!metadata.contains_key("backfill-generation-timestamp"));
            let body =
                verify_digest_object(&raw, signature, &public_key).expect("signature verifies");
            let inflated = gunzip_single_member(&raw).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&inflated).contains("\\/"),
                chain.escape_slashes
            );
            assert_eq!(body.aws_account_id, chain.account_id);
            assert_eq!(body.digest_s3_bucket, chain.bucket);
            assert_eq!(body.digest_s3_object, record.key);
            match &previous {
                None => assert!(body.previous.is_none(), "a chain starts with null links"),
                Some((previous_inflated, previous_body, previous_signature)) => {
                    let link = body.previous.as_ref().expect("linked");
                    assert_eq!(link.object, previous_body.digest_s3_object);
                    assert_eq!(link.hash_value, sha256_hex(previous_inflated));
                    assert_eq!(&link.signature, previous_signature);
                    assert_eq!(body.digest_start_time, previous_body.digest_end_time);
                }
            }
            for entry in &body.log_files {
                let (log_raw, log_metadata) =
                    get(owner_client, &entry.s3_bucket, &entry.s3_object).await;
                assert!(log_metadata.is_empty());
                assert_eq!(
                    sha256_hex(&gunzip_single_member(&log_raw).unwrap()),
                    entry.hash_value
                );
            }
            previous = Some((inflated, body, signature.clone()));
        }
    }

    // Trust: the collector assumes a reader role only with the ExternalId.
    let member = &sim.org.members[0];
    let external_id = sim.org.external_id.clone();
    let member_config = sim
        .assume_role_as_collector(&member.role_arn, Some(&external_id))
        .await
        .expect("assume with the ExternalId");
    assert!(sim
        .assume_role_as_collector(&member.role_arn, Some("wrong-external-id"))
        .await
        .is_err());
    assert!(sim
        .assume_role_as_collector(&member.role_arn, None)
        .await
        .is_err());
    let broken = &sim.org.members[2];
    assert!(broken.broken);
    let refused = sim
        .assume_role_as_collector(&broken.role_arn, Some(&external_id))
        .await
        .expect_err("a broken member's role does not trust the collector");
    assert!(refused.to_string().contains("AccessDenied"), "{refused}");
    let org_trail = sim.org.org_trail.clone().unwrap();
    let org_reader = sim
        .assume_role_as_collector(&org_trail.role_arn, Some(&external_id))
        .await
        .expect("assume the organization trail's reader role");

    // The member role reads its own trail bucket only, and writes nothing.
    let member_s3 = harness::s3_client(&member_config);
    let own = list_keys(&member_s3, &member.trail_bucket, "AWSLogs/").await;
    assert!(!own.is_empty());
    let other_bucket = &sim.org.members[1].trail_bucket;
    assert!(member_s3
        .list_objects_v2()
        .bucket(other_bucket)
        .send()
        .await
        .is_err());
    let org_listing = list_keys(
        &harness::s3_client(&org_reader),
        &org_trail.bucket,
        "org/AWSLogs/o-sim1234567/",
    )
    .await;
    assert!(!org_listing.is_empty());
    let write_archive = member_s3
        .put_object()
        .bucket(&sim.org.archive_bucket)
        .key("archive/evil.json.gz")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&sim.org.kms_key_arn)
        .body(ByteStream::from_static(b"forged"))
        .send()
        .await;
    assert!(
        write_archive.is_err(),
        "a member role must not write the archive"
    );
    let write_own = member_s3
        .put_object()
        .bucket(&member.trail_bucket)
        .key("AWSLogs/evil.json.gz")
        .body(ByteStream::from_static(b"forged"))
        .send()
        .await;
    assert!(write_own.is_err(), "the reader role is read-only");

    // The collector writes the archive only SSE-KMS, and never deletes.
    let collector_s3 = harness::s3_client(&sim.collector_sdk_config());
    collector_s3
        .put_object()
        .bucket(&sim.org.archive_bucket)
        .key("archive/probe.json")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&sim.org.kms_key_arn)
        .body(ByteStream::from_static(b"{}"))
        .send()
        .await
        .expect("the collector writes SSE-KMS objects");
    let unencrypted = collector_s3
        .put_object()
        .bucket(&sim.org.archive_bucket)
        .key("archive/plain.json")
        .body(ByteStream::from_static(b"{}"))
        .send()
        .await;
    assert!(unencrypted.is_err(), "puts without SSE-KMS are denied");
    let delete = collector_s3
        .delete_object()
        .bucket(&sim.org.archive_bucket)
        .key("archive/probe.json")
        .send()
        .await;
    assert!(delete.is_err(), "deletes are denied");
    let lock = collector_s3
        .get_object_lock_configuration()
        .bucket(&sim.org.archive_bucket)
        .send()
        .await
        .expect("read the archive's Object Lock configuration");
    let retention = lock
        .object_lock_configuration()
        .and_then(|configuration| configuration.rule())
        .and_then(|rule| rule.default_retention())
        .expect("default retention");
    assert_eq!(retention.days(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_log_sorts_before_delivered_logs_and_has_a_backfill_digest() {
    let mut sim = fresh_sim(ProvisionOptions {
        members: 1,
        history_hours: 6,
        ..ProvisionOptions::default()
    })
    .await;
    sim.deliver_hours(6).await.unwrap();
    let selector = ChainSelector {
        member: 0,
        region: 1,
        trail: TrailKind::Organization,
    };
    let late = sim
        .deliver_late_log(selector)
        .await
        .expect("deliver a late log");
    let chain = sim.chain(selector).unwrap().clone();
    let client = sim.root_s3("999999999999").unwrap().clone();
    let client = &client;
    let partition = late.log.key.rsplit_once('/').unwrap().0.to_owned();
    let listed = list_keys(client, &chain.bucket, &format!("{partition}/")).await;
    assert!(listed.contains(&late.log.key));
    assert!(
        listed.last().unwrap() > &late.log.key,
        "the late log must sort before a log already delivered in {partition}"
    );
    assert!(late.backfill_digest.key.ends_with("_backfill.json.gz"));
    let (raw, metadata) = get(client, &chain.bucket, &late.backfill_digest.key).await;
    assert_eq!(
        metadata.get("backfill-generation-timestamp"),
        Some(&late.backfill_generation_timestamp)
    );
    let body = verify_digest_object(&raw, &metadata["signature"], &exported_key(&sim)).unwrap();
    assert!(
        body.previous.is_none(),
        "the first backfill digest starts its own chain"
    );
    assert_eq!(body.log_files.len(), 1);
    assert_eq!(body.log_files[0].s3_object, late.log.key);
    let (log_raw, _) = get(client, &chain.bucket, &late.log.key).await;
    assert_eq!(
        sha256_hex(&gunzip_single_member(&log_raw).unwrap()),
        body.log_files[0].hash_value
    );

    // A second late delivery links to the first backfill digest.
    let second = sim
        .deliver_late_log(selector)
        .await
        .expect("a second late log");
    assert_ne!(second.backfill_digest.key, late.backfill_digest.key);
    let (raw, metadata) = get(client, &chain.bucket, &second.backfill_digest.key).await;
    let body = verify_digest_object(&raw, &metadata["signature"], &exported_key(&sim)).unwrap();
    assert_eq!(body.previous.unwrap().object, late.backfill_digest.key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampers_touch_exactly_their_victims() {
    let mut sim = fresh_sim(ProvisionOptions {
        members: 2,
        history_hours: 48,
        ..ProvisionOptions::default()
    })
    .await;
    sim.deliver_hours(48).await.unwrap();
    let public_key = exported_key(&sim);
    let mut reports = BTreeMap::new();
    for tamper in Tamper::ALL {
        let selector = if tamper == Tamper::RemoveSignatureMetadata {
            // The newest digest of the default chain is taken by DeleteNewestDigest.
            ChainSelector {
                region: 1,
                ..ChainSelector::default()
            }
        } else {
            ChainSelector::default()
        };
        let report = sim
            .tamper_on(tamper, selector)
            .await
            .unwrap_or_else(|error| panic!("{tamper}: {error:#}"));
        assert_eq!(report.expected_finding, tamper.expected_finding());
        reports.insert(tamper.name(), report);
    }
    // A second tamper on the same object is refused, not silently spoiled.
    assert!(sim.tamper(Tamper::RemoveSignatureMetadata).await.is_err());

    for (name, report) in &reports {
        let client = sim
            .root_s3(if report.bucket.starts_with("org-") {
                "999999999999"
            } else {
                &report.account_id
            })
            .unwrap();
        match report.kind {
            Tamper::DeleteLog | Tamper::DeleteDigest | Tamper::DeleteTwoConsecutiveDigests => {
                for key in &report.touched {
                    assert!(
                        !exists(client, &report.bucket, key).await,
                        "{name}: {key} still exists"
                    );
                }
            }
            Tamper::DeleteNewestDigest => {
                assert!(!exists(client, &report.bucket, &report.touched[0]).await);
                assert!(
                    exists(client, &report.bucket, &report.key).await,
                    "the new head stays"
                );
            }
            Tamper::ModifyLog => {
                let (raw, _) = get(client, &report.bucket, &report.key).await;
                let recorded = sim
                    .delivered_log(&report.key)
                    .expect("the victim was delivered")
                    .inflated_sha256;
                assert_ne!(sha256_hex(&gunzip_single_member(&raw).unwrap()), recorded);
            }
            Tamper::AppendGzipMember => {
                let (raw, _) = get(client, &report.bucket, &report.key).await;
                let error = gunzip_single_member(&raw).unwrap_err();
                assert!(error.to_string().contains("after the first gzip member"));
            }
            Tamper::ChangeDigestBody | Tamper::RemoveSignatureMetadata => {
                let (raw, metadata) = get(client, &report.bucket, &report.key).await;
                let signature = metadata.get("signature").cloned().unwrap_or_default();
                assert!(verify_digest_object(&raw, &signature, &public_key).is_err());
            }
            Tamper::SignWithOtherKey => {
                let (raw, _) = get(client, &report.bucket, &report.key).await;
                let body = DigestBody::parse(&gunzip_single_member(&raw).unwrap()).unwrap();
                assert_ne!(
                    body.digest_public_key_fingerprint,
                    sim.signing_key().fingerprint()
                );
            }
            Tamper::MoveDigest => {
                let (raw, _) = get(client, &report.bucket, &report.key).await;
                let body = DigestBody::parse(&gunzip_single_member(&raw).unwrap()).unwrap();
                assert_ne!(body.digest_s3_object, report.key);
            }
            Tamper::PlantInOtherAccount => {
                assert_ne!(report.account_id, sim.org.members[0].account_id);
                assert!(report
                    .key
                    .starts_with(&format!("AWSLogs/{}/", report.account_id)));
                assert!(report
                    .key
                    .contains(&format!("/{}_CloudTrail_", sim.org.members[0].account_id)));
                assert!(exists(client, &report.bucket, &report.key).await);
            }
            Tamper::GzipBomb | Tamper::NotGzip | Tamper::PlantUnreferencedLog => {
                let (raw, _) = get(client, &report.bucket, &report.key).await;
                assert_eq!(
                    raw.starts_with(&[0x1f, 0x8b]),
                    report.kind != Tamper::NotGzip
                );
                assert!(
                    sim.delivered_log(&report.key).is_none(),
                    "planted, not delivered"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_state_continues_the_same_chains() {
    let mut sim = fresh_sim(ProvisionOptions {
        members: 1,
        history_hours: 4,
        org_trail: false,
        ..ProvisionOptions::default()
    })
    .await;
    sim.deliver_hours(2).await.unwrap();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("org.json");
    sim.save(&path).unwrap();
    let mut reloaded = Sim::load(&path).await.unwrap();
    assert_eq!(reloaded.org, sim.org);
    reloaded.deliver_hours(2).await.unwrap();
    let chain = &reloaded.org.chains[0];
    assert_eq!(chain.digests.len(), 4);
    let client = reloaded.root_s3(&chain.account_id).unwrap();
    let (raw, metadata) = get(client, &chain.bucket, &chain.digests[2].key).await;
    let body =
        verify_digest_object(&raw, &metadata["signature"], &exported_key(&reloaded)).unwrap();
    assert_eq!(body.previous.unwrap().object, chain.digests[1].key);
    assert!(reloaded
        .trailvault_config_toml(directory.path())
        .contains("kind = \"per_account\""));
}
