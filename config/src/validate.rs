//! Rules serde cannot express. Each check reports the first broken rule as
//! [`ConfigError::Invalid`] with the dotted path of the value, so the operator knows
//! which line to edit. Problems never quote secret values.

use std::fmt::Display;

use crate::error::ConfigError;
use crate::settings::{
    AccountSettings, AlertSettings, ArchiveSettings, AwsSettings, CollectSettings,
    OrganizationSource, PerAccountSource, RetentionSettings, SourceSettings, StoreSettings,
    VerifySettings, ACCOUNT_ID_PLACEHOLDER, GIB, MIB,
};
use crate::Config;

/// Why a value is wrong, without the field name; [`at`] adds that.
type Problem = String;

/// An account id used only to check that a bucket template renders to a valid name.
const SAMPLE_ACCOUNT_ID: &str = "111111111111";

pub(crate) fn validate(config: &Config) -> Result<(), ConfigError> {
    validate_aws(&config.aws)?;
    validate_archive(&config.archive)?;
    validate_accounts(&config.accounts)?;
    validate_sources(&config.sources)?;
    validate_collect(&config.collect)?;
    validate_store(&config.store)?;
    validate_verify(&config.verify)?;
    validate_retention(&config.retention)?;
    validate_alerts(&config.alerts)?;
    crate::intake::validate_intake(&config.intake)
}

fn at(field: impl Into<String>, check: Result<(), Problem>) -> Result<(), ConfigError> {
    check.map_err(|problem| ConfigError::invalid(field, problem))
}

fn validate_aws(aws: &AwsSettings) -> Result<(), ConfigError> {
    at("aws.region", region(&aws.region))?;
    if let Some(partition) = &aws.partition {
        at("aws.partition", aws_partition(partition))?;
    }
    if let Some(url) = &aws.endpoint_url {
        at("aws.endpoint_url", endpoint_url(url))?;
    }
    at(
        "aws.connect_timeout_seconds",
        in_range(aws.connect_timeout_seconds, 1, 300),
    )?;
    at(
        "aws.read_timeout_seconds",
        in_range(aws.read_timeout_seconds, 1, 3_600),
    )?;
    at(
        "aws.attempt_timeout_seconds",
        in_range(aws.attempt_timeout_seconds, 1, 3_600),
    )?;
    if aws.attempt_timeout_seconds < aws.read_timeout_seconds {
        return Err(ConfigError::invalid(
            "aws.attempt_timeout_seconds",
            "must be at least aws.read_timeout_seconds",
        ));
    }
    at(
        "aws.upload_min_bytes_per_second",
        in_range(
            aws.upload_min_bytes_per_second,
            1_024,
            10 * 1024 * 1024 * 1024,
        ),
    )?;
    match (&aws.source_access_key_id, &aws.source_secret_access_key) {
        (Some(_), None) => Err(ConfigError::invalid(
            "aws.source_secret_access_key",
            "must be set when aws.source_access_key_id is set (both or neither)",
        )),
        (None, Some(_)) => Err(ConfigError::invalid(
            "aws.source_access_key_id",
            "must be set when aws.source_secret_access_key is set (both or neither)",
        )),
        (Some(key_id), Some(secret)) => {
            at("aws.source_access_key_id", not_blank(key_id))?;
            at("aws.source_secret_access_key", not_blank(secret))
        }
        (None, None) => Ok(()),
    }
}

fn validate_archive(archive: &ArchiveSettings) -> Result<(), ConfigError> {
    at("archive.bucket", bucket_name(&archive.bucket))?;
    at("archive.prefix", key_prefix(&archive.prefix))?;
    at("archive.kms_key_id", kms_key_id(&archive.kms_key_id))?;
    at(
        "archive.retention_days",
        in_range(archive.retention_days, 1, 36_500),
    )
}

fn validate_accounts(accounts: &AccountSettings) -> Result<(), ConfigError> {
    if accounts.ids.is_empty() && !accounts.discover {
        return Err(ConfigError::invalid(
            "accounts.ids",
            "must list at least one account id unless accounts.discover = true",
        ));
    }
    for (list_name, list) in [
        ("ids", &accounts.ids),
        ("include", &accounts.include),
        ("exclude", &accounts.exclude),
    ] {
        for (index, id) in list.iter().enumerate() {
            at(format!("accounts.{list_name}[{index}]"), account_id(id))?;
        }
    }
    at("accounts.role_name", role_name(&accounts.role_name))?;
    at("accounts.external_id", external_id(&accounts.external_id))?;
    at(
        "accounts.session_duration_seconds",
        in_range(accounts.session_duration_seconds, 900, 43_200),
    )
}

