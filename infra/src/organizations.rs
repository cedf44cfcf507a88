//! Account discovery through AWS Organizations `ListAccounts`.

use async_trait::async_trait;
use aws_config::SdkConfig;
use tokio_util::sync::CancellationToken;
use trailvault_pipeline::seams::AccountDirectory;
use trailvault_pipeline::SeamError;

use crate::aws::classify;
use crate::retry::{retry, RetryPolicy};

/// One page of accounts: `(id, status)` pairs and the token of the next page.
#[async_trait]
pub trait AccountPages: Send + Sync {
    async fn page(
        &self,
        token: Option<String>,
    ) -> Result<(Vec<(String, String)>, Option<String>), SeamError>;
}

pub struct OrganizationsClient {
    client: aws_sdk_organizations::Client,
    policy: RetryPolicy,
    cancel: CancellationToken,
}

impl OrganizationsClient {
    /// Pages are retried under `policy`; `cancel` abandons a retry loop.
    pub fn new(
        config: &SdkConfig,
        policy: RetryPolicy,
        cancel: CancellationToken,
    ) -> OrganizationsClient {
        OrganizationsClient {
            client: aws_sdk_organizations::Client::new(config),
            policy,
            cancel,
        }
    }
}

#[async_trait]
impl AccountPages for OrganizationsClient {
    async fn page(
        &self,
        token: Option<String>,
    ) -> Result<(Vec<(String, String)>, Option<String>), SeamError> {
        // The SDK makes one attempt; ListAccounts throttles readily (it is
        // shared by every caller in the organization), so each page is retried.
        let output = retry(&self.policy, &self.cancel, |_| {
            let request = self.client.list_accounts().set_next_token(token.clone());
            async move {
                request
                    .send()
                    .await
                    .map_err(|e| classify("organizations:ListAccounts", e))
            }
        })
        .await?;
        let accounts = output
            .accounts()
            .iter()
            .filter_map(|account| {
                let id = account.id()?.to_string();
                let status = account
                    .state()
                    .map(|s| s.as_str().to_string())
                    .or_else(|| account.status().map(|s| s.as_str().to_string()))
                    .unwrap_or_default();
                Some((id, status))
            })
            .collect();
        Ok((accounts, output.next_token().map(str::to_string)))
    }
}

#[async_trait]
impl AccountDirectory for OrganizationsClient {
    async fn active_accounts(&self) -> Result<Vec<String>, SeamError> {
        active_accounts(self).await
    }
}

/// Every ACTIVE account, following every page (bounded, so a misbehaving
/// endpoint that repeats a token cannot loop forever).
pub async fn active_accounts(pages: &dyn AccountPages) -> Result<Vec<String>, SeamError> {
    let mut out = Vec::new();
    let mut token = None;
    let mut seen_tokens = std::collections::HashSet::new();
    for _ in 0..100_000 {
        let (accounts, next) = pages.page(token).await?;
        out.extend(
            accounts
                .into_iter()
                .filter(|(_, status)| status.eq_ignore_ascii_case("ACTIVE"))
                .map(|(id, _)| id),
        );
        match next {
            Some(next) if seen_tokens.insert(next.clone()) => token = Some(next),
            Some(next) => {
                return Err(SeamError::Permanent(format!(
                    "organizations:ListAccounts repeated page token {next}"
                )))
            }
            None => break,
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::scripted_http::{json_error, reply, Reply, ScriptedHttp};

    /// An in-memory twin of ListAccounts with pages of two.
    struct Pages(Vec<(String, String)>);

    #[async_trait]
    impl AccountPages for Pages {
        async fn page(
            &self,
            token: Option<String>,
        ) -> Result<(Vec<(String, String)>, Option<String>), SeamError> {
            let start: usize = token
                .as_deref()
                .unwrap_or("0")
                .parse()
                .map_err(|_| SeamError::Permanent("bad token".into()))?;
            let end = (start + 2).min(self.0.len());
            let next = (end < self.0.len()).then(|| end.to_string());
            Ok((self.0[start..end].to_vec(), next))
        }
    }

    #[tokio::test]
    async fn follows_every_page_and_keeps_only_active_accounts() {
        let pages = Pages(vec![
            ("111111111111".into(), "ACTIVE".into()),
            ("222222222222".into(), "SUSPENDED".into()),
            ("333333333333".into(), "ACTIVE".into()),
            ("444444444444".into(), "PENDING_CLOSURE".into()),
            ("555555555555".into(), "ACTIVE".into()),
        ]);
        let accounts = active_accounts(&pages).await.unwrap();
        assert_eq!(
            accounts,
            vec!["111111111111", "333333333333", "555555555555"]
        );
    }

    struct Looping;

    #[async_trait]
    impl AccountPages for Looping {
        async fn page(
            &self,
            _token: Option<String>,
        ) -> Result<(Vec<(String, String)>, Option<String>), SeamError> {
            Ok((vec![], Some("same".into())))
        }
    }

    #[tokio::test]
    async fn a_repeated_token_is_an_error_not_a_loop() {
        assert!(active_accounts(&Looping).await.is_err());
    }

    #[tokio::test]
    async fn throttled_pages_are_retried() {
        let http = ScriptedHttp::new(vec![
            json_error(400, "TooManyRequestsException"),
            reply(
                200,
                r#"{"Accounts":[{"Id":"111111111111","Status":"ACTIVE"}],"NextToken":"p2"}"#,
            ),
            Reply::ConnectionReset,
            reply(
                200,
                r#"{"Accounts":[{"Id":"222222222222","Status":"SUSPENDED"}]}"#,
            ),
        ]);
        let client = OrganizationsClient::new(
            &http.config().await,
            RetryPolicy::default(),
            CancellationToken::new(),
        );
        let accounts = active_accounts(&client).await.unwrap();
        assert_eq!(accounts, vec!["111111111111"]);
        assert_eq!(http.requests(), 4);
    }

    #[tokio::test]
    async fn a_refused_listing_is_not_retried() {
        let http = ScriptedHttp::new(vec![json_error(400, "AccessDeniedException")]);
        let client = OrganizationsClient::new(
            &http.config().await,
            RetryPolicy::default(),
            CancellationToken::new(),
        );
        let error = active_accounts(&client).await.unwrap_err();
        assert!(matches!(error, SeamError::AccessDenied(_)), "{error:?}");
        assert_eq!(http.requests(), 1);
    }
}
