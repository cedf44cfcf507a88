//! Validation against the in-memory seams: a clean chain, each tamper of docs/cloudtrail-format.md
//! §9.4 (and the CLI's blind spots of §6.5), incremental runs, full audits,
//! operational errors, and arbitrary digest content.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use bytes::Bytes;
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::Value;

use super::inventory::{parse_digest_key, DigestEntry};
use super::*;
use crate::cloudtrail::digest::Digest;
use crate::model::findings::FindingKind;
use crate::model::time::utc_text;
use crate::seams::{LockMode, PutSpec};
use crate::testsuite::chains::*;
use crate::testsuite::memory::{MemoryArchive, MemoryStore};

const HOURS: usize = 48;

fn first_end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 5, 4).unwrap()
}

fn last_end() -> DateTime<Utc> {
    first_end() + Duration::hours(HOURS as i64 - 1)
}

fn now() -> DateTime<Utc> {
    last_end() + Duration::minutes(30)
}

fn found(outcome: &VerifyOutcome) -> BTreeSet<(FindingKind, String)> {
    outcome
        .findings
        .iter()
        .map(|finding| (finding.kind, finding.key.clone()))
        .collect()
}

fn expected(pairs: &[(FindingKind, &str)]) -> BTreeSet<(FindingKind, String)> {
    pairs
        .iter()
        .map(|(kind, key)| (*kind, key.to_string()))
        .collect()
}

fn archive_key_of(key: &str) -> String {
    World::source_ref(key).archive_key(ARCHIVE_PREFIX)
}

/// One organization-trail chain of 48 hours (start-of-chain first, empty
/// hours, two days), plus a backfill digest listing a late log file.
struct Scenario {
    world: World,
    trail: Trail,
    chain: Vec<SimDigest>,
}

fn scenario() -> Scenario {
    scenario_with(|_| {})
}

/// The scenario with the genuine chain edited first (as CloudTrail itself
/// would have signed it).
fn scenario_with(edit: impl FnOnce(&mut Vec<SimDigest>)) -> Scenario {
    let trail = Trail::org("eu-west-1");
    let mut chain = build_chain(&trail, first_end(), HOURS);
    edit(&mut chain);
    let late_window_end = chain[10].end;
    let late = trail.log(late_window_end - Duration::minutes(10), "LATE0000000000000");
    let backfill = backfill_digest(&trail, late_window_end, vec![late]);
    let world = World::new(now());
    for digest in &chain {
        world.put_digest(digest);
    }
    world.put_digest(&backfill);
    Scenario {
        world,
        trail,
        chain,
    }
}

/// Tampers with the source before collection, archives, validates.
async fn tampered(tamper: impl FnOnce(&Scenario)) -> (Scenario, VerifyOutcome) {
    let scenario = scenario();
    tamper(&scenario);
    scenario.world.archive_all().await;
    let outcome = scenario.world.run(&settings()).await;
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    (scenario, outcome)
}

fn assert_only(outcome: &VerifyOutcome, pairs: &[(FindingKind, &str)]) {
    assert_eq!(found(outcome), expected(pairs), "{:#?}", outcome.findings);
}

fn log_count(chain: &[SimDigest]) -> u64 {
    chain.iter().map(|digest| digest.logs.len() as u64).sum()
}

#[tokio::test]
async fn clean_chain_validates_without_findings() {
    let scenario = scenario();
    scenario.world.archive_all().await;
    let outcome = scenario.world.run(&settings()).await;
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    assert_only(&outcome, &[]);
    assert_eq!(outcome.chains, 2);
    assert_eq!(outcome.stats.digests_validated, HOURS as u64 + 1);
    assert_eq!(
        outcome.stats.log_files_validated,
        log_count(&scenario.chain) + 1
    );
    assert!(scenario.chain.iter().any(|digest| digest.logs.is_empty()));
    assert_ne!(
        scenario.chain[0].end.date_naive(),
        scenario.chain[HOURS - 1].end.date_naive()
    );
    assert!(String::from_utf8_lossy(&scenario.chain[1].inflated).contains("\\/"));
}

#[tokio::test]
async fn modified_log_is_a_hash_mismatch() {
    let (scenario, outcome) = tampered(|scenario| {
        let log = &scenario.chain[20].logs[0];
        let mut forged = log.inflated.clone();
        forged.extend_from_slice(b" ");
        scenario.world.source.put(&log.key, gzip(&forged), &[]);
    })
    .await;
    assert_only(
        &outcome,
        &[(
            FindingKind::LogFileHashMismatch,
            &scenario.chain[20].logs[0].key,
        )],
    );
    let finding = &outcome.findings[0];
    assert_eq!(finding.region.as_deref(), Some("eu-west-1"));
    assert_eq!(finding.trail.as_deref(), Some("Org_Trail.main"));
    assert_eq!(finding.account_id, ACCOUNT);
    assert_eq!(
        finding.archive_key.as_deref(),
        Some(archive_key_of(&scenario.chain[20].logs[0].key).as_str())
    );
    assert!(finding.new);
}

