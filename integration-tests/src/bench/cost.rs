//! The cost model (issue 14, item 5): request counts measured through the
//! counting proxy on a small simulated organization, turned into per-partition
//! and per-object figures, and extrapolated to a large organization over a day:
//! polling every few minutes vs event-driven intake with an hourly sweep.
//!
//! Inputs are `bench/measure.py` step records (`proxy_requests` by S3
//! operation, `stdout_json` = trailvault's `--json` report):
//! - a steady-state run that found nothing new: LISTs per open partition and
//!   the fixed requests of a run (archive checks, KMS);
//! - a run that copied new files: the requests per copied object (that run's
//!   counts minus the steady-state run's).
//!
//! The event-driven side uses the same per-object figures (a notified object
//! is read, copied and verified exactly as a listed one) and no LIST per
//! notification. Its SQS figures are assumptions until the intake is measured:
//! [`IntakeMeasurement`] (`--intake FILE`) replaces them with measured counts.
//!
//! Part of the `trailbench` binary (included with `#[path]`).

use std::collections::BTreeMap;

use anyhow::{anyhow, Context as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// When the prices below were taken, and from where.
pub const PRICES_AS_OF: &str = "AWS list prices for us-east-1 as published in 2024 (S3 Standard requests, SQS standard queue, SNS); unchanged since 2023 at the time of writing, not re-checked from this offline machine";
/// S3 Standard, us-east-1: PUT, COPY, POST, LIST, per 1,000 requests (USD).
pub const S3_PUT_LIST_PER_1000: f64 = 0.005;
/// S3 Standard, us-east-1: GET, HEAD and all other requests, per 1,000 (USD).
pub const S3_GET_PER_1000: f64 = 0.0004;
/// SQS standard queue, per million requests (USD; beyond the free tier).
pub const SQS_PER_MILLION: f64 = 0.40;
/// SNS publishes (CloudTrail's, billed to the trail owner), per million (USD).
/// SNS deliveries to SQS are free.
pub const SNS_PUBLISH_PER_MILLION: f64 = 0.50;

/// Requests of one measured run, by S3 operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub requests: BTreeMap<String, u64>,
    pub partitions_listed: u64,
    pub objects_copied: u64,
}

impl Measured {
    /// From a `measure.py` step record.
    pub fn from_step(step: &Value) -> anyhow::Result<Measured> {
        let requests = step
            .get("proxy_requests")
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow!("the step has no proxy_requests (was it run with --proxy?)"))?
            .iter()
            .map(|(op, n)| {
                Ok((
                    op.clone(),
                    n.as_u64().ok_or_else(|| anyhow!("{op}: not a count"))?,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        let stats = step
            .pointer("/stdout_json/stats")
            .ok_or_else(|| anyhow!("the step has no trailvault --json report"))?;
        let count = |name: &str| {
            stats
                .get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| anyhow!("the report has no stats.{name}"))
        };
        Ok(Measured {
            requests,
            partitions_listed: count("partitions_listed")?,
            objects_copied: count("objects_copied")?,
        })
    }

    fn get(&self, op: &str) -> u64 {
        self.requests.get(op).copied().unwrap_or(0)
    }

    fn lists(&self) -> u64 {
        self.get("ListObjectsV2") + self.get("ListObjects")
    }
}

/// The per-partition and per-object figures derived from two measured runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Derived {
    /// LISTs per open partition in a steady-state run.
    pub lists_per_partition: f64,
    /// Requests of a run that do not depend on partitions or objects
    /// (archive checks, KMS), by operation.
    pub fixed_per_run: BTreeMap<String, u64>,
    /// Requests per copied object, by operation (LISTs excluded).
    pub per_object: BTreeMap<String, f64>,
}

pub fn derive(steady: &Measured, with_new: &Measured) -> anyhow::Result<Derived> {
    if steady.partitions_listed == 0 {
        return Err(anyhow!("the steady-state run listed no partition"));
    }
    if steady.objects_copied != 0 {
        return Err(anyhow!(
            "the steady-state run copied {} objects; it must find nothing new",
            steady.objects_copied
        ));
    }
    if with_new.objects_copied == 0 {
        return Err(anyhow!("the run with new files copied nothing"));
    }
    let is_list = |op: &str| op == "ListObjectsV2" || op == "ListObjects";
    let fixed_per_run = steady
        .requests
        .iter()
        .filter(|(op, _)| !is_list(op))
        .map(|(op, n)| (op.clone(), *n))
        .collect();
    let per_object = with_new
        .requests
        .iter()
        .filter(|(op, _)| !is_list(op))
        .filter_map(|(op, n)| {
            let extra = n.saturating_sub(steady.get(op));
            (extra > 0).then(|| (op.clone(), extra as f64 / with_new.objects_copied as f64))
        })
        .collect();
    Ok(Derived {
        lists_per_partition: steady.lists() as f64 / steady.partitions_listed as f64,
        fixed_per_run,
        per_object,
    })
}

/// The organization and schedule the model is extrapolated to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub accounts: u64,
    pub regions: u64,
    /// Folders listed per account and Region: CloudTrail and CloudTrail-Digest.
    pub folders: u64,
    /// Open partitions per folder: today and `lookback_days` (default 3).
    pub open_days: u64,
    /// `[collect] redelivery_sweep_days` (default 30): closed partitions listed once a day.
    pub redelivery_sweep_days: u64,
    /// Log files CloudTrail delivers per account, Region and hour (from the data set).
    pub logs_per_hour: f64,
    /// Polling: minutes between runs.
    pub poll_minutes: u64,
    /// Event-driven: minutes between reconciliation sweeps.
    pub sweep_minutes: u64,
}

