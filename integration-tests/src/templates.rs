//! The CloudFormation templates of `infra/cloudformation/`, read as data: the policy
//! documents they deploy (bucket policy, key policy, role trust and permission
//! policies), rendered with concrete values so that tests and the trail simulator
//! apply exactly what a deployment would. One source of truth for every policy.
//!
//! Rendering resolves the intrinsic functions these templates use — `Ref`
//! (parameters, pseudo parameters incl. `AWS::URLSuffix`, resources), `Fn::Sub` (both forms), `Fn::GetAtt`,
//! `Fn::Join`, `Fn::Split`, `Fn::Select`, `Fn::If` with the template's `Conditions`
//! (`Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`) and `AWS::NoValue` —
//! and fails on anything else or anything it cannot resolve, so a document is never
//! applied half-rendered.
//!
//! ```no_run
//! use trailvault_integration_tests::templates::{Render, Template, AUDIT_ACCOUNT};
//! # fn main() -> anyhow::Result<()> {
//! let audit = Template::load(AUDIT_ACCOUNT)?;
//! let render = Render::new("111111111111", "us-east-1")
//!     .parameter("ArchiveBucketName", "trailvault-archive")
//!     .attribute("CollectorRole", "Arn", "arn:aws:iam::111111111111:role/trailvault-collector")
//!     .attribute("AuditorRole", "Arn", "arn:aws:iam::111111111111:role/trailvault-auditor");
//! let key_policy = render.render(&audit, audit.policy_document("ArchiveKey")?)?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{anyhow, bail, ensure, Context as _};
use serde_json::{Map, Value};

/// The audit account's stack: archive bucket and policy, KMS key, collector and
/// auditor roles, findings topic.
pub const AUDIT_ACCOUNT: &str = "audit-account.json";
/// The member accounts' StackSet template: the read-only reader role.
pub const MEMBER_ACCOUNT: &str = "member-account.json";
/// The collector's runtime: ECS Fargate service, EFS store, logs.
pub const COLLECTOR_RUNTIME: &str = "collector-runtime.json";
/// Every template in `infra/cloudformation/`.
pub const ALL_TEMPLATES: [&str; 3] = [AUDIT_ACCOUNT, MEMBER_ACCOUNT, COLLECTOR_RUNTIME];

/// Sid of the archive bucket policy statement that denies plain-HTTP requests. It
/// holds on AWS; on the plain-HTTP emulator it denies every request, so tests drop it
/// from the applied copy with [`without_statements`] (and prove separately that it
/// denies HTTP).
pub const DENY_INSECURE_TRANSPORT_SID: &str = "DenyInsecureTransport";

/// Sid of the archive bucket policy statement that denies puts naming another KMS key
/// (`s3:x-amz-server-side-encryption-aws-kms-key-id`). It holds on AWS; ministack
/// 1.5.33 never sets that condition key, so there the statement denies every put,
/// the right key's included. Emulator tests drop it from the applied copy; that it
/// refuses exactly the other keys rests on AWS's semantics of that key (a canary
/// test fails once the emulator sets it).
pub const DENY_OTHER_KMS_KEYS_SID: &str = "DenyPutsWithAnotherKmsKey";

/// The archive bucket policy statements an applied copy on the emulator leaves out,
/// for the reasons given at [`DENY_INSECURE_TRANSPORT_SID`] and
/// [`DENY_OTHER_KMS_KEYS_SID`]. Everything else applies as rendered.
pub const EMULATOR_UNENFORCEABLE_ARCHIVE_SIDS: [&str; 2] =
    [DENY_INSECURE_TRANSPORT_SID, DENY_OTHER_KMS_KEYS_SID];

/// Directory of the templates: `<workspace>/infra/cloudformation`.
pub fn template_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("infra")
        .join("cloudformation")
}

/// A parsed CloudFormation JSON template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    body: Value,
}

impl Template {
    /// Reads `infra/cloudformation/<file_name>`.
    pub fn load(file_name: &str) -> anyhow::Result<Template> {
        let path = template_dir().join(file_name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("read template {}", path.display()))?;
        let body: Value = serde_json::from_str(&text)
            .with_context(|| format!("parse template {} as JSON", path.display()))?;
        Template::from_value(file_name, body)
    }

    /// A template from its JSON body (`name` only labels errors).
    pub fn from_value(name: &str, body: Value) -> anyhow::Result<Template> {
        ensure!(
            body.get("Resources").and_then(Value::as_object).is_some(),
            "template {name} has no Resources object"
        );
        Ok(Template {
            name: name.to_owned(),
            body,
        })
    }

    /// The file name (or label) of this template.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole template.
    pub fn body(&self) -> &Value {
        &self.body
    }

    fn section(&self, section: &str) -> Option<&Map<String, Value>> {
        self.body.get(section).and_then(Value::as_object)
    }

    /// Logical ids of all resources.
    pub fn resource_ids(&self) -> Vec<&str> {
        self.section("Resources")
            .map(|resources| resources.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// A resource (`Type`, `Properties`, ...) by logical id.
    pub fn resource(&self, logical_id: &str) -> anyhow::Result<&Value> {
        self.section("Resources")
            .and_then(|resources| resources.get(logical_id))
            .ok_or_else(|| anyhow!("template {} has no resource {logical_id}", self.name))
    }

    /// The `Type` of a resource.
    pub fn resource_type(&self, logical_id: &str) -> anyhow::Result<&str> {
        self.resource(logical_id)?
            .get("Type")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("resource {logical_id} of {} has no Type", self.name))
    }

    /// A resource's `Properties.<name>`.
    pub fn property(&self, logical_id: &str, name: &str) -> anyhow::Result<&Value> {
        self.resource(logical_id)?
            .get("Properties")
            .and_then(|properties| properties.get(name))
            .ok_or_else(|| {
                anyhow!(
                    "resource {logical_id} of {} has no property {name}",
                    self.name
                )
            })
    }

    /// The policy document a resource deploys: a bucket policy's `PolicyDocument`, a
    /// key's `KeyPolicy`, an IAM `RolePolicy`/`Policy`/`ManagedPolicy`'s
    /// `PolicyDocument`, a topic or queue policy's `PolicyDocument`, an EFS file
    /// system's `FileSystemPolicy`. A role has several: use [`Template::trust_policy`]
    /// or [`Template::inline_policy`].
    pub fn policy_document(&self, logical_id: &str) -> anyhow::Result<&Value> {
        let property = match self.resource_type(logical_id)? {
            "AWS::S3::BucketPolicy"
            | "AWS::IAM::RolePolicy"
            | "AWS::IAM::Policy"
            | "AWS::IAM::ManagedPolicy"
            | "AWS::SNS::TopicPolicy"
            | "AWS::SQS::QueuePolicy" => "PolicyDocument",
            "AWS::KMS::Key" => "KeyPolicy",
            "AWS::EFS::FileSystem" => "FileSystemPolicy",
            "AWS::IAM::Role" => bail!(
                "resource {logical_id} of {} is a role: ask for its trust_policy or an inline_policy",
                self.name
            ),
            other => bail!(
                "resource {logical_id} of {} is a {other}, which carries no policy document",
                self.name
            ),
        };
        self.property(logical_id, property)
    }

    /// A role's `AssumeRolePolicyDocument`.
    pub fn trust_policy(&self, role_id: &str) -> anyhow::Result<&Value> {
        self.expect_role(role_id)?;
        self.property(role_id, "AssumeRolePolicyDocument")
    }

    /// The `PolicyDocument` of a role's inline policy `Policies[*]` named `policy_name`.
    pub fn inline_policy(&self, role_id: &str, policy_name: &str) -> anyhow::Result<&Value> {
        self.expect_role(role_id)?;
        self.inline_policies(role_id)?
            .into_iter()
            .find(|(name, _)| *name == policy_name)
            .map(|(_, document)| document)
            .ok_or_else(|| {
                anyhow!(
                    "role {role_id} of {} has no inline policy {policy_name}",
                    self.name
                )
            })
    }

    /// `(PolicyName, PolicyDocument)` of each of a role's inline policies.
    pub fn inline_policies(&self, role_id: &str) -> anyhow::Result<Vec<(&str, &Value)>> {
        self.expect_role(role_id)?;
        let Ok(policies) = self.property(role_id, "Policies") else {
            return Ok(Vec::new());
        };
        let policies = policies
            .as_array()
            .ok_or_else(|| anyhow!("Policies of role {role_id} is not a list"))?;
        policies
            .iter()
            .map(|policy| {
                let name = policy
                    .get("PolicyName")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        anyhow!("an inline policy of role {role_id} has no literal PolicyName")
                    })?;
                let document = policy.get("PolicyDocument").ok_or_else(|| {
                    anyhow!("inline policy {name} of role {role_id} has no PolicyDocument")
                })?;
                Ok((name, document))
            })
            .collect()
    }

    /// Every policy document in the template, labelled `<logical id>` or
    /// `<role>.AssumeRolePolicyDocument` / `<role>.Policies.<name>`.
    pub fn all_policy_documents(&self) -> anyhow::Result<Vec<(String, &Value)>> {
        let mut documents = Vec::new();
        for logical_id in self.resource_ids() {
            match self.resource_type(logical_id)? {
                "AWS::IAM::Role" => {
                    documents.push((
                        format!("{logical_id}.AssumeRolePolicyDocument"),
                        self.trust_policy(logical_id)?,
                    ));
                    for (name, document) in self.inline_policies(logical_id)? {
                        documents.push((format!("{logical_id}.Policies.{name}"), document));
                    }
                }
                _ => {
                    if let Ok(document) = self.policy_document(logical_id) {
                        documents.push((logical_id.to_owned(), document));
                    }
                }
            }
        }
        Ok(documents)
    }

    fn expect_role(&self, role_id: &str) -> anyhow::Result<()> {
        let kind = self.resource_type(role_id)?;
        ensure!(
            kind == "AWS::IAM::Role",
            "resource {role_id} of {} is a {kind}, not an AWS::IAM::Role",
            self.name
        );
        Ok(())
    }

    fn parameter_declaration(&self, name: &str) -> Option<&Value> {
        self.section("Parameters")
            .and_then(|parameters| parameters.get(name))
    }
}

