//! `[intake]`: event-driven intake from an SQS queue (the daemon, `run`).

use serde::Deserialize;

use crate::error::ConfigError;

/// `[intake]`: the queue `trailvault run` consumes between its sweeps. Off
/// (the daemon polls every `--interval`) while `queue_url` is absent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeSettings {
    /// The SQS queue CloudTrail's SNS notifications (or S3 event
    /// notifications, or EventBridge) are delivered to.
    #[serde(default)]
    pub queue_url: Option<String>,
    /// Where refused messages are sent (SendMessage, then deleted from the
    /// queue); required with `queue_url`. The queue's redrive policy should
    /// name the same queue, for messages whose copy keeps failing.
    #[serde(default)]
    pub dead_letter_queue_url: Option<String>,
    /// Most objects one message may name; a message naming more is refused.
    #[serde(default = "default_max_keys_per_message")]
    pub max_keys_per_message: u32,
    /// How often the partition listing runs as the reconciliation sweep
    /// while intake is on (it replaces `--interval`).
    #[serde(default = "default_sweep_interval_seconds")]
    pub sweep_interval_seconds: u64,
    /// How long a received message stays invisible; extended every half of
    /// it while its objects are copied.
    #[serde(default = "default_visibility_timeout_seconds")]
    pub visibility_timeout_seconds: u32,
    /// Long-poll wait of one ReceiveMessage.
    #[serde(default = "default_wait_seconds")]
    pub wait_seconds: u32,
}

pub(crate) fn default_max_keys_per_message() -> u32 {
    100
}
pub(crate) fn default_sweep_interval_seconds() -> u64 {
    3_600
}
pub(crate) fn default_visibility_timeout_seconds() -> u32 {
    300
}
pub(crate) fn default_wait_seconds() -> u32 {
    20
}

impl Default for IntakeSettings {
    fn default() -> Self {
        IntakeSettings {
            queue_url: None,
            dead_letter_queue_url: None,
            max_keys_per_message: default_max_keys_per_message(),
            sweep_interval_seconds: default_sweep_interval_seconds(),
            visibility_timeout_seconds: default_visibility_timeout_seconds(),
            wait_seconds: default_wait_seconds(),
        }
    }
}

impl IntakeSettings {
    /// Whether the daemon consumes a queue.
    pub fn enabled(&self) -> bool {
        self.queue_url.is_some()
    }
}