fn validate_sources(sources: &[SourceSettings]) -> Result<(), ConfigError> {
    if sources.is_empty() {
        return Err(ConfigError::invalid(
            "sources",
            "at least one [[sources]] entry is required",
        ));
    }
    for (index, source) in sources.iter().enumerate() {
        let path = format!("sources[{index}]");
        match source {
            SourceSettings::PerAccount(per_account) => validate_per_account(&path, per_account)?,
            SourceSettings::Organization(organization) => {
                validate_organization(&path, organization)?
            }
        }
        for (region_index, region_name) in source.regions().iter().enumerate() {
            at(
                format!("{path}.regions[{region_index}]"),
                region(region_name),
            )?;
        }
    }
    Ok(())
}

fn validate_per_account(path: &str, source: &PerAccountSource) -> Result<(), ConfigError> {
    let field = format!("{path}.bucket_template");
    if !source.bucket_template.contains(ACCOUNT_ID_PLACEHOLDER) {
        return Err(ConfigError::invalid(
            field,
            format!("must contain {ACCOUNT_ID_PLACEHOLDER}"),
        ));
    }
    let sample = source.bucket_for(SAMPLE_ACCOUNT_ID);
    at(
        field,
        bucket_name(&sample).map_err(|problem| {
            format!("renders to an invalid bucket name for account {SAMPLE_ACCOUNT_ID}: {problem}")
        }),
    )?;
    at(format!("{path}.key_prefix"), key_prefix(&source.key_prefix))
}

fn validate_organization(path: &str, source: &OrganizationSource) -> Result<(), ConfigError> {
    at(format!("{path}.bucket"), bucket_name(&source.bucket))?;
    at(format!("{path}.org_id"), org_id(&source.org_id))?;
    at(format!("{path}.key_prefix"), key_prefix(&source.key_prefix))?;
    at(
        format!("{path}.reader_account_id"),
        account_id(&source.reader_account_id),
    )
}

fn validate_collect(collect: &CollectSettings) -> Result<(), ConfigError> {
    at(
        "collect.concurrency",
        in_range(collect.concurrency, 1, 1024),
    )?;
    at(
        "collect.lookback_days",
        in_range(collect.lookback_days, 0, 31),
    )?;
    if collect.redelivery_sweep_days < collect.lookback_days {
        return Err(ConfigError::invalid(
            "collect.redelivery_sweep_days",
            format!(
                "is {}, must be >= collect.lookback_days ({})",
                collect.redelivery_sweep_days, collect.lookback_days
            ),
        ));
    }
    at(
        "collect.redelivery_sweep_days",
        in_range(collect.redelivery_sweep_days, 0, 45),
    )?;
    at(
        "collect.multipart_threshold_bytes",
        in_range(collect.multipart_threshold_bytes, 5 * MIB, 5 * GIB),
    )?;
    at(
        "collect.max_inflated_bytes",
        at_least(collect.max_inflated_bytes, MIB),
    )?;
    at(
        "collect.max_inflate_ratio",
        at_least(collect.max_inflate_ratio, 10),
    )?;
    at(
        "collect.max_keys_per_partition_per_run",
        in_range(collect.max_keys_per_partition_per_run, 1, 10_000_000),
    )?;
    at(
        "collect.max_object_bytes",
        in_range(collect.max_object_bytes, MIB, 5 * 1024 * GIB),
    )
}

fn validate_store(store: &StoreSettings) -> Result<(), ConfigError> {
    if store.path.as_os_str().is_empty() {
        return Err(ConfigError::invalid("store.path", "must not be empty"));
    }
    Ok(())
}

fn validate_verify(verify: &VerifySettings) -> Result<(), ConfigError> {
    at(
        "verify.unreadable_grace_hours",
        in_range(verify.unreadable_grace_hours, 0, 24 * 366),
    )?;
    at(
        "verify.max_digest_bytes",
        in_range(verify.max_digest_bytes, 64 * 1024, 256 * MIB),
    )?;
    if let Some(path) = &verify.public_keys_file {
        if path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "verify.public_keys_file",
                "must not be empty (omit it to use CloudTrail ListPublicKeys)",
            ));
        }
    }
    Ok(())
}

fn validate_retention(retention: &RetentionSettings) -> Result<(), ConfigError> {
    match retention.source_retention_days {
        Some(days) => at("retention.source_retention_days", in_range(days, 0, 36_500)),
        None => Ok(()),
    }
}

