//! CloudTrail digest files: the JSON body (docs/cloudtrail-format.md §2), the string to sign (docs/cloudtrail-format.md §3.3)
//! and the signature check (docs/cloudtrail-format.md §3.2).
//!
//! A digest is parsed from its **exact inflated bytes** (see
//! [`crate::cloudtrail::gzip::inflate_single_member`]); the same bytes are hashed for
//! the string to sign and for the successor's `previousDigestHashValue`. JSON is never
//! re-serialised (docs/cloudtrail-format.md §4: key order, whitespace and `\/` escaping would change).
//!
//! Parsing is lenient in shape and strict in meaning: it reads a JSON object field by
//! field, so that each missing, mistyped or wrongly-null field is reported as
//! [`DigestError::Field`] naming that field, and unknown fields are ignored.

use aws_lc_rs::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::public_keys::PublicKey;

/// A digest timestamp: the string exactly as in the JSON (JSON-decoded), which the
/// string to sign uses verbatim, and its parsed value for time logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestTime {
    /// The JSON-decoded string, e.g. `2023-10-15T23:04:04Z`.
    pub original: String,
    /// The same instant, parsed as RFC 3339.
    pub parsed: DateTime<Utc>,
}

/// The link to the previous digest of the chain (all five `previousDigest*` fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousDigest {
    /// `previousDigestS3Bucket`.
    pub s3_bucket: String,
    /// `previousDigestS3Object` (full key, including any prefix).
    pub s3_object: String,
    /// `previousDigestHashValue`: SHA-256 of the previous digest's inflated bytes.
    pub hash_value: [u8; 32],
    /// `previousDigestHashAlgorithm` (`SHA-256`).
    pub hash_algorithm: String,
    /// `previousDigestSignature`: hex, as in the previous digest's S3 metadata.
    pub signature: String,
}

/// One `logFiles[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileRef {
    /// Bucket CloudTrail delivered the log file to.
    pub s3_bucket: String,
    /// Key of the log file (any folder; do not assume `CloudTrail/`).
    pub s3_object: String,
    /// SHA-256 of the log file's inflated bytes (decoded from hex, either case).
    pub hash_value: [u8; 32],
    /// `hashAlgorithm` (`SHA-256`; the CLI ignores it).
    pub hash_algorithm: String,
    /// Newest event time in the log file.
    pub newest_event_time: DigestTime,
    /// Oldest event time in the log file.
    pub oldest_event_time: DigestTime,
}

/// A parsed digest file body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// `awsAccountId` (member account for organization trails).
    pub aws_account_id: String,
    /// `digestStartTime`.
    pub digest_start_time: DigestTime,
    /// `digestEndTime`; its `original` string is signed.
    pub digest_end_time: DigestTime,
    /// `digestS3Bucket`: the bucket the digest was delivered to (signed).
    pub digest_s3_bucket: String,
    /// `digestS3Object`: the key the digest was delivered to (signed).
    pub digest_s3_object: String,
    /// `digestPublicKeyFingerprint`: MD5 of the signing key's DER, hex.
    pub digest_public_key_fingerprint: String,
    /// `digestSignatureAlgorithm` (`SHA256withRSA`); `None` only when absent.
    pub digest_signature_algorithm: Option<String>,
    /// `newestEventTime`; `None` when null (empty digest) or absent.
    pub newest_event_time: Option<DigestTime>,
    /// `oldestEventTime`; `None` when null (empty digest) or absent.
    pub oldest_event_time: Option<DigestTime>,
    /// The previous digest, or `None` for a chain's starting digest (all five
    /// `previousDigest*` fields null).
    pub previous: Option<PreviousDigest>,
    /// `logFiles`, possibly empty.
    pub log_files: Vec<LogFileRef>,
    /// Fields docs/cloudtrail-format.md §2 lists that were absent but not required by the AWS CLI
    /// (docs/cloudtrail-format.md §9.2: warn, don't fail, until confirmed on real output). The CLI's six
    /// mandatory fields, `awsAccountId` and `logFiles` are errors when absent.
    pub absent_fields: Vec<&'static str>,
}

