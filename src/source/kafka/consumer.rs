//! The consumer's state shared by its thread, its rebalance and commit callbacks and the acks
//! ([`Consumption`]: the [`Intake`] under a lock), and its librdkafka context.
//!
//! Only acknowledged watermarks are ever stored for commit (`enable.auto.offset.store =
//! false`); librdkafka commits what is stored every `commit_interval_ms` (retrying failed
//! commits), and Sluice commits synchronously on revocation and at shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{Offset, TopicPartitionList};

use crate::flow::{Delivery, Envelope, PartitionState};
use crate::kafka::client::Context;
use crate::source::kafka::intake::Intake;
use crate::source::offsets::TopicPartition;
use crate::state::coverage::Coverage;
use crate::telemetry::metrics;

/// The consumer of a Kafka source.
pub type KafkaConsumer = BaseConsumer<Context<Arc<Consumption>>>;

/// What the consumer has taken in, shared by its thread, its callbacks and the acks: the
/// [`Intake`] state machine under a lock, and a condition variable the acks signal.
pub struct Consumption {
    /// The source's name.
    pub name: Arc<str>,
    intake: Mutex<Intake<Envelope>>,
    acked: Condvar,
    /// Threads waiting on `acked` (changed under the lock): an ack signals only when there is
    /// one, since a signal is a system call even with nobody waiting.
    waiters: AtomicUsize,
    revoke_timeout: Duration,
    /// The engine's partition state, told of assignments and revocations.
    state: Option<Arc<dyn PartitionState>>,
    /// Offsets of assigned partitions that their restored state already holds.
    covered: Mutex<HashMap<TopicPartition, Coverage>>,
    /// Whether `covered` has any entry (read without the lock for every record).
    any_covered: AtomicBool,
    /// Why the source must stop (its partitions' state could not be restored).
    fatal: Mutex<Option<String>>,
}

impl Consumption {
    /// Nothing consumed yet.
    pub fn new(name: Arc<str>, max_in_flight: usize, revoke_timeout: Duration) -> Consumption {
        Consumption {
            name,
            intake: Mutex::new(Intake::new(max_in_flight, Instant::now())),
            acked: Condvar::new(),
            waiters: AtomicUsize::new(0),
            revoke_timeout,
            state: None,
            covered: Mutex::default(),
            any_covered: AtomicBool::new(false),
            fatal: Mutex::new(None),
        }
    }

    /// Tells `state` of the partitions' comings and goings.
    pub fn with_state(mut self, state: Option<Arc<dyn PartitionState>>) -> Consumption {
        self.state = state;
        self
    }

    /// Why the source must stop, if it must.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the restored state of `tp` already holds the record at `offset` (then it is
    /// acknowledged without being processed again).
    pub fn covered(&self, tp: &TopicPartition, offset: i64) -> bool {
        if !self.any_covered.load(Ordering::Relaxed) {
            return false;
        }
        let mut c = self.covered.lock().unwrap_or_else(|e| e.into_inner());
        let Some(cov) = c.get(tp) else { return false };
        if cov.contains(offset) {
            return true;
        }
        if cov.ranges().last().is_none_or(|&(_, end)| offset > end) {
            // Past what was restored: nothing more of this partition is.
            c.remove(tp);
            self.any_covered.store(!c.is_empty(), Ordering::Relaxed);
        }
        false
    }

    /// Assignment: the partitions' state is restored before any of their records is read.
    fn on_assign(&self, consumer: &KafkaConsumer, tpl: &TopicPartitionList) {
        let Some(state) = &self.state else { return };
        let mut partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        partitions.sort_unstable();
        partitions.dedup();
        if partitions.is_empty() {
            return;
        }
        let mut topics: Vec<String> = tpl.elements().iter().map(|e| e.topic().to_string()).collect();
        topics.sort_unstable();
        topics.dedup();
        let count =
            topics.iter().filter_map(|t| consumer.fetch_metadata(Some(t), Duration::from_secs(10)).ok()).filter_map(|m| m.topics().first().map(|t| t.partitions().len() as i32)).max().unwrap_or(0);
        match state.assigned(&self.name, &partitions, count) {
            Ok(coverage) => {
                let mut c = self.covered.lock().unwrap_or_else(|e| e.into_inner());
                for ((topic, partition), cov) in coverage {
                    if !cov.is_empty() {
                        c.insert((Arc::from(topic), partition), cov);
                    }
                }
                self.any_covered.store(!c.is_empty(), Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(source = %self.name, partitions = ?partitions, error = %e, "cannot restore the state of assigned partitions; the source stops (a restart tries again)");
                crate::telemetry::health::set("state", false, format!("restoring partitions of {}: {e}", self.name));
                *self.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("cannot restore the state of partitions {partitions:?}: {e}"));
            }
        }
    }

