//! Issue 5, item 5: the policies of `infra/cloudformation/` hold on the emulator
//! (ministack, AUTH=true).
//!
//! Each test deploys the audit and member accounts by hand (CloudFormation is not
//! used: ministack ignores `ObjectLockConfiguration` there), applying exactly what the
//! templates say, rendered by `trailvault_integration_tests::templates`: the key
//! policy, the bucket's properties and policy, the collector's and auditors' trust and
//! permission policies, the member role's trust and permission policies. Then it acts
//! as each principal and asserts the error code of every refusal.
//!
//! The archive bucket policy is applied without `DenyInsecureTransport` (plain HTTP)
//! and, outside `the_kms_key_statement_denies_every_put_on_the_emulator_a_canary`,
//! without `DenyPutsWithAnotherKmsKey`, which ministack 1.5.33 cannot evaluate (it
//! never sets `s3:x-amz-server-side-encryption-aws-kms-key-id`, so the statement
//! denies every put, the right key's included). That a put under another key is
//! refused therefore rests on AWS's semantics of that condition key, not on a test
//! here; what is proven here is that the collector's HEAD check sees the foreign key
//! id of such a copy. `DenyInsecureTransport` is proven to deny in its own test.
//! Canaries fail once the emulator learns what it lacks. Root credentials bypass a bucket-policy Deny on
//! ministack, so only IAM users and assumed roles act here, except where a test
//! shows the Object Lock layer on its own.

use std::fmt::Debug;

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus,
    ChecksumAlgorithm, ChecksumMode, DefaultRetention, ExpirationStatus, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration, ObjectLockConfiguration, ObjectLockEnabled,
    ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockMode, ObjectLockRetention,
    ObjectLockRetentionMode, ObjectLockRule, ObjectOwnership, OwnershipControls,
    OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    VersioningConfiguration,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use base64::Engine as _;
use chrono::{Duration, Utc};
use serde_json::Value;
use trailvault_integration_tests::harness;
use trailvault_integration_tests::templates::{
    self, Render, Template, AUDIT_ACCOUNT, DENY_INSECURE_TRANSPORT_SID, DENY_OTHER_KMS_KEYS_SID,
    EMULATOR_UNENFORCEABLE_ARCHIVE_SIDS, MEMBER_ACCOUNT,
};

const AUDIT: &str = "210987654321";
const MEMBER: &str = "123456789012";
const ROOT_SECRET: &str = "root-secret";
const ARCHIVE_BUCKET: &str = "trailvault-archive-e2e";
/// The deployment's `RetentionDays`: every put below asks for this many days.
const RETENTION_DAYS: i64 = 30;
/// The deployment's `BreakGlassRoleName` (the template's default).
const BREAK_GLASS_ROLE: &str = "trailvault-break-glass";
const TRAIL_BUCKET: &str = "aws-cloudtrail-logs-123456789012";
const TRAIL_OBJECT: &str =
    "AWSLogs/123456789012/CloudTrail/us-east-1/2026/01/01/123456789012_CloudTrail_us-east-1_20260101T0000Z_abc.json.gz";
const EXTERNAL_ID: &str = "trailvault-e2e-external-id-5f1c";
const COLLECTOR_POLICY_NAME: &str = "trailvault-collector";
const AUDITOR_POLICY_NAME: &str = "trailvault-auditor";
const MEMBER_POLICY_NAME: &str = "read-cloudtrail-files";

/// What the S3, STS and IAM APIs answer to a refused request.
const ACCESS_DENIED: &str = "AccessDenied";
/// What KMS answers.
const KMS_ACCESS_DENIED: &str = "AccessDeniedException";
/// What ministack's KMS answers for a key of another account (AWS would answer
/// AccessDeniedException): its keys are stored per account.
const KMS_NOT_FOUND_ACROSS_ACCOUNTS: &str = "NotFoundException";

/// A principal's SDK configuration.
struct Principal {
    arn: String,
    config: SdkConfig,
}

impl Debug for Principal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Principal")
            .field("arn", &self.arn)
            .finish_non_exhaustive()
    }
}

impl Principal {
    fn s3(&self) -> aws_sdk_s3::Client {
        harness::s3_client(&self.config)
    }
    fn kms(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.config)
    }
    fn sts(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::new(&self.config)
    }
}

/// The two accounts, deployed from the templates.
struct Deployment {
    endpoint: String,
    audit_template: Template,
    audit_render: Render,
    archive_key_arn: String,
    /// A second key of the audit account: the "wrong key" of a misdirected put.
    other_key_arn: String,
    trail_key_arn: String,
    collector_role_arn: String,
    member_role_arn: String,
    topic_arn: String,
    /// `ci`, the IAM user that assumes the collector role (the template's
    /// `AdditionalCollectorPrincipalArn`). It may assume any role itself, so a
    /// refused AssumeRole is the target's trust policy speaking.
    ci: Principal,
    collector: Principal,
    auditor: Principal,
    /// An IAM user of the audit account with `s3:*` and `kms:*` on everything.
    audit_admin: Principal,
    member_role: Principal,
    /// An IAM user of the member account with `s3:*`, `kms:*` and `sts:AssumeRole` on
    /// everything: the member's strongest identity short of root.
    member_admin: Principal,
}

#[track_caller]
fn ok<T, E: Debug>(what: &str, result: Result<T, E>) -> T {
    result.unwrap_or_else(|error| panic!("{what}: {error:?}"))
}

/// The error code of a refused request; panics if it succeeded. The code and message
/// are printed (`--nocapture`) as the record of what the emulator answered.
#[track_caller]
fn refused<T: Debug, E: ProvideErrorMetadata + Debug>(what: &str, result: Result<T, E>) -> String {
    match result {
        Ok(value) => panic!("{what}: expected a refusal, got {value:?}"),
        Err(error) => {
            let code = error.code().unwrap_or("<no code>").to_owned();
            eprintln!(
                "refused as expected: {what}: {code}: {}",
                error.message().unwrap_or("<no message>")
            );
            if code == "<no code>" {
                panic!("{what}: refused without a service error code: {error:?}");
            }
            code
        }
    }
}

#[track_caller]
fn assert_refused<T: Debug, E: ProvideErrorMetadata + Debug>(
    what: &str,
    result: Result<T, E>,
    expected_code: &str,
) {
    let code = refused(what, result);
    assert_eq!(code, expected_code, "{what}");
}

fn sha256_base64(body: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

fn smithy_time(time: chrono::DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs(time.timestamp())
}

fn json_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn json_number(value: &Value, what: &str) -> i32 {
    json_text(value)
        .parse()
        .unwrap_or_else(|error| panic!("{what} is not a number ({value}): {error}"))
}

fn json_bool(value: &Value) -> bool {
    value == &Value::Bool(true) || value == "true"
}

/// How an archive put is dressed.
enum Encryption<'a> {
    None,
    SseS3,
    Kms(&'a str),
}

/// PutObject into the archive as the collector's copy stage does it: SHA-256 checksum
/// algorithm and value, SSE-KMS, COMPLIANCE retention. `checksum` overrides the
/// correct value.
async fn put_archive_object(
    s3: &aws_sdk_s3::Client,
    key: &str,
    body: &[u8],
    encryption: Encryption<'_>,
    checksum: Option<&str>,
) -> Result<
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::put_object::PutObjectError>,
> {
    let mut request = s3
        .put_object()
        .bucket(ARCHIVE_BUCKET)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(checksum.map_or_else(|| sha256_base64(body), str::to_owned))
        .object_lock_mode(ObjectLockMode::Compliance)
        .object_lock_retain_until_date(smithy_time(Utc::now() + Duration::days(RETENTION_DAYS)));
    request = match encryption {
        Encryption::None => request,
        Encryption::SseS3 => request.server_side_encryption(ServerSideEncryption::Aes256),
        Encryption::Kms(key_arn) => request
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(key_arn),
    };
    request.send().await
}

async fn root(endpoint: &str, account_id: &str) -> SdkConfig {
    harness::sdk_config(endpoint, account_id, ROOT_SECRET, None)
}

/// An IAM user with an access key and one inline policy.
async fn create_user(
    iam: &aws_sdk_iam::Client,
    endpoint: &str,
    account_id: &str,
    name: &str,
    policy: &Value,
) -> Principal {
    ok(
        &format!("create user {name}"),
        iam.create_user().user_name(name).send().await,
    );
    ok(
        &format!("put the policy of {name}"),
        iam.put_user_policy()
            .user_name(name)
            .policy_name("test-identity")
            .policy_document(policy.to_string())
            .send()
            .await,
    );
    let key = ok(
        &format!("access key of {name}"),
        iam.create_access_key().user_name(name).send().await,
    );
    let key = key.access_key().expect("CreateAccessKey returns a key");
    Principal {
        arn: format!("arn:aws:iam::{account_id}:user/{name}"),
        config: harness::sdk_config(endpoint, key.access_key_id(), key.secret_access_key(), None),
    }
}

/// `sts:AssumeRole` as `principal`, returning the session.
async fn assume(
    endpoint: &str,
    principal: &Principal,
    role_arn: &str,
    external_id: Option<&str>,
) -> Result<
    Principal,
    aws_sdk_sts::error::SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError>,
> {
    let output = principal
        .sts()
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("trailvault-e2e")
        .set_external_id(external_id.map(str::to_owned))
        .send()
        .await?;
    let credentials = output
        .credentials()
        .expect("AssumeRole returns credentials");
    let arn = output
        .assumed_role_user()
        .map(|user| user.arn().to_owned())
        .unwrap_or_default();
    Ok(Principal {
        arn,
        config: harness::sdk_config(
            endpoint,
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token()),
        ),
    })
}

