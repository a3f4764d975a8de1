//! Checkpoint epochs: which inputs and window closes each checkpoint covers, and the
//! acknowledgements it holds back until it is durable.
//!
//! An epoch opens after each cut. A stateful input processed in it registers (its digest, one
//! outstanding delivery); a window closed by the timer registers an outstanding delivery too.
//! At the cut (under the state gate, taken alone) the engine's changed state is serialized and
//! the epoch is sealed; once its outstanding deliveries have all reported, the snapshot is
//! written, and only then are its inputs' acknowledgements released, in order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::flow::{Ack, Delivery};
use crate::message::Shard;
use crate::state::changelog::{self, Changelog, Entry};
use crate::state::coverage::Coverage;
use crate::state::store::{Snapshot, StateStore, StoreError};

/// Where a held Kafka record was read: its shard, topic and offset.
pub type Position = (Shard, Arc<str>, i64);

/// One epoch's bookkeeping.
#[derive(Default)]
struct Epoch {
    number: u64,
    outstanding: usize,
    acks: Vec<(Ack, Delivery)>,
    digests: Vec<u64>,
    covered: Vec<Position>,
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
    /// The changelog of each Kafka source with state, by source name.
    changelogs: RwLock<HashMap<Arc<str>, Arc<Changelog>>>,
    /// The Kafka shards this instance owns now (assigned and restored).
    owned: RwLock<HashSet<Shard>>,
    /// What the state of each owned Kafka shard holds, per topic.
    coverage: Mutex<HashMap<(Shard, Arc<str>), Coverage>>,
    /// The number of the last epoch written, and its waiters.
    completed: (Mutex<u64>, Condvar),
}

impl Checkpoints {
    /// A coordinator writing to `store`, its first epoch after `last` (the store's).
    pub fn new(store: StateStore, last: u64, interval: std::time::Duration) -> Arc<Checkpoints> {
        let epochs = Epochs { open: Epoch { number: last + 1, ..Epoch::default() }, sealed: VecDeque::new() };
        Arc::new(Checkpoints {
            gate: RwLock::new(()),
            epochs: Mutex::new(epochs),
            delivered: Notify::new(),
            store,
            interval,
            changelogs: RwLock::default(),
            owned: RwLock::default(),
            coverage: Mutex::default(),
            completed: (Mutex::new(last), Condvar::new()),
        })
    }

    /// Keeps the state of Kafka source `source`'s partitions in `changelog`.
    pub fn add_changelog(&self, source: &str, changelog: Arc<Changelog>) {
        self.changelogs.write().unwrap_or_else(|p| p.into_inner()).insert(Arc::from(source), changelog);
    }

    /// The changelog of Kafka source `source`, when its state has one.
    pub fn changelog(&self, source: &str) -> Option<Arc<Changelog>> {
        self.changelogs.read().unwrap_or_else(|p| p.into_inner()).get(source).cloned()
    }

    /// Whether this instance owns Kafka shard `shard` (always true for [`Shard::LOCAL`]).
    pub fn owns(&self, shard: Shard) -> bool {
        !shard.is_kafka() || self.owned.read().unwrap_or_else(|p| p.into_inner()).contains(&shard)
    }

    /// Takes Kafka shard `shard` (restored, holding `coverage` per topic).
    pub fn own(&self, shard: Shard, coverage: Vec<(Arc<str>, Coverage)>) {
        let mut c = self.coverage.lock().unwrap_or_else(|p| p.into_inner());
        c.retain(|(s, _), _| *s != shard);
        for (topic, cov) in coverage {
            c.insert((shard, topic), cov);
        }
        self.owned.write().unwrap_or_else(|p| p.into_inner()).insert(shard);
    }

    /// Lets Kafka shard `shard` go: nothing of it is written from now on.
    pub fn disown(&self, shard: Shard) {
        self.owned.write().unwrap_or_else(|p| p.into_inner()).remove(&shard);
        self.coverage.lock().unwrap_or_else(|p| p.into_inner()).retain(|(s, _), _| *s != shard);
    }

