//! The error every seam returns, classified once so that callers can decide
//! whether to retry without knowing which service produced it.

/// An error crossing a seam. `infra` maps every SDK error into one of these in
/// one place; the variant says whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeamError {
    /// The caller is not allowed (AccessDenied, a refused AssumeRole, a
    /// KMS key policy). Permanent: retrying does not help.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The bucket or object does not exist. Permanent.
    #[error("not found: {0}")]
    NotFound(String),
    /// The service asked us to slow down (SlowDown, ThrottlingException,
    /// RequestLimitExceeded). Retryable with backoff.
    #[error("throttled: {0}")]
    Throttled(String),
    /// 5xx, timeouts, connection resets, dispatch failures. Retryable.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The request was refused for a reason that will not change by itself
    /// (validation errors, BadDigest, an invalid argument). Permanent.
    #[error("{0}")]
    Permanent(String),
    /// The run is shutting down; the operation was abandoned.
    #[error("cancelled")]
    Cancelled,
}

impl SeamError {
    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SeamError::Throttled(_) | SeamError::Transient(_))
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, SeamError::NotFound(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_and_transient_errors_are_retryable() {
        let cases = [
            (SeamError::AccessDenied("x".into()), false),
            (SeamError::NotFound("x".into()), false),
            (SeamError::Throttled("x".into()), true),
            (SeamError::Transient("x".into()), true),
            (SeamError::Permanent("x".into()), false),
            (SeamError::Cancelled, false),
        ];
        for (error, retryable) in cases {
            assert_eq!(error.is_retryable(), retryable, "{error}");
        }
    }
}
