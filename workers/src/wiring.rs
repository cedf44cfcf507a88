//! Wires the seams together: the audit identity's clients, the archive, the
//! store, member sessions and the source scopes of a run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aws_config::SdkConfig;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use trailvault_config::{Config, RetentionMode, SourceSettings};
use trailvault_infra::aws::classify;
use trailvault_infra::rate_limit::{RateLimitedSource, RateLimiter};
use trailvault_infra::retry::{retry, RetryPolicy, RetryingArchive, RetryingSource};
use trailvault_infra::s3::archive::S3Archive;
use trailvault_infra::s3::source::S3Source;
use trailvault_infra::sessions::{
    assume_member_role, session_name, static_source_config, RoleRequest,
};
use trailvault_infra::store::SledStore;
use trailvault_pipeline::cloudtrail::gzip::InflateLimits;
use trailvault_pipeline::collect::{CollectSettings, SourceScope};
use trailvault_pipeline::copy::CopySettings;
use trailvault_pipeline::model::report::OperationError;
use trailvault_pipeline::seams::{Archive, LockMode, TrailSource};

use crate::cli::Scope;

/// Everything a command needs from the outside world.
pub struct Wired {
    pub config: Config,
    pub audit: SdkConfig,
    pub archive: Arc<dyn Archive>,
    pub store: Arc<SledStore>,
    pub cancel: CancellationToken,
    pub retry: RetryPolicy,
    pub run_id: String,
    /// The archive KMS key as a full ARN when it could be resolved.
    pub kms_key_arn: String,
}

fn path_style(config: &Config) -> bool {
    config.aws.endpoint_url.is_some()
}

pub fn open_store(config: &Config) -> anyhow::Result<Arc<SledStore>> {
    let path = &config.store.path;
    let store = SledStore::open(path)
        .with_context(|| format!("opening the progress store at {}", path.display()))?;
    Ok(Arc::new(store))
}

pub async fn wire(config: Config, cancel: CancellationToken) -> anyhow::Result<Wired> {
    let store = open_store(&config)?;
    let audit = trailvault_infra::aws::audit_config(&config.aws).await;
    let retry = RetryPolicy::default();
    let client = trailvault_infra::aws::s3_client(&audit, path_style(&config));
    let archive: Arc<dyn Archive> = Arc::new(RetryingArchive::new(
        Arc::new(S3Archive::new(client, &config.archive.bucket)),
        retry.clone(),
        cancel.clone(),
    ));
    let kms_key_arn = resolve_kms_key(&audit, &config.archive.kms_key_id, &retry, &cancel).await;
    let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    Ok(Wired {
        config,
        audit,
        archive,
        store,
        cancel,
        retry,
        run_id,
        kms_key_arn,
    })
}

/// The key's ARN (HEAD reports ARNs); the configured value if the audit
/// identity may not describe the key. DescribeKey is retried like every call
/// (the SDK makes one attempt), so a throttle does not fall back needlessly.
async fn resolve_kms_key(
    audit: &SdkConfig,
    configured: &str,
    policy: &RetryPolicy,
    cancel: &CancellationToken,
) -> String {
    if configured.starts_with("arn:") {
        return configured.to_string();
    }
    let client = aws_sdk_kms::Client::new(audit);
    let described = retry(policy, cancel, |_| {
        let request = client.describe_key().key_id(configured);
        async move {
            request
                .send()
                .await
                .map_err(|e| classify("kms:DescribeKey", e))
        }
    })
    .await;
    match described {
        Ok(output) => output
            .key_metadata()
            .and_then(|m| m.arn())
            .map(str::to_string)
            .unwrap_or_else(|| configured.to_string()),
        Err(error) => {
            warn!(key = configured, %error, "cannot resolve the archive KMS key; comparing by the configured value");
            configured.to_string()
        }
    }
}

pub fn collect_settings(wired: &Wired) -> CollectSettings {
    let config = &wired.config;
    CollectSettings {
        copy: CopySettings {
            archive_prefix: config.archive.prefix.clone(),
            kms_key_id: wired.kms_key_arn.clone(),
            lock_mode: match config.archive.retention_mode {
                RetentionMode::Compliance => LockMode::Compliance,
                RetentionMode::Governance => LockMode::Governance,
            },
            retention_days: config.archive.retention_days,
            multipart_threshold_bytes: config.collect.multipart_threshold_bytes,
            inflate_limits: InflateLimits {
                max_inflated_bytes: config.collect.max_inflated_bytes,
                max_ratio: config.collect.max_inflate_ratio,
            },
        },
        concurrency: config.collect.concurrency,
        list_concurrency: config.collect.concurrency.clamp(1, 16),
        lookback_days: config.collect.lookback_days,
        redelivery_sweep_days: config.collect.redelivery_sweep_days,
        sweep_interval: chrono::Duration::hours(24),
        copy_attempts: 3,
    }
}

