//! The progress store on redb, behind the pipeline's [`ProgressStore`] seam.
//!
//! One file, `progress.redb`, in the store directory the configuration names,
//! with one table per kind of record:
//! - `objects`: `<account>\0<bucket>\0<key>` → compact binary [`ObjectRecord`]
//!   (version byte first; see [`encode_record`]);
//! - `state`: name → bytes (cursors, sweep times, chain heads, cached keys);
//! - `findings`: dedup key → JSON finding;
//! - `fresh`: `<account>\0<bucket>\0<folder>` → mark (u64, big-endian) of the
//!   folders with records validation has not settled yet (one entry per
//!   folder, not per object: written once per folder until validation reads
//!   it, so the store keeps its size per object);
//! - `meta`: the next fresh-folder mark, and the file's length after its last
//!   compaction.
//!
//! Memory: redb's page cache is bounded ([`CACHE_BYTES`]), so a scan of the
//! whole archive's records costs the same memory at 20,000 objects as at
//! 200,000. (sled 0.34, the store before this one, kept ~16k pages resident
//! during a scan whatever its configured cache: its memory grew with the
//! archive up to ~60 MB.) A store written by sled is imported on first open
//! (see [`sled_import`]).
//!
//! Durability: a write commits without fsync unless the last durable commit
//! is [`DURABLE_EVERY`] old, so a crash loses at most that much of the most
//! recent progress (which is redone: a lost record means the object is
//! listed and adopted again); [`ProgressStore::flush`] commits durably where
//! it matters (before the first copy of a run, at its end) and compacts the
//! file once it has grown by a quarter since its last compaction.

mod sled_import;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use tracing::{info, warn};

use trailvault_pipeline::model::findings::Finding;
use trailvault_pipeline::model::object::{ObjectRecord, SourceRef};
use trailvault_pipeline::seams::{FreshFolder, ProgressStore};
use trailvault_pipeline::SeamError;

const RECORD_VERSION: u8 = 1;
const FLAG_CONTENT: u8 = 1;
const FLAG_HEX_ETAG: u8 = 2;

/// Folders whose mark a handle remembers (about 100 bytes each).
const MAX_MARKED_FOLDERS: usize = 50_000;

/// The store's file inside the configured store directory.
pub const FILE_NAME: &str = "progress.redb";

/// redb's page cache (reads and the write buffer together). A lookup per
/// listed key, in key order, and a scan of a source's records both walk the
/// file in order, so a small cache serves them; the kernel's page cache does
/// the rest.
const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// The longest a commit waits to be made durable while writes go on.
const DURABLE_EVERY: Duration = Duration::from_millis(500);

/// The file is compacted at a flush once it is this much larger than after
/// its last compaction (and at least [`COMPACT_FROM_BYTES`]): page splits
/// and the pages of replaced records leave a freshly written file about 2.5×
/// the size of its records. At 1.5× a store that grows a little every run
/// reached 527 bytes per object between compactions (the test
/// `a_store_that_grows_run_after_run_stays_under_512_bytes_per_object`).
const COMPACT_GROWTH: f64 = 1.25;
const COMPACT_FROM_BYTES: u64 = 4 * 1024 * 1024;

type Bytes = TableDefinition<'static, &'static [u8], &'static [u8]>;
const OBJECTS: Bytes = TableDefinition::new("objects");
const STATE: Bytes = TableDefinition::new("state");
const FINDINGS: Bytes = TableDefinition::new("findings");
const FRESH: Bytes = TableDefinition::new("fresh");
const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");
const NEXT_MARK: &str = "next_mark";
const COMPACTED_LEN: &str = "compacted_len";

