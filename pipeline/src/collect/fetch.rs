//! One object copied outside a listing run — the log file a digest names
//! that collection never listed, which validation fetches before calling it
//! missing — through the very protocol of a collection run: the in-flight
//! marker durable before the PUT, adoption of an interrupted attempt, the
//! size cap, the copy with its content checks, `inspect`, the store record.
//! There is one copy path; this is its entry for a single key.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::model::error::SeamError;
use crate::model::findings::Finding;
use crate::model::object::{ObjectRecord, SourceRef};
use crate::model::report::OperationError;
use crate::progress;
use crate::seams::{Archive, ListedObject, ProgressStore, TrailSource};

use super::job::copy_one;
use super::list::judge_oversize;
use super::{CollectSettings, CopyJob, Counters, Run, SourceScope, Window};

/// What a single fetch works with.
pub struct FetchContext<'a> {
    pub archive: &'a dyn Archive,
    pub store: &'a dyn ProgressStore,
    pub settings: &'a CollectSettings,
    pub now: DateTime<Utc>,
    pub cancel: &'a CancellationToken,
}

/// What [`fetch_one`] did.
#[derive(Debug, Default)]
pub struct Fetched {
    /// The store's record of the archived copy; `None` when the source does
    /// not hold the key (or it was judged, not copied: too large).
    pub record: Option<ObjectRecord>,
    /// The findings the copy raised, as the store recorded them (`new` set
    /// on first sighting): already recorded, to be reported, not recorded again.
    pub findings: Vec<Finding>,
    /// Operational errors; the copy did not end recorded when there is one.
    pub errors: Vec<OperationError>,
    /// The source does not hold the key.
    pub absent: bool,
}

/// Copies `target` (read as its `account_id` through `source`, belonging to
/// `member_account_id`) into the archive as a collection run would, unless
/// the store already records it. Callers run one fetch at a time per store:
/// the in-flight marker is the run's, and a fetch clears it only when no
/// earlier run left it set.
pub async fn fetch_one(
    context: FetchContext<'_>,
    source: Arc<dyn TrailSource>,
    member_account_id: &str,
    target: &SourceRef,
) -> Fetched {
    // The key is listed (a prefix listing of exactly it) as collection lists
    // it: its ETag for adoption, its size for the cap, and its absence.
    let listed = match source.list_page(&target.key, None).await {
        Ok(page) => Ok(page.items.into_iter().find(|item| item.key == target.key)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err((format!("list s3://{}/{}", target.bucket, target.key), error)),
    };
    fetch_found(context, source, member_account_id, target, listed).await
}

/// [`fetch_one`] for a key a notification announced: the key's size and
/// ETag come from [`TrailSource::head`] (S3 `HeadObject`), not from a
/// listing, so event-driven intake never lists. Everything after is the
/// same protocol.
pub async fn fetch_notified(
    context: FetchContext<'_>,
    source: Arc<dyn TrailSource>,
    member_account_id: &str,
    target: &SourceRef,
) -> Fetched {
    let found = source
        .head(&target.key)
        .await
        .map_err(|error| (format!("head s3://{}/{}", target.bucket, target.key), error));
    fetch_found(context, source, member_account_id, target, found).await
}

async fn fetch_found(
    context: FetchContext<'_>,
    source: Arc<dyn TrailSource>,
    member_account_id: &str,
    target: &SourceRef,
    found: Result<Option<ListedObject>, (String, SeamError)>,
) -> Fetched {
    let FetchContext {
        archive,
        store,
        settings,
        now,
        cancel,
    } = context;
    let mut fetched = Fetched::default();
    let failed = |operation: &str, error: &dyn std::fmt::Display| OperationError {
        account_id: member_account_id.to_string(),
        operation: operation.to_string(),
        message: error.to_string(),
    };
    let listed = match found {
        Ok(listed) => listed,
        Err((operation, error)) => {
            fetched.errors.push(failed(&operation, &error));
            return fetched;
        }
    };
    let Some(listed) = listed else {
        fetched.absent = true;
        return fetched;
    };
    let previous = match store.object(target) {
        Ok(previous) => previous,
        Err(error) => {
            fetched.errors.push(failed("read_store", &error));
            return fetched;
        }
    };
    if let Some(previous) = previous
        .as_ref()
        .filter(|record| record.etag == listed.etag)
    {
        fetched.record = Some(previous.clone());
        return fetched;
    }
    // Durable before the PUT, as in a run; an earlier run's marker stays.
    let recovering = progress::collect::in_flight(store);
    if let Err(error) = progress::collect::mark_in_flight(store, now).and_then(|()| store.flush()) {
        fetched.errors.push(failed(
            "record the run in the progress store",
            &format!("{error}; nothing was copied"),
        ));
        return fetched;
    }
    let counters = Counters::default();
    let run = Run {
        archive,
        store,
        settings,
        now,
        counters: &counters,
        cancel,
        window: Window::Incremental,
        recovering,
        jobs_failed: AtomicU64::new(0),
        refused: Mutex::default(),
        outcome: Mutex::default(),
        findings: Mutex::default(),
        draw: std::collections::hash_map::RandomState::new(),
        bucket_owners: [(target.bucket.clone(), target.account_id.clone())]
            .into_iter()
            .collect(),
        // One copy: on this task.
        shared: None,
    };
    let job = CopyJob {
        partition: None,
        scope: SourceScope {
            reader_account_id: target.account_id.clone(),
            member_account_id: member_account_id.to_string(),
            source,
            root: String::new(),
            regions: Vec::new(),
            foreign_accounts: false,
        },
        region: "-".to_string(),
        source: target.clone(),
        previous,
        listed,
        // A HEAD: a fetch that died between its PUT and its record left a
        // copy to adopt, whatever the marker says.
        adopt_first: true,
    };
    let recorded = if progress::oversize::judged(store, target, &job.listed.etag) {
        true
    } else if job.listed.size > settings.max_object_bytes {
        judge_oversize(
            &run,
            member_account_id,
            target,
            &job.listed.etag,
            job.listed.size,
            job.previous.as_ref(),
        );
        true
    } else {
        copy_one(&run, &job).await
    };
    if recorded && !recovering {
        if let Err(error) = progress::collect::clear_in_flight(store) {
            run.error(member_account_id, "record the end of the run", &error);
        }
    }
    if let Err(error) = store.flush() {
        run.error(member_account_id, "flush_store", &error);
    }
    fetched.findings = std::mem::take(&mut *run.findings()).into_vec();
    fetched.errors = std::mem::take(&mut run.outcome().errors);
    if recorded && fetched.errors.is_empty() {
        fetched.record = store
            .object(target)
            .ok()
            .flatten()
            .filter(|record| record.etag == job.listed.etag);
    }
    fetched
}
