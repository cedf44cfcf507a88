//! Where a run reads: the accounts (configured, discovered, filtered), the
//! sources configured for them, and the source scopes of a run (a session per
//! reading account, the CloudTrail root and the regions of each source).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tracing::{info, warn};

use crate::cloudtrail::keys::account_root;
use crate::collect::SourceScope;
use crate::model::findings::{Finding, FindingKind};
use crate::model::object::ArchivedSource;
use crate::model::report::{FindingScope, OperationError};
use crate::model::shard::{self, Shard};
use crate::seams::TrailSource;

use super::ownership::{self, Verdict};
use super::World;

/// The placeholder a per-account bucket template contains.
pub const ACCOUNT_ID_PLACEHOLDER: &str = "{account_id}";

/// Which accounts a run covers.
#[derive(Debug, Clone, Default)]
pub struct AccountSelection {
    /// Accounts listed in the configuration.
    pub ids: Vec<String>,
    /// Also every ACTIVE account of the organization.
    pub discover: bool,
    /// Only these (empty: all).
    pub include: Vec<String>,
    /// Never these.
    pub exclude: Vec<String>,
    /// `--shard K/N`: only the accounts of this shard (see
    /// [`crate::model::shard`]); an organization trail's member folders
    /// split the same way.
    pub shard: Option<Shard>,
}

/// One configured place where CloudTrail delivers files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A trail per member account, each in its own bucket, read by that
    /// account's role.
    PerAccount {
        /// The bucket name, with `{account_id}` for the member account.
        bucket_template: String,
        key_prefix: String,
        /// Empty: every region found.
        regions: Vec<String>,
    },
    /// An organization trail: one bucket, read by one account's role.
    Organization {
        bucket: String,
        org_id: String,
        key_prefix: String,
        reader_account_id: String,
        regions: Vec<String>,
    },
}

impl SourceSpec {
    /// The bucket holding `account_id`'s trail of a per-account source: the
    /// template with every `{account_id}` replaced.
    pub fn bucket_for(bucket_template: &str, account_id: &str) -> String {
        bucket_template.replace(ACCOUNT_ID_PLACEHOLDER, account_id)
    }
}

/// What the command line limits a run to (empty: everything).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
}

/// The accounts of this run: static ids and discovered ACTIVE accounts,
/// filtered by include/exclude and by `--account`. The error is the
/// report's message.
pub async fn accounts(
    world: &World,
    selection: &AccountSelection,
    scope: &Scope,
) -> Result<Vec<String>, String> {
    let mut accounts: BTreeSet<String> = selection.ids.iter().cloned().collect();
    if selection.discover {
        let discovered = world.accounts.active_accounts().await.map_err(|error| {
            format!("discovering accounts with organizations:ListAccounts: {error}")
        })?;
        info!(count = discovered.len(), "accounts discovered");
        accounts.extend(discovered);
    }
    let mut accounts = filter_accounts(
        accounts,
        &selection.include,
        &selection.exclude,
        &scope.accounts,
    );
    accounts.retain(|id| shard::covers(selection.shard.as_ref(), id));
    Ok(accounts)
}

pub fn filter_accounts(
    accounts: BTreeSet<String>,
    include: &[String],
    exclude: &[String],
    only: &[String],
) -> Vec<String> {
    accounts
        .into_iter()
        .filter(|id| include.is_empty() || include.contains(id))
        .filter(|id| !exclude.contains(id))
        .filter(|id| only.is_empty() || only.contains(id))
        .collect()
}

/// The (reading account, bucket) pairs whose archived objects are validated.
pub fn archived_sources(sources: &[SourceSpec], accounts: &[String]) -> Vec<ArchivedSource> {
    let mut out = Vec::new();
    for source in sources {
        match source {
            SourceSpec::PerAccount {
                bucket_template, ..
            } => {
                out.extend(accounts.iter().map(|account| ArchivedSource {
                    reader_account_id: account.clone(),
                    bucket: SourceSpec::bucket_for(bucket_template, account),
                }));
            }
            SourceSpec::Organization {
                bucket,
                reader_account_id,
                ..
            } => out.push(ArchivedSource {
                reader_account_id: reader_account_id.clone(),
                bucket: bucket.clone(),
            }),
        }
    }
    out
}

