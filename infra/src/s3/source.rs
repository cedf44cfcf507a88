//! [`TrailSource`] over S3, read with one member session.

use async_trait::async_trait;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::types::EncodingType;
use aws_sdk_s3::Client;
use trailvault_pipeline::model::text::{decode_url_encoded, escape_control};
use trailvault_pipeline::seams::{
    BucketOwnership, ListedObject, ListingPage, SourceObject, TrailSource,
};
use trailvault_pipeline::SeamError;

use super::{get_object, strip_etag};
use crate::aws::classify;

/// Every request names the account expected to own the bucket
/// (`ExpectedBucketOwner`): S3 refuses it (403) when another account owns a
/// bucket of that name — a squatted bucket is never read as the member's.
pub struct S3Source {
    client: Client,
    bucket: String,
    expected_owner: Option<String>,
}

/// Most buckets of a `ListBuckets` page asked for in the ownership check.
const OWNERSHIP_PAGE: i32 = 100;

/// Most pages of buckets whose name starts with the bucket's read before the
/// ownership check gives up (the account created that many look-alikes).
const OWNERSHIP_MAX_PAGES: usize = 20;

impl S3Source {
    /// `expected_owner`: the account that must own `bucket` (the member for
    /// a per-account bucket, the configured reader for an organization
    /// bucket); `None` only where no account is known (static credentials).
    pub fn new(client: Client, bucket: &str, expected_owner: Option<&str>) -> S3Source {
        S3Source {
            client,
            bucket: bucket.to_string(),
            expected_owner: expected_owner.map(str::to_string),
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
        items: impl Fn(&ListObjectsV2Output) -> Result<Vec<T>, SeamError>,
    ) -> Result<ListingPage<T>, SeamError> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_expected_bucket_owner(self.expected_owner.clone())
            // Keys with control characters (ESC is no legal XML character)
            // survive the XML listing only URL-encoded; decoded below.
            .encoding_type(EncodingType::Url)
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
            items: items(&page)?,
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
                    let key = object.key()?;
                    Some(decode_listed(&operation, key).map(|key| ListedObject {
                        key,
                        size: object.size().unwrap_or(0).max(0) as u64,
                        etag: strip_etag(object.e_tag()),
                    }))
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
                .map(|folder| decode_listed(&operation, folder))
                .collect()
        })
        .await
    }

    /// `HeadObject`: the size and ETag of exactly `key`, without a listing.
    async fn head(&self, key: &str) -> Result<Option<ListedObject>, SeamError> {
        let operation = format!("HeadObject s3://{}/{}", self.bucket, escape_control(key));
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(ListedObject {
                key: key.to_string(),
                size: head.content_length().unwrap_or(0).max(0) as u64,
                etag: strip_etag(head.e_tag()),
            })),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_not_found()) =>
            {
                Ok(None)
            }
            Err(error) => Err(classify(&operation, error)),
        }
    }

    async fn get(&self, key: &str) -> Result<SourceObject, SeamError> {
        get_object(
            &self.client,
            &self.bucket,
            key,
            None,
            self.expected_owner.as_deref(),
        )
        .await
    }

    async fn ownership(&self) -> Result<BucketOwnership, SeamError> {
        let Some(expected) = self.expected_owner.as_deref() else {
            return Ok(BucketOwnership::Unknown(
                "no expected owner is known for static credentials".to_string(),
            ));
        };
        // ListBuckets lists the buckets the calling account owns: the
        // member role's own account. Asked with the bucket's name as prefix,
        // it is one short page unless the account made look-alikes.
        let operation = format!("ListBuckets (prefix {})", self.bucket);
        let mut continuation = None;
        for _ in 0..OWNERSHIP_MAX_PAGES {
            let answer = self
                .client
                .list_buckets()
                .prefix(&self.bucket)
                .max_buckets(OWNERSHIP_PAGE)
                .set_continuation_token(continuation.take())
                .send()
                .await
                .map_err(|e| classify(&operation, e));
            let page = match answer {
                Ok(page) => page,
                Err(SeamError::AccessDenied(message)) => {
                    return Ok(BucketOwnership::Unknown(format!(
                        "the role may not list its account's buckets ({message}); ExpectedBucketOwner alone guards the reads"
                    )))
                }
                Err(error) => return Err(error),
            };
            if page
                .buckets()
                .iter()
                .any(|b| b.name() == Some(self.bucket.as_str()))
            {
                return Ok(BucketOwnership::Owned);
            }
            match page.continuation_token() {
                Some(next) if !next.is_empty() => continuation = Some(next.to_string()),
                _ => {
                    return Ok(BucketOwnership::NotOwned(format!(
                        "account {expected} does not own bucket {}: its role's ListBuckets does not list it",
                        self.bucket
                    )))
                }
            }
        }
        Ok(BucketOwnership::Unknown(format!(
            "more than {} buckets of account {expected} start with {}",
            OWNERSHIP_PAGE as usize * OWNERSHIP_MAX_PAGES,
            self.bucket
        )))
    }

    async fn delete(&self, key: &str) -> Result<(), SeamError> {
        let operation = format!("DeleteObject s3://{}/{key}", self.bucket);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .key(key)
            .send()
            .await
            .map_err(|e| classify(&operation, e))?;
        Ok(())
    }
}