fn validate_alerts(alerts: &AlertSettings) -> Result<(), ConfigError> {
    if let Some(arn) = &alerts.sns_topic_arn {
        at("alerts.sns_topic_arn", sns_topic_arn(arn))?;
    }
    if let Some(bus) = &alerts.event_bus {
        at("alerts.event_bus", event_bus(bus))?;
    }
    if let Some(account) = &alerts.asff_account_id {
        at("alerts.asff_account_id", account_id(account))?;
    }
    Ok(())
}

// ---- value checks: each returns the problem, never the field ----

fn in_range<T: PartialOrd + Display>(value: T, min: T, max: T) -> Result<(), Problem> {
    if value < min || value > max {
        return Err(format!("is {value}, must be between {min} and {max}"));
    }
    Ok(())
}

fn at_least<T: PartialOrd + Display>(value: T, min: T) -> Result<(), Problem> {
    if value < min {
        return Err(format!("is {value}, must be at least {min}"));
    }
    Ok(())
}

fn not_blank(value: &str) -> Result<(), Problem> {
    if value.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(())
}

fn account_id(value: &str) -> Result<(), Problem> {
    if value.len() != 12 || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("{value:?} is not a 12-digit AWS account id"));
    }
    Ok(())
}

/// S3 general purpose bucket naming rules (the subset that matters for typos).
fn bucket_name(value: &str) -> Result<(), Problem> {
    if !(3..=63).contains(&value.len()) {
        return Err(format!(
            "{value:?} is {} characters, a bucket name has 3 to 63",
            value.len()
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(format!(
            "{value:?} contains {bad:?}; only lowercase letters, digits, '.' and '-' are allowed"
        ));
    }
    let is_alphanumeric = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    let bytes = value.as_bytes();
    if !is_alphanumeric(bytes[0]) || !is_alphanumeric(bytes[bytes.len() - 1]) {
        return Err(format!(
            "{value:?} must start and end with a lowercase letter or digit"
        ));
    }
    if value.contains("..") {
        return Err(format!("{value:?} must not contain two adjacent periods"));
    }
    Ok(())
}

fn key_prefix(value: &str) -> Result<(), Problem> {
    if value.starts_with('/') || value.ends_with('/') {
        return Err(format!("{value:?} must not start or end with '/'"));
    }
    if value.contains("//") {
        return Err(format!("{value:?} must not contain '//'"));
    }
    Ok(())
}

/// `^[a-z]{2}(-[a-z]+)+-\d+$`, e.g. `us-east-1`, `us-gov-west-1`, `ap-northeast-1`.
/// `aws`, or `aws-` and lowercase words joined by dashes (`aws-us-gov`,
/// `aws-cn`, `aws-iso-b`).
fn aws_partition(value: &str) -> Result<(), Problem> {
    let well_formed = value.len() <= 32
        && (value == "aws"
            || value.strip_prefix("aws-").is_some_and(|rest| {
                !rest.is_empty()
                    && rest.split('-').all(|word| {
                        !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase())
                    })
            }));
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not an AWS partition like \"aws\", \"aws-us-gov\" or \"aws-cn\""
        ))
    }
}

fn region(value: &str) -> Result<(), Problem> {
    let parts: Vec<&str> = value.split('-').collect();
    let well_formed = parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].bytes().all(|byte| byte.is_ascii_lowercase())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_lowercase()))
        && parts[parts.len() - 1]
            .bytes()
            .all(|byte| byte.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if !well_formed {
        return Err(format!(
            "{value:?} is not an AWS region name like \"us-east-1\""
        ));
    }
    Ok(())
}

/// `^o-[a-z0-9]{10,32}$`.
fn org_id(value: &str) -> Result<(), Problem> {
    let well_formed = value.strip_prefix("o-").is_some_and(|rest| {
        (10..=32).contains(&rest.len())
            && rest
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
    });
    if !well_formed {
        return Err(format!(
            "{value:?} is not an organization id (\"o-\" then 10 to 32 lowercase letters or digits)"
        ));
    }
    Ok(())
}

/// `\w` in IAM's patterns means ASCII letters, digits and `_`.
fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// IAM role names: `[\w+=,.@-]{1,64}`.
fn role_name(value: &str) -> Result<(), Problem> {
    if !(1..=64).contains(&value.len()) {
        return Err(format!("is {} characters, must be 1 to 64", value.len()));
    }
    if !value
        .bytes()
        .all(|byte| is_word_byte(byte) || b"+=,.@-".contains(&byte))
    {
        return Err(format!(
            "{value:?} may contain only letters, digits and _+=,.@-"
        ));
    }
    Ok(())
}

