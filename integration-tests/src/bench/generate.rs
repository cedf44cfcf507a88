//! The benchmark's data set: per-account trail buckets full of realistic CloudTrail
//! log files (the simulator's record generator, grown until the gzip reaches a
//! target size) and hourly RSA-signed digests chaining correctly per (account,
//! region, trail), written to SeaweedFS with static credentials.
//!
//! Formats come from the trail simulator (`src/sim/cloudtrail.rs`, compiled into
//! this binary with `#[path]`, and the library's `sim` signing code), so the
//! benchmark measures the same bytes the end-to-end tests validate.
//!
//! Time: each chain's digests end at `origin + k hours - skew`; a generation ends
//! about [`EXTEND_ROOM_MINUTES`] before now, so [`extend`] can later deliver one
//! more hour (the "1 % new files" step) without writing the future.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, DurationRound as _, Utc};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use trailvault_integration_tests::sim::{
    sha256_hex, string_to_sign, PublicKeyList, SigningKey, SigningKeyState, SIGNATURE_ALGORITHM,
};

use crate::cloudtrail::{
    digest_key, generate_log, gzip, iso_time, key_root, log_key, DigestBody, LogFileEntry,
    PreviousDigest, HASH_ALGORITHM, LOG_FAMILY, PER_ACCOUNT_TRAIL_NAME,
};
use crate::rng::SimRng;
use crate::s3util::{ensure_bucket, s3_client, sdk_config, Endpoint};

/// Version of the saved state file.
pub const STATE_VERSION: u32 = 1;
/// The newest generated digest ends at least this long before now.
pub const EXTEND_ROOM_MINUTES: i64 = 70;
/// Percent of chain-hours without any log file (an empty digest).
const EMPTY_HOUR_PERCENT: u64 = 3;
/// Concurrent PUTs while writing the data set.
const UPLOAD_CONCURRENCY: usize = 32;

/// The `n`th benchmark account: 444400000001, 444400000002, ...
pub fn account_id(index: usize) -> String {
    (444_400_000_001_u64 + index as u64).to_string()
}

pub fn bucket_for(account_id: &str) -> String {
    format!("aws-cloudtrail-logs-{account_id}")
}

/// The one bucket of an organization trail data set (`--org-id`).
pub const ORG_BUCKET: &str = "aws-cloudtrail-logs-org";

/// The head of one chain: what the next digest links to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainHead {
    pub account_id: String,
    pub region: String,
    pub bucket: String,
    pub key_root: String,
    pub skew_seconds: u32,
    pub escape_slashes: bool,
    pub hours: u32,
    pub last_key: String,
    pub last_end: DateTime<Utc>,
    pub last_inflated_sha256: String,
    pub last_signature: String,
}

/// Totals of what was written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    pub log_files: u64,
    pub digests: u64,
    pub empty_digests: u64,
    /// Compressed bytes as stored.
    pub log_bytes: u64,
    pub digest_bytes: u64,
    /// Inflated bytes (what a validator hashes).
    pub log_inflated_bytes: u64,
    pub digest_inflated_bytes: u64,
    /// Log files per size band: 1–10 KiB, 10–50 KiB, 50–500 KiB (target sizes).
    pub size_bands: [u64; 3],
}

impl Totals {
    pub fn objects(&self) -> u64 {
        self.log_files + self.digests
    }

    fn add(&mut self, other: &Totals) {
        self.log_files += other.log_files;
        self.digests += other.digests;
        self.empty_digests += other.empty_digests;
        self.log_bytes += other.log_bytes;
        self.digest_bytes += other.digest_bytes;
        self.log_inflated_bytes += other.log_inflated_bytes;
        self.digest_inflated_bytes += other.digest_inflated_bytes;
        for band in 0..3 {
            self.size_bands[band] += other.size_bands[band];
        }
    }
}

