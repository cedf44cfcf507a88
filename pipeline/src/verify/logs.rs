//! Log files (docs/cloudtrail-format.md §9.2 step 5): every file a valid digest lists must be
//! archived with the listed content hash (recorded at copy time: no second
//! download); every archived `CloudTrail/` file must be listed by some digest
//! once its grace period has passed.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};

use crate::cloudtrail::digest::Digest;
use crate::cloudtrail::keys::parse_trail_key;
use crate::model::findings::{Finding, FindingKind};
use crate::model::object::{ObjectRecord, SourceRef};
use crate::model::time::utc_text;
use crate::progress::pending::{self, PendingRecord};

use super::audit::Audited;
use super::inventory::{AreaId, ChainId, Inventory, LogEntry};
use super::{lock, Ctx, OpError, Scope};
use crate::progress::validation::{
    log_ref_id, read_area_state, write_area_state, AreaState, ChainState, Span, STATE_VERSION,
};

/// Files copied this long before the previous check are judged again whatever
/// their name: covers a collection that recorded them while that check ran.
const COPIED_SLACK_MINUTES: i64 = 60;

/// A log file is judged only when the archived digests cover at least this
/// long after its name's minute: the name is the delivery minute, while
/// digest windows end at any second, and a file named just before a window
/// ends may be listed by the next digest.
const COVERAGE_MARGIN_MINUTES: i64 = 10;

/// What the archive holds for a listed log file.
struct Content {
    content_sha256: Option<[u8; 32]>,
    content_error: Option<String>,
}

impl From<ObjectRecord> for Content {
    fn from(record: ObjectRecord) -> Content {
        Content {
            content_sha256: record.content_sha256,
            content_error: record.content_error,
        }
    }
}

/// Where a listed log file stands.
enum Lookup {
    /// Archived (or fetched from its source just now): its content.
    Found(Content),
    /// Neither archived nor at its source.
    Absent,
    /// Not archived, and its source refused to hand it over (AccessDenied,
    /// or any failure but "not found"): since when, and why.
    Unreadable(PendingRecord),
    /// Unreadable at its source within the grace period: the operational
    /// error is reported, the check waits for the next run.
    Pending,
}

/// The content the store recorded for `source` at copy time.
fn recorded_content(
    ctx: &Ctx<'_>,
    chain: &ChainId,
    source: &SourceRef,
) -> Result<Option<Content>, OpError> {
    Ok(ctx
        .store
        .object(source)
        .map_err(|error| {
            OpError::new(
                &chain.account,
                format!("read store s3://{}/{}", source.bucket, source.key),
                error,
            )
        })?
        .map(Content::from))
}

async fn content_of(
    ctx: &Ctx<'_>,
    chain: &ChainId,
    source: &SourceRef,
    audited: Option<&Audited>,
) -> Result<Lookup, OpError> {
    let archived = match audited.filter(|audited| audited.bucket == source.bucket) {
        Some(audited) => {
            if audited.unreadable.contains(&source.key) {
                return Err(OpError::new(
                    &chain.account,
                    format!("audit s3://{}/{}", source.bucket, source.key),
                    crate::SeamError::Transient(
                        "the archived copy could not be read during the audit".to_string(),
                    ),
                ));
            }
            if audited.missing.contains(&source.key) {
                None
            } else if let Some(object) = audited.objects.get(&source.key) {
                Some(Content {
                    content_sha256: object.content_sha256,
                    content_error: object.content_error.clone(),
                })
            } else {
                // The audit found the archive's bytes as recorded (or did
                // not cover the key): the store's record stands.
                recorded_content(ctx, chain, source)?
            }
        }
        None => recorded_content(ctx, chain, source)?,
    };
    if let Some(archived) = archived {
        return Ok(Lookup::Found(archived));
    }
    // Named by a digest but never listed by collection: fetch it directly.
    let fetched = ctx.lookup.fetch_missing(source).await;
    let remember = |error| {
        OpError::new(
            &chain.account,
            format!(
                "remember the state of s3://{}/{}",
                source.bucket, source.key
            ),
            error,
        )
    };
    match fetched {
        Ok(found) => {
            for finding in found.findings {
                ctx.recorded_elsewhere(finding);
            }
            pending::log_resolved(ctx.store, source).map_err(remember)?;
            Ok(found
                .record
                .map_or(Lookup::Absent, |record| Lookup::Found(record.into())))
        }
        Err(error) => {
            let record = pending::log_unreadable(ctx.store, source, ctx.now, &error.to_string())
                .map_err(remember)?;
            if ctx.now - record.first_failed_at >= ctx.settings.unreadable_grace {
                return Ok(Lookup::Unreadable(record));
            }
            // Within the grace period: an operational error, tried again
            // next run; the rest of the chain goes on meanwhile.
            ctx.error(&OpError::new(
                &chain.account,
                format!("fetch s3://{}/{}", source.bucket, source.key),
                error,
            ));
            Ok(Lookup::Pending)
        }
    }
}

