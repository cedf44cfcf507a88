//! Every IAM, KMS and S3 policy document the simulator provisions, rendered from the
//! CloudFormation templates of `infra/cloudformation/` by [`crate::templates`]: the
//! simulator applies what a deployment applies, so there is one source of truth.
//!
//! The simulator's identities stand in for the templates' resources:
//!
//! - `CollectorRole` (audit template) and `CollectorRoleArn` (member template) are the
//!   simulator's collector **IAM user** ([`CollectorPrincipal`]), so that `trailvault`
//!   runs with long-lived access keys from the environment
//!   ([`Sim::collector_env`](super::Sim::collector_env)) instead of expiring session
//!   credentials. Its ARN renders `CollectorRole.Arn`, its unique id (`AIDA…`,
//!   CreateUser's `UserId`) renders `CollectorRole.RoleId`. The member template's
//!   `CollectorRoleArn` parameter declares an `AllowedPattern` of role ARNs: CloudFormation
//!   would refuse a user ARN there; the renderer does not check patterns, and the
//!   rendered trust policy is the same document with a user as its one principal.
//! - `AuditorRole` is a role the simulator creates from the template's trust and
//!   permission policies ([`auditor_trust_policy`], [`auditor_permissions_policy`]), so
//!   the key and bucket policies name a principal that exists, as AWS requires.
//! - `FindingsTopic` is [`FINDINGS_TOPIC_NAME`] (the template's default) in the audit
//!   account and [`harness::TEST_REGION`]; the simulator does not create it, tests that
//!   exercise alerts create it under that name.
//! - `ArchiveBucket` and `ArchiveKey` are the simulator's archive bucket and key.
//!
//! What ministack 1.5.33 (AUTH=true) cannot enforce, and what the applied copies do
//! about it (the templates keep everything):
//!
//! - `DenyInsecureTransport` (archive bucket policy): the emulator is plain HTTP, so
//!   `aws:SecureTransport` is always false and the statement would deny every request.
//!   Dropped ([`ArchivePolicyOptions::EMULATOR`]).
//! - `DenyPutsWithAnotherKmsKey` (archive bucket policy): ministack never sets
//!   `s3:x-amz-server-side-encryption-aws-kms-key-id`, so `StringNotEquals` on the
//!   absent key is true and the statement denies every put, the right key's included.
//!   Dropped ([`ArchivePolicyOptions::EMULATOR`]).
//! - `aws:ResourceOrgID` (collector permissions, `AssumeMemberReaderRoles`): ministack
//!   never resolves it, so the condition refuses every AssumeRole (and each emulated
//!   account is its own organization anyway). The statement stays; it is rendered
//!   with an empty `OrganizationId`, which leaves the
//!   condition out — the organization bound is not simulated. (The template requires
//!   the parameter, so a deployment states its organization or opts out explicitly.)
//! - The `aws:PrincipalArn`/`aws:userid` pair of
//!   `DenyObjectWritesByAnyoneButTheCollector` is no gap for an IAM user: ministack
//!   reports an assumed role's *session* ARN as `aws:PrincipalArn` (the gap the
//!   template's `aws:userid` key covers for the collector role), but an IAM user's
//!   `aws:PrincipalArn` is the user's ARN, as on AWS. An IAM user's `aws:userid` is its
//!   unique id alone, with no `:session` suffix, so the rendered `<unique id>:*` pattern
//!   matches no request — a user has no sessions — and `aws:PrincipalArn` exempts the
//!   collector. Every other caller differs in both keys and is denied. Applied as
//!   rendered.

use serde_json::Value;

use crate::harness;
use crate::templates::{
    self, Render, Template, AUDIT_ACCOUNT, DENY_INSECURE_TRANSPORT_SID, DENY_OTHER_KMS_KEYS_SID,
    MEMBER_ACCOUNT,
};

