//! The shipped CloudFormation templates of `infra/cloudformation/`, deployed with
//! CreateStack on the emulator (ministack 1.5.33 emulates CloudFormation), checked
//! property by property after `CREATE_COMPLETE`, and patched where the emulator
//! dropped or mis-applied a property — with the value rendered from the template by
//! [`crate::templates`], never a hand-written copy.
//!
//! Two things the emulator's CreateStack refuses outright, so the body it is given
//! differs from the shipped file ([`emulator_body`]):
//!
//! - `AWS::IAM::RolePolicy` is an unrecognized resource type: each one is sent as the
//!   equivalent `AWS::IAM::Policy` (same `PolicyName` and `PolicyDocument`,
//!   `Roles: [<RoleName>]`), which puts the same inline policy on the same role.
//! - `AWS::EC2::SecurityGroupEgress` and `AWS::EC2::SecurityGroupIngress` are
//!   unrecognized: the runtime stack is deployed without them (no test runs a task).
//!
//! A canary test (`tests/e2e/stacks.rs`) asserts both refusals and the list of
//! [`Gap`]s found after CreateStack, so it fails the day the emulator is fixed.
//! `docs/testbed.md` lists the gaps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _};
use aws_config::SdkConfig;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus,
    DefaultRetention, ExpirationStatus, LifecycleRule, LifecycleRuleFilter,
    NoncurrentVersionExpiration, ObjectLockConfiguration, ObjectLockEnabled,
    ObjectLockRetentionMode, ObjectLockRule, OwnershipControls, OwnershipControlsRule,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use serde_json::{json, Map, Value};

use crate::harness;
use crate::templates::{self, Render, Template, AUDIT_ACCOUNT, MEMBER_ACCOUNT};

/// Stack name of the audit account's stack.
pub const AUDIT_STACK_NAME: &str = "trailvault-audit";
/// Stack name of the member template in every member (and the management) account.
pub const MEMBER_STACK_NAME: &str = "trailvault-member";
/// Stack name of the collector runtime in the audit account.
pub const RUNTIME_STACK_NAME: &str = "trailvault-runtime";
/// Stack name of the test network (VPC, two subnets) the runtime stack needs.
pub const NETWORK_STACK_NAME: &str = "trailvault-test-network";

/// Resource types ministack 1.5.33's CreateStack refuses as "Unrecognized resource
/// types" (see the module docs for what [`emulator_body`] does with each).
pub const EMULATOR_UNSUPPORTED_TYPES: [&str; 3] = [
    "AWS::EC2::SecurityGroupEgress",
    "AWS::EC2::SecurityGroupIngress",
    "AWS::IAM::RolePolicy",
];

/// How long a stack may take to reach a final status (the emulator takes ~1 s).
const STACK_TIMEOUT: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Root secret of the emulator's per-account root credentials (access key = account id).
const ROOT_SECRET: &str = "sim-root-secret";

/// The emulator's root credentials of `account_id`.
pub fn root_config(endpoint: &str, account_id: &str) -> SdkConfig {
    harness::sdk_config(endpoint, account_id, ROOT_SECRET, None)
}

/// The types of `template`'s resources that the emulator refuses, sorted, unique.
pub fn unsupported_types(template: &Template) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    for logical_id in template.resource_ids() {
        let kind = template.resource_type(logical_id)?;
        if EMULATOR_UNSUPPORTED_TYPES.contains(&kind) && !found.iter().any(|k| k == kind) {
            found.push(kind.to_owned());
        }
    }
    found.sort();
    Ok(found)
}

/// The body CreateStack gets on the emulator: `template` with each
/// `AWS::IAM::RolePolicy` as the equivalent `AWS::IAM::Policy` and the security group
/// rules left out. Returns the body and the logical ids left out.
///
/// # Errors
/// A resource of another unsupported type, or a left-out resource that something
/// else still references (the stack would not be the template's any more).
pub fn emulator_body(template: &Template) -> anyhow::Result<(Value, Vec<String>)> {
    let mut body = template.body().clone();
    let resources = body
        .get_mut("Resources")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow!("template {} has no Resources", template.name()))?;
    let mut left_out = Vec::new();
    for (logical_id, resource) in resources.iter_mut() {
        let kind = resource
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match kind.as_str() {
            "AWS::IAM::RolePolicy" => {
                let properties = resource
                    .get("Properties")
                    .and_then(Value::as_object)
                    .ok_or_else(|| anyhow!("{logical_id} has no Properties"))?;
                let mut policy = Map::new();
                for name in properties.keys() {
                    ensure!(
                        ["RoleName", "PolicyName", "PolicyDocument"].contains(&name.as_str()),
                        "{logical_id}: RolePolicy property {name} has no AWS::IAM::Policy equivalent here"
                    );
                }
                for name in ["PolicyName", "PolicyDocument"] {
                    let value = properties
                        .get(name)
                        .ok_or_else(|| anyhow!("{logical_id} has no {name}"))?;
                    policy.insert(name.to_owned(), value.clone());
                }
                let role = properties
                    .get("RoleName")
                    .ok_or_else(|| anyhow!("{logical_id} has no RoleName"))?;
                policy.insert("Roles".to_owned(), json!([role]));
                resource["Type"] = json!("AWS::IAM::Policy");
                resource["Properties"] = Value::Object(policy);
            }
            "AWS::EC2::SecurityGroupEgress" | "AWS::EC2::SecurityGroupIngress" => {
                left_out.push(logical_id.clone());
            }
            other => ensure!(
                !EMULATOR_UNSUPPORTED_TYPES.contains(&other),
                "{logical_id}: no emulator rewrite for {other}"
            ),
        }
    }
    for logical_id in &left_out {
        resources.remove(logical_id);
    }
    for logical_id in &left_out {
        let text = body.to_string();
        ensure!(
            !text.contains(&format!("\"{logical_id}\""))
                && !text.contains(&format!("${{{logical_id}")),
            "{logical_id} is left out for the emulator but still referenced in {}",
            template.name()
        );
    }
    Ok((body, left_out))
}

/// A created stack: its outputs and the physical id of each resource.
#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    pub id: String,
    pub outputs: BTreeMap<String, String>,
    /// Logical id → physical id.
    pub resources: BTreeMap<String, String>,
}

impl Stack {
    /// An output's value.
    pub fn output(&self, key: &str) -> anyhow::Result<&str> {
        self.outputs
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("stack {} has no output {key}", self.name))
    }

    /// A resource's physical id.
    pub fn physical_id(&self, logical_id: &str) -> anyhow::Result<&str> {
        self.resources
            .get(logical_id)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("stack {} has no resource {logical_id}", self.name))
    }
}

fn cf_error<E, R>(what: &str, error: aws_sdk_cloudformation::error::SdkError<E, R>) -> anyhow::Error
where
    E: std::error::Error + aws_sdk_cloudformation::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(service_error) = error.as_service_error() {
        return anyhow!(
            "{what}: {}: {}",
            service_error.code().unwrap_or("unknown error"),
            service_error.message().unwrap_or("(no message)")
        );
    }
    anyhow!(
        "{what}: {}",
        aws_sdk_cloudformation::error::DisplayErrorContext(&error)
    )
}

