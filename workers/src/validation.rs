//! Wiring of the validation stage: which archived sources to validate, public
//! keys (a file, or CloudTrail `ListPublicKeys` cached in the store), the
//! fetch-from-source fallback, and SNS alerts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::Mutex;
use tracing::{info, warn};
use trailvault_config::{Config, SourceSettings};
use trailvault_infra::store::SledStore;
use trailvault_pipeline::cloudtrail::gzip::InflateLimits;
use trailvault_pipeline::cloudtrail::public_keys::{
    parse_list_public_keys_json, KeyRing, PublicKey,
};
use trailvault_pipeline::copy::copy_object;
use trailvault_pipeline::ledger::{self, LedgerEntry};
use trailvault_pipeline::model::findings::Finding;
use trailvault_pipeline::model::object::ArchivedSource;
use trailvault_pipeline::model::object::{ObjectRecord, SourceRef};
use trailvault_pipeline::model::report::{FindingScope, Report};
use trailvault_pipeline::seams::{Notifier, ProgressStore, SystemClock, TrailSource};
use trailvault_pipeline::verify::{
    self, KeyProvider, SourceLookup, StaticKeys, VerifyOutcome, VerifySettings,
};
use trailvault_pipeline::SeamError;

use crate::cli::Scope;
use crate::wiring::{self, Wired};

/// The (reading account, bucket) pairs whose archived objects are validated.
pub fn archived_sources(config: &Config, accounts: &[String]) -> Vec<ArchivedSource> {
    let mut out = Vec::new();
    for source in &config.sources {
        match source {
            SourceSettings::PerAccount(per_account) => {
                out.extend(accounts.iter().map(|account| ArchivedSource {
                    reader_account_id: account.clone(),
                    bucket: per_account.bucket_for(account),
                }));
            }
            SourceSettings::Organization(org) => out.push(ArchivedSource {
                reader_account_id: org.reader_account_id.clone(),
                bucket: org.bucket.clone(),
            }),
        }
    }
    out
}

/// Keys from a file shaped like `aws cloudtrail list-public-keys` output
/// (PKCS#1 or SPKI values); they apply to every region.
pub fn keys_from_file(path: &Path) -> anyhow::Result<StaticKeys> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read public keys file {}: {e}", path.display()))?;
    let keys = parse_list_public_keys_json(&bytes)
        .map_err(|e| anyhow::anyhow!("public keys file {}: {e}", path.display()))?;
    let mut ring = KeyRing::new();
    for key in keys {
        ring.insert_for_all_regions(key)
            .map_err(|e| anyhow::anyhow!("public keys file {}: {e}", path.display()))?;
    }
    Ok(StaticKeys(ring))
}

/// Time windows already asked of `ListPublicKeys`, per region.
type AskedWindows = BTreeMap<String, Vec<(DateTime<Utc>, DateTime<Utc>)>>;
/// Sessions to sources by (reading account, bucket); `None` when unreachable.
type SourceSessions = BTreeMap<(String, String), Option<Arc<dyn TrailSource>>>;

/// CloudTrail `ListPublicKeys` called by the audit identity in the delivering
/// region, cached in the store (`pubkey/<region>/<fingerprint>`) so later runs
/// and offline validation need no call.
pub struct CloudTrailKeys {
    audit: aws_config::SdkConfig,
    store: Arc<SledStore>,
    retry: trailvault_infra::retry::RetryPolicy,
    cancel: tokio_util::sync::CancellationToken,
    /// Windows already asked for in this run, per region: a miss is not
    /// repeated for every digest of an unknown fingerprint.
    asked: Mutex<AskedWindows>,
}

impl CloudTrailKeys {
    /// Reads keys as the audit identity, retried under the run's policy
    /// until it is cancelled.
    pub fn new(wired: &Wired) -> CloudTrailKeys {
        CloudTrailKeys {
            audit: wired.audit.clone(),
            store: wired.store.clone(),
            retry: wired.retry.clone(),
            cancel: wired.cancel.clone(),
            asked: Mutex::new(BTreeMap::new()),
        }
    }

    fn cached(&self, region: &str, fingerprint: &str) -> Option<PublicKey> {
        let bytes = self
            .store
            .get_state(&format!(
                "pubkey/{region}/{}",
                fingerprint.to_ascii_lowercase()
            ))
            .ok()??;
        let der = base64::engine::general_purpose::STANDARD
            .decode(bytes)
            .ok()?;
        PublicKey::from_der(&der).ok()
    }
}