impl Default for Organization {
    fn default() -> Self {
        Organization {
            accounts: 1000,
            regions: 17,
            folders: 2,
            open_days: 4,
            redelivery_sweep_days: 30,
            logs_per_hour: 12.0,
            poll_minutes: 5,
            sweep_minutes: 60,
        }
    }
}

impl Organization {
    pub fn open_partitions(&self) -> u64 {
        self.accounts * self.regions * self.folders * self.open_days
    }

    /// Closed partitions of the redelivery window, listed once a day.
    pub fn redelivery_partitions(&self) -> u64 {
        self.accounts
            * self.regions
            * self.folders
            * self.redelivery_sweep_days.saturating_sub(self.open_days)
    }

    /// Trail files a day: logs, plus one digest an hour per account and Region.
    pub fn objects_per_day(&self) -> f64 {
        (self.accounts * self.regions) as f64 * 24.0 * (self.logs_per_hour + 1.0)
    }

    /// CloudTrail's notifications a day: one per delivered file (log or digest).
    pub fn notifications_per_day(&self) -> f64 {
        self.objects_per_day()
    }
}

/// Measured intake counts (the hook for the event-driven intake): what one
/// measured intake run cost, by operation, for how many notifications and
/// objects. S3 operations and SQS actions (`ReceiveMessage`, `DeleteMessage`,
/// `DeleteMessageBatch`, `ChangeMessageVisibility`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntakeMeasurement {
    pub notifications: u64,
    pub objects: u64,
    pub requests: BTreeMap<String, u64>,
    /// Empty long-poll receives a day per consumer (20 s waits: 4,320).
    #[serde(default = "default_idle_receives")]
    pub idle_receives_per_day: f64,
}

fn default_idle_receives() -> f64 {
    4320.0
}

/// SQS requests per notification, and whether they were measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqsModel {
    pub receives_per_notification: f64,
    pub deletes_per_notification: f64,
    pub visibility_changes_per_notification: f64,
    /// S3 LISTs per notification (the target: 0).
    pub lists_per_notification: f64,
    pub idle_receives_per_day: f64,
    pub measured: bool,
}

impl SqsModel {
    /// Without a measurement: one receive and one delete per notification
    /// (no batching, the worst case), no LIST, one consumer long-polling.
    pub fn assumed() -> SqsModel {
        SqsModel {
            receives_per_notification: 1.0,
            deletes_per_notification: 1.0,
            visibility_changes_per_notification: 0.0,
            lists_per_notification: 0.0,
            idle_receives_per_day: default_idle_receives(),
            measured: false,
        }
    }