/// The values a deployment would supply: account, Region, partition, stack name,
/// parameters, and what `Ref` and `Fn::GetAtt` of resources return.
#[derive(Debug, Clone)]
pub struct Render {
    account_id: String,
    region: String,
    partition: String,
    stack_name: String,
    parameters: BTreeMap<String, Value>,
    resource_refs: BTreeMap<String, String>,
    attributes: BTreeMap<(String, String), String>,
}

/// How deep intrinsic functions and conditions may nest before rendering gives up
/// (a template is small; only a cycle of conditions gets here).
const MAX_DEPTH: usize = 64;

impl Render {
    /// A rendering for `account_id` in `region`, partition `aws`, stack `trailvault`.
    pub fn new(account_id: &str, region: &str) -> Render {
        Render {
            account_id: account_id.to_owned(),
            region: region.to_owned(),
            partition: "aws".to_owned(),
            stack_name: "trailvault".to_owned(),
            parameters: BTreeMap::new(),
            resource_refs: BTreeMap::new(),
            attributes: BTreeMap::new(),
        }
    }

    /// `AWS::Partition` (default `aws`).
    pub fn partition(mut self, partition: &str) -> Render {
        partition.clone_into(&mut self.partition);
        self
    }

    /// `AWS::StackName` (default `trailvault`).
    pub fn stack_name(mut self, stack_name: &str) -> Render {
        stack_name.clone_into(&mut self.stack_name);
        self
    }

    /// A String or Number parameter's value (a parameter without one takes its
    /// `Default`).
    pub fn parameter(mut self, name: &str, value: &str) -> Render {
        self.parameters
            .insert(name.to_owned(), Value::String(value.to_owned()));
        self
    }

    /// A CommaDelimitedList parameter's values.
    pub fn list_parameter(mut self, name: &str, values: &[&str]) -> Render {
        let values = values
            .iter()
            .map(|value| Value::String((*value).to_owned()))
            .collect();
        self.parameters
            .insert(name.to_owned(), Value::Array(values));
        self
    }

    /// What `Ref` of the resource `logical_id` returns (a bucket's name, a key's id,
    /// a role's name, a topic's ARN, ...).
    pub fn resource(mut self, logical_id: &str, ref_value: &str) -> Render {
        self.resource_refs
            .insert(logical_id.to_owned(), ref_value.to_owned());
        self
    }

    /// What `Fn::GetAtt [logical_id, attribute]` (and `${logical_id.attribute}`)
    /// returns.
    pub fn attribute(mut self, logical_id: &str, attribute: &str, value: &str) -> Render {
        self.attributes.insert(
            (logical_id.to_owned(), attribute.to_owned()),
            value.to_owned(),
        );
        self
    }

    /// `value` (any part of `template`) with every intrinsic function resolved.
    ///
    /// # Errors
    /// An unsupported or malformed intrinsic function, a parameter that the template
    /// does not declare or that has neither a value nor a default, a resource `Ref` or
    /// attribute not given, a value outside a parameter's `AllowedValues`, or a value
    /// that renders to nothing (`AWS::NoValue`).
    pub fn render(&self, template: &Template, value: &Value) -> anyhow::Result<Value> {
        self.check_parameters(template)?;
        let context = Context {
            render: self,
            template,
        };
        context
            .value(value, 0)
            .with_context(|| format!("render a document of {}", template.name))?
            .ok_or_else(|| anyhow!("the document of {} renders to nothing", template.name))
    }

    /// Whether the template's condition `name` holds with these parameters (what
    /// decides if a resource under `"Condition": name` is created).
    ///
    /// # Errors
    /// As [`Render::render`], or a condition the template does not define.
    pub fn condition_holds(&self, template: &Template, name: &str) -> anyhow::Result<bool> {
        self.check_parameters(template)?;
        Context {
            render: self,
            template,
        }
        .condition(name, 0)
    }

    /// Every given parameter must be declared, and within its `AllowedValues`.
    fn check_parameters(&self, template: &Template) -> anyhow::Result<()> {
        for (name, value) in &self.parameters {
            let declaration = template.parameter_declaration(name).ok_or_else(|| {
                anyhow!("template {} declares no parameter {name}", template.name)
            })?;
            if let Some(allowed) = declaration.get("AllowedValues").and_then(Value::as_array) {
                let allowed: Vec<String> = allowed.iter().map(scalar_text).collect();
                let given = match value {
                    Value::Array(items) => items.iter().map(scalar_text).collect(),
                    other => vec![scalar_text(other)],
                };
                for item in given {
                    ensure!(
                        allowed.contains(&item),
                        "parameter {name} = {item:?} is not one of its AllowedValues {allowed:?}"
                    );
                }
            }
        }
        Ok(())
    }
}

/// A JSON scalar as CloudFormation passes it around: a string.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

struct Context<'a> {
    render: &'a Render,
    template: &'a Template,
}

