//! The coverage report (`report --html FILE`, `--json`) of a simulated
//! organization with tampering, loaded in a real headless browser (Debian's
//! `chromium`): it renders without console errors, a screenshot is taken,
//! and the grid shows the tampered days as findings.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trailvault_integration_tests::sim::{ChainSelector, ProvisionOptions, Tamper};

use crate::cli::{options_in, run, write_config};
use crate::collect::provision;

/// Debian's chromium; the test fails (never skips) without it.
fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "chromium is not installed: the coverage report is tested in a real browser \
             (scripts/test installs Debian's chromium package: apt-get install chromium)"
        )
    })
}

/// Runs chromium headless on `page` with `extra` arguments; returns (stdout, stderr).
fn headless(page: &Path, profile: &Path, extra: &[String]) -> (String, String) {
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--enable-logging=stderr",
            "--v=0",
            "--no-first-run",
            "--disable-extensions",
            "--window-size=1600,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("start chromium");
    let started = Instant::now();
    let id = child.id();
    // Whatever happens, chromium does not outlive the test by long.
    let watchdog = std::thread::spawn(move || {
        while started.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(200));
            if !Path::new(&format!("/proc/{id}")).exists() {
                return;
            }
        }
        let _ = Command::new("kill")
            .args(["-KILL", &id.to_string()])
            .status();
    });
    let output = child.wait_with_output().expect("chromium output");
    let _ = watchdog.join();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "chromium failed ({:?}):\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

/// Console messages chromium logged (there is no script: any is an error,
/// e.g. a Content-Security-Policy refusal).
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| {
            line.contains(":CONSOLE")
                || line.contains("Uncaught")
                || line.contains("Refused to")
                || line.contains("ERR_FILE_NOT_FOUND")
        })
        .collect()
}

/// The value of attribute `name` in one tag's text.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let length = tag[start..].find('"')?;
    Some(&tag[start..start + length])
}

/// (account, region, day, status) of every grid cell in the DOM.
fn grid_cells(dom: &str) -> Vec<(String, String, String, String)> {
    dom.match_indices("<td ")
        .filter_map(|(start, _)| {
            let tag = &dom[start..start + dom[start..].find('>')?];
            Some((
                attribute(tag, "data-account")?.to_string(),
                attribute(tag, "data-region")?.to_string(),
                attribute(tag, "data-day")?.to_string(),
                attribute(tag, "data-status")?.to_string(),
            ))
        })
        .collect()
}

/// Account, region and day (`YYYY-MM-DD`) of a trail key.
fn cell_of(key: &str) -> (String, String, String) {
    let parts: Vec<&str> = key.split('/').collect();
    let n = parts.len();
    assert!(n >= 7, "not a trail key: {key}");
    (
        parts[n - 7].to_string(),
        parts[n - 5].to_string(),
        format!("{}-{}-{}", parts[n - 4], parts[n - 3], parts[n - 2]),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_html_report_shows_tampered_days_as_findings_in_a_real_browser() {
    let browser = chromium();
    let mut sim = provision(
        ProvisionOptions {
            members: 3,
            org_trail: false,
            history_hours: 6,
            ..ProvisionOptions::default()
        },
        6,
    )
    .await;
    let deleted = sim.tamper(Tamper::DeleteLog).await.unwrap();
    let selector = ChainSelector {
        member: 1,
        ..sim.default_selector()
    };
    let modified = sim.tamper_on(Tamper::ModifyLog, selector).await.unwrap();
    let untouched = sim.org.members[2].account_id.clone();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));

    // Before anything was collected there is no store to report on.
    let early = run(&sim, &config, &["report"]);
    assert_eq!(early.code, 1, "{}", early.stderr);
    assert!(
        early.stderr.contains("nothing was collected yet"),
        "{}",
        early.stderr
    );

    let collect = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(collect.code, 3, "{}", collect.stdout);

    let page = dir.path().join("coverage report.html");
    let report = run(
        &sim,
        &config,
        &[
            "--json",
            "report",
            "--html",
            page.to_str().unwrap(),
            "--days",
            "7",
        ],
    );
    assert_eq!(report.code, 0, "{}", report.stderr);
    let json = report.json();
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script"), "no script in the page");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network"
    );
    assert!(html.contains("<svg"), "pictures as inline SVG");

    // The JSON: tampered days are findings, the untouched member has none.
    let tampered: BTreeSet<(String, String, String)> =
        [cell_of(&deleted.key), cell_of(&modified.key)].into();
    let cells = json["cells"].as_array().unwrap();
    for (account, region, day) in &tampered {
        let cell = cells
            .iter()
            .find(|c| c["account_id"] == *account && c["region"] == *region && c["day"] == *day)
            .unwrap_or_else(|| panic!("no cell {account} {region} {day} in {json}"));
        assert_eq!(cell["status"], "findings", "{cell}");
    }
    assert!(
        cells
            .iter()
            .filter(|c| c["account_id"] == untouched.as_str())
            .all(|c| c["status"] == "validated"),
        "{json}"
    );
    let listed = json["findings"]["listed"].as_array().unwrap();
    assert!(listed
        .iter()
        .any(|f| f["kind"] == "log_file_missing" && f["key"] == deleted.key.as_str()));
    assert!(listed
        .iter()
        .any(|f| f["kind"] == "log_file_hash_mismatch" && f["key"] == modified.key.as_str()));
    assert!(!json["chains"].as_array().unwrap().is_empty());
    assert_eq!(json["runs"][0]["command"], "collect");

    // The browser: renders without console errors, a screenshot, the DOM grid.
    let profile = tempfile::tempdir().unwrap();
    let screenshot = dir.path().join("report.png");
    let (_, stderr) = headless(
        &page,
        profile.path(),
        &[format!("--screenshot={}", screenshot.display())],
    );
    assert!(
        console_errors(&stderr).is_empty(),
        "console errors:\n{stderr}"
    );
    let png = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot from {}: {e}\n{stderr}", browser.display()));
    assert!(png.len() > 10_000, "a {} byte screenshot", png.len());
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let (dom, stderr) = headless(&page, profile.path(), &["--dump-dom".to_string()]);
    assert!(
        console_errors(&stderr).is_empty(),
        "console errors:\n{stderr}"
    );
    assert!(dom.contains("trailvault coverage report"), "{dom}");
    let grid = grid_cells(&dom);
    assert!(!grid.is_empty(), "no grid in the DOM:\n{dom}");
    for (account, region, day) in &tampered {
        assert!(
            grid.iter().any(|(a, r, d, status)| a == account
                && r == region
                && d == day
                && status == "findings"),
            "{account} {region} {day} is not shown as findings: {grid:?}"
        );
    }
    assert!(
        grid.iter()
            .filter(|(account, _, _, _)| *account == untouched)
            .all(|(_, _, _, status)| status != "findings"),
        "{grid:?}"
    );
    assert!(grid.iter().any(|(_, _, _, status)| status == "validated"));
    // The evidence of the altered log: its archived copy's key.
    let archive_key = listed
        .iter()
        .find(|f| f["kind"] == "log_file_hash_mismatch")
        .and_then(|f| f["archive_key"].as_str())
        .expect("the altered log's archived copy is its evidence");
    assert!(
        dom.contains(&format!("s3://{}/{archive_key}", sim.org.archive_bucket)),
        "{dom}"
    );
}