/// STS external ids: `[\w+=,.@:/-]{2,1224}`. The value is not quoted back.
fn external_id(value: &str) -> Result<(), Problem> {
    if !(2..=1224).contains(&value.len()) {
        return Err(format!("is {} characters, must be 2 to 1224", value.len()));
    }
    if !value
        .bytes()
        .all(|byte| is_word_byte(byte) || b"+=,.@:/-".contains(&byte))
    {
        return Err("may contain only letters, digits and _+=,.@:/-".to_owned());
    }
    Ok(())
}

/// `http(s)://host[:port]`, nothing after. Not a full URL parser: it catches typos
/// and paths that would break path-style addressing.
fn endpoint_url(value: &str) -> Result<(), Problem> {
    let shape = || format!("{value:?} must look like http(s)://host[:port]");
    let authority = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(shape)?;
    if authority.ends_with('/') {
        return Err(format!("{value:?} must not end with '/'"));
    }
    if authority.is_empty()
        || authority
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '@'))
    {
        return Err(shape());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        // IPv6 literal: [::1] or [::1]:4566
        let (address, after) = bracketed.split_once(']').ok_or_else(shape)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(shape)?),
        };
        if address.is_empty()
            || !address
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(shape());
        }
        (address, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(shape());
        }
        (host, port)
    };
    debug_assert!(!host.is_empty());
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(number) if number > 0 && !port.starts_with('+') => {}
            _ => return Err(format!("{value:?} has an invalid port {port:?}")),
        }
    }
    Ok(())
}

/// A key ARN, a key id, or `alias/…`.
fn kms_key_id(value: &str) -> Result<(), Problem> {
    if value.is_empty() {
        return Err("must not be empty (a key ARN, a key id, or alias/NAME)".to_owned());
    }
    if value.chars().any(char::is_whitespace) {
        return Err(format!("{value:?} must not contain whitespace"));
    }
    if value.starts_with("arn:") {
        return arn_with_six_parts(
            value,
            "a KMS key ARN (arn:PARTITION:kms:REGION:ACCOUNT:key/ID)",
        );
    }
    if value == "alias/" {
        return Err("\"alias/\" needs an alias name after the slash".to_owned());
    }
    Ok(())
}

fn sns_topic_arn(value: &str) -> Result<(), Problem> {
    if !value.starts_with("arn:") {
        return Err(format!("{value:?} must be an ARN starting with \"arn:\""));
    }
    arn_with_six_parts(
        value,
        "an SNS topic ARN (arn:PARTITION:sns:REGION:ACCOUNT:TOPIC)",
    )
}

/// An EventBridge bus as `PutEvents` names it: a name (`[/.\-_A-Za-z0-9]`,
/// 1 to 256 characters) or the bus's ARN
/// (`arn:PARTITION:events:REGION:ACCOUNT:event-bus/NAME`).
pub fn event_bus(value: &str) -> Result<(), Problem> {
    const EXPECTED: &str =
        "an EventBridge bus name or ARN (arn:PARTITION:events:REGION:ACCOUNT:event-bus/NAME)";
    let name = if value.starts_with("arn:") {
        arn_with_six_parts(value, EXPECTED)?;
        let parts: Vec<&str> = value.split(':').collect();
        if parts[2] != "events" {
            return Err(format!("{value:?} is not {EXPECTED}"));
        }
        account_id(parts[4])?;
        match parts[5].strip_prefix("event-bus/") {
            Some(name) => name,
            None => return Err(format!("{value:?} is not {EXPECTED}")),
        }
    } else {
        value
    };
    let well_formed = (1..=256).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"/.-_".contains(&byte));
    if !well_formed {
        return Err(format!("{value:?} is not {EXPECTED}"));
    }
    Ok(())
}

