//! CloudTrail public keys from `ListPublicKeys`, called by the audit identity
//! in the digest's delivering region (a member cannot forge them).

use async_trait::async_trait;
use aws_config::{Region, SdkConfig};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use trailvault_pipeline::seams::{ListedPublicKey, PublicKeyDirectory};
use trailvault_pipeline::SeamError;

use crate::aws::classify;
use crate::retry::{retry, RetryPolicy};

/// [`PublicKeyDirectory`] over CloudTrail `ListPublicKeys`, called by the
/// audit identity in the region asked for.
pub struct CloudTrailPublicKeys {
    audit: SdkConfig,
    policy: RetryPolicy,
    cancel: CancellationToken,
}

impl CloudTrailPublicKeys {
    /// Pages are retried under `policy` until `cancel`.
    pub fn new(
        audit: &SdkConfig,
        policy: RetryPolicy,
        cancel: CancellationToken,
    ) -> CloudTrailPublicKeys {
        CloudTrailPublicKeys {
            audit: audit.clone(),
            policy,
            cancel,
        }
    }
}

#[async_trait]
impl PublicKeyDirectory for CloudTrailPublicKeys {
    async fn list_public_keys(
        &self,
        region: &str,
        window: (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<Vec<ListedPublicKey>, SeamError> {
        list_public_keys(&self.audit, region, window, &self.policy, &self.cancel).await
    }
}

fn chrono_time(time: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

/// Every key that signed digests in `[start, end]` in `region`; each page is
/// retried under `policy` until `cancel`.
pub async fn list_public_keys(
    audit: &SdkConfig,
    region: &str,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    policy: &RetryPolicy,
    cancel: &CancellationToken,
) -> Result<Vec<ListedPublicKey>, SeamError> {
    let config = audit
        .to_builder()
        .region(Region::new(region.to_string()))
        .build();
    let client = aws_sdk_cloudtrail::Client::new(&config);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    // NextToken is "reserved for future use"; follow it defensively, bounded.
    let operation = format!("cloudtrail:ListPublicKeys {region}");
    for _ in 0..100 {
        // The SDK makes one attempt; a throttled or failed page is retried here.
        let output = retry(policy, cancel, |_| {
            let request = client
                .list_public_keys()
                .start_time(aws_smithy_types::DateTime::from_secs(start.timestamp()))
                .end_time(aws_smithy_types::DateTime::from_secs(end.timestamp()))
                .set_next_token(token.clone());
            let operation = &operation;
            async move { request.send().await.map_err(|e| classify(operation, e)) }
        })
        .await?;
        for key in output.public_key_list() {
            let Some(value) = key.value() else { continue };
            out.push(ListedPublicKey {
                der: value.as_ref().to_vec(),
                fingerprint: key.fingerprint().map(str::to_string),
                validity_start: key.validity_start_time().and_then(chrono_time),
                validity_end: key.validity_end_time().and_then(chrono_time),
            });
        }
        match output.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::scripted_http::{json_error, reply, ScriptedHttp};

    /// One day's keys in eu-west-1, through `http`, with the default retries.
    async fn list_day(http: &ScriptedHttp) -> Result<Vec<ListedPublicKey>, SeamError> {
        let end = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        list_public_keys(
            &http.config().await,
            "eu-west-1",
            (end - chrono::Duration::days(1), end),
            &RetryPolicy::default(),
            &CancellationToken::new(),
        )
        .await
    }

    #[tokio::test]
    async fn throttled_and_failed_calls_are_retried() {
        let http = ScriptedHttp::new(vec![
            json_error(400, "ThrottlingException"),
            json_error(500, "InternalFailure"),
            reply(
                200,
                r#"{"PublicKeyList":[{"Value":"AAEC","Fingerprint":"ab"}]}"#,
            ),
        ]);
        let keys = list_day(&http).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].der, vec![0, 1, 2]);
        assert_eq!(keys[0].fingerprint.as_deref(), Some("ab"));
        assert_eq!(http.requests(), 3);
    }

    #[tokio::test]
    async fn invalid_input_is_not_retried() {
        let http = ScriptedHttp::new(vec![json_error(400, "InvalidTimeRangeException")]);
        let error = list_day(&http).await.unwrap_err();
        assert_eq!(
            error,
            SeamError::Permanent(
                "cloudtrail:ListPublicKeys eu-west-1: InvalidTimeRangeException \
                 scripted InvalidTimeRangeException"
                    .into()
            )
        );
        assert_eq!(http.requests(), 1);
    }
}
