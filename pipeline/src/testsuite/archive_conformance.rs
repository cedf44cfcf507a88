//! One suite of behaviour every [`Archive`] must show, run against the
//! in-memory twin here and against `S3Archive` on the local AWS emulator
//! (`integration-tests/tests/e2e/archive_conformance.rs`), so the twin the
//! unit tests trust behaves like the archive the product writes to.
//!
//! Each check takes an [`ArchiveFixture`]: an archive whose bucket is versioned
//! and Object-Lock enabled, the KMS key copies are written with, and a key
//! prefix no other test uses.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};

use crate::cloudtrail::digest::sha256;
use crate::copy::{expected_checksum, same_kms_key};
use crate::seams::{Archive, ArchivedHead, LockMode, PutSpec};

/// An archive under test.
pub struct ArchiveFixture<'a> {
    pub archive: &'a dyn Archive,
    /// The KMS key every copy is encrypted with (ARN or id).
    pub kms_key_id: String,
    /// A prefix of fresh keys for this run of the suite.
    pub key_prefix: String,
}

impl ArchiveFixture<'_> {
    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.key_prefix)
    }

    fn spec(&self, name: &str, until: DateTime<Utc>) -> PutSpec {
        PutSpec {
            key: self.key(name),
            kms_key_id: self.kms_key_id.clone(),
            lock_mode: LockMode::Compliance,
            retain_until: until,
            metadata: BTreeMap::from([
                ("tv-source-account".to_string(), "111122223333".to_string()),
                ("signature".to_string(), "ab12".to_string()),
            ]),
            content_type: Some("application/json".to_string()),
            content_encoding: Some("gzip".to_string()),
        }
    }
}

/// A retain-until date in whole seconds (S3 keeps seconds), a day from now.
fn one_day_from_now() -> DateTime<Utc> {
    let until = Utc::now() + Duration::days(1);
    DateTime::from_timestamp(until.timestamp(), 0).unwrap_or(until)
}

async fn read_all(archive: &dyn Archive, key: &str, version: Option<&str>) -> Vec<u8> {
    let object = archive.get(key, version).await.expect("get");
    let mut body = object.body;
    let mut out = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut body).await {
        out.extend_from_slice(&chunk.expect("body chunk"));
    }
    out
}

/// A PUT lands as a version whose HEAD reports exactly what was asked: size,
/// SHA-256 checksum, the KMS key, COMPLIANCE until the date, the metadata;
/// GET returns the same bytes.
pub async fn put_is_read_back_as_asked(fixture: &ArchiveFixture<'_>) {
    let archive = fixture.archive;
    let body = Bytes::from_static(b"\x1f\x8b not really gzip, but bytes");
    let until = one_day_from_now();
    let spec = fixture.spec("put-read-back", until);
    let version = archive
        .put(&spec, body.clone(), sha256(&body))
        .await
        .expect("put")
        .expect("a versioned bucket names the version");
    let head = archive
        .head(&spec.key, Some(&version))
        .await
        .expect("head")
        .expect("the version exists");
    assert_eq!(head.version_id.as_deref(), Some(version.as_str()));
    assert_eq!(head.size, body.len() as u64);
    assert_eq!(
        head.checksum_sha256.as_deref(),
        Some(expected_checksum(&sha256(&body), &[]).as_str())
    );
    let reported_key = head.sse_kms_key_id.clone().unwrap_or_default();
    assert!(
        same_kms_key(&fixture.kms_key_id, &reported_key),
        "{reported_key} is not {}",
        fixture.kms_key_id
    );
    assert_eq!(head.lock_mode, Some(LockMode::Compliance));
    assert_eq!(head.retain_until, Some(until));
    for (name, value) in &spec.metadata {
        assert_eq!(head.metadata.get(name), Some(value), "metadata {name}");
    }
    assert_eq!(read_all(archive, &spec.key, Some(&version)).await, body);
}

/// A body that does not match its declared SHA-256 is refused, not stored.
pub async fn a_corrupted_put_is_refused(fixture: &ArchiveFixture<'_>) {
    let archive = fixture.archive;
    let spec = fixture.spec("corrupted", one_day_from_now());
    let refused = archive
        .put(
            &spec,
            Bytes::from_static(b"these bytes"),
            sha256(b"other bytes"),
        )
        .await;
    assert!(refused.is_err(), "a wrong checksum must be refused");
    assert_eq!(archive.head(&spec.key, None).await.expect("head"), None);
}

/// A second PUT of a key adds a version and keeps the first: both are listed,
/// only the newest is latest, and the first still reads back.
pub async fn a_second_put_keeps_the_first_version(fixture: &ArchiveFixture<'_>) {
    let archive = fixture.archive;
    let spec = fixture.spec("two-versions", one_day_from_now());
    let first = Bytes::from_static(b"first");
    let second = Bytes::from_static(b"second");
    let first_version = archive
        .put(&spec, first.clone(), sha256(&first))
        .await
        .expect("put 1")
        .expect("version 1");
    let second_version = archive
        .put(&spec, second.clone(), sha256(&second))
        .await
        .expect("put 2")
        .expect("version 2");
    assert_ne!(first_version, second_version);
    let listed = archive
        .list_versions(&fixture.key("two-versions"))
        .await
        .expect("list versions");
    let mine: Vec<_> = listed.iter().filter(|v| v.key == spec.key).collect();
    assert_eq!(mine.len(), 2, "{listed:?}");
    for version in &mine {
        assert_eq!(version.is_latest, version.version_id == second_version);
    }
    assert_eq!(
        read_all(archive, &spec.key, Some(&first_version)).await,
        first
    );
    assert_eq!(read_all(archive, &spec.key, None).await, second);
}