/// Everything needed to extend the data set later and to configure the tools.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchState {
    pub version: u32,
    pub seed: u64,
    pub regions: Vec<String>,
    pub home_region: String,
    pub trail_name: String,
    pub logs_per_hour: u32,
    pub signing_key: SigningKeyState,
    /// Digest `k` (1-based) of a chain ends at `origin + k h - skew`.
    pub origin: DateTime<Utc>,
    pub chains: Vec<ChainHead>,
    pub totals: Totals,
    /// What the last `extend` added (the incremental steps measure it).
    pub last_extension: Option<Totals>,
    pub first_digest_start: DateTime<Utc>,
    /// Organization trail layout: every account in [`ORG_BUCKET`].
    #[serde(default)]
    pub org_id: Option<String>,
}

impl BenchState {
    pub fn accounts(&self) -> Vec<String> {
        let mut accounts: Vec<String> = self.chains.iter().map(|c| c.account_id.clone()).collect();
        accounts.dedup();
        accounts
    }

    pub fn load(path: &Path) -> anyhow::Result<BenchState> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("read {}: {error}", path.display()))?;
        let state: BenchState = serde_json::from_str(&text)
            .map_err(|error| anyhow::anyhow!("parse {}: {error}", path.display()))?;
        anyhow::ensure!(
            state.version == STATE_VERSION,
            "{} has state version {}",
            path.display(),
            state.version
        );
        Ok(state)
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, serde_json::to_string_pretty(self)?)?;
        std::fs::rename(&temporary, path)?;
        Ok(())
    }
}

/// What `generate` builds.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Target number of objects (logs + digests) of this call.
    pub objects: u64,
    pub accounts: usize,
    /// Index of the first account (to add accounts to an existing data set).
    pub first_account: usize,
    pub regions: Vec<String>,
    pub days: u32,
    pub seed: u64,
    /// Multiplies every target log size (1.0 = the mix).
    pub size_scale: f64,
    pub threads: usize,
    /// An organization trail: every account delivers into [`ORG_BUCKET`]
    /// under `AWSLogs/<org_id>/<account>/` (ignored when adding to a data set).
    pub org_id: Option<String>,
}

/// A target compressed size for a log file: about 70 % in 1–10 KiB, 25 % in
/// 10–50 KiB, 5 % in 50–500 KiB, log-uniform inside each band.
fn target_size(rng: &mut SimRng) -> (usize, usize) {
    let roll = rng.below(100);
    let (band, low, high) = if roll < 70 {
        (0, 1024.0_f64, 10240.0_f64)
    } else if roll < 95 {
        (1, 10240.0, 51200.0)
    } else {
        (2, 51200.0, 512000.0)
    };
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let size = (low.ln() + unit * (high.ln() - low.ln())).exp();
    (band, size as usize)
}

/// Per-thread running estimates that make the size search converge in one or two
/// compressions.
struct SizeModel {
    inflate_ratio: f64,
    record_bytes: f64,
}

/// A log file whose gzip is at least `target` bytes: records from the simulator's
/// generator are appended (batch by batch) until the compressed size reaches it.
fn grow_log(
    rng: &mut SimRng,
    model: &mut SizeModel,
    account_id: &str,
    region: &str,
    delivered_at: DateTime<Utc>,
    target: usize,
) -> (Vec<u8>, Vec<u8>, String, String) {
    let mut records: Vec<u8> = Vec::with_capacity(target * 12);
    let mut oldest: Option<DateTime<Utc>> = None;
    let mut newest: Option<DateTime<Utc>> = None;
    let mut compressed_len = 0usize;
    let mut inflated = Vec::new();
    let mut compressed = Vec::new();
    while compressed_len < target {
        let missing = (target - compressed_len) as f64 * model.inflate_ratio * 1.03;
        let count = ((missing / model.record_bytes).ceil() as usize).clamp(1, 20_000);
        let batch = generate_log(rng, account_id, region, delivered_at, count);
        // `{"Records":[ ... ]}`: splice the inner list onto what we have.
        let inner = &batch.inflated[b"{\"Records\":[".len()..batch.inflated.len() - 2];
        if !records.is_empty() {
            records.push(b',');
        }
        records.extend_from_slice(inner);
        model.record_bytes = 0.8 * model.record_bytes + 0.2 * (inner.len() as f64 / count as f64);
        oldest = Some(oldest.map_or(batch.oldest_event_time, |o| o.min(batch.oldest_event_time)));
        newest = Some(newest.map_or(batch.newest_event_time, |n| n.max(batch.newest_event_time)));
        inflated.clear();
        inflated.extend_from_slice(b"{\"Records\":[");
        inflated.extend_from_slice(&records);
        inflated.extend_from_slice(b"]}");
        compressed = gzip(&inflated);
        compressed_len = compressed.len();
        model.inflate_ratio =
            0.7 * model.inflate_ratio + 0.3 * (inflated.len() as f64 / compressed_len as f64);
    }
    (
        inflated,
        compressed,
        iso_time(oldest.unwrap_or(delivered_at)),
        iso_time(newest.unwrap_or(delivered_at)),
    )
}

