//! The Kafka sink's configuration and the librdkafka settings of its producer.

use rdkafka::config::ClientConfig;

use crate::config::KafkaSinkConfig;
use crate::kafka::client::Client;

/// The librdkafka configuration of the producer.
pub fn client_config(cfg: &KafkaSinkConfig) -> ClientConfig {
    let mut c = Client::config();
    c.set("enable.idempotence", cfg.idempotence.to_string())
        .set("compression.type", &cfg.compression)
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("batch.size", cfg.batch_bytes.to_string())
        .set("batch.num.messages", cfg.batch_records.to_string())
        .set("topic.metadata.propagation.max.ms", cfg.unknown_topic_timeout_ms.to_string())
        .set("queue.buffering.max.messages", cfg.max_in_flight.clamp(1, 10_000_000).to_string());
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &cfg.brokers);
    c
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
        let c = client_config(&cfg);
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
}
