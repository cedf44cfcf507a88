//! Creating the simulated organization on the emulator, each account's resources with
//! that account's root credentials (access key = account id).

use aws_sdk_s3::types::{
    BucketVersioningStatus, DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled,
    ObjectLockRetentionMode, ObjectLockRule, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use chrono::{DurationRound as _, Utc};

use super::cloudtrail::{key_root, ORG_TRAIL_NAME, PER_ACCOUNT_TRAIL_NAME};
use super::policies::{
    self, Archive, ArchivePolicyOptions, CollectorPrincipal, AUDITOR_ROLE_NAME, READER_ROLE_NAME,
};
use super::rng::SimRng;
use super::signing::SigningKey;
use super::{
    member_account_id, ChainState, CollectorIdentity, ProvisionOptions, Sim, SimClock, SimMember,
    SimOrg, SimOrgTrail, TrailKind, ARCHIVE_PREFIX, AUDIT_ACCOUNT_ID, COLLECTOR_USER_NAME,
    IMPOSTER_USER_NAME, MANAGEMENT_ACCOUNT_ID, ORG_ID, ORG_TRAIL_KEY_PREFIX, SIM_STATE_VERSION,
};
use crate::harness;

/// Formats an SDK error concisely: the service's code and message when the service
/// answered, the full error context otherwise (dispatch failures, timeouts).
pub(crate) fn sdk_error<E, R>(what: &str, error: aws_sdk_s3::error::SdkError<E, R>) -> anyhow::Error
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(service_error) = error.as_service_error() {
        return anyhow::anyhow!(
            "{what}: {}: {}",
            service_error.code().unwrap_or("unknown error"),
            service_error.message().unwrap_or("(no message)")
        );
    }
    anyhow::anyhow!("{what}: {}", aws_sdk_s3::error::DisplayErrorContext(&error))
}

/// Minutes between the end of the last history hour and provisioning time, so the
/// newest digests are fresh but in the past.
const FRESHNESS_MARGIN_MINUTES: i64 = 5;
/// Largest per-chain skew of digest end times.
const MAX_SKEW_MINUTES: u64 = 30;

