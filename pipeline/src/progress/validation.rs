//! What validation remembers between runs, in the progress store's small
//! state values (see `verify/design.md` for why it is enough):
//!
//! * `chain/<reader>/<bucket>/<root>CloudTrail-Digest/<region>/<trail>_<home>[_backfill]`
//!   — [`ChainState`]: which digests of the chain were validated (as hourly
//!   spans, a few dozen bytes for months of history) and the newest one's link
//!   data, so the next digest links to it without reading it again.
//! * `logrefs/<reader>/<bucket>/<log partition prefix>` — [`PartitionRecord`]: the
//!   log files of one account/region/day that valid digests (signature
//!   verified, found where CloudTrail delivered them) reference.
//! * `unreferenced/<reader>/<bucket>/<root>CloudTrail/<region>/` — [`AreaState`]:
//!   up to when the log files of one account/region were checked for references.
//! * `validated/<reader>/<bucket>/<partition prefix>` — [`PartitionRecord`]: the
//!   digests of one partition that were validated cleanly, and the log files
//!   such digests list with the hash their archived copy has, each with that
//!   content hash (what source expiry may delete).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cloudtrail::keys::{FileName, TrailKey};
use crate::model::error::SeamError;
use crate::seams::ProgressStore;

/// Record layout version of every value written here.
pub(crate) const STATE_VERSION: u8 = 1;

/// Seconds between two digests of one chain (docs/cloudtrail-format.md §1.2: hourly, constant mm:ss).
pub(crate) const HOUR_SECONDS: i64 = 3600;

/// A digest as the next one links to it: the data `previousDigest*` must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkInfo {
    /// Source key of the digest.
    pub key: String,
    /// End time from the key (equals `digestEndTime` when `valid`).
    pub end: DateTime<Utc>,
    /// `digestStartTime`, when the body could be parsed.
    pub start: Option<DateTime<Utc>>,
    /// Hex SHA-256 of the inflated body, when it inflated.
    pub sha256: Option<String>,
    /// The archived copy's `signature` metadata.
    pub signature: Option<String>,
    /// Whether the digest passed every check of its own (format, location,
    /// key, signature). Links to an invalid digest are not judged again: the
    /// invalid digest already explains the mismatch.
    pub valid: bool,
}

/// A run of validated digests `first_end, first_end + 1h, …, last_end`
/// (epoch seconds); `window_start` is when the first one's window began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Span {
    pub first_end: i64,
    pub last_end: i64,
    pub window_start: i64,
}

impl Span {
    fn contains(&self, end: i64) -> bool {
        self.first_end <= end
            && end <= self.last_end
            && (end - self.first_end).rem_euclid(HOUR_SECONDS) == 0
    }
}

/// The set of validated digest end times of one chain, stored as hourly
/// [`Span`]s: a chain that never broke is one span, whatever its age.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SpanSet {
    spans: Vec<Span>,
}

impl SpanSet {
    pub fn contains(&self, end: DateTime<Utc>) -> bool {
        let end = end.timestamp();
        self.spans.iter().any(|span| span.contains(end))
    }

    /// Adds one validated digest (end time and the start of its window).
    pub fn insert(&mut self, end: DateTime<Utc>, window_start: DateTime<Utc>) {
        let end = end.timestamp();
        let window_start = window_start.timestamp().min(end);
        if self.spans.iter().any(|span| span.contains(end)) {
            return;
        }
        if let Some(index) = self
            .spans
            .iter()
            .position(|span| span.last_end.checked_add(HOUR_SECONDS) == Some(end))
        {
            let merged_with = self
                .spans
                .iter()
                .position(|span| end.checked_add(HOUR_SECONDS) == Some(span.first_end));
            if let Some(span) = self.spans.get_mut(index) {
                span.last_end = end;
            }
            if let Some(next_index) = merged_with {
                if next_index != index {
                    let next = self.spans.remove(next_index);
                    let index = if next_index < index { index - 1 } else { index };
                    if let Some(span) = self.spans.get_mut(index) {
                        span.last_end = next.last_end;
                    }
                }
            }
        } else if let Some(span) = self
            .spans
            .iter_mut()
            .find(|span| end.checked_add(HOUR_SECONDS) == Some(span.first_end))
        {
            span.first_end = end;
            span.window_start = window_start;
        } else {
            self.spans.push(Span {
                first_end: end,
                last_end: end,
                window_start,
            });
        }
        self.spans.sort_by_key(|span| span.first_end);
    }

