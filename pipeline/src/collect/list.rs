//! Listing one partition and diffing it against the store: what is new or
//! changed becomes a copy job, at most `max_keys_per_partition_per_run` of
//! them per run.
//!
//! A member controls how many keys a partition holds. The listing is read
//! page by page and only the keys this run takes are kept, so a partition of
//! a million junk keys costs a million store lookups, not a million jobs in
//! memory. Which keys go first, when there are more than a run takes:
//!
//! 1. keys that parse as CloudTrail files of this very partition (folder,
//!    region and date all agree): a member cannot make junk look like that
//!    without it becoming a trail file that validation then holds to its
//!    digests, so junk never starves real files;
//! 2. everything else (names that are not CloudTrail's, or that claim another
//!    account), collected as evidence as before, with the budget left over.
//!
//! Within each class the order is a keyed hash of the key, drawn afresh by
//! every process, not the listing order: a member who plants names that sort
//! first cannot choose which keys wait. The keys left over are counted
//! (`objects_deferred`), logged once per partition, and the partition is
//! marked pending so the next run lists it again, open or not; a backfill
//! does not mark such a partition done.

use std::collections::BinaryHeap;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use tracing::warn;

use crate::cloudtrail::keys::parse_trail_key;
use crate::model::error::SeamError;
use crate::model::findings::{Finding, FindingKind};
use crate::model::object::{ObjectRecord, SourceRef};
use crate::progress;
use crate::progress::collect::{BackfillPartition, PendingPartition};
use crate::seams::ListedObject;

use super::plan::Partition;
use super::{CopyJob, PartitionDone, Run, Window};

/// Where a listed key stands in the queue of its partition: the smallest go
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    /// Not a CloudTrail file of this partition.
    junk: bool,
    /// A keyed hash of the key: an order a member cannot choose.
    draw: u64,
}

/// A key this run may take.
struct Candidate {
    rank: Rank,
    listed: ListedObject,
    previous: Option<Box<ObjectRecord>>,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Candidate) -> bool {
        (self.rank, &self.listed.key) == (other.rank, &other.listed.key)
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Candidate) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Candidate) -> std::cmp::Ordering {
        (self.rank, &self.listed.key).cmp(&(other.rank, &other.listed.key))
    }
}

/// The keys a run takes from one partition: the `capacity` best ranked,
/// whatever the listing's order and length.
struct Selection {
    capacity: usize,
    /// A max-heap: its top is the worst candidate kept, the first to go.
    kept: BinaryHeap<Candidate>,
    deferred: u64,
}

impl Selection {
    fn new(capacity: usize) -> Selection {
        Selection {
            capacity,
            kept: BinaryHeap::new(),
            deferred: 0,
        }
    }

    fn offer(&mut self, candidate: Candidate) {
        if self.kept.len() < self.capacity {
            self.kept.push(candidate);
            return;
        }
        self.deferred += 1;
        let better = self.kept.peek().is_some_and(|worst| candidate < *worst);
        if better {
            self.kept.pop();
            self.kept.push(candidate);
        }
    }

    /// The kept candidates, best first.
    fn into_sorted(self) -> Vec<Candidate> {
        self.kept.into_sorted_vec()
    }
}

pub(super) async fn list_partition(run: &Run<'_>, partition: Partition) -> PartitionJobs {
    let prefix = partition.prefix();
    let scope = &partition.scope;
    let done = BackfillPartition::new(&scope.reader_account_id, scope.source.bucket(), &prefix);
    let backfill = matches!(run.window, Window::Range { .. });
    if backfill && done.is_done(run.store) {
        run.counters
            .partitions_listed
            .fetch_add(1, Ordering::Relaxed);
        run.outcome().stats.partitions_skipped += 1;
        return PartitionJobs::none(scope, &partition.region);
    }
    let source_id = (
        scope.reader_account_id.clone(),
        scope.source.bucket().to_string(),
    );
    if run.refused().contains(&source_id) {
        return PartitionJobs::none(scope, &partition.region);
    }
    let capacity = run.settings.max_keys_per_partition_per_run.max(1);
    let mut selection = Selection::new(capacity);
    let mut skipped = 0u64;
    let mut judged_oversize = 0usize;
    let mut listing = scope.source.list(&prefix);
    while let Some(page) = listing.next().await {
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                if matches!(error, SeamError::AccessDenied(_) | SeamError::NotFound(_)) {
                    run.refused().insert(source_id);
                }
                run.error(
                    &scope.member_account_id,
                    &format!("list s3://{}/{prefix}", scope.source.bucket()),
                    &error,
                );
                return PartitionJobs::none(scope, &partition.region);
            }
        };
        run.counters
            .objects_listed
            .fetch_add(page.len() as u64, Ordering::Relaxed);
        for object in page {
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
            if object.size > run.settings.max_object_bytes {
                if progress::oversize::judged(run.store, &source, &object.etag) {
                    skipped += 1;
                } else if judged_oversize < capacity {
                    judged_oversize += 1;
                    judge_oversize(
                        run,
                        &scope.member_account_id,
                        &source,
                        &object.etag,
                        object.size,
                        previous.as_ref(),
                    );
                } else {
                    selection.deferred += 1;
                }
                continue;
            }
            let rank = Rank {
                junk: !parse_trail_key(&object.key)
                    .is_ok_and(|trail_key| trail_key.partition_prefix() == prefix),
                draw: run.draw.hash_one(&object.key),
            };
            selection.offer(Candidate {
                rank,
                listed: object,
                previous: previous.map(Box::new),
            });
        }
    }
    drop(listing);
    run.counters
        .partitions_listed
        .fetch_add(1, Ordering::Relaxed);

    let deferred = selection.deferred;
    record_deferral(run, &partition, &prefix, deferred, capacity);
    let candidates = selection.into_sorted();
    // A backfill marks a partition done only when this listing left nothing
    // for later and every copy it started ended recorded.
    let mut tracker = None;
    if backfill && deferred == 0 {
        if candidates.is_empty() {
            if let Err(error) = done.mark_done(run.store) {
                run.error(&scope.member_account_id, "record_partition_done", &error);
            }
        } else {
            tracker = Some(Arc::new(PartitionDone {
                marker: done,
                remaining: std::sync::atomic::AtomicUsize::new(candidates.len()),
                failed: std::sync::atomic::AtomicBool::new(false),
            }));
        }
    }
    {
        let mut outcome = run.outcome();
        outcome.stats.objects_skipped += skipped;
        outcome.stats.objects_deferred += deferred;
    }
    run.counters
        .objects_to_copy
        .fetch_add(candidates.len() as u64, Ordering::Relaxed);
    PartitionJobs {
        scope: scope.clone(),
        region: partition.region,
        tracker,
        adopt_first: run.recovering,
        candidates,
    }
}

