//! The Kafka source: a consumer in a consumer group, with at-least-once commits.
//!
//! Every record is tracked in its partition's [`OffsetTracker`] when consumed; its [`Ack`]
//! (called by the sink once all the record's outputs are acknowledged by the broker, including
//! records no rule matched) marks it done. Only the contiguous acknowledged watermark of each
//! partition is stored for commit (`enable.auto.offset.store = false`); librdkafka commits what
//! is stored every `commit_interval_ms` (retrying failed commits), and Sluice commits
//! synchronously on revocation and at shutdown.
//!
//! The consumer runs on a blocking thread and is always polled (so it stays in its group),
//! but it stops taking records when the pipeline does not keep up: it first waits for room in
//! the channel, then pauses its partitions (backpressure with bounded memory). Records the
//! source cannot turn into messages (no IoT topic) go to the dead-letter topic.
//!
//! librdkafka's statistics (every `statistics.interval.ms`, default [`STATISTICS_INTERVAL_MS`])
//! give the lag of each assigned partition (`sluice_kafka_consumer_lag_records`) and the broker
//! connection states behind the source's readiness check (`source:<name>`: ready while at least
//! one broker connection is up).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::config::{IotTopicFrom, KafkaSourceConfig};
use crate::error::SourceError;
use crate::flow::BoxFuture;
use crate::flow::{Ack, Delivery, Envelope};
use crate::message::{Message, Metadata};
use crate::shutdown::Shutdown;
use crate::source::offsets::{OffsetTracker, TopicPartition};
use crate::source::{Source, SourceReport};
use crate::telemetry::kafka_stats::Stats;
use crate::telemetry::{health, metrics};

/// How long the consumer may be blocked on a full channel before it pauses its partitions.
const PAUSE_AFTER: Duration = Duration::from_millis(500);
/// How often acknowledged watermarks are stored for the next automatic commit.
const STORE_INTERVAL: Duration = Duration::from_millis(100);
/// How long one wait for room in the channel lasts (the consumer is polled in between).
const WAIT_SLICE: Duration = Duration::from_millis(100);
/// Default `statistics.interval.ms` of the consumer (lag and readiness); a `properties` entry
/// overrides it (`0` turns statistics off: no lag metric, and the readiness check always passes).
pub const STATISTICS_INTERVAL_MS: u64 = 1000;

/// Reads records from Kafka topics in a consumer group.
pub struct KafkaSource {
    cfg: KafkaSourceConfig,
    name: String,
    shutdown_timeout: Duration,
}

impl KafkaSource {
    /// A source from its configuration; `shutdown_timeout` bounds the drain at shutdown.
    pub fn new(cfg: KafkaSourceConfig, shutdown_timeout: Duration) -> KafkaSource {
        let name = format!("kafka:{}:{}", cfg.group_id, cfg.topics.join(","));
        KafkaSource { cfg, name, shutdown_timeout }
    }

    /// The librdkafka configuration of the consumer.
    pub fn client_config(cfg: &KafkaSourceConfig) -> ClientConfig {
        let mut c = ClientConfig::new();
        // Incremental rebalances: partitions that stay with an instance keep flowing.
        c.set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS.to_string());
        for (k, v) in &cfg.properties {
            c.set(k, v);
        }
        // Offsets are stored by Sluice (only acknowledged watermarks), committed by librdkafka.
        c.set("bootstrap.servers", &cfg.brokers)
            .set("group.id", &cfg.group_id)
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", cfg.commit_interval_ms.to_string());
        c
    }
}

/// A consumed record not yet sent on (the channel was full).
struct Held {
    tp: TopicPartition,
    env: Envelope,
}

/// State shared by the consumer thread, its rebalance callbacks and the acks.
struct Shared {
    name: Arc<str>,
    /// The readiness check's name.
    check: String,
    tracker: Mutex<OffsetTracker>,
    acked: Condvar,
    held: Mutex<VecDeque<Held>>,
    assignment_changed: AtomicBool,
    closing: AtomicBool,
    revoke_timeout: Duration,
}

