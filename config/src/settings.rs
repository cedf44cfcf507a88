//! The typed sections of the config file, one struct per TOML table, with their
//! defaults. The schema is the contract in `docs/config-schema.md`; rules that serde
//! cannot express live in `validate.rs`.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// `[aws]`: where the AWS APIs are and, optionally, static credentials for sources.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    #[serde(default = "default_region")]
    pub region: String,
    /// When set, every client talks to this endpoint and S3 uses path-style addressing.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The AWS partition of every ARN trailvault builds (`aws`, `aws-us-gov`,
    /// `aws-cn`, …). Unset: read from the audit identity's ARN.
    #[serde(default)]
    pub partition: Option<String>,
    /// Static credentials used to read sources instead of assuming roles (S3-compatible
    /// servers without STS). Both or neither.
    #[serde(default)]
    pub source_access_key_id: Option<String>,
    #[serde(default)]
    pub source_secret_access_key: Option<String>,
    /// Seconds to open a connection before the attempt is abandoned and retried.
    #[serde(default = "default_connect_timeout_seconds")]
    pub connect_timeout_seconds: u32,
    /// Seconds without a byte before the attempt is abandoned and retried:
    /// waiting for the first byte of an answer, or while a body streams in
    /// either direction (a large GET may take long while bytes flow; a
    /// silent one may not).
    #[serde(default = "default_read_timeout_seconds")]
    pub read_timeout_seconds: u32,
    /// Seconds for one attempt of a request, up to the start of its answer's
    /// body. Uploads get longer, by their size (`upload_min_bytes_per_second`).
    #[serde(default = "default_attempt_timeout_seconds")]
    pub attempt_timeout_seconds: u32,
    /// The slowest upload rate to wait for: a PutObject or UploadPart of N
    /// bytes may take `attempt_timeout_seconds` + N / this, in seconds, and
    /// its answer `read_timeout_seconds` + N / this.
    #[serde(default = "default_upload_min_bytes_per_second")]
    pub upload_min_bytes_per_second: u64,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: default_region(),
            endpoint_url: None,
            partition: None,
            source_access_key_id: None,
            source_secret_access_key: None,
            connect_timeout_seconds: default_connect_timeout_seconds(),
            read_timeout_seconds: default_read_timeout_seconds(),
            attempt_timeout_seconds: default_attempt_timeout_seconds(),
            upload_min_bytes_per_second: default_upload_min_bytes_per_second(),
        }
    }
}

fn default_connect_timeout_seconds() -> u32 {
    5
}

fn default_read_timeout_seconds() -> u32 {
    20
}

fn default_attempt_timeout_seconds() -> u32 {
    60
}

fn default_upload_min_bytes_per_second() -> u64 {
    1024 * 1024
}

/// Hand-written so the secret key never reaches a log line through `{:?}`.
impl fmt::Debug for AwsSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AwsSettings")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("partition", &self.partition)
            .field("source_access_key_id", &self.source_access_key_id)
            .field(
                "source_secret_access_key",
                &self.source_secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("connect_timeout_seconds", &self.connect_timeout_seconds)
            .field("read_timeout_seconds", &self.read_timeout_seconds)
            .field("attempt_timeout_seconds", &self.attempt_timeout_seconds)
            .field(
                "upload_min_bytes_per_second",
                &self.upload_min_bytes_per_second,
            )
            .finish()
    }
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// `[archive]`: the destination bucket, locked with S3 Object Lock.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSettings {
    pub bucket: String,
    /// Key prefix inside the bucket; no leading or trailing `/`.
    #[serde(default = "default_archive_prefix")]
    pub prefix: String,
    /// A key ARN, a key id, or `alias/…`.
    pub kms_key_id: String,
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    #[serde(default = "default_retention_mode")]
    pub retention_mode: RetentionMode,
}

fn default_archive_prefix() -> String {
    String::new()
}

fn default_retention_days() -> u32 {
    365
}

fn default_retention_mode() -> RetentionMode {
    RetentionMode::Compliance
}

/// S3 Object Lock retention mode, spelled as S3 spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum RetentionMode {
    #[serde(rename = "COMPLIANCE")]
    Compliance,
    #[serde(rename = "GOVERNANCE")]
    Governance,
}

impl RetentionMode {
    /// The value S3 expects in `x-amz-object-lock-mode`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RetentionMode::Compliance => "COMPLIANCE",
            RetentionMode::Governance => "GOVERNANCE",
        }
    }
}

