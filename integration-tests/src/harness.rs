//! Test harness for the local AWS emulator (ministack, see docs/testbed.md): where it
//! is, resetting it, and hermetic SDK configurations.
//!
//! Integration tests never skip silently: without a reachable emulator they panic
//! with instructions.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;

/// Environment variable naming the emulator endpoint, e.g. `http://127.0.0.1:4566`.
pub const ENDPOINT_ENV: &str = "TRAILVAULT_TEST_ENDPOINT";
/// The Region every simulated account and client uses for API calls.
pub const TEST_REGION: &str = "us-east-1";

const HEALTH_PATH: &str = "/_ministack/health";
const RESET_PATH: &str = "/_ministack/reset";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
const RESET_TIMEOUT: Duration = Duration::from_secs(60);

/// The emulator endpoint from `TRAILVAULT_TEST_ENDPOINT`, after checking that its
/// health URL answers.
///
/// # Panics
/// If the variable is unset or the emulator does not answer: an integration test must
/// fail, not pass, without its emulator.
pub fn test_endpoint() -> String {
    let endpoint = match std::env::var(ENDPOINT_ENV) {
        Ok(value) if !value.trim().is_empty() => value.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "emulator not reachable at <{ENDPOINT_ENV} is not set>; run scripts/test \
             (or scripts/emulator start and export {ENDPOINT_ENV}=http://127.0.0.1:4566)"
        ),
    };
    if let Err(error) = check_health(&endpoint) {
        panic!(
            "emulator not reachable at {endpoint} ({error}); run scripts/test \
             (or scripts/emulator start and export {ENDPOINT_ENV}={endpoint})"
        );
    }
    endpoint
}

/// `Ok` if `GET <endpoint>/_ministack/health` answers 200.
pub fn check_health(endpoint: &str) -> anyhow::Result<()> {
    let (status, _body) = http_request(endpoint, "GET", HEALTH_PATH, HEALTH_TIMEOUT)?;
    anyhow::ensure!(status == 200, "GET {HEALTH_PATH} answered HTTP {status}");
    Ok(())
}

/// Drops all emulator state (`POST <endpoint>/_ministack/reset`).
pub async fn reset(endpoint: &str) -> anyhow::Result<()> {
    let endpoint = endpoint.to_owned();
    let (status, body) = tokio::task::spawn_blocking(move || {
        http_request(&endpoint, "POST", RESET_PATH, RESET_TIMEOUT)
    })
    .await??;
    anyhow::ensure!(
        (200..300).contains(&status),
        "POST {RESET_PATH} answered HTTP {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

/// `host:port` of a plain `http://` endpoint.
fn socket_address(endpoint: &str) -> anyhow::Result<(String, SocketAddr)> {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        anyhow::bail!("endpoint {endpoint} is not an http:// URL (the emulator speaks plain HTTP)");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    anyhow::ensure!(!authority.is_empty(), "endpoint {endpoint} has no host");
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit()))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let address = with_port
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("endpoint {endpoint} resolves to no address"))?;
    Ok((authority.to_owned(), address))
}

/// A minimal HTTP/1.1 request without a body (`Connection: close`), returning the
/// status code and the raw response body. Enough for the emulator's control URLs.
fn http_request(
    endpoint: &str,
    method: &str,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let (host, address) = socket_address(endpoint)?;
    let mut stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let header_end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("{method} {path}: incomplete HTTP response"))?;
    let head = String::from_utf8_lossy(&response[..header_end]).into_owned();
    let status_line = head.lines().next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{method} {path}: bad status line {status_line:?}"))?;
    // Bodies of these endpoints are small; chunked encoding is left undecoded.
    Ok((status, response[header_end + 4..].to_vec()))
}

/// A hermetic SDK configuration: static credentials, Region us-east-1, the given
/// endpoint, no environment variables or profiles read. An access key that is a
/// 12-digit account id acts as that account's root on the emulator.
pub fn sdk_config(
    endpoint: &str,
    access_key_id: &str,
    secret_access_key: &str,
    session_token: Option<&str>,
) -> SdkConfig {
    let credentials = Credentials::new(
        access_key_id,
        secret_access_key,
        session_token.map(str::to_owned),
        None,
        "trailvault-test-static",
    );
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(TEST_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
        .build()
}

/// An S3 client for `config` with path-style addressing (required with an endpoint
/// URL: `bucket.127.0.0.1` does not resolve).
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let (host, address) = socket_address("http://127.0.0.1:4566").unwrap();
        assert_eq!(host, "127.0.0.1:4566");
        assert_eq!(address.port(), 4566);
        let (_, default_port) = socket_address("http://127.0.0.1/").unwrap();
        assert_eq!(default_port.port(), 80);
        assert!(socket_address("https://example.com").is_err());
    }

    #[test]
    fn health_check_fails_cleanly_when_nothing_listens() {
        // Port 9 (discard) on loopback is essentially never served.
        assert!(check_health("http://127.0.0.1:9").is_err());
    }
}
