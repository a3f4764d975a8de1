//! The Kafka source's configuration and the librdkafka settings of its consumer.

use crate::config::KafkaSourceConfig;
use crate::kafka::client::Client;

/// The librdkafka configuration of the consumer.
pub fn client_config(cfg: &KafkaSourceConfig) -> rdkafka::config::ClientConfig {
    let mut c = Client::config();
    // Incremental rebalances: partitions that stay with an instance keep flowing.
    c.set("auto.offset.reset", "earliest").set("enable.partition.eof", "false").set("partition.assignment.strategy", "cooperative-sticky");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IotTopicFrom;

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
        let c = client_config(&cfg);
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
