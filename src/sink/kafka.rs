//! The Kafka sink: a producer with delivery reports.
//!
//! Each record goes to the topic and key its rule rendered, with headers `iot-topic` (the
//! input's IoT topic), `sluice-rule` (the rule's name) and the rule's own headers. A batch (all
//! the outputs of one input) is acknowledged once the broker acknowledged every record of it,
//! so the source commits only what is safe (at-least-once).
//!
//! Failures:
//! - retriable (broker down, timeouts, leader changes, full queue): produced again after a
//!   backoff that doubles up to a bound, forever. Records in flight are bounded, so a broker
//!   that stays down stops the sink taking batches, which stops the workers, which pauses the
//!   sources: backpressure, nothing dropped.
//! - permanent (unknown or unauthorised topic, record too large, invalid): a dead-letter record
//!   with the reason goes to the dead-letter topic (the engine's default error topic) through
//!   the same producer, counted in `sluice_sink_dead_letters_total{sink="kafka"}`. If the dead
//!   letter fails for good too, the batch is acknowledged as failed and its source stops before
//!   committing it.
//! - fatal (the producer is unusable): the sink stops with an error.
//!
//! Readiness: the check `sink:kafka` passes while librdkafka's statistics (every
//! `statistics.interval.ms`, default [`STATISTICS_INTERVAL_MS`]) show at least one broker
//! connection up. An idle producer still keeps one (librdkafka maintains at least one
//! connection to the cluster even with sparse connections), so none up means unreachable.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::config::KafkaSinkConfig;
use crate::error::SinkError;
use crate::flow::{Ack, Batch, BoxFuture, Delivery, OutputRecord};
use crate::sink::{Sink, SinkReport};
use crate::telemetry::kafka_stats::Stats as ClientStats;
use crate::telemetry::{health, metrics};
use crate::value::base64_encode;

/// Header carrying the input's IoT topic.
pub const IOT_TOPIC_HEADER: &str = "iot-topic";
/// Header carrying the rule's name.
pub const RULE_HEADER: &str = "sluice-rule";
/// Output values up to this size are copied (base64) into their dead letter.
const DEAD_LETTER_VALUE_MAX: usize = 64 * 1024;
/// Pause before producing again when the producer's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);
/// Default `statistics.interval.ms` of the producer (readiness); a `properties` entry overrides
/// it (`0` turns statistics off, and the readiness check always passes).
pub const STATISTICS_INTERVAL_MS: u64 = 1000;
/// The readiness check of the Kafka sink.
pub const HEALTH_CHECK: &str = "sink:kafka";

/// Produces output records to Kafka.
pub struct KafkaSink {
    cfg: KafkaSinkConfig,
    dead_letter_topic: String,
}

impl KafkaSink {
    /// A sink from its configuration; permanently refused records go to `dead_letter_topic`.
    pub fn new(cfg: KafkaSinkConfig, dead_letter_topic: impl Into<String>) -> KafkaSink {
        KafkaSink { cfg, dead_letter_topic: dead_letter_topic.into() }
    }

    /// The librdkafka configuration of the producer.
    pub fn client_config(cfg: &KafkaSinkConfig) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("enable.idempotence", cfg.idempotence.to_string())
            .set("compression.type", &cfg.compression)
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("batch.size", cfg.batch_bytes.to_string())
            .set("batch.num.messages", cfg.batch_records.to_string())
            .set("topic.metadata.propagation.max.ms", cfg.unknown_topic_timeout_ms.to_string())
            .set("queue.buffering.max.messages", cfg.max_in_flight.clamp(1, 10_000_000).to_string())
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS.to_string());
        for (k, v) in &cfg.properties {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &cfg.brokers);
        c
    }
}

/// The outputs of one input, acknowledged together.
struct BatchState {
    remaining: AtomicUsize,
    ack: Mutex<Option<Ack>>,
    failure: Mutex<Option<String>>,
    permits: u32,
}

/// A record on its way: what is needed to produce it again or dead-letter it.
struct Pending {
    batch: Arc<BatchState>,
    rec: Arc<OutputRecord>,
    iot_topic: Arc<str>,
    attempt: u32,
    /// Whether this is a dead letter of another record (it is not dead-lettered again).
    dead_letter: bool,
}

