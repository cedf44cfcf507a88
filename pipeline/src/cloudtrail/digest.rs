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
//!
//! The body is attacker-controlled, so it is never built into a `serde_json::Value`
//! (`[[],[],…]` takes 16 times its size in memory there): a streaming visitor keeps
//! only the known fields' strings, skips everything else without allocating, and
//! turns each `logFiles[]` entry into a [`LogFileRef`] as it is read, stopping at
//! the first bad entry. Skipping costs at most one byte per open nesting level, so memory
//! stays within the body's size again plus the fields kept.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use chrono::{DateTime, Utc};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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
        let body: Body = serde_json::from_slice(inflated)
            .map_err(|error| DigestError::Json(error.to_string()))?;
        let Body::Object {
            fields: object,
            log_files,
        } = body
        else {
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
        let log_files = match log_files {
            None => return Err(field_error("logFiles", None, "missing".to_owned())),
            Some(LogFiles::Other(found)) => {
                return Err(field_error(
                    "logFiles",
                    None,
                    format!("expected an array, found {found}"),
                ))
            }
            Some(LogFiles::Entries(entries)) => entries?,
        };

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

/// One `logFiles[]` entry, from its fields.
fn log_file_ref(entry: &FieldMap, index: usize) -> Result<LogFileRef, DigestError> {
    let fields = Fields {
        object: entry,
        index: Some(index),
    };
    let hash_text = fields.required_string("logFiles[].hashValue")?;
    Ok(LogFileRef {
        s3_bucket: fields.required_string("logFiles[].s3Bucket")?,
        s3_object: fields.required_string("logFiles[].s3Object")?,
        hash_value: decode_sha256_hex(&hash_text)
            .map_err(|problem| fields.error("logFiles[].hashValue", problem))?,
        hash_algorithm: fields.required_string("logFiles[].hashAlgorithm")?,
        newest_event_time: fields.required_time("logFiles[].newestEventTime")?,
        oldest_event_time: fields.required_time("logFiles[].oldestEventTime")?,
    })
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
    object: &'a FieldMap,
    /// `logFiles` index, for error messages.
    index: Option<usize>,
}

impl Fields<'_> {
    /// Looks up `field`; for `logFiles[].x` names the JSON key is `x`.
    fn get(&self, field: &'static str) -> Option<&Scalar> {
        let key = field.rsplit_once('.').map_or(field, |(_, key)| key);
        self.object.get(key)
    }

    fn error(&self, field: &'static str, problem: String) -> DigestError {
        field_error(field, self.index, problem)
    }

    fn string_value(&self, field: &'static str, value: &Scalar) -> Result<String, DigestError> {
        match value {
            Scalar::String(text) => Ok(text.clone()),
            other => Err(self.error(
                field,
                format!("expected a string, found {}", other.type_name()),
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
            Some(Scalar::Null) => Ok(None),
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

/// Test-only allocation meter: the peak of bytes allocated and not yet freed by
/// the current thread while a closure runs (the whole test binary allocates
/// through it; other threads are not counted).
#[cfg(test)]
pub(crate) mod alloc_meter {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Meter;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn note(change: isize) {
        let _ = LIVE.try_with(|live| {
            let now = live.get() + change;
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    // SAFETY: every call is forwarded to `System` unchanged; the counters
    // are const-initialised thread-locals, which never allocate.
    unsafe impl GlobalAlloc for Meter {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size() as isize);
            // SAFETY: the caller's contract is passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            note(-(layout.size() as isize));
            // SAFETY: the caller's contract is passed on.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size as isize - layout.size() as isize);
            // SAFETY: the caller's contract is passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static METER: Meter = Meter;

    /// Runs `work`; returns its result and the peak of bytes it held at once
    /// on this thread (its result included).
    pub(crate) fn peak_during<T>(work: impl FnOnce() -> T) -> (T, usize) {
        let start = LIVE.with(Cell::get);
        PEAK.with(|peak| peak.set(start));
        let result = work();
        let peak = PEAK.with(Cell::get) - start;
        (result, usize::try_from(peak).unwrap_or(0))
    }
}

// ---- the streaming reader: known fields only, nothing else kept ----

/// The JSON keys of a digest object whose values are read (besides `logFiles`).
const DIGEST_FIELDS: [&str; 14] = [
    "awsAccountId",
    "digestStartTime",
    "digestEndTime",
    "digestS3Bucket",
    "digestS3Object",
    "digestPublicKeyFingerprint",
    "digestSignatureAlgorithm",
    "newestEventTime",
    "oldestEventTime",
    "previousDigestS3Bucket",
    "previousDigestS3Object",
    "previousDigestHashValue",
    "previousDigestHashAlgorithm",
    "previousDigestSignature",
];

/// The JSON keys of a `logFiles[]` entry whose values are read.
const LOG_FILE_FIELDS: [&str; 6] = [
    "s3Bucket",
    "s3Object",
    "hashValue",
    "hashAlgorithm",
    "newestEventTime",
    "oldestEventTime",
];

/// A known field's value: a string, null, or what else it was (not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scalar {
    Null,
    String(String),
    /// Any other JSON value, skipped; its kind names it in errors.
    Other(&'static str),
}

impl Scalar {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::String(_) => "a string",
            Scalar::Other(name) => name,
        }
    }
}

/// The known fields of one JSON object, by key (the last of duplicate keys wins,
/// as JSON parsers commonly do).
type FieldMap = BTreeMap<&'static str, Scalar>;

impl<'de> de::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Scalar, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Scalar, E> {
        Ok(Scalar::String(text.to_owned()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Scalar, E> {
        Ok(Scalar::String(text))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
        Ok(Scalar::Other("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Scalar, E> {
        Ok(Scalar::Other("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Scalar, E> {
        Ok(Scalar::Other("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar, E> {
        Ok(Scalar::Other("a number"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an object"))
    }
}

/// An object key: one of `known`, or any other (not kept).
struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<&'static str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<&'static str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().copied().find(|known| *known == key))
    }
}

/// The digest body as read: its known fields and its log files, or not an object.
enum Body {
    Object {
        fields: FieldMap,
        /// `None` when there is no `logFiles` key.
        log_files: Option<LogFiles>,
    },
    NotAnObject,
}

/// The `logFiles` value.
enum LogFiles {
    /// An array: its entries, or the first entry that is not a valid log file
    /// reference (the rest were skipped).
    Entries(Result<Vec<LogFileRef>, DigestError>),
    /// Not an array: what it was.
    Other(&'static str),
}

impl<'de> de::Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Body, D::Error> {
        deserializer.deserialize_any(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Body;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
        const KEYS: [&str; 15] = {
            let mut keys = [""; 15];
            let mut index = 0;
            while index < DIGEST_FIELDS.len() {
                keys[index] = DIGEST_FIELDS[index];
                index += 1;
            }
            keys[14] = "logFiles";
            keys
        };
        let mut fields = FieldMap::new();
        let mut log_files = None;
        while let Some(key) = map.next_key_seed(KeySeed(&KEYS))? {
            match key {
                Some("logFiles") => log_files = Some(map.next_value::<LogFiles>()?),
                Some(known) => {
                    fields.insert(known, map.next_value::<Scalar>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Body::Object { fields, log_files })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Body, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Body::NotAnObject)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Body, E> {
        Ok(Body::NotAnObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Body, E> {
        Ok(Body::NotAnObject)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Body, E> {
        Ok(Body::NotAnObject)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Body, E> {
        Ok(Body::NotAnObject)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Body, E> {
        Ok(Body::NotAnObject)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Body, E> {
        Ok(Body::NotAnObject)
    }
}

impl<'de> de::Deserialize<'de> for LogFiles {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LogFiles, D::Error> {
        deserializer.deserialize_any(LogFilesVisitor)
    }
}

struct LogFilesVisitor;

impl<'de> Visitor<'de> for LogFilesVisitor {
    type Value = LogFiles;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an array of log file entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LogFiles, A::Error> {
        let mut entries = Vec::new();
        let mut index = 0;
        while let Some(entry) = seq.next_element::<Entry>()? {
            let parsed = match entry {
                Entry::Object(fields) => log_file_ref(&fields, index),
                Entry::Other(found) => Err(field_error(
                    "logFiles[]",
                    Some(index),
                    format!("expected an object, found {found}"),
                )),
            };
            match parsed {
                Ok(log_file) => entries.push(log_file),
                Err(error) => {
                    // The first bad entry decides; the rest is skipped unread.
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    return Ok(LogFiles::Entries(Err(error)));
                }
            }
            index += 1;
        }
        Ok(LogFiles::Entries(Ok(entries)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LogFiles, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(LogFiles::Other("an object"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<LogFiles, E> {
        Ok(LogFiles::Other("null"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<LogFiles, E> {
        Ok(LogFiles::Other("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<LogFiles, E> {
        Ok(LogFiles::Other("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<LogFiles, E> {
        Ok(LogFiles::Other("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<LogFiles, E> {
        Ok(LogFiles::Other("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<LogFiles, E> {
        Ok(LogFiles::Other("a string"))
    }
}

/// One `logFiles[]` element: an object's known fields, or what else it was.
enum Entry {
    Object(FieldMap),
    Other(&'static str),
}

impl<'de> de::Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Entry, D::Error> {
        deserializer.deserialize_any(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Entry;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a log file entry")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        let mut fields = FieldMap::new();
        while let Some(key) = map.next_key_seed(KeySeed(&LOG_FILE_FIELDS))? {
            match key {
                Some(known) => {
                    fields.insert(known, map.next_value::<Scalar>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Entry::Object(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entry, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Entry::Other("an array"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Entry, E> {
        Ok(Entry::Other("null"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Entry, E> {
        Ok(Entry::Other("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Entry, E> {
        Ok(Entry::Other("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Entry, E> {
        Ok(Entry::Other("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Entry, E> {
        Ok(Entry::Other("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Entry, E> {
        Ok(Entry::Other("a string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
    use proptest::prelude::*;
    use serde_json::Value;

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

    /// A body built to inflate a parser's memory costs at most its own size
    /// again: nothing is kept of values that are not fields.
    #[test]
    fn flooded_bodies_are_refused_without_inflating_memory() {
        let size = 4 * 1024 * 1024;
        let count = size / 3;
        let mut top_level = b"[".to_vec();
        top_level.extend_from_slice(&b"[],".repeat(count));
        top_level.extend_from_slice(b"[]]");
        let mut in_log_files = br#"{"logFiles":["#.to_vec();
        in_log_files.extend_from_slice(&b"[],".repeat(count));
        in_log_files.extend_from_slice(b"[]]}");
        let mut unknown_fields = b"{".to_vec();
        for index in 0..size / 16 {
            unknown_fields.extend_from_slice(format!(r#""f{index:08}":[{{}}],"#).as_bytes());
        }
        unknown_fields.extend_from_slice(br#""awsAccountId":"1"}"#);
        let mut nested = b"{\"newestEventTime\":".to_vec();
        nested.extend_from_slice(&b"[".repeat(size / 2));
        let cases: [(&str, &[u8]); 4] = [
            ("top-level array", &top_level),
            ("logFiles of arrays", &in_log_files),
            ("unknown fields", &unknown_fields),
            ("deep nesting", &nested),
        ];
        for (name, body) in cases {
            let (parsed, peak) = alloc_meter::peak_during(|| Digest::parse(body, 2 * size));
            assert!(parsed.is_err(), "{name}");
            // Skipping deep nesting keeps one byte per open level.
            assert!(
                peak <= body.len() + 1024,
                "{name}: peak {peak} bytes for a {} byte body",
                body.len()
            );
        }
        // What a `serde_json::Value` of the same body would hold, for scale.
        let (value, value_peak) =
            alloc_meter::peak_during(|| serde_json::from_slice::<Value>(&top_level));
        drop(value);
        assert!(value_peak > 8 * top_level.len(), "{value_peak}");
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
