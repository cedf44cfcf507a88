//! Test-only CloudTrail stand-in: signed digest chains and log files built per
//! docs/cloudtrail-format.md §1–§4 with a test RSA key, put into a [`MemorySource`] and archived
//! exactly as collect archives them ([`copy_object`], then the store record).
//! Key names, JSON and the string to sign are written here independently of
//! the pipeline's own `cloudtrail` module, so one cannot hide the other's bug.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use async_trait::async_trait;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair, RSA_PKCS1_SHA256};
use chrono::{DateTime, Duration, DurationRound, Utc};

use crate::cloudtrail::gzip::InflateLimits;
use crate::cloudtrail::public_keys::{KeyRing, PublicKey};
use crate::collect::{fetch_one, CollectSettings, FetchContext};
use crate::copy::{copy_object, CopySettings};
use crate::model::error::SeamError;
use crate::model::object::SourceRef;
use crate::model::time::utc_text;
use crate::seams::{Clock, LockMode, ProgressStore, TrailSource};
use crate::testsuite::memory::{FixedClock, MemoryArchive, MemorySource, MemoryStore};

use crate::model::object::ArchivedSource;
use crate::verify::{verify, FetchedLog, SourceLookup, StaticKeys, VerifyOutcome, VerifySettings};

pub const READER: &str = "999988887777";
pub const BUCKET: &str = "org-trail-bucket";
pub const ARCHIVE_PREFIX: &str = "archive";
pub const ACCOUNT: &str = "111122223333";

pub struct TestKey {
    pair: RsaKeyPair,
    public: PublicKey,
}

impl TestKey {
    fn generate() -> TestKey {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
        let public = PublicKey::from_der(pair.public_key().as_ref()).expect("public key");
        TestKey { pair, public }
    }

    pub fn fingerprint(&self) -> &str {
        self.public.fingerprint()
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn sign(&self, message: &[u8]) -> String {
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .expect("sign");
        hex::encode(signature)
    }
}

/// CloudTrail's signing key of the test regions.
pub fn aws_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(TestKey::generate)
}

/// A key CloudTrail never published.
pub fn rogue_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(TestKey::generate)
}

pub fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Where one trail delivers for one account and region.
#[derive(Debug, Clone)]
pub struct Trail {
    pub prefix: String,
    pub org: Option<String>,
    pub account: String,
    pub region: String,
    pub name: String,
    pub home: String,
}

impl Trail {
    /// An organization trail with a key prefix, delivering in `region`, home
    /// region us-east-1, with `_` and `.` in its name.
    pub fn org(region: &str) -> Trail {
        Trail {
            prefix: "org-logs/cloudtrail".into(),
            org: Some("o-abcde12345".into()),
            account: ACCOUNT.into(),
            region: region.into(),
            name: "Org_Trail.main".into(),
            home: "us-east-1".into(),
        }
    }

    fn root(&self) -> String {
        let org = self
            .org
            .as_deref()
            .map(|org| format!("{org}/"))
            .unwrap_or_default();
        format!("{}/AWSLogs/{org}{}/", self.prefix, self.account)
    }

    pub fn digest_key(&self, end: DateTime<Utc>, backfill: bool) -> String {
        format!(
            "{}CloudTrail-Digest/{}/{}/{}_CloudTrail-Digest_{}_{}_{}_{}{}.json.gz",
            self.root(),
            self.region,
            end.format("%Y/%m/%d"),
            self.account,
            self.region,
            self.name,
            self.home,
            end.format("%Y%m%dT%H%M%SZ"),
            if backfill { "_backfill" } else { "" }
        )
    }

    pub fn log_key(&self, delivered: DateTime<Utc>, unique: &str) -> String {
        format!(
            "{}CloudTrail/{}/{}/{}_CloudTrail_{}_{}_{unique}.json.gz",
            self.root(),
            self.region,
            delivered.format("%Y/%m/%d"),
            self.account,
            self.region,
            delivered.format("%Y%m%dT%H%MZ"),
        )
    }

