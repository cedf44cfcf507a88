//! [`Archive`] over S3, written with the audit identity: SSE-KMS under the
//! audit key (with S3 Bucket Keys), SHA-256 checksums, Object Lock.

use async_trait::async_trait;
use aws_sdk_s3::primitives::{ByteStream as SdkBody, DateTime as SdkDateTime};
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload,
    CompletedPart, ExpirationStatus, ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode,
    ServerSideEncryption,
};
use aws_sdk_s3::Client;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use trailvault_pipeline::seams::{
    Archive, ArchivedHead, ArchivedVersion, BucketProtection, Lifecycle, LockMode, PutSpec,
    SourceObject, UploadedPart, VersionMarker, VersionsPage,
};
use trailvault_pipeline::SeamError;

use super::{get_object, lowercase_metadata, strip_etag};
use crate::aws::{classify, Timeouts};

pub struct S3Archive {
    client: Client,
    bucket: String,
    timeouts: Timeouts,
}

impl S3Archive {
    /// `timeouts` sets how long an upload may take, by its size; every other
    /// request keeps the client's own timeouts.
    pub fn new(client: Client, bucket: &str, timeouts: Timeouts) -> S3Archive {
        S3Archive {
            client,
            bucket: bucket.to_string(),
            timeouts,
        }
    }

    /// The client's settings for one upload of `bytes`.
    fn upload_override(&self, bytes: usize) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::default()
            .timeout_config(self.timeouts.upload_sdk_config(bytes as u64))
    }
}

fn sdk_lock_mode(mode: LockMode) -> ObjectLockMode {
    match mode {
        LockMode::Compliance => ObjectLockMode::Compliance,
        LockMode::Governance => ObjectLockMode::Governance,
    }
}

fn sdk_time(time: DateTime<Utc>) -> SdkDateTime {
    SdkDateTime::from_secs(time.timestamp())
}

