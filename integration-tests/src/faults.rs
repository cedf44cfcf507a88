//! A fault-injecting HTTP/1.1 proxy for the end-to-end suite: it stands between
//! the `trailvault` binary and the emulator and, for a seeded share of the
//! requests, answers the way a real network and a real S3 sometimes do:
//!
//! | fault | what the client sees | did the server act? |
//! | --- | --- | --- |
//! | `slow_down` | 503 `SlowDown` | no |
//! | `internal_error` | 500 `InternalError` | no |
//! | `reset` | the connection reset before any answer | no |
//! | `truncated_body` | the server's status and headers, then half the body and a closed connection | yes |
//! | `error_after_acting` | 500 `InternalError` after the server answered (a PUT landed, a GET was served) | yes |
//! | `stall` | silence: the connection held open, nothing sent | no |
//! | `stalled_body` | the server's status and headers and half the body, then silence | yes |
//!
//! Which request gets which fault is decided by a hash of the seed, the
//! request's method and target and how many times that same method and target
//! were seen before, so a run meets the same faults whatever order its
//! concurrent requests arrive in (and a retried request draws again).
//!
//! The proxy forwards bytes verbatim (SigV4 signs the Host header and the
//! target, which it leaves alone), one request at a time per client
//! connection, over one upstream connection per client connection.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What share of the requests meet which fault, in per mille.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub seed: u64,
    /// Requests answered by one of the non-stall faults (spread evenly over
    /// `slow_down`, `internal_error`, `reset`, `truncated_body` and
    /// `error_after_acting`), per mille.
    pub fault_per_mille: u64,
    /// Requests answered by silence (`stall`, or `stalled_body` for a response
    /// with a body), per mille.
    pub stall_per_mille: u64,
    /// How long a stalled connection is held open at most (the client is
    /// expected to give up long before).
    pub stall_hold: Duration,
}

impl FaultPlan {
    /// No faults: the proxy only forwards (a baseline).
    pub fn none() -> FaultPlan {
        FaultPlan {
            seed: 0,
            fault_per_mille: 0,
            stall_per_mille: 0,
            stall_hold: Duration::from_secs(0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    SlowDown,
    InternalError,
    Reset,
    TruncatedBody,
    ErrorAfterActing,
    Stall,
}

const NON_STALL_FAULTS: [Fault; 5] = [
    Fault::SlowDown,
    Fault::InternalError,
    Fault::Reset,
    Fault::TruncatedBody,
    Fault::ErrorAfterActing,
];

fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

/// FNV-1a, then mixed: a stable hash of the request's identity.
fn request_hash(seed: u64, identity: &str, occurrence: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in identity.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    mix(mix(seed ^ hash) ^ mix(occurrence.wrapping_add(0x9E37_79B9_7F4A_7C15)))
}

impl FaultPlan {
    fn choose(&self, identity: &str, occurrence: u64) -> Option<Fault> {
        let draw = request_hash(self.seed, identity, occurrence);
        let slot = draw % 1000;
        if slot < self.stall_per_mille {
            return Some(Fault::Stall);
        }
        if slot < self.stall_per_mille + self.fault_per_mille {
            let which = (draw / 1000) % NON_STALL_FAULTS.len() as u64;
            return Some(NON_STALL_FAULTS[which as usize]);
        }
        None
    }
}

#[derive(Default)]
struct Shared {
    /// How many times each "METHOD target" was seen.
    occurrences: BTreeMap<String, u64>,
    /// What the proxy did, by name: `forwarded`, and one count per fault.
    counts: BTreeMap<String, u64>,
    /// The requests that met a fault, as "fault METHOD target", in arrival order.
    log: Vec<String>,
    /// Buckets that answer only requests signed for their Region, as S3 does
    /// (see [`FaultProxy::place_bucket`]).
    bucket_regions: BTreeMap<String, String>,
}

/// A running fault proxy; stops accepting when dropped.
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stopping: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`
    /// (`http://host:port`).
    pub fn start(upstream: &str, plan: FaultPlan) -> anyhow::Result<FaultProxy> {
        let upstream_address = upstream
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("upstream {upstream} is not an http:// URL"))?
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stopping = Arc::new(AtomicBool::new(false));
        let plan = Arc::new(plan);
        {
            let shared = shared.clone();
            let stopping = stopping.clone();
            std::thread::spawn(move || {
                for connection in listener.incoming() {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = connection else { continue };
                    let shared = shared.clone();
                    let plan = plan.clone();
                    let upstream = upstream_address.clone();
                    std::thread::spawn(move || {
                        let _ = serve(client, &upstream, &plan, &shared);
                    });
                }
            });
        }
        Ok(FaultProxy {
            address,
            shared,
            stopping,
        })
    }

    /// The endpoint to give the client: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// What the proxy did so far: `forwarded` (answered as the server did),
    /// one count per fault kind, and the requests seen by name:
    /// `ListObjectsV2 <bucket>` and `HeadObject <bucket>` (path-style).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.lock().counts.clone()
    }

