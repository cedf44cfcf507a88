//! Attacks on the validator itself (issue 12), as the administrator of a member
//! account can make them on its own bucket: one listed object made unreadable to
//! the collector (to freeze validation of its chain), and an unsigned digest planted
//! ahead of forged log files (to make them look referenced).

use chrono::{DateTime, Duration, DurationRound as _, Utc};

use super::cloudtrail::{digest_key, generate_log, gzip, iso_time, log_key, DigestBody};
use super::cloudtrail::{LogFileEntry, HASH_ALGORITHM, LOG_FAMILY};
use super::deliver::{bucket_owner, put_object, PendingObject};
use super::provision::sdk_error;
use super::rng::SimRng;
use super::signing::{sha256_hex, SIGNATURE_ALGORITHM};
use super::{ChainSelector, Sim};

/// An unsigned digest planted in a chain, and the forged log files it names.
#[derive(Debug, Clone)]
pub struct PlantedForgery {
    pub bucket: String,
    /// Owner of the bucket (whose root plants).
    pub owner_account_id: String,
    /// The planted digest: where CloudTrail would have delivered a digest
    /// ending one second after a genuine one, no signature metadata.
    pub digest_key: String,
    /// The forged log files it lists: key and gzip body, not uploaded yet.
    pub logs: Vec<(String, Vec<u8>)>,
}

impl Sim {
    /// Denies `s3:GetObject` on one object of the selected chain's bucket to every
    /// principal (a bucket-policy Deny; the bucket owner's root, which the simulator
    /// acts as, bypasses it on the emulator as on AWS). Replaces the bucket's policy.
    pub async fn deny_source_object(
        &self,
        selector: ChainSelector,
        key: &str,
    ) -> anyhow::Result<()> {
        let chain = self.chain(selector)?;
        let owner = bucket_owner(self, chain);
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "DenyOneObjectToEveryone",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": format!("arn:aws:s3:::{}/{key}", chain.bucket),
            }]
        });
        self.root_s3(&owner)?
            .put_bucket_policy()
            .bucket(&chain.bucket)
            .policy(policy.to_string())
            .send()
            .await
            .map_err(|error| sdk_error(&format!("put bucket policy of {}", chain.bucket), error))?;
        Ok(())
    }

    /// The first CloudTrail log file (not Insights) listed by the selected chain's
    /// digest `from` or a later one: the digest's index and the log's key.
    pub fn listed_log_from(
        &self,
        selector: ChainSelector,
        from: usize,
    ) -> anyhow::Result<(usize, String)> {
        let chain = self.chain(selector)?;
        chain
            .digests
            .iter()
            .enumerate()
            .skip(from)
            .find_map(|(index, digest)| {
                digest
                    .logs
                    .iter()
                    .find(|log| log.family == LOG_FAMILY)
                    .map(|log| (index, log.key.clone()))
            })
            .ok_or_else(|| anyhow::anyhow!("no digest from {from} on lists a log file"))
    }

    /// Plants an unsigned digest in the selected chain, ending one second after
    /// digest `digest_index` and delivered where CloudTrail would have put it, that
    /// lists `count` log files which do not exist yet, named inside that digest's
    /// window. Upload them later with [`Sim::upload_forged_logs`].
    pub async fn plant_unsigned_digest(
        &self,
        selector: ChainSelector,
        digest_index: usize,
        count: usize,
    ) -> anyhow::Result<PlantedForgery> {
        let chain = self.chain(selector)?;
        let genuine = chain
            .digests
            .get(digest_index)
            .ok_or_else(|| anyhow::anyhow!("chain has no digest {digest_index}"))?;
        let owner = bucket_owner(self, chain);
        let mut rng = SimRng::derive(self.org.seed, &[chain.index as u64, u64::MAX - 12]);
        let mut logs = Vec::new();
        let mut entries = Vec::new();
        let window_start = genuine.start.duration_trunc(Duration::minutes(1))?;
        for number in 0..count {
            let delivered_at: DateTime<Utc> =
                window_start + Duration::minutes(3 + 2 * number as i64);
            let generated =
                generate_log(&mut rng, &chain.account_id, &chain.region, delivered_at, 2);
            let key = log_key(
                &chain.key_root,
                LOG_FAMILY,
                &chain.account_id,
                &chain.region,
                delivered_at,
                &format!("FORGED{:010}", number),
            );
            entries.push(LogFileEntry {
                s3_bucket: chain.bucket.clone(),
                s3_object: key.clone(),
                hash_value: sha256_hex(&generated.inflated),
                hash_algorithm: HASH_ALGORITHM.to_owned(),
                newest_event_time: iso_time(generated.newest_event_time),
                oldest_event_time: iso_time(generated.oldest_event_time),
            });
            logs.push((key, gzip(&generated.inflated)));
        }
        let end = genuine.end + Duration::seconds(1);
        let planted_key = digest_key(
            &chain.key_root,
            &chain.account_id,
            &chain.region,
            &chain.trail_name,
            &chain.home_region,
            end,
            false,
        );
        let body = DigestBody {
            aws_account_id: chain.account_id.clone(),
            digest_start_time: iso_time(end - Duration::hours(1)),
            digest_end_time: iso_time(end),
            digest_s3_bucket: chain.bucket.clone(),
            digest_s3_object: planted_key.clone(),
            digest_public_key_fingerprint: self.signing_key().fingerprint(),
            digest_signature_algorithm: SIGNATURE_ALGORITHM.to_owned(),
            newest_event_time: entries.last().map(|entry| entry.newest_event_time.clone()),
            oldest_event_time: entries.first().map(|entry| entry.oldest_event_time.clone()),
            previous: None,
            log_files: entries,
        };
        put_object(
            self.root_s3(&owner)?,
            PendingObject {
                owner_account_id: owner.clone(),
                bucket: chain.bucket.clone(),
                key: planted_key.clone(),
                body: gzip(body.render(chain.escape_slashes).as_bytes()),
                cloudtrail_headers: true,
                metadata: Vec::new(),
            },
        )
        .await?;
        Ok(PlantedForgery {
            bucket: chain.bucket.clone(),
            owner_account_id: owner,
            digest_key: planted_key,
            logs,
        })
    }

    /// Uploads the forged log files a planted digest names.
    pub async fn upload_forged_logs(&self, planted: &PlantedForgery) -> anyhow::Result<()> {
        for (key, body) in &planted.logs {
            put_object(
                self.root_s3(&planted.owner_account_id)?,
                PendingObject {
                    owner_account_id: planted.owner_account_id.clone(),
                    bucket: planted.bucket.clone(),
                    key: key.clone(),
                    body: body.clone(),
                    cloudtrail_headers: true,
                    metadata: Vec::new(),
                },
            )
            .await?;
        }
        Ok(())
    }
}
