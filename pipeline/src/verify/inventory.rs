//! What the archive holds for one source, from the store (and, in a full run,
//! from the archive's own listing): digest chains and CloudTrail log files.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::cloudtrail::keys::{
    account_root, digest_key, parse_trail_key, DigestKeyParts, Family, FileName, TrailKey,
    DIGEST_FOLDER, LOG_FOLDER,
};
use crate::model::object::SourceRef;
use crate::progress::validation::{area_state_name, chain_state_name};

use crate::model::object::ArchivedSource;

/// One digest chain (docs/cloudtrail-format.md §1.2): the digests of one (source bucket, key root,
/// account, delivering region, trail, home region), standard or backfill.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ChainId {
    /// The account whose role read the bucket (the archive namespace).
    pub reader: String,
    pub bucket: String,
    /// Key prefix before `AWSLogs/`, without the trailing `/`.
    pub prefix: String,
    pub org_id: Option<String>,
    /// The account folder (the member account of an organization trail).
    pub account: String,
    /// Delivering region.
    pub region: String,
    pub trail: String,
    pub home_region: String,
    pub backfill: bool,
}

/// The chains of one trail that CloudTrail keeps in step: every delivering
/// region, and for an organization trail every member account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SiblingGroup {
    reader: String,
    bucket: String,
    prefix: String,
    org_id: Option<String>,
    /// Per-account trails of different accounts are different trails.
    account: Option<String>,
    trail: String,
    home_region: String,
}

/// The CloudTrail log folder of one account and region (any trail).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AreaId {
    pub reader: String,
    pub bucket: String,
    pub prefix: String,
    pub org_id: Option<String>,
    pub account: String,
    pub region: String,
}

impl ChainId {
    /// The chain of a digest key; `None` for log keys.
    pub fn of(reader: &str, bucket: &str, key: &TrailKey) -> Option<ChainId> {
        let FileName::Digest {
            trail_name,
            home_region,
            backfill,
            ..
        } = &key.file
        else {
            return None;
        };
        Some(ChainId {
            reader: reader.to_string(),
            bucket: bucket.to_string(),
            prefix: key.prefix.clone(),
            org_id: key.org_id.clone(),
            account: key.account_id.clone(),
            region: key.region.clone(),
            trail: trail_name.clone(),
            home_region: home_region.clone(),
            backfill: *backfill,
        })
    }

    /// The store's state name of this chain.
    pub fn state_name(&self) -> String {
        chain_state_name(
            &self.reader,
            &self.bucket,
            &account_root(&self.prefix, self.org_id.as_deref(), &self.account),
            &self.region,
            &self.trail,
            &self.home_region,
            self.backfill,
        )
    }

    /// The key CloudTrail gives this chain's digest ending at `end`.
    pub fn digest_key(&self, end: DateTime<Utc>) -> String {
        let parts = DigestKeyParts {
            prefix: &self.prefix,
            org_id: self.org_id.as_deref(),
            account_id: &self.account,
            region: &self.region,
            trail_name: &self.trail,
            home_region: &self.home_region,
        };
        digest_key(&parts, end.naive_utc(), self.backfill)
    }

    pub fn source_ref(&self, key: &str) -> SourceRef {
        SourceRef {
            account_id: self.reader.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
        }
    }

    pub fn sibling_group(&self) -> SiblingGroup {
        SiblingGroup {
            reader: self.reader.clone(),
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            org_id: self.org_id.clone(),
            account: self.org_id.is_none().then(|| self.account.clone()),
            trail: self.trail.clone(),
            home_region: self.home_region.clone(),
        }
    }

    pub fn area(&self) -> AreaId {
        AreaId {
            reader: self.reader.clone(),
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            org_id: self.org_id.clone(),
            account: self.account.clone(),
            region: self.region.clone(),
        }
    }
}

impl AreaId {
    pub fn state_name(&self) -> String {
        area_state_name(
            &self.reader,
            &self.bucket,
            &account_root(&self.prefix, self.org_id.as_deref(), &self.account),
            &self.region,
        )
    }
}

/// One archived digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DigestEntry {
    /// Source key.
    pub key: String,
    /// End time from the key name.
    pub end: DateTime<Utc>,
    /// The archive version the store recorded (latest when unknown).
    pub version_id: Option<String>,
    /// SHA-256 of the raw bytes verified at copy time, when recorded.
    pub raw_sha256: Option<[u8; 32]>,
}