pub(crate) async fn provision(endpoint: &str, options: ProvisionOptions) -> anyhow::Result<Sim> {
    validate(&options)?;
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    let seed = options.seed.unwrap_or_else(SimRng::fresh_seed);
    let mut rng = SimRng::derive(seed, &[u64::MAX]);
    let external_id = format!("trailvault-sim-{}", rng.hex(16));
    let role_name = READER_ROLE_NAME.to_owned();

    // Audit account, from the audit template's documents (see `policies`): the
    // collector user and the auditor role first (the key and bucket policies name
    // them), then the key, their permissions (which name the key), the bucket.
    let audit = harness::sdk_config(&endpoint, AUDIT_ACCOUNT_ID, "sim-root-secret", None);
    let iam = aws_sdk_iam::Client::new(&audit);
    let created_user = iam
        .create_user()
        .user_name(COLLECTOR_USER_NAME)
        .send()
        .await
        .map_err(|error| {
            let error = sdk_error(
                &format!("create IAM user {COLLECTOR_USER_NAME} in {AUDIT_ACCOUNT_ID}"),
                error,
            );
            anyhow::anyhow!(
                "{error} (already provisioned? reset the emulator first: scripts/emulator reset)"
            )
        })?;
    let created_user = created_user
        .user()
        .ok_or_else(|| anyhow::anyhow!("CreateUser returned no user"))?;
    let collector_arn = created_user.arn().to_owned();
    let collector_unique_id = created_user.user_id().to_owned();
    // It renders the bucket policy's aws:userid pattern `<id>:*`: never empty.
    anyhow::ensure!(
        !collector_unique_id.is_empty(),
        "CreateUser returned no UserId for {COLLECTOR_USER_NAME}"
    );
    let collector_principal = CollectorPrincipal {
        arn: &collector_arn,
        unique_id: &collector_unique_id,
    };
    let access_key = iam
        .create_access_key()
        .user_name(COLLECTOR_USER_NAME)
        .send()
        .await
        .map_err(|error| {
            sdk_error(
                &format!("create access key for {COLLECTOR_USER_NAME}"),
                error,
            )
        })?;
    let access_key = access_key
        .access_key()
        .ok_or_else(|| anyhow::anyhow!("CreateAccessKey returned no key"))?;
    let collector = CollectorIdentity {
        user_name: COLLECTOR_USER_NAME.to_owned(),
        principal_arn: collector_arn.clone(),
        access_key_id: access_key.access_key_id().to_owned(),
        secret_access_key: access_key.secret_access_key().to_owned(),
        session_token: None,
    };
    // The principal that broken members trust instead (exists, so the trust policy is
    // valid as AWS would require; it is not the collector).
    iam.create_user()
        .user_name(IMPOSTER_USER_NAME)
        .send()
        .await
        .map_err(|error| sdk_error(&format!("create IAM user {IMPOSTER_USER_NAME}"), error))?;
    let imposter_arn = format!("arn:aws:iam::{AUDIT_ACCOUNT_ID}:user/{IMPOSTER_USER_NAME}");

    iam.create_role()
        .role_name(AUDITOR_ROLE_NAME)
        .assume_role_policy_document(policies::auditor_trust_policy(AUDIT_ACCOUNT_ID)?.to_string())
        .description("trailvault auditors: read the archive, decrypt with the archive key")
        .send()
        .await
        .map_err(|error| sdk_error(&format!("create role {AUDITOR_ROLE_NAME}"), error))?;

    let kms = aws_sdk_kms::Client::new(&audit);
    let key_policy = policies::archive_kms_key_policy(AUDIT_ACCOUNT_ID, collector_principal)?;
    let key = kms
        .create_key()
        .description("trailvault archive (simulated audit account)")
        .policy(key_policy.to_string())
        .send()
        .await
        .map_err(|error| sdk_error("create the archive KMS key", error))?;
    let key_metadata = key
        .key_metadata()
        .ok_or_else(|| anyhow::anyhow!("CreateKey returned no metadata"))?;
    let kms_key_id = key_metadata.key_id().to_owned();
    let kms_key_arn = key_metadata.arn().map(str::to_owned).unwrap_or_else(|| {
        format!(
            "arn:aws:kms:{}:{AUDIT_ACCOUNT_ID}:key/{kms_key_id}",
            harness::TEST_REGION
        )
    });

    let archive_bucket = archive_bucket_name();
    let archive = Archive {
        audit_account_id: AUDIT_ACCOUNT_ID,
        bucket: &archive_bucket,
        kms_key_arn: &kms_key_arn,
    };
    iam.put_user_policy()
        .user_name(COLLECTOR_USER_NAME)
        .policy_name("trailvault-collector")
        .policy_document(policies::collector_identity_policy(archive, &role_name)?.to_string())
        .send()
        .await
        .map_err(|error| sdk_error("attach the collector policy", error))?;
    iam.put_role_policy()
        .role_name(AUDITOR_ROLE_NAME)
        .policy_name("trailvault-auditor")
        .policy_document(policies::auditor_permissions_policy(archive)?.to_string())
        .send()
        .await
        .map_err(|error| sdk_error("attach the auditor policy", error))?;

    create_archive_bucket(
        &harness::s3_client(&audit),
        archive,
        collector_principal,
        options.retention_days,
    )
    .await?;

    // Members: trail bucket (per-account trails) and reader role.
    let mut members = Vec::new();
    for index in 0..options.members {
        let account_id = member_account_id(index);
        let broken = options.broken_members.contains(&index);
        let trail_bucket = super::TRAIL_BUCKET_TEMPLATE.replace("{account_id}", &account_id);
        let config = harness::sdk_config(&endpoint, &account_id, "sim-root-secret", None);
        let mut readable: Vec<&str> = Vec::new();
        if options.per_account_trails {
            create_bucket_in(
                &harness::s3_client(&config),
                &trail_bucket,
                options.trail_bucket_region.as_deref(),
            )
            .await?;
            readable.push(&trail_bucket);
        }
        let trusted = if broken {
            &imposter_arn
        } else {
            &collector_arn
        };
        let role_arn = create_reader_role(
            &aws_sdk_iam::Client::new(&config),
            &account_id,
            &role_name,
            trusted,
            &external_id,
            &readable,
        )
        .await?;
        members.push(SimMember {
            index,
            account_id,
            trail_bucket,
            role_arn,
            broken,
        });
    }

    let org_trail = if options.org_trail {
        let bucket = format!("org-cloudtrail-{MANAGEMENT_ACCOUNT_ID}");
        let config = harness::sdk_config(&endpoint, MANAGEMENT_ACCOUNT_ID, "sim-root-secret", None);
        create_bucket(&harness::s3_client(&config), &bucket).await?;
        let role_arn = create_reader_role(
            &aws_sdk_iam::Client::new(&config),
            MANAGEMENT_ACCOUNT_ID,
            &role_name,
            &collector_arn,
            &external_id,
            &[&bucket],
        )
        .await?;
        Some(SimOrgTrail {
            org_id: ORG_ID.to_owned(),
            management_account_id: MANAGEMENT_ACCOUNT_ID.to_owned(),
            bucket,
            key_prefix: ORG_TRAIL_KEY_PREFIX.to_owned(),
            reader_account_id: MANAGEMENT_ACCOUNT_ID.to_owned(),
            role_arn,
            trail_name: ORG_TRAIL_NAME.to_owned(),
        })
    } else {
        None
    };

    assemble(
        &options,
        seed,
        &mut rng,
        Provisioned {
            endpoint,
            collector,
            kms_key_arn,
            kms_key_id,
            archive_bucket,
            external_id,
            role_name,
            members,
            org_trail,
        },
    )
}