impl fmt::Display for RetentionMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// `[accounts]`: which accounts to collect from and how to get into them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// Static 12-digit account ids.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Add the ACTIVE accounts from AWS Organizations `ListAccounts`.
    #[serde(default)]
    pub discover: bool,
    /// If non-empty, only these accounts are collected.
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default = "default_role_name")]
    pub role_name: String,
    pub external_id: String,
    #[serde(default = "default_session_duration_seconds")]
    pub session_duration_seconds: u32,
}

fn default_role_name() -> String {
    "TrailvaultReader".to_owned()
}

fn default_session_duration_seconds() -> u32 {
    3600
}

/// One `[[sources]]` entry: where CloudTrail delivers logs. In TOML the variant is
/// chosen by `kind = "per_account" | "organization"`.
///
/// Read through the flat [`crate::raw::RawSource`], not serde's internally tagged
/// representation: that one buffers the entry, so a wrong type inside it is reported
/// against the `[[sources]]` header without naming the field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "crate::raw::RawSource")]
pub enum SourceSettings {
    /// One trail bucket per account, named from a template.
    PerAccount(PerAccountSource),
    /// One organization trail bucket holding every member account's logs.
    Organization(OrganizationSource),
}

impl SourceSettings {
    pub fn key_prefix(&self) -> &str {
        match self {
            SourceSettings::PerAccount(source) => &source.key_prefix,
            SourceSettings::Organization(source) => &source.key_prefix,
        }
    }

    /// Regions to read; empty means discover them from the bucket's folders.
    pub fn regions(&self) -> &[String] {
        match self {
            SourceSettings::PerAccount(source) => &source.regions,
            SourceSettings::Organization(source) => &source.regions,
        }
    }
}

/// `kind = "per_account"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerAccountSource {
    /// Bucket name containing `{account_id}`, e.g. `aws-cloudtrail-logs-{account_id}`.
    pub bucket_template: String,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    #[serde(default = "default_regions")]
    pub regions: Vec<String>,
}

/// The placeholder a [`PerAccountSource::bucket_template`] must contain.
pub const ACCOUNT_ID_PLACEHOLDER: &str = "{account_id}";

impl PerAccountSource {
    /// The bucket holding `account_id`'s trail: the template with every
    /// `{account_id}` replaced.
    pub fn bucket_for(&self, account_id: &str) -> String {
        self.bucket_template
            .replace(ACCOUNT_ID_PLACEHOLDER, account_id)
    }
}

/// `kind = "organization"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationSource {
    pub bucket: String,
    /// `o-` followed by 10..=32 lowercase letters or digits.
    pub org_id: String,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// The account whose role reads this bucket.
    pub reader_account_id: String,
    #[serde(default = "default_regions")]
    pub regions: Vec<String>,
}

pub(crate) fn default_key_prefix() -> String {
    String::new()
}

pub(crate) fn default_regions() -> Vec<String> {
    Vec::new()
}

/// `[collect]`: how the copy stage behaves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectSettings {
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Open partitions: today and the N previous days.
    #[serde(default = "default_lookback_days")]
    pub lookback_days: u32,
    #[serde(default = "default_redelivery_sweep_days")]
    pub redelivery_sweep_days: u32,
    #[serde(default = "default_multipart_threshold_bytes")]
    pub multipart_threshold_bytes: u64,
    /// Cap on a log file's decompressed size (gzip bomb guard).
    #[serde(default = "default_max_inflated_bytes")]
    pub max_inflated_bytes: u64,
    /// Cap on decompressed/compressed size ratio (gzip bomb guard).
    #[serde(default = "default_max_inflate_ratio")]
    pub max_inflate_ratio: u64,
    #[serde(default = "default_verify_after_collect")]
    pub verify_after_collect: bool,
    /// 0 = unlimited.
    #[serde(default = "default_source_requests_per_second")]
    pub source_requests_per_second: u32,
    /// New or changed keys one run takes from one partition (one day folder
    /// of one region); the rest are collected by the next runs. Bounds the
    /// memory and the findings a flooded partition costs per run.
    #[serde(default = "default_max_keys_per_partition_per_run")]
    pub max_keys_per_partition_per_run: u64,
    /// Objects larger than this are not copied: one `object_malformed`
    /// finding per object version instead.
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: u64,
}

impl Default for CollectSettings {
    fn default() -> Self {
        CollectSettings {
            concurrency: default_concurrency(),
            lookback_days: default_lookback_days(),
            redelivery_sweep_days: default_redelivery_sweep_days(),
            multipart_threshold_bytes: default_multipart_threshold_bytes(),
            max_inflated_bytes: default_max_inflated_bytes(),
            max_inflate_ratio: default_max_inflate_ratio(),
            verify_after_collect: default_verify_after_collect(),
            source_requests_per_second: default_source_requests_per_second(),
            max_keys_per_partition_per_run: default_max_keys_per_partition_per_run(),
            max_object_bytes: default_max_object_bytes(),
        }
    }
}

