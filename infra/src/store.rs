//! The progress store on sled, behind the pipeline's [`ProgressStore`] seam.
//!
//! Layout (one sled instance per process, one tree per kind of record):
//! - `objects`: `<account>\0<bucket>\0<key>` → compact binary [`ObjectRecord`]
//!   (version byte first; see [`encode_record`]);
//! - `state`: name → bytes (cursors, sweep times, chain heads, cached keys);
//! - `findings`: dedup key → JSON finding;
//! - `fresh`: `<account>\0<bucket>\0<folder>` → mark (u64, big-endian) of the
//!   folders with records validation has not settled yet (one entry per
//!   folder, not per object: written once per folder until validation reads
//!   it, so the store keeps its size per object).
//!
//! Durability: sled fsyncs by itself only every 500 ms; [`ProgressStore::flush`]
//! is called where it matters (before the first copy of a run, at its end).

use std::path::Path;
use tracing::warn;

use trailvault_pipeline::model::findings::Finding;
use trailvault_pipeline::model::object::{ObjectRecord, SourceRef};
use trailvault_pipeline::seams::ProgressStore;
use trailvault_pipeline::SeamError;

const RECORD_VERSION: u8 = 1;
const FLAG_CONTENT: u8 = 1;
const FLAG_HEX_ETAG: u8 = 2;

/// Folders whose mark a handle remembers (about 100 bytes each).
const MAX_MARKED_FOLDERS: usize = 50_000;

pub struct SledStore {
    db: sled::Db,
    objects: sled::Tree,
    state: sled::Tree,
    findings: sled::Tree,
    fresh: sled::Tree,
    /// Folders marked by this handle: folder key → (mark, handed out by
    /// `fresh_folders` since). A record under a folder marked and not handed
    /// out needs no new mark; one under a handed-out folder gets a new mark,
    /// so that settling the mark that was read keeps the folder fresh. Held
    /// across the whole of `record_object` and `settle_folder`.
    marked: std::sync::Mutex<std::collections::HashMap<Vec<u8>, (u64, bool)>>,
}

fn store_error(error: impl std::fmt::Display) -> SeamError {
    SeamError::Permanent(format!("progress store: {error}"))
}