/// The findings in `scope`: an organization trail's bucket is read by its
/// reader account.
pub fn finding_scope(sources: &[SourceSpec], scope: &Scope) -> FindingScope {
    FindingScope {
        accounts: scope.accounts.clone(),
        regions: scope.regions.clone(),
        readers: sources
            .iter()
            .filter_map(|source| match source {
                SourceSpec::Organization {
                    bucket,
                    reader_account_id,
                    ..
                } => Some((bucket.clone(), reader_account_id.clone())),
                SourceSpec::PerAccount { .. } => None,
            })
            .collect(),
    }
}

fn regions(configured: &[String], only: &[String]) -> Vec<String> {
    if only.is_empty() {
        configured.to_vec()
    } else if configured.is_empty() {
        only.to_vec()
    } else {
        configured
            .iter()
            .filter(|r| only.contains(r))
            .cloned()
            .collect()
    }
}

/// The (reading account, bucket) pairs `sources` read for `accounts`, in
/// configuration order.
fn source_buckets(sources: &[SourceSpec], accounts: &[String]) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for source in sources {
        match source {
            SourceSpec::PerAccount {
                bucket_template, ..
            } => pairs.extend(accounts.iter().map(|account| {
                (
                    account.clone(),
                    SourceSpec::bucket_for(bucket_template, account),
                )
            })),
            SourceSpec::Organization {
                bucket,
                reader_account_id,
                ..
            } => pairs.push((reader_account_id.clone(), bucket.clone())),
        }
    }
    pairs
}

/// Sessions and source scopes for `accounts`. An account whose role cannot
/// be assumed is reported and left out; the others go on.
pub async fn scopes(
    world: &World,
    sources: &[SourceSpec],
    selection: &AccountSelection,
    accounts: &[String],
    scope: &Scope,
) -> (Vec<SourceScope>, Vec<OperationError>, Vec<Finding>) {
    let mut errors = Vec::new();
    let mut findings = Vec::new();
    let mut scopes = Vec::new();
    let pairs = source_buckets(sources, accounts);
    let resolved = futures::future::join_all(pairs.iter().map(|(account, bucket)| async move {
        let source = match world.connector.source(account, bucket).await {
            // Once per run per bucket: is it the reading account's own?
            Ok(source) => Ok((ownership::check(account, source.as_ref()).await, source)),
            Err(error) => Err(error),
        };
        ((account.clone(), bucket.clone()), source)
    }))
    .await;
    let mut opened: BTreeMap<(String, String), Arc<dyn TrailSource>> = BTreeMap::new();
    // Each account out of reach is reported once, whatever it reads.
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    for (slot, result) in resolved {
        match result {
            Ok((Verdict::Read, source)) => {
                opened.insert(slot, source);
            }
            Ok((Verdict::Refuse(finding), _)) => findings.push(finding),
            Ok((Verdict::Error(error), _)) => errors.push(OperationError {
                account_id: slot.0.clone(),
                operation: format!("check the owner of s3://{}", slot.1),
                message: format!("{error}; the bucket is not read this run"),
            }),
            Err(error) => {
                refused.entry(slot.0).or_insert_with(|| error.to_string());
            }
        }
    }
    for (account, message) in refused {
        warn!(account_id = %account, error = %message, "cannot assume the member role");
        errors.push(OperationError {
            account_id: account,
            operation: "sts:AssumeRole".to_string(),
            message,
        });
    }
    for source in sources {
        match source {
            SourceSpec::PerAccount {
                bucket_template,
                key_prefix,
                regions: configured,
            } => {
                for account in accounts {
                    let bucket = SourceSpec::bucket_for(bucket_template, account);
                    let Some(source) = opened.get(&(account.clone(), bucket)) else {
                        continue;
                    };
                    scopes.push(SourceScope {
                        reader_account_id: account.clone(),
                        member_account_id: account.clone(),
                        source: source.clone(),
                        root: account_root(key_prefix, None, account),
                        regions: regions(configured, &scope.regions),
                        foreign_accounts: true,
                    });
                }
            }
            SourceSpec::Organization {
                bucket,
                org_id,
                key_prefix,
                reader_account_id,
                regions: configured,
            } => {
                let Some(source) = opened.get(&(reader_account_id.clone(), bucket.clone())) else {
                    continue;
                };
                // Member folders persist after an account leaves the organization:
                // collect every folder found, filtered like the account list,
                // bounded (see `member_folders`).
                let org_root = account_root(key_prefix, None, org_id);
                let mut members: BTreeSet<String> = accounts.iter().cloned().collect();
                match member_folders(source.as_ref(), &org_root, &members, selection, scope).await {
                    Ok((found, rejected)) => {
                        members.extend(found);
                        if let Some(finding) =
                            rejected.finding(reader_account_id, bucket, &org_root)
                        {
                            findings.push(finding);
                        }
                    }
                    Err(error) => {
                        errors.push(OperationError {
                            account_id: reader_account_id.clone(),
                            operation: format!("list s3://{bucket}/{org_root}"),
                            message: error.to_string(),
                        });
                        continue;
                    }
                }
                for member in members {
                    scopes.push(SourceScope {
                        reader_account_id: reader_account_id.clone(),
                        member_account_id: member.clone(),
                        source: source.clone(),
                        root: account_root(key_prefix, Some(org_id), &member),
                        regions: regions(configured, &scope.regions),
                        foreign_accounts: false,
                    });
                }
            }
        }
    }
    (scopes, errors, findings)
}

