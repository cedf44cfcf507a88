//! CloudTrail public keys (docs/cloudtrail-format.md §5): DER parsing, MD5 fingerprints, the
//! `aws cloudtrail list-public-keys` JSON shape, and a per-region key ring.
//!
//! `ListPublicKeys` returns DER PKCS#1 `RSAPublicKey` values, but the AWS docs' own
//! sample contains an X.509 `SubjectPublicKeyInfo`; both are accepted. The
//! fingerprint is always the MD5 of the DER bytes **as given** (docs/cloudtrail-format.md §5.2), so an
//! SPKI key keeps its SPKI fingerprint while verification uses the embedded PKCS#1.

use std::collections::HashMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use md5::{Digest as _, Md5};
use serde_json::Value;

/// DER of the rsaEncryption OID 1.2.840.113549.1.1.1, contents only.
const RSA_ENCRYPTION_OID: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// Why bytes are not an RSA public key we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    /// Neither a DER `RSAPublicKey` (PKCS#1) nor an RSA `SubjectPublicKeyInfo`.
    #[error("not a DER RSA public key (PKCS#1 or SubjectPublicKeyInfo): {0}")]
    NotRsaPublicKey(&'static str),
}

/// Why a `list-public-keys` JSON document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    /// Not JSON.
    #[error("public key list is not valid JSON: {0}")]
    Json(String),
    /// Neither `PublicKeyList` nor `publicKeyList` is an array in a top-level object.
    #[error("public key list has no PublicKeyList array")]
    MissingList,
    /// Both `PublicKeyList` and `publicKeyList` are present.
    #[error("public key list has both PublicKeyList and publicKeyList")]
    AmbiguousList,
    /// An entry is malformed; `index` is its position in the list.
    #[error("public key entry {index}: {problem}")]
    Entry {
        /// Position in the list.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// An entry's `Fingerprint` differs from the MD5 of its `Value`.
    #[error("public key entry {index}: Fingerprint {listed} differs from MD5 of Value {computed}")]
    FingerprintMismatch {
        /// Position in the list.
        index: usize,
        /// The `Fingerprint` given.
        listed: String,
        /// MD5 of the decoded `Value`.
        computed: String,
    },
}

/// Errors from [`KeyRing::insert`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    /// Two different keys with one MD5 fingerprint (an MD5 collision) in one region.
    #[error("a different key with fingerprint {fingerprint} is already known for {region}")]
    FingerprintCollision {
        /// The region (or `*` for all regions).
        region: String,
        /// The shared fingerprint.
        fingerprint: String,
    },
}

/// One CloudTrail public key.
///
/// Invariants (hence private fields): `fingerprint` is the lowercase hex MD5 of
/// `der`, and `pkcs1` is a structurally valid DER `RSAPublicKey` taken from `der`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    der: Vec<u8>,
    pkcs1: Vec<u8>,
    fingerprint: String,
    modulus_len: usize,
    validity_start: Option<DateTime<Utc>>,
    validity_end: Option<DateTime<Utc>>,
}

impl PublicKey {
    /// Parses DER bytes as PKCS#1 `RSAPublicKey`, or else as an RSA
    /// `SubjectPublicKeyInfo` (whose embedded `RSAPublicKey` is used to verify).
    /// Never panics. Key size is not checked here; verification accepts 2048–8192 bits.
    pub fn from_der(der: &[u8]) -> Result<Self, PublicKeyError> {
        let (pkcs1, modulus_len) = match parse_rsa_public_key(der) {
            Ok(modulus_len) => (der, modulus_len),
            Err(pkcs1_problem) => match spki_rsa_public_key(der)? {
                Some(inner) => (inner, parse_rsa_public_key(inner)?),
                None => return Err(pkcs1_problem),
            },
        };
        Ok(Self {
            der: der.to_vec(),
            pkcs1: pkcs1.to_vec(),
            fingerprint: md5_hex(der),
            modulus_len,
            validity_start: None,
            validity_end: None,
        })
    }

