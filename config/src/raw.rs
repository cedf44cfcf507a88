//! The flat shapes serde reads before the `[[sources]]` kind checks.
//!
//! Each `[[sources]]` entry is read as one struct holding every field any kind
//! accepts, so toml reports unknown fields and wrong types at the exact key. Which
//! fields belong to which `kind` is checked afterwards, where the entry's index is
//! known and the error can name `sources[1].bucket`.

use serde::Deserialize;

use crate::error::ConfigError;
use crate::settings::{
    default_key_prefix, default_regions, AccountSettings, AlertSettings, ArchiveSettings,
    AwsSettings, CollectSettings, MetricsSettings, OrganizationSource, PerAccountSource,
    RetentionSettings, ShardSettings, SourceSettings, StoreSettings, VerifySettings,
};
use crate::Config;

/// The file as written. `[archive]` and `[accounts]` are required; every other table
/// may be omitted and takes its defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    aws: AwsSettings,
    archive: ArchiveSettings,
    accounts: AccountSettings,
    #[serde(default)]
    sources: Vec<RawSource>,
    #[serde(default)]
    collect: CollectSettings,
    #[serde(default)]
    store: StoreSettings,
    #[serde(default)]
    verify: VerifySettings,
    #[serde(default)]
    retention: RetentionSettings,
    #[serde(default)]
    alerts: AlertSettings,
    #[serde(default)]
    metrics: MetricsSettings,
    #[serde(default)]
    shard: ShardSettings,
    #[serde(default)]
    intake: crate::intake::IntakeSettings,
}

impl RawConfig {
    /// Resolves source kinds; does not run the value rules.
    pub(crate) fn into_config(self) -> Result<Config, ConfigError> {
        let sources = self
            .sources
            .into_iter()
            .enumerate()
            .map(|(index, source)| source.into_source(&format!("sources[{index}].")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Config {
            aws: self.aws,
            archive: self.archive,
            accounts: self.accounts,
            sources,
            collect: self.collect,
            store: self.store,
            verify: self.verify,
            retention: self.retention,
            alerts: self.alerts,
            metrics: self.metrics,
            shard: self.shard,
            intake: self.intake,
        })
    }
}

/// Deserializing a [`Config`] with serde directly gives the same guarantees as
/// [`Config::from_toml_str`]: kinds resolved and every value rule checked.
impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, Self::Error> {
        let config = raw.into_config()?;
        config.validate()?;
        Ok(config)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum SourceKind {
    PerAccount,
    Organization,
}

impl SourceKind {
    fn as_str(&self) -> &'static str {
        match self {
            SourceKind::PerAccount => "per_account",
            SourceKind::Organization => "organization",
        }
    }
}

/// Every field any source kind accepts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    kind: Option<SourceKind>,
    bucket_template: Option<String>,
    bucket: Option<String>,
    org_id: Option<String>,
    key_prefix: Option<String>,
    reader_account_id: Option<String>,
    regions: Option<Vec<String>>,
}

impl RawSource {
    /// `path` prefixes field names in errors, e.g. `sources[1].`.
    fn into_source(self, path: &str) -> Result<SourceSettings, ConfigError> {
        let Some(kind) = self.kind else {
            return Err(ConfigError::invalid(
                format!("{path}kind"),
                "is required: \"per_account\" or \"organization\"",
            ));
        };
        let kind_name = kind.as_str();
        let reject = |field: &str, present: bool| {
            if present {
                return Err(ConfigError::invalid(
                    format!("{path}{field}"),
                    format!("is not allowed when kind = \"{kind_name}\""),
                ));
            }
            Ok(())
        };
        let require = |field: &str, value: Option<String>| {
            value.ok_or_else(|| {
                ConfigError::invalid(
                    format!("{path}{field}"),
                    format!("is required when kind = \"{kind_name}\""),
                )
            })
        };
        let key_prefix = self.key_prefix.unwrap_or_else(default_key_prefix);
        let regions = self.regions.unwrap_or_else(default_regions);
        match kind {
            SourceKind::PerAccount => {
                reject("bucket", self.bucket.is_some())?;
                reject("org_id", self.org_id.is_some())?;
                reject("reader_account_id", self.reader_account_id.is_some())?;
                Ok(SourceSettings::PerAccount(PerAccountSource {
                    bucket_template: require("bucket_template", self.bucket_template)?,
                    key_prefix,
                    regions,
                }))
            }
            SourceKind::Organization => {
                reject("bucket_template", self.bucket_template.is_some())?;
                Ok(SourceSettings::Organization(OrganizationSource {
                    bucket: require("bucket", self.bucket)?,
                    org_id: require("org_id", self.org_id)?,
                    key_prefix,
                    reader_account_id: require("reader_account_id", self.reader_account_id)?,
                    regions,
                }))
            }
        }
    }
}

/// A single source deserialized on its own; errors name the bare field.
impl TryFrom<RawSource> for SourceSettings {
    type Error = ConfigError;

    fn try_from(raw: RawSource) -> Result<Self, Self::Error> {
        raw.into_source("")
    }
}
