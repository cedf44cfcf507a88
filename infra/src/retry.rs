//! The one place that retries: jittered exponential backoff (the `backoff`
//! crate) with an attempt cap, a total-time budget and cancellation, applied
//! to the seams as decorators. The SDK itself makes a single attempt per call
//! (see [`crate::aws::sdk_retry_config`]), so the two never multiply.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backoff::ExponentialBackoffBuilder;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use trailvault_pipeline::copy::meta;
use trailvault_pipeline::seams::{
    Archive, ArchivedHead, BucketOwnership, BucketProtection, ByteStream, ListedObject,
    ListingPage, LockMode, ObjectMeta, PutSpec, SourceObject, TrailSource, UploadedPart,
    VersionMarker, VersionsPage,
};
use trailvault_pipeline::SeamError;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_interval: Duration,
    pub max_interval: Duration,
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            // 10: at a 20% failure rate (measured through the fault proxy) one request
            // in ten million exhausts them; 6 left one a run in ~15 failing.
            max_attempts: 10,
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

/// How one attempt of a request ended, as told to the [`RetryObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// It succeeded.
    Ok,
    /// It failed transiently and is tried again.
    Retried,
    /// It failed for good: permanently, or out of attempts or time.
    Failed,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::Retried => "retried",
            AttemptOutcome::Failed => "failed",
        }
    }
}

/// Told about every attempt [`retry_named`] makes (the daemon's metrics).
pub trait RetryObserver: Send + Sync {
    fn attempt(&self, operation: &'static str, outcome: AttemptOutcome);
}

static OBSERVER: std::sync::OnceLock<Arc<dyn RetryObserver>> = std::sync::OnceLock::new();

/// Installs the process's retry observer; `false` when one already is (the
/// first one stays).
pub fn observe_retries(observer: Arc<dyn RetryObserver>) -> bool {
    OBSERVER.set(observer).is_ok()
}

fn observed(operation: &'static str, outcome: AttemptOutcome) {
    if let Some(observer) = OBSERVER.get() {
        observer.attempt(operation, outcome);
    }
}

/// Runs `operation` until it succeeds, fails permanently, runs out of
/// attempts or time, or `cancel` fires.
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    operation: F,
) -> Result<T, SeamError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, SeamError>>,
{
    retry_named("other", policy, cancel, operation).await
}

/// [`retry`], each attempt told to the [`RetryObserver`] under `name` (an S3
/// operation name such as `PutObject`).
pub async fn retry_named<T, F, Fut>(
    name: &'static str,
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    mut operation: F,
) -> Result<T, SeamError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, SeamError>>,
{
    let attempts = AtomicU32::new(0);
    let backoff = ExponentialBackoffBuilder::new()
        .with_initial_interval(policy.initial_interval)
        .with_max_interval(policy.max_interval)
        .with_randomization_factor(0.5)
        .with_max_elapsed_time(Some(policy.max_elapsed))
        .build();
    let attempt_loop = backoff::future::retry(backoff, || {
        let attempt = attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let call = operation(attempt);
        async move {
            match call.await {
                Ok(value) => {
                    observed(name, AttemptOutcome::Ok);
                    Ok(value)
                }
                Err(error) if error.is_retryable() && attempt < policy.max_attempts => {
                    tracing::debug!(attempt, %error, "retrying after a transient failure");
                    observed(name, AttemptOutcome::Retried);
                    Err(backoff::Error::transient(error))
                }
                Err(error) => {
                    observed(name, AttemptOutcome::Failed);
                    Err(backoff::Error::permanent(error))
                }
            }
        }
    });
    tokio::select! {
        result = attempt_loop => result,
        () = cancel.cancelled() => Err(SeamError::Cancelled),
    }
}

/// Asks for the same object again: a whole new GET request.
type Refetch = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<SourceObject, SeamError>> + Send>> + Send + Sync,
>;

