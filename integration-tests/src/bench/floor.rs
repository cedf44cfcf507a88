//! The floor of the required work (issue 16): what validation needs of every
//! body, with the fastest inflate available to us (libdeflate, whole buffer),
//! and a reference loop for `verify --full` that does only that to every
//! archived object.
//!
//! Part of the `trailbench` binary (included with `#[path]`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::StreamExt as _;
use serde::Serialize;

use crate::s3util::{list_all, s3_client, sdk_config, Endpoint};

/// Largest inflated size the floor accepts (the generated data set stays far below).
const MAX_INFLATED: usize = 256 << 20;

/// SHA-256 of the raw bytes and of the inflated single gzip member (`None` when the
/// body is not one valid gzip member within [`MAX_INFLATED`]); returns the inflated
/// length. The output buffer is sized from the gzip trailer's ISIZE.
pub fn inflate_and_hash(raw: &[u8]) -> ([u8; 32], Option<([u8; 32], usize)>) {
    let raw_sha = sha256(raw);
    let claimed = raw
        .len()
        .checked_sub(4)
        .and_then(|start| raw.get(start..))
        .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
        .map_or(0, |tail| u32::from_le_bytes(tail) as usize);
    if claimed > MAX_INFLATED {
        return (raw_sha, None);
    }
    let mut out = vec![0u8; claimed];
    let mut decompressor = libdeflater::Decompressor::new();
    match decompressor.gzip_decompress(raw, &mut out) {
        Ok(length) if length == claimed => (raw_sha, Some((sha256(&out), length))),
        _ => (raw_sha, None),
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[derive(Debug, Serialize)]
pub struct ValidateRefResult {
    pub objects: u64,
    pub bytes: u64,
    pub inflated_bytes: u64,
    /// Objects that are not one valid gzip member (none in the data set).
    pub not_gzip: u64,
    pub errors: u64,
    pub list_seconds: f64,
    pub seconds: f64,
    pub objects_per_second: f64,
}

/// GETs every object under `prefix` of `bucket` at `concurrency`, inflates it and
/// hashes the raw and inflated bytes: the work `verify --full` cannot avoid.
pub async fn validate_ref(
    endpoint: &Endpoint,
    bucket: &str,
    prefix: &str,
    concurrency: usize,
) -> anyhow::Result<ValidateRefResult> {
    let client = s3_client(&sdk_config(endpoint, true));
    let started = Instant::now();
    let keys = list_all(&client, bucket, prefix).await?;
    let list_seconds = started.elapsed().as_secs_f64();
    let count = keys.len() as u64;
    let bytes = AtomicU64::new(0);
    let inflated = AtomicU64::new(0);
    let not_gzip = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    futures::stream::iter(keys)
        .for_each_concurrent(concurrency.max(1), |(key, _)| {
            let client = client.clone();
            let (bytes, inflated, not_gzip, errors) = (&bytes, &inflated, &not_gzip, &errors);
            async move {
                let result: anyhow::Result<()> = async {
                    let object = client.get_object().bucket(bucket).key(&key).send().await?;
                    let body = object.body.collect().await?.into_bytes();
                    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    let (_, content) = inflate_and_hash(&body);
                    match content {
                        Some((_, length)) => {
                            inflated.fetch_add(length as u64, Ordering::Relaxed);
                        }
                        None => {
                            not_gzip.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                }
                .await;
                if let Err(error) = result {
                    if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("trailbench validate-ref: s3://{bucket}/{key}: {error:#}");
                    }
                }
            }
        })
        .await;
    let seconds = started.elapsed().as_secs_f64();
    Ok(ValidateRefResult {
        objects: count,
        bytes: bytes.load(Ordering::Relaxed),
        inflated_bytes: inflated.load(Ordering::Relaxed),
        not_gzip: not_gzip.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        list_seconds,
        seconds,
        objects_per_second: count as f64 / seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn hashes_raw_and_inflated_and_refuses_what_is_not_gzip() {
        let content = br#"{"Records":[{"recipientAccountId":"111111111111"}]}"#.repeat(50);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&content).unwrap();
        let raw = encoder.finish().unwrap();
        let (raw_sha, inflated) = inflate_and_hash(&raw);
        assert_eq!(raw_sha, sha256(&raw));
        assert_eq!(inflated, Some((sha256(&content), content.len())));
        assert_eq!(inflate_and_hash(b"not gzip").1, None);
        let mut truncated = raw.clone();
        truncated.truncate(raw.len() - 9);
        assert_eq!(inflate_and_hash(&truncated).1, None);
    }
}
