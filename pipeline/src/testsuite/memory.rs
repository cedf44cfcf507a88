//! In-memory implementations of every seam, for unit tests of the stages (and
//! for anyone who wants to run a stage without a network). They behave like
//! the real services where the stages depend on it: versioned archive,
//! checksums, lock dates, prefix listings, deduplicated findings.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::cloudtrail::digest::sha256;
use crate::model::error::SeamError;
use crate::model::findings::Finding;
use crate::model::object::{ObjectRecord, SourceRef};
use crate::seams::{
    Archive, ArchivedHead, ArchivedVersion, BucketOwnership, BucketProtection, BusEvent, Clock,
    EntryOutcome, EventBus, ListedObject, ListingPage, LockMode, Notifier, ObjectMeta,
    ProgressStore, PutSpec, SourceObject, TrailSource, UploadedPart, MAX_EVENTS_PER_CALL,
    MAX_EVENT_BYTES,
};

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn chunked(body: Bytes, chunk: usize) -> crate::seams::ByteStream {
    let chunks: Vec<Result<Bytes, SeamError>> = (0..body.len().div_ceil(chunk.max(1)))
        .map(|i| Ok(body.slice(i * chunk..((i + 1) * chunk).min(body.len()))))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// Body and user metadata of one in-memory object.
type StoredObject = (Bytes, BTreeMap<String, String>);

/// A source bucket in memory. ETags are the hex MD5-like SHA-256 prefix of the body.
#[derive(Default)]
pub struct MemorySource {
    bucket: String,
    objects: Mutex<BTreeMap<String, StoredObject>>,
    /// Keys whose GET fails with this error (fault injection).
    failing: Mutex<BTreeMap<String, SeamError>>,
    /// Every `TrailSource::delete` fails with this error (fault injection:
    /// a member role without delete permission).
    failing_deletes: Mutex<Option<SeamError>>,
    /// Keys whose body breaks (a connection reset) after this many bytes.
    breaking: Mutex<BTreeMap<String, usize>>,
    /// Every listing fails with this error (fault injection).
    failing_lists: Mutex<Option<SeamError>>,
    /// Entries per listing page; 0 means 1,000, as S3.
    page_size: AtomicU64,
    pub gets: AtomicU64,
    /// Listing requests: one per page.
    pub lists: AtomicU64,
    /// `TrailSource::head` calls.
    pub heads: AtomicU64,
    /// `TrailSource::delete` calls, failed ones included.
    pub deletes: AtomicU64,
    /// What `TrailSource::ownership` answers; `None`: owned.
    ownership: Mutex<Option<BucketOwnership>>,
}

impl MemorySource {
    pub fn new(bucket: &str) -> MemorySource {
        MemorySource {
            bucket: bucket.to_string(),
            ..MemorySource::default()
        }
    }

    pub fn put(&self, key: &str, body: impl Into<Bytes>, metadata: &[(&str, &str)]) {
        let metadata = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        lock(&self.objects).insert(key.to_string(), (body.into(), metadata));
    }

    pub fn delete(&self, key: &str) {
        lock(&self.objects).remove(key);
    }

    /// What the ownership check answers from now on.
    pub fn set_ownership(&self, ownership: BucketOwnership) {
        *lock(&self.ownership) = Some(ownership);
    }

    pub fn fail_gets(&self, key: &str, error: SeamError) {
        lock(&self.failing).insert(key.to_string(), error);
    }

    pub fn clear_failures(&self) {
        lock(&self.failing).clear();
        *lock(&self.failing_deletes) = None;
    }

    /// Makes every listing fail with `error`.
    pub fn fail_lists(&self, error: SeamError) {
        *lock(&self.failing_lists) = Some(error);
    }

    /// Bodies of `key` break with a transient error after `after_bytes`.
    pub fn break_bodies(&self, key: &str, after_bytes: usize) {
        lock(&self.breaking).insert(key.to_string(), after_bytes);
    }

    /// Makes every `TrailSource::delete` fail with `error`.
    pub fn fail_deletes(&self, error: SeamError) {
        *lock(&self.failing_deletes) = Some(error);
    }

    /// Listing pages hold `entries` entries from now on (S3: 1,000).
    pub fn set_page_size(&self, entries: usize) {
        self.page_size.store(entries as u64, Ordering::Relaxed);
    }

    fn page_size(&self) -> usize {
        match self.page_size.load(Ordering::Relaxed) {
            0 => 1000,
            entries => entries as usize,
        }
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.objects).keys().cloned().collect()
    }

    fn etag(body: &[u8]) -> String {
        hex::encode(&sha256(body)[..16])
    }
}

