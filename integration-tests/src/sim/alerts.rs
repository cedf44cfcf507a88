//! The alert side of the simulation: an SNS topic in the audit account
//! subscribed by an SQS queue (as an operator's alert pipeline would be), a
//! topic policy that refuses the collector's Publish, and a member that
//! floods its own bucket with junk files to drown the alerts.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;

use super::policies::FINDINGS_TOPIC_NAME;
use super::{ChainSelector, Sim};
use crate::harness;

/// An SNS topic and the SQS queue subscribed to it.
pub struct AlertInbox {
    pub topic_arn: String,
    pub queue_url: String,
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
}

/// One alert as the queue received it: SNS's envelope opened.
#[derive(Debug, Clone)]
pub struct Alert {
    pub subject: Option<String>,
    /// trailvault's message (JSON).
    pub message: serde_json::Value,
    /// Bytes of trailvault's message.
    pub message_bytes: usize,
}

impl Sim {
    /// Creates the findings topic in the audit account (the name the
    /// collector's policy lets it publish to) and a queue subscribed to it,
    /// whose policy lets the topic deliver (as on AWS).
    pub async fn alert_inbox(&self) -> anyhow::Result<AlertInbox> {
        let name = FINDINGS_TOPIC_NAME;
        let audit_root = harness::sdk_config(
            &self.org.endpoint,
            &self.org.audit_account_id,
            "root-secret",
            None,
        );
        let sns = aws_sdk_sns::Client::new(&audit_root);
        let sqs = aws_sdk_sqs::Client::new(&audit_root);
        let topic_arn = sns
            .create_topic()
            .name(name)
            .send()
            .await?
            .topic_arn()
            .ok_or_else(|| anyhow::anyhow!("CreateTopic returned no ARN"))?
            .to_string();
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("{name}-inbox"))
            .send()
            .await?
            .queue_url()
            .ok_or_else(|| anyhow::anyhow!("CreateQueue returned no URL"))?
            .to_string();
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes()
            .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| anyhow::anyhow!("the queue has no ARN"))?;
        let queue_policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}
            }]
        });
        sqs.set_queue_attributes()
            .queue_url(&queue_url)
            .attributes(QueueAttributeName::Policy, queue_policy.to_string())
            .send()
            .await?;
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&queue_arn)
            .send()
            .await?;
        Ok(AlertInbox {
            topic_arn,
            queue_url,
            sns,
            sqs,
        })
    }

    /// Plants `count` files that are not CloudTrail output, with names of
    /// about `name_bytes` bytes, in the partition of the newest log of
    /// `selector`'s chain: what a member does to drown a real finding in
    /// junk (each is an `object_malformed` finding, with its long key twice:
    /// source and archive). Returns their keys.
    pub async fn plant_junk_files(
        &self,
        selector: ChainSelector,
        count: usize,
        name_bytes: usize,
    ) -> anyhow::Result<Vec<String>> {
        let chain = self.chain(selector)?;
        let newest_log = chain
            .digests
            .iter()
            .rev()
            .flat_map(|digest| digest.logs.iter().rev())
            .next()
            .ok_or_else(|| anyhow::anyhow!("chain {} has no log yet", chain.index))?;
        let folder = newest_log
            .key
            .rsplit_once('/')
            .map(|(folder, _)| folder)
            .ok_or_else(|| anyhow::anyhow!("log key without a folder"))?;
        let s3 = self.root_s3(&chain.account_id)?;
        let padding = "j".repeat(name_bytes.saturating_sub(folder.len() + 16));
        let mut keys = Vec::with_capacity(count);
        for index in 0..count {
            let key = format!("{folder}/junk-{index:05}-{padding}.json.gz");
            s3.put_object()
                .bucket(&chain.bucket)
                .key(&key)
                .body(format!("{{\"junk\":{index}}}").into_bytes().into())
                .send()
                .await?;
            keys.push(key);
        }
        Ok(keys)
    }
}