    pub fn from_measurement(intake: &IntakeMeasurement) -> anyhow::Result<SqsModel> {
        if intake.notifications == 0 {
            return Err(anyhow!("the intake measurement has no notifications"));
        }
        let n = intake.notifications as f64;
        let sum = |ops: &[&str]| -> f64 {
            ops.iter()
                .map(|op| intake.requests.get(*op).copied().unwrap_or(0))
                .sum::<u64>() as f64
        };
        Ok(SqsModel {
            receives_per_notification: sum(&["ReceiveMessage"]) / n,
            deletes_per_notification: sum(&["DeleteMessage", "DeleteMessageBatch"]) / n,
            visibility_changes_per_notification: sum(&[
                "ChangeMessageVisibility",
                "ChangeMessageVisibilityBatch",
            ]) / n,
            lists_per_notification: sum(&["ListObjectsV2", "ListObjects"]) / n,
            idle_receives_per_day: intake.idle_receives_per_day,
            measured: true,
        })
    }
}

/// One mode's requests and cost over a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Day {
    pub runs: f64,
    pub lists: f64,
    pub lists_per_hour: f64,
    pub gets: f64,
    pub puts: f64,
    pub heads: f64,
    /// Other S3 requests (archive checks), billed like GET.
    pub other_s3: f64,
    pub sqs: f64,
    pub sns_publishes: f64,
    pub s3_usd: f64,
    pub sqs_usd: f64,
    pub sns_usd: f64,
}

impl Day {
    pub fn total_usd(&self) -> f64 {
        self.s3_usd + self.sqs_usd + self.sns_usd
    }
}

fn per_object(derived: &Derived, op: &str) -> f64 {
    derived.per_object.get(op).copied().unwrap_or(0.0)
}

fn s3_usd(lists: f64, puts: f64, gets: f64, heads: f64, other: f64) -> f64 {
    (lists + puts) / 1000.0 * S3_PUT_LIST_PER_1000
        + (gets + heads + other) / 1000.0 * S3_GET_PER_1000
}

/// Every copied object's requests, split by kind.
fn object_requests(derived: &Derived, objects: f64) -> (f64, f64, f64, f64) {
    let gets = per_object(derived, "GetObject") * objects;
    let puts = (per_object(derived, "PutObject")
        + per_object(derived, "CreateMultipartUpload")
        + per_object(derived, "UploadPart")
        + per_object(derived, "CompleteMultipartUpload"))
        * objects;
    let heads = per_object(derived, "HeadObject") * objects;
    let known = [
        "GetObject",
        "PutObject",
        "HeadObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
    ];
    let other = derived
        .per_object
        .iter()
        .filter(|(op, _)| !known.contains(&op.as_str()) && !op.starts_with("POST "))
        .map(|(_, n)| n * objects)
        .sum();
    (gets, puts, heads, other)
}

fn fixed_s3(derived: &Derived) -> f64 {
    derived
        .fixed_per_run
        .iter()
        .filter(|(op, _)| !op.starts_with("POST "))
        .map(|(_, n)| *n as f64)
        .sum()
}

/// Polling: a full run (every open partition listed) every `poll_minutes`.
pub fn polling(org: &Organization, derived: &Derived) -> Day {
    let runs = 24.0 * 60.0 / org.poll_minutes as f64;
    let lists = runs * org.open_partitions() as f64 * derived.lists_per_partition
        + org.redelivery_partitions() as f64 * derived.lists_per_partition;
    let (gets, puts, heads, other) = object_requests(derived, org.objects_per_day());
    let other_s3 = other + runs * fixed_s3(derived);
    Day {
        runs,
        lists,
        lists_per_hour: lists / 24.0,
        gets,
        puts,
        heads,
        other_s3,
        sqs: 0.0,
        sns_publishes: 0.0,
        s3_usd: s3_usd(lists, puts, gets, heads, other_s3),
        sqs_usd: 0.0,
        sns_usd: 0.0,
    }
}

/// Event-driven: each notified object copied on its notification (same
/// per-object requests, LISTs per notification from `sqs`), a sweep every
/// `sweep_minutes`, the daily redelivery sweep as in polling.
pub fn event_driven(org: &Organization, derived: &Derived, sqs: &SqsModel) -> Day {
    let sweeps = 24.0 * 60.0 / org.sweep_minutes as f64;
    let notifications = org.notifications_per_day();
    let lists = sweeps * org.open_partitions() as f64 * derived.lists_per_partition
        + org.redelivery_partitions() as f64 * derived.lists_per_partition
        + notifications * sqs.lists_per_notification;
    let (gets, puts, heads, other) = object_requests(derived, org.objects_per_day());
    let other_s3 = other + sweeps * fixed_s3(derived);
    let sqs_requests = notifications
        * (sqs.receives_per_notification
            + sqs.deletes_per_notification
            + sqs.visibility_changes_per_notification)
        + sqs.idle_receives_per_day;
    Day {
        runs: sweeps,
        lists,
        lists_per_hour: lists / 24.0,
        gets,
        puts,
        heads,
        other_s3,
        sqs: sqs_requests,
        sns_publishes: notifications,
        s3_usd: s3_usd(lists, puts, gets, heads, other_s3),
        sqs_usd: sqs_requests / 1e6 * SQS_PER_MILLION,
        sns_usd: notifications / 1e6 * SNS_PUBLISH_PER_MILLION,
    }
}

