//! The reference for [`super::ClaimScanner`]: the `serde_json` reader the
//! copy path used before the scan (tests only). The scanner must accept and
//! reject exactly what this accepts and rejects, and find the same claims.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{MAX_CLAIMED, MAX_CLAIM_CHARS};

/// The distinct string `recipientAccountId`s of a log file's records (at most
/// [`MAX_CLAIMED`]). Fails like a derived parse would on a body that is not a
/// JSON object with a `Records` array of objects.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogClaims(pub BTreeSet<String>);

/// A digest's `awsAccountId`, when it is a string.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DigestClaim(pub Option<String>);

impl<'de> Deserialize<'de> for LogClaims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LogClaims, D::Error> {
        struct Body;
        impl<'de> Visitor<'de> for Body {
            type Value = LogClaims;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CloudTrail log object with a Records array")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LogClaims, A::Error> {
                let mut claims: Option<BTreeSet<String>> = None;
                while let Some(is_records) = map.next_key_seed(IsKey("Records"))? {
                    if is_records {
                        let records = map.next_value_seed(Records)?;
                        claims.get_or_insert_with(BTreeSet::new).extend(records);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                claims
                    .map(LogClaims)
                    .ok_or_else(|| de::Error::missing_field("Records"))
            }
        }
        deserializer.deserialize_map(Body)
    }
}

impl<'de> Deserialize<'de> for DigestClaim {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DigestClaim, D::Error> {
        StringField {
            name: "awsAccountId",
            object: "a CloudTrail digest object",
        }
        .deserialize(deserializer)
        .map(DigestClaim)
    }
}

/// One field of a JSON object, kept if it is a string (see
/// [`StringOrSkip`]); the object's other fields are skipped unread.
struct StringField {
    name: &'static str,
    /// What the object is, for errors.
    object: &'static str,
}

impl<'de> DeserializeSeed<'de> for StringField {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StringField {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.object)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut value = None;
        while let Some(is_field) = map.next_key_seed(IsKey(self.name))? {
            if is_field {
                value = map.next_value::<StringOrSkip>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(value)
    }
}

/// A map key, compared with `self.0` without being kept.
struct IsKey(&'static str);

impl<'de> DeserializeSeed<'de> for IsKey {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for IsKey {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// The `Records` array: the distinct claims of its records.
struct Records;

impl<'de> DeserializeSeed<'de> for Records {
    type Value = BTreeSet<String>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Records {
    type Value = BTreeSet<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of CloudTrail records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut claims = BTreeSet::new();
        let recipient = || StringField {
            name: "recipientAccountId",
            object: "a CloudTrail record object",
        };
        while let Some(claim) = seq.next_element_seed(recipient())? {
            if let Some(account) = claim {
                if claims.len() < MAX_CLAIMED || claims.contains(&account) {
                    claims.insert(account);
                }
            }
        }
        Ok(claims)
    }
}

/// A value kept only if it is a string (truncated to [`MAX_CLAIM_CHARS`]);
/// anything else is skipped without being kept.
struct StringOrSkip(Option<String>);

impl<'de> Deserialize<'de> for StringOrSkip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StringOrSkip, D::Error> {
        deserializer.deserialize_any(StringOrSkipVisitor)
    }
}

struct StringOrSkipVisitor;

impl<'de> Visitor<'de> for StringOrSkipVisitor {
    type Value = StringOrSkip;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<StringOrSkip, E> {
        let kept = match value.char_indices().nth(MAX_CLAIM_CHARS) {
            Some((end, _)) => format!("{}…", &value[..end]),
            None => value.to_string(),
        };
        Ok(StringOrSkip(Some(kept)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<StringOrSkip, E> {
        Ok(StringOrSkip(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<StringOrSkip, E> {
        Ok(StringOrSkip(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<StringOrSkip, E> {
        Ok(StringOrSkip(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<StringOrSkip, E> {
        Ok(StringOrSkip(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<StringOrSkip, E> {
        Ok(StringOrSkip(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<StringOrSkip, E> {
        Ok(StringOrSkip(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringOrSkip, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(StringOrSkip(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringOrSkip, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(StringOrSkip(None))
    }
}