    /// A log file delivered at `delivered` (to the minute).
    pub fn log(&self, delivered: DateTime<Utc>, unique: &str) -> SimLog {
        let delivered = delivered
            .duration_trunc(Duration::minutes(1))
            .expect("truncate");
        let event_time = utc_text(delivered - Duration::minutes(3));
        let inflated = format!(
            r#"{{"Records":[{{"eventVersion":"1.08","eventTime":"{event_time}","awsRegion":"{}","recipientAccountId":"{}","eventName":"Event{unique}"}}]}}"#,
            self.region, self.account
        )
        .into_bytes();
        SimLog {
            key: self.log_key(delivered, unique),
            raw: gzip(&inflated),
            event_time,
            inflated,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimLog {
    pub key: String,
    pub raw: Vec<u8>,
    pub inflated: Vec<u8>,
    pub event_time: String,
}

#[derive(Debug, Clone)]
pub struct SimDigest {
    pub key: String,
    pub end: DateTime<Utc>,
    pub inflated: Vec<u8>,
    pub raw: Vec<u8>,
    pub signature: String,
    pub logs: Vec<SimLog>,
    pub backfill_generated: Option<DateTime<Utc>>,
}

pub struct PreviousLink<'a> {
    pub key: &'a str,
    pub inflated: &'a [u8],
    pub signature: &'a str,
}

/// Digest JSON per docs/cloudtrail-format.md §2 (field order of real digests, `/` escaped as `\/`
/// like real bodies).
#[allow(clippy::too_many_arguments)]
pub fn digest_json(
    bucket: &str,
    key: &str,
    account: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    fingerprint: &str,
    previous: Option<&PreviousLink<'_>>,
    logs: &[SimLog],
) -> Vec<u8> {
    let text = |value: &str| serde_json::to_string(value).expect("json string");
    let null = || "null".to_string();
    let (newest, oldest) = match (
        logs.iter().map(|log| &log.event_time).max(),
        logs.iter().map(|log| &log.event_time).min(),
    ) {
        (Some(newest), Some(oldest)) => (text(newest), text(oldest)),
        _ => (null(), null()),
    };
    let (prev_bucket, prev_key, prev_hash, prev_algorithm, prev_signature) = match previous {
        Some(previous) => (
            text(bucket),
            text(previous.key),
            text(&sha_hex(previous.inflated)),
            text("SHA-256"),
            text(previous.signature),
        ),
        None => (null(), null(), null(), null(), null()),
    };
    let log_files: Vec<String> = logs
        .iter()
        .map(|log| {
            format!(
                r#"{{"s3Bucket":{},"s3Object":{},"hashValue":{},"hashAlgorithm":"SHA-256","newestEventTime":{},"oldestEventTime":{}}}"#,
                text(bucket),
                text(&log.key),
                text(&sha_hex(&log.inflated)),
                text(&log.event_time),
                text(&log.event_time)
            )
        })
        .collect();
    let json = format!(
        r#"{{"awsAccountId":{},"digestStartTime":{},"digestEndTime":{},"digestS3Bucket":{},"digestS3Object":{},"digestPublicKeyFingerprint":{},"digestSignatureAlgorithm":"SHA256withRSA","newestEventTime":{newest},"oldestEventTime":{oldest},"previousDigestS3Bucket":{prev_bucket},"previousDigestS3Object":{prev_key},"previousDigestHashValue":{prev_hash},"previousDigestHashAlgorithm":{prev_algorithm},"previousDigestSignature":{prev_signature},"logFiles":[{}]}}"#,
        text(account),
        text(&utc_text(start)),
        text(&utc_text(end)),
        text(bucket),
        text(key),
        text(fingerprint),
        log_files.join(",")
    );
    json.replace('/', "\\/").into_bytes()
}

/// docs/cloudtrail-format.md §3.3, written out again on purpose.
pub fn sign_digest(
    key: &TestKey,
    end: DateTime<Utc>,
    bucket: &str,
    object: &str,
    inflated: &[u8],
    previous_signature: Option<&str>,
) -> String {
    let message = format!(
        "{}\n{bucket}/{object}\n{}\n{}",
        utc_text(end),
        sha_hex(inflated),
        previous_signature.unwrap_or("null")
    );
    key.sign(message.as_bytes())
}

/// `hours` hourly digests of `trail`, the first ending at `first_end` and
/// starting the chain; every hour `k % 5 == 3` is empty, the others list two
/// log files.
pub fn build_chain(trail: &Trail, first_end: DateTime<Utc>, hours: usize) -> Vec<SimDigest> {
    let key = aws_key();
    let mut digests: Vec<SimDigest> = Vec::new();
    for hour in 0..hours {
        let end = first_end + Duration::hours(hour as i64);
        let start = end - Duration::hours(1);
        let logs: Vec<SimLog> = if hour % 5 == 3 {
            Vec::new()
        } else {
            [10, 35]
                .iter()
                .enumerate()
                .map(|(index, minutes)| {
                    trail.log(
                        start + Duration::minutes(*minutes),
                        &format!("H{hour:04}N{index}{:010}", 0),
                    )
                })
                .collect()
        };
        let digest_key = trail.digest_key(end, false);
        let previous = digests.last().map(|previous| PreviousLink {
            key: &previous.key,
            inflated: &previous.inflated,
            signature: &previous.signature,
        });
        let inflated = digest_json(
            BUCKET,
            &digest_key,
            &trail.account,
            start,
            end,
            key.fingerprint(),
            previous.as_ref(),
            &logs,
        );
        let signature = sign_digest(
            key,
            end,
            BUCKET,
            &digest_key,
            &inflated,
            previous.as_ref().map(|previous| previous.signature),
        );
        digests.push(SimDigest {
            key: digest_key,
            end,
            raw: gzip(&inflated),
            inflated,
            signature,
            logs,
            backfill_generated: None,
        });
    }
    digests
}

/// A backfill digest for the window `(end − 1h, end]` listing `logs`.
pub fn backfill_digest(trail: &Trail, end: DateTime<Utc>, logs: Vec<SimLog>) -> SimDigest {
    let key = aws_key();
    let digest_key = trail.digest_key(end, true);
    let inflated = digest_json(
        BUCKET,
        &digest_key,
        &trail.account,
        end - Duration::hours(1),
        end,
        key.fingerprint(),
        None,
        &logs,
    );
    let signature = sign_digest(key, end, BUCKET, &digest_key, &inflated, None);
    SimDigest {
        key: digest_key,
        end,
        raw: gzip(&inflated),
        inflated,
        signature,
        logs,
        backfill_generated: Some(end + Duration::hours(3)),
    }
}

/// Re-signs `digest` after `edit` changed its JSON (as CloudTrail would have
/// signed that content — used with another key to forge).
pub fn resign(digest: &mut SimDigest, previous_signature: Option<&str>, key: &TestKey) {
    digest.raw = gzip(&digest.inflated);
    digest.signature = sign_digest(
        key,
        digest.end,
        BUCKET,
        &digest.key,
        &digest.inflated,
        previous_signature,
    );
}

/// Edits a digest's JSON and has CloudTrail's key sign the result (for
/// digests that are authentic yet inconsistent with their chain).
pub fn edit_and_resign(
    digest: &mut SimDigest,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) {
    let mut value: serde_json::Value = serde_json::from_slice(&digest.inflated).expect("json");
    let object = value.as_object_mut().expect("object");
    edit(object);
    let previous_signature = object
        .get("previousDigestSignature")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string);
    digest.inflated = serde_json::to_string(&value)
        .expect("json")
        .replace('/', "\\/")
        .into_bytes();
    resign(digest, previous_signature.as_deref(), aws_key());
}

/// Re-links and re-signs `chain[from..]` after an earlier digest changed, as
/// CloudTrail would have produced them.
pub fn relink(chain: &mut [SimDigest], from: usize) {
    for index in from..chain.len() {
        let (hash, signature) = {
            let previous = &chain[index - 1];
            (sha_hex(&previous.inflated), previous.signature.clone())
        };
        edit_and_resign(&mut chain[index], |object| {
            object.insert("previousDigestHashValue".into(), hash.into());
            object.insert("previousDigestSignature".into(), signature.into());
        });
    }
}

/// Replaces the first occurrence of `from` in `bytes`.
pub fn replace_once(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
    assert!(text.contains(from), "{from:?} not found");
    text.replacen(from, to, 1).into_bytes()
}

pub const LIMITS: InflateLimits = InflateLimits {
    max_inflated_bytes: 64 * 1024 * 1024,
    max_ratio: 2000,
};

pub fn copy_settings() -> CopySettings {
    CopySettings {
        archive_prefix: ARCHIVE_PREFIX.into(),
        kms_key_id: "key".into(),
        lock_mode: LockMode::Compliance,
        retention_days: 1,
        multipart_threshold_bytes: 8 * 1024 * 1024,
        inflate_limits: LIMITS,
    }
}

pub fn settings() -> VerifySettings {
    VerifySettings {
        archive_prefix: ARCHIVE_PREFIX.into(),
        chain_head_stale: Duration::hours(3),
        unreferenced_grace: Duration::hours(1),
        unreadable_grace: Duration::hours(24),
        max_digest_bytes: 4 * 1024 * 1024,
        inflate_limits: LIMITS,
        full: false,
        concurrency: 8,
    }
}

/// One member's source bucket, the archive, the store, the clock, the keys.
pub struct World {
    pub source: std::sync::Arc<MemorySource>,
    pub archive: MemoryArchive,
    pub store: MemoryStore,
    pub clock: FixedClock,
    pub keys: StaticKeys,
    pub fetched: AtomicU64,
}

impl World {
    pub fn new(now: DateTime<Utc>) -> World {
        let mut ring = KeyRing::new();
        for region in ["eu-west-1", "us-east-1"] {
            ring.insert(region, aws_key().public().clone())
                .expect("key ring");
        }
        World {
            source: std::sync::Arc::new(MemorySource::new(BUCKET)),
            archive: MemoryArchive::new("audit-archive"),
            store: MemoryStore::default(),
            clock: FixedClock::at(now),
            keys: StaticKeys(ring),
            fetched: AtomicU64::new(0),
        }
    }

