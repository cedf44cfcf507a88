//! The AWS partition (`aws`, `aws-us-gov`, `aws-cn`, …) every ARN we build
//! names: from `[aws] partition` when configured, else from the audit
//! identity's own ARN (STS GetCallerIdentity, which needs no permission).
//! Never a literal: a role ARN with the wrong partition is refused by STS.

use aws_config::SdkConfig;
use tracing::warn;

/// The partition named by an ARN (`arn:PARTITION:service:…`), when the text
/// is an ARN with a well-formed partition.
pub fn partition_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(3, ':');
    if parts.next() != Some("arn") {
        return None;
    }
    let partition = parts.next()?;
    parts.next()?;
    well_formed(partition).then_some(partition)
}

/// A partition name: `aws` or `aws-` followed by lowercase letters and
/// dashes (`aws-us-gov`, `aws-cn`, `aws-iso-b`), at most 32 characters.
pub fn well_formed(partition: &str) -> bool {
    partition.len() <= 32
        && (partition == "aws"
            || partition.strip_prefix("aws-").is_some_and(|rest| {
                !rest.is_empty()
                    && !rest.ends_with('-')
                    && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            }))
}

/// The partition a Region belongs to, by its name: the fallback when the
/// caller identity cannot be read.
pub fn partition_of_region(region: &str) -> &'static str {
    const PREFIXES: [(&str, &str); 6] = [
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-iso-", "aws-iso"),
        ("eu-isoe-", "aws-iso-e"),
        ("eusc-", "aws-eusc"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("aws", |(_, partition)| partition)
}

/// The partition of the audit identity: `configured` when set (validated by
/// the configuration), else the one in the caller identity's ARN, else (the
/// call failed: logged) the one of `region`.
pub async fn resolve_partition(
    audit: &SdkConfig,
    configured: Option<&str>,
    region: &str,
) -> String {
    if let Some(partition) = configured {
        return partition.to_string();
    }
    let answer = aws_sdk_sts::Client::new(audit)
        .get_caller_identity()
        .send()
        .await;
    match answer {
        Ok(identity) => match identity.arn().and_then(partition_of_arn) {
            Some(partition) => partition.to_string(),
            None => {
                let fallback = partition_of_region(region);
                warn!(arn = ?identity.arn(), fallback, "the caller identity names no partition; using the region's");
                fallback.to_string()
            }
        },
        Err(error) => {
            let fallback = partition_of_region(region);
            warn!(
                error = %aws_smithy_types::error::display::DisplayErrorContext(&error),
                fallback,
                "cannot read the caller identity (sts:GetCallerIdentity); using the region's partition"
            );
            fallback.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_read_from_arns() {
        let cases = [
            ("arn:aws:iam::111122223333:user/collector", Some("aws")),
            (
                "arn:aws-us-gov:sts::111122223333:assumed-role/r/s",
                Some("aws-us-gov"),
            ),
            ("arn:aws-cn:iam::111122223333:role/r", Some("aws-cn")),
            ("arn:aws-iso-b:iam::1:role/r", Some("aws-iso-b")),
            ("arn:aws", None),
            ("arn::iam::1:role/r", None),
            ("arn:AWS:iam::1:role/r", None),
            ("arn:aws-:iam::1:role/r", None),
            ("arn:gcp:iam::1:role/r", None),
            ("arn:aws-us gov:iam::1:role/r", None),
            ("urn:aws:iam::1:role/r", None),
            ("", None),
        ];
        for (arn, expected) in cases {
            assert_eq!(partition_of_arn(arn), expected, "{arn}");
        }
        assert!(!well_formed(&format!("aws-{}", "x".repeat(40))));
    }

    #[test]
    fn regions_fall_back_to_their_partition() {
        let cases = [
            ("us-east-1", "aws"),
            ("eu-west-1", "aws"),
            ("us-gov-west-1", "aws-us-gov"),
            ("cn-north-1", "aws-cn"),
            ("cn-northwest-1", "aws-cn"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
        ];
        for (region, expected) in cases {
            assert_eq!(partition_of_region(region), expected, "{region}");
        }
    }

    #[tokio::test]
    async fn a_configured_partition_wins_without_a_call() {
        let http = crate::retry::scripted_http::ScriptedHttp::new(vec![]);
        let partition = resolve_partition(&http.config().await, Some("aws-cn"), "us-east-1").await;
        assert_eq!(partition, "aws-cn");
        assert_eq!(http.requests(), 0);
    }

    #[tokio::test]
    async fn the_partition_comes_from_the_caller_identity() {
        use crate::retry::scripted_http::{query_error, reply, ScriptedHttp};
        let answer = "<GetCallerIdentityResponse><GetCallerIdentityResult>\
            <Arn>arn:aws-us-gov:iam::111122223333:user/collector</Arn>\
            <UserId>AIDA</UserId><Account>111122223333</Account>\
            </GetCallerIdentityResult></GetCallerIdentityResponse>";
        let http = ScriptedHttp::new(vec![reply(200, answer)]);
        let partition = resolve_partition(&http.config().await, None, "us-east-1").await;
        assert_eq!(partition, "aws-us-gov");
        // Refused: the Region's partition.
        let http = ScriptedHttp::new(vec![query_error(403, "AccessDenied")]);
        let partition = resolve_partition(&http.config().await, None, "cn-north-1").await;
        assert_eq!(partition, "aws-cn");
    }
}