/// What checking a digest's log files gave.
pub(crate) struct LogsChecked<'d> {
    /// Listed log files whose archived copy has the listed hash.
    pub matched: Vec<Matched<'d>>,
    /// Some listed log file could not be judged yet (unreadable at its
    /// source, within the grace period): the digest is judged again next run.
    pub deferred: bool,
}

/// A listed log file whose archived copy has the hash the digest lists.
pub(crate) struct Matched<'d> {
    pub bucket: &'d str,
    pub key: &'d str,
    pub sha256: [u8; 32],
}

/// Checks every log file a valid digest lists.
pub(crate) async fn check_logs<'d>(
    ctx: &Ctx<'_>,
    chain: &ChainId,
    digest_key: &str,
    digest: &'d Digest,
    audited: Option<&Audited>,
) -> Result<LogsChecked<'d>, OpError> {
    let mut checked = LogsChecked {
        matched: Vec::new(),
        deferred: false,
    };
    for log in &digest.log_files {
        let source = SourceRef {
            account_id: chain.reader.clone(),
            bucket: log.s3_bucket.clone(),
            key: log.s3_object.clone(),
        };
        let lookup = content_of(ctx, chain, &source, audited).await?;
        let expected = hex::encode(log.hash_value);
        let problem = match &lookup {
            Lookup::Pending => {
                checked.deferred = true;
                continue;
            }
            Lookup::Absent => Some((
                FindingKind::LogFileMissing,
                format!(
                    "digest {digest_key} lists this log file (SHA-256 {expected}), but it is neither archived nor at the source"
                ),
            )),
            Lookup::Unreadable(record) => Some((
                FindingKind::LogFileMissing,
                format!(
                    "digest {digest_key} lists this log file (SHA-256 {expected}), but it is not archived and its source has refused to hand it over since {} (last error: {}), longer than the grace period of {} hours",
                    utc_text(record.first_failed_at),
                    record.last_error,
                    ctx.settings.unreadable_grace.num_hours()
                ),
            )),
            Lookup::Found(content) => match (&content.content_error, content.content_sha256) {
                (Some(error), _) if error == "trailing_data" => Some((
                    FindingKind::LogFileTrailingData,
                    format!(
                        "bytes follow the first gzip member; digest {digest_key} vouches only for content hashing to {expected}, and readers that inflate every member see more"
                    ),
                )),
                (Some(error), _) => Some((
                    FindingKind::LogFileHashMismatch,
                    format!(
                        "the archived copy cannot be inflated as one gzip member ({error}), so it cannot have the content digest {digest_key} lists (SHA-256 {expected})"
                    ),
                )),
                (None, None) => Some((
                    FindingKind::LogFileHashMismatch,
                    format!(
                        "no content hash was recorded for the archived copy; digest {digest_key} lists SHA-256 {expected}"
                    ),
                )),
                (None, Some(found)) if found != log.hash_value => Some((
                    FindingKind::LogFileHashMismatch,
                    format!(
                        "inflated content hashes to SHA-256 {}, but digest {digest_key} lists {expected}: the file was altered before it was collected",
                        hex::encode(found)
                    ),
                )),
                (None, Some(_)) => None,
            },
        };
        ctx.count_log_files(1);
        if problem.is_none() {
            checked.matched.push(Matched {
                bucket: &log.s3_bucket,
                key: &log.s3_object,
                sha256: log.hash_value,
            });
        }
        if let Some((kind, detail)) = problem {
            let named = parse_trail_key(&log.s3_object).ok();
            let account = named
                .as_ref()
                .map_or(chain.account.as_str(), |key| key.account_id.as_str());
            let region = named
                .as_ref()
                .map_or(chain.region.as_str(), |key| key.region.as_str());
            let archive_key = matches!(lookup, Lookup::Found(_))
                .then(|| source.archive_key(&ctx.settings.archive_prefix));
            ctx.finding(
                Finding::new(kind, account, &log.s3_bucket, &log.s3_object, detail)
                    .with_region(Some(region))
                    .with_trail(Some(&chain.trail))
                    .with_archive_key(archive_key.as_deref()),
            );
        }
    }
    Ok(checked)
}