#[tokio::test]
async fn log_with_an_appended_gzip_member_has_trailing_data() {
    let (scenario, outcome) = tampered(|scenario| {
        let log = &scenario.chain[20].logs[0];
        let mut appended = log.raw.clone();
        appended.extend_from_slice(&gzip(br#"{"Records":[{"eventName":"Forged"}]}"#));
        scenario.world.source.put(&log.key, appended, &[]);
    })
    .await;
    assert_only(
        &outcome,
        &[(
            FindingKind::LogFileTrailingData,
            &scenario.chain[20].logs[0].key,
        )],
    );
}

#[tokio::test]
async fn changed_digest_byte_invalidates_its_signature() {
    let (scenario, outcome) = tampered(|scenario| {
        let digest = &scenario.chain[20];
        let hash = sha_hex(&digest.logs[0].inflated);
        let flipped = if hash.starts_with('0') { "1" } else { "0" };
        let forged = replace_once(&digest.inflated, &hash, &format!("{flipped}{}", &hash[1..]));
        put_raw_digest(scenario, digest, gzip(&forged), Some(&digest.signature));
    })
    .await;
    // The authentic successor proves the content changed (the simulator's
    // `also_expected`).
    assert_only(
        &outcome,
        &[
            (FindingKind::DigestSignatureInvalid, &scenario.chain[20].key),
            (FindingKind::DigestLinkMismatch, &scenario.chain[21].key),
        ],
    );
}

fn put_raw_digest(scenario: &Scenario, digest: &SimDigest, raw: Vec<u8>, signature: Option<&str>) {
    let mut metadata = vec![("signature-algorithm", "SHA256withRSA")];
    if let Some(signature) = signature {
        metadata.push(("signature", signature));
    }
    scenario.world.source.put(&digest.key, raw, &metadata);
}

#[tokio::test]
async fn digest_signed_by_another_key_has_an_unknown_public_key() {
    let (scenario, outcome) = tampered(|scenario| {
        let mut forged = scenario.chain[20].clone();
        forged.inflated = replace_once(
            &forged.inflated,
            aws_key().fingerprint(),
            rogue_key().fingerprint(),
        );
        resign(
            &mut forged,
            Some(&scenario.chain[19].signature),
            rogue_key(),
        );
        scenario.world.put_digest(&forged);
    })
    .await;
    assert_only(
        &outcome,
        &[
            (FindingKind::DigestPublicKeyUnknown, &scenario.chain[20].key),
            (FindingKind::DigestLinkMismatch, &scenario.chain[21].key),
        ],
    );
}

#[tokio::test]
async fn digest_stored_under_another_key_was_moved() {
    // Hour 23 is empty, so no log file loses its only digest.
    let (scenario, outcome) = tampered(|scenario| {
        let moved = &scenario.chain[22];
        assert!(scenario.chain[23].logs.is_empty());
        put_raw_digest(
            scenario,
            &scenario.chain[23],
            moved.raw.clone(),
            Some(&moved.signature),
        );
    })
    .await;
    assert_only(
        &outcome,
        &[
            (FindingKind::DigestMoved, &scenario.chain[23].key),
            (FindingKind::DigestLinkMismatch, &scenario.chain[24].key),
        ],
    );
}

#[tokio::test]
async fn digest_without_signature_metadata_is_invalid() {
    let (scenario, outcome) = tampered(|scenario| {
        let digest = &scenario.chain[20];
        put_raw_digest(scenario, digest, digest.raw.clone(), None);
    })
    .await;
    assert_only(
        &outcome,
        &[(FindingKind::DigestSignatureInvalid, &scenario.chain[20].key)],
    );
    assert!(outcome.findings[0]
        .detail
        .contains("signature metadata missing"));
}

#[tokio::test]
async fn digest_with_an_appended_gzip_member_is_malformed() {
    let (scenario, outcome) = tampered(|scenario| {
        let digest = &scenario.chain[20];
        let mut raw = digest.raw.clone();
        raw.extend_from_slice(&gzip(b"{}"));
        put_raw_digest(scenario, digest, raw, Some(&digest.signature));
    })
    .await;
    // Its log files are not judged unreferenced: their digest is the finding.
    assert_only(
        &outcome,
        &[(FindingKind::DigestMalformed, &scenario.chain[20].key)],
    );
    assert!(outcome.findings[0].detail.contains("after the end"));
}

async fn validate(scenario: &Scenario) -> VerifyOutcome {
    scenario.world.archive_all().await;
    let outcome = scenario.world.run(&settings()).await;
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    outcome
}

#[tokio::test]
async fn signed_digest_with_a_wrong_previous_hash_is_a_link_mismatch() {
    let scenario = scenario_with(|chain| {
        edit_and_resign(&mut chain[21], |object| {
            object.insert("previousDigestHashValue".into(), "00".repeat(32).into());
        });
        relink(chain, 22);
    });
    let outcome = validate(&scenario).await;
    assert_only(
        &outcome,
        &[(FindingKind::DigestLinkMismatch, &scenario.chain[21].key)],
    );
    assert!(outcome.findings[0]
        .detail
        .contains("previousDigestHashValue"));
}

#[tokio::test]
async fn signed_digest_with_a_wrong_previous_signature_is_a_link_mismatch() {
    let scenario = scenario_with(|chain| {
        let other = chain[5].signature.clone();
        edit_and_resign(&mut chain[21], |object| {
            object.insert("previousDigestSignature".into(), other.into());
        });
        relink(chain, 22);
    });
    let outcome = validate(&scenario).await;
    assert_only(
        &outcome,
        &[(FindingKind::DigestLinkMismatch, &scenario.chain[21].key)],
    );
}

#[tokio::test]
async fn signed_digest_starting_after_its_previous_end_is_a_gap() {
    let scenario = scenario_with(|chain| {
        let later = utc_text(chain[20].end + Duration::minutes(5));
        edit_and_resign(&mut chain[21], |object| {
            object.insert("digestStartTime".into(), later.into());
        });
        relink(chain, 22);
    });
    let outcome = validate(&scenario).await;
    assert_only(
        &outcome,
        &[(FindingKind::ChainGap, &scenario.chain[21].key)],
    );
}

#[tokio::test]
async fn signed_digest_naming_another_account_is_an_account_mismatch() {
    let scenario = scenario_with(|chain| {
        edit_and_resign(&mut chain[21], |object| {
            object.insert("awsAccountId".into(), "444455556666".into());
        });
        relink(chain, 22);
    });
    let outcome = validate(&scenario).await;
    assert_only(
        &outcome,
        &[(FindingKind::AccountMismatch, &scenario.chain[21].key)],
    );
}

#[tokio::test]
async fn digest_named_in_the_future_is_set_aside() {
    let (scenario, outcome) = tampered(|scenario| {
        let future = scenario
            .trail
            .digest_key(now() + Duration::days(400), false);
        scenario
            .world
            .source
            .put(&future, gzip(b"{}"), &[("signature", "00")]);
    })
    .await;
    let future = scenario
        .trail
        .digest_key(now() + Duration::days(400), false);
    assert_only(&outcome, &[(FindingKind::DigestMalformed, &future)]);
    assert_eq!(outcome.stats.digests_validated, HOURS as u64 + 1);
}

#[tokio::test]
async fn one_deleted_digest_is_missing() {
    let (scenario, outcome) = tampered(|scenario| {
        scenario.world.source.delete(&scenario.chain[20].key);
    })
    .await;
    assert_only(
        &outcome,
        &[(FindingKind::DigestMissing, &scenario.chain[20].key)],
    );
    assert_eq!(outcome.findings[0].archive_key, None);
}

#[tokio::test]
async fn two_consecutive_deleted_digests_are_two_findings() {
    let (scenario, outcome) = tampered(|scenario| {
        scenario.world.source.delete(&scenario.chain[20].key);
        scenario.world.source.delete(&scenario.chain[21].key);
    })
    .await;
    assert_only(
        &outcome,
        &[
            (FindingKind::DigestMissing, &scenario.chain[20].key),
            (FindingKind::DigestMissing, &scenario.chain[21].key),
        ],
    );
}

#[tokio::test]
async fn three_deleted_digests_across_midnight_are_three_findings() {
    let (scenario, outcome) = tampered(|scenario| {
        for hour in [22, 23, 24] {
            scenario.world.source.delete(&scenario.chain[hour].key);
        }
    })
    .await;
    assert_only(
        &outcome,
        &[
            (FindingKind::DigestMissing, &scenario.chain[22].key),
            (FindingKind::DigestMissing, &scenario.chain[23].key),
            (FindingKind::DigestMissing, &scenario.chain[24].key),
        ],
    );
}

#[tokio::test]
async fn deleted_newest_digest_is_missing_by_its_sibling_chains() {
    let europe = Trail::org("eu-west-1");
    let virginia = Trail::org("us-east-1");
    let europe_chain = build_chain(&europe, first_end(), HOURS);
    let virginia_chain = build_chain(&virginia, first_end(), HOURS);
    let world = World::new(last_end() + Duration::minutes(90));
    for digest in europe_chain.iter().chain(&virginia_chain) {
        world.put_digest(digest);
    }
    world.source.delete(&europe_chain[HOURS - 1].key);
    world.archive_all().await;
    let outcome = world.run(&settings()).await;
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    assert_only(
        &outcome,
        &[(FindingKind::DigestMissing, &europe_chain[HOURS - 1].key)],
    );
    assert_eq!(outcome.findings[0].region.as_deref(), Some("eu-west-1"));

    // Within the delivery grace the sibling proves nothing yet.
    let early = World::new(last_end() + Duration::minutes(20));
    for digest in europe_chain.iter().chain(&virginia_chain) {
        early.put_digest(digest);
    }
    early.source.delete(&europe_chain[HOURS - 1].key);
    early.archive_all().await;
    assert_only(&early.run(&settings()).await, &[]);
}

#[tokio::test]
async fn log_missing_from_archive_and_source_is_missing() {
    let (scenario, outcome) = tampered(|scenario| {
        scenario
            .world
            .source
            .delete(&scenario.chain[20].logs[1].key);
    })
    .await;
    assert_only(
        &outcome,
        &[(FindingKind::LogFileMissing, &scenario.chain[20].logs[1].key)],
    );
    assert_eq!(outcome.findings[0].archive_key, None);
}

#[tokio::test]
async fn log_missing_from_archive_but_at_source_is_fetched() {
    let scenario = scenario();
    let log_key = scenario.chain[20].logs[1].key.clone();
    scenario.world.archive_all_except(&[&log_key]).await;
    let outcome = scenario.world.run(&settings()).await;
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    assert_only(&outcome, &[]);
    assert_eq!(scenario.world.fetched.load(Ordering::Relaxed), 1);
    assert!(scenario
        .world
        .store
        .object(&World::source_ref(&log_key))
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn planted_log_is_unreferenced_only_after_the_grace_period() {
    let scenario = scenario();
    let planted = scenario.trail.log(
        scenario.chain[20].end - Duration::minutes(40),
        "PLANTED000000000",
    );
    scenario.world.put_log(&planted);
    scenario.world.archive_all().await;

    let patient = VerifySettings {
        unreferenced_grace: Duration::hours(48),
        ..settings()
    };
    let before = scenario.world.run(&patient).await;
    assert!(before.errors.is_empty(), "{:#?}", before.errors);
    assert_only(&before, &[]);

    let after = scenario.world.run(&settings()).await;
    assert!(after.errors.is_empty(), "{:#?}", after.errors);
    assert_eq!(after.stats.digests_validated, 0);
    assert_only(&after, &[(FindingKind::LogFileUnreferenced, &planted.key)]);
    let finding = &after.findings[0];
    assert_eq!(finding.severity, crate::model::findings::Severity::Warning);
    assert_eq!(
        finding.archive_key.as_deref(),
        Some(archive_key_of(&planted.key).as_str())
    );
}

#[tokio::test]
async fn planted_log_with_an_old_name_collected_later_is_still_judged() {
    let scenario = scenario();
    scenario.world.archive_all().await;
    assert_only(&scenario.world.run(&settings()).await, &[]);

    // Planted after the check moved past its (backdated) name.
    let planted = scenario.trail.log(
        scenario.chain[5].end - Duration::minutes(40),
        "BACKDATED0000000",
    );
    scenario.world.put_log(&planted);
    scenario.world.clock.set(now() + Duration::minutes(10));
    scenario.world.archive_all().await;
    let outcome = scenario.world.run(&settings()).await;
    assert_only(
        &outcome,
        &[(FindingKind::LogFileUnreferenced, &planted.key)],
    );
}

#[tokio::test]
async fn chain_restart_is_a_gap() {
    let trail = Trail::org("eu-west-1");
    let before = build_chain(&trail, first_end(), 10);
    let restart_end = first_end() + Duration::hours(12) + Duration::minutes(25);
    let after = build_chain(&trail, restart_end, 10);
    let world = World::new(after[9].end + Duration::minutes(30));
    for digest in before.iter().chain(&after) {
        world.put_digest(digest);
    }
    world.archive_all().await;
    let outcome = world.run(&settings()).await;
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    assert_only(&outcome, &[(FindingKind::ChainGap, &after[0].key)]);
}

#[tokio::test]
async fn stale_head_is_reported() {
    let scenario = scenario();
    scenario.world.archive_all().await;
    scenario.world.clock.set(now() + Duration::hours(5));
    let outcome = scenario.world.run(&settings()).await;
    assert_only(
        &outcome,
        &[(FindingKind::ChainHeadStale, &scenario.chain[HOURS - 1].key)],
    );
}

#[tokio::test]
async fn incremental_runs_read_only_new_digests() {
    let trail = Trail::org("eu-west-1");
    let chain = build_chain(&trail, first_end(), HOURS + 2);
    let world = World::new(now());
    for digest in &chain[..HOURS] {
        world.put_digest(digest);
    }
    world.archive_all().await;

    let first = world.run(&settings()).await;
    assert!(first.errors.is_empty(), "{:#?}", first.errors);
    assert_only(&first, &[]);
    assert_eq!(first.stats.digests_validated, HOURS as u64);
    assert_eq!(world.gets(), HOURS as u64, "each digest read once");

    let steady = world.run(&settings()).await;
    assert_only(&steady, &[]);
    assert_eq!(steady.stats.digests_validated, 0);
    assert_eq!(steady.stats.log_files_validated, 0);
    assert_eq!(
        world.gets(),
        HOURS as u64,
        "a steady-state run reads nothing"
    );

    for digest in &chain[HOURS..] {
        world.put_digest(digest);
    }
    world.clock.set(now() + Duration::hours(2));
    world.archive_all().await;
    let appended = world.run(&settings()).await;
    assert!(appended.errors.is_empty(), "{:#?}", appended.errors);
    assert_only(&appended, &[]);
    assert_eq!(appended.stats.digests_validated, 2);
    assert_eq!(
        appended.stats.log_files_validated,
        log_count(&chain[HOURS..])
    );
    assert_eq!(world.gets(), HOURS as u64 + 2, "only the two new digests");
}

fn records_read(world: &World) -> u64 {
    world.store.records_read.load(Ordering::Relaxed)
}

#[tokio::test]
async fn incremental_store_reads_follow_the_new_digests_not_the_archive() {
    let trail = Trail::org("eu-west-1");
    let hours = HOURS * 3;
    let start = first_end() - Duration::hours(2 * HOURS as i64);
    let chain = build_chain(&trail, start, hours + 2);
    let world = World::new(now());
    for digest in &chain[..hours] {
        world.put_digest(digest);
    }
    world.archive_all().await;
    let archived = world.store.objects_under(READER, BUCKET, "").unwrap().len() as u64;

    let first = world.run(&settings()).await;
    assert!(first.errors.is_empty(), "{:#?}", first.errors);
    assert_only(&first, &[]);
    assert!(
        records_read(&world) >= archived,
        "the first run reads every record"
    );

    // Nothing new: not one object record is read, however large the archive.
    for _ in 0..2 {
        let before = records_read(&world);
        let steady = world.run(&settings()).await;
        assert!(steady.errors.is_empty(), "{:#?}", steady.errors);
        assert_only(&steady, &[]);
        assert_eq!(steady.chains, 1);
        assert_eq!(
            records_read(&world) - before,
            0,
            "a steady run reads no record"
        );
    }

    // Time passes, nothing new: only the log files whose grace just passed.
    world.clock.set(now() + Duration::minutes(30));
    let before = records_read(&world);
    let later = world.run(&settings()).await;
    assert!(later.errors.is_empty(), "{:#?}", later.errors);
    let read = records_read(&world) - before;
    // The files named in those 30 minutes (one digest lists an hour of them),
    // not the rest of their day folder.
    let hour_of_logs = log_count(&chain[..1]);
    assert!(
        read <= hour_of_logs,
        "read {read} records; an hour holds {hour_of_logs} log files (archive {archived})"
    );

    // Two new digests: their folders, the chain's digests and the day's logs,
    // not the archive's older log files.
    for digest in &chain[hours..] {
        world.put_digest(digest);
    }
    world.clock.set(now() + Duration::hours(2));
    world.archive_all().await;
    let before = records_read(&world);
    let appended = world.run(&settings()).await;
    assert!(appended.errors.is_empty(), "{:#?}", appended.errors);
    assert_only(&appended, &[]);
    assert_eq!(appended.stats.digests_validated, 2);
    let read = records_read(&world) - before;
    let digests = hours as u64 + 2;
    let day_logs = log_count(&chain[hours + 2 - 24..]);
    let logs = archived - hours as u64;
    // The chain's digests, the fresh day folders, and at most two more days
    // of log files whose grace passed: never the older days' log files.
    let bound = digests + 26 + 3 * day_logs;
    assert!(
        logs > bound - digests,
        "the archive holds more old logs than the bound"
    );
    assert!(
        read <= bound,
        "read {read} records (archive {archived}, chain {digests}, a day of logs {day_logs})"
    );
    assert!(
        world
            .store
            .fresh_folders(READER, BUCKET)
            .unwrap()
            .is_empty(),
        "every fresh folder was settled"
    );
}

#[tokio::test]
async fn a_log_planted_later_under_an_old_name_is_judged_incrementally() {
    let scenario = scenario();
    scenario.world.archive_all().await;
    let first = scenario.world.run(&settings()).await;
    assert!(first.errors.is_empty(), "{:#?}", first.errors);
    let steady = scenario.world.run(&settings()).await;
    assert_only(&steady, &[]);

    // A file named in an old, validated window, copied only now.
    let planted = scenario.trail.log(
        scenario.chain[5].end - Duration::minutes(20),
        "PLANTED00000000000",
    );
    scenario.world.put_log(&planted);
    scenario.world.archive_all().await;
    let before = records_read(&scenario.world);
    let outcome = scenario.world.run(&settings()).await;
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    assert_only(
        &outcome,
        &[(FindingKind::LogFileUnreferenced, &planted.key)],
    );
    let read = records_read(&scenario.world) - before;
    let archived = scenario
        .world
        .store
        .objects_under(READER, BUCKET, "")
        .unwrap()
        .len() as u64;
    assert!(read < archived, "read {read} of {archived} records");
}

#[tokio::test]
async fn late_archived_digest_is_validated_and_linked() {
    let scenario = scenario();
    let late = scenario.chain[20].key.clone();
    scenario.world.archive_all_except(&[&late]).await;
    let first = scenario.world.run(&settings()).await;
    assert_only(&first, &[(FindingKind::DigestMissing, &late)]);

    // The digest arrives later (a copy failed the first time).
    scenario.world.archive_key(&late).await;
    let second = scenario.world.run(&settings()).await;
    assert!(second.errors.is_empty(), "{:#?}", second.errors);
    assert_only(&second, &[]);
    // The late one, and its successor whose link to it was never checked.
    assert_eq!(second.stats.digests_validated, 2);
}

#[tokio::test]
async fn rerun_reports_the_same_findings_as_not_new() {
    let tamper = |scenario: &Scenario| {
        let log = &scenario.chain[20].logs[0];
        scenario.world.source.put(&log.key, gzip(b"{}"), &[]);
        scenario.world.source.delete(&scenario.chain[30].key);
    };
    let (scenario, first) = tampered(tamper).await;
    let wanted = [
        (
            FindingKind::LogFileHashMismatch,
            scenario.chain[20].logs[0].key.as_str(),
        ),
        (FindingKind::DigestMissing, scenario.chain[30].key.as_str()),
    ];
    assert_only(&first, &wanted);
    assert!(first.findings.iter().all(|finding| finding.new));

    let full = VerifySettings {
        full: true,
        ..settings()
    };
    let again = scenario.world.run(&full).await;
    assert!(again.errors.is_empty(), "{:#?}", again.errors);
    assert_only(&again, &wanted);
    assert!(again.findings.iter().all(|finding| !finding.new));
    assert_eq!(again.stats.digests_validated, HOURS as u64); // 47 standard + backfill
}

#[tokio::test]
async fn full_run_rebuilds_everything_from_the_archive_alone() {
    let scenario = scenario();
    scenario.world.archive_all().await;
    let lost_store = MemoryStore::default();
    let sources = [ArchivedSource {
        reader_account_id: READER.into(),
        bucket: BUCKET.into(),
    }];
    let full = VerifySettings {
        full: true,
        ..settings()
    };
    let outcome = verify(
        &sources,
        &[],
        &[],
        None,
        &scenario.world.archive,
        &lost_store,
        &scenario.world.keys,
        &NoSourceLookup,
        &scenario.world.clock,
        &full,
    )
    .await;
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    assert_only(&outcome, &[]);
    assert_eq!(outcome.stats.digests_validated, HOURS as u64 + 1);
    assert_eq!(
        outcome.stats.log_files_validated,
        log_count(&scenario.chain) + 1
    );
}

#[tokio::test]
async fn full_run_audits_archive_bytes_against_the_store() {
    let scenario = scenario();
    scenario.world.archive_all().await;
    let log_key = scenario.chain[7].logs[0].key.clone();
    let source = World::source_ref(&log_key);
    let mut record = scenario.world.store.object(&source).unwrap().unwrap();
    record.raw_sha256 = [7; 32];
    scenario
        .world
        .store
        .record_object(&source, &record)
        .unwrap();

    // The incremental run trusts the store's content hash: nothing to see.
    assert_only(&scenario.world.run(&settings()).await, &[]);
    let full = VerifySettings {
        full: true,
        ..settings()
    };
    let outcome = scenario.world.run(&full).await;
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    assert_only(&outcome, &[(FindingKind::ArchiveCopyInvalid, &log_key)]);
}

#[tokio::test]
async fn a_full_run_finds_quarantined_copies_where_they_are() {
    let scenario = scenario();
    scenario.world.archive_all().await;
    let quarantined = "AWSLogs/evil\nkey\u{1b}[2J.json.gz";
    scenario
        .world
        .source
        .put(quarantined, b"not a log".to_vec(), &[]);
    scenario.world.archive_key(quarantined).await;
    let archive_key = World::source_ref(quarantined).archive_key(ARCHIVE_PREFIX);
    assert!(
        archive_key.contains("/_trailvault/quarantine/"),
        "{archive_key}"
    );
    let full = VerifySettings {
        full: true,
        ..settings()
    };
    let outcome = scenario.world.run(&full).await;
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    assert!(
        outcome.findings.iter().all(|f| f.key != quarantined),
        "{:#?}",
        outcome.findings
    );
}

#[tokio::test]
async fn failed_reads_are_errors_and_are_retried() {
    let scenario = scenario();
    scenario.world.archive_all().await;
    let failing = archive_key_of(&scenario.chain[20].key);
    scenario.world.archive.fail_gets(&failing);
    let first = scenario.world.run(&settings()).await;
    assert_eq!(first.errors.len(), 1, "{:#?}", first.errors);
    assert_eq!(first.stats.errors, 1);
    assert!(first.errors[0].operation.contains(&failing));
    // The archived history after the failing digest is unchecked, and for
    // longer than `chain_head_stale`: validation lags behind the archive.
    assert_only(
        &first,
        &[(FindingKind::ChainValidationLagging, &scenario.chain[20].key)],
    );
    assert_eq!(first.stats.digests_validated, 20 + 1);

    scenario.world.archive.clear_failures();
    let second = scenario.world.run(&settings()).await;
    assert!(second.errors.is_empty(), "{:#?}", second.errors);
    assert_only(&second, &[]);
    assert_eq!(second.stats.digests_validated, HOURS as u64 - 20);
}

/// One run limited to `accounts` and `regions`.
async fn verify_in_scope(
    scenario: &Scenario,
    accounts: &[String],
    regions: &[String],
) -> VerifyOutcome {
    let sources = [ArchivedSource {
        reader_account_id: READER.into(),
        bucket: BUCKET.into(),
    }];
    verify(
        &sources,
        accounts,
        regions,
        None,
        &scenario.world.archive,
        &scenario.world.store,
        &scenario.world.keys,
        &scenario.world,
        &scenario.world.clock,
        &settings(),
    )
    .await
}

#[tokio::test]
async fn only_accounts_and_regions_limit_the_run() {
    let scenario = scenario();
    scenario.world.archive_all().await;
    let outcome = verify_in_scope(&scenario, &["444455556666".to_string()], &[]).await;
    assert_eq!(outcome.chains, 0);
    assert_eq!(outcome.stats.digests_validated, 0);
    let member = [ACCOUNT.to_string()];
    let outcome = verify_in_scope(&scenario, &member, &["us-west-2".to_string()]).await;
    assert_eq!(outcome.chains, 0, "--region limits the chains too");
    assert_eq!(outcome.stats.digests_validated, 0);
    let outcome = verify_in_scope(&scenario, &member, &["eu-west-1".to_string()]).await;
    assert_eq!(outcome.chains, 2);
    assert_only(&outcome, &[]);
}

// ---- arbitrary digest content through the per-digest path ----

/// Two genuine digests; the second is replaced by arbitrary content.
fn template() -> &'static (Trail, Vec<SimDigest>) {
    static TEMPLATE: OnceLock<(Trail, Vec<SimDigest>)> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let trail = Trail::org("eu-west-1");
        let chain = build_chain(&trail, first_end(), 2);
        (trail, chain)
    })
}

fn put_archived(archive: &MemoryArchive, key: &str, raw: Vec<u8>, metadata: &[(&str, &str)]) {
    let spec = PutSpec {
        key: archive_key_of(key),
        kms_key_id: "key".into(),
        lock_mode: LockMode::Compliance,
        retain_until: now(),
        metadata: metadata
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect::<BTreeMap<_, _>>(),
        content_type: None,
        content_encoding: None,
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &raw);
    let mut sha = [0u8; 32];
    sha.copy_from_slice(digest.as_ref());
    futures::executor::block_on(archive.put(&spec, Bytes::from(raw), sha)).expect("put");
}

/// Runs chain validation over the genuine first digest and `raw` as the
/// second; must never panic.
fn validate_arbitrary(raw: Vec<u8>, signature: &str) -> VerifyOutcome {
    let (_, chain) = template();
    let archive = MemoryArchive::new("audit-archive");
    let store = MemoryStore::default();
    put_archived(
        &archive,
        &chain[0].key,
        chain[0].raw.clone(),
        &[
            ("signature", &chain[0].signature),
            ("signature-algorithm", "SHA256withRSA"),
        ],
    );
    put_archived(
        &archive,
        &chain[1].key,
        raw,
        &[
            ("signature", signature),
            ("signature-algorithm", "SHA256withRSA"),
        ],
    );
    let keys = World::new(now()).keys;
    let settings = settings();
    let ctx = Ctx::new(&archive, &store, &keys, &NoSourceLookup, &settings, now());
    let (chain_id, _) = parse_digest_key(READER, BUCKET, &chain[1].key).expect("digest key");
    let entries: Vec<DigestEntry> = chain
        .iter()
        .map(|digest| DigestEntry {
            key: digest.key.clone(),
            end: digest.end,
            version_id: None,
            raw_sha256: None,
        })
        .collect();
    let result =
        futures::executor::block_on(chain::validate_chain(&ctx, &chain_id, &entries, None, None));
    assert!(result.changed);
    ctx.into_outcome(1)
}

fn json_value() -> impl Strategy<Value = Value> {
    let (_, chain) = template();
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,24}".prop_map(Value::from),
        Just(Value::from("2026-03-01T00:05:04Z")),
        Just(Value::from("2026-03-01T01:05:04.5+02:00")),
        Just(Value::from("ab".repeat(32))),
        Just(Value::from(BUCKET)),
        Just(Value::from(chain[0].key.clone())),
        Just(Value::from(chain[1].key.clone())),
        Just(Value::from(chain[0].signature.clone())),
        Just(Value::from("SHA-256")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(field_name(), inner, 0..7)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("awsAccountId".to_owned()),
        Just("digestStartTime".to_owned()),
        Just("digestEndTime".to_owned()),
        Just("digestS3Bucket".to_owned()),
        Just("digestS3Object".to_owned()),
        Just("digestPublicKeyFingerprint".to_owned()),
        Just("digestSignatureAlgorithm".to_owned()),
        Just("previousDigestS3Bucket".to_owned()),
        Just("previousDigestS3Object".to_owned()),
        Just("previousDigestHashValue".to_owned()),
        Just("previousDigestHashAlgorithm".to_owned()),
        Just("previousDigestSignature".to_owned()),
        Just("logFiles".to_owned()),
        Just("s3Bucket".to_owned()),
        Just("s3Object".to_owned()),
        Just("hashValue".to_owned()),
        Just("hashAlgorithm".to_owned()),
        Just("newestEventTime".to_owned()),
        Just("oldestEventTime".to_owned()),
        "[a-zA-Z]{1,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_digest_json_never_panics(
        edits in proptest::collection::vec((field_name(), json_value()), 1..4),
        sign_it in any::<bool>(),
        remove in proptest::option::of(field_name()),
    ) {
        let (_, chain) = template();
        let mut value: Value = serde_json::from_slice(&chain[1].inflated).expect("template");
        if let Some(object) = value.as_object_mut() {
            for (field, new_value) in edits {
                object.insert(field, new_value);
            }
            if let Some(field) = remove {
                object.remove(&field);
            }
        }
        let inflated = serde_json::to_vec(&value).expect("json");
        // Signed: the content passes the signature check and reaches the
        // link and log checks.
        let signature = match Digest::parse(&inflated, 1 << 20) {
            Ok(digest) if sign_it => aws_key().sign(
                digest
                    .string_to_sign(&crate::cloudtrail::digest::sha256(&inflated))
                    .as_bytes(),
            ),
            _ => chain[1].signature.clone(),
        };
        let _ = validate_arbitrary(gzip(&inflated), &signature);
    }

    #[test]
    fn arbitrary_digest_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        compress in any::<bool>(),
    ) {
        let raw = if compress { gzip(&bytes) } else { bytes };
        let outcome = validate_arbitrary(raw, "zz");
        let kinds: BTreeSet<FindingKind> = outcome.findings.iter().map(|f| f.kind).collect();
        prop_assert!(kinds.contains(&FindingKind::DigestMalformed), "{:?}", kinds);
    }
}

