//! SDK configuration for the audit identity and the classification of SDK
//! errors into seam errors.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use trailvault_config::AwsSettings;
use trailvault_pipeline::SeamError;

/// The SDK makes one attempt per call: retries belong to [`crate::retry`],
/// which knows the whole operation (and can check the archive before
/// repeating a PUT). Two retry layers would multiply.
pub fn sdk_retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(1)
}

/// How long any one attempt may wait, from `[aws]`. A stalled attempt ends
/// in a timeout, which [`classify`] makes transient, so [`crate::retry`]
/// tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To open a connection.
    pub connect: Duration,
    /// Without a byte: until the first byte of an answer (the SDK's read
    /// timeout, which on an upload also covers sending the body), and while
    /// a body streams (stalled-stream protection).
    pub read: Duration,
    /// One attempt, up to the start of its answer's body.
    pub attempt: Duration,
    /// The slowest upload rate to wait for.
    pub upload_min_bytes_per_second: u64,
}

impl Timeouts {
    pub fn from_settings(settings: &AwsSettings) -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(u64::from(settings.connect_timeout_seconds)),
            read: Duration::from_secs(u64::from(settings.read_timeout_seconds)),
            attempt: Duration::from_secs(u64::from(settings.attempt_timeout_seconds)),
            upload_min_bytes_per_second: settings.upload_min_bytes_per_second.max(1),
        }
    }

    /// Every request but uploads: connect, first byte and attempt timeouts.
    pub fn sdk_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .read_timeout(self.read)
            .operation_attempt_timeout(self.attempt)
            .build()
    }

    /// An upload of `bytes`: the first byte of the answer comes only after the
    /// body was sent, so the read and attempt timeouts grow by the time the
    /// body takes at the slowest rate waited for. A stall while sending is
    /// still cut after `read` (stalled-stream protection).
    pub fn upload_sdk_config(&self, bytes: u64) -> TimeoutConfig {
        let sending = Duration::from_secs(bytes.div_ceil(self.upload_min_bytes_per_second));
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .read_timeout(self.read + sending)
            .operation_attempt_timeout(self.attempt + sending)
            .build()
    }

    /// Bodies that move no byte for `read` end in an error (downloads and
    /// uploads alike), which the seams' retry reads again.
    pub fn stalled_stream_protection(&self) -> StalledStreamProtectionConfig {
        StalledStreamProtectionConfig::enabled()
            .grace_period(self.read)
            .build()
    }
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts::from_settings(&AwsSettings::default())
    }
}

