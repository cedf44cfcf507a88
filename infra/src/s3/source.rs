//! [`TrailSource`] over S3, read with one member session.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use trailvault_pipeline::seams::{ListedObject, SourceObject, TrailSource};
use trailvault_pipeline::SeamError;

use super::{source_object, strip_etag};
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
}

#[async_trait]
impl TrailSource for S3Source {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, SeamError> {
        let operation = format!("ListObjectsV2 s3://{}/{prefix}", self.bucket);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| classify(&operation, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                out.push(ListedObject {
                    key: key.to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    etag: strip_etag(object.e_tag()),
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated().unwrap_or(false) => {
                    token = Some(next.to_string())
                }
                _ => break,
            }
        }
        Ok(out)
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, SeamError> {
        let operation = format!("ListObjectsV2 s3://{}/{prefix} (folders)", self.bucket);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .delimiter("/")
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| classify(&operation, e))?;
            out.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix())
                    .map(str::to_string),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated().unwrap_or(false) => {
                    token = Some(next.to_string())
                }
                _ => break,
            }
        }
        Ok(out)
    }

    async fn get(&self, key: &str) -> Result<SourceObject, SeamError> {
        let operation = format!("GetObject s3://{}/{key}", self.bucket);
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify(&operation, e))?;
        Ok(source_object(output, operation))
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
