//! The daemon's metrics (`trailvault run --metrics-addr ADDR`): counters fed
//! by each run's report and by the retry seam's observer, gauges read from
//! the progress store after each run, encoded by `prometheus-client` as
//! OpenMetrics text and served by [`server`].
//!
//! Every metric is named `trailvault_…`; `docs/commands.md` lists them.

mod intake;
pub mod server;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use trailvault_infra::retry::{AttemptOutcome, RetryObserver};
use trailvault_pipeline::jobs::status::StatusView;
use trailvault_pipeline::model::findings::{FindingKind, Severity};
use trailvault_pipeline::model::report::Report;

/// A label value, escaped for the text format (`prometheus-client` writes
/// label values as given, and a trail name comes from a key a member
/// account chose).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Text(String);

impl From<&str> for Text {
    fn from(value: &str) -> Text {
        Text(value.to_string())
    }
}

impl EncodeLabelValue for Text {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        for character in self.0.chars() {
            match character {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                other => encoder.write_char(other)?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: Text,
    outcome: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    kind: Text,
    severity: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    account: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChainLabels {
    chain: Text,
    account: Text,
    region: Text,
    trail: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    outcome: Text,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Times read from the store, turned into ages at each scrape.
#[derive(Default)]
struct Times {
    /// Account → newest archived file name time.
    newest_files: BTreeMap<String, DateTime<Utc>>,
    /// Chain → its labels and the end of its validated head.
    chain_heads: Vec<(ChainLabels, DateTime<Utc>)>,
}

/// Every metric of the daemon, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    objects_copied: Counter,
    bytes_copied: Counter,
    copy_failures: Counter,
    runs: Family<RunLabels, Counter>,
    run_duration: Histogram,
    last_run_duration: FloatGauge,
    last_success: FloatGauge,
    findings_open: Family<FindingLabels, Gauge>,
    account_newest_file: Family<AccountLabels, FloatGauge>,
    account_lag: Family<AccountLabels, FloatGauge>,
    chain_validation_lag: Family<ChainLabels, FloatGauge>,
    chain_head_age: Family<ChainLabels, FloatGauge>,
    requests: Family<RequestLabels, Counter>,
    retries: Family<OperationLabels, Counter>,
    intake: intake::IntakeMetrics,
    times: Mutex<Times>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("trailvault");
        let metrics = Metrics {
            registry: Registry::default(),
            objects_copied: Counter::default(),
            bytes_copied: Counter::default(),
            copy_failures: Counter::default(),
            runs: Family::default(),
            run_duration: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            last_run_duration: FloatGauge::default(),
            last_success: FloatGauge::default(),
            findings_open: Family::default(),
            account_newest_file: Family::default(),
            account_lag: Family::default(),
            chain_validation_lag: Family::default(),
            chain_head_age: Family::default(),
            requests: Family::default(),
            retries: Family::default(),
            intake: intake::IntakeMetrics::default(),
            times: Mutex::new(Times::default()),
        };
        registry.register(
            "objects_copied",
            "Trail files copied into the archive and verified",
            metrics.objects_copied.clone(),
        );
        registry.register_with_unit(
            "copied",
            "Bytes of trail files copied into the archive and verified",
            Unit::Bytes,
            metrics.bytes_copied.clone(),
        );
        registry.register(
            "copy_failures",
            "Copies that failed for good in a run (an operational error, or archive_copy_invalid)",
            metrics.copy_failures.clone(),
        );
        registry.register(
            "runs",
            "Scheduled runs finished, by outcome (clean, findings, errors)",
            metrics.runs.clone(),
        );
        registry.register_with_unit(
            "run_duration",
            "How long scheduled runs took",
            Unit::Seconds,
            metrics.run_duration.clone(),
        );
        registry.register_with_unit(
            "last_run_duration",
            "How long the last scheduled run took",
            Unit::Seconds,
            metrics.last_run_duration.clone(),
        );
        registry.register_with_unit(
            "last_success_timestamp",
            "When the last run without operational errors finished (Unix time; 0: none yet)",
            Unit::Seconds,
            metrics.last_success.clone(),
        );
        registry.register(
            "findings_open",
            "Recorded findings not acknowledged, by kind and severity",
            metrics.findings_open.clone(),
        );
        registry.register_with_unit(
            "account_newest_file_timestamp",
            "Time in the name of the newest archived trail file of each member account (Unix time)",
            Unit::Seconds,
            metrics.account_newest_file.clone(),
        );
        registry.register_with_unit(
            "account_lag",
            "Age of the newest archived trail file of each member account, at the scrape",
            Unit::Seconds,
            metrics.account_lag.clone(),
        );
        registry.register_with_unit(
            "chain_validation_lag",
            "Archived history of each digest chain not validated yet, at its last validation",
            Unit::Seconds,
            metrics.chain_validation_lag.clone(),
        );
        registry.register_with_unit(
            "chain_head_age",
            "Age of the newest validated digest of each chain, at the scrape",
            Unit::Seconds,
            metrics.chain_head_age.clone(),
        );
        registry.register(
            "s3_requests",
            "Request attempts by operation (S3 operation names; other: STS, KMS, SNS, ...) and outcome (ok, retried, failed)",
            metrics.requests.clone(),
        );
        registry.register(
            "retries",
            "Request attempts that failed transiently and were tried again, by operation",
            metrics.retries.clone(),
        );
        metrics.intake.register(&mut registry);
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Counts one finished run: what it copied, its failures, its outcome
    /// and duration.
    pub fn record_run(&self, report: &Report) {
        self.objects_copied.inc_by(report.stats.objects_copied);
        self.bytes_copied.inc_by(report.stats.bytes_copied);
        let failed_copies = report
            .errors
            .iter()
            .filter(|error| {
                error.operation.starts_with("copy ") || error.operation.starts_with("adopt ")
            })
            .count() as u64;
        let invalid_copies = report
            .findings
            .iter()
            .filter(|finding| finding.kind == FindingKind::ArchiveCopyInvalid)
            .count() as u64;
        self.copy_failures.inc_by(failed_copies + invalid_copies);
        let code = report.exit_code();
        let outcome = match code {
            0 => "clean",
            3 => "findings",
            _ => "errors",
        };
        self.runs
            .get_or_create(&RunLabels {
                outcome: outcome.into(),
            })
            .inc();
        let seconds = (report.finished_at - report.started_at)
            .num_milliseconds()
            .max(0) as f64
            / 1000.0;
        self.run_duration.observe(seconds);
        self.last_run_duration.set(seconds);
        if outcome != "errors" {
            self.last_success
                .set(report.finished_at.timestamp_millis() as f64 / 1000.0);
        }
    }

    /// Counts one batch of intake messages, and the copies it made.
    pub fn record_intake(&self, batch: &trailvault_pipeline::jobs::intake::IntakeBatch) {
        self.intake.record(batch);
        self.objects_copied
            .inc_by(batch.report.stats.objects_copied);
        self.bytes_copied.inc_by(batch.report.stats.bytes_copied);
    }

    /// Reads the gauges from the store's status: open findings, lags and
    /// chain heads. Ages are worked out at each scrape.
    pub fn record_status(&self, view: &StatusView) {
        self.findings_open.clear();
        // Every kind is shown, 0 when none is open, so alerts on a kind
        // work before its first finding.
        for kind in FindingKind::ALL {
            let open = view
                .findings
                .by_kind
                .get(kind.as_str())
                .copied()
                .unwrap_or(0);
            self.findings_open
                .get_or_create(&FindingLabels {
                    kind: kind.as_str().into(),
                    severity: severity(kind.severity()).into(),
                })
                .set(i64::try_from(open).unwrap_or(i64::MAX));
        }
        self.chain_validation_lag.clear();
        let mut times = Times::default();
        for account in &view.accounts {
            if let Some(time) = account.newest_file_time {
                times.newest_files.insert(account.account_id.clone(), time);
            }
        }
        for chain in &view.chains {
            let labels = ChainLabels {
                chain: chain.chain_id.as_str().into(),
                account: chain.account_id.as_deref().unwrap_or("").into(),
                region: chain.region.as_deref().unwrap_or("").into(),
                trail: chain.trail.as_deref().unwrap_or("").into(),
            };
            if let Some(lag) = chain.validation_lag_seconds {
                self.chain_validation_lag
                    .get_or_create(&labels)
                    .set(lag as f64);
            }
            if let Some(end) = chain.head_end {
                times.chain_heads.push((labels, end));
            }
        }
        *self.times.lock().unwrap_or_else(|p| p.into_inner()) = times;
    }

    /// The OpenMetrics text of every metric, ages worked out against `now`.
    pub fn encode(&self, now: DateTime<Utc>) -> Result<String, std::fmt::Error> {
        {
            let times = self.times.lock().unwrap_or_else(|p| p.into_inner());
            self.account_newest_file.clear();
            self.account_lag.clear();
            for (account, time) in &times.newest_files {
                let labels = AccountLabels {
                    account: account.as_str().into(),
                };
                self.account_newest_file
                    .get_or_create(&labels)
                    .set(time.timestamp() as f64);
                self.account_lag
                    .get_or_create(&labels)
                    .set((now - *time).num_seconds() as f64);
            }
            self.chain_head_age.clear();
            for (labels, end) in &times.chain_heads {
                self.chain_head_age
                    .get_or_create(labels)
                    .set((now - *end).num_seconds() as f64);
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
    }
}

impl RetryObserver for Metrics {
    fn attempt(&self, operation: &'static str, outcome: AttemptOutcome) {
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.into(),
                outcome: outcome.as_str().into(),
            })
            .inc();
        if outcome == AttemptOutcome::Retried {
            self.retries
                .get_or_create(&OperationLabels {
                    operation: operation.into(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailvault_pipeline::jobs::status::{AccountLag, ChainHead, FindingsSummary};
    use trailvault_pipeline::model::findings::Finding;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    /// The value of the sample whose line starts with `series` (name and labels).
    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn runs_move_the_counters_and_the_last_success() {
        let metrics = Metrics::new();
        let mut report = Report::new("collect");
        report.started_at = at("2026-01-01T00:00:00Z");
        report.finished_at = at("2026-01-01T00:00:02.5Z");
        report.stats.objects_copied = 7;
        report.stats.bytes_copied = 7000;
        report.error("111111111111", "copy s3://b/k", "reset");
        report.error("111111111111", "read_store", "broken");
        metrics.record_run(&report);
        let text = metrics.encode(Utc::now()).unwrap();
        assert_eq!(sample(&text, "trailvault_objects_copied_total"), 7.0);
        assert_eq!(sample(&text, "trailvault_copied_bytes_total"), 7000.0);
        assert_eq!(sample(&text, "trailvault_copy_failures_total"), 1.0);
        assert_eq!(
            sample(&text, "trailvault_runs_total{outcome=\"errors\"}"),
            1.0
        );
        assert_eq!(sample(&text, "trailvault_last_run_duration_seconds"), 2.5);
        assert_eq!(
            sample(&text, "trailvault_last_success_timestamp_seconds"),
            0.0,
            "a run with operational errors is no success"
        );
        assert!(text.ends_with("# EOF\n"), "OpenMetrics text: {text}");

        let mut clean = Report::new("collect");
        clean.started_at = at("2026-01-01T01:00:00Z");
        clean.finished_at = at("2026-01-01T01:00:01Z");
        clean.stats.objects_copied = 3;
        clean.add_findings([Finding::new(
            FindingKind::ArchiveCopyInvalid,
            "111111111111",
            "b",
            "k2",
            "bad copy".into(),
        )]);
        metrics.record_run(&clean);
        let text = metrics.encode(Utc::now()).unwrap();
        assert_eq!(sample(&text, "trailvault_objects_copied_total"), 10.0);
        assert_eq!(sample(&text, "trailvault_copy_failures_total"), 2.0);
        assert_eq!(
            sample(&text, "trailvault_runs_total{outcome=\"findings\"}"),
            1.0
        );
        assert_eq!(
            sample(&text, "trailvault_last_success_timestamp_seconds"),
            at("2026-01-01T01:00:01Z").timestamp() as f64
        );
        assert_eq!(sample(&text, "trailvault_run_duration_seconds_count"), 2.0);
    }

    #[test]
    fn retry_attempts_count_requests_and_retries() {
        let metrics = Metrics::new();
        metrics.attempt("PutObject", AttemptOutcome::Retried);
        metrics.attempt("PutObject", AttemptOutcome::Ok);
        metrics.attempt("GetObject", AttemptOutcome::Failed);
        let text = metrics.encode(Utc::now()).unwrap();
        assert_eq!(
            sample(
                &text,
                "trailvault_s3_requests_total{operation=\"PutObject\",outcome=\"ok\"}"
            ),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                "trailvault_s3_requests_total{operation=\"PutObject\",outcome=\"retried\"}"
            ),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                "trailvault_s3_requests_total{operation=\"GetObject\",outcome=\"failed\"}"
            ),
            1.0
        );
        assert_eq!(
            sample(&text, "trailvault_retries_total{operation=\"PutObject\"}"),
            1.0
        );
        assert!(!text.contains("trailvault_retries_total{operation=\"GetObject\"}"));
    }

    fn view(now: DateTime<Utc>, by_kind: &[(&str, u64)], trail: &str) -> StatusView {
        StatusView {
            v: 1,
            generated_at: now,
            source: "store".into(),
            runs: Vec::new(),
            accounts: vec![
                AccountLag {
                    account_id: "222222222201".into(),
                    newest_file_time: Some(at("2026-01-01T02:00:00Z")),
                    lag_seconds: None,
                },
                AccountLag {
                    account_id: "222222222202".into(),
                    newest_file_time: None,
                    lag_seconds: None,
                },
            ],
            chains: vec![ChainHead {
                chain_id: "c1".into(),
                account_id: Some("222222222201".into()),
                region: Some("us-east-1".into()),
                trail: Some(trail.into()),
                backfill: false,
                head_end: Some(at("2026-01-01T01:00:00Z")),
                head_key: None,
                head_valid: Some(true),
                age_seconds: None,
                newest_archived_end: None,
                validation_lag_seconds: Some(7200),
                unvalidated_since: None,
            }],
            findings: FindingsSummary {
                by_kind: by_kind
                    .iter()
                    .map(|(kind, count)| (kind.to_string(), *count))
                    .collect(),
                ..FindingsSummary::default()
            },
        }
    }

    #[test]
    fn the_status_gives_findings_lags_and_chain_figures() {
        let metrics = Metrics::new();
        let now = at("2026-01-01T03:00:00Z");
        metrics.record_status(&view(
            now,
            &[("digest_missing", 2), ("chain_gap", 1)],
            "Org",
        ));
        let text = metrics.encode(now).unwrap();
        assert_eq!(
            sample(
                &text,
                "trailvault_findings_open{kind=\"digest_missing\",severity=\"critical\"}"
            ),
            2.0
        );
        assert_eq!(
            sample(
                &text,
                "trailvault_findings_open{kind=\"chain_gap\",severity=\"warning\"}"
            ),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                "trailvault_findings_open{kind=\"log_file_missing\",severity=\"critical\"}"
            ),
            0.0,
            "every kind is shown"
        );
        assert_eq!(
            sample(
                &text,
                "trailvault_account_lag_seconds{account=\"222222222201\"}"
            ),
            3600.0
        );
        assert!(!text.contains("222222222202"), "nothing archived: no lag");
        let chain = "{chain=\"c1\",account=\"222222222201\",region=\"us-east-1\",trail=\"Org\"}";
        assert_eq!(
            sample(
                &text,
                &format!("trailvault_chain_validation_lag_seconds{chain}")
            ),
            7200.0
        );
        // Ages move with the scrape time.
        let later = metrics.encode(now + chrono::Duration::hours(1)).unwrap();
        assert_eq!(
            sample(&later, &format!("trailvault_chain_head_age_seconds{chain}")),
            3.0 * 3600.0
        );
        // A finding acknowledged since goes back to 0.
        metrics.record_status(&view(now, &[("chain_gap", 1)], "Org"));
        let text = metrics.encode(now).unwrap();
        assert_eq!(
            sample(
                &text,
                "trailvault_findings_open{kind=\"digest_missing\",severity=\"critical\"}"
            ),
            0.0
        );
    }

    #[test]
    fn label_values_from_keys_cannot_break_the_text() {
        let metrics = Metrics::new();
        let now = at("2026-01-01T03:00:00Z");
        metrics.record_status(&view(now, &[], "evil\"} 1\ninjected 2\\"));
        let text = metrics.encode(now).unwrap();
        assert!(
            text.contains("trail=\"evil\\\"} 1\\ninjected 2\\\\\"}"),
            "{text}"
        );
        assert!(!text.lines().any(|line| line.starts_with("injected")));
    }
}
