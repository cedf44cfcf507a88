//! The pipeline's store conformance suite, run against the sled store: the
//! same checks the in-memory twin passes.

use trailvault_infra::store::SledStore;
use trailvault_pipeline::seams::ProgressStore;
use trailvault_pipeline::testsuite::conformance::StoreFixture;

/// A sled store in its own temporary directory, removed after the test.
struct FreshSled {
    store: SledStore,
    _dir: tempfile::TempDir,
}

impl StoreFixture for FreshSled {
    fn store(&self) -> &dyn ProgressStore {
        &self.store
    }
}

fn fresh() -> FreshSled {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(&dir.path().join("store")).expect("open sled store");
    FreshSled { store, _dir: dir }
}

trailvault_pipeline::store_conformance_tests!(fresh());