/// The verdict on the target: at most one LIST per open partition
/// per sweep interval, and no LIST per notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub sweep_lists: &'static str,
    pub notification_lists: &'static str,
}

pub fn verdict(derived: &Derived, sqs: &SqsModel) -> Verdict {
    Verdict {
        sweep_lists: if derived.lists_per_partition <= 1.0 {
            "PASS"
        } else {
            "FAIL"
        },
        notification_lists: match (sqs.measured, sqs.lists_per_notification == 0.0) {
            (false, _) => "NOT MEASURED",
            (true, true) => "PASS",
            (true, false) => "FAIL",
        },
    }
}

/// Everything the step prints and writes.
#[derive(Debug, Clone, Serialize)]
pub struct CostModel {
    pub measured_steady: Measured,
    pub measured_new: Measured,
    pub derived: Derived,
    pub organization: Organization,
    pub sqs: SqsModel,
    pub polling: Day,
    pub event_driven: Day,
    pub verdict: Verdict,
    pub prices_as_of: &'static str,
}

pub fn model(
    steady: &Value,
    with_new: &Value,
    organization: Organization,
    intake: Option<&IntakeMeasurement>,
) -> anyhow::Result<CostModel> {
    let measured_steady = Measured::from_step(steady).context("the steady-state step")?;
    let measured_new = Measured::from_step(with_new).context("the step with new files")?;
    let derived = derive(&measured_steady, &measured_new)?;
    let sqs = match intake {
        Some(intake) => SqsModel::from_measurement(intake)?,
        None => SqsModel::assumed(),
    };
    Ok(CostModel {
        polling: polling(&organization, &derived),
        event_driven: event_driven(&organization, &derived, &sqs),
        verdict: verdict(&derived, &sqs),
        measured_steady,
        measured_new,
        derived,
        organization,
        sqs,
        prices_as_of: PRICES_AS_OF,
    })
}