/// The copy jobs of one listed partition, best first. Each [`CopyJob`] is
/// built only when the copy loop takes it: until then a key costs its
/// listing entry, not a job.
pub(super) struct PartitionJobs {
    scope: super::SourceScope,
    region: String,
    tracker: Option<Arc<PartitionDone>>,
    adopt_first: bool,
    candidates: Vec<Candidate>,
}

impl PartitionJobs {
    fn none(scope: &super::SourceScope, region: &str) -> PartitionJobs {
        PartitionJobs {
            scope: scope.clone(),
            region: region.to_string(),
            tracker: None,
            adopt_first: false,
            candidates: Vec::new(),
        }
    }
}

impl IntoIterator for PartitionJobs {
    type Item = CopyJob;
    type IntoIter = Box<dyn Iterator<Item = CopyJob> + Send>;

    fn into_iter(self) -> Self::IntoIter {
        let PartitionJobs {
            scope,
            region,
            tracker,
            adopt_first,
            candidates,
        } = self;
        Box::new(candidates.into_iter().map(move |candidate| CopyJob {
            partition: tracker.clone(),
            scope: scope.clone(),
            region: region.clone(),
            source: SourceRef {
                account_id: scope.reader_account_id.clone(),
                bucket: scope.source.bucket().to_string(),
                key: candidate.listed.key.clone(),
            },
            listed: candidate.listed,
            previous: candidate.previous.map(|record| *record),
            adopt_first,
        }))
    }
}

/// Remembers whether `partition` still holds keys for a later run, and says
/// so once.
fn record_deferral(
    run: &Run<'_>,
    partition: &Partition,
    prefix: &str,
    deferred: u64,
    capacity: usize,
) {
    let scope = &partition.scope;
    let bucket = scope.source.bucket();
    let recorded = if deferred > 0 {
        warn!(
            bucket,
            partition = prefix,
            deferred,
            max_keys_per_partition_per_run = capacity,
            "partition holds more new keys than one run takes; the rest are collected by the next runs"
        );
        progress::collect::mark_pending(
            run.store,
            &scope.reader_account_id,
            bucket,
            prefix,
            &PendingPartition::new(
                &scope.root,
                &partition.root,
                &partition.family,
                &partition.region,
                partition.date,
            ),
        )
    } else {
        progress::collect::clear_pending(run.store, &scope.reader_account_id, bucket, prefix)
    };
    if let Err(error) = recorded {
        run.error(&scope.member_account_id, "record_pending_partition", &error);
    }
}

/// An object above `max_object_bytes`: one finding for this version, and the
/// judgement remembered so that a re-listing neither raises it again nor
/// tries to copy it. Also used when a GET finds an object grown since its
/// listing.
pub(super) fn judge_oversize(
    run: &Run<'_>,
    member: &str,
    source: &SourceRef,
    etag: &str,
    size: u64,
    previous: Option<&ObjectRecord>,
) {
    let earlier = previous
        .map(|record| {
            format!(
                "; an earlier version (ETag {}, {} bytes) is archived and kept",
                record.etag, record.size
            )
        })
        .unwrap_or_default();
    let finding = Finding::new(
        FindingKind::ObjectMalformed,
        member,
        &source.bucket,
        &source.key,
        format!(
            "object of {size} bytes (ETag {etag}) exceeds collect.max_object_bytes ({}); not copied: no CloudTrail file is that large{earlier}",
            run.settings.max_object_bytes
        ),
    )
    .with_region(
        parse_trail_key(&source.key)
            .ok()
            .map(|key| key.region)
            .as_deref(),
    );
    if run.finding_recorded(finding) {
        let judged_at = run.now.timestamp();
        if let Err(error) = progress::oversize::record(run.store, source, etag, size, judged_at) {
            run.error(member, "record_oversize", &error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(junk: bool, draw: u64, key: &str) -> Candidate {
        Candidate {
            rank: Rank { junk, draw },
            listed: ListedObject {
                key: key.to_string(),
                size: 1,
                etag: "e".into(),
            },
            previous: None,
        }
    }

    #[test]
    fn a_selection_keeps_the_best_ranked_whatever_the_order() {
        let mut selection = Selection::new(3);
        for (junk, draw, key) in [
            (true, 1, "j1"),
            (true, 0, "j0"),
            (false, 9, "r9"),
            (true, 5, "j5"),
            (false, 3, "r3"),
            (true, 2, "j2"),
        ] {
            selection.offer(candidate(junk, draw, key));
        }
        assert_eq!(selection.deferred, 3);
        let kept: Vec<String> = selection
            .into_sorted()
            .into_iter()
            .map(|c| c.listed.key)
            .collect();
        assert_eq!(kept, vec!["r3", "r9", "j0"]);
    }
}