    /// The state machine. Never drop an `Envelope` while holding it: its ack takes the lock.
    pub fn lock(&self) -> MutexGuard<'_, Intake<Envelope>> {
        self.intake.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ack of the record at `offset` of `tp`, tracked in `generation`.
    pub fn ack(&self, tp: &TopicPartition, generation: u64, offset: i64, d: &Delivery) {
        let delivered = match d {
            Delivery::Delivered => true,
            // Shutdown or a revoke gave the record up: read again later.
            Delivery::Dropped => false,
            Delivery::Failed(reason) => {
                tracing::error!(source = %self.name, topic = %tp.0, partition = tp.1, offset, %reason, "delivery failed");
                false
            }
        };
        let mut st = self.lock();
        st.ack(tp, generation, offset, delivered);
        let waiting = self.waiters.load(Ordering::Relaxed) > 0;
        drop(st);
        if waiting {
            self.acked.notify_all();
        }
    }

    /// Waits until at most `target` records of `tps` (all partitions if `None`) are in flight,
    /// or `deadline`. Returns how many are.
    pub fn wait_in_flight(&self, tps: Option<&[TopicPartition]>, target: usize, deadline: Instant) -> usize {
        let mut st = self.lock();
        loop {
            let n = match tps {
                Some(tps) => st.in_flight_of(tps),
                None => st.in_flight(),
            };
            let now = Instant::now();
            if n <= target || now >= deadline {
                return n;
            }
            // Counted under the lock, so an ack (which reads it under the lock) either sees this
            // waiter or happened before the count above was taken.
            self.waiters.fetch_add(1, Ordering::Relaxed);
            st = self.acked.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Stores moved watermarks for librdkafka's next automatic commit.
    pub fn store(&self, consumer: &KafkaConsumer, offsets: &[(TopicPartition, i64)]) {
        if !offsets.is_empty() {
            if let Err(e) = consumer.store_offsets(&tpl_of(offsets)) {
                // Partitions no longer assigned refuse stores; the others are stored.
                tracing::debug!(source = %self.name, error = %e, "storing offsets");
            }
        }
    }

    /// Stores every watermark of `tps` (all if `None`), moved or not, and commits them now,
    /// synchronously: the last word before partitions go (revocation, shutdown), so that errors
    /// are seen. Returns whether the commit went through (true when there was nothing to
    /// commit).
    pub fn commit_now(&self, consumer: &KafkaConsumer, tps: Option<&[TopicPartition]>) -> bool {
        let offsets = self.lock().watermarks(tps);
        if offsets.is_empty() {
            return true;
        }
        let tpl = tpl_of(&offsets);
        let _ = consumer.store_offsets(&tpl);
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                self.committed(&offsets);
                true
            }
            Err(e) => {
                metrics::KAFKA_COMMITS.with_label_values(&[&*self.name, "error"]).inc();
                tracing::warn!(source = %self.name, error = %e, "offset commit failed (what is not committed is read again)");
                false
            }
        }
    }

    fn committed(&self, commits: &[(TopicPartition, i64)]) {
        metrics::KAFKA_COMMITS.with_label_values(&[&*self.name, "ok"]).inc();
        for ((topic, partition), offset) in commits {
            metrics::KAFKA_COMMITTED_OFFSET.with_label_values(&[&*self.name, &**topic, &partition.to_string()]).set(*offset);
            tracing::debug!(source = %self.name, %topic, partition, offset, "committed");
        }
    }

