//! The configuration file's settings as the pipeline's jobs take them.

use std::path::{Path, PathBuf};

use chrono::Duration;
use trailvault_config::{Config, RetentionMode, SourceSettings};
use trailvault_pipeline::cloudtrail::gzip::InflateLimits;
use trailvault_pipeline::collect::CollectSettings;
use trailvault_pipeline::copy::CopySettings;
use trailvault_pipeline::jobs::{AccountSelection, JobSettings, SourceSpec};
use trailvault_pipeline::model::shard::{self, Shard};
use trailvault_pipeline::seams::LockMode;
use trailvault_pipeline::verify::VerifySettings;

/// Everything the jobs need from `config`; `kms_key_arn` is the archive key
/// as resolved by the audit identity.
pub fn job_settings(config: &Config, kms_key_arn: &str) -> JobSettings {
    let accounts = &config.accounts;
    JobSettings {
        accounts: AccountSelection {
            ids: configured_accounts(config),
            discover: accounts.discover,
            include: accounts.include.clone(),
            exclude: accounts.exclude.clone(),
            shard: resolved_shard(config),
        },
        sources: config.sources.iter().map(source_spec).collect(),
        collect: collect_settings(config, kms_key_arn),
        verify_after_collect: config.collect.verify_after_collect,
        verify: verify_settings(config, false),
        public_keys_file: config.verify.public_keys_file.clone(),
        source_retention_days: config.retention.source_retention_days,
        store_path: config.store.path.clone(),
    }
}

/// The shard of this process: `--shard` / `TRAILVAULT_SHARD` (`cli`), else
/// `[shard] spec`; `env/N` reads the index from the environment. A sharded
/// process gets its own store (`<store path>.shard-K-of-N`) and
/// `config.shard.spec` holds the resolved `K/N`. The error is the message.
pub fn apply_shard(config: &mut Config, cli: Option<&str>) -> Result<Option<Shard>, String> {
    let (text, origin) = match cli {
        Some(text) => (text.to_string(), "--shard"),
        None => match &config.shard.spec {
            Some(text) => (text.clone(), "[shard] spec"),
            None => return Ok(None),
        },
    };
    let shard = shard::parse(&text, &|name| std::env::var(name).ok())
        .map_err(|error| format!("{origin}: {error}"))?;
    config.store.path = sharded_store_path(&config.store.path, shard);
    config.shard.spec = Some(shard.to_string());
    Ok(Some(shard))
}

/// `<path>.shard-K-of-N`: each shard's own progress store.
pub fn sharded_store_path(path: &Path, shard: Shard) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{}", shard.label()));
    PathBuf::from(name)
}

/// The configured account ids this process covers: all, or its shard's.
pub fn configured_accounts(config: &Config) -> Vec<String> {
    let shard = resolved_shard(config);
    let mut ids = config.accounts.ids.clone();
    ids.retain(|id| shard::covers(shard.as_ref(), id));
    ids
}

/// The resolved shard (see [`apply_shard`]).
fn resolved_shard(config: &Config) -> Option<Shard> {
    let text = config.shard.spec.as_deref()?;
    shard::parse(text, &|_| None).ok()
}

fn source_spec(source: &SourceSettings) -> SourceSpec {
    match source {
        SourceSettings::PerAccount(per_account) => SourceSpec::PerAccount {
            bucket_template: per_account.bucket_template.clone(),
            key_prefix: per_account.key_prefix.clone(),
            regions: per_account.regions.clone(),
        },
        SourceSettings::Organization(org) => SourceSpec::Organization {
            bucket: org.bucket.clone(),
            org_id: org.org_id.clone(),
            key_prefix: org.key_prefix.clone(),
            reader_account_id: org.reader_account_id.clone(),
            regions: org.regions.clone(),
        },
    }
}

fn inflate_limits(config: &Config) -> InflateLimits {
    InflateLimits {
        max_inflated_bytes: config.collect.max_inflated_bytes,
        max_ratio: config.collect.max_inflate_ratio,
    }
}