/// Configuration of the audit identity: credentials from the standard chain
/// (environment, profile, container or instance role), our region, endpoint,
/// retry and timeout settings.
pub async fn audit_config(settings: &AwsSettings) -> SdkConfig {
    let timeouts = Timeouts::from_settings(settings);
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(shared_http_client())
        .region(Region::new(settings.region.clone()))
        .retry_config(sdk_retry_config())
        .timeout_config(timeouts.sdk_config())
        .stalled_stream_protection(timeouts.stalled_stream_protection());
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// One HTTPS client (one connection pool) for every SDK client of the run.
/// Without it each service client builds its own: the member sessions' S3
/// clients would each keep a pool of idle connections, with their buffers, for
/// the whole run — memory that grows with the number of accounts. Built like
/// the SDK's default client (rustls on aws-lc, proxy settings from the
/// environment).
fn shared_http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::{tls, Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(move |settings, runtime_components| {
        let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = runtime_components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// An S3 client for `config`; path-style whenever an endpoint is overridden
/// (emulators and S3-compatible servers have no virtual-host DNS).
pub fn s3_client(config: &SdkConfig, path_style: bool) -> aws_sdk_s3::Client {
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(path_style)
        // trailvault hashes every body itself (raw and inflated SHA-256) and
        // compares with what it recorded; a second SDK-side pass is waste.
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

const THROTTLING_CODES: [&str; 8] = [
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "ProvisionedThroughputExceededException",
];

const NOT_FOUND_CODES: [&str; 6] = [
    "NoSuchKey",
    "NoSuchBucket",
    "NotFound",
    "NoSuchVersion",
    "NoSuchUpload",
    "NotFoundException",
];

/// Classifies a service error by its code and HTTP status.
pub fn classify_code(
    operation: &str,
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
) -> SeamError {
    let text = format!(
        "{operation}: {} {}",
        code.unwrap_or("error"),
        message.unwrap_or("")
    )
    .trim_end()
    .to_string();
    let code = code.unwrap_or("");
    if THROTTLING_CODES.contains(&code) || status == Some(429) || status == Some(503) {
        SeamError::Throttled(text)
    } else if code.starts_with("AccessDenied")
        || code == "AllAccessDisabled"
        || code == "InvalidAccessKeyId"
        || code == "SignatureDoesNotMatch"
        || status == Some(403)
    {
        SeamError::AccessDenied(text)
    } else if NOT_FOUND_CODES.contains(&code) || status == Some(404) {
        SeamError::NotFound(text)
    } else if code == "InternalError"
        || code == "ServiceUnavailable"
        || code == "RequestTimeout"
        || status.is_some_and(|s| s >= 500)
    {
        SeamError::Transient(text)
    } else {
        SeamError::Permanent(text)
    }
}

/// Classifies any SDK error. Timeouts and dispatch failures (connection
/// reset, refused) are transient; construction failures are permanent.
pub fn classify<E>(operation: &str, error: SdkError<E, HttpResponse>) -> SeamError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    classify_ref(operation, &error)
}

/// [`classify`] for an SDK error that is only borrowed, such as the STS error
/// inside the `CredentialsError` of a refused AssumeRole.
pub fn classify_ref<E>(operation: &str, error: &SdkError<E, HttpResponse>) -> SeamError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match error {
        SdkError::TimeoutError(_) => SeamError::Transient(format!("{operation}: timed out")),
        SdkError::DispatchFailure(failure) => {
            let detail = aws_smithy_types::error::display::DisplayErrorContext(error).to_string();
            if failure.is_user() && detail.contains("credentials") {
                // A credentials provider that failed (e.g. a refused AssumeRole on refresh).
                SeamError::AccessDenied(format!("{operation}: {detail}"))
            } else {
                SeamError::Transient(format!("{operation}: {detail}"))
            }
        }
        SdkError::ResponseError(_) => SeamError::Transient(format!(
            "{operation}: {}",
            aws_smithy_types::error::display::DisplayErrorContext(error)
        )),
        SdkError::ServiceError(service) => classify_code(
            operation,
            service.err().code(),
            service.err().message(),
            Some(service.raw().status().as_u16()),
        ),
        _ => SeamError::Permanent(format!(
            "{operation}: {}",
            aws_smithy_types::error::display::DisplayErrorContext(error)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_are_classified_by_code_then_status() {
        type Expectation = fn(&SeamError) -> bool;
        let cases: [(Option<&str>, Option<u16>, Expectation); 9] = [
            (Some("SlowDown"), Some(503), |e| {
                matches!(e, SeamError::Throttled(_))
            }),
            (Some("ThrottlingException"), Some(400), |e| {
                matches!(e, SeamError::Throttled(_))
            }),
            (Some("RequestLimitExceeded"), Some(400), |e| {
                matches!(e, SeamError::Throttled(_))
            }),
            (Some("AccessDenied"), Some(403), |e| {
                matches!(e, SeamError::AccessDenied(_))
            }),
            (None, Some(403), |e| matches!(e, SeamError::AccessDenied(_))),
            (Some("NoSuchBucket"), Some(404), |e| {
                matches!(e, SeamError::NotFound(_))
            }),
            (Some("InternalError"), Some(500), |e| {
                matches!(e, SeamError::Transient(_))
            }),
            (None, Some(502), |e| matches!(e, SeamError::Transient(_))),
            (Some("InvalidArgument"), Some(400), |e| {
                matches!(e, SeamError::Permanent(_))
            }),
        ];
        for (code, status, expected) in cases {
            let error = classify_code("op", code, Some("m"), status);
            assert!(expected(&error), "{code:?} {status:?} -> {error:?}");
        }
    }

    #[test]
    fn retryability_follows_classification() {
        assert!(classify_code("op", Some("SlowDown"), None, Some(503)).is_retryable());
        assert!(classify_code("op", None, None, Some(500)).is_retryable());
        assert!(!classify_code("op", Some("AccessDenied"), None, Some(403)).is_retryable());
        assert!(!classify_code("op", Some("NoSuchKey"), None, Some(404)).is_retryable());
    }
}