/// Applies the rendered `Properties` of the archive bucket through the S3 API, each
/// property the template sets; an unknown one fails the test so that a template change
/// cannot go unapplied.
async fn apply_bucket_properties(s3: &aws_sdk_s3::Client, bucket: &str, properties: &Value) {
    let properties = properties
        .as_object()
        .expect("bucket Properties is an object");
    assert!(
        json_bool(&properties["ObjectLockEnabled"]),
        "the archive must be created with Object Lock"
    );
    ok(
        "create the archive bucket with Object Lock",
        s3.create_bucket()
            .bucket(bucket)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await,
    );
    for (name, value) in properties {
        match name.as_str() {
            "BucketName" => assert_eq!(value, bucket),
            "ObjectLockEnabled" => {}
            "VersioningConfiguration" => {
                assert_eq!(value["Status"], "Enabled");
                ok(
                    "enable versioning",
                    s3.put_bucket_versioning()
                        .bucket(bucket)
                        .versioning_configuration(
                            VersioningConfiguration::builder()
                                .status(BucketVersioningStatus::Enabled)
                                .build(),
                        )
                        .send()
                        .await,
                );
            }
            "ObjectLockConfiguration" => {
                assert_eq!(value["ObjectLockEnabled"], "Enabled");
                let retention = &value["Rule"]["DefaultRetention"];
                let mode = ObjectLockRetentionMode::from(json_text(&retention["Mode"]).as_str());
                ok(
                    "set the default retention",
                    s3.put_object_lock_configuration()
                        .bucket(bucket)
                        .object_lock_configuration(
                            ObjectLockConfiguration::builder()
                                .object_lock_enabled(ObjectLockEnabled::Enabled)
                                .rule(
                                    ObjectLockRule::builder()
                                        .default_retention(
                                            DefaultRetention::builder()
                                                .mode(mode)
                                                .days(json_number(
                                                    &retention["Days"],
                                                    "DefaultRetention.Days",
                                                ))
                                                .build(),
                                        )
                                        .build(),
                                )
                                .build(),
                        )
                        .send()
                        .await,
                );
            }
            "BucketEncryption" => {
                let rule = &value["ServerSideEncryptionConfiguration"][0];
                let default = &rule["ServerSideEncryptionByDefault"];
                let by_default = ok(
                    "encryption default",
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(ServerSideEncryption::from(
                            json_text(&default["SSEAlgorithm"]).as_str(),
                        ))
                        .kms_master_key_id(json_text(&default["KMSMasterKeyID"]))
                        .build(),
                );
                let configuration = ok(
                    "encryption configuration",
                    ServerSideEncryptionConfiguration::builder()
                        .rules(
                            ServerSideEncryptionRule::builder()
                                .apply_server_side_encryption_by_default(by_default)
                                .bucket_key_enabled(json_bool(&rule["BucketKeyEnabled"]))
                                .build(),
                        )
                        .build(),
                );
                ok(
                    "set default encryption",
                    s3.put_bucket_encryption()
                        .bucket(bucket)
                        .server_side_encryption_configuration(configuration)
                        .send()
                        .await,
                );
            }
            "PublicAccessBlockConfiguration" => {
                ok(
                    "block public access",
                    s3.put_public_access_block()
                        .bucket(bucket)
                        .public_access_block_configuration(
                            PublicAccessBlockConfiguration::builder()
                                .block_public_acls(json_bool(&value["BlockPublicAcls"]))
                                .block_public_policy(json_bool(&value["BlockPublicPolicy"]))
                                .ignore_public_acls(json_bool(&value["IgnorePublicAcls"]))
                                .restrict_public_buckets(json_bool(&value["RestrictPublicBuckets"]))
                                .build(),
                        )
                        .send()
                        .await,
                );
            }
            "OwnershipControls" => {
                let ownership = json_text(&value["Rules"][0]["ObjectOwnership"]);
                let rule = ok(
                    "ownership rule",
                    OwnershipControlsRule::builder()
                        .object_ownership(ObjectOwnership::from(ownership.as_str()))
                        .build(),
                );
                let controls = ok(
                    "ownership controls",
                    OwnershipControls::builder().rules(rule).build(),
                );
                ok(
                    "set ownership controls",
                    s3.put_bucket_ownership_controls()
                        .bucket(bucket)
                        .ownership_controls(controls)
                        .send()
                        .await,
                );
            }
            "LifecycleConfiguration" => {
                let mut rules = Vec::new();
                for rule in value["Rules"].as_array().expect("lifecycle Rules") {
                    let mut builder = LifecycleRule::builder()
                        .id(json_text(&rule["Id"]))
                        .status(ExpirationStatus::from(json_text(&rule["Status"]).as_str()))
                        .filter(LifecycleRuleFilter::builder().prefix("").build());
                    for (field, setting) in rule.as_object().expect("a lifecycle rule") {
                        match field.as_str() {
                            "Id" | "Status" => {}
                            "NoncurrentVersionExpiration" => {
                                builder = builder.noncurrent_version_expiration(
                                    NoncurrentVersionExpiration::builder()
                                        .noncurrent_days(json_number(
                                            &setting["NoncurrentDays"],
                                            "NoncurrentDays",
                                        ))
                                        .build(),
                                );
                            }
                            "AbortIncompleteMultipartUpload" => {
                                builder = builder.abort_incomplete_multipart_upload(
                                    AbortIncompleteMultipartUpload::builder()
                                        .days_after_initiation(json_number(
                                            &setting["DaysAfterInitiation"],
                                            "DaysAfterInitiation",
                                        ))
                                        .build(),
                                );
                            }
                            other => panic!(
                                "lifecycle rule field {other} is not applied by this test: add it"
                            ),
                        }
                    }
                    rules.push(ok("lifecycle rule", builder.build()));
                }
                ok(
                    "set the lifecycle",
                    s3.put_bucket_lifecycle_configuration()
                        .bucket(bucket)
                        .lifecycle_configuration(ok(
                            "lifecycle configuration",
                            BucketLifecycleConfiguration::builder()
                                .set_rules(Some(rules))
                                .build(),
                        ))
                        .send()
                        .await,
                );
            }
            other => panic!("archive bucket property {other} is not applied by this test: add it"),
        }
    }
}

