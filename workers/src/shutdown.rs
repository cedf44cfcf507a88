//! The shutdown every command shares.
//!
//! Shutdown (SIGTERM or SIGINT): the first signal stops taking work: no new
//! copy starts, in-flight copies finish (their retries are bounded by the
//! retry budget), validation is abandoned, the store is flushed and the
//! process exits 0. A second signal abandons in-flight requests too, which is
//! safe: an interrupted copy left an intent, and the next run adopts or
//! redoes it.

use tokio_util::sync::CancellationToken;
use tracing::warn;
use trailvault_pipeline::jobs::Cancellation;

/// The two stages of shutdown.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Stop taking work: no new partition, copy or version is started.
    pub stop: CancellationToken,
    /// Abandon requests in flight (the retry layer returns `Cancelled`).
    pub abort: CancellationToken,
}

impl Shutdown {
    /// A shutdown driven by SIGTERM/SIGINT: the first signal stops, the
    /// second aborts.
    pub fn on_signals() -> Shutdown {
        let shutdown = Shutdown::default();
        let handle = shutdown.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            for signals in 1u32.. {
                #[cfg(unix)]
                let terminated = async {
                    match terminate.as_mut() {
                        Some(signal) => {
                            signal.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let terminated = std::future::pending::<()>();
                let interrupted = async {
                    if tokio::signal::ctrl_c().await.is_err() {
                        // No SIGINT handler could be installed: SIGTERM only.
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    () = interrupted => {}
                    () = terminated => {}
                }
                if signals == 1 {
                    warn!("shutdown requested: no new work is started, in-flight copies finish (signal again to abandon them)");
                    handle.stop.cancel();
                } else {
                    warn!("second shutdown signal: abandoning requests in flight (the next run adopts or redoes them)");
                    handle.abort.cancel();
                    break;
                }
            }
        });
        shutdown
    }

    /// Once `stop` fires, abort as well: for stages with no copies in flight
    /// worth finishing (validation, listing).
    pub fn abort_on_stop(&self) -> tokio::task::JoinHandle<()> {
        self.cancellation().abort_on_stop()
    }

    /// The two tokens, as the jobs take them.
    pub fn cancellation(&self) -> Cancellation {
        Cancellation {
            stop: self.stop.clone(),
            abort: self.abort.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn abort_follows_stop_when_asked() {
        let shutdown = Shutdown::default();
        let follower = shutdown.abort_on_stop();
        assert!(!shutdown.abort.is_cancelled());
        shutdown.stop.cancel();
        follower.await.unwrap();
        assert!(shutdown.abort.is_cancelled());
    }
}
