//! Objects above the multipart threshold go up in parts, so memory per
//! object in flight never exceeds one part; the upload is aborted in one
//! place on any failure after it began.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::cloudtrail::digest::sha256;
use crate::cloudtrail::gzip::{GzipInspector, InflateLimits};
use crate::model::error::SeamError;
use crate::model::findings::Finding;
use crate::seams::{Archive, PutSpec, UploadedPart};

use super::{Analysis, ContentCheck, CopyError, CopySettings, Inflated};

/// Uploads a body too large to hold in parts of the threshold size, `held`
/// (what arrived so far) first, then the rest of `body`, inspecting the bytes
/// and running `content_check` on them (see [`StreamedCheck`]) as they pass;
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
    let mut checked =
        content_check.map(|check| StreamedCheck::start(check, settings.inflate_limits));
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
    let outcome = inspector.finish();
    // The check's verdict counts only for content that inflated cleanly
    // within the limits, as for a held body.
    let content_findings = match (checked, &outcome.inflated) {
        (Some(checked), Ok(_)) => checked.finish().await,
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

/// A [`ContentCheck`] run on a blocking thread while an object too large to
/// hold streams past: the raw bytes are handed over a bounded channel,
/// inflated there again (bounded by the inflated-size limit) and parsed as
/// they arrive, so memory stays bounded and the copy never waits on more than
/// a few chunks.
pub(super) struct StreamedCheck {
    sender: Option<tokio::sync::mpsc::Sender<Bytes>>,
    task: tokio::task::JoinHandle<Vec<Finding>>,
}

impl StreamedCheck {
    fn start(check: ContentCheck, limits: InflateLimits) -> StreamedCheck {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(8);
        let task = tokio::task::spawn_blocking(move || {
            let raw = ChannelReader {
                receiver,
                current: Bytes::new(),
            };
            let decoder = flate2::read::GzDecoder::new(raw);
            let mut stream = std::io::BufReader::with_capacity(
                64 * 1024,
                std::io::Read::take(decoder, limits.max_inflated_bytes),
            );
            check(Inflated::Stream(&mut stream))
        });
        StreamedCheck {
            sender: Some(sender),
            task,
        }
    }

    /// Hands the next raw bytes over; once the check has stopped reading
    /// (it has its verdict), nothing more is sent.
    async fn feed(&mut self, bytes: Bytes) {
        if let Some(sender) = &self.sender {
            if sender.send(bytes).await.is_err() {
                self.sender = None;
            }
        }
    }

    async fn finish(mut self) -> Vec<Finding> {
        self.sender = None;
        self.task.await.unwrap_or_default()
    }
}

/// The raw bytes of a [`StreamedCheck`] as a blocking reader.
pub(super) struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(bytes) => self.current = bytes,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
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
    checked: &mut Option<StreamedCheck>,
    parts: &mut Vec<UploadedPart>,
) -> Result<(), CopyError> {
    let threshold = usize::try_from(settings.multipart_threshold_bytes).unwrap_or(usize::MAX);
    inspector.update(&buffer);
    if let Some(checked) = checked {
        checked.feed(Bytes::copy_from_slice(&buffer)).await;
    }
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
        inspector.update(&chunk);
        buffer.extend_from_slice(&chunk);
        if let Some(checked) = checked {
            checked.feed(chunk).await;
        }
    }
    if !buffer.is_empty() {
        upload_part(archive, &spec.key, upload_id, parts, buffer.freeze())
            .await
            .map_err(CopyError::Archive)?;
    }
    Ok(())
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
