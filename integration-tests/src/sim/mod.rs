//! The trail simulator: plays AWS for trailvault's end-to-end tests.
//!
//! No emulator delivers CloudTrail files, so this module provisions an organization on
//! the emulator (audit account with a locked archive bucket, KMS key and collector
//! user; member accounts with trail buckets and reader roles; an organization trail in
//! a management account), then writes realistic log files and RSA-signed digest chains
//! exactly as CloudTrail does (`docs/cloudtrail-format.md`), and can tamper with them
//! the way a member-account administrator could.
//!
//! It is an independent implementation of the formats: nothing here comes from the
//! pipeline crate, so the validator is checked against a second reading of the spec.
//!
//! Time: digest windows are anchored so that delivering `history_hours` hours ends a
//! few minutes before the real time of provisioning (see [`SimClock`]). All names and
//! timestamps are in the past.

mod alerts;
mod cloudtrail;
mod config_toml;
mod deliver;
mod forgery;
pub mod policies;
mod provision;
mod rng;
mod signing;
mod stacks;
mod tamper;

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use alerts::{Alert, AlertInbox, EventInbox};
pub use cloudtrail::{
    digest_key, gunzip_single_member, gzip, iso_time, key_root, log_key, DigestBody, LogFileEntry,
    PreviousDigest, DIGEST_FAMILY, HASH_ALGORITHM, INSIGHT_FAMILY, LOG_FAMILY, ORG_TRAIL_NAME,
    PER_ACCOUNT_TRAIL_NAME,
};
pub use config_toml::ConfigOptions;
pub use deliver::{DeliveryReport, LateDelivery};
pub use forgery::PlantedForgery;
pub(crate) use provision::sdk_error;
pub use signing::{
    fingerprint, public_keys_from_json, sha256_hex, string_to_sign, verify_digest_object,
    PublicKeyEntry, PublicKeyList, SigningKey, SigningKeyState, SIGNATURE_ALGORITHM,
};
pub use stacks::{OrgStacks, COLLECTOR_RUNNER_USER_NAME};
pub use tamper::{AppliedTamper, ExpectedFinding, Tamper, TamperReport};

use crate::harness;

/// Version of the saved [`SimOrg`] JSON.
pub const SIM_STATE_VERSION: u32 = 1;
/// The audit account (archive, KMS key, collector).
pub const AUDIT_ACCOUNT_ID: &str = "111111111111";
/// The organization's management account (owns the organization trail's bucket).
pub const MANAGEMENT_ACCOUNT_ID: &str = "999999999999";
/// The simulated organization id.
pub const ORG_ID: &str = "o-sim1234567";
/// Key prefix of the organization trail.
pub const ORG_TRAIL_KEY_PREFIX: &str = "org";
/// Name of the collector IAM user in the audit account.
pub const COLLECTOR_USER_NAME: &str = "trailvault-collector";
/// An IAM user in the audit account that broken members trust instead of the collector.
pub const IMPOSTER_USER_NAME: &str = "trailvault-not-the-collector";
/// Prefix under which trailvault archives copies (written into the generated config).
pub const ARCHIVE_PREFIX: &str = "archive";
/// Template of the per-account trail bucket names.
pub const TRAIL_BUCKET_TEMPLATE: &str = "aws-cloudtrail-logs-{account_id}";

/// The `n`th member account id (0-based): 222222222201, 222222222202, ...
pub fn member_account_id(index: usize) -> String {
    (222_222_222_201_u64 + index as u64).to_string()
}

/// What [`Sim::provision`] creates.
#[derive(Debug, Clone)]
pub struct ProvisionOptions {
    /// Number of member accounts (1..=99).
    pub members: usize,
    /// Regions the trails deliver from; the first is the trails' home Region.
    pub regions: Vec<String>,
    /// An organization trail in the management account's bucket.
    pub org_trail: bool,
    /// A multi-Region trail with its own bucket in every member account.
    pub per_account_trails: bool,
    /// Object Lock default retention of the archive (COMPLIANCE mode).
    pub retention_days: i32,
    /// Member indices (0-based) whose reader role trusts another principal instead of
    /// the collector, so the collector cannot assume it.
    pub broken_members: Vec<usize>,
    /// How many simulated hours the scenario will deliver in total: the clock starts
    /// this many hours (plus a few minutes) before now, so delivering all of them
    /// ends just before the real current time, and fewer leaves room to deliver more
    /// later ([`Sim::deliver_hours`] never writes the future).
    pub history_hours: u32,
    /// Seed for every generated name and record; `None` = random.
    pub seed: Option<u64>,
    /// The Region the members' own trail buckets are created in
    /// (`LocationConstraint`); `None` = the emulator's default (us-east-1).
    pub trail_bucket_region: Option<String>,
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        ProvisionOptions {
            members: 3,
            regions: vec!["us-east-1".to_owned(), "eu-west-1".to_owned()],
            org_trail: true,
            per_account_trails: true,
            retention_days: 1,
            broken_members: Vec::new(),
            history_hours: 48,
            seed: None,
            trail_bucket_region: None,
        }
    }
}

