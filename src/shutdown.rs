//! Graceful shutdown: SIGINT/SIGTERM stop the sources; the pipeline then drains, flushes the
//! sinks, commits, and exits.

use tokio_util::sync::CancellationToken;

/// A shutdown signal shared by every task.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// A new, untriggered signal.
    pub fn new() -> Shutdown {
        Shutdown(CancellationToken::new())
    }

    /// Requests shutdown.
    pub fn trigger(&self) {
        self.0.cancel();
    }

    /// Whether shutdown was requested.
    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves when shutdown is requested.
    pub async fn wait(&self) {
        self.0.cancelled().await
    }

    /// Triggers on SIGINT or SIGTERM (spawns a task).
    pub fn on_signals(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        me.trigger();
                        return;
                    }
                };
                tokio::select! {
                    _ = ctrl_c => tracing::info!(signal = "SIGINT", "shutting down"),
                    _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
                }
            }
            #[cfg(not(unix))]
            {
                let _ = ctrl_c.await;
            }
            me.trigger();
        });
    }
}
