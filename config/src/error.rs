//! The one error type this crate returns.

use std::path::PathBuf;

/// Why a configuration could not be loaded.
///
/// None of these are retryable: a config file does not fix itself. Messages never
/// contain secret values (credentials, external ids).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not match the schema (unknown field, wrong
    /// type, missing required field). `message` is toml's own message, which names the
    /// field and the line.
    #[error("cannot parse config: {message}")]
    Parse { message: String },
    /// The TOML matched the schema but a value breaks a rule.
    #[error("invalid config field `{field}`: {problem}")]
    Invalid {
        /// Dotted path of the offending value, e.g. `sources[1].org_id`.
        field: String,
        problem: String,
    },
}

impl ConfigError {
    /// Always `false`: every config error needs a human to edit the file.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// The dotted field path for [`ConfigError::Invalid`], `None` otherwise.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            ConfigError::Io { .. } | ConfigError::Parse { .. } => None,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}
