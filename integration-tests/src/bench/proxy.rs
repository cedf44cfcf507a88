//! A counting HTTP/1.1 proxy in front of the S3 server: it forwards bytes verbatim
//! (SigV4 signs the Host header, which the proxy leaves alone) and counts every
//! request by S3 operation, so trailvault, rclone and the AWS CLI are all counted
//! the same way, independent of their own logging.
//!
//! Why not SeaweedFS's Prometheus counters: `SeaweedFS_s3_request_total` files
//! HEAD requests under `type="GET"`, so "no HEAD or GET" cannot be told apart
//! there (the benchmark still records those counters as a cross-check).
//!
//! Control: `GET /__trailbench/counts` answers the counts as JSON,
//! `GET /__trailbench/reset` answers them and starts again from zero.
//!
//! Part of the `trailbench` binary (included with `#[path]`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

/// Query parameters of a bucket listing (v1), as opposed to subresources.
const LIST_PARAMETERS: [&str; 5] = ["prefix", "delimiter", "marker", "max-keys", "encoding-type"];

/// The S3 operation of a path-style request.
pub fn classify(method: &str, target: &str, headers: &[(String, String)]) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or(p, |(name, _)| name))
        // The Rust SDK tags requests with `x-id=<Operation>`; it is no subresource.
        .filter(|name| *name != "x-id")
        .collect();
    let has = |name: &str| params.contains(&name);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let trimmed = path.trim_start_matches('/');
    let segments: Vec<&str> = trimmed.splitn(2, '/').collect();
    let service = trimmed.is_empty();
    let bucket_level = segments.len() < 2 || segments[1].is_empty();
    let name = match (method, service, bucket_level) {
        ("POST", _, _) if header("x-amz-target").is_some() => {
            format!("POST {}", header("x-amz-target").unwrap_or_default())
        }
        ("GET", true, _) => "ListBuckets".into(),
        ("GET", false, true) => {
            if has("list-type") {
                "ListObjectsV2".into()
            } else if has("versions") {
                "ListObjectVersions".into()
            } else if has("uploads") {
                "ListMultipartUploads".into()
            } else if let Some(sub) = params.iter().find(|p| !LIST_PARAMETERS.contains(p)) {
                format!("GetBucket:{sub}")
            } else {
                // ListObjects (v1): no parameters, or only listing parameters.
                "ListObjects".into()
            }
        }
        ("GET", false, false) => {
            if has("uploadId") {
                "ListParts".into()
            } else if let Some(sub) = params
                .iter()
                .find(|p| ["retention", "legal-hold", "tagging", "acl", "attributes"].contains(p))
            {
                format!("GetObject:{sub}")
            } else {
                "GetObject".into()
            }
        }
        ("HEAD", _, true) => "HeadBucket".into(),
        ("HEAD", _, false) => "HeadObject".into(),
        ("PUT", _, true) => match params.first() {
            Some(sub) => format!("PutBucket:{sub}"),
            None => "CreateBucket".into(),
        },
        ("PUT", _, false) => {
            if has("partNumber") && header("x-amz-copy-source").is_some() {
                "UploadPartCopy".into()
            } else if has("partNumber") {
                "UploadPart".into()
            } else if header("x-amz-copy-source").is_some() {
                "CopyObject".into()
            } else if let Some(sub) = params.first() {
                format!("PutObject:{sub}")
            } else {
                "PutObject".into()
            }
        }
        ("POST", _, _) => {
            if has("uploads") {
                "CreateMultipartUpload".into()
            } else if has("uploadId") {
                "CompleteMultipartUpload".into()
            } else if has("delete") {
                "DeleteObjects".into()
            } else {
                "POST".into()
            }
        }
        ("DELETE", _, true) => "DeleteBucket".into(),
        ("DELETE", _, false) => {
            if has("uploadId") {
                "AbortMultipartUpload".into()
            } else {
                "DeleteObject".into()
            }
        }
        (other, _, _) => other.to_owned(),
    };
    name
}

