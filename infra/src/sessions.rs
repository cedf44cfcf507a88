//! Member sessions: STS AssumeRole per account with the ExternalId and a
//! session name that identifies the run. The SDK's identity cache refreshes
//! the credentials before they expire; the first resolution happens here, up
//! front, so a refused role is reported clearly for its account.

use std::time::Duration;

use aws_config::sts::AssumeRoleProvider;
use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use trailvault_pipeline::SeamError;

pub struct RoleRequest<'a> {
    pub account_id: &'a str,
    pub role_name: &'a str,
    pub external_id: &'a str,
    pub session_name: &'a str,
    pub session_duration: Duration,
}

pub fn role_arn(account_id: &str, role_name: &str) -> String {
    format!("arn:aws:iam::{account_id}:role/{role_name}")
}

/// Assumes the member role and returns a configuration that uses it.
pub async fn assume_member_role(
    audit: &SdkConfig,
    request: &RoleRequest<'_>,
) -> Result<SdkConfig, SeamError> {
    let arn = role_arn(request.account_id, request.role_name);
    let provider = AssumeRoleProvider::builder(arn.clone())
        .external_id(request.external_id)
        .session_name(request.session_name)
        .session_length(request.session_duration)
        .configure(audit)
        .build()
        .await;
    if let Err(error) = provider.provide_credentials().await {
        let detail = aws_smithy_types::error::display::DisplayErrorContext(&error).to_string();
        let message = format!("AssumeRole {arn}: {detail}");
        return Err(
            if detail.contains("AccessDenied")
                || detail.contains("not authorized")
                || detail.contains("InvalidClientTokenId")
            {
                SeamError::AccessDenied(message)
            } else if detail.contains("Throttl") {
                SeamError::Throttled(message)
            } else {
                SeamError::Transient(message)
            },
        );
    }
    Ok(audit
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build())
}

/// A configuration that reads sources with static credentials (S3-compatible
/// servers without STS, such as the benchmark's).
pub fn static_source_config(
    audit: &SdkConfig,
    access_key_id: &str,
    secret_access_key: &str,
) -> SdkConfig {
    let credentials = Credentials::new(
        access_key_id,
        secret_access_key,
        None,
        None,
        "trailvault-static-source",
    );
    audit
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build()
}

/// A session name that identifies the run in the member's CloudTrail:
/// `trailvault-<run id>` within STS's 64-character limit and charset.
pub fn session_name(run_id: &str) -> String {
    let cleaned: String = run_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "=,.@-".contains(*c))
        .collect();
    let mut name = format!("trailvault-{cleaned}");
    name.truncate(64);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts_rules() {
        assert_eq!(
            session_name("20260101T000000Z"),
            "trailvault-20260101T000000Z"
        );
        let long = session_name(&"x".repeat(100));
        assert_eq!(long.len(), 64);
        assert_eq!(session_name("a b/c"), "trailvault-abc");
    }

    #[test]
    fn role_arns_name_the_member_account() {
        assert_eq!(
            role_arn("222233334444", "TrailvaultReader"),
            "arn:aws:iam::222233334444:role/TrailvaultReader"
        );
    }
}