    /// Sets the validity window (`ValidityStartTime`, `ValidityEndTime`).
    #[must_use]
    pub fn with_validity(
        mut self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Self {
        self.validity_start = start;
        self.validity_end = end;
        self
    }

    /// The DER bytes as given (PKCS#1 or SPKI).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The DER `RSAPublicKey` (PKCS#1), for verification.
    pub fn pkcs1(&self) -> &[u8] {
        &self.pkcs1
    }

    /// Lowercase hex MD5 of [`PublicKey::der`]; what digests name in
    /// `digestPublicKeyFingerprint`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Modulus length in bytes (= signature length; 256 for RSA-2048).
    pub fn modulus_len(&self) -> usize {
        self.modulus_len
    }

    /// `ValidityStartTime`, if known. Informational: the CLI does not enforce it.
    pub fn validity_start(&self) -> Option<DateTime<Utc>> {
        self.validity_start
    }

    /// `ValidityEndTime`, if known. Informational: the CLI does not enforce it.
    pub fn validity_end(&self) -> Option<DateTime<Utc>> {
        self.validity_end
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// A bounds-checked reader of DER TLVs (single-byte tags, definite lengths).
struct DerReader<'a> {
    rest: &'a [u8],
}

impl<'a> DerReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Reads one TLV with the expected tag and returns its contents.
    fn read(&mut self, expected_tag: u8) -> Result<&'a [u8], &'static str> {
        let (&tag, after_tag) = self.rest.split_first().ok_or("unexpected end of DER")?;
        if tag != expected_tag {
            return Err("unexpected DER tag");
        }
        let (&first_length_byte, after_length_byte) =
            after_tag.split_first().ok_or("unexpected end of DER")?;
        let (length, after_length) = if first_length_byte < 0x80 {
            (usize::from(first_length_byte), after_length_byte)
        } else {
            let count = usize::from(first_length_byte & 0x7f);
            if count == 0 || count > 4 {
                return Err("unsupported DER length encoding");
            }
            let (length_bytes, after) = after_length_byte
                .split_at_checked(count)
                .ok_or("unexpected end of DER")?;
            let length = length_bytes
                .iter()
                .fold(0usize, |acc, &byte| (acc << 8) | usize::from(byte));
            (length, after)
        };
        let (contents, after_contents) = after_length
            .split_at_checked(length)
            .ok_or("DER length exceeds the input")?;
        self.rest = after_contents;
        Ok(contents)
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }
}

/// Validates a DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent
/// INTEGER }` spanning all of `der`; returns the modulus length in bytes.
fn parse_rsa_public_key(der: &[u8]) -> Result<usize, PublicKeyError> {
    let mut outer = DerReader::new(der);
    let sequence = outer
        .read(TAG_SEQUENCE)
        .map_err(PublicKeyError::NotRsaPublicKey)?;
    if !outer.is_empty() {
        return Err(PublicKeyError::NotRsaPublicKey(
            "trailing bytes after RSAPublicKey",
        ));
    }
    let mut fields = DerReader::new(sequence);
    let modulus = fields
        .read(TAG_INTEGER)
        .map_err(PublicKeyError::NotRsaPublicKey)?;
    let exponent = fields
        .read(TAG_INTEGER)
        .map_err(PublicKeyError::NotRsaPublicKey)?;
    if !fields.is_empty() {
        return Err(PublicKeyError::NotRsaPublicKey(
            "extra fields in RSAPublicKey",
        ));
    }
    let modulus_magnitude = positive_integer_magnitude(modulus).ok_or(
        PublicKeyError::NotRsaPublicKey("modulus is not a positive integer"),
    )?;
    positive_integer_magnitude(exponent).ok_or(PublicKeyError::NotRsaPublicKey(
        "exponent is not a positive integer",
    ))?;
    Ok(modulus_magnitude.len())
}

/// The magnitude bytes of a positive DER INTEGER (without the sign-padding zero).
fn positive_integer_magnitude(contents: &[u8]) -> Option<&[u8]> {
    let (&first, rest) = contents.split_first()?;
    if first & 0x80 != 0 {
        return None; // negative
    }
    let magnitude = if first == 0 { rest } else { contents };
    if magnitude.is_empty() || magnitude.iter().all(|&byte| byte == 0) {
        return None;
    }
    Some(magnitude)
}

/// Extracts the `RSAPublicKey` from `SubjectPublicKeyInfo ::= SEQUENCE {
/// AlgorithmIdentifier { rsaEncryption, NULL? }, BIT STRING (0 unused bits) }`.
/// `Ok(None)` when the bytes are not SPKI-shaped at all (so the caller reports the
/// PKCS#1 problem instead); an error when they are an SPKI we cannot use.
fn spki_rsa_public_key(der: &[u8]) -> Result<Option<&[u8]>, PublicKeyError> {
    let mut outer = DerReader::new(der);
    let Ok(spki) = outer.read(TAG_SEQUENCE) else {
        return Ok(None);
    };
    let mut fields = DerReader::new(spki);
    let Ok(algorithm) = fields.read(TAG_SEQUENCE) else {
        return Ok(None);
    };
    let invalid = PublicKeyError::NotRsaPublicKey;
    if !outer.is_empty() {
        return Err(invalid("trailing bytes after SubjectPublicKeyInfo"));
    }
    let mut algorithm_fields = DerReader::new(algorithm);
    let oid = algorithm_fields.read(TAG_OID).map_err(invalid)?;
    if oid != RSA_ENCRYPTION_OID {
        return Err(invalid("SubjectPublicKeyInfo is not rsaEncryption"));
    }
    if algorithm_fields.peek_tag() == Some(TAG_NULL) {
        let parameters = algorithm_fields.read(TAG_NULL).map_err(invalid)?;
        if !parameters.is_empty() {
            return Err(invalid("rsaEncryption parameters are not NULL"));
        }
    }
    if !algorithm_fields.is_empty() {
        return Err(invalid("rsaEncryption parameters are not NULL"));
    }
    let bit_string = fields.read(TAG_BIT_STRING).map_err(invalid)?;
    if !fields.is_empty() {
        return Err(invalid("extra fields in SubjectPublicKeyInfo"));
    }
    match bit_string.split_first() {
        Some((0, key)) => Ok(Some(key)),
        _ => Err(invalid(
            "SubjectPublicKeyInfo key is not a whole number of bytes",
        )),
    }
}

/// Parses `aws cloudtrail list-public-keys` output (or a `ListPublicKeys` response
/// body): a top-level object with `PublicKeyList` (the API) or `publicKeyList` (the
/// AWS docs' sample), each entry `{Value: base64 DER, Fingerprint?, ValidityStartTime?,
/// ValidityEndTime?}`. Timestamps may be epoch seconds as numbers or numeric strings,
/// or ISO-8601 strings. A present `Fingerprint` must equal the MD5 of `Value`
/// (case-insensitively), otherwise the whole list is rejected naming the entry.
pub fn parse_list_public_keys_json(bytes: &[u8]) -> Result<Vec<PublicKey>, KeysError> {
    let document: Value =
        serde_json::from_slice(bytes).map_err(|error| KeysError::Json(error.to_string()))?;
    let object = document.as_object().ok_or(KeysError::MissingList)?;
    let list = match (object.get("PublicKeyList"), object.get("publicKeyList")) {
        (Some(_), Some(_)) => return Err(KeysError::AmbiguousList),
        (Some(list), None) | (None, Some(list)) => list,
        (None, None) => return Err(KeysError::MissingList),
    };
    let entries = list.as_array().ok_or(KeysError::MissingList)?;
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| parse_entry(index, entry))
        .collect()
}

