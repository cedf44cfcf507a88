//! The progress of the copies: a progress bar on a terminal, otherwise a
//! progress log line every 15 s.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;
use trailvault_pipeline::collect::Counters;
use trailvault_pipeline::jobs::collect::ProgressDisplay;

/// Shows the copies' progress on stderr while the collect job copies.
#[derive(Default)]
pub struct Progress {
    running: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

impl Progress {
    fn running(&self) -> std::sync::MutexGuard<'_, Option<(CancellationToken, JoinHandle<()>)>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl ProgressDisplay for Progress {
    fn start(&self, counters: Arc<Counters>) {
        let done = CancellationToken::new();
        if let Some(display) = progress_display(counters, done.clone()) {
            *self.running() = Some((done, display));
        }
    }

    async fn finish(&self) {
        let running = self.running().take();
        if let Some((done, display)) = running {
            done.cancel();
            let _ = display.await;
        }
    }
}

/// A progress bar on a terminal; otherwise a progress log line every 15 s.
fn progress_display(
    counters: Arc<Counters>,
    done: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return Some(tokio::spawn(async move {
            let started = std::time::Instant::now();
            loop {
                tokio::select! {
                    () = done.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(15)) => {}
                }
                let copied = counters.objects_copied.load(Ordering::Relaxed);
                let rate = copied as f64 / started.elapsed().as_secs_f64().max(0.001);
                info!(
                    partitions_listed = counters.partitions_listed.load(Ordering::Relaxed),
                    partitions_total = counters.partitions_total.load(Ordering::Relaxed),
                    objects_copied = copied,
                    objects_to_copy = counters.objects_to_copy.load(Ordering::Relaxed),
                    bytes_copied = counters.bytes_copied.load(Ordering::Relaxed),
                    objects_per_second = format!("{rate:.1}"),
                    "progress"
                );
            }
        }));
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} objects, {per_sec}, {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(tokio::spawn(async move {
        loop {
            let listed = counters.partitions_listed.load(Ordering::Relaxed);
            let total = counters.partitions_total.load(Ordering::Relaxed);
            bar.set_length(counters.objects_to_copy.load(Ordering::Relaxed));
            bar.set_position(counters.objects_copied.load(Ordering::Relaxed));
            bar.set_message(format!(
                "partitions {listed}/{total}, {} MB",
                counters.bytes_copied.load(Ordering::Relaxed) / 1_000_000
            ));
            tokio::select! {
                () = done.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        bar.finish_and_clear();
    }))
}
