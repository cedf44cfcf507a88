//! The message bodies that announce a delivered trail file, as an SQS queue
//! receives them. A body is written by whoever may send to the queue: every
//! shape is parsed with bounds and a typed error, never trusted further than
//! "this names bucket B and key K" (the object is read and checked as in a
//! listing run).
//!
//! Accepted shapes:
//!
//! * CloudTrail's notification: `{"s3Bucket": "b", "s3ObjectKey": ["k", …]}`,
//!   raw (SNS raw message delivery) or inside an SNS envelope
//!   (`{"Type": "Notification", "Message": "<that JSON as a string>", …}`);
//! * an S3 event notification: `{"Records": [{"eventSource": "aws:s3",
//!   "eventName": "ObjectCreated:…", "s3": {"bucket": {"name": "b"},
//!   "object": {"key": "k"}}}]}`, keys URL-encoded (`+` for a space), raw or
//!   in an SNS envelope; records of other events are ignored;
//! * an EventBridge S3 event: `{"source": "aws.s3", "detail-type": "Object
//!   Created", "detail": {"bucket": {"name": "b"}, "object": {"key": "k"}}}`.
//!
//! S3's `s3:TestEvent` (sent when a notification is configured) and SNS's
//! subscription messages announce nothing: [`Notice::Nothing`].

use serde_json::Value;

use crate::model::text::decode_url_encoded;

/// The largest body read: SQS's own limit (256 KiB).
pub const MAX_BODY_BYTES: usize = 262_144;

/// One object a notification names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notified {
    pub bucket: String,
    pub key: String,
}

/// What a body announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Objects delivered, in the body's order (at least one).
    Objects(Vec<Notified>),
    /// A body that announces no object (a test event, a subscription
    /// confirmation, an S3 event of another kind): deleted, not dead-lettered.
    Nothing(String),
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    #[error("body of {0} bytes is larger than {MAX_BODY_BYTES}")]
    Oversized(usize),
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body has an unknown shape: {0}")]
    UnknownShape(String),
    #[error("body names {count} objects, more than {max}")]
    TooManyKeys { count: usize, max: usize },
    #[error("malformed {field}: {problem}")]
    Malformed { field: String, problem: String },
}

impl NoticeError {
    /// A short constant label for metrics and counting.
    pub fn label(&self) -> &'static str {
        match self {
            NoticeError::Oversized(_) => "oversized",
            NoticeError::NotJson(_) => "not_json",
            NoticeError::UnknownShape(_) => "unknown_shape",
            NoticeError::TooManyKeys { .. } => "too_many_keys",
            NoticeError::Malformed { .. } => "malformed",
        }
    }
}

/// Reads `body`; at most `max_keys` objects are accepted from one message.
pub fn parse_notice(body: &str, max_keys: usize) -> Result<Notice, NoticeError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(NoticeError::Oversized(body.len()));
    }
    let value: Value =
        serde_json::from_str(body).map_err(|error| NoticeError::NotJson(error.to_string()))?;
    // One SNS envelope at most: its Message is one of the inner shapes.
    if let Some(kind) = value.get("Type").and_then(Value::as_str) {
        if value.get("TopicArn").is_some() || value.get("MessageId").is_some() {
            return match kind {
                "Notification" => {
                    let message = text(&value, "Message")?;
                    let inner: Value = serde_json::from_str(message)
                        .map_err(|error| NoticeError::NotJson(format!("SNS Message: {error}")))?;
                    if inner.get("Type").is_some() && inner.get("TopicArn").is_some() {
                        return Err(NoticeError::UnknownShape(
                            "an SNS envelope inside an SNS envelope".to_string(),
                        ));
                    }
                    objects_of(&inner, max_keys)
                }
                "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
                    Ok(Notice::Nothing(format!("SNS {kind}")))
                }
                other => Err(NoticeError::UnknownShape(format!(
                    "SNS message of type {}",
                    quote(other)
                ))),
            };
        }
    }
    objects_of(&value, max_keys)
}

fn objects_of(value: &Value, max_keys: usize) -> Result<Notice, NoticeError> {
    if !value.is_object() {
        return Err(NoticeError::UnknownShape("not a JSON object".to_string()));
    }
    if value.get("s3ObjectKey").is_some() || value.get("s3Bucket").is_some() {
        return cloudtrail(value, max_keys);
    }
    if let Some(records) = value.get("Records") {
        return s3_event(records, max_keys);
    }
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notice::Nothing("S3 test event".to_string()));
    }
    if value.get("detail").is_some() {
        return eventbridge(value);
    }
    Err(NoticeError::UnknownShape(
        "neither a CloudTrail notification, an S3 event nor an EventBridge event".to_string(),
    ))
}