fn parse_entry(index: usize, entry: &Value) -> Result<PublicKey, KeysError> {
    let problem = |problem: String| KeysError::Entry { index, problem };
    let object = entry
        .as_object()
        .ok_or_else(|| problem("not an object".to_owned()))?;
    let value = match object.get("Value") {
        Some(Value::String(text)) => text,
        Some(_) => return Err(problem("Value is not a string".to_owned())),
        None => return Err(problem("Value is missing".to_owned())),
    };
    let compact: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|error| problem(format!("Value is not base64: {error}")))?;
    let key = PublicKey::from_der(&der).map_err(|error| problem(format!("Value: {error}")))?;
    match object.get("Fingerprint") {
        None | Some(Value::Null) => {}
        Some(Value::String(listed)) => {
            if !listed.eq_ignore_ascii_case(key.fingerprint()) {
                return Err(KeysError::FingerprintMismatch {
                    index,
                    listed: listed.clone(),
                    computed: key.fingerprint().to_owned(),
                });
            }
        }
        Some(_) => return Err(problem("Fingerprint is not a string".to_owned())),
    }
    let start = parse_timestamp(object.get("ValidityStartTime"))
        .map_err(|error| problem(format!("ValidityStartTime: {error}")))?;
    let end = parse_timestamp(object.get("ValidityEndTime"))
        .map_err(|error| problem(format!("ValidityEndTime: {error}")))?;
    Ok(key.with_validity(start, end))
}

