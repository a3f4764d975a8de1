//! Graceful shutdown: SIGINT/SIGTERM stop the sources; the pipeline then drains, flushes the
//! sinks, commits, and exits.
//!
//! A graceful stop can be stuck (a task that never yields, a sink that never answers), so a
//! shutdown can carry a **hard deadline** ([`Shutdown::with_hard_deadline`]): when it is
//! triggered, a plain OS thread — which needs nothing from the async runtime — starts counting,
//! and ends the process with [`HARD_EXIT_CODE`] when the deadline passes. A second signal ends
//! the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The exit code of a process ended by the hard deadline or by a second signal.
pub const HARD_EXIT_CODE: i32 = 1;

/// A shutdown signal shared by every task.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    hard: Arc<Hard>,
}

#[derive(Debug, Default)]
struct Hard {
    deadline: OnceLock<Duration>,
    armed: AtomicBool,
}

impl Shutdown {
    /// A new, untriggered signal.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Once triggered, the process ends with [`HARD_EXIT_CODE`] after `deadline`, whatever
    /// its tasks are doing. Only the first deadline set counts.
    pub fn with_hard_deadline(self, deadline: Duration) -> Shutdown {
        let _ = self.hard.deadline.set(deadline);
        self
    }

    /// Requests shutdown (and starts the hard deadline, if any).
    pub fn trigger(&self) {
        self.token.cancel();
        if let Some(&deadline) = self.hard.deadline.get() {
            if !self.hard.armed.swap(true, Ordering::AcqRel) {
                std::thread::Builder::new()
                    .name("sluice-deadline".into())
                    .spawn(move || {
                        std::thread::sleep(deadline);
                        tracing::error!(deadline_ms = deadline.as_millis() as u64, "shutdown deadline passed with work still running: exiting now (unacknowledged input is read again on restart)");
                        eprintln!("sluice: shutdown deadline of {} ms passed; exiting", deadline.as_millis());
                        std::process::exit(HARD_EXIT_CODE);
                    })
                    .expect("spawning the shutdown deadline thread");
            }
        }
    }

    /// Whether shutdown was requested.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when shutdown is requested.
    pub async fn wait(&self) {
        self.token.cancelled().await
    }

    /// Triggers on SIGINT or SIGTERM (spawns a task); a second signal exits at once.
    pub fn on_signals(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
                    (Ok(i), Ok(t)) => (i, t),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(error = %e, "cannot listen for SIGINT/SIGTERM");
                        return;
                    }
                };
                let mut first = true;
                loop {
                    let name = tokio::select! {
                        _ = int.recv() => "SIGINT",
                        _ = term.recv() => "SIGTERM",
                    };
                    if first {
                        tracing::info!(signal = name, "shutting down");
                        me.trigger();
                        first = false;
                    } else {
                        tracing::warn!(signal = name, "second signal: exiting now");
                        eprintln!("sluice: second {name}; exiting now");
                        std::process::exit(HARD_EXIT_CODE);
                    }
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
                me.trigger();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Instant;

    const CHILD: &str = "SLUICE_SHUTDOWN_TEST_CHILD";

    /// Runs in a child process (the parent test below starts it): a triggered hard deadline
    /// ends the process although this thread never returns.
    #[test]
    fn hard_deadline_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let s = Shutdown::new().with_hard_deadline(Duration::from_millis(200));
        s.trigger();
        s.trigger();
        loop {
            std::thread::sleep(Duration::from_secs(1)); // a stuck task
        }
    }

    #[test]
    fn a_stuck_process_ends_at_the_hard_deadline() {
        let started = Instant::now();
        let out = Command::new(std::env::current_exe().unwrap()).args(["--exact", "shutdown::tests::hard_deadline_child", "--nocapture"]).env(CHILD, "1").output().unwrap();
        assert_eq!(out.status.code(), Some(HARD_EXIT_CODE), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("shutdown deadline of 200 ms passed"), "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    }

    #[test]
    fn without_a_deadline_trigger_only_cancels() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        s.clone().trigger();
        assert!(s.is_triggered());
    }
}