/// One archived log file of a `CloudTrail/` folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogEntry {
    pub key: String,
    pub area: AreaId,
    /// Delivery time from the file name (S3 LastModified can be backdated by
    /// nobody, but the name is what CloudTrail's digest windows follow).
    pub delivered_at: DateTime<Utc>,
    /// When it was copied (seconds since the epoch).
    pub copied_at: i64,
}

/// Digest chains and log files of one source.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    /// Digests of each chain, oldest first.
    pub chains: BTreeMap<ChainId, Vec<DigestEntry>>,
    pub logs: Vec<LogEntry>,
}

impl Inventory {
    /// Adds one archived object by its source key; keys that are not
    /// CloudTrail file names are ignored here (collect reported them).
    pub fn add(
        &mut self,
        source: &ArchivedSource,
        key: &str,
        version_id: Option<String>,
        raw_sha256: Option<[u8; 32]>,
        copied_at: i64,
    ) {
        let Ok(trail_key) = parse_trail_key(key) else {
            return;
        };
        match &trail_key.file {
            FileName::Digest { end_time, .. } => {
                let Some(chain) =
                    ChainId::of(&source.reader_account_id, &source.bucket, &trail_key)
                else {
                    return;
                };
                self.chains.entry(chain).or_default().push(DigestEntry {
                    key: key.to_string(),
                    end: end_time.and_utc(),
                    version_id,
                    raw_sha256,
                });
            }
            FileName::Log { .. } => {
                if let Some(log) = log_entry(
                    &source.reader_account_id,
                    &source.bucket,
                    key,
                    &trail_key,
                    copied_at,
                ) {
                    self.logs.push(log);
                }
            }
        }
    }

    /// Orders every chain by end time, dropping duplicate keys.
    pub fn finish(&mut self) {
        for entries in self.chains.values_mut() {
            entries.sort_by(|a, b| a.end.cmp(&b.end).then_with(|| a.key.cmp(&b.key)));
            entries.dedup_by(|a, b| a.key == b.key);
        }
    }
}

/// The log file entry of `key` (already parsed as `trail_key`), for files of
/// the `CloudTrail/` folder only: the folder whose digest coverage is
/// documented (docs/cloudtrail-format.md §10.4).
pub(crate) fn log_entry(
    reader: &str,
    bucket: &str,
    key: &str,
    trail_key: &TrailKey,
    copied_at: i64,
) -> Option<LogEntry> {
    let FileName::Log { delivered_at, .. } = &trail_key.file else {
        return None;
    };
    if !matches!(&trail_key.family, Family::Log { folder } if folder == LOG_FOLDER) {
        return None;
    }
    Some(LogEntry {
        key: key.to_string(),
        area: AreaId {
            reader: reader.to_string(),
            bucket: bucket.to_string(),
            prefix: trail_key.prefix.clone(),
            org_id: trail_key.org_id.clone(),
            account: trail_key.account_id.clone(),
            region: trail_key.region.clone(),
        },
        delivered_at: delivered_at.and_utc(),
        copied_at,
    })
}

/// The chain a saved chain state is named after
/// ([`ChainId::state_name`]), read back through a key of that chain;
/// `None` for a name no chain has.
pub(crate) fn chain_of_state_name(reader: &str, bucket: &str, name: &str) -> Option<ChainId> {
    let rest = name.strip_prefix(&format!("chain/{reader}/{bucket}/"))?;
    let marker = format!("{DIGEST_FOLDER}/");
    let split = rest.rfind(&marker)?;
    let (root, tail) = rest.split_at(split);
    let (region, suffix) = tail.get(marker.len()..)?.split_once('/')?;
    let account = root.strip_suffix('/')?.rsplit('/').next()?;
    let (trail_home, backfill) = match suffix.strip_suffix("_backfill") {
        Some(trail_home) => (trail_home, "_backfill"),
        None => (suffix, ""),
    };
    let key = format!(
        "{root}{DIGEST_FOLDER}/{region}/2000/01/01/{account}_{DIGEST_FOLDER}_{region}_{trail_home}_20000101T000000Z{backfill}.json.gz"
    );
    let (chain, _) = parse_digest_key(reader, bucket, &key)?;
    (chain.state_name() == name).then_some(chain)
}