/// A GET whose body is read again, as a whole new request, when it breaks
/// mid-stream (a connection reset, a truncated answer, a stalled transfer cut
/// by the SDK's stalled-stream protection): the object is fetched again under
/// `policy` and `cancel`, the bytes already delivered are skipped, and the
/// reader sees one unbroken body. A new answer for another object (its ETag or
/// version differs: the key was overwritten meanwhile) ends the body with an
/// error instead; so does running out of attempts or time.
pub async fn get_resuming(
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    refetch: Refetch,
) -> Result<SourceObject, SeamError> {
    let first = retry_named("GetObject", policy, cancel, |_| refetch()).await?;
    let body = resuming_body(
        first.body,
        first.meta.clone(),
        refetch,
        policy.clone(),
        cancel.clone(),
    );
    Ok(SourceObject {
        meta: first.meta,
        body,
    })
}

struct Resuming {
    body: ByteStream,
    expected: ObjectMeta,
    refetch: Refetch,
    policy: RetryPolicy,
    cancel: CancellationToken,
    /// Bytes handed to the reader so far.
    delivered: u64,
    /// Bytes of the current answer still to drop (already delivered from an
    /// earlier one).
    skip: u64,
    /// Body restarts so far.
    restarts: u32,
    started: std::time::Instant,
}

fn resuming_body(
    body: ByteStream,
    expected: ObjectMeta,
    refetch: Refetch,
    policy: RetryPolicy,
    cancel: CancellationToken,
) -> ByteStream {
    let state = Resuming {
        body,
        expected,
        refetch,
        policy,
        cancel,
        delivered: 0,
        skip: 0,
        restarts: 0,
        started: std::time::Instant::now(),
    };
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        loop {
            match state.body.next().await {
                // A body read again that ends before the bytes already
                // delivered is not the same body: never a silent short read.
                None if state.skip > 0 => {
                    return Some((
                        Err(SeamError::Transient(format!(
                            "read again, the body ended {} bytes before where it broke",
                            state.skip
                        ))),
                        None,
                    ));
                }
                None => return None,
                Some(Ok(mut chunk)) => {
                    if state.skip > 0 {
                        let dropped = state.skip.min(chunk.len() as u64);
                        state.skip -= dropped;
                        chunk = chunk.slice(dropped as usize..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    state.delivered += chunk.len() as u64;
                    return Some((Ok(chunk), Some(state)));
                }
                Some(Err(error)) => {
                    let out_of_budget = state.restarts + 1 >= state.policy.max_attempts
                        || state.started.elapsed() >= state.policy.max_elapsed;
                    if !error.is_retryable() || out_of_budget {
                        return Some((Err(error), None));
                    }
                    state.restarts += 1;
                    tracing::debug!(
                        restart = state.restarts,
                        delivered = state.delivered,
                        %error,
                        "reading a body again after it broke"
                    );
                    let wait = state
                        .policy
                        .initial_interval
                        .saturating_mul(1 << state.restarts.min(16))
                        .min(state.policy.max_interval);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = state.cancel.cancelled() => {
                            return Some((Err(SeamError::Cancelled), None));
                        }
                    }
                    let refetch = state.refetch.clone();
                    let again = match retry(&state.policy, &state.cancel, |_| refetch()).await {
                        Ok(again) => again,
                        Err(again_error) => return Some((Err(again_error), None)),
                    };
                    if again.meta.etag != state.expected.etag
                        || again.meta.version_id != state.expected.version_id
                        || again.meta.size != state.expected.size
                    {
                        return Some((
                            Err(SeamError::Transient(format!(
                                "{error}; read again, the object had changed (ETag {} -> {})",
                                state.expected.etag, again.meta.etag
                            ))),
                            None,
                        ));
                    }
                    state.body = again.body;
                    state.skip = state.delivered;
                }
            }
        }
    }))
}

/// A [`TrailSource`] whose calls are retried.
pub struct RetryingSource {
    inner: Arc<dyn TrailSource>,
    policy: RetryPolicy,
    cancel: CancellationToken,
}

