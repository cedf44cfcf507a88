//! `trailsim`: provisions a simulated AWS organization on the local emulator, delivers
//! CloudTrail files into it, and tampers with them.
//!
//! ```text
//! trailsim provision --endpoint http://127.0.0.1:4566 --members 3 --out org.json \
//!     --config-out trailvault.toml --keys-out public-keys.json [--store PATH]
//! trailsim deliver --org org.json --hours 48        (or --catch-up)
//! trailsim deliver-late --org org.json
//! trailsim tamper --org org.json delete-digest
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use trailvault_integration_tests::harness;
use trailvault_integration_tests::sim::{
    ChainSelector, ConfigOptions, ProvisionOptions, Sim, Tamper, TrailKind,
};

#[derive(Parser)]
#[command(
    name = "trailsim",
    about = "Simulated CloudTrail organization on the local AWS emulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create accounts, buckets, roles, the KMS key and the locked archive.
    Provision {
        /// Emulator endpoint.
        #[arg(
            long,
            env = "TRAILVAULT_TEST_ENDPOINT",
            default_value = "http://127.0.0.1:4566"
        )]
        endpoint: String,
        /// Number of member accounts.
        #[arg(long, default_value_t = 3)]
        members: usize,
        /// Regions the trails deliver from (comma-separated; the first is home).
        #[arg(long, value_delimiter = ',', default_value = "us-east-1,eu-west-1")]
        regions: Vec<String>,
        /// Hours of history the clock leaves room for (delivering them all ends
        /// just before now).
        #[arg(long, default_value_t = 48)]
        history_hours: u32,
        /// Object Lock retention of the archive, in days.
        #[arg(long, default_value_t = 1)]
        retention_days: i32,
        /// Member index (0-based) whose role does not trust the collector (repeatable).
        #[arg(long = "broken-member")]
        broken_members: Vec<usize>,
        /// No organization trail.
        #[arg(long)]
        no_org_trail: bool,
        /// No per-account trails.
        #[arg(long)]
        no_per_account_trails: bool,
        /// Seed for generated content (default: random).
        #[arg(long)]
        seed: Option<u64>,
        /// Reset the emulator first (drops ALL its state).
        #[arg(long)]
        reset: bool,
        /// Where to save the simulation state.
        #[arg(long, default_value = "org.json")]
        out: PathBuf,
        /// Where to write a trailvault configuration.
        #[arg(long)]
        config_out: Option<PathBuf>,
        /// Where to write the public keys (`list-public-keys` shape).
        #[arg(long)]
        keys_out: Option<PathBuf>,
        /// Store path written into the configuration.
        #[arg(long, default_value = "./trailvault-store")]
        store: PathBuf,
    },
    /// Deliver the next hours of logs and digests for every chain.
    Deliver {
        #[arg(long, default_value = "org.json")]
        org: PathBuf,
        /// Number of hours.
        #[arg(
            long,
            conflicts_with = "catch_up",
            required_unless_present = "catch_up"
        )]
        hours: Option<u32>,
        /// Deliver every hour that has ended since the last delivery.
        #[arg(long)]
        catch_up: bool,
    },
    /// Deliver one late log (named before delivered logs) and its `_backfill` digest.
    DeliverLate {
        #[arg(long, default_value = "org.json")]
        org: PathBuf,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Tamper with delivered files as the bucket owner could.
    Tamper {
        #[arg(long, default_value = "org.json")]
        org: PathBuf,
        /// One of: delete-log, modify-log, append-gzip-member, delete-digest,
        /// delete-two-consecutive-digests, delete-newest-digest, change-digest-body,
        /// sign-with-other-key, move-digest, remove-signature-metadata,
        /// plant-in-other-account, gzip-bomb, not-gzip, plant-unreferenced-log.
        kind: String,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Print the simulated organization's current state.
    Show {
        #[arg(long, default_value = "org.json")]
        org: PathBuf,
    },
}

/// Selects a chain (default: member 0, first region, per-account trail).
#[derive(clap::Args)]
struct ChainArgs {
    /// Member index (0-based).
    #[arg(long, default_value_t = 0)]
    member: usize,
    /// Region index into the simulation's regions (0-based).
    #[arg(long, default_value_t = 0)]
    region: usize,
    /// Use the organization trail's chain.
    #[arg(long)]
    org_trail: bool,
}

impl ChainArgs {
    fn selector(&self, sim: &Sim) -> ChainSelector {
        ChainSelector {
            member: self.member,
            region: self.region,
            trail: if self.org_trail || !sim.org.per_account_trails {
                TrailKind::Organization
            } else {
                TrailKind::PerAccount
            },
        }
    }
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|error| anyhow::anyhow!("write {}: {error}", path.display()))
}