/// Why a digest body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The inflated body is larger than the caller's limit.
    #[error("digest is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Body length.
        len: usize,
        /// The caller's limit.
        max: usize,
    },
    /// The body is not JSON (or not UTF-8).
    #[error("digest is not valid JSON: {0}")]
    Json(String),
    /// The body is JSON but not an object.
    #[error("digest JSON is not an object")]
    NotAnObject,
    /// A field is missing, has the wrong type, is null where not allowed, or has an
    /// invalid value.
    #[error("digest field {field}: {problem}")]
    Field {
        /// JSON field name; `logFiles[].x` for entries (the index is in `problem`).
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature is not a hex string.
    #[error("signature is not valid hex")]
    BadHex,
    /// The signature length differs from the key's modulus length.
    #[error("signature is {actual} bytes, the key needs {expected}")]
    WrongLength {
        /// The key's modulus length in bytes.
        expected: usize,
        /// The decoded signature's length.
        actual: usize,
    },
    /// RSASSA-PKCS1-v1_5/SHA-256 verification failed (wrong key, message or
    /// signature, or a key aws-lc-rs does not accept, e.g. under 2048 bits).
    #[error("signature verification failed")]
    Invalid,
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let array = <[u8; 32]>::try_from(digest.as_ref());
    debug_assert!(array.is_ok(), "SHA-256 is 32 bytes");
    array.unwrap_or([0; 32])
}

/// The exact string CloudTrail signs (docs/cloudtrail-format.md §3.3):
/// `end_time \n bucket/object \n inflated_sha256_hex \n (previous_signature | "null")`,
/// LF separators, no trailing newline. Values must be the JSON-decoded strings from
/// the digest itself (the original bucket and key, not where a copy now lives).
pub fn string_to_sign(
    end_time: &str,
    bucket: &str,
    object: &str,
    inflated_sha256_hex: &str,
    previous_signature: Option<&str>,
) -> String {
    // "null" when absent: the CLI's comment says it must match the Java implementation.
    let previous = previous_signature.unwrap_or("null");
    format!("{end_time}\n{bucket}/{object}\n{inflated_sha256_hex}\n{previous}")
}

/// Verifies an RSASSA-PKCS1-v1_5 / SHA-256 signature (hex, either case) of
/// `message` with `public_key` (docs/cloudtrail-format.md §3.2; not PSS).
pub fn verify_signature(
    public_key: &PublicKey,
    message: &[u8],
    signature_hex: &str,
) -> Result<(), SignatureError> {
    let signature = hex::decode(signature_hex).map_err(|_| SignatureError::BadHex)?;
    let expected = public_key.modulus_len();
    if signature.len() != expected {
        return Err(SignatureError::WrongLength {
            expected,
            actual: signature.len(),
        });
    }
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key.pkcs1())
        .verify(message, &signature)
        .map_err(|_| SignatureError::Invalid)
}

impl Digest {
    /// Parses the exact inflated digest bytes, refusing bodies over `max_len` bytes.
    pub fn parse(inflated: &[u8], max_len: usize) -> Result<Self, DigestError> {
        if inflated.len() > max_len {
            return Err(DigestError::TooLarge {
                len: inflated.len(),
                max: max_len,
            });
        }
        let value: Value = serde_json::from_slice(inflated)
            .map_err(|error| DigestError::Json(error.to_string()))?;
        let Value::Object(object) = value else {
            return Err(DigestError::NotAnObject);
        };
        let mut absent_fields = Vec::new();
        let fields = Fields {
            object: &object,
            index: None,
        };

        let aws_account_id = fields.required_string("awsAccountId")?;
        let digest_start_time = fields.required_time("digestStartTime")?;
        let digest_end_time = fields.required_time("digestEndTime")?;
        let digest_s3_bucket = fields.required_string("digestS3Bucket")?;
        let digest_s3_object = fields.required_string("digestS3Object")?;
        let digest_public_key_fingerprint = fields.required_string("digestPublicKeyFingerprint")?;
        let digest_signature_algorithm =
            fields.optional_string("digestSignatureAlgorithm", &mut absent_fields)?;
        let newest_event_time = fields.nullable_time("newestEventTime", &mut absent_fields)?;
        let oldest_event_time = fields.nullable_time("oldestEventTime", &mut absent_fields)?;
        let previous = parse_previous(&fields, &mut absent_fields)?;
        let log_files = parse_log_files(&object)?;

        Ok(Self {
            aws_account_id,
            digest_start_time,
            digest_end_time,
            digest_s3_bucket,
            digest_s3_object,
            digest_public_key_fingerprint,
            digest_signature_algorithm,
            newest_event_time,
            oldest_event_time,
            previous,
            log_files,
            absent_fields,
        })
    }