/// What provisioning created, however it created it (SDK calls here, CreateStack in
/// [`crate::stacks`]): the parts of a [`SimOrg`] that name resources.
pub(crate) struct Provisioned {
    pub endpoint: String,
    pub collector: CollectorIdentity,
    pub kms_key_arn: String,
    pub kms_key_id: String,
    pub archive_bucket: String,
    pub external_id: String,
    pub role_name: String,
    pub members: Vec<SimMember>,
    pub org_trail: Option<SimOrgTrail>,
}

/// The simulation around provisioned resources: clock, signing key and chains.
pub(crate) fn assemble(
    options: &ProvisionOptions,
    seed: u64,
    rng: &mut SimRng,
    provisioned: Provisioned,
) -> anyhow::Result<Sim> {
    let Provisioned {
        endpoint,
        collector,
        kms_key_arn,
        kms_key_id,
        archive_bucket,
        external_id,
        role_name,
        members,
        org_trail,
    } = provisioned;
    let home_region = options.regions[0].clone();
    // Clock: delivering `history_hours` ends FRESHNESS_MARGIN before now. Non-zero
    // seconds keep window bounds off minute boundaries.
    let now = Utc::now();
    let origin_minute = (now
        - chrono::Duration::minutes(FRESHNESS_MARGIN_MINUTES)
        - chrono::Duration::hours(i64::from(options.history_hours)))
    .duration_trunc(chrono::Duration::minutes(1))?;
    let origin = origin_minute - chrono::Duration::seconds(rng.between(1, 59) as i64);
    let signing_key = SigningKey::generate(
        origin - chrono::Duration::days(1),
        origin + chrono::Duration::days(30),
    )?;

    let mut chains = Vec::new();
    let mut add_chain = |trail: TrailKind, member: &SimMember, region_index: usize| {
        let index = chains.len();
        let region = options.regions[region_index].clone();
        let (bucket, root, trail_name) = match (trail, &org_trail) {
            (TrailKind::Organization, Some(org_trail)) => (
                org_trail.bucket.clone(),
                key_root(
                    &org_trail.key_prefix,
                    Some(&org_trail.org_id),
                    &member.account_id,
                ),
                org_trail.trail_name.clone(),
            ),
            _ => (
                member.trail_bucket.clone(),
                key_root("", None, &member.account_id),
                PER_ACCOUNT_TRAIL_NAME.to_owned(),
            ),
        };
        let trail_bit = usize::from(trail == TrailKind::Organization);
        let mut chain_rng = SimRng::derive(seed, &[index as u64, u64::MAX - 1]);
        chains.push(ChainState {
            index,
            trail,
            member_index: member.index,
            account_id: member.account_id.clone(),
            region,
            home_region: home_region.clone(),
            trail_name,
            bucket,
            key_root: root,
            skew_seconds: (chain_rng.below(MAX_SKEW_MINUTES) * 60) as u32,
            escape_slashes: (member.index + region_index + trail_bit) % 2 == 1,
            digests: Vec::new(),
            backfill_digests: Vec::new(),
        });
    };
    if options.per_account_trails {
        for member in &members {
            for region_index in 0..options.regions.len() {
                add_chain(TrailKind::PerAccount, member, region_index);
            }
        }
    }
    if options.org_trail {
        for member in &members {
            for region_index in 0..options.regions.len() {
                add_chain(TrailKind::Organization, member, region_index);
            }
        }
    }

    let org = SimOrg {
        version: SIM_STATE_VERSION,
        endpoint,
        api_region: harness::TEST_REGION.to_owned(),
        audit_account_id: AUDIT_ACCOUNT_ID.to_owned(),
        collector,
        kms_key_arn,
        kms_key_id,
        archive_bucket,
        archive_prefix: ARCHIVE_PREFIX.to_owned(),
        retention_days: options.retention_days,
        external_id,
        role_name,
        regions: options.regions.clone(),
        home_region,
        per_account_trails: options.per_account_trails,
        trail_bucket_region: options.trail_bucket_region.clone(),
        members,
        org_trail,
        signing_key: signing_key.to_state(),
        seed,
        history_hours: options.history_hours,
        clock: SimClock {
            origin,
            hours_delivered: 0,
        },
        chains,
        late_logs: Vec::new(),
        tampers: Vec::new(),
    };
    Sim::from_org(org)
}

