//! `trailbench flood`: one partition of a member bucket filled with tiny junk
//! objects (issue 12: a hostile member floods a partition), so `scripts/bench
//! --flood N` can measure what one `trailvault collect` run costs against it
//! (peak RSS, wall time) with `max_keys_per_partition_per_run` bounding the
//! run's work.

use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;

use super::s3util::{ensure_bucket, s3_client, sdk_config, Endpoint};

/// What was written.
#[derive(Debug, serde::Serialize)]
pub struct Flooded {
    pub bucket: String,
    pub prefix: String,
    pub objects_written: u64,
    pub seconds: f64,
}

/// The partition prefix the junk goes into: today's `CloudTrail/us-east-1`
/// day folder of `account`.
pub fn partition_prefix(account: &str, date: chrono::NaiveDate) -> String {
    format!(
        "AWSLogs/{account}/CloudTrail/us-east-1/{}/",
        date.format("%Y/%m/%d")
    )
}

/// Writes `objects` junk objects (`junk-<index>`, 4 bytes each) into
/// `bucket` under `prefix`, `concurrency` PUTs at a time, from index `first`
/// on (a rerun adds to an earlier flood). A PUT is retried 3 times.
pub async fn flood(
    endpoint: &Endpoint,
    bucket: &str,
    prefix: &str,
    first: u64,
    objects: u64,
    concurrency: usize,
) -> anyhow::Result<Flooded> {
    let client = s3_client(&sdk_config(endpoint, false));
    ensure_bucket(&client, bucket).await?;
    let started = std::time::Instant::now();
    let written = AtomicU64::new(0);
    let failures: Vec<anyhow::Error> = futures::stream::iter(first..first + objects)
        .map(|index| {
            let client = client.clone();
            let written = &written;
            async move {
                let key = format!("{prefix}junk-{index:09}");
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match client
                        .put_object()
                        .bucket(bucket)
                        .key(&key)
                        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"junk"))
                        .send()
                        .await
                    {
                        Ok(_) => break,
                        Err(_) if attempt < 4 => {
                            tokio::time::sleep(std::time::Duration::from_millis(200 * attempt))
                                .await
                        }
                        Err(error) => {
                            return Err(anyhow::anyhow!(
                                "put {key}: {}",
                                aws_sdk_s3::error::DisplayErrorContext(&error)
                            ))
                        }
                    }
                }
                let done = written.fetch_add(1, Ordering::Relaxed) + 1;
                if done.is_multiple_of(50_000) {
                    eprintln!("trailbench: flood: {done} objects written");
                }
                Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|result| async move { result.err() })
        .take(1)
        .collect()
        .await;
    if let Some(error) = failures.into_iter().next() {
        return Err(error);
    }
    Ok(Flooded {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        objects_written: written.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    })
}