/// A key or folder of an `encoding-type=url` listing, decoded.
fn decode_listed(operation: &str, encoded: &str) -> Result<String, SeamError> {
    decode_url_encoded(encoded).map_err(|problem| {
        SeamError::Permanent(format!(
            "{operation}: listed key {} cannot be decoded: {problem}",
            escape_control(encoded)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::scripted_http::{reply, ScriptedHttp, SeenRequest};

    const OWNER: &str = "222233334444";

    async fn source(http: &ScriptedHttp) -> S3Source {
        let client = crate::aws::s3_client(&http.config().await, true);
        S3Source::new(client, "trail-bucket", Some(OWNER))
    }

    fn expected_owner_of(seen: &SeenRequest) -> Option<String> {
        seen.1
            .iter()
            .find(|(name, _)| name == "x-amz-expected-bucket-owner")
            .map(|(_, value)| value.clone())
    }

    #[tokio::test]
    async fn every_source_request_names_the_expected_owner_and_listings_are_url_encoded() {
        let listing = "<ListBucketResult><Name>trail-bucket</Name><EncodingType>url</EncodingType>\
            <IsTruncated>false</IsTruncated>\
            <Contents><Key>AWSLogs/a%0Ab%1B%5B2J+c.json.gz</Key><Size>3</Size><ETag>&quot;e&quot;</ETag></Contents>\
            <CommonPrefixes><Prefix>AWSLogs/f%25/</Prefix></CommonPrefixes>\
            </ListBucketResult>";
        let http = ScriptedHttp::new(vec![
            reply(200, listing),
            reply(200, listing),
            reply(200, "body"),
            reply(204, ""),
        ]);
        let source = source(&http).await;
        let page = source.list_page("AWSLogs/", None).await.unwrap();
        assert_eq!(page.items[0].key, "AWSLogs/a\nb\u{1b}[2J c.json.gz");
        let folders = source.list_folders_page("AWSLogs/", None).await.unwrap();
        assert_eq!(folders.items, vec!["AWSLogs/f%/".to_string()]);
        source.get("AWSLogs/x").await.unwrap();
        source.delete("AWSLogs/x").await.unwrap();
        let seen = http.seen();
        assert_eq!(seen.len(), 4);
        for request in &seen {
            assert_eq!(
                expected_owner_of(request).as_deref(),
                Some(OWNER),
                "{}",
                request.0
            );
        }
        assert!(seen[0].0.contains("encoding-type=url"), "{}", seen[0].0);
        assert!(seen[1].0.contains("encoding-type=url"), "{}", seen[1].0);
    }

    #[tokio::test]
    async fn a_malformed_listed_key_is_an_error_not_a_wrong_key() {
        let http = ScriptedHttp::new(vec![reply(
            200,
            "<ListBucketResult><IsTruncated>false</IsTruncated>\
             <Contents><Key>bad%zz</Key><Size>1</Size></Contents></ListBucketResult>",
        )]);
        let error = source(&http).await.list_page("", None).await.unwrap_err();
        assert!(error.to_string().contains("cannot be decoded"), "{error}");
    }

    fn buckets(names: &[&str], token: Option<&str>) -> String {
        let buckets: String = names
            .iter()
            .map(|name| format!("<Bucket><Name>{name}</Name></Bucket>"))
            .collect();
        let token = token
            .map(|t| format!("<ContinuationToken>{t}</ContinuationToken>"))
            .unwrap_or_default();
        format!(
            "<ListAllMyBucketsResult><Buckets>{buckets}</Buckets>{token}</ListAllMyBucketsResult>"
        )
    }

    #[tokio::test]
    async fn ownership_is_read_from_the_accounts_own_bucket_list() {
        let http = ScriptedHttp::new(vec![
            reply(200, &buckets(&["trail-bucket-other"], Some("next"))),
            reply(200, &buckets(&["trail-bucket"], None)),
            reply(200, &buckets(&["trail-bucket-2"], None)),
            reply(
                403,
                "<Error><Code>AccessDenied</Code><Message>no</Message></Error>",
            ),
        ]);
        let source = source(&http).await;
        assert_eq!(source.ownership().await.unwrap(), BucketOwnership::Owned);
        assert!(
            http.seen()[0].0.contains("prefix=trail-bucket"),
            "{}",
            http.seen()[0].0
        );
        assert!(matches!(
            source.ownership().await.unwrap(),
            BucketOwnership::NotOwned(detail) if detail.contains(OWNER)
        ));
        assert!(matches!(
            source.ownership().await.unwrap(),
            BucketOwnership::Unknown(_)
        ));
    }
}
