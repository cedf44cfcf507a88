//! The `verify` job, and the validation the other jobs run after theirs:
//! the chains of every configured source, the fetch-from-source fallback,
//! the open findings in scope and the announcement.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tracing::{info, warn};

use tokio_util::sync::CancellationToken;

use crate::cloudtrail::keys::parse_trail_key;
use crate::collect::{self, CollectSettings, FetchContext};
use crate::model::error::SeamError;
use crate::model::object::SourceRef;
use crate::model::report::{EarlierFindings, Report};
use crate::seams::{Archive, ProgressStore, SourceConnector, TrailSource};
use crate::verify::{self, FetchedLog, SourceLookup, VerifyOutcome};

use super::ownership;
use super::sources::{self, Scope};
use super::{keys, JobSettings, World};

/// Sources by (reading account, bucket); `None` when unreachable.
type SourceSessions = BTreeMap<(String, String), Option<Arc<dyn TrailSource>>>;

/// Copies a log file a digest names but the archive lacks, straight from its
/// source, before it may be called missing: through [`collect::fetch_one`],
/// the protocol of every copy (in-flight marker, adoption, size cap, content
/// checks, `inspect`), one fetch at a time (they share the run's marker).
pub struct SourceFetcher<'a> {
    connector: &'a dyn SourceConnector,
    archive: &'a dyn Archive,
    store: &'a dyn ProgressStore,
    settings: &'a CollectSettings,
    cancel: &'a CancellationToken,
    sources: Mutex<SourceSessions>,
}

impl<'a> SourceFetcher<'a> {
    pub fn new(
        connector: &'a dyn SourceConnector,
        archive: &'a dyn Archive,
        store: &'a dyn ProgressStore,
        settings: &'a CollectSettings,
        cancel: &'a CancellationToken,
    ) -> SourceFetcher<'a> {
        SourceFetcher {
            connector,
            archive,
            store,
            settings,
            cancel,
            sources: Mutex::new(BTreeMap::new()),
        }
    }
}

#[async_trait]
impl SourceLookup for SourceFetcher<'_> {
    async fn fetch_missing(&self, source: &SourceRef) -> Result<FetchedLog, SeamError> {
        // Held for the whole fetch: one at a time.
        let mut sources = self.sources.lock().await;
        let slot = (source.account_id.clone(), source.bucket.clone());
        if !sources.contains_key(&slot) {
            let made = match self
                .connector
                .source(&source.account_id, &source.bucket)
                .await
            {
                // A bucket another account owns is never read.
                Ok(trail_source) => {
                    match ownership::check(&source.account_id, trail_source.as_ref()).await {
                        ownership::Verdict::Read => Some(trail_source),
                        _ => None,
                    }
                }
                Err(error) => {
                    warn!(account_id = %source.account_id, %error, "cannot reach the source to look for a missing log");
                    None
                }
            };
            sources.insert(slot.clone(), made);
        }
        let Some(trail_source) = sources.get(&slot).cloned().flatten() else {
            return Err(SeamError::AccessDenied(format!(
                "no session for account {} to read s3://{}",
                source.account_id, source.bucket
            )));
        };
        // The account the file belongs to (its `AWSLogs/<account>/` folder).
        let member = parse_trail_key(&source.key)
            .map(|key| key.account_id)
            .unwrap_or_else(|_| source.account_id.clone());
        let context = FetchContext {
            archive: self.archive,
            store: self.store,
            settings: self.settings,
            now: chrono::Utc::now(),
            cancel: self.cancel,
        };
        let fetched = collect::fetch_one(context, trail_source, &member, source).await;
        if let Some(error) = fetched.errors.first() {
            return Err(SeamError::Transient(format!(
                "{}: {}",
                error.operation, error.message
            )));
        }
        if fetched.record.is_some() {
            info!(key = %source.key, "fetched a log file from its source that the archive lacked");
        }
        Ok(FetchedLog {
            record: fetched.record,
            findings: fetched.findings,
        })
    }
}