#[async_trait]
impl KeyProvider for CloudTrailKeys {
    async fn find(
        &self,
        region: &str,
        fingerprint: &str,
        around: DateTime<Utc>,
    ) -> Result<Option<PublicKey>, SeamError> {
        if let Some(key) = self.cached(region, fingerprint) {
            return Ok(Some(key));
        }
        let (start, end) = (around - Duration::hours(1), around + Duration::hours(2));
        {
            let mut asked = self.asked.lock().await;
            let windows = asked.entry(region.to_string()).or_default();
            if windows.iter().any(|(s, e)| *s <= start && end <= *e) {
                return Ok(None);
            }
            windows.push((start, end));
        }
        let keys = trailvault_infra::public_keys::list_public_keys(
            &self.audit,
            region,
            (start, end),
            &self.retry,
            &self.cancel,
        )
        .await?;
        let mut found = None;
        for api_key in keys {
            let key = match PublicKey::from_der(&api_key.der) {
                Ok(key) => key.with_validity(api_key.validity_start, api_key.validity_end),
                Err(error) => {
                    warn!(region, %error, "ignoring a public key CloudTrail returned that does not parse");
                    continue;
                }
            };
            // The API's fingerprint must be the MD5 of the DER it returned.
            if api_key
                .fingerprint
                .as_deref()
                .is_some_and(|listed| !listed.eq_ignore_ascii_case(key.fingerprint()))
            {
                warn!(region, listed = ?api_key.fingerprint, computed = key.fingerprint(), "ignoring a public key whose fingerprint does not match its bytes");
                continue;
            }
            let name = format!("pubkey/{region}/{}", key.fingerprint());
            let encoded = base64::engine::general_purpose::STANDARD.encode(key.der());
            self.store.put_state(&name, encoded.as_bytes())?;
            if key.fingerprint().eq_ignore_ascii_case(fingerprint) {
                found = Some(key);
            }
        }
        Ok(found)
    }
}

/// Copies a log file a digest names but the archive lacks, straight from its
/// source, before it may be called missing.
pub struct SourceFetcher<'a> {
    wired: &'a Wired,
    sources: Mutex<SourceSessions>,
}

impl<'a> SourceFetcher<'a> {
    pub fn new(wired: &'a Wired) -> SourceFetcher<'a> {
        SourceFetcher {
            wired,
            sources: Mutex::new(BTreeMap::new()),
        }
    }
}

#[async_trait]
impl SourceLookup for SourceFetcher<'_> {
    async fn fetch_missing(&self, source: &SourceRef) -> Result<Option<ObjectRecord>, SeamError> {
        let trail_source = {
            let mut sources = self.sources.lock().await;
            let slot = (source.account_id.clone(), source.bucket.clone());
            if !sources.contains_key(&slot) {
                let made = match wiring::source_config(self.wired, &source.account_id).await {
                    Ok(config) => Some(wiring::source_for(self.wired, &config, &source.bucket)),
                    Err(error) => {
                        warn!(account_id = %source.account_id, %error, "cannot reach the source to look for a missing log");
                        None
                    }
                };
                sources.insert(slot.clone(), made);
            }
            sources.get(&slot).cloned().flatten()
        };
        let Some(trail_source) = trail_source else {
            return Err(SeamError::AccessDenied(format!(
                "no session for account {}",
                source.account_id
            )));
        };
        let settings = wiring::collect_settings(self.wired).copy;
        match copy_object(
            trail_source.as_ref(),
            self.wired.archive.as_ref(),
            &settings,
            source,
            Utc::now(),
            None,
        )
        .await
        {
            Ok(copied) => {
                self.wired.store.record_object(source, &copied.record)?;
                info!(key = %source.key, "fetched a log file from its source that the archive lacked");
                Ok(Some(copied.record))
            }
            Err(trailvault_pipeline::copy::CopyError::Source(error)) if error.is_not_found() => {
                Ok(None)
            }
            Err(error) => Err(SeamError::Transient(error.to_string())),
        }
    }
}

pub fn verify_settings(config: &Config, full: bool) -> VerifySettings {
    VerifySettings {
        archive_prefix: config.archive.prefix.clone(),
        chain_head_stale: Duration::hours(i64::from(config.verify.chain_head_stale_hours)),
        unreferenced_grace: Duration::hours(i64::from(config.verify.unreferenced_grace_hours)),
        max_digest_bytes: 64 * 1024 * 1024,
        inflate_limits: InflateLimits {
            max_inflated_bytes: config.collect.max_inflated_bytes,
            max_ratio: config.collect.max_inflate_ratio,
        },
        full,
        concurrency: config.collect.concurrency,
    }
}

