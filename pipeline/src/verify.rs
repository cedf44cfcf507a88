//! Validation of the archive's copies of CloudTrail's signed digest chains
//! (docs/cloudtrail-format.md §9.2, docs/architecture.md "Data flow of one collection run" step 6), stricter than `aws cloudtrail
//! validate-logs` (docs/cloudtrail-format.md §6.5): every digest's format, location, key name and
//! RSA signature; every link (previous digest archived, its hash, signature
//! and end time); every missing hour, including consecutive and newest
//! deletions; every listed log file's content hash, recorded at copy time;
//! archived log files that no digest lists.
//!
//! Incremental by default: a run reads from the archive only the digests that
//! were not validated before (`design.md` beside this file says what is
//! remembered and why it is enough). `full` re-reads and re-hashes the whole
//! archive instead of trusting the store, and recomputes everything.
//!
//! Everything read here was written by a member account, so nothing panics on
//! its content: every problem becomes a finding, every failed read an
//! operational error.

mod audit;
mod chain;
mod digest_check;
mod heads;
mod incremental;
mod inventory;
mod logs;
mod slices;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use tracing::{info_span, warn, Instrument};

use crate::cloudtrail::gzip::InflateLimits;
use crate::cloudtrail::public_keys::{KeyRing, PublicKey};
use crate::model::error::SeamError;
use crate::model::findings::{Finding, FindingKind, FindingSet};
use crate::model::object::{ArchivedSource, ObjectRecord, SourceRef};
use crate::model::report::{OperationError, Stats};
use crate::model::shard::{self, Shard};
use crate::model::time::utc_text;
use crate::seams::{Archive, Clock, ProgressStore};

use crate::progress::pending::{self, PendingRecord};
use crate::progress::validation::{
    chain_states_under, write_chain_state, ChainState, LogRefCache, ValidatedCache,
};
use inventory::{ChainId, Inventory};

/// How a validation run behaves; fixed for a run.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    /// Where the archive keeps copies: `<prefix>/<reader>/<bucket>/<key>`.
    pub archive_prefix: String,
    /// A standard chain whose newest digest ended longer ago than this raises
    /// `chain_head_stale`.
    pub chain_head_stale: chrono::Duration,
    /// Archived log files named earlier than now minus this and listed by no
    /// digest raise `log_file_unreferenced`.
    pub unreferenced_grace: chrono::Duration,
    /// A check that cannot be made — a listed log file its source refuses to
    /// hand over, a public key `ListPublicKeys` cannot give — is an
    /// operational error for this long after it first failed, then a finding.
    pub unreadable_grace: chrono::Duration,
    /// Largest digest accepted, raw and inflated (default 4 MiB; real digests
    /// are a few kilobytes): a larger one is `digest_malformed`.
    pub max_digest_bytes: usize,
    pub inflate_limits: InflateLimits,
    /// Re-read and re-hash every archived object and revalidate every chain
    /// from scratch (the audit of the archive itself).
    pub full: bool,
    /// Chains validated, and objects re-hashed by `full`, at once.
    pub concurrency: usize,
}

pub use crate::seams::KeyProvider;

/// Keys given in a file (`--public-keys`), for offline validation.
pub struct StaticKeys(pub KeyRing);

#[async_trait]
impl KeyProvider for StaticKeys {
    async fn find(
        &self,
        region: &str,
        fingerprint: &str,
        _around: DateTime<Utc>,
    ) -> Result<Option<PublicKey>, SeamError> {
        Ok(self.0.find(region, fingerprint).cloned())
    }
}

/// Fetch-from-source fallback for a log file a digest names but the archive
/// lacks (docs/architecture.md step 6).
#[async_trait]
pub trait SourceLookup: Send + Sync {
    /// Copies `source` into the archive now, the way collection copies (in
    /// the binary: `collect::fetch_one`), if it is still at the source;
    /// `record` is `None` if it is absent at the source too.
    async fn fetch_missing(&self, source: &SourceRef) -> Result<FetchedLog, SeamError>;
}

/// What [`SourceLookup::fetch_missing`] found.
#[derive(Debug, Default)]
pub struct FetchedLog {
    /// The store's record of the archived copy; `None`: not at the source.
    pub record: Option<ObjectRecord>,
    /// Findings the copy raised, already recorded in the store (reported by
    /// this run, not recorded again).
    pub findings: Vec<Finding>,
}