/// The collector's IAM user and its access key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CollectorIdentity {
    pub user_name: String,
    pub principal_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Set when the collector runs as a role session (the audit stack's
    /// `CollectorRole`, see [`crate::stacks`]): the keys above are temporary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
}

/// A member account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimMember {
    pub index: usize,
    pub account_id: String,
    /// `aws-cloudtrail-logs-<account>` (exists only with per-account trails).
    pub trail_bucket: String,
    pub role_arn: String,
    /// The role's trust policy names another principal.
    pub broken: bool,
}

/// The organization trail.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimOrgTrail {
    pub org_id: String,
    pub management_account_id: String,
    pub bucket: String,
    pub key_prefix: String,
    /// Whose role reads the bucket (the management account).
    pub reader_account_id: String,
    pub role_arn: String,
    pub trail_name: String,
}

/// Which trail a chain belongs to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TrailKind {
    /// The member's own multi-Region trail, bucket `aws-cloudtrail-logs-<account>`.
    PerAccount,
    /// The organization trail, bucket in the management account.
    Organization,
}

/// Where the simulated clock stands. Digest `k` (1-based) of a chain ends at
/// `origin + k hours - chain.skew_seconds`; the origin's seconds are never zero, so
/// window bounds never fall on a minute and a log's minute-resolution name is
/// unambiguous.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimClock {
    pub origin: DateTime<Utc>,
    pub hours_delivered: u32,
}

/// A log file the simulator delivered (as CloudTrail wrote it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogRecord {
    pub key: String,
    /// `LOG_FAMILY` or `INSIGHT_FAMILY`.
    pub family: String,
    pub delivered_at: DateTime<Utc>,
    /// Hex SHA-256 of the inflated content (the digest's `hashValue`).
    pub inflated_sha256: String,
}

/// A digest file the simulator delivered (as CloudTrail signed it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DigestRecord {
    pub key: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Hex SHA-256 of the inflated digest (the successor's `previousDigestHashValue`).
    pub inflated_sha256: String,
    /// Hex signature (the `signature` metadata and the successor's
    /// `previousDigestSignature`).
    pub signature: String,
    pub logs: Vec<LogRecord>,
    /// Backfill digests only: the `backfill-generation-timestamp` metadata.
    pub backfill_generation_timestamp: Option<String>,
}

/// One digest chain: (bucket root, account, delivering region, trail). Its backfill
/// digests form a separate chain, kept alongside.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChainState {
    pub index: usize,
    pub trail: TrailKind,
    pub member_index: usize,
    pub account_id: String,
    /// The delivering region.
    pub region: String,
    pub home_region: String,
    pub trail_name: String,
    pub bucket: String,
    /// `[prefix/]AWSLogs/[org/]<account>`.
    pub key_root: String,
    /// Constant offset of this chain's digest end times (keeps mm:ss constant).
    pub skew_seconds: u32,
    /// Render digest bodies with `\/` (as the real sample) or plain `/`.
    pub escape_slashes: bool,
    pub digests: Vec<DigestRecord>,
    pub backfill_digests: Vec<DigestRecord>,
}

impl ChainState {
    /// The newest standard digest: the chain state CloudTrail continues from.
    pub fn head(&self) -> Option<&DigestRecord> {
        self.digests.last()
    }
}

/// Picks a chain: member index, region index (into `SimOrg::regions`), trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSelector {
    pub member: usize,
    pub region: usize,
    pub trail: TrailKind,
}

impl Default for ChainSelector {
    /// Member 0, first region, per-account trail.
    fn default() -> Self {
        ChainSelector {
            member: 0,
            region: 0,
            trail: TrailKind::PerAccount,
        }
    }
}

/// A source object: the account whose trail file it is (the account folder in the
/// key; for planted files, the account whose source holds it), bucket and key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub account_id: String,
    pub bucket: String,
    pub key: String,
}

