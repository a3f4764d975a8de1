//! The Kafka source's configuration (`[[sources]] type = "kafka"`) and the librdkafka settings
//! of its consumer.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use serde::Deserialize;

use crate::kafka::client::{check_reserved, Client};

/// Consumer properties Sluice sets itself; `properties` may not override them.
pub const KAFKA_SOURCE_RESERVED: &[&str] = &["bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store", "auto.commit.interval.ms"];

/// `[[sources]] type = "kafka"`: a consumer in a consumer group. Instances with the same
/// `group_id` share the partitions (scale-out). Offsets are committed only once every output of
/// a record, and of every earlier record of its partition, is acknowledged by the sink
/// (at-least-once).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `bootstrap.servers`: `host:port[,host:port…]` (required).
    pub brokers: String,
    /// Topics to read (required). An entry starting with `^` is a regular expression matched
    /// against every topic of the cluster (librdkafka's convention), e.g. `^iot-.*`.
    pub topics: Vec<String>,
    /// The consumer group (required).
    pub group_id: String,
    /// Where the IoT topic of a record comes from (default: the `iot-topic` header).
    pub iot_topic: IotTopicFrom,
    /// Records consumed and not yet acknowledged by the sink, at most (default 10,000); at the
    /// bound, consumption pauses (backpressure) and memory stays bounded.
    pub max_in_flight: usize,
    /// How often (ms) offsets are committed (librdkafka's `auto.commit.interval.ms`, default
    /// 1,000). Sluice stores an offset for commit only once it is acknowledged: every output of
    /// its record and of every earlier record of the partition was delivered.
    pub commit_interval_ms: u64,
    /// On a rebalance, how long (ms, default 10,000) to wait for the in-flight records of
    /// revoked partitions to be delivered before committing and letting them go (what is not
    /// done by then is read again by the partition's next owner).
    pub revoke_timeout_ms: u64,
    /// With `[state]`: the topic keeping the state of this source's partitions (default
    /// `<group_id>-sluice-state`), so that it follows the partitions across the consumer
    /// group. Created (compacted, as many partitions as the source's topics) when missing.
    pub changelog_topic: Option<String>,
    /// Any librdkafka consumer property (`session.timeout.ms`, `security.protocol`, …), passed
    /// through as is. Sluice sets `enable.auto.commit`, `enable.auto.offset.store` and
    /// `auto.commit.interval.ms` itself;
    /// `auto.offset.reset` defaults to `earliest` and `partition.assignment.strategy` to
    /// `cooperative-sticky` (incremental rebalances).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSourceConfig {
    /// The defaults of the optional fields; `brokers`, `topics` and `group_id` are empty (the
    /// configuration is refused without them).
    fn default() -> Self {
        KafkaSourceConfig {
            brokers: String::new(),
            topics: Vec::new(),
            group_id: String::new(),
            iot_topic: IotTopicFrom::default(),
            max_in_flight: 10_000,
            commit_interval_ms: 1_000,
            revoke_timeout_ms: 10_000,
            changelog_topic: None,
            properties: BTreeMap::new(),
        }
    }
}

/// Where a Kafka record's IoT topic comes from.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum IotTopicFrom {
    /// A record header (`iot_topic = { from = "header", name = "iot-topic" }`).
    Header {
        /// The header's name (default `iot-topic`).
        #[serde(default = "IotTopicFrom::default_header")]
        name: String,
    },
    /// The record key (`iot_topic = { from = "key" }`).
    Key,
    /// The same topic for every record (`iot_topic = { from = "fixed", topic = "/a/b" }`).
    Fixed {
        /// The IoT topic.
        topic: String,
    },
}

impl IotTopicFrom {
    /// The header read by default.
    const HEADER: &'static str = "iot-topic";

    fn default_header() -> String {
        IotTopicFrom::HEADER.into()
    }
}

impl Default for IotTopicFrom {
    fn default() -> Self {
        IotTopicFrom::Header { name: IotTopicFrom::default_header() }
    }
}

impl KafkaSourceConfig {
    /// Checks what the types do not: required fields, topic patterns, bounds, reserved
    /// properties.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("`brokers` is empty".into());
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err("`topics` needs at least one non-empty topic or `^regex`".into());
        }
        for t in self.topics.iter().filter(|t| t.starts_with('^')) {
            regex::Regex::new(t).map_err(|e| format!("topic pattern `{t}`: {e}"))?;
        }
        if self.group_id.trim().is_empty() {
            return Err("`group_id` is empty".into());
        }
        if self.max_in_flight == 0 {
            return Err("`max_in_flight` must be at least 1".into());
        }
        if let IotTopicFrom::Fixed { topic } | IotTopicFrom::Header { name: topic } = &self.iot_topic {
            if topic.is_empty() {
                return Err("`iot_topic` names an empty header or topic".into());
            }
        }
        check_reserved(&self.properties, KAFKA_SOURCE_RESERVED)
    }

    /// The changelog topic of this source's state.
    pub fn changelog_topic(&self) -> String {
        self.changelog_topic.clone().unwrap_or_else(|| format!("{}-sluice-state", self.group_id))
    }

    /// The librdkafka configuration of the changelog's clients: the brokers, and the
    /// connection and security properties of the consumer (`security.*`, `ssl.*`, `sasl.*`,
    /// `client.id`).
    pub fn changelog_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in self.properties.iter().filter(|(k, _)| ["security.", "ssl.", "sasl.", "client.id"].iter().any(|p| k.starts_with(p))) {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.brokers);
        c
    }

    /// The librdkafka configuration of the consumer.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = Client::config();
        // Incremental rebalances: partitions that stay with an instance keep flowing.
        c.set("auto.offset.reset", "earliest").set("enable.partition.eof", "false").set("partition.assignment.strategy", "cooperative-sticky");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        // Offsets are stored by Sluice (only acknowledged watermarks), committed by librdkafka.
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group_id)
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", self.commit_interval_ms.to_string());
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            changelog_topic: None,
            properties: props,
        };
        assert_eq!(cfg.changelog_topic(), "g-sluice-state");
        let c = cfg.client_config();
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

    #[test]
    fn defaults_and_required_fields() {
        let c: KafkaSourceConfig = toml::from_str("brokers = \"b\"\ntopics = [\"in\"]\ngroup_id = \"g\"\n").unwrap();
        assert_eq!((c.max_in_flight, c.commit_interval_ms, c.revoke_timeout_ms), (10_000, 1_000, 10_000));
        assert_eq!(c.iot_topic, IotTopicFrom::Header { name: "iot-topic".into() });
        assert!(c.properties.is_empty());
        assert_eq!(c.validate(), Ok(()));
        let c: KafkaSourceConfig = toml::from_str("brokers = \"b\"\ntopics = [\"in\"]\ngroup_id = \"g\"\niot_topic = { from = \"header\" }\n").unwrap();
        assert_eq!(c.iot_topic, IotTopicFrom::Header { name: "iot-topic".into() });
        for (missing, error) in [("brokers", "`brokers` is empty"), ("topics", "`topics` needs at least one non-empty topic or `^regex`"), ("group_id", "`group_id` is empty")] {
            let text: String = ["brokers = \"b\"\n", "topics = [\"in\"]\n", "group_id = \"g\"\n"].iter().filter(|l| !l.starts_with(missing)).copied().collect();
            let c: KafkaSourceConfig = toml::from_str(&text).unwrap();
            assert_eq!(c.validate().unwrap_err(), error);
        }
        assert!(toml::from_str::<KafkaSourceConfig>("brokerz = \"b\"\n").is_err(), "unknown fields are refused");
    }
}
