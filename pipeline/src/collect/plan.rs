//! Which partitions a run lists: the roots and regions found in the bucket
//! (cached between sweeps), the open days of the lookback, and the redelivery
//! window when its sweep is due.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use futures::StreamExt;
use tracing::debug;

use crate::cloudtrail::keys::{is_family_folder, is_region};
use crate::model::error::SeamError;
use crate::model::findings::{Finding, FindingKind};
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

/// Family folders CloudTrail writes: always accepted.
const KNOWN_FAMILIES: [&str; 3] = ["CloudTrail", "CloudTrail-Digest", "CloudTrail-Insight"];
/// Other `CloudTrail-<name>` folders accepted under one root (room for a
/// folder CloudTrail adds later); beyond it they are junk.
pub(super) const MAX_OTHER_FAMILIES: usize = 4;
/// Region-named folders not in [`KNOWN_REGIONS`] accepted under one family
/// folder (room for a new AWS Region); beyond it they are junk.
pub(super) const MAX_OTHER_REGIONS: usize = 8;
/// Other accounts' folders collected beside a scope's root.
pub(super) const MAX_FOREIGN_ROOTS: usize = 16;
/// How many rejected folder names a finding quotes.
const QUOTED_REJECTS: usize = 5;

/// AWS Regions as of 2025 (commercial, GovCloud, China): always accepted, so
/// planted region-like folders can take only the few spare places, never a
/// real Region's.
const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// Folders discovery turned away under one root: counted, a few quoted.
#[derive(Debug, Default)]
pub(super) struct Rejected {
    pub(super) count: u64,
    pub(super) quoted: Vec<String>,
}

impl Rejected {
    fn add(&mut self, folder: &str) {
        self.count += 1;
        if self.quoted.len() < QUOTED_REJECTS {
            self.quoted.push(folder.to_string());
        }
    }

    /// One `object_malformed` finding for the folder `prefix`, when anything
    /// was turned away under it.
    fn report(&self, run: &Run<'_>, scope: &SourceScope, prefix: &str, what: &str) {
        if self.count == 0 {
            return;
        }
        run.finding(Finding::new(
            FindingKind::ObjectMalformed,
            &scope.member_account_id,
            scope.source.bucket(),
            prefix,
            format!(
                "{} folder(s) under {prefix} not collected: {what} (e.g. {}); their keys are neither listed nor copied",
                self.count,
                self.quoted.join(", ")
            ),
        ));
    }
}

