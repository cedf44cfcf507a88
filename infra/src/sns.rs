//! Alerts: new findings published to an SNS topic.

use async_trait::async_trait;
use aws_config::SdkConfig;
use tokio_util::sync::CancellationToken;
use trailvault_pipeline::seams::Notifier;
use trailvault_pipeline::SeamError;

use crate::aws::classify;
use crate::retry::{retry, RetryPolicy};

pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    retry: RetryPolicy,
}

impl SnsNotifier {
    /// Publishes to `topic_arn`, each Publish retried with `retry` (the
    /// run's policy).
    pub fn new(config: &SdkConfig, topic_arn: &str, retry: RetryPolicy) -> SnsNotifier {
        SnsNotifier {
            client: aws_sdk_sns::Client::new(config),
            topic_arn: topic_arn.to_string(),
            retry,
        }
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    /// Retried on throttling and transient failures (the SDK makes one
    /// attempt). A Publish that timed out after SNS accepted it is sent
    /// again: a duplicate alert is better than a lost one. Not cancelled by
    /// shutdown, so findings are still announced on the way out. A Publish
    /// that still fails leaves its findings unannounced for the next run
    /// (see `trailvault_pipeline::alerts`).
    async fn publish(&self, subject: &str, message: &str) -> Result<(), SeamError> {
        // SNS subjects: at most 100 printable ASCII characters, no newlines.
        let subject: String = subject
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(100)
            .collect();
        retry(&self.retry, &CancellationToken::new(), |_| {
            let request = self
                .client
                .publish()
                .topic_arn(&self.topic_arn)
                .subject(subject.clone())
                .message(message);
            async move { request.send().await.map_err(|e| classify("sns:Publish", e)) }
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::scripted_http::{query_error, reply, ScriptedHttp};

    const PUBLISHED: &str = "<PublishResponse><PublishResult><MessageId>m-1</MessageId>\
                             </PublishResult></PublishResponse>";

    #[tokio::test]
    async fn a_throttled_publish_is_retried() {
        let http = ScriptedHttp::new(vec![
            query_error(400, "Throttling"),
            query_error(500, "InternalError"),
            reply(200, PUBLISHED),
        ]);
        let notifier = SnsNotifier::new(
            &http.config().await,
            "arn:aws:sns:us-east-1:1:t",
            RetryPolicy::default(),
        );
        notifier.publish("subject", "message").await.unwrap();
        assert_eq!(http.requests(), 3);
    }

    #[tokio::test]
    async fn a_refused_publish_is_not_retried() {
        let http = ScriptedHttp::new(vec![query_error(403, "AuthorizationError")]);
        let notifier = SnsNotifier::new(
            &http.config().await,
            "arn:aws:sns:us-east-1:1:t",
            RetryPolicy::default(),
        );
        let error = notifier.publish("subject", "message").await.unwrap_err();
        assert!(matches!(error, SeamError::AccessDenied(_)), "{error:?}");
        assert_eq!(http.requests(), 1);
    }
}
