//! Rebuilding the store from the archive (`rebuild-state`): every current
//! archive version carries its provenance (source account in the key, source
//! ETag, checksums, content hash), so the next collect copies nothing again;
//! the versions newer copies superseded are remembered for retention, and the
//! findings ledger is read back so nothing is alerted twice. The store is a
//! cache of what the archive proves: this is how a lost store comes back.

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cloudtrail::gzip::InflateLimits;
use crate::cloudtrail::keys::parse_trail_key;
use crate::copy;
use crate::ledger;
use crate::model::object::SourceRef;
use crate::model::report::OperationError;
use crate::model::shard::{self, Shard};
use crate::progress::lag::LagTracker;
use crate::progress::superseded;
use crate::seams::{Archive, ArchivedVersion, ProgressStore};

/// How a rebuild reads the archive.
#[derive(Debug, Clone)]
pub struct RebuildSettings {
    pub archive_prefix: String,
    /// HEADs (and re-hashes of multipart copies) at once.
    pub concurrency: usize,
    pub inflate_limits: InflateLimits,
    /// `--shard K/N`: only the copies (and ledger findings) of this shard's
    /// member accounts.
    pub shard: Option<Shard>,
}

/// Whether `shard` covers an archived copy: by the member account its
/// CloudTrail key names (an organization trail's member), else by the
/// reading account of its archive key.
fn shard_covers(shard: Option<&Shard>, source: &SourceRef) -> bool {
    let member = parse_trail_key(&source.key)
        .map(|key| key.account_id)
        .unwrap_or_else(|_| source.account_id.clone());
    shard::covers(shard, &member)
}

/// What a rebuild did.
#[derive(Debug, Default)]
pub struct RebuildOutcome {
    /// Current archive versions listed (the ledger's excepted).
    pub listed: u64,
    /// Of those, recorded in the store.
    pub recorded: u64,
    pub errors: Vec<OperationError>,
    /// The archive could not be listed: nothing was rebuilt.
    pub archive_unlisted: bool,
}

impl RebuildOutcome {
    fn error(&mut self, account_id: &str, operation: &str, message: impl Into<String>) {
        self.errors.push(OperationError {
            account_id: account_id.to_string(),
            operation: operation.to_string(),
            message: message.into(),
        });
    }
}

/// Records every current archive version, the superseded versions and the
/// findings ledger in `store`. Stops taking new versions when `cancel` fires.
pub async fn rebuild_store(
    archive: &dyn Archive,
    store: &dyn ProgressStore,
    settings: &RebuildSettings,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> RebuildOutcome {
    let prefix = &settings.archive_prefix;
    let mut outcome = RebuildOutcome::default();
    let list_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    // The archive is walked one listing page at a time: each page's
    // superseded versions are remembered for retention, and its current
    // versions recorded from their HEADs as these arrive, before the next
    // page is asked for. A whole archive's versions are never held at once.
    // The rebuilt store also knows each account's newest file (`lag/…`).
    let tracker = LagTracker::new(store, now);
    let mut marker = None;
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let page = match archive
            .list_versions_page(&list_prefix, marker.take())
            .await
        {
            Ok(page) => page,
            Err(error) => {
                outcome.error(
                    "-",
                    &format!("list versions of s3://{}/{list_prefix}", archive.bucket()),
                    error.to_string(),
                );
                outcome.archive_unlisted = true;
                break;
            }
        };
        record_page(
            archive,
            &tracker,
            settings,
            page.versions,
            now,
            cancel,
            &mut outcome,
        )
        .await;
        match page.next {
            Some(next) => marker = Some(next),
            None => break,
        }
    }
    if let Err(error) = tracker.save() {
        outcome.error("-", "record_lag", error.to_string());
    }
    // The findings recorded so far, with their acknowledgements, so the
    // validation below does not report them as new again.
    match ledger::restore(archive, store, prefix, settings.shard.as_ref()).await {
        Ok(restored) => {
            info!(
                entries = restored.entries,
                findings = restored.findings,
                acknowledged = restored.acknowledged,
                "findings ledger read back"
            );
            for (key, reason) in restored.unreadable {
                outcome.error("-", &format!("read the findings ledger {key}"), reason);
            }
        }
        Err(error) => outcome.error("-", "read the findings ledger", error.to_string()),
    }
    info!(
        recorded = outcome.recorded,
        "store rebuilt from the archive"
    );
    outcome
}

