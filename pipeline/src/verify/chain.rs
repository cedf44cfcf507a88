//! One digest chain, oldest first (docs/cloudtrail-format.md §9.2 steps 2–5): each digest not
//! validated before is examined, linked to the archived digest before it,
//! checked for missing hours, and its log files are checked.

use chrono::{DateTime, Duration, Utc};

use crate::cloudtrail::keys::parse_trail_key;
use crate::model::findings::{Finding, FindingKind};
use crate::model::object::SourceRef;
use crate::model::time::utc_text;

use super::audit::Audited;
use super::digest_check::{examine_digest, Examined, Problem};
use super::inventory::{hours_back, parse_digest_key, ChainId, DigestEntry};
use super::logs::{self, Matched};
use super::{lock, Ctx, OpError, MAX_MISSING_PER_GAP};
use crate::progress::validation::{ChainState, LinkInfo};

/// What validating one chain changed.
pub(crate) struct ChainResult {
    pub state: ChainState,
    /// Whether `state` must be written back.
    pub changed: bool,
    /// Earliest delivery window start of the digests validated in this run
    /// (log files in it must be checked for references again).
    pub earliest_window_start: Option<DateTime<Utc>>,
}

/// Validates the digests of `entries` (one chain, oldest first) that
/// `previous` does not record as validated, plus the archived successor of
/// each (its link to a newly archived digest was never checked). An
/// operational error stops the chain there: the rest waits for the next run.
pub(crate) async fn validate_chain(
    ctx: &Ctx<'_>,
    chain: &ChainId,
    entries: &[DigestEntry],
    previous: Option<ChainState>,
    audited: Option<&Audited>,
) -> ChainResult {
    let mut state = match previous {
        Some(state) if !ctx.settings.full => state,
        _ => ChainState::fresh(),
    };
    let fresh: Vec<bool> = entries
        .iter()
        .map(|entry| !state.validated.contains(entry.end))
        .collect();
    let todo: Vec<bool> = fresh
        .iter()
        .enumerate()
        .map(|(index, is_fresh)| {
            let after_fresh = index
                .checked_sub(1)
                .and_then(|older| fresh.get(older))
                .copied()
                .unwrap_or(false);
            *is_fresh || after_fresh
        })
        .collect();
    let mut result = ChainResult {
        state: ChainState::fresh(),
        changed: false,
        earliest_window_start: None,
    };
    if !todo.iter().any(|needed| *needed) {
        result.state = state;
        return result;
    }

    // Link data of the archived digest just before the current one.
    let mut before: Option<LinkInfo> = None;
    for (index, entry) in entries.iter().enumerate() {
        if !todo.get(index).copied().unwrap_or(false) {
            before = None;
            continue;
        }
        let older = index.checked_sub(1).and_then(|older| entries.get(older));
        if let (Some(older), None) = (older, &before) {
            before = match state.head.as_ref().filter(|head| head.key == older.key) {
                Some(head) => Some(head.clone()),
                // Validated in an earlier run but not the head: read it again
                // as context (its findings were recorded then).
                None => match examine_digest(ctx, chain, older).await {
                    Ok(examined) => Some(examined.link_info()),
                    Err(error) => {
                        ctx.error(&error);
                        break;
                    }
                },
            };
        }
        let examined = match examine_digest(ctx, chain, entry).await {
            Ok(examined) => examined,
            Err(error) => {
                ctx.error(&error);
                break;
            }
        };
        if let Some(problem) = &examined.problem {
            ctx.finding(digest_finding(ctx, chain, &entry.key, problem));
        }
        // A digest whose key could not be obtained yet: an operational error
        // of this run; it (and its successor's link to it) is judged again
        // next run, while the rest of the chain goes on.
        let mut deferred = false;
        if let Some(error) = &examined.pending {
            ctx.error(error);
            deferred = true;
        }
        let linked = check_links(
            ctx,
            chain,
            older,
            &examined,
            before.as_ref().filter(|_| older.is_some()),
        )
        .await;
        let links_clean = match linked {
            Ok(clean) => clean,
            Err(error) => {
                ctx.error(&error);
                break;
            }
        };
        // Only a digest whose signature verified, found where CloudTrail
        // delivered it, vouches for log files: an unsigned digest planted
        // ahead of forged logs must not make them referenced.
        if let Some(digest) = examined.valid_digest() {
            if let Err(error) = logs::register_references(ctx, chain, digest) {
                ctx.error(&error);
                break;
            }
        }
        let mut matched = Vec::new();
        if let Some(digest) = examined.valid_digest() {
            match logs::check_logs(ctx, chain, &entry.key, digest, audited).await {
                Ok(checked) => {
                    matched = checked.matched;
                    deferred |= checked.deferred;
                }
                Err(error) => {
                    ctx.error(&error);
                    break;
                }
            }
        }
        if examined.pending.is_none() {
            if let Err(error) = record_evidence(ctx, chain, &examined, links_clean, &matched) {
                ctx.error(&error);
                break;
            }
        }
        ctx.count_digest();
        let info = examined.link_info();
        before = Some(info.clone());
        if deferred {
            continue;
        }
        let window_start = examined.window_start();
        state.validated.insert(entry.end, window_start);
        if examined.valid() && examined.lists_own_window(chain) {
            state.listed.insert(entry.end, window_start);
        }
        result.earliest_window_start = Some(
            result
                .earliest_window_start
                .map_or(window_start, |earliest| earliest.min(window_start)),
        );
        if state.head.as_ref().is_none_or(|head| head.end <= info.end) {
            state.head = Some(info);
        }
        result.changed = true;
    }
    result.state = state;
    result
}

