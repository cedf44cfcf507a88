//! Delivering CloudTrail output: hourly log files and signed digests for every chain,
//! and late ("backfill") deliveries.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use chrono::{DateTime, DurationRound as _, Utc};
use futures::stream::{self, StreamExt as _, TryStreamExt as _};

use super::cloudtrail::{
    digest_key, generate_insight_log, generate_log, gzip, iso_time, log_key, DigestBody,
    LogFileEntry, PreviousDigest, HASH_ALGORITHM, INSIGHT_FAMILY, LOG_FAMILY,
};
use super::provision::sdk_error;
use super::rng::SimRng;
use super::signing::{sha256_hex, string_to_sign, SigningKey, SIGNATURE_ALGORITHM};
use super::{ChainSelector, ChainState, DigestRecord, LogRecord, ObjectRef, Sim, TrailKind};

/// Concurrent uploads (the emulator serves ~700–900 PUT/s on 2 cores).
const UPLOAD_CONCURRENCY: usize = 24;
/// Percent of hours in which a chain delivers no log file (an "empty" digest).
const EMPTY_HOUR_PERCENT: u64 = 15;
/// Percent of non-empty hours that also deliver an Insights file.
const INSIGHT_PERCENT: u64 = 10;
/// Nothing is written closer to now than this.
const PAST_MARGIN_SECONDS: i64 = 60;

/// What one [`Sim::deliver_hours`] call wrote.
#[derive(Debug, Clone, Default)]
pub struct DeliveryReport {
    pub hours: u32,
    pub chains: usize,
    pub log_files: usize,
    pub insight_files: usize,
    pub digests: usize,
    pub empty_digests: usize,
    pub bytes_uploaded: u64,
    pub first_digest_end: Option<DateTime<Utc>>,
    pub last_digest_end: Option<DateTime<Utc>>,
    pub elapsed: Duration,
}

/// What [`Sim::deliver_late_log`] wrote.
#[derive(Debug, Clone)]
pub struct LateDelivery {
    /// The late log: its name sorts before logs already delivered in its partition.
    pub log: ObjectRef,
    /// The `_backfill` digest listing it.
    pub backfill_digest: ObjectRef,
    /// Its `backfill-generation-timestamp` metadata (the real time of the call).
    pub backfill_generation_timestamp: String,
}

/// An object to put into a source bucket as its owner (CloudTrail's delivery).
#[derive(Debug, Clone)]
pub(crate) struct PendingObject {
    pub owner_account_id: String,
    pub bucket: String,
    pub key: String,
    pub body: Vec<u8>,
    /// Content-Type application/json + Content-Encoding gzip, as CloudTrail sets them.
    pub cloudtrail_headers: bool,
    pub metadata: Vec<(String, String)>,
}

/// The account that owns a chain's bucket (whose root writes CloudTrail's files).
pub(crate) fn bucket_owner(sim: &Sim, chain: &ChainState) -> String {
    match (chain.trail, &sim.org.org_trail) {
        (TrailKind::Organization, Some(org_trail)) => org_trail.management_account_id.clone(),
        _ => chain.account_id.clone(),
    }
}

/// A generated log file before upload.
struct PlannedLog {
    record: LogRecord,
    entry: LogFileEntry,
    body: Vec<u8>,
}

/// Generates a log (or Insights) file of `chain` delivered at `delivered_at`.
fn plan_log(
    chain: &ChainState,
    rng: &mut SimRng,
    family: &'static str,
    delivered_at: DateTime<Utc>,
    unique: Option<String>,
) -> PlannedLog {
    let generated = if family == INSIGHT_FAMILY {
        generate_insight_log(rng, &chain.account_id, &chain.region, delivered_at)
    } else {
        let record_count = rng.between(1, 6) as usize;
        generate_log(
            rng,
            &chain.account_id,
            &chain.region,
            delivered_at,
            record_count,
        )
    };
    let unique = unique.unwrap_or_else(|| rng.alnum(16));
    let key = log_key(
        &chain.key_root,
        family,
        &chain.account_id,
        &chain.region,
        delivered_at,
        &unique,
    );
    let hash = sha256_hex(&generated.inflated);
    PlannedLog {
        entry: LogFileEntry {
            s3_bucket: chain.bucket.clone(),
            s3_object: key.clone(),
            hash_value: hash.clone(),
            hash_algorithm: HASH_ALGORITHM.to_owned(),
            newest_event_time: iso_time(generated.newest_event_time),
            oldest_event_time: iso_time(generated.oldest_event_time),
        },
        record: LogRecord {
            key,
            family: family.to_owned(),
            delivered_at,
            inflated_sha256: hash,
        },
        body: gzip(&generated.inflated),
    }
}

