//! How times read in findings, reports, logs and the human output: RFC 3339 in
//! UTC with whole seconds, `2026-01-31T09:05:00Z` (S3 and CloudTrail keep
//! seconds; sub-second digits would only make equal times look different).

use chrono::{DateTime, Utc};

/// `time` as `2026-01-31T09:05:00Z`.
pub fn utc_text(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// [`utc_text`] of `time`, or `none` when there is no time.
pub fn utc_text_or(time: Option<DateTime<Utc>>, none: &str) -> String {
    time.map_or_else(|| none.to_string(), utc_text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_read_in_whole_utc_seconds() {
        let time = Utc.with_ymd_and_hms(2026, 1, 31, 9, 5, 0).single().unwrap()
            + chrono::Duration::milliseconds(999);
        assert_eq!(utc_text(time), "2026-01-31T09:05:00Z");
        assert_eq!(utc_text_or(Some(time), "-"), "2026-01-31T09:05:00Z");
        assert_eq!(utc_text_or(None, "never"), "never");
    }
}