pub(crate) fn validate(options: &ProvisionOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=99).contains(&options.members),
        "members must be 1..=99, got {}",
        options.members
    );
    anyhow::ensure!(!options.regions.is_empty(), "at least one region is needed");
    for region in &options.regions {
        anyhow::ensure!(
            !region.is_empty()
                && region
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'),
            "region {region:?} is not a region name"
        );
    }
    anyhow::ensure!(
        options.org_trail || options.per_account_trails,
        "enable at least one of org_trail and per_account_trails"
    );
    anyhow::ensure!(
        options.retention_days >= 1,
        "retention_days must be at least 1"
    );
    for broken in &options.broken_members {
        anyhow::ensure!(
            *broken < options.members,
            "broken member index {broken} is not below members ({})",
            options.members
        );
    }
    anyhow::ensure!(
        (1..=24 * 365).contains(&options.history_hours),
        "history_hours must be 1..=8760"
    );
    Ok(())
}

pub(crate) fn archive_bucket_name() -> String {
    format!("trailvault-archive-{AUDIT_ACCOUNT_ID}")
}

async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    create_bucket_in(s3, bucket, None).await
}

/// A bucket in `region` (its `LocationConstraint`), or in the default one.
pub(crate) async fn create_bucket_in(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    region: Option<&str>,
) -> anyhow::Result<()> {
    let location = region.map(|region| {
        aws_sdk_s3::types::CreateBucketConfiguration::builder()
            .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
            .build()
    });
    s3.create_bucket()
        .bucket(bucket)
        .set_create_bucket_configuration(location)
        .send()
        .await
        .map_err(|error| sdk_error(&format!("create bucket {bucket}"), error))?;
    Ok(())
}

