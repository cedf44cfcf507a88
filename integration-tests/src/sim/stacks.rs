//! The simulated organization deployed with the shipped CloudFormation templates
//! ([`crate::stacks`]) instead of SDK calls: the audit stack in the audit account,
//! the member stack in every member account and in the management account (the
//! organization trail's reader), and trailvault running as the audit stack's
//! `CollectorRole`.
//!
//! What the templates do not create, the simulator still does: the CloudTrail buckets
//! (CloudTrail's, not trailvault's), and the principal that stands in for the ECS
//! task — an IAM user, [`COLLECTOR_RUNNER_USER_NAME`], named in the audit stack's
//! `AdditionalCollectorPrincipalArn`, that assumes `CollectorRole`; trailvault runs
//! with that role session's temporary credentials.

use super::policies::READER_ROLE_NAME;
use super::provision::{archive_bucket_name, assemble, create_bucket_in, validate, Provisioned};
use super::rng::SimRng;
use super::{
    member_account_id, CollectorIdentity, ProvisionOptions, Sim, SimMember, SimOrgTrail,
    AUDIT_ACCOUNT_ID, MANAGEMENT_ACCOUNT_ID, ORG_ID, ORG_TRAIL_KEY_PREFIX, ORG_TRAIL_NAME,
};
use crate::harness;
use crate::stacks::{self, AuditDeployment, AuditParameters, MemberDeployment};

/// The IAM user in the audit account that assumes the collector role (the stand-in
/// for the runtime's ECS task).
pub const COLLECTOR_RUNNER_USER_NAME: &str = "trailvault-collector-runner";

/// Longest collector role session (the audit template's `MaxSessionDuration`).
const SESSION_SECONDS: i32 = 3600;

/// What the stacks created, and what the checks found before patching.
#[derive(Debug, Clone)]
pub struct OrgStacks {
    pub audit: AuditDeployment,
    /// One per member account, then the management account's (with an
    /// organization trail).
    pub members: Vec<MemberDeployment>,
    /// ARN of [`COLLECTOR_RUNNER_USER_NAME`].
    pub runner_arn: String,
}

