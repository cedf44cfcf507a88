//! Findings as EventBridge events: one `PutEvents` entry per finding on the
//! configured bus.

use std::sync::Mutex;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use tokio_util::sync::CancellationToken;
use trailvault_pipeline::seams::{BusEvent, EntryOutcome, EventBus};
use trailvault_pipeline::SeamError;

use crate::aws::classify;
use crate::retry::{retry, RetryPolicy};

/// Entry error codes EventBridge documents as transient: such an entry is
/// sent again (alone with the others still pending), the rest is final.
const RETRYABLE_ENTRY_CODES: [&str; 3] = [
    "ThrottlingException",
    "InternalFailure",
    "InternalException",
];

pub struct EventBridgeBus {
    client: aws_sdk_eventbridge::Client,
    /// The bus name or ARN, as configured.
    bus: String,
    /// `aws`, `aws-us-gov`, `aws-cn`…: the partition of the resource ARNs.
    partition: String,
    retry: RetryPolicy,
}

impl EventBridgeBus {
    /// Puts events on `bus` (a name or an ARN); each call, and each entry
    /// refused for a transient reason, retried with `retry`.
    /// Resources are written as S3 ARNs of `partition`.
    pub fn new(
        config: &SdkConfig,
        bus: &str,
        partition: &str,
        retry: RetryPolicy,
    ) -> EventBridgeBus {
        EventBridgeBus {
            client: aws_sdk_eventbridge::Client::new(config),
            bus: bus.to_string(),
            partition: partition.to_string(),
            retry,
        }
    }

    fn entry(&self, event: &BusEvent) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(&event.source)
            .detail_type(&event.detail_type)
            .detail(&event.detail)
            .set_resources(Some(s3_arns(&self.partition, &event.resources)))
            .build()
    }
}

/// `bucket` or `bucket/key` as S3 ARNs of `partition`.
fn s3_arns(partition: &str, resources: &[String]) -> Vec<String> {
    resources
        .iter()
        .map(|resource| format!("arn:{partition}:s3:::{resource}"))
        .collect()
}

/// Where each entry of one `put_events` stands.
struct Progress {
    /// `None` while the entry is still to be sent.
    outcomes: Vec<Option<EntryOutcome>>,
    /// The last transient refusal of each entry still to be sent.
    last_refusal: Vec<Option<String>>,
}

