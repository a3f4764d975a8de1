//! The Kafka sink's configuration (`[sink] type = "kafka"`) and the librdkafka settings of its
//! producer.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use serde::Deserialize;

use crate::kafka::client::{check_reserved, Client};

/// Producer properties Sluice sets itself (they have their own fields).
pub const KAFKA_SINK_RESERVED: &[&str] = &["bootstrap.servers"];

/// `[sink] type = "kafka"`: a producer with delivery reports. Each record goes to the topic and
/// key its rule rendered, with headers `iot-topic` (the input's IoT topic), `sluice-rule` and
/// the rule's own. A batch is acknowledged once the broker acknowledged all its records.
/// Retriable errors are retried with backoff, forever; records the broker refuses for good
/// (unknown or unauthorised topic, too large) become dead letters in the engine's default
/// error topic.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `bootstrap.servers`: `host:port[,host:port…]` (required).
    pub brokers: String,
    /// `enable.idempotence`: no duplicates or reordering from the producer's own retries
    /// (default `true`).
    pub idempotence: bool,
    /// `compression.type`: `none`, `gzip`, `snappy`, `lz4` (the default) or `zstd`.
    pub compression: String,
    /// `linger.ms`: how long to wait for more records to fill a batch (default 5).
    pub linger_ms: u64,
    /// `batch.size`: the largest batch of one partition, in bytes (default 1,000,000).
    pub batch_bytes: usize,
    /// `batch.num.messages`: the most records in one batch (default 10,000).
    pub batch_records: usize,
    /// Records handed to the producer and not yet acknowledged by the broker, at most (default
    /// 100,000); at the bound the sink stops taking batches (backpressure up to the sources).
    pub max_in_flight: usize,
    /// First delay (ms, default 100) before a record that failed with a retriable error is
    /// produced again; it doubles on each failure of the same record, up to
    /// `retry_backoff_max_ms`.
    pub retry_backoff_ms: u64,
    /// Longest delay (ms, default 10,000) between two attempts of a record.
    pub retry_backoff_max_ms: u64,
    /// `topic.metadata.propagation.max.ms`: how long records for a topic the cluster says does
    /// not exist are held before they become dead letters (ms, default 10,000).
    pub unknown_topic_timeout_ms: u64,
    /// Any librdkafka producer property (`acks`, `message.max.bytes`, `security.protocol`, …),
    /// passed through as is; it wins over the fields above.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSinkConfig {
    /// The defaults of the optional fields; `brokers` is empty (the configuration is refused
    /// without it).
    fn default() -> Self {
        KafkaSinkConfig {
            brokers: String::new(),
            idempotence: true,
            compression: "lz4".into(),
            linger_ms: 5,
            batch_bytes: 1_000_000,
            batch_records: 10_000,
            max_in_flight: 100_000,
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 10_000,
            unknown_topic_timeout_ms: 10_000,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaSinkConfig {
    /// Checks what the types do not: required fields, known compressions, bounds, reserved
    /// properties.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("`brokers` is empty".into());
        }
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&self.compression.as_str()) {
            return Err(format!("`compression` `{}` must be none, gzip, snappy, lz4 or zstd", self.compression));
        }
        if self.max_in_flight == 0 {
            return Err("`max_in_flight` must be at least 1".into());
        }
        if self.retry_backoff_ms == 0 || self.retry_backoff_max_ms < self.retry_backoff_ms {
            return Err("`retry_backoff_ms` must be at least 1 and at most `retry_backoff_max_ms`".into());
        }
        check_reserved(&self.properties, KAFKA_SINK_RESERVED)
    }

    /// The librdkafka configuration of the producer.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = Client::config();
        c.set("enable.idempotence", self.idempotence.to_string())
            .set("compression.type", &self.compression)
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.size", self.batch_bytes.to_string())
            .set("batch.num.messages", self.batch_records.to_string())
            .set("topic.metadata.propagation.max.ms", self.unknown_topic_timeout_ms.to_string())
            .set("queue.buffering.max.messages", self.max_in_flight.clamp(1, 10_000_000).to_string());
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.brokers);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c = cfg.client_config();
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
    fn defaults_and_checks() {
        let c: KafkaSinkConfig = toml::from_str("brokers = \"b\"\n").unwrap();
        assert!(c.idempotence);
        assert_eq!(c.compression, "lz4");
        assert_eq!((c.linger_ms, c.batch_bytes, c.batch_records, c.max_in_flight), (5, 1_000_000, 10_000, 100_000));
        assert_eq!((c.retry_backoff_ms, c.retry_backoff_max_ms, c.unknown_topic_timeout_ms), (100, 10_000, 10_000));
        assert_eq!(c.validate(), Ok(()));
        let c: KafkaSinkConfig = toml::from_str("compression = \"zstd\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err(), "`brokers` is empty");
        let c: KafkaSinkConfig = toml::from_str("brokers = \"b\"\ncompression = \"brotli\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err(), "`compression` `brotli` must be none, gzip, snappy, lz4 or zstd");
        let c: KafkaSinkConfig = toml::from_str("brokers = \"b\"\nretry_backoff_ms = 100\nretry_backoff_max_ms = 50\n").unwrap();
        assert!(c.validate().is_err());
        let c: KafkaSinkConfig = toml::from_str("brokers = \"b\"\n[properties]\n\"bootstrap.servers\" = \"x\"\n").unwrap();
        assert!(c.validate().is_err());
        assert!(toml::from_str::<KafkaSinkConfig>("brokers = \"b\"\nlinger = 1\n").is_err(), "unknown fields are refused");
    }
}
