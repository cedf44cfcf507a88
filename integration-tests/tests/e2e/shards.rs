//! `--shard K/N` on the emulator (AUTH=true): three shards run at the same
//! time give the same archive, the same findings and the same exit status as
//! one unsharded run; a store is bound to its shard.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;

use trailvault_integration_tests::sim::{
    ChainSelector, ProvisionOptions, Sim, Tamper, TrailKind, ARCHIVE_PREFIX,
};
use trailvault_pipeline::model::shard::shard_of;

use crate::cli::{command, options_in, run, write_config};
use crate::collect::provision;

const SHARDS: u32 = 3;

/// Every archived copy and ledger object under `prefix`, with the prefix
/// cut off: key -> number of versions.
async fn archived(sim: &Sim, prefix: &str) -> BTreeMap<String, usize> {
    let s3 = trailvault_integration_tests::harness::s3_client(&sim.collector_sdk_config());
    let mut out = BTreeMap::new();
    let mut key_marker = None;
    let mut version_marker = None;
    loop {
        let page = s3
            .list_object_versions()
            .bucket(&sim.org.archive_bucket)
            .prefix(format!("{prefix}/"))
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .expect("list archive versions");
        for version in page.versions() {
            let key = version.key().unwrap();
            *out.entry(key[prefix.len() + 1..].to_string()).or_insert(0) += 1;
        }
        if !page.is_truncated().unwrap_or(false) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
    out
}

/// The identities of the recorded findings of one store.
fn findings(sim: &Sim, config: &Path, shard: Option<&str>) -> BTreeSet<String> {
    let mut args = vec!["--json"];
    if let Some(shard) = shard {
        args.extend(["--shard", shard]);
    }
    args.push("findings");
    let listed = run(sim, config, &args);
    let document = listed.json();
    document["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("findings: {document}"))
        .iter()
        .map(|f| {
            format!(
                "{}|{}|{}|{}|{}",
                f["kind"], f["account_id"], f["bucket"], f["key"], f["region"]
            )
        })
        .collect()
}

fn exit_code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_concurrent_shards_equal_one_unsharded_run() {
    let mut sim = provision(
        ProvisionOptions {
            members: 3,
            ..ProvisionOptions::default()
        },
        6,
    )
    .await;
    // One member per shard (pinned by the hash's unit tests).
    let members: Vec<String> = sim
        .org
        .members
        .iter()
        .map(|m| m.account_id.clone())
        .collect();
    let owners: BTreeSet<u32> = members.iter().map(|id| shard_of(id, SHARDS)).collect();
    assert_eq!(owners.len(), 3, "one member per shard: {members:?}");
    // Tampering in each member's history, per-account and organization trails.
    for (tamper, selector) in [
        (Tamper::DeleteLog, ChainSelector::default()),
        (
            Tamper::ModifyLog,
            ChainSelector {
                member: 1,
                region: 0,
                trail: TrailKind::Organization,
            },
        ),
        (
            Tamper::DeleteLog,
            ChainSelector {
                member: 2,
                region: 1,
                trail: TrailKind::Organization,
            },
        ),
    ] {
        sim.tamper_on(tamper, selector)
            .await
            .unwrap_or_else(|e| panic!("tamper {tamper}: {e:#}"));
    }

    let dir = tempfile::tempdir().unwrap();
    let sharded_config = write_config(&sim, dir.path(), options_in(&sim, dir.path()));

    // The shards, all at once; two take their index from the engines' variables.
    let mut children = Vec::new();
    for index in 0..SHARDS {
        let mut shard = command(&sim, &sharded_config, &["--json", "collect"]);
        match index {
            0 => {
                shard.args(["--shard", "0/3"]);
            }
            1 => {
                shard
                    .env("JOB_COMPLETION_INDEX", "1")
                    .env("TRAILVAULT_SHARD", "env/3");
            }
            _ => {
                shard
                    .env("AWS_BATCH_JOB_ARRAY_INDEX", "2")
                    .args(["--shard", "env/3"]);
            }
        }
        shard
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push(shard.spawn().expect("start a shard"));
    }
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|child| child.wait_with_output().expect("shard output"))
        .collect();
    for (index, output) in outputs.iter().enumerate() {
        eprintln!(
            "--- shard {index} -> exit {}\n{}",
            exit_code(output),
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("a JSON report");
        assert_eq!(report["stats"]["accounts"], 1, "shard {index}: {report}");
        assert_eq!(report["stats"]["errors"], 0, "shard {index}: {report}");
    }
    let sharded_exit = outputs.iter().map(exit_code).max().unwrap();
    for index in 0..SHARDS {
        let store = dir.path().join(format!("store.shard-{index}-of-3"));
        assert!(store.is_dir(), "shard {index} has its own store");
    }
    let shard_findings: Vec<BTreeSet<String>> = (0..SHARDS)
        .map(|index| findings(&sim, &sharded_config, Some(&format!("{index}/3"))))
        .collect();
    for (index, found) in shard_findings.iter().enumerate() {
        assert!(!found.is_empty(), "shard {index} found its tampering");
    }
    let union: BTreeSet<String> = shard_findings.iter().flatten().cloned().collect();

    // The same organization, unsharded, into a fresh archive (another prefix
    // of the same bucket) with its own store.
    let fresh = "unsharded";
    let unsharded_dir = tempfile::tempdir().unwrap();
    let unsharded_config = write_config(
        &sim,
        unsharded_dir.path(),
        options_in(&sim, unsharded_dir.path()),
    );
    let text = std::fs::read_to_string(&unsharded_config).unwrap();
    let from = format!("prefix = \"{ARCHIVE_PREFIX}\"");
    assert!(text.contains(&from), "{text}");
    std::fs::write(
        &unsharded_config,
        text.replace(&from, &format!("prefix = \"{fresh}\"")),
    )
    .unwrap();
    let unsharded = run(&sim, &unsharded_config, &["--json", "collect"]);
    assert_eq!(
        unsharded.code, 3,
        "tampering is found: {}",
        unsharded.stderr
    );
    assert_eq!(sharded_exit, unsharded.code, "the same exit status");
    assert_eq!(
        union,
        findings(&sim, &unsharded_config, None),
        "the union of the shards' findings is the unsharded run's"
    );

    // The same archive: every copy, once, with the same number of versions.
    let is_ledger = |key: &String| key.starts_with("_trailvault/");
    let mut sharded_archive = archived(&sim, ARCHIVE_PREFIX).await;
    let mut unsharded_archive = archived(&sim, fresh).await;
    let sharded_ledger: Vec<String> = sharded_archive
        .keys()
        .filter(|k| is_ledger(k))
        .cloned()
        .collect();
    sharded_archive.retain(|key, _| !is_ledger(key));
    unsharded_archive.retain(|key, _| !is_ledger(key));
    assert!(sharded_archive.len() > 50, "{}", sharded_archive.len());
    assert_eq!(sharded_archive, unsharded_archive, "the same archive");
    // Each shard wrote its findings to the ledger under its own keys.
    for index in 0..SHARDS {
        let label = format!("-shard-{index}-of-3");
        assert!(
            sharded_ledger.iter().any(|key| key.contains(&label)),
            "{label} in {sharded_ledger:?}"
        );
    }

    // A rerun of every shard copies nothing and keeps the status.
    for index in 0..SHARDS {
        let shard = format!("{index}/3");
        let again = run(
            &sim,
            &sharded_config,
            &["--json", "--shard", &shard, "collect"],
        );
        assert_eq!(again.code, 3, "{}", again.stderr);
        assert_eq!(again.json()["stats"]["objects_copied"], 0);
    }

    // A store is bound to its shard: another shard's store is refused.
    let foreign = dir.path().join("store.shard-1-of-3");
    std::fs::remove_dir_all(&foreign).unwrap();
    copy_dir(&dir.path().join("store.shard-0-of-3"), &foreign);
    let refused = run(&sim, &sharded_config, &["--shard", "1/3", "verify"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("belongs to shard 0/3; this run is shard 1/3"),
        "{}",
        refused.stderr
    );
    for (args, message) in [
        (
            vec!["--shard", "3/3", "collect"],
            "not below the shard count 3",
        ),
        (vec!["--shard", "env/3", "collect"], "neither is set"),
        (
            vec!["--shard", "0/3", "retention", "--full"],
            "without --shard",
        ),
    ] {
        let usage = run(&sim, &sharded_config, &args);
        assert_eq!(usage.code, 2, "{args:?}: {}", usage.stderr);
        assert!(usage.stderr.contains(message), "{args:?}: {}", usage.stderr);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
