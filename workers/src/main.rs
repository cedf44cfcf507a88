//! The `trailvault` binary: command line, wiring of the seams, run modes.
//!
//! Floors, each using only the ones below it: `main` → `commands` (one file
//! per command: wire, call one pipeline job, print) → `output` (printing),
//! `wiring` (infra builds the seams), `metrics` (the daemon's endpoint),
//! `settings` (config → job settings),
//! `shutdown`, `cli`. Every AWS call is in `trailvault-infra`; every domain
//! rule in `trailvault-pipeline`.

mod cli;
mod commands;
mod metrics;
mod output;
mod settings;
mod shutdown;
mod wiring;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use trailvault_pipeline::model::report::exit;

fn init_tracing(cli: &cli::Cli) {
    let default = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn,trailvault=info",
            1 => "info",
            _ => "debug,aws_smithy_runtime=info,aws_config=info,hyper=info",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .fmt_fields(output::log_fields::escaped_fields())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(&cli);
    // Hashing and inflating large bodies run on the blocking pool: one thread
    // per core keeps every core busy without one thread (and one malloc arena)
    // per copy; the copies themselves are tasks spread over the worker threads.
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(cores.max(2))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("trailvault: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(commands::dispatch(cli));
    ExitCode::from(u8::try_from(code).unwrap_or(exit::OPERATIONAL_ERRORS as u8))
}
