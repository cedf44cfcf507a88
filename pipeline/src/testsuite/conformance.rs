//! One suite of behaviour every [`ProgressStore`] must show, run against each
//! implementation (arrow-rs `object_store` runs its `integration.rs` over
//! every backend the same way): the in-memory twin here, and `RedbStore` in
//! `infra/tests/store_conformance.rs`. A twin that drifts from the real store
//! fails the same test the real store passes.
//!
//! Each check is a plain function over `&dyn ProgressStore` (a fresh, empty
//! store); [`crate::store_conformance_tests!`] turns them into one `#[test]`
//! each for a store constructor.

use chrono::{DateTime, TimeZone, Utc};

use crate::model::findings::{AnnouncedTo, Finding, FindingKind, Unannounced};
use crate::model::object::{ObjectRecord, SourceRef};
use crate::seams::ProgressStore;

fn source(account: &str, bucket: &str, key: &str) -> SourceRef {
    SourceRef {
        account_id: account.into(),
        bucket: bucket.into(),
        key: key.into(),
    }
}

fn record(etag: &str, content: Option<[u8; 32]>, version: Option<&str>) -> ObjectRecord {
    ObjectRecord {
        v: 1,
        etag: etag.into(),
        size: 4321,
        raw_sha256: [3; 32],
        content_sha256: content,
        content_error: content.is_none().then(|| "trailing_data".to_string()),
        archive_version_id: version.map(str::to_string),
        copied_at: 1_790_000_000,
    }
}

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, hour, 0, 0)
        .single()
        .unwrap_or_default()
}

fn finding(kind: FindingKind, key: &str, detail: &str, seen: DateTime<Utc>) -> Finding {
    let mut finding = Finding::new(kind, "111122223333", "bucket", key, detail.to_string());
    finding.first_seen = seen;
    finding
}

/// A recorded copy reads back exactly, whatever its ETag form or content
/// state, and a later record of the same source replaces it.
pub fn objects_round_trip(store: &dyn ProgressStore) {
    let plain = source(
        "111122223333",
        "bucket",
        "AWSLogs/111122223333/CloudTrail/a.json.gz",
    );
    assert_eq!(store.object(&plain).unwrap(), None, "empty store");
    let cases = [
        record(
            "d41d8cd98f00b204e9800998ecf8427e",
            Some([9; 32]),
            Some("v1"),
        ),
        record("9b2cf535f27731c974343645a3985328-3", None, None),
        record("NOT-HEX-\u{e9}tag", Some([0; 32]), Some("null")),
    ];
    for expected in &cases {
        store.record_object(&plain, expected).unwrap();
        assert_eq!(store.object(&plain).unwrap().as_ref(), Some(expected));
    }
}

