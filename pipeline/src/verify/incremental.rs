//! An incremental run over one source, whose cost follows what is new, not
//! the size of the archive (`design.md` beside this file, "Where an
//! incremental run starts").
//!
//! The store marks the folder of every record it writes fresh
//! ([`ProgressStore::fresh_folders`]). A run reads the records of the fresh
//! folders only, one folder at a time, to learn which chains received
//! digests and which areas received log files; it validates those chains
//! (each loaded from its own digest prefix, one chain at a time per
//! concurrent task) plus the chains whose saved state says some archived
//! digest is still unvalidated; chain heads and sibling checks come from the
//! saved chain states; log files are judged by name from the day folders
//! between where the area was judged up to and the horizon, plus the fresh
//! folders' files named earlier. A folder is settled once everything it
//! touched was written back, so a run that fails anywhere leaves it fresh
//! for the next one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use tracing::{info_span, warn, Instrument};

use crate::cloudtrail::keys::{
    account_root, log_name_start, parse_trail_key, DIGEST_FOLDER, LOG_FOLDER,
};
use crate::model::object::ArchivedSource;
use crate::progress::validation::{chain_states_under, fresh_index_name, ChainState};
use crate::seams::{key_folder, FreshFolder};

use super::inventory::{
    chain_of_state_name, log_entry, parse_digest_key, AreaId, ChainId, DigestEntry, Inventory,
    LogEntry,
};
use super::logs::{self, AreaPlan};
use super::{chain, heads, Ctx, OpError, Scope};

/// Above this many day folders between where an area was judged up to and
/// its horizon, the area's log folder is scanned once instead of day by day.
const MAX_DAY_SCANS: i64 = 3_700;

/// One validated chain: its result, newest archived digest, and whether its
/// state was written back.
type Validated = (chain::ChainResult, Option<DigestEntry>, bool);

/// One fresh folder and what its records touch.
struct FolderUse {
    fresh: FreshFolder,
    chains: BTreeSet<ChainId>,
    areas: BTreeSet<AreaId>,
    /// Its records could not be read: it stays fresh.
    failed: bool,
}