/// Epoch seconds (number or numeric string, fractions allowed) or ISO-8601/RFC 3339.
fn parse_timestamp(value: Option<&Value>) -> Result<Option<DateTime<Utc>>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => {
            let seconds = number
                .as_f64()
                .ok_or_else(|| format!("{number} is not a usable number"))?;
            epoch_seconds(seconds).map(Some)
        }
        Some(Value::String(text)) => {
            let trimmed = text.trim();
            let looks_numeric = !trimmed.is_empty()
                && trimmed
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
            if looks_numeric {
                let seconds: f64 = trimmed
                    .parse()
                    .map_err(|_| format!("{text:?} is not a number"))?;
                return epoch_seconds(seconds).map(Some);
            }
            DateTime::parse_from_rfc3339(trimmed)
                .map(|time| Some(time.with_timezone(&Utc)))
                .map_err(|error| format!("{text:?} is not a timestamp: {error}"))
        }
        Some(_) => Err("expected a number or a string".to_owned()),
    }
}

fn epoch_seconds(seconds: f64) -> Result<DateTime<Utc>, String> {
    // ±1e12 s is far beyond any key validity and well inside i64 and chrono's range.
    if !seconds.is_finite() || seconds.abs() > 1e12 {
        return Err(format!("{seconds} is out of range"));
    }
    let whole = seconds.floor();
    let nanos = ((seconds - whole) * 1e9).round().clamp(0.0, 999_999_999.0) as u32;
    DateTime::from_timestamp(whole as i64, nanos)
        .ok_or_else(|| format!("{seconds} is out of range"))
}

fn to_epoch_seconds(time: DateTime<Utc>) -> f64 {
    time.timestamp() as f64 + f64::from(time.timestamp_subsec_nanos()) / 1e9
}

/// Renders keys in the `aws cloudtrail list-public-keys` shape: `PublicKeyList` of
/// `{Value (base64 DER as given), ValidityStartTime, ValidityEndTime (epoch seconds,
/// omitted when unknown), Fingerprint}`. [`parse_list_public_keys_json`] reads it back.
pub fn to_list_public_keys_json(keys: &[PublicKey]) -> String {
    let entries: Vec<Value> = keys
        .iter()
        .map(|key| {
            let mut entry = serde_json::Map::new();
            if let Some(start) = key.validity_start {
                entry.insert(
                    "ValidityStartTime".to_owned(),
                    Value::from(to_epoch_seconds(start)),
                );
            }
            if let Some(end) = key.validity_end {
                entry.insert(
                    "ValidityEndTime".to_owned(),
                    Value::from(to_epoch_seconds(end)),
                );
            }
            entry.insert(
                "Value".to_owned(),
                Value::from(base64::engine::general_purpose::STANDARD.encode(&key.der)),
            );
            entry.insert(
                "Fingerprint".to_owned(),
                Value::from(key.fingerprint.clone()),
            );
            Value::Object(entry)
        })
        .collect();
    let mut document = serde_json::Map::new();
    document.insert("PublicKeyList".to_owned(), Value::Array(entries));
    let document = Value::Object(document);
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| document.to_string())
}

/// Public keys by delivering region and fingerprint (docs/cloudtrail-format.md §5.3: keys are per region).
///
/// Keys loaded from a file that names no region go to the wildcard set and are
/// found for every region; region-specific keys are preferred.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    by_region: HashMap<String, HashMap<String, PublicKey>>,
    any_region: HashMap<String, PublicKey>,
}