fn count(n: f64) -> String {
    let rounded = n.round() as u64;
    let digits = rounded.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ops(requests: &BTreeMap<String, u64>) -> String {
    requests
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl CostModel {
    /// The `bench/RESULTS.md` section.
    pub fn markdown(&self) -> String {
        let org = &self.organization;
        let d = &self.derived;
        let mut out = String::new();
        out.push_str("## Cost model (issue 14)\n\n");
        out.push_str(&format!(
            "Produced by `scripts/bench --cost`: requests counted by `trailbench proxy` for two `trailvault collect` runs on a small simulated organization ({} open partitions), extrapolated by `trailbench cost` to {} accounts × {} Regions over a day.\n\n",
            self.measured_steady.partitions_listed, count(org.accounts as f64), org.regions
        ));
        out.push_str("### Measured\n\n| run | partitions listed | objects copied | requests by operation |\n| --- | --- | --- | --- |\n");
        for (name, m) in [
            ("nothing new (steady state)", &self.measured_steady),
            ("new files", &self.measured_new),
        ] {
            out.push_str(&format!(
                "| {name} | {} | {} | {} |\n",
                m.partitions_listed,
                m.objects_copied,
                ops(&m.requests)
            ));
        }
        let per_object: Vec<String> = d
            .per_object
            .iter()
            .map(|(op, n)| format!("{op} {n:.2}"))
            .collect();
        out.push_str(&format!(
            "\nDerived: **{:.2} LIST per open partition** per run; per copied object: {}; fixed per run: {}.\n\n",
            d.lists_per_partition,
            per_object.join(", "),
            ops(&d.fixed_per_run)
        ));
        out.push_str(&format!(
            "### {} accounts × {} Regions, one day\n\n",
            count(org.accounts as f64),
            org.regions
        ));
        out.push_str(&format!(
            "Assumptions: {} folders (CloudTrail, CloudTrail-Digest) × {} open days = {} open partitions; {} closed partitions listed once a day by the {}-day redelivery sweep; {} log files per account, Region and hour (with `--info`, the measured data set's density; else one every 5 minutes) plus one digest an hour = {} files a day; event-driven: one CloudTrail notification per file.\n\n",
            org.folders,
            org.open_days,
            count(org.open_partitions() as f64),
            count(org.redelivery_partitions() as f64),
            org.redelivery_sweep_days,
            org.logs_per_hour,
            count(org.objects_per_day()),
        ));
        out.push_str("| mode | runs/day | LIST/day | LIST/hour | GET/day | PUT/day | HEAD/day | other S3/day | SQS requests/day | S3 USD/day | SQS+SNS USD/day | total USD/day | total USD/30 days |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for (name, day) in [
            (
                format!("polling every {} min", org.poll_minutes),
                &self.polling,
            ),
            (
                format!("event-driven, sweep every {} min", org.sweep_minutes),
                &self.event_driven,
            ),
        ] {
            out.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} |\n",
                count(day.runs),
                count(day.lists),
                count(day.lists_per_hour),
                count(day.gets),
                count(day.puts),
                count(day.heads),
                count(day.other_s3),
                count(day.sqs),
                day.s3_usd,
                day.sqs_usd + day.sns_usd,
                day.total_usd(),
                day.total_usd() * 30.0,
            ));
        }
        out.push_str(&format!(
            "\nPrices: S3 PUT/COPY/POST/LIST ${S3_PUT_LIST_PER_1000} per 1,000, GET/HEAD/other ${S3_GET_PER_1000} per 1,000; SQS ${SQS_PER_MILLION} per million requests (no free tier counted); SNS publishes ${SNS_PUBLISH_PER_MILLION} per million (CloudTrail's, billed to the trail owner; deliveries to SQS are free). {}. KMS requests (S3 Bucket Keys on the archive) and storage are not included: they are the same in both modes.\n\n",
            self.prices_as_of
        ));
        let sqs = &self.sqs;
        out.push_str(&if sqs.measured {
            format!(
                "SQS per notification (measured intake): {:.2} receives, {:.2} deletes, {:.2} visibility changes, {:.2} LISTs; {} idle receives a day.\n\n",
                sqs.receives_per_notification, sqs.deletes_per_notification, sqs.visibility_changes_per_notification, sqs.lists_per_notification, count(sqs.idle_receives_per_day)
            )
        } else {
            format!(
                "SQS per notification: **assumed**, not measured (the intake is built in parallel): one receive and one delete per notification (no batching: the worst case), no LIST, {} idle long-poll receives a day. Feed the measured intake counts with `trailbench cost --intake FILE` (`{{\"notifications\": N, \"objects\": M, \"requests\": {{\"ReceiveMessage\": …, \"DeleteMessageBatch\": …, \"ListObjectsV2\": …}}}}`).\n\n",
                count(sqs.idle_receives_per_day)
            )
        });
        out.push_str(&format!(
            "### Target (issue 14)\n\n| target | result |\n| --- | --- |\n| event-driven steady state ≤ 1 LIST per open partition per sweep interval | {} ({:.2} measured) |\n| no LIST per notification | {} |\n",
            self.verdict.sweep_lists,
            d.lists_per_partition,
            match self.verdict.notification_lists {
                "NOT MEASURED" => "NOT MEASURED (intake not measured yet; the model assumes 0)".to_string(),
                other => format!("{other} ({:.2} per notification measured)", sqs.lists_per_notification),
            }
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(requests: Value, partitions: u64, copied: u64) -> Value {
        json!({
            "proxy_requests": requests,
            "stdout_json": {"stats": {"partitions_listed": partitions, "objects_copied": copied}}
        })
    }

    fn measured() -> (Value, Value) {
        let fixed = json!({"GetBucket:versioning": 1, "GetBucket:object-lock": 1, "POST TrentService.DescribeKey": 1});
        let mut steady = fixed.clone();
        steady["ListObjectsV2"] = json!(120);
        let mut new = fixed;
        new["ListObjectsV2"] = json!(120);
        new["GetObject"] = json!(170);
        new["PutObject"] = json!(170);
        new["HeadObject"] = json!(170);
        (step(steady, 120, 0), step(new, 120, 170))
    }

    #[test]
    fn figures_are_derived_from_the_two_runs() {
        let (steady, new) = measured();
        let model = model(&steady, &new, Organization::default(), None).unwrap();
        let d = &model.derived;
        assert_eq!(d.lists_per_partition, 1.0);
        assert_eq!(d.per_object["GetObject"], 1.0);
        assert_eq!(d.per_object["PutObject"], 1.0);
        assert_eq!(d.per_object["HeadObject"], 1.0);
        assert!(!d.per_object.contains_key("GetBucket:versioning"));
        assert_eq!(d.fixed_per_run.len(), 3);
        assert!(!d.fixed_per_run.contains_key("ListObjectsV2"));
    }

    #[test]
    fn polling_lists_every_open_partition_every_run_and_events_only_per_sweep() {
        let (steady, new) = measured();
        let org = Organization::default();
        let model = model(&steady, &new, org.clone(), None).unwrap();
        // 1000 × 17 × 2 × 4 = 136,000 open partitions; 288 runs vs 24 sweeps.
        assert_eq!(org.open_partitions(), 136_000);
        let redelivery = org.redelivery_partitions() as f64;
        assert_eq!(model.polling.lists, 288.0 * 136_000.0 + redelivery);
        assert_eq!(model.event_driven.lists, 24.0 * 136_000.0 + redelivery);
        // The same objects are copied either way, with the same requests each.
        assert_eq!(model.polling.gets, model.event_driven.gets);
        assert_eq!(model.polling.gets, org.objects_per_day());
        assert!(model.event_driven.total_usd() < model.polling.total_usd());
        // LIST cost: $0.005 per 1,000.
        let list_usd = model.polling.lists / 1000.0 * S3_PUT_LIST_PER_1000;
        assert!(model.polling.s3_usd > list_usd);
        assert_eq!(model.verdict.sweep_lists, "PASS");
        assert_eq!(model.verdict.notification_lists, "NOT MEASURED");
        let text = model.markdown();
        assert!(
            text.contains(
                "| event-driven steady state ≤ 1 LIST per open partition per sweep interval | PASS"
            ),
            "{text}"
        );
        assert!(text.contains("NOT MEASURED"), "{text}");
    }

    #[test]
    fn a_measured_intake_replaces_the_assumptions_and_is_judged() {
        let (steady, new) = measured();
        let intake = IntakeMeasurement {
            notifications: 100,
            objects: 100,
            requests: BTreeMap::from([
                ("ReceiveMessage".to_string(), 20),
                ("DeleteMessageBatch".to_string(), 10),
                ("GetObject".to_string(), 100),
            ]),
            idle_receives_per_day: 4320.0,
        };
        let model = model(&steady, &new, Organization::default(), Some(&intake)).unwrap();
        assert!(model.sqs.measured);
        assert_eq!(model.sqs.receives_per_notification, 0.2);
        assert_eq!(model.verdict.notification_lists, "PASS");
        let mut listing = intake.clone();
        listing.requests.insert("ListObjectsV2".to_string(), 5);
        let model = super::model(&steady, &new, Organization::default(), Some(&listing)).unwrap();
        assert_eq!(model.verdict.notification_lists, "FAIL");
        assert!(
            model.event_driven.lists
                > 24.0 * 136_000.0 + Organization::default().redelivery_partitions() as f64
        );
    }

    #[test]
    fn bad_measurements_are_refused() {
        let (steady, new) = measured();
        assert!(model(&new, &new, Organization::default(), None)
            .unwrap_err()
            .to_string()
            .contains("must find nothing new"));
        assert!(model(&steady, &steady, Organization::default(), None)
            .unwrap_err()
            .to_string()
            .contains("copied nothing"));
        let error = model(&json!({}), &new, Organization::default(), None).unwrap_err();
        assert!(format!("{error:#}").contains("proxy_requests"), "{error:#}");
        let more_lists = step(json!({"ListObjectsV2": 240}), 120, 0);
        let model = model(&more_lists, &new, Organization::default(), None).unwrap();
        assert_eq!(model.verdict.sweep_lists, "FAIL");
    }

    #[test]
    fn counts_are_grouped() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.4), "999");
        assert_eq!(count(39_168_000.0), "39,168,000");
    }
}
