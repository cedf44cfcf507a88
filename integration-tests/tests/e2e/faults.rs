//! `collect` (with its validation) through the fault proxy
//! (`trailvault_integration_tests::faults`): a seeded share of the requests
//! answered by throttling, 500s, resets, bodies cut mid-stream, 500s after the
//! server acted, or silence. The archive must come out exactly right, every
//! expected finding found, no operational error left, and stalled requests
//! must cost timeouts, not the stall's length.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use trailvault_integration_tests::faults::{FaultPlan, FaultProxy};
use trailvault_integration_tests::sim::{ProvisionOptions, Sim, Tamper};

use crate::cli::{options_in, run, write_config, Run};
use crate::collect::{assert_archive_matches_sources, finding_kinds, provision, stat};

/// A proxy in front of the emulator, and the run's configuration pointing at
/// it, with timeouts a test can wait for.
pub(crate) fn config_through(sim: &Sim, dir: &Path, proxy: &FaultProxy) -> std::path::PathBuf {
    let config = write_config(sim, dir, options_in(sim, dir));
    let text = std::fs::read_to_string(&config).unwrap();
    let endpoint_line = format!("endpoint_url = \"{}\"", sim.org.endpoint);
    assert!(text.contains(&endpoint_line), "{text}");
    let text = text.replace(
        &endpoint_line,
        &format!(
            "endpoint_url = \"{}\"\nconnect_timeout_seconds = 2\nread_timeout_seconds = 2\nattempt_timeout_seconds = 5",
            proxy.endpoint()
        ),
    );
    std::fs::write(&config, text).unwrap();
    config
}

fn collect_through(sim: &Sim, plan: FaultPlan) -> (Run, Duration, FaultProxy) {
    let proxy = FaultProxy::start(&sim.org.endpoint, plan).expect("start the fault proxy");
    let dir = tempfile::tempdir().unwrap();
    let config = config_through(sim, dir.path(), &proxy);
    let started = Instant::now();
    let result = run(sim, &config, &["--json", "collect"]);
    let took = started.elapsed();
    eprintln!(
        "collect took {took:?}; proxy: {:?}\nfaults:\n{}",
        proxy.counts(),
        proxy.fault_log().join("\n")
    );
    (result, took, proxy)
}

fn finding_set(report: &serde_json::Value) -> BTreeSet<(String, String)> {
    finding_kinds(report).into_iter().collect()
}

/// A simulation with findings to find: a deleted log, a rewritten log, a
/// deleted digest.
async fn tampered_sim() -> Sim {
    let mut sim = provision(
        ProvisionOptions {
            members: 2,
            history_hours: 6,
            ..ProvisionOptions::default()
        },
        6,
    )
    .await;
    for tamper in [Tamper::DeleteLog, Tamper::ModifyLog, Tamper::DeleteDigest] {
        sim.tamper(tamper).await.expect("tamper");
    }
    sim
}

/// The same collect, through a proxy without faults, into a fresh archive
/// prefix: what the run finds without faults, and how long it takes.
fn fault_free_baseline(sim: &mut Sim) -> (serde_json::Value, Duration) {
    sim.org.archive_prefix = format!("{}-baseline", sim.org.archive_prefix);
    let (baseline, took, proxy) = collect_through(sim, FaultPlan::none());
    assert!(
        proxy.counts().get("forwarded").copied().unwrap_or(0) > 100,
        "{:?}",
        proxy.counts()
    );
    assert_eq!(baseline.code, 3, "findings expected: {}", baseline.stderr);
    let report = baseline.json();
    assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{report}");
    (report, took)
}

#[tokio::test(flavor = "multi_thread")]
async fn collect_through_20_percent_faults_archives_exactly_and_finds_everything() {
    let mut sim = tampered_sim().await;
    let (faulted, _, proxy) = collect_through(
        &sim,
        FaultPlan {
            seed: 0x00fa_0175,
            fault_per_mille: 200,
            stall_per_mille: 0,
            stall_hold: Duration::from_secs(0),
        },
    );
    let counts = proxy.counts();
    // Not vacuous: every kind of fault was met, bodies cut mid-stream included.
    for kind in [
        "slow_down",
        "internal_error",
        "reset",
        "truncated_body",
        "error_after_acting",
    ] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) > 0,
            "no {kind}: {counts:?}"
        );
    }
    assert_eq!(faulted.code, 3, "findings expected: {}", faulted.stderr);
    let report = faulted.json();
    assert_eq!(
        report["errors"].as_array().unwrap().len(),
        0,
        "no operational error may be left: {}",
        report["errors"]
    );
    assert_archive_matches_sources(&sim).await;
    let found = finding_set(&report);
    let (baseline, _) = fault_free_baseline(&mut sim);
    let expected = finding_set(&baseline);
    for kind in [
        "log_file_missing",
        "log_file_hash_mismatch",
        "digest_missing",
    ] {
        assert!(
            expected.iter().any(|(found_kind, _)| found_kind == kind),
            "baseline lacks {kind}: {expected:?}"
        );
    }
    assert_eq!(found, expected, "findings through faults vs without");
    assert_eq!(
        stat(&report, "objects_copied"),
        stat(&baseline, "objects_copied")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn collect_through_2_percent_stalls_finishes_within_a_small_multiple_of_the_fault_free_time()
{
    let mut sim = tampered_sim().await;
    let (stalled, stalled_took, proxy) = collect_through(
        &sim,
        FaultPlan {
            seed: 0x057a_11ed,
            fault_per_mille: 0,
            stall_per_mille: 20,
            // Far longer than any timeout: a run that waits for the stall to
            // end fails the time bound below.
            stall_hold: Duration::from_secs(300),
        },
    );
    let counts = proxy.counts();
    let stalls = counts.get("stall").copied().unwrap_or(0);
    let stalled_bodies = counts.get("stalled_body").copied().unwrap_or(0);
    assert!(
        stalls > 0 && stalled_bodies > 0,
        "silence before and during a body must both be met: {counts:?}"
    );
    assert_eq!(stalled.code, 3, "findings expected: {}", stalled.stderr);
    let report = stalled.json();
    assert_eq!(
        report["errors"].as_array().unwrap().len(),
        0,
        "{}",
        report["errors"]
    );
    assert_archive_matches_sources(&sim).await;
    let found = finding_set(&report);
    let (baseline, baseline_took) = fault_free_baseline(&mut sim);
    assert_eq!(found, finding_set(&baseline));
    // Each stall costs about one timeout (2 s here) plus a backoff, and stalls
    // overlap with the other in-flight requests: a small multiple.
    let bound = baseline_took * 4 + Duration::from_secs(20);
    eprintln!("fault-free: {baseline_took:?}, 2 % stalled: {stalled_took:?}, bound {bound:?}");
    assert!(
        stalled_took <= bound,
        "stalled run took {stalled_took:?}, fault-free {baseline_took:?}"
    );
}