fn arn_with_six_parts(value: &str, expected: &str) -> Result<(), Problem> {
    let parts: Vec<&str> = value.split(':').collect();
    // A KMS key ARN's resource never contains ':', nor does an SNS topic name.
    if parts.len() != 6 || parts.iter().any(|part| part.is_empty()) {
        return Err(format!("{value:?} is not {expected}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each checker against values that must pass and values that must fail.
    #[test]
    fn value_checks_accept_and_reject() {
        type Check = fn(&str) -> Result<(), Problem>;
        let cases: &[(&str, Check, &[&str], &[&str])] = &[
            (
                "account_id",
                account_id,
                &["000000000000", "123456789012"],
                &[
                    "",
                    "12345678901",
                    "1234567890123",
                    "12345678901a",
                    " 23456789012",
                    "１23456789012",
                ],
            ),
            (
                "bucket_name",
                bucket_name,
                &[
                    "abc",
                    "my-bucket.logs",
                    "0-0",
                    "aws-cloudtrail-logs-111111111111",
                ],
                &[
                    "ab", "Abc", "-abc", "abc-", ".abc", "abc.", "a_b", "a..b", "a b",
                ],
            ),
            (
                "key_prefix",
                key_prefix,
                &["", "a", "a/b", "AWSLogs/o-1"],
                &["/", "/a", "a/", "a//b"],
            ),
            (
                "region",
                region,
                &[
                    "us-east-1",
                    "us-gov-west-1",
                    "ap-northeast-1",
                    "eu-central-12",
                ],
                &[
                    "",
                    "us-east",
                    "useast-1",
                    "us--1",
                    "us-east-",
                    "US-EAST-1",
                    "u-east-1",
                    "use-east-1",
                    "us-east-1a",
                ],
            ),
            (
                "org_id",
                org_id,
                &["o-abc123def4", "o-0123456789"],
                &[
                    "o-abc123def",
                    "o-ABC123DEF4",
                    "abc123def4",
                    "o-abc_123def4",
                    "o-",
                ],
            ),
            (
                "role_name",
                role_name,
                &["r", "Trailvault_Reader+=,.@-"],
                &["", "a/b", "a:b", "a b"],
            ),
            (
                "external_id",
                external_id,
                &["ab", "x:y/z@w.v,u=t+s_r-q"],
                &["a", "a b", "a*b", "ünï"],
            ),
            (
                "endpoint_url",
                endpoint_url,
                &[
                    "http://127.0.0.1:4566",
                    "https://s3.example.com",
                    "http://localhost",
                    "http://[::1]:9000",
                    "http://minio_1:9000",
                ],
                &[
                    "127.0.0.1:4566",
                    "ftp://host",
                    "http://",
                    "http://host/",
                    "http://host/path",
                    "http://host:",
                    "http://host:0",
                    "http://host:65536",
                    "http://host:port",
                    "http://user@host",
                    "http://host?x",
                    "http://[::1",
                    "http://[::1]x",
                    "http://ho st",
                ],
            ),
            (
                "kms_key_id",
                kms_key_id,
                &[
                    "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab",
                    "1234abcd-12ab-34cd-56ef-1234567890ab",
                    "alias/trailvault",
                ],
                &["", "alias/", "arn:aws:kms:us-east-1", "key id"],
            ),
            (
                "sns_topic_arn",
                sns_topic_arn,
                &["arn:aws:sns:us-east-1:111111111111:trailvault-alerts"],
                &[
                    "",
                    "arn:aws:sns:...",
                    "sns:aws:sns:us-east-1:111111111111:t",
                    "arn:aws:sns:us-east-1:111111111111:t:extra",
                    "arn:aws:sns::111111111111:t",
                ],
            ),
            (
                "event_bus",
                event_bus,
                &[
                    "default",
                    "trailvault-findings",
                    "org/security.bus_1",
                    "arn:aws:events:us-east-1:111111111111:event-bus/default",
                    "arn:aws-us-gov:events:us-gov-west-1:111111111111:event-bus/sec",
                ],
                &[
                    "",
                    "bus name",
                    "bus:1",
                    &"b".repeat(257),
                    "arn:aws:events:us-east-1:111111111111:rule/x",
                    "arn:aws:sns:us-east-1:111111111111:event-bus/x",
                    "arn:aws:events:us-east-1:1111:event-bus/x",
                    "arn:aws:events:us-east-1:111111111111:event-bus/",
                    "arn:aws:events::111111111111:event-bus/x",
                ],
            ),
        ];
        for (name, check, good, bad) in cases {
            for value in *good {
                assert_eq!(check(value), Ok(()), "{name} should accept {value:?}");
            }
            for value in *bad {
                assert!(check(value).is_err(), "{name} should reject {value:?}");
            }
        }
    }

    #[test]
    fn external_id_length_bounds_and_no_echo() {
        assert_eq!(external_id(&"a".repeat(1224)), Ok(()));
        assert!(external_id(&"a".repeat(1225)).is_err());
        let problem = external_id("secret value").unwrap_err();
        assert!(!problem.contains("secret"), "{problem}");
    }

    #[test]
    fn role_name_length_bounds() {
        assert_eq!(role_name(&"a".repeat(64)), Ok(()));
        assert!(role_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn org_id_length_bounds() {
        assert_eq!(org_id(&format!("o-{}", "a".repeat(32))), Ok(()));
        assert!(org_id(&format!("o-{}", "a".repeat(33))).is_err());
    }

    #[test]
    fn bucket_name_length_bounds() {
        assert_eq!(bucket_name(&"a".repeat(63)), Ok(()));
        assert!(bucket_name(&"a".repeat(64)).is_err());
    }
}
