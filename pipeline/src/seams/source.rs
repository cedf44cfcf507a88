//! The bucket where CloudTrail delivers files, read with a member session.

use std::collections::BTreeMap;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::model::error::SeamError;

/// A body arriving in chunks. Chunks are dropped as soon as they are consumed,
/// which is what bounds memory per in-flight object.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, SeamError>> + Send>>;

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    /// As S3 returns it, quotes stripped.
    pub etag: String,
}

/// What a GET returns besides the body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub etag: String,
    pub version_id: Option<String>,
    /// User metadata without the `x-amz-meta-` prefix, keys lowercase.
    pub metadata: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
}

pub struct SourceObject {
    pub meta: ObjectMeta,
    pub body: ByteStream,
}

/// A bucket where CloudTrail delivers files, read with one member session.
#[async_trait]
pub trait TrailSource: Send + Sync {
    fn bucket(&self) -> &str;
    /// Every object under `prefix`, all pages.
    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, SeamError>;
    /// The "folders" directly under `prefix` (delimiter `/`), each ending in `/`.
    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, SeamError>;
    async fn get(&self, key: &str) -> Result<SourceObject, SeamError>;
    /// Deletes the current version of `key` (S3 `DeleteObject` without a
    /// version id: a versioned bucket keeps the data behind a delete marker).
    /// Deleting a key that is already gone succeeds. Only source expiry calls
    /// this, and only with the member role's explicit delete permission.
    async fn delete(&self, key: &str) -> Result<(), SeamError>;
}