/// The folder names directly under `prefix` (without it and the trailing
/// `/`), page by page, each handed to `visit`: a member may create any
/// number of folders, so none is kept unless `visit` keeps it.
async fn each_folder(
    scope: &SourceScope,
    prefix: &str,
    mut visit: impl FnMut(&str),
) -> Result<(), SeamError> {
    let mut listing = scope.source.list_folders(prefix);
    while let Some(page) = listing.next().await {
        for folder in page? {
            let name = folder
                .strip_prefix(prefix)
                .unwrap_or(&folder)
                .trim_end_matches('/');
            if !name.is_empty() {
                visit(name);
            }
        }
    }
    Ok(())
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
    let (families, rejected) = families_under(scope, &scope.root).await?;
    rejected.report(
        run,
        scope,
        &scope.root,
        "not CloudTrail folders, or more than discovery accepts",
    );
    roots.insert(scope.root.clone(), families);
    if scope.foreign_accounts {
        let (foreign, rejected) = foreign_account_roots(scope).await?;
        if let Some(parent) = foreign_parent(scope) {
            rejected.report(
                run,
                scope,
                parent,
                "more other-account folders than discovery accepts",
            );
        }
        for root in foreign {
            let (families, rejected) = families_under(scope, &root).await?;
            rejected.report(
                run,
                scope,
                &root,
                "not CloudTrail folders, or more than discovery accepts",
            );
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

/// Where other accounts' folders would sit beside the scope's root
/// (`AWSLogs/` of a per-account bucket).
fn foreign_parent(scope: &SourceScope) -> Option<&str> {
    scope
        .root
        .strip_suffix(&format!("{}/", scope.member_account_id))
}

/// Folders of other accounts beside the scope's own (`AWSLogs/<other>/` in a
/// per-account bucket): hostile or misrouted, collected as evidence, at most
/// [`MAX_FOREIGN_ROOTS`] of them; the rest are counted as rejected.
pub(super) async fn foreign_account_roots(
    scope: &SourceScope,
) -> Result<(Vec<String>, Rejected), SeamError> {
    let Some(parent) = foreign_parent(scope) else {
        return Ok((Vec::new(), Rejected::default()));
    };
    let own = scope.member_account_id.as_str();
    let mut roots = Vec::new();
    let mut rejected = Rejected::default();
    each_folder(scope, parent, |id| {
        let is_account = id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit());
        if !is_account || id == own {
            return;
        }
        if roots.len() < MAX_FOREIGN_ROOTS {
            roots.push(format!("{parent}{id}/"));
        } else {
            rejected.add(id);
        }
    })
    .await?;
    Ok((roots, rejected))
}

/// The family folders under `root` and the regions under each, bounded: the
/// known families and Regions always, at most [`MAX_OTHER_FAMILIES`] other
/// `CloudTrail-<name>` folders and [`MAX_OTHER_REGIONS`] other region-named
/// folders per family. Folders that do not start with `CloudTrail` belong to
/// other services sharing the bucket and are passed over; anything else
/// turned away is counted in the returned [`Rejected`].
pub(super) async fn families_under(
    scope: &SourceScope,
    root: &str,
) -> Result<(Families, Rejected), SeamError> {
    let mut rejected = Rejected::default();
    let mut names = Vec::new();
    let mut others = 0usize;
    each_folder(scope, root, |family| {
        if KNOWN_FAMILIES.contains(&family) {
            names.push(family.to_string());
        } else if !family.starts_with("CloudTrail") {
            // Another service's folder in a shared bucket.
        } else if is_family_folder(family) && others < MAX_OTHER_FAMILIES {
            others += 1;
            names.push(family.to_string());
        } else {
            rejected.add(&format!("{root}{family}/"));
        }
    })
    .await?;
    let mut families = BTreeMap::new();
    for family in names {
        let regions = if scope.regions.is_empty() {
            let family_root = format!("{root}{family}/");
            let mut regions = Vec::new();
            let mut others = 0usize;
            each_folder(scope, &family_root, |region| {
                if KNOWN_REGIONS.contains(&region) {
                    regions.push(region.to_string());
                } else if is_region(region) && others < MAX_OTHER_REGIONS {
                    others += 1;
                    regions.push(region.to_string());
                } else {
                    rejected.add(&format!("{family_root}{region}/"));
                }
            })
            .await?;
            regions
        } else {
            scope.regions.clone()
        };
        families.insert(family, regions);
    }
    Ok((families, rejected))
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
    // Partitions whose last listing left keys for later are listed again,
    // open or not, until a listing defers nothing.
    if matches!(window, Window::Incremental) {
        match progress::collect::pending(run.store, scope.key()) {
            Ok(pending) => partitions.extend(pending.into_iter().map(|pending| Partition {
                scope: scope.clone(),
                root: pending.root,
                family: pending.family,
                region: pending.region,
                date: pending.date,
            })),
            Err(error) => run.error(&scope.member_account_id, "read_store", &error),
        }
    }
    for (root, families) in &roots {
        for (family, regions) in families {
            for region in regions {
                for date in &dates {
                    let pending_already = partitions.iter().any(|pending: &Partition| {
                        pending.root == *root
                            && pending.family == *family
                            && pending.region == *region
                            && pending.date == *date
                    });
                    if pending_already {
                        continue;
                    }
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