/// Everything needed to continue a simulation later (saved as JSON by
/// [`Sim::save`]). Contains secrets of the emulator only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimOrg {
    pub version: u32,
    pub endpoint: String,
    /// Region of every API call (and of the archive bucket).
    pub api_region: String,
    pub audit_account_id: String,
    pub collector: CollectorIdentity,
    pub kms_key_arn: String,
    pub kms_key_id: String,
    pub archive_bucket: String,
    pub archive_prefix: String,
    pub retention_days: i32,
    pub external_id: String,
    pub role_name: String,
    pub regions: Vec<String>,
    /// Home region of both trails (the first of `regions`).
    pub home_region: String,
    pub per_account_trails: bool,
    /// The Region of the members' own trail buckets, when not the default
    /// ([`ProvisionOptions::trail_bucket_region`]): the members' clients sign
    /// for it.
    #[serde(default)]
    pub trail_bucket_region: Option<String>,
    pub members: Vec<SimMember>,
    pub org_trail: Option<SimOrgTrail>,
    pub signing_key: SigningKeyState,
    pub seed: u64,
    pub history_hours: u32,
    pub clock: SimClock,
    pub chains: Vec<ChainState>,
    /// Log files delivered late by [`Sim::deliver_late_log`].
    pub late_logs: Vec<ObjectRef>,
    /// Tampers applied so far (victims of later tampers must not overlap them).
    #[serde(default)]
    pub tampers: Vec<AppliedTamper>,
}

