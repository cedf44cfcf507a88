//! Reads the archive's bucket policy into the guards a run relies on
//! ([`BucketPolicyGuards`]): by statement, effect, principal, action and
//! condition, not by the word "Deny" appearing somewhere.

use serde_json::Value;
use trailvault_pipeline::seams::BucketPolicyGuards;

/// The guards `policy` (a bucket policy document) holds. A policy that is not
/// JSON holds none.
pub fn bucket_policy_guards(policy: &str) -> BucketPolicyGuards {
    let Ok(document) = serde_json::from_str::<Value>(policy) else {
        return BucketPolicyGuards::default();
    };
    let statements: Vec<&Value> = match document.get("Statement") {
        Some(Value::Array(statements)) => statements.iter().collect(),
        Some(statement @ Value::Object(_)) => vec![statement],
        _ => Vec::new(),
    };
    let mut guards = BucketPolicyGuards::default();
    for statement in statements.into_iter().filter(|s| denies_everyone(s)) {
        let conditions = statement.get("Condition").and_then(Value::as_object);
        let unconditional = conditions.is_none_or(|c| c.is_empty());
        if unconditional
            && covers_action(statement, "s3:DeleteObject")
            && covers_action(statement, "s3:DeleteObjectVersion")
        {
            guards.denies_object_deletion = true;
        }
        if !covers_action(statement, "s3:PutObject") {
            continue;
        }
        let Some(conditions) = conditions else {
            continue;
        };
        // A deny of any put naming a mode other than COMPLIANCE: the mode key
        // compared with StringNotEquals against COMPLIANCE alone, optionally
        // only when present (Null = false); any other condition would narrow it.
        let mode_only = conditions.keys().all(|operator| {
            (operator == "StringNotEquals" || operator == "Null")
                && condition_keys(conditions, operator) == ["s3:object-lock-mode"]
        });
        let not_compliance = condition_values(conditions, "StringNotEquals", "s3:object-lock-mode")
            .is_some_and(|values| values == ["COMPLIANCE"]);
        let null_ok = condition_values(conditions, "Null", "s3:object-lock-mode")
            .is_none_or(|values| values == ["false"]);
        if mode_only && not_compliance && null_ok {
            guards.denies_weaker_lock_puts = true;
        }
        if conditions.len() == 1 {
            if let Some(values) = condition_values(
                conditions,
                "NumericLessThan",
                "s3:object-lock-remaining-retention-days",
            ) {
                if let [days] = values.as_slice() {
                    if let Ok(days) = days.parse::<u32>() {
                        let best = guards.min_put_retention_days.map_or(days, |d| d.max(days));
                        guards.min_put_retention_days = Some(best);
                    }
                }
            }
        }
    }
    guards
}

fn denies_everyone(statement: &Value) -> bool {
    if statement.get("Effect").and_then(Value::as_str) != Some("Deny") {
        return false;
    }
    match statement.get("Principal") {
        Some(Value::String(star)) => star == "*",
        Some(Value::Object(principal)) => principal
            .get("AWS")
            .is_some_and(|aws| strings(aws).iter().any(|p| p == "*")),
        _ => false,
    }
}

/// Whether the statement's `Action` names `action` (or a wildcard that covers it).
fn covers_action(statement: &Value, action: &str) -> bool {
    statement.get("Action").is_some_and(|actions| {
        strings(actions).iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            let action = action.to_ascii_lowercase();
            pattern == "*"
                || pattern == action
                || pattern
                    .strip_suffix('*')
                    .is_some_and(|prefix| action.starts_with(prefix))
        })
    })
}

fn condition_keys(conditions: &serde_json::Map<String, Value>, operator: &str) -> Vec<String> {
    conditions
        .get(operator)
        .and_then(Value::as_object)
        .map(|keys| keys.keys().map(|k| k.to_ascii_lowercase()).collect())
        .unwrap_or_default()
}