/// Validates one source incrementally; returns the number of chains in
/// scope. The first run over a source inventories every record of it
/// instead ([`super::verify_source_whole`]), and marks the source as indexed
/// once that run went through without an error.
pub(crate) async fn verify_source(
    ctx: &Ctx<'_>,
    source: &ArchivedSource,
    scope: &Scope<'_>,
) -> usize {
    let reader = source.reader_account_id.as_str();
    let bucket = source.bucket.as_str();
    let fresh = match ctx.store.fresh_folders(reader, bucket) {
        Ok(fresh) => fresh,
        Err(error) => {
            ctx.error(&OpError::new(
                reader,
                "read fresh folders".to_string(),
                error,
            ));
            return 0;
        }
    };
    let index_name = fresh_index_name(reader, bucket);
    match ctx.store.get_state(&index_name) {
        Ok(Some(_)) => {}
        Ok(None) => return whole_then_index(ctx, source, scope, &fresh).await,
        Err(error) => {
            ctx.error(&OpError::new(
                reader,
                format!("read state {index_name}"),
                error,
            ));
            return 0;
        }
    }

    // 1. What the fresh folders touch (their records are not kept).
    let uses: Vec<FolderUse> = fresh
        .into_iter()
        .map(|fresh| read_folder(ctx, source, fresh))
        .collect();

    // 2. Every saved chain state of the source (one entry per chain).
    let raw_states = match chain_states_under(ctx.store, reader, bucket, "") {
        Ok(states) => states,
        Err(error) => {
            ctx.error(&OpError::new(reader, "read_state".to_string(), error));
            return 0;
        }
    };
    let mut touched: BTreeSet<ChainId> = uses
        .iter()
        .flat_map(|folder| folder.chains.iter().cloned())
        .collect();
    let mut states: HashMap<ChainId, ChainState> = HashMap::new();
    for (name, bytes) in raw_states {
        let Some(chain_id) = chain_of_state_name(reader, bucket, &name) else {
            continue;
        };
        match ChainState::decode(&bytes) {
            Some(state) => {
                // A chain with archived digests not validated yet is
                // validated again whether or not anything new arrived.
                if state.lag.is_some_and(|lag| lag.unvalidated_since.is_some()) {
                    touched.insert(chain_id.clone());
                }
                states.insert(chain_id, state);
            }
            None => {
                warn!(chain = %name, "unreadable chain state; validating the chain again");
                touched.insert(chain_id);
            }
        }
    }
    let chains_in_scope = states
        .keys()
        .chain(touched.iter())
        .filter(|chain_id| scope.covers_chain(chain_id))
        .collect::<BTreeSet<_>>()
        .len();

    // 3. Validate the touched chains, several at a time, each loaded from
    // its own digest prefix; each chain's progress is saved when it is done.
    let in_scope: Vec<ChainId> = touched
        .iter()
        .filter(|chain_id| scope.covers_chain(chain_id))
        .cloned()
        .collect();
    let states_ref = &states;
    let results: Vec<(ChainId, Option<Validated>)> = futures::stream::iter(in_scope)
        .map(|chain_id| {
            let previous = states_ref.get(&chain_id).cloned();
            let span =
                info_span!("chain", account_id = %chain_id.account, region = %chain_id.region);
            async move {
                let mut entries = match load_chain(ctx, &chain_id) {
                    Ok(entries) => entries,
                    Err(error) => {
                        ctx.error(&error);
                        return (chain_id, None);
                    }
                };
                super::set_aside_future(ctx, &chain_id, &mut entries, scope);
                let mut result =
                    chain::validate_chain(ctx, &chain_id, &entries, previous, None).await;
                heads::check_lag(ctx, &chain_id, &entries, &mut result);
                let saved = super::save_chain(ctx, &chain_id, &result);
                let head = entries.pop();
                (chain_id, Some((result, head, saved)))
            }
            .instrument(span)
        })
        .buffer_unordered(ctx.settings.concurrency.max(1))
        .collect()
        .await;

    // 4. What the other checks need of this run's validation.
    let mut lowered: BTreeMap<AreaId, DateTime<Utc>> = BTreeMap::new();
    let mut saved_chains: BTreeSet<ChainId> = BTreeSet::new();
    let mut loaded_heads: BTreeMap<ChainId, Option<DigestEntry>> = BTreeMap::new();
    for (chain_id, outcome) in results {
        let Some((result, head, saved)) = outcome else {
            continue;
        };
        if let Some(earliest) = result.earliest_window_start {
            if !chain_id.backfill {
                let entry = lowered.entry(chain_id.area()).or_insert(earliest);
                *entry = (*entry).min(earliest);
            }
        }
        if saved {
            saved_chains.insert(chain_id.clone());
        }
        loaded_heads.insert(chain_id.clone(), head);
        states.insert(chain_id, result.state);
    }

    // 5. Chain heads, from the loaded chains and the saved states of the others.
    let mut heads_only = Inventory::default();
    for (chain_id, state) in &states {
        let head = match loaded_heads.get(chain_id) {
            Some(head) => head.clone(),
            None => state.lag.map(|lag| DigestEntry {
                key: chain_id.digest_key(lag.newest_archived),
                end: lag.newest_archived,
                version_id: None,
                raw_sha256: None,
            }),
        };
        if let Some(head) = head {
            heads_only.chains.insert(chain_id.clone(), vec![head]);
        }
    }
    heads::check_heads(ctx, &heads_only, &states, scope);
    drop(heads_only);

    // 6. Archived log files that no digest lists.
    let failed_areas = check_unreferenced(ctx, source, &uses, &states, &lowered, scope);

    let flushed = match ctx.flush_and_forget_caches() {
        Ok(()) => true,
        Err(error) => {
            ctx.error(&OpError::new(
                reader,
                "write log references".to_string(),
                error,
            ));
            false
        }
    };

    // 7. Settle the folders whose every chain and area was written back.
    if flushed {
        for folder in &uses {
            let done = !folder.failed
                && folder
                    .chains
                    .iter()
                    .all(|chain_id| saved_chains.contains(chain_id))
                && folder.areas.iter().all(|area| {
                    scope.covers(&area.reader, &area.account, Some(&area.region))
                        && !failed_areas.contains(area)
                });
            if done {
                settle(ctx, source, &folder.fresh);
            }
        }
    }
    chains_in_scope
}

