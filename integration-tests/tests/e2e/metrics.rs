//! The daemon's metrics endpoint (`run --metrics-addr`): scraped while the
//! daemon runs on the emulator, its figures move with the runs.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use trailvault_integration_tests::sim::ProvisionOptions;

use crate::cli::{command, options_in, write_config};
use crate::collect::{provision, stat};
use crate::ops::{stdout_lines, terminate, wait_for_exit};

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics`: the status line and the body, or `None` while nothing listens.
fn scrape(addr: SocketAddr) -> Option<(String, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: trailvault\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

/// The value of the sample named `series` (name and labels, as written).
/// The daemon, killed if the test panics before it stopped it.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for KilledOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KilledOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

fn must(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no {series} in the metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_serves_metrics_that_move_with_its_runs() {
    let sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            history_hours: 2,
            ..ProvisionOptions::default()
        },
        2,
    )
    .await;
    let member = sim.org.members[0].account_id.clone();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));

    // An address that cannot be served is a usage error, before any work.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let refused = command(
        &sim,
        &config,
        &["run", "--interval", "1h", "--metrics-addr", &taken_addr],
    )
    .output()
    .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("cannot serve metrics"), "{stderr}");
    assert!(!dir.path().join("store").exists(), "nothing was done");
    drop(taken);

    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut daemon = command(
        &sim,
        &config,
        &[
            "--json",
            "run",
            "--interval",
            "1h",
            "--metrics-addr",
            &addr.to_string(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .map(KilledOnDrop)
    .unwrap();
    let lines = stdout_lines(&mut daemon);

    // Served from the start, before the first run ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (head, early) = loop {
        if let Some(answer) = scrape(addr) {
            break answer;
        }
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        assert!(Instant::now() < deadline, "no metrics endpoint on {addr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("application/openmetrics-text"),
        "OpenMetrics: {head}"
    );
    assert!(early.ends_with("# EOF\n"), "{early}");
    let copied_early = must(&early, "trailvault_objects_copied_total");

    let first: serde_json::Value =
        serde_json::from_str(&lines.recv_timeout(Duration::from_secs(120)).unwrap()).unwrap();
    let copied = stat(&first, "objects_copied");
    assert!(copied > 0, "{first}");
    let (_, after) = scrape(addr).expect("metrics after the first run");
    assert_eq!(
        must(&after, "trailvault_objects_copied_total"),
        copied as f64,
        "objects copied: {after}"
    );
    assert!(copied_early <= copied as f64, "counters only grow");
    assert_eq!(
        must(&after, "trailvault_copied_bytes_total"),
        stat(&first, "bytes_copied") as f64
    );
    assert_eq!(must(&after, "trailvault_copy_failures_total"), 0.0);
    assert_eq!(
        must(&after, "trailvault_runs_total{outcome=\"clean\"}"),
        1.0,
        "{after}"
    );
    assert!(must(&after, "trailvault_run_duration_seconds_count") >= 1.0);
    let last_success = must(&after, "trailvault_last_success_timestamp_seconds");
    let finished: chrono::DateTime<chrono::Utc> =
        first["finished_at"].as_str().unwrap().parse().unwrap();
    assert!(
        (last_success - finished.timestamp_millis() as f64 / 1000.0).abs() < 1.0,
        "last success {last_success} vs the run's end {finished}"
    );
    // Every object copied was one PutObject that succeeded, through the retry seam.
    assert!(
        must(
            &after,
            "trailvault_s3_requests_total{operation=\"PutObject\",outcome=\"ok\"}"
        ) >= copied as f64,
        "{after}"
    );
    assert!(
        must(
            &after,
            "trailvault_s3_requests_total{operation=\"ListObjectsV2\",outcome=\"ok\"}"
        ) > 0.0
    );
    // Retries are counted twice, by outcome and on their own (a family with
    // no sample yet is not printed at all).
    let total = |prefix: &str, filter: &str| -> f64 {
        after
            .lines()
            .filter(|line| line.starts_with(prefix) && line.contains(filter))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(
        total("trailvault_retries_total{", ""),
        total("trailvault_s3_requests_total{", "outcome=\"retried\""),
        "{after}"
    );
    // The store's figures: lag of the member, validation lag of its chain,
    // findings open (none).
    let lag = must(
        &after,
        &format!("trailvault_account_lag_seconds{{account=\"{member}\"}}"),
    );
    assert!(lag >= 0.0, "lag {lag}");
    assert!(
        after.lines().any(
            |line| line.starts_with("trailvault_chain_validation_lag_seconds{")
                && line.contains(&format!("account=\"{member}\""))
        ),
        "{after}"
    );
    assert_eq!(
        must(
            &after,
            "trailvault_findings_open{kind=\"digest_missing\",severity=\"critical\"}"
        ),
        0.0
    );

    terminate(&daemon);
    assert_eq!(wait_for_exit(&mut daemon, Duration::from_secs(30)), 0);
    assert!(scrape(addr).is_none(), "the endpoint ends with the daemon");
}