pub struct RedbStore {
    /// Behind a lock only so that a flush can compact (`&mut`): every other
    /// call holds it shared just long enough to begin its transaction.
    db: RwLock<Database>,
    file: PathBuf,
    /// When a commit was last made durable.
    durable_at: Mutex<Instant>,
    /// Folders marked by this handle: folder key → (mark, handed out by
    /// `fresh_folders` since). A record under a folder marked and not handed
    /// out needs no new mark; one under a handed-out folder gets a new mark,
    /// so that settling the mark that was read keeps the folder fresh. Held
    /// across the whole of `record_object` and `settle_folder`.
    marked: Mutex<std::collections::HashMap<Vec<u8>, (u64, bool)>>,
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

/// How long [`RedbStore::try_open`] waits for a held lock before giving up:
/// long enough for a handle being closed to go, far shorter than a run of
/// another process, which ends the wait with [`OpenFailure::Held`].
pub const LOCK_WAIT: Duration = Duration::from_secs(4);

/// Retries `attempt` while it reports a held lock (`Ok(None)`), until
/// `lock_wait` has passed.
fn wait_for_lock<T>(
    what: &Path,
    lock_wait: Duration,
    mut attempt: impl FnMut() -> Result<Option<T>, OpenFailure>,
) -> Result<T, OpenFailure> {
    let step = Duration::from_millis(40);
    let deadline = Instant::now() + lock_wait;
    loop {
        if let Some(opened) = attempt()? {
            return Ok(opened);
        }
        if Instant::now() >= deadline {
            return Err(OpenFailure::Held(format!(
                "{}: the lock was held for {} ms",
                what.display(),
                lock_wait.as_millis()
            )));
        }
        std::thread::sleep(step);
    }
}

fn open_failed(path: &Path, error: impl std::fmt::Display) -> OpenFailure {
    OpenFailure::Failed(store_error(format!(
        "cannot open {}: {error}",
        path.display()
    )))
}

impl RedbStore {
    pub fn open(path: &Path) -> Result<RedbStore, SeamError> {
        RedbStore::try_open(path, LOCK_WAIT).map_err(SeamError::from)
    }

    /// Opens the store in the directory `path` (created if missing), waiting
    /// up to `lock_wait` while another handle holds it; tells a held store
    /// ([`OpenFailure::Held`]) from every other failure. A directory holding
    /// a store written by sled (trailvault before redb) is imported first.
    pub fn try_open(path: &Path, lock_wait: Duration) -> Result<RedbStore, OpenFailure> {
        std::fs::create_dir_all(path).map_err(|error| open_failed(path, error))?;
        let file = path.join(FILE_NAME);
        if !file.exists() && sled_import::holds_sled_store(path) {
            wait_for_lock(path, lock_wait, || sled_import::import(path, &file))?;
        }
        let db = wait_for_lock(&file, lock_wait, || match open_database(&file) {
            Ok(db) => Ok(Some(db)),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => Ok(None),
            Err(error) => Err(open_failed(&file, error)),
        })?;
        create_tables(&db).map_err(|error| open_failed(&file, error))?;
        Ok(RedbStore {
            db: RwLock::new(db),
            file,
            durable_at: Mutex::new(Instant::now()),
            marked: Mutex::default(),
        })
    }

    pub fn object_count(&self) -> Result<u64, SeamError> {
        let read = self.read()?;
        let table = read.open_table(OBJECTS).map_err(store_error)?;
        table.len().map_err(store_error)
    }

    /// Bytes the store occupies on disk: the blocks allocated to its file.
    /// (redb doubles the file's length when it needs room, up to 4 GiB; the
    /// part not written yet is a hole, which takes no space.)
    pub fn size_on_disk(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.file)
            .map(|m| m.blocks() * 512)
            .unwrap_or(0)
    }

    fn database(&self) -> std::sync::RwLockReadGuard<'_, Database> {
        self.db
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read(&self) -> Result<redb::ReadTransaction, SeamError> {
        self.database().begin_read().map_err(store_error)
    }