/// What the sink counts, for its report and its metrics (handles resolved once).
struct Stats {
    records: AtomicU64,
    error_records: AtomicU64,
    bytes: AtomicU64,
    sent_data: IntCounter,
    sent_error: IntCounter,
    sent_bytes: IntCounter,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            records: AtomicU64::new(0),
            error_records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            sent_data: metrics::SINK_SENT_RECORDS.with_label_values(&[SINK, "data"]),
            sent_error: metrics::SINK_SENT_RECORDS.with_label_values(&[SINK, "error"]),
            sent_bytes: metrics::SINK_SENT_BYTES.with_label_values(&[SINK]),
        }
    }
}

/// The `sink` label of this sink's metrics.
const SINK: &str = "kafka";

/// State shared by the sink loop and the delivery callbacks.
struct Shared {
    resend: mpsc::UnboundedSender<Box<Pending>>,
    rt: tokio::runtime::Handle,
    permits: Arc<Semaphore>,
    batches: AtomicUsize,
    idle: Notify,
    stats: Stats,
    fatal: Mutex<Option<String>>,
    backoff: Duration,
    backoff_max: Duration,
    dead_letter_topic: String,
    started: std::time::Instant,
    last_retry_log_ms: AtomicU64,
    retries_unlogged: AtomicU64,
    /// Set when the sink stops: statistics no longer update its readiness.
    stopped: AtomicBool,
    /// Permits in all (the bound on records in flight), and the gauge of those taken.
    max_in_flight: usize,
    in_flight: IntGauge,
}

/// How a produce error is handled.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    /// Produce again after a backoff; the label names the reason.
    Retry(&'static str),
    /// Refused for good: dead-letter it; the label names the reason.
    DeadLetter(&'static str),
    /// The producer is unusable.
    Fatal,
}

fn classify(err: &KafkaError) -> Class {
    use RDKafkaErrorCode as C;
    match err.rdkafka_error_code() {
        Some(C::QueueFull) => Class::Retry("queue_full"),
        Some(C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut) => Class::Retry("timeout"),
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition | C::UnknownTopicId) => Class::DeadLetter("unknown_topic"),
        Some(C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed) => Class::DeadLetter("unauthorized"),
        Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize) => Class::DeadLetter("too_large"),
        Some(C::InvalidTopic | C::InvalidRecord | C::PolicyViolation | C::UnsupportedForMessageFormat) => Class::DeadLetter("invalid"),
        Some(C::Fatal) => Class::Fatal,
        _ => Class::Retry("other"),
    }
}

impl BatchState {
    /// One record of the batch is finished (delivered, or failed for good).
    fn finish_one(&self, shared: &Shared, failure: Option<String>) {
        if let Some(f) = failure {
            self.failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(f);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(ack) = self.ack.lock().unwrap_or_else(|e| e.into_inner()).take() {
                ack.done(failure.map_or(Delivery::Delivered, Delivery::Failed));
            }
            shared.permits.add_permits(self.permits as usize);
            shared.update_in_flight();
            shared.batches.fetch_sub(1, Ordering::AcqRel);
            shared.idle.notify_one();
        }
    }
}

impl Shared {
    /// Sets the in-flight gauge from the permits taken.
    fn update_in_flight(&self) {
        self.in_flight.set(self.max_in_flight.saturating_sub(self.permits.available_permits()) as i64);
    }

    fn delivered(&self, p: &Pending) {
        self.stats.records.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(p.rec.value.len() as u64, Ordering::Relaxed);
        self.stats.sent_bytes.inc_by(p.rec.value.len() as u64);
        if p.rec.is_error {
            self.stats.error_records.fetch_add(1, Ordering::Relaxed);
            self.stats.sent_error.inc();
        } else {
            self.stats.sent_data.inc();
        }
        p.batch.finish_one(self, None);
    }

