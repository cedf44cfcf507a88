//! Where a copy came from and what the store remembers of it.

use serde::{Deserialize, Serialize};

/// Where a source object came from: the account whose role read it, the
/// bucket and the key. Archive keys and store keys derive from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceRef {
    pub account_id: String,
    pub bucket: String,
    pub key: String,
}

/// S3's limit on a key, in UTF-8 bytes (AWS answers `KeyTooLongError`
/// beyond it; the emulator does not, so the product enforces it).
pub const MAX_S3_KEY_BYTES: usize = 1024;

/// Where copies whose archive key S3 cannot hold (over [`MAX_S3_KEY_BYTES`])
/// or that must not carry their source key (control characters) live, under
/// the archive prefix: `_trailvault/quarantine/<reader>/<bucket>/<SHA-256 of
/// the source key>`. `_trailvault` is no account id, so it never mixes with
/// the copies; the original key is in the copy's `tv-source-key` metadata.
pub const QUARANTINE_FOLDER: &str = "_trailvault/quarantine/";

/// Why a source key is archived under a quarantine key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quarantine {
    /// The archive key would be this many bytes, over [`MAX_S3_KEY_BYTES`].
    TooLong(usize),
    /// The key holds control characters (newline, ESC, ...).
    ControlCharacters,
}

impl std::fmt::Display for Quarantine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quarantine::TooLong(bytes) => write!(
                f,
                "its archive key would be {bytes} bytes, more than the {MAX_S3_KEY_BYTES} S3 allows"
            ),
            Quarantine::ControlCharacters => f.write_str("the key contains control characters"),
        }
    }
}

/// `<prefix>/_trailvault/quarantine/` (or the folder alone without a prefix).
pub fn quarantine_prefix(archive_prefix: &str) -> String {
    if archive_prefix.is_empty() {
        QUARANTINE_FOLDER.to_string()
    } else {
        format!("{archive_prefix}/{QUARANTINE_FOLDER}")
    }
}

impl SourceRef {
    /// Where the copy lives: [`SourceRef::plain_archive_key`], or for a key
    /// the archive cannot hold under its own name ([`SourceRef::quarantine`])
    /// `<prefix>/_trailvault/quarantine/<account>/<bucket>/<SHA-256 hex of the key>`.
    pub fn archive_key(&self, archive_prefix: &str) -> String {
        if self.quarantine(archive_prefix).is_none() {
            return self.plain_archive_key(archive_prefix);
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.key.as_bytes());
        format!(
            "{}{}/{}/{}",
            quarantine_prefix(archive_prefix),
            self.account_id,
            self.bucket,
            hex::encode(digest.as_ref())
        )
    }

    /// Why this source key cannot be archived under its own name; `None`
    /// when it can.
    pub fn quarantine(&self, archive_prefix: &str) -> Option<Quarantine> {
        if crate::model::text::has_control_chars(&self.key) {
            return Some(Quarantine::ControlCharacters);
        }
        let bytes = self.plain_archive_key(archive_prefix).len();
        (bytes > MAX_S3_KEY_BYTES).then_some(Quarantine::TooLong(bytes))
    }

    /// The source of a quarantined copy: its archive key names the account
    /// and bucket, `source_key` (the decoded `tv-source-key` metadata) the
    /// key, which must hash to the name. `None` for any other key.
    pub fn from_quarantine_key(
        archive_prefix: &str,
        archive_key: &str,
        source_key: &str,
    ) -> Option<SourceRef> {
        let rest = archive_key.strip_prefix(&quarantine_prefix(archive_prefix))?;
        let mut parts = rest.split('/');
        let (account_id, bucket, hash) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || account_id.is_empty() || bucket.is_empty() {
            return None;
        }
        let source = SourceRef {
            account_id: account_id.to_string(),
            bucket: bucket.to_string(),
            key: source_key.to_string(),
        };
        (source.quarantine(archive_prefix).is_some()
            && source.archive_key(archive_prefix) == archive_key
            && !hash.is_empty())
        .then_some(source)
    }

    /// `<prefix>/<source account>/<source bucket>/<source key>`.
    pub fn plain_archive_key(&self, archive_prefix: &str) -> String {
        if archive_prefix.is_empty() {
            format!("{}/{}/{}", self.account_id, self.bucket, self.key)
        } else {
            format!(
                "{}/{}/{}/{}",
                archive_prefix, self.account_id, self.bucket, self.key
            )
        }
    }