impl Deployment {
    /// Resets the emulator and deploys both accounts from the templates.
    async fn deploy() -> Deployment {
        let endpoint = harness::test_endpoint();
        ok("reset the emulator", harness::reset(&endpoint).await);
        let audit_template = ok("load the audit template", Template::load(AUDIT_ACCOUNT));
        let member_template = ok("load the member template", Template::load(MEMBER_ACCOUNT));
        let region = harness::TEST_REGION;

        // ---- audit account, as its root ----
        let audit_root = root(&endpoint, AUDIT).await;
        let iam = aws_sdk_iam::Client::new(&audit_root);
        let ci = create_user(
            &iam,
            &endpoint,
            AUDIT,
            "ci",
            &serde_json::json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}
            ]}),
        )
        .await;
        let audit_admin = create_user(
            &iam,
            &endpoint,
            AUDIT,
            "audit-admin",
            &serde_json::json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:*", "kms:*"], "Resource": "*"}
            ]}),
        )
        .await;

        let mut render = trailvault_integration_tests::sim::policies::with_intake_queues(
            Render::new(AUDIT, region),
            AUDIT,
        )
        .parameter("ArchiveBucketName", ARCHIVE_BUCKET)
        // ministack does not resolve aws:ResourceOrgID (see sim::policies).
        .parameter("OrganizationId", "")
        .parameter("AdditionalCollectorPrincipalArn", &ci.arn)
        // The copies below are retained 30 days, as a 30-day deployment's.
        .parameter("RetentionDays", &RETENTION_DAYS.to_string())
        .parameter("MinimumPutRetentionDays", &(RETENTION_DAYS - 1).to_string())
        .resource("ArchiveBucket", ARCHIVE_BUCKET)
        .attribute(
            "ArchiveBucket",
            "Arn",
            &format!("arn:aws:s3:::{ARCHIVE_BUCKET}"),
        );

        // Roles first, trust policies only: the key policy names them.
        let mut role_arns = Vec::new();
        for (logical_id, role_name) in [
            ("CollectorRole", "trailvault-collector"),
            ("AuditorRole", "trailvault-auditor"),
        ] {
            let declared = audit_template
                .property(logical_id, "RoleName")
                .expect("RoleName");
            assert_eq!(
                ok("render RoleName", render.render(&audit_template, declared)),
                role_name
            );
            let trust = ok(
                &format!("render the trust policy of {logical_id}"),
                render.render(
                    &audit_template,
                    audit_template
                        .trust_policy(logical_id)
                        .expect("trust policy"),
                ),
            );
            let created = ok(
                &format!("create role {role_name}"),
                iam.create_role()
                    .role_name(role_name)
                    .assume_role_policy_document(trust.to_string())
                    .send()
                    .await,
            );
            let role = created.role().expect("CreateRole returns the role");
            render = render
                .resource(logical_id, role_name)
                .attribute(logical_id, "Arn", role.arn())
                .attribute(logical_id, "RoleId", role.role_id());
            role_arns.push(role.arn().to_owned());
        }
        let collector_role_arn = role_arns[0].clone();
        let auditor_role_arn = role_arns[1].clone();

        let kms = aws_sdk_kms::Client::new(&audit_root);
        let key_policy = ok(
            "render the key policy",
            render.render(
                &audit_template,
                audit_template
                    .policy_document("ArchiveKey")
                    .expect("key policy"),
            ),
        );
        let key = ok(
            "create the archive key",
            kms.create_key()
                .description("trailvault archive (e2e)")
                .policy(key_policy.to_string())
                .send()
                .await,
        );
        let key = key.key_metadata().expect("key metadata");
        let archive_key_arn = key.arn().expect("key ARN").to_owned();
        render = render.resource("ArchiveKey", key.key_id()).attribute(
            "ArchiveKey",
            "Arn",
            &archive_key_arn,
        );
        assert_eq!(
            audit_template
                .property("ArchiveKey", "EnableKeyRotation")
                .expect("rotation"),
            &Value::Bool(true)
        );
        ok(
            "enable key rotation",
            kms.enable_key_rotation().key_id(key.key_id()).send().await,
        );
        let other_key = ok(
            "create another key",
            kms.create_key()
                .description("not the archive key")
                .send()
                .await,
        );
        let other_key_arn = other_key
            .key_metadata()
            .and_then(|key| key.arn())
            .expect("other key ARN")
            .to_owned();

        let sns = aws_sdk_sns::Client::new(&audit_root);
        let topic = ok(
            "render the findings topic",
            render.render(
                &audit_template,
                audit_template.resource("FindingsTopic").expect("topic"),
            ),
        );
        let topic = ok(
            "create the findings topic",
            sns.create_topic()
                .name(json_text(&topic["Properties"]["TopicName"]))
                .attributes(
                    "KmsMasterKeyId",
                    json_text(&topic["Properties"]["KmsMasterKeyId"]),
                )
                .send()
                .await,
        );
        let topic_arn = topic.topic_arn().expect("topic ARN").to_owned();
        render = render.resource("FindingsTopic", &topic_arn);

        for (role_name, logical_id, policy_name) in [
            (
                "trailvault-collector",
                "CollectorPermissions",
                COLLECTOR_POLICY_NAME,
            ),
            (
                "trailvault-auditor",
                "AuditorPermissions",
                AUDITOR_POLICY_NAME,
            ),
        ] {
            let declared = audit_template
                .property(logical_id, "PolicyName")
                .expect("PolicyName");
            assert_eq!(declared, policy_name);
            let document = ok(
                &format!("render {logical_id}"),
                render.render(
                    &audit_template,
                    audit_template.policy_document(logical_id).expect("policy"),
                ),
            );
            ok(
                &format!("put {logical_id}"),
                iam.put_role_policy()
                    .role_name(role_name)
                    .policy_name(policy_name)
                    .policy_document(document.to_string())
                    .send()
                    .await,
            );
        }

        let bucket = ok(
            "render the archive bucket",
            render.render(
                &audit_template,
                audit_template.resource("ArchiveBucket").expect("bucket"),
            ),
        );
        apply_bucket_properties(
            &harness::s3_client(&audit_root),
            ARCHIVE_BUCKET,
            &bucket["Properties"],
        )
        .await;

        // ---- member account, as its root ----
        let member_root = root(&endpoint, MEMBER).await;
        let member_kms = aws_sdk_kms::Client::new(&member_root);
        let trail_key = ok(
            "create the trail key",
            member_kms
                .create_key()
                .description("trail key")
                .send()
                .await,
        );
        let trail_key_arn = trail_key
            .key_metadata()
            .and_then(|key| key.arn())
            .expect("trail key ARN")
            .to_owned();
        let member_s3 = harness::s3_client(&member_root);
        ok(
            "create the trail bucket",
            member_s3.create_bucket().bucket(TRAIL_BUCKET).send().await,
        );
        ok(
            "deliver a trail file",
            member_s3
                .put_object()
                .bucket(TRAIL_BUCKET)
                .key(TRAIL_OBJECT)
                .body(ByteStream::from_static(b"{\"Records\":[]}"))
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(&trail_key_arn)
                .send()
                .await,
        );
        let member_render = Render::new(MEMBER, region)
            .parameter("CollectorRoleArn", &collector_role_arn)
            .parameter("ExternalId", EXTERNAL_ID)
            .list_parameter(
                "TrailBucketArns",
                &[&format!("arn:aws:s3:::{TRAIL_BUCKET}")],
            )
            .list_parameter("TrailKmsKeyArns", &[&trail_key_arn]);
        let member_iam = aws_sdk_iam::Client::new(&member_root);
        let role_name = ok(
            "render the member role name",
            member_render.render(
                &member_template,
                member_template
                    .property("ReaderRole", "RoleName")
                    .expect("RoleName"),
            ),
        );
        let role_name = json_text(&role_name);
        let trust = ok(
            "render the member trust policy",
            member_render.render(
                &member_template,
                member_template.trust_policy("ReaderRole").expect("trust"),
            ),
        );
        let created = ok(
            "create the member role",
            member_iam
                .create_role()
                .role_name(&role_name)
                .assume_role_policy_document(trust.to_string())
                .send()
                .await,
        );
        let member_role_arn = created.role().expect("role").arn().to_owned();
        let permissions = ok(
            "render the member permissions",
            member_render.render(
                &member_template,
                member_template
                    .inline_policy("ReaderRole", MEMBER_POLICY_NAME)
                    .expect("inline policy"),
            ),
        );
        ok(
            "put the member permissions",
            member_iam
                .put_role_policy()
                .role_name(&role_name)
                .policy_name(MEMBER_POLICY_NAME)
                .policy_document(permissions.to_string())
                .send()
                .await,
        );
        let member_admin = create_user(
            &member_iam,
            &endpoint,
            MEMBER,
            "member-admin",
            &serde_json::json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:*", "kms:*", "sts:AssumeRole"], "Resource": "*"}
            ]}),
        )
        .await;

        // ---- sessions ----
        let collector = ok(
            "ci assumes the collector role",
            assume(&endpoint, &ci, &collector_role_arn, None).await,
        );
        let auditor = ok(
            "ci assumes the auditor role",
            assume(&endpoint, &ci, &auditor_role_arn, None).await,
        );
        let member_role = ok(
            "the collector assumes the member role with the ExternalId",
            assume(&endpoint, &collector, &member_role_arn, Some(EXTERNAL_ID)).await,
        );

        let deployment = Deployment {
            endpoint,
            audit_template,
            audit_render: render,
            archive_key_arn,
            other_key_arn,
            trail_key_arn,
            collector_role_arn,
            member_role_arn,
            topic_arn,
            ci,
            collector,
            auditor,
            audit_admin,
            member_role,
            member_admin,
        };
        deployment
            .put_bucket_policy(&EMULATOR_UNENFORCEABLE_ARCHIVE_SIDS)
            .await;
        deployment
    }

    /// The archive bucket policy as rendered from the template.
    fn bucket_policy(&self) -> Value {
        ok(
            "render the bucket policy",
            self.audit_render.render(
                &self.audit_template,
                self.audit_template
                    .policy_document("ArchiveBucketPolicy")
                    .expect("bucket policy"),
            ),
        )
    }

    /// Applies the rendered bucket policy without the statements `dropped`.
    async fn put_bucket_policy(&self, dropped: &[&str]) {
        let policy = ok(
            "drop statements",
            templates::without_statements(&self.bucket_policy(), dropped),
        );
        self.put_bucket_policy_document(&policy).await;
    }

    async fn put_bucket_policy_document(&self, policy: &Value) {
        let root = root(&self.endpoint, AUDIT).await;
        ok(
            "put the archive bucket policy",
            harness::s3_client(&root)
                .put_bucket_policy()
                .bucket(ARCHIVE_BUCKET)
                .policy(policy.to_string())
                .send()
                .await,
        );
    }

    /// A valid archive object written by the collector: (key, version id).
    async fn collector_writes(&self, key: &str, body: &[u8]) -> (String, String) {
        let output = ok(
            &format!("the collector puts {key}"),
            put_archive_object(
                &self.collector.s3(),
                key,
                body,
                Encryption::Kms(&self.archive_key_arn),
                None,
            )
            .await,
        );
        (
            key.to_owned(),
            output
                .version_id()
                .expect("a versioned put returns a version id")
                .to_owned(),
        )
    }
}