#[test]
fn signed_template_digest_validates() {
    let (_, chain) = template();
    let outcome = validate_arbitrary(chain[1].raw.clone(), &chain[1].signature);
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    // Its log files are not archived in this bare setup.
    let kinds: BTreeSet<FindingKind> = outcome.findings.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, BTreeSet::from([FindingKind::LogFileMissing]));
}

// ---- the validator must not be frozen or fooled (issue 12) ----

fn run_errors(outcome: &VerifyOutcome) -> Vec<String> {
    outcome
        .errors
        .iter()
        .map(|error| format!("{}: {}", error.operation, error.message))
        .collect()
}

#[tokio::test]
async fn unreadable_listed_log_waits_its_grace_then_is_missing_and_the_chain_goes_on() {
    let scenario = scenario();
    let denied = scenario.chain[20].logs[0].key.clone();
    // Never archived (collection could not read it), and its source refuses it.
    scenario.world.source.fail_gets(
        &denied,
        SeamError::AccessDenied("explicit deny in a bucket policy".into()),
    );
    // A later digest of the same chain is deleted before collection.
    scenario.world.source.delete(&scenario.chain[30].key);
    scenario.world.archive_all_except(&[&denied]).await;

    // Within the grace period: an operational error, and the rest of the
    // chain is validated all the same.
    let first = scenario.world.run(&settings()).await;
    let errors = run_errors(&first);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains(&denied), "{errors:#?}");
    assert_only(
        &first,
        &[
            (FindingKind::DigestMissing, &scenario.chain[30].key),
            (FindingKind::ChainValidationLagging, &scenario.chain[20].key),
        ],
    );
    let lagging = first
        .findings
        .iter()
        .find(|finding| finding.kind == FindingKind::ChainValidationLagging)
        .unwrap();
    assert_eq!(lagging.severity, crate::model::findings::Severity::Critical);
    let heads = crate::progress::validation::chain_heads(&scenario.world.store).unwrap();
    let lag = heads
        .iter()
        .find(|head| !head.chain_id.ends_with("_backfill"))
        .and_then(|head| head.lag)
        .expect("the lag is recorded");
    assert_eq!(lag.newest_archived, scenario.chain[HOURS - 1].end);
    assert_eq!(lag.unvalidated_since, Some(scenario.chain[19].end));

    // Still refused, before the grace period ends: the same again, and the
    // digest with the unreadable log (plus its successor) is judged again.
    scenario.world.clock.set(now() + Duration::hours(23));
    let second = scenario.world.run(&settings()).await;
    assert_eq!(run_errors(&second).len(), 1, "{:#?}", second.errors);
    assert_eq!(second.stats.digests_validated, 2);
    assert!(!found(&second).contains(&(FindingKind::LogFileMissing, denied.clone())));

    // Past the grace period since it was first unreadable: a finding with
    // the reason, and the chain is validated to its head.
    scenario.world.clock.set(now() + Duration::hours(24));
    let third = scenario.world.run(&settings()).await;
    assert!(third.errors.is_empty(), "{:#?}", third.errors);
    assert!(
        found(&third).contains(&(FindingKind::LogFileMissing, denied.clone())),
        "{:#?}",
        third.findings
    );
    assert!(!found(&third)
        .iter()
        .any(|(kind, _)| *kind == FindingKind::ChainValidationLagging));
    let missing = third
        .findings
        .iter()
        .find(|finding| finding.key == denied)
        .unwrap();
    assert!(
        missing.detail.contains("explicit deny"),
        "{}",
        missing.detail
    );
    assert!(
        missing.detail.contains(&utc_text(now())),
        "{}",
        missing.detail
    );
    let heads = crate::progress::validation::chain_heads(&scenario.world.store).unwrap();
    assert!(heads
        .iter()
        .all(|head| head.lag.is_some_and(|lag| lag.unvalidated_since.is_none())));
    // Nothing left to judge.
    let steady = scenario.world.run(&settings()).await;
    assert_eq!(steady.stats.digests_validated, 0);
}

