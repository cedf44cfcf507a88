//! Builds every seam the binary needs from the configuration: the progress
//! store, the archive, member access to the sources, the organization's
//! account list, CloudTrail's public keys, the alert topic and event bus, and the archive
//! key's ARN. The only place that turns a [`Config`] into AWS clients.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use tokio_util::sync::CancellationToken;
use trailvault_config::Config;
use trailvault_pipeline::seams::{
    AccountDirectory, Archive, EventBus, NotificationQueue, Notifier, PublicKeyDirectory,
    SourceConnector,
};

use crate::events::EventBridgeBus;
use crate::organizations::OrganizationsClient;
use crate::public_keys::CloudTrailPublicKeys;
use crate::retry::{RetryPolicy, RetryingArchive};
use crate::s3::archive::S3Archive;
use crate::s3::regions::{BucketRegions, RegionalClients};
use crate::sessions::{MemberAccess, MemberConnector};
use crate::sns::SnsNotifier;
use crate::sqs::SqsQueue;
use crate::store::{OpenFailure, RedbStore, LOCK_WAIT};

/// The progress store could not be opened (it is missing, damaged, or held
/// by another trailvault process).
#[derive(Debug, thiserror::Error)]
#[error("opening the progress store at {}: {source}", path.display())]
pub struct OpenStoreError {
    pub path: PathBuf,
    pub source: OpenFailure,
}

impl OpenStoreError {
    /// The store is held by another process: a run is still in progress.
    pub fn held(&self) -> bool {
        self.source.held()
    }
}

/// Opens the progress store the configuration names.
pub fn open_store(config: &Config) -> Result<Arc<RedbStore>, OpenStoreError> {
    let path = &config.store.path;
    let store = RedbStore::try_open(path, LOCK_WAIT).map_err(|source| OpenStoreError {
        path: path.clone(),
        source,
    })?;
    Ok(Arc::new(store))
}

/// The outside world of one process, connected.
pub struct Connected {
    pub store: Arc<RedbStore>,
    /// The archive bucket, every call retried until the cancellation token.
    pub archive: Arc<dyn Archive>,
    pub accounts: Arc<dyn AccountDirectory>,
    pub public_keys: Arc<dyn PublicKeyDirectory>,
    /// The alert topic, when one is configured.
    pub notifier: Option<Arc<dyn Notifier>>,
    /// The event bus for findings, when one is configured.
    pub events: Option<Arc<dyn EventBus>>,
    /// Event-driven intake's queue (and its dead-letter queue), when
    /// `[intake] queue_url` is configured.
    pub queue: Option<Arc<dyn NotificationQueue>>,
    /// The archive KMS key as a full ARN when it could be resolved, else as
    /// configured.
    pub kms_key_arn: String,
    audit: SdkConfig,
    access: MemberAccess,
    retry: RetryPolicy,
    cancel: CancellationToken,
}

impl Connected {
    /// Member access for one run: sessions named after `run_id`, opened at
    /// most once each for the connector's life.
    pub fn source_connector(&self, run_id: &str) -> Arc<dyn SourceConnector> {
        Arc::new(MemberConnector::new(
            &self.audit,
            self.access.clone(),
            run_id,
            self.retry.clone(),
            self.cancel.clone(),
        ))
    }
}

/// Opens the store and builds the clients of the audit identity; `cancel`
/// abandons their retries. Resolves the archive key's ARN (one DescribeKey).
pub async fn connect(
    config: &Config,
    cancel: CancellationToken,
) -> Result<Connected, OpenStoreError> {
    let store = open_store(config)?;
    let audit = crate::aws::audit_config(&config.aws).await;
    let retry = RetryPolicy::default();
    let path_style = config.aws.endpoint_url.is_some();
    // Each bucket to its own Region: the archive's here, the sources' in
    // the member connector (see `s3::regions`).
    let bucket_regions = Arc::new(BucketRegions::new(&config.aws.region));
    let client = RegionalClients::new(&audit, path_style)
        .for_bucket(&bucket_regions, &config.archive.bucket)
        .await;
    let partition = crate::partition::resolve_partition(
        &audit,
        config.aws.partition.as_deref(),
        &config.aws.region,
    )
    .await;
    let archive: Arc<dyn Archive> = Arc::new(RetryingArchive::new(
        Arc::new(S3Archive::new(
            client,
            &config.archive.bucket,
            crate::aws::Timeouts::from_settings(&config.aws),
        )),
        retry.clone(),
        cancel.clone(),
    ));
    let kms_key_arn =
        crate::kms::resolve_kms_key(&audit, &config.archive.kms_key_id, &retry, &cancel).await;
    let accounts: Arc<dyn AccountDirectory> = Arc::new(OrganizationsClient::new(
        &audit,
        retry.clone(),
        cancel.clone(),
    ));
    let public_keys: Arc<dyn PublicKeyDirectory> = Arc::new(CloudTrailPublicKeys::new(
        &audit,
        retry.clone(),
        cancel.clone(),
    ));
    let notifier =
        config.alerts.sns_topic_arn.as_deref().map(|topic| {
            Arc::new(SnsNotifier::new(&audit, topic, retry.clone())) as Arc<dyn Notifier>
        });
    let events = config.alerts.event_bus.as_deref().map(|bus| {
        Arc::new(EventBridgeBus::new(&audit, bus, &partition, retry.clone())) as Arc<dyn EventBus>
    });
    let queue = match (
        &config.intake.queue_url,
        &config.intake.dead_letter_queue_url,
    ) {
        (Some(queue_url), Some(dead_letter_queue_url)) => Some(Arc::new(SqsQueue::new(
            &audit,
            queue_url,
            dead_letter_queue_url,
            retry.clone(),
            cancel.clone(),
        ))
            as Arc<dyn NotificationQueue>),
        _ => None,
    };
    let aws = &config.aws;
    let static_credentials = match (&aws.source_access_key_id, &aws.source_secret_access_key) {
        (Some(key), Some(secret)) => Some((key.clone(), secret.clone())),
        _ => None,
    };
    let access = MemberAccess {
        role_name: config.accounts.role_name.clone(),
        external_id: config.accounts.external_id.clone(),
        session_duration: Duration::from_secs(u64::from(config.accounts.session_duration_seconds)),
        static_credentials,
        path_style,
        requests_per_second: config.collect.source_requests_per_second,
        partition,
        bucket_regions,
    };
    Ok(Connected {
        store,
        archive,
        accounts,
        public_keys,
        notifier,
        events,
        queue,
        kms_key_arn,
        audit,
        access,
        retry,
        cancel,
    })
}
