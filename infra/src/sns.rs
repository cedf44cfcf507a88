//! Alerts: new findings published to an SNS topic.

use async_trait::async_trait;
use aws_config::SdkConfig;
use trailvault_pipeline::seams::Notifier;
use trailvault_pipeline::SeamError;

use crate::aws::classify;

pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(config: &SdkConfig, topic_arn: &str) -> SnsNotifier {
        SnsNotifier {
            client: aws_sdk_sns::Client::new(config),
            topic_arn: topic_arn.to_string(),
        }
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(&self, subject: &str, message: &str) -> Result<(), SeamError> {
        // SNS subjects: at most 100 printable ASCII characters, no newlines.
        let subject: String = subject
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(100)
            .collect();
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map_err(|e| classify("sns:Publish", e))?;
        Ok(())
    }
}
