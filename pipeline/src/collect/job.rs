//! One copy job: adopt what an interrupted attempt left, copy, inspect,
//! record. The one copy-level retry policy of the product lives here.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use chrono::{DateTime, Duration};
use tracing::{debug, Instrument};

use crate::cloudtrail::keys::{parse_trail_key, KeyError, TrailKey};
use crate::copy::{adopt_copy, adoptable_copy, copy_object, retain_until, Copied, CopyError};
use crate::model::findings::{Finding, FindingKind};

use crate::model::error::SeamError;
use crate::model::object::SourceRef;
use crate::seams::{
    BucketOwnership, ListedObject, ListingPage, ObjectMeta, SourceObject, TrailSource,
};

use super::inspect::{claims_check, inspect};
use super::list::judge_oversize;
use super::{CopyJob, Run};

pub(super) async fn copy_job(run: &Run<'_>, job: CopyJob) {
    let succeeded = copy_one(run, &job).await;
    if !succeeded {
        run.jobs_failed.fetch_add(1, Ordering::Relaxed);
    }
    let Some(partition) = &job.partition else {
        return;
    };
    if !succeeded {
        partition.failed.store(true, Ordering::Relaxed);
    }
    let last = partition.remaining.fetch_sub(1, Ordering::AcqRel) == 1;
    if last && !partition.failed.load(Ordering::Relaxed) {
        if let Err(error) = partition.marker.mark_done(run.store) {
            run.error(
                &job.scope.member_account_id,
                "record_partition_done",
                &error,
            );
        }
    }
}

/// The copy-level retry policy, the only one above the seams: requests are
/// retried by the seams themselves (infra's backoff, under the run's policy),
/// so a whole copy starts again only when [`CopyError::calls_for_another_copy`]
/// says no request retry could help — a body broken mid-stream, or a copy that
/// failed verification — at most `copy_attempts` times in all, waiting
/// `COPY_RETRY_BASE × 2^(n-1)` before attempt n + 1. The wait ends early, and
/// no new attempt starts, when the run is cancelled.
const COPY_RETRY_BASE: std::time::Duration = std::time::Duration::from_millis(200);