    /// The faulted requests, as "fault METHOD target", in arrival order.
    pub fn fault_log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// Makes the proxy answer for `bucket` as S3 does for a bucket in
    /// `region`: a request signed for another Region gets 301
    /// `PermanentRedirect` with the `x-amz-bucket-region` header (and is
    /// counted as `wrong_region`), never reaching the server; one signed for
    /// `region` is forwarded (counted as `signed_for_bucket_region`).
    pub fn place_bucket(&self, bucket: &str, region: &str) {
        self.lock()
            .bucket_regions
            .insert(bucket.to_owned(), region.to_owned());
    }

    /// Forgets the counts and the log (the occurrences stay, so the draws go on).
    pub fn reset_counts(&self) {
        let mut shared = self.lock();
        shared.counts.clear();
        shared.log.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
    }
}

fn count(shared: &Mutex<Shared>, what: &str, request: Option<&str>) {
    let mut shared = shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *shared.counts.entry(what.to_owned()).or_default() += 1;
    if let Some(request) = request {
        shared.log.push(format!("{what} {request}"));
    }
}

/// One HTTP message head: the start line, the headers, and the raw bytes.
struct Head {
    raw: Vec<u8>,
    start_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"))
    }

    fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|value| value.trim().parse().ok())
    }
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        let read = reader.read_until(b'\n', &mut raw)?;
        if read == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "truncated message head",
                ))
            };
        }
        let line = &raw[before..];
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                raw.clear();
                continue;
            }
            break;
        }
        if raw.len() > 1 << 20 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "message head over 1 MiB",
            ));
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Ok(Some(Head {
        raw,
        start_line,
        headers,
    }))
}

/// Reads a message body as framed by `head` (`no_body` for HEAD answers,
/// 1xx, 204 and 304), returning its raw bytes (chunk framing included).
fn read_body(reader: &mut impl BufRead, head: &Head, no_body: bool) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if no_body {
        return Ok(body);
    }
    if head.is_chunked() {
        loop {
            let mut line = Vec::new();
            reader.read_until(b'\n', &mut line)?;
            body.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let size_text = text
                .trim()
                .split(';')
                .next()
                .unwrap_or("0")
                .trim()
                .to_owned();
            let size = u64::from_str_radix(&size_text, 16).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
            })?;
            if size == 0 {
                loop {
                    let mut trailer = Vec::new();
                    if reader.read_until(b'\n', &mut trailer)? == 0 {
                        return Ok(body);
                    }
                    body.extend_from_slice(&trailer);
                    if trailer == b"\r\n" || trailer == b"\n" {
                        return Ok(body);
                    }
                }
            }
            let mut chunk = vec![0u8; (size + 2) as usize];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
        }
    }
    match head.content_length() {
        Some(length) => {
            let mut exact = vec![0u8; length as usize];
            reader.read_exact(&mut exact)?;
            body.extend_from_slice(&exact);
        }
        // A response without framing ends with the connection.
        None if !head.start_line.starts_with("HTTP/") => {}
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok(body)
}