/// An absent key has no HEAD (not an error), and its GET is "not found".
pub async fn absent_keys_are_absent(fixture: &ArchiveFixture<'_>) {
    let archive = fixture.archive;
    let key = fixture.key("never-written");
    assert_eq!(archive.head(&key, None).await.expect("head"), None);
    match archive.get(&key, None).await {
        Err(error) => assert!(error.is_not_found(), "{error}"),
        Ok(_) => panic!("GET of an absent key succeeded"),
    }
}

/// A lock can be extended; HEAD then reports the later date.
pub async fn a_lock_can_be_extended(fixture: &ArchiveFixture<'_>) {
    let archive = fixture.archive;
    let spec = fixture.spec("extended", one_day_from_now());
    let body = Bytes::from_static(b"extend me");
    let version = archive
        .put(&spec, body.clone(), sha256(&body))
        .await
        .expect("put")
        .expect("version");
    let later = spec.retain_until + Duration::days(2);
    archive
        .put_retention(&spec.key, &version, LockMode::Compliance, later)
        .await
        .expect("extend the lock");
    let head = archive
        .head(&spec.key, Some(&version))
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(head.retain_until, Some(later));
    assert_eq!(head.lock_mode, Some(LockMode::Compliance));
}

/// A multipart upload completes into one version whose composite checksum
/// is the one [`expected_checksum`] predicts and whose bytes read back; an
/// aborted upload leaves nothing. Returns the completed version's HEAD and the
/// retain-until date asked for.
pub async fn multipart_uploads_complete_or_leave_nothing(
    fixture: &ArchiveFixture<'_>,
) -> (ArchivedHead, DateTime<Utc>) {
    let archive = fixture.archive;
    let until = one_day_from_now();
    let spec = fixture.spec("multipart", until);
    let body = Bytes::from(vec![7u8; 4096]);
    let upload = archive.create_multipart(&spec).await.expect("create");
    let part = archive
        .upload_part(&spec.key, &upload, 1, body.clone(), sha256(&body))
        .await
        .expect("part 1");
    let version = archive
        .complete_multipart(&spec.key, &upload, std::slice::from_ref(&part))
        .await
        .expect("complete")
        .expect("version");
    let head = archive
        .head(&spec.key, Some(&version))
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(
        head.checksum_sha256.as_deref(),
        Some(expected_checksum(&sha256(&body), &[part]).as_str())
    );
    assert_eq!(read_all(archive, &spec.key, Some(&version)).await, body);

    let aborted = fixture.spec("multipart-aborted", until);
    let upload = archive.create_multipart(&aborted).await.expect("create");
    archive
        .upload_part(&aborted.key, &upload, 1, body.clone(), sha256(&body))
        .await
        .expect("part 1");
    archive
        .abort_multipart(&aborted.key, &upload)
        .await
        .expect("abort");
    assert_eq!(archive.head(&aborted.key, None).await.expect("head"), None);
    (head, until)
}

/// A completed multipart upload is locked and encrypted as its
/// CreateMultipartUpload asked (S3 applies the lock and key given there).
pub async fn multipart_uploads_are_locked_as_asked(fixture: &ArchiveFixture<'_>) {
    let (head, until) = multipart_uploads_complete_or_leave_nothing(fixture).await;
    assert_eq!(head.lock_mode, Some(LockMode::Compliance));
    assert_eq!(head.retain_until, Some(until));
    let reported_key = head.sse_kms_key_id.unwrap_or_default();
    assert!(
        same_kms_key(&fixture.kms_key_id, &reported_key),
        "{reported_key}"
    );
}

/// The checks every archive passes, whatever its multipart support.
pub async fn run_single_put_checks(fixture: &ArchiveFixture<'_>) {
    put_is_read_back_as_asked(fixture).await;
    a_corrupted_put_is_refused(fixture).await;
    a_second_put_keeps_the_first_version(fixture).await;
    absent_keys_are_absent(fixture).await;
    a_lock_can_be_extended(fixture).await;
}

/// Every check above, in order.
pub async fn run_all(fixture: &ArchiveFixture<'_>) {
    run_single_put_checks(fixture).await;
    multipart_uploads_are_locked_as_asked(fixture).await;
}

#[cfg(test)]
mod memory_archive {
    use super::*;
    use crate::testsuite::memory::MemoryArchive;

    #[tokio::test]
    async fn the_memory_archive_conforms() {
        let archive = MemoryArchive::new("archive");
        run_all(&ArchiveFixture {
            archive: &archive,
            kms_key_id: "arn:aws:kms:us-east-1:111111111111:key/k-1".to_string(),
            key_prefix: "conformance".to_string(),
        })
        .await;
    }
}
