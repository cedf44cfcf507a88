//! The findings ledger: every finding recorded for the first time, and every
//! acknowledgement, is also written to the archive, encrypted and locked like
//! the copies. The store stays the working copy; when it is lost,
//! `rebuild-state` reads the ledger back, so the findings keep their first
//! sighting and their acknowledgements and are not reported as new again.
//!
//! One object per run that had something to record, under
//! `<archive prefix>/_trailvault/ledger/YYYY/MM/DD/<time>-<command>[-shard-K-of-N].json`
//! (concurrent shards never write the same key; `restore` keeps only the
//! latest version of each key): a
//! folder no account id can name, so it never mixes with the copies.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::cloudtrail::digest::sha256;
use crate::copy::{expected_checksum, meta, retain_until, verify_stored, CopyError, CopySettings};
use crate::model::error::SeamError;
use crate::model::findings::{AnnouncedTo, Finding};
use crate::model::shard::{self, Shard};
use crate::seams::{Archive, ProgressStore, PutSpec};

/// The ledger's folder under the archive prefix.
pub const LEDGER_FOLDER: &str = "_trailvault/ledger/";

/// Layout version of [`LedgerEntry`].
const ENTRY_VERSION: u8 = 1;

/// Largest ledger object read back (a run's findings are far smaller).
const MAX_ENTRY_BYTES: usize = 64 * 1024 * 1024;

/// Where the ledger of an archive with this prefix lives.
pub fn ledger_prefix(archive_prefix: &str) -> String {
    if archive_prefix.is_empty() {
        LEDGER_FOLDER.to_string()
    } else {
        format!("{archive_prefix}/{LEDGER_FOLDER}")
    }
}

/// Whether an archive key is a ledger object rather than a copy.
pub fn is_ledger_key(archive_prefix: &str, key: &str) -> bool {
    key.starts_with(&ledger_prefix(archive_prefix))
}

/// What one run adds to the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub v: u8,
    pub command: String,
    pub recorded_at: DateTime<Utc>,
    /// Findings recorded for the first time.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// Findings acknowledged, each with its `acknowledged_at`.
    #[serde(default)]
    pub acknowledged: Vec<Finding>,
    /// The shard that wrote it (`K/N`), named in the key too, so that
    /// shards writing at the same instant never write the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

impl LedgerEntry {
    pub fn new(command: &str, recorded_at: DateTime<Utc>) -> LedgerEntry {
        LedgerEntry {
            v: ENTRY_VERSION,
            command: command.to_string(),
            recorded_at,
            findings: Vec::new(),
            acknowledged: Vec::new(),
            shard: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.findings.is_empty() && self.acknowledged.is_empty()
    }
}

/// Writes `entry` to the archive (SSE-KMS under the archive key, locked for
/// the retention period, with its checksum) and verifies it by HEAD, as a
/// copy is. Returns the key.
pub async fn append(
    archive: &dyn Archive,
    settings: &CopySettings,
    entry: &LedgerEntry,
) -> Result<String, SeamError> {
    append_part(archive, settings, entry, None).await
}

/// [`append`] for one of several entries a run writes at the same time
/// (`part`, 1-based, named in the key so that the keys differ).
pub async fn append_part(
    archive: &dyn Archive,
    settings: &CopySettings,
    entry: &LedgerEntry,
    part: Option<usize>,
) -> Result<String, SeamError> {
    let body = serde_json::to_vec(entry).map_err(|e| SeamError::Permanent(e.to_string()))?;
    let command: String = entry
        .command
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let part = part.map(|part| format!("-{part:05}")).unwrap_or_default();
    let shard = entry
        .shard
        .map(|shard| format!("-{}", shard.label()))
        .unwrap_or_default();
    let key = format!(
        "{}{}/{}-{command}{shard}{part}.json",
        ledger_prefix(&settings.archive_prefix),
        entry.recorded_at.format("%Y/%m/%d"),
        entry.recorded_at.format("%Y%m%dT%H%M%S%.9fZ"),
    );
    let mut metadata = BTreeMap::new();
    metadata.insert(
        meta::COPIED_AT.to_string(),
        entry.recorded_at.timestamp().to_string(),
    );
    let spec = PutSpec {
        key,
        kms_key_id: settings.kms_key_id.clone(),
        lock_mode: settings.lock_mode,
        retain_until: retain_until(entry.recorded_at, settings.retention_days),
        metadata,
        content_type: Some("application/json".to_string()),
        content_encoding: None,
    };
    let sha256 = sha256(&body);
    let version_id = archive.put(&spec, Bytes::from(body), sha256).await?;
    match verify_stored(
        archive,
        &spec,
        version_id.as_deref(),
        &expected_checksum(&sha256, &[]),
    )
    .await
    {
        Ok(_) => Ok(spec.key),
        Err(CopyError::Archive(error)) => Err(error),
        Err(error) => Err(SeamError::Permanent(format!(
            "ledger object {}: {error}",
            spec.key
        ))),
    }
}

/// What [`restore`] read back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub entries: usize,
    pub findings: usize,
    pub acknowledged: usize,
    /// Ledger objects that could not be read or parsed: (key, reason).
    pub unreadable: Vec<(String, String)>,
}

