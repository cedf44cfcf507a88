//! The command line of `docs/cli-contract.md`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "trailvault",
    version,
    about = "Collects an AWS organization's CloudTrail history into a locked archive and proves it",
    long_about = "Collects every CloudTrail log and digest file of an AWS organization into a locked-down archive bucket \
(versioned, Object Lock, SSE-KMS), verifies every copy, and validates CloudTrail's signed digest chains, so that a \
member account cannot erase or rewrite its own history unnoticed.\n\nExit status: 0 clean, 1 operational errors, \
2 usage or configuration error, 3 findings."
)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "TRAILVAULT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the run report as one JSON object on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Run as shard K of N (0-based): only the accounts whose FNV-1a hash mod N is K, with
    /// its own progress store (`<store path>.shard-K-of-N`). `env/N` takes K from
    /// AWS_BATCH_JOB_ARRAY_INDEX or JOB_COMPLETION_INDEX. Default: `[shard] spec`, else all.
    #[arg(long, global = true, env = "TRAILVAULT_SHARD", value_name = "K/N")]
    pub shard: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Default, Args)]
pub struct Scope {
    /// Limit the run to this account (repeatable).
    #[arg(long = "account", value_name = "ID", value_parser = parse_account_id)]
    pub accounts: Vec<String>,
    /// Limit the run to this region (repeatable).
    #[arg(long = "region", value_name = "REGION", value_parser = parse_region)]
    pub regions: Vec<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct KeySource {
    /// CloudTrail public keys as a JSON file shaped like `aws cloudtrail list-public-keys` output,
    /// instead of calling the CloudTrail API.
    #[arg(long, value_name = "FILE")]
    pub public_keys: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One incremental collection run over all configured accounts and sources.
    Collect {
        #[command(flatten)]
        scope: Scope,
        #[command(flatten)]
        keys: KeySource,
        /// Collect even if the archive bucket is not locked down (versioning, Object Lock
        /// default retention, default SSE-KMS). Shown in the report.
        #[arg(long)]
        allow_unlocked_archive: bool,
        /// Skip the validation of the chains this run touched.
        #[arg(long)]
        no_verify: bool,
    },
    /// Validate the archive's digest chains.
    Verify {
        #[command(flatten)]
        scope: Scope,
        #[command(flatten)]
        keys: KeySource,
        /// Re-read and re-hash every archived object and rebuild chain state.
        #[arg(long)]
        full: bool,
    },
    /// Collect a historical date range, resumable.
    Backfill {
        #[command(flatten)]
        scope: Scope,
        #[command(flatten)]
        keys: KeySource,
        /// First day (YYYY-MM-DD, UTC).
        #[arg(long, value_name = "DATE")]
        since: String,
        /// Last day (YYYY-MM-DD, UTC); default today.
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
    },
    /// Check (default: a dry run that prints the plan) or enforce retention on the archive.
    ///
    /// Every archived version must be locked until at least its file's date plus
    /// `retention_days`; the bucket needs versioning, an Object Lock default retention of at
    /// least `retention_days` and default SSE-KMS. What cannot be fixed becomes a finding.
    ///
    /// With `[retention] source_retention_days` set, also source expiry: source files named
    /// more than that many days ago, archived unchanged and chain-validated, are deleted from
    /// the member buckets (the member role needs the template's AllowSourceExpiry=true).
    Retention {
        /// Extend short Object Lock retention (PutObjectRetention; never shortens) and, when
        /// configured, delete expired source files.
        #[arg(long)]
        apply: bool,
        /// Check every version the archive lists instead of the store's records.
        #[arg(long)]
        full: bool,
    },
    /// Collect and verify on a schedule until SIGTERM/SIGINT.
    ///
    /// Runs never overlap: the next run starts one interval after the previous one started,
    /// or right after it when it overran. SIGTERM/SIGINT: no new work is started, in-flight
    /// copies finish, the store is flushed, exit 0 (a second signal abandons in-flight requests).
    Run {
        /// Time between run starts: 30s, 5m, 1h, 1h30m, 1d. Required unless `[intake]` is
        /// configured (the listing then runs every `sweep_interval_seconds` instead).
        #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
        interval: Option<Duration>,
        #[command(flatten)]
        scope: Scope,
        #[command(flatten)]
        keys: KeySource,
        /// Serve Prometheus/OpenMetrics text on http://ADDR/metrics (e.g. 127.0.0.1:9464;
        /// port 0 picks a free one, logged). Default: `[metrics] addr`, else no endpoint.
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Last runs, per-account lag, chain heads, open findings (always exit 0; 2 on config errors).
    Status,
    /// Coverage report from the store: account x Region x day grid (collected, validated,
    /// findings), chain heads, open findings with their evidence keys, run history.
    Report {
        /// Write it as one self-contained HTML page (no script, no network) to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Days of the grid, ending today (UTC).
        #[arg(long, value_name = "N", default_value_t = 31,
              value_parser = clap::value_parser!(u32).range(1..=366))]
        days: u32,
    },
    /// Rebuild a lost or damaged progress store from the archive's own metadata,
    /// then validate every chain so the next runs continue from there.
    RebuildState {
        #[command(flatten)]
        keys: KeySource,
        /// Only record the archived objects; leave the chains to the next `verify`.
        #[arg(long)]
        no_verify: bool,
    },
    /// Every recorded finding.
    Findings {
        /// Only findings about this account (repeatable).
        #[arg(long = "account", value_name = "ID", value_parser = parse_account_id)]
        accounts: Vec<String>,
        /// Only this kind, e.g. digest_missing (repeatable).
        #[arg(long = "kind", value_name = "KIND")]
        kinds: Vec<String>,
        /// Only findings first seen at or after this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Acknowledge the listed findings: they stay recorded, but no longer
        /// keep runs at exit status 3.
        #[arg(long)]
        acknowledge: bool,
        /// Output format: `asff` prints `{"Findings":[...]}` in the AWS Security
        /// Finding Format, for `aws securityhub batch-import-findings`.
        #[arg(long, value_name = "FORMAT", value_enum)]
        format: Option<FindingsFormat>,
        /// With `--format asff`: the account that imports the findings (its
        /// ProductArn); default `[alerts] asff_account_id`.
        #[arg(long, value_name = "ID", value_parser = parse_account_id)]
        asff_account_id: Option<String>,
    },
}

