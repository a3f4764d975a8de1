//! The Kafka sink: a producer with delivery reports.
//!
//! Each record goes to the topic and key its rule rendered, with the built-in headers chosen by
//! `[sink] headers` (default both: `iot-topic`, the input's IoT topic, and `sluice-rule`, the
//! rule's name; resolved once at start into a [`HeaderSet`]) and the rule's own headers. Error
//! records and dead letters always carry both built-in headers. A batch (all the outputs of one
//! input) is acknowledged once the broker acknowledged every record of it, so the source
//! commits only what is safe (at-least-once).
//!
//! Failures:
//! - retriable (broker down, timeouts, leader changes, full queue): produced again after a
//!   backoff that doubles up to a bound ([`Backoff`]), forever. Records in flight are bounded,
//!   so a broker that stays down stops the sink taking batches, which stops the workers, which
//!   pauses the sources: backpressure, nothing dropped.
//! - permanent (unknown or unauthorised topic, record too large, invalid): a dead-letter record
//!   with the reason goes to the dead-letter topic (the engine's default error topic) through
//!   the same producer, counted in `sluice_sink_dead_letters_total{sink="kafka"}`. If the dead
//!   letter fails for good too, the batch is acknowledged as failed and its source stops before
//!   committing it.
//! - fatal (the producer is unusable): the sink stops with an error.
//!
//! Readiness: the check `sink:kafka` passes while librdkafka's statistics (every
//! `statistics.interval.ms`, default
//! [`STATISTICS_INTERVAL_MS`](crate::kafka::client::STATISTICS_INTERVAL_MS)) show at least one
//! broker connection up. An idle producer still keeps one (librdkafka maintains at least one
//! connection to the cluster even with sparse connections), so none up means unreachable.
//!
//! - [`delivery`]: records in flight, delivery reports, retries and dead letters;
//! - [`dead_letter`]: the dead-letter record of a refused record;
//! - [`config`]: the producer's configuration.

pub mod config;
pub mod dead_letter;
pub mod delivery;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::Producer;
use tokio::sync::{mpsc, Semaphore};

use crate::error::SinkError;
use crate::flow::{Batch, BoxFuture, Delivery};
use crate::kafka::client::{Client, Context, Role};
use crate::retry::Backoff;
use crate::sink::kafka::config::{HeaderSet, KafkaSinkConfig};
use crate::sink::kafka::delivery::{produce, BatchState, Deliveries, KafkaProducer, Pending, SINK};
use crate::sink::{Sink, SinkReport};
use crate::telemetry::metrics;

pub use crate::sink::kafka::config::{IOT_TOPIC_HEADER, RULE_HEADER};

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
        cfg.client_config()
    }
}

impl KafkaSinkConfig {
    /// The sink of this configuration; permanently refused records go to `dead_letter_topic`.
    pub fn build(self, dead_letter_topic: impl Into<String>) -> KafkaSink {
        KafkaSink::new(self, dead_letter_topic)
    }
}

impl Sink for KafkaSink {
    fn run(self: Box<Self>, mut rx: mpsc::Receiver<Batch>) -> BoxFuture<Result<SinkReport, SinkError>> {
        Box::pin(async move {
            metrics::prime_sink(SINK, metrics::KAFKA_SINK_ERROR_REASONS);
            let err = |message: String| SinkError::Other { sink: "kafka".into(), message };
            let max_in_flight = self.cfg.max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
            let (resend_tx, mut resend_rx) = mpsc::unbounded_channel::<Box<Pending>>();
            let backoff = Backoff::new(Duration::from_millis(self.cfg.retry_backoff_ms), Duration::from_millis(self.cfg.retry_backoff_max_ms));
            let headers = HeaderSet::of(&self.cfg.headers);
            tracing::info!(iot_topic = headers.iot_topic, rule = headers.rule, "kafka sink: built-in headers of data records");
            let d = Arc::new(Deliveries::new(resend_tx, max_in_flight, backoff, self.dead_letter_topic.clone(), headers));
            let client_config = self.cfg.client_config();
            let client = Client::new(Role::Producer, HEALTH_CHECK);
            client.start(&client_config);
            let producer: KafkaProducer = client_config.create_with_context(Context { client, state: d.clone() }).map_err(|e| err(format!("cannot create the producer: {e}")))?;
            let mut open = true;
            let mut next: Option<Batch> = None;
            loop {
                if let Some(f) = d.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                    return Err(err(format!("producer failed: {f}")));
                }
                d.update_in_flight();
                if !open && next.is_none() && d.batches.load(Ordering::Acquire) == 0 {
                    break;
                }
                let want = next.as_ref().map_or(0, |b| b.records.len().clamp(1, max_in_flight) as u32);
                tokio::select! {
                    biased;
                    Some(p) = resend_rx.recv() => produce(&producer, &d, p).await,
                    permit = d.permits.clone().acquire_many_owned(want), if next.is_some() => {
                        let Ok(permit) = permit else { return Err(err("semaphore closed".into())) };
                        permit.forget();
                        let batch = next.take().expect("checked above");
                        let state = Arc::new(BatchState::new(batch.iot_topic, batch.records.len(), batch.ack, want));
                        d.batches.fetch_add(1, Ordering::AcqRel);
                        for rec in batch.records {
                            let p = Box::new(Pending { batch: state.clone(), rec: Arc::new(rec), attempt: 0, dead_letter: false });
                            produce(&producer, &d, p).await;
                        }
                    }
                    b = rx.recv(), if open && next.is_none() => match b {
                        None => open = false,
                        // No outputs: nothing to wait for, but the ack still moves the source's
                        // watermark.
                        Some(b) if b.records.is_empty() => b.ack.done(Delivery::Delivered),
                        Some(b) => next = Some(b),
                    },
                    _ = d.idle.notified(), if !open && next.is_none() => {}
                }
            }
            producer.context().client.stop();
            producer.flush(Duration::from_secs(10)).map_err(|e| err(format!("flush failed: {e}")))?;
            d.clear_in_flight();
            Ok(SinkReport { records: d.counters.records.load(Ordering::Relaxed), error_records: d.counters.error_records.load(Ordering::Relaxed), bytes: d.counters.bytes.load(Ordering::Relaxed) })
        })
    }
}
