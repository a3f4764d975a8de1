//! SIGINT, SIGTERM and SIGHUP: caught (a thread of their own waits for them), they end the
//! stack's waits with [`Interrupted`]; the stack then stops Sluice first, then the brokers, and
//! exits with 128 + the signal's number (130, 143, 129), as a shell does.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A wait ended by a signal.
#[derive(Debug)]
pub struct Interrupted(pub i32);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by signal {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// The first signal received.
#[derive(Clone)]
pub struct Signals(Arc<AtomicI32>);

impl Signals {
    /// Catches the signals from now on (the handlers are in place when this returns).
    pub fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let got = Arc::new(AtomicI32::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = got.clone();
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let streams = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()));
                let (mut int, mut term, mut hup) = match streams {
                    (Ok(i), Ok(t), Ok(h)) => (i, t, h),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                loop {
                    let sig = tokio::select! {
                        _ = int.recv() => libc::SIGINT,
                        _ = term.recv() => libc::SIGTERM,
                        _ = hup.recv() => libc::SIGHUP,
                    };
                    let _ = flag.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
                }
            })
        })?;
        ready_rx.recv()??;
        Ok(Signals(got))
    }

    /// The first signal received, if any.
    pub fn received(&self) -> Option<i32> {
        Some(self.0.load(Ordering::SeqCst)).filter(|s| *s != 0)
    }

    /// Err once a signal was received.
    pub fn check(&self) -> Result<(), Interrupted> {
        self.received().map_or(Ok(()), |s| Err(Interrupted(s)))
    }

    /// Polls `f` every `every` until it holds (true) or `timeout` passes (false); a signal
    /// ends the wait at once (Err).
    pub fn wait_until(&self, timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> Result<bool, Interrupted> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check()?;
            if f() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            // Short naps, so that a signal is seen within 50 ms.
            let until = (Instant::now() + every).min(deadline);
            while Instant::now() < until {
                self.check()?;
                std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
            }
        }
    }
}