/// Versioned, Object Lock COMPLIANCE default retention, SSE-KMS with a bucket key,
/// and the template's bucket policy ([`policies::archive_bucket_policy`]) without
/// what the emulator cannot enforce ([`ArchivePolicyOptions::EMULATOR`]).
async fn create_archive_bucket(
    s3: &aws_sdk_s3::Client,
    archive: Archive<'_>,
    collector: CollectorPrincipal<'_>,
    retention_days: i32,
) -> anyhow::Result<()> {
    let Archive {
        bucket,
        kms_key_arn,
        ..
    } = archive;
    s3.create_bucket()
        .bucket(bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .map_err(|error| sdk_error(&format!("create archive bucket {bucket}"), error))?;
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|error| sdk_error("enable archive versioning", error))?;
    s3.put_object_lock_configuration()
        .bucket(bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(
                            DefaultRetention::builder()
                                .mode(ObjectLockRetentionMode::Compliance)
                                .days(retention_days)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|error| sdk_error("set the archive's Object Lock default retention", error))?;
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::AwsKms)
                                .kms_master_key_id(kms_key_arn)
                                .build()?,
                        )
                        .bucket_key_enabled(true)
                        .build(),
                )
                .build()?,
        )
        .send()
        .await
        .map_err(|error| sdk_error("set the archive's default encryption", error))?;
    // Dropped for the emulator, kept in the template: DenyInsecureTransport (plain
    // HTTP: aws:SecureTransport is always false) and DenyPutsWithAnotherKmsKey
    // (ministack never sets s3:x-amz-server-side-encryption-aws-kms-key-id, so the
    // statement would deny every put). See `policies`.
    let policy = policies::archive_bucket_policy(
        archive,
        collector,
        ArchivePolicyOptions::EMULATOR,
        retention_days,
    )?;
    s3.put_bucket_policy()
        .bucket(bucket)
        .policy(policy.to_string())
        .send()
        .await
        .map_err(|error| sdk_error("set the archive bucket policy", error))?;
    Ok(())
}

impl Sim {
    /// Lets member `index`'s reader role delete trail files from its trail bucket, as
    /// the member template deploys it with `AllowSourceExpiry=true` (source expiry):
    /// replaces the role's `read-cloudtrail-files` policy with that rendering.
    pub async fn allow_source_expiry(&self, index: usize) -> anyhow::Result<()> {
        let member = self.org.members.get(index).ok_or_else(|| {
            anyhow::anyhow!(
                "member {index} does not exist (the simulation has {})",
                self.org.members.len()
            )
        })?;
        anyhow::ensure!(
            self.org.per_account_trails,
            "source expiry is simulated on per-account trail buckets only"
        );
        let config = harness::sdk_config(
            &self.org.endpoint,
            &member.account_id,
            "sim-root-secret",
            None,
        );
        let policy = policies::reader_expiry_permissions_policy(
            &member.account_id,
            &[&member.trail_bucket],
        )?;
        aws_sdk_iam::Client::new(&config)
            .put_role_policy()
            .role_name(&self.org.role_name)
            .policy_name("read-cloudtrail-files")
            .policy_document(policy.to_string())
            .send()
            .await
            .map_err(|error| {
                sdk_error(
                    &format!("attach the expiry reader policy in {}", member.account_id),
                    error,
                )
            })?;
        Ok(())
    }
}

async fn create_reader_role(
    iam: &aws_sdk_iam::Client,
    account_id: &str,
    role_name: &str,
    trusted_principal_arn: &str,
    external_id: &str,
    readable_buckets: &[&str],
) -> anyhow::Result<String> {
    let trust = policies::reader_trust_policy(account_id, trusted_principal_arn, external_id)?;
    let created = iam
        .create_role()
        .role_name(role_name)
        .assume_role_policy_document(trust.to_string())
        .description("trailvault collector: read-only access to CloudTrail files")
        .send()
        .await
        .map_err(|error| sdk_error(&format!("create role {role_name} in {account_id}"), error))?;
    let role_arn = created
        .role()
        .map(|role| role.arn().to_owned())
        .unwrap_or_else(|| format!("arn:aws:iam::{account_id}:role/{role_name}"));
    if !readable_buckets.is_empty() {
        iam.put_role_policy()
            .role_name(role_name)
            .policy_name("read-cloudtrail-files")
            .policy_document(
                policies::reader_permissions_policy(account_id, readable_buckets)?.to_string(),
            )
            .send()
            .await
            .map_err(|error| {
                sdk_error(&format!("attach the reader policy in {account_id}"), error)
            })?;
    }
    Ok(role_arn)
}
