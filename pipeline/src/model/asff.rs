//! Findings in the AWS Security Finding Format (ASFF), ready for Security
//! Hub's `BatchImportFindings` as a custom integration: the `ProductArn` is
//! `arn:PARTITION:securityhub:REGION:ACCOUNT:product/ACCOUNT/default` of the
//! account that imports them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::cloudtrail::digest::sha256;
use crate::model::findings::{Finding, FindingKind, Severity};

/// The ASFF schema version Security Hub takes.
pub const SCHEMA_VERSION: &str = "2018-10-08";

/// Longest `Title` ASFF takes.
pub const TITLE_CHARS: usize = 256;
/// Longest `Description` ASFF takes.
pub const DESCRIPTION_CHARS: usize = 1024;
/// Longest value of the other strings trailvault fills in (Security Hub's
/// limit for identifiers and most fields).
pub const FIELD_CHARS: usize = 512;

/// The account and Region that import the findings (named by `ProductArn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsffProduct {
    /// 12 digits.
    pub account_id: String,
    pub region: String,
}

impl AsffProduct {
    /// The partition of the Region (`aws`, `aws-us-gov`, `aws-cn`).
    fn partition(&self) -> &'static str {
        if self.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else if self.region.starts_with("cn-") {
            "aws-cn"
        } else {
            "aws"
        }
    }

    /// `arn:PARTITION:securityhub:REGION:ACCOUNT:product/ACCOUNT/default`.
    pub fn product_arn(&self) -> String {
        format!(
            "arn:{}:securityhub:{}:{}:product/{}/default",
            self.partition(),
            self.region,
            self.account_id,
            self.account_id
        )
    }
}

/// The ASFF severity label of a contract severity: `critical` findings are
/// evidence of lost or altered history (CRITICAL); `warning`s are anomalies
/// that can have an innocent cause (MEDIUM).
pub fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "CRITICAL",
        Severity::Warning => "MEDIUM",
    }
}

/// The ASFF finding type (`namespace/category/classifier`) of a kind.
fn finding_type(kind: FindingKind) -> String {
    let namespace = match kind {
        FindingKind::ArchiveMisconfigured | FindingKind::ArchiveCopyInvalid => {
            "Software and Configuration Checks/AWS Security Best Practices"
        }
        _ if kind.severity() == Severity::Warning => "Unusual Behaviors/Data",
        // Deleting, altering or re-signing trail files hides what was done.
        _ => "TTPs/Defense Evasion",
    };
    format!("{namespace}/trailvault {kind}")
}

/// `text` cut to `max` characters (`…` marks a cut).
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// One finding as an ASFF finding, generated at `now`. Its `Id` is stable
/// across exports (a hash of the finding's identity), so importing again
/// updates the finding in Security Hub instead of adding one.
pub fn asff_finding(finding: &Finding, product: &AsffProduct, now: DateTime<Utc>) -> Value {
    let identity = hex::encode(sha256(finding.dedup_key().as_bytes()));
    let account = if is_account_id(&finding.account_id) {
        finding.account_id.clone()
    } else {
        product.account_id.clone()
    };
    let partition = product.partition();
    let resource = if finding.key.is_empty() {
        json!({
            "Type": "AwsS3Bucket",
            "Id": cut(&format!("arn:{partition}:s3:::{}", finding.bucket), FIELD_CHARS),
            "Partition": partition,
            "Region": product.region,
        })
    } else {
        json!({
            "Type": "AwsS3Object",
            "Id": cut(&format!("arn:{partition}:s3:::{}/{}", finding.bucket, finding.key), FIELD_CHARS),
            "Partition": partition,
            "Region": finding.region.as_deref().map_or(product.region.clone(), |r| cut(r, 32)),
        })
    };
    let mut product_fields = serde_json::Map::new();
    let mut field = |name: &str, value: &str| {
        product_fields.insert(format!("trailvault/{name}"), json!(cut(value, FIELD_CHARS)));
    };
    field("kind", finding.kind.as_str());
    field("severity", severity_text(finding.severity));
    field("bucket", &finding.bucket);
    if let Some(owner) = &finding.bucket_owner {
        field("bucket_owner", owner);
    }
    field("key", &finding.key);
    if let Some(archive_key) = &finding.archive_key {
        field("archive_key", archive_key);
    }
    if let Some(trail) = &finding.trail {
        field("trail", trail);
    }
    if let Some(region) = &finding.region {
        field("region", region);
    }
    let title = format!(
        "trailvault: {} in account {}",
        finding.kind, finding.account_id
    );
    let description = if finding.detail.trim().is_empty() {
        format!("{} ({})", finding.kind, finding.key)
    } else {
        finding.detail.clone()
    };
    let mut asff = json!({
        "SchemaVersion": SCHEMA_VERSION,
        "Id": format!("trailvault/{}/{identity}", finding.kind),
        "ProductArn": product.product_arn(),
        "GeneratorId": format!("trailvault/{}", finding.kind),
        "AwsAccountId": account,
        "Types": [finding_type(finding.kind)],
        "FirstObservedAt": time(finding.first_seen),
        "CreatedAt": time(finding.first_seen),
        "UpdatedAt": time(now),
        "Severity": {
            "Label": severity_label(finding.severity),
            "Original": severity_text(finding.severity),
        },
        "Title": cut(&title, TITLE_CHARS),
        "Description": cut(&description, DESCRIPTION_CHARS),
        "ProductName": "trailvault",
        "CompanyName": "trailvault",
        "Resources": [resource],
        "ProductFields": product_fields,
        "RecordState": "ACTIVE",
    });
    if let Some(at) = finding.acknowledged_at {
        // Acknowledged: seen by an operator, no longer open.
        asff["RecordState"] = json!("ARCHIVED");
        asff["ProductFields"]["trailvault/acknowledged_at"] = json!(time(at));
    }
    asff
}