/// A signed digest before upload.
struct PlannedDigest {
    record: DigestRecord,
    body: Vec<u8>,
    metadata: Vec<(String, String)>,
}

/// Renders and signs the digest of `chain` for `[end - 1h, end]` listing `logs`,
/// linked to `previous` (None: a starting digest). Backfill digests get the
/// `_backfill` key and the generation-timestamp metadata.
fn plan_digest(
    chain: &ChainState,
    end: DateTime<Utc>,
    logs: &[PlannedLog],
    previous: Option<&DigestRecord>,
    backfill_generation_timestamp: Option<String>,
    signing_key: &SigningKey,
) -> anyhow::Result<PlannedDigest> {
    let start = end - chrono::Duration::hours(1);
    let key = digest_key(
        &chain.key_root,
        &chain.account_id,
        &chain.region,
        &chain.trail_name,
        &chain.home_region,
        end,
        backfill_generation_timestamp.is_some(),
    );
    let newest = logs
        .iter()
        .map(|log| log.entry.newest_event_time.clone())
        .max();
    let oldest = logs
        .iter()
        .map(|log| log.entry.oldest_event_time.clone())
        .min();
    let body = DigestBody {
        aws_account_id: chain.account_id.clone(),
        digest_start_time: iso_time(start),
        digest_end_time: iso_time(end),
        digest_s3_bucket: chain.bucket.clone(),
        digest_s3_object: key.clone(),
        digest_public_key_fingerprint: signing_key.fingerprint(),
        digest_signature_algorithm: SIGNATURE_ALGORITHM.to_owned(),
        newest_event_time: newest,
        oldest_event_time: oldest,
        previous: previous.map(|previous| PreviousDigest {
            bucket: chain.bucket.clone(),
            object: previous.key.clone(),
            hash_value: previous.inflated_sha256.clone(),
            hash_algorithm: HASH_ALGORITHM.to_owned(),
            signature: previous.signature.clone(),
        }),
        log_files: logs.iter().map(|log| log.entry.clone()).collect(),
    };
    let inflated = body.render(chain.escape_slashes);
    let inflated_sha256 = sha256_hex(inflated.as_bytes());
    let message = string_to_sign(
        &body.digest_end_time,
        &body.digest_s3_bucket,
        &body.digest_s3_object,
        &inflated_sha256,
        body.previous.as_ref().map(|link| link.signature.as_str()),
    );
    let signature = signing_key.sign_hex(&message)?;
    let mut metadata = vec![
        ("signature".to_owned(), signature.clone()),
        (
            "signature-algorithm".to_owned(),
            SIGNATURE_ALGORITHM.to_owned(),
        ),
    ];
    if let Some(generated) = &backfill_generation_timestamp {
        metadata.push((
            "backfill-generation-timestamp".to_owned(),
            generated.clone(),
        ));
    }
    Ok(PlannedDigest {
        record: DigestRecord {
            key,
            start,
            end,
            inflated_sha256,
            signature,
            logs: logs.iter().map(|log| log.record.clone()).collect(),
            backfill_generation_timestamp,
        },
        body: gzip(inflated.as_bytes()),
        metadata,
    })
}