/// Remembers the log files a valid digest lists (see `state::LogRefCache`);
/// the caller passes only digests whose signature verified where CloudTrail
/// delivered them.
pub(crate) fn register_references(
    ctx: &Ctx<'_>,
    chain: &ChainId,
    digest: &Digest,
) -> Result<(), OpError> {
    let mut cache = lock(&ctx.log_refs);
    for log in &digest.log_files {
        let Ok(trail_key) = parse_trail_key(&log.s3_object) else {
            continue;
        };
        let Some((name, file_id)) = log_ref_id(&chain.reader, &log.s3_bucket, &trail_key) else {
            continue;
        };
        cache
            .add(ctx.store, &name, file_id)
            .map_err(|error| OpError::new(&chain.account, format!("read state {name}"), error))?;
    }
    Ok(())
}

/// The validated standard windows of each area, with the trail of each.
pub(crate) fn coverage(
    states: &HashMap<ChainId, ChainState>,
) -> BTreeMap<AreaId, Vec<(Span, &str)>> {
    let mut coverage: BTreeMap<AreaId, Vec<(Span, &str)>> = BTreeMap::new();
    for (chain, state) in states {
        if chain.backfill {
            continue;
        }
        coverage.entry(chain.area()).or_default().extend(
            state
                .listed
                .spans()
                .iter()
                .map(|span| (*span, chain.trail.as_str())),
        );
    }
    coverage
}

/// What judging the log files of one area in this run covers.
pub(crate) struct AreaPlan<'s> {
    name: String,
    saved: AreaState,
    spans: &'s [(Span, &'s str)],
    /// Files named at or after this are not judged yet.
    pub horizon: DateTime<Utc>,
    /// Files named from here to the horizon are judged (all when `None`).
    pub judged_from: Option<DateTime<Utc>>,
    /// Files copied since are judged whatever their name.
    recent_since: Option<i64>,
}

/// Reads what earlier runs judged in `area` and plans this run's judging;
/// `None` (reported) when the area's state cannot be read.
pub(crate) fn plan_area<'s>(
    ctx: &Ctx<'_>,
    area: &AreaId,
    spans: &'s [(Span, &'s str)],
    lowered: &BTreeMap<AreaId, DateTime<Utc>>,
    full: bool,
) -> Option<AreaPlan<'s>> {
    let grace_limit = ctx.now - ctx.settings.unreferenced_grace;
    let name = area.state_name();
    let saved = if full {
        AreaState::default()
    } else {
        match read_area_state(ctx.store, &name) {
            Ok(saved) => saved.unwrap_or_default(),
            Err(error) => {
                ctx.error(&OpError::new(
                    &area.account,
                    format!("read state {name}"),
                    error,
                ));
                return None;
            }
        }
    };
    let covered_until = spans
        .iter()
        .filter_map(|(span, _)| DateTime::from_timestamp(span.last_end, 0))
        .max()
        .unwrap_or(grace_limit);
    let margin = Duration::minutes(COVERAGE_MARGIN_MINUTES);
    let horizon = grace_limit.min(covered_until - margin);
    let judged_from = match (saved.checked_until, lowered.get(area)) {
        (Some(until), Some(lowered)) => Some(until.min(*lowered)),
        (until, _) => until,
    };
    let recent_since = saved
        .last_run_at
        .map(|at| (at - Duration::minutes(COPIED_SLACK_MINUTES)).timestamp());
    Some(AreaPlan {
        name,
        saved,
        spans,
        horizon,
        judged_from,
        recent_since,
    })
}

