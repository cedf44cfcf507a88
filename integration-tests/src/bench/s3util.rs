//! S3 plumbing of the benchmark: static-credential clients for SeaweedFS and the
//! archive buckets (versioning + Object Lock + default SSE-KMS + deny policy).
//!
//! Part of the `trailbench` binary (included with `#[path]` from
//! `src/bin/trailbench.rs`; not a module of the library).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_s3::types::{
    BucketVersioningStatus, DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled,
    ObjectLockRetentionMode, ObjectLockRule, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};

/// Where the benchmark's S3 server is and who we are on it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

/// An SDK configuration with static credentials, the SDK's standard retries (3
/// attempts) and request checksums only where the operation requires them when
/// `bare` is set (the GET→PUT ceiling), the SDK defaults otherwise.
pub fn sdk_config(endpoint: &Endpoint, bare: bool) -> SdkConfig {
    let credentials = Credentials::new(
        &endpoint.access_key_id,
        &endpoint.secret_access_key,
        None,
        None,
        "trailbench-static",
    );
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(endpoint.region.clone()))
        .endpoint_url(&endpoint.url)
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3));
    if bare {
        builder = builder
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
    }
    builder.build()
}

/// Path-style client (SeaweedFS on loopback has no virtual-host DNS).
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

fn sdk_error<E>(what: &str, error: aws_sdk_s3::error::SdkError<E>) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    anyhow::anyhow!("{what}: {}", aws_sdk_s3::error::DisplayErrorContext(&error))
}

/// Creates `bucket` if it does not exist yet.
pub async fn ensure_bucket(client: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    if client.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|error| sdk_error(&format!("create bucket {bucket}"), error))?;
    Ok(())
}

/// What an archive bucket gets; every step is reported, a refused step is an error
/// (the benchmark must not silently measure against an unlocked archive).
#[derive(Debug, Clone)]
pub struct ArchiveSpec {
    pub bucket: String,
    pub kms_key_id: String,
    pub retention_days: i32,
    /// Only create a versioned bucket with default SSE-KMS (for the peers' "plain"
    /// destinations): no Object Lock, no policy.
    pub plain: bool,
    /// No versioning, no encryption default, nothing: the bare GET→PUT destination.
    pub bare: bool,
}

pub async fn create_archive(client: &aws_sdk_s3::Client, spec: &ArchiveSpec) -> anyhow::Result<()> {
    let bucket = spec.bucket.as_str();
    let locked = !spec.plain && !spec.bare;
    client
        .create_bucket()
        .bucket(bucket)
        .object_lock_enabled_for_bucket(locked)
        .send()
        .await
        .map_err(|error| sdk_error(&format!("create bucket {bucket}"), error))?;
    if spec.bare {
        return Ok(());
    }
    client
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|error| sdk_error(&format!("enable versioning on {bucket}"), error))?;
    client
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::AwsKms)
                                .kms_master_key_id(&spec.kms_key_id)
                                .build()?,
                        )
                        .bucket_key_enabled(true)
                        .build(),
                )
                .build()?,
        )
        .send()
        .await
        .map_err(|error| sdk_error(&format!("default SSE-KMS on {bucket}"), error))?;
    if !locked {
        return Ok(());
    }
    client
        .put_object_lock_configuration()
        .bucket(bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(
                            DefaultRetention::builder()
                                .mode(ObjectLockRetentionMode::Compliance)
                                .days(spec.retention_days)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|error| sdk_error(&format!("Object Lock default retention on {bucket}"), error))?;
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyDeletes",
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutBucketObjectLockConfiguration"],
                "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]
            },
            // The lock guards the collector requires of an archive (the audit
            // template's DenyPutsWithAWeakerLockMode and DenyPutsRetainedTooBriefly).
            {
                "Sid": "DenyPutsWithAWeakerLockMode",
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:PutObject", "s3:PutObjectRetention"],
                "Resource": format!("arn:aws:s3:::{bucket}/*"),
                "Condition": {
                    "Null": {"s3:object-lock-mode": "false"},
                    "StringNotEquals": {"s3:object-lock-mode": "COMPLIANCE"}
                }
            },
            {
                "Sid": "DenyPutsRetainedTooBriefly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": format!("arn:aws:s3:::{bucket}/*"),
                "Condition": {
                    "NumericLessThan": {
                        "s3:object-lock-remaining-retention-days": spec.retention_days.saturating_sub(1).to_string()
                    }
                }
            }
        ]
    });
    client
        .put_bucket_policy()
        .bucket(bucket)
        .policy(policy.to_string())
        .send()
        .await
        .map_err(|error| sdk_error(&format!("bucket policy on {bucket}"), error))?;
    Ok(())
}

/// Every key under `prefix` with its size.
pub async fn list_all(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|error| sdk_error(&format!("list s3://{bucket}/{prefix}"), error))?;
        for object in page.contents() {
            if let Some(key) = object.key() {
                out.push((key.to_owned(), object.size().unwrap_or(0)));
            }
        }
    }
    Ok(out)
}
