//! `backfill --since DATE [--until DATE]`: collects a historical date range,
//! resumable.

use std::path::PathBuf;

use trailvault_config::Config;
use trailvault_pipeline::jobs::collect::{backfill_window, CollectRequest};
use trailvault_pipeline::model::report::exit;

use super::collect::run_collect;
use crate::cli::Scope;

pub async fn backfill(
    config: &Config,
    scope: &Scope,
    keys: Option<PathBuf>,
    since: &str,
    until: Option<&str>,
    json: bool,
) -> i32 {
    let window = match backfill_window(since, until, chrono::Utc::now().date_naive()) {
        Ok(window) => window,
        Err(message) => {
            eprintln!("trailvault: {message}");
            return exit::USAGE;
        }
    };
    let request = CollectRequest {
        window,
        scope: scope.to_job(),
        allow_unlocked: false,
        verify: true,
        keys_file: keys,
    };
    run_collect(config, &request, json).await
}
