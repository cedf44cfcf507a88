//! A source inventoried account root by account root.
//!
//! An organization trail delivers every member account into one bucket, so a
//! source can hold the whole organization's history. Everything validation
//! judges together lives under one account root (`[prefix/]AWSLogs/[o-…/]<account>/`):
//! a chain's digests, the log files of its areas. So a full run (and the
//! first run over a source) walks the store's records of the source, and in
//! a full run the archive's listing of it, side by side in key order, and
//! hands out one root's records and versions at a time (validation takes a
//! few at once): memory follows the largest accounts' history, not the
//! organization's.
//!
//! Keys under no account root (not CloudTrail file names: collection
//! reported them) come in batches of at most [`LOOSE_BATCH`]; only the audit
//! reads them.

use std::collections::{BTreeMap, VecDeque};

use crate::cloudtrail::keys::{account_root, parse_trail_key};
use crate::model::error::SeamError;
use crate::model::object::{ArchivedSource, ObjectRecord, SourceRef};
use crate::seams::{Archive, ArchivedVersion, ProgressStore, VersionMarker};

/// Store records read per scan of the store.
const STORE_BATCH: usize = 4096;

/// Most keys under no account root handed out in one slice.
pub(crate) const LOOSE_BATCH: usize = 4096;

/// The records (and, in a full run, the archived versions) of one account
/// root, or of a batch of keys under none.
#[derive(Debug, Default)]
pub(crate) struct Slice {
    /// The account root every key of the slice starts with; `None` for a
    /// batch of keys that are not CloudTrail file names.
    pub root: Option<String>,
    /// Store records, by source key, in key order.
    pub records: Vec<(String, ObjectRecord)>,
    /// Full runs: every archived version of the slice, by source key.
    pub versions: BTreeMap<String, Vec<ArchivedVersion>>,
}

/// Why a source could not be walked.
#[derive(Debug)]
pub(crate) enum WalkError {
    /// The store could not be read.
    Store(SeamError),
    /// The archive could not be listed under `prefix`.
    Archive { prefix: String, error: SeamError },
}

/// The account root of a CloudTrail file key.
fn root_of(key: &str) -> Option<String> {
    let trail_key = parse_trail_key(key).ok()?;
    let root = account_root(
        &trail_key.prefix,
        trail_key.org_id.as_deref(),
        &trail_key.account_id,
    );
    // A root is the beginning of its own key (the layout is read from the
    // right); anything else would not group by prefix.
    key.starts_with(&root).then_some(root)
}

/// The store's records of one source, read a batch at a time in key order.
struct StoreCursor<'a> {
    store: &'a dyn ProgressStore,
    source: &'a ArchivedSource,
    buffer: VecDeque<(String, ObjectRecord)>,
    /// Where the next batch starts; `None` once the source is read.
    resume: Option<String>,
    /// Records read per scan.
    batch: usize,
}

impl StoreCursor<'_> {
    fn peek(&mut self) -> Result<Option<&str>, SeamError> {
        if self.buffer.is_empty() {
            self.fill()?;
        }
        Ok(self.buffer.front().map(|(key, _)| key.as_str()))
    }

    fn fill(&mut self) -> Result<(), SeamError> {
        let Some(start) = self.resume.take() else {
            return Ok(());
        };
        let batch = self.store.objects_batch(
            &self.source.reader_account_id,
            &self.source.bucket,
            &start,
            self.batch,
        )?;
        self.buffer.extend(batch.records);
        self.resume = batch.next;
        Ok(())
    }

    fn take(&mut self) -> Option<(String, ObjectRecord)> {
        self.buffer.pop_front()
    }
}

/// The archive's versions of one source, listed a page at a time in key
/// order (full runs only).
struct ArchiveCursor<'a> {
    archive: &'a dyn Archive,
    archive_prefix: &'a str,
    source: &'a ArchivedSource,
    /// `<prefix>/<reader>/<bucket>/`.
    listed: String,
    buffer: VecDeque<(String, ArchivedVersion)>,
    marker: Option<VersionMarker>,
    done: bool,
    order: ListingOrder,
}

/// What a listing's order must be for slices to be cut from it: each
/// account root's keys together, the roots (and keys under none) in key
/// order. Inside a root any order goes: S3 lists by bytes, while SeaweedFS
/// walks folders (`CloudTrail/` before `CloudTrail-Digest/`).
#[derive(Debug, Default)]
struct ListingOrder {
    /// The greatest key listed so far.
    newest: Option<String>,
    /// The account root of the keys being listed.
    root: Option<String>,
}