/// A simulated organization on the emulator, with root clients for every account.
pub struct Sim {
    pub org: SimOrg,
    signing_key: SigningKey,
    root_s3: HashMap<String, aws_sdk_s3::Client>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Sim")
            .field("endpoint", &self.org.endpoint)
            .field("members", &self.org.members.len())
            .field("hours_delivered", &self.org.clock.hours_delivered)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Creates the organization on the emulator at `endpoint` (which must be empty of
    /// these resources: reset it first). See [`ProvisionOptions`].
    pub async fn provision(endpoint: &str, options: ProvisionOptions) -> anyhow::Result<Sim> {
        provision::provision(endpoint, options).await
    }

    /// Reopens a simulation saved by [`Sim::save`].
    pub async fn load(path: &Path) -> anyhow::Result<Sim> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("read {}: {error}", path.display()))?;
        let org: SimOrg = serde_json::from_str(&text)
            .map_err(|error| anyhow::anyhow!("parse {}: {error}", path.display()))?;
        anyhow::ensure!(
            org.version == SIM_STATE_VERSION,
            "{} has simulation state version {}, this trailsim reads version {SIM_STATE_VERSION}",
            path.display(),
            org.version
        );
        Sim::from_org(org)
    }

    /// Writes the state as pretty JSON (atomically: temp file, then rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.org)?;
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, text)
            .map_err(|error| anyhow::anyhow!("write {}: {error}", temporary.display()))?;
        std::fs::rename(&temporary, path)
            .map_err(|error| anyhow::anyhow!("rename to {}: {error}", path.display()))?;
        Ok(())
    }

    /// Rebuilds the clients and the signing key from saved state.
    pub fn from_org(org: SimOrg) -> anyhow::Result<Sim> {
        let signing_key = SigningKey::from_state(&org.signing_key)?;
        let mut accounts = vec![org.audit_account_id.clone()];
        accounts.extend(org.members.iter().map(|member| member.account_id.clone()));
        if let Some(org_trail) = &org.org_trail {
            accounts.push(org_trail.management_account_id.clone());
        }
        let root_s3 = accounts
            .into_iter()
            .map(|account_id| {
                let mut config =
                    harness::sdk_config(&org.endpoint, &account_id, "sim-root-secret", None);
                let is_member = org.members.iter().any(|m| m.account_id == account_id);
                if let (true, Some(region)) = (is_member, &org.trail_bucket_region) {
                    config = config
                        .to_builder()
                        .region(aws_config::Region::new(region.clone()))
                        .build();
                }
                (account_id, harness::s3_client(&config))
            })
            .collect();
        Ok(Sim {
            org,
            signing_key,
            root_s3,
        })
    }

    /// The signing key (its public half is in [`Sim::public_keys_json`]).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }

    /// An S3 client acting as `account_id`'s root (setup and attacks only: root
    /// bypasses bucket-policy denies on the emulator).
    pub fn root_s3(&self, account_id: &str) -> anyhow::Result<&aws_sdk_s3::Client> {
        self.root_s3
            .get(account_id)
            .ok_or_else(|| anyhow::anyhow!("account {account_id} is not part of the simulation"))
    }

    /// SDK configuration of the collector IAM user.
    pub fn collector_sdk_config(&self) -> aws_config::SdkConfig {
        harness::sdk_config(
            &self.org.endpoint,
            &self.org.collector.access_key_id,
            &self.org.collector.secret_access_key,
            self.org.collector.session_token.as_deref(),
        )
    }

    /// Environment for running the `trailvault` binary as the collector.
    pub fn collector_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "AWS_ACCESS_KEY_ID".into(),
                self.org.collector.access_key_id.clone(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                self.org.collector.secret_access_key.clone(),
            ),
            ("AWS_REGION".into(), self.org.api_region.clone()),
            ("AWS_DEFAULT_REGION".into(), self.org.api_region.clone()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ];
        if let Some(token) = &self.org.collector.session_token {
            env.push(("AWS_SESSION_TOKEN".into(), token.clone()));
        }
        env
    }

    /// Assumes `role_arn` as the collector. `external_id: None` sends none.
    pub async fn assume_role_as_collector(
        &self,
        role_arn: &str,
        external_id: Option<&str>,
    ) -> anyhow::Result<aws_config::SdkConfig> {
        let sts = aws_sdk_sts::Client::new(&self.collector_sdk_config());
        let mut request = sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name("trailvault-sim-check");
        if let Some(external_id) = external_id {
            request = request.external_id(external_id);
        }
        let response = request.send().await.map_err(|error| {
            anyhow::anyhow!(
                "assume {role_arn}: {}",
                aws_sdk_sts::error::DisplayErrorContext(&error)
            )
        })?;
        let credentials = response
            .credentials()
            .ok_or_else(|| anyhow::anyhow!("assume {role_arn}: no credentials in the response"))?;
        Ok(harness::sdk_config(
            &self.org.endpoint,
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token()),
        ))
    }

    /// The simulator's public key in `aws cloudtrail list-public-keys` output shape.
    pub fn public_keys_json(&self) -> String {
        PublicKeyList {
            public_key_list: vec![self.signing_key.public_key_entry()],
        }
        .to_json_pretty()
    }

    /// A trailvault configuration (docs/config-schema.md) for this organization with
    /// the default [`ConfigOptions`]: both source kinds, the emulator endpoint, all
    /// members (broken ones included: they must be reported, not skipped).
    pub fn trailvault_config_toml(&self, store_path: &Path) -> String {
        config_toml::render(&self.org, &ConfigOptions::new(store_path))
    }

    /// [`Sim::trailvault_config_toml`] with explicit options.
    pub fn trailvault_config_toml_with(&self, options: &ConfigOptions) -> String {
        config_toml::render(&self.org, options)
    }

    /// Index into `org.chains` of the selected chain.
    pub fn chain_index(&self, selector: ChainSelector) -> anyhow::Result<usize> {
        let member = self.org.members.get(selector.member).ok_or_else(|| {
            anyhow::anyhow!(
                "member {} does not exist (the simulation has {})",
                selector.member,
                self.org.members.len()
            )
        })?;
        let region = self.org.regions.get(selector.region).ok_or_else(|| {
            anyhow::anyhow!(
                "region index {} does not exist (regions: {:?})",
                selector.region,
                self.org.regions
            )
        })?;
        self.org
            .chains
            .iter()
            .position(|chain| {
                chain.trail == selector.trail
                    && chain.account_id == member.account_id
                    && &chain.region == region
            })
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no {:?} chain for member {} in {region} (is that trail enabled?)",
                    selector.trail,
                    member.account_id
                )
            })
    }

    /// The selected chain.
    pub fn chain(&self, selector: ChainSelector) -> anyhow::Result<&ChainState> {
        Ok(&self.org.chains[self.chain_index(selector)?])
    }

    /// The default victim chain of tampering: member 0, first region, per-account
    /// trail (the organization trail if there are no per-account trails).
    pub fn default_selector(&self) -> ChainSelector {
        ChainSelector {
            trail: if self.org.per_account_trails {
                TrailKind::PerAccount
            } else {
                TrailKind::Organization
            },
            ..ChainSelector::default()
        }
    }

    /// The log file delivered (by CloudTrail, not planted) at `key`, in any chain.
    pub fn delivered_log(&self, key: &str) -> Option<LogRecord> {
        self.org
            .chains
            .iter()
            .flat_map(|chain| chain.digests.iter().chain(&chain.backfill_digests))
            .flat_map(|digest| &digest.logs)
            .find(|log| log.key == key)
            .cloned()
    }

    /// Every object the simulator delivered and that CloudTrail would still consider
    /// valid (tampering is not reflected): logs and digests of all chains.
    pub fn delivered_objects(&self) -> Vec<ObjectRef> {
        let mut objects = Vec::new();
        for chain in &self.org.chains {
            for digest in chain.digests.iter().chain(&chain.backfill_digests) {
                for log in &digest.logs {
                    objects.push(ObjectRef {
                        account_id: chain.account_id.clone(),
                        bucket: chain.bucket.clone(),
                        key: log.key.clone(),
                    });
                }
                objects.push(ObjectRef {
                    account_id: chain.account_id.clone(),
                    bucket: chain.bucket.clone(),
                    key: digest.key.clone(),
                });
            }
        }
        objects
    }
}