#[tokio::test]
async fn collector_writes_encrypted_checksummed_locked_objects() {
    let deployment = Deployment::deploy().await;
    let s3 = deployment.collector.s3();
    let body = b"a CloudTrail log file, gzip in real life";
    let key = "archive/123456789012/aws-cloudtrail-logs-123456789012/AWSLogs/x.json.gz";
    let (_, version_id) = deployment.collector_writes(key, body).await;

    let head = ok(
        "head the copy",
        s3.head_object()
            .bucket(ARCHIVE_BUCKET)
            .key(key)
            .version_id(&version_id)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await,
    );
    assert_eq!(head.checksum_sha256(), Some(sha256_base64(body).as_str()));
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(
        head.ssekms_key_id(),
        Some(deployment.archive_key_arn.as_str())
    );
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));
    assert!(head.object_lock_retain_until_date().is_some());
    let read_back = ok(
        "read the copy back",
        s3.get_object()
            .bucket(ARCHIVE_BUCKET)
            .key(key)
            .version_id(&version_id)
            .send()
            .await,
    );
    let bytes = ok("read the body", read_back.body.collect().await).into_bytes();
    assert_eq!(bytes.as_ref(), body);
    ok(
        "list versions",
        s3.list_object_versions()
            .bucket(ARCHIVE_BUCKET)
            .send()
            .await,
    );

    // A corrupted upload (the checksum of other bytes) is refused by S3 itself.
    let code = refused(
        "a put whose checksum does not match its bytes",
        put_archive_object(
            &s3,
            "archive/corrupted",
            body,
            Encryption::Kms(&deployment.archive_key_arn),
            Some(&sha256_base64(b"other bytes")),
        )
        .await,
    );
    assert_eq!(code, "BadDigest");

    // Extending retention is the collector's right (`retention --apply`).
    ok(
        "extend retention",
        s3.put_object_retention()
            .bucket(ARCHIVE_BUCKET)
            .key(key)
            .version_id(&version_id)
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::Compliance)
                    .retain_until_date(smithy_time(Utc::now() + Duration::days(400)))
                    .build(),
            )
            .send()
            .await,
    );
}

#[tokio::test]
async fn nobody_deletes_a_version_or_shortens_retention() {
    let deployment = Deployment::deploy().await;
    let (key, version_id) = deployment
        .collector_writes("archive/locked", b"locked bytes")
        .await;
    let shorter = ObjectLockRetention::builder()
        .mode(ObjectLockRetentionMode::Compliance)
        .retain_until_date(smithy_time(Utc::now() + Duration::days(1)))
        .build();
    let governance = ObjectLockRetention::builder()
        .mode(ObjectLockRetentionMode::Governance)
        .retain_until_date(smithy_time(Utc::now() + Duration::days(400)))
        .build();

    // The bucket policy: the collector and an S3 administrator of the audit account.
    for principal in [&deployment.collector, &deployment.audit_admin] {
        let s3 = principal.s3();
        let who = &principal.arn;
        assert_refused(
            &format!("{who} deletes a version"),
            s3.delete_object()
                .bucket(ARCHIVE_BUCKET)
                .key(&key)
                .version_id(&version_id)
                .send()
                .await,
            ACCESS_DENIED,
        );
        assert_refused(
            &format!("{who} deletes a version bypassing governance retention"),
            s3.delete_object()
                .bucket(ARCHIVE_BUCKET)
                .key(&key)
                .version_id(&version_id)
                .bypass_governance_retention(true)
                .send()
                .await,
            ACCESS_DENIED,
        );
        assert_refused(
            &format!("{who} hides the object behind a delete marker"),
            s3.delete_object()
                .bucket(ARCHIVE_BUCKET)
                .key(&key)
                .send()
                .await,
            ACCESS_DENIED,
        );
    }
    assert_refused(
        "the collector shortens retention",
        deployment
            .collector
            .s3()
            .put_object_retention()
            .bucket(ARCHIVE_BUCKET)
            .key(&key)
            .version_id(&version_id)
            .retention(shorter.clone())
            .send()
            .await,
        ACCESS_DENIED,
    );
    assert_refused(
        "the collector downgrades COMPLIANCE to GOVERNANCE",
        deployment
            .collector
            .s3()
            .put_object_retention()
            .bucket(ARCHIVE_BUCKET)
            .key(&key)
            .version_id(&version_id)
            .retention(governance.clone())
            .send()
            .await,
        ACCESS_DENIED,
    );

    // Object Lock on its own: root bypasses the bucket policy on ministack, and
    // COMPLIANCE mode still refuses (on AWS it refuses root as well).
    let root_s3 = harness::s3_client(&root(&deployment.endpoint, AUDIT).await);
    assert_refused(
        "the audit account root deletes a locked version",
        root_s3
            .delete_object()
            .bucket(ARCHIVE_BUCKET)
            .key(&key)
            .version_id(&version_id)
            .send()
            .await,
        ACCESS_DENIED,
    );
    assert_refused(
        "the audit account root shortens COMPLIANCE retention",
        root_s3
            .put_object_retention()
            .bucket(ARCHIVE_BUCKET)
            .key(&key)
            .version_id(&version_id)
            .retention(shorter)
            .send()
            .await,
        ACCESS_DENIED,
    );
    let head = ok(
        "the version is still there",
        root_s3
            .head_object()
            .bucket(ARCHIVE_BUCKET)
            .key(&key)
            .version_id(&version_id)
            .send()
            .await,
    );
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));
}