impl Shared {
    fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn held(&self) -> MutexGuard<'_, VecDeque<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until at most `target` records of `tps` (all partitions if `None`) are in flight,
    /// or `deadline`.
    fn wait_in_flight(&self, tps: Option<&[TopicPartition]>, target: usize, deadline: Instant) -> usize {
        let mut tr = self.tracker();
        loop {
            let n = match tps {
                Some(tps) => tr.in_flight_of(tps),
                None => tr.in_flight(),
            };
            let now = Instant::now();
            if n <= target || now >= deadline {
                return n;
            }
            tr = self.acked.wait_timeout(tr, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Stores the moved watermarks of `tps` (all if `None`) for librdkafka's next automatic
    /// commit. Only acknowledged watermarks are ever stored.
    fn store<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, tps: Option<&[TopicPartition]>) -> Vec<(TopicPartition, i64)> {
        let offsets = {
            let mut tr = self.tracker();
            match tps {
                Some(tps) => tr.take_commits_of(tps),
                None => tr.take_commits(),
            }
        };
        if !offsets.is_empty() {
            if let Err(e) = consumer.store_offsets(&tpl_of(&offsets)) {
                // Partitions no longer assigned refuse stores; the others are stored.
                tracing::debug!(source = %self.name, error = %e, "storing offsets");
            }
        }
        offsets
    }

    /// Stores every watermark (moved or not) and commits them now, synchronously: the last word
    /// before partitions go (revocation, shutdown), so that errors are seen.
    /// Returns whether the commit went through (true when there was nothing to commit).
    fn commit_now<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, tps: Option<&[TopicPartition]>) -> bool {
        let offsets: Vec<(TopicPartition, i64)> = {
            let mut tr = self.tracker();
            let all = tr.watermarks();
            match tps {
                Some(tps) => all.into_iter().filter(|(tp, _)| tps.contains(tp)).collect(),
                None => all,
            }
        };
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

    /// Revocation: drop held records of the revoked partitions, wait (bounded) for the rest of
    /// their in-flight records, commit what is done, and forget them.
    fn on_revoke<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, tpl: &TopicPartitionList) {
        let tps: Vec<TopicPartition> = tpl.elements().iter().map(|e| (Arc::from(e.topic()), e.partition())).collect();
        let dropped = {
            let mut held = self.held();
            let before = held.len();
            held.retain(|h| !tps.contains(&h.tp));
            before - held.len()
        };
        let lost = consumer.assignment_lost();
        metrics::KAFKA_REBALANCES.with_label_values(&[&*self.name, if lost { "lost" } else { "revoke" }]).inc();
        if !lost {
            if !self.closing.load(Ordering::Relaxed) {
                let left = self.wait_in_flight(Some(&tps), dropped, Instant::now() + self.revoke_timeout);
                if left > dropped {
                    tracing::warn!(source = %self.name, in_flight = left - dropped, "revoke timeout: giving up in-flight records (the next owner reads them again)");
                }
            }
            self.commit_now(consumer, Some(&tps));
        }
        let abandoned = self.tracker().revoke(&tps);
        if abandoned > 0 {
            metrics::KAFKA_ABANDONED.with_label_values(&[&*self.name]).inc_by(abandoned as u64);
        }
        for (topic, partition) in &tps {
            let _ = metrics::KAFKA_CONSUMER_LAG.remove_label_values(&[&*self.name, &**topic, &partition.to_string()]);
        }
        tracing::info!(source = %self.name, partitions = tps.len(), abandoned, lost, "partitions revoked");
    }
}

/// The consumer's context: logs, rebalances, commit results.
struct Ctx(Arc<Shared>);

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let name = &self.0.name;
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => tracing::error!(source = %name, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(source = %name, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(source = %name, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(source = %name, fac, "librdkafka: {message}"),
        }
    }

    /// librdkafka's statistics: partition lags and broker connection states.
    fn stats_raw(&self, json: &[u8]) {
        if self.0.closing.load(Ordering::Relaxed) {
            return;
        }
        let stats = match Stats::parse(json) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(source = %self.0.name, error = %e, "unreadable librdkafka statistics");
                return;
            }
        };
        let (up, known) = stats.brokers_up();
        health::set(&self.0.check, up > 0, format!("{up} of {known} broker connections up"));
        for (topic, partition, lag) in stats.consumer_lags() {
            metrics::KAFKA_CONSUMER_LAG.with_label_values(&[&*self.0.name, topic, &partition.to_string()]).set(lag);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        metrics::KAFKA_CONSUMER_ERRORS.with_label_values(&[&*self.0.name]).inc();
        if is_connection_error(&error) {
            // librdkafka logs these itself.
            tracing::debug!(source = %self.0.name, %error, "kafka consumer: {reason}");
        } else {
            tracing::warn!(source = %self.0.name, %error, "kafka consumer: {reason}");
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.0.on_revoke(consumer, tpl),
            Rebalance::Assign(tpl) => {
                metrics::KAFKA_REBALANCES.with_label_values(&[&*self.0.name, "assign"]).inc();
                tracing::debug!(source = %self.0.name, partitions = %partition_list(tpl), "partitions assigned");
            }
            Rebalance::Error(e) => {
                metrics::KAFKA_REBALANCES.with_label_values(&[&*self.0.name, "error"]).inc();
                tracing::warn!(source = %self.0.name, error = %e, "rebalance error");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.0.assignment_changed.store(true, Ordering::Relaxed);
        if !matches!(rebalance, Rebalance::Error(_)) {
            let now = consumer.assignment().map(|a| partition_list(&a)).unwrap_or_default();
            tracing::info!(source = %self.0.name, assignment = %now, "assignment changed");
        }
    }

    /// Results of librdkafka's automatic commits of the stored offsets (a failed one is
    /// retried by the next, as the stored offsets stay ahead of the committed ones).
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let commits: Vec<(TopicPartition, i64)> = offsets.elements().iter().filter_map(|e| e.offset().to_raw().map(|o| ((Arc::from(e.topic()), e.partition()), o))).collect();
        match result {
            Ok(()) => self.0.committed(&commits),
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                metrics::KAFKA_COMMITS.with_label_values(&[&*self.0.name, "error"]).inc();
                tracing::warn!(source = %self.0.name, error = %e, "offset commit failed; the next one retries");
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

/// Broker connection errors, which librdkafka logs itself and recovers from.
pub(crate) fn is_connection_error(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(e.rdkafka_error_code(), Some(C::BrokerTransportFailure | C::AllBrokersDown | C::Resolve))
}

/// Reads the IoT topic of a record from its key or a header (`header` finds one by name).
fn iot_topic<'m>(from: &IotTopicFrom, key: Option<&'m [u8]>, header: impl Fn(&str) -> Option<&'m [u8]>) -> Result<String, String> {
    let text = |bytes: Option<&[u8]>, what: &str| -> Result<String, String> {
        match bytes {
            None => Err(format!("record has no {what}")),
            Some(b) => match std::str::from_utf8(b) {
                Ok("") => Err(format!("record's {what} is empty")),
                Ok(s) => Ok(s.to_string()),
                Err(_) => Err(format!("record's {what} is not UTF-8")),
            },
        }
    };
    match from {
        IotTopicFrom::Header { name } => text(header(name), &format!("`{name}` header (the IoT topic)")),
        IotTopicFrom::Key => text(key, "key (the IoT topic)"),
        IotTopicFrom::Fixed { topic } => Ok(topic.clone()),
    }
}

/// The value of a record's first header named `name` (a header without a value reads as empty).
fn header<'m>(m: &'m BorrowedMessage<'_>, name: &str) -> Option<&'m [u8]> {
    m.headers().and_then(|hs| hs.iter().find(|h| h.key == name).map(|h| h.value.unwrap_or_default()))
}

impl Source for KafkaSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run(self: Box<Self>, tx: mpsc::Sender<Envelope>, shutdown: Shutdown) -> BoxFuture<Result<SourceReport, SourceError>> {
        Box::pin(async move {
            let handle = tokio::runtime::Handle::current();
            let name = self.name.clone();
            metrics::prime_kafka_source(&name);
            tokio::task::spawn_blocking(move || self.consume(tx, shutdown, handle)).await.map_err(|e| SourceError::Other { source_name: name, message: format!("consumer thread failed: {e}") })?
        })
    }
}

impl KafkaSource {
    fn consume(self, tx: mpsc::Sender<Envelope>, shutdown: Shutdown, rt: tokio::runtime::Handle) -> Result<SourceReport, SourceError> {
        let name: Arc<str> = Arc::from(self.name.as_str());
        let err = |message: String| SourceError::Other { source_name: name.to_string(), message };
        let check = format!("source:{name}");
        let client_config = Self::client_config(&self.cfg);
        if client_config.get("statistics.interval.ms").is_some_and(|v| v.trim() == "0") {
            health::set(&check, true, "not checked: statistics.interval.ms = 0");
        } else {
            health::set(&check, false, "connecting");
        }
        let shared = Arc::new(Shared {
            name: name.clone(),
            check,
            tracker: Mutex::new(OffsetTracker::new()),
            acked: Condvar::new(),
            held: Mutex::new(VecDeque::new()),
            assignment_changed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            revoke_timeout: Duration::from_millis(self.cfg.revoke_timeout_ms),
        });
        let consumer: BaseConsumer<Ctx> = client_config.create_with_context(Ctx(shared.clone())).map_err(|e| err(format!("cannot create the consumer: {e}")))?;
        let topics: Vec<&str> = self.cfg.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| err(format!("cannot subscribe to {topics:?}: {e}")))?;
        tracing::info!(source = %name, topics = ?topics, group = %self.cfg.group_id, "kafka source subscribed");

        let in_flight_gauge = metrics::KAFKA_SOURCE_IN_FLIGHT.with_label_values(&[&*name]);
        let received_records = metrics::SOURCE_RECEIVED_RECORDS.with_label_values(&[&*name]);
        let received_bytes = metrics::SOURCE_RECEIVED_BYTES.with_label_values(&[&*name]);
        let decode_errors = metrics::SOURCE_DECODE_ERRORS.with_label_values(&[&*name]);
        let paused_gauge = metrics::KAFKA_SOURCE_PAUSED.with_label_values(&[&*name]);
        let max_in_flight = self.cfg.max_in_flight;
        let resume_below = (max_in_flight * 3 / 4).max(1);
        let mut report = SourceReport::default();
        let mut paused = false;
        let mut blocked_since: Option<Instant> = None;
        let mut over_since: Option<Instant> = None;
        let mut last_store = Instant::now();
        let mut failure: Option<String> = None;

        // Pauses or resumes the whole current assignment; returns the new state (the old one if
        // that failed).
        let set_paused = |was: bool, pause: bool| -> bool {
            let assignment = match consumer.assignment() {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "cannot read the assignment");
                    return was;
                }
            };
            let r = if pause { consumer.pause(&assignment) } else { consumer.resume(&assignment) };
            match r {
                Ok(()) => {
                    if pause && !was {
                        metrics::KAFKA_SOURCE_PAUSES.with_label_values(&[&*name]).inc();
                        tracing::info!(source = %name, "pipeline is not keeping up: consumption paused");
                    } else if was && !pause {
                        tracing::info!(source = %name, "consumption resumed");
                    }
                    paused_gauge.set(i64::from(pause));
                    pause
                }
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "cannot pause/resume partitions");
                    was
                }
            }
        };

        loop {
            if shutdown.is_triggered() || tx.is_closed() {
                break;
            }
            if let Some((tp, offset)) = shared.tracker().failed() {
                failure = Some(format!("the outputs of {}[{}] offset {offset} could not be delivered; stopping so that a restart reads it again from the last commit", tp.0, tp.1));
                break;
            }
            if last_store.elapsed() >= STORE_INTERVAL {
                shared.store(&consumer, None);
                last_store = Instant::now();
            }
            let in_flight = shared.tracker().in_flight();
            in_flight_gauge.set(in_flight as i64);

            // Send on what is held, waiting a little for room.
            let mut channel_closed = false;
            let holding = {
                let front = shared.held().pop_front();
                match front {
                    None => false,
                    Some(h) => match rt.block_on(tokio::time::timeout(WAIT_SLICE, tx.reserve())) {
                        Ok(Ok(permit)) => {
                            permit.send(h.env);
                            blocked_since = None;
                            !shared.held().is_empty()
                        }
                        Ok(Err(_)) => {
                            channel_closed = true;
                            true
                        }
                        Err(_) => {
                            shared.held().push_front(h);
                            blocked_since.get_or_insert_with(Instant::now);
                            true
                        }
                    },
                }
            };
            if channel_closed {
                break;
            }

            // Backpressure. A short stall (full channel, or too much in flight) only holds the
            // consumer back; a long one pauses its partitions, which drops what librdkafka has
            // prefetched, so it is kept for when the pipeline really stops (e.g. the sink's
            // broker is down).
            let over = in_flight >= max_in_flight;
            if over {
                over_since.get_or_insert_with(Instant::now);
            } else {
                over_since = None;
            }
            let long = |since: Option<Instant>| since.is_some_and(|t| t.elapsed() >= PAUSE_AFTER);
            let stalled = long(blocked_since) || long(over_since);
            let want_pause = if paused { stalled || holding || in_flight >= resume_below } else { stalled };
            // After a rebalance, apply the state to the whole new assignment (librdkafka keeps a
            // partition's pause across a revocation and a new assignment of it).
            let reassigned = shared.assignment_changed.swap(false, Ordering::Relaxed);
            if want_pause != paused || reassigned {
                paused = set_paused(paused, want_pause);
            }
            if over && !paused {
                // Wait a little for acks rather than take more records.
                shared.wait_in_flight(None, max_in_flight - 1, Instant::now() + WAIT_SLICE);
                continue;
            }

            let timeout = if holding { Duration::ZERO } else { WAIT_SLICE };
            match consumer.poll(timeout) {
                None => {}
                Some(Err(e)) => {
                    metrics::KAFKA_CONSUMER_ERRORS.with_label_values(&[&*name]).inc();
                    if is_connection_error(&e) {
                        tracing::debug!(source = %name, error = %e, "kafka consumer error");
                    } else {
                        tracing::warn!(source = %name, error = %e, "kafka consumer error");
                    }
                }
                Some(Ok(m)) => {
                    let tp: TopicPartition = (Arc::from(m.topic()), m.partition());
                    let offset = m.offset();
                    let Some(generation) = shared.tracker().track(&tp, offset) else {
                        tracing::debug!(source = %name, topic = %tp.0, partition = tp.1, offset, "record below the tracked offsets skipped");
                        continue;
                    };
                    let received_ms = m.timestamp().to_millis().unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
                    let meta = Metadata { source: name.clone(), received_ms, id: offset as u64, kafka: Some((tp.1, offset)), ..Metadata::default() };
                    let payload = bytes::Bytes::copy_from_slice(m.payload().unwrap_or_default());
                    received_records.inc();
                    received_bytes.inc_by(payload.len() as u64);
                    let ack = {
                        let shared = shared.clone();
                        let tp = tp.clone();
                        Ack::new(move |d: Delivery| {
                            let ok = match &d {
                                Delivery::Delivered => true,
                                // Shutdown or a revoke gave the record up: read again later.
                                Delivery::Dropped => false,
                                Delivery::Failed(reason) => {
                                    tracing::error!(source = %shared.name, topic = %tp.0, partition = tp.1, offset, %reason, "delivery failed");
                                    false
                                }
                            };
                            let _ = shared.tracker().ack(&tp, generation, offset, ok);
                            shared.acked.notify_all();
                        })
                    };
                    let env = match iot_topic(&self.cfg.iot_topic, m.key(), |name| header(&m, name)) {
                        Ok(topic) => {
                            report.messages += 1;
                            Envelope::new(Message { topic, payload, meta }, ack)
                        }
                        Err(reason) => {
                            report.rejected += 1;
                            decode_errors.inc();
                            let reason = format!("{}[{}] offset {offset}: {reason}", tp.0, tp.1);
                            tracing::warn!(source = %name, %reason, "rejected record");
                            Envelope::rejected(Message { topic: String::new(), payload, meta }, ack, reason)
                        }
                    };
                    let mut held = shared.held();
                    if !held.is_empty() {
                        held.push_back(Held { tp, env });
                    } else {
                        match tx.try_send(env) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(env)) => held.push_back(Held { tp, env }),
                            Err(mpsc::error::TrySendError::Closed(_)) => break,
                        }
                    }
                }
            }
        }

        // Shutdown: stop taking records, let the pipeline drain, commit what was delivered.
        let downstream_gone = tx.is_closed();
        drop(tx);
        let held = std::mem::take(&mut *shared.held()).len();
        if failure.is_none() && !downstream_gone {
            let deadline = Instant::now() + self.shutdown_timeout.mul_f64(0.8);
            let left = shared.wait_in_flight(None, held, deadline);
            if left > held {
                tracing::warn!(source = %name, in_flight = left - held, "shutdown timeout: committing what was delivered; the rest is read again on restart");
            }
        }
        // The last commit is retried until the shutdown deadline: after a broker outage the
        // group coordinator may still be being looked up.
        let commit_deadline = Instant::now() + self.shutdown_timeout.mul_f64(0.15);
        while !shared.commit_now(&consumer, None) && Instant::now() < commit_deadline {
            std::thread::sleep(Duration::from_millis(250));
        }
        let abandoned = shared.tracker().in_flight();
        if abandoned > 0 {
            metrics::KAFKA_ABANDONED.with_label_values(&[&*name]).inc_by(abandoned as u64);
        }
        in_flight_gauge.set(0);
        paused_gauge.set(0);
        shared.closing.store(true, Ordering::Relaxed);
        health::set(&shared.check, false, "stopped");
        drop(consumer); // leaves the group (the revoke callback commits nothing new)
        tracing::info!(source = %name, messages = report.messages, rejected = report.rejected, abandoned, "kafka source stopped");
        match failure {
            Some(f) => Err(err(f)),
            None => Ok(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iot_topic_from_header_key_or_fixed() {
        let headers = [("other", &b"x"[..]), ("iot-topic", &b"/sys/pk/dn/thing/lifecycle"[..]), ("empty", &b""[..]), ("bad", &[0xff, 0xfe][..])];
        let find = |name: &str| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let from_header = |name: &str| IotTopicFrom::Header { name: name.into() };
        assert_eq!(iot_topic(&from_header("iot-topic"), None, find).unwrap(), "/sys/pk/dn/thing/lifecycle");
        assert_eq!(iot_topic(&from_header("missing"), None, find).unwrap_err(), "record has no `missing` header (the IoT topic)");
        assert_eq!(iot_topic(&from_header("empty"), None, find).unwrap_err(), "record's `empty` header (the IoT topic) is empty");
        assert_eq!(iot_topic(&from_header("bad"), None, find).unwrap_err(), "record's `bad` header (the IoT topic) is not UTF-8");
        assert_eq!(iot_topic(&IotTopicFrom::Key, Some(b"/a/b"), find).unwrap(), "/a/b");
        assert_eq!(iot_topic(&IotTopicFrom::Key, None, find).unwrap_err(), "record has no key (the IoT topic)");
        assert_eq!(iot_topic(&IotTopicFrom::Fixed { topic: "/f".into() }, None, find).unwrap(), "/f");
    }

    #[test]
    fn consumer_properties_pass_through_but_offset_stores_stay_manual() {
        let mut props = std::collections::BTreeMap::new();
        props.insert("session.timeout.ms".to_string(), "6000".to_string());
        props.insert("auto.offset.reset".to_string(), "latest".to_string());
        let cfg = KafkaSourceConfig {
            brokers: "b:9092".into(),
            topics: vec!["in".into()],
            group_id: "g".into(),
            iot_topic: IotTopicFrom::default(),
            max_in_flight: 10,
            commit_interval_ms: 1000,
            revoke_timeout_ms: 1000,
            properties: props,
        };
        let c = KafkaSource::client_config(&cfg);
        assert_eq!(c.get("session.timeout.ms"), Some("6000"));
        assert_eq!(c.get("auto.offset.reset"), Some("latest"));
        assert_eq!(c.get("partition.assignment.strategy"), Some("cooperative-sticky"));
        assert_eq!(c.get("enable.auto.commit"), Some("true"));
        assert_eq!(c.get("auto.commit.interval.ms"), Some("1000"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"), "only acknowledged offsets are stored");
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("statistics.interval.ms"), Some("1000"), "statistics for lag and readiness");
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
    }
}
