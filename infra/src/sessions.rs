//! Member sessions: STS AssumeRole per account with the ExternalId and a
//! session name that identifies the run. The SDK's identity cache refreshes
//! the credentials before they expire; the first resolution happens here, up
//! front, so a refused role is reported clearly for its account.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use aws_config::sts::AssumeRoleProvider;
use aws_config::SdkConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use trailvault_pipeline::seams::{SourceConnector, TrailSource};
use trailvault_pipeline::SeamError;

use crate::aws::classify_ref;
use crate::rate_limit::{RateLimitedSource, RateLimiter};
use crate::retry::{retry, RetryPolicy, RetryingSource};
use crate::s3::regions::{BucketRegions, RegionalClients};
use crate::s3::source::S3Source;

pub struct RoleRequest<'a> {
    /// The AWS partition (`aws`, `aws-us-gov`, `aws-cn`, …): see
    /// [`crate::partition`].
    pub partition: &'a str,
    pub account_id: &'a str,
    pub role_name: &'a str,
    pub external_id: &'a str,
    pub session_name: &'a str,
    pub session_duration: Duration,
}

pub fn role_arn(partition: &str, account_id: &str, role_name: &str) -> String {
    format!("arn:{partition}:iam::{account_id}:role/{role_name}")
}

/// Assumes the member role and returns a configuration that uses it. The
/// first resolution is retried on throttling and transient failures (the SDK
/// makes one attempt per call); a refused role fails at once.
pub async fn assume_member_role(
    audit: &SdkConfig,
    request: &RoleRequest<'_>,
    policy: &RetryPolicy,
    cancel: &CancellationToken,
) -> Result<SdkConfig, SeamError> {
    let arn = role_arn(request.partition, request.account_id, request.role_name);
    let provider = AssumeRoleProvider::builder(arn.clone())
        .external_id(request.external_id)
        .session_name(request.session_name)
        .session_length(request.session_duration)
        .configure(audit)
        .build()
        .await;
    retry(policy, cancel, |_| async {
        match provider.provide_credentials().await {
            Ok(_) => Ok(()),
            Err(error) => Err(classify_assume_role_error(&arn, &error)),
        }
    })
    .await?;
    Ok(audit
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build())
}

