//! Records on their way to the broker: batches acknowledged once all their records are,
//! delivery reports, and what a failed produce becomes (a retry after a backoff, a dead letter,
//! or a fatal stop).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::flow::{Ack, Delivery, OutputRecord};
use crate::kafka::client::Context;
use crate::retry::Backoff;
use crate::sink::kafka::config::HeaderSet;
use crate::sink::kafka::dead_letter::dead_letter;
use crate::telemetry::metrics;

use crate::sink::kafka::config::{IOT_TOPIC_HEADER, RULE_HEADER};

/// The `sink` label of this sink's metrics.
pub const SINK: &str = "kafka";
/// Pause before producing again when the producer's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);

/// The producer of the Kafka sink.
pub type KafkaProducer = ThreadedProducer<Context<Arc<Deliveries>>>;

/// The outputs of one input, acknowledged together.
pub struct BatchState {
    /// The input's IoT topic (the `iot-topic` header of its records).
    pub iot_topic: String,
    remaining: AtomicUsize,
    ack: Mutex<Option<Ack>>,
    failure: Mutex<Option<String>>,
    permits: u32,
}

impl BatchState {
    /// A batch of `records` records of an input on `iot_topic`, holding `permits` in-flight
    /// permits, acknowledged by `ack`.
    pub fn new(iot_topic: String, records: usize, ack: Ack, permits: u32) -> BatchState {
        BatchState { iot_topic, remaining: AtomicUsize::new(records), ack: Mutex::new(Some(ack)), failure: Mutex::new(None), permits }
    }

    /// One record of the batch is finished (delivered, or failed for good).
    fn finish_one(&self, d: &Deliveries, failure: Option<String>) {
        if let Some(f) = failure {
            self.failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(f);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(ack) = self.ack.lock().unwrap_or_else(|e| e.into_inner()).take() {
                ack.done(failure.map_or(Delivery::Delivered, Delivery::Failed));
            }
            d.permits.add_permits(self.permits as usize);
            d.update_in_flight();
            d.batches.fetch_sub(1, Ordering::AcqRel);
            d.idle.notify_one();
        }
    }
}

/// A record on its way: what is needed to produce it again or dead-letter it.
pub struct Pending {
    /// Its batch.
    pub batch: Arc<BatchState>,
    /// The record.
    pub rec: Arc<OutputRecord>,
    /// Failed attempts so far.
    pub attempt: u32,
    /// Whether this is a dead letter of another record (it is not dead-lettered again).
    pub dead_letter: bool,
}

/// What the sink counts, for its report and its metrics (handles resolved once).
pub struct Counters {
    /// Records delivered.
    pub records: AtomicU64,
    /// Of which error records.
    pub error_records: AtomicU64,
    /// Bytes of values delivered.
    pub bytes: AtomicU64,
    sent_data: IntCounter,
    sent_error: IntCounter,
    sent_bytes: IntCounter,
}

impl Counters {
    fn new() -> Counters {
        Counters {
            records: AtomicU64::new(0),
            error_records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            sent_data: metrics::SINK_SENT_RECORDS.with_label_values(&[SINK, "data"]),
            sent_error: metrics::SINK_SENT_RECORDS.with_label_values(&[SINK, "error"]),
            sent_bytes: metrics::SINK_SENT_BYTES.with_label_values(&[SINK]),
        }
    }
}

/// The records in flight, shared by the sink loop and the delivery callbacks: the bound on
/// them, the batches they belong to, where retries go, and what was delivered.
pub struct Deliveries {
    /// Records to produce again (retries, dead letters).
    resend: mpsc::UnboundedSender<Box<Pending>>,
    rt: tokio::runtime::Handle,
    /// One per record in flight.
    pub permits: Arc<Semaphore>,
    /// Batches not yet acknowledged.
    pub batches: AtomicUsize,
    /// Signalled when a batch is acknowledged.
    pub idle: Notify,
    /// What was delivered.
    pub counters: Counters,
    /// Set when the producer failed fatally.
    pub fatal: Mutex<Option<String>>,
    /// The delay before producing a failed record again, from its failed attempts.
    backoff: Backoff,
    dead_letter_topic: String,
    /// The built-in headers of data records (`[sink] headers`); error records get them all.
    headers: HeaderSet,
    started: Instant,
    last_retry_log_ms: AtomicU64,
    retries_unlogged: AtomicU64,
    /// Permits in all (the bound on records in flight), and the gauge of those taken.
    max_in_flight: usize,
    in_flight: IntGauge,
}

