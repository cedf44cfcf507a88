//! `status [--json]`: last runs, per-account lag, chain heads, open findings.
//! Reads the store, or the snapshot the last run wrote when a running
//! trailvault holds the store. Always exit 0 once the config is valid
//! (status is informational), 1 when nothing can be read.

use trailvault_config::Config;
use trailvault_pipeline::jobs::status::{self as job, StoreAccess};
use trailvault_pipeline::model::report::exit;

use crate::output::status::print_status;
use crate::wiring;

pub fn status(config: &Config, json: bool) -> i32 {
    let now = chrono::Utc::now();
    let path = &config.store.path;
    let ids = &crate::settings::configured_accounts(config);
    let view = if !path.exists() {
        // Never run: show the empty status without creating a store.
        job::status(StoreAccess::NeverRun, path, ids, now)
    } else {
        match wiring::open_store(config) {
            Ok(store) => job::status(StoreAccess::Open(store.as_ref()), path, ids, now),
            Err(error) => job::status(
                StoreAccess::Held {
                    error: error.to_string(),
                },
                path,
                ids,
                now,
            ),
        }
    };
    match view {
        Ok(view) => print_status(&view, json),
        Err(message) => {
            eprintln!("trailvault: {message}");
            exit::OPERATIONAL_ERRORS
        }
    }
}
