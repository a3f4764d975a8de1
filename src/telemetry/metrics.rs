//! Every metric of Sluice, in one place. Names are `sluice_<name>_<unit>`; counters end in
//! `_total`; labels are bounded (rule names, source names, stages — never device ids).

use std::sync::LazyLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The registry served at `/metrics`.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    REGISTRY.register(Box::new(c.clone())).expect("unique metric");
    c
}

/// Messages received, by source.
pub static MESSAGES_RECEIVED: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_messages_received_total", "Messages received from sources.", &["source"]));
/// Inputs a source could not decode (routed to the dead-letter topic), by source.
pub static MESSAGES_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_messages_rejected_total", "Source inputs that were not valid messages (dead-lettered).", &["source"]));
/// Messages no rule's filter matched, by source.
pub static MESSAGES_UNMATCHED: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_messages_unmatched_total", "Messages that no rule's topic filter matched.", &["source"]));
/// Rule evaluations by result (`passed`, `filtered`, `failed`).
pub static RULE_EVALUATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_rule_evaluations_total", "Rule evaluations by result: passed, filtered (WHERE false) or failed.", &["result"]));
/// Output records by kind (`data`, `error`).
pub static OUTPUT_RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_output_records_total", "Output records produced, by kind: data or error.", &["kind"]));
/// Time spent processing one message in the engine.
pub static PROCESS_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let h = HistogramVec::new(
        HistogramOpts::new("sluice_engine_process_seconds", "Engine time per message (match, decode, evaluate, serialize).").buckets(vec![1e-6, 5e-6, 2e-5, 1e-4, 5e-4, 2e-3, 1e-2]),
        &["worker"],
    )
    .expect("valid metric");
    REGISTRY.register(Box::new(h.clone())).expect("unique metric");
    h
});

/// Device registry updates from data-flow messages, by topic kind (`lifecycle`,
/// `topo_lifecycle`, `status`) and result (`applied`, `stale` — an older `lastTime` —,
/// `unknown_device`, `malformed`).
pub static REGISTRY_UPDATES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter("sluice_registry_updates_total", "Device registry updates from data-flow messages, by topic kind and result: applied, stale, unknown_device or malformed.", &["kind", "result"])
});

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    REGISTRY.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// Kafka source: records consumed and not yet acknowledged by the sink, by source.
pub static KAFKA_SOURCE_IN_FLIGHT: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge("sluice_kafka_source_in_flight_messages", "Kafka records consumed and not yet acknowledged by the sink.", &["source"]));
/// Kafka source: whether consumption is paused for backpressure (0 or 1), by source.
pub static KAFKA_SOURCE_PAUSED: LazyLock<IntGaugeVec> = LazyLock::new(|| gauge("sluice_kafka_source_paused", "1 while a Kafka source has paused consumption for backpressure.", &["source"]));
/// Kafka source: times consumption was paused for backpressure, by source.
pub static KAFKA_SOURCE_PAUSES: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_kafka_source_pauses_total", "Times a Kafka source paused consumption because too much was in flight.", &["source"]));
/// Kafka source: offset commits by result (`ok`, `error`), by source.
pub static KAFKA_COMMITS: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_kafka_commits_total", "Offset commits of Kafka sources, by result: ok or error.", &["source", "result"]));
/// Kafka source: last committed offset, by source topic and partition.
pub static KAFKA_COMMITTED_OFFSET: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge("sluice_kafka_committed_offset", "Last offset committed by a Kafka source, by topic and partition.", &["source", "topic", "partition"]));
/// Kafka source: rebalance events by kind (`assign`, `revoke`, `lost`, `error`), by source.
pub static KAFKA_REBALANCES: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_kafka_rebalances_total", "Consumer group rebalance events of Kafka sources, by kind.", &["source", "kind"]));
/// Kafka source: in-flight records given up when their partition was revoked (they are read
/// again by the partition's next owner), by source.
pub static KAFKA_ABANDONED: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_kafka_abandoned_messages_total", "In-flight Kafka records given up on revocation or shutdown (re-read by the next owner).", &["source"]));
/// Kafka source: consumer errors (transient; librdkafka recovers), by source.
pub static KAFKA_CONSUMER_ERRORS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_kafka_consumer_errors_total", "Errors reported by Kafka consumers (librdkafka retries by itself).", &["source"]));
/// Kafka sink: records acknowledged by the broker, by kind (`data`, `error`).
pub static KAFKA_PRODUCED: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_kafka_produced_records_total", "Records the Kafka sink delivered (acknowledged by the broker), by kind: data or error.", &["kind"]));
/// Kafka sink: records produced again after a retriable error, by reason.
pub static KAFKA_PRODUCE_RETRIES: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_kafka_produce_retries_total", "Records the Kafka sink produced again after a retriable error, by reason: queue_full, timeout, other.", &["reason"]));
/// Kafka sink: records the broker refused for good, sent to the dead-letter topic, by reason.
pub static KAFKA_DEAD_LETTERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter("sluice_kafka_dead_letters_total", "Records the broker refused for good and that went to the dead-letter topic, by reason: unknown_topic, unauthorized, too_large, invalid.", &["reason"])
});
/// Kafka sink: records handed to the producer and not yet acknowledged.
pub static KAFKA_SINK_IN_FLIGHT: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge("sluice_kafka_sink_in_flight_records", "Records handed to the Kafka producer and not yet acknowledged by the broker.", &[]));