    /// The inverse of [`SourceRef::archive_key`]; `None` if the key is not
    /// under the prefix or has too few segments.
    /// Quarantined copies (see [`QUARANTINE_FOLDER`]) do not map back from
    /// their key alone: see [`SourceRef::from_quarantine_key`].
    pub fn from_archive_key(archive_prefix: &str, archive_key: &str) -> Option<SourceRef> {
        if archive_key.starts_with(&quarantine_prefix(archive_prefix)) {
            return None;
        }
        let rest = if archive_prefix.is_empty() {
            archive_key
        } else {
            archive_key
                .strip_prefix(archive_prefix)?
                .strip_prefix('/')?
        };
        let (account_id, rest) = rest.split_once('/')?;
        let (bucket, key) = rest.split_once('/')?;
        if account_id.is_empty() || bucket.is_empty() || key.is_empty() {
            return None;
        }
        Some(SourceRef {
            account_id: account_id.to_string(),
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

/// What the store remembers of one archived source object. Small on purpose:
/// the store must stay well under 512 bytes per object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Record layout version.
    pub v: u8,
    pub etag: String,
    pub size: u64,
    #[serde(with = "hex32")]
    pub raw_sha256: [u8; 32],
    /// SHA-256 of the single inflated gzip member, when the file inflated cleanly.
    #[serde(with = "opt_hex32")]
    pub content_sha256: Option<[u8; 32]>,
    /// Why the content could not be inflated (`trailing_data`, `not_gzip`, ...).
    pub content_error: Option<String>,
    pub archive_version_id: Option<String>,
    /// Seconds since the epoch.
    pub copied_at: i64,
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<[u8; 32]>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_some(&hex::encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Some(out))
    }
}

/// Where archived objects of one source bucket live: the reading account and
/// the bucket (the store is keyed by them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArchivedSource {
    pub reader_account_id: String,
    pub bucket: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_keys_round_trip() {
        let source = SourceRef {
            account_id: "111122223333".into(),
            bucket: "aws-cloudtrail-logs-111122223333".into(),
            key: "org/AWSLogs/o-abc/111122223333/CloudTrail/us-east-1/2026/01/01/x.json.gz".into(),
        };
        for prefix in ["", "archive", "a/b"] {
            let key = source.archive_key(prefix);
            assert_eq!(
                SourceRef::from_archive_key(prefix, &key),
                Some(source.clone()),
                "prefix {prefix:?}"
            );
        }
        assert_eq!(
            source.archive_key("archive"),
            format!(
                "archive/111122223333/aws-cloudtrail-logs-111122223333/{}",
                source.key
            )
        );
        assert_eq!(SourceRef::from_archive_key("archive", "other/1/b/k"), None);
        assert_eq!(SourceRef::from_archive_key("archive", "archive/1/b"), None);
    }

    #[test]
    fn keys_the_archive_cannot_hold_are_quarantined_under_their_hash() {
        let source = |key: &str| SourceRef {
            account_id: "111122223333".into(),
            bucket: "trail-bucket".into(),
            key: key.into(),
        };
        // prefix "archive/" + "111122223333/" + "trail-bucket/" = 34 bytes.
        let longest = source(&"k".repeat(MAX_S3_KEY_BYTES - 34));
        assert_eq!(longest.quarantine("archive"), None);
        assert_eq!(longest.archive_key("archive").len(), MAX_S3_KEY_BYTES);
        let over = source(&"k".repeat(MAX_S3_KEY_BYTES - 33));
        assert_eq!(
            over.quarantine("archive"),
            Some(Quarantine::TooLong(MAX_S3_KEY_BYTES + 1))
        );
        // Multibyte characters count in bytes.
        let wide = source(&"é".repeat(500));
        assert!(matches!(
            wide.quarantine("archive"),
            Some(Quarantine::TooLong(_))
        ));
        for key in ["a\nb", "esc\u{1b}[2J", "del\u{7f}", "c1\u{85}"] {
            assert_eq!(
                source(key).quarantine("archive"),
                Some(Quarantine::ControlCharacters),
                "{key:?}"
            );
        }
        let control = source("AWSLogs/111122223333/CloudTrail/x\ny.json.gz");
        let key = control.archive_key("archive");
        assert!(key.starts_with("archive/_trailvault/quarantine/111122223333/trail-bucket/"));
        assert_eq!(
            key.len(),
            "archive/_trailvault/quarantine/111122223333/trail-bucket/".len() + 64
        );
        assert_eq!(SourceRef::from_archive_key("archive", &key), None);
        assert_eq!(
            SourceRef::from_quarantine_key("archive", &key, &control.key),
            Some(control.clone())
        );
        // Metadata that does not hash to the name is not believed.
        assert_eq!(
            SourceRef::from_quarantine_key("archive", &key, "other\n"),
            None
        );
        // Without a prefix the budget is larger: that key fits, a longer one not.
        assert_eq!(over.quarantine(""), None);
        let longer = source(&"k".repeat(MAX_S3_KEY_BYTES));
        assert_eq!(
            SourceRef::from_quarantine_key("", &longer.archive_key(""), &longer.key),
            Some(longer.clone())
        );
    }

    #[test]
    fn object_records_serialize_compactly_and_round_trip() {
        let record = ObjectRecord {
            v: 1,
            etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
            size: 1234,
            raw_sha256: [7; 32],
            content_sha256: Some([9; 32]),
            content_error: None,
            archive_version_id: Some("v1".into()),
            copied_at: 1_700_000_000,
        };
        let json = serde_json::to_vec(&record).unwrap();
        let back: ObjectRecord = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, record);
    }
}