/// Hour `hour_index` of `chain`: 0–3 logs (sometimes an Insights file) delivered at
/// whole minutes strictly inside the window, and the digest ending at `end`.
///
/// Insights files are listed in `logFiles` like ordinary logs. Whether real digests
/// list them is unconfirmed (docs/cloudtrail-format.md §10.4); listing them makes the validator follow
/// `logFiles` into any folder instead of hard-coding `CloudTrail/`, and keeps them
/// from counting as unreferenced.
fn plan_hour(
    chain: &ChainState,
    seed: u64,
    hour_index: u32,
    end: DateTime<Utc>,
    signing_key: &SigningKey,
) -> anyhow::Result<(Vec<PlannedLog>, PlannedDigest)> {
    let start = end - chrono::Duration::hours(1);
    let mut rng = SimRng::derive(seed, &[chain.index as u64, u64::from(hour_index)]);
    let empty = rng.chance(EMPTY_HOUR_PERCENT);
    let log_count = if empty { 0 } else { rng.between(1, 3) };
    let with_insight = !empty && rng.chance(INSIGHT_PERCENT);
    // The window bounds carry non-zero seconds (see SimClock), so the next whole
    // minute is strictly after the start and 58 minutes later still before the end.
    let first_minute =
        start.duration_trunc(chrono::Duration::minutes(1))? + chrono::Duration::minutes(1);
    let mut planned: Vec<(DateTime<Utc>, &'static str)> = (0..log_count)
        .map(|_| {
            let minute = first_minute + chrono::Duration::minutes(rng.below(59) as i64);
            (minute, LOG_FAMILY)
        })
        .collect();
    if with_insight {
        let minute = first_minute + chrono::Duration::minutes(rng.below(59) as i64);
        planned.push((minute, INSIGHT_FAMILY));
    }
    planned.sort();
    let logs: Vec<PlannedLog> = planned
        .into_iter()
        .map(|(delivered_at, family)| {
            debug_assert!(delivered_at > start && delivered_at < end);
            plan_log(chain, &mut rng, family, delivered_at, None)
        })
        .collect();
    let digest = plan_digest(chain, end, &logs, chain.head(), None, signing_key)?;
    Ok((logs, digest))
}

impl Sim {
    /// End time of digest `hour_index` (1-based) of `chain`.
    pub fn digest_end(&self, chain: &ChainState, hour_index: u32) -> DateTime<Utc> {
        self.org.clock.origin + chrono::Duration::hours(i64::from(hour_index))
            - chrono::Duration::seconds(i64::from(chain.skew_seconds))
    }

    /// How many more hours can be delivered now without writing the future.
    pub fn deliverable_hours(&self) -> u32 {
        let limit = Utc::now() - chrono::Duration::seconds(PAST_MARGIN_SECONDS);
        let mut hours = 0;
        while self
            .org
            .chains
            .iter()
            .all(|chain| self.digest_end(chain, self.org.clock.hours_delivered + hours + 1) < limit)
        {
            hours += 1;
            if hours >= 24 * 366 {
                break;
            }
        }
        hours
    }

    /// Delivers the next `hours` simulated hours of every chain: log files, then the
    /// signed digests. Digest windows are contiguous (`digestStartTime` = previous
    /// `digestEndTime`), each chain keeps its mm:ss, the first digest of a chain has
    /// null `previous*` fields, about 15% of hours are empty.
    ///
    /// Fails without writing anything if the hours would reach into the future (see
    /// [`super::ProvisionOptions::history_hours`]). State advances only if every
    /// upload succeeded; a retry after a failure regenerates the same objects.
    pub async fn deliver_hours(&mut self, hours: u32) -> anyhow::Result<DeliveryReport> {
        let started = Instant::now();
        let available = self.deliverable_hours();
        anyhow::ensure!(
            hours <= available,
            "cannot deliver {hours} hours: {} of {} planned hours are delivered and only {available} \
             more end before now (provision with a larger history_hours, or wait)",
            self.org.clock.hours_delivered,
            self.org.history_hours
        );
        let mut report = DeliveryReport {
            hours,
            chains: self.org.chains.len(),
            ..DeliveryReport::default()
        };
        let mut chains = self.org.chains.clone();
        let mut log_objects = Vec::new();
        let mut digest_objects = Vec::new();
        for chain in &mut chains {
            let owner = bucket_owner(self, chain);
            for step in 1..=hours {
                let hour_index = self.org.clock.hours_delivered + step;
                let end = self.digest_end(chain, hour_index);
                let (logs, digest) =
                    plan_hour(chain, self.org.seed, hour_index, end, &self.signing_key)?;
                for log in logs {
                    if log.record.family == INSIGHT_FAMILY {
                        report.insight_files += 1;
                    } else {
                        report.log_files += 1;
                    }
                    log_objects.push(PendingObject {
                        owner_account_id: owner.clone(),
                        bucket: chain.bucket.clone(),
                        key: log.record.key,
                        body: log.body,
                        cloudtrail_headers: true,
                        metadata: Vec::new(),
                    });
                }
                report.digests += 1;
                if digest.record.logs.is_empty() {
                    report.empty_digests += 1;
                }
                report.first_digest_end =
                    Some(report.first_digest_end.map_or(end, |first| first.min(end)));
                report.last_digest_end =
                    Some(report.last_digest_end.map_or(end, |last| last.max(end)));
                digest_objects.push(PendingObject {
                    owner_account_id: owner.clone(),
                    bucket: chain.bucket.clone(),
                    key: digest.record.key.clone(),
                    body: digest.body,
                    cloudtrail_headers: true,
                    metadata: digest.metadata,
                });
                chain.digests.push(digest.record);
            }
        }
        // Logs first: a digest never names a log that is not there yet.
        report.bytes_uploaded += self.upload(log_objects).await?;
        report.bytes_uploaded += self.upload(digest_objects).await?;
        self.org.chains = chains;
        self.org.clock.hours_delivered += hours;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Delivers every hour that has ended since the last delivery.
    pub async fn catch_up(&mut self) -> anyhow::Result<DeliveryReport> {
        let hours = self.deliverable_hours();
        self.deliver_hours(hours).await
    }

    /// Delivers one late log file into the selected chain and a `_backfill` digest
    /// for it, both uploaded now.
    ///
    /// The log is named with an earlier time than logs already delivered in its day
    /// partition (so a listing cursor "after the last key" misses it; a lookback
    /// re-list finds it). The backfill digest covers the standard digest window that
    /// contains the log's name time, has its own chain (previous = the previous
    /// backfill digest of this chain, in delivery order, null for the first), and
    /// carries `backfill-generation-timestamp` metadata. Each window gets at most one
    /// backfill digest; the call fails when no window is left.
    pub async fn deliver_late_log(
        &mut self,
        selector: ChainSelector,
    ) -> anyhow::Result<LateDelivery> {
        let chain_index = self.chain_index(selector)?;
        let chain = &self.org.chains[chain_index];
        let (window, delivered_at) = late_slot(chain)?;
        let generation_time = Utc::now();
        let generation_timestamp = iso_time(generation_time);
        let mut rng = SimRng::derive(
            self.org.seed,
            &[
                chain.index as u64,
                u64::MAX - 2,
                chain.backfill_digests.len() as u64,
            ],
        );
        let log = plan_log(chain, &mut rng, LOG_FAMILY, delivered_at, None);
        let digest = plan_digest(
            chain,
            window.end,
            std::slice::from_ref(&log),
            chain.backfill_digests.last(),
            Some(generation_timestamp.clone()),
            &self.signing_key,
        )?;
        let owner = bucket_owner(self, chain);
        let log_ref = ObjectRef {
            account_id: chain.account_id.clone(),
            bucket: chain.bucket.clone(),
            key: log.record.key.clone(),
        };
        let digest_ref = ObjectRef {
            account_id: chain.account_id.clone(),
            bucket: chain.bucket.clone(),
            key: digest.record.key.clone(),
        };
        self.upload(vec![PendingObject {
            owner_account_id: owner.clone(),
            bucket: chain.bucket.clone(),
            key: log.record.key.clone(),
            body: log.body,
            cloudtrail_headers: true,
            metadata: Vec::new(),
        }])
        .await?;
        self.upload(vec![PendingObject {
            owner_account_id: owner,
            bucket: chain.bucket.clone(),
            key: digest.record.key.clone(),
            body: digest.body,
            cloudtrail_headers: true,
            metadata: digest.metadata,
        }])
        .await?;
        self.org.chains[chain_index]
            .backfill_digests
            .push(digest.record);
        self.org.late_logs.push(log_ref.clone());
        Ok(LateDelivery {
            log: log_ref,
            backfill_digest: digest_ref,
            backfill_generation_timestamp: generation_timestamp,
        })
    }

    /// Puts objects as their bucket owners, concurrently. Returns the bytes written.
    pub(crate) async fn upload(&self, objects: Vec<PendingObject>) -> anyhow::Result<u64> {
        let total: u64 = objects.iter().map(|object| object.body.len() as u64).sum();
        let mut requests = Vec::with_capacity(objects.len());
        for object in objects {
            let client = self.root_s3(&object.owner_account_id)?.clone();
            requests.push(async move { put_object(&client, object).await });
        }
        stream::iter(requests)
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(total)
    }
}

/// Puts one object as CloudTrail would: SSE-S3, JSON + gzip headers, user metadata.
pub(crate) async fn put_object(
    client: &aws_sdk_s3::Client,
    object: PendingObject,
) -> anyhow::Result<()> {
    let mut request = client
        .put_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(ByteStream::from(object.body));
    if object.cloudtrail_headers {
        request = request
            .content_type("application/json")
            .content_encoding("gzip");
    }
    for (name, value) in &object.metadata {
        request = request.metadata(name, value);
    }
    request
        .send()
        .await
        .map_err(|error| sdk_error(&format!("put s3://{}/{}", object.bucket, object.key), error))?;
    Ok(())
}

/// Picks where a late log goes: the newest standard digest window without a backfill
/// digest yet that lies in a day partition holding delivered logs, and the earliest
/// whole minute in it (within that day) that sorts before the partition's newest log.
fn late_slot(chain: &ChainState) -> anyhow::Result<(DigestRecord, DateTime<Utc>)> {
    let used: Vec<DateTime<Utc>> = chain
        .backfill_digests
        .iter()
        .map(|digest| digest.end)
        .collect();
    let mut days: Vec<DateTime<Utc>> = chain
        .digests
        .iter()
        .flat_map(|digest| &digest.logs)
        .filter(|log| log.family == LOG_FAMILY)
        .filter_map(|log| {
            log.delivered_at
                .duration_trunc(chrono::Duration::days(1))
                .ok()
        })
        .collect();
    days.sort();
    days.dedup();
    for day_start in days.into_iter().rev() {
        let day_end = day_start + chrono::Duration::days(1);
        let newest_in_day = chain
            .digests
            .iter()
            .flat_map(|digest| &digest.logs)
            .filter(|log| log.family == LOG_FAMILY)
            .filter(|log| log.delivered_at >= day_start && log.delivered_at < day_end)
            .map(|log| log.delivered_at)
            .max();
        let Some(newest_in_day) = newest_in_day else {
            continue;
        };
        for window in chain.digests.iter().rev() {
            if used.contains(&window.end) || window.end <= day_start || window.start >= day_end {
                continue;
            }
            let earliest = (window.start.duration_trunc(chrono::Duration::minutes(1))?
                + chrono::Duration::minutes(1))
            .max(day_start);
            let latest = newest_in_day - chrono::Duration::minutes(1);
            if earliest < window.end && earliest <= latest {
                return Ok((window.clone(), earliest));
            }
        }
    }
    anyhow::bail!(
        "no digest window of chain {} ({} {}) is left for a late log: deliver more hours first",
        chain.index,
        chain.account_id,
        chain.region
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::cloudtrail::{gunzip_single_member, key_root, PER_ACCOUNT_TRAIL_NAME};
    use aws_lc_rs::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
    use base64::Engine as _;
    use chrono::{TimeZone as _, Timelike as _};

    fn chain(escape_slashes: bool) -> ChainState {
        ChainState {
            index: 1,
            trail: TrailKind::Organization,
            member_index: 0,
            account_id: "222222222201".into(),
            region: "eu-west-1".into(),
            home_region: "us-east-1".into(),
            trail_name: "OrgTrail".into(),
            bucket: "org-cloudtrail-999999999999".into(),
            key_root: key_root("org", Some("o-sim1234567"), "222222222201"),
            skew_seconds: 17 * 60,
            escape_slashes,
            digests: Vec::new(),
            backfill_digests: Vec::new(),
        }
    }

    /// Verifies a digest the way a validator would, from the bytes alone: JSON-decoded
    /// fields, the inflated hash, the metadata signature, the exported key.
    fn verify(planned: &PlannedDigest, exported_der: &[u8]) -> DigestBody {
        let inflated = gunzip_single_member(&planned.body).unwrap();
        let body = DigestBody::parse(&inflated).unwrap();
        let metadata: std::collections::HashMap<_, _> = planned.metadata.iter().cloned().collect();
        assert_eq!(metadata["signature-algorithm"], "SHA256withRSA");
        let message = string_to_sign(
            &body.digest_end_time,
            &body.digest_s3_bucket,
            &body.digest_s3_object,
            &sha256_hex(&inflated),
            body.previous.as_ref().map(|link| link.signature.as_str()),
        );
        let signature = hex::decode(&metadata["signature"]).unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, exported_der)
            .verify(message.as_bytes(), &signature)
            .expect("digest signature verifies");
        body
    }

    #[test]
    fn generated_chain_is_signed_linked_and_hourly() {
        let origin = Utc.with_ymd_and_hms(2026, 3, 9, 21, 59, 43).unwrap();
        let key = SigningKey::generate(origin, origin + chrono::Duration::days(30)).unwrap();
        let exported = base64::engine::general_purpose::STANDARD
            .decode(key.public_key_entry().value)
            .unwrap();
        for escape_slashes in [false, true] {
            let mut state = chain(escape_slashes);
            let mut previous_inflated: Option<Vec<u8>> = None;
            let mut logs_seen = 0;
            for hour in 1..=30 {
                let end = origin + chrono::Duration::hours(hour)
                    - chrono::Duration::seconds(i64::from(state.skew_seconds));
                let (logs, digest) = plan_hour(&state, 99, hour as u32, end, &key).unwrap();
                let body = verify(&digest, &exported);
                let inflated = gunzip_single_member(&digest.body).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&inflated).contains("\\/"),
                    escape_slashes
                );
                assert_eq!(body.digest_s3_object, digest.record.key);
                assert_eq!(body.digest_end_time, iso_time(end));
                assert_eq!((end.minute(), end.second()), (42, 43));
                let stamp = end.format("%Y%m%dT%H%M%SZ").to_string();
                assert!(digest.record.key.ends_with(&format!(
                    "/222222222201_CloudTrail-Digest_eu-west-1_OrgTrail_us-east-1_{stamp}.json.gz"
                )));
                assert!(digest.record.key.starts_with(&format!(
                    "org/AWSLogs/o-sim1234567/222222222201/CloudTrail-Digest/eu-west-1/{}/",
                    end.format("%Y/%m/%d")
                )));
                match (&state.head(), &body.previous) {
                    (None, None) => {}
                    (Some(head), Some(link)) => {
                        assert_eq!(body.digest_start_time, iso_time(head.end));
                        assert_eq!(link.object, head.key);
                        assert_eq!(link.signature, head.signature);
                        assert_eq!(
                            link.hash_value,
                            sha256_hex(previous_inflated.as_ref().unwrap())
                        );
                    }
                    other => panic!("link mismatch: {other:?}"),
                }
                if logs.is_empty() {
                    assert!(body.newest_event_time.is_none() && body.oldest_event_time.is_none());
                }
                for (log, entry) in logs.iter().zip(&body.log_files) {
                    logs_seen += 1;
                    assert_eq!(entry.s3_object, log.record.key);
                    assert_eq!(
                        entry.hash_value,
                        sha256_hex(&gunzip_single_member(&log.body).unwrap())
                    );
                    assert!(log.record.delivered_at > end - chrono::Duration::hours(1));
                    assert!(log.record.delivered_at < end);
                    let partition = log.record.delivered_at.format("%Y/%m/%d").to_string();
                    assert!(log.record.key.contains(&format!("/eu-west-1/{partition}/")));
                }
                previous_inflated = Some(inflated);
                state.digests.push(digest.record);
            }
            assert!(logs_seen > 20);
            assert!(state.digests.iter().any(|digest| digest.logs.is_empty()));
            let _ = PER_ACCOUNT_TRAIL_NAME;
        }
    }

    #[test]
    fn late_slot_sorts_before_delivered_logs_and_never_reuses_a_window() {
        let origin = Utc.with_ymd_and_hms(2026, 3, 9, 21, 59, 43).unwrap();
        let key = SigningKey::generate(origin, origin + chrono::Duration::days(30)).unwrap();
        let mut state = chain(false);
        for hour in 1..=6 {
            let end = origin + chrono::Duration::hours(hour)
                - chrono::Duration::seconds(i64::from(state.skew_seconds));
            let (_, digest) = plan_hour(&state, 5, hour as u32, end, &key).unwrap();
            state.digests.push(digest.record);
        }
        let mut windows = Vec::new();
        for _ in 0..3 {
            let Ok((window, at)) = late_slot(&state) else {
                break;
            };
            assert!(at > window.start && at < window.end);
            let day = at.format("%Y/%m/%d").to_string();
            let newest_in_day = state
                .digests
                .iter()
                .flat_map(|digest| &digest.logs)
                .filter(|log| {
                    log.family == LOG_FAMILY
                        && log.delivered_at.format("%Y/%m/%d").to_string() == day
                })
                .map(|log| log.key.clone())
                .max()
                .unwrap();
            let late_key = log_key(
                &state.key_root,
                LOG_FAMILY,
                &state.account_id,
                &state.region,
                at,
                "zzzzzzzzzzzzzzzz",
            );
            assert!(late_key < newest_in_day, "{late_key} !< {newest_in_day}");
            assert!(!windows.contains(&window.end));
            windows.push(window.end);
            let backfill = plan_digest(
                &state,
                window.end,
                &[],
                state.backfill_digests.last(),
                Some(iso_time(origin)),
                &key,
            )
            .unwrap();
            assert!(backfill.record.key.ends_with("_backfill.json.gz"));
            assert!(backfill
                .metadata
                .iter()
                .any(|(name, _)| name == "backfill-generation-timestamp"));
            state.backfill_digests.push(backfill.record);
        }
        assert!(!windows.is_empty());
    }
}