#[tokio::test]
async fn a_log_readable_again_within_the_grace_is_judged_normally() {
    let scenario = scenario();
    let denied = scenario.chain[20].logs[0].key.clone();
    scenario
        .world
        .source
        .fail_gets(&denied, SeamError::Transient("slow down".into()));
    scenario.world.archive_all_except(&[&denied]).await;
    let first = scenario.world.run(&settings()).await;
    assert_eq!(first.errors.len(), 1, "{:#?}", first.errors);

    scenario.world.source.clear_failures();
    scenario.world.clock.set(now() + Duration::hours(30));
    let second = scenario.world.run(&settings()).await;
    assert!(second.errors.is_empty(), "{:#?}", second.errors);
    assert!(!found(&second)
        .iter()
        .any(|(kind, _)| *kind == FindingKind::LogFileMissing));
    assert_eq!(scenario.world.fetched.load(Ordering::Relaxed), 1);
}

/// A key provider that fails while `failing` is set (ListPublicKeys down).
struct FlakyKeys<'a> {
    inner: &'a StaticKeys,
    failing: std::sync::atomic::AtomicBool,
    calls: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl KeyProvider for FlakyKeys<'_> {
    async fn find(
        &self,
        region: &str,
        fingerprint: &str,
        around: DateTime<Utc>,
    ) -> Result<Option<PublicKey>, SeamError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.failing.load(Ordering::Relaxed) {
            return Err(SeamError::Transient(
                "ListPublicKeys: ThrottlingException".into(),
            ));
        }
        self.inner.find(region, fingerprint, around).await
    }
}