    /// Runs `change` in one write transaction and commits it, durably when
    /// the last durable commit is [`DURABLE_EVERY`] old.
    fn write<T>(
        &self,
        change: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, SeamError> {
        self.commit(false, change)
    }

    /// Makes every commit so far durable.
    fn commit_durably(&self) -> Result<(), SeamError> {
        self.commit(true, |_| Ok(()))
    }

    /// Runs `change` in one write transaction and commits it, durably when
    /// `durable` or when the last durable commit is [`DURABLE_EVERY`] old.
    fn commit<T>(
        &self,
        durable: bool,
        change: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, SeamError> {
        let mut write = self.database().begin_write().map_err(store_error)?;
        let out = change(&write).map_err(store_error)?;
        let mut durable_at = self
            .durable_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let durable = durable || durable_at.elapsed() >= DURABLE_EVERY;
        if !durable {
            write
                .set_durability(Durability::None)
                .map_err(store_error)?;
        }
        write.commit().map_err(store_error)?;
        if durable {
            *durable_at = Instant::now();
        }
        Ok(out)
    }

    /// Compacts the file when it has grown by [`COMPACT_GROWTH`] since its
    /// last compaction. Skipped (not an error) while a transaction of
    /// another task is open: the next flush tries again.
    fn compact_if_grown(&self) -> Result<(), SeamError> {
        let len = self.size_on_disk();
        if len < COMPACT_FROM_BYTES {
            return Ok(());
        }
        let last = {
            let read = self.read()?;
            let meta = read.open_table(META).map_err(store_error)?;
            let last = meta.get(COMPACTED_LEN).map_err(store_error)?;
            last.map(|v| v.value()).unwrap_or(0)
        };
        if (len as f64) < last as f64 * COMPACT_GROWTH {
            return Ok(());
        }
        let started = Instant::now();
        {
            let mut db = self
                .db
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match db.compact(redb::CompactionMode::Maximum) {
                Ok(_) => {}
                Err(redb::CompactionError::TransactionInProgress) => return Ok(()),
                Err(error) => return Err(store_error(format!("compacting: {error}"))),
            }
        }
        let compacted = self.size_on_disk();
        self.commit(true, |write| {
            write.open_table(META)?.insert(COMPACTED_LEN, compacted)?;
            Ok(())
        })?;
        info!(
            before = len,
            after = compacted,
            ms = started.elapsed().as_millis() as u64,
            "progress store compacted"
        );
        Ok(())
    }

    /// Visits the entries of `table` from `start` while their keys start with
    /// `prefix`, until `visit` returns false.
    fn scan(
        &self,
        table: Bytes,
        prefix: &[u8],
        start: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), SeamError> {
        let read = self.read()?;
        let table = read.open_table(table).map_err(store_error)?;
        for entry in table.range(start..).map_err(store_error)? {
            let (key, value) = entry.map_err(store_error)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            if !visit(key, value.value()) {
                break;
            }
        }
        Ok(())
    }

    /// Reads the value under `key` in place (no copy of it is made).
    fn get<T>(
        &self,
        table: Bytes,
        key: &[u8],
        read_value: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>, SeamError> {
        let read = self.read()?;
        let table = read.open_table(table).map_err(store_error)?;
        let value = table.get(key).map_err(store_error)?;
        Ok(value.map(|v| read_value(v.value())))
    }

    fn put(&self, table: Bytes, key: &[u8], value: &[u8]) -> Result<(), SeamError> {
        self.write(|write| {
            write.open_table(table)?.insert(key, value)?;
            Ok(())
        })
    }
}

fn open_database(file: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(CACHE_BYTES).create(file)
}

fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let write = db.begin_write()?;
    for table in [OBJECTS, STATE, FINDINGS, FRESH] {
        write.open_table(table)?;
    }
    write.open_table(META)?;
    write.commit()?;
    Ok(())
}

impl ProgressStore for RedbStore {
    fn object(&self, source: &SourceRef) -> Result<Option<ObjectRecord>, SeamError> {
        let key = object_key(&source.account_id, &source.bucket, &source.key);
        Ok(self.get(OBJECTS, &key, decode_record)?.flatten())
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
        let needs_mark = !matches!(marked.get(&folder), Some((_, false)));
        // The record and its folder's mark in one transaction: a record is
        // never stored without its folder's mark.
        let mark = self.write(|write| {
            let mark = if needs_mark {
                let mut meta = write.open_table(META)?;
                let mark = meta.get(NEXT_MARK)?.map(|v| v.value()).unwrap_or(1);
                meta.insert(NEXT_MARK, mark + 1)?;
                write
                    .open_table(FRESH)?
                    .insert(folder.as_slice(), &mark.to_be_bytes()[..])?;
                Some(mark)
            } else {
                None
            };
            write
                .open_table(OBJECTS)?
                .insert(key.as_slice(), encode_record(record).as_slice())?;
            Ok(mark)
        })?;
        if let Some(mark) = mark {
            // A long-lived process that never validates must not grow the
            // cache without bound: forgetting it only costs new marks.
            if marked.len() >= MAX_MARKED_FOLDERS {
                marked.clear();
            }
            marked.insert(folder, (mark, false));
        }
        Ok(())
    }

    fn fresh_folders(&self, account_id: &str, bucket: &str) -> Result<Vec<FreshFolder>, SeamError> {
        let prefix = object_key(account_id, bucket, "");
        let mut marked = self
            .marked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = Vec::new();
        self.scan(FRESH, &prefix, &prefix, &mut |key, value| {
            let folder = key
                .get(prefix.len()..)
                .and_then(|k| std::str::from_utf8(k).ok());
            let mark = <[u8; 8]>::try_from(value).ok().map(u64::from_be_bytes);
            if let (Some(folder), Some(mark)) = (folder, mark) {
                if let Some(entry) = marked.get_mut(key) {
                    entry.1 = true;
                }
                out.push(FreshFolder {
                    folder: folder.to_string(),
                    mark,
                });
            }
            true
        })?;
        Ok(out)
    }

    fn settle_folder(
        &self,
        account_id: &str,
        bucket: &str,
        fresh: &FreshFolder,
    ) -> Result<(), SeamError> {
        let key = object_key(account_id, bucket, &fresh.folder);
        let mut marked = self
            .marked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Removed only while it still holds the mark that was read: a record
        // stored since then gave the folder a new mark and keeps it fresh.
        let settled = self.write(|write| {
            let mut table = write.open_table(FRESH)?;
            let current = table.get(key.as_slice())?.map(|v| v.value().to_vec());
            if current.as_deref() == Some(&fresh.mark.to_be_bytes()[..]) {
                table.remove(key.as_slice())?;
                return Ok(true);
            }
            Ok(false)
        })?;
        if settled {
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
        self.scan(OBJECTS, &prefix, &start, &mut |key, value| {
            let record = decode_record(value);
            let source_key = key.get(skip..).and_then(|k| std::str::from_utf8(k).ok());
            match (source_key, record) {
                (Some(source_key), Some(record)) => visit(source_key, record),
                _ => true,
            }
        })
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
        self.scan(OBJECTS, b"", b"", &mut |key, value| {
            let Some(record) = decode_record(value) else {
                return true;
            };
            // `<account>\0<bucket>\0<key>`, as `object_key` writes it.
            let mut parts = key.splitn(3, |&b| b == 0);
            let (Some(account), Some(bucket), Some(source_key)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return true;
            };
            if let (Ok(account), Ok(bucket), Ok(source_key)) = (
                std::str::from_utf8(account),
                std::str::from_utf8(bucket),
                std::str::from_utf8(source_key),
            ) {
                visit(
                    SourceRef {
                        account_id: account.to_string(),
                        bucket: bucket.to_string(),
                        key: source_key.to_string(),
                    },
                    record,
                );
            }
            true
        })
    }

    fn for_each_state_under(
        &self,
        prefix: &str,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Result<(), SeamError> {
        let prefix = prefix.as_bytes();
        self.scan(STATE, prefix, prefix, &mut |key, value| {
            visit(&String::from_utf8_lossy(key), value);
            true
        })
    }

    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>, SeamError> {
        self.get(STATE, name.as_bytes(), <[u8]>::to_vec)
    }

    fn put_state(&self, name: &str, value: &[u8]) -> Result<(), SeamError> {
        self.put(STATE, name.as_bytes(), value)
    }

    fn state_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, SeamError> {
        let mut out = Vec::new();
        self.for_each_state_under(prefix, &mut |name, value| {
            out.push((name.to_string(), value.to_vec()));
        })?;
        Ok(out)
    }

    fn finding(&self, identity: &str) -> Result<Option<Finding>, SeamError> {
        let read = self.get(FINDINGS, identity.as_bytes(), |bytes| {
            serde_json::from_slice::<Finding>(bytes)
        })?;
        match read {
            None => Ok(None),
            Some(Ok(finding)) => Ok(Some(finding)),
            Some(Err(error)) => {
                warn!(identity, %error, "unreadable finding record; recording the finding again");
                Ok(None)
            }
        }
    }

    fn put_finding(&self, identity: &str, finding: &Finding) -> Result<(), SeamError> {
        let bytes = serde_json::to_vec(finding).map_err(store_error)?;
        self.put(FINDINGS, identity.as_bytes(), &bytes)
    }

    fn for_each_finding(&self, visit: &mut dyn FnMut(Finding)) -> Result<(), SeamError> {
        self.scan(FINDINGS, b"", b"", &mut |_, value| {
            if let Ok(finding) = serde_json::from_slice::<Finding>(value) {
                visit(finding);
            }
            true
        })
    }

    fn flush(&self) -> Result<(), SeamError> {
        self.commit_durably()?;
        self.compact_if_grown()
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
        let holder = RedbStore::try_open(&path, LOCK_WAIT).unwrap();
        // Held for the whole wait: `Held`, after the wait and not before.
        let started = std::time::Instant::now();
        let wait = std::time::Duration::from_millis(300);
        let held = RedbStore::try_open(&path, wait)
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
        let reopened = RedbStore::try_open(&path, LOCK_WAIT);
        releaser.join().unwrap();
        assert!(reopened.is_ok(), "{:?}", reopened.err());
        drop(reopened);
        // Not a lock: a file where the store's directory should be.
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let failed = RedbStore::try_open(&not_a_dir, wait)
            .err()
            .expect("not a store");
        assert!(!failed.held(), "{failed}");
    }

    #[test]
    fn every_object_and_state_value_is_handed_over_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
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
            let store = RedbStore::open(dir.path()).unwrap();
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
        let store = RedbStore::open(dir.path()).unwrap();
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
            let store = RedbStore::open(dir.path()).unwrap();
            assert!(store.record_finding(finding.clone()).unwrap().new);
            store.flush().unwrap();
            // The process dies here: no ledger write, no publish.
        }
        let store = RedbStore::open(dir.path()).unwrap();
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
        let store = RedbStore::open(dir.path()).unwrap();
        let older = r#"{"kind":"digest_missing","severity":"critical","account_id":"111122223333","region":null,"trail":null,"bucket":"b","key":"k","archive_key":null,"detail":"gone","first_seen":"2026-01-01T00:00:00Z","new":false,"unannounced":{"ledger":false,"publish":true}}"#;
        store.put(FINDINGS, b"older", older.as_bytes()).unwrap();
        let pending = store.unannounced_findings().unwrap();
        assert_eq!(pending.len(), 1);
        assert!(pending[0].awaits(AnnouncedTo::Notifier));
        assert!(pending[0].awaits(AnnouncedTo::Events));
        assert!(!pending[0].awaits(AnnouncedTo::Ledger));
    }

    #[test]
    fn a_finding_stored_by_an_earlier_version_counts_as_announced() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let older = r#"{"kind":"digest_missing","severity":"critical","account_id":"111122223333","region":null,"trail":null,"bucket":"b","key":"k","archive_key":null,"detail":"gone","first_seen":"2026-01-01T00:00:00Z","new":false}"#;
        store.put(FINDINGS, b"older", older.as_bytes()).unwrap();
        assert_eq!(store.findings().unwrap().len(), 1);
        assert!(store.unannounced_findings().unwrap().is_empty());
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Realistic keys and records: per-account trail files of 4 accounts, 3
    /// regions, 7 days, logs every ~5 minutes and hourly digests.
    fn populate(store: &RedbStore, count: usize) {
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
            // Allocated blocks, as `du` counts them: the file's unwritten
            // tail is a hole.
            total += if meta.is_dir() {
                dir_size(&entry.path())
            } else {
                std::os::unix::fs::MetadataExt::blocks(&meta) * 512
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
            let store = RedbStore::open(dir.path()).unwrap();
            store
                .record_object(&source("a"), &super::tests::record("e", None))
                .unwrap();
            store.flush().unwrap();
        }
        let fresh = {
            let store = RedbStore::open(dir.path()).unwrap();
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
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(store.fresh_folders("111122223333", "b").unwrap(), fresh);
        store.settle_folder("111122223333", "b", &fresh[0]).unwrap();
        assert!(store.fresh_folders("111122223333", "b").unwrap().is_empty());
    }

    #[test]
    fn the_store_stays_under_512_bytes_per_object() {
        let dir = tempfile::tempdir().unwrap();
        let count = 20_000;
        {
            let store = RedbStore::open(dir.path()).unwrap();
            populate(&store, count);
            assert_eq!(store.object_count().unwrap(), count as u64);
        }
        let per_object = dir_size(dir.path()) / count as u64;
        eprintln!("store: {per_object} bytes per object on disk");
        assert!(per_object < 512, "{per_object} bytes per object");
    }

    /// Runs after the first: each adds a little and flushes. The file is
    /// compacted again before the pages written since the last compaction
    /// take it past 512 bytes per object.
    #[test]
    fn a_store_that_grows_run_after_run_stays_under_512_bytes_per_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        populate(&store, 20_000);
        let mut worst = 0;
        for run in 1..=12u64 {
            // New files, and records written again (a re-copy, a new
            // version adopted): the pages they replace are garbage until
            // a compaction.
            for n in 0..500u64 {
                let source = SourceRef {
                    account_id: "222222222299".into(),
                    bucket: "aws-cloudtrail-logs-222222222299".into(),
                    key: format!("AWSLogs/222222222299/CloudTrail/us-east-1/2026/12/{run:02}/222222222299_CloudTrail_us-east-1_202612{run:02}T{:02}{:02}Z_{:016X}.json.gz", n / 60 % 24, n % 60, n * 7919),
                };
                let mut record =
                    super::tests::record("d41d8cd98f00b204e9800998ecf8427e", Some([n as u8; 32]));
                record.copied_at += run as i64;
                store.record_object(&source, &record).unwrap();
            }
            let mut rewritten = Vec::new();
            store
                .for_each_object(&mut |source, mut record| {
                    if rewritten.len() < 4_000 {
                        record.copied_at += 1;
                        rewritten.push((source, record));
                    }
                })
                .unwrap();
            for (source, record) in rewritten {
                store.record_object(&source, &record).unwrap();
            }
            store.flush().unwrap();
            let objects = store.object_count().unwrap();
            worst = worst.max(store.size_on_disk() / objects);
        }
        eprintln!("store: at most {worst} bytes per object after a flush");
        assert!(worst < 512, "{worst} bytes per object");
    }
}