/// `objects_under` returns exactly the records of one account, bucket and key
/// prefix, keyed by source key, whatever else the store holds; a scan from a
/// key reads the rest of the prefix only; batches walk a source once.
pub fn objects_under_one_source_prefix(store: &dyn ProgressStore) {
    let one = record(
        "d41d8cd98f00b204e9800998ecf8427e",
        Some([1; 32]),
        Some("v1"),
    );
    for (account, bucket, key) in [
        ("111122223333", "bucket", "AWSLogs/a/1"),
        ("111122223333", "bucket", "AWSLogs/a/2"),
        ("111122223333", "bucket", "AWSLogs/b/1"),
        ("111122223333", "bucket-2", "AWSLogs/a/3"),
        ("111122223334", "bucket", "AWSLogs/a/4"),
        // An account id that is a prefix of another must not leak into it.
        ("11112222333", "bucket", "AWSLogs/a/5"),
    ] {
        store
            .record_object(&source(account, bucket, key), &one)
            .unwrap();
    }
    let mut keys: Vec<String> = store
        .objects_under("111122223333", "bucket", "AWSLogs/a/")
        .unwrap()
        .into_iter()
        .map(|(key, record)| {
            assert_eq!(record, one);
            key
        })
        .collect();
    keys.sort();
    assert_eq!(keys, ["AWSLogs/a/1", "AWSLogs/a/2"]);
    assert_eq!(
        store
            .objects_under("111122223333", "bucket", "")
            .unwrap()
            .len(),
        3
    );
    assert!(store
        .objects_under("999999999999", "bucket", "")
        .unwrap()
        .is_empty());

    // A scan from a key: the rest of the prefix, in key order, until told to stop.
    let from = |start: &str, most: usize| {
        let mut seen: Vec<String> = Vec::new();
        store
            .for_each_object_from(
                "111122223333",
                "bucket",
                "AWSLogs/a/",
                start,
                &mut |key, _| {
                    seen.push(key.to_string());
                    seen.len() < most
                },
            )
            .unwrap();
        seen
    };
    assert_eq!(from("AWSLogs/a/2", 9), ["AWSLogs/a/2"]);
    assert_eq!(from("AWSLogs/a/15", 9), ["AWSLogs/a/2"], "between two keys");
    assert_eq!(
        from("", 9),
        ["AWSLogs/a/1", "AWSLogs/a/2"],
        "before the prefix"
    );
    assert_eq!(from("", 1), ["AWSLogs/a/1"], "stops when told");
    assert!(from("AWSLogs/b/", 9).is_empty(), "past the prefix");

    // Batches of a source: every record once, in key order, then no next.
    let mut walked = Vec::new();
    let mut start = Some(String::new());
    let mut batches = 0;
    while let Some(from) = start {
        let batch = store
            .objects_batch("111122223333", "bucket", &from, 2)
            .unwrap();
        assert!(batch.records.len() <= 2);
        walked.extend(batch.records.into_iter().map(|(key, _)| key));
        start = batch.next;
        batches += 1;
    }
    assert_eq!(walked, ["AWSLogs/a/1", "AWSLogs/a/2", "AWSLogs/b/1"]);
    assert_eq!(batches, 2);
}

/// State values read back and overwrite; `state_under` lists exactly the
/// names under a prefix, in name order, empty values included.
pub fn state_values_by_name_and_prefix(store: &dyn ProgressStore) {
    assert_eq!(store.get_state("chain/x").unwrap(), None);
    store.put_state("chain/b", b"2").unwrap();
    store.put_state("chain/a", b"1").unwrap();
    store.put_state("chain/c", b"").unwrap();
    store.put_state("chainz", b"not under chain/").unwrap();
    store.put_state("chain/a", b"1bis").unwrap();
    assert_eq!(
        store.get_state("chain/a").unwrap().as_deref(),
        Some(&b"1bis"[..])
    );
    assert_eq!(
        store.get_state("chain/c").unwrap().as_deref(),
        Some(&b""[..])
    );
    let listed = store.state_under("chain/").unwrap();
    assert_eq!(
        listed,
        vec![
            ("chain/a".to_string(), b"1bis".to_vec()),
            ("chain/b".to_string(), b"2".to_vec()),
            ("chain/c".to_string(), Vec::new()),
        ]
    );
    assert!(store.state_under("nothing/").unwrap().is_empty());
    store.flush().unwrap();
}

/// A finding is new once: recording it again (a later run) reports it not
/// new, with the first run's `first_seen`; the list holds it once, never new.
pub fn findings_are_recorded_once(store: &dyn ProgressStore) {
    let first = finding(FindingKind::LogFileMissing, "k", "gone", at(1));
    let recorded = store.record_finding(first.clone()).unwrap();
    assert!(recorded.new, "first time: new");
    assert_eq!(recorded.first_seen, at(1));
    let again = store
        .record_finding(finding(FindingKind::LogFileMissing, "k", "gone", at(5)))
        .unwrap();
    assert!(!again.new, "seen before: not new");
    assert_eq!(again.first_seen, at(1), "keeps the first sighting");
    let other_kind = store
        .record_finding(finding(FindingKind::DigestMissing, "k", "gone", at(5)))
        .unwrap();
    assert!(
        other_kind.new,
        "another kind on the same key is another finding"
    );
    let listed = store.findings().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|f| !f.new),
        "stored findings are never new"
    );
    assert!(listed.iter().all(Finding::is_open));
}