/// CreateStack (with the IAM capabilities), then waits for `CREATE_COMPLETE`.
///
/// # Errors
/// CreateStack refused (the message names why, e.g. unrecognized resource types), a
/// final status other than `CREATE_COMPLETE` (with the failed resources' reasons), or
/// no final status within two minutes.
pub async fn create_stack(
    config: &SdkConfig,
    name: &str,
    body: &Value,
    parameters: &[(&str, String)],
) -> anyhow::Result<Stack> {
    let cf = aws_sdk_cloudformation::Client::new(config);
    let created = cf
        .create_stack()
        .stack_name(name)
        .template_body(body.to_string())
        .set_parameters(Some(
            parameters
                .iter()
                .map(|(key, value)| {
                    Parameter::builder()
                        .parameter_key(*key)
                        .parameter_value(value)
                        .build()
                })
                .collect(),
        ))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .map_err(|error| cf_error(&format!("CreateStack {name}"), error))?;
    let id = created.stack_id().unwrap_or(name).to_owned();
    let started = Instant::now();
    let stack = loop {
        let described = cf
            .describe_stacks()
            .stack_name(&id)
            .send()
            .await
            .map_err(|error| cf_error(&format!("DescribeStacks {name}"), error))?;
        let stack = described
            .stacks()
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("DescribeStacks {name} returned no stack"))?;
        let status = stack
            .stack_status()
            .cloned()
            .ok_or_else(|| anyhow!("stack {name} has no status"))?;
        match status {
            StackStatus::CreateComplete => break stack,
            StackStatus::CreateInProgress => {
                ensure!(
                    started.elapsed() < STACK_TIMEOUT,
                    "stack {name} still CREATE_IN_PROGRESS after {STACK_TIMEOUT:?}"
                );
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            other => {
                let reasons = failure_reasons(&cf, &id).await;
                bail!(
                    "stack {name} ended {}: {} [{}]",
                    other.as_str(),
                    stack.stack_status_reason().unwrap_or("no reason given"),
                    reasons.join("; ")
                );
            }
        }
    };
    let outputs = stack
        .outputs()
        .iter()
        .filter_map(|output| {
            Some((
                output.output_key()?.to_owned(),
                output.output_value()?.to_owned(),
            ))
        })
        .collect();
    let described = cf
        .describe_stack_resources()
        .stack_name(&id)
        .send()
        .await
        .map_err(|error| cf_error(&format!("DescribeStackResources {name}"), error))?;
    let resources = described
        .stack_resources()
        .iter()
        .filter_map(|resource| {
            Some((
                resource.logical_resource_id()?.to_owned(),
                resource.physical_resource_id()?.to_owned(),
            ))
        })
        .collect();
    Ok(Stack {
        name: name.to_owned(),
        id,
        outputs,
        resources,
    })
}

async fn failure_reasons(cf: &aws_sdk_cloudformation::Client, stack_id: &str) -> Vec<String> {
    match cf.describe_stack_events().stack_name(stack_id).send().await {
        Ok(events) => events
            .stack_events()
            .iter()
            .filter(|event| {
                event
                    .resource_status()
                    .is_some_and(|status| status.as_str().ends_with("FAILED"))
            })
            .map(|event| {
                format!(
                    "{} {}: {}",
                    event.logical_resource_id().unwrap_or("?"),
                    event.resource_status().map(|s| s.as_str()).unwrap_or("?"),
                    event.resource_status_reason().unwrap_or("")
                )
            })
            .collect(),
        Err(error) => vec![format!("DescribeStackEvents failed: {error}")],
    }
}

/// A property of a created resource that differs from what the template renders
/// to: dropped (`observed` is null) or mis-applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    /// Logical id of the resource.
    pub resource: String,
    /// The template property, e.g. `ObjectLockConfiguration` or
    /// `Policies.read-cloudtrail-files`.
    pub property: String,
    /// The template's value, rendered (in the shape the check compares).
    pub expected: Value,
    /// What the emulator's API answers for it (null: nothing).
    pub observed: Value,
}

impl Gap {
    /// `<resource>.<property>`.
    pub fn label(&self) -> String {
        format!("{}.{}", self.resource, self.property)
    }
}

fn compare(gaps: &mut Vec<Gap>, resource: &str, property: &str, expected: Value, observed: Value) {
    if expected != observed {
        gaps.push(Gap {
            resource: resource.to_owned(),
            property: property.to_owned(),
            expected,
            observed,
        });
    }
}

/// A policy document as IAM/S3/KMS return it: JSON, or URL-encoded JSON (IAM).
fn parse_policy(text: &str) -> anyhow::Result<Value> {
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    let decoded = percent_decode(text)?;
    serde_json::from_str(&decoded).with_context(|| format!("policy is not JSON: {text}"))
}

fn percent_decode(text: &str) -> anyhow::Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = text
                    .get(index + 1..index + 3)
                    .ok_or_else(|| anyhow!("truncated percent escape in {text}"))?;
                out.push(
                    u8::from_str_radix(hex, 16).with_context(|| format!("bad escape %{hex}"))?,
                );
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).context("percent-decoded policy is not UTF-8")
}

/// A rendered scalar (CloudFormation passes numbers as strings) as a number.
fn number(value: &Value) -> anyhow::Result<i64> {
    match value {
        Value::Number(number) => number
            .as_i64()
            .ok_or_else(|| anyhow!("{number} is not an integer")),
        Value::String(text) => text
            .parse()
            .with_context(|| format!("{text:?} is not an integer")),
        other => bail!("{other} is not a number"),
    }
}

fn boolean(value: &Value) -> anyhow::Result<bool> {
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::String(text) if text == "true" => Ok(true),
        Value::String(text) if text == "false" => Ok(false),
        other => bail!("{other} is not a boolean"),
    }
}

fn text(value: &Value, what: &str) -> anyhow::Result<String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{what} is not a string: {value}"))
}

/// What the audit stack was deployed with.
#[derive(Debug, Clone)]
pub struct AuditParameters {
    /// `ArchiveBucketName`.
    pub archive_bucket: String,
    /// `RetentionDays` (`MinimumPutRetentionDays` is one less, at least 0).
    pub retention_days: i32,
    /// `AdditionalCollectorPrincipalArn`: who may assume the collector role besides
    /// ECS tasks (the tests' stand-in for the runtime).
    pub additional_collector_principal_arn: String,
}

impl AuditParameters {
    /// The CreateStack parameters, also the rendering's: one list for both.
    /// `OrganizationId` is explicitly empty (ministack never resolves
    /// `aws:ResourceOrgID`, see `sim::policies`).
    pub fn stack_parameters(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ArchiveBucketName", self.archive_bucket.clone()),
            ("RetentionDays", self.retention_days.to_string()),
            (
                "MinimumPutRetentionDays",
                (self.retention_days - 1).max(0).to_string(),
            ),
            ("OrganizationId", String::new()),
            (
                "AdditionalCollectorPrincipalArn",
                self.additional_collector_principal_arn.clone(),
            ),
        ]
    }
}