/// Region label used in errors for the wildcard set.
const ANY_REGION_LABEL: &str = "*";

impl KeyRing {
    /// An empty key ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key for one region. Re-adding the same key replaces it (e.g. with a
    /// newer validity window); a *different* key with the same fingerprint is refused.
    pub fn insert(&mut self, region: &str, key: PublicKey) -> Result<(), KeyRingError> {
        let keys = self.by_region.entry(region.to_owned()).or_default();
        insert_checked(keys, region, key)
    }

    /// Adds a key that applies to every region (a key file without a region).
    pub fn insert_for_all_regions(&mut self, key: PublicKey) -> Result<(), KeyRingError> {
        insert_checked(&mut self.any_region, ANY_REGION_LABEL, key)
    }

    /// The key with `fingerprint` (case-insensitive) for `region`, falling back to
    /// keys that apply to all regions.
    pub fn find(&self, region: &str, fingerprint: &str) -> Option<&PublicKey> {
        let fingerprint = fingerprint.to_ascii_lowercase();
        self.by_region
            .get(region)
            .and_then(|keys| keys.get(&fingerprint))
            .or_else(|| self.any_region.get(&fingerprint))
    }

    /// Number of (region, key) entries, counting the wildcard set as one region.
    pub fn len(&self) -> usize {
        self.by_region.values().map(HashMap::len).sum::<usize>() + self.any_region.len()
    }

