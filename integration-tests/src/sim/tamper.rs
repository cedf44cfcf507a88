//! Tampering with delivered trail files the way an administrator of the account that
//! owns the source bucket could (with that account's root credentials).
//!
//! Every tamper picks a deterministic victim in the selected chain (by default member
//! 0, first region, per-account trail) and reports exactly which source object it
//! touched and which finding kind (`docs/cli-contract.md`) trailvault must raise on
//! that object — assuming the tamper happens *before* trailvault collected the
//! victim. After collection the archive keeps the original, history is not lost,
//! and the expected outcome differs (e.g. `source_object_modified` or nothing).
//!
//! Digest chain state in the simulation is not changed: CloudTrail keeps linking
//! later digests to what it delivered, not to what the attacker left.

use std::fmt;
use std::io::Write as _;
use std::str::FromStr;

use chrono::{DateTime, DurationRound as _, Utc};

use super::cloudtrail::{gunzip_single_member, gzip, iso_time, DigestBody, LOG_FAMILY};
use super::deliver::{bucket_owner, put_object, PendingObject};
use super::provision::sdk_error;
use super::rng::SimRng;
use super::signing::{sha256_hex, string_to_sign, SigningKey, SIGNATURE_ALGORITHM};
use serde::{Deserialize, Serialize};

use super::{ChainSelector, ChainState, LogRecord, Sim};

/// Inflated size of the gzip bomb: above the generated config's 64 MiB bound.
const GZIP_BOMB_INFLATED_BYTES: usize = 128 * 1024 * 1024;

/// An attack on delivered trail files. See each variant for the victim and the
/// expected finding. Victims are positions relative to the chain's middle digest
/// `m = (n-1)/2` (n = delivered hours), spread so that on a 48-hour chain every kind
/// strikes different objects: log tampers take the 1st, 2nd, 3rd log counted outward
/// from digest `m-12`; digest tampers strike `m-6 ..= m+7`; newest-digest tampers the
/// head; planted files are named inside the oldest window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tamper {
    /// Deletes a log file (1st log slot). → `log_file_missing` on the log.
    DeleteLog,
    /// Rewrites a log (2nd log slot; same key, valid gzip, one record's
    /// `sourceIPAddress` changed). → `log_file_hash_mismatch` on the log.
    ModifyLog,
    /// Appends a second gzip member with a forged record to a log (3rd log slot; the
    /// first member, so the digest's hash, stays intact). → `log_file_trailing_data`.
    AppendGzipMember,
    /// Deletes digest `m` (its successor names it). → `digest_missing` on it. Its
    /// logs are then listed by no digest, which may also yield
    /// `log_file_unreferenced` warnings.
    DeleteDigest,
    /// Deletes digests `m+3` and `m+4` (needs n ≥ 4: both have an existing
    /// predecessor and the later one a successor). → `digest_missing` on each (the
    /// second in `also_expected`); the first is provable only from the hourly cadence,
    /// the case aws-cli#7054 misses.
    DeleteTwoConsecutiveDigests,
    /// Deletes the newest digest (needs n ≥ 2). → `chain_head_stale`, reported with
    /// the new head (digest n-1) as `key`: nothing references the newest digest, so
    /// only time proves it existed and the validator cannot name the deleted key (it
    /// is in `touched`). After all `history_hours` are delivered the heads are 5–35
    /// min old; without the newest digest the head is 65–95 min old, beyond the
    /// generated config's `chain_head_stale_hours = 1`. If more hours are delivered
    /// after the tamper, the successor's link proves it: then expect `digest_missing`
    /// on the deleted key instead.
    DeleteNewestDigest,
    /// Changes one character of the digest listing a log nearest `m-3` (its
    /// `newestEventTime` + 1 s), keeping its signature metadata.
    /// → `digest_signature_invalid` on it; its successor's `previousDigestHashValue`
    /// no longer matches → `digest_link_mismatch` on the successor (`also_expected`).
    ChangeDigestBody,
    /// Re-signs digest `m-6` with a key CloudTrail never published (fingerprint in the
    /// body and metadata signature both changed). → `digest_public_key_unknown` on it;
    /// `digest_link_mismatch` on its successor (`also_expected`).
    SignWithOtherKey,
    /// Copies digest `m+6` (bytes and metadata) over its successor's key — a
    /// substitution: the body found at that key names another key. → `digest_moved`
    /// on the successor's key. (The successor's own content is gone, so the link of
    /// digest `m+8` to it may also be reported.)
    MoveDigest,
    /// Re-uploads the newest digest without `signature` / `signature-algorithm`
    /// metadata; the newest because no successor carries its signature in
    /// `previousDigestSignature`. → `digest_signature_invalid`.
    RemoveSignatureMetadata,
    /// Copies a log (4th log slot) of the selected member into the next member's
    /// source, under that member's folder but still named (and recorded) for the
    /// original account. → `account_mismatch` on the planted object; `account_id` is
    /// the account whose source holds it.
    PlantInOtherAccount,
    /// Plants a gzip member inflating to 128 MiB of zeros (≈130 KB, ratio ≈1000) as a
    /// log file. → `object_malformed` (size bound; 64 MiB in the generated config).
    GzipBomb,
    /// Plants a log file that is plain JSON, not gzip. → `object_malformed`.
    NotGzip,
    /// Plants a valid log file that no digest lists, named inside the chain's oldest
    /// digest window. → `log_file_unreferenced` (after the grace period, measured
    /// from the name's time).
    PlantUnreferencedLog,
}

