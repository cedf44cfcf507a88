//! [`TrailSource`] over S3, read with one member session.

use async_trait::async_trait;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::Client;
use trailvault_pipeline::seams::{ListedObject, ListingPage, SourceObject, TrailSource};
use trailvault_pipeline::SeamError;

use super::{get_object, strip_etag};
use crate::aws::classify;

pub struct S3Source {
    client: Client,
    bucket: String,
}

impl S3Source {
    pub fn new(client: Client, bucket: &str) -> S3Source {
        S3Source {
            client,
            bucket: bucket.to_string(),
        }
    }

    /// One page of a ListObjectsV2 under `prefix` (rolled up at `delimiter`
    /// when there is one), read into items by `items`.
    async fn one_page<T>(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        operation: &str,
        items: impl Fn(&ListObjectsV2Output) -> Vec<T>,
    ) -> Result<ListingPage<T>, SeamError> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_continuation_token(continuation)
            .send()
            .await
            .map_err(|e| classify(operation, e))?;
        let next = match page.next_continuation_token() {
            Some(next) if page.is_truncated().unwrap_or(false) => Some(next.to_string()),
            _ => None,
        };
        Ok(ListingPage {
            items: items(&page),
            next,
        })
    }
}

#[async_trait]
impl TrailSource for S3Source {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListingPage<ListedObject>, SeamError> {
        let operation = format!("ListObjectsV2 s3://{}/{prefix}", self.bucket);
        self.one_page(prefix, None, continuation, &operation, |page| {
            page.contents()
                .iter()
                .filter_map(|object| {
                    Some(ListedObject {
                        key: object.key()?.to_string(),
                        size: object.size().unwrap_or(0).max(0) as u64,
                        etag: strip_etag(object.e_tag()),
                    })
                })
                .collect()
        })
        .await
    }

    async fn list_folders_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListingPage<String>, SeamError> {
        let operation = format!("ListObjectsV2 s3://{}/{prefix} (folders)", self.bucket);
        self.one_page(prefix, Some("/"), continuation, &operation, |page| {
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix())
                .map(str::to_string)
                .collect()
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<SourceObject, SeamError> {
        get_object(&self.client, &self.bucket, key, None).await
    }

    async fn delete(&self, key: &str) -> Result<(), SeamError> {
        let operation = format!("DeleteObject s3://{}/{key}", self.bucket);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify(&operation, e))?;
        Ok(())
    }
}