async fn run_with_keys(world: &World, keys: &dyn KeyProvider) -> VerifyOutcome {
    let sources = [ArchivedSource {
        reader_account_id: READER.into(),
        bucket: BUCKET.into(),
    }];
    verify(
        &sources,
        &[],
        &[],
        None,
        &world.archive,
        &world.store,
        keys,
        world,
        &world.clock,
        &settings(),
    )
    .await
}

#[tokio::test]
async fn failing_key_provider_is_an_error_then_a_finding_and_never_stops_the_chain_forever() {
    let scenario = scenario();
    scenario.world.archive_all().await;
    let keys = FlakyKeys {
        inner: &scenario.world.keys,
        failing: true.into(),
        calls: 0.into(),
    };
    let first = run_with_keys(&scenario.world, &keys).await;
    assert!(!first.errors.is_empty());
    assert!(first
        .errors
        .iter()
        .all(|error| error.message.contains("ThrottlingException")));
    assert_eq!(
        keys.calls.load(Ordering::Relaxed),
        1,
        "one call per region and run"
    );
    assert_only(
        &first,
        &[(FindingKind::ChainValidationLagging, &scenario.chain[0].key)],
    );

    // Past the grace period: every digest of the region is a finding that
    // says why, and the chains are done.
    scenario.world.clock.set(now() + Duration::hours(25));
    let second = run_with_keys(&scenario.world, &keys).await;
    assert!(second.errors.is_empty(), "{:#?}", second.errors);
    let unknown: Vec<_> = second
        .findings
        .iter()
        .filter(|finding| finding.kind == FindingKind::DigestPublicKeyUnknown)
        .collect();
    assert_eq!(unknown.len(), HOURS + 1);
    assert!(
        unknown[0].detail.contains("ThrottlingException"),
        "{}",
        unknown[0].detail
    );
    assert!(!found(&second)
        .iter()
        .any(|(kind, _)| *kind == FindingKind::ChainValidationLagging));
    assert_eq!(
        run_with_keys(&scenario.world, &keys)
            .await
            .stats
            .digests_validated,
        0
    );
}

