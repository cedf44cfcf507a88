//! The simulator's stand-in for CloudTrail's per-Region signing key (docs/cloudtrail-format.md §3, §5).
//!
//! Written independently of the pipeline crate's validator on purpose: the validator is
//! checked against this code, so sharing it would let one bug hide another.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};

/// `digestSignatureAlgorithm` and the `signature-algorithm` S3 metadata value.
pub const SIGNATURE_ALGORITHM: &str = "SHA256withRSA";

/// docs/cloudtrail-format.md §3.3, exactly: four fields joined by a single LF, no trailing newline. Values
/// are the JSON-decoded strings of the digest (its *original* bucket and key), the
/// third is the lowercase hex SHA-256 of the inflated digest bytes, and a null previous
/// signature is the literal `null` (the Java implementation's rendering).
pub fn string_to_sign(
    digest_end_time: &str,
    digest_s3_bucket: &str,
    digest_s3_object: &str,
    inflated_digest_sha256_hex: &str,
    previous_digest_signature: Option<&str>,
) -> String {
    format!(
        "{digest_end_time}\n{digest_s3_bucket}/{digest_s3_object}\n{inflated_digest_sha256_hex}\n{}",
        previous_digest_signature.unwrap_or("null")
    )
}

/// CloudTrail's key fingerprint: lowercase hex MD5 of the key bytes exactly as
/// ListPublicKeys returns them (PKCS#1 `RSAPublicKey` DER for every current key).
pub fn fingerprint(public_key_der: &[u8]) -> String {
    hex::encode(Md5::digest(public_key_der))
}

/// Lowercase hex SHA-256, the encoding of every hash in a digest file.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// An RSA-2048 signing key with its PKCS#1 public key and validity window.
pub struct SigningKey {
    key_pair: KeyPair,
    pkcs8_der: Vec<u8>,
    public_key_der: Vec<u8>,
    pub validity_start: DateTime<Utc>,
    pub validity_end: DateTime<Utc>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SigningKey")
            .field("fingerprint", &self.fingerprint())
            .field("validity_start", &self.validity_start)
            .field("validity_end", &self.validity_end)
            .finish_non_exhaustive()
    }
}

/// The persisted form of a [`SigningKey`] (inside the saved simulation JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SigningKeyState {
    /// PKCS#8 v1 DER of the private key, standard base64.
    pub pkcs8_der_base64: String,
    pub fingerprint: String,
    pub validity_start: DateTime<Utc>,
    pub validity_end: DateTime<Utc>,
}

impl SigningKey {
    /// A fresh RSA-2048 key, valid for `[validity_start, validity_end]` (AWS rotates
    /// its keys every 30 days; the window only goes into the exported key list).
    pub fn generate(
        validity_start: DateTime<Utc>,
        validity_end: DateTime<Utc>,
    ) -> anyhow::Result<SigningKey> {
        let key_pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| anyhow::anyhow!("generate an RSA-2048 key with aws-lc-rs"))?;
        let pkcs8: Pkcs8V1Der<'static> = key_pair
            .as_der()
            .map_err(|_| anyhow::anyhow!("serialize the RSA key as PKCS#8"))?;
        SigningKey::from_pkcs8(pkcs8.as_ref(), validity_start, validity_end)
    }

    pub fn from_pkcs8(
        pkcs8_der: &[u8],
        validity_start: DateTime<Utc>,
        validity_end: DateTime<Utc>,
    ) -> anyhow::Result<SigningKey> {
        let key_pair = KeyPair::from_pkcs8(pkcs8_der)
            .map_err(|rejected| anyhow::anyhow!("parse the PKCS#8 RSA key: {rejected}"))?;
        // `PublicKey::as_ref` is the RFC 8017 `RSAPublicKey` (PKCS#1) DER, the same
        // encoding as ListPublicKeys' `Value` (checked in the tests below).
        let public_key_der = key_pair.public_key().as_ref().to_vec();
        Ok(SigningKey {
            key_pair,
            pkcs8_der: pkcs8_der.to_vec(),
            public_key_der,
            validity_start,
            validity_end,
        })
    }

    pub fn to_state(&self) -> SigningKeyState {
        SigningKeyState {
            pkcs8_der_base64: base64::engine::general_purpose::STANDARD.encode(&self.pkcs8_der),
            fingerprint: self.fingerprint(),
            validity_start: self.validity_start,
            validity_end: self.validity_end,
        }
    }

    pub fn from_state(state: &SigningKeyState) -> anyhow::Result<SigningKey> {
        let pkcs8 = base64::engine::general_purpose::STANDARD
            .decode(&state.pkcs8_der_base64)
            .map_err(|error| anyhow::anyhow!("decode the saved signing key: {error}"))?;
        let key = SigningKey::from_pkcs8(&pkcs8, state.validity_start, state.validity_end)?;
        anyhow::ensure!(
            key.fingerprint() == state.fingerprint,
            "saved signing key fingerprint {} does not match the key ({})",
            state.fingerprint,
            key.fingerprint()
        );
        Ok(key)
    }

    /// PKCS#1 `RSAPublicKey` DER.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_key_der)
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over the UTF-8 bytes of `message`, lowercase hex
    /// (the encoding of the `signature` S3 metadata and of `previousDigestSignature`).
    pub fn sign_hex(&self, message: &str) -> anyhow::Result<String> {
        let mut signature = vec![0_u8; self.key_pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key_pair
            .sign(&RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut signature)
            .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
        Ok(hex::encode(signature))
    }

    /// One entry of a `list-public-keys`-shaped key list.
    pub fn public_key_entry(&self) -> PublicKeyEntry {
        PublicKeyEntry {
            value: base64::engine::general_purpose::STANDARD.encode(&self.public_key_der),
            validity_start_time: self.validity_start.timestamp() as f64,
            validity_end_time: self.validity_end.timestamp() as f64,
            fingerprint: self.fingerprint(),
        }
    }
}