    /// A produce attempt failed: retry, dead-letter, or give up.
    fn failed(&self, err: &KafkaError, mut p: Box<Pending>) {
        match classify(err) {
            Class::Retry(reason) => {
                metrics::SINK_RETRIES.with_label_values(&[SINK, reason]).inc();
                let delay = self.backoff.saturating_mul(1u32 << p.attempt.min(20)).min(self.backoff_max);
                // One line per second at most: an outage fails every record in flight.
                let retries = self.retries_unlogged.fetch_add(1, Ordering::Relaxed) + 1;
                let now = self.started.elapsed().as_millis() as u64;
                let last = self.last_retry_log_ms.load(Ordering::Relaxed);
                if (last == 0 || now >= last + 1000) && self.last_retry_log_ms.compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                    self.retries_unlogged.fetch_sub(retries, Ordering::Relaxed);
                    tracing::warn!(topic = %p.rec.topic, attempt = p.attempt + 1, error = %err, delay_ms = delay.as_millis() as u64, records = retries, "produce failed; retrying");
                }
                p.attempt = p.attempt.saturating_add(1);
                let tx = self.resend.clone();
                self.rt.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(p);
                });
            }
            Class::DeadLetter(reason) => {
                if p.dead_letter || p.rec.topic == self.dead_letter_topic {
                    metrics::SINK_ERRORS.with_label_values(&[SINK, "dead_letter_refused"]).inc();
                    tracing::error!(topic = %p.rec.topic, error = %err, "the dead-letter topic refused a record");
                    p.batch.finish_one(self, Some(format!("dead-letter topic `{}` refused a record: {err}", p.rec.topic)));
                    return;
                }
                metrics::SINK_DEAD_LETTERS.with_label_values(&[SINK, reason]).inc();
                tracing::warn!(rule = %p.rec.rule, topic = %p.rec.topic, error = %err, dead_letter_topic = %self.dead_letter_topic, "record refused; dead-lettered");
                let dl = dead_letter(&p, reason, &format!("kafka refused the record for topic `{}`: {err}", p.rec.topic), &self.dead_letter_topic);
                let _ = self.resend.send(Box::new(Pending { batch: p.batch.clone(), rec: Arc::new(dl), iot_topic: p.iot_topic.clone(), attempt: 0, dead_letter: true }));
            }
            Class::Fatal => {
                metrics::SINK_ERRORS.with_label_values(&[SINK, "fatal"]).inc();
                tracing::error!(error = %err, "kafka producer failed fatally");
                self.fatal.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| err.to_string());
                p.batch.finish_one(self, Some(format!("kafka producer failed: {err}")));
            }
        }
    }
}

/// The dead-letter record of a record the broker refused (`kind` is the metric's reason). The
/// value is copied in when small, and never when it was refused for its size.
fn dead_letter(p: &Pending, kind: &str, reason: &str, topic: &str) -> OutputRecord {
    let rec = &p.rec;
    let headers: serde_json::Map<String, serde_json::Value> = rec.headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let value = serde_json::json!({
        "rule": &*rec.rule,
        "topic": &*p.iot_topic,
        "stage": "sink",
        "reason": reason,
        "target_topic": rec.topic,
        "key": rec.key,
        "headers": headers,
        "value_bytes": rec.value.len(),
        "value_base64": (kind != "too_large" && rec.value.len() <= DEAD_LETTER_VALUE_MAX).then(|| base64_encode(&rec.value)),
    });
    OutputRecord {
        rule: rec.rule.clone(),
        topic: topic.to_string(),
        key: rec.key.clone(),
        headers: vec![("sluice-error-stage".into(), "sink".into())],
        value: serde_json::to_vec(&value).unwrap_or_default(),
        is_error: true,
    }
}

