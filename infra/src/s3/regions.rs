//! Every S3 request goes to the bucket's own Region: S3 answers a request
//! signed for another Region with a redirect (301 `PermanentRedirect`, 400
//! `AuthorizationHeaderMalformed`) that the SDK does not follow, so a trail
//! bucket or an archive outside `[aws] region` would fail.
//!
//! [`BucketRegions`] discovers each bucket's Region once per process with
//! HeadBucket — S3 names it in the `x-amz-bucket-region` header of the
//! answer, a 301 and a 403 alike — and remembers it; [`RegionalClients`]
//! keeps one S3 client per Region for one identity.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use aws_config::{Region, SdkConfig};
use aws_sdk_s3::Client;
use tracing::{debug, warn};

/// The header S3 names a bucket's Region in.
pub const BUCKET_REGION_HEADER: &str = "x-amz-bucket-region";

/// What a HeadBucket said about a bucket's Region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The bucket is in this Region.
    Region(String),
    /// S3 answered without naming a Region (an S3-compatible server): the
    /// default Region serves the bucket; remembered.
    Unnamed,
    /// No answer (a timeout, a dropped connection): the default Region for
    /// now, asked again next time.
    Failed(String),
}

/// A Region name as S3 may send it: lowercase letters, digits and dashes,
/// at most 32 characters. Anything else is not used to build a client.
pub fn region_from_header(value: Option<&str>) -> Option<String> {
    let value = value?.trim();
    let well_formed = !value.is_empty()
        && value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    well_formed.then(|| value.to_string())
}

/// Asks S3 for `bucket`'s Region with `client` (any Region will do).
pub async fn head_bucket_region(client: &Client, bucket: &str) -> Probe {
    match client.head_bucket().bucket(bucket).send().await {
        Ok(output) => match region_from_header(output.bucket_region()) {
            Some(region) => Probe::Region(region),
            None => Probe::Unnamed,
        },
        Err(error) => {
            let answer = error.raw_response().map(|response| {
                (
                    response.status().as_u16(),
                    region_from_header(response.headers().get(BUCKET_REGION_HEADER)),
                )
            });
            let detail =
                || aws_smithy_types::error::display::DisplayErrorContext(&error).to_string();
            probe_of_answer(answer, detail)
        }
    }
}

/// A HeadBucket error as a [`Probe`]: the Region when S3 named it (a 301,
/// 400 or 403 does); a throttled or failed answer (429, 5xx) or none at all
/// is [`Probe::Failed`], asked again later; any other answer without the
/// header (a 404, a server that never names Regions) is [`Probe::Unnamed`].
fn probe_of_answer(
    answer: Option<(u16, Option<String>)>,
    detail: impl FnOnce() -> String,
) -> Probe {
    match answer {
        Some((_, Some(region))) => Probe::Region(region),
        Some((status, None)) if status == 429 || status >= 500 => Probe::Failed(detail()),
        Some((_, None)) => Probe::Unnamed,
        None => Probe::Failed(detail()),
    }
}

/// Each bucket's Region, discovered once per process and shared by every
/// run and identity (a bucket's Region never changes while it exists).
#[derive(Debug)]
pub struct BucketRegions {
    default_region: String,
    known: Mutex<HashMap<String, String>>,
}

impl BucketRegions {
    /// `default_region` (`[aws] region`) serves a bucket whose Region S3
    /// does not name.
    pub fn new(default_region: &str) -> BucketRegions {
        BucketRegions {
            default_region: default_region.to_string(),
            known: Mutex::new(HashMap::new()),
        }
    }

    pub fn default_region(&self) -> &str {
        &self.default_region
    }

    /// The Region remembered for `bucket`, if any.
    pub fn cached(&self, bucket: &str) -> Option<String> {
        self.lock().get(bucket).cloned()
    }