pub(crate) const MIB: u64 = 1024 * 1024;
pub(crate) const GIB: u64 = 1024 * MIB;

fn default_concurrency() -> usize {
    32
}

fn default_lookback_days() -> u32 {
    3
}

fn default_redelivery_sweep_days() -> u32 {
    30
}

fn default_multipart_threshold_bytes() -> u64 {
    16 * MIB
}

fn default_max_inflated_bytes() -> u64 {
    256 * MIB
}

fn default_max_inflate_ratio() -> u64 {
    1000
}

fn default_verify_after_collect() -> bool {
    true
}

fn default_source_requests_per_second() -> u32 {
    0
}

/// A busy account-region delivers a few thousand files a day per folder.
fn default_max_keys_per_partition_per_run() -> u64 {
    10_000
}

/// Busy accounts produce log files of tens of MB.
fn default_max_object_bytes() -> u64 {
    GIB
}

/// `[store]`: the local progress database.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Kept as written; a relative path is resolved by the binary.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            path: default_store_path(),
        }
    }
}

fn default_store_path() -> PathBuf {
    PathBuf::from("./trailvault-store")
}

/// `[verify]`: integrity checking of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySettings {
    #[serde(default = "default_chain_head_stale_hours")]
    pub chain_head_stale_hours: u32,
    #[serde(default = "default_unreferenced_grace_hours")]
    pub unreferenced_grace_hours: u32,
    /// How long a check validation cannot make — a log file a digest lists
    /// that its source refuses to hand over, a public key `ListPublicKeys`
    /// does not give — stays an operational error before it is a finding.
    #[serde(default = "default_unreadable_grace_hours")]
    pub unreadable_grace_hours: u32,
    /// Largest digest file accepted, raw and inflated; a larger one is
    /// `digest_malformed` (real digests are a few kilobytes).
    #[serde(default = "default_max_digest_bytes")]
    pub max_digest_bytes: u64,
    /// CloudTrail digest public keys; when absent, fetched with `ListPublicKeys`.
    #[serde(default)]
    pub public_keys_file: Option<PathBuf>,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            chain_head_stale_hours: default_chain_head_stale_hours(),
            unreferenced_grace_hours: default_unreferenced_grace_hours(),
            unreadable_grace_hours: default_unreadable_grace_hours(),
            max_digest_bytes: default_max_digest_bytes(),
            public_keys_file: None,
        }
    }
}

fn default_chain_head_stale_hours() -> u32 {
    3
}

fn default_unreferenced_grace_hours() -> u32 {
    24
}

fn default_unreadable_grace_hours() -> u32 {
    24
}

fn default_max_digest_bytes() -> u64 {
    4 * MIB
}

/// `[retention]`: what `trailvault retention` does besides the archive's locks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Source expiry: with `retention --apply`, delete trail files from the
    /// source buckets once their name is more than this many days old and they
    /// are archived unchanged and chain-validated. `None` (the default): off.
    /// 0 deletes as soon as those conditions hold.
    #[serde(default)]
    pub source_retention_days: Option<u32>,
}

/// `[alerts]`: where problems are published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    #[serde(default)]
    pub sns_topic_arn: Option<String>,
    /// EventBridge bus (name or ARN) that gets one event per finding.
    #[serde(default)]
    pub event_bus: Option<String>,
    /// The account that imports `trailvault findings --format asff` into
    /// Security Hub (its ProductArn names it); the command line's
    /// `--asff-account-id` takes precedence.
    #[serde(default)]
    pub asff_account_id: Option<String>,
}

/// `[metrics]`: the daemon's Prometheus/OpenMetrics endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Address `trailvault run` serves `/metrics` on, e.g. `127.0.0.1:9464`;
    /// `None` (the default): no endpoint. `--metrics-addr` takes precedence.
    #[serde(default)]
    pub addr: Option<std::net::SocketAddr>,
}

/// `[shard]`: this worker's shard of the accounts (see `docs/configuration.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSettings {
    /// `K/N` (shard K of N, 0-based) or `env/N` (K from
    /// `AWS_BATCH_JOB_ARRAY_INDEX` or `JOB_COMPLETION_INDEX`); `None` (the
    /// default): every account. `--shard` / `TRAILVAULT_SHARD` take
    /// precedence. Checked when a command starts.
    #[serde(default)]
    pub spec: Option<String>,
}
