//! The pipeline's store conformance suite, run against the redb store: the
//! same checks the in-memory twin passes.

use trailvault_infra::store::RedbStore;
use trailvault_pipeline::seams::ProgressStore;
use trailvault_pipeline::testsuite::conformance::StoreFixture;

/// A redb store in its own temporary directory, removed after the test.
struct FreshRedb {
    store: RedbStore,
    _dir: tempfile::TempDir,
}

impl StoreFixture for FreshRedb {
    fn store(&self) -> &dyn ProgressStore {
        &self.store
    }
}

fn fresh() -> FreshRedb {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = RedbStore::open(&dir.path().join("store")).expect("open redb store");
    FreshRedb { store, _dir: dir }
}

trailvault_pipeline::store_conformance_tests!(fresh());