/// The producer's context: logs and delivery reports.
struct Ctx(Arc<Shared>);

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => tracing::error!(sink = "kafka", fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(sink = "kafka", fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(sink = "kafka", fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(sink = "kafka", fac, "librdkafka: {message}"),
        }
    }

    /// librdkafka's statistics: broker connection states (readiness).
    fn stats_raw(&self, json: &[u8]) {
        if self.0.stopped.load(Ordering::Relaxed) {
            return;
        }
        match ClientStats::parse(json) {
            Ok(stats) => {
                let (up, known) = stats.brokers_up();
                health::set(HEALTH_CHECK, up > 0, format!("{up} of {known} broker connections up"));
            }
            Err(e) => tracing::debug!(sink = "kafka", error = %e, "unreadable librdkafka statistics"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if crate::source::kafka::is_connection_error(&error) {
            // librdkafka logs these itself.
            tracing::debug!(sink = "kafka", %error, "kafka producer: {reason}");
        } else {
            tracing::warn!(sink = "kafka", %error, "kafka producer: {reason}");
        }
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, p: Box<Pending>) {
        match result {
            Ok(_) => self.0.delivered(&p),
            Err((err, _)) => self.0.failed(err, p),
        }
    }
}

type KafkaProducer = ThreadedProducer<Ctx>;

/// Hands one record to the producer, waiting while its queue is full.
async fn produce(producer: &KafkaProducer, shared: &Shared, mut p: Box<Pending>) {
    loop {
        let rec = p.rec.clone();
        let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len() + 2);
        headers = headers.insert(Header { key: IOT_TOPIC_HEADER, value: Some(p.iot_topic.as_bytes()) });
        if !rec.rule.is_empty() {
            headers = headers.insert(Header { key: RULE_HEADER, value: Some(rec.rule.as_bytes()) });
        }
        for (k, v) in &rec.headers {
            headers = headers.insert(Header { key: k, value: Some(v.as_bytes()) });
        }
        let mut record: BaseRecord<'_, [u8], [u8], Box<Pending>> = BaseRecord::with_opaque_to(&rec.topic, p).payload(&rec.value[..]).headers(headers);
        if let Some(k) = &rec.key {
            record = record.key(k.as_bytes());
        }
        match producer.send(record) {
            Ok(()) => return,
            Err((err, record)) => {
                p = record.delivery_opaque;
                if classify(&err) == Class::Retry("queue_full") {
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                    continue;
                }
                shared.failed(&err, p);
                return;
            }
        }
    }
}

impl Sink for KafkaSink {
    fn run(self: Box<Self>, mut rx: mpsc::Receiver<Batch>) -> BoxFuture<Result<SinkReport, SinkError>> {
        Box::pin(async move {
            metrics::prime_sink(SINK, metrics::KAFKA_SINK_ERROR_REASONS);
            let err = |message: String| SinkError::Other { sink: "kafka".into(), message };
            let max_in_flight = self.cfg.max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
            let (resend_tx, mut resend_rx) = mpsc::unbounded_channel::<Box<Pending>>();
            let shared = Arc::new(Shared {
                resend: resend_tx,
                rt: tokio::runtime::Handle::current(),
                permits: Arc::new(Semaphore::new(max_in_flight)),
                batches: AtomicUsize::new(0),
                idle: Notify::new(),
                stats: Stats::new(),
                fatal: Mutex::new(None),
                backoff: Duration::from_millis(self.cfg.retry_backoff_ms),
                backoff_max: Duration::from_millis(self.cfg.retry_backoff_max_ms),
                dead_letter_topic: self.dead_letter_topic.clone(),
                started: std::time::Instant::now(),
                last_retry_log_ms: AtomicU64::new(0),
                retries_unlogged: AtomicU64::new(0),
                stopped: AtomicBool::new(false),
                max_in_flight,
                in_flight: metrics::SINK_IN_FLIGHT.with_label_values(&[SINK]),
            });
            let client_config = Self::client_config(&self.cfg);
            if client_config.get("statistics.interval.ms").is_some_and(|v| v.trim() == "0") {
                health::set(HEALTH_CHECK, true, "not checked: statistics.interval.ms = 0");
            } else {
                health::set(HEALTH_CHECK, false, "connecting");
            }
            let producer: KafkaProducer = client_config.create_with_context(Ctx(shared.clone())).map_err(|e| err(format!("cannot create the producer: {e}")))?;
            let mut open = true;
            let mut next: Option<Batch> = None;
            loop {
                if let Some(f) = shared.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                    return Err(err(format!("producer failed: {f}")));
                }
                shared.update_in_flight();
                if !open && next.is_none() && shared.batches.load(Ordering::Acquire) == 0 {
                    break;
                }
                let want = next.as_ref().map_or(0, |b| b.records.len().clamp(1, max_in_flight) as u32);
                tokio::select! {
                    biased;
                    Some(p) = resend_rx.recv() => produce(&producer, &shared, p).await,
                    permit = shared.permits.clone().acquire_many_owned(want), if next.is_some() => {
                        let Ok(permit) = permit else { return Err(err("semaphore closed".into())) };
                        permit.forget();
                        let batch = next.take().expect("checked above");
                        let state = Arc::new(BatchState { remaining: AtomicUsize::new(batch.records.len()), ack: Mutex::new(Some(batch.ack)), failure: Mutex::new(None), permits: want });
                        shared.batches.fetch_add(1, Ordering::AcqRel);
                        let iot_topic: Arc<str> = Arc::from(batch.iot_topic);
                        for rec in batch.records {
                            let p = Box::new(Pending { batch: state.clone(), rec: Arc::new(rec), iot_topic: iot_topic.clone(), attempt: 0, dead_letter: false });
                            produce(&producer, &shared, p).await;
                        }
                    }
                    b = rx.recv(), if open && next.is_none() => match b {
                        None => open = false,
                        // No outputs: nothing to wait for, but the ack still moves the source's
                        // watermark.
                        Some(b) if b.records.is_empty() => b.ack.done(Delivery::Delivered),
                        Some(b) => next = Some(b),
                    },
                    _ = shared.idle.notified(), if !open && next.is_none() => {}
                }
            }
            shared.stopped.store(true, Ordering::Relaxed);
            health::set(HEALTH_CHECK, false, "stopped");
            producer.flush(Duration::from_secs(10)).map_err(|e| err(format!("flush failed: {e}")))?;
            shared.in_flight.set(0);
            Ok(SinkReport {
                records: shared.stats.records.load(Ordering::Relaxed),
                error_records: shared.stats.error_records.load(Ordering::Relaxed),
                bytes: shared.stats.bytes.load(Ordering::Relaxed),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let e = |c| KafkaError::MessageProduction(c);
        assert_eq!(classify(&e(RDKafkaErrorCode::MessageTimedOut)), Class::Retry("timeout"));
        assert_eq!(classify(&e(RDKafkaErrorCode::BrokerTransportFailure)), Class::Retry("other"));
        assert_eq!(classify(&e(RDKafkaErrorCode::NotLeaderForPartition)), Class::Retry("other"));
        assert_eq!(classify(&e(RDKafkaErrorCode::UnknownTopicOrPartition)), Class::DeadLetter("unknown_topic"));
        assert_eq!(classify(&e(RDKafkaErrorCode::UnknownTopic)), Class::DeadLetter("unknown_topic"));
        assert_eq!(classify(&e(RDKafkaErrorCode::TopicAuthorizationFailed)), Class::DeadLetter("unauthorized"));
        assert_eq!(classify(&e(RDKafkaErrorCode::MessageSizeTooLarge)), Class::DeadLetter("too_large"));
        assert_eq!(classify(&e(RDKafkaErrorCode::Fatal)), Class::Fatal);
    }

    #[test]
    fn producer_settings_come_from_fields_and_properties() {
        let mut properties = std::collections::BTreeMap::new();
        properties.insert("acks".to_string(), "all".to_string());
        properties.insert("linger.ms".to_string(), "50".to_string());
        let cfg = KafkaSinkConfig {
            brokers: "b:9092".into(),
            idempotence: true,
            compression: "zstd".into(),
            linger_ms: 5,
            batch_bytes: 100_000,
            batch_records: 500,
            max_in_flight: 1000,
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 1000,
            unknown_topic_timeout_ms: 2000,
            properties,
        };
        let c = KafkaSink::client_config(&cfg);
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("compression.type"), Some("zstd"));
        assert_eq!(c.get("batch.size"), Some("100000"));
        assert_eq!(c.get("batch.num.messages"), Some("500"));
        assert_eq!(c.get("topic.metadata.propagation.max.ms"), Some("2000"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("linger.ms"), Some("50"), "properties win over fields");
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(c.get("statistics.interval.ms"), Some("1000"), "statistics for readiness");
    }

    #[test]
    fn dead_letters_name_the_record_and_keep_small_values() {
        let batch = Arc::new(BatchState { remaining: AtomicUsize::new(1), ack: Mutex::new(None), failure: Mutex::new(None), permits: 1 });
        let rec = OutputRecord { rule: Arc::from("r1"), topic: "missing".into(), key: Some("k".into()), headers: vec![("h".into(), "v".into())], value: b"{\"a\":1}".to_vec(), is_error: false };
        let p = Pending { batch, rec: Arc::new(rec), iot_topic: Arc::from("/a/b"), attempt: 0, dead_letter: false };
        let dl = dead_letter(&p, "unknown_topic", "nope", "sluice-errors");
        assert_eq!(dl.topic, "sluice-errors");
        assert!(dl.is_error);
        let v: serde_json::Value = serde_json::from_slice(&dl.value).unwrap();
        assert_eq!(v["rule"], "r1");
        assert_eq!(v["topic"], "/a/b");
        assert_eq!(v["stage"], "sink");
        assert_eq!(v["target_topic"], "missing");
        assert_eq!(v["reason"], "nope");
        assert_eq!(v["headers"]["h"], "v");
        assert_eq!(v["value_base64"], base64_encode(b"{\"a\":1}"));
        let v: serde_json::Value = serde_json::from_slice(&dead_letter(&p, "too_large", "big", "e").value).unwrap();
        assert_eq!(v["value_base64"], serde_json::Value::Null);
        assert_eq!(v["value_bytes"], 7);
    }
}