    pub fn spans(&self) -> &[Span] {
        &self.spans
    }
}

const CHAIN_PREFIX: &str = "chain/";
const UNREFERENCED_PREFIX: &str = "unreferenced/";

/// The store name of one chain's [`ChainState`]:
/// `chain/<reader>/<bucket>/<root>CloudTrail-Digest/<region>/<trail>_<home>[_backfill]`.
pub(crate) fn chain_state_name(
    reader: &str,
    bucket: &str,
    root: &str,
    region: &str,
    trail: &str,
    home_region: &str,
    backfill: bool,
) -> String {
    format!(
        "{CHAIN_PREFIX}{reader}/{bucket}/{root}CloudTrail-Digest/{region}/{trail}_{home_region}{}",
        if backfill { "_backfill" } else { "" }
    )
}

/// The store name that says an incremental validation of one source may
/// start from the store's fresh folders: written after the first run that
/// inventoried every record of the source (a store written before fresh
/// folders were kept has records that no folder mark names).
pub(crate) fn fresh_index_name(reader: &str, bucket: &str) -> String {
    format!("fresh-index/{reader}/{bucket}")
}

/// Every chain state saved for one source bucket under the key root `root`
/// (`""`: the whole bucket), raw, by name.
pub(crate) fn chain_states_under(
    store: &dyn ProgressStore,
    reader: &str,
    bucket: &str,
    root: &str,
) -> Result<HashMap<String, Vec<u8>>, SeamError> {
    Ok(store
        .state_under(&format!("{CHAIN_PREFIX}{reader}/{bucket}/{root}"))?
        .into_iter()
        .collect())
}

pub(crate) fn write_chain_state(
    store: &dyn ProgressStore,
    name: &str,
    state: &ChainState,
) -> Result<(), SeamError> {
    store.put_state(name, &state.encode())
}

/// The store name of one account/region's [`AreaState`]:
/// `unreferenced/<reader>/<bucket>/<root>CloudTrail/<region>/`.
pub(crate) fn area_state_name(reader: &str, bucket: &str, root: &str, region: &str) -> String {
    format!(
        "{UNREFERENCED_PREFIX}{reader}/{bucket}/{root}{}/{region}/",
        crate::cloudtrail::keys::LOG_FOLDER
    )
}

/// The saved [`AreaState`]; `None` when absent or unreadable.
pub(crate) fn read_area_state(
    store: &dyn ProgressStore,
    name: &str,
) -> Result<Option<AreaState>, SeamError> {
    Ok(store
        .get_state(name)?
        .and_then(|bytes| AreaState::decode(&bytes)))
}

pub(crate) fn write_area_state(
    store: &dyn ProgressStore,
    name: &str,
    state: &AreaState,
) -> Result<(), SeamError> {
    store.put_state(name, &state.encode())
}

/// The head of one chain as validation left it: the public read view of the
/// chain states, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHeadView {
    /// The chain's name without `chain/`:
    /// `<reader>/<bucket>/<root>CloudTrail-Digest/<region>/<trail>_<home>[_backfill]`.
    pub chain_id: String,
    /// Source key, end time and own validity of the newest validated digest.
    pub head: Option<(String, DateTime<Utc>, bool)>,
    /// How far validation trailed the archive at the last validation run
    /// (`None` for state written before this was recorded).
    pub lag: Option<ValidationLag>,
}

/// The heads of every chain in the store; unreadable or other-version states
/// are left out (validation starts those chains again).
pub fn chain_heads(store: &dyn ProgressStore) -> Result<Vec<ChainHeadView>, SeamError> {
    Ok(store
        .state_under(CHAIN_PREFIX)?
        .into_iter()
        .filter_map(|(name, bytes)| {
            let state = ChainState::decode(&bytes)?;
            Some(ChainHeadView {
                chain_id: name.strip_prefix(CHAIN_PREFIX)?.to_string(),
                head: state.head.map(|link| (link.key, link.end, link.valid)),
                lag: state.lag,
            })
        })
        .collect())
}