/// How `findings` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FindingsFormat {
    /// AWS Security Finding Format (Security Hub).
    Asff,
}

impl Scope {
    /// What the run is limited to, as the jobs take it.
    pub fn to_job(&self) -> trailvault_pipeline::jobs::Scope {
        trailvault_pipeline::jobs::Scope {
            accounts: self.accounts.clone(),
            regions: self.regions.clone(),
        }
    }
}

/// `--account`: a 12-digit AWS account id.
fn parse_account_id(text: &str) -> Result<String, String> {
    if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_string())
    } else {
        Err(format!("`{text}` is not a 12-digit AWS account id"))
    }
}

/// `--region`: a region name such as `us-east-1` or `us-gov-west-1`.
fn parse_region(text: &str) -> Result<String, String> {
    if trailvault_pipeline::cloudtrail::keys::is_region(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{text}` is not an AWS region name (like us-east-1)"
        ))
    }
}

/// Parses `30s`, `5m`, `1h`, `1h30m`, `1d`: whole numbers with units in
/// decreasing order (d, h, m, s), each at most once. Zero and anything else
/// is refused.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)];
    let refuse =
        || format!("--interval must be a duration like 30s, 5m, 1h or 1h30m, not `{text}`");
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(refuse());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut next_unit = 0;
    for character in trimmed.chars() {
        if character.is_ascii_digit() {
            digits.push(character);
            continue;
        }
        let Some(position) = UNITS[next_unit..]
            .iter()
            .position(|(unit, _)| *unit == character.to_ascii_lowercase())
        else {
            return Err(refuse());
        };
        if digits.is_empty() {
            return Err(refuse());
        }
        let index = next_unit + position;
        let amount: u64 = digits.parse().map_err(|_| refuse())?;
        total = amount
            .checked_mul(UNITS[index].1)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(refuse)?;
        digits.clear();
        next_unit = index + 1;
    }
    if !digits.is_empty() {
        return Err(refuse());
    }
    if total == 0 {
        return Err(format!("--interval must be longer than zero, not `{text}`"));
    }
    // A year bounds the timer arithmetic; nobody schedules less often.
    if total > 366 * 86_400 {
        return Err(format!("--interval `{text}` is longer than a year"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn accounts_and_regions_are_checked_when_parsed() {
        assert!(Cli::try_parse_from([
            "trailvault",
            "collect",
            "--account",
            "111122223333",
            "--region",
            "eu-west-1"
        ])
        .is_ok());
        for bad in [
            ["--account", "1234"],
            ["--account", "11112222333x"],
            ["--region", "mars"],
            ["--region", "US-EAST-1"],
        ] {
            let error = Cli::try_parse_from(["trailvault", "collect", bad[0], bad[1]]).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn intervals_parse_and_garbage_is_refused() {
        let ok = [
            ("30s", 30),
            ("5m", 300),
            ("1h", 3600),
            ("1h30m", 5400),
            ("1d2h3m4s", 93_784),
            (" 90s ", 90),
            ("2H", 7200),
        ];
        for (text, seconds) in ok {
            assert_eq!(
                parse_interval(text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
        for text in [
            "",
            "0",
            "0s",
            "0h0m",
            "5",
            "m",
            "5x",
            "1m1h",
            "1h1h",
            "-5m",
            "1.5h",
            "5 m",
            "99999999999999999999s",
            "400d",
            "1h30",
            "h1",
        ] {
            assert!(parse_interval(text).is_err(), "{text:?} accepted");
        }
        assert!(parse_interval("0s").unwrap_err().contains("zero"));
    }
}