/// The chain, end time and account of a digest key, for keys a digest names.
pub(crate) fn parse_digest_key(
    reader: &str,
    bucket: &str,
    key: &str,
) -> Option<(ChainId, DateTime<Utc>)> {
    let trail_key = parse_trail_key(key).ok()?;
    let FileName::Digest { end_time, .. } = &trail_key.file else {
        return None;
    };
    let end = end_time.and_utc();
    Some((ChainId::of(reader, bucket, &trail_key)?, end))
}

/// `start`, `start − 1h`, … down to just after `after` (30 minutes of slack
/// for offsets that drift), oldest first: the newest `cap` of them, and how
/// many older ones were left out. Counted, not walked: the times come from
/// key names, which may be centuries apart.
pub(crate) fn hours_back(
    start: DateTime<Utc>,
    after: DateTime<Utc>,
    cap: usize,
) -> (Vec<DateTime<Utc>>, usize) {
    let slack = Duration::minutes(30);
    let span = start - after;
    if span < slack {
        return (Vec::new(), 0);
    }
    let total = usize::try_from((span - slack).num_seconds() / 3600)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let listed = total.min(cap);
    let mut out: Vec<DateTime<Utc>> = (0..listed)
        .filter_map(|back| i64::try_from(back).ok())
        .map(|back| start - Duration::hours(back))
        .collect();
    out.reverse();
    (out, total - listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_build_their_own_keys_and_state_names() {
        let key = "org/AWSLogs/o-abcdefghij/111122223333/CloudTrail-Digest/eu-west-1/2026/03/01/111122223333_CloudTrail-Digest_eu-west-1_My_Trail_us-east-1_20260301T050504Z_backfill.json.gz";
        let (chain, end) = parse_digest_key("999988887777", "bucket", key).unwrap();
        assert!(chain.backfill);
        assert_eq!(chain.trail, "My_Trail");
        assert_eq!(chain.digest_key(end), key);
        assert_eq!(
            chain.state_name(),
            "chain/999988887777/bucket/org/AWSLogs/o-abcdefghij/111122223333/CloudTrail-Digest/eu-west-1/My_Trail_us-east-1_backfill"
        );
        assert_eq!(
            chain.area().state_name(),
            "unreferenced/999988887777/bucket/org/AWSLogs/o-abcdefghij/111122223333/CloudTrail/eu-west-1/"
        );
        assert_eq!(
            chain_of_state_name("999988887777", "bucket", &chain.state_name()),
            Some(chain.clone())
        );
        let (standard, _) = parse_digest_key("999988887777", "bucket", "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/03/01/111122223333_CloudTrail-Digest_us-east-1_a_b_c_eu-west-1_20260301T050504Z.json.gz").unwrap();
        assert_eq!(
            chain_of_state_name("999988887777", "bucket", &standard.state_name()),
            Some(standard)
        );
        assert_eq!(
            chain_of_state_name(
                "999988887777",
                "bucket",
                "chain/999988887777/bucket/nonsense"
            ),
            None
        );
        assert!(parse_digest_key("r", "b", "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/03/01/111122223333_CloudTrail_eu-west-1_20260301T0505Z_abc.json.gz").is_none());
    }

    #[test]
    fn hours_back_stops_near_the_older_digest() {
        let after = DateTime::from_timestamp(1_000_000 * 3600 + 304, 0).unwrap();
        let three_later = after + Duration::hours(3);
        let (hours, more) = hours_back(three_later, after, 100);
        assert_eq!(
            hours,
            vec![
                after + Duration::hours(1),
                after + Duration::hours(2),
                three_later
            ]
        );
        assert_eq!(more, 0);
        assert_eq!(hours_back(three_later, after, 1), (vec![three_later], 2));
        assert_eq!(
            hours_back(after + Duration::minutes(20), after, 100),
            (Vec::new(), 0)
        );
        let ancient = DateTime::from_timestamp(-62_000_000_000, 0).unwrap();
        let (hours, more) = hours_back(three_later, ancient, 5);
        assert_eq!(hours.len(), 5);
        assert!(more > 10_000_000);
    }
}
