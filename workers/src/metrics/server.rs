//! A minimal HTTP/1.1 responder for the metrics: `GET /metrics` answers the
//! OpenMetrics text, anything else a short error; one request per
//! connection. It reads at most [`MAX_REQUEST_HEAD`] bytes for at most
//! [`READ_TIMEOUT`], so a slow or oversized client cannot hold it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::Metrics;

const MAX_REQUEST_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The endpoint, serving until dropped.
pub struct Endpoint {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `metrics` on it in the background.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<Endpoint> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        if let Err(error) = answer(stream, &metrics).await {
                            debug!(%peer, %error, "metrics request failed");
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    warn!(%error, "cannot accept a metrics connection");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    Ok(Endpoint { addr, task })
}

/// What to answer to a request head.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics { head_only: bool },
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

fn route(head: &[u8]) -> Route {
    let Some(line) = head.split(|&b| b == b'\r' || b == b'\n').next() else {
        return Route::BadRequest;
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return Route::BadRequest;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or(target);
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    if path == "/metrics" {
        Route::Metrics { head_only }
    } else {
        Route::NotFound
    }
}

/// Reads the request head: up to the blank line, within the size and time limits.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut buffer).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buffer[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return Some(());
            }
            if head.len() > MAX_REQUEST_HEAD {
                return None;
            }
        }
    };
    tokio::time::timeout(READ_TIMEOUT, read).await.ok()??;
    Some(head)
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let route = match read_head(&mut stream).await {
        Some(head) => route(&head),
        None => Route::BadRequest,
    };
    let (status, content_type, body, head_only) = match route {
        Route::Metrics { head_only } => match metrics.encode(chrono::Utc::now()) {
            Ok(text) => ("200 OK", CONTENT_TYPE, text, head_only),
            Err(_) => (
                "500 Internal Server Error",
                "text/plain; charset=utf-8",
                "cannot encode the metrics\n".to_string(),
                false,
            ),
        },
        Route::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: the metrics are at /metrics\n".to_string(),
            false,
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET and HEAD\n".to_string(),
            false,
        ),
        Route::BadRequest => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n".to_string(),
            false,
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { head_only: true }
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        for bad in [
            &b""[..],
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET /metrics SPDY/3\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(route(bad), Route::BadRequest, "{bad:?}");
        }
    }

    async fn ask(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        // What arrived before the server closed (a reset after an answer
        // to an oversized request is fine).
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8(answer).unwrap()
    }

    #[tokio::test]
    async fn the_endpoint_serves_openmetrics_text_and_refuses_the_rest() {
        let metrics = Arc::new(Metrics::new());
        trailvault_infra::retry::RetryObserver::attempt(
            metrics.as_ref(),
            "PutObject",
            trailvault_infra::retry::AttemptOutcome::Ok,
        );
        let endpoint = serve("127.0.0.1:0".parse().unwrap(), metrics)
            .await
            .unwrap();
        assert_ne!(endpoint.addr.port(), 0, "the bound port is reported");
        let answer = ask(endpoint.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains(CONTENT_TYPE));
        assert!(answer
            .contains("trailvault_s3_requests_total{operation=\"PutObject\",outcome=\"ok\"} 1"));
        assert!(answer.ends_with("# EOF\n"));
        let missing = ask(endpoint.addr, b"GET /admin HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        // An endless header is cut off, not buffered.
        let mut flood = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        flood.extend(std::iter::repeat_n(b'a', 3 * MAX_REQUEST_HEAD));
        let refused = ask(endpoint.addr, &flood).await;
        assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
        let addr = endpoint.addr;
        drop(endpoint);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "dropping the endpoint stops it"
        );
    }
}