pub fn collect_settings(config: &Config, kms_key_arn: &str) -> CollectSettings {
    CollectSettings {
        copy: CopySettings {
            archive_prefix: config.archive.prefix.clone(),
            kms_key_id: kms_key_arn.to_string(),
            lock_mode: match config.archive.retention_mode {
                RetentionMode::Compliance => LockMode::Compliance,
                RetentionMode::Governance => LockMode::Governance,
            },
            retention_days: config.archive.retention_days,
            multipart_threshold_bytes: config.collect.multipart_threshold_bytes,
            inflate_limits: inflate_limits(config),
        },
        concurrency: config.collect.concurrency,
        list_concurrency: config.collect.concurrency.clamp(1, 16),
        lookback_days: config.collect.lookback_days,
        redelivery_sweep_days: config.collect.redelivery_sweep_days,
        sweep_interval: Duration::hours(24),
        copy_attempts: 3,
        max_keys_per_partition_per_run: usize::try_from(
            config.collect.max_keys_per_partition_per_run,
        )
        .unwrap_or(usize::MAX),
        max_object_bytes: config.collect.max_object_bytes,
    }
}

pub fn verify_settings(config: &Config, full: bool) -> VerifySettings {
    VerifySettings {
        archive_prefix: config.archive.prefix.clone(),
        chain_head_stale: Duration::hours(i64::from(config.verify.chain_head_stale_hours)),
        unreferenced_grace: Duration::hours(i64::from(config.verify.unreferenced_grace_hours)),
        unreadable_grace: Duration::hours(i64::from(config.verify.unreadable_grace_hours)),
        max_digest_bytes: usize::try_from(config.verify.max_digest_bytes).unwrap_or(usize::MAX),
        inflate_limits: inflate_limits(config),
        full,
        concurrency: config.collect.concurrency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_gets_its_own_store_and_the_command_line_wins() {
        let mut config = Config::from_toml_str(trailvault_config::EXAMPLE_TOML).unwrap();
        assert_eq!(config.shard.spec.as_deref(), Some("env/3"));
        config.shard.spec = None;
        let unsharded = config.store.path.clone();
        assert_eq!(apply_shard(&mut config, None).unwrap(), None);
        assert_eq!(config.store.path, unsharded);
        assert!(job_settings(&config, "k").accounts.shard.is_none());

        config.shard.spec = Some("2/3".to_string());
        let shard = apply_shard(&mut config, Some("1/3")).unwrap().unwrap();
        assert_eq!(shard.to_string(), "1/3");
        let mut expected = unsharded.clone().into_os_string();
        expected.push(".shard-1-of-3");
        assert_eq!(config.store.path, PathBuf::from(expected));
        let settings = job_settings(&config, "k");
        assert_eq!(settings.accounts.shard, Some(shard));
        assert!(settings.accounts.ids.iter().all(|id| shard.owns(id)));
        assert_eq!(settings.accounts.ids, configured_accounts(&config));
        assert_eq!(settings.store_path, config.store.path);

        let mut config = Config::from_toml_str(trailvault_config::EXAMPLE_TOML).unwrap();
        config.shard.spec = Some("3/3".to_string());
        let error = apply_shard(&mut config, None).unwrap_err();
        assert!(error.starts_with("[shard] spec: `3/3`"), "{error}");
        assert_eq!(config.store.path, unsharded, "nothing applied on an error");
    }

    #[test]
    fn sources_and_settings_follow_the_configuration() {
        let config = Config::from_toml_str(trailvault_config::EXAMPLE_TOML).unwrap();
        let settings = job_settings(&config, "arn:aws:kms:us-east-1:1:key/k");
        assert_eq!(settings.sources.len(), config.sources.len());
        assert_eq!(
            settings.collect.copy.kms_key_id,
            "arn:aws:kms:us-east-1:1:key/k"
        );
        assert_eq!(settings.collect.copy.archive_prefix, config.archive.prefix);
        assert_eq!(settings.verify.archive_prefix, config.archive.prefix);
        assert!(!settings.verify.full);
        assert_eq!(
            settings.verify.max_digest_bytes as u64,
            config.verify.max_digest_bytes
        );
        assert_eq!(
            settings.verify.unreadable_grace,
            Duration::hours(i64::from(config.verify.unreadable_grace_hours))
        );
        for (spec, source) in settings.sources.iter().zip(&config.sources) {
            match (spec, source) {
                (
                    SourceSpec::PerAccount {
                        bucket_template, ..
                    },
                    SourceSettings::PerAccount(per_account),
                ) => assert_eq!(
                    SourceSpec::bucket_for(bucket_template, "111122223333"),
                    per_account.bucket_for("111122223333")
                ),
                (SourceSpec::Organization { bucket, .. }, SourceSettings::Organization(org)) => {
                    assert_eq!(bucket, &org.bucket)
                }
                _ => panic!("source kinds differ"),
            }
        }
    }
}