impl Tamper {
    pub const ALL: [Tamper; 14] = [
        Tamper::DeleteLog,
        Tamper::ModifyLog,
        Tamper::AppendGzipMember,
        Tamper::DeleteDigest,
        Tamper::DeleteTwoConsecutiveDigests,
        Tamper::DeleteNewestDigest,
        Tamper::ChangeDigestBody,
        Tamper::SignWithOtherKey,
        Tamper::MoveDigest,
        Tamper::RemoveSignatureMetadata,
        Tamper::PlantInOtherAccount,
        Tamper::GzipBomb,
        Tamper::NotGzip,
        Tamper::PlantUnreferencedLog,
    ];

    /// Kebab-case name (`trailsim tamper <name>`).
    pub fn name(self) -> &'static str {
        match self {
            Tamper::DeleteLog => "delete-log",
            Tamper::ModifyLog => "modify-log",
            Tamper::AppendGzipMember => "append-gzip-member",
            Tamper::DeleteDigest => "delete-digest",
            Tamper::DeleteTwoConsecutiveDigests => "delete-two-consecutive-digests",
            Tamper::DeleteNewestDigest => "delete-newest-digest",
            Tamper::ChangeDigestBody => "change-digest-body",
            Tamper::SignWithOtherKey => "sign-with-other-key",
            Tamper::MoveDigest => "move-digest",
            Tamper::RemoveSignatureMetadata => "remove-signature-metadata",
            Tamper::PlantInOtherAccount => "plant-in-other-account",
            Tamper::GzipBomb => "gzip-bomb",
            Tamper::NotGzip => "not-gzip",
            Tamper::PlantUnreferencedLog => "plant-unreferenced-log",
        }
    }

    /// The finding kind trailvault must report on the touched object.
    pub fn expected_finding(self) -> &'static str {
        match self {
            Tamper::DeleteLog => "log_file_missing",
            Tamper::ModifyLog => "log_file_hash_mismatch",
            Tamper::AppendGzipMember => "log_file_trailing_data",
            Tamper::DeleteDigest | Tamper::DeleteTwoConsecutiveDigests => "digest_missing",
            Tamper::DeleteNewestDigest => "chain_head_stale",
            Tamper::ChangeDigestBody | Tamper::RemoveSignatureMetadata => {
                "digest_signature_invalid"
            }
            Tamper::SignWithOtherKey => "digest_public_key_unknown",
            Tamper::MoveDigest => "digest_moved",
            Tamper::PlantInOtherAccount => "account_mismatch",
            Tamper::GzipBomb | Tamper::NotGzip => "object_malformed",
            Tamper::PlantUnreferencedLog => "log_file_unreferenced",
        }
    }
}

impl fmt::Display for Tamper {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for Tamper {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Tamper, anyhow::Error> {
        Tamper::ALL
            .into_iter()
            .find(|tamper| tamper.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Tamper::ALL.iter().map(|tamper| tamper.name()).collect();
                anyhow::anyhow!("unknown tamper {text:?}; one of: {}", names.join(", "))
            })
    }
}

/// A further finding a tamper certainly causes, on another object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedFinding {
    pub kind: &'static str,
    pub account_id: String,
    pub bucket: String,
    pub key: String,
}