    /// Revocation: drop held records of the revoked partitions, wait (bounded, unless
    /// `closing`) for the rest of their in-flight records, commit what is done, and forget
    /// them.
    fn on_revoke(&self, consumer: &KafkaConsumer, tpl: &TopicPartitionList, closing: bool) {
        let tps: Vec<TopicPartition> = tpl.elements().iter().map(|e| (Arc::from(e.topic()), e.partition())).collect();
        let held = self.lock().revoke_held(&tps);
        let dropped = held.len();
        drop(held); // outside the lock: their acks (dropped) take it
        let lost = consumer.assignment_lost();
        metrics::KAFKA_REBALANCES.with_label_values(&[&*self.name, if lost { "lost" } else { "revoke" }]).inc();
        if !lost {
            if !closing {
                let left = self.wait_in_flight(Some(&tps), dropped, Instant::now() + self.revoke_timeout);
                if left > dropped {
                    tracing::warn!(source = %self.name, in_flight = left - dropped, "revoke timeout: giving up in-flight records (the next owner reads them again)");
                }
            }
            self.commit_now(consumer, Some(&tps));
        }
        if let Some(state) = &self.state {
            let mut partitions: Vec<i32> = tps.iter().map(|tp| tp.1).collect();
            partitions.sort_unstable();
            partitions.dedup();
            state.revoked(&self.name, &partitions);
            let mut c = self.covered.lock().unwrap_or_else(|e| e.into_inner());
            c.retain(|tp, _| !tps.contains(tp));
            self.any_covered.store(!c.is_empty(), Ordering::Relaxed);
        }
        let abandoned = self.lock().forget(&tps);
        if abandoned > 0 {
            metrics::KAFKA_ABANDONED.with_label_values(&[&*self.name]).inc_by(abandoned as u64);
        }
        for (topic, partition) in &tps {
            let _ = metrics::KAFKA_CONSUMER_LAG.remove_label_values(&[&*self.name, &**topic, &partition.to_string()]);
        }
        tracing::info!(source = %self.name, partitions = tps.len(), abandoned, lost, "partitions revoked");
    }
}

/// Rebalances and the results of automatic commits.
impl ConsumerContext for Context<Arc<Consumption>> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let name = &self.state.name;
        match rebalance {
            Rebalance::Revoke(tpl) => self.state.on_revoke(consumer, tpl, self.client.stopped()),
            Rebalance::Assign(tpl) => {
                metrics::KAFKA_REBALANCES.with_label_values(&[&**name, "assign"]).inc();
                tracing::debug!(source = %name, partitions = %partition_list(tpl), "partitions assigned");
                self.state.on_assign(consumer, tpl);
            }
            Rebalance::Error(e) => {
                metrics::KAFKA_REBALANCES.with_label_values(&[&**name, "error"]).inc();
                tracing::warn!(source = %name, error = %e, "rebalance error");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.state.lock().reassigned();
        if !matches!(rebalance, Rebalance::Error(_)) {
            let assignment = consumer.assignment().ok();
            metrics::KAFKA_ASSIGNED_PARTITIONS.with_label_values(&[&*self.state.name]).set(assignment.as_ref().map_or(0, |a| a.count()) as i64);
            let now = assignment.map(|a| partition_list(&a)).unwrap_or_default();
            tracing::info!(source = %self.state.name, assignment = %now, "assignment changed");
        }
    }

    /// Results of librdkafka's automatic commits of the stored offsets (a failed one is
    /// retried by the next, as the stored offsets stay ahead of the committed ones).
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let commits: Vec<(TopicPartition, i64)> = offsets.elements().iter().filter_map(|e| e.offset().to_raw().map(|o| ((Arc::from(e.topic()), e.partition()), o))).collect();
        match result {
            Ok(()) => self.state.committed(&commits),
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                metrics::KAFKA_COMMITS.with_label_values(&[&*self.state.name, "error"]).inc();
                tracing::warn!(source = %self.state.name, error = %e, "offset commit failed; the next one retries");
            }
        }
    }
}

/// A partition list with offsets.
fn tpl_of(offsets: &[(TopicPartition, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for ((topic, partition), offset) in offsets {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    tpl
}

/// `topic[partition],…` for logs.
fn partition_list(tpl: &TopicPartitionList) -> String {
    let parts: Vec<String> = tpl.elements().iter().map(|e| format!("{}[{}]", e.topic(), e.partition())).collect();
    parts.join(",")
}