impl RetryingSource {
    pub fn new(
        inner: Arc<dyn TrailSource>,
        policy: RetryPolicy,
        cancel: CancellationToken,
    ) -> RetryingSource {
        RetryingSource {
            inner,
            policy,
            cancel,
        }
    }
}

#[async_trait]
impl TrailSource for RetryingSource {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    /// Each page is one request, retried on its own.
    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListingPage<ListedObject>, SeamError> {
        retry_named("ListObjectsV2", &self.policy, &self.cancel, |_| {
            self.inner.list_page(prefix, continuation.clone())
        })
        .await
    }

    async fn list_folders_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListingPage<String>, SeamError> {
        retry_named("ListObjectsV2", &self.policy, &self.cancel, |_| {
            self.inner.list_folders_page(prefix, continuation.clone())
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<ListedObject>, SeamError> {
        retry_named("HeadObject", &self.policy, &self.cancel, |_| {
            self.inner.head(key)
        })
        .await
    }

    /// Retries the request, and a body that breaks mid-stream as a whole new
    /// request ([`get_resuming`]). What no request retry can mend (the
    /// object changed meanwhile, attempts or time ran out) is left to the copy
    /// stage, which restarts the whole object.
    async fn get(&self, key: &str) -> Result<SourceObject, SeamError> {
        let inner = self.inner.clone();
        let key = key.to_string();
        let refetch: Refetch = Arc::new(move || {
            let inner = inner.clone();
            let key = key.clone();
            Box::pin(async move { inner.get(&key).await })
        });
        get_resuming(&self.policy, &self.cancel, refetch).await
    }

    /// Retried like every call: `DeleteObject` is idempotent (deleting a key
    /// that is already gone succeeds).
    async fn delete(&self, key: &str) -> Result<(), SeamError> {
        retry_named("DeleteObject", &self.policy, &self.cancel, |_| {
            self.inner.delete(key)
        })
        .await
    }

    async fn ownership(&self) -> Result<BucketOwnership, SeamError> {
        retry(&self.policy, &self.cancel, |_| self.inner.ownership()).await
    }
}

/// An [`Archive`] whose calls are retried. A PUT is retried only after
/// checking that the failed attempt did not land after all, so a timeout never
/// produces a second archive version.
pub struct RetryingArchive {
    inner: Arc<dyn Archive>,
    policy: RetryPolicy,
    cancel: CancellationToken,
}

impl RetryingArchive {
    pub fn new(
        inner: Arc<dyn Archive>,
        policy: RetryPolicy,
        cancel: CancellationToken,
    ) -> RetryingArchive {
        RetryingArchive {
            inner,
            policy,
            cancel,
        }
    }
}

#[async_trait]
impl Archive for RetryingArchive {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    async fn put(
        &self,
        spec: &PutSpec,
        body: Bytes,
        sha256: [u8; 32],
    ) -> Result<Option<String>, SeamError> {
        let expected_checksum = trailvault_pipeline::copy::expected_checksum(&sha256, &[]);
        retry_named("PutObject", &self.policy, &self.cancel, |attempt| {
            let body = body.clone();
            let expected_checksum = expected_checksum.clone();
            async move {
                if attempt > 1 {
                    if let Some(head) = self.inner.head(&spec.key, None).await? {
                        let same_source = head.metadata.get(meta::SOURCE_ETAG)
                            == spec.metadata.get(meta::SOURCE_ETAG)
                            && head.metadata.get(meta::COPIED_AT)
                                == spec.metadata.get(meta::COPIED_AT);
                        if same_source
                            && head.checksum_sha256.as_deref() == Some(expected_checksum.as_str())
                        {
                            return Ok(head.version_id);
                        }
                    }
                }
                self.inner.put(spec, body, sha256).await
            }
        })
        .await
    }

    async fn create_multipart(&self, spec: &PutSpec) -> Result<String, SeamError> {
        retry_named("CreateMultipartUpload", &self.policy, &self.cancel, |_| {
            self.inner.create_multipart(spec)
        })
        .await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
        sha256: [u8; 32],
    ) -> Result<UploadedPart, SeamError> {
        retry_named("UploadPart", &self.policy, &self.cancel, |_| {
            self.inner
                .upload_part(key, upload_id, part_number, body.clone(), sha256)
        })
        .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<Option<String>, SeamError> {
        retry_named(
            "CompleteMultipartUpload",
            &self.policy,
            &self.cancel,
            |_| self.inner.complete_multipart(key, upload_id, parts),
        )
        .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), SeamError> {
        retry_named("AbortMultipartUpload", &self.policy, &self.cancel, |_| {
            self.inner.abort_multipart(key, upload_id)
        })
        .await
    }

    async fn head(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ArchivedHead>, SeamError> {
        retry_named("HeadObject", &self.policy, &self.cancel, |_| {
            self.inner.head(key, version_id)
        })
        .await
    }

    /// Retries the request, and a body that breaks mid-stream as a whole new
    /// request for the same version ([`get_resuming`]).
    async fn get(&self, key: &str, version_id: Option<&str>) -> Result<SourceObject, SeamError> {
        let first_version: Arc<std::sync::Mutex<Option<String>>> =
            Arc::new(std::sync::Mutex::new(version_id.map(str::to_string)));
        let inner = self.inner.clone();
        let key = key.to_string();
        let version = first_version.clone();
        let refetch: Refetch = Arc::new(move || {
            let inner = inner.clone();
            let key = key.clone();
            let version = version.clone();
            Box::pin(async move {
                let asked = version.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let object = inner.get(&key, asked.as_deref()).await?;
                // Read again, it must be the version first read, even if a
                // newer one was written meanwhile.
                let mut pinned = version.lock().unwrap_or_else(|p| p.into_inner());
                if pinned.is_none() {
                    pinned.clone_from(&object.meta.version_id);
                }
                Ok(object)
            })
        });
        get_resuming(&self.policy, &self.cancel, refetch).await
    }

    async fn list_versions_page(
        &self,
        prefix: &str,
        marker: Option<VersionMarker>,
    ) -> Result<VersionsPage, SeamError> {
        retry_named("ListObjectVersions", &self.policy, &self.cancel, |_| {
            self.inner.list_versions_page(prefix, marker.clone())
        })
        .await
    }

    async fn put_retention(
        &self,
        key: &str,
        version_id: &str,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<(), SeamError> {
        retry_named("PutObjectRetention", &self.policy, &self.cancel, |_| {
            self.inner.put_retention(key, version_id, mode, until)
        })
        .await
    }

    async fn protection(&self) -> Result<BucketProtection, SeamError> {
        retry_named("GetBucketProtection", &self.policy, &self.cancel, |_| {
            self.inner.protection()
        })
        .await
    }
}

/// An HTTP client for SDK clients in tests: it answers each request with the
/// next scripted reply and counts the requests, so a test can throttle the
/// first attempt of a real SDK call and see it retried, without a network.
#[cfg(test)]
pub(crate) mod scripted_http {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_credential_types::Credentials;
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
        SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    #[derive(Debug, Clone)]
    pub(crate) enum Reply {
        Http { status: u16, body: String },
        ConnectionReset,
    }

    pub(crate) fn reply(status: u16, body: &str) -> Reply {
        Reply::Http {
            status,
            body: body.to_string(),
        }
    }

    /// An awsJson error body (Organizations, CloudTrail, KMS).
    pub(crate) fn json_error(status: u16, code: &str) -> Reply {
        reply(
            status,
            &format!(r#"{{"__type":"{code}","message":"scripted {code}"}}"#),
        )
    }

    /// An awsQuery error body (STS, SNS).
    pub(crate) fn query_error(status: u16, code: &str) -> Reply {
        reply(
            status,
            &format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
                 <Message>scripted {code}</Message></Error><RequestId>r</RequestId></ErrorResponse>"
            ),
        )
    }

    /// A request as received: its URI and its headers (names lowercase).
    pub(crate) type SeenRequest = (String, Vec<(String, String)>);

    #[derive(Clone, Debug)]
    pub(crate) struct ScriptedHttp {
        replies: Arc<Mutex<VecDeque<Reply>>>,
        requests: Arc<AtomicU32>,
        bodies: Arc<Mutex<Vec<Vec<u8>>>>,
        /// The URI and headers of each request received, in order.
        seen: Arc<Mutex<Vec<SeenRequest>>>,
    }

    impl ScriptedHttp {
        pub(crate) fn new(replies: Vec<Reply>) -> ScriptedHttp {
            ScriptedHttp {
                replies: Arc::new(Mutex::new(replies.into())),
                requests: Arc::new(AtomicU32::new(0)),
                bodies: Arc::new(Mutex::new(Vec::new())),
                seen: Arc::new(Mutex::new(Vec::new())),
            }
        }

        /// The URI and headers (names lowercase) of each request received.
        pub(crate) fn seen(&self) -> Vec<SeenRequest> {
            self.seen.lock().unwrap().clone()
        }

        /// The body of each request received, in order (empty when streamed).
        pub(crate) fn bodies(&self) -> Vec<Vec<u8>> {
            self.bodies.lock().unwrap().clone()
        }

        pub(crate) fn requests(&self) -> u32 {
            self.requests.load(Ordering::Relaxed)
        }

        /// A configuration like the audit identity's (one SDK attempt per
        /// call, host environment ignored) that sends every request here.
        pub(crate) async fn config(&self) -> SdkConfig {
            aws_config::defaults(BehaviorVersion::latest())
                .empty_test_environment()
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new(
                    "AKIDTEST", "secret", None, None, "scripted",
                ))
                .retry_config(crate::aws::sdk_retry_config())
                .http_client(SharedHttpClient::new(self.clone()))
                .load()
                .await
        }
    }

    impl HttpClient for ScriptedHttp {
        fn http_connector(
            &self,
            _settings: &HttpConnectorSettings,
            _components: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(self.clone())
        }
    }

    impl HttpConnector for ScriptedHttp {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let body = request
                .body()
                .bytes()
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            self.bodies.lock().unwrap().push(body);
            let headers = request
                .headers()
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
                .collect();
            self.seen
                .lock()
                .unwrap()
                .push((request.uri().to_string(), headers));
            let next = self.replies.lock().unwrap().pop_front();
            let result = match next {
                Some(Reply::Http { status, body }) => Ok(HttpResponse::new(
                    StatusCode::try_from(status).expect("a valid status"),
                    SdkBody::from(body),
                )),
                Some(Reply::ConnectionReset) => Err(ConnectorError::io(Box::new(
                    std::io::Error::from(std::io::ErrorKind::ConnectionReset),
                ))),
                // A permanent error, so an unexpected extra attempt shows in the count.
                None => Ok(HttpResponse::new(
                    StatusCode::try_from(400).expect("a valid status"),
                    SdkBody::from(r#"{"__type":"ScriptExhausted"}"#),
                )),
            };
            HttpConnectorFuture::ready(result)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_interval: Duration::from_millis(1),
            max_interval: Duration::from_millis(5),
            max_elapsed: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let calls = Mutex::new(0);
        let result = retry(&fast(), &CancellationToken::new(), |_| {
            let mut calls = calls.lock().unwrap();
            *calls += 1;
            let n = *calls;
            async move {
                if n < 3 {
                    Err(SeamError::Throttled("SlowDown".into()))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(3));
    }

    /// Records the attempts of one operation name.
    struct Recorder(Mutex<Vec<(&'static str, AttemptOutcome)>>);

    impl RetryObserver for Recorder {
        fn attempt(&self, operation: &'static str, outcome: AttemptOutcome) {
            self.0.lock().unwrap().push((operation, outcome));
        }
    }

    #[tokio::test]
    async fn the_observer_is_told_every_attempt_and_how_it_ended() {
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        assert!(
            observe_retries(recorder.clone()),
            "the first observer is installed"
        );
        assert!(!observe_retries(recorder.clone()), "the first one stays");
        let calls = Mutex::new(0);
        let result = retry_named("TestFlaky", &fast(), &CancellationToken::new(), |_| {
            let mut calls = calls.lock().unwrap();
            *calls += 1;
            let n = *calls;
            async move {
                if n < 3 {
                    Err(SeamError::Transient("reset".into()))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(3));
        let denied: Result<(), _> = retry_named(
            "TestDenied",
            &fast(),
            &CancellationToken::new(),
            |_| async { Err(SeamError::AccessDenied("no".into())) },
        )
        .await;
        assert!(denied.is_err());
        let seen: Vec<_> = recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(operation, _)| operation.starts_with("Test"))
            .copied()
            .collect();
        assert_eq!(
            seen,
            vec![
                ("TestFlaky", AttemptOutcome::Retried),
                ("TestFlaky", AttemptOutcome::Retried),
                ("TestFlaky", AttemptOutcome::Ok),
                ("TestDenied", AttemptOutcome::Failed),
            ]
        );
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let calls = Mutex::new(0);
        let result: Result<(), _> = retry(&fast(), &CancellationToken::new(), |_| {
            *calls.lock().unwrap() += 1;
            async { Err(SeamError::AccessDenied("no".into())) }
        })
        .await;
        assert_eq!(result, Err(SeamError::AccessDenied("no".into())));
        assert_eq!(*calls.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn attempts_are_capped() {
        let calls = Mutex::new(0);
        let result: Result<(), _> = retry(&fast(), &CancellationToken::new(), |_| {
            *calls.lock().unwrap() += 1;
            async { Err(SeamError::Transient("reset".into())) }
        })
        .await;
        assert!(matches!(result, Err(SeamError::Transient(_))));
        assert_eq!(*calls.lock().unwrap(), 4);
    }

    #[tokio::test]
    async fn source_deletes_are_forwarded_and_retried_only_when_transient() {
        use trailvault_pipeline::testsuite::memory::MemorySource;

        let memory = Arc::new(MemorySource::new("trail-bucket"));
        memory.put("AWSLogs/a.json.gz", &b"x"[..], &[]);
        let source = RetryingSource::new(memory.clone(), fast(), CancellationToken::new());
        memory.fail_deletes(SeamError::Transient("reset".into()));
        assert!(matches!(
            source.delete("AWSLogs/a.json.gz").await,
            Err(SeamError::Transient(_))
        ));
        assert_eq!(memory.deletes.load(Ordering::Relaxed), 4);
        memory.fail_deletes(SeamError::AccessDenied("DeleteObject".into()));
        assert!(matches!(
            source.delete("AWSLogs/a.json.gz").await,
            Err(SeamError::AccessDenied(_))
        ));
        assert_eq!(memory.deletes.load(Ordering::Relaxed), 5, "not retried");
        memory.clear_failures();
        source.delete("AWSLogs/a.json.gz").await.unwrap();
        assert!(memory.keys().is_empty());
        // Deleting what is gone succeeds, as S3 does.
        source.delete("AWSLogs/a.json.gz").await.unwrap();
    }

    /// A source whose GETs of one object break after `break_after` bytes for
    /// the first `breaking_reads` reads; from read `changed_from` on it
    /// answers another ETag (the key overwritten).
    struct FlakyBodies {
        body: Bytes,
        break_after: usize,
        breaking_reads: u32,
        changed_from: u32,
        reads: AtomicU32,
    }

    #[async_trait]
    impl TrailSource for FlakyBodies {
        fn bucket(&self) -> &str {
            "flaky"
        }
        async fn list_page(
            &self,
            _prefix: &str,
            _continuation: Option<String>,
        ) -> Result<ListingPage<ListedObject>, SeamError> {
            unimplemented!("not listed")
        }
        async fn list_folders_page(
            &self,
            _prefix: &str,
            _continuation: Option<String>,
        ) -> Result<ListingPage<String>, SeamError> {
            unimplemented!("not listed")
        }
        async fn get(&self, _key: &str) -> Result<SourceObject, SeamError> {
            let read = self.reads.fetch_add(1, Ordering::Relaxed) + 1;
            let etag = if read >= self.changed_from {
                "new"
            } else {
                "old"
            };
            // Small chunks, so a break falls inside one and skipping must split it.
            let chunks: Vec<Result<Bytes, SeamError>> = if read <= self.breaking_reads {
                let mut chunks: Vec<_> = self.body[..self.break_after]
                    .chunks(7)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                chunks.push(Err(SeamError::Transient("body: streaming error".into())));
                chunks
            } else {
                self.body
                    .chunks(7)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect()
            };
            Ok(SourceObject {
                meta: ObjectMeta {
                    size: self.body.len() as u64,
                    etag: etag.into(),
                    ..ObjectMeta::default()
                },
                body: Box::pin(futures::stream::iter(chunks)),
            })
        }
        async fn delete(&self, _key: &str) -> Result<(), SeamError> {
            unimplemented!("not deleted")
        }
    }

    fn flaky(break_after: usize, breaking_reads: u32, changed_from: u32) -> Arc<FlakyBodies> {
        Arc::new(FlakyBodies {
            body: Bytes::from((0..=255u8).cycle().take(1000).collect::<Vec<u8>>()),
            break_after,
            breaking_reads,
            changed_from,
            reads: AtomicU32::new(0),
        })
    }

    async fn read_all(object: SourceObject) -> Result<Vec<u8>, SeamError> {
        let mut body = object.body;
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_body_broken_mid_stream_is_read_again_and_continues_where_it_broke() {
        let inner = flaky(333, 2, u32::MAX);
        let source = RetryingSource::new(inner.clone(), fast(), CancellationToken::new());
        let object = source.get("k").await.unwrap();
        assert_eq!(read_all(object).await.unwrap(), inner.body.to_vec());
        assert_eq!(
            inner.reads.load(Ordering::Relaxed),
            3,
            "two broken reads, then a whole one"
        );
    }

    #[tokio::test]
    async fn a_body_that_keeps_breaking_fails_after_the_attempt_cap() {
        let inner = flaky(100, u32::MAX, u32::MAX);
        let source = RetryingSource::new(inner.clone(), fast(), CancellationToken::new());
        let object = source.get("k").await.unwrap();
        let result = read_all(object).await;
        assert!(matches!(result, Err(SeamError::Transient(_))), "{result:?}");
        assert_eq!(inner.reads.load(Ordering::Relaxed), fast().max_attempts);
    }

    #[tokio::test]
    async fn a_body_read_again_from_a_changed_object_is_an_error_not_a_splice() {
        let inner = flaky(500, 1, 2);
        let source = RetryingSource::new(inner.clone(), fast(), CancellationToken::new());
        let object = source.get("k").await.unwrap();
        let result = read_all(object).await;
        match result {
            Err(SeamError::Transient(text)) => assert!(text.contains("changed"), "{text}"),
            other => panic!("expected a transient error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn cancellation_stops_the_wait() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let slow = RetryPolicy {
            initial_interval: Duration::from_secs(30),
            max_interval: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
            ..fast()
        };
        let result: Result<(), _> = retry(&slow, &cancel, |_| async {
            Err(SeamError::Transient("x".into()))
        })
        .await;
        assert_eq!(result, Err(SeamError::Cancelled));
    }
}
