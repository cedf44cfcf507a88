//! `trailbench`: the benchmark's helper (driven by `scripts/bench`, see
//! `bench/README.md`).
//!
//! - `generate` / `extend`: a realistic CloudTrail data set on an S3 server (SeaweedFS)
//!   with static credentials, and its state file;
//! - `public-keys`: the signing key as `aws cloudtrail list-public-keys` JSON;
//! - `archive`: a fresh destination bucket (locked archive, plain, or bare);
//! - `getput`: the bare GET→PUT loop (the server's ceiling), optionally adding
//!   trailvault's per-object work one feature at a time (SSE-KMS, SHA-256 checksum,
//!   Object Lock, HEAD) to show where the time goes;
//! - `proxy`: an HTTP proxy that counts S3 requests by operation;
//! - `flood`: one partition of a member bucket filled with tiny junk objects;
//! - `cost`: the cost model (issue 14) from two counted `collect` runs, extrapolated
//!   to a large organization: polling vs event-driven intake;
//! - `validate-ref`: GET, inflate and hash every archived object (the floor of
//!   `verify --full`; `getput --inflate` is the floor of a copy);
//! - `info`: the state file's summary as JSON.
//!
//! The simulator's format code is compiled in with `#[path]` (its modules are private
//! to the library's `sim` module, and the benchmark must not change them), so the
//! data set uses exactly the simulator's log records, key names and digest rendering.

#[allow(dead_code)]
#[path = "../sim/rng.rs"]
mod rng;

#[allow(dead_code)]
#[path = "../sim/cloudtrail.rs"]
mod cloudtrail;

#[path = "../bench/s3util.rs"]
mod s3util;

#[path = "../bench/generate.rs"]
mod generate;

#[path = "../bench/getput.rs"]
mod getput;

#[path = "../bench/proxy.rs"]
mod proxy;

#[path = "../bench/flood.rs"]
mod flood;

#[path = "../bench/cost.rs"]
mod cost;
#[path = "../bench/floor.rs"]
mod floor;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "trailbench",
    about = "trailvault's benchmark helper (see scripts/bench)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Args)]
struct EndpointArgs {
    /// S3 endpoint (SeaweedFS).
    #[arg(
        long,
        env = "TRAILBENCH_ENDPOINT",
        default_value = "http://127.0.0.1:8333"
    )]
    endpoint: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key_id: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
}