fn cloudtrail(value: &Value, max_keys: usize) -> Result<Notice, NoticeError> {
    let bucket = text(value, "s3Bucket")?.to_string();
    let keys = value
        .get("s3ObjectKey")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("s3ObjectKey", "is not a list"))?;
    if keys.len() > max_keys {
        return Err(NoticeError::TooManyKeys {
            count: keys.len(),
            max: max_keys,
        });
    }
    if keys.is_empty() {
        return Err(malformed("s3ObjectKey", "is empty"));
    }
    let objects = keys
        .iter()
        .enumerate()
        .map(|(index, key)| {
            let key = key
                .as_str()
                .ok_or_else(|| malformed(&format!("s3ObjectKey[{index}]"), "is not a string"))?;
            Ok(Notified {
                bucket: bucket.clone(),
                key: key.to_string(),
            })
        })
        .collect::<Result<Vec<_>, NoticeError>>()?;
    Ok(Notice::Objects(objects))
}

fn s3_event(records: &Value, max_keys: usize) -> Result<Notice, NoticeError> {
    let records = records
        .as_array()
        .ok_or_else(|| malformed("Records", "is not a list"))?;
    if records.len() > max_keys {
        return Err(NoticeError::TooManyKeys {
            count: records.len(),
            max: max_keys,
        });
    }
    let mut objects = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let field = |name: &str| format!("Records[{index}].{name}");
        let source = record.get("eventSource").and_then(Value::as_str);
        if source != Some("aws:s3") {
            return Err(malformed(&field("eventSource"), "is not aws:s3"));
        }
        let event = record
            .get("eventName")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(&field("eventName"), "is missing"))?;
        if !event.starts_with("ObjectCreated:") {
            continue;
        }
        let s3 = record
            .get("s3")
            .ok_or_else(|| malformed(&field("s3"), "is missing"))?;
        let bucket = s3
            .pointer("/bucket/name")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(&field("s3.bucket.name"), "is missing"))?;
        let encoded = s3
            .pointer("/object/key")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(&field("s3.object.key"), "is missing"))?;
        let key = decode_url_encoded(encoded)
            .map_err(|problem| malformed(&field("s3.object.key"), &problem))?;
        objects.push(Notified {
            bucket: bucket.to_string(),
            key,
        });
    }
    if objects.is_empty() {
        return Ok(Notice::Nothing(
            "S3 event with no object created".to_string(),
        ));
    }
    Ok(Notice::Objects(objects))
}

fn eventbridge(value: &Value) -> Result<Notice, NoticeError> {
    if value.get("source").and_then(Value::as_str) != Some("aws.s3") {
        return Err(malformed("source", "is not aws.s3"));
    }
    let kind = value
        .get("detail-type")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("detail-type", "is missing"))?;
    if kind != "Object Created" {
        return Ok(Notice::Nothing(format!("EventBridge {}", quote(kind))));
    }
    let bucket = value
        .pointer("/detail/bucket/name")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("detail.bucket.name", "is missing"))?;
    let key = value
        .pointer("/detail/object/key")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("detail.object.key", "is missing"))?;
    Ok(Notice::Objects(vec![Notified {
        bucket: bucket.to_string(),
        key: key.to_string(),
    }]))
}

fn text<'a>(value: &'a Value, field: &str) -> Result<&'a str, NoticeError> {
    value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(field, "is missing or not a string"))
}

fn malformed(field: &str, problem: &str) -> NoticeError {
    NoticeError::Malformed {
        field: field.to_string(),
        problem: problem.to_string(),
    }
}