    /// The string to sign for this digest, given the SHA-256 of its exact inflated
    /// bytes (the bytes it was parsed from).
    pub fn string_to_sign(&self, inflated_sha256: &[u8; 32]) -> String {
        string_to_sign(
            &self.digest_end_time.original,
            &self.digest_s3_bucket,
            &self.digest_s3_object,
            &hex::encode(inflated_sha256),
            self.previous
                .as_ref()
                .map(|previous| previous.signature.as_str()),
        )
    }
}

fn parse_previous(
    fields: &Fields<'_>,
    absent_fields: &mut Vec<&'static str>,
) -> Result<Option<PreviousDigest>, DigestError> {
    // The CLI requires the previousDigestSignature key to exist (null allowed).
    if !fields.object.contains_key("previousDigestSignature") {
        return Err(fields.error("previousDigestSignature", "missing".to_owned()));
    }
    let s3_bucket = fields.nullable_string("previousDigestS3Bucket", absent_fields)?;
    let s3_object = fields.nullable_string("previousDigestS3Object", absent_fields)?;
    let hash_value = fields.nullable_string("previousDigestHashValue", absent_fields)?;
    let hash_algorithm = fields.nullable_string("previousDigestHashAlgorithm", absent_fields)?;
    let signature = fields.nullable_string("previousDigestSignature", absent_fields)?;
    match (s3_bucket, s3_object, hash_value, hash_algorithm, signature) {
        (None, None, None, None, None) => Ok(None),
        (
            Some(s3_bucket),
            Some(s3_object),
            Some(hash_value),
            Some(hash_algorithm),
            Some(signature),
        ) => Ok(Some(PreviousDigest {
            s3_bucket,
            s3_object,
            hash_value: decode_sha256_hex(&hash_value)
                .map_err(|problem| fields.error("previousDigestHashValue", problem))?,
            hash_algorithm,
            signature,
        })),
        (s3_bucket, s3_object, hash_value, hash_algorithm, _) => {
            let missing = [
                ("previousDigestS3Bucket", s3_bucket.is_none()),
                ("previousDigestS3Object", s3_object.is_none()),
                ("previousDigestHashValue", hash_value.is_none()),
                ("previousDigestHashAlgorithm", hash_algorithm.is_none()),
            ]
            .into_iter()
            .find(|(_, is_missing)| *is_missing)
            .map_or("previousDigestSignature", |(name, _)| name);
            Err(fields.error(
                missing,
                "null or absent while other previousDigest* fields are set".to_owned(),
            ))
        }
    }
}

fn parse_log_files(object: &Map<String, Value>) -> Result<Vec<LogFileRef>, DigestError> {
    let entries = match object.get("logFiles") {
        None => return Err(field_error("logFiles", None, "missing".to_owned())),
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            return Err(field_error(
                "logFiles",
                None,
                format!("expected an array, found {}", type_name(other)),
            ))
        }
    };
    let mut log_files = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let Value::Object(entry_object) = entry else {
            return Err(field_error(
                "logFiles[]",
                Some(index),
                format!("expected an object, found {}", type_name(entry)),
            ));
        };
        let fields = Fields {
            object: entry_object,
            index: Some(index),
        };
        let hash_text = fields.required_string("logFiles[].hashValue")?;
        log_files.push(LogFileRef {
            s3_bucket: fields.required_string("logFiles[].s3Bucket")?,
            s3_object: fields.required_string("logFiles[].s3Object")?,
            hash_value: decode_sha256_hex(&hash_text)
                .map_err(|problem| fields.error("logFiles[].hashValue", problem))?,
            hash_algorithm: fields.required_string("logFiles[].hashAlgorithm")?,
            newest_event_time: fields.required_time("logFiles[].newestEventTime")?,
            oldest_event_time: fields.required_time("logFiles[].oldestEventTime")?,
        });
    }
    Ok(log_files)
}