/// An object to upload.
struct Pending {
    bucket: String,
    key: String,
    body: Vec<u8>,
    metadata: Vec<(String, String)>,
}

/// Generates `hours` hours of `chain`, starting after its head (or at hour 1), and
/// hands every object to `send` (logs of an hour before its digest).
#[allow(clippy::too_many_arguments)]
fn generate_chain_hours(
    chain: &mut ChainHead,
    chain_index: usize,
    seed: u64,
    origin: DateTime<Utc>,
    hours: u32,
    logs_per_hour: u32,
    size_scale: f64,
    signing_key: &SigningKey,
    send: &dyn Fn(Pending) -> anyhow::Result<()>,
) -> anyhow::Result<Totals> {
    let mut totals = Totals::default();
    let mut model = SizeModel {
        inflate_ratio: 10.0,
        record_bytes: 1100.0,
    };
    for _ in 0..hours {
        let hour_index = chain.hours + 1;
        let end = origin + chrono::Duration::hours(i64::from(hour_index))
            - chrono::Duration::seconds(i64::from(chain.skew_seconds));
        let start = end - chrono::Duration::hours(1);
        let mut rng = SimRng::derive(seed, &[chain_index as u64, u64::from(hour_index)]);
        let empty = rng.chance(EMPTY_HOUR_PERCENT);
        let count = if empty {
            0
        } else {
            rng.between(
                u64::from(logs_per_hour.div_ceil(2)),
                u64::from(logs_per_hour + logs_per_hour / 2),
            ) as usize
        };
        let first_minute =
            start.duration_trunc(chrono::Duration::minutes(1))? + chrono::Duration::minutes(1);
        let mut minutes: Vec<DateTime<Utc>> = (0..count)
            .map(|_| first_minute + chrono::Duration::minutes(rng.below(59) as i64))
            .collect();
        minutes.sort();
        let mut entries = Vec::with_capacity(count);
        for delivered_at in minutes {
            let (band, size) = target_size(&mut rng);
            let size = ((size as f64) * size_scale).max(200.0) as usize;
            let (inflated, compressed, oldest, newest) = grow_log(
                &mut rng,
                &mut model,
                &chain.account_id,
                &chain.region,
                delivered_at,
                size,
            );
            let key = log_key(
                &chain.key_root,
                LOG_FAMILY,
                &chain.account_id,
                &chain.region,
                delivered_at,
                &rng.alnum(16),
            );
            entries.push(LogFileEntry {
                s3_bucket: chain.bucket.clone(),
                s3_object: key.clone(),
                hash_value: sha256_hex(&inflated),
                hash_algorithm: HASH_ALGORITHM.to_owned(),
                newest_event_time: newest,
                oldest_event_time: oldest,
            });
            totals.log_files += 1;
            totals.size_bands[band] += 1;
            totals.log_bytes += compressed.len() as u64;
            totals.log_inflated_bytes += inflated.len() as u64;
            send(Pending {
                bucket: chain.bucket.clone(),
                key,
                body: compressed,
                metadata: Vec::new(),
            })?;
        }
        let key = digest_key(
            &chain.key_root,
            &chain.account_id,
            &chain.region,
            PER_ACCOUNT_TRAIL_NAME,
            "us-east-1",
            end,
            false,
        );
        let previous = (chain.hours > 0).then(|| PreviousDigest {
            bucket: chain.bucket.clone(),
            object: chain.last_key.clone(),
            hash_value: chain.last_inflated_sha256.clone(),
            hash_algorithm: HASH_ALGORITHM.to_owned(),
            signature: chain.last_signature.clone(),
        });
        let body = DigestBody {
            aws_account_id: chain.account_id.clone(),
            digest_start_time: iso_time(start),
            digest_end_time: iso_time(end),
            digest_s3_bucket: chain.bucket.clone(),
            digest_s3_object: key.clone(),
            digest_public_key_fingerprint: signing_key.fingerprint(),
            digest_signature_algorithm: SIGNATURE_ALGORITHM.to_owned(),
            newest_event_time: entries.iter().map(|e| e.newest_event_time.clone()).max(),
            oldest_event_time: entries.iter().map(|e| e.oldest_event_time.clone()).min(),
            previous,
            log_files: entries,
        };
        let inflated = body.render(chain.escape_slashes);
        let inflated_sha256 = sha256_hex(inflated.as_bytes());
        let signature = signing_key.sign_hex(&string_to_sign(
            &body.digest_end_time,
            &body.digest_s3_bucket,
            &body.digest_s3_object,
            &inflated_sha256,
            body.previous.as_ref().map(|link| link.signature.as_str()),
        ))?;
        let compressed = gzip(inflated.as_bytes());
        totals.digests += 1;
        if body.log_files.is_empty() {
            totals.empty_digests += 1;
        }
        totals.digest_bytes += compressed.len() as u64;
        totals.digest_inflated_bytes += inflated.len() as u64;
        send(Pending {
            bucket: chain.bucket.clone(),
            key: key.clone(),
            body: compressed,
            metadata: vec![
                ("signature".to_owned(), signature.clone()),
                (
                    "signature-algorithm".to_owned(),
                    SIGNATURE_ALGORITHM.to_owned(),
                ),
            ],
        })?;
        chain.hours = hour_index;
        chain.last_key = key;
        chain.last_end = end;
        chain.last_inflated_sha256 = inflated_sha256;
        chain.last_signature = signature;
    }
    Ok(totals)
}