/// The accounts of this run: static ids and discovered ACTIVE accounts,
/// filtered by include/exclude and by `--account`.
pub async fn accounts(wired: &Wired, scope: &Scope) -> anyhow::Result<Vec<String>> {
    let settings = &wired.config.accounts;
    let mut accounts: BTreeSet<String> = settings.ids.iter().cloned().collect();
    if settings.discover {
        let client = trailvault_infra::organizations::OrganizationsClient::new(
            &wired.audit,
            wired.retry.clone(),
            wired.cancel.clone(),
        );
        let discovered = trailvault_infra::organizations::active_accounts(&client)
            .await
            .context("discovering accounts with organizations:ListAccounts")?;
        info!(count = discovered.len(), "accounts discovered");
        accounts.extend(discovered);
    }
    Ok(filter_accounts(
        accounts,
        &settings.include,
        &settings.exclude,
        &scope.accounts,
    ))
}

pub fn filter_accounts(
    accounts: BTreeSet<String>,
    include: &[String],
    exclude: &[String],
    only: &[String],
) -> Vec<String> {
    accounts
        .into_iter()
        .filter(|id| include.is_empty() || include.contains(id))
        .filter(|id| !exclude.contains(id))
        .filter(|id| only.is_empty() || only.contains(id))
        .collect()
}

/// Reads sources of `account_id`: an assumed member role, or static
/// credentials when configured (benchmarks against servers without STS).
pub async fn source_config(
    wired: &Wired,
    account_id: &str,
) -> Result<SdkConfig, trailvault_pipeline::SeamError> {
    let aws = &wired.config.aws;
    if let (Some(key), Some(secret)) = (&aws.source_access_key_id, &aws.source_secret_access_key) {
        return Ok(static_source_config(&wired.audit, key, secret));
    }
    let accounts = &wired.config.accounts;
    let session = session_name(&wired.run_id);
    let request = RoleRequest {
        account_id,
        role_name: &accounts.role_name,
        external_id: &accounts.external_id,
        session_name: &session,
        session_duration: Duration::from_secs(u64::from(accounts.session_duration_seconds)),
    };
    assume_member_role(&wired.audit, &request, &wired.retry, &wired.cancel).await
}

pub fn source_for(wired: &Wired, config: &SdkConfig, bucket: &str) -> Arc<dyn TrailSource> {
    let client = trailvault_infra::aws::s3_client(config, path_style(&wired.config));
    let mut source: Arc<dyn TrailSource> = Arc::new(S3Source::new(client, bucket));
    // The cap applies per attempt, under the retries.
    if let Some(limiter) = RateLimiter::per_second(wired.config.collect.source_requests_per_second)
    {
        source = Arc::new(RateLimitedSource::new(source, limiter));
    }
    Arc::new(RetryingSource::new(
        source,
        wired.retry.clone(),
        wired.cancel.clone(),
    ))
}

fn root(prefix: &str, org_id: Option<&str>, account_id: &str) -> String {
    let mut root = String::new();
    if !prefix.is_empty() {
        root.push_str(prefix);
        root.push('/');
    }
    root.push_str("AWSLogs/");
    if let Some(org_id) = org_id {
        root.push_str(org_id);
        root.push('/');
    }
    root.push_str(account_id);
    root.push('/');
    root
}

fn regions(configured: &[String], only: &[String]) -> Vec<String> {
    if only.is_empty() {
        configured.to_vec()
    } else if configured.is_empty() {
        only.to_vec()
    } else {
        configured
            .iter()
            .filter(|r| only.contains(r))
            .cloned()
            .collect()
    }
}