/// The role every member account (and the organization trail's reader account)
/// exposes to the collector: the default of the member template's `RoleName` and the
/// audit template's `MemberRoleName`.
pub const READER_ROLE_NAME: &str = "TrailvaultReader";
/// The auditors' role in the audit account: the default of `AuditorRoleName`.
pub const AUDITOR_ROLE_NAME: &str = "trailvault-auditor";
/// The findings topic in the audit account: the default of `FindingsTopicName`.
pub const FINDINGS_TOPIC_NAME: &str = "trailvault-findings";
/// The intake queue in the audit account: the default of `IntakeQueueName`.
pub const INTAKE_QUEUE_NAME: &str = "trailvault-intake";
/// Its dead-letter queue (`<IntakeQueueName>-dlq`).
pub const INTAKE_DEAD_LETTER_QUEUE_NAME: &str = "trailvault-intake-dlq";
/// The bus the collector may put finding events on: the default of
/// `FindingsEventBusName`.
pub const FINDINGS_EVENT_BUS_NAME: &str = "default";

/// Statements of the archive bucket policy that the target cannot evaluate correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchivePolicyOptions {
    /// Keep `DenyInsecureTransport` (deny every request with `aws:SecureTransport` =
    /// false). Real AWS: yes. The emulator is plain HTTP, so this statement would deny
    /// everything.
    pub deny_insecure_transport: bool,
    /// Keep `DenyPutsWithAnotherKmsKey` (deny puts whose
    /// `s3:x-amz-server-side-encryption-aws-kms-key-id` is not the archive key). Real
    /// AWS: yes. ministack 1.5.33 never sets that condition key, so `StringNotEquals` on
    /// the absent key is true and the statement denies every put.
    pub deny_other_kms_keys: bool,
}

impl ArchivePolicyOptions {
    /// The full policy, for real AWS.
    pub const AWS: ArchivePolicyOptions = ArchivePolicyOptions {
        deny_insecure_transport: true,
        deny_other_kms_keys: true,
    };
    /// What ministack (plain HTTP, no KMS key-id condition key) can enforce: without
    /// [`templates::EMULATOR_UNENFORCEABLE_ARCHIVE_SIDS`].
    pub const EMULATOR: ArchivePolicyOptions = ArchivePolicyOptions {
        deny_insecure_transport: false,
        deny_other_kms_keys: false,
    };

    /// The `Sid`s these options leave out of the template's bucket policy.
    pub fn dropped_sids(self) -> Vec<&'static str> {
        let mut dropped = Vec::new();
        if !self.deny_insecure_transport {
            dropped.push(DENY_INSECURE_TRANSPORT_SID);
        }
        if !self.deny_other_kms_keys {
            dropped.push(DENY_OTHER_KMS_KEYS_SID);
        }
        dropped
    }
}

/// The principal that stands in for the audit template's `CollectorRole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectorPrincipal<'a> {
    /// `CollectorRole.Arn`: the collector IAM user's ARN.
    pub arn: &'a str,
    /// `CollectorRole.RoleId`: the IAM user's unique id (`UserId` of CreateUser,
    /// `AIDA…`), which is its `aws:userid`.
    pub unique_id: &'a str,
}

/// The archive in the audit account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Archive<'a> {
    /// The audit account id.
    pub audit_account_id: &'a str,
    /// `ArchiveBucketName`.
    pub bucket: &'a str,
    /// `ArchiveKey.Arn`.
    pub kms_key_arn: &'a str,
}

/// The ARN of [`FINDINGS_TOPIC_NAME`] in the audit account (`Ref FindingsTopic`).
pub fn findings_topic_arn(audit_account_id: &str) -> String {
    format!(
        "arn:aws:sns:{}:{audit_account_id}:{FINDINGS_TOPIC_NAME}",
        harness::TEST_REGION
    )
}

/// The ARN of the queue `name` in the audit account (`Fn::GetAtt Queue.Arn`).
pub fn queue_arn(audit_account_id: &str, name: &str) -> String {
    format!(
        "arn:aws:sqs:{}:{audit_account_id}:{name}",
        harness::TEST_REGION
    )
}

/// `render` with the intake queues' ARNs ([`INTAKE_QUEUE_NAME`] and its
/// dead-letter queue).
pub fn with_intake_queues(render: Render, audit_account_id: &str) -> Render {
    render
        .attribute(
            "IntakeQueue",
            "Arn",
            &queue_arn(audit_account_id, INTAKE_QUEUE_NAME),
        )
        .attribute(
            "IntakeDeadLetterQueue",
            "Arn",
            &queue_arn(audit_account_id, INTAKE_DEAD_LETTER_QUEUE_NAME),
        )
}

