//! The commands of `docs/cli-contract.md`: each wires the seams, calls one
//! pipeline job and prints.

mod backfill;
mod collect;
mod findings;
mod intake;
mod rebuild;
mod report;
mod retention;
mod run;
mod status;
mod verify;

use std::path::Path;

use trailvault_config::Config;
use trailvault_pipeline::jobs::keys::keys_from_file;
use trailvault_pipeline::model::report::exit;

use crate::cli::{Cli, Command};

fn load_config(cli: &Cli) -> Result<Config, i32> {
    let Some(path) = &cli.config else {
        eprintln!("trailvault: no configuration: pass --config FILE or set TRAILVAULT_CONFIG");
        return Err(exit::USAGE);
    };
    Config::load(path).map_err(|error| {
        eprintln!("trailvault: {}: {error}", path.display());
        exit::USAGE
    })
}

pub async fn dispatch(cli: Cli) -> i32 {
    let mut config = match load_config(&cli) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let shard = match crate::settings::apply_shard(&mut config, cli.shard.as_deref()) {
        Ok(shard) => shard,
        Err(message) => {
            eprintln!("trailvault: {message}");
            return exit::USAGE;
        }
    };
    if shard.is_some() && matches!(cli.command, Command::Retention { full: true, .. }) {
        eprintln!(
            "trailvault: `retention --full` checks every version of the whole archive: run it without --shard (once, not per shard)"
        );
        return exit::USAGE;
    }
    let json = cli.json;
    match cli.command {
        Command::Collect {
            scope,
            keys,
            allow_unlocked_archive,
            no_verify,
        } => {
            collect::collect(
                &config,
                &scope,
                keys.public_keys,
                allow_unlocked_archive,
                no_verify,
                json,
            )
            .await
        }
        Command::Backfill {
            scope,
            keys,
            since,
            until,
        } => {
            backfill::backfill(
                &config,
                &scope,
                keys.public_keys,
                &since,
                until.as_deref(),
                json,
            )
            .await
        }
        Command::Findings {
            accounts,
            kinds,
            since,
            acknowledge,
            format,
            asff_account_id,
        } => {
            let output = match format {
                Some(crate::cli::FindingsFormat::Asff) => {
                    match findings::asff_product(&config, asff_account_id) {
                        Ok(product) => findings::Output::Asff(product),
                        Err(code) => return code,
                    }
                }
                None if json => findings::Output::Json,
                None => findings::Output::Text,
            };
            findings::findings(
                &config,
                &accounts,
                &kinds,
                since.as_deref(),
                acknowledge,
                output,
            )
            .await
        }
        Command::Verify { scope, keys, full } => {
            verify::verify(&config, &scope, keys.public_keys.as_deref(), full, json).await
        }
        Command::Retention { apply, full } => {
            retention::retention(&config, apply, full, json).await
        }
        Command::Run {
            interval,
            scope,
            keys,
            metrics_addr,
        } => {
            let options = run::RunOptions {
                interval,
                keys: keys.public_keys,
                metrics_addr: metrics_addr.or(config.metrics.addr),
                json,
            };
            run::run(&config, &scope, options).await
        }
        Command::Status => status::status(&config, json),
        Command::Report { html, days } => report::report(&config, html.as_deref(), days, json),
        Command::RebuildState { keys, no_verify } => {
            rebuild::rebuild(&config, keys.public_keys.as_deref(), no_verify, json).await
        }
    }
}

/// A keys file that cannot be read is a usage error: nothing is done.
fn check_keys_file(config: &Config, keys: Option<&Path>) -> Result<(), ()> {
    if let Some(path) = keys.or(config.verify.public_keys_file.as_deref()) {
        if let Err(error) = keys_from_file(path) {
            eprintln!("trailvault: {error}");
            return Err(());
        }
    }
    Ok(())
}