/// Reads the ledger back into `store`, oldest entry first: each finding with
/// its first sighting, then each acknowledgement. A finding read back from
/// the ledger was announced there; whether its publication succeeded cannot
/// be known any more, and a rebuilt store must not alert the whole history
/// again: it is recorded as announced.
pub async fn restore(
    archive: &dyn Archive,
    store: &dyn ProgressStore,
    archive_prefix: &str,
    shard: Option<&Shard>,
) -> Result<Restored, SeamError> {
    let mut versions = archive
        .list_versions(&ledger_prefix(archive_prefix))
        .await?;
    versions.retain(|version| version.is_latest);
    versions.sort_by(|a, b| a.key.cmp(&b.key));
    let mut restored = Restored::default();
    for version in versions {
        let entry = match read_entry(archive, &version.key, &version.version_id).await {
            Ok(entry) => entry,
            Err(reason) => {
                restored.unreadable.push((version.key, reason));
                continue;
            }
        };
        restored.entries += 1;
        for finding in entry.findings {
            if !shard::covers(shard, &finding.account_id) {
                continue;
            }
            record_announced(store, finding)?;
            restored.findings += 1;
        }
        for finding in entry.acknowledged {
            if !shard::covers(shard, &finding.account_id) {
                continue;
            }
            let Some(at) = finding.acknowledged_at else {
                continue;
            };
            record_announced(store, finding.clone())?;
            store.acknowledge_finding(&finding, at)?;
            restored.acknowledged += 1;
        }
    }
    Ok(restored)
}

/// Records a finding read from the ledger, as announced.
fn record_announced(store: &dyn ProgressStore, finding: Finding) -> Result<(), SeamError> {
    let recorded = store.record_finding(finding)?;
    store.mark_announced(&recorded, AnnouncedTo::Ledger)?;
    store.mark_announced(&recorded, AnnouncedTo::Notifier)?;
    store.mark_announced(&recorded, AnnouncedTo::Events)?;
    Ok(())
}