/// A [`SourceLookup`] that never finds anything (validation of the archive
/// alone, e.g. when the member accounts are out of reach).
pub struct NoSourceLookup;

#[async_trait]
impl SourceLookup for NoSourceLookup {
    async fn fetch_missing(&self, _source: &SourceRef) -> Result<FetchedLog, SeamError> {
        Ok(FetchedLog::default())
    }
}

/// What a validation run produced.
#[derive(Debug, Clone, Default)]
pub struct VerifyOutcome {
    /// `digests_validated` (digests read and judged this run, valid or not),
    /// `log_files_validated` (digest log entries judged), `errors`.
    pub stats: Stats,
    pub errors: Vec<OperationError>,
    /// Each finding once, as returned by `store.record_finding` (`new` false
    /// when an earlier run recorded it).
    pub findings: Vec<Finding>,
    /// Digest chains in scope.
    pub chains: usize,
}

/// A digest CloudTrail delivers for hour `t` is expected in the archive once
/// its sibling chains have moved past `t` and this much time has passed:
/// covers delivery and collection latency (docs/cloudtrail-format.md §2: delivery is not punctual).
const DIGEST_DELIVERY_GRACE_MINUTES: i64 = 60;

/// Most missing hours reported for one gap (a week); the detail of the last
/// one says how many more there are.
const MAX_MISSING_PER_GAP: usize = 24 * 7;

/// An operational failure: something could not be read or written.
#[derive(Debug, Clone)]
pub(crate) struct OpError {
    pub account_id: String,
    pub operation: String,
    pub error: SeamError,
}

impl OpError {
    pub fn new(account_id: &str, operation: String, error: SeamError) -> OpError {
        OpError {
            account_id: account_id.to_string(),
            operation,
            error,
        }
    }
}

#[derive(Default)]
struct Collected {
    findings: FindingSet,
    errors: Vec<OperationError>,
    digests_validated: u64,
    log_files_validated: u64,
}

#[derive(Default)]
struct KeyCache {
    found: HashMap<(String, String), PublicKey>,
    /// Misses per (region, fingerprint, day of `around`): one provider call a
    /// day for a fingerprint nobody knows, however many digests name it.
    missing: HashSet<(String, String, i64)>,
    /// Regions whose provider failed in this run, with the pending record
    /// (one store write per region and run).
    failed: HashMap<String, PendingRecord>,
    /// Regions whose provider answered in this run (pending record cleared).
    answered: HashSet<String>,
    /// The provider's failure per region in this run: not asked again for
    /// every digest of the region.
    errors: HashMap<String, SeamError>,
}

/// A public key lookup that failed (`ListPublicKeys` did not answer).
pub(crate) enum KeyFailure {
    /// Within the grace period: an operational error; the digest waits.
    Pending(OpError),
    /// Failing since longer than the grace period: the digest's finding.
    Expired(PendingRecord),
}

tokio::task_local! {
    /// Operational errors of the source whose validation is being polled:
    /// sources validated side by side each count their own, so one failing
    /// source does not keep the other from being marked indexed.
    static SOURCE_ERRORS: std::cell::Cell<usize>;
}

/// Sources validated at once (see [`verify`]). Each holds the inventories
/// of [`SLICES_AT_ONCE`] account roots at a time, so memory grows with
/// these, not with the number of sources or accounts.
const SOURCES_AT_ONCE: usize = 2;