fn print_summary(sim: &Sim) {
    let org = &sim.org;
    println!("emulator     {}", org.endpoint);
    println!(
        "audit        {} (archive, KMS key, collector)",
        org.audit_account_id
    );
    println!(
        "  archive    s3://{} (versioned, Object Lock COMPLIANCE {} day(s), SSE-KMS + bucket key, deny policy)",
        org.archive_bucket, org.retention_days
    );
    println!("  kms key    {}", org.kms_key_arn);
    println!(
        "  collector  {} (access key {})",
        org.collector.principal_arn, org.collector.access_key_id
    );
    println!("  external id {}", org.external_id);
    println!(
        "members      {} (regions {})",
        org.members.len(),
        org.regions.join(", ")
    );
    for member in &org.members {
        let bucket = if org.per_account_trails {
            format!("s3://{}", member.trail_bucket)
        } else {
            "-".to_owned()
        };
        println!(
            "  {}  {}  {}{}",
            member.account_id,
            bucket,
            member.role_arn,
            if member.broken {
                "  (BROKEN trust policy)"
            } else {
                ""
            }
        );
    }
    if let Some(org_trail) = &org.org_trail {
        println!(
            "org trail    {} in {}: s3://{}/{}/AWSLogs/{}/<member>/ read by {}",
            org_trail.trail_name,
            org_trail.management_account_id,
            org_trail.bucket,
            org_trail.key_prefix,
            org_trail.org_id,
            org_trail.role_arn
        );
    }
    println!(
        "signing key  fingerprint {} (RSA-2048)",
        sim.signing_key().fingerprint()
    );
    println!(
        "clock        {} of {} planned hours delivered; {} more deliverable now",
        org.clock.hours_delivered,
        org.history_hours,
        sim.deliverable_hours()
    );
    let digests: usize = org.chains.iter().map(|chain| chain.digests.len()).sum();
    let backfill: usize = org
        .chains
        .iter()
        .map(|chain| chain.backfill_digests.len())
        .sum();
    println!(
        "chains       {} ({} digests, {} backfill digests, {} late logs)",
        org.chains.len(),
        digests,
        backfill,
        org.late_logs.len()
    );
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Provision {
            endpoint,
            members,
            regions,
            history_hours,
            retention_days,
            broken_members,
            no_org_trail,
            no_per_account_trails,
            seed,
            reset,
            out,
            config_out,
            keys_out,
            store,
        } => {
            harness::check_health(&endpoint).map_err(|error| {
                anyhow::anyhow!(
                    "emulator not reachable at {endpoint} ({error}); start it with scripts/emulator start"
                )
            })?;
            if reset {
                harness::reset(&endpoint).await?;
            }
            let options = ProvisionOptions {
                members,
                regions,
                org_trail: !no_org_trail,
                per_account_trails: !no_per_account_trails,
                retention_days,
                broken_members,
                history_hours,
                seed,
                trail_bucket_region: None,
            };
            let sim = Sim::provision(&endpoint, options).await?;
            sim.save(&out)?;
            println!("provisioned; state saved to {}", out.display());
            print_summary(&sim);
            if let Some(keys_out) = &keys_out {
                write_file(keys_out, &sim.public_keys_json())?;
                println!("public keys  {}", keys_out.display());
            }
            if let Some(config_out) = &config_out {
                // Absolute paths: trailvault may run from another directory.
                let mut options = ConfigOptions::new(&std::path::absolute(&store)?);
                options.public_keys_file =
                    keys_out.as_deref().map(std::path::absolute).transpose()?;
                write_file(config_out, &sim.trailvault_config_toml_with(&options))?;
                println!("config       {}", config_out.display());
            }
            println!("run trailvault as the collector with:");
            for (name, value) in sim.collector_env() {
                println!("  export {name}={value}");
            }
        }
        Command::Deliver {
            org,
            hours,
            catch_up,
        } => {
            let mut sim = Sim::load(&org).await?;
            let report = if catch_up {
                sim.catch_up().await?
            } else {
                sim.deliver_hours(hours.unwrap_or(0)).await?
            };
            sim.save(&org)?;
            println!(
                "delivered {} hour(s) x {} chains: {} log files, {} Insights files, {} digests ({} empty), {} bytes in {:.1}s",
                report.hours,
                report.chains,
                report.log_files,
                report.insight_files,
                report.digests,
                report.empty_digests,
                report.bytes_uploaded,
                report.elapsed.as_secs_f64()
            );
            if let (Some(first), Some(last)) = (report.first_digest_end, report.last_digest_end) {
                println!("digest end times {first} .. {last}");
            }
        }
        Command::DeliverLate { org, chain } => {
            let mut sim = Sim::load(&org).await?;
            let selector = chain.selector(&sim);
            let late = sim.deliver_late_log(selector).await?;
            sim.save(&org)?;
            println!("late log        s3://{}/{}", late.log.bucket, late.log.key);
            println!(
                "backfill digest s3://{}/{} (generated {})",
                late.backfill_digest.bucket,
                late.backfill_digest.key,
                late.backfill_generation_timestamp
            );
        }
        Command::Tamper { org, kind, chain } => {
            let tamper: Tamper = kind.parse()?;
            let mut sim = Sim::load(&org).await?;
            let selector = chain.selector(&sim);
            let report = sim.tamper_on(tamper, selector).await?;
            sim.save(&org)?;
            println!("tamper           {}", report.kind);
            println!("did              {}", report.detail);
            println!("account          {}", report.account_id);
            println!("object           s3://{}/{}", report.bucket, report.key);
            for touched in &report.touched {
                if touched != &report.key {
                    println!("also touched     s3://{}/{touched}", report.bucket);
                }
            }
            println!("expected finding {}", report.expected_finding);
            for also in &report.also_expected {
                println!(
                    "also expected    {} on s3://{}/{}",
                    also.kind, also.bucket, also.key
                );
            }
        }
        Command::Show { org } => {
            let sim = Sim::load(&org).await?;
            print_summary(&sim);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let informational = matches!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            );
            let _ = error.print();
            return if informational {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("trailsim: error: start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("trailsim: error: {error:#}");
            ExitCode::from(1)
        }
    }
}