#[tokio::test]
async fn a_key_provider_that_recovers_within_the_grace_leaves_no_trace() {
    let scenario = scenario();
    scenario.world.archive_all().await;
    let keys = FlakyKeys {
        inner: &scenario.world.keys,
        failing: true.into(),
        calls: 0.into(),
    };
    assert!(!run_with_keys(&scenario.world, &keys)
        .await
        .errors
        .is_empty());
    keys.failing.store(false, Ordering::Relaxed);
    scenario.world.clock.set(now() + Duration::hours(1));
    let second = run_with_keys(&scenario.world, &keys).await;
    assert!(second.errors.is_empty(), "{:#?}", second.errors);
    assert_only(&second, &[]);
    assert_eq!(second.stats.digests_validated, HOURS as u64 + 1);
    assert_eq!(
        scenario
            .world
            .store
            .get_state("pending/pubkey/eu-west-1")
            .unwrap(),
        Some(Vec::new()),
        "the pending record is cleared"
    );
}

#[tokio::test]
async fn an_unsigned_digest_does_not_make_forged_logs_referenced() {
    let scenario = scenario();
    // Forged log names inside a window that genuine digests cover.
    let window_end = scenario.chain[12].end;
    let forged: Vec<SimLog> = ["FORGED0000000001", "FORGED0000000002"]
        .iter()
        .enumerate()
        .map(|(index, unique)| {
            scenario
                .trail
                .log(window_end - Duration::minutes(20 + index as i64), unique)
        })
        .collect();
    // Planted ahead of them: a digest a second after a genuine one, listing
    // them, where CloudTrail would have delivered it, without a signature.
    let planted_end = window_end + Duration::seconds(1);
    let planted_key = scenario.trail.digest_key(planted_end, false);
    let planted_body = digest_json(
        BUCKET,
        &planted_key,
        ACCOUNT,
        planted_end - Duration::hours(1),
        planted_end,
        aws_key().fingerprint(),
        None,
        &forged,
    );
    scenario
        .world
        .source
        .put(&planted_key, gzip(&planted_body), &[]);
    scenario.world.archive_all().await;
    let first = scenario.world.run(&settings()).await;
    assert!(first.errors.is_empty(), "{:#?}", first.errors);
    assert_only(
        &first,
        &[(FindingKind::DigestSignatureInvalid, &planted_key)],
    );

    // The forged logs arrive later.
    for log in &forged {
        scenario.world.put_log(log);
    }
    scenario.world.clock.set(now() + Duration::minutes(10));
    scenario.world.archive_all().await;
    let second = scenario.world.run(&settings()).await;
    assert!(second.errors.is_empty(), "{:#?}", second.errors);
    assert_only(
        &second,
        &[
            (FindingKind::LogFileUnreferenced, &forged[0].key),
            (FindingKind::LogFileUnreferenced, &forged[1].key),
        ],
    );
}

