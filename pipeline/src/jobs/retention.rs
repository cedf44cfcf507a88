//! The retention job: checks (and extends) every archived version's Object
//! Lock and the bucket's settings; with `source_retention_days`, also plans
//! (and deletes) expired source files, but only when this run confirmed that
//! the archive is locked down.

use chrono::Utc;
use tracing::info;

use crate::ledger;
use crate::model::report::{OperationError, Report};
use crate::retention::expiry::{self, ExpiryOutcome, ExpiryScope, ExpirySettings};
use crate::retention::{self, LockConfirmed, RetentionOutcome, RetentionSettings};

use super::sources::{self, Scope};
use super::verify::announce;
use super::{JobSettings, World};

/// The retention job: the report and the retention outcome (the retention
/// report prints both). `apply` extends short locks (and deletes expired
/// source files); `full` checks every version the archive lists instead of
/// the store's records.
pub async fn retention(
    world: &World,
    settings: &JobSettings,
    apply: bool,
    full: bool,
) -> (Report, RetentionOutcome) {
    let mut report = Report::new("retention");
    let copy = &settings.collect.copy;
    let retention_settings = RetentionSettings {
        archive_prefix: copy.archive_prefix.clone(),
        lock_mode: copy.lock_mode,
        retention_days: copy.retention_days,
        concurrency: settings.collect.concurrency,
        apply,
    };
    let archive = world.archive.as_ref();
    let store = world.store.as_ref();
    let expiry_days = settings.source_retention_days;
    let accounts: Result<Vec<String>, String> = if !full || expiry_days.is_some() {
        sources::accounts(world, &settings.accounts, &Scope::default()).await
    } else {
        Ok(Vec::new())
    };
    let targets = if full {
        // Walked page by page while the versions are checked.
        Ok(retention::Targets::whole_archive(
            &retention_settings.archive_prefix,
        ))
    } else {
        match &accounts {
            // The findings ledger is not in the store: its few objects are
            // listed. The store's versions are read while they are checked.
            Ok(accounts) => {
                let ledger = ledger::ledger_prefix(&retention_settings.archive_prefix);
                match retention::targets_under(archive, &ledger).await {
                    Ok(ledger_targets) => Ok(retention::Targets::Store {
                        sources: sources::archived_sources(&settings.sources, accounts),
                        archive_prefix: retention_settings.archive_prefix.clone(),
                        extra: ledger_targets,
                    }),
                    Err(error) => Err((
                        format!("list versions of s3://{}/{ledger}", archive.bucket()),
                        error.to_string(),
                    )),
                }
            }
            Err(message) => Err(("list accounts".to_string(), message.clone())),
        }
    };
    let targets = targets.map_err(|(operation, message)| OperationError {
        account_id: "-".to_string(),
        operation,
        message,
    });
    let (mut outcome, lock_confirmed) = retention::check(
        archive,
        store,
        &retention_settings,
        targets,
        Utc::now(),
        &world.cancel.stop,
    )
    .await;
    if let Some(days) = expiry_days {
        match (&lock_confirmed, &accounts) {
            // Interrupted: reported as such below.
            _ if world.cancel.stop.is_cancelled() => {}
            (None, _) => report.error(
                "-",
                "source expiry",
                "skipped: this run could not confirm that the archive is locked down (see the bucket problems and errors); nothing was deleted from the sources",
            ),
            (Some(confirmed), Ok(accounts)) => {
                let expired =
                    source_expiry(world, settings, confirmed, accounts, days, apply).await;
                outcome.errors.extend(expired.1);
                outcome.source_expiry = Some(expired.0);
            }
            (Some(_), Err(message)) => report.error("-", "list accounts", message.clone()),
        }
    }
    report.stats.objects_listed = outcome.checked;
    report.stats.errors += outcome.errors.len() as u64;
    report.errors.extend(std::mem::take(&mut outcome.errors));
    report
        .findings
        .extend(std::mem::take(&mut outcome.findings));
    if world.cancel.stop.is_cancelled() {
        report.error(
            "-",
            "retention",
            "interrupted by a signal; versions not reached were not checked",
        );
    }
    announce(world, settings, &mut report).await;
    super::finish_run(world, settings, &mut report);
    (report, outcome)
}

/// Source expiry over every source of `accounts`, each read (and deleted)
/// with its member session: the outcome, and the operational errors
/// (accounts out of reach included).
async fn source_expiry(
    world: &World,
    settings: &JobSettings,
    lock_confirmed: &LockConfirmed,
    accounts: &[String],
    days: u32,
    apply: bool,
) -> (ExpiryOutcome, Vec<OperationError>) {
    // Folders turned away are collect's findings; retention only skips them.
    let (scopes, mut errors, _turned_away) = sources::scopes(
        world,
        &settings.sources,
        &settings.accounts,
        accounts,
        &Scope::default(),
    )
    .await;
    let expiry_scopes: Vec<ExpiryScope<'_>> = scopes
        .iter()
        .map(|scope| ExpiryScope {
            reader_account_id: scope.reader_account_id.clone(),
            source: scope.source.as_ref(),
            root: scope.root.clone(),
            regions: scope.regions.clone(),
        })
        .collect();
    let expiry_settings = ExpirySettings {
        source_retention_days: days,
        concurrency: settings.collect.concurrency,
        apply,
    };
    info!(
        scopes = expiry_scopes.len(),
        source_retention_days = days,
        apply,
        "source expiry started"
    );
    let mut outcome = expiry::expire(
        lock_confirmed,
        &expiry_scopes,
        world.store.as_ref(),
        &expiry_settings,
        Utc::now(),
        &world.cancel.stop,
    )
    .await;
    errors.append(&mut outcome.errors);
    (outcome, errors)
}
