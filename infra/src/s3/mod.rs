//! The S3 adapters: [`source::S3Source`] reads CloudTrail's buckets,
//! [`archive::S3Archive`] writes the locked archive. What both do with the
//! SDK's answers is here.

pub mod archive;
pub mod policy;
pub mod regions;
pub mod source;

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::Client;
use bytes::Bytes;
use trailvault_pipeline::seams::{ByteStream, ObjectMeta, SourceObject};
use trailvault_pipeline::SeamError;

use crate::aws::classify;

/// The GET of the source and of the archive: `key` in `bucket`, at
/// `version_id` or the latest version, refused by S3 unless `expected_owner`
/// (when given) owns the bucket.
pub(crate) async fn get_object(
    client: &Client,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    expected_owner: Option<&str>,
) -> Result<SourceObject, SeamError> {
    let operation = format!(
        "GetObject s3://{bucket}/{}",
        trailvault_pipeline::model::text::escape_control(key)
    );
    let output = client
        .get_object()
        .bucket(bucket)
        .set_expected_bucket_owner(expected_owner.map(str::to_string))
        .key(key)
        .set_version_id(version_id.map(str::to_string))
        .send()
        .await
        .map_err(|e| classify(&operation, e))?;
    Ok(source_object(output, operation))
}

/// A GetObject answer as the pipeline's object; `operation` names the
/// request in a body error.
fn source_object(output: GetObjectOutput, operation: String) -> SourceObject {
    SourceObject {
        meta: object_meta(&output),
        body: body_stream(output.body, operation),
    }
}

fn object_meta(output: &GetObjectOutput) -> ObjectMeta {
    ObjectMeta {
        size: output.content_length().unwrap_or(0).max(0) as u64,
        etag: strip_etag(output.e_tag()),
        version_id: output.version_id().map(str::to_string),
        metadata: lowercase_metadata(output.metadata()),
        content_type: output.content_type().map(str::to_string),
        content_encoding: output.content_encoding().map(str::to_string),
    }
}

pub(crate) fn strip_etag(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_string()
}

/// Adapts the SDK's body into the pipeline's chunk stream.
pub(crate) fn body_stream(body: aws_sdk_s3::primitives::ByteStream, what: String) -> ByteStream {
    Box::pin(futures::stream::unfold(
        Some((body, what)),
        |state| async move {
            let (mut body, what) = state?;
            match body.next().await {
                Some(Ok(chunk)) => Some((Ok::<Bytes, SeamError>(chunk), Some((body, what)))),
                Some(Err(error)) => Some((
                    Err(SeamError::Transient(format!("{what}: body: {error}"))),
                    None,
                )),
                None => None,
            }
        },
    ))
}

pub(crate) fn lowercase_metadata(
    metadata: Option<&std::collections::HashMap<String, String>>,
) -> std::collections::BTreeMap<String, String> {
    metadata
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    /// Metadata as the pipeline keeps it, from literal pairs.
    pub(crate) fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_get_answer_maps_to_object_meta() {
        let output = GetObjectOutput::builder()
            .content_length(1234)
            .e_tag("\"0123abcd\"")
            .version_id("v1")
            .set_metadata(Some(HashMap::from([
                ("Trailvault-SHA256".to_string(), "abc".to_string()),
                ("source-etag".to_string(), "Xyz".to_string()),
            ])))
            .content_type("application/json")
            .content_encoding("gzip")
            .build();
        assert_eq!(
            object_meta(&output),
            ObjectMeta {
                size: 1234,
                etag: "0123abcd".to_string(),
                version_id: Some("v1".to_string()),
                metadata: strings(&[("trailvault-sha256", "abc"), ("source-etag", "Xyz")]),
                content_type: Some("application/json".to_string()),
                content_encoding: Some("gzip".to_string()),
            }
        );
    }

    #[test]
    fn a_bare_get_answer_maps_to_empty_meta() {
        let output = GetObjectOutput::builder().content_length(-1).build();
        assert_eq!(object_meta(&output), ObjectMeta::default());
    }

    #[tokio::test]
    async fn a_get_answer_keeps_its_body() {
        use futures::StreamExt as _;
        let output = GetObjectOutput::builder()
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"hello"))
            .build();
        let object = source_object(output, "GetObject s3://b/k".to_string());
        let chunks: Vec<_> = object.body.collect().await;
        let body: Vec<u8> = chunks
            .into_iter()
            .flat_map(|chunk| chunk.expect("chunk").to_vec())
            .collect();
        assert_eq!(body, b"hello");
    }
}