#[tokio::test]
async fn unencrypted_and_sse_s3_puts_are_denied_another_kms_key_is_an_emulator_gap() {
    let deployment = Deployment::deploy().await;
    let s3 = deployment.collector.s3();
    assert_refused(
        "the collector puts without SSE headers",
        put_archive_object(&s3, "archive/plain", b"x", Encryption::None, None).await,
        ACCESS_DENIED,
    );
    assert_refused(
        "the collector puts with SSE-S3",
        put_archive_object(&s3, "archive/sse-s3", b"x", Encryption::SseS3, None).await,
        ACCESS_DENIED,
    );

    // GAP (ministack 1.5.33): with DenyPutsWithAnotherKmsKey dropped from the applied
    // policy (see the_kms_key_statement_denies_every_put_on_the_emulator_a_canary), nothing on the
    // emulator refuses SSE-KMS under another key: S3 does not check KMS permissions
    // on SSE-KMS puts there. What it does: store the foreign key id, which the
    // collector's own HEAD verification rejects (archive_copy_invalid). Canary: this
    // put succeeding is the gap; if it is refused, tighten this test.
    let wrong = ok(
        "GAP: the emulator accepts a put under another key once DenyPutsWithAnotherKmsKey is dropped",
        put_archive_object(&s3, "archive/other-key", b"x", Encryption::Kms(&deployment.other_key_arn), None).await,
    );
    let head = ok(
        "head the misdirected copy",
        s3.head_object()
            .bucket(ARCHIVE_BUCKET)
            .key("archive/other-key")
            .set_version_id(wrong.version_id().map(str::to_owned))
            .send()
            .await,
    );
    assert_eq!(
        head.ssekms_key_id(),
        Some(deployment.other_key_arn.as_str())
    );
}

#[tokio::test]
/// What this proves is the emulator gap, not that the wrong key is refused: with
/// `DenyPutsWithAnotherKmsKey` applied, ministack refuses every put, the right key's
/// too, because it never sets the condition key. That AWS refuses exactly the other
/// keys rests on AWS's documented semantics of
/// `s3:x-amz-server-side-encryption-aws-kms-key-id` (and on the rendered statement,
/// checked in `templates::tests`).
async fn the_kms_key_statement_denies_every_put_on_the_emulator_a_canary() {
    let deployment = Deployment::deploy().await;
    // The whole policy but the TLS statement.
    deployment
        .put_bucket_policy(&[DENY_INSECURE_TRANSPORT_SID])
        .await;
    let s3 = deployment.collector.s3();
    // Refused, but the right key is refused below too: no proof of key checking.
    assert_refused(
        "the collector puts under another KMS key",
        put_archive_object(
            &s3,
            "archive/other-key",
            b"x",
            Encryption::Kms(&deployment.other_key_arn),
            None,
        )
        .await,
        ACCESS_DENIED,
    );
    assert_refused(
        "the collector puts without SSE headers",
        put_archive_object(&s3, "archive/plain", b"x", Encryption::None, None).await,
        ACCESS_DENIED,
    );

    // GAP canary (ministack 1.5.33): the emulator never sets
    // s3:x-amz-server-side-encryption-aws-kms-key-id, so StringNotEquals on the absent
    // key is true and DenyPutsWithAnotherKmsKey refuses the right key as well. On AWS
    // the key is the header's value and this put succeeds. When this assertion fails
    // the emulator has learned the key: apply the full policy in Deployment::deploy
    // and delete this canary.
    let right_key = put_archive_object(
        &s3,
        "archive/right-key",
        b"x",
        Encryption::Kms(&deployment.archive_key_arn),
        None,
    )
    .await;
    assert_eq!(
        refused("GAP: the right key under DenyPutsWithAnotherKmsKey on ministack", right_key),
        ACCESS_DENIED,
        "ministack now evaluates the KMS key-id condition key: apply the full bucket policy everywhere"
    );

    // Without that one statement, the right key passes.
    deployment
        .put_bucket_policy(&EMULATOR_UNENFORCEABLE_ARCHIVE_SIDS)
        .await;
    deployment.collector_writes("archive/right-key", b"x").await;
}

#[tokio::test]
async fn insecure_transport_statement_denies_plain_http() {
    let deployment = Deployment::deploy().await;
    let (key, _) = deployment
        .collector_writes("archive/before-tls", b"x")
        .await;
    // The template's policy, complete: every request over the emulator's plain HTTP is
    // refused, which is exactly why the other tests drop this one statement.
    deployment
        .put_bucket_policy(&[DENY_OTHER_KMS_KEYS_SID])
        .await;
    let s3 = deployment.collector.s3();
    assert_refused(
        "the collector reads over plain HTTP",
        s3.get_object()
            .bucket(ARCHIVE_BUCKET)
            .key(&key)
            .send()
            .await,
        ACCESS_DENIED,
    );
    assert_refused(
        "the collector lists over plain HTTP",
        s3.list_objects_v2().bucket(ARCHIVE_BUCKET).send().await,
        ACCESS_DENIED,
    );
    assert_refused(
        "the collector writes over plain HTTP",
        put_archive_object(
            &s3,
            "archive/http",
            b"x",
            Encryption::Kms(&deployment.archive_key_arn),
            None,
        )
        .await,
        ACCESS_DENIED,
    );
    assert_refused(
        "the auditors read over plain HTTP",
        deployment
            .auditor
            .s3()
            .get_object()
            .bucket(ARCHIVE_BUCKET)
            .key(&key)
            .send()
            .await,
        ACCESS_DENIED,
    );
}

#[tokio::test]
async fn only_the_collector_writes_and_auditors_read() {
    let deployment = Deployment::deploy().await;
    let (key, version_id) = deployment.collector_writes("archive/written", b"x").await;
    for principal in [&deployment.audit_admin, &deployment.auditor] {
        let s3 = principal.s3();
        let who = &principal.arn;
        assert_refused(
            &format!("{who} puts a well-encrypted object"),
            put_archive_object(
                &s3,
                "archive/intruder",
                b"x",
                Encryption::Kms(&deployment.archive_key_arn),
                None,
            )
            .await,
            ACCESS_DENIED,
        );
        assert_refused(
            &format!("{who} extends retention"),
            s3.put_object_retention()
                .bucket(ARCHIVE_BUCKET)
                .key(&key)
                .version_id(&version_id)
                .retention(
                    ObjectLockRetention::builder()
                        .mode(ObjectLockRetentionMode::Compliance)
                        .retain_until_date(smithy_time(Utc::now() + Duration::days(500)))
                        .build(),
                )
                .send()
                .await,
            ACCESS_DENIED,
        );
        assert_refused(
            &format!("{who} sets a legal hold"),
            s3.put_object_legal_hold()
                .bucket(ARCHIVE_BUCKET)
                .key(&key)
                .version_id(&version_id)
                .legal_hold(
                    ObjectLockLegalHold::builder()
                        .status(ObjectLockLegalHoldStatus::On)
                        .build(),
                )
                .send()
                .await,
            ACCESS_DENIED,
        );
    }
    // Lock, versioning, encryption and lifecycle are frozen by the bucket policy, even
    // for an S3 administrator of the audit account.
    let admin = deployment.audit_admin.s3();
    assert_refused(
        "an S3 administrator weakens the default retention",
        admin
            .put_object_lock_configuration()
            .bucket(ARCHIVE_BUCKET)
            .object_lock_configuration(
                ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::Enabled)
                    .rule(
                        ObjectLockRule::builder()
                            .default_retention(
                                DefaultRetention::builder()
                                    .mode(ObjectLockRetentionMode::Governance)
                                    .days(1)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await,
        ACCESS_DENIED,
    );
    assert_refused(
        "an S3 administrator suspends versioning",
        admin
            .put_bucket_versioning()
            .bucket(ARCHIVE_BUCKET)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Suspended)
                    .build(),
            )
            .send()
            .await,
        ACCESS_DENIED,
    );
    assert_refused(
        "an S3 administrator removes default encryption",
        admin
            .delete_bucket_encryption()
            .bucket(ARCHIVE_BUCKET)
            .send()
            .await,
        ACCESS_DENIED,
    );
    assert_refused(
        "an S3 administrator adds an expiring lifecycle",
        admin
            .put_bucket_lifecycle_configuration()
            .bucket(ARCHIVE_BUCKET)
            .lifecycle_configuration(ok(
                "lifecycle",
                BucketLifecycleConfiguration::builder()
                    .rules(ok(
                        "rule",
                        LifecycleRule::builder()
                            .id("expire")
                            .status(ExpirationStatus::Enabled)
                            .filter(LifecycleRuleFilter::builder().prefix("").build())
                            .noncurrent_version_expiration(
                                NoncurrentVersionExpiration::builder()
                                    .noncurrent_days(1)
                                    .build(),
                            )
                            .build(),
                    ))
                    .build(),
            ))
            .send()
            .await,
        ACCESS_DENIED,
    );

    // The auditors read what the collector wrote, and cannot write (above).
    let auditor = deployment.auditor.s3();
    ok(
        "the auditors list versions",
        auditor
            .list_object_versions()
            .bucket(ARCHIVE_BUCKET)
            .send()
            .await,
    );
    let object = ok(
        "the auditors read a version",
        auditor
            .get_object()
            .bucket(ARCHIVE_BUCKET)
            .key(&key)
            .version_id(&version_id)
            .send()
            .await,
    );
    assert_eq!(
        ok("body", object.body.collect().await)
            .into_bytes()
            .as_ref(),
        b"x"
    );
    ok(
        "the auditors read its retention",
        auditor
            .get_object_retention()
            .bucket(ARCHIVE_BUCKET)
            .key(&key)
            .version_id(&version_id)
            .send()
            .await,
    );
    ok(
        "the auditors describe the key",
        deployment
            .auditor
            .kms()
            .describe_key()
            .key_id(&deployment.archive_key_arn)
            .send()
            .await,
    );
    assert_refused(
        "the auditors encrypt with the archive key",
        deployment
            .auditor
            .kms()
            .encrypt()
            .key_id(&deployment.archive_key_arn)
            .plaintext(aws_smithy_types::Blob::new(b"x".to_vec()))
            .send()
            .await,
        KMS_ACCESS_DENIED,
    );
}