impl Context<'_> {
    /// `None` is `AWS::NoValue`: the caller drops the key or the list element.
    fn value(&self, value: &Value, depth: usize) -> anyhow::Result<Option<Value>> {
        ensure!(depth < MAX_DEPTH, "intrinsic functions nest too deep");
        match value {
            Value::Object(object) => {
                if let Some((name, argument)) = intrinsic(object)? {
                    return self.intrinsic(name, argument, depth + 1);
                }
                let mut out = Map::new();
                for (key, item) in object {
                    if let Some(rendered) = self.value(item, depth + 1)? {
                        out.insert(key.clone(), rendered);
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    if let Some(rendered) = self.value(item, depth + 1)? {
                        out.push(rendered);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            scalar => Ok(Some(scalar.clone())),
        }
    }

    /// A value that must exist (not `AWS::NoValue`).
    fn required(&self, value: &Value, depth: usize, what: &str) -> anyhow::Result<Value> {
        self.value(value, depth)?
            .ok_or_else(|| anyhow!("{what} renders to AWS::NoValue"))
    }

    fn string(&self, value: &Value, depth: usize, what: &str) -> anyhow::Result<String> {
        match self.required(value, depth, what)? {
            Value::String(text) => Ok(text),
            Value::Number(number) => Ok(number.to_string()),
            other => bail!("{what} is not a string: {other}"),
        }
    }

    fn list(&self, value: &Value, depth: usize, what: &str) -> anyhow::Result<Vec<Value>> {
        match self.required(value, depth, what)? {
            Value::Array(items) => Ok(items),
            other => bail!("{what} is not a list: {other}"),
        }
    }

    fn intrinsic(
        &self,
        name: &str,
        argument: &Value,
        depth: usize,
    ) -> anyhow::Result<Option<Value>> {
        match name {
            "Ref" => {
                let target = argument
                    .as_str()
                    .ok_or_else(|| anyhow!("Ref takes a name, not {argument}"))?;
                self.reference(target)
            }
            "Fn::Sub" => self
                .sub(argument, depth)
                .map(|text| Some(Value::String(text))),
            "Fn::GetAtt" => {
                let (logical_id, attribute) = match argument {
                    Value::String(dotted) => dotted
                        .split_once('.')
                        .map(|(id, attribute)| (id.to_owned(), attribute.to_owned()))
                        .ok_or_else(|| {
                            anyhow!("Fn::GetAtt {dotted:?} is not Resource.Attribute")
                        })?,
                    Value::Array(parts) if parts.len() == 2 => (
                        self.string(&parts[0], depth, "Fn::GetAtt resource")?,
                        self.string(&parts[1], depth, "Fn::GetAtt attribute")?,
                    ),
                    other => bail!("Fn::GetAtt takes [resource, attribute], not {other}"),
                };
                self.attribute(&logical_id, &attribute)
                    .map(|value| Some(Value::String(value)))
            }
            "Fn::Join" => {
                let [delimiter, items] = two(argument, "Fn::Join")?;
                let delimiter = delimiter
                    .as_str()
                    .ok_or_else(|| anyhow!("the Fn::Join delimiter must be a literal string"))?;
                let items = self.list(items, depth, "the Fn::Join list")?;
                let texts = items
                    .iter()
                    .map(|item| match item {
                        Value::String(text) => Ok(text.clone()),
                        Value::Number(number) => Ok(number.to_string()),
                        other => bail!("Fn::Join item is not a string: {other}"),
                    })
                    .collect::<anyhow::Result<Vec<String>>>()?;
                Ok(Some(Value::String(texts.join(delimiter))))
            }
            "Fn::Split" => {
                let [delimiter, source] = two(argument, "Fn::Split")?;
                let delimiter = delimiter
                    .as_str()
                    .ok_or_else(|| anyhow!("the Fn::Split delimiter must be a literal string"))?;
                ensure!(!delimiter.is_empty(), "the Fn::Split delimiter is empty");
                let source = self.string(source, depth, "the Fn::Split source")?;
                Ok(Some(Value::Array(
                    source
                        .split(delimiter)
                        .map(|part| Value::String(part.to_owned()))
                        .collect(),
                )))
            }
            "Fn::Select" => {
                let [index, items] = two(argument, "Fn::Select")?;
                let index: usize = self
                    .string(index, depth, "the Fn::Select index")?
                    .parse()
                    .context("the Fn::Select index is not a number")?;
                let items = self.list(items, depth, "the Fn::Select list")?;
                let item = items.get(index).ok_or_else(|| {
                    anyhow!("Fn::Select index {index} of a list of {}", items.len())
                })?;
                Ok(Some(item.clone()))
            }
            "Fn::If" => {
                let parts = argument
                    .as_array()
                    .filter(|parts| parts.len() == 3)
                    .ok_or_else(|| anyhow!("Fn::If takes [condition, if true, if false]"))?;
                let condition = parts[0]
                    .as_str()
                    .ok_or_else(|| anyhow!("the Fn::If condition must be a condition name"))?;
                let branch = if self.condition(condition, depth)? {
                    &parts[1]
                } else {
                    &parts[2]
                };
                self.value(branch, depth)
            }
            other => bail!("unsupported intrinsic function {other} (extend templates.rs)"),
        }
    }

    fn reference(&self, target: &str) -> anyhow::Result<Option<Value>> {
        let render = self.render;
        let pseudo = match target {
            "AWS::NoValue" => return Ok(None),
            "AWS::AccountId" => Some(&render.account_id),
            "AWS::Region" => Some(&render.region),
            "AWS::Partition" => Some(&render.partition),
            "AWS::StackName" => Some(&render.stack_name),
            _ => None,
        };
        if target == "AWS::URLSuffix" {
            let suffix = if render.partition == "aws-cn" {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            return Ok(Some(Value::String(suffix.to_owned())));
        }
        if let Some(value) = pseudo {
            return Ok(Some(Value::String(value.clone())));
        }
        if target.starts_with("AWS::") {
            bail!("unsupported pseudo parameter {target}");
        }
        if let Some(declaration) = self.template.parameter_declaration(target) {
            return self.parameter(target, declaration).map(Some);
        }
        if self.template.resource(target).is_ok() {
            return render
                .resource_refs
                .get(target)
                .map(|value| Some(Value::String(value.clone())))
                .ok_or_else(|| anyhow!("no value given for Ref of resource {target}"));
        }
        bail!(
            "Ref {target}: neither a parameter nor a resource of {}",
            self.template.name
        )
    }

    fn parameter(&self, name: &str, declaration: &Value) -> anyhow::Result<Value> {
        let is_list = declaration
            .get("Type")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind == "CommaDelimitedList" || kind.starts_with("List<"));
        let value = match self.render.parameters.get(name) {
            Some(value) => value.clone(),
            None => declaration
                .get("Default")
                .cloned()
                .ok_or_else(|| anyhow!("parameter {name} has no value and no default"))?,
        };
        match (is_list, value) {
            (true, Value::Array(items)) => Ok(Value::Array(items)),
            (true, Value::String(text)) => Ok(Value::Array(
                text.split(',')
                    .map(|item| Value::String(item.trim().to_owned()))
                    .collect(),
            )),
            (false, Value::Array(_)) => bail!("parameter {name} is not a list parameter"),
            (true, other) => bail!("list parameter {name} has a value of the wrong shape: {other}"),
            (false, other) => Ok(Value::String(scalar_text(&other))),
        }
    }

    fn attribute(&self, logical_id: &str, attribute: &str) -> anyhow::Result<String> {
        self.template.resource(logical_id)?;
        self.render
            .attributes
            .get(&(logical_id.to_owned(), attribute.to_owned()))
            .cloned()
            .ok_or_else(|| anyhow!("no value given for Fn::GetAtt {logical_id}.{attribute}"))
    }

    /// `Fn::Sub`: `"text"` or `["text", {variable: value}]`; `${!x}` is a literal `${x}`.
    fn sub(&self, argument: &Value, depth: usize) -> anyhow::Result<String> {
        let (text, variables) = match argument {
            Value::String(text) => (text.as_str(), BTreeMap::new()),
            Value::Array(parts) if parts.len() == 2 => {
                let text = parts[0]
                    .as_str()
                    .ok_or_else(|| anyhow!("the Fn::Sub template must be a literal string"))?;
                let map = parts[1]
                    .as_object()
                    .ok_or_else(|| anyhow!("the Fn::Sub variables must be an object"))?;
                let mut variables = BTreeMap::new();
                for (name, value) in map {
                    variables.insert(
                        name.as_str(),
                        self.string(value, depth, &format!("Fn::Sub variable {name}"))?,
                    );
                }
                (text, variables)
            }
            other => bail!("Fn::Sub takes a string or [string, variables], not {other}"),
        };
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| anyhow!("Fn::Sub {text:?}: unclosed ${{"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = variables.get(name) {
                out.push_str(value);
            } else if let Some((logical_id, attribute)) = name.split_once('.') {
                out.push_str(&self.attribute(logical_id, attribute)?);
            } else {
                match self.reference(name)? {
                    Some(Value::String(value)) => out.push_str(&value),
                    Some(other) => bail!("Fn::Sub {text:?}: ${{{name}}} is not a string: {other}"),
                    None => bail!("Fn::Sub {text:?}: ${{{name}}} is AWS::NoValue"),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn condition(&self, name: &str, depth: usize) -> anyhow::Result<bool> {
        let definition = self
            .template
            .section("Conditions")
            .and_then(|conditions| conditions.get(name))
            .ok_or_else(|| anyhow!("template {} has no condition {name}", self.template.name))?;
        self.condition_value(definition, depth + 1)
            .with_context(|| format!("evaluate condition {name}"))
    }

    fn condition_value(&self, value: &Value, depth: usize) -> anyhow::Result<bool> {
        ensure!(depth < MAX_DEPTH, "conditions nest too deep (a cycle?)");
        let object = value
            .as_object()
            .filter(|object| object.len() == 1)
            .ok_or_else(|| anyhow!("a condition must be one function, not {value}"))?;
        let (function, argument) = object.iter().next().expect("one entry");
        let operands = || {
            argument
                .as_array()
                .ok_or_else(|| anyhow!("{function} takes a list, not {argument}"))
        };
        match function.as_str() {
            "Condition" => {
                let name = argument
                    .as_str()
                    .ok_or_else(|| anyhow!("Condition takes a condition name"))?;
                self.condition(name, depth)
            }
            "Fn::Equals" => {
                let [left, right] = two(argument, "Fn::Equals")?;
                let left = self.required(left, depth, "Fn::Equals operand")?;
                let right = self.required(right, depth, "Fn::Equals operand")?;
                Ok(comparable(&left) == comparable(&right))
            }
            "Fn::Not" => {
                let operands = operands()?;
                ensure!(operands.len() == 1, "Fn::Not takes one condition");
                Ok(!self.condition_value(&operands[0], depth + 1)?)
            }
            "Fn::And" | "Fn::Or" => {
                let mut results = Vec::new();
                for operand in operands()? {
                    results.push(self.condition_value(operand, depth + 1)?);
                }
                Ok(if function == "Fn::And" {
                    results.iter().all(|result| *result)
                } else {
                    results.iter().any(|result| *result)
                })
            }
            other => bail!("unsupported condition function {other}"),
        }
    }
}

/// Numbers and strings compare as CloudFormation compares them: as text.
fn comparable(value: &Value) -> Value {
    match value {
        Value::Number(number) => Value::String(number.to_string()),
        other => other.clone(),
    }
}

fn two<'v>(argument: &'v Value, function: &str) -> anyhow::Result<[&'v Value; 2]> {
    match argument.as_array().map(Vec::as_slice) {
        Some([first, second]) => Ok([first, second]),
        _ => bail!("{function} takes two arguments, not {argument}"),
    }
}

/// `Some((function, argument))` if `object` is an intrinsic function call: one key,
/// `Ref` or `Fn::*`. An `Fn::` key among others is malformed.
fn intrinsic(object: &Map<String, Value>) -> anyhow::Result<Option<(&str, &Value)>> {
    let is_function = |key: &str| key == "Ref" || key.starts_with("Fn::");
    if object.len() == 1 {
        let (key, argument) = object.iter().next().expect("one entry");
        if is_function(key) {
            return Ok(Some((key.as_str(), argument)));
        }
        return Ok(None);
    }
    if let Some(key) = object.keys().find(|key| key.starts_with("Fn::")) {
        bail!("{key} must be the only key of its object");
    }
    Ok(None)
}

fn has_sub_placeholder(text: &str) -> bool {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return true;
        };
        if !after[..end].contains(':') {
            return true;
        }
        rest = &after[end + 1..];
    }
    false
}

/// Paths (`a.b[2].c`) of whatever still looks like an intrinsic function in a
/// rendered value; empty when fully rendered.
pub fn unresolved_intrinsics(value: &Value) -> Vec<String> {
    fn walk(value: &Value, path: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                for (key, item) in object {
                    if key == "Ref"
                        || key.starts_with("Fn::")
                        || (key == "Condition" && item.is_string())
                    {
                        out.push(format!("{path}.{key}"));
                    }
                    walk(item, &format!("{path}.{key}"), out);
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}[{index}]"), out);
                }
            }
            // `${Name}` left in a string: a forgotten Fn::Sub. IAM policy variables
            // (`${aws:username}`, `${s3:prefix}`) always contain a colon.
            Value::String(text) if has_sub_placeholder(text) => {
                out.push(format!("{path} = {text:?}"))
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, "$", &mut out);
    out
}

/// The statements of a policy document (a single statement object counts as one).
pub fn statements(document: &Value) -> Vec<&Value> {
    match document.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single @ Value::Object(_)) => vec![single],
        _ => Vec::new(),
    }
}

/// The statement with this `Sid`.
pub fn statement<'d>(document: &'d Value, sid: &str) -> Option<&'d Value> {
    statements(document)
        .into_iter()
        .find(|statement| statement.get("Sid").and_then(Value::as_str) == Some(sid))
}

