//! Which partitions a run lists: the roots and regions found in the bucket
//! (cached between sweeps), the open days of the lookback, and the redelivery
//! window when its sweep is due.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use tracing::debug;

use crate::model::error::SeamError;
use crate::progress;
use crate::progress::collect::Discovery;

use super::{Run, SourceScope, Window};

/// Family folder name -> regions.
pub(super) type Families = BTreeMap<String, Vec<String>>;

#[derive(Clone)]
pub(super) struct Partition {
    pub(super) scope: SourceScope,
    /// The scope's root, or a foreign account's folder found beside it.
    pub(super) root: String,
    pub(super) family: String,
    pub(super) region: String,
    pub(super) date: NaiveDate,
}

impl Partition {
    pub(super) fn prefix(&self) -> String {
        format!(
            "{}{}/{}/{}/",
            self.root,
            self.family,
            self.region,
            self.date.format("%Y/%m/%d")
        )
    }
}

pub(super) async fn discover(
    run: &Run<'_>,
    scope: &SourceScope,
) -> Result<BTreeMap<String, Families>, SeamError> {
    if let Some(cached) = progress::collect::discovery(run.store, scope.key())? {
        let fresh = run.now.timestamp() - cached.at < run.settings.sweep_interval.num_seconds();
        let regions_match = scope.regions.is_empty()
            || cached
                .roots
                .values()
                .flat_map(|families| families.values())
                .all(|regions| *regions == scope.regions);
        if fresh && regions_match {
            return Ok(cached.roots);
        }
    }
    let mut roots = BTreeMap::new();
    roots.insert(
        scope.root.clone(),
        families_under(scope, &scope.root).await?,
    );
    if scope.foreign_accounts {
        for root in foreign_account_roots(scope).await? {
            let families = families_under(scope, &root).await?;
            roots.insert(root, families);
        }
    }
    let cached = Discovery {
        at: run.now.timestamp(),
        roots: roots.clone(),
    };
    progress::collect::record_discovery(run.store, scope.key(), &cached)?;
    Ok(roots)
}

/// Folders of other accounts beside the scope's own (`AWSLogs/<other>/` in a
/// per-account bucket): hostile or misrouted, collected as evidence.
pub(super) async fn foreign_account_roots(scope: &SourceScope) -> Result<Vec<String>, SeamError> {
    let Some(parent) = scope
        .root
        .strip_suffix(&format!("{}/", scope.member_account_id))
    else {
        return Ok(Vec::new());
    };
    Ok(scope
        .source
        .list_folders(parent)
        .await?
        .into_iter()
        .filter(|folder| *folder != scope.root)
        .filter(|folder| {
            folder
                .strip_prefix(parent)
                .and_then(|rest| rest.strip_suffix('/'))
                .is_some_and(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect())
}

pub(super) async fn families_under(scope: &SourceScope, root: &str) -> Result<Families, SeamError> {
    let mut families = BTreeMap::new();
    for folder in scope.source.list_folders(root).await? {
        let family = folder
            .trim_start_matches(root)
            .trim_end_matches('/')
            .to_string();
        // CloudTrail, CloudTrail-Digest, CloudTrail-Insight and any other sibling.
        if family != "CloudTrail" && !family.starts_with("CloudTrail-") {
            continue;
        }
        let regions = if scope.regions.is_empty() {
            let family_root = format!("{root}{family}/");
            scope
                .source
                .list_folders(&family_root)
                .await?
                .iter()
                .map(|f| {
                    f.trim_start_matches(&family_root)
                        .trim_end_matches('/')
                        .to_string()
                })
                .filter(|region| !region.is_empty())
                .collect()
        } else {
            scope.regions.clone()
        };
        families.insert(family, regions);
    }
    Ok(families)
}

/// The dates an incremental run lists for `scope`: the open partitions, plus
/// the redelivery window when its sweep is due.
pub(super) fn incremental_dates(
    run: &Run<'_>,
    scope: &SourceScope,
) -> Result<Vec<NaiveDate>, SeamError> {
    let today = run.now.date_naive();
    let sweep_due = match progress::collect::last_sweep(run.store, scope.key())? {
        Some(last) => run.now.timestamp() - last >= run.settings.sweep_interval.num_seconds(),
        None => true,
    };
    let back = if sweep_due {
        run.settings
            .redelivery_sweep_days
            .max(run.settings.lookback_days)
    } else {
        run.settings.lookback_days
    };
    Ok((0..=i64::from(back))
        .map(|days| today - Duration::days(days))
        .collect())
}

pub(super) async fn partitions_of(
    run: &Run<'_>,
    scope: &SourceScope,
    window: Window,
) -> Vec<Partition> {
    let roots = match discover(run, scope).await {
        Ok(roots) => roots,
        Err(error) => {
            run.error(
                &scope.member_account_id,
                &format!("list s3://{}/{}", scope.source.bucket(), scope.root),
                &error,
            );
            return Vec::new();
        }
    };
    let dates = match window {
        Window::Incremental => match incremental_dates(run, scope) {
            Ok(dates) => dates,
            Err(error) => {
                run.error(&scope.member_account_id, "read_store", &error);
                return Vec::new();
            }
        },
        Window::Range { from, to } => from.iter_days().take_while(|day| *day <= to).collect(),
    };
    debug!(
        roots = roots.len(),
        dates = dates.len(),
        "partitions planned"
    );
    let mut partitions = Vec::new();
    for (root, families) in &roots {
        for (family, regions) in families {
            for region in regions {
                for date in &dates {
                    partitions.push(Partition {
                        scope: scope.clone(),
                        root: root.clone(),
                        family: family.clone(),
                        region: region.clone(),
                        date: *date,
                    });
                }
            }
        }
    }
    partitions
}