/// A run over every record of the source (a full run, or the first
/// incremental one); when it covered everything without an error, the
/// folders fresh before it are settled and the source is marked indexed, so
/// the next incremental run starts from the fresh folders.
pub(crate) async fn whole_then_index(
    ctx: &Ctx<'_>,
    source: &ArchivedSource,
    scope: &Scope<'_>,
    fresh: &[FreshFolder],
) -> usize {
    let reader = source.reader_account_id.as_str();
    let errors = ctx.error_count();
    let chains = super::verify_source_whole(ctx, source, scope).await;
    if ctx.error_count() == errors && scope.is_everything() {
        for folder in fresh {
            settle(ctx, source, folder);
        }
        let index_name = fresh_index_name(reader, &source.bucket);
        if let Err(error) = ctx.store.put_state(&index_name, b"1") {
            ctx.error(&OpError::new(
                reader,
                format!("write state {index_name}"),
                error,
            ));
        }
    }
    chains
}

/// The fresh folders of `source`; `None` (reported) when they cannot be read.
pub(crate) fn fresh_folders(ctx: &Ctx<'_>, source: &ArchivedSource) -> Option<Vec<FreshFolder>> {
    match ctx
        .store
        .fresh_folders(&source.reader_account_id, &source.bucket)
    {
        Ok(fresh) => Some(fresh),
        Err(error) => {
            ctx.error(&OpError::new(
                &source.reader_account_id,
                "read fresh folders".to_string(),
                error,
            ));
            None
        }
    }
}

fn settle(ctx: &Ctx<'_>, source: &ArchivedSource, folder: &FreshFolder) {
    if let Err(error) = ctx
        .store
        .settle_folder(&source.reader_account_id, &source.bucket, folder)
    {
        ctx.error(&OpError::new(
            &source.reader_account_id,
            format!("settle fresh folder {}", folder.folder),
            error,
        ));
    }
}

