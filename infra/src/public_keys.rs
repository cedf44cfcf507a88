//! CloudTrail public keys from `ListPublicKeys`, called by the audit identity
//! in the digest's delivering region (a member cannot forge them).

use aws_config::{Region, SdkConfig};
use chrono::{DateTime, Utc};
use trailvault_pipeline::SeamError;

use crate::aws::classify;

/// One key as the API returns it: DER bytes (already base64-decoded by the
/// SDK), the API's fingerprint and the validity window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPublicKey {
    pub der: Vec<u8>,
    pub fingerprint: Option<String>,
    pub validity_start: Option<DateTime<Utc>>,
    pub validity_end: Option<DateTime<Utc>>,
}

fn chrono_time(time: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

/// Every key that signed digests in `[start, end]` in `region`.
pub async fn list_public_keys(
    audit: &SdkConfig,
    region: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<ApiPublicKey>, SeamError> {
    let config = audit
        .to_builder()
        .region(Region::new(region.to_string()))
        .build();
    let client = aws_sdk_cloudtrail::Client::new(&config);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    // NextToken is "reserved for future use"; follow it defensively, bounded.
    for _ in 0..100 {
        let output = client
            .list_public_keys()
            .start_time(aws_smithy_types::DateTime::from_secs(start.timestamp()))
            .end_time(aws_smithy_types::DateTime::from_secs(end.timestamp()))
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| classify(&format!("cloudtrail:ListPublicKeys {region}"), e))?;
        for key in output.public_key_list() {
            let Some(value) = key.value() else { continue };
            out.push(ApiPublicKey {
                der: value.as_ref().to_vec(),
                fingerprint: key.fingerprint().map(str::to_string),
                validity_start: key.validity_start_time().and_then(chrono_time),
                validity_end: key.validity_end_time().and_then(chrono_time),
            });
        }
        match output.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(out)
}