fn queue_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` is not an http(s) SQS queue URL"))?;
    let mut parts = rest.split('/');
    let host = parts.next().unwrap_or_default();
    let account = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_default();
    let valid_name = !name.is_empty()
        && name.len() <= 80
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if host.is_empty()
        || account.len() != 12
        || !account.chars().all(|c| c.is_ascii_digit())
        || !valid_name
        || parts.next().is_some()
    {
        return Err(format!(
            "`{url}` is not a queue URL like https://sqs.us-east-1.amazonaws.com/111111111111/trailvault-intake"
        ));
    }
    Ok(())
}

pub(crate) fn validate_intake(intake: &IntakeSettings) -> Result<(), ConfigError> {
    let at = |field: &str, check: Result<(), String>| {
        check.map_err(|problem| ConfigError::invalid(format!("intake.{field}"), problem))
    };
    let range = |value: u64, min: u64, max: u64| {
        if value < min || value > max {
            Err(format!("is {value}, must be between {min} and {max}"))
        } else {
            Ok(())
        }
    };
    if let Some(url) = &intake.queue_url {
        at("queue_url", queue_url(url))?;
        match &intake.dead_letter_queue_url {
            Some(dead) => {
                at("dead_letter_queue_url", queue_url(dead))?;
                if dead == url {
                    return Err(ConfigError::invalid(
                        "intake.dead_letter_queue_url",
                        "must not be the queue itself",
                    ));
                }
            }
            None => {
                return Err(ConfigError::invalid(
                    "intake.dead_letter_queue_url",
                    "is required with intake.queue_url (refused messages are sent there)",
                ))
            }
        }
    } else if intake.dead_letter_queue_url.is_some() {
        return Err(ConfigError::invalid(
            "intake.dead_letter_queue_url",
            "needs intake.queue_url",
        ));
    }
    at(
        "max_keys_per_message",
        range(intake.max_keys_per_message.into(), 1, 1_000),
    )?;
    at(
        "sweep_interval_seconds",
        range(intake.sweep_interval_seconds, 10, 7 * 86_400),
    )?;
    at(
        "visibility_timeout_seconds",
        range(intake.visibility_timeout_seconds.into(), 10, 43_200),
    )?;
    at("wait_seconds", range(intake.wait_seconds.into(), 1, 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<IntakeSettings, ConfigError> {
        let settings: IntakeSettings =
            toml::from_str(text).map_err(|error| ConfigError::Parse {
                message: error.to_string(),
            })?;
        validate_intake(&settings)?;
        Ok(settings)
    }

    const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/111111111111/trailvault-intake";
    const DEAD: &str = "https://sqs.us-east-1.amazonaws.com/111111111111/trailvault-intake-dlq";

    #[test]
    fn a_full_section_parses() {
        let settings = parse(&format!(
            "queue_url = \"{QUEUE}\"\ndead_letter_queue_url = \"{DEAD}\"\nmax_keys_per_message = 50\nsweep_interval_seconds = 1800\nvisibility_timeout_seconds = 120\nwait_seconds = 10\n"
        ))
        .unwrap();
        assert_eq!(
            settings,
            IntakeSettings {
                queue_url: Some(QUEUE.into()),
                dead_letter_queue_url: Some(DEAD.into()),
                max_keys_per_message: 50,
                sweep_interval_seconds: 1800,
                visibility_timeout_seconds: 120,
                wait_seconds: 10,
            }
        );
        assert!(settings.enabled());
        let off = parse("").unwrap();
        assert_eq!(off, IntakeSettings::default());
        assert!(!off.enabled());
    }

    #[test]
    fn bad_values_name_their_field() {
        let with = |extra: &str| {
            format!("queue_url = \"{QUEUE}\"\ndead_letter_queue_url = \"{DEAD}\"\n{extra}")
        };
        let cases = [
            (
                format!("queue_url = \"{QUEUE}\"\n"),
                "intake.dead_letter_queue_url",
            ),
            (
                format!("dead_letter_queue_url = \"{DEAD}\"\n"),
                "intake.dead_letter_queue_url",
            ),
            (
                format!("queue_url = \"{QUEUE}\"\ndead_letter_queue_url = \"{QUEUE}\"\n"),
                "intake.dead_letter_queue_url",
            ),
            (
                "queue_url = \"arn:aws:sqs:us-east-1:1:q\"\ndead_letter_queue_url = \"x\"\n".into(),
                "intake.queue_url",
            ),
            (
                format!("queue_url = \"https://sqs/12/q\"\ndead_letter_queue_url = \"{DEAD}\"\n"),
                "intake.queue_url",
            ),
            (
                with("max_keys_per_message = 0"),
                "intake.max_keys_per_message",
            ),
            (
                with("max_keys_per_message = 1001"),
                "intake.max_keys_per_message",
            ),
            (
                with("sweep_interval_seconds = 5"),
                "intake.sweep_interval_seconds",
            ),
            (
                with("visibility_timeout_seconds = 1"),
                "intake.visibility_timeout_seconds",
            ),
            (with("wait_seconds = 21"), "intake.wait_seconds"),
        ];
        for (text, field) in cases {
            match parse(&text) {
                Err(ConfigError::Invalid { field: named, .. }) => {
                    assert_eq!(named, field, "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(parse("bogus = 1"), Err(ConfigError::Parse { .. })));
    }
}