/// Sessions and source scopes for `accounts`. An account whose role cannot
/// be assumed is reported and left out; the others go on.
pub async fn scopes(
    wired: &Wired,
    accounts: &[String],
    scope: &Scope,
) -> (Vec<SourceScope>, Vec<OperationError>) {
    let mut errors = Vec::new();
    let mut scopes = Vec::new();
    let mut sessions: BTreeMap<String, Option<SdkConfig>> = BTreeMap::new();
    let mut readers: BTreeSet<String> = BTreeSet::new();
    for source in &wired.config.sources {
        match source {
            SourceSettings::PerAccount(_) => readers.extend(accounts.iter().cloned()),
            SourceSettings::Organization(org) => {
                readers.insert(org.reader_account_id.clone());
            }
        }
    }
    let resolved = futures::future::join_all(
        readers
            .iter()
            .map(|account| async move { (account.clone(), source_config(wired, account).await) }),
    )
    .await;
    for (account, result) in resolved {
        match result {
            Ok(config) => {
                sessions.insert(account, Some(config));
            }
            Err(error) => {
                warn!(account_id = %account, %error, "cannot assume the member role");
                errors.push(OperationError {
                    account_id: account.clone(),
                    operation: "sts:AssumeRole".to_string(),
                    message: error.to_string(),
                });
                sessions.insert(account, None);
            }
        }
    }
    for source in &wired.config.sources {
        match source {
            SourceSettings::PerAccount(per_account) => {
                for account in accounts {
                    let Some(Some(config)) = sessions.get(account) else {
                        continue;
                    };
                    let bucket = per_account.bucket_for(account);
                    scopes.push(SourceScope {
                        reader_account_id: account.clone(),
                        member_account_id: account.clone(),
                        source: source_for(wired, config, &bucket),
                        root: root(&per_account.key_prefix, None, account),
                        regions: regions(&per_account.regions, &scope.regions),
                        foreign_accounts: true,
                    });
                }
            }
            SourceSettings::Organization(org) => {
                let Some(Some(config)) = sessions.get(&org.reader_account_id) else {
                    continue;
                };
                let source = source_for(wired, config, &org.bucket);
                // Member folders persist after an account leaves the organization:
                // collect every folder found, filtered like the account list.
                let org_root = root(&org.key_prefix, None, &org.org_id);
                let mut members: BTreeSet<String> = accounts.iter().cloned().collect();
                match source.list_folders(&org_root).await {
                    Ok(folders) => {
                        let found: BTreeSet<String> = folders
                            .iter()
                            .filter_map(|f| {
                                f.strip_prefix(&org_root)
                                    .map(|s| s.trim_end_matches('/').to_string())
                            })
                            .filter(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()))
                            .collect();
                        let settings = &wired.config.accounts;
                        members.extend(filter_accounts(
                            found,
                            &settings.include,
                            &settings.exclude,
                            &scope.accounts,
                        ));
                    }
                    Err(error) => {
                        errors.push(OperationError {
                            account_id: org.reader_account_id.clone(),
                            operation: format!("list s3://{}/{org_root}", org.bucket),
                            message: error.to_string(),
                        });
                        continue;
                    }
                }
                for member in members {
                    scopes.push(SourceScope {
                        reader_account_id: org.reader_account_id.clone(),
                        member_account_id: member.clone(),
                        source: source.clone(),
                        root: root(&org.key_prefix, Some(&org.org_id), &member),
                        regions: regions(&org.regions, &scope.regions),
                        foreign_accounts: false,
                    });
                }
            }
        }
    }
    (scopes, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn account_filters_apply_include_then_exclude_then_only() {
        let all = set(&["111111111111", "222222222222", "333333333333"]);
        assert_eq!(filter_accounts(all.clone(), &[], &[], &[]).len(), 3);
        assert_eq!(
            filter_accounts(all.clone(), &["111111111111".into()], &[], &[]),
            vec!["111111111111"]
        );
        assert_eq!(
            filter_accounts(all.clone(), &[], &["111111111111".into()], &[]),
            vec!["222222222222", "333333333333"]
        );
        assert_eq!(
            filter_accounts(all, &[], &["222222222222".into()], &["222222222222".into()]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn roots_follow_the_cloudtrail_layouts() {
        assert_eq!(root("", None, "111111111111"), "AWSLogs/111111111111/");
        assert_eq!(
            root("org/x", Some("o-abc"), "111111111111"),
            "org/x/AWSLogs/o-abc/111111111111/"
        );
        assert_eq!(root("p", None, "o-abc"), "p/AWSLogs/o-abc/");
    }

    #[test]
    fn region_limits_intersect_configured_regions() {
        let configured = vec!["us-east-1".to_string(), "eu-west-1".to_string()];
        assert_eq!(regions(&configured, &[]), configured);
        assert_eq!(
            regions(&configured, &["eu-west-1".into()]),
            vec!["eu-west-1"]
        );
        assert_eq!(regions(&[], &["eu-west-1".into()]), vec!["eu-west-1"]);
    }
}
