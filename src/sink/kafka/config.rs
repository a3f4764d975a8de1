//! The Kafka sink's configuration (`[sink] type = "kafka"`) and the librdkafka settings of its
//! producer.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use serde::Deserialize;

use crate::kafka::client::{check_reserved, Client};

/// Producer properties Sluice sets itself (they have their own fields).
pub const KAFKA_SINK_RESERVED: &[&str] = &["bootstrap.servers"];

/// Header carrying the input's IoT topic.
pub const IOT_TOPIC_HEADER: &str = "iot-topic";
/// Header carrying the rule's name.
pub const RULE_HEADER: &str = "sluice-rule";

/// A header the Kafka sink adds to records itself (`[sink] headers`), named as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum SinkHeader {
    /// `iot-topic`: the input's IoT topic.
    #[serde(rename = "iot-topic")]
    IotTopic,
    /// `sluice-rule`: the name of the rule that made the record.
    #[serde(rename = "sluice-rule")]
    Rule,
}

impl SinkHeader {
    /// Every built-in header, in the order they are attached.
    pub const ALL: [SinkHeader; 2] = [SinkHeader::IotTopic, SinkHeader::Rule];

    /// The header's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            SinkHeader::IotTopic => IOT_TOPIC_HEADER,
            SinkHeader::Rule => RULE_HEADER,
        }
    }
}

/// The default of `[sink] headers`: both built-in headers, as before the option existed.
pub const DEFAULT_SINK_HEADERS: [SinkHeader; 2] = SinkHeader::ALL;

/// Which built-in headers a record gets, resolved once when the sink starts (no per-record
/// lookup). Error records and dead letters always get [`HeaderSet::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderSet {
    /// Attach `iot-topic`.
    pub iot_topic: bool,
    /// Attach `sluice-rule` (when the record has a rule: a source's dead letter has none).
    pub rule: bool,
}

impl HeaderSet {
    /// Both built-in headers.
    pub const ALL: HeaderSet = HeaderSet { iot_topic: true, rule: true };

    /// The set named by a `headers` list.
    pub fn of(headers: &[SinkHeader]) -> HeaderSet {
        HeaderSet { iot_topic: headers.contains(&SinkHeader::IotTopic), rule: headers.contains(&SinkHeader::Rule) }
    }

    /// How many headers of the set a record can get (a capacity hint).
    pub fn len(self) -> usize {
        usize::from(self.iot_topic) + usize::from(self.rule)
    }

    /// Whether the set is empty (`headers = []`).
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// `[sink] type = "kafka"`: a producer with delivery reports. Each record goes to the topic and
/// key its rule rendered, with the built-in headers of `headers` (default `iot-topic`, the
/// input's IoT topic, and `sluice-rule`) and the rule's own. A batch is acknowledged once the
/// broker acknowledged all its records.
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
    /// The headers Sluice adds itself to each data record, by name: `iot-topic` (the input's
    /// IoT topic) and `sluice-rule` (the rule's name); default both ([`DEFAULT_SINK_HEADERS`]),
    /// `[]` for none. The rule's own `[actions.headers]` are always attached. Error records and
    /// dead letters always carry both, whatever this says: the error topic's contract.
    pub headers: Vec<SinkHeader>,
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
            headers: DEFAULT_SINK_HEADERS.to_vec(),
        }
    }
}

impl KafkaSinkConfig {
    /// Checks what the types do not: required fields, known compressions, bounds, headers named
    /// once, reserved properties. (Unknown header names are refused by the parser, with their
    /// position and the allowed names.)
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
        if let Some((i, h)) = self.headers.iter().enumerate().find(|(i, h)| self.headers[..*i].contains(h)) {
            return Err(format!("`headers` names `{}` twice (entry {})", h.name(), i + 1));
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
            headers: vec![],
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

    #[test]
    fn built_in_headers_are_chosen_by_name() {
        let parse = |headers: &str| toml::from_str::<KafkaSinkConfig>(&format!("brokers = \"b\"\n{headers}"));
        let c = parse("").unwrap();
        assert_eq!(c.headers, [SinkHeader::IotTopic, SinkHeader::Rule], "both by default");
        assert_eq!(HeaderSet::of(&c.headers), HeaderSet::ALL);
        let c = parse("headers = []\n").unwrap();
        assert_eq!(c.validate(), Ok(()));
        assert!(HeaderSet::of(&c.headers).is_empty());
        let c = parse("headers = [\"sluice-rule\"]\n").unwrap();
        assert_eq!(HeaderSet::of(&c.headers), HeaderSet { iot_topic: false, rule: true });
        assert_eq!(HeaderSet::of(&c.headers).len(), 1);
        let c = parse("headers = [\"iot-topic\"]\n").unwrap();
        assert_eq!(HeaderSet::of(&c.headers), HeaderSet { iot_topic: true, rule: false });
        // The names parse to the variants that attach them.
        for h in SinkHeader::ALL {
            assert_eq!(parse(&format!("headers = [\"{}\"]\n", h.name())).unwrap().headers, [h]);
        }
        assert_eq!((SinkHeader::IotTopic.name(), SinkHeader::Rule.name()), ("iot-topic", "sluice-rule"));
        // An unknown name is refused with the allowed ones.
        let e = parse("headers = [\"iot_topic\"]\n").unwrap_err().to_string();
        assert!(e.contains("unknown variant `iot_topic`, expected `iot-topic` or `sluice-rule`"), "{e}");
        let e = parse("headers = \"iot-topic\"\n").unwrap_err().to_string();
        assert!(e.contains("invalid type"), "a list, not a string: {e}");
        let c = parse("headers = [\"sluice-rule\", \"iot-topic\", \"sluice-rule\"]\n").unwrap();
        assert_eq!(c.validate().unwrap_err(), "`headers` names `sluice-rule` twice (entry 3)");
    }
}