fn auditor_role_arn(audit_account_id: &str) -> String {
    format!("arn:aws:iam::{audit_account_id}:role/{AUDITOR_ROLE_NAME}")
}

fn audit_render(audit_account_id: &str) -> Render {
    with_intake_queues(
        Render::new(audit_account_id, harness::TEST_REGION),
        audit_account_id,
    )
    // Explicitly none: see the module docs (`aws:ResourceOrgID`).
    .parameter("OrganizationId", "")
    .resource("AuditorRole", AUDITOR_ROLE_NAME)
    .attribute("AuditorRole", "Arn", &auditor_role_arn(audit_account_id))
    .resource("FindingsTopic", &findings_topic_arn(audit_account_id))
}

fn with_archive(render: Render, archive: Archive<'_>) -> Render {
    render
        .parameter("ArchiveBucketName", archive.bucket)
        .resource("ArchiveBucket", archive.bucket)
        .attribute(
            "ArchiveBucket",
            "Arn",
            &format!("arn:aws:s3:::{}", archive.bucket),
        )
        .attribute("ArchiveKey", "Arn", archive.kms_key_arn)
}

fn with_collector(render: Render, collector: CollectorPrincipal<'_>) -> Render {
    render
        .attribute("CollectorRole", "Arn", collector.arn)
        .attribute("CollectorRole", "RoleId", collector.unique_id)
}

/// Loads a template and renders one of its documents, chosen by `document`.
fn render(
    template_name: &str,
    render: &Render,
    document: impl FnOnce(&Template) -> anyhow::Result<&Value>,
) -> anyhow::Result<Value> {
    let template = Template::load(template_name)?;
    render.render(&template, document(&template)?)
}

/// Key policy of the archive's KMS key (`ArchiveKey.KeyPolicy`): the audit account
/// administers it, the collector encrypts and reads back, the auditors decrypt; no
/// member principal appears.
pub fn archive_kms_key_policy(
    audit_account_id: &str,
    collector: CollectorPrincipal<'_>,
) -> anyhow::Result<Value> {
    render(
        AUDIT_ACCOUNT,
        &with_collector(audit_render(audit_account_id), collector),
        |template| template.policy_document("ArchiveKey"),
    )
}

/// Bucket policy of the archive (`ArchiveBucketPolicy`): nobody deletes, bypasses
/// retention or changes the lock and bucket configuration; puts must be SSE-KMS
/// under the archive key; only the collector writes objects; auditors read. Without
/// the statements `options` leave out.
///
/// `retention_days` is the archive's `RetentionDays`: puts retained fewer than
/// `retention_days - 1` whole days are refused (`MinimumPutRetentionDays`), on AWS;
/// ministack never sets the Object Lock condition keys, so there the lock
/// statements never deny (see `weak_lock_puts_rest_on_condition_keys_the_emulator_never_sets`).
pub fn archive_bucket_policy(
    archive: Archive<'_>,
    collector: CollectorPrincipal<'_>,
    options: ArchivePolicyOptions,
    retention_days: i32,
) -> anyhow::Result<Value> {
    let full = render(
        AUDIT_ACCOUNT,
        &with_collector(
            with_archive(audit_render(archive.audit_account_id), archive),
            collector,
        )
        .parameter("RetentionDays", &retention_days.to_string())
        .parameter(
            "MinimumPutRetentionDays",
            &(retention_days - 1).max(0).to_string(),
        ),
        |template| template.policy_document("ArchiveBucketPolicy"),
    )?;
    templates::without_statements(&full, &options.dropped_sids())
}

/// Identity policy of the collector (`CollectorPermissions`): assume the reader roles
/// named `reader_role_name`, write and inspect the archive (never delete), use the
/// archive key, read CloudTrail public keys, list the organization's accounts, publish
/// findings to [`findings_topic_arn`].
///
/// Rendered with an empty `OrganizationId`: ministack never resolves `aws:ResourceOrgID`,
/// so the condition it would add to `AssumeMemberReaderRoles` refuses every
/// AssumeRole there. The organization bound is not simulated.
pub fn collector_identity_policy(
    archive: Archive<'_>,
    reader_role_name: &str,
) -> anyhow::Result<Value> {
    render(
        AUDIT_ACCOUNT,
        &with_archive(audit_render(archive.audit_account_id), archive)
            .parameter("MemberRoleName", reader_role_name),
        |template| template.policy_document("CollectorPermissions"),
    )
}