/// `aws cloudtrail list-public-keys` output: `{"PublicKeyList":[...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicKeyList {
    #[serde(rename = "PublicKeyList")]
    pub public_key_list: Vec<PublicKeyEntry>,
}

/// One key as the AWS CLI prints it: `Value` is base64 of the DER bytes (the CLI keeps
/// blobs base64), validity times are epoch seconds as floats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicKeyEntry {
    #[serde(rename = "Value")]
    pub value: String,
    #[serde(rename = "ValidityStartTime")]
    pub validity_start_time: f64,
    #[serde(rename = "ValidityEndTime")]
    pub validity_end_time: f64,
    #[serde(rename = "Fingerprint")]
    pub fingerprint: String,
}

impl PublicKeyList {
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Checks a digest object as a validator would, from its raw (gzip) bytes, its
/// `signature` metadata and a PKCS#1 DER public key: single gzip member, JSON-decoded
/// fields, docs/cloudtrail-format.md §3.3 string to sign, RSASSA-PKCS1-v1_5/SHA-256. Returns the parsed
/// body. A test helper for the simulator's own output, not trailvault's validator.
pub fn verify_digest_object(
    raw: &[u8],
    signature_hex: &str,
    public_key_der: &[u8],
) -> anyhow::Result<super::cloudtrail::DigestBody> {
    use aws_lc_rs::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
    let inflated = super::cloudtrail::gunzip_single_member(raw)?;
    let body = super::cloudtrail::DigestBody::parse(&inflated)?;
    let message = string_to_sign(
        &body.digest_end_time,
        &body.digest_s3_bucket,
        &body.digest_s3_object,
        &sha256_hex(&inflated),
        body.previous.as_ref().map(|link| link.signature.as_str()),
    );
    let signature = hex::decode(signature_hex)?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .verify(message.as_bytes(), &signature)
        .map_err(|_| anyhow::anyhow!("signature of {} does not verify", body.digest_s3_object))?;
    anyhow::ensure!(
        body.digest_public_key_fingerprint == fingerprint(public_key_der),
        "digest names key {}, verified with {}",
        body.digest_public_key_fingerprint,
        fingerprint(public_key_der)
    );
    Ok(body)
}

/// The DER keys of a `list-public-keys`-shaped JSON document, by fingerprint.
pub fn public_keys_from_json(text: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let list: PublicKeyList = serde_json::from_str(text)?;
    list.public_key_list
        .into_iter()
        .map(|entry| {
            let der = base64::engine::general_purpose::STANDARD.decode(&entry.value)?;
            Ok((entry.fingerprint, der))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
    use chrono::TimeZone as _;

    fn testdata(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
    }

    fn test_key() -> SigningKey {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        SigningKey::generate(start, start + chrono::Duration::days(30)).unwrap()
    }

    #[test]
    fn string_to_sign_matches_the_aws_cli_vector() {
        let vectors: serde_json::Value =
            serde_json::from_str(&testdata("aws-cli-test-vectors.json")).unwrap();
        let vector = &vectors["string_to_sign_first_digest"];
        let fields = &vector["digest_fields"];
        let inflated = vector["inflated_digest_bytes_utf8"].as_str().unwrap();
        let produced = string_to_sign(
            fields["digestEndTime"].as_str().unwrap(),
            fields["digestS3Bucket"].as_str().unwrap(),
            fields["digestS3Object"].as_str().unwrap(),
            &sha256_hex(inflated.as_bytes()),
            fields["previousDigestSignature"].as_str(),
        );
        assert_eq!(
            produced,
            vector["expected_string_to_sign"].as_str().unwrap()
        );
    }

    #[test]
    fn real_aws_keys_fingerprint_as_md5_of_der() {
        let cli: serde_json::Value =
            serde_json::from_str(&testdata("aws-cli-list-public-keys-example.json")).unwrap();
        let docs: serde_json::Value =
            serde_json::from_str(&testdata("aws-docs-list-public-keys-sample.json")).unwrap();
        let mut keys: Vec<&serde_json::Value> = Vec::new();
        keys.extend(cli["PublicKeyList"].as_array().unwrap());
        // The docs' sample spells the list key `publicKeyList`.
        keys.extend(docs["publicKeyList"].as_array().unwrap());
        assert_eq!(keys.len(), 4);
        for key in keys {
            let der = base64::engine::general_purpose::STANDARD
                .decode(key["Value"].as_str().unwrap())
                .unwrap();
            assert_eq!(fingerprint(&der), key["Fingerprint"].as_str().unwrap());
        }
    }

    #[test]
    fn public_key_is_pkcs1_rsa_public_key_der() {
        let key = test_key();
        let der = key.public_key_der();
        // SEQUENCE (len 0x010a) { INTEGER (len 0x0101) 00 <modulus> ... }: 270 bytes
        // like the real AWS keys, unlike SPKI (294 bytes, starting 30 82 01 22 30 0d).
        assert_eq!(der.len(), 270);
        assert_eq!(
            &der[..9],
            &[0x30, 0x82, 0x01, 0x0a, 0x02, 0x82, 0x01, 0x01, 0x00]
        );
        assert_eq!(&der[der.len() - 5..], &[0x02, 0x03, 0x01, 0x00, 0x01]);
        assert_eq!(key.fingerprint().len(), 32);
    }

    #[test]
    fn signature_verifies_with_the_exported_key() {
        let key = test_key();
        let message = string_to_sign("2026-01-01T01:00:00Z", "b", "k", &sha256_hex(b"x"), None);
        let signature = hex::decode(key.sign_hex(&message).unwrap()).unwrap();
        assert_eq!(signature.len(), 256);
        let exported = key.public_key_entry();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&exported.value)
            .unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &der)
            .verify(message.as_bytes(), &signature)
            .expect("signature verifies");
        assert!(UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &der)
            .verify(b"something else", &signature)
            .is_err());
    }

    #[test]
    fn state_round_trips() {
        let key = test_key();
        let state = key.to_state();
        let restored = SigningKey::from_state(&state).unwrap();
        assert_eq!(restored.public_key_der(), key.public_key_der());
        assert_eq!(restored.to_state(), state);
        let message = "a\nb/c\nd\nnull";
        assert_eq!(
            restored.sign_hex(message).unwrap(),
            key.sign_hex(message).unwrap()
        );
    }

    #[test]
    fn exported_key_list_round_trips() {
        let key = test_key();
        let list = PublicKeyList {
            public_key_list: vec![key.public_key_entry()],
        };
        let text = list.to_json_pretty();
        let parsed: PublicKeyList = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, list);
        let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
        let entry = &raw["PublicKeyList"][0];
        assert!(entry["ValidityStartTime"].is_f64());
        assert_eq!(entry["Fingerprint"].as_str().unwrap(), key.fingerprint());
        let der = base64::engine::general_purpose::STANDARD
            .decode(entry["Value"].as_str().unwrap())
            .unwrap();
        assert_eq!(fingerprint(&der), key.fingerprint());
    }
}