/// Everything one run shares: the seams, the settings, and what it collected.
pub(crate) struct Ctx<'a> {
    pub archive: &'a dyn Archive,
    pub store: &'a dyn ProgressStore,
    pub keys: &'a dyn KeyProvider,
    pub lookup: &'a dyn SourceLookup,
    pub settings: &'a VerifySettings,
    pub now: DateTime<Utc>,
    collected: Mutex<Collected>,
    key_cache: Mutex<KeyCache>,
    pub log_refs: Mutex<LogRefCache>,
    /// What cleanly validated digests vouch for (read by source expiry).
    pub validated: Mutex<ValidatedCache>,
    /// Archive reads in flight, over every source and chain of the run: at
    /// most `concurrency` ([`Ctx::read_permit`]).
    reads: tokio::sync::Semaphore,
    /// The account that controls each source bucket (the one whose role
    /// reads it): a finding about a file in it names that account as
    /// `bucket_owner` besides the account its path claims.
    pub bucket_owners: BTreeMap<String, String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<'a> Ctx<'a> {
    pub fn new(
        archive: &'a dyn Archive,
        store: &'a dyn ProgressStore,
        keys: &'a dyn KeyProvider,
        lookup: &'a dyn SourceLookup,
        settings: &'a VerifySettings,
        now: DateTime<Utc>,
    ) -> Ctx<'a> {
        Ctx {
            archive,
            store,
            keys,
            lookup,
            settings,
            now,
            collected: Mutex::default(),
            key_cache: Mutex::default(),
            log_refs: Mutex::default(),
            validated: Mutex::default(),
            reads: tokio::sync::Semaphore::new(settings.concurrency.max(1)),
            bucket_owners: BTreeMap::new(),
        }
    }

    /// Waits for a turn to read from the archive; the read is done when the
    /// permit is dropped. Sources and chains validated at once share the
    /// run's `concurrency`, so overlapping them never puts more reads in
    /// flight than a run of one source at a time would.
    pub async fn read_permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // The semaphore is never closed; without a permit the read goes on.
        self.reads.acquire().await.ok()
    }

    /// Writes the log references and the validation evidence gathered so
    /// far, and forgets them (at the end of a source).
    pub fn flush_and_forget_caches(&self) -> Result<(), SeamError> {
        lock(&self.log_refs).flush_and_forget(self.store)?;
        lock(&self.validated).flush_and_forget(self.store)
    }

    /// Writes the log references and the validation evidence gathered so far.
    pub fn flush_caches(&self) -> Result<(), SeamError> {
        lock(&self.log_refs).flush(self.store)?;
        lock(&self.validated).flush(self.store)
    }

    /// Records a finding (once per run) and keeps what the store returns.
    pub fn finding(&self, mut finding: Finding) {
        finding.first_seen = self.now;
        if finding.bucket_owner.is_none() {
            finding.bucket_owner = self.bucket_owners.get(&finding.bucket).cloned();
        }
        if !lock(&self.collected).findings.claim(&finding) {
            return;
        }
        match self.store.record_finding(finding) {
            Ok(recorded) => {
                if recorded.new {
                    recorded.log_new();
                }
                lock(&self.collected).findings.push(recorded);
            }
            Err(error) => self.error(&OpError::new("-", "record_finding".to_string(), error)),
        }
    }

    /// Reports a finding another stage already recorded in the store (a
    /// fetched log's): once per run, not recorded again.
    pub fn recorded_elsewhere(&self, finding: Finding) {
        let mut collected = lock(&self.collected);
        if collected.findings.claim(&finding) {
            collected.findings.push(finding);
        }
    }

    pub fn error(&self, error: &OpError) {
        // The source being validated counts it too (sources run side by side).
        let _ = SOURCE_ERRORS.try_with(|count| count.set(count.get() + 1));
        warn!(account_id = %error.account_id, operation = %error.operation, error = %error.error, "operation failed");
        lock(&self.collected).errors.push(OperationError {
            account_id: error.account_id.clone(),
            operation: error.operation.clone(),
            message: error.error.to_string(),
        });
    }

    /// Operational errors reported so far by the source this is called
    /// from (while [`verify`] validates it), else by the whole run.
    pub fn error_count(&self) -> usize {
        SOURCE_ERRORS
            .try_with(std::cell::Cell::get)
            .unwrap_or_else(|_| lock(&self.collected).errors.len())
    }

    pub fn count_digest(&self) {
        lock(&self.collected).digests_validated += 1;
    }

    pub fn count_log_files(&self, count: u64) {
        lock(&self.collected).log_files_validated += count;
    }

    /// The public key, through a per-run cache in front of the provider.
    pub async fn public_key(
        &self,
        region: &str,
        fingerprint: &str,
        around: DateTime<Utc>,
    ) -> Result<Option<PublicKey>, SeamError> {
        let fingerprint = fingerprint.to_ascii_lowercase();
        let found_key = (region.to_string(), fingerprint.clone());
        let missing_key = (
            region.to_string(),
            fingerprint.clone(),
            around.timestamp().div_euclid(86_400),
        );
        {
            let cache = lock(&self.key_cache);
            if let Some(key) = cache.found.get(&found_key) {
                return Ok(Some(key.clone()));
            }
            if cache.missing.contains(&missing_key) {
                return Ok(None);
            }
            if let Some(error) = cache.errors.get(region) {
                return Err(error.clone());
            }
        }
        let answer = match self.keys.find(region, &fingerprint, around).await {
            Ok(answer) => answer,
            Err(error) => {
                lock(&self.key_cache)
                    .errors
                    .insert(region.to_string(), error.clone());
                return Err(error);
            }
        };
        let first_answer = lock(&self.key_cache).answered.insert(region.to_string());
        if first_answer {
            if let Err(error) = pending::keys_available(self.store, region) {
                self.error(&OpError::new(
                    "-",
                    format!("clear pending public keys of {region}"),
                    error,
                ));
            }
        }
        let mut cache = lock(&self.key_cache);
        match &answer {
            Some(key) => {
                cache.found.insert(found_key, key.clone());
            }
            None => {
                cache.missing.insert(missing_key);
            }
        }
        Ok(answer)
    }

    /// Notes that the public keys of `region` could not be obtained (once
    /// per region and run in the store) and says whether that has lasted
    /// past the grace period. `Err` when the store cannot remember it.
    pub fn key_failure(
        &self,
        account: &str,
        region: &str,
        operation: String,
        error: SeamError,
    ) -> Result<KeyFailure, OpError> {
        let known = lock(&self.key_cache).failed.get(region).cloned();
        let record = match known {
            Some(record) => record,
            None => {
                let record =
                    pending::keys_unavailable(self.store, region, self.now, &error.to_string())
                        .map_err(|store_error| {
                            OpError::new(
                                account,
                                format!("remember that the public keys of {region} failed"),
                                store_error,
                            )
                        })?;
                lock(&self.key_cache)
                    .failed
                    .insert(region.to_string(), record.clone());
                record
            }
        };
        if self.now - record.first_failed_at >= self.settings.unreadable_grace {
            Ok(KeyFailure::Expired(record))
        } else {
            Ok(KeyFailure::Pending(OpError::new(account, operation, error)))
        }
    }

    pub fn delivery_grace(&self) -> Duration {
        Duration::minutes(DIGEST_DELIVERY_GRACE_MINUTES)
    }

    fn into_outcome(self, chains: usize) -> VerifyOutcome {
        let collected = self
            .collected
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        VerifyOutcome {
            stats: Stats {
                digests_validated: collected.digests_validated,
                log_files_validated: collected.log_files_validated,
                errors: collected.errors.len() as u64,
                ..Stats::default()
            },
            errors: collected.errors,
            findings: collected.findings.into_vec(),
            chains,
        }
    }
}