/// Generates `hours` more hours for every chain in `chains` on `threads` generator
/// threads while the async side uploads with bounded concurrency.
#[allow(clippy::too_many_arguments)]
async fn run_generation(
    endpoint: &Endpoint,
    chains: Vec<(usize, ChainHead)>,
    seed: u64,
    origin: DateTime<Utc>,
    hours: u32,
    logs_per_hour: u32,
    size_scale: f64,
    signing_key: Arc<SigningKey>,
    threads: usize,
) -> anyhow::Result<(Vec<(usize, ChainHead)>, Totals)> {
    let client = s3_client(&sdk_config(endpoint, false));
    let (sender, receiver) = tokio::sync::mpsc::channel::<Pending>(256);
    let queue = Arc::new(Mutex::new(chains));
    let done: Arc<Mutex<Vec<(usize, ChainHead)>>> = Arc::new(Mutex::new(Vec::new()));
    let totals = Arc::new(Mutex::new(Totals::default()));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..threads.max(1) {
        let queue = queue.clone();
        let done = done.clone();
        let totals = totals.clone();
        let sender = sender.clone();
        let signing_key = signing_key.clone();
        workers.push(std::thread::spawn(move || -> anyhow::Result<()> {
            loop {
                let next = queue
                    .lock()
                    .map_err(|_| anyhow::anyhow!("queue poisoned"))?
                    .pop();
                let Some((index, mut chain)) = next else {
                    return Ok(());
                };
                let send = |pending: Pending| {
                    sender
                        .blocking_send(pending)
                        .map_err(|_| anyhow::anyhow!("the uploader stopped"))
                };
                let chain_totals = generate_chain_hours(
                    &mut chain,
                    index,
                    seed,
                    origin,
                    hours,
                    logs_per_hour,
                    size_scale,
                    &signing_key,
                    &send,
                )?;
                totals
                    .lock()
                    .map_err(|_| anyhow::anyhow!("totals poisoned"))?
                    .add(&chain_totals);
                done.lock()
                    .map_err(|_| anyhow::anyhow!("done poisoned"))?
                    .push((index, chain));
            }
        }));
    }
    drop(sender);
    let uploaded = AtomicU64::new(0);
    let started = Instant::now();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    stream
        .for_each_concurrent(UPLOAD_CONCURRENCY, |pending| {
            let client = client.clone();
            let uploaded = &uploaded;
            let failures = failures.clone();
            async move {
                // A busy server may answer 5xx now and then: a few spaced retries.
                let body = bytes::Bytes::from(pending.body);
                let mut attempt = 0u64;
                loop {
                    attempt += 1;
                    let mut request = client
                        .put_object()
                        .bucket(&pending.bucket)
                        .key(&pending.key)
                        .content_type("application/json")
                        .content_encoding("gzip")
                        .body(ByteStream::from(body.clone()));
                    for (name, value) in &pending.metadata {
                        request = request.metadata(name, value);
                    }
                    let Err(error) = request.send().await else {
                        break;
                    };
                    let server_side = error
                        .raw_response()
                        .is_some_and(|response| response.status().is_server_error());
                    if server_side && attempt < 4 {
                        tokio::time::sleep(std::time::Duration::from_millis(250 * attempt)).await;
                        continue;
                    }
                    failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "trailbench: PUT s3://{}/{} failed after {attempt} attempts: {}",
                        pending.bucket,
                        pending.key,
                        aws_sdk_s3::error::DisplayErrorContext(&error)
                    );
                    break;
                }
                let count = uploaded.fetch_add(1, Ordering::Relaxed) + 1;
                if count.is_multiple_of(5000) {
                    eprintln!(
                        "trailbench: {count} objects written ({:.0}/s)",
                        count as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        })
        .await;
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
    }
    let failed = failures.load(Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} uploads failed");
    let mut chains =
        std::mem::take(&mut *done.lock().map_err(|_| anyhow::anyhow!("done poisoned"))?);
    chains.sort_by_key(|(index, _)| *index);
    let totals = totals
        .lock()
        .map_err(|_| anyhow::anyhow!("totals poisoned"))?
        .clone();
    Ok((chains, totals))
}

/// Writes a new data set (or adds accounts to the one in `existing`).
pub async fn generate(
    endpoint: &Endpoint,
    options: &GenerateOptions,
    existing: Option<BenchState>,
) -> anyhow::Result<BenchState> {
    anyhow::ensure!(
        options.accounts > 0 && !options.regions.is_empty() && options.days > 0,
        "nothing to generate"
    );
    // Added accounts get as many hours as the existing chains have (extensions included).
    let hours = existing
        .as_ref()
        .and_then(|state| state.chains.first().map(|chain| chain.hours))
        .unwrap_or(options.days * 24);
    let chain_count = (options.accounts * options.regions.len()) as u64;
    let chain_hours = chain_count * u64::from(hours);
    let logs_per_hour = match &existing {
        Some(state) => state.logs_per_hour,
        None => (options.objects.saturating_sub(chain_hours))
            .div_ceil(chain_hours)
            .max(1) as u32,
    };
    let (signing_key, origin, seed) = match &existing {
        Some(state) => {
            anyhow::ensure!(
                state.regions == options.regions,
                "regions differ from the existing data set"
            );
            (
                SigningKey::from_state(&state.signing_key)?,
                state.origin,
                state.seed,
            )
        }
        None => {
            let now = Utc::now();
            let origin = (now
                - chrono::Duration::hours(i64::from(hours))
                - chrono::Duration::minutes(EXTEND_ROOM_MINUTES))
            .duration_trunc(chrono::Duration::minutes(1))?
                + chrono::Duration::seconds(17);
            let key = SigningKey::generate(
                origin - chrono::Duration::days(1),
                now + chrono::Duration::days(30),
            )?;
            (key, origin, options.seed)
        }
    };
    let org_id = match &existing {
        Some(state) => state.org_id.clone(),
        None => options.org_id.clone(),
    };
    let client = s3_client(&sdk_config(endpoint, false));
    let mut chains = Vec::new();
    let base_index = existing.as_ref().map_or(0, |state| state.chains.len());
    for account in options.first_account..options.first_account + options.accounts {
        let account_id = account_id(account);
        let bucket = match &org_id {
            Some(_) => ORG_BUCKET.to_owned(),
            None => bucket_for(&account_id),
        };
        ensure_bucket(&client, &bucket).await?;
        for region in &options.regions {
            let index = base_index + chains.len();
            let mut rng = SimRng::derive(seed, &[u64::MAX - 1, index as u64]);
            chains.push((
                index,
                ChainHead {
                    account_id: account_id.clone(),
                    region: region.clone(),
                    bucket: bucket.clone(),
                    key_root: key_root("", org_id.as_deref(), &account_id),
                    skew_seconds: rng.below(3000) as u32,
                    escape_slashes: index.is_multiple_of(2),
                    hours: 0,
                    last_key: String::new(),
                    last_end: origin,
                    last_inflated_sha256: String::new(),
                    last_signature: String::new(),
                },
            ));
        }
    }
    eprintln!(
        "trailbench: generating {} chains x {hours} hours, about {logs_per_hour} log files per chain-hour (target {} objects)",
        chains.len(),
        options.objects
    );
    let signing_key = Arc::new(signing_key);
    let (chains, totals) = run_generation(
        endpoint,
        chains,
        seed,
        origin,
        hours,
        logs_per_hour,
        options.size_scale,
        signing_key.clone(),
        options.threads,
    )
    .await?;
    let first_digest_start = chains
        .iter()
        .map(|(_, chain)| origin - chrono::Duration::seconds(i64::from(chain.skew_seconds)))
        .min()
        .unwrap_or(origin);
    let mut state = match existing {
        Some(state) => state,
        None => BenchState {
            version: STATE_VERSION,
            seed,
            regions: options.regions.clone(),
            home_region: "us-east-1".to_owned(),
            trail_name: PER_ACCOUNT_TRAIL_NAME.to_owned(),
            logs_per_hour,
            signing_key: signing_key.to_state(),
            origin,
            chains: Vec::new(),
            totals: Totals::default(),
            last_extension: None,
            first_digest_start,
            org_id,
        },
    };
    state.first_digest_start = state.first_digest_start.min(first_digest_start);
    state
        .chains
        .extend(chains.into_iter().map(|(_, chain)| chain));
    state.totals.add(&totals);
    Ok(state)
}

/// Delivers one more hour on every chain with about `percent` % of the data set's
/// object count as new files.
pub async fn extend(
    endpoint: &Endpoint,
    state: &mut BenchState,
    percent: f64,
    threads: usize,
) -> anyhow::Result<Totals> {
    let now = Utc::now();
    for chain in &state.chains {
        let next_end = state.origin + chrono::Duration::hours(i64::from(chain.hours + 1))
            - chrono::Duration::seconds(i64::from(chain.skew_seconds));
        anyhow::ensure!(
            next_end < now,
            "the next hour of {} ends in the future ({next_end})",
            chain.last_key
        );
    }
    let wanted = (state.totals.objects() as f64 * percent / 100.0).round() as u64;
    let chain_count = state.chains.len() as u64;
    let logs_per_hour = (wanted.saturating_sub(chain_count))
        .div_ceil(chain_count)
        .max(1) as u32;
    let chains: Vec<(usize, ChainHead)> = state.chains.iter().cloned().enumerate().collect();
    let signing_key = Arc::new(SigningKey::from_state(&state.signing_key)?);
    let (chains, totals) = run_generation(
        endpoint,
        chains,
        state.seed,
        state.origin,
        1,
        logs_per_hour,
        1.0,
        signing_key,
        threads,
    )
    .await?;
    state.chains = chains.into_iter().map(|(_, chain)| chain).collect();
    state.totals.add(&totals);
    state.last_extension = Some(totals.clone());
    Ok(totals)
}

/// `aws cloudtrail list-public-keys`-shaped JSON of the benchmark's signing key.
pub fn public_keys_json(state: &BenchState) -> anyhow::Result<String> {
    let key = SigningKey::from_state(&state.signing_key)?;
    Ok(PublicKeyList {
        public_key_list: vec![key.public_key_entry()],
    }
    .to_json_pretty())
}
