//! CloudTrail's output formats as the simulator writes them: key names (docs/cloudtrail-format.md §1),
//! digest JSON (docs/cloudtrail-format.md §2), log records (modelled on `samples/cloudtrail-logs/`), gzip.

use std::io::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::rng::SimRng;

/// The per-account trail's name (a multi-Region trail whose home is us-east-1).
pub const PER_ACCOUNT_TRAIL_NAME: &str = "management-events";
/// The organization trail's name.
pub const ORG_TRAIL_NAME: &str = "OrgTrail";
/// `hashAlgorithm` / `previousDigestHashAlgorithm`.
pub const HASH_ALGORITHM: &str = "SHA-256";
/// Folder (and file-name infix) of ordinary log files.
pub const LOG_FAMILY: &str = "CloudTrail";
/// Folder (and file-name infix) of Insights files.
pub const INSIGHT_FAMILY: &str = "CloudTrail-Insight";
/// Folder (and file-name infix) of digest files.
pub const DIGEST_FAMILY: &str = "CloudTrail-Digest";

/// `YYYY-MM-DDTHH:MM:SSZ`, the timestamp format of digest fields and `eventTime`.
pub fn iso_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `YYYY/MM/DD`, the day folder of a partition.
pub fn day_folder(time: DateTime<Utc>) -> String {
    time.format("%Y/%m/%d").to_string()
}

/// `<acct>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz` (or the
/// `CloudTrail-Insight` family): the delivery time to the minute.
pub fn log_file_name(
    family: &str,
    account_id: &str,
    region: &str,
    delivered_at: DateTime<Utc>,
    unique: &str,
) -> String {
    format!(
        "{account_id}_{family}_{region}_{}_{unique}.json.gz",
        delivered_at.format("%Y%m%dT%H%MZ")
    )
}

/// Full key of a log file. `root` is everything before the family folder:
/// `[prefix/]AWSLogs/[o-org/]<acct>`.
pub fn log_key(
    root: &str,
    family: &str,
    account_id: &str,
    region: &str,
    delivered_at: DateTime<Utc>,
    unique: &str,
) -> String {
    format!(
        "{root}/{family}/{region}/{}/{}",
        day_folder(delivered_at),
        log_file_name(family, account_id, region, delivered_at, unique)
    )
}

/// Full key of a digest file (docs/cloudtrail-format.md §1.2): the day folder and the timestamp are the
/// digest end time; the first region is the delivering one, the last the trail's home.
pub fn digest_key(
    root: &str,
    account_id: &str,
    delivering_region: &str,
    trail_name: &str,
    home_region: &str,
    digest_end: DateTime<Utc>,
    backfill: bool,
) -> String {
    format!(
        "{root}/{DIGEST_FAMILY}/{delivering_region}/{}/{account_id}_{DIGEST_FAMILY}_{delivering_region}_{trail_name}_{home_region}_{}{}.json.gz",
        day_folder(digest_end),
        digest_end.format("%Y%m%dT%H%M%SZ"),
        if backfill { "_backfill" } else { "" }
    )
}

/// The key root of a trail's files for one account: `[prefix/]AWSLogs/[org/]<acct>`.
pub fn key_root(key_prefix: &str, org_id: Option<&str>, account_id: &str) -> String {
    let mut root = String::new();
    if !key_prefix.is_empty() {
        root.push_str(key_prefix);
        root.push('/');
    }
    root.push_str("AWSLogs/");
    if let Some(org_id) = org_id {
        root.push_str(org_id);
        root.push('/');
    }
    root.push_str(account_id);
    root
}

/// The link from a digest to its predecessor (all five `previousDigest*` fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousDigest {
    pub bucket: String,
    pub object: String,
    pub hash_value: String,
    pub hash_algorithm: String,
    pub signature: String,
}

/// One `logFiles[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileEntry {
    pub s3_bucket: String,
    pub s3_object: String,
    pub hash_value: String,
    pub hash_algorithm: String,
    pub newest_event_time: String,
    pub oldest_event_time: String,
}