#[async_trait]
impl EventBus for EventBridgeBus {
    /// A call that fails as a whole is retried like every request (and a
    /// call that timed out after EventBridge took it is sent again: a
    /// duplicate event is better than a lost one). Entries refused with a
    /// transient code (`FailedEntryCount` > 0, `ThrottlingException`,
    /// `InternalFailure`) are sent again, alone, within the same retry
    /// budget; other refusals are final for this run and returned per entry.
    /// Not cancelled by shutdown, so findings are still announced on the way
    /// out.
    async fn put_events(&self, events: &[BusEvent]) -> Result<Vec<EntryOutcome>, SeamError> {
        let progress = Mutex::new(Progress {
            outcomes: vec![None; events.len()],
            last_refusal: vec![None; events.len()],
        });
        let result = retry(&self.retry, &CancellationToken::new(), |_| {
            let pending: Vec<usize> = {
                let progress = progress.lock().unwrap_or_else(|e| e.into_inner());
                (0..events.len())
                    .filter(|&i| progress.outcomes[i].is_none())
                    .collect()
            };
            let request = self.client.put_events().set_entries(Some(
                pending.iter().map(|&i| self.entry(&events[i])).collect(),
            ));
            let progress = &progress;
            async move {
                let output = request
                    .send()
                    .await
                    .map_err(|e| classify("events:PutEvents", e))?;
                let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
                let answered = output.entries();
                for (position, &index) in pending.iter().enumerate() {
                    // An entry the answer does not cover stays to be sent.
                    let Some(answer) = answered.get(position) else {
                        continue;
                    };
                    match answer.error_code() {
                        None if answer.event_id().is_some() => {
                            progress.outcomes[index] = Some(Ok(()));
                        }
                        None => {}
                        Some(code) => {
                            let refusal = format!(
                                "{code}: {}",
                                answer.error_message().unwrap_or("no message")
                            );
                            if RETRYABLE_ENTRY_CODES.contains(&code) {
                                progress.last_refusal[index] = Some(refusal);
                            } else {
                                progress.outcomes[index] = Some(Err(refusal));
                            }
                        }
                    }
                }
                let still = progress.outcomes.iter().filter(|o| o.is_none()).count();
                if still == 0 {
                    return Ok(());
                }
                Err(SeamError::Throttled(format!(
                    "events:PutEvents: {still} entr(ies) not taken yet"
                )))
            }
        })
        .await;
        let progress = progress.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = result {
            let answered_any = progress.outcomes.iter().any(Option::is_some)
                || progress.last_refusal.iter().any(Option::is_some);
            if !answered_any {
                return Err(error);
            }
            return Ok(progress
                .outcomes
                .into_iter()
                .zip(progress.last_refusal)
                .map(|(outcome, refusal)| {
                    outcome.unwrap_or_else(|| Err(refusal.unwrap_or_else(|| error.to_string())))
                })
                .collect());
        }
        Ok(progress
            .outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(|| Err("no answer for the entry".into())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::scripted_http::{json_error, reply, ScriptedHttp};
    use std::time::Duration;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_interval: Duration::from_millis(1),
            max_interval: Duration::from_millis(5),
            max_elapsed: Duration::from_secs(5),
        }
    }

    fn event(n: usize) -> BusEvent {
        BusEvent {
            source: "trailvault".into(),
            detail_type: "trailvault finding".into(),
            resources: vec![format!("b/k{n}")],
            detail: format!(r#"{{"key":"k{n}"}}"#),
        }
    }

    #[tokio::test]
    async fn entries_refused_for_a_transient_reason_are_sent_again_alone() {
        let http = ScriptedHttp::new(vec![
            reply(
                200,
                r#"{"FailedEntryCount":2,"Entries":[{"EventId":"e0"},
                    {"ErrorCode":"ThrottlingException","ErrorMessage":"slow down"},
                    {"ErrorCode":"MalformedDetail","ErrorMessage":"bad"}]}"#,
            ),
            reply(
                200,
                r#"{"FailedEntryCount":0,"Entries":[{"EventId":"e1"}]}"#,
            ),
        ]);
        let bus = EventBridgeBus::new(&http.config().await, "sec", "aws", fast());
        let outcomes = bus
            .put_events(&[event(0), event(1), event(2)])
            .await
            .unwrap();
        assert_eq!(outcomes[0], Ok(()));
        assert_eq!(outcomes[1], Ok(()));
        assert_eq!(outcomes[2], Err("MalformedDetail: bad".to_string()));
        assert_eq!(http.requests(), 2);
        let bodies = http.bodies();
        let second: serde_json::Value = serde_json::from_slice(&bodies[1]).unwrap();
        let entries = second["Entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "only the throttled entry again");
        assert_eq!(entries[0]["Detail"], r#"{"key":"k1"}"#);
        assert_eq!(entries[0]["EventBusName"], "sec");
        assert_eq!(entries[0]["DetailType"], "trailvault finding");
        assert_eq!(entries[0]["Resources"][0], "arn:aws:s3:::b/k1");
    }

    #[test]
    fn resources_are_s3_arns_of_the_bus_partition() {
        let resources = ["b".to_string(), "b/AWSLogs/k.json.gz".to_string()];
        assert_eq!(
            s3_arns("aws-us-gov", &resources),
            [
                "arn:aws-us-gov:s3:::b",
                "arn:aws-us-gov:s3:::b/AWSLogs/k.json.gz"
            ]
        );
        let event = BusEvent {
            resources: resources.to_vec(),
            ..event(0)
        };
        let arns: usize = s3_arns("aws-iso-b", &event.resources)
            .iter()
            .map(String::len)
            .sum();
        let others = event.source.len() + event.detail_type.len() + event.detail.len();
        assert!(event.size() >= others + arns, "the size counts the ARNs");
    }

    #[tokio::test]
    async fn an_entry_throttled_every_time_is_returned_refused() {
        let throttled = r#"{"FailedEntryCount":1,"Entries":[{"ErrorCode":"InternalFailure","ErrorMessage":"oops"}]}"#;
        let http = ScriptedHttp::new(vec![reply(200, throttled); 4]);
        let bus = EventBridgeBus::new(&http.config().await, "sec", "aws", fast());
        let outcomes = bus.put_events(&[event(0)]).await.unwrap();
        assert_eq!(outcomes, vec![Err("InternalFailure: oops".to_string())]);
        assert_eq!(http.requests(), 4);
    }

    #[tokio::test]
    async fn a_refused_call_is_an_error_and_not_retried() {
        let http = ScriptedHttp::new(vec![json_error(400, "AccessDeniedException")]);
        let bus = EventBridgeBus::new(&http.config().await, "sec", "aws", fast());
        let error = bus.put_events(&[event(0)]).await.unwrap_err();
        assert!(matches!(error, SeamError::AccessDenied(_)), "{error:?}");
        assert_eq!(http.requests(), 1);
    }

    #[tokio::test]
    async fn a_throttled_call_is_retried() {
        let http = ScriptedHttp::new(vec![
            json_error(400, "ThrottlingException"),
            json_error(500, "InternalException"),
            reply(
                200,
                r#"{"FailedEntryCount":0,"Entries":[{"EventId":"e0"}]}"#,
            ),
        ]);
        let bus = EventBridgeBus::new(&http.config().await, "sec", "aws", fast());
        assert_eq!(bus.put_events(&[event(0)]).await.unwrap(), vec![Ok(())]);
        assert_eq!(http.requests(), 3);
    }
}