/// Acknowledging marks the recorded finding once; the acknowledgement
/// survives a later sighting, and an unknown finding cannot be acknowledged.
pub fn acknowledgements_stick(store: &dyn ProgressStore) {
    let one = finding(FindingKind::AccountMismatch, "k", "claims 999", at(1));
    assert!(
        !store.acknowledge_finding(&one, at(2)).unwrap(),
        "nothing recorded yet"
    );
    store.record_finding(one.clone()).unwrap();
    assert!(store.acknowledge_finding(&one, at(2)).unwrap());
    assert!(
        !store.acknowledge_finding(&one, at(3)).unwrap(),
        "already acknowledged"
    );
    let later = store
        .record_finding(finding(
            FindingKind::AccountMismatch,
            "k",
            "claims 999",
            at(4),
        ))
        .unwrap();
    assert!(!later.new);
    assert_eq!(later.acknowledged_at, Some(at(2)));
    let listed = store.findings().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].acknowledged_at, Some(at(2)));
    assert_eq!(listed[0].first_seen, at(1));
    assert!(!listed[0].is_open());
}

/// A finding recorded for the first time is stored unannounced in the same
/// write (a crash before the announcement loses nothing); each part is
/// cleared on its own, and a later sighting or an acknowledgement neither
/// clears nor restarts the announcement.
pub fn findings_stay_unannounced_until_each_part_succeeded(store: &dyn ProgressStore) {
    let one = finding(FindingKind::LogFileMissing, "k", "gone", at(1));
    let other = finding(FindingKind::ObjectMalformed, "junk", "not gzip", at(1));
    let reported = store.record_finding(one.clone()).unwrap();
    assert_eq!(reported.unannounced, None, "a report never carries it");
    store.record_finding(other.clone()).unwrap();
    let mut pending = store.unannounced_findings().unwrap();
    pending.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(pending.len(), 2);
    assert!(pending
        .iter()
        .all(|f| f.unannounced == Some(Unannounced::ALL)));

    assert!(store.mark_announced(&one, AnnouncedTo::Notifier).unwrap());
    assert!(
        !store.mark_announced(&one, AnnouncedTo::Notifier).unwrap(),
        "already published"
    );
    // Seen again and acknowledged: still to be written to the ledger.
    assert!(!store.record_finding(one.clone()).unwrap().new);
    assert!(store.acknowledge_finding(&one, at(2)).unwrap());
    let pending_one = store.finding(&one.dedup_key()).unwrap().unwrap();
    assert_eq!(
        pending_one.unannounced,
        Some(Unannounced {
            ledger: true,
            publish: false,
            events: true,
        })
    );
    assert!(store.mark_announced(&one, AnnouncedTo::Ledger).unwrap());
    let only_events = store.finding(&one.dedup_key()).unwrap().unwrap();
    assert!(
        only_events.awaits(AnnouncedTo::Events),
        "announced only once every part succeeded"
    );
    assert!(store.mark_announced(&one, AnnouncedTo::Events).unwrap());
    let announced = store.finding(&one.dedup_key()).unwrap().unwrap();
    assert_eq!(announced.unannounced, None);
    assert_eq!(announced.acknowledged_at, Some(at(2)));
    let pending = store.unannounced_findings().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].key, "junk");
    assert!(
        !store
            .mark_announced(
                &finding(FindingKind::DigestMissing, "none", "x", at(1)),
                AnnouncedTo::Ledger
            )
            .unwrap(),
        "nothing recorded"
    );
    store.flush().unwrap();
}