/// Per-chain validation state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChainState {
    pub v: u8,
    /// Digests already validated (whatever the result): never read again by
    /// an incremental run.
    pub validated: SpanSet,
    /// Validated digests whose own log list could be read (parsed, and found
    /// where CloudTrail delivered it): the delivery windows in which an
    /// archived log file must be listed by some digest.
    #[serde(default)]
    pub listed: SpanSet,
    /// The newest validated digest, so the next one links to it without a GET.
    pub head: Option<LinkInfo>,
    /// How far validation trailed the archive when this state was written.
    #[serde(default)]
    pub lag: Option<ValidationLag>,
}

/// How far a chain's validation trails its archived digests: what the last
/// validation run saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationLag {
    /// End of the newest archived digest of the chain.
    pub newest_archived: DateTime<Utc>,
    /// Start of the delivery window of the oldest archived digest not
    /// validated yet (the end of the archived digest before it; an hour
    /// before its end when it is the oldest): from there on, archived history
    /// is unchecked. `None` when every archived digest is validated.
    pub unvalidated_since: Option<DateTime<Utc>>,
}

impl ValidationLag {
    /// Archived history not validated yet: zero when none.
    pub fn lag(&self) -> chrono::Duration {
        self.unvalidated_since
            .map_or(chrono::Duration::zero(), |since| {
                (self.newest_archived - since).max(chrono::Duration::zero())
            })
    }
}

impl ChainState {
    pub fn fresh() -> ChainState {
        ChainState {
            v: STATE_VERSION,
            ..ChainState::default()
        }
    }

    /// `None` for unreadable or other-version state (the chain is then
    /// validated again from scratch, which is safe: findings are deduplicated).
    pub fn decode(bytes: &[u8]) -> Option<ChainState> {
        serde_json::from_slice::<ChainState>(bytes)
            .ok()
            .filter(|state| state.v == STATE_VERSION)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Up to when the CloudTrail log files of one account/region were checked
/// for references.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AreaState {
    pub v: u8,
    /// Every log file named before this time was judged.
    pub checked_until: Option<DateTime<Utc>>,
    /// When the check last ran: files copied since are judged whatever their name.
    pub last_run_at: Option<DateTime<Utc>>,
}

impl AreaState {
    pub fn decode(bytes: &[u8]) -> Option<AreaState> {
        serde_json::from_slice::<AreaState>(bytes)
            .ok()
            .filter(|state| state.v == STATE_VERSION)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A per-partition state value: its layout version and its files. Two kinds
/// share this shape:
///
/// * log references ([`LogRefCache`]) — the log files of one partition (account, folder,
///   region, day) that some digest lists, each as `<YYYYMMDDTHHmmZ>_<unique>`
///   (31 bytes for AWS names; the rest of the key is the partition).
/// * validation evidence ([`ValidatedCache`]) — what validation vouches for in one partition: each
///   cleanly validated digest (valid on its own, and its links raised no
///   finding) and each log file such a digest lists whose archived copy has the
///   listed hash, by file id, with the [`evidence_hash`] of the inflated
///   content that was vouched for. A later copy of the same key with other content
///   does not match the hash, so the evidence never carries over to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionRecord<F> {
    pub v: u8,
    pub files: F,
}

/// Reads one partition record's files; empty when absent, unreadable or of
/// another layout version (for validation evidence that vouches for nothing,
/// which only keeps files; for log references it means judging again).
fn read_partition<F: DeserializeOwned + Default>(
    store: &dyn ProgressStore,
    name: &str,
) -> Result<F, SeamError> {
    Ok(store
        .get_state(name)?
        .and_then(|bytes| serde_json::from_slice::<PartitionRecord<F>>(&bytes).ok())
        .filter(|record| record.v == STATE_VERSION)
        .map(|record| record.files)
        .unwrap_or_default())
}

/// State name and compact file id of a referenced log file; `None` for keys
/// that are not CloudTrail log file names (they cannot be archived as such).
pub(crate) fn log_ref_id(reader: &str, bucket: &str, key: &TrailKey) -> Option<(String, String)> {
    let FileName::Log {
        delivered_at,
        unique,
        ..
    } = &key.file
    else {
        return None;
    };
    Some((
        format!("logrefs/{reader}/{bucket}/{}", key.partition_prefix()),
        format!("{}_{unique}", delivered_at.format("%Y%m%dT%H%MZ")),
    ))
}

struct PartitionEntry<F> {
    files: F,
    dirty: bool,
}

/// Read-through, write-back cache of [`PartitionRecord`]s for one run.
/// Callers hold it under a mutex, so each read-modify-write is atomic within
/// the run.
pub(crate) struct PartitionCache<F> {
    entries: HashMap<String, PartitionEntry<F>>,
}

impl<F> Default for PartitionCache<F> {
    fn default() -> Self {
        PartitionCache {
            entries: HashMap::new(),
        }
    }
}

/// Partitions held before the cache writes everything back and starts over
/// (bounds memory in a full run: ~10 KB per partition, ~10 MB per cache).
const MAX_CACHED_PARTITIONS: usize = 1024;

impl<F: Serialize + DeserializeOwned + Default> PartitionCache<F> {
    fn files(&mut self, store: &dyn ProgressStore, name: &str) -> Result<&mut F, SeamError> {
        if !self.entries.contains_key(name) {
            if self.entries.len() >= MAX_CACHED_PARTITIONS {
                self.flush(store)?;
                self.entries.clear();
            }
            let files = read_partition(store, name)?;
            self.entries.insert(
                name.to_string(),
                PartitionEntry {
                    files,
                    dirty: false,
                },
            );
        }
        self.entries
            .get_mut(name)
            .map(|entry| &mut entry.files)
            .ok_or_else(|| SeamError::Permanent(format!("state cache lost partition {name}")))
    }