/// Validates the digest chains of `sources` (limited to `only_accounts`, by
/// member or reading account, when not empty, and to the member accounts of
/// `shard`). See the module docs.
#[allow(clippy::too_many_arguments)]
pub async fn verify(
    sources: &[ArchivedSource],
    only_accounts: &[String],
    only_regions: &[String],
    shard: Option<Shard>,
    archive: &dyn Archive,
    store: &dyn ProgressStore,
    keys: &dyn KeyProvider,
    lookup: &dyn SourceLookup,
    clock: &dyn Clock,
    settings: &VerifySettings,
) -> VerifyOutcome {
    let mut ctx = Ctx::new(archive, store, keys, lookup, settings, clock.now());
    let mut unique: Vec<&ArchivedSource> = sources.iter().collect();
    unique.sort();
    unique.dedup();
    // A bucket read by two accounts (a misconfiguration) names no owner.
    for source in &unique {
        let readers = unique
            .iter()
            .filter(|other| other.bucket == source.bucket)
            .count();
        if readers == 1 {
            ctx.bucket_owners
                .insert(source.bucket.clone(), source.reader_account_id.clone());
        }
    }
    let scope = Scope {
        only_accounts,
        only_regions,
        shard,
    };
    // Two sources at a time: one's phases that keep few reads in flight (its
    // version listing, its chains' digests one after another, its store
    // scans) overlap the other's re-reads; reads still share `concurrency`.
    let ctx_ref = &ctx;
    let scope_ref = &scope;
    let chains = futures::stream::iter(unique)
        .map(|source| {
            let span =
                info_span!("verify", reader = %source.reader_account_id, bucket = %source.bucket);
            SOURCE_ERRORS.scope(
                std::cell::Cell::new(0),
                verify_source(ctx_ref, source, scope_ref).instrument(span),
            )
        })
        .buffer_unordered(SOURCES_AT_ONCE)
        .fold(0, |sum, chains| async move { sum + chains })
        .await;
    if let Err(error) = store.flush() {
        ctx.error(&OpError::new("-", "flush_store".to_string(), error));
    }
    ctx.into_outcome(chains)
}

