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

impl SourceRef {
    /// `<prefix>/<source account>/<source bucket>/<source key>`.
    pub fn archive_key(&self, archive_prefix: &str) -> String {
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
    pub fn from_archive_key(archive_prefix: &str, archive_key: &str) -> Option<SourceRef> {
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