    /// Blocks (a consumer's thread, in a rebalance) until every epoch sealed now is written,
    /// or `deadline`. Returns whether they were.
    pub fn wait_sealed_written(&self, deadline: Instant) -> bool {
        let target = self.epochs().open.number - 1;
        let (lock, cv) = &self.completed;
        let mut done = lock.lock().unwrap_or_else(|p| p.into_inner());
        while *done < target {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            done = cv.wait_timeout(done, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
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

    /// A stateful input, processed under [`share`](Self::share): its ack, to be released once
    /// its outputs are delivered and its epoch is durable. An input of a Kafka shard gives its
    /// position (the epoch's coverage), any other its digest.
    pub fn hold(self: &Arc<Self>, digest: Option<u64>, pos: Option<Position>, ack: Ack) -> Ack {
        let n = {
            let mut e = self.epochs();
            e.open.outstanding += 1;
            if let Some(d) = digest {
                e.open.digests.push(d);
            }
            if let Some(p) = pos {
                e.open.covered.push(p);
            }
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
        // (`e` stays locked until the sealed epoch is queued: an ack reporting meanwhile must find it.)
        let mut sealed = std::mem::replace(&mut e.open, Epoch { number: next, ..Epoch::default() });
        // A Kafka shard this instance no longer owns is its next owner's to write.
        {
            let owned = self.owned.read().unwrap_or_else(|p| p.into_inner());
            let mine = |(sh, _, _): &(Shard, String, Option<Vec<u8>>)| !sh.is_kafka() || owned.contains(sh);
            s.groups.retain(mine);
            s.parts.retain(mine);
        }
        {
            // The full coverage of every Kafka shard this checkpoint touches, as of the cut:
            // its marker in the changelog.
            let mut cov = self.coverage.lock().unwrap_or_else(|p| p.into_inner());
            let mut touched: HashSet<Shard> = s.groups.iter().chain(&s.parts).map(|(sh, _, _)| *sh).filter(|sh| sh.is_kafka()).collect();
            for (shard, topic, offset) in std::mem::take(&mut sealed.covered) {
                if let Some(c) = cov.get_mut(&(shard, topic.clone())) {
                    c.insert(offset);
                    touched.insert(shard);
                } else if self.owns(shard) {
                    cov.entry((shard, topic)).or_default().insert(offset);
                    touched.insert(shard);
                }
            }
            s.coverage = cov.iter().filter(|((sh, _), _)| touched.contains(sh)).map(|((sh, t), c)| (*sh, t.clone(), c.clone())).collect();
            s.touched = touched.into_iter().collect();
        }
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
            let logs = self.changelog_entries(&s);
            let writes = logs.into_iter().map(|(log, entries)| async move { log.write(entries).await });
            let me = self.clone();
            let local = tokio::task::spawn_blocking(move || if s.has_local() { me.store.write(&s) } else { Ok(()) });
            let (local, logs) = tokio::join!(local, futures_util::future::join_all(writes));
            local.map_err(|e| StoreError::Store { path: "state".into(), source: Box::new(e) })??;
            logs.into_iter().collect::<Result<Vec<()>, _>>()?;
            crate::telemetry::metrics::STATE_CHECKPOINT_SECONDS.observe(started.elapsed().as_secs_f64());
        }
        for (ack, d) in epoch.acks.drain(..) {
            ack.done(d);
        }
        let (lock, cv) = &self.completed;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = epoch.number;
        cv.notify_all();
        Ok(true)
    }

    /// What a snapshot writes to each Kafka source's changelog.
    fn changelog_entries(&self, s: &Snapshot) -> Vec<(Arc<Changelog>, Vec<Entry>)> {
        let logs = self.changelogs.read().unwrap_or_else(|p| p.into_inner());
        if logs.is_empty() {
            return Vec::new();
        }
        let fingerprints: HashMap<&str, u64> = s.fingerprints.iter().map(|(r, f)| (r.as_str(), *f)).collect();
        let mut by_source: HashMap<Arc<str>, Vec<Entry>> = HashMap::new();
        let mut lanes: HashMap<Shard, Option<(Arc<str>, i32)>> = HashMap::new();
        let mut lane = |sh: Shard| lanes.entry(sh).or_insert_with(|| sh.lane()).clone();
        for (table, rows) in [(b'g', &s.groups), (b'p', &s.parts)] {
            for (sh, key, value) in rows.iter().filter(|(sh, _, _)| sh.is_kafka()) {
                let Some((source, partition)) = lane(*sh) else { continue };
                let fp = key.split_once('\0').and_then(|(rule, _)| fingerprints.get(rule)).copied().unwrap_or(0);
                let value = value.as_ref().map(|v| changelog::state_value(fp, v));
                by_source.entry(source).or_default().push((partition, changelog::state_key(table, key), value));
            }
        }
        // Each touched partition's marker, after its keys.
        for sh in &s.touched {
            let Some((source, partition)) = lane(*sh) else { continue };
            let cov: Vec<(&str, &Coverage)> = s.coverage.iter().filter(|(c, _, _)| c == sh).map(|(_, t, c)| (&**t, c)).collect();
            by_source.entry(source).or_default().push((partition, changelog::MARKER_KEY.to_vec(), Some(changelog::marker_value(&cov))));
        }
        by_source.into_iter().filter_map(|(source, entries)| logs.get(&source).map(|l| (l.clone(), entries))).collect()
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