/// A state finding (an unlocked archive) that an operator acknowledged is
/// re-opened when a run observes the state again: reported new and open,
/// stored without the acknowledgement and unannounced. A fact about history
/// stays acknowledged.
pub fn acknowledged_state_findings_reopen_when_observed(store: &dyn ProgressStore) {
    let state = finding(FindingKind::ArchiveMisconfigured, "", "no policy", at(1));
    let fact = finding(FindingKind::DigestMissing, "k", "gone", at(1));
    for finding in [&state, &fact] {
        store.record_finding(finding.clone()).unwrap();
        store.mark_announced(finding, AnnouncedTo::Ledger).unwrap();
        store
            .mark_announced(finding, AnnouncedTo::Notifier)
            .unwrap();
        store.mark_announced(finding, AnnouncedTo::Events).unwrap();
        assert!(store.acknowledge_finding(finding, at(2)).unwrap());
    }
    assert!(store.unannounced_findings().unwrap().is_empty());

    let observed = store
        .record_finding(finding(
            FindingKind::ArchiveMisconfigured,
            "",
            "no policy",
            at(3),
        ))
        .unwrap();
    assert!(observed.new, "re-opened");
    assert!(observed.is_open());
    let stored = store.finding(&state.dedup_key()).unwrap().unwrap();
    assert!(stored.is_open());
    assert!(!stored.new);
    assert_eq!(stored.unannounced, Some(Unannounced::ALL));

    let fact_again = store
        .record_finding(finding(FindingKind::DigestMissing, "k", "gone", at(3)))
        .unwrap();
    assert!(!fact_again.new);
    assert!(!fact_again.is_open(), "a fact stays acknowledged");
    let pending = store.unannounced_findings().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].kind, FindingKind::ArchiveMisconfigured);

    // Observed again while open: reported, not new, not announced again.
    store.mark_announced(&state, AnnouncedTo::Ledger).unwrap();
    store.mark_announced(&state, AnnouncedTo::Notifier).unwrap();
    store.mark_announced(&state, AnnouncedTo::Events).unwrap();
    let still = store
        .record_finding(finding(
            FindingKind::ArchiveMisconfigured,
            "",
            "no policy",
            at(4),
        ))
        .unwrap();
    assert!(!still.new);
    assert!(still.is_open());
    assert!(store.unannounced_findings().unwrap().is_empty());
}

/// A fresh, empty store as a test holds it (with whatever must outlive it,
/// such as a temporary directory).
pub trait StoreFixture {
    fn store(&self) -> &dyn ProgressStore;
}

/// Every record marks its folder fresh; settling the mark that was read
/// forgets the folder, unless a record was written under it since; a scan by
/// prefix hands out the records in key order and stops when told.
pub fn fresh_folders_follow_records(store: &dyn ProgressStore) {
    let day = "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/03/01/";
    let other_day = "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/03/02/";
    assert!(store
        .fresh_folders("111122223333", "bucket")
        .unwrap()
        .is_empty());
    for (bucket, key) in [
        ("bucket", format!("{day}a.json.gz")),
        ("bucket", format!("{day}b.json.gz")),
        ("bucket", format!("{other_day}c.json.gz")),
        ("other", format!("{day}d.json.gz")),
        ("bucket", "top.json.gz".to_string()),
    ] {
        store
            .record_object(
                &source("111122223333", bucket, &key),
                &record("e", None, None),
            )
            .unwrap();
    }
    let fresh = store.fresh_folders("111122223333", "bucket").unwrap();
    let folders: Vec<&str> = fresh.iter().map(|f| f.folder.as_str()).collect();
    assert_eq!(
        folders,
        vec!["", day, other_day],
        "one entry per folder, in key order"
    );

    // A record written after the read keeps its folder fresh.
    store
        .record_object(
            &source("111122223333", "bucket", &format!("{day}e.json.gz")),
            &record("e", None, None),
        )
        .unwrap();
    for folder in &fresh {
        store
            .settle_folder("111122223333", "bucket", folder)
            .unwrap();
    }
    let left = store.fresh_folders("111122223333", "bucket").unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].folder, day);
    store
        .settle_folder("111122223333", "bucket", &left[0])
        .unwrap();
    assert!(store
        .fresh_folders("111122223333", "bucket")
        .unwrap()
        .is_empty());
    assert_eq!(
        store.fresh_folders("111122223333", "other").unwrap().len(),
        1
    );

    // Settled, then written again: fresh again.
    store
        .record_object(
            &source("111122223333", "bucket", &format!("{other_day}f.json.gz")),
            &record("e", None, None),
        )
        .unwrap();
    let again = store.fresh_folders("111122223333", "bucket").unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].folder, other_day);

    let mut seen = Vec::new();
    store
        .for_each_object_under("111122223333", "bucket", day, &mut |key, _| {
            seen.push(key.to_string());
            true
        })
        .unwrap();
    assert_eq!(
        seen,
        vec![
            format!("{day}a.json.gz"),
            format!("{day}b.json.gz"),
            format!("{day}e.json.gz")
        ]
    );
    let mut first = Vec::new();
    store
        .for_each_object_under("111122223333", "bucket", "AWSLogs/", &mut |key, _| {
            first.push(key.to_string());
            false
        })
        .unwrap();
    assert_eq!(first, vec![format!("{day}a.json.gz")]);
}