/// What a tamper touched. `account_id`/`bucket`/`key` is the source object the
/// expected finding names (for deletions, the key that no longer exists; for
/// [`Tamper::DeleteNewestDigest`], the chain's new head).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TamperReport {
    pub kind: Tamper,
    pub account_id: String,
    pub bucket: String,
    pub key: String,
    pub expected_finding: &'static str,
    pub also_expected: Vec<ExpectedFinding>,
    /// Every source key deleted, rewritten or created (in `bucket`).
    pub touched: Vec<String>,
    /// Human-readable description of what was done.
    pub detail: String,
}

/// Offset from the chain's middle digest `(n-1)/2` at which each digest tamper strikes,
/// spaced so that tampers of different kinds on one long chain (48 hours) neither
/// overlap nor touch each other's neighbours. Short chains clamp, and a conflict is
/// then refused (see [`AppliedTamper`]).
fn digest_slot(tamper: Tamper) -> isize {
    match tamper {
        Tamper::DeleteDigest => 0,
        Tamper::DeleteTwoConsecutiveDigests => 3,
        Tamper::ChangeDigestBody => -3,
        Tamper::SignWithOtherKey => -6,
        Tamper::MoveDigest => 6,
        _ => 0,
    }
}

/// Which log (counted by distance from the log anchor) each log tamper takes.
fn log_slot(tamper: Tamper) -> usize {
    match tamper {
        Tamper::DeleteLog => 0,
        Tamper::ModifyLog => 1,
        Tamper::AppendGzipMember => 2,
        _ => 3,
    }
}

/// `middle + offset`, clamped to `low..=high`.
fn digest_index(chain: &ChainState, offset: isize, low: usize, high: usize) -> usize {
    let middle = (chain.digests.len().saturating_sub(1) / 2) as isize;
    (middle + offset).clamp(low as isize, high as isize) as usize
}

/// The `nth` log file (not Insights) counted outward from digest `(n-1)/2 - 12`,
/// away from the digests that digest tampers strike on a 48-hour chain: digest
/// index and log index.
fn log_victim(chain: &ChainState, nth: usize) -> anyhow::Result<(usize, usize)> {
    let count = chain.digests.len();
    let anchor = (count.saturating_sub(1) / 2).saturating_sub(12);
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by_key(|index| (index.abs_diff(anchor), *index));
    let candidates: Vec<(usize, usize)> = order
        .into_iter()
        .flat_map(|digest_index| {
            chain.digests[digest_index]
                .logs
                .iter()
                .enumerate()
                .filter(|(_, log)| log.family == LOG_FAMILY)
                .map(move |(log_index, _)| (digest_index, log_index))
        })
        .collect();
    match candidates.get(nth).or(candidates.last()) {
        Some(found) => Ok(*found),
        None => anyhow::bail!(
            "chain {} ({} {}) has no delivered log file yet: deliver hours first",
            chain.index,
            chain.account_id,
            chain.region
        ),
    }
}

/// The digest with a log file nearest to `around`, within `low..=high`.
fn digest_with_logs(
    chain: &ChainState,
    around: usize,
    low: usize,
    high: usize,
) -> anyhow::Result<usize> {
    (low..=high)
        .filter(|index| {
            chain.digests[*index]
                .logs
                .iter()
                .any(|log| log.family == LOG_FAMILY)
        })
        .min_by_key(|index| (index.abs_diff(around), *index))
        .ok_or_else(|| anyhow::anyhow!("chain {} has no digest listing a log file", chain.index))
}

fn require_digests(chain: &ChainState, at_least: usize, tamper: Tamper) -> anyhow::Result<()> {
    anyhow::ensure!(
        chain.digests.len() >= at_least,
        "{tamper} needs at least {at_least} delivered hours in chain {} ({} {}), it has {}",
        chain.index,
        chain.account_id,
        chain.region,
        chain.digests.len()
    );
    Ok(())
}

fn plus_one_second(timestamp: &str) -> anyhow::Result<String> {
    let parsed = DateTime::parse_from_rfc3339(timestamp)?.with_timezone(&Utc);
    Ok(iso_time(parsed + chrono::Duration::seconds(1)))
}