impl ListingOrder {
    /// Takes the next listed key; `false` when it goes back outside the
    /// root being listed.
    fn admits(&mut self, key: &str) -> bool {
        if self
            .root
            .as_deref()
            .is_some_and(|root| key.starts_with(root))
        {
            self.note(key);
            return true;
        }
        if self.newest.as_deref().is_some_and(|newest| key < newest) {
            return false;
        }
        self.root = root_of(key);
        self.note(key);
        true
    }

    fn note(&mut self, key: &str) {
        if self.newest.as_deref().is_none_or(|newest| key > newest) {
            self.newest = Some(key.to_string());
        }
    }
}

impl ArchiveCursor<'_> {
    async fn peek(&mut self) -> Result<Option<&str>, WalkError> {
        while self.buffer.is_empty() && !self.done {
            self.fill().await?;
        }
        Ok(self.buffer.front().map(|(key, _)| key.as_str()))
    }

    async fn fill(&mut self) -> Result<(), WalkError> {
        let failed = |error| WalkError::Archive {
            prefix: self.listed.clone(),
            error,
        };
        let page = self
            .archive
            .list_versions_page(&self.listed, self.marker.take())
            .await
            .map_err(failed)?;
        self.done = page.next.is_none();
        self.marker = page.next;
        for version in page.versions {
            let Some(found) = SourceRef::from_archive_key(self.archive_prefix, &version.key) else {
                continue;
            };
            if found.account_id != self.source.reader_account_id
                || found.bucket != self.source.bucket
            {
                continue;
            }
            if !self.order.admits(&found.key) {
                // Slices are cut by account root: a listing that came back
                // to a root it had left would split an account between slices.
                return Err(WalkError::Archive {
                    prefix: self.listed.clone(),
                    error: SeamError::Permanent(format!(
                        "the archive listed {} after {}: not in key order",
                        found.key,
                        self.order.newest.as_deref().unwrap_or_default()
                    )),
                });
            }
            self.buffer.push_back((found.key, version));
        }
        Ok(())
    }

    fn take(&mut self) -> Option<(String, ArchivedVersion)> {
        self.buffer.pop_front()
    }
}

/// Walks one source slice by slice (see the module docs).
pub(crate) struct SourceWalk<'a> {
    store: StoreCursor<'a>,
    /// `None`: the archive is not listed (runs that trust the store).
    archive: Option<ArchiveCursor<'a>>,
}