/// Which accounts and regions a run covers (all when empty), and the shard
/// whose member accounts it covers (all when none).
pub(crate) struct Scope<'a> {
    only_accounts: &'a [String],
    only_regions: &'a [String],
    shard: Option<Shard>,
}

impl Scope<'_> {
    /// `region` is the delivering region of the file or chain; `None` (a key
    /// that names none) is in every region's scope.
    pub fn covers(&self, reader: &str, account: &str, region: Option<&str>) -> bool {
        let account_covered = self.only_accounts.is_empty()
            || self
                .only_accounts
                .iter()
                .any(|wanted| wanted == reader || wanted == account);
        let region_covered = self.only_regions.is_empty()
            || region.is_none_or(|region| self.only_regions.iter().any(|wanted| wanted == region));
        account_covered && region_covered && shard::covers(self.shard.as_ref(), account)
    }

    /// Whether the run covers every account and region.
    pub fn is_everything(&self) -> bool {
        self.only_accounts.is_empty() && self.only_regions.is_empty()
    }

    pub fn covers_chain(&self, chain: &ChainId) -> bool {
        self.covers(&chain.reader, &chain.account, Some(&chain.region))
    }
}

/// Validates one source; returns the number of chains in scope. An
/// incremental run starts from the store's fresh folders
/// ([`incremental`]); a full run, and the first incremental run over a
/// source, inventory every record of the source.
async fn verify_source(ctx: &Ctx<'_>, source: &ArchivedSource, scope: &Scope<'_>) -> usize {
    if ctx.settings.full {
        // Read before the run: what is recorded meanwhile stays fresh.
        let fresh = incremental::fresh_folders(ctx, source).unwrap_or_default();
        incremental::whole_then_index(ctx, source, scope, &fresh).await
    } else {
        incremental::verify_source(ctx, source, scope).await
    }
}

/// Account roots of one source validated at once (see
/// [`verify_source_whole`]): an organization bucket of many small accounts
/// has few chains per root, so one root at a time would leave the run's
/// reads mostly idle. Memory holds this many roots' inventories.
const SLICES_AT_ONCE: usize = 4;

/// Validates one source from an inventory of every record of it, a few
/// account roots at a time ([`slices`]): memory holds a few accounts'
/// records (and, in a full run, their archive versions), not the source's.
async fn verify_source_whole(ctx: &Ctx<'_>, source: &ArchivedSource, scope: &Scope<'_>) -> usize {
    let reader = source.reader_account_id.as_str();
    let walk = slices::SourceWalk::new(
        ctx.store,
        ctx.archive,
        &ctx.settings.archive_prefix,
        source,
        ctx.settings.full,
    );
    // The walk hands out slices in key order; each is validated as soon as
    // one of the slots is free. A walk that fails ends the stream after
    // the slices already handed out.
    let slices = futures::stream::unfold(Some(walk), |walk| async move {
        let mut walk = walk?;
        match walk.next_slice().await {
            Ok(Some(slice)) => Some((Ok(slice), Some(walk))),
            Ok(None) => None,
            Err(error) => Some((Err(error), None)),
        }
    });
    let quarantine = tokio::sync::Mutex::new(audit::QuarantineListing::default());
    let heads = Mutex::new(HeadsSeen::default());
    let (quarantine_ref, heads_ref) = (&quarantine, &heads);
    let (chains, walked) = slices
        .map(|slice| async move {
            match slice {
                Ok(slice) => {
                    let in_slice =
                        verify_slice(ctx, source, scope, slice, quarantine_ref, heads_ref).await;
                    (in_slice.unwrap_or(0), true)
                }
                Err(slices::WalkError::Store(error)) => {
                    ctx.error(&OpError::new(reader, "read_store".to_string(), error));
                    (0, false)
                }
                // Without the listing a full run cannot stand behind its result.
                Err(slices::WalkError::Archive { prefix, error }) => {
                    ctx.error(&OpError::new(
                        reader,
                        format!("list versions s3://{}/{prefix}", ctx.archive.bucket()),
                        error,
                    ));
                    (0, false)
                }
            }
        })
        .buffer_unordered(SLICES_AT_ONCE)
        .fold((0, true), |(sum, walked), (chains, ok)| async move {
            (sum + chains, walked && ok)
        })
        .await;
    if !walked {
        return chains;
    }

    // Chain heads, stale and behind their siblings (newest digests deleted):
    // the siblings of an organization trail are the other accounts' chains.
    let heads = heads
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    heads::check_heads(ctx, &heads.newest, &heads.states, scope);
    chains
}