    /// Applies `change` to one partition's files; it returns whether it
    /// changed anything (the partition is then written back by `flush`).
    fn update(
        &mut self,
        store: &dyn ProgressStore,
        name: &str,
        change: impl FnOnce(&mut F) -> bool,
    ) -> Result<(), SeamError> {
        let changed = change(self.files(store, name)?);
        if changed {
            if let Some(entry) = self.entries.get_mut(name) {
                entry.dirty = true;
            }
        }
        Ok(())
    }

    /// Writes every changed partition back and forgets them all (between
    /// sources: a run's memory does not grow with the sources it went over).
    pub fn flush_and_forget(&mut self, store: &dyn ProgressStore) -> Result<(), SeamError> {
        self.flush(store)?;
        self.entries.clear();
        Ok(())
    }

    /// Writes every changed partition back to the store.
    pub fn flush(&mut self, store: &dyn ProgressStore) -> Result<(), SeamError> {
        for (name, entry) in &mut self.entries {
            if !entry.dirty {
                continue;
            }
            let record = PartitionRecord {
                v: STATE_VERSION,
                files: &entry.files,
            };
            let bytes = serde_json::to_vec(&record)
                .map_err(|error| SeamError::Permanent(error.to_string()))?;
            store.put_state(name, &bytes)?;
            entry.dirty = false;
        }
        Ok(())
    }
}

/// The log files that digests reference, per partition (see [`PartitionRecord`]).
pub(crate) type LogRefCache = PartitionCache<BTreeSet<String>>;

impl LogRefCache {
    pub fn add(
        &mut self,
        store: &dyn ProgressStore,
        name: &str,
        file_id: String,
    ) -> Result<(), SeamError> {
        self.update(store, name, |files| files.insert(file_id))
    }