/// The audit stack, after CreateStack, the checks and the patches.
#[derive(Debug, Clone)]
pub struct AuditDeployment {
    pub stack: Stack,
    pub parameters: AuditParameters,
    pub archive_bucket: String,
    pub kms_key_id: String,
    pub kms_key_arn: String,
    pub collector_role_name: String,
    pub collector_role_arn: String,
    /// `CollectorRole.RoleId` (`AROA…`), the bucket policy's `aws:userid` prefix.
    pub collector_role_id: String,
    pub auditor_role_name: String,
    pub auditor_role_arn: String,
    pub auditor_role_id: String,
    pub findings_topic_arn: String,
    /// What the checks found right after `CREATE_COMPLETE`, before patching.
    pub gaps: Vec<Gap>,
    /// Bucket policy statements left out for the plain-HTTP emulator
    /// ([`templates::EMULATOR_UNENFORCEABLE_ARCHIVE_SIDS`]).
    pub dropped_policy_sids: Vec<String>,
}

impl AuditDeployment {
    /// The rendering of the audit template for this deployment: the same parameters
    /// CreateStack got, and the physical ids and attributes the stack created.
    pub fn render(&self) -> Render {
        let account = crate::sim::AUDIT_ACCOUNT_ID;
        let mut render = Render::new(account, harness::TEST_REGION).stack_name(&self.stack.name);
        for (name, value) in self.parameters.stack_parameters() {
            render = render.parameter(name, &value);
        }
        render
            .resource("ArchiveBucket", &self.archive_bucket)
            .attribute(
                "ArchiveBucket",
                "Arn",
                &format!("arn:aws:s3:::{}", self.archive_bucket),
            )
            .resource("ArchiveKey", &self.kms_key_id)
            .attribute("ArchiveKey", "Arn", &self.kms_key_arn)
            .resource("CollectorRole", &self.collector_role_name)
            .attribute("CollectorRole", "Arn", &self.collector_role_arn)
            .attribute("CollectorRole", "RoleId", &self.collector_role_id)
            .resource("AuditorRole", &self.auditor_role_name)
            .attribute("AuditorRole", "Arn", &self.auditor_role_arn)
            .attribute("AuditorRole", "RoleId", &self.auditor_role_id)
            .resource("FindingsTopic", &self.findings_topic_arn)
            // The intake queues under the template's default IntakeQueueName (the
            // tests leave it): only their ARNs reach the policies checked here.
            .attribute(
                "IntakeQueue",
                "Arn",
                &format!(
                    "arn:aws:sqs:{}:{account}:trailvault-intake",
                    harness::TEST_REGION
                ),
            )
            .attribute(
                "IntakeDeadLetterQueue",
                "Arn",
                &format!(
                    "arn:aws:sqs:{}:{account}:trailvault-intake-dlq",
                    harness::TEST_REGION
                ),
            )
    }
}

/// Deploys `audit-account.json` in the audit account, checks every property the
/// tests rely on, patches the gaps with the template's rendered values, checks again
/// (nothing may remain), and finally leaves out of the bucket policy what the
/// plain-HTTP emulator cannot evaluate.
pub async fn deploy_audit(
    endpoint: &str,
    parameters: AuditParameters,
) -> anyhow::Result<AuditDeployment> {
    let config = root_config(endpoint, crate::sim::AUDIT_ACCOUNT_ID);
    let template = Template::load(AUDIT_ACCOUNT)?;
    let (body, left_out) = emulator_body(&template)?;
    ensure!(
        left_out.is_empty(),
        "the audit template lost {left_out:?} for the emulator"
    );
    let stack = create_stack(
        &config,
        AUDIT_STACK_NAME,
        &body,
        &parameters.stack_parameters(),
    )
    .await?;
    let iam = aws_sdk_iam::Client::new(&config);
    let role = |name: String| {
        let iam = iam.clone();
        async move {
            let role = iam
                .get_role()
                .role_name(&name)
                .send()
                .await
                .map_err(|error| {
                    anyhow!(
                        "GetRole {name}: {}",
                        aws_sdk_iam::error::DisplayErrorContext(&error)
                    )
                })?;
            let role = role
                .role()
                .ok_or_else(|| anyhow!("GetRole {name}: no role"))?;
            anyhow::Ok((name, role.arn().to_owned(), role.role_id().to_owned()))
        }
    };
    let (collector_role_name, collector_role_arn, collector_role_id) =
        role(stack.physical_id("CollectorRole")?.to_owned()).await?;
    let (auditor_role_name, auditor_role_arn, auditor_role_id) =
        role(stack.physical_id("AuditorRole")?.to_owned()).await?;
    ensure!(
        stack.output("CollectorRoleArn")? == collector_role_arn,
        "output CollectorRoleArn is not the role's ARN"
    );
    let kms_key_id = stack.physical_id("ArchiveKey")?.to_owned();
    let kms_key_arn = stack.output("ArchiveKeyArn")?.to_owned();
    ensure!(
        kms_key_arn.ends_with(&format!("/{kms_key_id}")),
        "output ArchiveKeyArn {kms_key_arn} is not key {kms_key_id}"
    );
    let mut deployment = AuditDeployment {
        archive_bucket: stack.output("ArchiveBucketName")?.to_owned(),
        findings_topic_arn: stack.output("FindingsTopicArn")?.to_owned(),
        stack,
        parameters,
        kms_key_id,
        kms_key_arn,
        collector_role_name,
        collector_role_arn,
        collector_role_id,
        auditor_role_name,
        auditor_role_arn,
        auditor_role_id,
        gaps: Vec::new(),
        dropped_policy_sids: Vec::new(),
    };
    let expected = AuditExpectations::render(&template, &deployment.render())?;
    deployment.gaps = check_audit(&config, &deployment, &expected).await?;
    for gap in &deployment.gaps {
        patch_audit(&config, &deployment, &expected, gap).await?;
    }
    let remaining = check_audit(&config, &deployment, &expected).await?;
    ensure!(
        remaining.is_empty(),
        "the audit stack still differs from its template after patching: {remaining:#?}"
    );
    // Last: what no plain-HTTP emulator can evaluate (see `templates`).
    let sids = templates::EMULATOR_UNENFORCEABLE_ARCHIVE_SIDS;
    let applied = templates::without_statements(&expected.bucket_policy, &sids)?;
    harness::s3_client(&config)
        .put_bucket_policy()
        .bucket(&deployment.archive_bucket)
        .policy(applied.to_string())
        .send()
        .await
        .map_err(|error| {
            crate::sim::sdk_error("put the emulator's archive bucket policy", error)
        })?;
    deployment.dropped_policy_sids = sids.iter().map(|sid| (*sid).to_owned()).collect();
    Ok(deployment)
}