/// The source of an archived copy: from its key, or for a quarantined copy
/// from its key and its `tv-source-key` metadata.
fn archived_source(
    prefix: &str,
    archive_key: &str,
    metadata: &std::collections::BTreeMap<String, String>,
) -> Option<SourceRef> {
    if let Some(source) = SourceRef::from_archive_key(prefix, archive_key) {
        return Some(source);
    }
    let encoded = metadata.get(copy::meta::SOURCE_KEY)?;
    let source_key = crate::model::text::decode_url_encoded(encoded).ok()?;
    SourceRef::from_quarantine_key(prefix, archive_key, &source_key)
}

/// Records one page of the archive's versions: the superseded ones for
/// retention, the current ones from their HEADs (several at a time).
async fn record_page(
    archive: &dyn Archive,
    tracker: &LagTracker<'_>,
    settings: &RebuildSettings,
    versions: Vec<ArchivedVersion>,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
    outcome: &mut RebuildOutcome,
) {
    let prefix = &settings.archive_prefix;
    let store: &dyn ProgressStore = tracker;
    // The findings ledger is read back below, not recorded as copies; the
    // versions newer copies superseded are remembered for retention.
    let (latest, superseded_versions): (Vec<_>, Vec<_>) = versions
        .into_iter()
        .filter(|v| !ledger::is_ledger_key(prefix, &v.key))
        .partition(|v| v.is_latest);
    for version in &superseded_versions {
        if let Some(source) = SourceRef::from_archive_key(prefix, &version.key) {
            if !shard_covers(settings.shard.as_ref(), &source) {
                continue;
            }
            let recorded = superseded::record(store, &source, &version.version_id, None);
            if let Err(error) = recorded {
                outcome.error(&source.account_id, "record_superseded", error.to_string());
            }
        }
    }
    outcome.listed += latest.len() as u64;
    let now_seconds = now.timestamp();
    // Each HEAD is recorded as it arrives: the heads (with their metadata)
    // of a whole archive are never held at once.
    let mut heads = futures::stream::iter(latest)
        .take_while(|_| std::future::ready(!cancel.is_cancelled()))
        .map(|version| async move {
            let head = archive.head(&version.key, Some(&version.version_id)).await;
            (version, head)
        })
        .buffer_unordered(settings.concurrency.max(1));
    while let Some((version, head)) = heads.next().await {
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => continue,
            Err(error) => {
                let account = SourceRef::from_archive_key(prefix, &version.key)
                    .map_or_else(|| "-".to_string(), |source| source.account_id);
                outcome.error(&account, "rebuild", error.to_string());
                continue;
            }
        };
        let Some(source) = archived_source(prefix, &version.key, &head.metadata) else {
            outcome.error(
                "-",
                "rebuild",
                format!(
                    "{} is not an archive key of this configuration",
                    crate::model::text::escape_control(&version.key)
                ),
            );
            continue;
        };
        if !shard_covers(settings.shard.as_ref(), &source) {
            continue;
        }
        let copied_at = head
            .metadata
            .get(copy::meta::COPIED_AT)
            .and_then(|t| t.parse().ok())
            .unwrap_or(now_seconds);
        let limits = settings.inflate_limits;
        let record =
            copy::record_from_archive(archive, &version.key, &head, copied_at, limits).await;
        match record {
            Ok(Some(record)) => match tracker.record_object(&source, &record) {
                Ok(()) => outcome.recorded += 1,
                Err(error) => outcome.error(&source.account_id, "record_object", error.to_string()),
            },
            Err(error) => outcome.error(&source.account_id, "rebuild", error.to_string()),
            Ok(None) => outcome.error(
                &source.account_id,
                "rebuild",
                format!(
                    "{} has no SHA-256 checksum; not recorded (collect will copy it again)",
                    version.key
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::seams::Clock;
    use crate::testsuite::chains::{build_chain, copy_settings, Trail, World};
    use crate::testsuite::memory::MemoryStore;

    #[tokio::test]
    async fn a_lost_store_is_rebuilt_record_for_record_from_the_archive() {
        let first_end = Utc
            .with_ymd_and_hms(2026, 11, 27, 1, 0, 0)
            .single()
            .unwrap();
        let world = World::new(first_end + chrono::Duration::hours(6));
        let trail = Trail::org("us-east-1");
        for digest in build_chain(&trail, first_end, 3) {
            world.put_digest(&digest);
        }
        world.archive_all().await;
        // Small listing pages: the archive is walked page by page.
        world
            .archive
            .version_page_size
            .store(2, std::sync::atomic::Ordering::Relaxed);
        let copy = copy_settings();
        let settings = RebuildSettings {
            archive_prefix: copy.archive_prefix.clone(),
            concurrency: 4,
            inflate_limits: copy.inflate_limits,
            shard: None,
        };
        let rebuilt = MemoryStore::default();
        let outcome = rebuild_store(
            &world.archive,
            &rebuilt,
            &settings,
            world.clock.now(),
            &CancellationToken::new(),
        )
        .await;
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        assert!(!outcome.archive_unlisted);
        let reader = World::source_ref("x");
        let original = world
            .store
            .objects_under(&reader.account_id, &reader.bucket, "")
            .unwrap();
        assert!(original.len() >= 3, "a chain of digests and its logs");
        let pages = world
            .archive
            .version_pages
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            pages >= original.len() as u64 / 2,
            "one listing request per page of two versions: {pages}"
        );
        assert_eq!(outcome.listed, original.len() as u64);
        assert_eq!(outcome.recorded, original.len() as u64);
        for (key, record) in original {
            let again = rebuilt
                .object(&World::source_ref(&key))
                .unwrap()
                .unwrap_or_else(|| panic!("{key} not rebuilt"));
            assert_eq!(again.etag, record.etag, "{key}");
            assert_eq!(again.raw_sha256, record.raw_sha256, "{key}");
            assert_eq!(again.content_sha256, record.content_sha256, "{key}");
            assert_eq!(again.archive_version_id, record.archive_version_id, "{key}");
        }
    }

    #[tokio::test]
    async fn a_listing_page_that_fails_leaves_the_archive_unlisted() {
        let first_end = Utc
            .with_ymd_and_hms(2026, 11, 27, 1, 0, 0)
            .single()
            .unwrap();
        let world = World::new(first_end + chrono::Duration::hours(6));
        let trail = Trail::org("us-east-1");
        for digest in build_chain(&trail, first_end, 3) {
            world.put_digest(&digest);
        }
        world.archive_all().await;
        world
            .archive
            .version_page_size
            .store(2, std::sync::atomic::Ordering::Relaxed);
        world
            .archive
            .fail_later_version_pages
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let copy = copy_settings();
        let settings = RebuildSettings {
            archive_prefix: copy.archive_prefix.clone(),
            concurrency: 4,
            inflate_limits: copy.inflate_limits,
            shard: None,
        };
        let outcome = rebuild_store(
            &world.archive,
            &MemoryStore::default(),
            &settings,
            world.clock.now(),
            &CancellationToken::new(),
        )
        .await;
        assert!(outcome.archive_unlisted);
        assert_eq!(outcome.listed, 2, "the first page was recorded");
        assert!(outcome
            .errors
            .iter()
            .any(|error| error.operation.starts_with("list versions")));
    }
}
