//! Every IAM, KMS and S3 policy document the simulator provisions, in one place.
//!
//! Each function takes the names it needs as parameters and returns the document as
//! JSON, so the same documents can later come from the CloudFormation templates in
//! `infra/cloudformation/` without changing the callers.
//!
//! ministack 1.5.33 (AUTH=true) limits what the archive bucket policy can say; see
//! [`ArchivePolicyOptions`].

use serde_json::{json, Value};

/// The role every member account (and the organization trail's reader account)
/// exposes to the collector.
pub const READER_ROLE_NAME: &str = "TrailvaultReader";

/// Statements of the archive bucket policy that the target cannot evaluate correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchivePolicyOptions {
    /// Deny every request with `aws:SecureTransport` = false. Real AWS: yes. The
    /// emulator is plain HTTP, so this statement would deny everything.
    pub deny_insecure_transport: bool,
    /// Deny puts whose `s3:x-amz-server-side-encryption-aws-kms-key-id` is not the
    /// archive key. Real AWS: yes. ministack 1.5.33 never sets that condition key, so
    /// `StringNotEquals` on the absent key is true and the statement denies every put.
    pub deny_other_kms_keys: bool,
}

impl ArchivePolicyOptions {
    /// The full policy, for real AWS.
    pub const AWS: ArchivePolicyOptions = ArchivePolicyOptions {
        deny_insecure_transport: true,
        deny_other_kms_keys: true,
    };
    /// What ministack (plain HTTP, no KMS key-id condition key) can enforce.
    pub const EMULATOR: ArchivePolicyOptions = ArchivePolicyOptions {
        deny_insecure_transport: false,
        deny_other_kms_keys: false,
    };
}

/// Key policy of the archive's KMS key: the audit account administers it, the
/// collector may use it for S3 SSE-KMS; no member principal appears.
pub fn archive_kms_key_policy(audit_account_id: &str, collector_principal_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Id": "trailvault-archive-key",
        "Statement": [
            {
                "Sid": "AuditAccountAdministersTheKey",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{audit_account_id}:root")},
                "Action": "kms:*",
                "Resource": "*"
            },
            {
                "Sid": "CollectorEncryptsArchiveObjects",
                "Effect": "Allow",
                "Principal": {"AWS": collector_principal_arn},
                "Action": [
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:GenerateDataKey",
                    "kms:DescribeKey"
                ],
                "Resource": "*"
            }
        ]
    })
}

