//! The rebuild job: rebuilds the store from the archive. Every current
//! archive version carries its provenance (source account in the key, source
//! ETag, checksums, content hash), so the next collect copies nothing again;
//! then every chain is validated so the next runs continue from there.

use std::path::Path;

use futures::StreamExt as _;
use tracing::info;

use crate::copy;
use crate::ledger;
use crate::model::object::SourceRef;
use crate::model::report::Report;
use crate::progress::lag::LagTracker;
use crate::progress::superseded;
use crate::seams::ProgressStore;

use super::sources::Scope;
use super::verify::validate_into;
use super::{JobSettings, World};

/// The rebuild job (`rebuild-state`): records every archived object, the
/// superseded versions and the findings ledger; then, unless `no_verify`,
/// validates every chain; then ends the run.
pub async fn rebuild(
    world: &World,
    settings: &JobSettings,
    keys_file: Option<&Path>,
    no_verify: bool,
) -> Report {
    let cancel = &world.cancel.stop;
    let mut report = Report::new("rebuild-state");
    let archive = world.archive.as_ref();
    let prefix = &settings.collect.copy.archive_prefix;
    let list_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let versions = match archive.list_versions(&list_prefix).await {
        Ok(versions) => versions,
        Err(error) => {
            report.error(
                "-",
                &format!("list versions of s3://{}/{list_prefix}", archive.bucket()),
                error.to_string(),
            );
            super::finish_run(world, settings, &mut report);
            return report;
        }
    };
    // The findings ledger is read back below, not recorded as copies; the
    // versions newer copies superseded are remembered for retention.
    let (latest, superseded_versions): (Vec<_>, Vec<_>) = versions
        .into_iter()
        .filter(|v| !ledger::is_ledger_key(prefix, &v.key))
        .partition(|v| v.is_latest);
    for version in &superseded_versions {
        if let Some(source) = SourceRef::from_archive_key(prefix, &version.key) {
            let recorded =
                superseded::record(world.store.as_ref(), &source, &version.version_id, None);
            if let Err(error) = recorded {
                report.error(&source.account_id, "record_superseded", error.to_string());
            }
        }
    }
    report.stats.objects_listed = latest.len() as u64;
    let now = world.clock.now().timestamp();
    // Each HEAD is recorded as it arrives: the heads (with their metadata)
    // of a whole archive are never held at once.
    let mut heads = futures::stream::iter(latest)
        .take_while(|_| std::future::ready(!cancel.is_cancelled()))
        .map(|version| {
            let archive = world.archive.clone();
            async move {
                let head = archive.head(&version.key, Some(&version.version_id)).await;
                (version, head)
            }
        })
        .buffer_unordered(settings.collect.concurrency);
    // The rebuilt store also knows each account's newest file (`lag/…`).
    let tracker = LagTracker::new(world.store.as_ref(), world.clock.now());
    while let Some((version, head)) = heads.next().await {
        let Some(source) = SourceRef::from_archive_key(prefix, &version.key) else {
            report.error(
                "-",
                "rebuild",
                format!(
                    "{} is not an archive key of this configuration",
                    version.key
                ),
            );
            continue;
        };
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => continue,
            Err(error) => {
                report.error(&source.account_id, "rebuild", error.to_string());
                continue;
            }
        };
        let copied_at = head
            .metadata
            .get(copy::meta::COPIED_AT)
            .and_then(|t| t.parse().ok())
            .unwrap_or(now);
        let limits = settings.collect.copy.inflate_limits;
        let record =
            copy::record_from_archive(archive, &version.key, &head, copied_at, limits).await;
        match record {
            Ok(Some(record)) => match tracker.record_object(&source, &record) {
                Ok(()) => report.stats.objects_copied += 1,
                Err(error) => report.error(&source.account_id, "record_object", error.to_string()),
            },
            Err(error) => report.error(&source.account_id, "rebuild", error.to_string()),
            Ok(None) => report.error(
                &source.account_id,
                "rebuild",
                format!(
                    "{} has no SHA-256 checksum; not recorded (collect will copy it again)",
                    version.key
                ),
            ),
        }
    }
    if let Err(error) = tracker.save() {
        report.error("-", "record_lag", error.to_string());
    }
    // The findings recorded so far, with their acknowledgements, so the
    // validation below does not report them as new again.
    match ledger::restore(archive, world.store.as_ref(), prefix).await {
        Ok(restored) => {
            info!(
                entries = restored.entries,
                findings = restored.findings,
                acknowledged = restored.acknowledged,
                "findings ledger read back"
            );
            for (key, reason) in restored.unreadable {
                report.error("-", &format!("read the findings ledger {key}"), reason);
            }
        }
        Err(error) => report.error("-", "read the findings ledger", error.to_string()),
    }
    info!(
        recorded = report.stats.objects_copied,
        "store rebuilt from the archive"
    );
    // The chain state is rebuilt too, so the next runs continue from here.
    if !no_verify && !cancel.is_cancelled() {
        let abort = world.cancel.abort_on_stop();
        validate_into(
            world,
            settings,
            &mut report,
            &Scope::default(),
            keys_file,
            false,
        )
        .await;
        abort.abort();
    }
    super::finish_run(world, settings, &mut report);
    report
}