/// Validates the chains of `accounts` (all configured sources of them).
pub async fn run(
    wired: &Wired,
    accounts: &[String],
    scope: &Scope,
    keys_file: Option<&Path>,
    full: bool,
) -> anyhow::Result<VerifyOutcome> {
    let sources = archived_sources(&wired.config, accounts);
    let settings = verify_settings(&wired.config, full);
    let keys_file = keys_file.or(wired.config.verify.public_keys_file.as_deref());
    let keys: Box<dyn KeyProvider> = match keys_file {
        Some(path) => Box::new(keys_from_file(path)?),
        None => Box::new(CloudTrailKeys::new(wired)),
    };
    let lookup = SourceFetcher::new(wired);
    Ok(verify::verify(
        &sources,
        &scope.accounts,
        &scope.regions,
        wired.archive.as_ref(),
        wired.store.as_ref(),
        keys.as_ref(),
        &lookup,
        &SystemClock,
        &settings,
    )
    .await)
}

/// Adds the findings earlier runs recorded that are still open in `scope`
/// (see [`Report::include_open_findings`]): the exit status is 3 while
/// evidence of lost or altered history is on record, not only in the run
/// that found it.
pub fn include_open_findings(wired: &Wired, report: &mut Report, scope: &Scope) {
    let finding_scope = FindingScope {
        accounts: scope.accounts.clone(),
        regions: scope.regions.clone(),
        // An organization trail's bucket is read by its reader account.
        readers: wired
            .config
            .sources
            .iter()
            .filter_map(|source| match source {
                SourceSettings::Organization(org) => {
                    Some((org.bucket.clone(), org.reader_account_id.clone()))
                }
                SourceSettings::PerAccount(_) => None,
            })
            .collect(),
    };
    match wired.store.findings() {
        Ok(recorded) => report.include_open_findings(recorded, &finding_scope),
        Err(error) => report.error("-", "read findings", error.to_string()),
    }
}

/// Records the run's new findings in the archive's findings ledger (see
/// `trailvault_pipeline::ledger`), then publishes them to the SNS topic.
pub async fn announce(wired: &Wired, report: &mut Report) {
    let mut entry = LedgerEntry::new(&report.command, Utc::now());
    entry.findings = new_findings(report);
    if entry.is_empty() {
        return;
    }
    append_to_ledger(wired, report, &entry).await;
    publish(wired, report, &entry.findings).await;
}

fn new_findings(report: &Report) -> Vec<Finding> {
    report.findings.iter().filter(|f| f.new).cloned().collect()
}

/// Writes `entry` to the findings ledger; a failure is an operational error
/// of the run (the store still holds everything).
pub async fn append_to_ledger(wired: &Wired, report: &mut Report, entry: &LedgerEntry) {
    let settings = wiring::collect_settings(wired).copy;
    if let Err(error) = ledger::append(wired.archive.as_ref(), &settings, entry).await {
        report.error("-", "write the findings ledger", error.to_string());
    }
}

/// Publishes the run's new findings to the configured SNS topic: one message
/// per run, a summary line and the findings as JSON.
pub async fn publish_alerts(wired: &Wired, report: &mut Report) {
    let new = new_findings(report);
    publish(wired, report, &new).await;
}

async fn publish(wired: &Wired, report: &mut Report, new: &[Finding]) {
    let Some(topic) = &wired.config.alerts.sns_topic_arn else {
        return;
    };
    if new.is_empty() {
        return;
    }
    let critical = new
        .iter()
        .filter(|f| f.severity == trailvault_pipeline::model::findings::Severity::Critical)
        .count();
    let summary = format!(
        "trailvault {}: {} new finding(s), {critical} critical",
        report.command,
        new.len()
    );
    let message = serde_json::json!({
        "summary": summary,
        "command": report.command,
        "started_at": report.started_at,
        "findings": new,
    });
    let notifier = trailvault_infra::sns::SnsNotifier::new(&wired.audit, topic);
    if let Err(error) = notifier.publish(&summary, &message.to_string()).await {
        report.error("-", "sns:Publish", error.to_string());
    }
}