/// Replaces the value of the first `"sourceIPAddress":"..."` in the inflated log.
fn rewrite_source_ip(inflated: &[u8]) -> anyhow::Result<Vec<u8>> {
    let text = std::str::from_utf8(inflated)?;
    let marker = "\"sourceIPAddress\":\"";
    let start = text
        .find(marker)
        .ok_or_else(|| anyhow::anyhow!("log has no sourceIPAddress"))?
        + marker.len();
    let length = text[start..]
        .find('"')
        .ok_or_else(|| anyhow::anyhow!("unterminated sourceIPAddress"))?;
    let original = &text[start..start + length];
    let replacement = if original == "198.51.100.23" {
        "198.51.100.24"
    } else {
        "198.51.100.23"
    };
    Ok(format!("{}{replacement}{}", &text[..start], &text[start + length..]).into_bytes())
}

fn gzip_bomb() -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0_u8; 1024 * 1024];
    for _ in 0..GZIP_BOMB_INFLATED_BYTES / zeros.len() {
        encoder.write_all(&zeros).expect("gzip into memory");
    }
    encoder.finish().expect("gzip into memory")
}

/// A tamper already applied, kept in the saved state so a later tamper whose victim
/// overlaps it is refused with a clear message instead of failing obscurely or
/// silently spoiling the first one's expected finding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppliedTamper {
    /// Kebab-case kind.
    pub kind: String,
    pub chain_index: usize,
    pub account_id: String,
    pub bucket: String,
    pub key: String,
    pub expected_finding: String,
    /// `bucket/key` of every object deleted, rewritten or created.
    pub touched: Vec<String>,
    /// `bucket/key` of objects the expected finding relies on staying intact (e.g.
    /// the digest that lists a deleted log, the successor that names a deleted
    /// digest).
    pub relied_on: Vec<String>,
}

impl AppliedTamper {
    /// An object one tamper touches that the other touches or relies on.
    fn conflict_with(&self, touched: &[String], relied_on: &[String]) -> Option<String> {
        touched
            .iter()
            .find(|key| self.touched.contains(key) || self.relied_on.contains(key))
            .or_else(|| relied_on.iter().find(|key| self.touched.contains(key)))
            .cloned()
    }
}

/// What a tamper is about to do.
struct TamperPlan {
    touched: Vec<String>,
    relied_on: Vec<String>,
}

impl Sim {
    /// Applies `tamper` to the default victim chain ([`Sim::default_selector`]).
    pub async fn tamper(&mut self, tamper: Tamper) -> anyhow::Result<TamperReport> {
        let selector = self.default_selector();
        self.tamper_on(tamper, selector).await
    }