/// A digest file's content (docs/cloudtrail-format.md §2), rendered in CloudTrail's field order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestBody {
    pub aws_account_id: String,
    pub digest_start_time: String,
    pub digest_end_time: String,
    pub digest_s3_bucket: String,
    pub digest_s3_object: String,
    pub digest_public_key_fingerprint: String,
    pub digest_signature_algorithm: String,
    pub newest_event_time: Option<String>,
    pub oldest_event_time: Option<String>,
    /// `None`: a starting digest, all five `previousDigest*` fields JSON `null`.
    pub previous: Option<PreviousDigest>,
    pub log_files: Vec<LogFileEntry>,
}

/// Writes a JSON string literal. `escape_slashes` renders `/` as `\/`, as the one real
/// digest body found does (Java-style); both forms decode to the same value.
fn push_json_string(out: &mut String, value: &str, escape_slashes: bool) {
    out.push('"');
    for character in value.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if escape_slashes => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if (control as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", control as u32));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

fn push_json_nullable(out: &mut String, value: Option<&str>, escape_slashes: bool) {
    match value {
        Some(text) => push_json_string(out, text, escape_slashes),
        None => out.push_str("null"),
    }
}

impl DigestBody {
    /// Compact single-line JSON, exact field order of real digests, no trailing
    /// newline. These bytes are what gets hashed and signed.
    pub fn render(&self, escape_slashes: bool) -> String {
        let mut out = String::with_capacity(1024 + self.log_files.len() * 400);
        let field = |out: &mut String, name: &str, first: bool| {
            if !first {
                out.push(',');
            }
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
        };
        out.push('{');
        field(&mut out, "awsAccountId", true);
        push_json_string(&mut out, &self.aws_account_id, escape_slashes);
        field(&mut out, "digestStartTime", false);
        push_json_string(&mut out, &self.digest_start_time, escape_slashes);
        field(&mut out, "digestEndTime", false);
        push_json_string(&mut out, &self.digest_end_time, escape_slashes);
        field(&mut out, "digestS3Bucket", false);
        push_json_string(&mut out, &self.digest_s3_bucket, escape_slashes);
        field(&mut out, "digestS3Object", false);
        push_json_string(&mut out, &self.digest_s3_object, escape_slashes);
        field(&mut out, "digestPublicKeyFingerprint", false);
        push_json_string(
            &mut out,
            &self.digest_public_key_fingerprint,
            escape_slashes,
        );
        field(&mut out, "digestSignatureAlgorithm", false);
        push_json_string(&mut out, &self.digest_signature_algorithm, escape_slashes);
        field(&mut out, "newestEventTime", false);
        push_json_nullable(&mut out, self.newest_event_time.as_deref(), escape_slashes);
        field(&mut out, "oldestEventTime", false);
        push_json_nullable(&mut out, self.oldest_event_time.as_deref(), escape_slashes);
        let previous = self.previous.as_ref();
        field(&mut out, "previousDigestS3Bucket", false);
        push_json_nullable(
            &mut out,
            previous.map(|link| link.bucket.as_str()),
            escape_slashes,
        );
        field(&mut out, "previousDigestS3Object", false);
        push_json_nullable(
            &mut out,
            previous.map(|link| link.object.as_str()),
            escape_slashes,
        );
        field(&mut out, "previousDigestHashValue", false);
        push_json_nullable(
            &mut out,
            previous.map(|link| link.hash_value.as_str()),
            escape_slashes,
        );
        field(&mut out, "previousDigestHashAlgorithm", false);
        push_json_nullable(
            &mut out,
            previous.map(|link| link.hash_algorithm.as_str()),
            escape_slashes,
        );
        field(&mut out, "previousDigestSignature", false);
        push_json_nullable(
            &mut out,
            previous.map(|link| link.signature.as_str()),
            escape_slashes,
        );
        field(&mut out, "logFiles", false);
        out.push('[');
        for (index, log_file) in self.log_files.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push('{');
            field(&mut out, "s3Bucket", true);
            push_json_string(&mut out, &log_file.s3_bucket, escape_slashes);
            field(&mut out, "s3Object", false);
            push_json_string(&mut out, &log_file.s3_object, escape_slashes);
            field(&mut out, "hashValue", false);
            push_json_string(&mut out, &log_file.hash_value, escape_slashes);
            field(&mut out, "hashAlgorithm", false);
            push_json_string(&mut out, &log_file.hash_algorithm, escape_slashes);
            field(&mut out, "newestEventTime", false);
            push_json_string(&mut out, &log_file.newest_event_time, escape_slashes);
            field(&mut out, "oldestEventTime", false);
            push_json_string(&mut out, &log_file.oldest_event_time, escape_slashes);
            out.push('}');
        }
        out.push_str("]}");
        out
    }

    /// Parses inflated digest bytes (either escaping style). Strict about the fields
    /// the simulator writes; meant for tests of the simulator's own output.
    pub fn parse(inflated: &[u8]) -> anyhow::Result<DigestBody> {
        let value: Value = serde_json::from_slice(inflated)?;
        let text = |name: &str| -> anyhow::Result<String> {
            value[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("digest field {name} is not a string"))
        };
        let nullable = |name: &str| -> anyhow::Result<Option<String>> {
            match &value[name] {
                Value::Null => Ok(None),
                Value::String(text) => Ok(Some(text.clone())),
                _ => anyhow::bail!("digest field {name} is neither string nor null"),
            }
        };
        let previous = match nullable("previousDigestS3Object")? {
            None => None,
            Some(object) => Some(PreviousDigest {
                bucket: text("previousDigestS3Bucket")?,
                object,
                hash_value: text("previousDigestHashValue")?,
                hash_algorithm: text("previousDigestHashAlgorithm")?,
                signature: text("previousDigestSignature")?,
            }),
        };
        let mut log_files = Vec::new();
        for entry in value["logFiles"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("digest field logFiles is not an array"))?
        {
            let entry_text = |name: &str| -> anyhow::Result<String> {
                entry[name]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow::anyhow!("logFiles[].{name} is not a string"))
            };
            log_files.push(LogFileEntry {
                s3_bucket: entry_text("s3Bucket")?,
                s3_object: entry_text("s3Object")?,
                hash_value: entry_text("hashValue")?,
                hash_algorithm: entry_text("hashAlgorithm")?,
                newest_event_time: entry_text("newestEventTime")?,
                oldest_event_time: entry_text("oldestEventTime")?,
            });
        }
        Ok(DigestBody {
            aws_account_id: text("awsAccountId")?,
            digest_start_time: text("digestStartTime")?,
            digest_end_time: text("digestEndTime")?,
            digest_s3_bucket: text("digestS3Bucket")?,
            digest_s3_object: text("digestS3Object")?,
            digest_public_key_fingerprint: text("digestPublicKeyFingerprint")?,
            digest_signature_algorithm: text("digestSignatureAlgorithm")?,
            newest_event_time: nullable("newestEventTime")?,
            oldest_event_time: nullable("oldestEventTime")?,
            previous,
            log_files,
        })
    }
}