    pub fn contains(
        &mut self,
        store: &dyn ProgressStore,
        name: &str,
        file_id: &str,
    ) -> Result<bool, SeamError> {
        Ok(self.files(store, name)?.contains(file_id))
    }
}

/// State names of validation evidence records start with this.
pub(crate) const VALIDATED_PREFIX: &str = "validated/";

/// State name and file id of a file's validation evidence entry: a log file
/// as in [`log_ref_id`], a digest by its file name.
pub(crate) fn validated_id(reader: &str, bucket: &str, key: &TrailKey) -> (String, String) {
    let id = match &key.file {
        FileName::Log {
            delivered_at,
            unique,
            ..
        } => format!("{}_{unique}", delivered_at.format("%Y%m%dT%H%MZ")),
        FileName::Digest { .. } => key.file_name(),
    };
    (
        format!(
            "{VALIDATED_PREFIX}{reader}/{bucket}/{}",
            key.partition_prefix()
        ),
        id,
    )
}

/// How validation evidence names the content it vouches for: the first 128
/// bits of its SHA-256, base64url without padding (22 characters, against 64
/// for the whole hash in hex: the evidence is the largest state per log
/// file). Matching another content needs a second preimage of 128 bits.
pub(crate) fn evidence_hash(sha256: &[u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sha256[..16])
}

/// Whether `vouched` (an evidence value) names the content hashing to
/// `sha256`: [`evidence_hash`], or the whole hash in hex as stores written
/// before it hold.
pub(crate) fn evidence_matches(vouched: &str, sha256: &[u8; 32]) -> bool {
    if vouched.len() == 64 {
        return hex::encode(sha256) == vouched;
    }
    evidence_hash(sha256) == vouched
}

/// Reads one partition's validation evidence; empty when absent or unreadable
/// (nothing is vouched for then, which only keeps files).
pub(crate) fn read_validated(
    store: &dyn ProgressStore,
    name: &str,
) -> Result<BTreeMap<String, String>, SeamError> {
    read_partition(store, name)
}

/// What validation vouches for, per partition (see [`PartitionRecord`]).
pub(crate) type ValidatedCache = PartitionCache<BTreeMap<String, String>>;

impl ValidatedCache {
    /// Vouches for `key`'s content hashing to `sha256`.
    pub fn vouch(
        &mut self,
        store: &dyn ProgressStore,
        reader: &str,
        bucket: &str,
        key: &TrailKey,
        sha256: &[u8; 32],
    ) -> Result<(), SeamError> {
        let (name, id) = validated_id(reader, bucket, key);
        let hash = evidence_hash(sha256);
        self.update(store, &name, |files| {
            if files.get(&id) == Some(&hash) {
                return false;
            }
            files.insert(id, hash);
            true
        })
    }