fn condition_values(
    conditions: &serde_json::Map<String, Value>,
    operator: &str,
    key: &str,
) -> Option<Vec<String>> {
    let keys = conditions.get(operator)?.as_object()?;
    keys.iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
        .map(|(_, value)| strings(value))
}

/// A policy value that is a string, a number, a boolean or a list of them.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => vec![text.clone()],
        Value::Number(number) => vec![number.to_string()],
        Value::Bool(flag) => vec![flag.to_string()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full() -> Value {
        json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "DenyObjectDeletion", "Effect": "Deny", "Principal": "*",
             "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"],
             "Resource": "arn:aws:s3:::b/*"},
            {"Sid": "DenyPutsWithAWeakerLockMode", "Effect": "Deny", "Principal": "*",
             "Action": ["s3:PutObject", "s3:PutObjectRetention"], "Resource": "arn:aws:s3:::b/*",
             "Condition": {"Null": {"s3:object-lock-mode": "false"},
                           "StringNotEquals": {"s3:object-lock-mode": "COMPLIANCE"}}},
            {"Sid": "DenyPutsRetainedTooBriefly", "Effect": "Deny", "Principal": "*",
             "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*",
             "Condition": {"NumericLessThan": {"s3:object-lock-remaining-retention-days": "364"}}},
            {"Sid": "AllowAuditors", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/a"},
             "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
        ]})
    }

    fn without(sid: &str) -> String {
        let mut policy = full();
        policy["Statement"]
            .as_array_mut()
            .unwrap()
            .retain(|statement| statement["Sid"] != sid);
        policy.to_string()
    }

    #[test]
    fn the_templates_policy_holds_every_guard() {
        assert_eq!(
            bucket_policy_guards(&full().to_string()),
            BucketPolicyGuards {
                denies_object_deletion: true,
                denies_weaker_lock_puts: true,
                min_put_retention_days: Some(364),
            }
        );
    }

    #[test]
    fn each_missing_or_weakened_statement_is_seen() {
        assert!(!bucket_policy_guards(&without("DenyObjectDeletion")).denies_object_deletion);
        assert!(
            !bucket_policy_guards(&without("DenyPutsWithAWeakerLockMode")).denies_weaker_lock_puts
        );
        assert_eq!(
            bucket_policy_guards(&without("DenyPutsRetainedTooBriefly")).min_put_retention_days,
            None
        );
        // The word "Deny" is not enough: an Allow, a deny for one principal, a
        // conditional deletion deny, a deny that allows GOVERNANCE.
        let cases = [
            json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:DeleteObject", "Resource": "*", "Sid": "Deny"}]}),
            json!({"Statement": [{"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::1:user/x"},
                                  "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"], "Resource": "*"}]}),
            json!({"Statement": [{"Effect": "Deny", "Principal": "*",
                                  "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"], "Resource": "*",
                                  "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}),
            json!({"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "*",
                                  "Condition": {"StringNotEquals": {"s3:object-lock-mode": ["COMPLIANCE", "GOVERNANCE"]}}}]}),
            json!({"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "*",
                                  "Condition": {"StringNotEquals": {"s3:object-lock-mode": "COMPLIANCE"},
                                                "StringEquals": {"aws:PrincipalArn": "arn:aws:iam::1:user/x"}}}]}),
        ];
        for case in cases {
            assert_eq!(
                bucket_policy_guards(&case.to_string()),
                BucketPolicyGuards::default(),
                "{case}"
            );
        }
        assert_eq!(
            bucket_policy_guards("not json \"Deny\""),
            BucketPolicyGuards::default()
        );
    }

    #[test]
    fn wildcard_actions_and_principals_count() {
        let policy = json!({"Statement": {"Effect": "Deny", "Principal": {"AWS": ["*"]},
                                          "Action": "s3:Delete*", "Resource": "*"}});
        assert!(bucket_policy_guards(&policy.to_string()).denies_object_deletion);
    }
}