/// Classifies a failed AssumeRole with the shared SDK classifier, applied to
/// the STS error the credentials provider wraps; the message stays
/// `AssumeRole <arn>: <detail>`. Errors that carry no STS error (a provider
/// timeout, say) are classified by their text.
fn classify_assume_role_error(arn: &str, error: &CredentialsError) -> SeamError {
    let detail = DisplayErrorContext(error).to_string();
    let message = format!("AssumeRole {arn}: {detail}");
    let sts_error = std::iter::successors(error.source(), |inner| (*inner).source())
        .find_map(|inner| inner.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>());
    let Some(sts_error) = sts_error else {
        return if detail.contains("AccessDenied")
            || detail.contains("not authorized")
            || detail.contains("InvalidClientTokenId")
        {
            SeamError::AccessDenied(message)
        } else if detail.contains("Throttl") {
            SeamError::Throttled(message)
        } else {
            SeamError::Transient(message)
        };
    };
    match classify_ref("sts:AssumeRole", sts_error) {
        SeamError::AccessDenied(_) => SeamError::AccessDenied(message),
        SeamError::NotFound(_) => SeamError::NotFound(message),
        SeamError::Throttled(_) => SeamError::Throttled(message),
        SeamError::Transient(_) => SeamError::Transient(message),
        SeamError::Permanent(_) => SeamError::Permanent(message),
        SeamError::Cancelled => SeamError::Cancelled,
    }
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

/// Who reads the sources: a member role per account, or static credentials.
#[derive(Debug, Clone)]
pub struct MemberAccess {
    pub role_name: String,
    pub external_id: String,
    pub session_duration: Duration,
    /// Access key id and secret that read every source instead of a role
    /// (S3-compatible servers without STS).
    pub static_credentials: Option<(String, String)>,
    /// Path-style S3 addressing (an overridden endpoint).
    pub path_style: bool,
    /// Requests per second per source bucket; 0 for no cap.
    pub requests_per_second: u32,
    /// The partition of the member role ARNs.
    pub partition: String,
    /// Each source bucket's Region, shared by every run of the process.
    pub bucket_regions: Arc<BucketRegions>,
}

/// One account's session, opened once for the connector's life.
type SessionSlot = Arc<OnceCell<Result<SdkConfig, SeamError>>>;

/// [`SourceConnector`] over STS and S3: one session per reading account
/// (assumed once, the first time any of its buckets is asked for; a refusal
/// is remembered too, so an account out of reach is tried once per run), and
/// for each bucket an S3 source under the rate cap and the retries.
pub struct MemberConnector {
    audit: SdkConfig,
    access: MemberAccess,
    session_name: String,
    retry: RetryPolicy,
    cancel: CancellationToken,
    sessions: Mutex<BTreeMap<String, SessionSlot>>,
    /// Each reading account's S3 clients, one per Region its buckets are in.
    clients: Mutex<BTreeMap<String, Arc<RegionalClients>>>,
}

impl MemberConnector {
    /// Sessions are named after `run_id` (see [`session_name`]); requests are
    /// retried under `retry` until `cancel`.
    pub fn new(
        audit: &SdkConfig,
        access: MemberAccess,
        run_id: &str,
        retry: RetryPolicy,
        cancel: CancellationToken,
    ) -> MemberConnector {
        MemberConnector {
            audit: audit.clone(),
            access,
            session_name: session_name(run_id),
            retry,
            cancel,
            sessions: Mutex::new(BTreeMap::new()),
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    /// Reads sources of `account_id`: an assumed member role, or static
    /// credentials when configured (benchmarks against servers without STS).
    async fn session(&self, account_id: &str) -> Result<SdkConfig, SeamError> {
        if let Some((key, secret)) = &self.access.static_credentials {
            return Ok(static_source_config(&self.audit, key, secret));
        }
        let slot = {
            let mut sessions = self
                .sessions
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            sessions.entry(account_id.to_string()).or_default().clone()
        };
        slot.get_or_init(|| async {
            let request = RoleRequest {
                partition: &self.access.partition,
                account_id,
                role_name: &self.access.role_name,
                external_id: &self.access.external_id,
                session_name: &self.session_name,
                session_duration: self.access.session_duration,
            };
            assume_member_role(&self.audit, &request, &self.retry, &self.cancel).await
        })
        .await
        .clone()
    }
}

#[async_trait]
impl SourceConnector for MemberConnector {
    async fn source(
        &self,
        reader_account_id: &str,
        bucket: &str,
    ) -> Result<Arc<dyn TrailSource>, SeamError> {
        let config = self.session(reader_account_id).await?;
        let regional = {
            let mut clients = self
                .clients
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            clients
                .entry(reader_account_id.to_string())
                .or_insert_with(|| Arc::new(RegionalClients::new(&config, self.access.path_style)))
                .clone()
        };
        // The bucket's own Region (HeadBucket with this session, once per
        // process): the archive and the sources may each be elsewhere.
        let client = regional
            .for_bucket(&self.access.bucket_regions, bucket)
            .await;
        // The reading account owns the bucket it reads (the member's own
        // bucket, or the organization bucket of the configured reader);
        // static credentials name no account.
        let expected_owner = self
            .access
            .static_credentials
            .is_none()
            .then_some(reader_account_id);
        let mut source: Arc<dyn TrailSource> =
            Arc::new(S3Source::new(client, bucket, expected_owner));
        // The cap applies per attempt, under the retries.
        if let Some(limiter) = RateLimiter::per_second(self.access.requests_per_second) {
            source = Arc::new(RateLimitedSource::new(source, limiter));
        }
        Ok(Arc::new(RetryingSource::new(
            source,
            self.retry.clone(),
            self.cancel.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::scripted_http::{query_error, reply, Reply, ScriptedHttp};

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

    const ASSUMED: &str = "<AssumeRoleResponse><AssumeRoleResult><Credentials>\
        <AccessKeyId>ASIATEST</AccessKeyId><SecretAccessKey>secret</SecretAccessKey>\
        <SessionToken>token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>\
        </Credentials><AssumedRoleUser><AssumedRoleId>AROATEST:s</AssumedRoleId>\
        <Arn>arn:aws:sts::222233334444:assumed-role/TrailvaultReader/s</Arn>\
        </AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>";

    /// The member role through `http`, with the default retries.
    async fn assume(http: &ScriptedHttp) -> Result<SdkConfig, SeamError> {
        assume_member_role(
            &http.config().await,
            &request(),
            &RetryPolicy::default(),
            &CancellationToken::new(),
        )
        .await
    }

    fn request() -> RoleRequest<'static> {
        RoleRequest {
            partition: "aws",
            account_id: "222233334444",
            role_name: "TrailvaultReader",
            external_id: "x",
            session_name: "trailvault-test",
            session_duration: Duration::from_secs(3600),
        }
    }

    #[tokio::test]
    async fn a_throttled_assume_role_is_retried() {
        let http = ScriptedHttp::new(vec![
            query_error(400, "Throttling"),
            Reply::ConnectionReset,
            reply(200, ASSUMED),
        ]);
        assume(&http).await.unwrap();
        assert_eq!(http.requests(), 3);
    }

    #[tokio::test]
    async fn a_refused_role_is_not_retried_and_keeps_its_message() {
        let http = ScriptedHttp::new(vec![query_error(403, "AccessDenied")]);
        let error = assume(&http).await.unwrap_err();
        let SeamError::AccessDenied(message) = &error else {
            panic!("{error:?}");
        };
        assert!(
            message.starts_with("AssumeRole arn:aws:iam::222233334444:role/TrailvaultReader: "),
            "{message}"
        );
        assert!(message.contains("scripted AccessDenied"), "{message}");
        assert_eq!(http.requests(), 1);
    }

    #[test]
    fn sts_errors_are_classified_by_the_shared_classifier() {
        use aws_smithy_runtime_api::http::StatusCode;
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;

        type Expectation = fn(&SeamError) -> bool;
        let cases: [(&str, u16, Expectation); 5] = [
            ("Throttling", 400, |e| matches!(e, SeamError::Throttled(_))),
            ("InternalFailure", 500, |e| {
                matches!(e, SeamError::Transient(_))
            }),
            ("AccessDenied", 403, |e| {
                matches!(e, SeamError::AccessDenied(_))
            }),
            ("RegionDisabledException", 403, |e| {
                matches!(e, SeamError::AccessDenied(_))
            }),
            ("ValidationError", 400, |e| {
                matches!(e, SeamError::Permanent(_))
            }),
        ];
        for (code, status, expected) in cases {
            let sts_error = SdkError::service_error(
                AssumeRoleError::generic(ErrorMetadata::builder().code(code).build()),
                HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty()),
            );
            let error = classify_assume_role_error(
                "arn:aws:iam::1:role/r",
                &CredentialsError::provider_error(sts_error),
            );
            assert!(expected(&error), "{code} {status} -> {error:?}");
            assert!(error
                .to_string()
                .contains("AssumeRole arn:aws:iam::1:role/r: "));
        }
        let timed_out = classify_assume_role_error(
            "arn:aws:iam::1:role/r",
            &CredentialsError::provider_timed_out(Duration::from_secs(5)),
        );
        assert!(timed_out.is_retryable(), "{timed_out:?}");
    }

    #[test]
    fn role_arns_name_the_member_account() {
        assert_eq!(
            role_arn("aws", "222233334444", "TrailvaultReader"),
            "arn:aws:iam::222233334444:role/TrailvaultReader"
        );
        assert_eq!(
            role_arn("aws-us-gov", "222233334444", "TrailvaultReader"),
            "arn:aws-us-gov:iam::222233334444:role/TrailvaultReader"
        );
    }
}