impl Sim {
    /// Like [`Sim::provision`], but the audit and member accounts' resources come from
    /// CreateStack of `infra/cloudformation/` (see the module docs). Broken members
    /// (a reader role trusting someone else) are not deployable from the template and
    /// are refused.
    pub async fn provision_with_stacks(
        endpoint: &str,
        options: ProvisionOptions,
    ) -> anyhow::Result<(Sim, OrgStacks)> {
        validate(&options)?;
        anyhow::ensure!(
            options.broken_members.is_empty(),
            "broken members are not deployable from the member template"
        );
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let seed = options.seed.unwrap_or_else(SimRng::fresh_seed);
        let mut rng = SimRng::derive(seed, &[u64::MAX]);
        let external_id = format!("trailvault-sim-{}", rng.hex(16));

        let audit_config = stacks::root_config(&endpoint, AUDIT_ACCOUNT_ID);
        let iam = aws_sdk_iam::Client::new(&audit_config);
        let runner = iam
            .create_user()
            .user_name(COLLECTOR_RUNNER_USER_NAME)
            .send()
            .await
            .map_err(|error| {
                let error = super::sdk_error(
                    &format!("create IAM user {COLLECTOR_RUNNER_USER_NAME}"),
                    error,
                );
                anyhow::anyhow!("{error} (already provisioned? reset the emulator first)")
            })?;
        let runner_arn = runner
            .user()
            .map(|user| user.arn().to_owned())
            .ok_or_else(|| anyhow::anyhow!("CreateUser returned no user"))?;

        let audit = stacks::deploy_audit(
            &endpoint,
            AuditParameters {
                archive_bucket: archive_bucket_name(),
                retention_days: options.retention_days,
                additional_collector_principal_arn: runner_arn.clone(),
            },
        )
        .await?;

        // The runner may assume the collector role (its trust policy names the
        // runner; the runner's own policy allows the call).
        let assume = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "AssumeTheCollectorRole",
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Resource": audit.collector_role_arn,
            }]
        });
        iam.put_user_policy()
            .user_name(COLLECTOR_RUNNER_USER_NAME)
            .policy_name("assume-trailvault-collector")
            .policy_document(assume.to_string())
            .send()
            .await
            .map_err(|error| super::sdk_error("attach the runner's policy", error))?;
        let key = iam
            .create_access_key()
            .user_name(COLLECTOR_RUNNER_USER_NAME)
            .send()
            .await
            .map_err(|error| super::sdk_error("create the runner's access key", error))?;
        let key = key
            .access_key()
            .ok_or_else(|| anyhow::anyhow!("CreateAccessKey returned no key"))?;
        let runner_config = harness::sdk_config(
            &endpoint,
            key.access_key_id(),
            key.secret_access_key(),
            None,
        );
        let session = aws_sdk_sts::Client::new(&runner_config)
            .assume_role()
            .role_arn(&audit.collector_role_arn)
            .role_session_name("trailvault-e2e")
            .duration_seconds(SESSION_SECONDS)
            .send()
            .await
            .map_err(|error| super::sdk_error("assume the collector role as the runner", error))?;
        let credentials = session
            .credentials()
            .ok_or_else(|| anyhow::anyhow!("AssumeRole returned no credentials"))?;
        let collector = CollectorIdentity {
            user_name: COLLECTOR_RUNNER_USER_NAME.to_owned(),
            principal_arn: audit.collector_role_arn.clone(),
            access_key_id: credentials.access_key_id().to_owned(),
            secret_access_key: credentials.secret_access_key().to_owned(),
            session_token: Some(credentials.session_token().to_owned()),
        };

        let mut members = Vec::new();
        let mut deployments = Vec::new();
        for index in 0..options.members {
            let account_id = member_account_id(index);
            let trail_bucket = super::TRAIL_BUCKET_TEMPLATE.replace("{account_id}", &account_id);
            if options.per_account_trails {
                let config = stacks::root_config(&endpoint, &account_id);
                create_bucket_in(
                    &harness::s3_client(&config),
                    &trail_bucket,
                    options.trail_bucket_region.as_deref(),
                )
                .await?;
            }
            let deployment = stacks::deploy_member(
                &endpoint,
                &account_id,
                &audit.collector_role_arn,
                &external_id,
                &[format!("arn:aws:s3:::{trail_bucket}")],
            )
            .await?;
            members.push(SimMember {
                index,
                account_id,
                trail_bucket,
                role_arn: deployment.role_arn.clone(),
                broken: false,
            });
            deployments.push(deployment);
        }

        let org_trail = if options.org_trail {
            let bucket = format!("org-cloudtrail-{MANAGEMENT_ACCOUNT_ID}");
            let config = stacks::root_config(&endpoint, MANAGEMENT_ACCOUNT_ID);
            create_bucket_in(&harness::s3_client(&config), &bucket, None).await?;
            let deployment = stacks::deploy_member(
                &endpoint,
                MANAGEMENT_ACCOUNT_ID,
                &audit.collector_role_arn,
                &external_id,
                &[format!("arn:aws:s3:::{bucket}")],
            )
            .await?;
            let role_arn = deployment.role_arn.clone();
            deployments.push(deployment);
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

        let sim = assemble(
            &options,
            seed,
            &mut rng,
            Provisioned {
                endpoint,
                collector,
                kms_key_arn: audit.kms_key_arn.clone(),
                kms_key_id: audit.kms_key_id.clone(),
                archive_bucket: audit.archive_bucket.clone(),
                external_id,
                role_name: READER_ROLE_NAME.to_owned(),
                members,
                org_trail,
            },
        )?;
        Ok((
            sim,
            OrgStacks {
                audit,
                members: deployments,
                runner_arn,
            },
        ))
    }
}