/// The Region a SigV4 `Authorization` header is scoped to
/// (`Credential=AKID/DATE/REGION/SERVICE/aws4_request`).
fn signed_region(authorization: &str) -> Option<&str> {
    let scope = authorization.split("Credential=").nth(1)?;
    let scope = scope.split([',', ' ']).next()?;
    scope.split('/').nth(2)
}

/// S3's answer to a request for a bucket in `region` signed for another
/// one (no body for HEAD).
fn redirect_response(bucket: &str, region: &str, head: bool) -> Vec<u8> {
    let body = if head {
        String::new()
    } else {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Bucket>{bucket}</Bucket><Endpoint>s3.{region}.amazonaws.com</Endpoint><RequestId>redirect</RequestId></Error>"
        )
    };
    format!(
        "HTTP/1.1 301 Moved Permanently\r\nContent-Type: application/xml\r\nx-amz-bucket-region: {region}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn error_response(status: u16, reason: &str, code: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the fault proxy</Message><RequestId>fault</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amzn-ErrorType: {code}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Closes with a TCP reset rather than an orderly FIN.
fn reset(stream: &TcpStream) {
    // SO_LINGER 0: closing (when `serve` returns and drops every handle of
    // the socket) sends RST.
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Holds the connection open and sends nothing until the client gives up or
/// `hold` passes.
fn hold(client: &TcpStream, hold: Duration) {
    let deadline = std::time::Instant::now() + hold;
    let mut sink = [0u8; 4096];
    let mut reader = client;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        if client
            .set_read_timeout(Some(left.min(Duration::from_secs(1))))
            .is_err()
        {
            break;
        }
        match reader.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

fn serve(
    client: TcpStream,
    upstream_address: &str,
    plan: &FaultPlan,
    shared: &Mutex<Shared>,
) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut client_writer = client.try_clone()?;
    let mut client_reader = BufReader::with_capacity(64 * 1024, client.try_clone()?);
    let mut upstream: Option<(TcpStream, BufReader<TcpStream>)> = None;
    while let Some(request) = read_head(&mut client_reader)? {
        let request_body = read_body(&mut client_reader, &request, false)?;
        let mut parts = request.start_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let identity = format!("{method} {target}");
        let occurrence = {
            let mut shared = shared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let seen = shared.occurrences.entry(identity.clone()).or_default();
            *seen += 1;
            *seen
        };
        let bucket = target
            .trim_start_matches('/')
            .split(['/', '?'])
            .next()
            .unwrap_or_default();
        // What the request asked, by name (for tests that count them).
        if method == "GET" && target.contains("list-type=2") {
            count(shared, &format!("ListObjectsV2 {bucket}"), None);
        } else if method == "HEAD" && target.trim_start_matches('/').contains('/') {
            count(shared, &format!("HeadObject {bucket}"), None);
        } else if let Some(action) = request
            .header("x-amz-target")
            .and_then(|target| target.strip_prefix("AmazonSQS."))
        {
            count(shared, &format!("sqs {action}"), None);
        }
        let placed = shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .bucket_regions
            .get(bucket)
            .cloned();
        if let Some(region) = placed {
            let signed = request
                .header("authorization")
                .and_then(signed_region)
                .unwrap_or_default();
            if signed != region {
                count(shared, "wrong_region", Some(&identity));
                client_writer.write_all(&redirect_response(bucket, &region, method == "HEAD"))?;
                continue;
            }
            count(shared, "signed_for_bucket_region", None);
        }
        let fault = plan.choose(&identity, occurrence);
        match fault {
            Some(Fault::SlowDown) => {
                count(shared, "slow_down", Some(&identity));
                client_writer.write_all(&error_response(503, "Slow Down", "SlowDown"))?;
                continue;
            }
            Some(Fault::InternalError) => {
                count(shared, "internal_error", Some(&identity));
                client_writer.write_all(&error_response(
                    500,
                    "Internal Server Error",
                    "InternalError",
                ))?;
                continue;
            }
            Some(Fault::Reset) => {
                count(shared, "reset", Some(&identity));
                reset(&client);
                return Ok(());
            }
            _ => {}
        }
        // The server acts on everything else.
        if upstream.is_none() {
            let stream = TcpStream::connect(upstream_address)?;
            stream.set_nodelay(true)?;
            let reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
            upstream = Some((stream, reader));
        }
        let (upstream_writer, upstream_reader) = upstream.as_mut().expect("connected above");
        if fault == Some(Fault::Stall) {
            // Silence before the server sees anything, or (for an answer with
            // a body) after half of it: decided by the same draw.
            let mid_body = method == "GET"
                && request_hash(plan.seed ^ 0x5a11, &identity, occurrence).is_multiple_of(2);
            if !mid_body {
                count(shared, "stall", Some(&identity));
                hold(&client, plan.stall_hold);
                return Ok(());
            }
        }
        upstream_writer.write_all(&request.raw)?;
        upstream_writer.write_all(&request_body)?;
        let response = loop {
            let Some(response) = read_head(upstream_reader)? else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "upstream closed",
                ));
            };
            // Interim answers (100 Continue) are passed on as they are.
            if response.start_line.split_whitespace().nth(1) == Some("100") {
                client_writer.write_all(&response.raw)?;
                continue;
            }
            break response;
        };
        let status: u16 = response
            .start_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let no_body = method == "HEAD" || status == 204 || status == 304 || status < 200;
        let response_body = read_body(upstream_reader, &response, no_body)?;
        let upstream_closes = response
            .header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"));
        if upstream_closes {
            upstream = None;
        }
        let has_body = !no_body && !response.is_chunked() && response_body.len() >= 2;
        match fault {
            Some(Fault::TruncatedBody) if has_body => {
                count(shared, "truncated_body", Some(&identity));
                client_writer.write_all(&response.raw)?;
                client_writer.write_all(&response_body[..response_body.len() / 2])?;
                client_writer.flush()?;
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some(Fault::Stall) if has_body => {
                count(shared, "stalled_body", Some(&identity));
                client_writer.write_all(&response.raw)?;
                client_writer.write_all(&response_body[..response_body.len() / 2])?;
                client_writer.flush()?;
                hold(&client, plan.stall_hold);
                return Ok(());
            }
            Some(Fault::Stall) => {
                count(shared, "stall", Some(&identity));
                hold(&client, plan.stall_hold);
                return Ok(());
            }
            Some(Fault::TruncatedBody | Fault::ErrorAfterActing) => {
                count(shared, "error_after_acting", Some(&identity));
                client_writer.write_all(&error_response(
                    500,
                    "Internal Server Error",
                    "InternalError",
                ))?;
                continue;
            }
            _ => {}
        }
        count(shared, "forwarded", None);
        client_writer.write_all(&response.raw)?;
        client_writer.write_all(&response_body)?;
        if upstream_closes {
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_region_is_read_from_the_authorization_header() {
        assert_eq!(
            signed_region("AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=x"),
            Some("eu-west-1")
        );
        assert_eq!(signed_region("Basic x"), None);
    }

    #[test]
    fn draws_are_seeded_and_near_the_planned_shares() {
        let plan = FaultPlan {
            seed: 7,
            fault_per_mille: 200,
            stall_per_mille: 20,
            stall_hold: Duration::from_secs(1),
        };
        let mut faults = 0;
        let mut stalls = 0;
        for index in 0..20_000u64 {
            let identity = format!("GET /bucket/key-{index}");
            assert_eq!(plan.choose(&identity, 1), plan.choose(&identity, 1));
            match plan.choose(&identity, 1) {
                Some(Fault::Stall) => stalls += 1,
                Some(_) => faults += 1,
                None => {}
            }
        }
        assert!((3_700..4_300).contains(&faults), "{faults} faults");
        assert!((300..500).contains(&stalls), "{stalls} stalls");
        assert_eq!(FaultPlan::none().choose("GET /b/k", 1), None);
    }
}