impl StoreFixture for crate::testsuite::memory::MemoryStore {
    fn store(&self) -> &dyn ProgressStore {
        self
    }
}

/// One `#[test]` per conformance check for the fixture `$make` builds (an
/// expression giving a fresh [`StoreFixture`]; evaluated once per test).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        #[test]
        fn store_conformance_objects_round_trip() {
            let fixture = $make;
            $crate::testsuite::conformance::objects_round_trip(
                $crate::testsuite::conformance::StoreFixture::store(&fixture),
            );
        }
        #[test]
        fn store_conformance_objects_under_one_source_prefix() {
            let fixture = $make;
            $crate::testsuite::conformance::objects_under_one_source_prefix(
                $crate::testsuite::conformance::StoreFixture::store(&fixture),
            );
        }
        #[test]
        fn store_conformance_state_values_by_name_and_prefix() {
            let fixture = $make;
            $crate::testsuite::conformance::state_values_by_name_and_prefix(
                $crate::testsuite::conformance::StoreFixture::store(&fixture),
            );
        }
        #[test]
        fn store_conformance_findings_are_recorded_once() {
            let fixture = $make;
            $crate::testsuite::conformance::findings_are_recorded_once(
                $crate::testsuite::conformance::StoreFixture::store(&fixture),
            );
        }
        #[test]
        fn store_conformance_findings_stay_unannounced_until_each_part_succeeded() {
            let fixture = $make;
            $crate::testsuite::conformance::findings_stay_unannounced_until_each_part_succeeded(
                $crate::testsuite::conformance::StoreFixture::store(&fixture),
            );
        }
        #[test]
        fn store_conformance_acknowledged_state_findings_reopen_when_observed() {
            let fixture = $make;
            $crate::testsuite::conformance::acknowledged_state_findings_reopen_when_observed(
                $crate::testsuite::conformance::StoreFixture::store(&fixture),
            );
        }
        #[test]
        fn store_conformance_fresh_folders_follow_records() {
            let fixture = $make;
            $crate::testsuite::conformance::fresh_folders_follow_records(
                $crate::testsuite::conformance::StoreFixture::store(&fixture),
            );
        }
        #[test]
        fn store_conformance_acknowledgements_stick() {
            let fixture = $make;
            $crate::testsuite::conformance::acknowledgements_stick(
                $crate::testsuite::conformance::StoreFixture::store(&fixture),
            );
        }
    };
}

#[cfg(test)]
mod memory_store {
    crate::store_conformance_tests!(crate::testsuite::memory::MemoryStore::default());
}