/// Judges one archived log file of `area` under `plan`: `log_file_unreferenced`
/// when it is due, inside a validated window and listed by no valid digest.
/// `any_name` judges it whatever its name's time (a file copied since the
/// last run); otherwise only a candidate by name or copy time is.
pub(crate) fn judge_log(
    ctx: &Ctx<'_>,
    area: &AreaId,
    plan: &AreaPlan<'_>,
    log: &LogEntry,
    any_name: bool,
) -> Result<(), OpError> {
    let delivered = log.delivered_at;
    if delivered >= plan.horizon {
        return Ok(());
    }
    let candidate = any_name
        || plan.judged_from.is_none_or(|from| delivered >= from)
        || plan
            .recent_since
            .is_some_and(|since| log.copied_at >= since);
    if !candidate {
        return Ok(());
    }
    let margin = Duration::minutes(COVERAGE_MARGIN_MINUTES);
    let at = delivered.timestamp();
    let covering = plan.spans.iter().find(|(span, _)| {
        span.window_start <= at && at.saturating_add(margin.num_seconds()) <= span.last_end
    });
    let Some((span, trail)) = covering else {
        return Ok(());
    };
    if is_referenced(ctx, log)? {
        return Ok(());
    }
    let window_start =
        DateTime::from_timestamp(span.window_start, 0).map_or_else(String::new, utc_text);
    let window_end = DateTime::from_timestamp(span.last_end, 0).map_or_else(String::new, utc_text);
    let archive_key = SourceRef {
        account_id: area.reader.clone(),
        bucket: area.bucket.clone(),
        key: log.key.clone(),
    }
    .archive_key(&ctx.settings.archive_prefix);
    ctx.finding(
        Finding::new(
            FindingKind::LogFileUnreferenced,
            &area.account,
            &area.bucket,
            &log.key,
            format!(
                "archived log file delivered at {} (per its name) is listed by no digest, although validated digests of trail {trail} cover {window_start} to {window_end} for this account and region and the grace period of {} hours has passed; it may have been planted in the source bucket",
                utc_text(delivered),
                ctx.settings.unreferenced_grace.num_hours()
            ),
        )
        .with_region(Some(&area.region))
        .with_trail(Some(trail))
        .with_archive_key(Some(&archive_key)),
    );
    Ok(())
}

/// Saves how far `area` was judged; `false` (reported) when the write failed.
pub(crate) fn finish_area(ctx: &Ctx<'_>, area: &AreaId, plan: &AreaPlan<'_>) -> bool {
    let updated = AreaState {
        v: STATE_VERSION,
        checked_until: Some(
            plan.saved
                .checked_until
                .map_or(plan.horizon, |until| until.max(plan.horizon)),
        ),
        last_run_at: Some(ctx.now),
    };
    if let Err(error) = write_area_state(ctx.store, &plan.name, &updated) {
        ctx.error(&OpError::new(
            &area.account,
            format!("write state {}", plan.name),
            error,
        ));
        return false;
    }
    true
}

/// `log_file_unreferenced` for archived `CloudTrail/` files that no digest
/// lists, named before `now − grace` inside the delivery windows of the
/// area's validated standard digests whose log lists were read (a file in a
/// window whose digest is missing or unreadable, or outside any chain, is not
/// judged: that digest's absence or state is the finding). `lowered` holds, per area, the earliest window validated in
/// this run, which may reopen files judged before.
pub(crate) fn check_unreferenced(
    ctx: &Ctx<'_>,
    inventory: &Inventory,
    states: &HashMap<ChainId, ChainState>,
    lowered: &BTreeMap<AreaId, DateTime<Utc>>,
    scope: &Scope<'_>,
    full: bool,
) {
    let coverage = coverage(states);
    let mut by_area: BTreeMap<&AreaId, Vec<&LogEntry>> = BTreeMap::new();
    for log in &inventory.logs {
        by_area.entry(&log.area).or_default().push(log);
    }

    for (area, logs) in by_area {
        if !scope.covers(&area.reader, &area.account, Some(&area.region)) {
            continue;
        }
        let Some(spans) = coverage.get(area).filter(|spans| !spans.is_empty()) else {
            continue;
        };
        let Some(plan) = plan_area(ctx, area, spans, lowered, full) else {
            continue;
        };
        let judged = logs
            .into_iter()
            .try_for_each(|log| judge_log(ctx, area, &plan, log, false));
        match judged {
            Ok(()) => {
                finish_area(ctx, area, &plan);
            }
            Err(error) => ctx.error(&error),
        }
    }
}

fn is_referenced(ctx: &Ctx<'_>, log: &LogEntry) -> Result<bool, OpError> {
    let Ok(trail_key) = parse_trail_key(&log.key) else {
        return Ok(true);
    };
    let Some((name, file_id)) = log_ref_id(&log.area.reader, &log.area.bucket, &trail_key) else {
        return Ok(true);
    };
    lock(&ctx.log_refs)
        .contains(ctx.store, &name, &file_id)
        .map_err(|error| OpError::new(&log.area.account, format!("read state {name}"), error))
}
