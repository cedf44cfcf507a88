//! The server's ceiling: a bare GET→PUT loop with the same SDK and concurrency as
//! trailvault, nothing else (no checksums beyond what the operation requires, no
//! encryption, no verification, no bookkeeping).
//!
//! Part of the `trailbench` binary (included with `#[path]`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt as _;
use serde::Serialize;

use crate::s3util::{list_all, s3_client, sdk_config, Endpoint};

#[derive(Debug, Serialize)]
pub struct GetPutResult {
    pub objects: u64,
    pub bytes: u64,
    pub errors: u64,
    pub list_seconds: f64,
    pub seconds: f64,
    pub objects_per_second: f64,
    pub megabytes_per_second: f64,
}

/// What each copy adds on top of the bare GET→PUT, one feature at a time, to see
/// where a full archive copy's time goes (the "ladder").
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// PUTs ask for SSE-KMS with this key.
    pub sse_kms_key_id: Option<String>,
    /// SHA-256 of the body computed here and sent as `x-amz-checksum-sha256`.
    pub sha256: bool,
    /// Object Lock COMPLIANCE retention (one day) on every PUT (needs a lock bucket).
    pub object_lock: bool,
    /// trailvault's provenance metadata (source account, ETag, content SHA-256,
    /// copy time) and the S3 Bucket Key flag on every PUT.
    pub provenance: bool,
    /// HEAD of the version the PUT created (checksum mode enabled) after every PUT.
    pub head: bool,
    /// Every body inflated (libdeflate, whole buffer) and its raw and inflated
    /// bytes hashed with SHA-256: what validation needs at copy time (issue 16's
    /// floor, ladder step 7).
    pub inflate: bool,
}

/// Copies every object under `AWSLogs/` of `buckets` to `dest_bucket` as
/// `<source bucket>/<key>`, adding `extras`.
pub async fn getput(
    endpoint: &Endpoint,
    buckets: &[String],
    dest_bucket: &str,
    concurrency: usize,
    extras: &Extras,
) -> anyhow::Result<GetPutResult> {
    let sse_kms_key_id = extras.sse_kms_key_id.as_deref();
    let client = s3_client(&sdk_config(endpoint, true));
    let started = Instant::now();
    let mut objects = Vec::new();
    for bucket in buckets {
        for (key, _) in list_all(&client, bucket, "AWSLogs/").await? {
            objects.push((bucket.clone(), key));
        }
    }
    let list_seconds = started.elapsed().as_secs_f64();
    let bytes = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let count = objects.len() as u64;
    futures::stream::iter(objects)
        .for_each_concurrent(concurrency.max(1), |(bucket, key)| {
            let client = client.clone();
            let bytes = &bytes;
            let errors = &errors;
            async move {
                let result: anyhow::Result<u64> = async {
                    let object = client.get_object().bucket(&bucket).key(&key).send().await?;
                    let etag = object.e_tag().unwrap_or_default().to_string();
                    let body = object.body.collect().await?.into_bytes();
                    let length = body.len() as u64;
                    let put_body_bytes = body.clone();
                    if extras.inflate {
                        std::hint::black_box(crate::floor::inflate_and_hash(&body));
                    }
                    let mut put = client
                        .put_object()
                        .bucket(dest_bucket)
                        .key(format!("{bucket}/{key}"))
                        .body(ByteStream::from(body));
                    if let Some(kms_key) = sse_kms_key_id {
                        put = put
                            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                            .ssekms_key_id(kms_key);
                    }
                    if extras.sha256 {
                        use base64::Engine as _;
                        let digest =
                            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &put_body_bytes);
                        put = put
                            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                            .checksum_sha256(
                                base64::engine::general_purpose::STANDARD.encode(digest.as_ref()),
                            );
                    }
                    if extras.object_lock {
                        let until = chrono::Utc::now().timestamp() + 86_400;
                        put = put
                            .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::Compliance)
                            .object_lock_retain_until_date(
                                aws_sdk_s3::primitives::DateTime::from_secs(until),
                            );
                    }
                    if extras.provenance {
                        put = put
                            .bucket_key_enabled(true)
                            .metadata(
                                "tv-source-account",
                                bucket
                                    .get(bucket.len().saturating_sub(12)..)
                                    .unwrap_or(&bucket),
                            )
                            .metadata("tv-source-etag", etag)
                            .metadata("tv-content-sha256", "0".repeat(64))
                            .metadata("tv-copied-at", chrono::Utc::now().timestamp().to_string());
                    }
                    let put = put.send().await?;
                    if extras.head {
                        // Like trailvault: the version the PUT created, checksum included.
                        client
                            .head_object()
                            .bucket(dest_bucket)
                            .key(format!("{bucket}/{key}"))
                            .set_version_id(put.version_id().map(str::to_string))
                            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                            .send()
                            .await?;
                    }
                    Ok(length)
                }
                .await;
                match result {
                    Ok(length) => {
                        bytes.fetch_add(length, Ordering::Relaxed);
                    }
                    Err(error) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("trailbench getput: s3://{bucket}/{key}: {error:#}");
                        }
                    }
                }
            }
        })
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let bytes = bytes.load(Ordering::Relaxed);
    Ok(GetPutResult {
        objects: count,
        bytes,
        errors: errors.load(Ordering::Relaxed),
        list_seconds,
        seconds,
        objects_per_second: count as f64 / seconds,
        megabytes_per_second: bytes as f64 / 1e6 / seconds,
    })
}