/// Remembers what a digest judged just now vouches for (see
/// `state::ValidatedCache`): a cleanly validated digest (valid on its own,
/// links without findings) vouches for itself and for the listed log files
/// whose archived copies matched. A digest found wanting (judged again after a
/// late predecessor arrived, say) withdraws that, and a validly signed one also
/// withdraws its log files; an invalid body's list is not trusted to withdraw
/// anything.
fn record_evidence(
    ctx: &Ctx<'_>,
    chain: &ChainId,
    examined: &Examined,
    links_clean: bool,
    matched: &[Matched<'_>],
) -> Result<(), OpError> {
    let Ok(digest_key) = parse_trail_key(&examined.key) else {
        return Ok(());
    };
    let failed = |error| {
        OpError::new(
            &chain.account,
            format!("record the validation of {}", examined.key),
            error,
        )
    };
    let mut cache = lock(&ctx.validated);
    match examined.content_sha256 {
        Some(sha256) if links_clean && examined.valid() => {
            cache
                .vouch(
                    ctx.store,
                    &chain.reader,
                    &chain.bucket,
                    &digest_key,
                    &sha256,
                )
                .map_err(failed)?;
            for log in matched {
                let Ok(log_key) = parse_trail_key(log.key) else {
                    continue;
                };
                cache
                    .vouch(ctx.store, &chain.reader, log.bucket, &log_key, &log.sha256)
                    .map_err(failed)?;
            }
        }
        _ => {
            cache
                .withdraw(ctx.store, &chain.reader, &chain.bucket, &digest_key)
                .map_err(failed)?;
            if let Some(digest) = examined.valid_digest() {
                for log in &digest.log_files {
                    let Ok(log_key) = parse_trail_key(&log.s3_object) else {
                        continue;
                    };
                    cache
                        .withdraw(ctx.store, &chain.reader, &log.s3_bucket, &log_key)
                        .map_err(failed)?;
                }
            }
        }
    }
    Ok(())
}

fn digest_finding(ctx: &Ctx<'_>, chain: &ChainId, key: &str, problem: &Problem) -> Finding {
    let archive_key = chain
        .source_ref(key)
        .archive_key(&ctx.settings.archive_prefix);
    Finding::new(
        problem.kind,
        &chain.account,
        &chain.bucket,
        key,
        problem.detail.clone(),
    )
    .with_region(Some(&chain.region))
    .with_trail(Some(&chain.trail))
    .with_archive_key(Some(&archive_key))
}

/// `digest_missing` for a digest key that is not archived.
pub(crate) fn missing_digest(chain: &ChainId, bucket: &str, key: &str, detail: String) -> Finding {
    let (account, region) = match parse_digest_key(&chain.reader, bucket, key) {
        Some((named, _)) => (named.account, named.region),
        None => (chain.account.clone(), chain.region.clone()),
    };
    Finding::new(FindingKind::DigestMissing, &account, bucket, key, detail)
        .with_region(Some(&region))
        .with_trail(Some(&chain.trail))
}

/// Reports the hours `hours` of `chain` as missing digests, with `why`;
/// returns whether there was any.
pub(crate) fn report_missing_hours(
    ctx: &Ctx<'_>,
    chain: &ChainId,
    hours: &[DateTime<Utc>],
    more: usize,
    why: &str,
) -> bool {
    for (index, hour) in hours.iter().enumerate() {
        let key = chain.digest_key(*hour);
        let mut detail = format!(
            "no digest for the hour ending {} is archived: {why}",
            utc_text(*hour)
        );
        if more > 0 && index + 1 == hours.len() {
            detail.push_str(&format!(
                " ({more} more missing hours of this gap are not listed)"
            ));
        }
        ctx.finding(missing_digest(chain, &chain.bucket, &key, detail));
    }
    !hours.is_empty()
}

/// The links of `current` to the digest before it (docs/cloudtrail-format.md §9.2 steps 3–4).
/// `older` is the archived digest before it in the chain, `before` its link
/// data. Only a valid digest's claims are judged; an invalid one already has
/// its finding, and its `previous*` fields may be forged. Returns whether the
/// links are clean: the digest is valid and no finding was raised here.
async fn check_links(
    ctx: &Ctx<'_>,
    chain: &ChainId,
    older: Option<&DigestEntry>,
    current: &Examined,
    before: Option<&LinkInfo>,
) -> Result<bool, OpError> {
    let standard = !chain.backfill;
    let Some(digest) = current.valid_digest() else {
        // Untrusted body: only the cadence of the archived keys themselves.
        if let (true, Some(older)) = (standard, older) {
            let (hours, more) = hours_back(
                current.end - Duration::hours(1),
                older.end,
                MAX_MISSING_PER_GAP,
            );
            report_missing_hours(
                ctx,
                chain,
                &hours,
                more,
                &format!(
                    "the archived digests around it, {} and {}, end at {} and {}, and CloudTrail delivers one digest per hour",
                    older.key,
                    current.key,
                    utc_text(older.end),
                    utc_text(current.end)
                ),
            );
        }
        return Ok(false);
    };

    let Some(previous) = &digest.previous else {
        let restart_after_older = standard && older.is_some();
        if let (true, Some(older)) = (standard, older) {
            let start = &digest.digest_start_time.original;
            ctx.finding(
                Finding::new(
                    FindingKind::ChainGap,
                    &chain.account,
                    &chain.bucket,
                    &current.key,
                    format!(
                        "the chain restarts here (all previousDigest* fields are null) although digest {} (ending {}) is archived before it: nothing covers {} to {start}; logging or log file validation was off, or the trail was recreated",
                        older.key,
                        utc_text(older.end),
                        utc_text(older.end),
                    ),
                )
                .with_region(Some(&chain.region))
                .with_trail(Some(&chain.trail))
                .with_archive_key(Some(
                    &chain
                        .source_ref(&current.key)
                        .archive_key(&ctx.settings.archive_prefix),
                )),
            );
        }
        return Ok(!restart_after_older);
    };

    let links_to_older = older
        .is_some_and(|older| previous.s3_bucket == chain.bucket && previous.s3_object == older.key);
    let target = if links_to_older {
        before.cloned()
    } else {
        resolve_previous(ctx, chain, &previous.s3_bucket, &previous.s3_object).await?
    };
    let archive_key = chain
        .source_ref(&current.key)
        .archive_key(&ctx.settings.archive_prefix);
    let mut clean = true;
    match target {
        // The oldest archived digest of a chain links to history from before
        // collection began: that is where the archive's coverage starts.
        None if older.is_none() => {}
        None => {
            clean = false;
            ctx.finding(missing_digest(
                chain,
                &previous.s3_bucket,
                &previous.s3_object,
                format!(
                    "digest {} names s3://{}/{} as its previous digest, which is not archived",
                    current.key, previous.s3_bucket, previous.s3_object
                ),
            ));
        }
        Some(target) => {
            // If the previous digest failed its own checks, that is its
            // finding; this authentic digest adds evidence only when the
            // archived content differs from what CloudTrail chained (then
            // the alteration is proven, whatever the previous digest's state).
            let expected_hash = hex::encode(previous.hash_value);
            let found_hash = target.sha256.as_deref();
            let hash_differs = if target.valid {
                found_hash != Some(expected_hash.as_str())
            } else {
                found_hash.is_some_and(|found| found != expected_hash)
            };
            let signature_differs = !target
                .signature
                .as_deref()
                .is_some_and(|found| found.eq_ignore_ascii_case(&previous.signature));
            let mut problems = Vec::new();
            if hash_differs {
                problems.push(format!(
                    "previousDigestHashValue is {expected_hash} but the archived previous digest's inflated SHA-256 is {}",
                    found_hash.unwrap_or("unknown")
                ));
            }
            if signature_differs && (target.valid || hash_differs) {
                problems.push(format!(
                    "previousDigestSignature {} differs from the previous digest's signature {}",
                    abbreviate(&previous.signature),
                    target
                        .signature
                        .as_deref()
                        .map_or("(none)".to_string(), abbreviate)
                ));
            }
            if !problems.is_empty() {
                clean = false;
                ctx.finding(
                    Finding::new(
                        FindingKind::DigestLinkMismatch,
                        &chain.account,
                        &chain.bucket,
                        &current.key,
                        format!("link to {}: {}", target.key, problems.join("; ")),
                    )
                    .with_region(Some(&chain.region))
                    .with_trail(Some(&chain.trail))
                    .with_archive_key(Some(&archive_key)),
                );
            }
            if standard && target.valid && digest.digest_start_time.parsed != target.end {
                clean = false;
                ctx.finding(
                    Finding::new(
                        FindingKind::ChainGap,
                        &chain.account,
                        &chain.bucket,
                        &current.key,
                        format!(
                            "digestStartTime {} differs from the previous digest's end {} ({}): deliveries in between are covered by no digest",
                            digest.digest_start_time.original,
                            utc_text(target.end),
                            target.key
                        ),
                    )
                    .with_region(Some(&chain.region))
                    .with_trail(Some(&chain.trail))
                    .with_archive_key(Some(&archive_key)),
                );
            }
        }
    }

    // Hours missing between the archived digest before and the one this
    // digest names: every hour back from the named one (docs/cloudtrail-format.md §6.5: the CLI
    // names only one of several consecutive deletions).
    if let (true, Some(older), false) = (standard, older, links_to_older) {
        let named = parse_digest_key(&chain.reader, &previous.s3_bucket, &previous.s3_object);
        if let Some((named_chain, named_end)) = named {
            if named_chain == *chain && named_end > older.end && named_end < current.end {
                let (hours, more) = hours_back(named_end, older.end, MAX_MISSING_PER_GAP);
                clean &= !report_missing_hours(
                    ctx,
                    chain,
                    &hours,
                    more,
                    &format!(
                        "digest {} links back to {} while the newest archived digest before it is {}; CloudTrail delivers one digest per hour",
                        current.key, previous.s3_object, older.key
                    ),
                );
            }
        }
    }
    Ok(clean)
}

fn abbreviate(signature: &str) -> String {
    match signature.get(..16) {
        Some(head) if signature.len() > 16 => format!("{head}…"),
        _ => signature.to_string(),
    }
}

/// Link data of a digest named as previous that is not the archived digest
/// just before (another bucket, another chain, a fork): read and examined;
/// `None` when it is not archived.
async fn resolve_previous(
    ctx: &Ctx<'_>,
    chain: &ChainId,
    bucket: &str,
    key: &str,
) -> Result<Option<LinkInfo>, OpError> {
    let source = SourceRef {
        account_id: chain.reader.clone(),
        bucket: bucket.to_string(),
        key: key.to_string(),
    };
    let record = ctx.store.object(&source).map_err(|error| {
        OpError::new(
            &chain.account,
            format!("read store s3://{bucket}/{key}"),
            error,
        )
    })?;
    let archive_key = source.archive_key(&ctx.settings.archive_prefix);
    let (version_id, raw_sha256) = match record {
        Some(record) => (record.archive_version_id, Some(record.raw_sha256)),
        // A full run trusts the archive, not the store.
        None if ctx.settings.full => match ctx.archive.head(&archive_key, None).await {
            Ok(Some(head)) => (head.version_id, None),
            Ok(None) => return Ok(None),
            Err(error) => {
                return Err(OpError::new(
                    &chain.account,
                    format!("head s3://{}/{archive_key}", ctx.archive.bucket()),
                    error,
                ))
            }
        },
        None => return Ok(None),
    };
    let Some((named_chain, end)) = parse_digest_key(&chain.reader, bucket, key) else {
        // Archived, but not under a digest name: cannot be a valid digest.
        return Ok(Some(LinkInfo {
            key: key.to_string(),
            end: ctx.now,
            start: None,
            sha256: None,
            signature: None,
            valid: false,
        }));
    };
    let entry = DigestEntry {
        key: key.to_string(),
        end,
        version_id,
        raw_sha256,
    };
    Ok(Some(
        examine_digest(ctx, &named_chain, &entry).await?.link_info(),
    ))
}