/// Validates the chains of `accounts` (all configured sources of them),
/// limited to `scope`. The error (an unreadable keys file) is the message.
pub async fn validate(
    world: &World,
    settings: &JobSettings,
    accounts: &[String],
    scope: &Scope,
    keys_file: Option<&Path>,
    full: bool,
) -> Result<VerifyOutcome, String> {
    let archived = sources::archived_sources(&settings.sources, accounts);
    let mut verify_settings = settings.verify.clone();
    verify_settings.full = full;
    let keys_file = keys_file.or(settings.public_keys_file.as_deref());
    let keys = keys::key_provider(keys_file, &world.public_keys, &world.store)?;
    let lookup = SourceFetcher::new(
        world.connector.as_ref(),
        world.archive.as_ref(),
        world.store.as_ref(),
        &settings.collect,
        &world.cancel.stop,
    );
    Ok(verify::verify(
        &archived,
        &scope.accounts,
        &scope.regions,
        settings.accounts.shard,
        world.archive.as_ref(),
        world.store.as_ref(),
        keys.as_ref(),
        &lookup,
        world.clock.as_ref(),
        &verify_settings,
    )
    .await)
}

/// Adds a validation's numbers, errors and findings (each once) to `report`.
pub fn merge_verify(report: &mut Report, outcome: Result<VerifyOutcome, String>) {
    match outcome {
        Ok(outcome) => {
            info!(
                chains = outcome.chains,
                digests = outcome.stats.digests_validated,
                log_files = outcome.stats.log_files_validated,
                findings = outcome.findings.len(),
                "validation finished"
            );
            report.stats.digests_validated += outcome.stats.digests_validated;
            report.stats.log_files_validated += outcome.stats.log_files_validated;
            report.stats.errors += outcome.errors.len() as u64;
            report.errors.extend(outcome.errors);
            report.add_findings(outcome.findings);
        }
        Err(error) => report.error("-", "verify", error),
    }
}

/// Adds the findings earlier runs recorded that are still open in `scope`
/// (see [`Report::include_open_findings`]): the exit status is 3 while
/// evidence of lost or altered history is on record, not only in the run
/// that found it.
pub fn include_open_findings(
    world: &World,
    settings: &JobSettings,
    report: &mut Report,
    scope: &Scope,
) {
    let finding_scope = sources::finding_scope(&settings.sources, scope);
    let mut earlier = EarlierFindings::new(report, &finding_scope);
    let read = world
        .store
        .for_each_finding(&mut |finding| earlier.offer(finding));
    earlier.finish(report);
    if let Err(error) = read {
        report.error("-", "read findings", error.to_string());
    }
}

/// Announces every finding not announced yet (this run's new ones and those
/// earlier runs could not announce): the ledger, then the notifier.
pub async fn announce(world: &World, settings: &JobSettings, report: &mut Report) {
    super::announce(world, settings, report, true).await;
}

/// Validates the chains of every configured account (limited to `scope`) into
/// `report`, adds the open findings in scope and publishes the new ones.
pub async fn validate_into(
    world: &World,
    settings: &JobSettings,
    report: &mut Report,
    scope: &Scope,
    keys_file: Option<&Path>,
    full: bool,
) {
    let accounts = match sources::accounts(world, &settings.accounts, &Scope::default()).await {
        Ok(accounts) => accounts,
        Err(error) => {
            report.error("-", "list accounts", error);
            return;
        }
    };
    report.stats.accounts = accounts.len() as u64;
    merge_verify(
        report,
        validate(world, settings, &accounts, scope, keys_file, full).await,
    );
    include_open_findings(world, settings, report, scope);
    announce(world, settings, report).await;
}

/// The `verify` job: validates the archive's digest chains (`full`: re-reads
/// and re-hashes everything), then ends the run.
pub async fn verify(
    world: &World,
    settings: &JobSettings,
    scope: &Scope,
    keys_file: Option<&Path>,
    full: bool,
) -> Report {
    let mut report = Report::new("verify");
    validate_into(world, settings, &mut report, scope, keys_file, full).await;
    super::finish_run(world, settings, &mut report);
    report
}