#[tokio::test]
async fn member_principals_can_neither_read_nor_write_the_archive() {
    let deployment = Deployment::deploy().await;
    let (key, version_id) = deployment.collector_writes("archive/secret", b"x").await;
    let encrypted = ok(
        "the collector encrypts under the archive key",
        deployment
            .collector
            .kms()
            .encrypt()
            .key_id(&deployment.archive_key_arn)
            .plaintext(aws_smithy_types::Blob::new(b"x".to_vec()))
            .send()
            .await,
    );
    let ciphertext = encrypted
        .ciphertext_blob()
        .expect("ciphertext")
        .as_ref()
        .to_vec();
    // The member role has no KMS permission of its own: its identity policy refuses
    // first. The member administrator has kms:* on everything: see the GAP below.
    for (principal, kms_refusal) in [
        (&deployment.member_role, KMS_ACCESS_DENIED),
        (&deployment.member_admin, KMS_NOT_FOUND_ACROSS_ACCOUNTS),
    ] {
        let s3 = principal.s3();
        let kms = principal.kms();
        let who = &principal.arn;
        assert_refused(
            &format!("{who} reads an archived object"),
            s3.get_object()
                .bucket(ARCHIVE_BUCKET)
                .key(&key)
                .send()
                .await,
            ACCESS_DENIED,
        );
        assert_refused(
            &format!("{who} reads an archived version"),
            s3.get_object()
                .bucket(ARCHIVE_BUCKET)
                .key(&key)
                .version_id(&version_id)
                .send()
                .await,
            ACCESS_DENIED,
        );
        assert_refused(
            &format!("{who} lists the archive"),
            s3.list_objects_v2().bucket(ARCHIVE_BUCKET).send().await,
            ACCESS_DENIED,
        );
        assert_refused(
            &format!("{who} lists the archive's versions"),
            s3.list_object_versions()
                .bucket(ARCHIVE_BUCKET)
                .send()
                .await,
            ACCESS_DENIED,
        );
        assert_refused(
            &format!("{who} writes into the archive"),
            put_archive_object(
                &s3,
                "archive/forged",
                b"x",
                Encryption::Kms(&deployment.archive_key_arn),
                None,
            )
            .await,
            ACCESS_DENIED,
        );
        assert_refused(
            &format!("{who} deletes an archived version"),
            s3.delete_object()
                .bucket(ARCHIVE_BUCKET)
                .key(&key)
                .version_id(&version_id)
                .send()
                .await,
            ACCESS_DENIED,
        );
        // GAP (ministack 1.5.33): KMS keys live in per-account stores and a key ARN of
        // another account is simply not found, so the key policy is never consulted
        // across accounts (AWS: AccessDeniedException, because the key policy names no
        // member principal — proven on the rendered document by the templates unit
        // tests). What the emulator enforces: a member cannot use or even see the key.
        // For the member administrator that is NotFoundException.
        assert_refused(
            &format!("{who} describes the archive key"),
            kms.describe_key()
                .key_id(&deployment.archive_key_arn)
                .send()
                .await,
            kms_refusal,
        );
        assert_refused(
            &format!("{who} generates a data key under the archive key"),
            kms.generate_data_key()
                .key_id(&deployment.archive_key_arn)
                .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
                .send()
                .await,
            kms_refusal,
        );
        assert_refused(
            &format!("{who} decrypts under the archive key"),
            kms.decrypt()
                .key_id(&deployment.archive_key_arn)
                .ciphertext_blob(aws_smithy_types::Blob::new(ciphertext.clone()))
                .send()
                .await,
            kms_refusal,
        );
    }
}

#[tokio::test]
async fn member_role_needs_the_right_external_id_and_trusts_only_the_collector() {
    let deployment = Deployment::deploy().await;
    let endpoint = &deployment.endpoint;
    let role = &deployment.member_role_arn;
    assert_refused(
        "the collector assumes the member role without an ExternalId",
        assume(endpoint, &deployment.collector, role, None).await,
        ACCESS_DENIED,
    );
    assert_refused(
        "the collector assumes the member role with a wrong ExternalId",
        assume(
            endpoint,
            &deployment.collector,
            role,
            Some("trailvault-e2e-external-id-WRONG"),
        )
        .await,
        ACCESS_DENIED,
    );
    // Principals whose own policies allow sts:AssumeRole on any role, with the right
    // ExternalId: only the collector is trusted.
    for principal in [&deployment.ci, &deployment.member_admin] {
        assert_refused(
            &format!(
                "{} assumes the member role with the right ExternalId",
                principal.arn
            ),
            assume(endpoint, principal, role, Some(EXTERNAL_ID)).await,
            ACCESS_DENIED,
        );
    }
    assert_refused(
        "the member role assumes itself again",
        assume(endpoint, &deployment.member_role, role, Some(EXTERNAL_ID)).await,
        ACCESS_DENIED,
    );
    let session = ok(
        "the collector assumes the member role with the right ExternalId",
        assume(endpoint, &deployment.collector, role, Some(EXTERNAL_ID)).await,
    );
    assert!(
        session.arn.starts_with(&format!(
            "arn:aws:sts::{MEMBER}:assumed-role/TrailvaultReader/"
        )),
        "{}",
        session.arn
    );
}

#[tokio::test]
async fn collector_reads_member_trails_only_through_the_member_role() {
    let deployment = Deployment::deploy().await;
    let direct = deployment.collector.s3();
    assert_refused(
        "the collector lists the member's trail bucket directly",
        direct.list_objects_v2().bucket(TRAIL_BUCKET).send().await,
        ACCESS_DENIED,
    );
    assert_refused(
        "the collector reads a trail file directly",
        direct
            .get_object()
            .bucket(TRAIL_BUCKET)
            .key(TRAIL_OBJECT)
            .send()
            .await,
        ACCESS_DENIED,
    );
    // Not only the collector's own policy: the member's bucket opens to no principal
    // of the audit account, even one whose identity policy allows s3:* everywhere.
    let audit_admin = deployment.audit_admin.s3();
    assert_refused(
        "an S3 administrator of the audit account lists the trail bucket",
        audit_admin
            .list_objects_v2()
            .bucket(TRAIL_BUCKET)
            .send()
            .await,
        ACCESS_DENIED,
    );
    assert_refused(
        "an S3 administrator of the audit account reads a trail file",
        audit_admin
            .get_object()
            .bucket(TRAIL_BUCKET)
            .key(TRAIL_OBJECT)
            .send()
            .await,
        ACCESS_DENIED,
    );

    let through_role = deployment.member_role.s3();
    let listed = ok(
        "the member role lists the trail bucket",
        through_role
            .list_objects_v2()
            .bucket(TRAIL_BUCKET)
            .send()
            .await,
    );
    assert_eq!(listed.contents().len(), 1);
    let versions = ok(
        "the member role lists versions",
        through_role
            .list_object_versions()
            .bucket(TRAIL_BUCKET)
            .send()
            .await,
    );
    assert_eq!(versions.versions().len(), 1);
    let object = ok(
        "the member role reads a trail file",
        through_role
            .get_object()
            .bucket(TRAIL_BUCKET)
            .key(TRAIL_OBJECT)
            .send()
            .await,
    );
    assert_eq!(
        ok("body", object.body.collect().await)
            .into_bytes()
            .as_ref(),
        b"{\"Records\":[]}"
    );

    // Read-only, even in its own account.
    assert_refused(
        "the member role writes to the trail bucket",
        through_role
            .put_object()
            .bucket(TRAIL_BUCKET)
            .key("AWSLogs/forged.json.gz")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        ACCESS_DENIED,
    );
    assert_refused(
        "the member role deletes a trail file",
        through_role
            .delete_object()
            .bucket(TRAIL_BUCKET)
            .key(TRAIL_OBJECT)
            .send()
            .await,
        ACCESS_DENIED,
    );
    // kms:Decrypt on the trail key only through S3 (kms:ViaService): a direct call is
    // refused. (ministack does not consult KMS when S3 serves an SSE-KMS object, so the
    // S3 read above does not exercise the ViaService grant itself.)
    let ciphertext = ok(
        "the member root encrypts with the trail key",
        aws_sdk_kms::Client::new(&root(&deployment.endpoint, MEMBER).await)
            .encrypt()
            .key_id(&deployment.trail_key_arn)
            .plaintext(aws_smithy_types::Blob::new(b"x".to_vec()))
            .send()
            .await,
    );
    assert_refused(
        "the member role decrypts with the trail key outside S3",
        deployment
            .member_role
            .kms()
            .decrypt()
            .key_id(&deployment.trail_key_arn)
            .ciphertext_blob(ciphertext.ciphertext_blob().expect("ciphertext").clone())
            .send()
            .await,
        KMS_ACCESS_DENIED,
    );
}