    /// Withdraws what was vouched for `key` (a digest judged again and found
    /// wanting, and the log files it lists).
    pub fn withdraw(
        &mut self,
        store: &dyn ProgressStore,
        reader: &str,
        bucket: &str,
        key: &TrailKey,
    ) -> Result<(), SeamError> {
        let (name, id) = validated_id(reader, bucket, key);
        self.update(store, &name, |files| files.remove(&id).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: i64, offset: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(
            1_700_000_000 - 1_700_000_000 % 3600 + hours * 3600 + offset,
            0,
        )
        .unwrap()
    }

    #[test]
    fn spans_merge_hourly_runs_and_keep_odd_ones_apart() {
        let mut set = SpanSet::default();
        for hour in [0, 1, 2, 5, 4, 3, 7] {
            set.insert(at(hour, 304), at(hour - 1, 304));
        }
        assert_eq!(set.spans().len(), 2, "{set:?}");
        for hour in [0, 1, 2, 3, 4, 5, 7] {
            assert!(set.contains(at(hour, 304)), "hour {hour}");
        }
        assert!(!set.contains(at(6, 304)));
        assert!(!set.contains(at(3, 305)), "other offset");
        set.insert(at(6, 304), at(5, 304));
        assert_eq!(set.spans().len(), 1, "{set:?}");
        // A restart with another offset starts a span of its own.
        set.insert(at(9, 1000), at(9, 0));
        assert_eq!(set.spans().len(), 2);
        assert!(set.contains(at(9, 1000)));
        // Extending backwards moves the window start.
        set.insert(at(-1, 304), at(-1, 0));
        assert_eq!(set.spans()[0].window_start, at(-1, 0).timestamp());
    }

    #[test]
    fn evidence_names_content_by_its_first_128_bits_and_reads_the_older_hex() {
        let content = [7u8; 32];
        let mut other = content;
        other[31] ^= 1;
        let compact = evidence_hash(&content);
        assert_eq!(compact.len(), 22);
        assert!(evidence_matches(&compact, &content));
        assert!(evidence_matches(&hex::encode(content), &content));
        assert!(!evidence_matches(&hex::encode(other), &content));
        let mut early = content;
        early[0] ^= 1;
        assert!(!evidence_matches(&compact, &early));
        assert!(!evidence_matches("", &content));
        assert!(!evidence_matches(&compact[..21], &content));
    }

    #[test]
    fn validation_evidence_is_per_partition_and_can_be_withdrawn() {
        use crate::cloudtrail::keys::parse_trail_key;
        use crate::testsuite::memory::MemoryStore;

        let store = MemoryStore::default();
        let log = parse_trail_key(
            "AWSLogs/111122223333/CloudTrail/us-east-1/2026/03/01/111122223333_CloudTrail_us-east-1_20260301T0010Z_abcdefghijklmnop.json.gz",
        )
        .unwrap();
        let digest = parse_trail_key(
            "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/03/01/111122223333_CloudTrail-Digest_us-east-1_Main_us-east-1_20260301T010504Z.json.gz",
        )
        .unwrap();
        let (log_name, log_id) = validated_id("r", "b", &log);
        assert_eq!(
            log_name,
            "validated/r/b/AWSLogs/111122223333/CloudTrail/us-east-1/2026/03/01/"
        );
        assert_eq!(log_id, "20260301T0010Z_abcdefghijklmnop");
        let (digest_name, digest_id) = validated_id("r", "b", &digest);
        assert_ne!(digest_name, log_name);
        assert_eq!(digest_id, digest.file_name());

        let mut cache = ValidatedCache::default();
        cache.vouch(&store, "r", "b", &log, &[1; 32]).unwrap();
        cache.vouch(&store, "r", "b", &digest, &[2; 32]).unwrap();
        assert!(
            read_validated(&store, &log_name).unwrap().is_empty(),
            "write-back"
        );
        cache.flush(&store).unwrap();
        assert_eq!(
            read_validated(&store, &log_name).unwrap().get(&log_id),
            Some(&evidence_hash(&[1u8; 32]))
        );
        let mut next_run = ValidatedCache::default();
        next_run.withdraw(&store, "r", "b", &log).unwrap();
        next_run.flush(&store).unwrap();
        assert!(read_validated(&store, &log_name).unwrap().is_empty());
        assert_eq!(read_validated(&store, &digest_name).unwrap().len(), 1);
        store.put_state(&digest_name, b"{\"v\":9}").unwrap();
        assert!(read_validated(&store, &digest_name).unwrap().is_empty());
    }

    #[test]
    fn log_references_are_written_back_and_survive_the_cache_starting_over() {
        use crate::testsuite::memory::MemoryStore;

        let store = MemoryStore::default();
        let mut cache = LogRefCache::default();
        cache.add(&store, "logrefs/p0", "a".into()).unwrap();
        assert!(cache.contains(&store, "logrefs/p0", "a").unwrap());
        assert!(!cache.contains(&store, "logrefs/p0", "b").unwrap());
        assert!(
            store.get_state("logrefs/p0").unwrap().is_none(),
            "write-back"
        );
        // Filling the cache past its bound writes the changed partitions back.
        for index in 1..=MAX_CACHED_PARTITIONS {
            cache
                .contains(&store, &format!("logrefs/p{index}"), "x")
                .unwrap();
        }
        let bytes = store.get_state("logrefs/p0").unwrap().expect("flushed");
        let record: PartitionRecord<BTreeSet<String>> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(record.v, STATE_VERSION);
        assert_eq!(record.files, BTreeSet::from(["a".to_string()]));
        // Partitions only read are not written.
        assert!(store.get_state("logrefs/p1").unwrap().is_none());
        let mut next_run = LogRefCache::default();
        assert!(next_run.contains(&store, "logrefs/p0", "a").unwrap());
    }

    #[test]
    fn chain_state_round_trips_and_rejects_other_versions() {
        let mut state = ChainState::fresh();
        state.validated.insert(at(1, 0), at(0, 0));
        state.head = Some(LinkInfo {
            key: "k".into(),
            end: at(1, 0),
            start: Some(at(0, 0)),
            sha256: Some("00".repeat(32)),
            signature: Some("ab".into()),
            valid: true,
        });
        assert_eq!(ChainState::decode(&state.encode()), Some(state.clone()));
        let mut other = state;
        other.v = 9;
        assert_eq!(ChainState::decode(&other.encode()), None);
        assert_eq!(ChainState::decode(b"{"), None);
    }
}