    pub fn put_log(&self, log: &SimLog) {
        self.source.put(&log.key, log.raw.clone(), &[]);
    }

    /// Puts a digest with CloudTrail's metadata, and its log files.
    pub fn put_digest(&self, digest: &SimDigest) {
        let generated = digest.backfill_generated.map(utc_text);
        let mut metadata = vec![
            ("signature", digest.signature.as_str()),
            ("signature-algorithm", "SHA256withRSA"),
        ];
        if let Some(generated) = &generated {
            metadata.push(("backfill-generation-timestamp", generated.as_str()));
        }
        self.source.put(&digest.key, digest.raw.clone(), &metadata);
        for log in &digest.logs {
            self.put_log(log);
        }
    }

    pub fn source_ref(key: &str) -> SourceRef {
        SourceRef {
            account_id: READER.into(),
            bucket: BUCKET.into(),
            key: key.into(),
        }
    }

    /// Copies one source object into the archive and records it, as collect does.
    pub async fn archive_key(&self, key: &str) {
        let source = World::source_ref(key);
        let copied = copy_object(
            self.source.as_ref(),
            &self.archive,
            &copy_settings(),
            &source,
            self.clock.now(),
            None,
        )
        .await
        .expect("copy");
        self.store
            .record_object(&source, &copied.record)
            .expect("record");
    }

