//! Listing one partition and diffing it against the store: what is new or
//! changed becomes a copy job.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::model::error::SeamError;
use crate::model::object::SourceRef;
use crate::progress::collect::BackfillPartition;

use super::plan::Partition;
use super::{CopyJob, PartitionDone, Run, Window};

pub(super) async fn list_partition(run: &Run<'_>, partition: Partition) -> Vec<CopyJob> {
    let prefix = partition.prefix();
    let scope = &partition.scope;
    let done = BackfillPartition::new(&scope.reader_account_id, scope.source.bucket(), &prefix);
    let backfill = matches!(run.window, Window::Range { .. });
    if backfill && done.is_done(run.store) {
        run.counters
            .partitions_listed
            .fetch_add(1, Ordering::Relaxed);
        run.outcome().stats.partitions_skipped += 1;
        return Vec::new();
    }
    let source_id = (
        scope.reader_account_id.clone(),
        scope.source.bucket().to_string(),
    );
    if run.refused().contains(&source_id) {
        return Vec::new();
    }
    let listed = match scope.source.list(&prefix).await {
        Ok(listed) => listed,
        Err(error) => {
            if matches!(error, SeamError::AccessDenied(_) | SeamError::NotFound(_)) {
                run.refused().insert(source_id);
            }
            run.error(
                &scope.member_account_id,
                &format!("list s3://{}/{prefix}", scope.source.bucket()),
                &error,
            );
            return Vec::new();
        }
    };
    run.counters
        .partitions_listed
        .fetch_add(1, Ordering::Relaxed);
    run.counters
        .objects_listed
        .fetch_add(listed.len() as u64, Ordering::Relaxed);
    let mut jobs = Vec::new();
    let mut skipped = 0u64;
    for object in listed {
        if object.key.ends_with('/') {
            continue;
        }
        let source = SourceRef {
            account_id: scope.reader_account_id.clone(),
            bucket: scope.source.bucket().to_string(),
            key: object.key.clone(),
        };
        let previous = match run.store.object(&source) {
            Ok(previous) => previous,
            Err(error) => {
                run.error(&scope.member_account_id, "read_store", &error);
                continue;
            }
        };
        if previous
            .as_ref()
            .is_some_and(|record| record.etag == object.etag)
        {
            skipped += 1;
            continue;
        }
        let adopt_first = run.recovering;
        jobs.push(CopyJob {
            partition: None,
            scope: scope.clone(),
            region: partition.region.clone(),
            source,
            listed: object,
            previous,
            adopt_first,
        });
    }
    if backfill {
        if jobs.is_empty() {
            if let Err(error) = done.mark_done(run.store) {
                run.error(&scope.member_account_id, "record_partition_done", &error);
            }
        } else {
            let tracker = Arc::new(PartitionDone {
                marker: done,
                remaining: std::sync::atomic::AtomicUsize::new(jobs.len()),
                failed: std::sync::atomic::AtomicBool::new(false),
            });
            for job in &mut jobs {
                job.partition = Some(tracker.clone());
            }
        }
    }
    run.outcome().stats.objects_skipped += skipped;
    run.counters
        .objects_to_copy
        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
    jobs
}