/// Whether `folder` is a day folder (`…/YYYY/MM/DD/`), the only place
/// CloudTrail files live; the records of any other folder are not read.
fn is_day_folder(folder: &str) -> bool {
    let mut parts = folder.rsplit('/');
    let shapes = [0, 2, 2, 4];
    shapes.iter().all(|len| {
        parts
            .next()
            .is_some_and(|part| part.len() == *len && part.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Reads the records of one fresh folder (its own files, not deeper
/// folders) for the chains and areas they touch.
fn read_folder(ctx: &Ctx<'_>, source: &ArchivedSource, fresh: FreshFolder) -> FolderUse {
    let reader = source.reader_account_id.as_str();
    let mut folder = FolderUse {
        fresh,
        chains: BTreeSet::new(),
        areas: BTreeSet::new(),
        failed: false,
    };
    if !is_day_folder(&folder.fresh.folder) {
        return folder;
    }
    let name = folder.fresh.folder.clone();
    let (chains, areas) = (&mut folder.chains, &mut folder.areas);
    let scanned =
        ctx.store
            .for_each_object_under(reader, &source.bucket, &name, &mut |key, record| {
                if key_folder(key) != name {
                    return true;
                }
                let Ok(trail_key) = parse_trail_key(key) else {
                    return true;
                };
                if let Some(chain_id) = ChainId::of(reader, &source.bucket, &trail_key) {
                    chains.insert(chain_id);
                } else if let Some(log) =
                    log_entry(reader, &source.bucket, key, &trail_key, record.copied_at)
                {
                    if !areas.contains(&log.area) {
                        areas.insert(log.area);
                    }
                }
                true
            });
    if let Err(error) = scanned {
        ctx.error(&OpError::new(reader, format!("read store {name}"), error));
        folder.failed = true;
    }
    folder
}

/// Every archived digest of one chain, oldest first, from the chain's own
/// digest prefix (`<root>CloudTrail-Digest/<region>/`).
fn load_chain(ctx: &Ctx<'_>, chain_id: &ChainId) -> Result<Vec<DigestEntry>, OpError> {
    let root = account_root(
        &chain_id.prefix,
        chain_id.org_id.as_deref(),
        &chain_id.account,
    );
    let prefix = format!("{root}{DIGEST_FOLDER}/{}/", chain_id.region);
    let mut entries = Vec::new();
    ctx.store
        .for_each_object_under(
            &chain_id.reader,
            &chain_id.bucket,
            &prefix,
            &mut |key, record| {
                if let Some((of, end)) = parse_digest_key(&chain_id.reader, &chain_id.bucket, key) {
                    if of == *chain_id {
                        entries.push(DigestEntry {
                            key: key.to_string(),
                            end,
                            version_id: record.archive_version_id,
                            raw_sha256: Some(record.raw_sha256),
                        });
                    }
                }
                true
            },
        )
        .map_err(|error| OpError::new(&chain_id.account, format!("read store {prefix}"), error))?;
    entries.sort_by(|a, b| a.end.cmp(&b.end).then_with(|| a.key.cmp(&b.key)));
    entries.dedup_by(|a, b| a.key == b.key);
    Ok(entries)
}

/// `log_file_unreferenced`, incrementally: per area with validated windows,
/// the files named from where it was judged up to its horizon (day folder by
/// day folder), plus the fresh folders' files named before that. Returns the
/// areas whose judging did not complete.
fn check_unreferenced(
    ctx: &Ctx<'_>,
    source: &ArchivedSource,
    uses: &[FolderUse],
    states: &HashMap<ChainId, ChainState>,
    lowered: &BTreeMap<AreaId, DateTime<Utc>>,
    scope: &Scope<'_>,
) -> BTreeSet<AreaId> {
    let coverage = logs::coverage(states);
    let mut failed: BTreeSet<AreaId> = BTreeSet::new();
    let mut plans: BTreeMap<&AreaId, AreaPlan<'_>> = BTreeMap::new();
    for (area, spans) in &coverage {
        if spans.is_empty() || !scope.covers(&area.reader, &area.account, Some(&area.region)) {
            continue;
        }
        match logs::plan_area(ctx, area, spans, lowered, false) {
            Some(plan) => {
                plans.insert(area, plan);
            }
            None => {
                failed.insert(area.clone());
            }
        }
    }

    for (area, plan) in &plans {
        if let Err(error) = judge_by_name(ctx, area, plan) {
            ctx.error(&error);
            failed.insert((*area).clone());
        }
    }

    let reader = source.reader_account_id.as_str();
    for folder in uses {
        let earlier = folder.areas.iter().any(|area| {
            plans
                .get(area)
                .is_some_and(|plan| plan.judged_from.is_some())
        });
        if folder.failed || !earlier {
            continue;
        }
        let mut outcome: Result<(), (AreaId, OpError)> = Ok(());
        let name = folder.fresh.folder.as_str();
        let scanned =
            ctx.store
                .for_each_object_under(reader, &source.bucket, name, &mut |key, record| {
                    if key_folder(key) != name {
                        return true;
                    }
                    let Some(log) = parsed_log(reader, &source.bucket, key, record.copied_at)
                    else {
                        return true;
                    };
                    let Some(plan) = plans.get(&log.area) else {
                        return true;
                    };
                    if plan.judged_from.is_none_or(|from| log.delivered_at >= from) {
                        return true; // judged by name above
                    }
                    match logs::judge_log(ctx, &log.area, plan, &log, true) {
                        Ok(()) => true,
                        Err(error) => {
                            outcome = Err((log.area, error));
                            false
                        }
                    }
                });
        if let Err((area, error)) = outcome {
            ctx.error(&error);
            failed.insert(area);
        }
        if let Err(error) = scanned {
            ctx.error(&OpError::new(reader, format!("read store {name}"), error));
            failed.extend(folder.areas.iter().cloned());
        }
    }

    for (area, plan) in &plans {
        if !failed.contains(*area) && !logs::finish_area(ctx, area, plan) {
            failed.insert((*area).clone());
        }
    }
    failed
}

fn parsed_log(reader: &str, bucket: &str, key: &str, copied_at: i64) -> Option<LogEntry> {
    let trail_key = parse_trail_key(key).ok()?;
    log_entry(reader, bucket, key, &trail_key, copied_at)
}

/// Judges the files of `area` named from `plan.judged_from` (the area's
/// whole history when `None`) up to its horizon, one day folder at a time.
/// Every file of the area is named `<account>_CloudTrail_<region>_<time>_…`
/// (anything else in its folders is not its log file), so the names sort by
/// delivery time: each folder is read from the first name at or after
/// `judged_from` and up to the first at or after the horizon, not whole.
/// Files named earlier but copied since are judged from the fresh folders.
fn judge_by_name(ctx: &Ctx<'_>, area: &AreaId, plan: &AreaPlan<'_>) -> Result<(), OpError> {
    let root = account_root(&area.prefix, area.org_id.as_deref(), &area.account);
    let base = format!("{root}{LOG_FOLDER}/{}/", area.region);
    let last_day = (plan.horizon - Duration::seconds(1)).date_naive();
    // Day folders, each read from a first name up to a name past the horizon
    // (all of `base`, from its start, when there are too many).
    let folders: Vec<(String, String, Option<String>)> = match plan.judged_from {
        Some(from) if from >= plan.horizon => return Ok(()),
        Some(from) if (last_day - from.date_naive()).num_days() <= MAX_DAY_SCANS => from
            .date_naive()
            .iter_days()
            .take_while(|day| *day <= last_day)
            .map(|day| {
                let folder = format!("{base}{}/", day.format("%Y/%m/%d"));
                // Names are up to the minute: from's minute may hold files
                // judged already (`judge_log` skips them), and the minute
                // after the horizon holds none to judge.
                let name_at = |at: DateTime<Utc>| {
                    let start =
                        log_name_start(&area.account, LOG_FOLDER, &area.region, at.naive_utc());
                    format!("{folder}{start}")
                };
                let (start, stop) = (name_at(from), name_at(plan.horizon + Duration::minutes(1)));
                (folder, start, Some(stop))
            })
            .collect(),
        _ => vec![(base, String::new(), None)],
    };
    for (prefix, start, stop) in folders {
        let mut outcome = Ok(());
        ctx.store
            .for_each_object_from(
                &area.reader,
                &area.bucket,
                &prefix,
                &start,
                &mut |key, record| {
                    if stop.as_deref().is_some_and(|stop| key >= stop) {
                        return false;
                    }
                    let Some(log) = parsed_log(&area.reader, &area.bucket, key, record.copied_at)
                    else {
                        return true;
                    };
                    if log.area != *area {
                        return true;
                    }
                    outcome = logs::judge_log(ctx, area, plan, &log, false);
                    outcome.is_ok()
                },
            )
            .map_err(|error| OpError::new(&area.account, format!("read store {prefix}"), error))?;
        outcome?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_day_folder;

    #[test]
    fn only_day_folders_are_read() {
        assert!(is_day_folder(
            "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/03/01/"
        ));
        assert!(!is_day_folder("AWSLogs/111122223333/CloudTrail/eu-west-1/"));
        assert!(!is_day_folder(""));
        assert!(!is_day_folder("a/2026/3/01/"));
        assert!(!is_day_folder(
            "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/03/01"
        ));
    }
}