/// What the chain heads check needs of every chain of a source, gathered
/// slice by slice: the newest archived digest and the validated head.
#[derive(Default)]
struct HeadsSeen {
    /// Each chain's newest archived digest alone.
    newest: Inventory,
    /// Each chain's state, its head alone.
    states: HashMap<ChainId, ChainState>,
}

/// Validates the chains and log files of one slice of a source; the number
/// of chains in scope, `None` when a full run's audit could not list what
/// it needs (reported).
async fn verify_slice(
    ctx: &Ctx<'_>,
    source: &ArchivedSource,
    scope: &Scope<'_>,
    slice: slices::Slice,
    quarantine: &tokio::sync::Mutex<audit::QuarantineListing>,
    heads: &Mutex<HeadsSeen>,
) -> Option<usize> {
    let reader = source.reader_account_id.as_str();
    let slices::Slice {
        root,
        records,
        versions,
    } = slice;

    // 1. Inventory: the store, plus (full) the archive's own listing.
    let mut inventory = Inventory::default();
    let audited = if ctx.settings.full {
        Some(audit::audit_slice(ctx, source, scope, &records, versions, quarantine).await?)
    } else {
        None
    };
    for (key, record) in &records {
        inventory.add(
            source,
            key,
            record.archive_version_id.clone(),
            Some(record.raw_sha256),
            record.copied_at,
        );
    }
    if let Some(audited) = &audited {
        for (key, version_id) in &audited.archive_only {
            inventory.add(source, key, Some(version_id.clone()), None, 0);
        }
    }
    inventory.finish();
    drop(records);
    set_aside_future_digests(ctx, &mut inventory, scope);

    // 2. What earlier runs validated.
    let states = match &root {
        Some(root) if !inventory.chains.is_empty() => load_states(ctx, source, root, &inventory),
        _ => HashMap::new(),
    };

    // 3. Validate the chains in scope, several at a time; each chain's
    // progress is saved as soon as it is done (a run that dies later keeps
    // it). Log references (and validation evidence) are written first, so
    // that no saved chain state ever claims a digest whose listed files were
    // not recorded.
    let in_scope: Vec<(&ChainId, &Vec<inventory::DigestEntry>)> = inventory
        .chains
        .iter()
        .filter(|(chain, _)| scope.covers_chain(chain))
        .collect();
    let chains_in_scope = in_scope.len();
    let audited_ref = audited.as_ref();
    let results: Vec<(ChainId, chain::ChainResult)> = futures::stream::iter(in_scope)
        .map(|(chain_id, entries)| {
            let previous = states.get(chain_id).cloned();
            let span =
                info_span!("chain", account_id = %chain_id.account, region = %chain_id.region);
            async move {
                let mut result =
                    chain::validate_chain(ctx, chain_id, entries, previous, audited_ref).await;
                heads::check_lag(ctx, chain_id, entries, &mut result);
                save_chain(ctx, chain_id, &result);
                (chain_id.clone(), result)
            }
            .instrument(span)
        })
        .buffer_unordered(ctx.settings.concurrency.max(1))
        .collect()
        .await;

    // 4. What the other checks need of this run's validation.
    let mut states = states;
    let mut lowered: BTreeMap<inventory::AreaId, DateTime<Utc>> = BTreeMap::new();
    for (chain_id, result) in results {
        if let Some(earliest) = result.earliest_window_start {
            if !chain_id.backfill {
                let entry = lowered.entry(chain_id.area()).or_insert(earliest);
                *entry = (*entry).min(earliest);
            }
        }
        states.insert(chain_id, result.state);
    }

    // 5. Archived log files that no digest lists.
    logs::check_unreferenced(ctx, &inventory, &states, &lowered, scope, audited.is_some());

    // 6. Keep what the chain heads check needs once every slice is done.
    let mut heads = lock(heads);
    for (chain_id, entries) in &inventory.chains {
        if let Some(newest) = entries.last() {
            heads
                .newest
                .chains
                .insert(chain_id.clone(), vec![newest.clone()]);
        }
    }
    for (chain_id, state) in states {
        let head_only = ChainState {
            head: state.head,
            ..ChainState::default()
        };
        heads.states.insert(chain_id, head_only);
    }
    drop(heads);

    let flushed = ctx.flush_and_forget_caches();
    if let Err(error) = flushed {
        ctx.error(&OpError::new(
            reader,
            "write log references".to_string(),
            error,
        ));
    }
    Some(chains_in_scope)
}

