//! The archive's KMS key, as HEAD reports it.

use aws_config::SdkConfig;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::aws::classify;
use crate::retry::{retry, RetryPolicy};

/// The key's ARN (HEAD reports ARNs); the configured value if the audit
/// identity may not describe the key. DescribeKey is retried like every call
/// (the SDK makes one attempt), so a throttle does not fall back needlessly.
pub async fn resolve_kms_key(
    audit: &SdkConfig,
    configured: &str,
    policy: &RetryPolicy,
    cancel: &CancellationToken,
) -> String {
    if configured.starts_with("arn:") {
        return configured.to_string();
    }
    let client = aws_sdk_kms::Client::new(audit);
    let described = retry(policy, cancel, |_| {
        let request = client.describe_key().key_id(configured);
        async move {
            request
                .send()
                .await
                .map_err(|e| classify("kms:DescribeKey", e))
        }
    })
    .await;
    match described {
        Ok(output) => output
            .key_metadata()
            .and_then(|m| m.arn())
            .map(str::to_string)
            .unwrap_or_else(|| configured.to_string()),
        Err(error) => {
            warn!(key = configured, %error, "cannot resolve the archive KMS key; comparing by the configured value");
            configured.to_string()
        }
    }
}