/// The most member folders of an organization trail's bucket collected that
/// are not accounts of the configured list (former members): whoever
/// controls that bucket could otherwise create a million account folders
/// and make every run list every Region of each.
pub const MAX_FORMER_MEMBER_FOLDERS: usize = 1000;

/// Member folders turned away, counted.
#[derive(Debug, Default)]
struct RejectedFolders {
    count: u64,
    quoted: Vec<String>,
}

impl RejectedFolders {
    fn add(&mut self, id: &str) {
        self.count += 1;
        if self.quoted.len() < 5 {
            self.quoted.push(id.to_string());
        }
    }

    /// One `object_malformed` finding on the organization folder.
    fn finding(&self, reader: &str, bucket: &str, org_root: &str) -> Option<Finding> {
        (self.count > 0).then(|| {
            Finding::new(
                FindingKind::ObjectMalformed,
                reader,
                bucket,
                org_root,
                format!(
                    "{} account folder(s) under {org_root} not collected: more than {MAX_FORMER_MEMBER_FOLDERS} folders of accounts outside the configured account list (e.g. {}); their keys are neither listed nor copied",
                    self.count,
                    self.quoted.join(", ")
                ),
            )
        })
    }
}

/// The account folders under an organization trail's `org_root` to collect
/// besides `known` (the account list), page by page: 12-digit names that
/// pass the account filters, at most [`MAX_FORMER_MEMBER_FOLDERS`]; the rest
/// counted.
async fn member_folders(
    source: &dyn TrailSource,
    org_root: &str,
    known: &BTreeSet<String>,
    selection: &AccountSelection,
    scope: &Scope,
) -> Result<(Vec<String>, RejectedFolders), crate::model::error::SeamError> {
    use futures::StreamExt;
    let mut found = Vec::new();
    let mut rejected = RejectedFolders::default();
    let mut listing = source.list_folders(org_root);
    while let Some(page) = listing.next().await {
        for folder in page? {
            let Some(id) = folder
                .strip_prefix(org_root)
                .map(|s| s.trim_end_matches('/'))
            else {
                continue;
            };
            let is_account = id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit());
            if !is_account || known.contains(id) {
                continue;
            }
            let candidate = BTreeSet::from([id.to_string()]);
            if filter_accounts(
                candidate,
                &selection.include,
                &selection.exclude,
                &scope.accounts,
            )
            .is_empty()
                || !shard::covers(selection.shard.as_ref(), id)
            {
                continue;
            }
            if found.len() < MAX_FORMER_MEMBER_FOLDERS {
                found.push(id.to_string());
            } else {
                rejected.add(id);
            }
        }
    }
    Ok((found, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn an_organization_bucket_yields_a_bounded_number_of_unknown_member_folders() {
        use crate::testsuite::memory::MemorySource;
        let source = MemorySource::new("org-trail");
        let root = "AWSLogs/o-abc/";
        let known = set(&["999999999999"]);
        source.put(&format!("{root}999999999999/x"), "k", &[]);
        source.put(&format!("{root}not-an-account/x"), "k", &[]);
        for index in 0..MAX_FORMER_MEMBER_FOLDERS + 7 {
            source.put(&format!("{root}{:012}/x", 100_000 + index), "k", &[]);
        }
        let selection = AccountSelection::default();
        let (found, rejected) =
            member_folders(&source, root, &known, &selection, &Scope::default())
                .await
                .unwrap();
        assert_eq!(found.len(), MAX_FORMER_MEMBER_FOLDERS);
        assert!(
            !found.contains(&"999999999999".to_string()),
            "known ones are not counted"
        );
        assert_eq!(rejected.count, 7);
        let finding = rejected.finding("111111111111", "org-trail", root).unwrap();
        assert_eq!(finding.kind, FindingKind::ObjectMalformed);
        assert_eq!(finding.key, root);
        assert!(
            finding.detail.starts_with("7 account folder(s)"),
            "{}",
            finding.detail
        );

        // `--account` narrows what is collected before the bound applies.
        let only = Scope {
            accounts: vec![format!("{:012}", 100_003)],
            regions: Vec::new(),
        };
        let (found, rejected) = member_folders(&source, root, &known, &selection, &only)
            .await
            .unwrap();
        assert_eq!(found, vec![format!("{:012}", 100_003)]);
        assert!(rejected.finding("1", "b", root).is_none());
    }

    #[tokio::test]
    async fn shards_split_accounts_and_member_folders_without_overlap() {
        use crate::testsuite::memory::MemorySource;
        let source = MemorySource::new("org-trail");
        let root = "AWSLogs/o-abc/";
        let folders: Vec<String> = (0..40)
            .map(|i| format!("{:012}", 444_000_000_000u64 + i))
            .collect();
        for id in &folders {
            source.put(&format!("{root}{id}/x"), "k", &[]);
        }
        let configured: BTreeSet<String> = (0..30)
            .map(|i| format!("{:012}", 555_000_000_000u64 + i))
            .collect();
        let mut accounts_seen = Vec::new();
        let mut folders_seen = Vec::new();
        for index in 0..3 {
            let selection = AccountSelection {
                shard: Some(Shard::new(index, 3).unwrap()),
                ..AccountSelection::default()
            };
            let mut accounts = filter_accounts(configured.clone(), &[], &[], &[]);
            accounts.retain(|id| shard::covers(selection.shard.as_ref(), id));
            assert!(!accounts.is_empty() && accounts.len() < configured.len());
            accounts_seen.extend(accounts);
            let (found, _) = member_folders(
                &source,
                root,
                &BTreeSet::new(),
                &selection,
                &Scope::default(),
            )
            .await
            .unwrap();
            assert!(found.iter().all(|id| shard::shard_of(id, 3) == index));
            folders_seen.extend(found);
        }
        accounts_seen.sort();
        folders_seen.sort();
        assert_eq!(
            accounts_seen,
            configured.into_iter().collect::<Vec<_>>(),
            "each account in exactly one shard"
        );
        assert_eq!(
            folders_seen, folders,
            "each member folder in exactly one shard"
        );
    }

    #[test]
    fn account_filters_apply_include_then_exclude_then_only() {
        let all = set(&["111111111111", "222222222222", "333333333333"]);
        assert_eq!(filter_accounts(all.clone(), &[], &[], &[]).len(), 3);
        assert_eq!(
            filter_accounts(all.clone(), &["111111111111".into()], &[], &[]),
            vec!["111111111111"]
        );
        assert_eq!(
            filter_accounts(all.clone(), &[], &["111111111111".into()], &[]),
            vec!["222222222222", "333333333333"]
        );
        assert_eq!(
            filter_accounts(all, &[], &["222222222222".into()], &["222222222222".into()]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn roots_follow_the_cloudtrail_layouts() {
        assert_eq!(
            account_root("", None, "111111111111"),
            "AWSLogs/111111111111/"
        );
        assert_eq!(
            account_root("org/x", Some("o-abc"), "111111111111"),
            "org/x/AWSLogs/o-abc/111111111111/"
        );
        assert_eq!(account_root("p", None, "o-abc"), "p/AWSLogs/o-abc/");
    }

    #[test]
    fn region_limits_intersect_configured_regions() {
        let configured = vec!["us-east-1".to_string(), "eu-west-1".to_string()];
        assert_eq!(regions(&configured, &[]), configured);
        assert_eq!(
            regions(&configured, &["eu-west-1".into()]),
            vec!["eu-west-1"]
        );
        assert_eq!(regions(&[], &["eu-west-1".into()]), vec!["eu-west-1"]);
    }
}