    /// Whether no key is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn insert_checked(
    keys: &mut HashMap<String, PublicKey>,
    region: &str,
    key: PublicKey,
) -> Result<(), KeyRingError> {
    if let Some(existing) = keys.get(key.fingerprint()) {
        if existing.der != key.der {
            return Err(KeyRingError::FingerprintCollision {
                region: region.to_owned(),
                fingerprint: key.fingerprint.clone(),
            });
        }
    }
    keys.insert(key.fingerprint.clone(), key);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLI_EXAMPLE: &[u8] =
        include_bytes!("../../testdata/aws-cli-list-public-keys-example.json");
    const DOCS_SAMPLE: &[u8] =
        include_bytes!("../../testdata/aws-docs-list-public-keys-sample.json");
    const FINGERPRINT_CHECK: &str = include_str!("../../testdata/fingerprint-check.txt");

    fn utc(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).expect("in range")
    }

    #[test]
    fn real_keys_fingerprint_correctly() {
        let cli = parse_list_public_keys_json(CLI_EXAMPLE).expect("cli example");
        let docs = parse_list_public_keys_json(DOCS_SAMPLE).expect("docs sample");
        assert_eq!(cli.len(), 1);
        assert_eq!(docs.len(), 3);
        let all: Vec<&PublicKey> = cli.iter().chain(docs.iter()).collect();
        let expected = [
            (
                "7f3f401420072e50a65a141430817ab3",
                270,
                1_453_076_702,
                1_455_668_702,
            ),
            (
                "8eba5db5bea9b640d1c96a77256fe7f2",
                270,
                1_436_317_441,
                1_438_909_441,
            ),
            (
                "8933b39ddc64d26d8e14ffbf6566fee4",
                270,
                1_434_589_460,
                1_437_181_460,
            ),
            (
                "31e8b5433410dfb61a9dc45cc65b22ff",
                294,
                1_434_589_370,
                1_437_181_370,
            ),
        ];
        for (key, (fingerprint, der_len, start, end)) in all.iter().zip(expected) {
            assert_eq!(key.fingerprint(), fingerprint);
            assert_eq!(key.der().len(), der_len);
            assert_eq!(key.pkcs1().len(), 270, "{fingerprint}");
            assert_eq!(key.modulus_len(), 256);
            assert_eq!(key.validity_start(), Some(utc(start)));
            assert_eq!(key.validity_end(), Some(utc(end)));
        }
        // The SPKI key: fingerprint over the SPKI bytes, verification over PKCS#1.
        let spki = all[3];
        assert_ne!(spki.der(), spki.pkcs1());
        assert!(spki.der().ends_with(spki.pkcs1()));
    }

    #[test]
    fn fingerprint_check_file_agrees() {
        let keys: Vec<PublicKey> = [CLI_EXAMPLE, DOCS_SAMPLE]
            .iter()
            .flat_map(|bytes| parse_list_public_keys_json(bytes).expect("valid"))
            .collect();
        let mut checked = 0;
        for line in FINGERPRINT_CHECK.lines() {
            let Some(fingerprint) = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("Fingerprint="))
            else {
                continue;
            };
            let der_len: usize = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("der_len="))
                .and_then(|text| text.parse().ok())
                .expect("der_len");
            let key = keys
                .iter()
                .find(|key| key.fingerprint() == fingerprint)
                .expect("fingerprint from the check file");
            assert_eq!(key.der().len(), der_len);
            checked += 1;
        }
        assert_eq!(checked, 4);
    }

    #[test]
    fn aws_cli_test_key_vector() {
        let vectors: Value =
            serde_json::from_str(include_str!("../../testdata/aws-cli-test-vectors.json"))
                .expect("json");
        let case = &vectors["valid_pkcs1_test_key"];
        let der = base64::engine::general_purpose::STANDARD
            .decode(case["value_base64"].as_str().expect("value"))
            .expect("base64");
        let key = PublicKey::from_der(&der).expect("key");
        assert_eq!(
            key.fingerprint(),
            case["md5_fingerprint"].as_str().expect("fp")
        );
        assert_eq!(key.pkcs1(), der.as_slice());
    }

    #[test]
    fn fingerprint_mismatch_names_the_entry() {
        let text = String::from_utf8(DOCS_SAMPLE.to_vec())
            .expect("utf8")
            .replace(
                "8933b39ddc64d26d8e14ffbf6566fee4",
                "8933b39ddc64d26d8e14ffbf6566fee5",
            );
        assert_eq!(
            parse_list_public_keys_json(text.as_bytes()),
            Err(KeysError::FingerprintMismatch {
                index: 1,
                listed: "8933b39ddc64d26d8e14ffbf6566fee5".into(),
                computed: "8933b39ddc64d26d8e14ffbf6566fee4".into(),
            })
        );
    }

    #[test]
    fn list_shapes_and_timestamps() {
        let value = base64::engine::general_purpose::STANDARD
            .encode(parse_list_public_keys_json(CLI_EXAMPLE).expect("valid")[0].der());
        let iso = format!(
            r#"{{"PublicKeyList":[{{"Value":"{value}","ValidityStartTime":"2016-01-18T00:25:02+00:00","ValidityEndTime":"2016-02-17T00:25:02.5Z"}}],"NextToken":null}}"#
        );
        let keys = parse_list_public_keys_json(iso.as_bytes()).expect("valid");
        assert_eq!(keys[0].validity_start(), Some(utc(1_453_076_702)));
        assert_eq!(
            keys[0].validity_end(),
            Some(utc(1_455_668_702) + chrono::Duration::milliseconds(500))
        );
        let no_times = format!(r#"{{"publicKeyList":[{{"Value":"{value}"}}]}}"#);
        let keys = parse_list_public_keys_json(no_times.as_bytes()).expect("valid");
        assert_eq!(keys[0].validity_start(), None);

        assert_eq!(
            parse_list_public_keys_json(b"[]"),
            Err(KeysError::MissingList)
        );
        assert_eq!(
            parse_list_public_keys_json(b"{}"),
            Err(KeysError::MissingList)
        );
        assert_eq!(
            parse_list_public_keys_json(br#"{"PublicKeyList":[],"publicKeyList":[]}"#),
            Err(KeysError::AmbiguousList)
        );
        assert!(matches!(
            parse_list_public_keys_json(br#"{"PublicKeyList":[{"Value":"!!"}]}"#),
            Err(KeysError::Entry { index: 0, .. })
        ));
        assert!(matches!(
            parse_list_public_keys_json(br#"{"PublicKeyList":[{"Value":"AAAA"}]}"#),
            Err(KeysError::Entry { index: 0, .. })
        ));
        let bad_time =
            format!(r#"{{"PublicKeyList":[{{"Value":"{value}","ValidityStartTime":"NaN"}}]}}"#);
        assert!(matches!(
            parse_list_public_keys_json(bad_time.as_bytes()),
            Err(KeysError::Entry { index: 0, .. })
        ));
        assert!(matches!(
            parse_list_public_keys_json(b"{"),
            Err(KeysError::Json(_))
        ));
    }

    #[test]
    fn export_round_trips() {
        let mut keys = parse_list_public_keys_json(DOCS_SAMPLE).expect("valid");
        keys.push(PublicKey::from_der(keys[0].der()).expect("key"));
        let exported = to_list_public_keys_json(&keys);
        assert_eq!(parse_list_public_keys_json(exported.as_bytes()), Ok(keys));
    }

    #[test]
    fn der_rejections() {
        assert!(PublicKey::from_der(&[]).is_err());
        assert!(PublicKey::from_der(&[0x30, 0x00]).is_err());
        // Negative modulus.
        assert!(PublicKey::from_der(&[0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x03]).is_err());
        // Trailing byte.
        assert!(
            PublicKey::from_der(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03, 0x00]).is_err()
        );
        // A tiny but well-formed key parses (size is enforced at verification).
        let tiny =
            PublicKey::from_der(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03]).expect("tiny");
        assert_eq!(tiny.modulus_len(), 1);
        // An SPKI with a non-RSA algorithm (id-ecPublicKey 1.2.840.10045.2.1).
        let ec = [
            0x30, 0x0f, 0x30, 0x09, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x03,
            0x02, 0x00, 0x00,
        ];
        assert_eq!(
            PublicKey::from_der(&ec),
            Err(PublicKeyError::NotRsaPublicKey(
                "SubjectPublicKeyInfo is not rsaEncryption"
            ))
        );
    }

    #[test]
    fn key_ring_regions_and_wildcard() {
        let keys = parse_list_public_keys_json(DOCS_SAMPLE).expect("valid");
        let mut ring = KeyRing::new();
        assert!(ring.is_empty());
        ring.insert("us-east-2", keys[0].clone()).expect("insert");
        ring.insert("us-east-2", keys[0].clone())
            .expect("re-insert");
        ring.insert_for_all_regions(keys[1].clone())
            .expect("insert");
        assert_eq!(ring.len(), 2);
        let first = keys[0].fingerprint();
        assert_eq!(ring.find("us-east-2", first), Some(&keys[0]));
        assert_eq!(
            ring.find("us-east-2", &first.to_uppercase()),
            Some(&keys[0])
        );
        assert_eq!(ring.find("eu-west-1", first), None);
        assert_eq!(
            ring.find("eu-west-1", keys[1].fingerprint()),
            Some(&keys[1])
        );
        assert_eq!(ring.find("us-east-2", keys[2].fingerprint()), None);

        // A different key under an existing fingerprint is refused.
        let mut forged = keys[2].clone();
        forged.fingerprint = keys[0].fingerprint.clone();
        assert!(matches!(
            ring.insert("us-east-2", forged),
            Err(KeyRingError::FingerprintCollision { .. })
        ));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(key) = PublicKey::from_der(&bytes) {
                prop_assert_eq!(key.fingerprint(), md5_hex(&bytes));
            }
        }

        #[test]
        fn der_shaped_bytes_never_panic(
            tags in proptest::collection::vec(prop_oneof![Just(0x30u8), Just(0x02), Just(0x03), Just(0x05), Just(0x06), any::<u8>()], 1..12),
            lengths in proptest::collection::vec(any::<u8>(), 1..12),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = Vec::new();
            for (tag, length) in tags.iter().zip(lengths.iter().cycle()) {
                bytes.push(*tag);
                bytes.push(*length);
            }
            bytes.extend_from_slice(&payload);
            let _ = PublicKey::from_der(&bytes);
        }

        #[test]
        fn arbitrary_list_json_never_panics(text in "[\\[\\]{}\":,0-9a-zA-Z .+=/-]{0,200}") {
            let _ = parse_list_public_keys_json(text.as_bytes());
        }
    }
}
