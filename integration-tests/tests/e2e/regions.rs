//! Any Region: a member's trail bucket in another Region than `[aws] region`
//! (and the archive) is collected and validated. The emulator answers a
//! request signed for the wrong Region as S3 does (301 `PermanentRedirect`
//! with `x-amz-bucket-region`, which the SDK does not follow); the fault
//! proxy in between answers the same way for the placed buckets and counts
//! the requests by whether they were signed for the bucket's Region.

use trailvault_integration_tests::faults::{FaultPlan, FaultProxy};
use trailvault_integration_tests::harness;
use trailvault_integration_tests::sim::ProvisionOptions;

use crate::cli::run;
use crate::collect::{assert_archive_matches_sources, provision, stat};
use crate::faults::config_through;

#[tokio::test(flavor = "multi_thread")]
async fn a_member_bucket_in_another_region_is_collected_and_validated() {
    let sim = provision(
        ProvisionOptions {
            members: 1,
            org_trail: false,
            history_hours: 2,
            trail_bucket_region: Some("eu-west-1".to_owned()),
            ..ProvisionOptions::default()
        },
        2,
    )
    .await;
    assert_eq!(sim.org.api_region, "us-east-1", "aws.region of the run");
    let member = &sim.org.members[0];
    // The emulator knows where the bucket is and, like S3, redirects a
    // request signed for us-east-1, naming the Region.
    let member_config = harness::sdk_config(
        &sim.org.endpoint,
        &member.account_id,
        "sim-root-secret",
        None,
    );
    let redirected = harness::s3_client(&member_config)
        .head_bucket()
        .bucket(&member.trail_bucket)
        .send()
        .await
        .expect_err("a HeadBucket signed for us-east-1 is redirected");
    let raw = redirected.raw_response().expect("an answer");
    assert_eq!(raw.status().as_u16(), 301);
    assert_eq!(raw.headers().get("x-amz-bucket-region"), Some("eu-west-1"));

    let proxy = FaultProxy::start(&sim.org.endpoint, FaultPlan::none()).unwrap();
    proxy.place_bucket(&member.trail_bucket, "eu-west-1");
    proxy.place_bucket(&sim.org.archive_bucket, "us-east-1");
    let dir = tempfile::tempdir().unwrap();
    let config = config_through(&sim, dir.path(), &proxy);
    let collected = run(&sim, &config, &["--json", "collect"]);
    let counts = proxy.counts();
    eprintln!("proxy: {counts:?}\n{}", proxy.fault_log().join("\n"));
    assert_eq!(
        collected.code, 0,
        "{}\n{}",
        collected.stdout, collected.stderr
    );
    let report = collected.json();
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    assert!(
        report["findings"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert!(stat(&report, "objects_copied") > 0, "{report}");
    assert!(stat(&report, "digests_validated") > 0, "{report}");
    assert_archive_matches_sources(&sim).await;
    // One redirect, the Region discovery's HeadBucket (signed for
    // us-east-1); every other request went to the bucket's own Region.
    assert_eq!(counts.get("wrong_region"), Some(&1), "{counts:?}");
    assert!(
        counts.get("signed_for_bucket_region").copied().unwrap_or(0) > 10,
        "{counts:?}"
    );

    // A second run in the same process would reuse the Region; a new process
    // discovers it again, once.
    proxy.reset_counts();
    let again = run(&sim, &config, &["--json", "collect"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(stat(&again.json(), "objects_copied"), 0);
    assert_eq!(proxy.counts().get("wrong_region"), Some(&1));
}
