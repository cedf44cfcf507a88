//! `report [--html FILE] [--days N] [--json]`: the coverage report, read
//! from the progress store: written as a self-contained HTML page, printed
//! as JSON, or summed up in a few lines. Exit 0 once written; 1 when the
//! store or the file cannot be used.

use std::path::Path;

use trailvault_config::Config;
use trailvault_pipeline::jobs::report::{self as job, ReportRequest};
use trailvault_pipeline::model::report::exit;

use crate::output::report_html;
use crate::output::stdout;
use crate::wiring;

pub fn report(config: &Config, html: Option<&Path>, days: u32, json: bool) -> i32 {
    let path = &config.store.path;
    if !path.exists() {
        eprintln!(
            "trailvault: no progress store at {}: nothing was collected yet",
            path.display()
        );
        return exit::OPERATIONAL_ERRORS;
    }
    let store = match wiring::open_store(config) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("trailvault: {error} (the report reads the whole store: stop a running trailvault first)");
            return exit::OPERATIONAL_ERRORS;
        }
    };
    let request = ReportRequest {
        days,
        archive_bucket: config.archive.bucket.clone(),
        configured_accounts: crate::settings::configured_accounts(config),
    };
    let report = match job::report(store.as_ref(), &request, chrono::Utc::now()) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("trailvault: cannot read the report from the store: {error}");
            return exit::OPERATIONAL_ERRORS;
        }
    };
    if let Some(file) = html {
        if let Err(error) = write_atomically(file, report_html::render(&report).as_bytes()) {
            eprintln!("trailvault: cannot write {}: {error}", file.display());
            return exit::OPERATIONAL_ERRORS;
        }
    }
    if json {
        if !stdout::json(&report, true) {
            return exit::OPERATIONAL_ERRORS;
        }
    } else {
        stdout::text(&crate::output::report_summary(&report, html));
    }
    exit::OK
}

/// Writes `bytes` beside `file`, then renames: a reader never sees half a page.
fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(".tmp");
    let temporary = file.with_file_name(temporary_name);
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, file).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}
