//! Event-driven intake's queue: an SQS queue in the audit account and its
//! dead-letter queue.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use tokio_util::sync::CancellationToken;
use trailvault_pipeline::seams::{NotificationQueue, QueueMessage};
use trailvault_pipeline::SeamError;

use crate::aws::classify;
use crate::retry::{retry_named, RetryPolicy};

/// The most a reason attached to a dead-lettered message carries.
const MAX_REASON_CHARS: usize = 1_000;

pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dead_letter_queue_url: String,
    retry: RetryPolicy,
    cancel: CancellationToken,
}

impl SqsQueue {
    /// Each call retried with `retry` until `cancel`.
    pub fn new(
        config: &SdkConfig,
        queue_url: &str,
        dead_letter_queue_url: &str,
        retry: RetryPolicy,
        cancel: CancellationToken,
    ) -> SqsQueue {
        SqsQueue {
            client: aws_sdk_sqs::Client::new(config),
            queue_url: queue_url.to_string(),
            dead_letter_queue_url: dead_letter_queue_url.to_string(),
            retry,
            cancel,
        }
    }
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

#[async_trait]
impl NotificationQueue for SqsQueue {
    /// Not retried: the caller polls again (a failed receive changes nothing).
    async fn receive(
        &self,
        max_messages: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, SeamError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max_messages.clamp(1, 10) as i32)
            .wait_time_seconds(seconds(wait).clamp(0, 20))
            .visibility_timeout(seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| classify("sqs:ReceiveMessage", e))?;
        Ok(output
            .messages()
            .iter()
            .filter_map(|message| {
                Some(QueueMessage {
                    id: message.message_id()?.to_string(),
                    receipt: message.receipt_handle()?.to_string(),
                    body: message.body().unwrap_or_default().to_string(),
                    receive_count: message
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|count| count.parse().ok())
                        .unwrap_or(1),
                })
            })
            .collect())
    }

    async fn extend_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), SeamError> {
        retry_named(
            "ChangeMessageVisibility",
            &self.retry,
            &self.cancel,
            |_| async move {
                self.client
                    .change_message_visibility()
                    .queue_url(&self.queue_url)
                    .receipt_handle(receipt)
                    .visibility_timeout(seconds(visibility))
                    .send()
                    .await
                    .map_err(|e| classify("sqs:ChangeMessageVisibility", e))
            },
        )
        .await?;
        Ok(())
    }

    /// Deleting twice succeeds: retried safely.
    async fn delete(&self, receipt: &str) -> Result<(), SeamError> {
        retry_named("DeleteMessage", &self.retry, &self.cancel, |_| async move {
            self.client
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(|e| classify("sqs:DeleteMessage", e))
        })
        .await?;
        Ok(())
    }

    /// SendMessage to the dead-letter queue (the body as received, the
    /// reason and the original message id as attributes), then delete. A
    /// send retried after a timeout may leave two copies there: better than
    /// none. The delete happens only after the send succeeded.
    async fn dead_letter(&self, message: &QueueMessage, reason: &str) -> Result<(), SeamError> {
        let reason: String = reason
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON_CHARS)
            .collect();
        let attribute = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(if value.is_empty() { "-" } else { value })
                .build()
                .map_err(|error| SeamError::Permanent(format!("message attribute: {error}")))
        };
        let reason_attribute = attribute(&reason)?;
        let id_attribute = attribute(&message.id)?;
        // SQS refuses an empty body.
        let body = if message.body.is_empty() {
            "(empty)".to_string()
        } else {
            message.body.clone()
        };
        retry_named("SendMessage", &self.retry, &self.cancel, |_| {
            let request = self
                .client
                .send_message()
                .queue_url(&self.dead_letter_queue_url)
                .message_body(body.clone())
                .message_attributes("trailvault-reason", reason_attribute.clone())
                .message_attributes("trailvault-message-id", id_attribute.clone());
            async move {
                request
                    .send()
                    .await
                    .map_err(|e| classify("sqs:SendMessage", e))
            }
        })
        .await?;
        self.delete(&message.receipt).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::scripted_http::{json_error, reply, ScriptedHttp};

    #[tokio::test]
    async fn a_throttled_delete_is_retried() {
        let http = ScriptedHttp::new(vec![json_error(500, "InternalError"), reply(200, "{}")]);
        let queue = SqsQueue::new(
            &http.config().await,
            "https://sqs.us-east-1.amazonaws.com/111111111111/q",
            "https://sqs.us-east-1.amazonaws.com/111111111111/d",
            RetryPolicy::default(),
            CancellationToken::new(),
        );
        queue.delete("r").await.unwrap();
        assert_eq!(http.requests(), 2);
    }

    #[tokio::test]
    async fn a_dead_letter_that_cannot_be_sent_is_not_deleted() {
        let http = ScriptedHttp::new(vec![json_error(
            400,
            "AWS.SimpleQueueService.NonExistentQueue",
        )]);
        let queue = SqsQueue::new(
            &http.config().await,
            "https://sqs.us-east-1.amazonaws.com/111111111111/q",
            "https://sqs.us-east-1.amazonaws.com/111111111111/d",
            RetryPolicy::default(),
            CancellationToken::new(),
        );
        let message = QueueMessage {
            id: "m".into(),
            receipt: "r".into(),
            body: "{}".into(),
            receive_count: 1,
        };
        assert!(queue.dead_letter(&message, "unknown_bucket").await.is_err());
        assert_eq!(http.requests(), 1, "no DeleteMessage after a failed send");
    }
}
