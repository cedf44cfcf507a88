//! Which account a CloudTrail body claims: the `recipientAccountId` of each
//! record of a log file (docs/cloudtrail-format.md §1.1) and the `awsAccountId` of a digest. Read
//! in one pass without keeping the body: records and every other field are
//! skipped as they are parsed, so memory stays bounded whatever a member
//! account puts in the file (a log of millions of empty records, an account
//! id that is a huge array).

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Distinct claimed accounts kept per log; one other than the reader's own
/// is enough for a finding.
pub const MAX_CLAIMED: usize = 64;

/// Longest claimed value kept as is; a longer one is kept truncated (it is
/// no account id, and still a claim of another account).
const MAX_CLAIM_CHARS: usize = 64;

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn log(text: &str) -> Result<BTreeSet<String>, String> {
        serde_json::from_str::<LogClaims>(text)
            .map(|claims| claims.0)
            .map_err(|error| error.to_string())
    }

    fn set(accounts: &[&str]) -> BTreeSet<String> {
        accounts.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn claims_come_from_each_records_own_recipient_field() {
        let body = r#"{"Records":[
            {"eventName":"A","recipientAccountId":"111111111111"},
            {"requestParameters":{"recipientAccountId":"999999999999"},"recipientAccountId":"111111111111"},
            {"recipient\u0041ccountId":"222222222222"},
            {"recipientAccountId":123},
            {"recipientAccountId":null},
            {"recipientAccountId":{"nested":["333333333333"]}},
            {}
        ],"other":{"Records":"ignored"}}"#;
        assert_eq!(log(body), Ok(set(&["111111111111", "222222222222"])));
        assert_eq!(log(r#"{"Records":[]}"#), Ok(BTreeSet::new()));
    }

    #[test]
    fn what_is_not_a_records_object_fails_like_a_derived_parse() {
        for body in [
            r#"{"records":[]}"#,
            r#"{"Records":null}"#,
            r#"{"Records":[1]}"#,
            r#"["Records"]"#,
            r#"{"Records":[{}]"#,
            "",
        ] {
            assert!(log(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn hostile_bodies_keep_little() {
        // Many distinct claims: bounded.
        let mut body = String::from(r#"{"Records":["#);
        for index in 0..1000 {
            if index > 0 {
                body.push(',');
            }
            body.push_str(&format!(r#"{{"recipientAccountId":"{index:012}"}}"#));
        }
        body.push_str("]}");
        assert_eq!(log(&body).unwrap().len(), MAX_CLAIMED);
        // A huge claimed value is kept truncated.
        let long = "7".repeat(10_000);
        let claims = log(&format!(
            r#"{{"Records":[{{"recipientAccountId":"{long}"}}]}}"#
        ))
        .unwrap();
        let kept = claims.into_iter().next().unwrap();
        assert_eq!(kept.chars().count(), MAX_CLAIM_CHARS + 1);
        assert!(kept.ends_with('…'));
        // A huge non-string value is skipped.
        let array = format!(
            r#"{{"Records":[{{"recipientAccountId":[{}0]}}]}}"#,
            "0,".repeat(100_000)
        );
        assert_eq!(log(&array), Ok(BTreeSet::new()));
    }

    #[test]
    fn the_digest_claim_is_its_account_field() {
        let claim = |text: &str| serde_json::from_str::<DigestClaim>(text).map(|c| c.0);
        assert_eq!(
            claim(r#"{"awsAccountId":"111111111111","logFiles":[{"awsAccountId":"x"}]}"#).unwrap(),
            Some("111111111111".to_string())
        );
        assert_eq!(claim(r#"{"awsAccountId":[1,2]}"#).unwrap(), None);
        assert_eq!(claim(r#"{}"#).unwrap(), None);
        assert!(claim("[]").is_err());
    }

    proptest! {
        /// The streaming reader and a plain parse through `serde_json::Value`
        /// agree on every small body of records.
        #[test]
        fn agrees_with_a_value_parse(records in proptest::collection::vec(
            proptest::option::of(prop_oneof![
                "[0-9]{12}".prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
            ]),
            0..20,
        )) {
            let records: Vec<serde_json::Value> = records
                .into_iter()
                .map(|recipient| match recipient {
                    Some(value) => serde_json::json!({"eventName": "E", "recipientAccountId": value}),
                    None => serde_json::json!({"eventName": "E"}),
                })
                .collect();
            let body = serde_json::json!({"Records": records}).to_string();
            let expected: BTreeSet<String> = records
                .iter()
                .filter_map(|record| record["recipientAccountId"].as_str().map(str::to_string))
                .collect();
            prop_assert_eq!(log(&body), Ok(expected));
            let mut reader = body.as_bytes();
            let streamed: LogClaims = serde_json::from_reader(&mut reader).unwrap();
            prop_assert_eq!(streamed.0, log(&body).unwrap());
        }
    }
}
