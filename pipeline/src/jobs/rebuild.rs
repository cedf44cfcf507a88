//! The rebuild job: rebuilds the store from the archive. Every current
//! archive version carries its provenance (source account in the key, source
//! ETag, checksums, content hash), so the next collect copies nothing again;
//! then every chain is validated so the next runs continue from there.

use std::path::Path;

use crate::model::report::Report;
use crate::rebuild::{rebuild_store, RebuildSettings};

use super::sources::Scope;
use super::verify::validate_into;
use super::{JobSettings, World};

/// The rebuild job (`rebuild-state`): records every archived object, the
/// superseded versions and the findings ledger; then, unless `no_verify`,
/// validates every chain; then ends the run.
pub async fn rebuild(
    world: &World,
    settings: &JobSettings,
    keys_file: Option<&Path>,
    no_verify: bool,
) -> Report {
    let cancel = &world.cancel.stop;
    let mut report = Report::new("rebuild-state");
    let rebuild_settings = RebuildSettings {
        archive_prefix: settings.collect.copy.archive_prefix.clone(),
        concurrency: settings.collect.concurrency,
        inflate_limits: settings.collect.copy.inflate_limits,
        shard: settings.accounts.shard,
    };
    let outcome = rebuild_store(
        world.archive.as_ref(),
        world.store.as_ref(),
        &rebuild_settings,
        world.clock.now(),
        cancel,
    )
    .await;
    report.stats.objects_listed = outcome.listed;
    report.stats.objects_copied = outcome.recorded;
    report.stats.errors += outcome.errors.len() as u64;
    report.errors.extend(outcome.errors);
    if outcome.archive_unlisted {
        super::finish_run(world, settings, &mut report);
        return report;
    }
    // The chain state is rebuilt too, so the next runs continue from here.
    if !no_verify && !cancel.is_cancelled() {
        let abort = world.cancel.abort_on_stop();
        validate_into(
            world,
            settings,
            &mut report,
            &Scope::default(),
            keys_file,
            false,
        )
        .await;
        abort.abort();
    }
    super::finish_run(world, settings, &mut report);
    report
}