/// Integration channel: requests answered, by reply code (`200`, `1203`, `1204`, …).
pub static INTEGRATION_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_integration_requests_total", "Integration requests answered, by reply code.", &["code"]));
/// Integration channel: `params` entries by verdict (`accepted`, `rejected`).
pub static INTEGRATION_ENTRIES: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_integration_entries_total", "Integration request entries, by verdict: accepted or rejected.", &["verdict"]));
/// Integration channel: decoder script failures, by reason (`missing`, `threw`, `timeout`, `memory`, `bad_output`).
pub static INTEGRATION_DECODER_ERRORS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_integration_decoder_errors_total", "up_raw decoder script failures, by reason: missing, threw, timeout, memory, bad_output.", &["reason"]));
/// MQTT source: 1 while connected to the broker, by source.
pub static MQTT_CONNECTED: LazyLock<IntGaugeVec> = LazyLock::new(|| gauge("sluice_mqtt_connected", "1 while an MQTT source is connected to its broker.", &["source"]));
/// MQTT source: connection events (`connect`, `disconnect`), by source.
pub static MQTT_CONNECTION_EVENTS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_mqtt_connection_events_total", "MQTT source connection events, by kind: connect or disconnect.", &["source", "event"]));
/// MQTT source: requests received and not yet answered, by source.
pub static MQTT_IN_FLIGHT: LazyLock<IntGaugeVec> = LazyLock::new(|| gauge("sluice_mqtt_in_flight_requests", "Integration requests received and not yet answered.", &["source"]));

/// Rules running, by state (`enabled`, `disabled`).
pub static RULES_LOADED: LazyLock<IntGaugeVec> = LazyLock::new(|| gauge("sluice_rules_loaded", "Rules loaded in the engine, by state: enabled or disabled.", &["state"]));
/// Rule files whose current text does not compile (their previous version keeps running).
pub static RULE_FILES_INVALID: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge("sluice_rule_files_invalid", "Rule files whose current text does not compile or whose name is taken (the previous version keeps running).", &[]));
/// Rule reloads (folder rescans), by result (`ok`, `error` — some file does not compile).
pub static RULE_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_rule_reloads_total", "Rule folder rescans, by result: ok, or error when some file does not compile.", &["result"]));
/// Rules API requests, by operation and HTTP status class.
pub static API_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_api_requests_total", "Rules API requests, by operation and status code.", &["op", "status"]));

/// Renders the registry in the Prometheus text format.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&REGISTRY.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
