//! The newest end of every standard chain (docs/cloudtrail-format.md §9.2 step 4, §6.5 "deleting
//! the newest digests is undetectable" by the CLI): a head older than the
//! configured threshold is `chain_head_stale`; a head behind the validated
//! heads of its sibling chains — the same trail in other regions, or in other
//! member accounts of an organization trail, which CloudTrail advances hour
//! by hour together — means the hours in between were deleted or withheld:
//! one `digest_missing` per hour.
//!
//! Computed from the store and the chain states alone: no archive reads.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};

use crate::model::findings::{Finding, FindingKind};
use crate::model::time::utc_text;

use super::chain::{report_missing_hours, ChainResult};
use super::inventory::{ChainId, DigestEntry, Inventory, SiblingGroup};
use super::{Ctx, Scope, MAX_MISSING_PER_GAP};
use crate::progress::validation::{ChainState, ValidationLag};

/// A sibling's validated head: its chain, end time and key.
type ProvenHead<'a> = (&'a ChainId, DateTime<Utc>, &'a str);

pub(crate) fn check_heads(
    ctx: &Ctx<'_>,
    inventory: &Inventory,
    states: &HashMap<ChainId, ChainState>,
    scope: &Scope<'_>,
) {
    // Validated, valid heads per sibling group: only a digest whose signature
    // verified may prove that CloudTrail was delivering at that hour.
    let mut proven_heads: BTreeMap<SiblingGroup, Vec<ProvenHead<'_>>> = BTreeMap::new();
    for (chain, state) in states {
        if chain.backfill {
            continue;
        }
        if let Some(head) = state.head.as_ref().filter(|head| head.valid) {
            if head.end <= ctx.now {
                proven_heads
                    .entry(chain.sibling_group())
                    .or_default()
                    .push((chain, head.end, head.key.as_str()));
            }
        }
    }

    for (chain, entries) in &inventory.chains {
        if chain.backfill || !scope.covers_chain(chain) {
            continue;
        }
        let Some(head) = entries.last() else {
            continue;
        };
        let age = ctx.now - head.end;
        if age > ctx.settings.chain_head_stale {
            ctx.finding(
                Finding::new(
                    FindingKind::ChainHeadStale,
                    &chain.account,
                    &chain.bucket,
                    &head.key,
                    format!(
                        "the newest archived digest of this chain ended {} ({} hours ago, threshold {} hours): digests stopped arriving, or the newest ones were deleted before collection",
                        utc_text(head.end),
                        age.num_hours(),
                        ctx.settings.chain_head_stale.num_hours()
                    ),
                )
                .with_region(Some(&chain.region))
                .with_trail(Some(&chain.trail))
                .with_archive_key(Some(
                    &chain
                        .source_ref(&head.key)
                        .archive_key(&ctx.settings.archive_prefix),
                )),
            );
        }

        let newest_sibling = proven_heads
            .get(&chain.sibling_group())
            .into_iter()
            .flatten()
            .filter(|(sibling, _, _)| *sibling != chain)
            .max_by_key(|(_, end, _)| *end);
        let Some((_, sibling_end, sibling_key)) = newest_sibling else {
            continue;
        };
        let limit = (*sibling_end).min(ctx.now - ctx.delivery_grace());
        let first_missing = head.end + Duration::hours(1);
        let total = if limit < first_missing {
            0
        } else {
            usize::try_from((limit - first_missing).num_seconds() / 3600)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
        };
        let listed = total.min(MAX_MISSING_PER_GAP);
        let hours: Vec<DateTime<Utc>> = (0..listed)
            .filter_map(|ahead| i64::try_from(ahead).ok())
            .map(|ahead| first_missing + Duration::hours(ahead))
            .collect();
        let more = total - listed;
        report_missing_hours(
            ctx,
            chain,
            &hours,
            more,
            &format!(
                "this chain's newest archived digest ends {} ({}), while sibling chain digest {sibling_key} of the same trail, validly signed, ends {}; CloudTrail delivers every chain of a trail every hour, so the newest digests of this chain were deleted or withheld",
                utc_text(head.end),
                head.key,
                utc_text(*sibling_end),
            ),
        );
    }
}

/// How far validation of `chain` trails its archived digests `entries`
/// (oldest first) after this run: recorded in the chain state (what `status`
/// shows), and `chain_validation_lagging` when archived history older than
/// `chain_head_stale` is still unchecked — the chain head of the archive stays
/// fresh while validation is stuck behind an unreadable object or a failing
/// key provider, so `chain_head_stale` alone would never say so.
pub(crate) fn check_lag(
    ctx: &Ctx<'_>,
    chain: &ChainId,
    entries: &[DigestEntry],
    result: &mut ChainResult,
) {
    let Some(newest) = entries.last() else {
        return;
    };
    let first_unvalidated = entries
        .iter()
        .position(|entry| !result.state.validated.contains(entry.end));
    let unvalidated_since = first_unvalidated.map(|index| {
        index
            .checked_sub(1)
            .and_then(|older| entries.get(older))
            .map_or_else(
                || entries[index].end - Duration::hours(1),
                |older| older.end,
            )
    });
    let lag = ValidationLag {
        newest_archived: newest.end,
        unvalidated_since,
    };
    if result.state.lag != Some(lag) {
        result.state.lag = Some(lag);
        result.changed = true;
    }
    let behind = lag.lag();
    let Some(index) = first_unvalidated else {
        return;
    };
    let Some(stuck) = entries.get(index) else {
        return;
    };
    if behind <= ctx.settings.chain_head_stale {
        return;
    }
    let later = entries.len() - 1 - index;
    ctx.finding(
        Finding::new(
            FindingKind::ChainValidationLagging,
            &chain.account,
            &chain.bucket,
            &stuck.key,
            format!(
                "validation of this chain is {} hours behind its archive (threshold {} hours): archived digest {} (ending {}) and {later} later ones are not validated; this run's operational errors say why (an object that cannot be read, a key provider that does not answer)",
                behind.num_hours(),
                ctx.settings.chain_head_stale.num_hours(),
                stuck.key,
                utc_text(stuck.end),
            ),
        )
        .with_region(Some(&chain.region))
        .with_trail(Some(&chain.trail))
        .with_archive_key(Some(
            &chain
                .source_ref(&stuck.key)
                .archive_key(&ctx.settings.archive_prefix),
        )),
    );
}