impl EndpointArgs {
    fn endpoint(&self) -> s3util::Endpoint {
        s3util::Endpoint {
            url: self.endpoint.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            region: self.region.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a data set (or, with --add, more accounts into an existing one).
    Generate {
        #[command(flatten)]
        endpoint: EndpointArgs,
        /// State file (written).
        #[arg(long)]
        state: PathBuf,
        /// Target object count (logs + digests) of this call.
        #[arg(long, default_value_t = 20_000)]
        objects: u64,
        #[arg(long, default_value_t = 4)]
        accounts: usize,
        /// Add `--accounts` accounts to the data set in `--state` (same key, clock
        /// and density), numbered after the existing ones.
        #[arg(long)]
        add: bool,
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "us-east-1,eu-west-1,ap-southeast-2"
        )]
        regions: Vec<String>,
        /// Days of hourly history, ending about 70 minutes before now.
        #[arg(long, default_value_t = 3)]
        days: u32,
        #[arg(long, default_value_t = 20_260_701)]
        seed: u64,
        /// Multiplies every target log size (1.0 = the size mix).
        #[arg(long, default_value_t = 1.0)]
        size_scale: f64,
        /// Generator threads (default: available cores).
        #[arg(long)]
        threads: Option<usize>,
        /// An organization trail (`o-…`): every account delivers into one bucket,
        /// `aws-cloudtrail-logs-org`, under `AWSLogs/<org-id>/<account>/`.
        #[arg(long)]
        org_id: Option<String>,
    },
    /// Deliver one more hour on every chain: about `--percent` % new files.
    Extend {
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[arg(long)]
        state: PathBuf,
        #[arg(long, default_value_t = 1.0)]
        percent: f64,
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Print the signing key as `aws cloudtrail list-public-keys` JSON.
    PublicKeys {
        #[arg(long)]
        state: PathBuf,
    },
    /// Print the state's summary (accounts, chains, totals, times) as JSON.
    Info {
        #[arg(long)]
        state: PathBuf,
    },
    /// Create a destination bucket.
    Archive {
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        kms_key_id: String,
        #[arg(long, default_value_t = 1)]
        retention_days: i32,
        /// Versioning + default SSE-KMS, no Object Lock.
        #[arg(long, conflicts_with = "bare")]
        plain: bool,
        /// Nothing but the bucket.
        #[arg(long)]
        bare: bool,
    },
    /// The bare GET→PUT loop over every source object of the data set.
    Getput {
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[arg(long)]
        state: PathBuf,
        #[arg(long)]
        dest_bucket: String,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Ask for SSE-KMS with this key on every PUT.
        #[arg(long)]
        sse_kms_key_id: Option<String>,
        /// Send a SHA-256 checksum (computed here) with every PUT.
        #[arg(long)]
        sha256: bool,
        /// Object Lock COMPLIANCE retention on every PUT (lock-enabled destination).
        #[arg(long)]
        object_lock: bool,
        /// trailvault's provenance metadata and the S3 Bucket Key flag on every PUT.
        #[arg(long)]
        provenance: bool,
        /// HEAD the version each PUT created (checksum mode enabled), as trailvault does.
        #[arg(long)]
        head: bool,
        /// Inflate every body (libdeflate) and SHA-256 its raw and inflated bytes.
        #[arg(long)]
        inflate: bool,
    },
    /// GET every object under `--prefix` of `--bucket` at `--concurrency`, inflate
    /// it (libdeflate) and SHA-256 its raw and inflated bytes.
    ValidateRef {
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[arg(long)]
        bucket: String,
        #[arg(long, default_value = "archive/")]
        prefix: String,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Fill today's CloudTrail/us-east-1 partition of `--account`'s bucket with
    /// tiny junk objects (a hostile member's flood).
    Flood {
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[arg(long, default_value = "444400000001")]
        account: String,
        /// Default: aws-cloudtrail-logs-<account>.
        #[arg(long)]
        bucket: Option<String>,
        #[arg(long, default_value_t = 1_000_000)]
        objects: u64,
        /// First index (to add to an earlier flood).
        #[arg(long, default_value_t = 0)]
        first: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// The cost model: per-partition and per-object requests from two counted
    /// `collect` steps (`bench/measure.py --proxy` records), extrapolated over a day;
    /// prints it as JSON and writes the RESULTS.md section to `--markdown`.
    Cost {
        /// The step that found nothing new (steady state).
        #[arg(long)]
        steady: PathBuf,
        /// The step that copied new files.
        #[arg(long)]
        new: PathBuf,
        /// The data set's `trailbench info` (its log density), if any.
        #[arg(long)]
        info: Option<PathBuf>,
        /// Measured intake counts (JSON: notifications, objects, requests by operation).
        #[arg(long)]
        intake: Option<PathBuf>,
        #[arg(long, default_value_t = 1000)]
        accounts: u64,
        #[arg(long, default_value_t = 17)]
        regions: u64,
        /// Open days per partition folder: today + `lookback_days`.
        #[arg(long, default_value_t = 4)]
        open_days: u64,
        #[arg(long, default_value_t = 5)]
        poll_minutes: u64,
        #[arg(long, default_value_t = 60)]
        sweep_minutes: u64,
        /// Where the markdown section goes.
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
    /// Counting proxy in front of the S3 server (runs until killed).
    Proxy {
        #[arg(long, default_value = "127.0.0.1:8334")]
        listen: String,
        #[arg(long, default_value = "127.0.0.1:8333")]
        upstream: String,
    },
}

fn threads(requested: Option<usize>) -> usize {
    requested.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Generate {
            endpoint,
            state,
            objects,
            accounts,
            add,
            regions,
            days,
            seed,
            size_scale,
            threads: requested,
            org_id,
        } => {
            let existing = if add {
                Some(generate::BenchState::load(&state)?)
            } else {
                None
            };
            let first_account = existing.as_ref().map_or(0, |s| s.accounts().len());
            let options = generate::GenerateOptions {
                objects,
                accounts,
                first_account,
                regions,
                days,
                seed,
                size_scale,
                threads: threads(requested),
                org_id,
            };
            let started = std::time::Instant::now();
            let before = existing.as_ref().map(|s| s.totals.objects()).unwrap_or(0);
            let written = runtime()?.block_on(generate::generate(
                &endpoint.endpoint(),
                &options,
                existing,
            ))?;
            written.save(&state)?;
            let seconds = started.elapsed().as_secs_f64();
            let objects_written = written.totals.objects() - before;
            println!(
                "{}",
                serde_json::json!({
                    "objects_written": objects_written,
                    "seconds": seconds,
                    "objects_per_second": objects_written as f64 / seconds,
                    "totals": written.totals,
                })
            );
        }
        Command::Extend {
            endpoint,
            state,
            percent,
            threads: requested,
        } => {
            let mut loaded = generate::BenchState::load(&state)?;
            let added = runtime()?.block_on(generate::extend(
                &endpoint.endpoint(),
                &mut loaded,
                percent,
                threads(requested),
            ))?;
            loaded.save(&state)?;
            println!(
                "{}",
                serde_json::json!({ "added": added, "totals": loaded.totals })
            );
        }
        Command::PublicKeys { state } => {
            println!(
                "{}",
                generate::public_keys_json(&generate::BenchState::load(&state)?)?
            );
        }
        Command::Info { state } => {
            let loaded = generate::BenchState::load(&state)?;
            let chains: Vec<serde_json::Value> = loaded
                .chains
                .iter()
                .map(|chain| {
                    serde_json::json!({
                        "account_id": chain.account_id,
                        "region": chain.region,
                        "bucket": chain.bucket,
                        "hours": chain.hours,
                        "last_end": chain.last_end,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "accounts": loaded.accounts(),
                    "regions": loaded.regions,
                    "trail_name": loaded.trail_name,
                    "home_region": loaded.home_region,
                    "first_digest_start": loaded.first_digest_start,
                    "origin": loaded.origin,
                    "logs_per_hour": loaded.logs_per_hour,
                    "totals": loaded.totals,
                    "objects": loaded.totals.objects(),
                    "last_extension": loaded.last_extension,
                    "org_id": loaded.org_id,
                    "chains": chains,
                })
            );
        }
        Command::Archive {
            endpoint,
            bucket,
            kms_key_id,
            retention_days,
            plain,
            bare,
        } => {
            let client = s3util::s3_client(&s3util::sdk_config(&endpoint.endpoint(), false));
            let spec = s3util::ArchiveSpec {
                bucket,
                kms_key_id,
                retention_days,
                plain,
                bare,
            };
            runtime()?.block_on(s3util::create_archive(&client, &spec))?;
        }
        Command::Getput {
            endpoint,
            state,
            dest_bucket,
            concurrency,
            sse_kms_key_id,
            sha256,
            object_lock,
            provenance,
            head,
            inflate,
        } => {
            let loaded = generate::BenchState::load(&state)?;
            let buckets: Vec<String> = loaded
                .accounts()
                .iter()
                .map(|a| generate::bucket_for(a))
                .collect();
            let result = runtime()?.block_on(getput::getput(
                &endpoint.endpoint(),
                &buckets,
                &dest_bucket,
                concurrency,
                &getput::Extras {
                    sse_kms_key_id,
                    sha256,
                    object_lock,
                    provenance,
                    head,
                    inflate,
                },
            ))?;
            println!("{}", serde_json::to_string(&result)?);
        }
        Command::ValidateRef {
            endpoint,
            bucket,
            prefix,
            concurrency,
        } => {
            let result = runtime()?.block_on(floor::validate_ref(
                &endpoint.endpoint(),
                &bucket,
                &prefix,
                concurrency,
            ))?;
            println!("{}", serde_json::to_string(&result)?);
        }
        Command::Flood {
            endpoint,
            account,
            bucket,
            objects,
            first,
            concurrency,
        } => {
            let bucket = bucket.unwrap_or_else(|| generate::bucket_for(&account));
            let prefix = flood::partition_prefix(&account, chrono::Utc::now().date_naive());
            let flooded = runtime()?.block_on(flood::flood(
                &endpoint.endpoint(),
                &bucket,
                &prefix,
                first,
                objects,
                concurrency,
            ))?;
            println!("{}", serde_json::to_string(&flooded)?);
        }
        Command::Proxy { listen, upstream } => proxy::run(&listen, &upstream)?,
        Command::Cost {
            steady,
            new,
            info,
            intake,
            accounts,
            regions,
            open_days,
            poll_minutes,
            sweep_minutes,
            markdown,
        } => {
            let read = |path: &PathBuf| -> anyhow::Result<serde_json::Value> {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            };
            let mut organization = cost::Organization {
                accounts,
                regions,
                open_days,
                poll_minutes: poll_minutes.max(1),
                sweep_minutes: sweep_minutes.max(1),
                ..cost::Organization::default()
            };
            if let Some(info) = &info {
                if let Some(density) = read(info)?.get("logs_per_hour").and_then(|v| v.as_f64()) {
                    organization.logs_per_hour = density;
                }
            }
            let intake: Option<cost::IntakeMeasurement> = match &intake {
                Some(path) => Some(serde_json::from_value(read(path)?)?),
                None => None,
            };
            let model = cost::model(&read(&steady)?, &read(&new)?, organization, intake.as_ref())?;
            if let Some(path) = markdown {
                std::fs::write(&path, model.markdown())?;
            }
            println!("{}", serde_json::to_string_pretty(&model)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::proxy::{classify, request_type};

    #[test]
    fn classifies_s3_requests() {
        let none: Vec<(String, String)> = Vec::new();
        let copy = vec![("x-amz-copy-source".to_owned(), "/a/b".to_owned())];
        let cases = [
            (
                "GET",
                "/b?list-type=2&prefix=AWSLogs%2F",
                &none,
                "ListObjectsV2",
            ),
            (
                "GET",
                "/b/?delimiter=%2F&list-type=2",
                &none,
                "ListObjectsV2",
            ),
            ("GET", "/b?prefix=x&delimiter=%2F", &none, "ListObjects"),
            ("GET", "/b?versions&prefix=x", &none, "ListObjectVersions"),
            ("GET", "/b?location", &none, "GetBucket:location"),
            (
                "GET",
                "/b?delimiter=%2F&max-keys=1000&prefix=AWSLogs%2F",
                &none,
                "ListObjects",
            ),
            ("GET", "/b", &none, "ListObjects"),
            ("GET", "/b/AWSLogs/1/x.json.gz", &none, "GetObject"),
            (
                "GET",
                "/b/AWSLogs/1/x.json.gz?x-id=GetObject",
                &none,
                "GetObject",
            ),
            ("HEAD", "/b/k", &none, "HeadObject"),
            ("HEAD", "/b", &none, "HeadBucket"),
            ("PUT", "/b/k?x-id=PutObject", &none, "PutObject"),
            ("PUT", "/b/k", &none, "PutObject"),
            ("PUT", "/b/k", &copy, "CopyObject"),
            ("PUT", "/b/k?partNumber=1&uploadId=u", &none, "UploadPart"),
            ("POST", "/b/k?uploads", &none, "CreateMultipartUpload"),
            ("GET", "/", &none, "ListBuckets"),
        ];
        for (method, target, headers, expected) in cases {
            assert_eq!(
                classify(method, target, headers),
                expected,
                "{method} {target}"
            );
        }
        assert_eq!(request_type("ListObjectsV2"), "LIST");
        assert_eq!(request_type("HeadObject"), "HEAD");
        assert_eq!(request_type("HeadBucket"), "OTHER");
    }
}