fn object_key(account_id: &str, bucket: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(account_id.len() + bucket.len() + key.len() + 2);
    out.extend_from_slice(account_id.as_bytes());
    out.push(0);
    out.extend_from_slice(bucket.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

fn push_short(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let len = bytes.len().min(u16::MAX as usize);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&bytes[..len]);
}

/// Compact binary encoding of a record: the store must stay well under 512
/// bytes per object, and JSON with hex hashes alone would take half of that.
pub fn encode_record(record: &ObjectRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let hex_etag = record.etag.len() == 32
        && record
            .etag
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let mut flags = 0;
    if record.content_sha256.is_some() {
        flags |= FLAG_CONTENT;
    }
    if hex_etag {
        flags |= FLAG_HEX_ETAG;
    }
    out.push(RECORD_VERSION);
    out.push(flags);
    out.extend_from_slice(&record.size.to_be_bytes());
    out.extend_from_slice(&record.copied_at.to_be_bytes());
    out.extend_from_slice(&record.raw_sha256);
    if let Some(content) = &record.content_sha256 {
        out.extend_from_slice(content);
    }
    if hex_etag {
        let mut raw = [0u8; 16];
        if hex::decode_to_slice(&record.etag, &mut raw).is_ok() {
            out.extend_from_slice(&raw);
        }
    } else {
        push_short(&mut out, &record.etag);
    }
    push_short(&mut out, record.archive_version_id.as_deref().unwrap_or(""));
    push_short(&mut out, record.content_error.as_deref().unwrap_or(""));
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn short(&mut self) -> Option<String> {
        let len = u16::from_be_bytes(self.array::<2>()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

pub fn decode_record(bytes: &[u8]) -> Option<ObjectRecord> {
    let mut reader = Reader(bytes);
    let version = reader.array::<1>()?[0];
    if version != RECORD_VERSION {
        return None;
    }
    let flags = reader.array::<1>()?[0];
    let size = u64::from_be_bytes(reader.array::<8>()?);
    let copied_at = i64::from_be_bytes(reader.array::<8>()?);
    let raw_sha256 = reader.array::<32>()?;
    let content_sha256 = if flags & FLAG_CONTENT != 0 {
        Some(reader.array::<32>()?)
    } else {
        None
    };
    let etag = if flags & FLAG_HEX_ETAG != 0 {
        hex::encode(reader.array::<16>()?)
    } else {
        reader.short()?
    };
    let archive_version_id = Some(reader.short()?).filter(|v| !v.is_empty());
    let content_error = Some(reader.short()?).filter(|v| !v.is_empty());
    Some(ObjectRecord {
        v: version,
        etag,
        size,
        raw_sha256,
        content_sha256,
        content_error,
        archive_version_id,
        copied_at,
    })
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenFailure {
    /// Another process (or another handle in this one) holds the store's
    /// lock and kept it for the whole wait: a run is in progress.
    #[error("held by another trailvault process (a run is still in progress): {0}")]
    Held(String),
    /// Missing, damaged, unreadable: anything but the lock.
    #[error(transparent)]
    Failed(SeamError),
}

impl OpenFailure {
    pub fn held(&self) -> bool {
        matches!(self, OpenFailure::Held(_))
    }
}

impl From<OpenFailure> for SeamError {
    fn from(failure: OpenFailure) -> SeamError {
        match failure {
            OpenFailure::Held(message) => {
                store_error(format!("held by another process: {message}"))
            }
            OpenFailure::Failed(error) => error,
        }
    }
}

/// How long [`SledStore::try_open`] waits for a held lock before giving up.
/// sled's background flusher keeps the file lock for a moment after the
/// previous handle is dropped (4 s is long enough for it on a loaded
/// machine); a run of another process holds it far longer, and the wait
/// ends with [`OpenFailure::Held`].
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(4);

/// sled 0.34 reports a held lock as an `Other` I/O error whose text says
/// "could not acquire lock" (with the OS error `WouldBlock` inside the
/// text); a test below pins that wording.
fn is_lock_contention(error: &sled::Error) -> bool {
    match error {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

impl SledStore {
    pub fn open(path: &Path) -> Result<SledStore, SeamError> {
        SledStore::try_open(path, LOCK_WAIT).map_err(SeamError::from)
    }

    /// Opens the store at `path`, waiting up to `lock_wait` while another
    /// handle holds it; tells a held store ([`OpenFailure::Held`]) from
    /// every other failure.
    pub fn try_open(path: &Path, lock_wait: std::time::Duration) -> Result<SledStore, OpenFailure> {
        let config = sled::Config::new()
            .path(path)
            // sled's cache accounting is approximate: 16 MiB configured held ~90 MB
            // after 200,000 point lookups, 2 MiB holds ~30 MB, at the same insert and
            // lookup speed (the access pattern is one lookup per listed key, in key
            // order). Memory then grows little with the number of objects recorded.
            .cache_capacity(2 * 1024 * 1024)
            .mode(sled::Mode::LowSpace)
            .use_compression(true)
            .compression_factor(1);
        let step = std::time::Duration::from_millis(40);
        let deadline = std::time::Instant::now() + lock_wait;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(error) if is_lock_contention(&error) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(OpenFailure::Held(format!("{}: {error}", path.display())));
                    }
                    std::thread::sleep(step);
                }
                Err(error) => {
                    return Err(OpenFailure::Failed(store_error(format!(
                        "cannot open {}: {error}",
                        path.display()
                    ))))
                }
            }
        };
        let failed = |error| OpenFailure::Failed(store_error(error));
        let objects = db.open_tree("objects").map_err(failed)?;
        let state = db.open_tree("state").map_err(failed)?;
        let findings = db.open_tree("findings").map_err(failed)?;
        let fresh = db.open_tree("fresh").map_err(failed)?;
        Ok(SledStore {
            db,
            objects,
            state,
            findings,
            fresh,
            marked: std::sync::Mutex::default(),
        })
    }

    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl ProgressStore for SledStore {
    fn object(&self, source: &SourceRef) -> Result<Option<ObjectRecord>, SeamError> {
        let key = object_key(&source.account_id, &source.bucket, &source.key);
        match self.objects.get(key).map_err(store_error)? {
            Some(bytes) => Ok(decode_record(&bytes)),
            None => Ok(None),
        }
    }

    fn record_object(&self, source: &SourceRef, record: &ObjectRecord) -> Result<(), SeamError> {
        let key = object_key(&source.account_id, &source.bucket, &source.key);
        let folder = object_key(
            &source.account_id,
            &source.bucket,
            trailvault_pipeline::seams::key_folder(&source.key),
        );
        let mut marked = self
            .marked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The mark first: a record is never durable without its folder's mark.
        if !matches!(marked.get(&folder), Some((_, false))) {
            // A long-lived process that never validates must not grow the
            // cache without bound: forgetting it only costs new marks.
            if marked.len() >= MAX_MARKED_FOLDERS {
                marked.clear();
            }
            let mark = self.db.generate_id().map_err(store_error)?;
            self.fresh
                .insert(&folder, &mark.to_be_bytes())
                .map_err(store_error)?;
            marked.insert(folder, (mark, false));
        }
        self.objects
            .insert(key, encode_record(record))
            .map_err(store_error)?;
        Ok(())
    }

    fn fresh_folders(
        &self,
        account_id: &str,
        bucket: &str,
    ) -> Result<Vec<trailvault_pipeline::seams::FreshFolder>, SeamError> {
        let prefix = object_key(account_id, bucket, "");
        let mut marked = self
            .marked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = Vec::new();
        for entry in self.fresh.scan_prefix(&prefix) {
            let (key, value) = entry.map_err(store_error)?;
            let Some(folder) = key
                .get(prefix.len()..)
                .and_then(|k| std::str::from_utf8(k).ok())
            else {
                continue;
            };
            let Ok(bytes) = <[u8; 8]>::try_from(value.as_ref()) else {
                continue;
            };
            let mark = u64::from_be_bytes(bytes);
            if let Some(entry) = marked.get_mut(key.as_ref()) {
                entry.1 = true;
            }
            out.push(trailvault_pipeline::seams::FreshFolder {
                folder: folder.to_string(),
                mark,
            });
        }
        Ok(out)
    }

    fn settle_folder(
        &self,
        account_id: &str,
        bucket: &str,
        fresh: &trailvault_pipeline::seams::FreshFolder,
    ) -> Result<(), SeamError> {
        let key = object_key(account_id, bucket, &fresh.folder);
        let mut marked = self
            .marked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let swapped = self
            .fresh
            .compare_and_swap(&key, Some(&fresh.mark.to_be_bytes()[..]), None::<&[u8]>)
            .map_err(store_error)?;
        if swapped.is_ok() {
            marked.remove(&key);
        }
        Ok(())
    }

    fn for_each_object_from(
        &self,
        account_id: &str,
        bucket: &str,
        key_prefix: &str,
        start_key: &str,
        visit: &mut dyn FnMut(&str, ObjectRecord) -> bool,
    ) -> Result<(), SeamError> {
        let prefix = object_key(account_id, bucket, key_prefix);
        let start = object_key(account_id, bucket, start_key.max(key_prefix));
        let skip = account_id.len() + bucket.len() + 2;
        for entry in self.objects.range(start..) {
            let (key, value) = entry.map_err(store_error)?;
            if !key.starts_with(&prefix) {
                break;
            }
            let Some(record) = decode_record(&value) else {
                continue;
            };
            let Some(source_key) = key.get(skip..).and_then(|k| std::str::from_utf8(k).ok()) else {
                continue;
            };
            if !visit(source_key, record) {
                break;
            }
        }
        Ok(())
    }

    fn objects_under(
        &self,
        account_id: &str,
        bucket: &str,
        key_prefix: &str,
    ) -> Result<Vec<(String, ObjectRecord)>, SeamError> {
        let mut out = Vec::new();
        self.for_each_object_under(account_id, bucket, key_prefix, &mut |key, record| {
            out.push((key.to_string(), record));
            true
        })?;
        Ok(out)
    }

    fn for_each_object(
        &self,
        visit: &mut dyn FnMut(SourceRef, ObjectRecord),
    ) -> Result<(), SeamError> {
        for entry in self.objects.iter() {
            let (key, value) = entry.map_err(store_error)?;
            let Some(record) = decode_record(&value) else {
                continue;
            };
            // `<account>\0<bucket>\0<key>`, as `object_key` writes it.
            let mut parts = key.splitn(3, |&b| b == 0);
            let (Some(account), Some(bucket), Some(source_key)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(account), Ok(bucket), Ok(source_key)) = (
                std::str::from_utf8(account),
                std::str::from_utf8(bucket),
                std::str::from_utf8(source_key),
            ) else {
                continue;
            };
            visit(
                SourceRef {
                    account_id: account.to_string(),
                    bucket: bucket.to_string(),
                    key: source_key.to_string(),
                },
                record,
            );
        }
        Ok(())
    }

    fn for_each_state_under(
        &self,
        prefix: &str,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Result<(), SeamError> {
        for entry in self.state.scan_prefix(prefix.as_bytes()) {
            let (key, value) = entry.map_err(store_error)?;
            visit(&String::from_utf8_lossy(&key), &value);
        }
        Ok(())
    }

    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>, SeamError> {
        Ok(self
            .state
            .get(name.as_bytes())
            .map_err(store_error)?
            .map(|v| v.to_vec()))
    }

    fn put_state(&self, name: &str, value: &[u8]) -> Result<(), SeamError> {
        self.state
            .insert(name.as_bytes(), value)
            .map_err(store_error)?;
        Ok(())
    }

    fn state_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, SeamError> {
        let mut out = Vec::new();
        for entry in self.state.scan_prefix(prefix.as_bytes()) {
            let (key, value) = entry.map_err(store_error)?;
            out.push((String::from_utf8_lossy(&key).into_owned(), value.to_vec()));
        }
        Ok(out)
    }

    fn finding(&self, identity: &str) -> Result<Option<Finding>, SeamError> {
        let Some(bytes) = self
            .findings
            .get(identity.as_bytes())
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        match serde_json::from_slice::<Finding>(&bytes) {
            Ok(finding) => Ok(Some(finding)),
            Err(error) => {
                warn!(identity, %error, "unreadable finding record; recording the finding again");
                Ok(None)
            }
        }
    }

    fn put_finding(&self, identity: &str, finding: &Finding) -> Result<(), SeamError> {
        let bytes = serde_json::to_vec(finding).map_err(store_error)?;
        self.findings
            .insert(identity.as_bytes(), bytes)
            .map_err(store_error)?;
        Ok(())
    }

    fn for_each_finding(&self, visit: &mut dyn FnMut(Finding)) -> Result<(), SeamError> {
        for entry in self.findings.iter() {
            let (_, value) = entry.map_err(store_error)?;
            if let Ok(finding) = serde_json::from_slice::<Finding>(&value) {
                visit(finding);
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), SeamError> {
        self.db.flush().map_err(store_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailvault_pipeline::model::findings::FindingKind;

    pub(super) fn record(etag: &str, content: Option<[u8; 32]>) -> ObjectRecord {
        ObjectRecord {
            v: 1,
            etag: etag.into(),
            size: 4321,
            raw_sha256: [3; 32],
            content_sha256: content,
            content_error: content.is_none().then(|| "trailing_data".to_string()),
            archive_version_id: Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into()),
            copied_at: 1_790_000_000,
        }
    }

    #[test]
    fn records_round_trip_compactly() {
        for original in [
            record("d41d8cd98f00b204e9800998ecf8427e", Some([5; 32])),
            record("abc-3", None),
            record("", Some([1; 32])),
        ] {
            let bytes = encode_record(&original);
            assert_eq!(decode_record(&bytes), Some(original.clone()));
            assert!(bytes.len() < 160, "{} bytes", bytes.len());
        }
        assert_eq!(decode_record(&[]), None);
        assert_eq!(decode_record(&[9, 0, 0]), None);
        let bytes = encode_record(&record("x", None));
        for cut in 0..bytes.len() {
            assert_eq!(decode_record(&bytes[..cut]), None, "truncated at {cut}");
        }
    }

    #[test]
    fn a_held_store_is_told_from_other_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let holder = SledStore::try_open(&path, LOCK_WAIT).unwrap();
        // Held for the whole wait: `Held`, after the wait and not before.
        let started = std::time::Instant::now();
        let wait = std::time::Duration::from_millis(300);
        let held = SledStore::try_open(&path, wait)
            .err()
            .expect("the store is held");
        assert!(held.held(), "{held}");
        assert!(started.elapsed() >= wait);
        assert!(held.to_string().contains("held by another"), "{held}");
        // Released during the wait: opened.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(holder);
        });
        let reopened = SledStore::try_open(&path, LOCK_WAIT);
        releaser.join().unwrap();
        assert!(reopened.is_ok(), "{:?}", reopened.err());
        drop(reopened);
        // Not a lock: a file where the store's directory should be.
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let failed = SledStore::try_open(&not_a_dir, wait)
            .err()
            .expect("not a store");
        assert!(!failed.held(), "{failed}");
    }

    #[test]
    fn every_object_and_state_value_is_handed_over_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let keys = [
            ("111122223333", "b", "AWSLogs/1/a.json.gz"),
            ("111122223333", "other", "AWSLogs/1/b.json.gz"),
            ("444455556666", "b", "prefix/with\u{0}nul/and/slashes"),
        ];
        for (account, bucket, key) in keys {
            let source = SourceRef {
                account_id: account.into(),
                bucket: bucket.into(),
                key: key.into(),
            };
            store
                .record_object(&source, &super::tests::record("e", None))
                .unwrap();
        }
        let mut seen = Vec::new();
        store
            .for_each_object(&mut |source, record| {
                assert_eq!(record.etag, "e");
                seen.push((source.account_id, source.bucket, source.key));
            })
            .unwrap();
        let expected: Vec<_> = keys
            .iter()
            .map(|(a, b, k)| (a.to_string(), b.to_string(), k.to_string()))
            .collect();
        assert_eq!(seen, expected, "a NUL in a key stays in the key");
        store.put_state("validated/x/1", b"one").unwrap();
        store.put_state("validated/y/2", b"two").unwrap();
        store.put_state("chain/z", b"no").unwrap();
        let mut states = Vec::new();
        store
            .for_each_state_under("validated/", &mut |name, value| {
                states.push((name.to_string(), value.to_vec()));
            })
            .unwrap();
        assert_eq!(
            states,
            vec![
                ("validated/x/1".to_string(), b"one".to_vec()),
                ("validated/y/2".to_string(), b"two".to_vec()),
            ]
        );
    }

    #[test]
    fn store_survives_reopen_and_dedups_findings() {
        let dir = tempfile::tempdir().unwrap();
        let source = SourceRef {
            account_id: "111122223333".into(),
            bucket: "b".into(),
            key: "AWSLogs/111122223333/CloudTrail/x".into(),
        };
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .record_object(
                    &source,
                    &record("d41d8cd98f00b204e9800998ecf8427e", Some([1; 32])),
                )
                .unwrap();
            let first = store
                .record_finding(Finding::new(
                    FindingKind::DigestMissing,
                    "111122223333",
                    "b",
                    "k",
                    "gone".into(),
                ))
                .unwrap();
            assert!(first.new);
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            store.object(&source).unwrap().map(|r| r.etag),
            Some("d41d8cd98f00b204e9800998ecf8427e".to_string())
        );
        let again = store
            .record_finding(Finding::new(
                FindingKind::DigestMissing,
                "111122223333",
                "b",
                "k",
                "still gone".into(),
            ))
            .unwrap();
        assert!(!again.new);
        assert_eq!(store.findings().unwrap().len(), 1);
        assert!(again.is_open());
        let at = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        assert!(store.acknowledge_finding(&again, at).unwrap());
        assert!(
            !store.acknowledge_finding(&again, at).unwrap(),
            "already acknowledged"
        );
        let found_again = store.record_finding(again.clone()).unwrap();
        assert_eq!(
            found_again.acknowledged_at,
            Some(at),
            "found again, it stays acknowledged"
        );
        assert_eq!(store.findings().unwrap()[0].acknowledged_at, Some(at));
        let unknown = Finding::new(
            FindingKind::DigestMissing,
            "111122223333",
            "b",
            "other",
            "x".into(),
        );
        assert!(!store.acknowledge_finding(&unknown, at).unwrap());
        let under = store
            .objects_under("111122223333", "b", "AWSLogs/")
            .unwrap();
        assert_eq!(under.len(), 1);
        assert_eq!(under[0].0, source.key);
        assert!(store
            .objects_under("111122223333", "other", "")
            .unwrap()
            .is_empty());
    }
}

#[cfg(test)]
mod announcement_tests {
    use super::*;
    use trailvault_pipeline::model::findings::{AnnouncedTo, FindingKind, Unannounced};

    #[test]
    fn a_finding_recorded_before_a_crash_is_still_unannounced_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let finding = Finding::new(
            FindingKind::LogFileMissing,
            "111122223333",
            "b",
            "k",
            "gone".into(),
        );
        {
            let store = SledStore::open(dir.path()).unwrap();
            assert!(store.record_finding(finding.clone()).unwrap().new);
            store.flush().unwrap();
            // The process dies here: no ledger write, no publish.
        }
        let store = SledStore::open(dir.path()).unwrap();
        let pending = store.unannounced_findings().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].unannounced, Some(Unannounced::ALL));
        assert!(
            !store.record_finding(finding.clone()).unwrap().new,
            "not new, yet still to announce"
        );
        assert!(store.mark_announced(&finding, AnnouncedTo::Ledger).unwrap());
        assert!(store
            .mark_announced(&finding, AnnouncedTo::Notifier)
            .unwrap());
        assert!(store.mark_announced(&finding, AnnouncedTo::Events).unwrap());
        assert!(store.unannounced_findings().unwrap().is_empty());
    }

    /// A record written before the event bus existed, still waiting for its
    /// SNS publication: the event part is to do as well, so a bus configured
    /// later gets it too and nothing it waited for is dropped.
    #[test]
    fn an_unannounced_finding_stored_before_the_event_bus_still_awaits_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let older = r#"{"kind":"digest_missing","severity":"critical","account_id":"111122223333","region":null,"trail":null,"bucket":"b","key":"k","archive_key":null,"detail":"gone","first_seen":"2026-01-01T00:00:00Z","new":false,"unannounced":{"ledger":false,"publish":true}}"#;
        store.findings.insert("older", older.as_bytes()).unwrap();
        let pending = store.unannounced_findings().unwrap();
        assert_eq!(pending.len(), 1);
        assert!(pending[0].awaits(AnnouncedTo::Notifier));
        assert!(pending[0].awaits(AnnouncedTo::Events));
        assert!(!pending[0].awaits(AnnouncedTo::Ledger));
    }

    #[test]
    fn a_finding_stored_by_an_earlier_version_counts_as_announced() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let older = r#"{"kind":"digest_missing","severity":"critical","account_id":"111122223333","region":null,"trail":null,"bucket":"b","key":"k","archive_key":null,"detail":"gone","first_seen":"2026-01-01T00:00:00Z","new":false}"#;
        store.findings.insert("older", older.as_bytes()).unwrap();
        assert_eq!(store.findings().unwrap().len(), 1);
        assert!(store.unannounced_findings().unwrap().is_empty());
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Realistic keys and records: per-account trail files of 4 accounts, 3
    /// regions, 7 days, logs every ~5 minutes and hourly digests.
    fn populate(store: &SledStore, count: usize) {
        let mut n = 0usize;
        'outer: for account in 0..4u64 {
            let account_id = format!("{}", 222_222_222_201u64 + account);
            let bucket = format!("aws-cloudtrail-logs-{account_id}");
            for region in ["us-east-1", "eu-west-1", "ap-northeast-1"] {
                for day in 1..=7u32 {
                    for minute in (0..1440u32).step_by(5) {
                        let (hour, min) = (minute / 60, minute % 60);
                        let key = if min == 0 {
                            format!("AWSLogs/{account_id}/CloudTrail-Digest/{region}/2026/11/{day:02}/{account_id}_CloudTrail-Digest_{region}_management-events_us-east-1_202611{day:02}T{hour:02}1523Z.json.gz")
                        } else {
                            format!("AWSLogs/{account_id}/CloudTrail/{region}/2026/11/{day:02}/{account_id}_CloudTrail_{region}_202611{day:02}T{hour:02}{min:02}Z_{:016X}.json.gz", n * 7919)
                        };
                        let source = SourceRef {
                            account_id: account_id.clone(),
                            bucket: bucket.clone(),
                            key,
                        };
                        let mut raw = [0u8; 32];
                        raw[..8].copy_from_slice(&(n as u64).to_be_bytes());
                        let record = ObjectRecord {
                            v: 1,
                            etag: format!("{:032x}", n as u128 * 0x9e37_79b9_7f4a_7c15),
                            size: 4000 + n as u64,
                            raw_sha256: raw,
                            content_sha256: Some([n as u8; 32]),
                            content_error: None,
                            archive_version_id: Some(format!(
                                "3HL4kqtJlcpXroDTDmJ+rmSpXd3dI{n:08}"
                            )),
                            copied_at: 1_790_000_000 + n as i64,
                        };
                        store.record_object(&source, &record).unwrap();
                        n += 1;
                        if n == count {
                            break 'outer;
                        }
                    }
                }
            }
        }
        store.flush().unwrap();
    }

    fn dir_size(path: &Path) -> u64 {
        let mut total = 0;
        for entry in std::fs::read_dir(path).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            total += if meta.is_dir() {
                dir_size(&entry.path())
            } else {
                meta.len()
            };
        }
        total
    }

    #[test]
    fn fresh_folders_survive_a_reopen_and_a_new_handle_marks_again() {
        let dir = tempfile::tempdir().unwrap();
        let folder = "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/03/01/";
        let source = |name: &str| SourceRef {
            account_id: "111122223333".into(),
            bucket: "b".into(),
            key: format!("{folder}{name}"),
        };
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .record_object(&source("a"), &super::tests::record("e", None))
                .unwrap();
            store.flush().unwrap();
        }
        let fresh = {
            let store = SledStore::open(dir.path()).unwrap();
            let fresh = store.fresh_folders("111122223333", "b").unwrap();
            assert_eq!(fresh.len(), 1);
            assert_eq!(fresh[0].folder, folder);
            // A record by a new handle, after the read: a new mark.
            store
                .record_object(&source("b"), &super::tests::record("e", None))
                .unwrap();
            store.settle_folder("111122223333", "b", &fresh[0]).unwrap();
            assert_eq!(store.fresh_folders("111122223333", "b").unwrap().len(), 1);
            store.flush().unwrap();
            store.fresh_folders("111122223333", "b").unwrap()
        };
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.fresh_folders("111122223333", "b").unwrap(), fresh);
        store.settle_folder("111122223333", "b", &fresh[0]).unwrap();
        assert!(store.fresh_folders("111122223333", "b").unwrap().is_empty());
    }

    #[test]
    fn the_store_stays_under_512_bytes_per_object() {
        let dir = tempfile::tempdir().unwrap();
        let count = 20_000;
        {
            let store = SledStore::open(dir.path()).unwrap();
            populate(&store, count);
            assert_eq!(store.object_count(), count);
        }
        let per_object = dir_size(dir.path()) / count as u64;
        eprintln!("store: {per_object} bytes per object on disk");
        assert!(per_object < 512, "{per_object} bytes per object");
    }
}