/// Decodes 64 hex digits (either case) into a SHA-256 value.
fn decode_sha256_hex(text: &str) -> Result<[u8; 32], String> {
    if text.len() != 64 {
        return Err(format!(
            "expected 64 hex digits, found {} characters",
            text.chars().count()
        ));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| "not hex".to_owned())?;
    Ok(out)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn field_error(field: &'static str, index: Option<usize>, problem: String) -> DigestError {
    let problem = match index {
        Some(index) => format!("entry {index}: {problem}"),
        None => problem,
    };
    DigestError::Field { field, problem }
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| format!("invalid timestamp {text:?}: {error}"))
}

/// Field access on one JSON object (the digest, or one `logFiles[]` entry).
struct Fields<'a> {
    object: &'a Map<String, Value>,
    /// `logFiles` index, for error messages.
    index: Option<usize>,
}

impl Fields<'_> {
    /// Looks up `field`; for `logFiles[].x` names the JSON key is `x`.
    fn get(&self, field: &'static str) -> Option<&Value> {
        let key = field.rsplit_once('.').map_or(field, |(_, key)| key);
        self.object.get(key)
    }

    fn error(&self, field: &'static str, problem: String) -> DigestError {
        field_error(field, self.index, problem)
    }

    fn string_value(&self, field: &'static str, value: &Value) -> Result<String, DigestError> {
        match value {
            Value::String(text) => Ok(text.clone()),
            other => Err(self.error(
                field,
                format!("expected a string, found {}", type_name(other)),
            )),
        }
    }

    /// Must be present and a string.
    fn required_string(&self, field: &'static str) -> Result<String, DigestError> {
        match self.get(field) {
            None => Err(self.error(field, "missing".to_owned())),
            Some(value) => self.string_value(field, value),
        }
    }

    /// Absent is tolerated (recorded), null is not.
    fn optional_string(
        &self,
        field: &'static str,
        absent_fields: &mut Vec<&'static str>,
    ) -> Result<Option<String>, DigestError> {
        match self.get(field) {
            None => {
                absent_fields.push(field);
                Ok(None)
            }
            Some(value) => self.string_value(field, value).map(Some),
        }
    }

    /// Null is allowed; absent is tolerated (recorded) and treated as null.
    fn nullable_string(
        &self,
        field: &'static str,
        absent_fields: &mut Vec<&'static str>,
    ) -> Result<Option<String>, DigestError> {
        match self.get(field) {
            None => {
                absent_fields.push(field);
                Ok(None)
            }
            Some(Value::Null) => Ok(None),
            Some(value) => self.string_value(field, value).map(Some),
        }
    }

    fn time_from(&self, field: &'static str, text: String) -> Result<DigestTime, DigestError> {
        let parsed = parse_time(&text).map_err(|problem| self.error(field, problem))?;
        Ok(DigestTime {
            original: text,
            parsed,
        })
    }

    fn required_time(&self, field: &'static str) -> Result<DigestTime, DigestError> {
        let text = self.required_string(field)?;
        self.time_from(field, text)
    }

    fn nullable_time(
        &self,
        field: &'static str,
        absent_fields: &mut Vec<&'static str>,
    ) -> Result<Option<DigestTime>, DigestError> {
        match self.nullable_string(field, absent_fields)? {
            None => Ok(None),
            Some(text) => self.time_from(field, text).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
    use proptest::prelude::*;

    const MAX: usize = 1024 * 1024;
    const REAL_DIGEST: &[u8] = include_bytes!("../../testdata/real-digest.json");
    const DOCS_DIGEST: &[u8] = include_bytes!("../../testdata/aws-docs-digest-sample.json");
    const DOCS_EMPTY_DIGEST: &[u8] =
        include_bytes!("../../testdata/aws-docs-empty-digest-sample.json");

    fn object_without(bytes: &[u8], field: &str) -> Vec<u8> {
        let mut value: Value = serde_json::from_slice(bytes).expect("json");
        value.as_object_mut().expect("object").remove(field);
        serde_json::to_vec(&value).expect("serialize")
    }

    fn object_with(bytes: &[u8], field: &str, new_value: Value) -> Vec<u8> {
        let mut value: Value = serde_json::from_slice(bytes).expect("json");
        value
            .as_object_mut()
            .expect("object")
            .insert(field.to_owned(), new_value);
        serde_json::to_vec(&value).expect("serialize")
    }

    #[test]
    fn aws_cli_string_to_sign_vector() {
        let vectors: Value =
            serde_json::from_str(include_str!("../../testdata/aws-cli-test-vectors.json"))
                .expect("json");
        let case = &vectors["string_to_sign_first_digest"];
        let fields = &case["digest_fields"];
        let inflated = case["inflated_digest_bytes_utf8"].as_str().expect("bytes");
        let expected = case["expected_string_to_sign"].as_str().expect("expected");
        assert!(fields["previousDigestSignature"].is_null());
        let actual = string_to_sign(
            fields["digestEndTime"].as_str().expect("end"),
            fields["digestS3Bucket"].as_str().expect("bucket"),
            fields["digestS3Object"].as_str().expect("object"),
            &hex::encode(sha256(inflated.as_bytes())),
            None,
        );
        assert_eq!(actual, expected);
        assert_eq!(
            string_to_sign("t", "b", "k/x", "00", Some("abcd")),
            "t\nb/k/x\n00\nabcd"
        );
    }

    #[test]
    fn real_digest_parses_with_escaped_slashes_decoded() {
        assert_eq!(
            hex::encode(sha256(REAL_DIGEST)),
            "4277102dccf54c0c247738ca5e6e3504b7370206ef1c82855994ec23441ae1ed"
        );
        let digest = Digest::parse(REAL_DIGEST, MAX).expect("valid");
        assert_eq!(digest.aws_account_id, "327878933619");
        assert_eq!(digest.digest_end_time.original, "2023-10-15T23:04:04Z");
        assert_eq!(
            digest.digest_end_time.parsed,
            DateTime::parse_from_rfc3339("2023-10-15T23:04:04Z")
                .expect("time")
                .with_timezone(&Utc)
        );
        assert_eq!(digest.digest_start_time.original, "2023-10-15T22:04:04Z");
        assert_eq!(digest.digest_s3_bucket, "llm-guard-trail");
        assert_eq!(
            digest.digest_s3_object,
            "AWSLogs/327878933619/CloudTrail-Digest/ap-northeast-1/2023/10/15/327878933619_CloudTrail-Digest_ap-northeast-1_llm-guard-trail_us-west-2_20231015T230404Z.json.gz"
        );
        assert_eq!(
            digest.digest_public_key_fingerprint,
            "be2f0b997552f44942837300ba1aba9d"
        );
        assert_eq!(
            digest.digest_signature_algorithm.as_deref(),
            Some("SHA256withRSA")
        );
        assert!(digest.absent_fields.is_empty());
        let previous = digest.previous.as_ref().expect("previous");
        assert!(previous
            .s3_object
            .starts_with("AWSLogs/327878933619/CloudTrail-Digest/"));
        assert_eq!(
            hex::encode(previous.hash_value),
            "8f953371d3e85eddb89b05ed6b9e680791055315c73e1025ab5dba7bb2aee189"
        );
        assert_eq!(previous.signature.len(), 512);
        assert_eq!(digest.log_files.len(), 5);
        for log in &digest.log_files {
            assert!(log
                .s3_object
                .starts_with("AWSLogs/327878933619/CloudTrail/ap-northeast-1/2023/10/15/"));
            assert!(!log.s3_object.contains('\\'));
            assert_eq!(log.hash_algorithm, "SHA-256");
        }
        assert_eq!(
            hex::encode(digest.log_files[0].hash_value),
            "4309c6161e37538de72ec6f679e86b7e45aebed71fa7e76af70c3019fef44e19"
        );
        let to_sign = digest.string_to_sign(&sha256(REAL_DIGEST));
        assert!(to_sign.starts_with("2023-10-15T23:04:04Z\nllm-guard-trail/AWSLogs/327878933619/"));
        assert!(to_sign.contains(
            "\n4277102dccf54c0c247738ca5e6e3504b7370206ef1c82855994ec23441ae1ed\n11c11e25"
        ));
    }

    #[test]
    fn docs_samples_parse() {
        let digest = Digest::parse(DOCS_DIGEST, MAX).expect("valid");
        assert_eq!(digest.log_files.len(), 1);
        assert!(digest.previous.is_some());
        assert!(digest.newest_event_time.is_some());

        let empty = Digest::parse(DOCS_EMPTY_DIGEST, MAX).expect("valid");
        assert!(empty.log_files.is_empty());
        assert_eq!(empty.newest_event_time, None);
        assert_eq!(empty.oldest_event_time, None);
        assert!(empty.absent_fields.is_empty());
    }

    #[test]
    fn starting_digest_has_no_previous_and_signs_null() {
        let mut bytes = REAL_DIGEST.to_vec();
        for field in [
            "previousDigestS3Bucket",
            "previousDigestS3Object",
            "previousDigestHashValue",
            "previousDigestHashAlgorithm",
            "previousDigestSignature",
        ] {
            bytes = object_with(&bytes, field, Value::Null);
        }
        let digest = Digest::parse(&bytes, MAX).expect("valid");
        assert_eq!(digest.previous, None);
        assert!(digest.string_to_sign(&[0; 32]).ends_with("\nnull"));
    }

    #[test]
    fn field_errors_name_the_field() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                object_without(REAL_DIGEST, "digestEndTime"),
                "digestEndTime",
            ),
            (object_without(REAL_DIGEST, "awsAccountId"), "awsAccountId"),
            (object_without(REAL_DIGEST, "logFiles"), "logFiles"),
            (
                object_without(REAL_DIGEST, "previousDigestSignature"),
                "previousDigestSignature",
            ),
            (
                object_with(REAL_DIGEST, "digestS3Bucket", Value::Null),
                "digestS3Bucket",
            ),
            (
                object_with(REAL_DIGEST, "digestS3Object", Value::from(7)),
                "digestS3Object",
            ),
            (
                object_with(REAL_DIGEST, "digestStartTime", Value::from("yesterday")),
                "digestStartTime",
            ),
            (
                object_with(REAL_DIGEST, "digestSignatureAlgorithm", Value::Null),
                "digestSignatureAlgorithm",
            ),
            (
                object_with(REAL_DIGEST, "newestEventTime", Value::from(false)),
                "newestEventTime",
            ),
            (
                object_with(REAL_DIGEST, "previousDigestS3Object", Value::Null),
                "previousDigestS3Object",
            ),
            (
                object_with(REAL_DIGEST, "previousDigestHashValue", Value::from("abc")),
                "previousDigestHashValue",
            ),
            (
                object_with(REAL_DIGEST, "logFiles", Value::from("none")),
                "logFiles",
            ),
            (
                object_with(REAL_DIGEST, "logFiles", serde_json::json!([1])),
                "logFiles[]",
            ),
            (
                object_with(
                    REAL_DIGEST,
                    "logFiles",
                    serde_json::json!([{"s3Bucket": "b", "s3Object": "k", "hashValue": "zz".repeat(32), "hashAlgorithm": "SHA-256", "newestEventTime": "2023-10-15T22:04:51Z", "oldestEventTime": "2023-10-15T22:04:51Z"}]),
                ),
                "logFiles[].hashValue",
            ),
            (
                object_with(
                    REAL_DIGEST,
                    "logFiles",
                    serde_json::json!([{"s3Bucket": "b", "s3Object": "k", "hashValue": "ab".repeat(32), "hashAlgorithm": "SHA-256", "newestEventTime": null, "oldestEventTime": "2023-10-15T22:04:51Z"}]),
                ),
                "logFiles[].newestEventTime",
            ),
        ];
        for (bytes, expected_field) in cases {
            match Digest::parse(&bytes, MAX) {
                Err(DigestError::Field { field, .. }) => assert_eq!(field, expected_field),
                other => panic!("expected a field error for {expected_field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn uppercase_hex_is_accepted_and_absent_optional_fields_recorded() {
        let upper = "AB".repeat(32);
        let bytes = object_with(
            REAL_DIGEST,
            "logFiles",
            serde_json::json!([{"s3Bucket": "b", "s3Object": "k", "hashValue": upper, "hashAlgorithm": "SHA-256", "newestEventTime": "2023-10-15T22:04:51Z", "oldestEventTime": "2023-10-15T22:04:51Z"}]),
        );
        let bytes = object_without(&bytes, "digestSignatureAlgorithm");
        let digest = Digest::parse(&bytes, MAX).expect("valid");
        assert_eq!(digest.log_files[0].hash_value, [0xab; 32]);
        assert_eq!(digest.absent_fields, vec!["digestSignatureAlgorithm"]);
    }

    #[test]
    fn size_limit_and_non_objects() {
        assert_eq!(
            Digest::parse(REAL_DIGEST, 100),
            Err(DigestError::TooLarge {
                len: REAL_DIGEST.len(),
                max: 100
            })
        );
        assert_eq!(Digest::parse(b"[]", MAX), Err(DigestError::NotAnObject));
        assert!(matches!(
            Digest::parse(b"{", MAX),
            Err(DigestError::Json(_))
        ));
        assert!(matches!(
            Digest::parse(b"\xff", MAX),
            Err(DigestError::Json(_))
        ));
    }

    #[test]
    fn sign_verify_round_trip_and_tampering() {
        let key_pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
        let pkcs1 = key_pair.public_key().as_ref().to_vec();
        let spki = key_pair
            .public_key()
            .as_der()
            .expect("spki")
            .as_ref()
            .to_vec();
        let message = Digest::parse(REAL_DIGEST, MAX)
            .expect("valid")
            .string_to_sign(&sha256(REAL_DIGEST));
        let mut signature = vec![0u8; key_pair.public_modulus_len()];
        key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message.as_bytes(),
                &mut signature,
            )
            .expect("sign");
        let signature_hex = hex::encode(&signature);

        for der in [pkcs1, spki] {
            let public_key = PublicKey::from_der(&der).expect("key");
            assert_eq!(
                verify_signature(&public_key, message.as_bytes(), &signature_hex),
                Ok(())
            );
            assert_eq!(
                verify_signature(
                    &public_key,
                    message.as_bytes(),
                    &signature_hex.to_uppercase()
                ),
                Ok(())
            );
            let mut tampered_message = message.clone().into_bytes();
            tampered_message[3] ^= 1;
            assert_eq!(
                verify_signature(&public_key, &tampered_message, &signature_hex),
                Err(SignatureError::Invalid)
            );
            let mut tampered_signature = signature.clone();
            tampered_signature[100] ^= 1;
            assert_eq!(
                verify_signature(
                    &public_key,
                    message.as_bytes(),
                    &hex::encode(&tampered_signature)
                ),
                Err(SignatureError::Invalid)
            );
            assert_eq!(
                verify_signature(&public_key, message.as_bytes(), "zz"),
                Err(SignatureError::BadHex)
            );
            assert_eq!(
                verify_signature(&public_key, message.as_bytes(), &signature_hex[2..]),
                Err(SignatureError::WrongLength {
                    expected: 256,
                    actual: 255
                })
            );
        }

        let other = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
        let other_key = PublicKey::from_der(other.public_key().as_ref()).expect("key");
        assert_eq!(
            verify_signature(&other_key, message.as_bytes(), &signature_hex),
            Err(SignatureError::Invalid)
        );
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[ -~]{0,20}".prop_map(Value::from),
            Just(Value::from("2023-10-15T23:04:04Z")),
            Just(Value::from("ab".repeat(32))),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(field_name(), inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn field_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("awsAccountId".to_owned()),
            Just("digestStartTime".to_owned()),
            Just("digestEndTime".to_owned()),
            Just("digestS3Bucket".to_owned()),
            Just("digestS3Object".to_owned()),
            Just("digestPublicKeyFingerprint".to_owned()),
            Just("previousDigestSignature".to_owned()),
            Just("previousDigestHashValue".to_owned()),
            Just("logFiles".to_owned()),
            Just("s3Bucket".to_owned()),
            Just("hashValue".to_owned()),
            Just("newestEventTime".to_owned()),
            "[a-zA-Z]{1,8}",
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = Digest::parse(&bytes, MAX);
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value()) {
            let bytes = serde_json::to_vec(&value).expect("serialize");
            let _ = Digest::parse(&bytes, MAX);
        }

        #[test]
        fn real_digest_with_one_field_replaced_never_panics(
            field in field_name(),
            value in json_value(),
        ) {
            let bytes = object_with(REAL_DIGEST, &field, value);
            let _ = Digest::parse(&bytes, MAX);
        }
    }
}