fn chrono_time(time: &SdkDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

fn lock_mode_from(text: &str) -> Option<LockMode> {
    match text.to_ascii_uppercase().as_str() {
        "COMPLIANCE" => Some(LockMode::Compliance),
        "GOVERNANCE" => Some(LockMode::Governance),
        _ => None,
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Sets what a [`PutSpec`] asks of a new object on a PutObject or a
/// CreateMultipartUpload request: SHA-256 checksums, SSE-KMS under the audit
/// key with an S3 Bucket Key, Object Lock, user metadata and content headers.
/// The SDK gives the two fluent builders these setters but no common trait.
macro_rules! with_put_spec {
    ($request:expr, $spec:expr) => {{
        let spec: &PutSpec = $spec;
        $request
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&spec.kms_key_id)
            .bucket_key_enabled(true)
            .object_lock_mode(sdk_lock_mode(spec.lock_mode))
            .object_lock_retain_until_date(sdk_time(spec.retain_until))
            .set_metadata(Some(spec.metadata.clone().into_iter().collect()))
            .set_content_type(spec.content_type.clone())
            .set_content_encoding(spec.content_encoding.clone())
    }};
}

#[async_trait]
impl Archive for S3Archive {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(
        &self,
        spec: &PutSpec,
        body: Bytes,
        sha256: [u8; 32],
    ) -> Result<Option<String>, SeamError> {
        let operation = format!("PutObject s3://{}/{}", self.bucket, spec.key);
        let timeouts = self.upload_override(body.len());
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&spec.key)
            .body(SdkBody::from(body));
        let output = with_put_spec!(request, spec)
            // Both the algorithm (in the spec) and the value: some servers drop
            // a bare value, and S3 refuses Object Lock puts without any
            // integrity header.
            .checksum_sha256(b64(&sha256))
            // The body is protected by `x-amz-checksum-sha256` (S3 refuses a
            // mismatch with BadDigest); signing it too would hash it again.
            .customize()
            .disable_payload_signing()
            .config_override(timeouts)
            .send()
            .await
            .map_err(|e| classify(&operation, e))?;
        Ok(output.version_id().map(str::to_string))
    }

    async fn create_multipart(&self, spec: &PutSpec) -> Result<String, SeamError> {
        let operation = format!("CreateMultipartUpload s3://{}/{}", self.bucket, spec.key);
        let request = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&spec.key);
        let output = with_put_spec!(request, spec)
            .send()
            .await
            .map_err(|e| classify(&operation, e))?;
        output
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| SeamError::Permanent(format!("{operation}: no upload id")))
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
        sha256: [u8; 32],
    ) -> Result<UploadedPart, SeamError> {
        let operation = format!("UploadPart s3://{}/{key} #{part_number}", self.bucket);
        let encoded = b64(&sha256);
        let timeouts = self.upload_override(body.len());
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .body(SdkBody::from(body))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&encoded)
            .customize()
            .disable_payload_signing()
            .config_override(timeouts)
            .send()
            .await
            .map_err(|e| classify(&operation, e))?;
        Ok(UploadedPart {
            part_number,
            etag: strip_etag(output.e_tag()),
            sha256_base64: encoded,
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<Option<String>, SeamError> {
        let operation = format!("CompleteMultipartUpload s3://{}/{key}", self.bucket);
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|part| {
                        CompletedPart::builder()
                            .part_number(part.part_number)
                            .e_tag(&part.etag)
                            .checksum_sha256(&part.sha256_base64)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let output = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .map_err(|e| classify(&operation, e))?;
        Ok(output.version_id().map(str::to_string))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), SeamError> {
        let operation = format!("AbortMultipartUpload s3://{}/{key}", self.bucket);
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| classify(&operation, e))?;
        Ok(())
    }

    async fn head(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ArchivedHead>, SeamError> {
        let operation = format!("HeadObject s3://{}/{key}", self.bucket);
        let result = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => {
                return Ok(None)
            }
            Err(error) => {
                let classified = classify(&operation, error);
                return if classified.is_not_found() {
                    Ok(None)
                } else {
                    Err(classified)
                };
            }
        };
        Ok(Some(ArchivedHead {
            version_id: output.version_id().map(str::to_string),
            size: output.content_length().unwrap_or(0).max(0) as u64,
            checksum_sha256: output.checksum_sha256().map(str::to_string),
            sse_kms_key_id: output.ssekms_key_id().map(str::to_string),
            lock_mode: output
                .object_lock_mode()
                .and_then(|mode| lock_mode_from(mode.as_str())),
            retain_until: output.object_lock_retain_until_date().and_then(chrono_time),
            metadata: lowercase_metadata(output.metadata()),
        }))
    }

    async fn get(&self, key: &str, version_id: Option<&str>) -> Result<SourceObject, SeamError> {
        get_object(&self.client, &self.bucket, key, version_id, None).await
    }

    async fn list_versions_page(
        &self,
        prefix: &str,
        marker: Option<VersionMarker>,
    ) -> Result<VersionsPage, SeamError> {
        let operation = format!("ListObjectVersions s3://{}/{prefix}", self.bucket);
        let (key_marker, version_marker) = marker.unzip();
        let page = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker.flatten())
            .send()
            .await
            .map_err(|e| classify(&operation, e))?;
        let versions = page
            .versions()
            .iter()
            .filter_map(|version| {
                Some(ArchivedVersion {
                    key: version.key()?.to_string(),
                    version_id: version.version_id()?.to_string(),
                    is_latest: version.is_latest().unwrap_or(false),
                    size: version.size().unwrap_or(0).max(0) as u64,
                })
            })
            .collect();
        let next = match page.next_key_marker() {
            Some(key_marker) if page.is_truncated().unwrap_or(false) => Some((
                key_marker.to_string(),
                page.next_version_id_marker().map(str::to_string),
            )),
            _ => None,
        };
        Ok(VersionsPage { versions, next })
    }

    async fn put_retention(
        &self,
        key: &str,
        version_id: &str,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<(), SeamError> {
        let operation = format!("PutObjectRetention s3://{}/{key}", self.bucket);
        let mode = match mode {
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
            LockMode::Governance => ObjectLockRetentionMode::Governance,
        };
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .retention(
                ObjectLockRetention::builder()
                    .mode(mode)
                    .retain_until_date(sdk_time(until))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify(&operation, e))?;
        Ok(())
    }

    async fn protection(&self) -> Result<BucketProtection, SeamError> {
        let bucket = &self.bucket;
        let versioning = self
            .client
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| classify(&format!("GetBucketVersioning {bucket}"), e))?;
        let versioning_enabled = versioning.status() == Some(&BucketVersioningStatus::Enabled);

        let default_retention = match self
            .client
            .get_object_lock_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(output) => output
                .object_lock_configuration()
                .and_then(|c| c.rule())
                .and_then(|rule| rule.default_retention())
                .and_then(|retention| {
                    let mode = retention.mode().and_then(|m| lock_mode_from(m.as_str()))?;
                    let days = retention
                        .days()
                        .map(|d| d.max(0) as u32)
                        .or_else(|| retention.years().map(|y| y.max(0) as u32 * 365))?;
                    Some((mode, days))
                }),
            Err(error) => {
                let classified = classify(&format!("GetObjectLockConfiguration {bucket}"), error);
                if classified.is_retryable() || matches!(classified, SeamError::AccessDenied(_)) {
                    return Err(classified);
                }
                None
            }
        };

        let default_sse_kms_key = match self
            .client
            .get_bucket_encryption()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(output) => output
                .server_side_encryption_configuration()
                .map(|c| c.rules())
                .unwrap_or_default()
                .iter()
                .filter_map(|rule| rule.apply_server_side_encryption_by_default())
                .find(|default| default.sse_algorithm() == &ServerSideEncryption::AwsKms)
                .map(|default| default.kms_master_key_id().unwrap_or("aws/s3").to_string()),
            Err(error) => {
                let classified = classify(&format!("GetBucketEncryption {bucket}"), error);
                if classified.is_retryable() || matches!(classified, SeamError::AccessDenied(_)) {
                    return Err(classified);
                }
                None
            }
        };

        let bucket_policy = match self.client.get_bucket_policy().bucket(bucket).send().await {
            Ok(output) => output.policy().map(super::policy::bucket_policy_guards),
            Err(error) => {
                let classified = classify(&format!("GetBucketPolicy {bucket}"), error);
                if classified.is_retryable() {
                    return Err(classified);
                }
                None
            }
        };
        // Lifecycle rules matter for retention's audit only: an unreadable or
        // absent configuration is reported as absent, never as an error.
        let lifecycle = match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(output) => {
                let enabled: Vec<_> = output
                    .rules()
                    .iter()
                    .filter(|rule| rule.status() == &ExpirationStatus::Enabled)
                    .collect();
                Some(Lifecycle {
                    abort_incomplete_multipart_days: enabled
                        .iter()
                        .filter_map(|rule| {
                            rule.abort_incomplete_multipart_upload()
                                .and_then(|abort| abort.days_after_initiation())
                        })
                        .min(),
                    noncurrent_expiration_days: enabled
                        .iter()
                        .filter_map(|rule| {
                            rule.noncurrent_version_expiration()
                                .and_then(|expiry| expiry.noncurrent_days())
                        })
                        .min(),
                    expiration_days: enabled
                        .iter()
                        .filter_map(|rule| rule.expiration().and_then(|expiry| expiry.days()))
                        .min(),
                })
            }
            Err(error) => {
                let classified =
                    classify(&format!("GetBucketLifecycleConfiguration {bucket}"), error);
                if classified.is_retryable() {
                    return Err(classified);
                }
                None
            }
        };
        Ok(BucketProtection {
            versioning_enabled,
            default_retention,
            default_sse_kms_key,
            bucket_policy,
            lifecycle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::tests::strings;
    use aws_sdk_s3::config::{BehaviorVersion, Region};
    use chrono::TimeZone as _;
    use std::collections::HashMap;

    fn client() -> Client {
        Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .build(),
        )
    }

    fn spec() -> PutSpec {
        PutSpec {
            key: "AWSLogs/o-1/123456789012/CloudTrail/x.json.gz".to_string(),
            kms_key_id: "arn:aws:kms:us-east-1:111111111111:key/audit".to_string(),
            lock_mode: LockMode::Compliance,
            retain_until: Utc.with_ymd_and_hms(2031, 1, 2, 3, 4, 5).unwrap(),
            metadata: strings(&[("trailvault-sha256", "abc"), ("source-etag", "e")]),
            content_type: Some("application/json".to_string()),
            content_encoding: Some("gzip".to_string()),
        }
    }

    #[test]
    fn put_and_create_multipart_carry_the_same_spec() {
        let spec = spec();
        let client = client();
        let put = with_put_spec!(client.put_object(), &spec);
        let create = with_put_spec!(client.create_multipart_upload(), &spec);
        let (put, create) = (put.as_input(), create.as_input());
        let metadata: HashMap<String, String> = spec.metadata.clone().into_iter().collect();
        let retain_until = SdkDateTime::from_secs(spec.retain_until.timestamp());

        assert_eq!(
            put.get_checksum_algorithm(),
            &Some(ChecksumAlgorithm::Sha256)
        );
        assert_eq!(
            put.get_server_side_encryption(),
            &Some(ServerSideEncryption::AwsKms)
        );
        assert_eq!(put.get_ssekms_key_id(), &Some(spec.kms_key_id.clone()));
        assert_eq!(put.get_bucket_key_enabled(), &Some(true));
        assert_eq!(
            put.get_object_lock_mode(),
            &Some(ObjectLockMode::Compliance)
        );
        assert_eq!(put.get_object_lock_retain_until_date(), &Some(retain_until));
        assert_eq!(put.get_metadata(), &Some(metadata.clone()));
        assert_eq!(put.get_content_type(), &spec.content_type);
        assert_eq!(put.get_content_encoding(), &spec.content_encoding);

        assert_eq!(
            create.get_checksum_algorithm(),
            put.get_checksum_algorithm()
        );
        assert_eq!(
            create.get_server_side_encryption(),
            put.get_server_side_encryption()
        );
        assert_eq!(create.get_ssekms_key_id(), put.get_ssekms_key_id());
        assert_eq!(
            create.get_bucket_key_enabled(),
            put.get_bucket_key_enabled()
        );
        assert_eq!(create.get_object_lock_mode(), put.get_object_lock_mode());
        assert_eq!(
            create.get_object_lock_retain_until_date(),
            put.get_object_lock_retain_until_date()
        );
        assert_eq!(create.get_metadata(), put.get_metadata());
        assert_eq!(create.get_content_type(), put.get_content_type());
        assert_eq!(create.get_content_encoding(), put.get_content_encoding());
    }
}