/// A sender's text, shortened and escaped for a message.
fn quote(text: &str) -> String {
    let short: String = text.chars().take(64).collect();
    format!("{short:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AWSLogs/111111111111/CloudTrail/us-east-1/2026/01/02/111111111111_CloudTrail_us-east-1_20260102T0000Z_abc.json.gz";

    fn objects(notice: Notice) -> Vec<(String, String)> {
        match notice {
            Notice::Objects(objects) => objects.into_iter().map(|o| (o.bucket, o.key)).collect(),
            Notice::Nothing(why) => panic!("nothing: {why}"),
        }
    }

    fn sns(inner: &str) -> String {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": "m-1",
            "TopicArn": "arn:aws:sns:us-east-1:222222222222:trail",
            "Message": inner,
        })
        .to_string()
    }

    #[test]
    fn cloudtrail_notifications_raw_and_in_an_sns_envelope() {
        let raw = format!(r#"{{"s3Bucket":"trail-bucket","s3ObjectKey":["{KEY}","{KEY}2"]}}"#);
        let expected = vec![
            ("trail-bucket".to_string(), KEY.to_string()),
            ("trail-bucket".to_string(), format!("{KEY}2")),
        ];
        assert_eq!(objects(parse_notice(&raw, 10).unwrap()), expected);
        assert_eq!(objects(parse_notice(&sns(&raw), 10).unwrap()), expected);
    }

    #[test]
    fn s3_events_decode_their_keys_and_skip_other_events() {
        let body = serde_json::json!({"Records": [
            {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
             "s3": {"bucket": {"name": "b"}, "object": {"key": "a+b%2Fc%3D.json.gz"}}},
            {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete",
             "s3": {"bucket": {"name": "b"}, "object": {"key": "gone"}}},
        ]})
        .to_string();
        assert_eq!(
            objects(parse_notice(&body, 10).unwrap()),
            vec![("b".to_string(), "a b/c=.json.gz".to_string())]
        );
        assert_eq!(
            objects(parse_notice(&sns(&body), 10).unwrap()).len(),
            1,
            "S3 -> SNS -> SQS"
        );
        let removed = serde_json::json!({"Records": [
            {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete",
             "s3": {"bucket": {"name": "b"}, "object": {"key": "gone"}}}]})
        .to_string();
        assert!(matches!(parse_notice(&removed, 10), Ok(Notice::Nothing(_))));
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#;
        assert!(matches!(
            parse_notice(test_event, 10),
            Ok(Notice::Nothing(_))
        ));
        let bad_escape = serde_json::json!({"Records": [
            {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
             "s3": {"bucket": {"name": "b"}, "object": {"key": "%zz"}}}]})
        .to_string();
        assert_eq!(
            parse_notice(&bad_escape, 10).unwrap_err().label(),
            "malformed"
        );
    }

    #[test]
    fn eventbridge_object_created() {
        let body = serde_json::json!({
            "version": "0", "source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": "b"}, "object": {"key": KEY, "size": 10}},
        })
        .to_string();
        assert_eq!(
            objects(parse_notice(&body, 10).unwrap()),
            vec![("b".to_string(), KEY.to_string())]
        );
        let deleted = body.replace("Object Created", "Object Deleted");
        assert!(matches!(parse_notice(&deleted, 10), Ok(Notice::Nothing(_))));
        let spoofed = body.replace("aws.s3", "my.app");
        assert_eq!(parse_notice(&spoofed, 10).unwrap_err().label(), "malformed");
    }

    #[test]
    fn hostile_bodies_are_refused_with_a_reason() {
        let many: Vec<String> = (0..11).map(|i| format!("{KEY}{i}")).collect();
        let cases: Vec<(String, &str)> = vec![
            ("x".repeat(MAX_BODY_BYTES + 1), "oversized"),
            ("not json".to_string(), "not_json"),
            ("[1,2]".to_string(), "unknown_shape"),
            (r#"{"hello":"world"}"#.to_string(), "unknown_shape"),
            (
                serde_json::json!({"s3Bucket": "b", "s3ObjectKey": many}).to_string(),
                "too_many_keys",
            ),
            (
                r#"{"s3Bucket":"b","s3ObjectKey":[]}"#.to_string(),
                "malformed",
            ),
            (
                r#"{"s3Bucket":"b","s3ObjectKey":[1]}"#.to_string(),
                "malformed",
            ),
            (
                r#"{"s3Bucket":7,"s3ObjectKey":["k"]}"#.to_string(),
                "malformed",
            ),
            (r#"{"s3ObjectKey":"k"}"#.to_string(), "malformed"),
            (sns("not json"), "not_json"),
            (
                sns(&sns(r#"{"s3Bucket":"b","s3ObjectKey":["k"]}"#)),
                "unknown_shape",
            ),
            (
                serde_json::json!({"Type": "Bogus", "TopicArn": "t"}).to_string(),
                "unknown_shape",
            ),
            (
                serde_json::json!({"Records": [{"eventSource": "aws:sqs"}]}).to_string(),
                "malformed",
            ),
        ];
        for (body, label) in cases {
            let error = parse_notice(&body, 10).unwrap_err();
            assert_eq!(error.label(), label, "{error} for {:.80}", body);
        }
    }

    #[test]
    fn sns_subscription_messages_announce_nothing() {
        let body = serde_json::json!({
            "Type": "SubscriptionConfirmation", "MessageId": "m", "TopicArn": "t",
        })
        .to_string();
        assert!(matches!(parse_notice(&body, 10), Ok(Notice::Nothing(_))));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in ".{0,400}") {
            let _ = parse_notice(&body, 10);
        }

        #[test]
        fn arbitrary_keys_in_a_cloudtrail_notification_come_back_verbatim(key in "\\PC{1,200}") {
            let body = serde_json::json!({"s3Bucket": "b", "s3ObjectKey": [key.clone()]}).to_string();
            let notice = parse_notice(&body, 10).unwrap();
            proptest::prop_assert_eq!(notice, Notice::Objects(vec![Notified { bucket: "b".into(), key }]));
        }
    }
}