    /// Applies `tamper` to the selected chain. Different kinds on one chain strike
    /// different objects when the chain is long enough (48 hours); an overlap with an
    /// earlier tamper is refused — use another chain then.
    pub async fn tamper_on(
        &mut self,
        tamper: Tamper,
        selector: ChainSelector,
    ) -> anyhow::Result<TamperReport> {
        let chain = self.chain(selector)?.clone();
        require_digests(&chain, 1, tamper)?;
        let owner = bucket_owner(self, &chain);
        let count = chain.digests.len();
        let mut report = TamperReport {
            kind: tamper,
            account_id: chain.account_id.clone(),
            bucket: chain.bucket.clone(),
            key: String::new(),
            expected_finding: tamper.expected_finding(),
            also_expected: Vec::new(),
            touched: Vec::new(),
            detail: String::new(),
        };
        let digest_key_at = |index: usize| chain.digests[index].key.clone();

        // 1. Choose the victim and what the expected finding relies on.
        let mut plan = TamperPlan {
            touched: Vec::new(),
            relied_on: Vec::new(),
        };
        let mut victim_digest = 0;
        let mut victim_log: Option<(usize, usize)> = None;
        let mut planted: Option<(ChainState, String, String, Vec<u8>)> = None;
        match tamper {
            Tamper::DeleteLog | Tamper::ModifyLog | Tamper::AppendGzipMember => {
                let (digest_index, log_index) = log_victim(&chain, log_slot(tamper))?;
                victim_log = Some((digest_index, log_index));
                plan.touched
                    .push(chain.digests[digest_index].logs[log_index].key.clone());
                plan.relied_on.push(digest_key_at(digest_index));
            }
            Tamper::DeleteDigest => {
                require_digests(&chain, 2, tamper)?;
                victim_digest = digest_index(&chain, digest_slot(tamper), 0, count - 2);
                plan.touched.push(digest_key_at(victim_digest));
                plan.relied_on.push(digest_key_at(victim_digest + 1));
            }
            Tamper::DeleteTwoConsecutiveDigests => {
                require_digests(&chain, 4, tamper)?;
                victim_digest = digest_index(&chain, digest_slot(tamper), 1, count - 3);
                plan.touched.push(digest_key_at(victim_digest));
                plan.touched.push(digest_key_at(victim_digest + 1));
                plan.relied_on.push(digest_key_at(victim_digest - 1));
                plan.relied_on.push(digest_key_at(victim_digest + 2));
            }
            Tamper::DeleteNewestDigest => {
                require_digests(&chain, 2, tamper)?;
                victim_digest = count - 1;
                plan.touched.push(digest_key_at(count - 1));
                plan.relied_on.push(digest_key_at(count - 2));
            }
            Tamper::RemoveSignatureMetadata => {
                victim_digest = count - 1;
                plan.touched.push(digest_key_at(count - 1));
            }
            Tamper::ChangeDigestBody | Tamper::SignWithOtherKey => {
                let high = count.saturating_sub(2);
                let around = digest_index(&chain, digest_slot(tamper), 0, high);
                victim_digest = if tamper == Tamper::ChangeDigestBody {
                    digest_with_logs(&chain, around, 0, count - 1)?
                } else {
                    around
                };
                plan.touched.push(digest_key_at(victim_digest));
                if victim_digest + 1 < count {
                    plan.relied_on.push(digest_key_at(victim_digest + 1));
                }
            }
            Tamper::MoveDigest => {
                require_digests(&chain, 2, tamper)?;
                victim_digest = digest_index(&chain, digest_slot(tamper), 0, count - 2);
                plan.touched.push(digest_key_at(victim_digest + 1));
                plan.relied_on.push(digest_key_at(victim_digest));
                if victim_digest + 2 < count {
                    plan.relied_on.push(digest_key_at(victim_digest + 2));
                }
            }
            Tamper::PlantInOtherAccount => {
                anyhow::ensure!(
                    self.org.members.len() >= 2,
                    "{tamper} needs at least 2 members"
                );
                let (digest_index, log_index) = log_victim(&chain, log_slot(tamper))?;
                victim_log = Some((digest_index, log_index));
                let source_key = chain.digests[digest_index].logs[log_index].key.clone();
                let target_selector = ChainSelector {
                    member: (selector.member + 1) % self.org.members.len(),
                    ..selector
                };
                let target = self.chain(target_selector)?.clone();
                let relative = source_key
                    .strip_prefix(&chain.key_root)
                    .ok_or_else(|| anyhow::anyhow!("log key outside its chain root"))?;
                let planted_key = format!("{}{relative}", target.key_root);
                plan.relied_on.push(source_key);
                planted = Some((target, planted_key, String::new(), Vec::new()));
            }
            Tamper::GzipBomb | Tamper::NotGzip | Tamper::PlantUnreferencedLog => {
                let minute_offset = match tamper {
                    Tamper::PlantUnreferencedLog => 2,
                    Tamper::GzipBomb => 4,
                    _ => 6,
                };
                let (record, inflated) = self.planted_log(&chain, tamper, minute_offset)?;
                plan.touched.push(record.key.clone());
                planted = Some((chain.clone(), record.key, String::new(), inflated));
            }
        }
        let planted_bucket = planted
            .as_ref()
            .map(|(target, ..)| target.bucket.clone())
            .unwrap_or_else(|| chain.bucket.clone());
        if let Some((_, planted_key, ..)) = &planted {
            if !plan.touched.contains(planted_key) {
                plan.touched.push(planted_key.clone());
            }
        }

        // 2. Refuse overlaps with earlier tampers.
        let qualify = |bucket: &str, key: &str| format!("{bucket}/{key}");
        let touched: Vec<String> = plan
            .touched
            .iter()
            .map(|key| qualify(&planted_bucket, key))
            .collect();
        let relied_on: Vec<String> = plan
            .relied_on
            .iter()
            .map(|key| qualify(&chain.bucket, key))
            .collect();
        for earlier in &self.org.tampers {
            if let Some(shared) = earlier.conflict_with(&touched, &relied_on) {
                anyhow::bail!(
                    "{tamper} on chain {} would interfere with the earlier {} tamper at s3://{shared}; \
                     pick another chain (member/region/trail) or reprovision",
                    chain.index,
                    earlier.kind
                );
            }
        }

        // 3. Do it.
        match tamper {
            Tamper::DeleteLog | Tamper::ModifyLog | Tamper::AppendGzipMember => {
                let (digest_index, log_index) = victim_log.expect("planned");
                let log = &chain.digests[digest_index].logs[log_index];
                report.key = log.key.clone();
                match tamper {
                    Tamper::DeleteLog => {
                        self.delete(&owner, &chain.bucket, &log.key).await?;
                        report.detail = format!(
                            "deleted the log listed by digest {}",
                            chain.digests[digest_index].key
                        );
                    }
                    Tamper::ModifyLog => {
                        let (raw, _) = self.fetch(&owner, &chain.bucket, &log.key).await?;
                        let forged = rewrite_source_ip(&gunzip_single_member(&raw)?)?;
                        self.replace(&owner, &chain.bucket, &log.key, gzip(&forged), Vec::new())
                            .await?;
                        report.detail =
                            "rewrote one record's sourceIPAddress (valid gzip, new content hash)"
                                .into();
                    }
                    _ => {
                        let (mut raw, _) = self.fetch(&owner, &chain.bucket, &log.key).await?;
                        let forged = format!(
                            "{{\"Records\":[{{\"eventVersion\":\"1.09\",\"eventTime\":\"{}\",\"eventSource\":\"iam.amazonaws.com\",\"eventName\":\"ListUsers\",\"awsRegion\":\"{}\",\"sourceIPAddress\":\"198.51.100.7\",\"recipientAccountId\":\"{}\"}}]}}",
                            iso_time(log.delivered_at - chrono::Duration::seconds(30)),
                            chain.region,
                            chain.account_id
                        );
                        raw.extend(gzip(forged.as_bytes()));
                        self.replace(&owner, &chain.bucket, &log.key, raw, Vec::new())
                            .await?;
                        report.detail = "appended a second gzip member with a forged record".into();
                    }
                }
            }
            Tamper::DeleteDigest => {
                self.delete(&owner, &chain.bucket, &digest_key_at(victim_digest))
                    .await?;
                report.key = digest_key_at(victim_digest);
                report.detail = format!(
                    "deleted digest {} of {count} (its successor names it)",
                    victim_digest + 1
                );
            }
            Tamper::DeleteTwoConsecutiveDigests => {
                let first = digest_key_at(victim_digest);
                let second = digest_key_at(victim_digest + 1);
                self.delete(&owner, &chain.bucket, &first).await?;
                self.delete(&owner, &chain.bucket, &second).await?;
                report.key = first.clone();
                report.touched = vec![first, second.clone()];
                report.also_expected.push(ExpectedFinding {
                    kind: "digest_missing",
                    account_id: chain.account_id.clone(),
                    bucket: chain.bucket.clone(),
                    key: second,
                });
                report.detail = format!(
                    "deleted digests {} and {} of {count}",
                    victim_digest + 1,
                    victim_digest + 2
                );
            }
            Tamper::DeleteNewestDigest => {
                let newest = &chain.digests[count - 1];
                let new_head = &chain.digests[count - 2];
                self.delete(&owner, &chain.bucket, &newest.key).await?;
                report.key = new_head.key.clone();
                report.touched.push(newest.key.clone());
                report.detail = format!(
                    "deleted the newest digest {} (ended {}); the head now ends {}",
                    newest.key,
                    iso_time(newest.end),
                    iso_time(new_head.end)
                );
            }
            Tamper::RemoveSignatureMetadata => {
                let newest = digest_key_at(count - 1);
                let (raw, _) = self.fetch(&owner, &chain.bucket, &newest).await?;
                self.replace(&owner, &chain.bucket, &newest, raw, Vec::new())
                    .await?;
                report.key = newest;
                report.detail = "re-uploaded the newest digest without signature metadata".into();
            }
            Tamper::ChangeDigestBody => {
                let victim = digest_key_at(victim_digest);
                let (raw, metadata) = self.fetch(&owner, &chain.bucket, &victim).await?;
                let mut body = DigestBody::parse(&gunzip_single_member(&raw)?)?;
                let newest = body
                    .newest_event_time
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("victim digest lists no logs"))?;
                body.newest_event_time = Some(plus_one_second(&newest)?);
                let changed = body.render(chain.escape_slashes);
                self.replace(
                    &owner,
                    &chain.bucket,
                    &victim,
                    gzip(changed.as_bytes()),
                    metadata,
                )
                .await?;
                report.key = victim;
                self.push_successor_link_mismatch(&chain, victim_digest, &mut report);
                report.detail = format!(
                    "changed newestEventTime of digest {} of {count} by one second, kept the signature",
                    victim_digest + 1
                );
            }
            Tamper::SignWithOtherKey => {
                let victim = digest_key_at(victim_digest);
                let (raw, _) = self.fetch(&owner, &chain.bucket, &victim).await?;
                let mut body = DigestBody::parse(&gunzip_single_member(&raw)?)?;
                let other_key = SigningKey::generate(
                    self.signing_key().validity_start,
                    self.signing_key().validity_end,
                )?;
                body.digest_public_key_fingerprint = other_key.fingerprint();
                let rendered = body.render(chain.escape_slashes);
                let message = string_to_sign(
                    &body.digest_end_time,
                    &body.digest_s3_bucket,
                    &body.digest_s3_object,
                    &sha256_hex(rendered.as_bytes()),
                    body.previous.as_ref().map(|link| link.signature.as_str()),
                );
                let signature = other_key.sign_hex(&message)?;
                self.replace(
                    &owner,
                    &chain.bucket,
                    &victim,
                    gzip(rendered.as_bytes()),
                    vec![
                        ("signature".into(), signature),
                        ("signature-algorithm".into(), SIGNATURE_ALGORITHM.into()),
                    ],
                )
                .await?;
                report.key = victim;
                self.push_successor_link_mismatch(&chain, victim_digest, &mut report);
                report.detail = format!(
                    "re-signed digest {} of {count} with an unpublished key, fingerprint {}",
                    victim_digest + 1,
                    other_key.fingerprint()
                );
            }
            Tamper::MoveDigest => {
                let moved = digest_key_at(victim_digest);
                let target = digest_key_at(victim_digest + 1);
                let (raw, metadata) = self.fetch(&owner, &chain.bucket, &moved).await?;
                self.replace(&owner, &chain.bucket, &target, raw, metadata)
                    .await?;
                report.key = target;
                report.detail = format!(
                    "copied digest {} of {count} ({moved}) over its successor's key",
                    victim_digest + 1
                );
            }
            Tamper::PlantInOtherAccount => {
                let (digest_index, log_index) = victim_log.expect("planned");
                let source = &chain.digests[digest_index].logs[log_index];
                let (target, planted_key, ..) = planted.expect("planned");
                let (raw, _) = self.fetch(&owner, &chain.bucket, &source.key).await?;
                let target_owner = bucket_owner(self, &target);
                self.replace(&target_owner, &target.bucket, &planted_key, raw, Vec::new())
                    .await?;
                report.account_id = target.account_id.clone();
                report.bucket = target.bucket.clone();
                report.key = planted_key;
                report.detail = format!(
                    "copied {}'s log {} into {}'s source, keeping its file name",
                    chain.account_id, source.key, target.account_id
                );
            }
            Tamper::GzipBomb | Tamper::NotGzip | Tamper::PlantUnreferencedLog => {
                let (_, planted_key, _, inflated) = planted.expect("planned");
                let body = match tamper {
                    Tamper::GzipBomb => gzip_bomb(),
                    Tamper::NotGzip => inflated,
                    _ => gzip(&inflated),
                };
                self.replace(&owner, &chain.bucket, &planted_key, body, Vec::new())
                    .await?;
                report.key = planted_key;
                report.detail = match tamper {
                    Tamper::GzipBomb => format!(
                        "planted a gzip member inflating to {} MiB of zeros",
                        GZIP_BOMB_INFLATED_BYTES / (1024 * 1024)
                    ),
                    Tamper::NotGzip => "planted a plain-JSON file named .json.gz".into(),
                    _ => "planted a valid log file that no digest lists".into(),
                };
            }
        }
        if report.touched.is_empty() {
            report.touched.push(report.key.clone());
        }
        self.org.tampers.push(AppliedTamper {
            kind: tamper.name().to_owned(),
            chain_index: chain.index,
            account_id: report.account_id.clone(),
            bucket: report.bucket.clone(),
            key: report.key.clone(),
            expected_finding: report.expected_finding.to_owned(),
            touched,
            relied_on,
        });
        Ok(report)
    }

    /// A log-file name inside the chain's oldest digest window (so it is as old as
    /// possible), with generated content, for planting.
    fn planted_log(
        &self,
        chain: &ChainState,
        tamper: Tamper,
        minute_offset: i64,
    ) -> anyhow::Result<(LogRecord, Vec<u8>)> {
        let window = &chain.digests[0];
        let delivered_at = window.start.duration_trunc(chrono::Duration::minutes(1))?
            + chrono::Duration::minutes(1 + minute_offset);
        let mut rng = SimRng::derive(
            self.org.seed,
            &[chain.index as u64, u64::MAX - 3, tamper as u64],
        );
        let generated = super::cloudtrail::generate_log(
            &mut rng,
            &chain.account_id,
            &chain.region,
            delivered_at,
            2,
        );
        let key = super::cloudtrail::log_key(
            &chain.key_root,
            LOG_FAMILY,
            &chain.account_id,
            &chain.region,
            delivered_at,
            &rng.alnum(16),
        );
        Ok((
            LogRecord {
                key,
                family: LOG_FAMILY.to_owned(),
                delivered_at,
                inflated_sha256: sha256_hex(&generated.inflated),
            },
            generated.inflated,
        ))
    }

    fn push_successor_link_mismatch(
        &self,
        chain: &ChainState,
        digest_index: usize,
        report: &mut TamperReport,
    ) {
        if let Some(successor) = chain.digests.get(digest_index + 1) {
            report.also_expected.push(ExpectedFinding {
                kind: "digest_link_mismatch",
                account_id: chain.account_id.clone(),
                bucket: chain.bucket.clone(),
                key: successor.key.clone(),
            });
        }
    }

    /// Raw bytes and user metadata of a source object, read as its owner.
    pub async fn fetch(
        &self,
        owner_account_id: &str,
        bucket: &str,
        key: &str,
    ) -> anyhow::Result<(Vec<u8>, Vec<(String, String)>)> {
        let response = self
            .root_s3(owner_account_id)?
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| sdk_error(&format!("get s3://{bucket}/{key}"), error))?;
        let mut metadata: Vec<(String, String)> = response
            .metadata()
            .map(|map| {
                map.iter()
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect()
            })
            .unwrap_or_default();
        metadata.sort();
        let body = response
            .body
            .collect()
            .await
            .map_err(|error| anyhow::anyhow!("read s3://{bucket}/{key}: {error}"))?;
        Ok((body.into_bytes().to_vec(), metadata))
    }

    async fn replace(
        &self,
        owner_account_id: &str,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        metadata: Vec<(String, String)>,
    ) -> anyhow::Result<()> {
        put_object(
            self.root_s3(owner_account_id)?,
            PendingObject {
                owner_account_id: owner_account_id.to_owned(),
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                body,
                cloudtrail_headers: true,
                metadata,
            },
        )
        .await
    }

    async fn delete(&self, owner_account_id: &str, bucket: &str, key: &str) -> anyhow::Result<()> {
        self.root_s3(owner_account_id)?
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| sdk_error(&format!("delete s3://{bucket}/{key}"), error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for tamper in Tamper::ALL {
            assert_eq!(tamper.name().parse::<Tamper>().unwrap(), tamper);
            assert!(!tamper.expected_finding().is_empty());
        }
        assert!("delete-everything".parse::<Tamper>().is_err());
    }

    #[test]
    fn source_ip_rewrite_changes_only_that_value() {
        let original = br#"{"Records":[{"a":1,"sourceIPAddress":"10.0.0.1","b":2}]}"#;
        let rewritten = rewrite_source_ip(original).unwrap();
        assert_eq!(
            rewritten,
            br#"{"Records":[{"a":1,"sourceIPAddress":"198.51.100.23","b":2}]}"#.to_vec()
        );
    }

    #[test]
    fn gzip_bomb_is_small_and_inflates_past_the_bound() {
        let bomb = gzip_bomb();
        assert!(bomb.len() < 512 * 1024, "bomb is {} bytes", bomb.len());
        let mut decoder = flate2::read::GzDecoder::new(bomb.as_slice());
        let inflated = std::io::copy(&mut decoder, &mut std::io::sink()).unwrap();
        assert_eq!(inflated as usize, GZIP_BOMB_INFLATED_BYTES);
    }
}
