//! The bucket where CloudTrail delivers files, read with a member session.

use std::collections::BTreeMap;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};

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

/// Whether a source bucket belongs to the account whose role reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketOwnership {
    Owned,
    /// Another account owns a bucket of that name (squatted, or a typo in
    /// the template): nothing of it may be archived as the member's history.
    NotOwned(String),
    /// The check cannot be made (why); every request still carries the
    /// expected owner, which S3 enforces.
    Unknown(String),
}

/// One page of a listing, and where the next one starts (`None`: the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingPage<T> {
    pub items: Vec<T>,
    /// Opaque to the caller: handed back to ask for the next page.
    pub next: Option<String>,
}

/// A listing as it arrives: one item per page (S3 pages hold at most 1,000
/// entries), each asked for only when the previous one was consumed. A
/// member controls how many objects a prefix holds, so a caller that reads a
/// listing keeps what it needs from each page, never the whole listing.
pub type Pages<'a, T> = Pin<Box<dyn Stream<Item = Result<Vec<T>, SeamError>> + Send + 'a>>;

/// The pages `page` answers, from the first (`None`) to the one without a
/// `next`, each asked for lazily; the stream ends after the first error.
pub fn pages<'a, T, F, Fut>(page: F) -> Pages<'a, T>
where
    T: Send + 'a,
    F: FnMut(Option<String>) -> Fut + Send + 'a,
    Fut: std::future::Future<Output = Result<ListingPage<T>, SeamError>> + Send + 'a,
{
    enum Cursor {
        Start,
        After(String),
        End,
    }
    Box::pin(futures::stream::unfold(
        (Cursor::Start, page),
        |(cursor, mut page)| async move {
            let token = match cursor {
                Cursor::Start => None,
                Cursor::After(token) => Some(token),
                Cursor::End => return None,
            };
            match page(token).await {
                Ok(ListingPage { items, next }) => {
                    let cursor = next.map_or(Cursor::End, Cursor::After);
                    Some((Ok(items), (cursor, page)))
                }
                Err(error) => Some((Err(error), (Cursor::End, page))),
            }
        },
    ))
}

/// A bucket where CloudTrail delivers files, read with one member session.
#[async_trait]
pub trait TrailSource: Send + Sync {
    fn bucket(&self) -> &str;
    /// One page of the objects under `prefix`, in key order, after
    /// `continuation` (`None`: the first page).
    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListingPage<ListedObject>, SeamError>;
    /// One page of the "folders" directly under `prefix` (delimiter `/`),
    /// each ending in `/`, in key order.
    async fn list_folders_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListingPage<String>, SeamError>;
    async fn get(&self, key: &str) -> Result<SourceObject, SeamError>;
    /// Deletes the current version of `key` (S3 `DeleteObject` without a
    /// version id: a versioned bucket keeps the data behind a delete marker).
    /// Deleting a key that is already gone succeeds. Only source expiry calls
    /// this, and only with the member role's explicit delete permission.
    async fn delete(&self, key: &str) -> Result<(), SeamError>;

    /// Whether the bucket belongs to the reading account, checked actively
    /// (once per run per bucket, by the caller). The default cannot tell.
    async fn ownership(&self) -> Result<BucketOwnership, SeamError> {
        Ok(BucketOwnership::Unknown(
            "this source cannot check its bucket's owner".to_string(),
        ))
    }

    /// The current version of exactly `key` as a listing would show it (size
    /// and ETag), `None` when the bucket does not hold it. Event-driven intake
    /// asks this instead of listing (S3 `HeadObject`); the default lists the
    /// key as a prefix, for sources that cannot do better.
    async fn head(&self, key: &str) -> Result<Option<ListedObject>, SeamError> {
        match self.list_page(key, None).await {
            Ok(page) => Ok(page.items.into_iter().find(|item| item.key == key)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every object under `prefix`, page by page, each page requested when
    /// the previous one was consumed.
    fn list<'a>(&'a self, prefix: &'a str) -> Pages<'a, ListedObject> {
        pages(move |continuation| self.list_page(prefix, continuation))
    }

    /// The folders directly under `prefix`, page by page.
    fn list_folders<'a>(&'a self, prefix: &'a str) -> Pages<'a, String> {
        pages(move |continuation| self.list_folders_page(prefix, continuation))
    }

    /// Every object under `prefix`, all pages in memory: only for prefixes
    /// whose size the caller bounds otherwise (tests, small listings).
    async fn list_all(&self, prefix: &str) -> Result<Vec<ListedObject>, SeamError> {
        let mut objects = Vec::new();
        let mut listing = self.list(prefix);
        while let Some(page) = listing.next().await {
            objects.extend(page?);
        }
        Ok(objects)
    }

    /// Every folder directly under `prefix`, all pages in memory.
    async fn list_all_folders(&self, prefix: &str) -> Result<Vec<String>, SeamError> {
        let mut folders = Vec::new();
        let mut listing = self.list_folders(prefix);
        while let Some(page) = listing.next().await {
            folders.extend(page?);
        }
        Ok(folders)
    }
}