/// Saves one chain's state if it changed, after the log references and
/// validation evidence gathered so far (only if those were written);
/// `false` (reported) when something could not be written.
fn save_chain(ctx: &Ctx<'_>, chain_id: &ChainId, result: &chain::ChainResult) -> bool {
    if !result.changed {
        return true;
    }
    if let Err(error) = ctx.flush_caches() {
        ctx.error(&OpError::new(
            &chain_id.account,
            "write log references".to_string(),
            error,
        ));
        return false;
    }
    if let Err(error) = write_chain_state(ctx.store, &chain_id.state_name(), &result.state) {
        ctx.error(&OpError::new(
            &chain_id.account,
            format!("write state {}", chain_id.state_name()),
            error,
        ));
        return false;
    }
    true
}

/// Digests named for more than this after now cannot be CloudTrail's (which
/// signs a window after it closes); they stay out of the chain order, where a
/// far-future name would pose as the head.
const FUTURE_TOLERANCE_HOURS: i64 = 2;

fn set_aside_future_digests(ctx: &Ctx<'_>, inventory: &mut Inventory, scope: &Scope<'_>) {
    for (chain, entries) in &mut inventory.chains {
        set_aside_future(ctx, chain, entries, scope);
    }
    inventory.chains.retain(|_, entries| !entries.is_empty());
}

/// Takes the digests of one chain named in the future out of `entries`
/// (oldest first), each a `digest_malformed` finding when in scope.
fn set_aside_future(
    ctx: &Ctx<'_>,
    chain: &ChainId,
    entries: &mut Vec<inventory::DigestEntry>,
    scope: &Scope<'_>,
) {
    let limit = ctx.now + Duration::hours(FUTURE_TOLERANCE_HOURS);
    let split = entries.partition_point(|entry| entry.end <= limit);
    let future = entries.split_off(split);
    if !scope.covers_chain(chain) {
        return;
    }
    for entry in future {
        let archive_key = chain
            .source_ref(&entry.key)
            .archive_key(&ctx.settings.archive_prefix);
        ctx.finding(
            Finding::new(
                FindingKind::DigestMalformed,
                &chain.account,
                &chain.bucket,
                &entry.key,
                format!(
                    "the key names a digest ending {}, in the future: CloudTrail signs a digest after its hour ends",
                    utc_text(entry.end)
                ),
            )
            .with_region(Some(&chain.region))
            .with_trail(Some(&chain.trail))
            .with_archive_key(Some(&archive_key)),
        );
    }
}

/// The saved state of every inventoried chain of `source` under the account
/// root `root` (one prefix scan).
fn load_states(
    ctx: &Ctx<'_>,
    source: &ArchivedSource,
    root: &str,
    inventory: &Inventory,
) -> HashMap<ChainId, ChainState> {
    let mut states = HashMap::new();
    if ctx.settings.full {
        return states;
    }
    let saved = match chain_states_under(ctx.store, &source.reader_account_id, &source.bucket, root)
    {
        Ok(saved) => saved,
        Err(error) => {
            ctx.error(&OpError::new(
                &source.reader_account_id,
                "read_state".to_string(),
                error,
            ));
            return states;
        }
    };
    let by_name = saved;
    for chain_id in inventory.chains.keys() {
        let Some(bytes) = by_name.get(&chain_id.state_name()) else {
            continue;
        };
        match ChainState::decode(bytes) {
            Some(state) => {
                states.insert(chain_id.clone(), state);
            }
            None => {
                warn!(chain = %chain_id.state_name(), "unreadable chain state; validating the chain again")
            }
        }
    }
    states
}
