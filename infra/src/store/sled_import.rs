//! Imports a progress store written by sled (trailvault's store before
//! redb) into a new redb file, once, on the first open by this version.
//!
//! Every record is kept: object records, state (cursors, chain heads, run
//! history, cached keys), findings with their acknowledgement and
//! announcement, and fresh-folder marks. The new file is written beside the
//! old store under a temporary name and renamed into place only when
//! complete, so a crash during the import leaves the sled store as it was and
//! the next open imports again. The sled files are left in place (a rollback
//! to the previous version still finds its store); once the new version has
//! run, `conf`, `db`, `snap.*` and `blobs/` in the store directory can be
//! deleted.

use std::path::Path;

use redb::Database;
use tracing::info;

use super::{
    create_tables, open_failed, OpenFailure, FINDINGS, FRESH, META, NEXT_MARK, OBJECTS, STATE,
};

/// Entries per write transaction: bounds the memory the import holds.
const BATCH: usize = 5_000;

/// sled 0.34 keeps its configuration in `conf` and its log in `db`.
pub(super) fn holds_sled_store(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

/// The configuration trailvault wrote its sled stores with.
fn written_with(dir: &Path) -> sled::Config {
    sled::Config::new()
        .path(dir)
        .cache_capacity(2 * 1024 * 1024)
        .mode(sled::Mode::LowSpace)
        .use_compression(true)
        .compression_factor(1)
}

/// `Ok(None)` while another process holds the sled store (it is importing
/// it, or it is an older trailvault still running).
pub(super) fn import(dir: &Path, file: &Path) -> Result<Option<()>, OpenFailure> {
    let old = match written_with(dir).open() {
        Ok(old) => old,
        Err(error) if is_lock_contention(&error) => return Ok(None),
        Err(error) => return Err(open_failed(dir, format!("reading the sled store: {error}"))),
    };
    // Another process may have finished the import while this one waited.
    if file.exists() {
        return Ok(Some(()));
    }
    let partial = file.with_extension("redb.importing");
    let _ = std::fs::remove_file(&partial);
    let started = std::time::Instant::now();
    let copied = copy_all(&old, &partial).map_err(|error| {
        let _ = std::fs::remove_file(&partial);
        open_failed(dir, format!("importing the sled store: {error}"))
    })?;
    std::fs::rename(&partial, file).map_err(|error| open_failed(file, error))?;
    info!(
        store = %dir.display(),
        records = copied,
        ms = started.elapsed().as_millis() as u64,
        "imported the sled progress store into {}; sled's files (conf, db, snap.*, blobs) can be deleted",
        super::FILE_NAME
    );
    Ok(Some(()))
}

fn copy_all(old: &sled::Db, partial: &Path) -> Result<usize, String> {
    let new = Database::builder()
        .set_cache_size(super::CACHE_BYTES)
        .create(partial)
        .map_err(|e| e.to_string())?;
    create_tables(&new).map_err(|e| e.to_string())?;
    let mut copied = 0;
    for (name, table) in [
        ("objects", OBJECTS),
        ("state", STATE),
        ("findings", FINDINGS),
        ("fresh", FRESH),
    ] {
        let tree = old.open_tree(name).map_err(|e| e.to_string())?;
        let mut entries = tree.iter();
        loop {
            let write = new.begin_write().map_err(|e| e.to_string())?;
            let mut batch = 0;
            {
                let mut table = write.open_table(table).map_err(|e| e.to_string())?;
                for entry in entries.by_ref() {
                    let (key, value) = entry.map_err(|e| e.to_string())?;
                    table
                        .insert(key.as_ref(), value.as_ref())
                        .map_err(|e| e.to_string())?;
                    batch += 1;
                    if batch == BATCH {
                        break;
                    }
                }
            }
            write.commit().map_err(|e| e.to_string())?;
            copied += batch;
            if batch < BATCH {
                break;
            }
        }
    }
    // sled's ids are above every mark it handed out: new marks start there.
    let next_mark = old.generate_id().map_err(|e| e.to_string())? + 1;
    let write = new.begin_write().map_err(|e| e.to_string())?;
    {
        let mut meta = write.open_table(META).map_err(|e| e.to_string())?;
        meta.insert(NEXT_MARK, next_mark)
            .map_err(|e| e.to_string())?;
    }
    write.commit().map_err(|e| e.to_string())?;
    Ok(copied)
}

/// sled 0.34 reports a held lock as an `Other` I/O error whose text says
/// "could not acquire lock" (with the OS error `WouldBlock` inside it).
fn is_lock_contention(error: &sled::Error) -> bool {
    match error {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode_record, object_key, RedbStore, FILE_NAME};
    use trailvault_pipeline::model::findings::{Finding, FindingKind};
    use trailvault_pipeline::model::object::SourceRef;
    use trailvault_pipeline::seams::ProgressStore;

    fn source(name: &str) -> SourceRef {
        SourceRef {
            account_id: "111122223333".into(),
            bucket: "b".into(),
            key: format!("AWSLogs/111122223333/CloudTrail/eu-west-1/2026/03/01/{name}"),
        }
    }

    /// A store as trailvault wrote it with sled: trees `objects`, `state`,
    /// `findings` and `fresh`, marks from sled's id generator.
    fn write_sled_store(dir: &std::path::Path, objects: usize) -> (Finding, u64) {
        let db = super::written_with(dir).open().unwrap();
        let tree = db.open_tree("objects").unwrap();
        for n in 0..objects {
            let s = source(&format!("{n:06}.json.gz"));
            let record = super::super::tests::record(
                "d41d8cd98f00b204e9800998ecf8427e",
                Some([n as u8; 32]),
            );
            tree.insert(
                object_key(&s.account_id, &s.bucket, &s.key),
                encode_record(&record),
            )
            .unwrap();
        }
        db.open_tree("state")
            .unwrap()
            .insert("chain/x", &b"head"[..])
            .unwrap();
        let mut finding = Finding::new(
            FindingKind::DigestMissing,
            "111122223333",
            "b",
            "k",
            "gone".into(),
        );
        finding.new = false;
        db.open_tree("findings")
            .unwrap()
            .insert(b"the-identity", serde_json::to_vec(&finding).unwrap())
            .unwrap();
        let mark = db.generate_id().unwrap();
        let folder = object_key(
            "111122223333",
            "b",
            trailvault_pipeline::seams::key_folder(&source("x").key),
        );
        db.open_tree("fresh")
            .unwrap()
            .insert(folder, &mark.to_be_bytes()[..])
            .unwrap();
        db.flush().unwrap();
        (finding, mark)
    }

    #[test]
    fn a_sled_store_is_imported_whole_on_first_open() {
        let dir = tempfile::tempdir().unwrap();
        let (finding, old_mark) = write_sled_store(dir.path(), 12_345);
        let store = RedbStore::open(dir.path()).unwrap();
        assert!(dir.path().join(FILE_NAME).is_file());
        assert!(
            dir.path().join("db").is_file(),
            "sled's files are left for a rollback"
        );
        assert_eq!(store.object_count().unwrap(), 12_345);
        let record = store.object(&source("012344.json.gz")).unwrap().unwrap();
        assert_eq!(record.content_sha256, Some([(12_344 % 256) as u8; 32]));
        assert_eq!(store.get_state("chain/x").unwrap(), Some(b"head".to_vec()));
        assert_eq!(store.findings().unwrap(), vec![finding]);
        let fresh = store.fresh_folders("111122223333", "b").unwrap();
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].mark, old_mark);
        // A record stored after the read gets a mark sled never handed out,
        // so settling the old one keeps the folder fresh.
        store
            .record_object(
                &source("new.json.gz"),
                &super::super::tests::record("e", None),
            )
            .unwrap();
        store.settle_folder("111122223333", "b", &fresh[0]).unwrap();
        let after = store.fresh_folders("111122223333", "b").unwrap();
        assert_eq!(after.len(), 1);
        assert!(after[0].mark > old_mark);
        drop(store);
        // Imported once: a second open reads the redb file, not sled's.
        std::fs::remove_file(dir.path().join("db")).unwrap();
        let again = RedbStore::open(dir.path()).unwrap();
        assert_eq!(again.object_count().unwrap(), 12_346);
    }

    #[test]
    fn an_import_cut_short_leaves_the_sled_store_to_import_again() {
        let dir = tempfile::tempdir().unwrap();
        write_sled_store(dir.path(), 10);
        // What a crash mid-import leaves: the partial file, no store file.
        let partial = dir.path().join(FILE_NAME).with_extension("redb.importing");
        std::fs::write(&partial, b"half a file").unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(store.object_count().unwrap(), 10);
        assert!(!partial.exists());
    }

    #[test]
    fn a_damaged_sled_store_is_an_open_failure_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("conf"), b"not sled's configuration").unwrap();
        std::fs::write(dir.path().join("db"), b"not sled's log").unwrap();
        let failed = RedbStore::try_open(dir.path(), std::time::Duration::from_millis(100))
            .err()
            .expect("a damaged store does not open as an empty one");
        assert!(!failed.held(), "{failed}");
        assert!(failed.to_string().contains("sled"), "{failed}");
        assert!(!dir.path().join(FILE_NAME).exists());
    }
}