/// Blocks forever for one region: a run that never finishes that chain.
struct HangingKeys<'a> {
    inner: &'a StaticKeys,
    region: &'static str,
}

#[async_trait]
impl KeyProvider for HangingKeys<'_> {
    async fn find(
        &self,
        region: &str,
        fingerprint: &str,
        around: DateTime<Utc>,
    ) -> Result<Option<PublicKey>, SeamError> {
        if region == self.region {
            futures::future::pending::<()>().await;
        }
        self.inner.find(region, fingerprint, around).await
    }
}

#[tokio::test]
async fn each_chain_saves_its_progress_when_it_is_done() {
    let europe = Trail::org("eu-west-1");
    let virginia = Trail::org("us-east-1");
    let world = World::new(now());
    for digest in build_chain(&europe, first_end(), 6)
        .iter()
        .chain(&build_chain(&virginia, first_end(), 6))
    {
        world.put_digest(digest);
    }
    world.archive_all().await;
    let keys = HangingKeys {
        inner: &world.keys,
        region: "us-east-1",
    };
    let sequential = VerifySettings {
        concurrency: 1,
        ..settings()
    };
    let sources = [ArchivedSource {
        reader_account_id: READER.into(),
        bucket: BUCKET.into(),
    }];
    // The run dies (is cancelled) while the second chain is validated.
    let run = verify(
        &sources,
        &[],
        &[],
        None,
        &world.archive,
        &world.store,
        &keys,
        &world,
        &world.clock,
        &sequential,
    );
    assert!(tokio::time::timeout(std::time::Duration::from_secs(3), run)
        .await
        .is_err());
    let heads = crate::progress::validation::chain_heads(&world.store).unwrap();
    let saved: Vec<&str> = heads.iter().map(|head| head.chain_id.as_str()).collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(saved[0].contains("/eu-west-1/"), "{saved:?}");
    assert!(heads[0].head.is_some());
}