/// The `Sid`s of a policy document, in order (statements without one are skipped).
pub fn statement_sids(document: &Value) -> Vec<String> {
    statements(document)
        .into_iter()
        .filter_map(|statement| statement.get("Sid").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// A copy of `document` without the statements whose `Sid` is in `sids`.
///
/// For what a test target cannot evaluate, e.g. [`DENY_INSECURE_TRANSPORT_SID`] on
/// the plain-HTTP emulator, where `aws:SecureTransport` is always false and the
/// statement would deny every request. The template keeps the statement; only the
/// applied copy loses it.
///
/// # Errors
/// If a `Sid` is not in the document: a renamed statement must not silently stay.
pub fn without_statements(document: &Value, sids: &[&str]) -> anyhow::Result<Value> {
    let present: BTreeSet<String> = statement_sids(document).into_iter().collect();
    for sid in sids {
        ensure!(
            present.contains(*sid),
            "the policy has no statement {sid} to drop (it has {present:?})"
        );
    }
    let mut out = document.clone();
    let kept: Vec<Value> = statements(document)
        .into_iter()
        .filter(|statement| {
            statement
                .get("Sid")
                .and_then(Value::as_str)
                .is_none_or(|sid| !sids.contains(&sid))
        })
        .cloned()
        .collect();
    out["Statement"] = Value::Array(kept);
    Ok(out)
}

/// A JSON string or list of strings as a list (policy elements take either).
pub fn string_or_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const AUDIT: &str = "210987654321";
    const MEMBER: &str = "123456789012";
    const REGION: &str = "eu-west-1";
    const BUCKET: &str = "trailvault-archive-test";
    const KEY_ARN: &str =
        "arn:aws:kms:eu-west-1:210987654321:key/0a1b2c3d-0000-4000-8000-000000000001";
    const COLLECTOR_ARN: &str = "arn:aws:iam::210987654321:role/trailvault-collector";
    const COLLECTOR_ROLE_ID: &str = "AROATESTCOLLECTOR0001";
    const AUDITOR_ARN: &str = "arn:aws:iam::210987654321:role/trailvault-auditor";
    const TOPIC_ARN: &str = "arn:aws:sns:eu-west-1:210987654321:trailvault-findings";
    const EXTERNAL_ID: &str = "trailvault-external-id-1";
    const TRAIL_BUCKET_ARN: &str = "arn:aws:s3:::aws-cloudtrail-logs-123456789012";
    const TRAIL_KEY_ARN: &str =
        "arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-0000-4000-8000-000000000002";

    const RUNTIME_CLUSTER_ARN: &str =
        "arn:aws:ecs:eu-west-1:210987654321:cluster/trailvault-Cluster-x";
    const RUNTIME_EXECUTION_ROLE_ARN: &str =
        "arn:aws:iam::210987654321:role/trailvault-ExecutionRole-x";

    fn audit_render() -> Render {
        Render::new(AUDIT, REGION)
            .parameter("ArchiveBucketName", BUCKET)
            .parameter("OrganizationId", "")
            .resource("ArchiveBucket", BUCKET)
            .attribute("ArchiveBucket", "Arn", &format!("arn:aws:s3:::{BUCKET}"))
            .resource("ArchiveKey", "0a1b2c3d-0000-4000-8000-000000000001")
            .attribute("ArchiveKey", "Arn", KEY_ARN)
            .resource("CollectorRole", "trailvault-collector")
            .attribute("CollectorRole", "Arn", COLLECTOR_ARN)
            .attribute("CollectorRole", "RoleId", COLLECTOR_ROLE_ID)
            .resource("AuditorRole", "trailvault-auditor")
            .attribute("AuditorRole", "Arn", AUDITOR_ARN)
            .resource("FindingsTopic", TOPIC_ARN)
            .resource("IntakeQueue", INTAKE_QUEUE_URL)
            .attribute("IntakeQueue", "Arn", INTAKE_QUEUE_ARN)
            .attribute("IntakeDeadLetterQueue", "Arn", INTAKE_DLQ_ARN)
            .list_parameter("TrailTopicArns", &[TRAIL_TOPIC_ARN])
    }

    const INTAKE_QUEUE_URL: &str =
        "https://sqs.eu-west-1.amazonaws.com/210987654321/trailvault-intake";
    const INTAKE_QUEUE_ARN: &str = "arn:aws:sqs:eu-west-1:210987654321:trailvault-intake";
    const INTAKE_DLQ_ARN: &str = "arn:aws:sqs:eu-west-1:210987654321:trailvault-intake-dlq";
    const TRAIL_TOPIC_ARN: &str = "arn:aws:sns:us-east-1:444455556666:org-trail-notifications";

    fn member_render() -> Render {
        Render::new(MEMBER, REGION)
            .parameter("CollectorRoleArn", COLLECTOR_ARN)
            .parameter("ExternalId", EXTERNAL_ID)
            .list_parameter("TrailBucketArns", &[TRAIL_BUCKET_ARN])
            .list_parameter("TrailKmsKeyArns", &[TRAIL_KEY_ARN])
    }

    fn runtime_render() -> Render {
        Render::new(AUDIT, REGION)
            .parameter("CollectorRoleArn", COLLECTOR_ARN)
            .parameter(
                "ConfigParameterKmsKeyArn",
                "arn:aws:kms:eu-west-1:210987654321:key/0a1b2c3d-0000-4000-8000-000000000003",
            )
            .attribute(
                "LogGroup",
                "Arn",
                "arn:aws:logs:eu-west-1:210987654321:log-group:/trailvault/trailvault:*",
            )
            .attribute("Cluster", "Arn", RUNTIME_CLUSTER_ARN)
            .attribute("ExecutionRole", "Arn", RUNTIME_EXECUTION_ROLE_ARN)
    }

    fn render_for(name: &str) -> Render {
        match name {
            AUDIT_ACCOUNT => audit_render(),
            MEMBER_ACCOUNT => member_render(),
            COLLECTOR_RUNTIME => runtime_render(),
            other => panic!("no test rendering for {other}"),
        }
    }

    fn load(name: &str) -> Template {
        Template::load(name).unwrap_or_else(|error| panic!("{error:#}"))
    }

    fn rendered(template: &Template, render: &Render, document: &Value) -> Value {
        render
            .render(template, document)
            .unwrap_or_else(|error| panic!("{error:#}"))
    }

    fn sid<'d>(document: &'d Value, sid: &str) -> &'d Value {
        statement(document, sid).unwrap_or_else(|| panic!("no statement {sid} in {document:#}"))
    }

    fn actions(statement: &Value) -> BTreeSet<String> {
        string_or_list(statement.get("Action"))
            .into_iter()
            .collect()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    /// Every `AWS` principal named by a policy document.
    fn aws_principals(document: &Value) -> Vec<String> {
        statements(document)
            .into_iter()
            .flat_map(|statement| match statement.get("Principal") {
                Some(Value::String(star)) => vec![star.clone()],
                Some(principal) => string_or_list(principal.get("AWS")),
                None => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn every_template_parses_and_every_policy_renders_completely() {
        for name in ALL_TEMPLATES {
            let template = load(name);
            assert!(
                !template.resource_ids().is_empty(),
                "{name} has no resources"
            );
            let documents = template.all_policy_documents().unwrap();
            assert!(!documents.is_empty(), "{name} has no policy documents");
            for (label, document) in documents {
                let output = rendered(&template, &render_for(name), document);
                let leftovers = unresolved_intrinsics(&output);
                assert!(leftovers.is_empty(), "{name} {label}: {leftovers:?}");
                assert_eq!(output["Version"], "2012-10-17", "{name} {label}");
                for statement in statements(&output) {
                    assert!(
                        matches!(statement["Effect"].as_str(), Some("Allow" | "Deny")),
                        "{name} {label}: {statement}"
                    );
                    assert!(
                        statement.get("Action").is_some(),
                        "{name} {label}: {statement}"
                    );
                    assert!(
                        statement.get("NotPrincipal").is_none()
                            && statement.get("NotAction").is_none(),
                        "{name} {label}: no Not* elements: {statement}"
                    );
                }
            }
        }
    }

    #[test]
    fn archive_bucket_is_locked_versioned_encrypted_private_with_lifecycle() {
        let template = load(AUDIT_ACCOUNT);
        let render = audit_render().parameter("RetentionDays", "400");
        let bucket = rendered(
            &template,
            &render,
            template.resource("ArchiveBucket").unwrap(),
        );
        let properties = &bucket["Properties"];
        assert_eq!(bucket["DeletionPolicy"], "Retain");
        assert_eq!(properties["ObjectLockEnabled"], true);
        let lock = &properties["ObjectLockConfiguration"];
        assert_eq!(lock["ObjectLockEnabled"], "Enabled");
        assert_eq!(lock["Rule"]["DefaultRetention"]["Mode"], "COMPLIANCE");
        assert_eq!(lock["Rule"]["DefaultRetention"]["Days"], "400");
        assert_eq!(properties["VersioningConfiguration"]["Status"], "Enabled");
        let encryption = &properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
        assert_eq!(
            encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
            "aws:kms"
        );
        assert_eq!(
            encryption["ServerSideEncryptionByDefault"]["KMSMasterKeyID"],
            KEY_ARN
        );
        assert_eq!(encryption["BucketKeyEnabled"], true);
        let public_access = properties["PublicAccessBlockConfiguration"]
            .as_object()
            .unwrap();
        assert_eq!(public_access.len(), 4);
        assert!(public_access.values().all(|value| value == true));
        let rules = properties["LifecycleConfiguration"]["Rules"]
            .as_array()
            .unwrap();
        assert!(rules
            .iter()
            .any(|rule| rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == "730"));
        assert!(rules
            .iter()
            .any(|rule| rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1));
        assert!(rules.iter().all(|rule| rule["Status"] == "Enabled"));
        assert!(rules
            .iter()
            .all(|rule| rule.get("ExpirationInDays").is_none()));
    }

    #[test]
    fn archive_bucket_policy_denies_what_the_issue_requires() {
        let template = load(AUDIT_ACCOUNT);
        let policy = rendered(
            &template,
            &audit_render(),
            template.policy_document("ArchiveBucketPolicy").unwrap(),
        );
        let objects = format!("arn:aws:s3:::{BUCKET}/*");
        let bucket = format!("arn:aws:s3:::{BUCKET}");
        for statement in statements(&policy) {
            if statement["Effect"] == "Deny" {
                assert_eq!(statement["Principal"], "*", "{statement}");
            }
        }

        let deletion = sid(&policy, "DenyObjectDeletion");
        assert_eq!(
            actions(deletion),
            set(&[
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
                "s3:BypassGovernanceRetention"
            ])
        );
        assert_eq!(deletion["Resource"], objects.as_str());
        assert!(deletion.get("Condition").is_none());

        let config = sid(&policy, "DenyLockAndBucketConfigChanges");
        assert!(actions(config).contains("s3:PutBucketObjectLockConfiguration"));
        assert!(actions(config).contains("s3:PutBucketVersioning"));
        assert!(actions(config).contains("s3:PutEncryptionConfiguration"));
        assert!(config.get("Condition").is_none());
        assert_eq!(config["Resource"], bucket.as_str());

        let no_header = sid(&policy, "DenyPutsWithoutEncryptionHeader");
        assert_eq!(actions(no_header), set(&["s3:PutObject"]));
        assert_eq!(
            no_header["Condition"],
            json!({"Null": {"s3:x-amz-server-side-encryption": "true"}})
        );
        let not_kms = sid(&policy, "DenyPutsNotSseKms");
        assert_eq!(
            not_kms["Condition"],
            json!({"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}})
        );
        let other_key = sid(&policy, "DenyPutsWithAnotherKmsKey");
        assert_eq!(
            other_key["Condition"],
            json!({"StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": KEY_ARN}})
        );

        // A put or retention change naming a weaker lock, or a put retained
        // less than the period, is refused; one naming no lock gets the bucket
        // default (COMPLIANCE, RetentionDays).
        let weak_mode = sid(&policy, "DenyPutsWithAWeakerLockMode");
        assert_eq!(
            actions(weak_mode),
            set(&["s3:PutObject", "s3:PutObjectRetention"])
        );
        assert_eq!(
            weak_mode["Condition"],
            json!({
                "Null": {"s3:object-lock-mode": "false"},
                "StringNotEquals": {"s3:object-lock-mode": "COMPLIANCE"}
            })
        );
        let brief = sid(&policy, "DenyPutsRetainedTooBriefly");
        assert_eq!(actions(brief), set(&["s3:PutObject"]));
        assert_eq!(
            brief["Condition"],
            json!({"NumericLessThan": {"s3:object-lock-remaining-retention-days": "364"}})
        );

        let writers = sid(&policy, "DenyObjectWritesByAnyoneButTheCollector");
        for action in [
            "s3:PutObject",
            "s3:PutObjectRetention",
            "s3:PutObjectLegalHold",
        ] {
            assert!(actions(writers).contains(action), "{action}");
        }
        assert_eq!(
            writers["Condition"],
            json!({
                "ArnNotEquals": {"aws:PrincipalArn": COLLECTOR_ARN},
                "StringNotLike": {"aws:userid": format!("{COLLECTOR_ROLE_ID}:*")}
            })
        );

        let transport = sid(&policy, DENY_INSECURE_TRANSPORT_SID);
        assert_eq!(actions(transport), set(&["s3:*"]));
        assert_eq!(transport["Resource"], json!([bucket, objects]));
        assert_eq!(
            transport["Condition"],
            json!({"Bool": {"aws:SecureTransport": "false"}})
        );

        let auditors = sid(&policy, "AllowAuditorsToRead");
        assert_eq!(auditors["Effect"], "Allow");
        assert_eq!(auditors["Principal"], json!({"AWS": AUDITOR_ARN}));
        assert!(actions(auditors)
            .iter()
            .all(|action| action.starts_with("s3:Get") || action.starts_with("s3:List")));
        // The only Allow: nobody else gets anything from the bucket policy.
        let allows = statements(&policy)
            .into_iter()
            .filter(|statement| statement["Effect"] == "Allow")
            .count();
        assert_eq!(allows, 1);
    }

    #[test]
    fn archive_key_rotates_and_names_no_member_principal() {
        let template = load(AUDIT_ACCOUNT);
        assert_eq!(
            template
                .property("ArchiveKey", "EnableKeyRotation")
                .unwrap(),
            true
        );
        let policy = rendered(
            &template,
            &audit_render(),
            template.policy_document("ArchiveKey").unwrap(),
        );
        let principals = aws_principals(&policy);
        assert_eq!(
            principals,
            vec![
                format!("arn:aws:iam::{AUDIT}:root"),
                "*".to_owned(),
                COLLECTOR_ARN.to_owned(),
                AUDITOR_ARN.to_owned()
            ]
        );
        let principals: Vec<&String> = principals.iter().filter(|p| *p != "*").collect();
        assert!(principals
            .iter()
            .all(|principal| principal.contains(&format!(":{AUDIT}:"))));
        assert!(!policy.to_string().contains(MEMBER));
        let collector = sid(&policy, "CollectorEncryptsAndReadsBack");
        assert_eq!(
            actions(collector),
            set(&[
                "kms:Encrypt",
                "kms:GenerateDataKey*",
                "kms:Decrypt",
                "kms:DescribeKey"
            ])
        );
        let auditors = sid(&policy, "AuditorsDecrypt");
        assert_eq!(actions(auditors), set(&["kms:Decrypt", "kms:DescribeKey"]));

        // The account root's kms:* does not reach what would make the locked
        // copies unreadable: only the break-glass role may.
        let guard = sid(&policy, "DenyKeyDestructionExceptBreakGlass");
        assert_eq!(guard["Effect"], "Deny");
        assert_eq!(guard["Principal"], json!({"AWS": "*"}));
        assert_eq!(
            actions(guard),
            set(&[
                "kms:DisableKey",
                "kms:ScheduleKeyDeletion",
                "kms:PutKeyPolicy"
            ])
        );
        assert_eq!(
            guard["Condition"],
            json!({"ArnNotLike": {"aws:PrincipalArn": [
                format!("arn:aws:iam::{AUDIT}:role/trailvault-break-glass"),
                format!("arn:aws:sts::{AUDIT}:assumed-role/trailvault-break-glass/*")
            ]}})
        );
        assert_eq!(
            template
                .property("ArchiveKey", "BypassPolicyLockoutSafetyCheck")
                .unwrap(),
            true
        );
    }

    #[test]
    fn collector_may_do_exactly_the_listed_actions() {
        let template = load(AUDIT_ACCOUNT);
        let policy = rendered(
            &template,
            &audit_render(),
            template.policy_document("CollectorPermissions").unwrap(),
        );
        let all: BTreeSet<String> = statements(&policy).into_iter().flat_map(actions).collect();
        assert_eq!(
            all,
            set(&[
                "sts:AssumeRole",
                "s3:PutObject",
                "s3:PutObjectRetention",
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:GetObjectRetention",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "s3:GetBucketVersioning",
                "s3:GetBucketObjectLockConfiguration",
                "s3:GetEncryptionConfiguration",
                "s3:GetBucketPolicy",
                "s3:GetLifecycleConfiguration",
                "kms:Encrypt",
                "kms:GenerateDataKey*",
                "kms:Decrypt",
                "kms:DescribeKey",
                "cloudtrail:ListPublicKeys",
                "organizations:ListAccounts",
                "sns:Publish",
                "events:PutEvents",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:SendMessage",
            ])
        );
        // The intake queue is consumed, only its dead-letter queue is sent to.
        assert_eq!(
            sid(&policy, "ConsumeIntakeQueue")["Resource"],
            INTAKE_QUEUE_ARN
        );
        assert_eq!(
            sid(&policy, "DeadLetterIntakeMessages")["Resource"],
            INTAKE_DLQ_ARN
        );
        assert!(statements(&policy)
            .into_iter()
            .all(|statement| statement["Effect"] == "Allow"));
        let assume = sid(&policy, "AssumeMemberReaderRoles");
        assert_eq!(assume["Resource"], "arn:aws:iam::*:role/TrailvaultReader");
        assert!(
            assume.get("Condition").is_none(),
            "no organization id: no condition"
        );
        assert_eq!(sid(&policy, "UseArchiveKey")["Resource"], KEY_ARN);
        assert_eq!(sid(&policy, "PublishFindings")["Resource"], TOPIC_ARN);

        let in_org = rendered(
            &template,
            &audit_render().parameter("OrganizationId", "o-abcdefghij"),
            template.policy_document("CollectorPermissions").unwrap(),
        );
        assert_eq!(
            sid(&in_org, "AssumeMemberReaderRoles")["Condition"],
            json!({"StringEquals": {"aws:ResourceOrgID": "o-abcdefghij"}})
        );
    }

    #[test]
    fn only_the_trail_topics_send_to_the_intake_queue_which_has_a_dead_letter_queue() {
        let template = load(AUDIT_ACCOUNT);
        let policy = rendered(
            &template,
            &audit_render(),
            template.policy_document("IntakeQueuePolicy").unwrap(),
        );
        let send = sid(&policy, "TrailTopicsSendNotifications");
        assert_eq!(send["Principal"], json!({"Service": "sns.amazonaws.com"}));
        assert_eq!(send["Action"], "sqs:SendMessage");
        assert_eq!(send["Resource"], INTAKE_QUEUE_ARN);
        assert_eq!(
            send["Condition"],
            json!({"ArnEquals": {"aws:SourceArn": [TRAIL_TOPIC_ARN]}})
        );
        let queue = rendered(
            &template,
            &audit_render(),
            template.resource("IntakeQueue").unwrap(),
        );
        assert_eq!(
            queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"],
            INTAKE_DLQ_ARN
        );
        let subscription = rendered(
            &template,
            &audit_render(),
            template.resource("IntakeSubscription").unwrap(),
        );
        assert_eq!(subscription["Properties"]["TopicArn"], TRAIL_TOPIC_ARN);
        assert_eq!(subscription["Properties"]["Region"], "us-east-1");
        assert_eq!(subscription["Properties"]["Endpoint"], INTAKE_QUEUE_ARN);
    }

    #[test]
    fn collector_trust_is_ecs_tasks_plus_an_optional_principal() {
        let template = load(AUDIT_ACCOUNT);
        let trust = rendered(
            &template,
            &audit_render(),
            template.trust_policy("CollectorRole").unwrap(),
        );
        assert_eq!(statement_sids(&trust), vec!["EcsTasksOfThisAccount"]);
        let ecs = sid(&trust, "EcsTasksOfThisAccount");
        assert_eq!(
            ecs["Principal"],
            json!({"Service": "ecs-tasks.amazonaws.com"})
        );
        assert_eq!(ecs["Condition"]["StringEquals"]["aws:SourceAccount"], AUDIT);

        let ci = format!("arn:aws:iam::{AUDIT}:user/ci");
        let with_ci = rendered(
            &template,
            &audit_render().parameter("AdditionalCollectorPrincipalArn", &ci),
            template.trust_policy("CollectorRole").unwrap(),
        );
        assert_eq!(
            sid(&with_ci, "AdditionalCollectorPrincipal")["Principal"],
            json!({"AWS": ci})
        );
    }

    #[test]
    fn member_role_trusts_only_the_collector_with_the_external_id() {
        let template = load(MEMBER_ACCOUNT);
        let declaration = template.parameter_declaration("ExternalId").unwrap();
        assert_eq!(declaration["NoEcho"], true);
        let trust = rendered(
            &template,
            &member_render(),
            template.trust_policy("ReaderRole").unwrap(),
        );
        let all = statements(&trust);
        assert_eq!(all.len(), 1);
        assert_eq!(
            *all[0],
            json!({
                "Sid": "TrailvaultCollectorWithExternalId",
                "Effect": "Allow",
                "Principal": {"AWS": COLLECTOR_ARN},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}
            })
        );
    }

    #[test]
    fn member_role_reads_trail_buckets_and_decrypts_only_through_s3() {
        let template = load(MEMBER_ACCOUNT);
        let policy = rendered(
            &template,
            &member_render().list_parameter(
                "TrailBucketArns",
                &[TRAIL_BUCKET_ARN, "arn:aws:s3:::org-trail-bucket"],
            ),
            template
                .inline_policy("ReaderRole", "read-cloudtrail-files")
                .unwrap(),
        );
        let list = sid(&policy, "ListTrailBuckets");
        assert_eq!(
            actions(list),
            set(&[
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "s3:GetBucketLocation"
            ])
        );
        assert_eq!(
            list["Resource"],
            json!([TRAIL_BUCKET_ARN, "arn:aws:s3:::org-trail-bucket"])
        );
        let read = sid(&policy, "ReadTrailFiles");
        assert_eq!(actions(read), set(&["s3:GetObject", "s3:GetObjectVersion"]));
        assert_eq!(
            read["Resource"],
            json!([
                format!("{TRAIL_BUCKET_ARN}/*"),
                "arn:aws:s3:::org-trail-bucket/*"
            ])
        );
        let decrypt = sid(&policy, "DecryptTrailFilesThroughS3");
        assert_eq!(actions(decrypt), set(&["kms:Decrypt"]));
        assert_eq!(decrypt["Resource"], json!([TRAIL_KEY_ARN]));
        assert_eq!(
            decrypt["Condition"],
            json!({"StringEquals": {"kms:ViaService": format!("s3.{REGION}.amazonaws.com")}})
        );
        for statement in statements(&policy) {
            for action in actions(statement) {
                assert!(
                    action.starts_with("s3:Get")
                        || action.starts_with("s3:List")
                        || action == "kms:Decrypt",
                    "not read-only: {action}"
                );
            }
        }

        // Trail buckets in several Regions: Decrypt through S3 in each.
        for (partition, suffix) in [("aws", "amazonaws.com"), ("aws-cn", "amazonaws.com.cn")] {
            let regional = rendered(
                &template,
                &member_render()
                    .partition(partition)
                    .list_parameter("TrailBucketRegions", &["us-east-1", "eu-west-1"]),
                template
                    .inline_policy("ReaderRole", "read-cloudtrail-files")
                    .unwrap(),
            );
            assert_eq!(
                sid(&regional, "DecryptTrailFilesThroughS3")["Condition"],
                json!({"StringEquals": {"kms:ViaService": [
                    format!("s3.us-east-1.{suffix}"),
                    format!("s3.eu-west-1.{suffix}")
                ]}}),
                "{partition}"
            );
        }

        let sse_s3 = rendered(
            &template,
            &member_render().list_parameter("TrailKmsKeyArns", &[]),
            template
                .inline_policy("ReaderRole", "read-cloudtrail-files")
                .unwrap(),
        );
        assert_eq!(
            statement_sids(&sse_s3),
            vec!["ListTrailBuckets", "ReadTrailFiles", "ListOwnBuckets"]
        );
        // Every S3 permission on trail buckets holds only for this account's
        // buckets: a squatted bucket of the template's name is never read.
        for statement in [list, read] {
            assert_eq!(
                statement["Condition"],
                json!({"StringEquals": {"s3:ResourceAccount": MEMBER}}),
                "{statement}"
            );
        }
        // The ownership check: ListBuckets lists this account's buckets.
        let own = sid(&policy, "ListOwnBuckets");
        assert_eq!(actions(own), set(&["s3:ListAllMyBuckets"]));
        assert_eq!(own["Resource"], json!("*"));
    }

    #[test]
    fn runtime_runs_collect_as_the_collector_on_a_persistent_store() {
        let template = load(COLLECTOR_RUNTIME);
        let render = runtime_render()
            .parameter("ContainerImage", "trailvault:test")
            .resource("StoreFileSystem", "fs-0123")
            .resource("StoreAccessPoint", "fsap-0123")
            .resource("LogGroup", "/trailvault/trailvault");
        let task = rendered(
            &template,
            &render,
            template.resource("TaskDefinition").unwrap(),
        );
        let properties = &task["Properties"];
        assert_eq!(properties["TaskRoleArn"], COLLECTOR_ARN);
        let container = &properties["ContainerDefinitions"][0];
        assert_eq!(container["Command"], json!(["collect", "--json"]));
        assert_eq!(container["ReadonlyRootFilesystem"], true);
        let entry_point = container["EntryPoint"][2].as_str().unwrap();
        assert!(entry_point.contains("trailvault --config /tmp/trailvault.toml \"$@\""));
        assert_eq!(
            container["MountPoints"][0],
            json!({"SourceVolume": "store", "ContainerPath": "/var/lib/trailvault", "ReadOnly": false})
        );
        let store = &properties["Volumes"][0]["EFSVolumeConfiguration"];
        assert_eq!(store["TransitEncryption"], "ENABLED");
        assert_eq!(store["AuthorizationConfig"]["IAM"], "ENABLED");
        assert_eq!(container["LogConfiguration"]["LogDriver"], "awslogs");
        assert_eq!(
            template.property("StoreFileSystem", "Encrypted").unwrap(),
            true
        );

        let file_system = rendered(
            &template,
            &render,
            template.policy_document("StoreFileSystem").unwrap(),
        );
        assert_eq!(
            aws_principals(&file_system),
            vec![COLLECTOR_ARN.to_owned(), "*".to_owned()]
        );
        assert_eq!(sid(&file_system, "DenyInsecureTransport")["Effect"], "Deny");

        let scheduler = rendered(
            &template,
            &render,
            template
                .inline_policy("SchedulerRole", "trailvault-run-task")
                .unwrap(),
        );
        assert_eq!(
            sid(&scheduler, "PassTheTaskRoles")["Resource"],
            json!([COLLECTOR_ARN, RUNTIME_EXECUTION_ROLE_ARN])
        );
        assert_eq!(
            sid(&scheduler, "RunTheCollectorTask")["Condition"],
            json!({"ArnEquals": {"ecs:cluster": RUNTIME_CLUSTER_ARN}})
        );
        let schedule = template.resource("Schedule").unwrap();
        assert_eq!(
            schedule["Properties"]["Target"]["EcsParameters"]["TaskCount"],
            1
        );
    }

    #[test]
    fn runtime_starts_one_task_per_shard_each_with_its_index() {
        let template = load(COLLECTOR_RUNTIME);
        let schedules: Vec<&str> = template
            .resource_ids()
            .into_iter()
            .filter(|id| template.resource_type(id).unwrap() == "AWS::Scheduler::Schedule")
            .collect();
        assert_eq!(schedules.len(), 8, "{schedules:?}");
        let shard_of_input = |render: &Render, id: &str| -> Option<String> {
            let target = &template.resource(id).unwrap()["Properties"]["Target"];
            let input = render
                .render(&template, &json!({"x": target["Input"]}))
                .unwrap();
            let input = input.get("x")?.as_str()?.to_string();
            let overrides: Value = serde_json::from_str(&input).unwrap();
            let container = &overrides["containerOverrides"][0];
            assert_eq!(container["name"], "trailvault");
            assert_eq!(container["environment"][0]["name"], "TRAILVAULT_SHARD");
            Some(container["environment"][0]["value"].as_str()?.to_string())
        };
        let created = |render: &Render, id: &str| -> bool {
            match template.resource(id).unwrap().get("Condition") {
                None => true,
                Some(condition) => {
                    let probe = json!({"Fn::If": [condition, true, false]});
                    render.render(&template, &probe).unwrap() == json!(true)
                }
            }
        };
        for count in 1..=8u32 {
            let render = runtime_render().parameter("ShardCount", &count.to_string());
            let mut shards: Vec<String> = Vec::new();
            let mut created_count = 0;
            for id in &schedules {
                if !created(&render, id) {
                    continue;
                }
                created_count += 1;
                if let Some(shard) = shard_of_input(&render, id) {
                    shards.push(shard);
                }
                let task = &template.resource(id).unwrap()["Properties"]["Target"]["EcsParameters"];
                assert_eq!(task["TaskCount"], 1, "{id}");
                assert_eq!(
                    task["TaskDefinitionArn"],
                    json!({"Ref": "TaskDefinition"}),
                    "{id}"
                );
            }
            assert_eq!(created_count, count, "one schedule per shard");
            if count == 1 {
                assert!(
                    shards.is_empty(),
                    "unsharded: no override, the store keeps its path"
                );
            } else {
                shards.sort();
                let expected: Vec<String> = (0..count).map(|k| format!("{k}/{count}")).collect();
                let mut expected_sorted = expected.clone();
                expected_sorted.sort();
                assert_eq!(shards, expected_sorted);
            }
        }
    }

    #[test]
    fn dropping_statements_by_sid() {
        let document = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "A", "Effect": "Deny", "Action": "s3:*", "Resource": "*"},
            {"Sid": "B", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
        ]});
        let kept = without_statements(&document, &["A"]).unwrap();
        assert_eq!(statement_sids(&kept), vec!["B"]);
        assert_eq!(kept["Version"], "2012-10-17");
        let error = without_statements(&document, &["C"]).unwrap_err();
        assert!(error.to_string().contains("no statement C"), "{error}");
    }

    fn tiny(resources: Value, conditions: Value) -> Template {
        Template::from_value(
            "tiny",
            json!({
                "Parameters": {
                    "Name": {"Type": "String", "Default": "dflt"},
                    "Empty": {"Type": "String", "Default": ""},
                    "Names": {"Type": "CommaDelimitedList", "Default": "a,b"},
                    "Mode": {"Type": "String", "Default": "x", "AllowedValues": ["x", "y"]},
                    "Required": {"Type": "String"}
                },
                "Conditions": conditions,
                "Resources": resources
            }),
        )
        .unwrap()
    }

    #[test]
    fn renders_sub_join_split_select_if_and_novalue() {
        let template = tiny(
            json!({"Thing": {"Type": "AWS::S3::Bucket"}}),
            json!({
                "HasEmpty": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Empty"}, ""]}]},
                "IsX": {"Fn::Equals": ["x", {"Ref": "Mode"}]},
                "Both": {"Fn::And": [{"Condition": "IsX"}, {"Fn::Or": [{"Condition": "HasEmpty"}, {"Fn::Equals": ["1", "1"]}]}]}
            }),
        );
        let render = Render::new("111111111111", "us-east-1")
            .resource("Thing", "thing-name")
            .attribute("Thing", "Arn", "arn:aws:s3:::thing-name");
        let document = json!({
            "a": {"Fn::Sub": "${AWS::Partition}:${AWS::Region}:${AWS::AccountId}:${Name}:${Thing}:${Thing.Arn}:${!Literal}"},
            "b": {"Fn::Sub": ["${X}-${Name}", {"X": {"Ref": "AWS::StackName"}}]},
            "c": {"Fn::Join": ["|", {"Ref": "Names"}]},
            "d": {"Fn::Split": [",", "p,q"]},
            "e": {"Fn::Select": ["1", {"Ref": "Names"}]},
            "f": {"Fn::If": ["HasEmpty", "yes", {"Ref": "AWS::NoValue"}]},
            "g": [1, {"Fn::If": ["IsX", {"Ref": "AWS::NoValue"}, 2]}, 3],
            "h": {"Fn::If": ["Both", {"Fn::GetAtt": ["Thing", "Arn"]}, "no"]},
            "i": {"Fn::GetAtt": "Thing.Arn"}
        });
        let output = render.render(&template, &document).unwrap();
        assert_eq!(
            output,
            json!({
                "a": "aws:us-east-1:111111111111:dflt:thing-name:arn:aws:s3:::thing-name:${Literal}",
                "b": "trailvault-dflt",
                "c": "a|b",
                "d": ["p", "q"],
                "e": "b",
                "g": [1, 3],
                "h": "arn:aws:s3:::thing-name",
                "i": "arn:aws:s3:::thing-name"
            })
        );
    }

    #[test]
    fn rendering_fails_on_anything_unresolved_or_unsupported() {
        let template = tiny(json!({"Thing": {"Type": "AWS::S3::Bucket"}}), json!({}));
        let render = Render::new("111111111111", "us-east-1");
        let cases = [
            (
                json!({"Ref": "Thing"}),
                "no value given for Ref of resource Thing",
            ),
            (
                json!({"Fn::GetAtt": ["Thing", "Arn"]}),
                "no value given for Fn::GetAtt Thing.Arn",
            ),
            (json!({"Ref": "Nope"}), "neither a parameter nor a resource"),
            (
                json!({"Ref": "Required"}),
                "parameter Required has no value and no default",
            ),
            (
                json!({"Fn::ImportValue": "x"}),
                "unsupported intrinsic function Fn::ImportValue",
            ),
            (
                json!({"Fn::FindInMap": ["a", "b", "c"]}),
                "unsupported intrinsic function Fn::FindInMap",
            ),
            (
                json!({"Ref": "AWS::NotificationARNs"}),
                "unsupported pseudo parameter",
            ),
            (
                json!({"Fn::Sub": "${Nope}"}),
                "neither a parameter nor a resource",
            ),
            (
                json!({"Fn::Sub": "${Thing.Arn}"}),
                "no value given for Fn::GetAtt",
            ),
            (json!({"Fn::If": ["Missing", 1, 2]}), "no condition Missing"),
            (json!({"Fn::Sub": "x", "Other": 1}), "must be the only key"),
            (json!({"Ref": "AWS::NoValue"}), "renders to nothing"),
        ];
        for (document, expected) in cases {
            let error = format!("{:#}", render.render(&template, &document).unwrap_err());
            assert!(error.contains(expected), "{document}: {error}");
        }
        let typo = Render::new("111111111111", "us-east-1").parameter("Nmae", "x");
        let error = typo.render(&template, &json!("x")).unwrap_err().to_string();
        assert!(error.contains("declares no parameter Nmae"), "{error}");
        let outside = Render::new("111111111111", "us-east-1").parameter("Mode", "z");
        let error = outside
            .render(&template, &json!("x"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("AllowedValues"), "{error}");
    }

    #[test]
    fn policy_document_by_resource_type() {
        let template = load(AUDIT_ACCOUNT);
        assert!(template.policy_document("ArchiveBucketPolicy").is_ok());
        assert!(template.policy_document("ArchiveKey").is_ok());
        assert!(template.policy_document("CollectorPermissions").is_ok());
        let role = template
            .policy_document("CollectorRole")
            .unwrap_err()
            .to_string();
        assert!(role.contains("trust_policy"), "{role}");
        assert!(template.policy_document("ArchiveBucket").is_err());
        assert!(template.trust_policy("ArchiveKey").is_err());
        assert!(template.resource("Nope").is_err());
    }
}
