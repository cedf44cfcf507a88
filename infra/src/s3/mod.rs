//! The S3 adapters: [`source::S3Source`] reads CloudTrail's buckets,
//! [`archive::S3Archive`] writes the locked archive. What both do with the
//! SDK's answers is here.

pub mod archive;
pub mod source;

use bytes::Bytes;
use trailvault_pipeline::seams::ByteStream;
use trailvault_pipeline::SeamError;

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