impl AlertInbox {
    /// Makes the topic refuse every Publish (an explicit Deny in its policy:
    /// the collector's own identity policy allows it).
    pub async fn deny_publish(&self) -> anyhow::Result<()> {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "DenyPublish",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "sns:Publish",
                "Resource": self.topic_arn
            }]
        });
        self.set_policy(&policy.to_string()).await
    }

    /// Lets the topic accept the collector's Publish again (an Allow for
    /// the owner account).
    pub async fn allow_publish(&self) -> anyhow::Result<()> {
        let account = self.topic_arn.split(':').nth(4).unwrap_or_default();
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "OwnerPublishes",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                "Action": "sns:Publish",
                "Resource": self.topic_arn
            }]
        });
        self.set_policy(&policy.to_string()).await
    }

    async fn set_policy(&self, policy: &str) -> anyhow::Result<()> {
        self.sns
            .set_topic_attributes()
            .topic_arn(&self.topic_arn)
            .attribute_name("Policy")
            .attribute_value(policy)
            .send()
            .await?;
        Ok(())
    }

    /// Every alert that arrives until the queue stays empty for `quiet`
    /// (deleted as read).
    pub async fn drain(&self, quiet: Duration) -> anyhow::Result<Vec<Alert>> {
        let mut alerts = Vec::new();
        let mut last_arrival = Instant::now();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await?;
            let messages = received.messages();
            if messages.is_empty() {
                if last_arrival.elapsed() >= quiet {
                    return Ok(alerts);
                }
                continue;
            }
            last_arrival = Instant::now();
            for message in messages {
                let body = message.body().unwrap_or_default();
                let envelope: serde_json::Value = serde_json::from_str(body)?;
                let text = envelope["Message"].as_str().unwrap_or(body);
                alerts.push(Alert {
                    subject: envelope["Subject"].as_str().map(str::to_string),
                    message: serde_json::from_str(text)?,
                    message_bytes: text.len(),
                });
                if let Some(handle) = message.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
        }
    }
}

/// An EventBridge rule on the audit account's default bus that sends
/// trailvault's finding events to an SQS queue (as an operator's security
/// pipeline would).
pub struct EventInbox {
    pub bus_name: String,
    pub queue_url: String,
    sqs: aws_sdk_sqs::Client,
}

impl Sim {
    /// Creates a queue and a rule on the audit account's `default` bus
    /// (the name the collector's policy lets it put events on) matching
    /// `source` "trailvault" and `detail-type` "trailvault finding", with the
    /// queue as target and a queue policy that lets EventBridge deliver (as on
    /// AWS; ministack 1.5.33 delivers without it).
    pub async fn event_inbox(&self) -> anyhow::Result<EventInbox> {
        let bus_name = super::policies::FINDINGS_EVENT_BUS_NAME;
        let audit_root = harness::sdk_config(
            &self.org.endpoint,
            &self.org.audit_account_id,
            "root-secret",
            None,
        );
        let events = aws_sdk_eventbridge::Client::new(&audit_root);
        let sqs = aws_sdk_sqs::Client::new(&audit_root);
        let queue_url = sqs
            .create_queue()
            .queue_name("trailvault-finding-events")
            .send()
            .await?
            .queue_url()
            .ok_or_else(|| anyhow::anyhow!("CreateQueue returned no URL"))?
            .to_string();
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes()
            .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| anyhow::anyhow!("the queue has no ARN"))?;
        let rule_arn = events
            .put_rule()
            .name("trailvault-findings-to-queue")
            .event_bus_name(bus_name)
            .event_pattern(
                serde_json::json!({
                    "source": ["trailvault"],
                    "detail-type": ["trailvault finding"]
                })
                .to_string(),
            )
            .send()
            .await?
            .rule_arn()
            .ok_or_else(|| anyhow::anyhow!("PutRule returned no ARN"))?
            .to_string();
        let queue_policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}
            }]
        });
        sqs.set_queue_attributes()
            .queue_url(&queue_url)
            .attributes(QueueAttributeName::Policy, queue_policy.to_string())
            .send()
            .await?;
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("queue")
            .arn(&queue_arn)
            .build()?;
        let added = events
            .put_targets()
            .rule("trailvault-findings-to-queue")
            .event_bus_name(bus_name)
            .targets(target)
            .send()
            .await?;
        if added.failed_entry_count() > 0 {
            anyhow::bail!("PutTargets failed: {:?}", added.failed_entries());
        }
        Ok(EventInbox {
            bus_name: bus_name.to_string(),
            queue_url,
            sqs,
        })
    }
}

impl EventInbox {
    /// Every event that arrives until the queue stays empty for `quiet`
    /// (deleted as read), as EventBridge delivered it (`detail` opened).
    pub async fn drain(&self, quiet: Duration) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut events = Vec::new();
        let mut last_arrival = Instant::now();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await?;
            let messages = received.messages();
            if messages.is_empty() {
                if last_arrival.elapsed() >= quiet {
                    return Ok(events);
                }
                continue;
            }
            last_arrival = Instant::now();
            for message in messages {
                events.push(serde_json::from_str(message.body().unwrap_or_default())?);
                if let Some(handle) = message.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
        }
    }
}
