//! Objects above the multipart threshold go up in parts, so memory per
//! object in flight never exceeds one part; the upload is aborted in one
//! place on any failure after it began.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::cloudtrail::digest::sha256;
use crate::cloudtrail::gzip::{GzipInspector, InflatedSink, NoSink};
use crate::model::error::SeamError;
use crate::seams::{Archive, PutSpec, UploadedPart};

use super::{Analysis, ContentCheck, CopyError, CopySettings};

/// Uploads a body too large to hold in parts of the threshold size, `held`
/// (what arrived so far) first, then the rest of `body`, inspecting the bytes
/// as they pass and feeding `content_check` the content the one inflate
/// produces;
/// an upload that fails on the way is aborted, so none is left behind.
/// Returns the version, the parts and the analysis.
pub(super) async fn copy_multipart(
    archive: &dyn Archive,
    settings: &CopySettings,
    spec: &PutSpec,
    held: BytesMut,
    body: &mut crate::seams::ByteStream,
    content_check: Option<ContentCheck>,
) -> Result<(Option<String>, Vec<UploadedPart>, Analysis), CopyError> {
    let upload_id = archive
        .create_multipart(spec)
        .await
        .map_err(CopyError::Archive)?;
    let mut inspector = GzipInspector::new(settings.inflate_limits);
    let mut checked = content_check;
    let mut parts = Vec::new();
    let uploaded = upload_parts(
        archive,
        settings,
        spec,
        &upload_id,
        held,
        body,
        &mut inspector,
        &mut checked,
        &mut parts,
    )
    .await;
    let completed = match uploaded {
        Ok(()) => archive
            .complete_multipart(&spec.key, &upload_id, &parts)
            .await
            .map_err(CopyError::Archive),
        Err(error) => Err(error),
    };
    let version_id = match completed {
        Ok(version_id) => version_id,
        Err(error) => {
            let _ = archive.abort_multipart(&spec.key, &upload_id).await;
            return Err(error);
        }
    };
    let outcome = match checked.as_mut() {
        Some(check) => inspector.finish_into(&mut **check),
        None => inspector.finish(),
    };
    // The check's verdict counts only for content that inflated cleanly
    // within the limits, as for a held body.
    let content_findings = match (checked, &outcome.inflated) {
        (Some(checked), Ok(_)) => checked.finish(),
        _ => Vec::new(),
    };
    let analysis = Analysis {
        raw_len: outcome.raw_len,
        raw_sha256: outcome.raw_sha256,
        content: outcome.inflated.map(|inflated| inflated.sha256),
        content_findings,
    };
    Ok((version_id, parts, analysis))
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn upload_parts(
    archive: &dyn Archive,
    settings: &CopySettings,
    spec: &PutSpec,
    upload_id: &str,
    mut buffer: BytesMut,
    body: &mut crate::seams::ByteStream,
    inspector: &mut GzipInspector,
    checked: &mut Option<ContentCheck>,
    parts: &mut Vec<UploadedPart>,
) -> Result<(), CopyError> {
    let threshold = usize::try_from(settings.multipart_threshold_bytes).unwrap_or(usize::MAX);
    let mut no_sink = NoSink;
    inspector.update_into(&buffer, sink(checked, &mut no_sink));
    loop {
        while buffer.len() >= threshold {
            let part = buffer.split_to(threshold).freeze();
            upload_part(archive, &spec.key, upload_id, parts, part)
                .await
                .map_err(CopyError::Archive)?;
        }
        let Some(chunk) = body.next().await else {
            break;
        };
        let chunk = chunk.map_err(CopyError::SourceBody)?;
        inspector.update_into(&chunk, sink(checked, &mut no_sink));
        buffer.extend_from_slice(&chunk);
    }
    if !buffer.is_empty() {
        upload_part(archive, &spec.key, upload_id, parts, buffer.freeze())
            .await
            .map_err(CopyError::Archive)?;
    }
    Ok(())
}

/// Where the inflated bytes go: the check, or nowhere.
fn sink<'a>(
    checked: &'a mut Option<ContentCheck>,
    none: &'a mut NoSink,
) -> &'a mut dyn InflatedSink {
    match checked {
        Some(check) => &mut **check,
        None => none,
    }
}

pub(super) async fn upload_part(
    archive: &dyn Archive,
    key: &str,
    upload_id: &str,
    parts: &mut Vec<UploadedPart>,
    part: Bytes,
) -> Result<(), SeamError> {
    let part_number = i32::try_from(parts.len() + 1)
        .map_err(|_| SeamError::Permanent("too many parts".to_string()))?;
    let digest = sha256(&part);
    parts.push(
        archive
            .upload_part(key, upload_id, part_number, part, digest)
            .await?,
    );
    Ok(())
}
