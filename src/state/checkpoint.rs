//! Checkpoint epochs: which inputs and window closes each checkpoint covers, and the
//! acknowledgements it holds back until it is durable.
//!
//! An epoch opens after each cut. A stateful input processed in it registers (its digest, one
//! outstanding delivery); a window closed by the timer registers an outstanding delivery too.
//! At the cut (under the state gate, taken alone) the engine's changed state is serialized and
//! the epoch is sealed; once its outstanding deliveries have all reported, the snapshot is
//! written, and only then are its inputs' acknowledgements released, in order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::Notify;

use crate::flow::{Ack, Delivery};
use crate::state::store::{Snapshot, StateStore, StoreError};

/// One epoch's bookkeeping.
#[derive(Default)]
struct Epoch {
    number: u64,
    outstanding: usize,
    acks: Vec<(Ack, Delivery)>,
    digests: Vec<u64>,
    snapshot: Option<Snapshot>,
}

#[derive(Default)]
struct Epochs {
    open: Epoch,
    sealed: VecDeque<Epoch>,
}

impl Epochs {
    fn find(&mut self, n: u64) -> Option<&mut Epoch> {
        if self.open.number == n {
            return Some(&mut self.open);
        }
        self.sealed.iter_mut().find(|e| e.number == n)
    }
}

/// The checkpoint coordinator of one engine.
pub struct Checkpoints {
    gate: RwLock<()>,
    epochs: Mutex<Epochs>,
    delivered: Notify,
    store: StateStore,
    interval: std::time::Duration,
}

impl Checkpoints {
    /// A coordinator writing to `store`, its first epoch after `last` (the store's).
    pub fn new(store: StateStore, last: u64, interval: std::time::Duration) -> Arc<Checkpoints> {
        let epochs = Epochs { open: Epoch { number: last + 1, ..Epoch::default() }, sealed: VecDeque::new() };
        Arc::new(Checkpoints { gate: RwLock::new(()), epochs: Mutex::new(epochs), delivered: Notify::new(), store, interval })
    }

    /// Held (shared) while a worker processes a message: a cut never falls inside one.
    pub fn share(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Held alone for the cut.
    fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|p| p.into_inner())
    }

    fn epochs(&self) -> std::sync::MutexGuard<'_, Epochs> {
        self.epochs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A stateful input (digest `digest`), processed under [`share`](Self::share): its ack, to
    /// be released once its outputs are delivered and its epoch is durable.
    pub fn hold(self: &Arc<Self>, digest: u64, ack: Ack) -> Ack {
        let n = {
            let mut e = self.epochs();
            e.open.outstanding += 1;
            e.open.digests.push(digest);
            e.open.number
        };
        let me = self.clone();
        Ack::new(move |d| me.report(n, ack, d))
    }

    /// The ack of records the window timer emitted (under [`share`](Self::share)): the
    /// checkpoint that forgets their windows waits for their delivery.
    pub fn hold_output(self: &Arc<Self>) -> Ack {
        let n = {
            let mut e = self.epochs();
            e.open.outstanding += 1;
            e.open.number
        };
        let me = self.clone();
        Ack::new(move |d| me.report(n, Ack::none(), d))
    }

    fn report(&self, n: u64, ack: Ack, d: Delivery) {
        let mut e = self.epochs();
        match e.find(n) {
            Some(epoch) => {
                epoch.outstanding = epoch.outstanding.saturating_sub(1);
                epoch.acks.push((ack, d));
            }
            // Not possible (an epoch ends only when nothing is outstanding); release at once.
            None => {
                drop(e);
                ack.done(d);
                return;
            }
        }
        drop(e);
        self.delivered.notify_one();
    }

    /// Cuts an epoch: `snapshot` runs alone (no message in processing) and returns the changed
    /// state; the epoch is sealed with it. Returns false when there was nothing to checkpoint.
    pub fn cut(&self, snapshot: impl FnOnce() -> Snapshot) -> bool {
        let _alone = self.exclusive();
        let mut s = snapshot();
        let mut e = self.epochs();
        if s.is_empty() && e.open.outstanding == 0 && e.open.acks.is_empty() {
            return false;
        }
        let next = e.open.number + 1;
        let mut sealed = std::mem::replace(&mut e.open, Epoch { number: next, ..Epoch::default() });
        s.digests = std::mem::take(&mut sealed.digests);
        s.epoch = sealed.number;
        sealed.snapshot = Some(s);
        e.sealed.push_back(sealed);
        true
    }

    /// Completes the oldest sealed epoch: waits until its outputs are delivered, writes it,
    /// releases its acknowledgements. `Ok(false)` when none is sealed.
    pub async fn complete(self: &Arc<Self>) -> Result<bool, StoreError> {
        loop {
            let notified = self.delivered.notified();
            {
                let e = self.epochs();
                match e.sealed.front() {
                    None => return Ok(false),
                    Some(oldest) if oldest.outstanding == 0 => break,
                    Some(_) => {}
                }
            }
            notified.await;
        }
        let mut epoch = self.epochs().sealed.pop_front().expect("a sealed epoch");
        if let Some(s) = epoch.snapshot.take() {
            let started = std::time::Instant::now();
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.store.write(&s)).await.map_err(|e| StoreError::Store { path: "state".into(), source: Box::new(e) })??;
            crate::telemetry::metrics::STATE_CHECKPOINT_SECONDS.observe(started.elapsed().as_secs_f64());
        }
        for (ack, d) in epoch.acks.drain(..) {
            ack.done(d);
        }
        Ok(true)
    }

    /// How often to checkpoint.
    pub fn interval(&self) -> std::time::Duration {
        self.interval
    }

    /// The store (start-up restore, dropping rules).
    pub fn store(&self) -> &StateStore {
        &self.store
    }
}
