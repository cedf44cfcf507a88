//! [`TrailSource`] over S3, read with one member session.

use async_trait::async_trait;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::Client;
use trailvault_pipeline::seams::{ListedObject, SourceObject, TrailSource};
use trailvault_pipeline::SeamError;

use super::{collect_pages, get_object, strip_etag};
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

    /// Every page of a ListObjectsV2 under `prefix` (rolled up at `delimiter`
    /// when there is one), each read into items by `items`.
    async fn list_pages<T>(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        operation: &str,
        items: impl Fn(&ListObjectsV2Output) -> Vec<T>,
    ) -> Result<Vec<T>, SeamError> {
        let items = &items;
        collect_pages(|token: Option<String>| async move {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(str::to_string))
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| classify(operation, e))?;
            let next = match page.next_continuation_token() {
                Some(next) if page.is_truncated().unwrap_or(false) => Some(next.to_string()),
                _ => None,
            };
            Ok((items(&page), next))
        })
        .await
    }
}

#[async_trait]
impl TrailSource for S3Source {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, SeamError> {
        let operation = format!("ListObjectsV2 s3://{}/{prefix}", self.bucket);
        self.list_pages(prefix, None, &operation, |page| {
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

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, SeamError> {
        let operation = format!("ListObjectsV2 s3://{}/{prefix} (folders)", self.bucket);
        self.list_pages(prefix, Some("/"), &operation, |page| {
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