#[async_trait]
impl TrailSource for MemorySource {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn ownership(&self) -> Result<BucketOwnership, SeamError> {
        Ok(lock(&self.ownership)
            .clone()
            .unwrap_or(BucketOwnership::Owned))
    }

    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListingPage<ListedObject>, SeamError> {
        self.lists.fetch_add(1, Ordering::Relaxed);
        if let Some(error) = lock(&self.failing_lists).clone() {
            return Err(error);
        }
        let page_size = self.page_size();
        let objects = lock(&self.objects);
        let start = match &continuation {
            Some(after) => Bound::Excluded(after.clone()),
            None => Bound::Included(prefix.to_string()),
        };
        let mut items: Vec<ListedObject> = objects
            .range((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(page_size + 1)
            .map(|(key, (body, _))| ListedObject {
                key: key.clone(),
                size: body.len() as u64,
                etag: MemorySource::etag(body),
            })
            .collect();
        let next = (items.len() > page_size).then(|| {
            items.truncate(page_size);
            items
                .last()
                .map(|object| object.key.clone())
                .unwrap_or_default()
        });
        Ok(ListingPage { items, next })
    }

    async fn head(&self, key: &str) -> Result<Option<ListedObject>, SeamError> {
        self.heads.fetch_add(1, Ordering::Relaxed);
        Ok(lock(&self.objects).get(key).map(|(body, _)| ListedObject {
            key: key.to_string(),
            size: body.len() as u64,
            etag: MemorySource::etag(body),
        }))
    }

    async fn list_folders_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListingPage<String>, SeamError> {
        self.lists.fetch_add(1, Ordering::Relaxed);
        if let Some(error) = lock(&self.failing_lists).clone() {
            return Err(error);
        }
        let page_size = self.page_size();
        let mut folders: Vec<String> = lock(&self.objects)
            .keys()
            .filter_map(|key| key.strip_prefix(prefix))
            .filter_map(|rest| {
                rest.split_once('/')
                    .map(|(folder, _)| format!("{prefix}{folder}/"))
            })
            .filter(|folder| continuation.as_ref().is_none_or(|after| folder > after))
            .collect();
        folders.dedup();
        folders.truncate(page_size + 1);
        let next = (folders.len() > page_size).then(|| {
            folders.truncate(page_size);
            folders.last().cloned().unwrap_or_default()
        });
        Ok(ListingPage {
            items: folders,
            next,
        })
    }

    async fn get(&self, key: &str) -> Result<SourceObject, SeamError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        if let Some(error) = lock(&self.failing).get(key) {
            return Err(error.clone());
        }
        let Some((body, metadata)) = lock(&self.objects).get(key).cloned() else {
            return Err(SeamError::NotFound(format!("{}/{key}", self.bucket)));
        };
        let meta = ObjectMeta {
            size: body.len() as u64,
            etag: MemorySource::etag(&body),
            version_id: None,
            metadata,
            content_type: Some("application/json".to_string()),
            content_encoding: Some("gzip".to_string()),
        };
        let body = match lock(&self.breaking).get(key) {
            Some(&after) => {
                let whole = body.slice(..after.min(body.len()));
                let reset = SeamError::Transient(format!("connection reset reading {key}"));
                Box::pin(futures::StreamExt::chain(
                    chunked(whole, 1000),
                    futures::stream::iter([Err(reset)]),
                ))
            }
            None => chunked(body, 1000),
        };
        Ok(SourceObject { meta, body })
    }

    async fn delete(&self, key: &str) -> Result<(), SeamError> {
        self.deletes.fetch_add(1, Ordering::Relaxed);
        if let Some(error) = lock(&self.failing_deletes).clone() {
            return Err(error);
        }
        lock(&self.objects).remove(key);
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct StoredVersion {
    version_id: String,
    body: Bytes,
    head: ArchivedHead,
}

#[derive(Default)]
struct MultipartState {
    spec: Option<PutSpec>,
    parts: BTreeMap<i32, (Bytes, String)>,
}

/// A versioned, object-locked archive bucket in memory.
pub struct MemoryArchive {
    bucket: String,
    versions: Mutex<BTreeMap<String, Vec<StoredVersion>>>,
    uploads: Mutex<BTreeMap<String, MultipartState>>,
    next_id: AtomicU64,
    /// Every PUT stores under this key id instead of the requested one, when set (fault injection).
    pub wrong_kms_key: Mutex<Option<String>>,
    pub protection: Mutex<BucketProtection>,
    pub puts: AtomicU64,
    pub heads: AtomicU64,
    pub gets: AtomicU64,
    /// Keys whose GET fails with a transient error (fault injection).
    failing_gets: Mutex<BTreeSet<String>>,
    /// Keys whose HEAD reports no Object Lock (fault injection).
    unlocked: Mutex<BTreeSet<String>>,
    /// This many HEADs that name a version (a copy's verification) fail with
    /// a transient error after the PUT landed (fault injection).
    pub failing_version_heads: AtomicU64,
    /// Every PutObjectRetention is refused, and counted, when set.
    pub refuse_retention: std::sync::atomic::AtomicBool,
    pub retention_refused: AtomicU64,
    /// Versions per listing page; 0 means 1,000, as S3.
    pub version_page_size: AtomicU64,
    /// Versions listing requests: one per page.
    pub version_pages: AtomicU64,
    /// Every versions listing page but the first fails, when set (fault injection).
    pub fail_later_version_pages: std::sync::atomic::AtomicBool,
}

impl MemoryArchive {
    pub fn new(bucket: &str) -> MemoryArchive {
        MemoryArchive {
            bucket: bucket.to_string(),
            versions: Mutex::default(),
            uploads: Mutex::default(),
            next_id: AtomicU64::new(1),
            wrong_kms_key: Mutex::new(None),
            protection: Mutex::new(BucketProtection {
                versioning_enabled: true,
                default_retention: Some((LockMode::Compliance, 1)),
                default_sse_kms_key: Some("key".to_string()),
                bucket_policy: Some(crate::seams::BucketPolicyGuards {
                    denies_object_deletion: true,
                    denies_weaker_lock_puts: true,
                    min_put_retention_days: Some(0),
                }),
                lifecycle: Some(crate::seams::Lifecycle {
                    abort_incomplete_multipart_days: Some(1),
                    noncurrent_expiration_days: None,
                    expiration_days: None,
                }),
            }),
            puts: AtomicU64::new(0),
            heads: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            failing_gets: Mutex::default(),
            unlocked: Mutex::default(),
            failing_version_heads: AtomicU64::new(0),
            refuse_retention: std::sync::atomic::AtomicBool::new(false),
            retention_refused: AtomicU64::new(0),
            version_page_size: AtomicU64::new(0),
            version_pages: AtomicU64::new(0),
            fail_later_version_pages: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// GETs of `key` fail with a transient error until [`Self::clear_failures`].
    pub fn fail_gets(&self, key: &str) {
        lock(&self.failing_gets).insert(key.to_string());
    }

    pub fn clear_failures(&self) {
        lock(&self.failing_gets).clear();
    }

    /// HEADs of `key` report no Object Lock, as for a version written without one.
    pub fn report_unlocked(&self, key: &str) {
        lock(&self.unlocked).insert(key.to_string());
    }

    /// Multipart uploads begun and neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        lock(&self.uploads).len()
    }

    /// Number of versions stored under `key`.
    pub fn version_count(&self, key: &str) -> usize {
        lock(&self.versions).get(key).map_or(0, Vec::len)
    }

    pub fn keys(&self) -> Vec<String> {
        lock(&self.versions).keys().cloned().collect()
    }

    pub fn latest_body(&self, key: &str) -> Option<Bytes> {
        lock(&self.versions)
            .get(key)
            .and_then(|v| v.last())
            .map(|v| v.body.clone())
    }

    pub fn latest_head(&self, key: &str) -> Option<ArchivedHead> {
        lock(&self.versions)
            .get(key)
            .and_then(|v| v.last())
            .map(|v| v.head.clone())
    }

    fn store(&self, spec: &PutSpec, body: Bytes, checksum: String) -> String {
        let version_id = format!("v{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let kms = lock(&self.wrong_kms_key)
            .clone()
            .unwrap_or_else(|| spec.kms_key_id.clone());
        let head = ArchivedHead {
            version_id: Some(version_id.clone()),
            size: body.len() as u64,
            checksum_sha256: Some(checksum),
            sse_kms_key_id: Some(kms),
            lock_mode: Some(spec.lock_mode),
            retain_until: Some(spec.retain_until),
            metadata: spec.metadata.clone(),
        };
        lock(&self.versions)
            .entry(spec.key.clone())
            .or_default()
            .push(StoredVersion {
                version_id: version_id.clone(),
                body,
                head,
            });
        version_id
    }

    fn find(&self, key: &str, version_id: Option<&str>) -> Option<StoredVersion> {
        let versions = lock(&self.versions);
        let list = versions.get(key)?;
        match version_id {
            Some(id) => list.iter().find(|v| v.version_id == id).cloned(),
            None => list.last().cloned(),
        }
    }
}

#[async_trait]
impl Archive for MemoryArchive {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(
        &self,
        spec: &PutSpec,
        body: Bytes,
        sha256_value: [u8; 32],
    ) -> Result<Option<String>, SeamError> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        if sha256(&body) != sha256_value {
            return Err(SeamError::Permanent(
                "BadDigest: checksum mismatch".to_string(),
            ));
        }
        let checksum = base64::engine::general_purpose::STANDARD.encode(sha256_value);
        Ok(Some(self.store(spec, body, checksum)))
    }

    async fn create_multipart(&self, spec: &PutSpec) -> Result<String, SeamError> {
        let upload_id = format!("u{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        lock(&self.uploads).insert(
            upload_id.clone(),
            MultipartState {
                spec: Some(spec.clone()),
                parts: BTreeMap::new(),
            },
        );
        Ok(upload_id)
    }

    async fn upload_part(
        &self,
        _key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
        sha256_value: [u8; 32],
    ) -> Result<UploadedPart, SeamError> {
        if sha256(&body) != sha256_value {
            return Err(SeamError::Permanent(
                "BadDigest: part checksum mismatch".to_string(),
            ));
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(sha256_value);
        let mut uploads = lock(&self.uploads);
        let state = uploads
            .get_mut(upload_id)
            .ok_or_else(|| SeamError::NotFound(format!("upload {upload_id}")))?;
        state.parts.insert(part_number, (body, encoded.clone()));
        Ok(UploadedPart {
            part_number,
            etag: format!("p{part_number}"),
            sha256_base64: encoded,
        })
    }

    async fn complete_multipart(
        &self,
        _key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<Option<String>, SeamError> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        let state = lock(&self.uploads)
            .remove(upload_id)
            .ok_or_else(|| SeamError::NotFound(format!("upload {upload_id}")))?;
        let spec = state
            .spec
            .ok_or_else(|| SeamError::Permanent("upload without spec".to_string()))?;
        let mut body = Vec::new();
        for part in parts {
            let (bytes, _) = state
                .parts
                .get(&part.part_number)
                .ok_or_else(|| SeamError::Permanent("unknown part".to_string()))?;
            body.extend_from_slice(bytes);
        }
        let checksum = crate::copy::expected_checksum(&[0; 32], parts);
        Ok(Some(self.store(&spec, Bytes::from(body), checksum)))
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<(), SeamError> {
        lock(&self.uploads).remove(upload_id);
        Ok(())
    }

    async fn head(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ArchivedHead>, SeamError> {
        self.heads.fetch_add(1, Ordering::Relaxed);
        if version_id.is_some()
            && self
                .failing_version_heads
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(SeamError::Transient(format!(
                "injected HEAD failure for {key}"
            )));
        }
        let unlocked = lock(&self.unlocked).contains(key);
        Ok(self.find(key, version_id).map(|version| {
            if unlocked {
                ArchivedHead {
                    lock_mode: None,
                    retain_until: None,
                    ..version.head
                }
            } else {
                version.head
            }
        }))
    }

    async fn get(&self, key: &str, version_id: Option<&str>) -> Result<SourceObject, SeamError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        if lock(&self.failing_gets).contains(key) {
            return Err(SeamError::Transient(format!("injected failure for {key}")));
        }
        let version = self
            .find(key, version_id)
            .ok_or_else(|| SeamError::NotFound(key.to_string()))?;
        let meta = ObjectMeta {
            size: version.body.len() as u64,
            etag: String::new(),
            version_id: Some(version.version_id.clone()),
            metadata: version.head.metadata.clone(),
            content_type: None,
            content_encoding: None,
        };
        Ok(SourceObject {
            meta,
            body: chunked(version.body, 4096),
        })
    }

    async fn list_versions_page(
        &self,
        prefix: &str,
        marker: Option<crate::seams::VersionMarker>,
    ) -> Result<crate::seams::VersionsPage, SeamError> {
        self.version_pages.fetch_add(1, Ordering::Relaxed);
        if marker.is_some() && self.fail_later_version_pages.load(Ordering::Relaxed) {
            return Err(SeamError::Transient(format!(
                "injected ListObjectVersions failure under {prefix}"
            )));
        }
        let page_size = match self.version_page_size.load(Ordering::Relaxed) {
            0 => 1000,
            size => size as usize,
        };
        let versions = lock(&self.versions);
        // Versions after the marker, in key order then listing order.
        let mut out = Vec::new();
        let mut next = None;
        let start = marker
            .as_ref()
            .map_or(Bound::Included(prefix.to_string()), |(key, _)| {
                Bound::Included(key.clone())
            });
        'keys: for (key, list) in versions
            .range::<String, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
        {
            let skip_to = match &marker {
                Some((marker_key, Some(version))) if marker_key == key => list
                    .iter()
                    .position(|v| &v.version_id == version)
                    .map_or(list.len(), |at| at + 1),
                Some((marker_key, None)) if marker_key == key => list.len(),
                _ => 0,
            };
            for (index, version) in list.iter().enumerate().skip(skip_to) {
                if out.len() == page_size {
                    next = out.last().map(|last: &ArchivedVersion| {
                        (last.key.clone(), Some(last.version_id.clone()))
                    });
                    break 'keys;
                }
                out.push(ArchivedVersion {
                    key: key.clone(),
                    version_id: version.version_id.clone(),
                    is_latest: index + 1 == list.len(),
                    size: version.body.len() as u64,
                });
            }
        }
        Ok(crate::seams::VersionsPage {
            versions: out,
            next,
        })
    }

    async fn put_retention(
        &self,
        key: &str,
        version_id: &str,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<(), SeamError> {
        if self.refuse_retention.load(Ordering::Relaxed) {
            self.retention_refused.fetch_add(1, Ordering::Relaxed);
            return Err(SeamError::AccessDenied("s3:PutObjectRetention".into()));
        }
        let mut versions = lock(&self.versions);
        let version = versions
            .get_mut(key)
            .and_then(|list| list.iter_mut().find(|v| v.version_id == version_id))
            .ok_or_else(|| SeamError::NotFound(key.to_string()))?;
        if version
            .head
            .retain_until
            .is_some_and(|current| current > until)
        {
            return Err(SeamError::AccessDenied(
                "cannot shorten COMPLIANCE retention".to_string(),
            ));
        }
        version.head.retain_until = Some(until);
        version.head.lock_mode = Some(mode);
        Ok(())
    }

    async fn protection(&self) -> Result<BucketProtection, SeamError> {
        Ok(lock(&self.protection).clone())
    }
}

/// A progress store in memory (no durability).
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<SourceRef, ObjectRecord>>,
    /// Fresh folders: (account, bucket, folder) → mark.
    fresh: Mutex<BTreeMap<(String, String, String), u64>>,
    next_mark: AtomicU64,
    state: Mutex<BTreeMap<String, Vec<u8>>>,
    findings: Mutex<BTreeMap<String, Finding>>,
    /// Object records handed out by reads (`object`, `objects_under`,
    /// `for_each_object_under`, `for_each_object`): what a stage's cost in
    /// store reads is measured by.
    pub records_read: AtomicU64,
}

impl MemoryStore {
    fn count_reads(&self, records: usize) {
        self.records_read
            .fetch_add(records as u64, Ordering::Relaxed);
    }
}

impl ProgressStore for MemoryStore {
    fn object(&self, source: &SourceRef) -> Result<Option<ObjectRecord>, SeamError> {
        let found = lock(&self.objects).get(source).cloned();
        self.count_reads(usize::from(found.is_some()));
        Ok(found)
    }

    fn record_object(&self, source: &SourceRef, record: &ObjectRecord) -> Result<(), SeamError> {
        let mut fresh = lock(&self.fresh);
        let mark = self.next_mark.fetch_add(1, Ordering::Relaxed) + 1;
        fresh.insert(
            (
                source.account_id.clone(),
                source.bucket.clone(),
                crate::seams::key_folder(&source.key).to_string(),
            ),
            mark,
        );
        lock(&self.objects).insert(source.clone(), record.clone());
        Ok(())
    }

    fn fresh_folders(
        &self,
        account_id: &str,
        bucket: &str,
    ) -> Result<Vec<crate::seams::FreshFolder>, SeamError> {
        Ok(lock(&self.fresh)
            .iter()
            .filter(|((account, name, _), _)| account == account_id && name == bucket)
            .map(|((_, _, folder), mark)| crate::seams::FreshFolder {
                folder: folder.clone(),
                mark: *mark,
            })
            .collect())
    }

    fn settle_folder(
        &self,
        account_id: &str,
        bucket: &str,
        fresh: &crate::seams::FreshFolder,
    ) -> Result<(), SeamError> {
        let mut folders = lock(&self.fresh);
        let id = (
            account_id.to_string(),
            bucket.to_string(),
            fresh.folder.clone(),
        );
        if folders.get(&id) == Some(&fresh.mark) {
            folders.remove(&id);
        }
        Ok(())
    }

    fn for_each_object_from(
        &self,
        account_id: &str,
        bucket: &str,
        key_prefix: &str,
        start_key: &str,
        visit: &mut dyn FnMut(&str, ObjectRecord) -> bool,
    ) -> Result<(), SeamError> {
        let start = SourceRef {
            account_id: account_id.to_string(),
            bucket: bucket.to_string(),
            key: start_key.max(key_prefix).to_string(),
        };
        let mut next = Bound::Included(start);
        loop {
            // One record at a time, without holding the lock while visiting.
            let found = lock(&self.objects)
                .range((next.clone(), Bound::Unbounded))
                .next()
                .filter(|(source, _)| {
                    source.account_id == account_id
                        && source.bucket == bucket
                        && source.key.starts_with(key_prefix)
                })
                .map(|(source, record)| (source.clone(), record.clone()));
            let Some((source, record)) = found else {
                return Ok(());
            };
            self.count_reads(1);
            if !visit(&source.key, record) {
                return Ok(());
            }
            next = Bound::Excluded(source);
        }
    }

    fn objects_under(
        &self,
        account_id: &str,
        bucket: &str,
        key_prefix: &str,
    ) -> Result<Vec<(String, ObjectRecord)>, SeamError> {
        let found: Vec<(String, ObjectRecord)> = lock(&self.objects)
            .iter()
            .filter(|(source, _)| {
                source.account_id == account_id
                    && source.bucket == bucket
                    && source.key.starts_with(key_prefix)
            })
            .map(|(source, record)| (source.key.clone(), record.clone()))
            .collect();
        self.count_reads(found.len());
        Ok(found)
    }

    fn for_each_object(
        &self,
        visit: &mut dyn FnMut(SourceRef, ObjectRecord),
    ) -> Result<(), SeamError> {
        let objects = lock(&self.objects).clone();
        self.count_reads(objects.len());
        for (source, record) in objects {
            visit(source, record);
        }
        Ok(())
    }

    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>, SeamError> {
        Ok(lock(&self.state).get(name).cloned())
    }

    fn put_state(&self, name: &str, value: &[u8]) -> Result<(), SeamError> {
        lock(&self.state).insert(name.to_string(), value.to_vec());
        Ok(())
    }

    fn state_under(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, SeamError> {
        Ok(lock(&self.state)
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn finding(&self, identity: &str) -> Result<Option<Finding>, SeamError> {
        Ok(lock(&self.findings).get(identity).cloned())
    }

    fn put_finding(&self, identity: &str, finding: &Finding) -> Result<(), SeamError> {
        lock(&self.findings).insert(identity.to_string(), finding.clone());
        Ok(())
    }

    fn for_each_finding(&self, visit: &mut dyn FnMut(Finding)) -> Result<(), SeamError> {
        let findings: Vec<Finding> = lock(&self.findings).values().cloned().collect();
        findings.into_iter().for_each(visit);
        Ok(())
    }

    fn flush(&self) -> Result<(), SeamError> {
        Ok(())
    }
}

/// Collects published messages.
#[derive(Default)]
pub struct MemoryNotifier {
    pub messages: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn publish(&self, subject: &str, message: &str) -> Result<(), SeamError> {
        lock(&self.messages).push((subject.to_string(), message.to_string()));
        Ok(())
    }
}

/// An event bus that keeps what it takes. Like EventBridge, it refuses a
/// call over the entry limits as a whole, and refuses single entries on
/// demand.
#[derive(Default)]
pub struct MemoryEventBus {
    /// The events taken, in order.
    pub events: Mutex<Vec<BusEvent>>,
    /// The number of entries of each call.
    pub calls: Mutex<Vec<usize>>,
    /// Entries whose detail contains one of these texts are refused.
    pub refuse_containing: Mutex<Vec<String>>,
    /// This many calls fail as a whole, first.
    pub failing_calls: Mutex<usize>,
}

#[async_trait]
impl EventBus for MemoryEventBus {
    async fn put_events(&self, events: &[BusEvent]) -> Result<Vec<EntryOutcome>, SeamError> {
        lock(&self.calls).push(events.len());
        if events.is_empty() || events.len() > MAX_EVENTS_PER_CALL {
            return Err(SeamError::Permanent(format!(
                "events:PutEvents: {} entries",
                events.len()
            )));
        }
        if events.iter().map(BusEvent::size).sum::<usize>() > MAX_EVENT_BYTES {
            return Err(SeamError::Permanent(
                "events:PutEvents: request too large".into(),
            ));
        }
        {
            let mut failing = lock(&self.failing_calls);
            if *failing > 0 {
                *failing -= 1;
                return Err(SeamError::AccessDenied("events:PutEvents: denied".into()));
            }
        }
        let refuse = lock(&self.refuse_containing).clone();
        let mut outcomes = Vec::new();
        for event in events {
            if refuse.iter().any(|text| event.detail.contains(text)) {
                outcomes.push(Err("InternalFailure: refused".to_string()));
            } else {
                lock(&self.events).push(event.clone());
                outcomes.push(Ok(()));
            }
        }
        Ok(outcomes)
    }
}

/// A clock that says what it is told.
pub struct FixedClock(pub Mutex<DateTime<Utc>>);

impl FixedClock {
    pub fn at(now: DateTime<Utc>) -> FixedClock {
        FixedClock(Mutex::new(now))
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *lock(&self.0) = now;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.0)
    }
}

/// A fixed organization: its ACTIVE accounts, or an error for every call.
#[derive(Default)]
pub struct MemoryAccounts {
    pub active: Vec<String>,
    pub failure: Option<SeamError>,
}

#[async_trait]
impl crate::seams::AccountDirectory for MemoryAccounts {
    async fn active_accounts(&self) -> Result<Vec<String>, SeamError> {
        match &self.failure {
            Some(error) => Err(error.clone()),
            None => Ok(self.active.clone()),
        }
    }
}

/// Sources by (reading account, bucket); an account listed as unreachable
/// is refused like a role that cannot be assumed. A bucket not added yet is
/// created empty on first use.
#[derive(Default)]
pub struct MemoryConnector {
    sources: Mutex<BTreeMap<(String, String), std::sync::Arc<MemorySource>>>,
    unreachable: Mutex<BTreeSet<String>>,
}

impl MemoryConnector {
    /// The source `bucket` read as `reader_account_id` (created if new).
    pub fn bucket(&self, reader_account_id: &str, bucket: &str) -> std::sync::Arc<MemorySource> {
        lock(&self.sources)
            .entry((reader_account_id.to_string(), bucket.to_string()))
            .or_insert_with(|| std::sync::Arc::new(MemorySource::new(bucket)))
            .clone()
    }

    pub fn refuse(&self, account_id: &str) {
        lock(&self.unreachable).insert(account_id.to_string());
    }
}

#[async_trait]
impl crate::seams::SourceConnector for MemoryConnector {
    async fn source(
        &self,
        reader_account_id: &str,
        bucket: &str,
    ) -> Result<std::sync::Arc<dyn TrailSource>, SeamError> {
        if lock(&self.unreachable).contains(reader_account_id) {
            return Err(SeamError::AccessDenied(format!(
                "AssumeRole {reader_account_id}: refused"
            )));
        }
        Ok(self.bucket(reader_account_id, bucket))
    }
}

/// `ListPublicKeys` in memory: keys by region, and how often it was asked.
#[derive(Default)]
pub struct MemoryPublicKeys {
    pub keys: Mutex<Vec<(String, crate::seams::ListedPublicKey)>>,
    pub calls: AtomicU64,
}

#[async_trait]
impl crate::seams::PublicKeyDirectory for MemoryPublicKeys {
    async fn list_public_keys(
        &self,
        region: &str,
        _window: (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<Vec<crate::seams::ListedPublicKey>, SeamError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(lock(&self.keys)
            .iter()
            .filter(|(listed_region, _)| listed_region == region)
            .map(|(_, key)| key.clone())
            .collect())
    }
}