/// Trust policy of the auditors' role (`AuditorRole`): principals of the audit
/// account whose own policy lets them assume it (`AuditorPrincipalArn` empty).
pub fn auditor_trust_policy(audit_account_id: &str) -> anyhow::Result<Value> {
    render(AUDIT_ACCOUNT, &audit_render(audit_account_id), |template| {
        template.trust_policy("AuditorRole")
    })
}

/// Permissions of the auditors' role (`AuditorPermissions`): read the archive,
/// decrypt with its key.
pub fn auditor_permissions_policy(archive: Archive<'_>) -> anyhow::Result<Value> {
    render(
        AUDIT_ACCOUNT,
        &with_archive(audit_render(archive.audit_account_id), archive),
        |template| template.policy_document("AuditorPermissions"),
    )
}

fn member_render(member_account_id: &str) -> Render {
    Render::new(member_account_id, harness::TEST_REGION).parameter("RoleName", READER_ROLE_NAME)
}

/// Trust policy of a member's reader role (`ReaderRole` of the member template): only
/// `trusted_principal_arn` (the collector, or another principal for a broken member),
/// only with the ExternalId.
pub fn reader_trust_policy(
    member_account_id: &str,
    trusted_principal_arn: &str,
    external_id: &str,
) -> anyhow::Result<Value> {
    render(
        MEMBER_ACCOUNT,
        &member_render(member_account_id)
            .parameter("CollectorRoleArn", trusted_principal_arn)
            .parameter("ExternalId", external_id),
        |template| template.trust_policy("ReaderRole"),
    )
}

/// Permissions of a member's reader role (`read-cloudtrail-files`): list and read the
/// trail buckets, nothing else. The simulated trails are SSE-S3, so `TrailKmsKeyArns`
/// is empty and the template leaves out its `kms:Decrypt` statement; `AllowSourceExpiry`
/// keeps its default, false.
pub fn reader_permissions_policy(
    member_account_id: &str,
    trail_buckets: &[&str],
) -> anyhow::Result<Value> {
    reader_permissions(member_account_id, trail_buckets, false)
}

/// [`reader_permissions_policy`] as the member template deploys it with
/// `AllowSourceExpiry=true`: also delete trail files (`s3:DeleteObject` on keys under
/// `AWSLogs/`), for source expiry.
pub fn reader_expiry_permissions_policy(
    member_account_id: &str,
    trail_buckets: &[&str],
) -> anyhow::Result<Value> {
    reader_permissions(member_account_id, trail_buckets, true)
}