/// Waits before attempt `attempt + 1`; `false` when the run was cancelled.
async fn wait_before_copying_again(run: &Run<'_>, attempt: u32) -> bool {
    let delay = COPY_RETRY_BASE * 2u32.saturating_pow(attempt.saturating_sub(1).min(6));
    tokio::select! {
        () = run.cancel.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// [`copy_object`] as a task of its own when the run has its context behind
/// `Arc`s (a collection run), so the copies' CPU work (requests, hashing,
/// inflating, the claims scan of small bodies) spreads over every worker
/// thread of the runtime instead of running on the one task that drives the
/// run; on this task otherwise (a single fetch). A task that ends without an
/// answer (it panicked) is a copy to make again.
async fn copy_spawned(
    run: &Run<'_>,
    source: Arc<SizeCapped>,
    target: &SourceRef,
    check: Option<crate::copy::ContentCheck>,
) -> Result<Copied, CopyError> {
    let Some(shared) = &run.shared else {
        return copy_object(
            source.as_ref(),
            run.archive,
            &run.settings.copy,
            target,
            run.now,
            check,
        )
        .await;
    };
    let archive = shared.archive.clone();
    let settings = shared.copy.clone();
    let target = target.clone();
    let now = run.now;
    let task = tokio::spawn(
        async move {
            copy_object(
                source.as_ref(),
                archive.as_ref(),
                &settings,
                &target,
                now,
                check,
            )
            .await
        }
        .instrument(tracing::Span::current()),
    );
    task.await
        .unwrap_or_else(|error| Err(CopyError::Invalid(format!("the copy task failed: {error}"))))
}

/// The source as one copy reads it: a GET that answers an object larger than
/// `max_object_bytes` (it grew after its listing) is refused before a byte of
/// its body is read, and remembered so the copy can be judged instead.
struct SizeCapped {
    inner: Arc<dyn TrailSource>,
    max_object_bytes: u64,
    refused: Mutex<Option<ObjectMeta>>,
}

impl SizeCapped {
    fn refused(&self) -> Option<ObjectMeta> {
        self.refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[async_trait]
impl TrailSource for SizeCapped {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListingPage<ListedObject>, SeamError> {
        self.inner.list_page(prefix, continuation).await
    }

    async fn list_folders_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListingPage<String>, SeamError> {
        self.inner.list_folders_page(prefix, continuation).await
    }

    async fn get(&self, key: &str) -> Result<SourceObject, SeamError> {
        let object = self.inner.get(key).await?;
        if object.meta.size <= self.max_object_bytes {
            return Ok(object);
        }
        let size = object.meta.size;
        *self
            .refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(object.meta);
        Err(SeamError::Permanent(format!(
            "{key} is {size} bytes, more than collect.max_object_bytes"
        )))
    }

    async fn delete(&self, key: &str) -> Result<(), SeamError> {
        self.inner.delete(key).await
    }

    async fn ownership(&self) -> Result<BucketOwnership, SeamError> {
        self.inner.ownership().await
    }
}

/// Copies one object; `true` when it ended recorded (copied, adopted, or
/// judged too large to copy).
pub(super) async fn copy_one(run: &Run<'_>, job: &CopyJob) -> bool {
    let source = Arc::new(SizeCapped {
        inner: job.scope.source.clone(),
        max_object_bytes: run.settings.max_object_bytes,
        refused: Mutex::new(None),
    });
    let succeeded = copy_or_adopt(run, job, &source).await;
    match source.refused() {
        Some(meta) if !succeeded => {
            judge_oversize(
                run,
                &job.scope.member_account_id,
                &job.source,
                &meta.etag,
                meta.size,
                job.previous.as_ref(),
            );
            true
        }
        _ => succeeded,
    }
}

async fn copy_or_adopt(run: &Run<'_>, job: &CopyJob, source: &Arc<SizeCapped>) -> bool {
    let settings = &run.settings.copy;
    let archive_key = job.source.archive_key(&settings.archive_prefix);
    let member = job.scope.member_account_id.as_str();
    let parsed_key = parse_trail_key(&job.source.key);

    // A previous run may have died between PUT and recording: adopt its copy.
    let mut adopted = None;
    if job.adopt_first {
        match adopt(run, job, source.as_ref(), &archive_key, &parsed_key).await {
            Ok(found) => adopted = found,
            Err(_) if source.refused().is_some() => return false,
            Err(error) => {
                run.error(
                    member,
                    &format!("adopt s3://{}/{archive_key}", run.archive.bucket()),
                    &error,
                );
                return false;
            }
        }
    }

    let attempts = run.settings.copy_attempts.max(1);
    let mut attempt = 0;
    let copied = loop {
        if let Some(copied) = adopted.take() {
            debug!(key = %job.source.key, "adopted the copy of an interrupted attempt");
            run.outcome().stats.objects_adopted += 1;
            break copied;
        }
        attempt += 1;
        match copy_spawned(
            run,
            source.clone(),
            &job.source,
            Some(claims_check(job, &parsed_key)),
        )
        .await
        {
            Ok(copied) => {
                run.counters.objects_copied.fetch_add(1, Ordering::Relaxed);
                run.counters
                    .bytes_copied
                    .fetch_add(copied.bytes, Ordering::Relaxed);
                break copied;
            }
            Err(error) if error.calls_for_another_copy() && attempt < attempts => {
                debug!(key = %job.source.key, attempt, %error, "copy attempt failed; retrying");
                if !wait_before_copying_again(run, attempt).await {
                    run.error(
                        member,
                        &format!("copy s3://{}/{}", job.source.bucket, job.source.key),
                        &"interrupted by a signal before another attempt",
                    );
                    return false;
                }
                // Neither a broken source body nor a failed verification
                // leaves a copy to adopt: the body breaks before any PUT
                // (multipart uploads are aborted), and a copy that failed
                // verification is never adopted.
            }
            Err(CopyError::Invalid(problem)) => {
                let finding = Finding::new(
                    FindingKind::ArchiveCopyInvalid,
                    member,
                    &job.source.bucket,
                    &job.source.key,
                    format!("copy failed verification after {attempt} attempts: {problem}"),
                )
                .with_archive_key(Some(&archive_key));
                run.finding(finding);
                return false;
            }
            // Judged by the caller instead: the object grew past the cap.
            Err(_) if source.refused().is_some() => return false,
            Err(error) => {
                run.error(
                    member,
                    &format!("copy s3://{}/{}", job.source.bucket, job.source.key),
                    &error,
                );
                return false;
            }
        }
    };

    let Copied {
        record,
        inflate_error,
        content_findings,
        ..
    } = copied;
    if let Some(previous) = &job.previous {
        let detail = format!(
            "source object changed after it was archived: ETag {} -> {}, content SHA-256 {} -> {}; both versions are kept in the archive",
            previous.etag,
            record.etag,
            previous.content_sha256.map(hex::encode).unwrap_or_else(|| "-".into()),
            record.content_sha256.map(hex::encode).unwrap_or_else(|| "-".into()),
        );
        run.finding(
            Finding::new(
                FindingKind::SourceObjectModified,
                member,
                &job.source.bucket,
                &job.source.key,
                detail,
            )
            .with_archive_key(Some(&archive_key)),
        );
    }
    // First, so it is the one `object_malformed` of this key the run keeps.
    if let Some(reason) = job.source.quarantine(&settings.archive_prefix) {
        run.finding(
            Finding::new(
                FindingKind::ObjectMalformed,
                member,
                &job.source.bucket,
                &job.source.key,
                format!(
                    "key cannot be archived under its own name: {reason}; archived under its SHA-256 with the original key in the {} metadata",
                    crate::copy::meta::SOURCE_KEY
                ),
            )
            .with_archive_key(Some(&archive_key)),
        );
    }
    for finding in inspect(job, inflate_error.as_ref(), content_findings, parsed_key) {
        run.finding(finding.with_archive_key(Some(&archive_key)));
    }
    // The copy this one supersedes stays in the archive as evidence, and in
    // the store for retention (its record is replaced below).
    if let Some(previous) = &job.previous {
        if let Some(version) = previous
            .archive_version_id
            .as_deref()
            .filter(|version| record.archive_version_id.as_deref() != Some(*version))
        {
            let recorded = crate::progress::superseded::record(
                run.store,
                &job.source,
                version,
                Some(previous.copied_at),
            );
            if let Err(error) = recorded {
                run.error(member, "record_superseded", &error);
            }
        }
    }
    finish(run, job, record)
}

/// The archive's copy of this source version, left by an interrupted attempt
/// (see [`crate::copy::adopt_copy`]); `Ok(None)` when there is none to adopt.
pub(super) async fn adopt(
    run: &Run<'_>,
    job: &CopyJob,
    source: &dyn TrailSource,
    archive_key: &str,
    parsed_key: &Result<TrailKey, KeyError>,
) -> Result<Option<Copied>, CopyError> {
    let settings = &run.settings.copy;
    let Some(head) = adoptable_copy(run.archive, settings, archive_key, &job.listed.etag)
        .await
        .map_err(CopyError::Archive)?
    else {
        return Ok(None);
    };
    let adopted = adopt_copy(
        source,
        run.archive,
        settings,
        &job.source,
        &head,
        run.now,
        Some(claims_check(job, parsed_key)),
    )
    .await?;
    if adopted.is_some() {
        // Locked as long as a copy made then must be: the retention period
        // may have grown since the interrupted run.
        let copied_at = head
            .metadata
            .get(crate::copy::meta::COPIED_AT)
            .and_then(|t| t.parse::<i64>().ok())
            .and_then(|t| DateTime::from_timestamp(t, 0))
            .unwrap_or(run.now);
        let required = retain_until(copied_at, settings.retention_days);
        if head
            .retain_until
            .is_some_and(|until| until + Duration::seconds(1) < required)
        {
            let version = head.version_id.as_deref().ok_or_else(|| {
                CopyError::Invalid(format!("{archive_key} has no version id to extend"))
            })?;
            run.archive
                .put_retention(archive_key, version, settings.lock_mode, required)
                .await
                .map_err(CopyError::Archive)?;
        }
    }
    Ok(adopted)
}

pub(super) fn finish(
    run: &Run<'_>,
    job: &CopyJob,
    record: crate::model::object::ObjectRecord,
) -> bool {
    if let Err(error) = run.store.record_object(&job.source, &record) {
        run.error(&job.scope.member_account_id, "record_object", &error);
        return false;
    }
    true
}