/// Bucket policy of the archive: nobody deletes or bypasses retention; puts must be
/// SSE-KMS (with the archive key, where expressible) and come from the collector.
///
/// "Only the collector writes" is a `Deny` on `aws:PrincipalArn` rather than a
/// `NotPrincipal`: ministack treats a `NotPrincipal`-only statement as never
/// matching, and AWS recommends the condition form anyway.
pub fn archive_bucket_policy(
    archive_bucket: &str,
    kms_key_arn: &str,
    collector_principal_arn: &str,
    options: ArchivePolicyOptions,
) -> Value {
    let bucket_arn = format!("arn:aws:s3:::{archive_bucket}");
    let objects_arn = format!("arn:aws:s3:::{archive_bucket}/*");
    let mut statements = vec![
        json!({
            "Sid": "DenyDeletesAndRetentionBypass",
            "Effect": "Deny",
            "Principal": "*",
            "Action": [
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
                "s3:BypassGovernanceRetention"
            ],
            "Resource": objects_arn
        }),
        json!({
            "Sid": "DenyPutsWithoutSseKms",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects_arn,
            "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}
        }),
    ];
    if options.deny_other_kms_keys {
        statements.push(json!({
            "Sid": "DenyPutsWithAnotherKmsKey",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects_arn,
            "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": kms_key_arn}}
        }));
    }
    statements.push(json!({
        "Sid": "DenyPutsByAnyoneButTheCollector",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": objects_arn,
        "Condition": {"ArnNotEquals": {"aws:PrincipalArn": collector_principal_arn}}
    }));
    if options.deny_insecure_transport {
        statements.push(json!({
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, objects_arn],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// Identity policy of the collector: assume the reader roles, write and inspect the
/// archive (never delete), use the archive key, publish findings, read public keys
/// and the organization's accounts.
pub fn collector_identity_policy(
    archive_bucket: &str,
    kms_key_arn: &str,
    reader_role_name: &str,
) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AssumeReaderRoles",
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Resource": format!("arn:aws:iam::*:role/{reader_role_name}")
            },
            {
                "Sid": "WriteAndInspectTheArchive",
                "Effect": "Allow",
                "Action": [
                    "s3:PutObject",
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "s3:GetObjectAttributes",
                    "s3:GetObjectRetention",
                    "s3:PutObjectRetention",
                    "s3:GetObjectLegalHold",
                    "s3:ListBucket",
                    "s3:ListBucketVersions",
                    "s3:GetBucket*",
                    "s3:GetEncryptionConfiguration",
                    "s3:GetLifecycleConfiguration"
                ],
                "Resource": [
                    format!("arn:aws:s3:::{archive_bucket}"),
                    format!("arn:aws:s3:::{archive_bucket}/*")
                ]
            },
            {
                "Sid": "UseTheArchiveKey",
                "Effect": "Allow",
                "Action": [
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:GenerateDataKey",
                    "kms:DescribeKey"
                ],
                "Resource": kms_key_arn
            },
            {
                "Sid": "AlertsKeysAndAccounts",
                "Effect": "Allow",
                "Action": [
                    "sns:Publish",
                    "cloudtrail:ListPublicKeys",
                    "organizations:ListAccounts"
                ],
                "Resource": "*"
            }
        ]
    })
}

/// Trust policy of a reader role: only `trusted_principal_arn`, only with the
/// ExternalId.
pub fn reader_trust_policy(trusted_principal_arn: &str, external_id: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TrailvaultCollector",
                "Effect": "Allow",
                "Principal": {"AWS": trusted_principal_arn},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}}
            }
        ]
    })
}

/// Permissions of a reader role: list and read the trail buckets, nothing else.
pub fn reader_permissions_policy(trail_buckets: &[&str]) -> Value {
    let bucket_arns: Vec<String> = trail_buckets
        .iter()
        .map(|bucket| format!("arn:aws:s3:::{bucket}"))
        .collect();
    let object_arns: Vec<String> = trail_buckets
        .iter()
        .map(|bucket| format!("arn:aws:s3:::{bucket}/*"))
        .collect();
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListTrailBuckets",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation"],
                "Resource": bucket_arns
            },
            {
                "Sid": "ReadTrailFiles",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": object_arns
            }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_policy_options_add_statements() {
        let emulator = archive_bucket_policy(
            "archive",
            "arn:aws:kms:us-east-1:111111111111:key/k",
            "arn:aws:iam::111111111111:user/trailvault-collector",
            ArchivePolicyOptions::EMULATOR,
        );
        let aws = archive_bucket_policy(
            "archive",
            "arn:aws:kms:us-east-1:111111111111:key/k",
            "arn:aws:iam::111111111111:user/trailvault-collector",
            ArchivePolicyOptions::AWS,
        );
        let sids = |policy: &Value| -> Vec<String> {
            policy["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .map(|statement| statement["Sid"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(sids(&emulator).len(), 3);
        assert_eq!(sids(&aws).len(), 5);
        for statement in aws["Statement"].as_array().unwrap() {
            assert_eq!(statement["Effect"], "Deny");
            assert!(statement.get("NotPrincipal").is_none());
        }
    }

    #[test]
    fn trust_policy_names_one_principal_and_the_external_id() {
        let trust = reader_trust_policy("arn:aws:iam::111111111111:user/c", "ext");
        let statement = &trust["Statement"][0];
        assert_eq!(
            statement["Principal"]["AWS"],
            "arn:aws:iam::111111111111:user/c"
        );
        assert_eq!(
            statement["Condition"]["StringEquals"]["sts:ExternalId"],
            "ext"
        );
    }
}