/// One gzip member (what CloudTrail writes), fixed header (mtime 0) so output is
/// reproducible.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        flate2::Compression::default(),
    );
    // Writing into a Vec cannot fail.
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// Inflates exactly one gzip member and fails on trailing bytes (for the simulator's
/// own tests and checks).
pub fn gunzip_single_member(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut decoder = flate2::bufread::GzDecoder::new(bytes);
    let mut inflated = Vec::new();
    decoder.read_to_end(&mut inflated)?;
    let rest = decoder.into_inner();
    anyhow::ensure!(
        rest.is_empty(),
        "{} bytes after the first gzip member",
        rest.len()
    );
    Ok(inflated)
}

/// The content of one generated log file.
#[derive(Debug, Clone)]
pub struct GeneratedLog {
    /// Exact inflated bytes (`{"Records":[...]}`, compact).
    pub inflated: Vec<u8>,
    pub oldest_event_time: DateTime<Utc>,
    pub newest_event_time: DateTime<Utc>,
}

#[derive(Serialize)]
struct Records<T: Serialize> {
    #[serde(rename = "Records")]
    records: Vec<T>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserIdentity {
    #[serde(rename = "type")]
    identity_type: &'static str,
    principal_id: String,
    arn: String,
    account_id: String,
    access_key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_context: Option<Value>,
}

/// A management event, fields in CloudTrail's order (eventVersion 1.08+).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiEvent {
    event_version: &'static str,
    user_identity: UserIdentity,
    event_time: String,
    event_source: &'static str,
    event_name: &'static str,
    aws_region: String,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: String,
    user_agent: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    request_parameters: Value,
    response_elements: Value,
    #[serde(rename = "requestID")]
    request_id: String,
    #[serde(rename = "eventID")]
    event_id: String,
    read_only: bool,
    event_type: &'static str,
    management_event: bool,
    recipient_account_id: String,
    event_category: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InsightEvent {
    event_version: &'static str,
    event_time: String,
    aws_region: String,
    #[serde(rename = "eventID")]
    event_id: String,
    event_type: &'static str,
    recipient_account_id: String,
    #[serde(rename = "sharedEventID")]
    shared_event_id: String,
    insight_details: Value,
    event_category: &'static str,
}

const USER_AGENTS: &[&str] = &[
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.1.0 exe/x86_64.debian.12 prompt/off command/ec2.describe-instances",
    "console.amazonaws.com",
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.1.0 md/arch#x86_64 lang/python#3.11.8",
    "aws-sdk-go-v2/1.25.2 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/sts#1.28.4",
    "terraform-provider-aws/5.41.0 (+https://registry.terraform.io/providers/hashicorp/aws)",
];

fn identity(rng: &mut SimRng, account_id: &str, event_time: DateTime<Utc>) -> UserIdentity {
    let access_key = format!("ASIA{}", rng.alnum(16).to_uppercase());
    if rng.chance(50) {
        let user = rng.pick(&["alice", "bob", "ci-deployer"]).to_string();
        UserIdentity {
            identity_type: "IAMUser",
            principal_id: format!("AIDA{}", rng.alnum(17).to_uppercase()),
            arn: format!("arn:aws:iam::{account_id}:user/{user}"),
            account_id: account_id.to_owned(),
            access_key_id: access_key.replacen("ASIA", "AKIA", 1),
            user_name: Some(user),
            session_context: None,
        }
    } else {
        let role = rng.pick(&["Admin", "PowerUser", "ReadOnly"]).to_string();
        let session = rng.pick(&["alice", "bob", "automation"]).to_string();
        let role_id = format!("AROA{}", rng.alnum(17).to_uppercase());
        let created = event_time - chrono::Duration::minutes(rng.between(1, 55) as i64);
        UserIdentity {
            identity_type: "AssumedRole",
            principal_id: format!("{role_id}:{session}"),
            arn: format!("arn:aws:sts::{account_id}:assumed-role/{role}/{session}"),
            account_id: account_id.to_owned(),
            access_key_id: access_key,
            user_name: None,
            session_context: Some(json!({
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": role_id,
                    "arn": format!("arn:aws:iam::{account_id}:role/{role}"),
                    "accountId": account_id,
                    "userName": role
                },
                "attributes": {
                    "creationDate": iso_time(created),
                    "mfaAuthenticated": "false"
                }
            })),
        }
    }
}