/// How a produce error is handled.
#[derive(Debug, PartialEq, Eq)]
pub enum Class {
    /// Produce again after a backoff; the label names the reason.
    Retry(&'static str),
    /// Refused for good: dead-letter it; the label names the reason.
    DeadLetter(&'static str),
    /// The producer is unusable.
    Fatal,
}

/// How a produce error is handled.
pub fn classify(err: &KafkaError) -> Class {
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

impl Deliveries {
    /// Nothing in flight yet; `resend` takes records to produce again, `max_in_flight` bounds
    /// the records in flight, a failed record waits `backoff.delay(its failed attempts)` before
    /// another attempt, refused ones go to `dead_letter_topic`, and data records get the
    /// built-in `headers`.
    pub fn new(resend: mpsc::UnboundedSender<Box<Pending>>, max_in_flight: usize, backoff: Backoff, dead_letter_topic: String, headers: HeaderSet) -> Deliveries {
        Deliveries {
            resend,
            rt: tokio::runtime::Handle::current(),
            permits: Arc::new(Semaphore::new(max_in_flight)),
            batches: AtomicUsize::new(0),
            idle: Notify::new(),
            counters: Counters::new(),
            fatal: Mutex::new(None),
            backoff,
            dead_letter_topic,
            headers,
            started: Instant::now(),
            last_retry_log_ms: AtomicU64::new(0),
            retries_unlogged: AtomicU64::new(0),
            max_in_flight,
            in_flight: metrics::SINK_IN_FLIGHT.with_label_values(&[SINK]),
        }
    }

    /// Sets the in-flight gauge from the permits taken.
    pub fn update_in_flight(&self) {
        self.in_flight.set(self.max_in_flight.saturating_sub(self.permits.available_permits()) as i64);
    }

    /// Sets the in-flight gauge to 0 (the sink stopped).
    pub fn clear_in_flight(&self) {
        self.in_flight.set(0);
    }

    fn delivered(&self, p: &Pending) {
        let c = &self.counters;
        c.records.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(p.rec.value.len() as u64, Ordering::Relaxed);
        c.sent_bytes.inc_by(p.rec.value.len() as u64);
        if p.rec.is_error {
            c.error_records.fetch_add(1, Ordering::Relaxed);
            c.sent_error.inc();
        } else {
            c.sent_data.inc();
        }
        p.batch.finish_one(self, None);
    }

    /// A produce attempt failed: retry, dead-letter, or give up.
    fn failed(&self, err: &KafkaError, mut p: Box<Pending>) {
        match classify(err) {
            Class::Retry(reason) => {
                metrics::SINK_RETRIES.with_label_values(&[SINK, reason]).inc();
                let delay = self.backoff.delay(p.attempt);
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
                if p.dead_letter || *p.rec.topic == *self.dead_letter_topic {
                    metrics::SINK_ERRORS.with_label_values(&[SINK, "dead_letter_refused"]).inc();
                    tracing::error!(topic = %p.rec.topic, error = %err, "the dead-letter topic refused a record");
                    p.batch.finish_one(self, Some(format!("dead-letter topic `{}` refused a record: {err}", p.rec.topic)));
                    return;
                }
                metrics::SINK_DEAD_LETTERS.with_label_values(&[SINK, reason]).inc();
                tracing::warn!(rule = %p.rec.rule, topic = %p.rec.topic, error = %err, dead_letter_topic = %self.dead_letter_topic, "record refused; dead-lettered");
                let dl = dead_letter(&p.rec, &p.batch.iot_topic, reason, &format!("kafka refused the record for topic `{}`: {err}", p.rec.topic), &self.dead_letter_topic);
                let _ = self.resend.send(Box::new(Pending { batch: p.batch.clone(), rec: Arc::new(dl), attempt: 0, dead_letter: true }));
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

/// Delivery reports.
impl ProducerContext for Context<Arc<Deliveries>> {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, p: Box<Pending>) {
        match result {
            Ok(_) => self.state.delivered(&p),
            Err((err, _)) => self.state.failed(err, p),
        }
    }
}

/// The built-in headers of a record: `chosen` (`[sink] headers`) for data records, both for
/// error records and dead letters (whose consumers rely on them).
fn builtin_headers(chosen: HeaderSet, rec: &OutputRecord) -> HeaderSet {
    if rec.is_error {
        HeaderSet::ALL
    } else {
        chosen
    }
}

/// Hands one record to the producer, waiting while its queue is full.
pub async fn produce(producer: &KafkaProducer, d: &Deliveries, mut p: Box<Pending>) {
    loop {
        let rec = p.rec.clone();
        let builtin = builtin_headers(d.headers, &rec);
        let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len() + builtin.len());
        if builtin.iot_topic {
            headers = headers.insert(Header { key: IOT_TOPIC_HEADER, value: Some(p.batch.iot_topic.as_bytes()) });
        }
        if builtin.rule && !rec.rule.is_empty() {
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
                d.failed(&err, p);
                return;
            }
        }
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
    fn error_records_keep_both_built_in_headers() {
        let rec = |is_error| OutputRecord { rule: Arc::from("r"), topic: "t".into(), key: None, headers: vec![], value: b"{}".to_vec(), is_error };
        let none = HeaderSet::of(&[]);
        assert_eq!(builtin_headers(none, &rec(false)), none, "data records: as configured");
        assert_eq!(builtin_headers(HeaderSet::ALL, &rec(false)), HeaderSet::ALL);
        assert_eq!(builtin_headers(none, &rec(true)), HeaderSet::ALL, "error records and dead letters: always both");
        let dl = crate::sink::kafka::dead_letter::dead_letter(&rec(false), "/a/b", "unknown_topic", "nope", "sluice-errors");
        assert_eq!(builtin_headers(none, &dl), HeaderSet::ALL);
    }
}