#[tokio::test]
async fn collector_can_do_nothing_more() {
    let deployment = Deployment::deploy().await;
    let collector = &deployment.collector;
    let s3 = collector.s3();
    let kms = collector.kms();

    // What it may do besides writing: inspect the archive bucket, use the key, publish.
    ok(
        "GetBucketVersioning",
        s3.get_bucket_versioning()
            .bucket(ARCHIVE_BUCKET)
            .send()
            .await,
    );
    ok(
        "GetObjectLockConfiguration",
        s3.get_object_lock_configuration()
            .bucket(ARCHIVE_BUCKET)
            .send()
            .await,
    );
    ok(
        "GetBucketEncryption",
        s3.get_bucket_encryption()
            .bucket(ARCHIVE_BUCKET)
            .send()
            .await,
    );
    ok(
        "GetBucketPolicy",
        s3.get_bucket_policy().bucket(ARCHIVE_BUCKET).send().await,
    );
    ok(
        "GetBucketLifecycleConfiguration",
        s3.get_bucket_lifecycle_configuration()
            .bucket(ARCHIVE_BUCKET)
            .send()
            .await,
    );
    ok(
        "DescribeKey",
        kms.describe_key()
            .key_id(&deployment.archive_key_arn)
            .send()
            .await,
    );
    let data_key = ok(
        "GenerateDataKey",
        kms.generate_data_key()
            .key_id(&deployment.archive_key_arn)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .send()
            .await,
    );
    ok(
        "Decrypt",
        kms.decrypt()
            .ciphertext_blob(data_key.ciphertext_blob().expect("ciphertext").clone())
            .send()
            .await,
    );
    ok(
        "publish a finding",
        aws_sdk_sns::Client::new(&collector.config)
            .publish()
            .topic_arn(&deployment.topic_arn)
            .message("{\"kind\":\"test\"}")
            .send()
            .await,
    );

    // And nothing more.
    assert_refused(
        "the collector replaces the bucket policy",
        s3.put_bucket_policy()
            .bucket(ARCHIVE_BUCKET)
            .policy("{}")
            .send()
            .await,
        ACCESS_DENIED,
    );
    assert_refused(
        "the collector deletes the bucket policy",
        s3.delete_bucket_policy()
            .bucket(ARCHIVE_BUCKET)
            .send()
            .await,
        ACCESS_DENIED,
    );
    assert_refused(
        "the collector deletes the bucket",
        s3.delete_bucket().bucket(ARCHIVE_BUCKET).send().await,
        ACCESS_DENIED,
    );
    assert_refused(
        "the collector schedules the key's deletion",
        kms.schedule_key_deletion()
            .key_id(&deployment.archive_key_arn)
            .pending_window_in_days(7)
            .send()
            .await,
        KMS_ACCESS_DENIED,
    );
    assert_refused(
        "the collector disables the key",
        kms.disable_key()
            .key_id(&deployment.archive_key_arn)
            .send()
            .await,
        KMS_ACCESS_DENIED,
    );
    assert_refused(
        "the collector rewrites the key policy",
        kms.put_key_policy()
            .key_id(&deployment.archive_key_arn)
            .policy_name("default")
            .policy("{}")
            .send()
            .await,
        KMS_ACCESS_DENIED,
    );
    assert_refused(
        "the collector uses another key",
        kms.generate_data_key()
            .key_id(&deployment.other_key_arn)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .send()
            .await,
        KMS_ACCESS_DENIED,
    );
    assert_refused(
        "the collector lists IAM users",
        aws_sdk_iam::Client::new(&collector.config)
            .list_users()
            .send()
            .await,
        ACCESS_DENIED,
    );
    let other_topic = ok(
        "create another topic",
        aws_sdk_sns::Client::new(&root(&deployment.endpoint, AUDIT).await)
            .create_topic()
            .name("other")
            .send()
            .await,
    );
    let code = refused(
        "the collector publishes to another topic",
        aws_sdk_sns::Client::new(&collector.config)
            .publish()
            .topic_arn(other_topic.topic_arn().expect("topic ARN"))
            .message("x")
            .send()
            .await,
    );
    assert_eq!(code, "AuthorizationError");
    assert_refused(
        "the collector creates a bucket",
        s3.create_bucket().bucket("collector-owned").send().await,
        ACCESS_DENIED,
    );

    // Legal holds: not in its permissions (and denied to everyone else by
    // DenyObjectWritesByAnyoneButTheCollector).
    let (held_key, held_version) = deployment
        .collector_writes("archive/held", b"held bytes")
        .await;
    assert_refused(
        "the collector puts a legal hold",
        s3.put_object_legal_hold()
            .bucket(ARCHIVE_BUCKET)
            .key(&held_key)
            .version_id(&held_version)
            .legal_hold(
                ObjectLockLegalHold::builder()
                    .status(ObjectLockLegalHoldStatus::On)
                    .build(),
            )
            .send()
            .await,
        ACCESS_DENIED,
    );
    // Downgrading a version's lock: Object Lock refuses it whatever the policy.
    assert_refused(
        "the collector turns a COMPLIANCE version to GOVERNANCE",
        s3.put_object_retention()
            .bucket(ARCHIVE_BUCKET)
            .key(&held_key)
            .version_id(&held_version)
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::Governance)
                    .retain_until_date(smithy_time(Utc::now() + Duration::days(400)))
                    .build(),
            )
            .send()
            .await,
        ACCESS_DENIED,
    );

    // Overwriting a ledger key: the collector may put there (it writes the
    // ledger), but a put only adds a version. The entry first written stays,
    // byte for byte, locked, undeletable; `rebuild-state` and an auditor
    // reading versions see both.
    let ledger_key = "archive/_trailvault/ledger/2026/01/01/20260101T000000Z-collect.json";
    let (_, first_version) = deployment
        .collector_writes(ledger_key, b"{\"entries\":[\"the real finding\"]}")
        .await;
    let (_, forged_version) = deployment
        .collector_writes(ledger_key, b"{\"entries\":[]}")
        .await;
    assert_ne!(first_version, forged_version);
    let first = ok(
        "read the first ledger version",
        s3.get_object()
            .bucket(ARCHIVE_BUCKET)
            .key(ledger_key)
            .version_id(&first_version)
            .send()
            .await,
    );
    assert_eq!(
        first.object_lock_mode().map(ObjectLockMode::as_str),
        Some("COMPLIANCE")
    );
    let first_body = first.body.collect().await.expect("body").into_bytes();
    assert_eq!(&first_body[..], b"{\"entries\":[\"the real finding\"]}");
    assert_refused(
        "the collector deletes the first ledger version",
        s3.delete_object()
            .bucket(ARCHIVE_BUCKET)
            .key(ledger_key)
            .version_id(&first_version)
            .send()
            .await,
        ACCESS_DENIED,
    );
    assert_eq!(
        deployment.collector_role_arn,
        format!("arn:aws:iam::{AUDIT}:role/trailvault-collector")
    );
}