fn reader_permissions(
    member_account_id: &str,
    trail_buckets: &[&str],
    allow_source_expiry: bool,
) -> anyhow::Result<Value> {
    anyhow::ensure!(
        !trail_buckets.is_empty(),
        "a reader permissions policy needs at least one trail bucket"
    );
    let bucket_arns: Vec<String> = trail_buckets
        .iter()
        .map(|bucket| format!("arn:aws:s3:::{bucket}"))
        .collect();
    let bucket_arns: Vec<&str> = bucket_arns.iter().map(String::as_str).collect();
    render(
        MEMBER_ACCOUNT,
        &member_render(member_account_id)
            .list_parameter("TrailBucketArns", &bucket_arns)
            .list_parameter("TrailKmsKeyArns", &[])
            .parameter(
                "AllowSourceExpiry",
                if allow_source_expiry { "true" } else { "false" },
            ),
        |template| template.inline_policy("ReaderRole", "read-cloudtrail-files"),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::templates::{statement, statement_sids, unresolved_intrinsics};

    const AUDIT: &str = "111111111111";
    const MEMBER: &str = "222222222201";
    const BUCKET: &str = "trailvault-archive-111111111111";
    const KEY_ARN: &str = "arn:aws:kms:us-east-1:111111111111:key/k";
    const USER_ARN: &str = "arn:aws:iam::111111111111:user/trailvault-collector";
    const USER_ID: &str = "AIDATESTCOLLECTOR0001";

    fn collector() -> CollectorPrincipal<'static> {
        CollectorPrincipal {
            arn: USER_ARN,
            unique_id: USER_ID,
        }
    }

    fn archive() -> Archive<'static> {
        Archive {
            audit_account_id: AUDIT,
            bucket: BUCKET,
            kms_key_arn: KEY_ARN,
        }
    }

    fn template_sids(document: &str) -> Vec<String> {
        let template = Template::load(AUDIT_ACCOUNT).unwrap();
        template
            .policy_document(document)
            .unwrap()
            .get("Statement")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|statement| statement.get("Sid").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    fn assert_rendered(document: &Value) {
        let leftovers = unresolved_intrinsics(document);
        assert!(leftovers.is_empty(), "{leftovers:?} in {document:#}");
        assert!(
            !document.to_string().contains(":role/trailvault-collector"),
            "the collector role of the template leaked into {document:#}"
        );
    }

    #[test]
    fn names_are_the_templates_defaults() {
        let audit = Template::load(AUDIT_ACCOUNT).unwrap();
        let member = Template::load(MEMBER_ACCOUNT).unwrap();
        let render = Render::new(AUDIT, harness::TEST_REGION);
        let text = |template: &Template, value: &Value| render.render(template, value).unwrap();
        assert_eq!(
            text(&audit, audit.property("AuditorRole", "RoleName").unwrap()),
            AUDITOR_ROLE_NAME
        );
        assert_eq!(
            text(
                &audit,
                audit.property("FindingsTopic", "TopicName").unwrap()
            ),
            FINDINGS_TOPIC_NAME
        );
        assert_eq!(
            text(&audit, &json!({"Ref": "FindingsEventBusName"})),
            FINDINGS_EVENT_BUS_NAME
        );
        assert_eq!(
            text(&audit, &json!({"Ref": "MemberRoleName"})),
            READER_ROLE_NAME
        );
        assert_eq!(text(&member, &json!({"Ref": "RoleName"})), READER_ROLE_NAME);
    }

    #[test]
    fn emulator_bucket_policy_is_the_template_without_the_unenforceable_statements() {
        let aws =
            archive_bucket_policy(archive(), collector(), ArchivePolicyOptions::AWS, 365).unwrap();
        let emulator =
            archive_bucket_policy(archive(), collector(), ArchivePolicyOptions::EMULATOR, 365)
                .unwrap();
        assert_rendered(&aws);
        let all = template_sids("ArchiveBucketPolicy");
        assert_eq!(statement_sids(&aws), all);
        let kept: Vec<String> = all
            .iter()
            .filter(|sid| !templates::EMULATOR_UNENFORCEABLE_ARCHIVE_SIDS.contains(&sid.as_str()))
            .cloned()
            .collect();
        assert_eq!(statement_sids(&emulator), kept);
        assert_eq!(
            ArchivePolicyOptions::EMULATOR.dropped_sids(),
            templates::EMULATOR_UNENFORCEABLE_ARCHIVE_SIDS
        );
        assert!(ArchivePolicyOptions::AWS.dropped_sids().is_empty());

        let writers = statement(&emulator, "DenyObjectWritesByAnyoneButTheCollector").unwrap();
        assert_eq!(
            writers["Condition"],
            json!({
                "ArnNotEquals": {"aws:PrincipalArn": USER_ARN},
                "StringNotLike": {"aws:userid": format!("{USER_ID}:*")}
            })
        );
        assert_eq!(
            statement(&emulator, "AllowAuditorsToRead").unwrap()["Principal"],
            json!({"AWS": auditor_role_arn(AUDIT)})
        );
        assert_eq!(
            statement(&aws, DENY_OTHER_KMS_KEYS_SID).unwrap()["Condition"]["StringNotEquals"]
                ["s3:x-amz-server-side-encryption-aws-kms-key-id"],
            KEY_ARN
        );
    }

    #[test]
    fn key_policy_names_the_audit_root_the_collector_user_and_the_auditors() {
        let policy = archive_kms_key_policy(AUDIT, collector()).unwrap();
        assert_rendered(&policy);
        assert_eq!(statement_sids(&policy), template_sids("ArchiveKey"));
        assert_eq!(
            statement(&policy, "CollectorEncryptsAndReadsBack").unwrap()["Principal"],
            json!({"AWS": USER_ARN})
        );
        assert_eq!(
            statement(&policy, "AuditAccountAdministersTheKey").unwrap()["Principal"],
            json!({"AWS": format!("arn:aws:iam::{AUDIT}:root")})
        );
    }

    #[test]
    fn collector_policy_is_the_template_without_the_organization_condition() {
        let policy = collector_identity_policy(archive(), READER_ROLE_NAME).unwrap();
        assert_rendered(&policy);
        assert_eq!(
            statement_sids(&policy),
            template_sids("CollectorPermissions")
        );
        let assume = statement(&policy, "AssumeMemberReaderRoles").unwrap();
        assert_eq!(assume["Resource"], "arn:aws:iam::*:role/TrailvaultReader");
        assert!(assume.get("Condition").is_none(), "{assume}");
        assert_eq!(
            statement(&policy, "PublishFindings").unwrap()["Resource"],
            findings_topic_arn(AUDIT)
        );
        assert_eq!(
            statement(&policy, "WriteAndReadArchiveObjects").unwrap()["Resource"],
            format!("arn:aws:s3:::{BUCKET}/*")
        );
    }

    #[test]
    fn auditor_role_documents_render() {
        let trust = auditor_trust_policy(AUDIT).unwrap();
        assert_rendered(&trust);
        assert_eq!(
            trust["Statement"][0]["Principal"],
            json!({"AWS": format!("arn:aws:iam::{AUDIT}:root")})
        );
        let permissions = auditor_permissions_policy(archive()).unwrap();
        assert_rendered(&permissions);
        assert_eq!(
            statement(&permissions, "DecryptWithArchiveKey").unwrap()["Resource"],
            KEY_ARN
        );
    }

    #[test]
    fn reader_trust_names_one_principal_and_the_external_id() {
        let trust = reader_trust_policy(MEMBER, USER_ARN, "ext").unwrap();
        assert_rendered(&trust);
        assert_eq!(
            trust["Statement"],
            json!([{
                "Sid": "TrailvaultCollectorWithExternalId",
                "Effect": "Allow",
                "Principal": {"AWS": USER_ARN},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": "ext"}}
            }])
        );
    }

    #[test]
    fn reader_permissions_list_and_read_the_trail_buckets_only() {
        let policy = reader_permissions_policy(MEMBER, &["a", "b"]).unwrap();
        assert_rendered(&policy);
        assert_eq!(
            statement_sids(&policy),
            vec!["ListTrailBuckets", "ReadTrailFiles", "ListOwnBuckets"]
        );
        assert_eq!(
            statement(&policy, "ListTrailBuckets").unwrap()["Resource"],
            json!(["arn:aws:s3:::a", "arn:aws:s3:::b"])
        );
        assert_eq!(
            statement(&policy, "ReadTrailFiles").unwrap()["Resource"],
            json!(["arn:aws:s3:::a/*", "arn:aws:s3:::b/*"])
        );
        assert!(reader_permissions_policy(MEMBER, &[]).is_err());
    }

    #[test]
    fn reader_permissions_with_source_expiry_also_delete_trail_files() {
        let policy = reader_expiry_permissions_policy(MEMBER, &["a", "b"]).unwrap();
        assert_rendered(&policy);
        assert_eq!(
            statement_sids(&policy),
            vec![
                "ListTrailBuckets",
                "ReadTrailFiles",
                "ExpireArchivedTrailFiles",
                "ListOwnBuckets"
            ]
        );
        assert_eq!(
            statement(&policy, "ExpireArchivedTrailFiles").unwrap(),
            &json!({
                "Sid": "ExpireArchivedTrailFiles",
                "Effect": "Allow",
                "Action": "s3:DeleteObject",
                "Resource": ["arn:aws:s3:::a/*AWSLogs/*", "arn:aws:s3:::b/*AWSLogs/*"],
                "Condition": {"StringEquals": {"s3:ResourceAccount": MEMBER}}
            })
        );
        // The default is read-only.
        let template = Template::load(MEMBER_ACCOUNT).unwrap();
        assert_eq!(
            template.body()["Parameters"]["AllowSourceExpiry"]["Default"],
            "false"
        );
    }
}
