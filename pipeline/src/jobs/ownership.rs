//! Whether a source bucket belongs to the account whose history it is read
//! as. A bucket name is global: another account can create a bucket under a
//! member's template name (before the member does, or after it deleted its
//! own) and fill it with whatever history it likes. Every source request
//! carries `ExpectedBucketOwner`, which S3 enforces; this check also asks,
//! once per run per bucket, and refuses a bucket someone else owns with a
//! `source_bucket_not_owned` finding — nothing of it is archived.

use tracing::warn;

use crate::model::error::SeamError;
use crate::model::findings::{Finding, FindingKind};
use crate::seams::{BucketOwnership, TrailSource};

/// What the check decided for one (reading account, bucket).
#[derive(Debug)]
pub enum Verdict {
    /// Read it (owned, or the check could not be made: ExpectedBucketOwner
    /// still guards every request).
    Read,
    /// Another account owns it: this finding, and nothing is read.
    Refuse(Finding),
    /// The check failed (after the retries): nothing is read this run.
    Error(SeamError),
}

/// Checks `source`'s bucket against `reader_account_id`, its expected owner.
pub async fn check(reader_account_id: &str, source: &dyn TrailSource) -> Verdict {
    let bucket = source.bucket();
    match source.ownership().await {
        Ok(BucketOwnership::Owned) => Verdict::Read,
        Ok(BucketOwnership::Unknown(why)) => {
            warn!(account_id = %reader_account_id, bucket, why, "cannot check who owns the source bucket");
            Verdict::Read
        }
        Ok(BucketOwnership::NotOwned(detail)) => {
            warn!(account_id = %reader_account_id, bucket, detail, "source bucket is not owned by its account; not read");
            Verdict::Refuse(Finding::new(
                FindingKind::SourceBucketNotOwned,
                reader_account_id,
                bucket,
                "",
                format!("{detail}; nothing of this bucket is archived"),
            ))
        }
        Err(error) => Verdict::Error(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsuite::memory::MemorySource;

    #[tokio::test]
    async fn a_bucket_owned_by_another_account_is_refused_with_a_critical_finding() {
        let source = MemorySource::new("aws-cloudtrail-logs-222222222201");
        assert!(matches!(
            check("222222222201", &source).await,
            Verdict::Read
        ));
        source.set_ownership(BucketOwnership::NotOwned("owned by 999999999999".into()));
        let Verdict::Refuse(finding) = check("222222222201", &source).await else {
            panic!("not refused");
        };
        assert_eq!(finding.kind, FindingKind::SourceBucketNotOwned);
        assert_eq!(finding.severity, crate::model::findings::Severity::Critical);
        assert_eq!(finding.account_id, "222222222201");
        assert_eq!(finding.bucket, "aws-cloudtrail-logs-222222222201");
        assert!(finding.detail.contains("owned by 999999999999"));
        source.set_ownership(BucketOwnership::Unknown("no permission".into()));
        assert!(matches!(
            check("222222222201", &source).await,
            Verdict::Read
        ));
    }
}