impl<'a> SourceWalk<'a> {
    /// A walk of the store's records of `source`, and with `list_archive`
    /// of the archive's versions under `<archive_prefix>/<reader>/<bucket>/`.
    pub fn new(
        store: &'a dyn ProgressStore,
        archive: &'a dyn Archive,
        archive_prefix: &'a str,
        source: &'a ArchivedSource,
        list_archive: bool,
    ) -> SourceWalk<'a> {
        let listed = SourceRef {
            account_id: source.reader_account_id.clone(),
            bucket: source.bucket.clone(),
            key: String::new(),
        }
        .archive_key(archive_prefix);
        SourceWalk {
            store: StoreCursor {
                store,
                source,
                buffer: VecDeque::new(),
                resume: Some(String::new()),
                batch: STORE_BATCH,
            },
            archive: list_archive.then(|| ArchiveCursor {
                archive,
                archive_prefix,
                source,
                listed,
                buffer: VecDeque::new(),
                marker: None,
                done: false,
                order: ListingOrder::default(),
            }),
        }
    }

    /// The smallest key not handed out yet, from either side.
    async fn next_key(&mut self) -> Result<Option<String>, WalkError> {
        let stored = self
            .store
            .peek()
            .map_err(WalkError::Store)?
            .map(str::to_string);
        let listed = match &mut self.archive {
            Some(archive) => archive.peek().await?.map(str::to_string),
            None => None,
        };
        Ok(match (stored, listed) {
            (Some(stored), Some(listed)) => Some(stored.min(listed)),
            (stored, listed) => stored.or(listed),
        })
    }

    /// Moves every record and version of the next key into `slice` when
    /// `belongs` says that key is part of it; `false` when it is not (or
    /// nothing is left).
    async fn take_next(
        &mut self,
        slice: &mut Slice,
        belongs: &dyn Fn(&str) -> bool,
    ) -> Result<bool, WalkError> {
        let Some(key) = self.next_key().await? else {
            return Ok(false);
        };
        if !belongs(&key) {
            return Ok(false);
        }
        while self.store.peek().map_err(WalkError::Store)? == Some(key.as_str()) {
            if let Some(record) = self.store.take() {
                slice.records.push(record);
            }
        }
        if let Some(archive) = &mut self.archive {
            while archive.peek().await? == Some(key.as_str()) {
                if let Some((key, version)) = archive.take() {
                    slice.versions.entry(key).or_default().push(version);
                }
            }
        }
        Ok(true)
    }

    /// The next slice; `None` when the source is walked.
    pub async fn next_slice(&mut self) -> Result<Option<Slice>, WalkError> {
        let Some(first) = self.next_key().await? else {
            return Ok(None);
        };
        let root = root_of(&first);
        let mut slice = Slice {
            root: root.clone(),
            ..Slice::default()
        };
        match root {
            // Every key under the root, CloudTrail file name or not: the
            // keys sharing a prefix are contiguous in key order.
            Some(root) => {
                let under_root = |key: &str| key.starts_with(root.as_str());
                while self.take_next(&mut slice, &under_root).await? {}
            }
            None => {
                let mut taken = 0;
                let loose = |key: &str| root_of(key).is_none();
                while taken < LOOSE_BATCH && self.take_next(&mut slice, &loose).await? {
                    taken += 1;
                }
            }
        }
        Ok(Some(slice))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::Ordering;

    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::testsuite::chains::*;
    use crate::testsuite::memory::MemoryStore;

    const ACCOUNTS: [&str; 3] = ["111122223333", "222233334444", "333344445555"];

    /// An organization trail bucket holding three member accounts' chains,
    /// a note inside one account's root, and keys under no root.
    async fn org_bucket() -> World {
        let first = Utc.with_ymd_and_hms(2026, 3, 1, 0, 5, 4).unwrap();
        let world = World::new(first + Duration::hours(4));
        for account in ACCOUNTS {
            let trail = Trail {
                account: account.into(),
                ..Trail::org("eu-west-1")
            };
            for digest in build_chain(&trail, first, 3) {
                world.put_digest(&digest);
            }
        }
        for loose in [
            "AWSLogs/README.txt",
            "org-logs/cloudtrail/AWSLogs/o-abcde12345/222233334444/notes.txt",
            "zzz/other.bin",
        ] {
            world.source.put(loose, b"x".to_vec(), &[]);
        }
        world.archive_all().await;
        world
    }

    fn root_of_account(account: &str) -> String {
        format!("org-logs/cloudtrail/AWSLogs/o-abcde12345/{account}/")
    }

    fn source() -> ArchivedSource {
        ArchivedSource {
            reader_account_id: READER.into(),
            bucket: BUCKET.into(),
        }
    }

    async fn walk_all(walk: &mut SourceWalk<'_>) -> Vec<Slice> {
        let mut slices = Vec::new();
        while let Some(slice) = walk.next_slice().await.expect("walk") {
            slices.push(slice);
        }
        slices
    }

    #[tokio::test]
    async fn a_source_is_walked_one_account_root_at_a_time() {
        let world = org_bucket().await;
        // Small store batches and archive pages: slices cut across both.
        world.archive.version_page_size.store(5, Ordering::Relaxed);
        // The store forgot the third account: its keys come from the archive.
        let partial = MemoryStore::default();
        let stored = world.store.objects_under(READER, BUCKET, "").unwrap();
        for (key, record) in &stored {
            if !key.starts_with(&root_of_account(ACCOUNTS[2])) {
                partial
                    .record_object(&World::source_ref(key), record)
                    .unwrap();
            }
        }
        let source = source();
        let mut walk = SourceWalk::new(&partial, &world.archive, ARCHIVE_PREFIX, &source, true);
        walk.store.batch = 3;
        let slices = walk_all(&mut walk).await;

        let mut roots = BTreeSet::new();
        let mut recorded = Vec::new();
        let mut listed = Vec::new();
        for slice in &slices {
            let keys = slice
                .records
                .iter()
                .map(|(key, _)| key)
                .chain(slice.versions.keys());
            match &slice.root {
                Some(root) => {
                    assert!(roots.insert(root.clone()), "{root} in two slices");
                    for key in keys {
                        assert!(key.starts_with(root.as_str()), "{key} outside {root}");
                    }
                }
                None => {
                    for key in keys {
                        assert!(root_of(key).is_none(), "{key} has a root");
                    }
                }
            }
            recorded.extend(slice.records.iter().map(|(key, _)| key.clone()));
            listed.extend(slice.versions.keys().cloned());
        }
        let expected_roots: BTreeSet<String> = ACCOUNTS
            .iter()
            .map(|account| root_of_account(account))
            .collect();
        assert_eq!(roots, expected_roots);
        // Every record and every archived key once, in key order.
        let stored_keys: Vec<String> = partial
            .objects_under(READER, BUCKET, "")
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(recorded, stored_keys);
        let archived_keys: Vec<String> = stored.iter().map(|(key, _)| key.clone()).collect();
        assert_eq!(listed, archived_keys);
        // Each account's slice holds that account's keys alone (the note
        // under its root included).
        for account in ACCOUNTS {
            let root = root_of_account(account);
            let slice = slices
                .iter()
                .find(|slice| slice.root.as_deref() == Some(root.as_str()))
                .unwrap();
            let under_root = stored
                .iter()
                .filter(|(key, _)| key.starts_with(&root))
                .count();
            assert_eq!(slice.versions.len(), under_root, "{account}");
        }
        let loose: BTreeSet<&str> = slices
            .iter()
            .filter(|slice| slice.root.is_none())
            .flat_map(|slice| slice.records.iter().map(|(key, _)| key.as_str()))
            .collect();
        assert_eq!(
            loose,
            BTreeSet::from(["AWSLogs/README.txt", "zzz/other.bin"])
        );
    }

    #[test]
    fn a_listing_may_go_back_inside_one_account_root_only() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 5, 4).unwrap();
        let trail = |account: &str| Trail {
            account: account.into(),
            ..Trail::org("eu-west-1")
        };
        let root = root_of_account(ACCOUNTS[0]);
        let digest = trail(ACCOUNTS[0]).digest_key(at, false);
        let log = trail(ACCOUNTS[0]).log_key(at, "AAAAAAAAAAAAAAAA");
        let next = trail(ACCOUNTS[1]).log_key(at, "AAAAAAAAAAAAAAAA");
        assert!(root_of(&log).is_some() && root_of(&digest).is_some());
        // SeaweedFS's folder order: `CloudTrail/` before `CloudTrail-Digest/`.
        let mut order = ListingOrder::default();
        for key in [
            "AWSLogs/README.txt",
            &log,
            &digest,
            &format!("{root}notes.txt"),
            &next,
        ] {
            assert!(order.admits(key), "{key}");
        }
        // Back to a root the listing left, or to a key under none.
        assert!(!order.admits(&digest));
        assert!(!order.admits("AWSLogs/README.txt"));
        // Byte order throughout is the plain case.
        let mut order = ListingOrder::default();
        for key in [&digest, &log, &next, &"zzz".to_string()] {
            assert!(order.admits(key), "{key}");
        }
    }

    #[tokio::test]
    async fn a_walk_that_trusts_the_store_lists_nothing() {
        let world = org_bucket().await;
        let source = source();
        let mut walk =
            SourceWalk::new(&world.store, &world.archive, ARCHIVE_PREFIX, &source, false);
        let before = world.archive.version_pages.load(Ordering::Relaxed);
        let slices = walk_all(&mut walk).await;
        assert_eq!(world.archive.version_pages.load(Ordering::Relaxed), before);
        assert!(slices.iter().all(|slice| slice.versions.is_empty()));
        let records: usize = slices.iter().map(|slice| slice.records.len()).sum();
        assert_eq!(
            records,
            world.store.objects_under(READER, BUCKET, "").unwrap().len()
        );
    }

    #[tokio::test]
    async fn keys_under_no_root_come_in_bounded_batches() {
        let world = World::new(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap());
        for n in 0..LOOSE_BATCH + 10 {
            world
                .store
                .record_object(
                    &World::source_ref(&format!("junk/{n:06}")),
                    &crate::testsuite::placeholder_record(),
                )
                .unwrap();
        }
        let source = source();
        let mut walk =
            SourceWalk::new(&world.store, &world.archive, ARCHIVE_PREFIX, &source, false);
        let sizes: Vec<usize> = walk_all(&mut walk)
            .await
            .iter()
            .map(|slice| slice.records.len())
            .collect();
        assert_eq!(sizes, vec![LOOSE_BATCH, 10]);
    }

    #[tokio::test]
    async fn a_failed_listing_stops_the_walk_with_its_prefix() {
        let world = org_bucket().await;
        world.archive.version_page_size.store(2, Ordering::Relaxed);
        world
            .archive
            .fail_later_version_pages
            .store(true, Ordering::Relaxed);
        let source = source();
        let mut walk = SourceWalk::new(&world.store, &world.archive, ARCHIVE_PREFIX, &source, true);
        let failed = loop {
            match walk.next_slice().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the walk ended without the failure"),
                Err(error) => break error,
            }
        };
        match failed {
            WalkError::Archive { prefix, .. } => {
                assert_eq!(prefix, format!("{ARCHIVE_PREFIX}/{READER}/{BUCKET}/"));
            }
            WalkError::Store(error) => panic!("{error}"),
        }
    }
}