async fn read_entry(
    archive: &dyn Archive,
    key: &str,
    version_id: &str,
) -> Result<LedgerEntry, String> {
    let object = archive
        .get(key, Some(version_id))
        .await
        .map_err(|error| error.to_string())?;
    let mut body = object.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| error.to_string())?;
        if bytes.len() + chunk.len() > MAX_ENTRY_BYTES {
            return Err(format!("larger than {MAX_ENTRY_BYTES} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    let entry: LedgerEntry =
        serde_json::from_slice(&bytes).map_err(|error| format!("not a ledger entry: {error}"))?;
    if entry.v != ENTRY_VERSION {
        return Err(format!("ledger entry version {}", entry.v));
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudtrail::gzip::InflateLimits;
    use crate::model::findings::FindingKind;
    use crate::seams::LockMode;
    use crate::testsuite::memory::{MemoryArchive, MemoryStore};

    fn settings() -> CopySettings {
        CopySettings {
            archive_prefix: "archive".into(),
            kms_key_id: "key".into(),
            lock_mode: LockMode::Compliance,
            retention_days: 30,
            multipart_threshold_bytes: 5 * 1024 * 1024,
            inflate_limits: InflateLimits {
                max_inflated_bytes: 1 << 20,
                max_ratio: 100,
            },
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + seconds, 0).unwrap()
    }

    fn finding(key: &str, first_seen: DateTime<Utc>) -> Finding {
        Finding {
            first_seen,
            ..Finding::new(
                FindingKind::DigestMissing,
                "111122223333",
                "b",
                key,
                "gone".into(),
            )
        }
    }

    #[test]
    fn the_ledger_lives_where_no_account_can_be_named() {
        assert_eq!(ledger_prefix("archive"), "archive/_trailvault/ledger/");
        assert_eq!(ledger_prefix(""), "_trailvault/ledger/");
        assert!(is_ledger_key(
            "archive",
            "archive/_trailvault/ledger/2026/11/27/x.json"
        ));
        assert!(!is_ledger_key(
            "archive",
            "archive/111122223333/b/_trailvault/ledger/x"
        ));
    }

    #[tokio::test]
    async fn findings_and_acknowledgements_survive_the_store() {
        let archive = MemoryArchive::new("archive-bucket");
        let mut first = LedgerEntry::new("collect", at(0));
        first.findings = vec![finding("k1", at(-100)), finding("k2", at(0))];
        let first_key = append(&archive, &settings(), &first).await.unwrap();
        assert!(first_key.starts_with("archive/_trailvault/ledger/2026/"));
        let mut second = LedgerEntry::new("findings", at(60));
        second.acknowledged = vec![Finding {
            acknowledged_at: Some(at(60)),
            ..finding("k1", at(-100))
        }];
        append(&archive, &settings(), &second).await.unwrap();
        assert!(LedgerEntry::new("verify", at(90)).is_empty());
        // Locked, encrypted and checksummed like a copy.
        let head = archive.latest_head(&first_key).unwrap();
        assert_eq!(head.lock_mode, Some(LockMode::Compliance));
        assert!(head.checksum_sha256.is_some());

        let store = MemoryStore::default();
        let restored = restore(&archive, &store, "archive", None).await.unwrap();
        assert_eq!(
            restored,
            Restored {
                entries: 2,
                findings: 2,
                acknowledged: 1,
                unreadable: Vec::new(),
            }
        );
        let mut findings = store.findings().unwrap();
        findings.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(findings[0].first_seen, at(-100));
        assert_eq!(findings[0].acknowledged_at, Some(at(60)));
        assert_eq!(findings[1].acknowledged_at, None);
        // They were announced: a rebuilt store does not alert them again.
        assert!(store.unannounced_findings().unwrap().is_empty());
        // Found again after the rebuild, they are not new.
        assert!(!store.record_finding(finding("k2", at(500))).unwrap().new);
    }

    #[tokio::test]
    async fn an_unreadable_ledger_object_is_reported_and_the_rest_restored() {
        let archive = MemoryArchive::new("archive-bucket");
        let mut entry = LedgerEntry::new("verify", at(0));
        entry.findings = vec![finding("k1", at(0))];
        append(&archive, &settings(), &entry).await.unwrap();
        let planted = PutSpec {
            key: "archive/_trailvault/ledger/2026/01/01/planted.json".into(),
            kms_key_id: "key".into(),
            lock_mode: LockMode::Compliance,
            retain_until: at(1000),
            metadata: BTreeMap::new(),
            content_type: None,
            content_encoding: None,
        };
        let garbage = b"{not json";
        archive
            .put(&planted, Bytes::from_static(garbage), sha256(garbage))
            .await
            .unwrap();
        let store = MemoryStore::default();
        let restored = restore(&archive, &store, "archive", None).await.unwrap();
        assert_eq!(restored.entries, 1);
        assert_eq!(restored.findings, 1);
        assert_eq!(restored.unreadable.len(), 1);
        assert!(restored.unreadable[0].1.contains("not a ledger entry"));
        assert_eq!(store.findings().unwrap().len(), 1);
    }
}