#[test]
fn a_digest_above_the_size_cap_is_refused_before_it_is_inflated_beyond_it() {
    let (_, chain) = template();
    let chain_id = parse_digest_key(READER, BUCKET, &chain[1].key).unwrap().0;
    let entry = DigestEntry {
        key: chain[1].key.clone(),
        end: chain[1].end,
        version_id: None,
        raw_sha256: None,
    };
    // 64 MiB of `[],` behind a valid opening: 64 KiB compressed.
    let mut body = br#"{"logFiles":["#.to_vec();
    body.extend_from_slice(&b"[],".repeat(64 * 1024 * 1024 / 3));
    body.extend_from_slice(b"[]]}");
    let raw = gzip(&body);
    drop(body);
    let cap = 4 * 1024 * 1024;
    let limits = crate::cloudtrail::gzip::InflateLimits {
        max_inflated_bytes: 256 * 1024 * 1024,
        max_ratio: 100_000,
    };
    let metadata = BTreeMap::new();
    let (examined, peak) = crate::cloudtrail::digest::alloc_meter::peak_during(|| {
        super::digest_check::inspect_digest_bytes(&chain_id, &entry, &raw, &metadata, cap, limits)
    });
    let problem = examined.problem.expect("refused");
    assert_eq!(
        problem.kind,
        FindingKind::DigestMalformed,
        "{}",
        problem.detail
    );
    assert!(
        peak < 3 * cap,
        "inflating stopped at the cap: peak {peak} bytes for a 64 MiB body"
    );
}

/// A run context over `world`'s seams, outside [`verify`].
fn bare_ctx<'a>(world: &'a World, settings: &'a VerifySettings) -> Ctx<'a> {
    Ctx::new(
        &world.archive,
        &world.store,
        &world.keys,
        world,
        settings,
        now(),
    )
}

/// Sources validated side by side each count their own operational errors:
/// one failing source must not keep the other from being marked indexed.
#[tokio::test]
async fn each_source_counts_its_own_errors() {
    let world = World::new(now());
    let settings = settings();
    let ctx = bare_ctx(&world, &settings);
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<()>();
    let failing = SOURCE_ERRORS.scope(std::cell::Cell::new(0), async {
        ctx.error(&OpError::new(
            "111122223333",
            "get".to_string(),
            SeamError::Transient("connection reset".to_string()),
        ));
        let _ = failed_tx.send(());
        ctx.error_count()
    });
    let clean = SOURCE_ERRORS.scope(std::cell::Cell::new(0), async {
        // Counted only after the other source's error was reported.
        let _ = failed_rx.await;
        ctx.error_count()
    });
    let (failing, clean) = futures::join!(failing, clean);
    assert_eq!((failing, clean), (1, 0));
    // Outside any source: the whole run's.
    assert_eq!(ctx.error_count(), 1);
}

/// Every archive read of a run shares one budget of `concurrency` reads.
#[tokio::test]
async fn reads_in_flight_never_exceed_the_concurrency() {
    use futures::FutureExt as _;
    let world = World::new(now());
    let mut settings = settings();
    settings.concurrency = 2;
    let ctx = bare_ctx(&world, &settings);
    let first = ctx.read_permit().await;
    let second = ctx.read_permit().await;
    assert!(first.is_some() && second.is_some());
    assert!(
        ctx.read_permit().now_or_never().is_none(),
        "a third read waits"
    );
    drop(first);
    assert!(ctx.read_permit().now_or_never().flatten().is_some());
}

/// An organization trail bucket is validated one member account at a time;
/// the heads of the other accounts still prove a deleted newest digest, and
/// the audit still covers every account.
#[tokio::test]
async fn an_org_trail_bucket_is_judged_across_accounts_one_account_at_a_time() {
    let accounts = ["111122223333", "222233334444", "333344445555"];
    let chains: Vec<Vec<SimDigest>> = accounts
        .iter()
        .map(|account| {
            let trail = Trail {
                account: (*account).into(),
                ..Trail::org("eu-west-1")
            };
            build_chain(&trail, first_end(), HOURS)
        })
        .collect();
    let world = World::new(last_end() + Duration::minutes(90));
    for digest in chains.iter().flatten() {
        world.put_digest(digest);
    }
    // The second account's newest digest is deleted before collection.
    let deleted = chains[1][HOURS - 1].key.clone();
    world.source.delete(&deleted);
    world.archive_all().await;

    // The first run inventories the whole source (slice by slice).
    let outcome = world.run(&settings()).await;
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    assert_only(&outcome, &[(FindingKind::DigestMissing, &deleted)]);
    assert_eq!(outcome.chains, 3);

    // A full run: the same, plus the third account's altered copy.
    let altered = chains[2][5].logs[0].key.clone();
    let source = World::source_ref(&altered);
    let mut record = world.store.object(&source).unwrap().unwrap();
    record.raw_sha256 = [7; 32];
    world.store.record_object(&source, &record).unwrap();
    let full = VerifySettings {
        full: true,
        ..settings()
    };
    let outcome = world.run(&full).await;
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors);
    assert_only(
        &outcome,
        &[
            (FindingKind::DigestMissing, &deleted),
            (FindingKind::ArchiveCopyInvalid, &altered),
        ],
    );
    assert_eq!(outcome.chains, 3);
    assert_eq!(
        outcome.stats.digests_validated,
        (3 * HOURS - 1) as u64,
        "every account's chain validated again"
    );
}