fn api_event(
    rng: &mut SimRng,
    account_id: &str,
    region: &str,
    event_time: DateTime<Utc>,
) -> ApiEvent {
    let instance = format!("i-0{}", rng.hex(16));
    let (source, name, read_only, request, response) = match rng.below(8) {
        0 => (
            "ec2.amazonaws.com",
            "DescribeInstances",
            true,
            json!({"instancesSet": {}, "filterSet": {}}),
            Value::Null,
        ),
        1 => (
            "ec2.amazonaws.com",
            "StartInstances",
            false,
            json!({"instancesSet": {"items": [{"instanceId": instance}]}}),
            json!({"instancesSet": {"items": [{"instanceId": instance,
                "currentState": {"code": 0, "name": "pending"},
                "previousState": {"code": 80, "name": "stopped"}}]}}),
        ),
        2 => (
            "ec2.amazonaws.com",
            "StopInstances",
            false,
            json!({"instancesSet": {"items": [{"instanceId": instance}]}, "force": false}),
            json!({"instancesSet": {"items": [{"instanceId": instance,
                "currentState": {"code": 64, "name": "stopping"},
                "previousState": {"code": 16, "name": "running"}}]}}),
        ),
        3 => {
            let user = format!("user-{}", rng.alnum(6).to_lowercase());
            (
                "iam.amazonaws.com",
                "CreateUser",
                false,
                json!({"userName": user}),
                json!({"user": {"path": "/", "userName": user,
                    "userId": format!("AIDA{}", rng.alnum(17).to_uppercase()),
                    "arn": format!("arn:aws:iam::{account_id}:user/{user}"),
                    "createDate": event_time.format("%b %-d, %Y %-I:%M:%S %p").to_string()}}),
            )
        }
        4 => (
            "sts.amazonaws.com",
            "AssumeRole",
            true,
            json!({"roleArn": format!("arn:aws:iam::{account_id}:role/Deploy"),
                "roleSessionName": format!("session-{}", rng.alnum(8))}),
            json!({"credentials": {"accessKeyId": format!("ASIA{}", rng.alnum(16).to_uppercase()),
                "sessionToken": "<sensitiveDataRemoved>",
                "expiration": (event_time + chrono::Duration::hours(1)).format("%b %-d, %Y, %-I:%M:%S %p").to_string()}}),
        ),
        5 => (
            "s3.amazonaws.com",
            "ListBuckets",
            true,
            json!({"Host": "s3.amazonaws.com"}),
            Value::Null,
        ),
        6 => (
            "kms.amazonaws.com",
            "Decrypt",
            true,
            json!({"encryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "encryptionContext": {"aws:lambda:FunctionArn": format!("arn:aws:lambda:{region}:{account_id}:function:worker")}}),
            Value::Null,
        ),
        _ => (
            "ssm.amazonaws.com",
            "GetParameter",
            true,
            json!({"name": "/app/config/feature-flags", "withDecryption": false}),
            Value::Null,
        ),
    };
    let failed = !read_only && rng.chance(5);
    ApiEvent {
        event_version: "1.09",
        user_identity: identity(rng, account_id, event_time),
        event_time: iso_time(event_time),
        event_source: source,
        event_name: name,
        aws_region: region.to_owned(),
        source_ip_address: format!(
            "{}.{}.{}.{}",
            rng.between(3, 203),
            rng.below(256),
            rng.below(256),
            rng.between(1, 254)
        ),
        user_agent: rng.pick::<&'static str>(USER_AGENTS),
        error_code: failed.then_some("AccessDenied"),
        error_message: failed
            .then(|| format!("User is not authorized to perform: {source}:{name}")),
        request_parameters: request,
        response_elements: if failed { Value::Null } else { response },
        request_id: rng.uuid(),
        event_id: rng.uuid(),
        read_only,
        event_type: "AwsApiCall",
        management_event: true,
        recipient_account_id: account_id.to_owned(),
        event_category: "Management",
    }
}

/// A log file of `record_count` management events in `region`, event times in the
/// few minutes before `delivered_at` (a file holds events from before its delivery).
pub fn generate_log(
    rng: &mut SimRng,
    account_id: &str,
    region: &str,
    delivered_at: DateTime<Utc>,
    record_count: usize,
) -> GeneratedLog {
    debug_assert!(record_count > 0);
    let mut times: Vec<DateTime<Utc>> = (0..record_count)
        .map(|_| delivered_at - chrono::Duration::seconds(rng.between(10, 300) as i64))
        .collect();
    times.sort();
    let records: Vec<ApiEvent> = times
        .iter()
        .map(|time| api_event(rng, account_id, region, *time))
        .collect();
    let inflated = serde_json::to_vec(&Records { records }).expect("serialize log records");
    GeneratedLog {
        inflated,
        oldest_event_time: times[0],
        newest_event_time: times[times.len() - 1],
    }
}

/// An Insights file: the Start/End event pair of one API-call-rate insight.
pub fn generate_insight_log(
    rng: &mut SimRng,
    account_id: &str,
    region: &str,
    delivered_at: DateTime<Utc>,
) -> GeneratedLog {
    let end_time = delivered_at - chrono::Duration::minutes(rng.between(2, 10) as i64);
    let start_time = end_time - chrono::Duration::minutes(1);
    let shared = rng.uuid();
    let baseline = 50.0 + rng.below(5000) as f64 / 100.0;
    let observed = 300 + rng.below(700);
    let (event_source, event_name) = *rng.pick(&[
        ("ssm.amazonaws.com", "UpdateInstanceInformation"),
        ("ec2.amazonaws.com", "DescribeInstances"),
        ("iam.amazonaws.com", "CreateAccessKey"),
    ]);
    let details = |state: &str, with_duration: bool| {
        let mut statistics = json!({
            "baseline": {"average": baseline},
            "insight": {"average": observed}
        });
        if with_duration {
            statistics["insightDuration"] = json!(1);
        }
        json!({
            "state": state,
            "eventSource": event_source,
            "eventName": event_name,
            "insightType": "ApiCallRateInsight",
            "insightContext": {"statistics": statistics}
        })
    };
    let records = vec![
        InsightEvent {
            event_version: "1.07",
            event_time: iso_time(start_time),
            aws_region: region.to_owned(),
            event_id: rng.uuid(),
            event_type: "AwsCloudTrailInsight",
            recipient_account_id: account_id.to_owned(),
            shared_event_id: shared.clone(),
            insight_details: details("Start", false),
            event_category: "Insight",
        },
        InsightEvent {
            event_version: "1.07",
            event_time: iso_time(end_time),
            aws_region: region.to_owned(),
            event_id: rng.uuid(),
            event_type: "AwsCloudTrailInsight",
            recipient_account_id: account_id.to_owned(),
            shared_event_id: shared,
            insight_details: details("End", true),
            event_category: "Insight",
        },
    ];
    let inflated = serde_json::to_vec(&Records { records }).expect("serialize insight records");
    GeneratedLog {
        inflated,
        oldest_event_time: start_time,
        newest_event_time: end_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    /// docs/cloudtrail-format.md §1 patterns, written as plain checks so no regex crate is needed.
    fn is_log_key(key: &str, root: &str, family: &str, account_id: &str, region: &str) -> bool {
        let Some(rest) = key.strip_prefix(&format!("{root}/{family}/{region}/")) else {
            return false;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() != 4 {
            return false;
        }
        let (year, month, day, name) = (parts[0], parts[1], parts[2], parts[3]);
        let digits = |text: &str, length: usize| {
            text.len() == length && text.bytes().all(|byte| byte.is_ascii_digit())
        };
        if !(digits(year, 4) && digits(month, 2) && digits(day, 2)) {
            return false;
        }
        let Some(name_rest) = name
            .strip_prefix(&format!("{account_id}_{family}_{region}_"))
            .and_then(|rest| rest.strip_suffix(".json.gz"))
        else {
            return false;
        };
        // YYYYMMDDTHHmmZ_<16 alnum>
        let bytes = name_rest.as_bytes();
        name_rest.len() == 14 + 1 + 16
            && name_rest[..8] == format!("{year}{month}{day}")
            && bytes[8] == b'T'
            && name_rest[9..13].bytes().all(|byte| byte.is_ascii_digit())
            && bytes[13] == b'Z'
            && bytes[14] == b'_'
            && name_rest[15..]
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric())
    }

    #[test]
    fn key_names_match_the_spec_layout() {
        let delivered = Utc.with_ymd_and_hms(2026, 3, 9, 7, 5, 42).unwrap();
        let root = key_root("org", Some("o-sim1234567"), "222222222201");
        assert_eq!(root, "org/AWSLogs/o-sim1234567/222222222201");
        let key = log_key(
            &root,
            LOG_FAMILY,
            "222222222201",
            "eu-west-1",
            delivered,
            "Mu0KsOhtH1ar15ZZ",
        );
        assert_eq!(
            key,
            "org/AWSLogs/o-sim1234567/222222222201/CloudTrail/eu-west-1/2026/03/09/222222222201_CloudTrail_eu-west-1_20260309T0705Z_Mu0KsOhtH1ar15ZZ.json.gz"
        );
        assert!(is_log_key(
            &key,
            &root,
            LOG_FAMILY,
            "222222222201",
            "eu-west-1"
        ));
        let insight = log_key(
            &key_root("", None, "222222222201"),
            INSIGHT_FAMILY,
            "222222222201",
            "us-east-1",
            delivered,
            "abcdEFGH12345678",
        );
        assert!(is_log_key(
            &insight,
            "AWSLogs/222222222201",
            INSIGHT_FAMILY,
            "222222222201",
            "us-east-1"
        ));

        let end = Utc.with_ymd_and_hms(2026, 3, 9, 23, 4, 4).unwrap();
        let digest = digest_key(
            "AWSLogs/222222222201",
            "222222222201",
            "eu-west-1",
            PER_ACCOUNT_TRAIL_NAME,
            "us-east-1",
            end,
            false,
        );
        assert_eq!(
            digest,
            "AWSLogs/222222222201/CloudTrail-Digest/eu-west-1/2026/03/09/222222222201_CloudTrail-Digest_eu-west-1_management-events_us-east-1_20260309T230404Z.json.gz"
        );
        // The CLI's fixed-slice date extraction (docs/cloudtrail-format.md §1.2).
        assert_eq!(
            &digest[digest.len() - 24..digest.len() - 8],
            "20260309T230404Z"
        );
        let backfill = digest_key(
            "AWSLogs/222222222201",
            "222222222201",
            "eu-west-1",
            PER_ACCOUNT_TRAIL_NAME,
            "us-east-1",
            end,
            true,
        );
        assert!(backfill.ends_with("_20260309T230404Z_backfill.json.gz"));
        assert_eq!(
            &backfill[backfill.len() - 33..backfill.len() - 17],
            "20260309T230404Z"
        );
    }

    #[test]
    fn renders_the_real_digest_byte_for_byte() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "testdata/real-digest-327878933619_ap-northeast-1_llm-guard-trail_us-west-2_20231015T230404Z.json",
        );
        let original = std::fs::read(path).unwrap();
        let parsed = DigestBody::parse(&original).unwrap();
        assert_eq!(parsed.log_files.len(), 5);
        assert!(!parsed.digest_s3_object.contains('\\'));
        assert_eq!(parsed.render(true).as_bytes(), original.as_slice());
        let unescaped = parsed.render(false);
        assert!(!unescaped.contains("\\/"));
        assert_eq!(DigestBody::parse(unescaped.as_bytes()).unwrap(), parsed);
    }

    #[test]
    fn starting_and_empty_digests_render_nulls() {
        let body = DigestBody {
            aws_account_id: "222222222201".into(),
            digest_start_time: "2026-03-09T22:04:04Z".into(),
            digest_end_time: "2026-03-09T23:04:04Z".into(),
            digest_s3_bucket: "b".into(),
            digest_s3_object: "k/x.json.gz".into(),
            digest_public_key_fingerprint: "0".repeat(32),
            digest_signature_algorithm: "SHA256withRSA".into(),
            newest_event_time: None,
            oldest_event_time: None,
            previous: None,
            log_files: Vec::new(),
        };
        let text = body.render(false);
        assert!(text.contains("\"newestEventTime\":null,\"oldestEventTime\":null,\"previousDigestS3Bucket\":null,\"previousDigestS3Object\":null,\"previousDigestHashValue\":null,\"previousDigestHashAlgorithm\":null,\"previousDigestSignature\":null,\"logFiles\":[]}"));
        let value: Value = serde_json::from_str(&text).unwrap();
        let names: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(names.len(), 15);
        assert_eq!(DigestBody::parse(text.as_bytes()).unwrap(), body);
    }

    #[test]
    fn logs_are_single_member_gzip_of_compact_records() {
        let mut rng = SimRng::derive(1, &[]);
        let delivered = Utc.with_ymd_and_hms(2026, 3, 9, 7, 5, 0).unwrap();
        let log = generate_log(&mut rng, "222222222201", "us-east-1", delivered, 3);
        let compressed = gzip(&log.inflated);
        assert_eq!(&compressed[..2], &[0x1f, 0x8b]);
        assert_eq!(gunzip_single_member(&compressed).unwrap(), log.inflated);
        let text = String::from_utf8(log.inflated.clone()).unwrap();
        assert!(text.starts_with("{\"Records\":[{\"eventVersion\":"));
        assert!(!text.contains('\n'));
        let value: Value = serde_json::from_str(&text).unwrap();
        let records = value["Records"].as_array().unwrap();
        assert_eq!(records.len(), 3);
        for record in records {
            assert_eq!(record["recipientAccountId"], "222222222201");
            assert_eq!(record["awsRegion"], "us-east-1");
            assert!(record["eventTime"].as_str().unwrap() <= iso_time(delivered).as_str());
        }
        assert!(log.oldest_event_time <= log.newest_event_time);
        let mut appended = compressed.clone();
        appended.extend(gzip(b"{}"));
        assert!(gunzip_single_member(&appended).is_err());
        let insight = generate_insight_log(&mut rng, "222222222201", "us-east-1", delivered);
        let insight_value: Value = serde_json::from_slice(&insight.inflated).unwrap();
        assert_eq!(insight_value["Records"][0]["eventCategory"], "Insight");
    }
}