    /// Archives every source object not archived yet, except `skip`.
    pub async fn archive_all_except(&self, skip: &[&str]) {
        let listed = self.source.list_all("").await.expect("list");
        for object in listed {
            if skip.contains(&object.key.as_str()) {
                continue;
            }
            let recorded = self
                .store
                .object(&World::source_ref(&object.key))
                .expect("store");
            if recorded.is_none() {
                self.archive_key(&object.key).await;
            }
        }
    }

    pub async fn archive_all(&self) {
        self.archive_all_except(&[]).await;
    }

    pub async fn run(&self, settings: &VerifySettings) -> VerifyOutcome {
        let sources = [ArchivedSource {
            reader_account_id: READER.into(),
            bucket: BUCKET.into(),
        }];
        verify(
            &sources,
            &[],
            &[],
            None,
            &self.archive,
            &self.store,
            &self.keys,
            self,
            &self.clock,
            settings,
        )
        .await
    }

    pub fn gets(&self) -> u64 {
        self.archive.gets.load(Ordering::Relaxed)
    }
}

/// The binary's fallback, in memory: copy the key from the source now,
/// through the one copy path (`collect::fetch_one`).
#[async_trait]
impl SourceLookup for World {
    async fn fetch_missing(&self, source: &SourceRef) -> Result<FetchedLog, SeamError> {
        if source.bucket != BUCKET || source.account_id != READER {
            return Ok(FetchedLog::default());
        }
        let settings = collect_settings();
        let cancel = tokio_util::sync::CancellationToken::new();
        let context = FetchContext {
            archive: &self.archive,
            store: &self.store,
            settings: &settings,
            now: self.clock.now(),
            cancel: &cancel,
        };
        let member = crate::cloudtrail::keys::parse_trail_key(&source.key)
            .map(|key| key.account_id)
            .unwrap_or_else(|_| source.account_id.clone());
        let fetched = fetch_one(context, self.source.clone(), &member, source).await;
        if let Some(error) = fetched.errors.first() {
            return Err(SeamError::Permanent(error.message.clone()));
        }
        if fetched.record.is_some() {
            self.fetched.fetch_add(1, Ordering::Relaxed);
        }
        Ok(FetchedLog {
            record: fetched.record,
            findings: fetched.findings,
        })
    }
}

/// How [`World`]'s fetches copy: [`copy_settings`], collection's defaults.
pub fn collect_settings() -> CollectSettings {
    CollectSettings {
        copy: copy_settings(),
        concurrency: 4,
        list_concurrency: 2,
        lookback_days: 2,
        redelivery_sweep_days: 30,
        sweep_interval: Duration::hours(24),
        copy_attempts: 3,
        max_keys_per_partition_per_run: 10_000,
        max_object_bytes: 64 * 1024 * 1024,
    }
}
