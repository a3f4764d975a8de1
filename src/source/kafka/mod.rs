//! The Kafka source: a consumer in a consumer group, with at-least-once commits.
//!
//! Every record is tracked in its partition's offset tracker when consumed; its ack (called by
//! the sink once all the record's outputs are acknowledged by the broker, including records no
//! rule matched) marks it done. Only the contiguous acknowledged watermark of each partition is
//! stored for commit (`enable.auto.offset.store = false`); librdkafka commits what is stored
//! every `commit_interval_ms` (retrying failed commits), and Sluice commits synchronously on
//! revocation and at shutdown.
//!
//! The consumer runs on a blocking thread and is always polled (so it stays in its group),
//! but it stops taking records when the pipeline does not keep up: it first waits for room in
//! the channel, then pauses its partitions (backpressure with bounded memory). Records the
//! source cannot turn into messages (no IoT topic) go to the dead-letter topic.
//!
//! librdkafka's statistics (every `statistics.interval.ms`, default
//! [`STATISTICS_INTERVAL_MS`](crate::kafka::client::STATISTICS_INTERVAL_MS)) give the lag of
//! each assigned partition (`sluice_kafka_consumer_lag_records`) and the broker connection
//! states behind the source's readiness check (`source:<name>`: ready while at least one broker
//! connection is up).
//!
//! - [`intake`]: the flow-control state machine (in flight, held, pause/resume, commits);
//! - [`consumer`]: its shared, locked form and the consumer's rebalance and commit callbacks;
//! - [`consume`]: the consumer loop;
//! - [`config`]: the consumer's configuration.

pub mod config;
pub mod consume;
pub mod consumer;
pub mod intake;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use tokio::sync::mpsc;

use crate::error::SourceError;
use crate::flow::{BoxFuture, Envelope, PartitionState};
use crate::shutdown::Shutdown;
use crate::source::kafka::config::KafkaSourceConfig;
use crate::source::{Source, SourceReport};
use crate::telemetry::metrics;

/// Reads records from Kafka topics in a consumer group.
pub struct KafkaSource {
    cfg: KafkaSourceConfig,
    name: String,
    shutdown_timeout: Duration,
    state: Option<Arc<dyn PartitionState>>,
}

impl KafkaSource {
    /// A source from its configuration; `shutdown_timeout` bounds the drain at shutdown.
    pub fn new(cfg: KafkaSourceConfig, shutdown_timeout: Duration) -> KafkaSource {
        let name = KafkaSource::source_name(&cfg);
        KafkaSource { cfg, name, shutdown_timeout, state: None }
    }

    /// Tells `state` when partitions come and go (the state of stateful rules follows them).
    pub fn with_state(mut self, state: Arc<dyn PartitionState>) -> KafkaSource {
        self.state = Some(state);
        self
    }

    /// The source's name (`kafka:<group>:<topics>`), as metrics and the state's changelog know it.
    pub fn source_name(cfg: &KafkaSourceConfig) -> String {
        format!("kafka:{}:{}", cfg.group_id, cfg.topics.join(","))
    }

    /// The librdkafka configuration of the consumer.
    pub fn client_config(cfg: &KafkaSourceConfig) -> ClientConfig {
        cfg.client_config()
    }
}

impl KafkaSourceConfig {
    /// The source of this configuration; `shutdown_timeout` bounds the drain at shutdown.
    pub fn build(self, shutdown_timeout: Duration) -> KafkaSource {
        KafkaSource::new(self, shutdown_timeout)
    }
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
            let source_name: Arc<str> = Arc::from(self.name.as_str());
            tokio::task::spawn_blocking(move || consume::consume(&self.cfg, &source_name, self.shutdown_timeout, self.state, tx, &shutdown, &handle))
                .await
                .map_err(|e| SourceError::Other { source_name: name, message: format!("consumer thread failed: {e}") })?
        })
    }
}