/// The audit template's properties, rendered for one deployment.
struct AuditExpectations {
    object_lock: Value,
    versioning: Value,
    encryption: Value,
    lifecycle: Value,
    public_access_block: Value,
    ownership: Value,
    bucket_policy: Value,
    key_policy: Value,
    key_rotation: Value,
    trust: BTreeMap<&'static str, Value>,
    /// Logical id of the RolePolicy → (role logical id, policy name, document).
    role_policies: Vec<(String, &'static str, String, Value)>,
    topic_kms_key: Value,
}

impl AuditExpectations {
    fn render(template: &Template, render: &Render) -> anyhow::Result<AuditExpectations> {
        let property = |name: &str| -> anyhow::Result<Value> {
            render.render(template, template.property("ArchiveBucket", name)?)
        };
        let lock = property("ObjectLockConfiguration")?;
        let retention = &lock["Rule"]["DefaultRetention"];
        let object_lock = json!({
            "ObjectLockEnabled": text(&lock["ObjectLockEnabled"], "ObjectLockEnabled")?,
            "Mode": text(&retention["Mode"], "DefaultRetention.Mode")?,
            "Days": number(&retention["Days"])?,
        });
        let versioning = json!(text(
            &property("VersioningConfiguration")?["Status"],
            "VersioningConfiguration.Status"
        )?);
        let encryption = property("BucketEncryption")?["ServerSideEncryptionConfiguration"]
            .as_array()
            .ok_or_else(|| anyhow!("BucketEncryption has no rule list"))?
            .iter()
            .map(|rule| {
                let default = &rule["ServerSideEncryptionByDefault"];
                Ok(json!({
                    "SSEAlgorithm": text(&default["SSEAlgorithm"], "SSEAlgorithm")?,
                    "KMSMasterKeyID": default.get("KMSMasterKeyID").cloned().unwrap_or(Value::Null),
                    "BucketKeyEnabled": boolean(rule.get("BucketKeyEnabled").unwrap_or(&json!(false)))?,
                }))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let lifecycle = property("LifecycleConfiguration")?["Rules"]
            .as_array()
            .ok_or_else(|| anyhow!("LifecycleConfiguration has no Rules"))?
            .iter()
            .map(|rule| {
                let noncurrent = rule
                    .pointer("/NoncurrentVersionExpiration/NoncurrentDays")
                    .map(number)
                    .transpose()?;
                let abort = rule
                    .pointer("/AbortIncompleteMultipartUpload/DaysAfterInitiation")
                    .map(number)
                    .transpose()?;
                for key in rule.as_object().into_iter().flat_map(|rule| rule.keys()) {
                    ensure!(
                        [
                            "Id",
                            "Status",
                            "NoncurrentVersionExpiration",
                            "AbortIncompleteMultipartUpload"
                        ]
                        .contains(&key.as_str()),
                        "lifecycle rule property {key} is not checked here: extend stacks.rs"
                    );
                }
                Ok(json!({
                    "Id": text(&rule["Id"], "lifecycle rule Id")?,
                    "Status": text(&rule["Status"], "lifecycle rule Status")?,
                    "NoncurrentDays": noncurrent,
                    "AbortDays": abort,
                }))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let block = property("PublicAccessBlockConfiguration")?;
        let public_access_block = json!([
            boolean(&block["BlockPublicAcls"])?,
            boolean(&block["BlockPublicPolicy"])?,
            boolean(&block["IgnorePublicAcls"])?,
            boolean(&block["RestrictPublicBuckets"])?,
        ]);
        let ownership = property("OwnershipControls")?["Rules"]
            .as_array()
            .ok_or_else(|| anyhow!("OwnershipControls has no Rules"))?
            .iter()
            .map(|rule| text(&rule["ObjectOwnership"], "ObjectOwnership").map(Value::String))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut trust = BTreeMap::new();
        for role in ["CollectorRole", "AuditorRole"] {
            trust.insert(role, render.render(template, template.trust_policy(role)?)?);
        }
        let mut role_policies = Vec::new();
        for (logical_id, role) in [
            ("CollectorPermissions", "CollectorRole"),
            ("AuditorPermissions", "AuditorRole"),
        ] {
            ensure!(
                template.resource_type(logical_id)? == "AWS::IAM::RolePolicy",
                "{logical_id} is no longer an AWS::IAM::RolePolicy: extend stacks.rs"
            );
            let name = text(
                &render.render(template, template.property(logical_id, "PolicyName")?)?,
                "PolicyName",
            )?;
            let document = render.render(template, template.policy_document(logical_id)?)?;
            role_policies.push((logical_id.to_owned(), role, name, document));
        }
        Ok(AuditExpectations {
            object_lock,
            versioning,
            encryption: Value::Array(encryption),
            lifecycle: Value::Array(lifecycle),
            public_access_block,
            ownership: Value::Array(ownership),
            bucket_policy: render
                .render(template, template.policy_document("ArchiveBucketPolicy")?)?,
            key_policy: render.render(template, template.policy_document("ArchiveKey")?)?,
            key_rotation: json!(boolean(&render.render(
                template,
                template.property("ArchiveKey", "EnableKeyRotation")?
            )?)?),
            trust,
            role_policies,
            topic_kms_key: render.render(
                template,
                template.property("FindingsTopic", "KmsMasterKeyId")?,
            )?,
        })
    }
}

/// Every checked property of the audit stack that differs from `expected`.
async fn check_audit(
    config: &SdkConfig,
    deployment: &AuditDeployment,
    expected: &AuditExpectations,
) -> anyhow::Result<Vec<Gap>> {
    let s3 = harness::s3_client(config);
    let bucket = deployment.archive_bucket.as_str();
    let mut gaps = Vec::new();

    let lock = match s3.get_object_lock_configuration().bucket(bucket).send().await {
        Ok(answer) => answer
            .object_lock_configuration()
            .map(|config| {
                let retention = config.rule().and_then(|rule| rule.default_retention());
                json!({
                    "ObjectLockEnabled": config.object_lock_enabled().map(|e| e.as_str().to_owned()),
                    "Mode": retention.and_then(|r| r.mode()).map(|m| m.as_str().to_owned()),
                    "Days": retention.and_then(|r| r.days()),
                })
            })
            .unwrap_or(Value::Null),
        Err(error) if is_code(&error, "ObjectLockConfigurationNotFoundError") => Value::Null,
        Err(error) => return Err(crate::sim::sdk_error("GetObjectLockConfiguration", error)),
    };
    compare(
        &mut gaps,
        "ArchiveBucket",
        "ObjectLockConfiguration",
        expected.object_lock.clone(),
        lock,
    );

    let versioning = s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .map_err(|error| crate::sim::sdk_error("GetBucketVersioning", error))?;
    compare(
        &mut gaps,
        "ArchiveBucket",
        "VersioningConfiguration",
        expected.versioning.clone(),
        versioning
            .status()
            .map(|status| json!(status.as_str()))
            .unwrap_or(Value::Null),
    );

    let encryption = match s3.get_bucket_encryption().bucket(bucket).send().await {
        Ok(answer) => Value::Array(
            answer
                .server_side_encryption_configuration()
                .map(|config| config.rules())
                .unwrap_or_default()
                .iter()
                .map(|rule| {
                    let default = rule.apply_server_side_encryption_by_default();
                    json!({
                        "SSEAlgorithm": default.map(|d| d.sse_algorithm().as_str().to_owned()),
                        "KMSMasterKeyID": default.and_then(|d| d.kms_master_key_id()),
                        "BucketKeyEnabled": rule.bucket_key_enabled().unwrap_or(false),
                    })
                })
                .collect(),
        ),
        Err(error) if is_code(&error, "ServerSideEncryptionConfigurationNotFoundError") => {
            Value::Null
        }
        Err(error) => return Err(crate::sim::sdk_error("GetBucketEncryption", error)),
    };
    compare(
        &mut gaps,
        "ArchiveBucket",
        "BucketEncryption",
        expected.encryption.clone(),
        encryption,
    );

    let lifecycle = match s3.get_bucket_lifecycle_configuration().bucket(bucket).send().await {
        Ok(answer) => Value::Array(
            answer
                .rules()
                .iter()
                .map(|rule| {
                    json!({
                        "Id": rule.id(),
                        "Status": rule.status().as_str(),
                        "NoncurrentDays": rule.noncurrent_version_expiration().and_then(|e| e.noncurrent_days()),
                        "AbortDays": rule.abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()),
                    })
                })
                .collect(),
        ),
        Err(error) if is_code(&error, "NoSuchLifecycleConfiguration") => Value::Null,
        Err(error) => return Err(crate::sim::sdk_error("GetBucketLifecycleConfiguration", error)),
    };
    compare(
        &mut gaps,
        "ArchiveBucket",
        "LifecycleConfiguration",
        expected.lifecycle.clone(),
        lifecycle,
    );

    let block = match s3.get_public_access_block().bucket(bucket).send().await {
        Ok(answer) => answer
            .public_access_block_configuration()
            .map(|block| {
                json!([
                    block.block_public_acls().unwrap_or(false),
                    block.block_public_policy().unwrap_or(false),
                    block.ignore_public_acls().unwrap_or(false),
                    block.restrict_public_buckets().unwrap_or(false),
                ])
            })
            .unwrap_or(Value::Null),
        Err(error) if is_code(&error, "NoSuchPublicAccessBlockConfiguration") => Value::Null,
        Err(error) => return Err(crate::sim::sdk_error("GetPublicAccessBlock", error)),
    };
    compare(
        &mut gaps,
        "ArchiveBucket",
        "PublicAccessBlockConfiguration",
        expected.public_access_block.clone(),
        block,
    );

    let ownership = match s3
        .get_bucket_ownership_controls()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(answer) => Value::Array(
            answer
                .ownership_controls()
                .map(|controls| controls.rules())
                .unwrap_or_default()
                .iter()
                .map(|rule| json!(rule.object_ownership().as_str()))
                .collect(),
        ),
        Err(error) if is_code(&error, "OwnershipControlsNotFoundError") => Value::Null,
        Err(error) => return Err(crate::sim::sdk_error("GetBucketOwnershipControls", error)),
    };
    compare(
        &mut gaps,
        "ArchiveBucket",
        "OwnershipControls",
        expected.ownership.clone(),
        ownership,
    );

    let policy = match s3.get_bucket_policy().bucket(bucket).send().await {
        Ok(answer) => parse_policy(answer.policy().unwrap_or("null"))?,
        Err(error) if is_code(&error, "NoSuchBucketPolicy") => Value::Null,
        Err(error) => return Err(crate::sim::sdk_error("GetBucketPolicy", error)),
    };
    compare(
        &mut gaps,
        "ArchiveBucketPolicy",
        "PolicyDocument",
        expected.bucket_policy.clone(),
        policy,
    );

    let kms = aws_sdk_kms::Client::new(config);
    let key_policy = kms
        .get_key_policy()
        .key_id(&deployment.kms_key_id)
        .policy_name("default")
        .send()
        .await
        .map_err(|error| crate::sim::sdk_error("GetKeyPolicy", error))?;
    compare(
        &mut gaps,
        "ArchiveKey",
        "KeyPolicy",
        expected.key_policy.clone(),
        parse_policy(key_policy.policy().unwrap_or("null"))?,
    );
    let rotation = kms
        .get_key_rotation_status()
        .key_id(&deployment.kms_key_id)
        .send()
        .await
        .map_err(|error| crate::sim::sdk_error("GetKeyRotationStatus", error))?;
    compare(
        &mut gaps,
        "ArchiveKey",
        "EnableKeyRotation",
        expected.key_rotation.clone(),
        json!(rotation.key_rotation_enabled()),
    );

    let iam = aws_sdk_iam::Client::new(config);
    for (role, expected_trust) in &expected.trust {
        let name = deployment.stack.physical_id(role)?;
        compare(
            &mut gaps,
            role,
            "AssumeRolePolicyDocument",
            expected_trust.clone(),
            role_trust_policy(&iam, name).await?,
        );
    }
    for (logical_id, role, policy_name, document) in &expected.role_policies {
        let role_name = deployment.stack.physical_id(role)?;
        compare(
            &mut gaps,
            logical_id,
            "PolicyDocument",
            document.clone(),
            role_inline_policy(&iam, role_name, policy_name).await?,
        );
    }

    let topic = aws_sdk_sns::Client::new(config)
        .get_topic_attributes()
        .topic_arn(&deployment.findings_topic_arn)
        .send()
        .await
        .map_err(|error| crate::sim::sdk_error("GetTopicAttributes", error))?;
    compare(
        &mut gaps,
        "FindingsTopic",
        "KmsMasterKeyId",
        expected.topic_kms_key.clone(),
        topic
            .attributes()
            .and_then(|attributes| attributes.get("KmsMasterKeyId"))
            .map(|value| json!(value))
            .unwrap_or(Value::Null),
    );
    Ok(gaps)
}

fn is_code<E, R>(error: &aws_sdk_s3::error::SdkError<E, R>, code: &str) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    error
        .as_service_error()
        .and_then(|service_error| service_error.code())
        == Some(code)
}

async fn role_trust_policy(iam: &aws_sdk_iam::Client, role_name: &str) -> anyhow::Result<Value> {
    let role = iam
        .get_role()
        .role_name(role_name)
        .send()
        .await
        .map_err(|error| crate::sim::sdk_error(&format!("GetRole {role_name}"), error))?;
    match role
        .role()
        .and_then(|role| role.assume_role_policy_document())
    {
        Some(document) => parse_policy(document),
        None => Ok(Value::Null),
    }
}

async fn role_inline_policy(
    iam: &aws_sdk_iam::Client,
    role_name: &str,
    policy_name: &str,
) -> anyhow::Result<Value> {
    match iam
        .get_role_policy()
        .role_name(role_name)
        .policy_name(policy_name)
        .send()
        .await
    {
        Ok(policy) => parse_policy(policy.policy_document()),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception()) =>
        {
            Ok(Value::Null)
        }
        Err(error) => Err(crate::sim::sdk_error(
            &format!("GetRolePolicy {role_name}/{policy_name}"),
            error,
        )),
    }
}

async fn put_role_policy(
    iam: &aws_sdk_iam::Client,
    role_name: &str,
    policy_name: &str,
    document: &Value,
) -> anyhow::Result<()> {
    iam.put_role_policy()
        .role_name(role_name)
        .policy_name(policy_name)
        .policy_document(document.to_string())
        .send()
        .await
        .map_err(|error| {
            crate::sim::sdk_error(&format!("PutRolePolicy {role_name}/{policy_name}"), error)
        })?;
    Ok(())
}

fn int(value: &Value, what: &str) -> anyhow::Result<i32> {
    i32::try_from(number(value)?).with_context(|| format!("{what} out of range"))
}

/// Applies the template's value of `gap`'s property to the audit stack's resource.
async fn patch_audit(
    config: &SdkConfig,
    deployment: &AuditDeployment,
    expected: &AuditExpectations,
    gap: &Gap,
) -> anyhow::Result<()> {
    let s3 = harness::s3_client(config);
    let bucket = deployment.archive_bucket.as_str();
    let what = format!("patch {}", gap.label());
    match (gap.resource.as_str(), gap.property.as_str()) {
        ("ArchiveBucket", "ObjectLockConfiguration") => {
            let lock = &expected.object_lock;
            ensure!(
                lock["ObjectLockEnabled"] == "Enabled",
                "{what}: lock not Enabled"
            );
            s3.put_object_lock_configuration()
                .bucket(bucket)
                .object_lock_configuration(
                    ObjectLockConfiguration::builder()
                        .object_lock_enabled(ObjectLockEnabled::Enabled)
                        .rule(
                            ObjectLockRule::builder()
                                .default_retention(
                                    DefaultRetention::builder()
                                        .mode(ObjectLockRetentionMode::from(
                                            text(&lock["Mode"], "Mode")?.as_str(),
                                        ))
                                        .days(int(&lock["Days"], "Days")?)
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .map_err(|error| crate::sim::sdk_error(&what, error))?;
        }
        ("ArchiveBucket", "VersioningConfiguration") => {
            s3.put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::from(
                            text(&expected.versioning, "Status")?.as_str(),
                        ))
                        .build(),
                )
                .send()
                .await
                .map_err(|error| crate::sim::sdk_error(&what, error))?;
        }
        ("ArchiveBucket", "BucketEncryption") => {
            let mut configuration = ServerSideEncryptionConfiguration::builder();
            for rule in expected.encryption.as_array().into_iter().flatten() {
                let mut default = ServerSideEncryptionByDefault::builder().sse_algorithm(
                    ServerSideEncryption::from(
                        text(&rule["SSEAlgorithm"], "SSEAlgorithm")?.as_str(),
                    ),
                );
                if let Some(key) = rule["KMSMasterKeyID"].as_str() {
                    default = default.kms_master_key_id(key);
                }
                configuration = configuration.rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(default.build()?)
                        .bucket_key_enabled(boolean(&rule["BucketKeyEnabled"])?)
                        .build(),
                );
            }
            s3.put_bucket_encryption()
                .bucket(bucket)
                .server_side_encryption_configuration(configuration.build()?)
                .send()
                .await
                .map_err(|error| crate::sim::sdk_error(&what, error))?;
        }
        ("ArchiveBucket", "LifecycleConfiguration") => {
            let mut configuration = BucketLifecycleConfiguration::builder();
            for rule in expected.lifecycle.as_array().into_iter().flatten() {
                let mut built = LifecycleRule::builder()
                    .id(text(&rule["Id"], "Id")?)
                    .status(ExpirationStatus::from(
                        text(&rule["Status"], "Status")?.as_str(),
                    ))
                    .filter(LifecycleRuleFilter::builder().prefix("").build());
                if !rule["NoncurrentDays"].is_null() {
                    built = built.noncurrent_version_expiration(
                        NoncurrentVersionExpiration::builder()
                            .noncurrent_days(int(&rule["NoncurrentDays"], "NoncurrentDays")?)
                            .build(),
                    );
                }
                if !rule["AbortDays"].is_null() {
                    built = built.abort_incomplete_multipart_upload(
                        AbortIncompleteMultipartUpload::builder()
                            .days_after_initiation(int(&rule["AbortDays"], "DaysAfterInitiation")?)
                            .build(),
                    );
                }
                configuration = configuration.rules(built.build()?);
            }
            s3.put_bucket_lifecycle_configuration()
                .bucket(bucket)
                .lifecycle_configuration(configuration.build()?)
                .send()
                .await
                .map_err(|error| crate::sim::sdk_error(&what, error))?;
        }
        ("ArchiveBucket", "PublicAccessBlockConfiguration") => {
            let flags: Vec<bool> = expected
                .public_access_block
                .as_array()
                .into_iter()
                .flatten()
                .map(boolean)
                .collect::<anyhow::Result<_>>()?;
            ensure!(flags.len() == 4, "{what}: four flags expected");
            s3.put_public_access_block()
                .bucket(bucket)
                .public_access_block_configuration(
                    PublicAccessBlockConfiguration::builder()
                        .block_public_acls(flags[0])
                        .block_public_policy(flags[1])
                        .ignore_public_acls(flags[2])
                        .restrict_public_buckets(flags[3])
                        .build(),
                )
                .send()
                .await
                .map_err(|error| crate::sim::sdk_error(&what, error))?;
        }
        ("ArchiveBucket", "OwnershipControls") => {
            let mut controls = OwnershipControls::builder();
            for rule in expected.ownership.as_array().into_iter().flatten() {
                controls = controls.rules(
                    OwnershipControlsRule::builder()
                        .object_ownership(text(rule, "ObjectOwnership")?.as_str().into())
                        .build()?,
                );
            }
            s3.put_bucket_ownership_controls()
                .bucket(bucket)
                .ownership_controls(controls.build()?)
                .send()
                .await
                .map_err(|error| crate::sim::sdk_error(&what, error))?;
        }
        ("ArchiveBucketPolicy", "PolicyDocument") => {
            s3.put_bucket_policy()
                .bucket(bucket)
                .policy(expected.bucket_policy.to_string())
                .send()
                .await
                .map_err(|error| crate::sim::sdk_error(&what, error))?;
        }
        ("ArchiveKey", "KeyPolicy") => {
            aws_sdk_kms::Client::new(config)
                .put_key_policy()
                .key_id(&deployment.kms_key_id)
                .policy_name("default")
                .policy(expected.key_policy.to_string())
                .bypass_policy_lockout_safety_check(true)
                .send()
                .await
                .map_err(|error| crate::sim::sdk_error(&what, error))?;
        }
        ("ArchiveKey", "EnableKeyRotation") => {
            ensure!(
                expected.key_rotation == json!(true),
                "{what}: rotation off in the template"
            );
            aws_sdk_kms::Client::new(config)
                .enable_key_rotation()
                .key_id(&deployment.kms_key_id)
                .send()
                .await
                .map_err(|error| crate::sim::sdk_error(&what, error))?;
        }
        (role, "AssumeRolePolicyDocument") => {
            let document = expected
                .trust
                .get(role)
                .ok_or_else(|| anyhow!("{what}: no such role in the template"))?;
            aws_sdk_iam::Client::new(config)
                .update_assume_role_policy()
                .role_name(deployment.stack.physical_id(role)?)
                .policy_document(document.to_string())
                .send()
                .await
                .map_err(|error| crate::sim::sdk_error(&what, error))?;
        }
        (logical_id, "PolicyDocument")
            if expected
                .role_policies
                .iter()
                .any(|(id, ..)| id == logical_id) =>
        {
            let (_, role, name, document) = expected
                .role_policies
                .iter()
                .find(|(id, ..)| id == logical_id)
                .ok_or_else(|| anyhow!("{what}: unknown role policy"))?;
            put_role_policy(
                &aws_sdk_iam::Client::new(config),
                deployment.stack.physical_id(role)?,
                name,
                document,
            )
            .await?;
        }
        ("FindingsTopic", "KmsMasterKeyId") => {
            aws_sdk_sns::Client::new(config)
                .set_topic_attributes()
                .topic_arn(&deployment.findings_topic_arn)
                .attribute_name("KmsMasterKeyId")
                .attribute_value(text(&expected.topic_kms_key, "KmsMasterKeyId")?)
                .send()
                .await
                .map_err(|error| crate::sim::sdk_error(&what, error))?;
        }
        _ => bail!("{what}: no patch for this property"),
    }
    Ok(())
}

/// The member stack in one account, after CreateStack, the checks and the patches.
#[derive(Debug, Clone)]
pub struct MemberDeployment {
    pub account_id: String,
    pub stack: Stack,
    /// Output `ReaderRoleArn`.
    pub role_arn: String,
    pub gaps: Vec<Gap>,
}

/// Deploys `member-account.json` in `account_id` (its root credentials), trusting
/// `collector_role_arn` with `external_id`, reading `trail_bucket_arns`; checks the
/// reader role's trust policy, inline policies and session length against the
/// rendered template and patches what differs.
pub async fn deploy_member(
    endpoint: &str,
    account_id: &str,
    collector_role_arn: &str,
    external_id: &str,
    trail_bucket_arns: &[String],
) -> anyhow::Result<MemberDeployment> {
    let config = root_config(endpoint, account_id);
    let template = Template::load(MEMBER_ACCOUNT)?;
    let (body, left_out) = emulator_body(&template)?;
    ensure!(left_out.is_empty(), "the member template lost {left_out:?}");
    let parameters = vec![
        ("CollectorRoleArn", collector_role_arn.to_owned()),
        ("ExternalId", external_id.to_owned()),
        ("TrailBucketArns", trail_bucket_arns.join(",")),
    ];
    let stack = create_stack(&config, MEMBER_STACK_NAME, &body, &parameters).await?;
    let role_arn = stack.output("ReaderRoleArn")?.to_owned();
    let role_name = stack.physical_id("ReaderRole")?.to_owned();
    let arns: Vec<&str> = trail_bucket_arns.iter().map(String::as_str).collect();
    let render = Render::new(account_id, harness::TEST_REGION)
        .stack_name(MEMBER_STACK_NAME)
        .parameter("CollectorRoleArn", collector_role_arn)
        .parameter("ExternalId", external_id)
        .list_parameter("TrailBucketArns", &arns)
        .resource("ReaderRole", &role_name)
        .attribute("ReaderRole", "Arn", &role_arn);
    let trust = render.render(&template, template.trust_policy("ReaderRole")?)?;
    let inline: Vec<(String, Value)> = template
        .inline_policies("ReaderRole")?
        .into_iter()
        .map(|(name, document)| Ok((name.to_owned(), render.render(&template, document)?)))
        .collect::<anyhow::Result<_>>()?;
    let session = number(&render.render(
        &template,
        template.property("ReaderRole", "MaxSessionDuration")?,
    )?)?;
    let iam = aws_sdk_iam::Client::new(&config);
    let expected = MemberExpectations {
        role_name: role_name.clone(),
        trust,
        inline,
        session,
    };
    let gaps = member_gaps(&iam, &expected).await?;
    for gap in &gaps {
        let what = format!("patch {} in {account_id}", gap.label());
        match gap.property.as_str() {
            "AssumeRolePolicyDocument" => {
                iam.update_assume_role_policy()
                    .role_name(&role_name)
                    .policy_document(expected.trust.to_string())
                    .send()
                    .await
                    .map_err(|error| crate::sim::sdk_error(&what, error))?;
            }
            "MaxSessionDuration" => {
                iam.update_role()
                    .role_name(&role_name)
                    .max_session_duration(i32::try_from(expected.session)?)
                    .send()
                    .await
                    .map_err(|error| crate::sim::sdk_error(&what, error))?;
            }
            property => {
                let name = property
                    .strip_prefix("Policies.")
                    .ok_or_else(|| anyhow!("{what}: no patch for this property"))?;
                let (_, document) = expected
                    .inline
                    .iter()
                    .find(|(policy, _)| policy == name)
                    .ok_or_else(|| anyhow!("{what}: unknown inline policy"))?;
                put_role_policy(&iam, &role_name, name, document).await?;
            }
        }
    }
    let remaining = member_gaps(&iam, &expected).await?;
    ensure!(
        remaining.is_empty(),
        "the member stack in {account_id} still differs from its template: {remaining:#?}"
    );
    Ok(MemberDeployment {
        account_id: account_id.to_owned(),
        stack,
        role_arn,
        gaps,
    })
}

/// The member template's reader role, rendered for one deployment.
struct MemberExpectations {
    role_name: String,
    trust: Value,
    inline: Vec<(String, Value)>,
    session: i64,
}

async fn member_gaps(
    iam: &aws_sdk_iam::Client,
    expected: &MemberExpectations,
) -> anyhow::Result<Vec<Gap>> {
    let role_name = expected.role_name.as_str();
    let mut gaps = Vec::new();
    compare(
        &mut gaps,
        "ReaderRole",
        "AssumeRolePolicyDocument",
        expected.trust.clone(),
        role_trust_policy(iam, role_name).await?,
    );
    for (name, document) in &expected.inline {
        compare(
            &mut gaps,
            "ReaderRole",
            &format!("Policies.{name}"),
            document.clone(),
            role_inline_policy(iam, role_name, name).await?,
        );
    }
    let role = iam
        .get_role()
        .role_name(role_name)
        .send()
        .await
        .map_err(|error| crate::sim::sdk_error("GetRole", error))?;
    compare(
        &mut gaps,
        "ReaderRole",
        "MaxSessionDuration",
        json!(expected.session),
        json!(role.role().and_then(|role| role.max_session_duration())),
    );
    Ok(gaps)
}

/// The collector runtime stack (and the test network it runs in).
#[derive(Debug, Clone)]
pub struct RuntimeDeployment {
    pub network: Stack,
    pub stack: Stack,
    /// Resources left out for the emulator ([`emulator_body`]).
    pub left_out: Vec<String>,
    /// The CreateStack parameters, to evaluate the template's conditions with.
    pub parameters: Vec<(&'static str, String)>,
}

/// A VPC and two subnets in two Availability Zones (the runtime template's EFS mount
/// targets need distinct zones), created by CreateStack too.
fn network_template() -> Value {
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "trailvault tests: the network the collector-runtime stack is deployed into",
        "Resources": {
            "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.42.0.0/16"}},
            "SubnetA": {"Type": "AWS::EC2::Subnet", "Properties": {
                "VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.42.1.0/24",
                "AvailabilityZone": {"Fn::Sub": "${AWS::Region}a"}}},
            "SubnetB": {"Type": "AWS::EC2::Subnet", "Properties": {
                "VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.42.2.0/24",
                "AvailabilityZone": {"Fn::Sub": "${AWS::Region}b"}}}
        },
        "Outputs": {
            "VpcId": {"Value": {"Ref": "Vpc"}},
            "SubnetA": {"Value": {"Ref": "SubnetA"}},
            "SubnetB": {"Value": {"Ref": "SubnetB"}}
        }
    })
}