    /// `bucket`'s Region: remembered, or found by `probe` (called only when
    /// not remembered) and remembered unless the probe got no answer.
    pub async fn region_of<F, Fut>(&self, bucket: &str, probe: F) -> String
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Probe>,
    {
        if let Some(region) = self.cached(bucket) {
            return region;
        }
        let region = match probe().await {
            Probe::Region(region) => region,
            Probe::Unnamed => self.default_region.clone(),
            Probe::Failed(error) => {
                warn!(bucket, %error, region = %self.default_region, "cannot discover the bucket's region; using the configured one for now");
                return self.default_region.clone();
            }
        };
        if region != self.default_region {
            debug!(bucket, region, "the bucket is in another region");
        }
        self.lock().insert(bucket.to_string(), region.clone());
        region
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// S3 clients of one identity, one per Region, built on first use (they share
/// the process's one HTTP connection pool).
pub struct RegionalClients {
    config: SdkConfig,
    path_style: bool,
    clients: Mutex<HashMap<String, Client>>,
}

impl RegionalClients {
    pub fn new(config: &SdkConfig, path_style: bool) -> RegionalClients {
        RegionalClients {
            config: config.clone(),
            path_style,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `region`.
    pub fn client(&self, region: &str) -> Client {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let config = self
                    .config
                    .to_builder()
                    .region(Region::new(region.to_string()))
                    .build();
                crate::aws::s3_client(&config, self.path_style)
            })
            .clone()
    }

    /// How many Regions have a client.
    pub fn len(&self) -> usize {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The client for `bucket`'s Region, discovering it (with the client of
    /// the default Region) when not known yet.
    pub async fn for_bucket(&self, regions: &BucketRegions, bucket: &str) -> Client {
        let region = regions
            .region_of(bucket, || async {
                head_bucket_region(&self.client(regions.default_region()), bucket).await
            })
            .await;
        self.client(&region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn only_well_formed_region_names_are_taken_from_the_header() {
        assert_eq!(
            region_from_header(Some("eu-west-1")),
            Some("eu-west-1".to_string())
        );
        assert_eq!(
            region_from_header(Some(" us-gov-west-1 ")),
            Some("us-gov-west-1".to_string())
        );
        for bad in ["", "EU-WEST-1", "eu.west.1", "evil.example.com/x", "a b"] {
            assert_eq!(region_from_header(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(region_from_header(Some(&"a".repeat(33))), None);
        assert_eq!(region_from_header(None), None);
    }

    #[test]
    fn only_answers_that_settle_the_region_are_remembered() {
        let detail = || "d".to_string();
        let named = Some("eu-west-1".to_string());
        assert_eq!(
            probe_of_answer(Some((301, named.clone())), detail),
            Probe::Region("eu-west-1".into())
        );
        assert_eq!(
            probe_of_answer(Some((403, named)), detail),
            Probe::Region("eu-west-1".into())
        );
        assert_eq!(probe_of_answer(Some((404, None)), detail), Probe::Unnamed);
        assert_eq!(probe_of_answer(Some((301, None)), detail), Probe::Unnamed);
        for status in [429, 500, 503] {
            assert_eq!(
                probe_of_answer(Some((status, None)), detail),
                Probe::Failed("d".into()),
                "{status}"
            );
        }
        assert_eq!(probe_of_answer(None, detail), Probe::Failed("d".into()));
    }

    #[tokio::test]
    async fn a_bucket_region_is_discovered_once_and_a_failed_probe_is_retried() {
        let regions = BucketRegions::new("us-east-1");
        let probes = AtomicU32::new(0);
        let probe = |answer: Probe| {
            probes.fetch_add(1, Ordering::Relaxed);
            async move { answer }
        };
        // Discovered, then remembered: no second probe.
        let first = regions
            .region_of("trail-eu", || probe(Probe::Region("eu-west-1".into())))
            .await;
        let again = regions
            .region_of("trail-eu", || probe(Probe::Region("ap-south-1".into())))
            .await;
        assert_eq!((first.as_str(), again.as_str()), ("eu-west-1", "eu-west-1"));
        assert_eq!(probes.load(Ordering::Relaxed), 1);
        // Each bucket has its own Region.
        let archive = regions
            .region_of("archive", || probe(Probe::Region("us-east-1".into())))
            .await;
        assert_eq!(archive, "us-east-1");
        // No answer: the default for now, and asked again next time.
        let failed = regions
            .region_of("flaky", || probe(Probe::Failed("timed out".into())))
            .await;
        assert_eq!(failed, "us-east-1");
        assert_eq!(regions.cached("flaky"), None);
        let later = regions
            .region_of("flaky", || probe(Probe::Region("eu-central-1".into())))
            .await;
        assert_eq!(later, "eu-central-1");
        // Answered without a Region: the default, remembered.
        let unnamed = regions.region_of("compat", || probe(Probe::Unnamed)).await;
        assert_eq!(unnamed, "us-east-1");
        assert_eq!(regions.cached("compat").as_deref(), Some("us-east-1"));
        assert_eq!(probes.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn one_client_per_region() {
        let http = crate::retry::scripted_http::ScriptedHttp::new(vec![]);
        let clients = RegionalClients::new(&http.config().await, true);
        let east = clients.client("us-east-1");
        let west = clients.client("eu-west-1");
        let _ = clients.client("eu-west-1");
        assert_eq!(clients.len(), 2);
        assert_eq!(
            east.config().region().map(|r| r.as_ref()),
            Some("us-east-1")
        );
        assert_eq!(
            west.config().region().map(|r| r.as_ref()),
            Some("eu-west-1")
        );
    }

    #[tokio::test]
    async fn a_redirect_without_a_region_header_falls_back_to_the_default() {
        // The scripted server answers 301 without headers: answered, unnamed.
        use crate::retry::scripted_http::{reply, ScriptedHttp};
        let http = ScriptedHttp::new(vec![reply(301, "")]);
        let clients = RegionalClients::new(&http.config().await, true);
        let regions = BucketRegions::new("us-east-1");
        let client = clients.for_bucket(&regions, "b").await;
        assert_eq!(
            client.config().region().map(|r| r.as_ref()),
            Some("us-east-1")
        );
        assert_eq!(regions.cached("b").as_deref(), Some("us-east-1"));
        assert_eq!(http.requests(), 1);
    }
}