/// The key policy's `DenyKeyDestructionExceptBreakGlass`: an administrator of the
/// audit account with `kms:*` can neither disable the archive key, schedule its
/// deletion nor rewrite its policy; the break-glass role can (and restores it).
#[tokio::test]
async fn audit_admins_cannot_disable_or_delete_the_archive_key_only_break_glass_can() {
    let deployment = Deployment::deploy().await;
    let key = deployment.archive_key_arn.clone();
    let admin = deployment.audit_admin.kms();
    assert_refused(
        "an audit admin with kms:* disables the archive key",
        admin.disable_key().key_id(&key).send().await,
        KMS_ACCESS_DENIED,
    );
    assert_refused(
        "an audit admin with kms:* schedules the archive key's deletion",
        admin
            .schedule_key_deletion()
            .key_id(&key)
            .pending_window_in_days(7)
            .send()
            .await,
        KMS_ACCESS_DENIED,
    );
    assert_refused(
        "an audit admin with kms:* rewrites the key policy",
        admin
            .put_key_policy()
            .key_id(&key)
            .policy_name("default")
            .policy(
                serde_json::json!({"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"AWS": format!("arn:aws:iam::{AUDIT}:root")},
                    "Action": "kms:*", "Resource": "*"
                }]})
                .to_string(),
            )
            .send()
            .await,
        KMS_ACCESS_DENIED,
    );
    // What the admin may still do: describe it (no lock-out of administration).
    ok(
        "an audit admin describes the key",
        admin.describe_key().key_id(&key).send().await,
    );

    // The break-glass role: created apart from the stack, with kms:* of its own.
    let iam = aws_sdk_iam::Client::new(&root(&deployment.endpoint, AUDIT).await);
    let created = ok(
        "create the break-glass role",
        iam.create_role()
            .role_name(BREAK_GLASS_ROLE)
            .assume_role_policy_document(
                serde_json::json!({"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"AWS": deployment.ci.arn},
                    "Action": "sts:AssumeRole"
                }]})
                .to_string(),
            )
            .send()
            .await,
    );
    let break_glass_arn = created.role().expect("role").arn().to_owned();
    ok(
        "give the break-glass role kms:*",
        iam.put_role_policy()
            .role_name(BREAK_GLASS_ROLE)
            .policy_name("break-glass")
            .policy_document(
                serde_json::json!({"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}
                ]})
                .to_string(),
            )
            .send()
            .await,
    );
    let break_glass = ok(
        "ci assumes the break-glass role",
        assume(&deployment.endpoint, &deployment.ci, &break_glass_arn, None).await,
    );
    let kms = break_glass.kms();
    ok(
        "the break-glass role disables the key",
        kms.disable_key().key_id(&key).send().await,
    );
    ok(
        "the break-glass role enables it again",
        kms.enable_key().key_id(&key).send().await,
    );
    let described = ok(
        "describe the key",
        admin.describe_key().key_id(&key).send().await,
    );
    assert_eq!(
        described.key_metadata().and_then(|m| m.key_state()),
        Some(&aws_sdk_kms::types::KeyState::Enabled)
    );
}

/// `DenyPutsWithAWeakerLockMode` and `DenyPutsRetainedTooBriefly` rest on
/// `s3:object-lock-mode` and `s3:object-lock-remaining-retention-days`, which S3
/// sets from a put's `x-amz-object-lock-*` headers on AWS. GAP (ministack 1.5.33):
/// the emulator sets neither key, so both statements are applied here but never
/// deny; what this test proves is the canary. On AWS both puts below are refused
/// (AccessDenied, explicit deny). When this test fails, the emulator has learned the
/// keys: turn the canaries into refusals.
#[tokio::test]
async fn weak_lock_puts_rest_on_condition_keys_the_emulator_never_sets() {
    let deployment = Deployment::deploy().await;
    let policy = deployment.bucket_policy();
    assert!(templates::statement(&policy, "DenyPutsWithAWeakerLockMode").is_some());
    assert!(templates::statement(&policy, "DenyPutsRetainedTooBriefly").is_some());
    let s3 = deployment.collector.s3();
    let body = b"weakly locked";
    let weak_put = |key: &'static str, mode: ObjectLockMode, days: i64| {
        s3.put_object()
            .bucket(ARCHIVE_BUCKET)
            .key(key)
            .body(ByteStream::from_static(body))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(sha256_base64(body))
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&deployment.archive_key_arn)
            .object_lock_mode(mode)
            .object_lock_retain_until_date(smithy_time(Utc::now() + Duration::days(days)))
            .send()
    };
    ok(
        "GAP: the emulator accepts a GOVERNANCE put (AWS: DenyPutsWithAWeakerLockMode)",
        weak_put(
            "archive/governance",
            ObjectLockMode::Governance,
            RETENTION_DAYS,
        )
        .await,
    );
    ok(
        "GAP: the emulator accepts a 1-day COMPLIANCE put (AWS: DenyPutsRetainedTooBriefly)",
        weak_put("archive/one-day", ObjectLockMode::Compliance, 1).await,
    );
    // What holds on the emulator too: a GOVERNANCE version cannot be deleted, even
    // bypassing governance (DenyObjectDeletion), and `collect` checks every copy's
    // mode and retain-until with a HEAD before it counts (archive_copy_invalid).
    assert_refused(
        "the collector deletes the GOVERNANCE version bypassing governance",
        s3.delete_object()
            .bucket(ARCHIVE_BUCKET)
            .key("archive/governance")
            .bypass_governance_retention(true)
            .send()
            .await,
        ACCESS_DENIED,
    );
}

/// Canaries for the two places where the templates meet emulator limits (see the
/// Metadata of ArchiveBucketPolicy and the report of issue 5).
#[tokio::test]
async fn emulator_gaps_around_principal_and_organization_keys() {
    let deployment = Deployment::deploy().await;

    // 1. ministack reports an assumed role's session ARN as aws:PrincipalArn (AWS: the
    // role ARN). With only the aws:PrincipalArn condition, the collector's own puts
    // are refused there; the template's second key, aws:userid = RoleId:*, is what
    // lets the collector through on the emulator (and also identifies it on AWS).
    let mut policy = templates::without_statements(
        &deployment.bucket_policy(),
        &EMULATOR_UNENFORCEABLE_ARCHIVE_SIDS,
    )
    .expect("drop");
    for statement in policy["Statement"].as_array_mut().expect("statements") {
        if statement["Sid"] == "DenyObjectWritesByAnyoneButTheCollector" {
            statement["Condition"]
                .as_object_mut()
                .expect("condition")
                .remove("StringNotLike")
                .expect("the aws:userid condition");
        }
    }
    deployment.put_bucket_policy_document(&policy).await;
    assert_eq!(
        refused(
            "GAP: the collector's put under an aws:PrincipalArn-only condition",
            put_archive_object(
                &deployment.collector.s3(),
                "archive/principal-arn",
                b"x",
                Encryption::Kms(&deployment.archive_key_arn),
                None,
            )
            .await,
        ),
        ACCESS_DENIED,
        "ministack now resolves aws:PrincipalArn to the role ARN for a role session"
    );

    // 2. ministack never resolves aws:ResourceOrgID, so the collector policy rendered
    // with an OrganizationId refuses every AssumeRole, in or out of the organization.
    // Deployment::deploy renders without one; this records what the emulator does.
    let in_org = deployment
        .audit_render
        .clone()
        .parameter("OrganizationId", "o-abcdefghij");
    let document = in_org
        .render(
            &deployment.audit_template,
            deployment
                .audit_template
                .policy_document("CollectorPermissions")
                .expect("policy"),
        )
        .expect("render");
    ok(
        "put the organization-bound collector policy",
        aws_sdk_iam::Client::new(&root(&deployment.endpoint, AUDIT).await)
            .put_role_policy()
            .role_name("trailvault-collector")
            .policy_name(COLLECTOR_POLICY_NAME)
            .policy_document(document.to_string())
            .send()
            .await,
    );
    assert_eq!(
        refused(
            "GAP: the collector assumes a member role under an aws:ResourceOrgID condition",
            assume(
                &deployment.endpoint,
                &deployment.collector,
                &deployment.member_role_arn,
                Some(EXTERNAL_ID)
            )
            .await,
        ),
        ACCESS_DENIED,
        "ministack now resolves aws:ResourceOrgID: prove the organization bound for real"
    );
}