/// Deploys `collector-runtime.json` in the audit account for `collector_role_arn`,
/// alerting `run_alerts_topic_arn`, with `container_image`.
pub async fn deploy_runtime(
    endpoint: &str,
    collector_role_arn: &str,
    run_alerts_topic_arn: &str,
    container_image: &str,
) -> anyhow::Result<RuntimeDeployment> {
    let config = root_config(endpoint, crate::sim::AUDIT_ACCOUNT_ID);
    let network = create_stack(&config, NETWORK_STACK_NAME, &network_template(), &[]).await?;
    let template = Template::load(templates::COLLECTOR_RUNTIME)?;
    let (body, left_out) = emulator_body(&template)?;
    let parameters = vec![
        ("CollectorRoleArn", collector_role_arn.to_owned()),
        ("ContainerImage", container_image.to_owned()),
        ("RunAlertsTopicArn", run_alerts_topic_arn.to_owned()),
        ("VpcId", network.output("VpcId")?.to_owned()),
        ("SubnetA", network.output("SubnetA")?.to_owned()),
        ("SubnetB", network.output("SubnetB")?.to_owned()),
    ];
    let stack = create_stack(&config, RUNTIME_STACK_NAME, &body, &parameters).await?;
    Ok(RuntimeDeployment {
        network,
        stack,
        left_out,
        parameters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::{ALL_TEMPLATES, COLLECTOR_RUNTIME};

    #[test]
    fn role_policies_become_iam_policies_on_the_same_role() {
        let template = Template::load(AUDIT_ACCOUNT).unwrap();
        let (body, left_out) = emulator_body(&template).unwrap();
        assert!(left_out.is_empty());
        let original = template.resource("CollectorPermissions").unwrap();
        let rewritten = &body["Resources"]["CollectorPermissions"];
        assert_eq!(rewritten["Type"], "AWS::IAM::Policy");
        assert_eq!(
            rewritten["Properties"]["PolicyDocument"],
            original["Properties"]["PolicyDocument"]
        );
        assert_eq!(
            rewritten["Properties"]["PolicyName"],
            original["Properties"]["PolicyName"]
        );
        assert_eq!(
            rewritten["Properties"]["Roles"],
            json!([original["Properties"]["RoleName"]])
        );
        // Nothing else changed.
        let mut restored = body.clone();
        for id in ["CollectorPermissions", "AuditorPermissions"] {
            restored["Resources"][id] = template.resource(id).unwrap().clone();
        }
        assert_eq!(&restored, template.body());
    }

    #[test]
    fn the_runtime_loses_only_its_security_group_rules() {
        let template = Template::load(COLLECTOR_RUNTIME).unwrap();
        let (body, mut left_out) = emulator_body(&template).unwrap();
        left_out.sort();
        let mut expected: Vec<String> = template
            .resource_ids()
            .into_iter()
            .filter(|id| {
                matches!(
                    template.resource_type(id).unwrap(),
                    "AWS::EC2::SecurityGroupEgress" | "AWS::EC2::SecurityGroupIngress"
                )
            })
            .map(str::to_owned)
            .collect();
        expected.sort();
        assert!(!expected.is_empty());
        assert_eq!(left_out, expected);
        let remaining = body["Resources"].as_object().unwrap();
        assert_eq!(
            remaining.len() + left_out.len(),
            template.resource_ids().len()
        );
    }

    #[test]
    fn every_shipped_template_has_a_deployable_body() {
        for name in ALL_TEMPLATES {
            let template = Template::load(name).unwrap();
            let (body, _) = emulator_body(&template).unwrap();
            let deployable = Template::from_value(name, body).unwrap();
            assert!(
                unsupported_types(&deployable).unwrap().is_empty(),
                "{name} still holds a type the emulator refuses"
            );
        }
    }

    #[test]
    fn a_referenced_resource_is_never_left_out() {
        let body = json!({"Resources": {
            "Rule": {"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {}},
            "Other": {"Type": "AWS::SNS::Topic", "DependsOn": "Rule", "Properties": {}}
        }});
        let template = Template::from_value("t", body).unwrap();
        let error = emulator_body(&template).unwrap_err().to_string();
        assert!(error.contains("still referenced"), "{error}");
    }

    #[test]
    fn an_unknown_role_policy_property_is_refused() {
        let body = json!({"Resources": {"P": {"Type": "AWS::IAM::RolePolicy", "Properties": {
            "RoleName": "r", "PolicyName": "p", "PolicyDocument": {}, "Extra": 1}}}});
        let template = Template::from_value("t", body).unwrap();
        assert!(emulator_body(&template).is_err());
    }

    #[test]
    fn iam_policies_parse_plain_or_url_encoded() {
        let plain = r#"{"Version":"2012-10-17","Statement":[]}"#;
        assert_eq!(parse_policy(plain).unwrap()["Version"], "2012-10-17");
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(parse_policy(encoded).unwrap(), parse_policy(plain).unwrap());
        assert!(parse_policy("%7").is_err());
        assert!(parse_policy("not json").is_err());
    }

    #[test]
    fn rendered_numbers_and_flags_accept_cloudformation_strings() {
        assert_eq!(number(&json!("365")).unwrap(), 365);
        assert_eq!(number(&json!(7)).unwrap(), 7);
        assert!(number(&json!("x")).is_err());
        assert!(boolean(&json!("true")).unwrap());
        assert!(!boolean(&json!(false)).unwrap());
        assert!(boolean(&json!("yes")).is_err());
    }
}