fn severity_text(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
    }
}

/// `{"Findings": [...]}`: the request of `BatchImportFindings` (which takes
/// at most 100 findings a call; split larger exports).
pub fn asff_document(findings: &[Finding], product: &AsffProduct, now: DateTime<Utc>) -> Value {
    json!({
        "Findings": findings
            .iter()
            .map(|finding| asff_finding(finding, product, now))
            .collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product() -> AsffProduct {
        AsffProduct {
            account_id: "999988887777".into(),
            region: "eu-west-1".into(),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// The top-level attributes Security Hub requires of every finding.
    const REQUIRED: [&str; 12] = [
        "SchemaVersion",
        "Id",
        "ProductArn",
        "GeneratorId",
        "AwsAccountId",
        "Types",
        "CreatedAt",
        "UpdatedAt",
        "Severity",
        "Title",
        "Description",
        "Resources",
    ];

    fn assert_valid(asff: &Value) {
        for field in REQUIRED {
            let value = &asff[field];
            assert!(!value.is_null(), "{field} missing: {asff}");
            if let Some(text) = value.as_str() {
                assert!(!text.is_empty(), "{field} empty");
                assert!(text.chars().count() <= FIELD_CHARS.max(DESCRIPTION_CHARS));
            }
        }
        assert_eq!(asff["SchemaVersion"], SCHEMA_VERSION);
        assert!(asff["Id"].as_str().unwrap().chars().count() <= FIELD_CHARS);
        assert!(asff["GeneratorId"].as_str().unwrap().chars().count() <= FIELD_CHARS);
        assert!(asff["Title"].as_str().unwrap().chars().count() <= TITLE_CHARS);
        assert!(asff["Description"].as_str().unwrap().chars().count() <= DESCRIPTION_CHARS);
        assert!(is_account_id(asff["AwsAccountId"].as_str().unwrap()));
        for time_field in ["CreatedAt", "UpdatedAt"] {
            DateTime::parse_from_rfc3339(asff[time_field].as_str().unwrap()).unwrap();
        }
        let types = asff["Types"].as_array().unwrap();
        assert_eq!(types.len(), 1);
        assert_eq!(
            types[0].as_str().unwrap().split('/').count(),
            3,
            "{types:?}"
        );
        let label = asff["Severity"]["Label"].as_str().unwrap();
        assert!(["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"].contains(&label));
        let resources = asff["Resources"].as_array().unwrap();
        assert!(!resources.is_empty() && resources.len() <= 32);
        for resource in resources {
            assert!(resource["Type"].as_str().is_some_and(|t| !t.is_empty()));
            let id = resource["Id"].as_str().unwrap();
            assert!(!id.is_empty() && id.chars().count() <= FIELD_CHARS);
        }
        for (name, value) in asff["ProductFields"].as_object().unwrap() {
            assert!(name.chars().count() <= 128);
            assert!(value.as_str().unwrap().chars().count() <= FIELD_CHARS);
        }
    }

    #[test]
    fn every_kind_makes_a_finding_with_the_required_fields_and_a_consistent_severity() {
        for kind in FindingKind::ALL {
            let finding = Finding::new(
                kind,
                "111122223333",
                "trail-bucket",
                "AWSLogs/k.json.gz",
                "gone".into(),
            )
            .with_region(Some("us-east-1"))
            .with_archive_key(Some("archive/111122223333/trail-bucket/AWSLogs/k.json.gz"));
            let asff = asff_finding(&finding, &product(), now());
            assert_valid(&asff);
            assert_eq!(asff["AwsAccountId"], "111122223333");
            assert_eq!(
                asff["ProductArn"],
                "arn:aws:securityhub:eu-west-1:999988887777:product/999988887777/default"
            );
            assert_eq!(asff["GeneratorId"], format!("trailvault/{kind}"));
            assert_eq!(asff["Severity"]["Original"], severity_text(kind.severity()));
            let expected = if kind.severity() == Severity::Critical {
                "CRITICAL"
            } else {
                "MEDIUM"
            };
            assert_eq!(asff["Severity"]["Label"], expected, "{kind}");
            assert_eq!(asff["Resources"][0]["Type"], "AwsS3Object");
            assert_eq!(
                asff["Resources"][0]["Id"],
                "arn:aws:s3:::trail-bucket/AWSLogs/k.json.gz"
            );
            assert_eq!(asff["RecordState"], "ACTIVE");
            assert_eq!(asff["UpdatedAt"], "2026-03-01T12:00:00.000Z");
        }
    }

    #[test]
    fn the_id_is_stable_and_distinct_per_finding() {
        let one = Finding::new(
            FindingKind::DigestMissing,
            "111122223333",
            "b",
            "k1",
            "x".into(),
        );
        let mut again = one.clone();
        again.detail = "other words".into();
        let other = Finding::new(
            FindingKind::DigestMissing,
            "111122223333",
            "b",
            "k2",
            "x".into(),
        );
        let id = |f: &Finding| asff_finding(f, &product(), now())["Id"].clone();
        assert_eq!(id(&one), id(&again));
        assert_ne!(id(&one), id(&other));
    }

    #[test]
    fn hostile_text_is_cut_to_the_limits_and_stays_valid_json() {
        let mut hostile = Finding::new(
            FindingKind::DigestMalformed,
            "111122223333",
            "b",
            &"\"\u{0}é".repeat(1024),
            "\"\\\n".repeat(100_000),
        );
        hostile.trail = Some("t".repeat(10_000));
        hostile.region = Some("r".repeat(10_000));
        hostile.archive_key = Some("a".repeat(10_000));
        let document = asff_document(&[hostile], &product(), now());
        let text = serde_json::to_string(&document).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_valid(&parsed["Findings"][0]);
        assert!(
            text.len() < 240 * 1024,
            "a finding stays under Security Hub's 240 KB"
        );
    }

    #[test]
    fn a_finding_about_the_archive_itself_names_the_bucket_and_the_importing_account() {
        let mut finding = Finding::new(
            FindingKind::ArchiveMisconfigured,
            "",
            "archive-bucket",
            "",
            "no lock".into(),
        );
        finding.acknowledged_at = Some(now());
        let asff = asff_finding(&finding, &product(), now());
        assert_valid(&asff);
        assert_eq!(asff["AwsAccountId"], "999988887777");
        assert_eq!(asff["Resources"][0]["Type"], "AwsS3Bucket");
        assert_eq!(asff["Resources"][0]["Id"], "arn:aws:s3:::archive-bucket");
        assert_eq!(asff["RecordState"], "ARCHIVED");
        assert!(asff["Types"][0]
            .as_str()
            .unwrap()
            .starts_with("Software and Configuration Checks/"));
    }

    #[test]
    fn the_partition_follows_the_region() {
        let gov = AsffProduct {
            account_id: "111111111111".into(),
            region: "us-gov-west-1".into(),
        };
        assert_eq!(
            gov.product_arn(),
            "arn:aws-us-gov:securityhub:us-gov-west-1:111111111111:product/111111111111/default"
        );
    }
}