/// The coarse type the issue talks about: LIST, HEAD, GET, PUT or OTHER.
/// HEAD and GET are of objects; `HeadBucket` (a bucket's Region, asked once
/// per bucket per run) is a bucket-level request like `GetBucket:*`: OTHER.
pub fn request_type(operation: &str) -> &'static str {
    match operation {
        "ListObjectsV2"
        | "ListObjects"
        | "ListObjectVersions"
        | "ListMultipartUploads"
        | "ListBuckets"
        | "ListParts" => "LIST",
        "HeadObject" => "HEAD",
        "GetObject" => "GET",
        "PutObject"
        | "UploadPart"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "CompleteMultipartUpload" => "PUT",
        _ => "OTHER",
    }
}

fn counts_json(counts: &BTreeMap<String, u64>) -> String {
    let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
    for (operation, count) in counts {
        *by_type.entry(request_type(operation)).or_default() += count;
    }
    serde_json::json!({
        "total": counts.values().sum::<u64>(),
        "by_type": by_type,
        "by_operation": counts,
    })
    .to_string()
}

fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let read = reader.read_until(b'\n', &mut head)?;
        if read == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "truncated request head",
                ))
            };
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                // Stray empty line between requests.
                head.clear();
                continue;
            }
            return Ok(Some(head));
        }
        if head.len() > 1 << 20 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head over 1 MiB",
            ));
        }
    }
}

fn forward_exact(
    reader: &mut BufReader<TcpStream>,
    upstream: &mut TcpStream,
    length: u64,
) -> std::io::Result<()> {
    let copied = std::io::copy(&mut reader.take(length), upstream)?;
    if copied != length {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "truncated request body",
        ));
    }
    Ok(())
}

fn forward_chunked(
    reader: &mut BufReader<TcpStream>,
    upstream: &mut TcpStream,
) -> std::io::Result<()> {
    loop {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line)?;
        upstream.write_all(&line)?;
        let text = String::from_utf8_lossy(&line);
        let size_text = text.trim().split(';').next().unwrap_or("0").to_owned();
        let size = u64::from_str_radix(size_text.trim(), 16)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let mut trailer = Vec::new();
                if reader.read_until(b'\n', &mut trailer)? == 0 {
                    return Ok(());
                }
                upstream.write_all(&trailer)?;
                if trailer == b"\r\n" || trailer == b"\n" {
                    return Ok(());
                }
            }
        }
        forward_exact(reader, upstream, size + 2)?;
    }
}

fn handle(client: TcpStream, upstream_address: &str, counts: &Counts) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut upstream = TcpStream::connect(upstream_address)?;
    upstream.set_nodelay(true)?;
    let mut upstream_reader = upstream.try_clone()?;
    let mut client_writer = client.try_clone()?;
    let responses = std::thread::spawn(move || {
        let _ = std::io::copy(&mut upstream_reader, &mut client_writer);
        let _ = client_writer.shutdown(Shutdown::Write);
    });
    let mut control_writer = client.try_clone()?;
    let mut reader = BufReader::with_capacity(64 * 1024, client);
    while let Some(head) = read_head(&mut reader)? {
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        if let Some(command) = target.strip_prefix("/__trailbench/") {
            let body = {
                let mut guard = counts
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let body = counts_json(&guard);
                if command.starts_with("reset") {
                    guard.clear();
                }
                body
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            control_writer.write_all(response.as_bytes())?;
            let _ = control_writer.shutdown(Shutdown::Both);
            break;
        }
        let operation = classify(&method, &target, &headers);
        *counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(operation)
            .or_default() += 1;
        upstream.write_all(&head)?;
        let header = |name: &str| {
            headers
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            forward_chunked(&mut reader, &mut upstream)?;
        } else if let Some(length) = header("content-length").and_then(|v| v.parse::<u64>().ok()) {
            forward_exact(&mut reader, &mut upstream, length)?;
        }
    }
    let _ = upstream.shutdown(Shutdown::Write);
    let _ = responses.join();
    Ok(())
}

/// Serves until the process is killed.
pub fn run(listen: &str, upstream: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .map_err(|error| anyhow::anyhow!("listen on {listen}: {error}"))?;
    eprintln!("trailbench proxy: {listen} -> {upstream}");
    let counts: Counts = Arc::new(Mutex::new(BTreeMap::new()));
    for connection in listener.incoming() {
        let Ok(client) = connection else { continue };
        let counts = counts.clone();
        let upstream = upstream.to_owned();
        std::thread::spawn(move || {
            let _ = handle(client, &upstream, &counts);
        });
    }
    Ok(())
}
