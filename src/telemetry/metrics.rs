//! Every metric of Sluice, in one place. Names are `sluice_<name>_<unit>`; counters end in
//! `_total`; labels are bounded (rule names, source names, the topics and partitions of
//! configured inputs, reason classes — never device ids).
//!
//! Hot paths never look labels up per message: per-rule metrics are resolved once per rule set
//! ([`RuleMetrics`], built by `RuleSet::from_shared`), and each engine worker counts into its own
//! unsynchronized copies ([`LocalRuleMetrics`]) that it flushes every few hundred messages and
//! whenever it is idle.

use std::sync::LazyLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::{Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

mod register;
mod windows;

pub use register::REGISTRY;
use register::{counter, float_gauge, gauge, histogram};
pub use windows::{
    AUDIT_DUPLICATES, AUDIT_MISSING, AUDIT_REORDERS, LATE_EVENTS, STATE_CHECKPOINT_SECONDS, STATE_COVERED_SKIPPED, STATE_DISCARDED, STATE_EVICTIONS, STATE_KEYS, STATE_PARTITION_VIOLATIONS,
    STATE_REPLAY_SKIPPED, STATE_RESTORED_KEYS, STATE_RESTORED_PARTITIONS, WINDOWS_EMITTED,
};

// ---- Sources -------------------------------------------------------------------------------

/// Inputs a source read (Kafka records, file lines, MQTT publishes, HTTP upload requests), by
/// source.
pub static SOURCE_RECEIVED_RECORDS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_source_received_records_total", "Inputs a source read: Kafka records, file lines, MQTT publishes, HTTP upload requests.", &["source"]));
/// Bytes of the inputs a source read (record values, lines, MQTT payloads, HTTP parts), by
/// source.
pub static SOURCE_RECEIVED_BYTES: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_source_received_bytes_total", "Payload bytes a source read: Kafka record values, file lines, MQTT payloads, HTTP upload parts.", &["source"]));
/// Inputs a source could not make a message of, by source: dead-lettered Kafka records and file
/// lines, integration requests answered 1203 (invalid), 1413 (too large) or 1270 (decoder).
pub static SOURCE_DECODE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_source_decode_errors_total",
        "Inputs a source could not make a message of: dead-lettered Kafka records and file lines, integration requests answered 1203, 1413 or 1270.",
        &["source"],
    )
});
/// Messages no rule's filter matched, by source.
pub static SOURCE_UNMATCHED_RECORDS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_source_unmatched_records_total", "Messages of a source that no rule's topic filter matched.", &["source"]));

// ---- Engine --------------------------------------------------------------------------------

/// Output records by kind (`data`, `error`).
pub static OUTPUT_RECORDS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_output_records_total", "Output records the engine produced, by kind: data or error (evaluation failures and dead letters).", &["kind"]));
/// Time spent processing one message in the engine.
pub static PROCESS_SECONDS: LazyLock<HistogramVec> =
    LazyLock::new(|| histogram("sluice_engine_process_seconds", "Engine time per message (match, decode, evaluate, serialize), by worker.", &[1e-6, 5e-6, 2e-5, 1e-4, 5e-4, 2e-3, 1e-2], &["worker"]));
/// Payloads decoded into the engine's document, by source kind (`mqtt`, `http`, `file`,
/// `kafka`, `other`): one per message that validation, the device registry or a rule reads.
pub static PAYLOAD_DECODES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter("sluice_payload_decodes_total", "Payloads decoded into a document (once per message, for validation, the device registry and the rules), by source kind.", &["source_kind"])
});

// ---- Rules ---------------------------------------------------------------------------------

/// The failure reasons of a rule (its stages), in the order of [`LocalRuleMetrics::failed`].
pub const RULE_FAILURE_REASONS: [&str; 7] = ["decode", "where", "select", "action", "panic", "late", "future"];

/// Messages whose topic matched a rule's filter, by rule.
pub static RULE_MATCHED: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_rule_matched_messages_total", "Messages whose topic matched the rule's filter.", &["rule"]));
/// Records (a message, or one integration entry) for which a rule produced output, by rule.
pub static RULE_PASSED: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_rule_passed_records_total", "Records (a message or an integration entry) for which the rule produced output.", &["rule"]));
/// Records a rule's WHERE filtered out, by rule.
pub static RULE_NO_RESULT: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_rule_no_result_records_total", "Records the rule's WHERE filtered out (not true).", &["rule"]));
/// Records a rule failed on (each an error record), by rule and reason (the stage: `decode`,
/// `where`, `select`, `action`, or `panic`: a bug caught while evaluating the rule).
pub static RULE_FAILED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_rule_failed_records_total",
        "Records (messages or integration entries) the rule failed on (one error record per message), by reason: decode, where, select, action, late, future or panic (a bug caught during evaluation).",
        &["rule", "reason"],
    )
});
/// Output records a rule produced (one per action and passed record), by rule.
pub static RULE_OUTPUT_RECORDS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_rule_output_records_total", "Output records the rule produced (one per action and passed record).", &["rule"]));
/// A worker times a rule's evaluation on one message in this many it matches (the first one
/// after each flush of its counts, then every this-many-th): a clock read around every rule of
/// every message cost more than some rules do.
pub const EVAL_TIMING_EVERY: u64 = 16;

/// Time a rule took on one message (WHERE, SELECT, actions, for all its records), by rule;
/// sampled ([`EVAL_TIMING_EVERY`]).
pub static RULE_EVAL_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "sluice_rule_eval_seconds",
        "Time the rule took to evaluate one message (WHERE, SELECT and actions, over all its records), sampled: one matched message in 16 per worker.",
        &[5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 1e-4, 1e-3, 1e-2],
        &["rule"],
    )
});

/// A rule's metric handles, resolved once when its rule set is built.
#[derive(Clone, Debug)]
pub struct RuleMetrics {
    matched: IntCounter,
    passed: IntCounter,
    no_result: IntCounter,
    failed: [IntCounter; 7],
    outputs: IntCounter,
    eval: Histogram,
}

impl RuleMetrics {
    /// The handles of rule `name` (its series appear at 0).
    pub fn new(name: &str) -> RuleMetrics {
        RuleMetrics {
            matched: RULE_MATCHED.with_label_values(&[name]),
            passed: RULE_PASSED.with_label_values(&[name]),
            no_result: RULE_NO_RESULT.with_label_values(&[name]),
            failed: RULE_FAILURE_REASONS.map(|r| RULE_FAILED.with_label_values(&[name, r])),
            outputs: RULE_OUTPUT_RECORDS.with_label_values(&[name]),
            eval: RULE_EVAL_SECONDS.with_label_values(&[name]),
        }
    }

    /// Unsynchronized copies for one worker; they reach the shared series on
    /// [`LocalRuleMetrics::flush`].
    pub fn local(&self) -> LocalRuleMetrics {
        LocalRuleMetrics {
            matched: self.matched.local(),
            passed: self.passed.local(),
            no_result: self.no_result.local(),
            failed: self.failed.each_ref().map(IntCounter::local),
            outputs: self.outputs.local(),
            eval: self.eval.local(),
        }
    }
}

/// One worker's counts for one rule, added to the shared series by [`LocalRuleMetrics::flush`].
#[derive(Debug)]
pub struct LocalRuleMetrics {
    /// Messages matched.
    pub matched: LocalIntCounter,
    /// Records that produced output.
    pub passed: LocalIntCounter,
    /// Records the WHERE filtered out.
    pub no_result: LocalIntCounter,
    /// Failed records, indexed like [`RULE_FAILURE_REASONS`].
    pub failed: [LocalIntCounter; 7],
    /// Output records.
    pub outputs: LocalIntCounter,
    /// Evaluation time per message, seconds.
    pub eval: LocalHistogram,
}

impl LocalRuleMetrics {
    /// Adds the counts to the shared series and resets them.
    pub fn flush(&self) {
        self.matched.flush();
        self.passed.flush();
        self.no_result.flush();
        for f in &self.failed {
            f.flush();
        }
        self.outputs.flush();
        self.eval.flush();
    }
}

/// Removes every series of rule `name` (a deleted rule). Handles still held by running workers
/// count into detached series, which are not exported.
pub fn forget_rule(name: &str) {
    for vec in [&*RULE_MATCHED, &*RULE_PASSED, &*RULE_NO_RESULT, &*RULE_OUTPUT_RECORDS] {
        let _ = vec.remove_label_values(&[name]);
    }
    for reason in RULE_FAILURE_REASONS {
        let _ = RULE_FAILED.remove_label_values(&[name, reason]);
    }
    let _ = RULE_EVAL_SECONDS.remove_label_values(&[name]);
    for vec in [&*LATE_EVENTS, &*STATE_EVICTIONS, &*WINDOWS_EMITTED, &*STATE_DISCARDED, &*STATE_PARTITION_VIOLATIONS, &*AUDIT_MISSING, &*AUDIT_DUPLICATES, &*AUDIT_REORDERS] {
        let _ = vec.remove_label_values(&[name]);
    }
    let _ = STATE_KEYS.remove_label_values(&[name]);
}

// ---- Device registry -----------------------------------------------------------------------

/// Device registry updates from data-flow messages, by topic kind (`lifecycle`,
/// `topo_lifecycle`, `status`) and result (`applied`, `stale` — an older `lastTime` —,
/// `unknown_device`, `malformed`).
pub static REGISTRY_UPDATES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter("sluice_registry_updates_total", "Device registry updates from data-flow messages, by topic kind and result: applied, stale, unknown_device or malformed.", &["kind", "result"])
});
/// Devices in the registry.
pub static REGISTRY_KNOWN_DEVICES: LazyLock<IntGauge> = LazyLock::new(|| gauge("sluice_registry_known_devices", "Devices in the device registry.", &[]).with_label_values::<&str>(&[]));
/// Devices whose last known status is online.
pub static REGISTRY_ONLINE_DEVICES: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("sluice_registry_online_devices", "Devices whose last status message said online.", &[]).with_label_values::<&str>(&[]));

// ---- Kafka source --------------------------------------------------------------------------

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
/// Kafka source: records not yet committed, by source topic and assigned partition (from
/// librdkafka's statistics: the partition's high watermark minus the committed offset).
pub static KAFKA_CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "sluice_kafka_consumer_lag_records",
        "Records of an assigned partition not yet committed by a Kafka source: high watermark minus committed offset (librdkafka statistics).",
        &["source", "topic", "partition"],
    )
});
/// Kafka source: rebalance events by kind (`assign`, `revoke`, `lost`, `error`), by source.
pub static KAFKA_REBALANCES: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_kafka_rebalances_total", "Consumer group rebalance events of Kafka sources, by kind.", &["source", "kind"]));
/// Kafka source: partitions assigned to it now, by source (set after every rebalance).
pub static KAFKA_ASSIGNED_PARTITIONS: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge("sluice_kafka_assigned_partitions", "Partitions assigned to a Kafka source now (after the last rebalance).", &["source"]));
/// Kafka source: in-flight records given up when their partition was revoked (they are read
/// again by the partition's next owner), by source.
pub static KAFKA_ABANDONED: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_kafka_abandoned_messages_total", "In-flight Kafka records given up on revocation or shutdown (re-read by the next owner).", &["source"]));
/// Kafka source: consumer errors (transient; librdkafka recovers), by source.
pub static KAFKA_CONSUMER_ERRORS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_kafka_consumer_errors_total", "Errors reported by Kafka consumers (librdkafka retries by itself).", &["source"]));

// ---- Sinks (label `sink`: kafka or file) ---------------------------------------------------

/// Records a sink wrote (file) or the broker acknowledged (Kafka), by sink and kind (`data`,
/// `error`).
pub static SINK_SENT_RECORDS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_sink_sent_records_total", "Records the sink wrote (file) or the broker acknowledged (Kafka), by kind: data or error.", &["sink", "kind"]));
/// Value bytes of the records counted in [`SINK_SENT_RECORDS`], by sink.
pub static SINK_SENT_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_sink_sent_bytes_total", "Value bytes of the records the sink wrote or delivered.", &["sink"]));
/// Time of one group commit of the file sink (flush and fsync of the files a group of batches
/// touched; the batches are acknowledged after it).
pub static FILE_SINK_SYNC_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "sluice_file_sink_sync_seconds",
        "Time of one group commit of the file sink: flush and fsync of the files written since the last one.",
        &[1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.25, 1.0],
        &[],
    )
    .with_label_values::<&str>(&[])
});
/// Records a sink could not write for good (their input's delivery failed), by sink and reason.
pub static SINK_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_sink_errors_total",
        "Records the sink could not write for good (the input is not committed), by reason: invalid_topic, invalid_value, dead_letter_refused, fatal.",
        &["sink", "reason"],
    )
});
/// Records produced again after a retriable error, by sink and reason.
pub static SINK_RETRIES: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_sink_retries_total", "Records the sink sent again after a retriable error, by reason: queue_full, timeout, other.", &["sink", "reason"]));
/// Records handed to the sink's client and not yet acknowledged, by sink.
pub static SINK_IN_FLIGHT: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge("sluice_sink_in_flight_records", "Records handed to the sink's client (the Kafka producer) and not yet acknowledged.", &["sink"]));
/// Records the destination refused for good, sent to the dead-letter topic, by sink and reason.
pub static SINK_DEAD_LETTERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_sink_dead_letters_total",
        "Records the broker refused for good and that went to the dead-letter topic, by reason: unknown_topic, unauthorized, too_large, invalid.",
        &["sink", "reason"],
    )
});

// ---- Integration channel -------------------------------------------------------------------

/// Integration channel: requests answered, by reply code (`200`, `1203`, `1204`, …).
pub static INTEGRATION_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_integration_requests_total", "Integration requests answered, by reply code.", &["code"]));
/// Integration channel: `params` entries by verdict (`accepted`, `rejected`).
pub static INTEGRATION_ENTRIES: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_integration_entries_total", "Integration request entries, by verdict: accepted or rejected.", &["verdict"]));
/// Integration channel: decoder script failures, by reason (`missing`, `threw`, `timeout`, `memory`, `bad_output`).
pub static INTEGRATION_DECODER_ERRORS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_integration_decoder_errors_total", "up_raw decoder script failures, by reason: missing, threw, timeout, memory, bad_output.", &["reason"]));
/// HTTP event upload: files stored in the object store, by source.
pub static INTEGRATION_STORED_FILES: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_integration_stored_files_total", "Files of HTTP event uploads stored in the object store.", &["source"]));
/// HTTP event upload: bytes of the files stored, by source.
pub static INTEGRATION_STORED_BYTES: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_integration_stored_bytes_total", "Bytes of the HTTP upload files stored in the object store.", &["source"]));
/// MQTT source: 1 while connected to the broker, by source.
pub static MQTT_CONNECTED: LazyLock<IntGaugeVec> = LazyLock::new(|| gauge("sluice_mqtt_connected", "1 while an MQTT source is connected to its broker.", &["source"]));
/// MQTT source: connection events (`connect`, `disconnect`, `failed`: an attempt that failed),
/// by source.
pub static MQTT_CONNECTION_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter("sluice_mqtt_connection_events_total", "MQTT source connection events, by kind: connect, disconnect, or failed (an attempt to connect that failed).", &["source", "event"])
});
/// MQTT source: requests received and not yet answered, by source.
pub static MQTT_IN_FLIGHT: LazyLock<IntGaugeVec> = LazyLock::new(|| gauge("sluice_mqtt_in_flight_requests", "Integration requests received and not yet answered.", &["source"]));
/// MQTT source: messages its broker reports dropped (Mosquitto's
/// `$SYS/broker/publish/messages/dropped`: all clients, since the broker started), by source.
pub static MQTT_BROKER_DROPPED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge("sluice_mqtt_broker_dropped_messages", "Messages the MQTT broker reports it dropped ($SYS/broker/publish/messages/dropped): all clients, since the broker started.", &["source"])
});

/// Rules running, by state (`enabled`, `disabled`).
pub static RULES_LOADED: LazyLock<IntGaugeVec> = LazyLock::new(|| gauge("sluice_rules_loaded", "Rules loaded in the engine, by state: enabled or disabled.", &["state"]));
/// Rule files whose current text does not compile (their previous version keeps running).
pub static RULE_FILES_INVALID: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge("sluice_rule_files_invalid", "Rule files whose current text does not compile or whose name is taken (the previous version keeps running).", &[]));
/// Rule reloads (folder rescans), by result (`ok`, `error` — some file does not compile).
pub static RULE_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_rule_reloads_total", "Rule folder rescans, by result: ok, or error when some file does not compile.", &["result"]));
/// Rules API requests, by operation and HTTP status class.
pub static API_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_api_requests_total", "Rules API requests, by operation and status code.", &["op", "status"]));
// ---- Process -------------------------------------------------------------------------------

/// When the process started (recorded by [`init`]).
static STARTED: LazyLock<(Instant, SystemTime)> = LazyLock::new(|| (Instant::now(), SystemTime::now()));
/// Process start time, seconds since the epoch.
pub static PROCESS_START_TIME: LazyLock<Gauge> = LazyLock::new(|| {
    let g = float_gauge("sluice_process_start_time_seconds", "Start time of the process, seconds since the Unix epoch.");
    g.set(STARTED.1.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()));
    g
});
/// Seconds since the process started (set when scraped).
pub static PROCESS_UPTIME: LazyLock<Gauge> = LazyLock::new(|| float_gauge("sluice_process_uptime_seconds", "Seconds since the process started."));
/// Always 1, labelled with the version.
pub static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    let g = gauge("sluice_build_info", "Always 1; the label says which version of Sluice runs.", &["version"]);
    g.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    g
});

// ---- Series that exist from startup ---------------------------------------------------------

/// Reasons of [`SINK_ERRORS`] for the Kafka sink.
pub const KAFKA_SINK_ERROR_REASONS: &[&str] = &["dead_letter_refused", "fatal"];
/// Reasons of [`SINK_ERRORS`] for the file sink.
pub const FILE_SINK_ERROR_REASONS: &[&str] = &["io", "invalid_topic", "invalid_value"];
/// Reasons of [`SINK_RETRIES`].
pub const SINK_RETRY_REASONS: &[&str] = &["queue_full", "timeout", "other"];
/// Reasons of [`SINK_DEAD_LETTERS`].
pub const DEAD_LETTER_REASONS: &[&str] = &["unknown_topic", "unauthorized", "too_large", "invalid"];
/// Reasons of [`INTEGRATION_DECODER_ERRORS`].
pub const DECODER_ERROR_REASONS: &[&str] = &["missing", "threw", "timeout", "memory", "bad_output"];
/// Topic kinds (the ones `Registry::observe` applies) and results of [`REGISTRY_UPDATES`].
const REGISTRY_UPDATE_KINDS: [crate::topic::TopicKind; 3] = [crate::topic::TopicKind::Status, crate::topic::TopicKind::Lifecycle, crate::topic::TopicKind::TopoLifecycle];
const REGISTRY_UPDATE_RESULTS: &[&str] = &["applied", "stale", "unknown_device", "malformed"];

// A counter family with no label values yet is absent from `/metrics`, and so is every
// dashboard panel and alert on it ("no data" instead of 0, `rate()` blind to the first
// increment). The `prime_*` functions create a component's bounded label sets at 0 when it
// starts, so that everything it can count is scraped from the start.

/// Creates the series of a sink (`kafka` or `file`) at 0.
pub fn prime_sink(sink: &str, error_reasons: &[&str]) {
    for kind in ["data", "error"] {
        SINK_SENT_RECORDS.with_label_values(&[sink, kind]);
    }
    SINK_SENT_BYTES.with_label_values(&[sink]);
    SINK_IN_FLIGHT.with_label_values(&[sink]);
    for reason in error_reasons {
        SINK_ERRORS.with_label_values(&[sink, reason]);
    }
    if sink == "kafka" {
        for reason in SINK_RETRY_REASONS {
            SINK_RETRIES.with_label_values(&[sink, reason]);
        }
        for reason in DEAD_LETTER_REASONS {
            SINK_DEAD_LETTERS.with_label_values(&[sink, reason]);
        }
    }
}

/// Creates the series every source has at 0.
pub fn prime_source(source: &str) {
    SOURCE_RECEIVED_RECORDS.with_label_values(&[source]);
    SOURCE_RECEIVED_BYTES.with_label_values(&[source]);
    SOURCE_DECODE_ERRORS.with_label_values(&[source]);
    SOURCE_UNMATCHED_RECORDS.with_label_values(&[source]);
}

/// Creates the series of a Kafka source at 0 (lag and committed offsets appear per partition
/// once the group assigns them).
pub fn prime_kafka_source(source: &str) {
    prime_source(source);
    KAFKA_SOURCE_IN_FLIGHT.with_label_values(&[source]);
    KAFKA_SOURCE_PAUSED.with_label_values(&[source]);
    KAFKA_SOURCE_PAUSES.with_label_values(&[source]);
    KAFKA_ABANDONED.with_label_values(&[source]);
    KAFKA_CONSUMER_ERRORS.with_label_values(&[source]);
    for result in ["ok", "error"] {
        KAFKA_COMMITS.with_label_values(&[source, result]);
    }
    for kind in ["assign", "revoke", "lost", "error"] {
        KAFKA_REBALANCES.with_label_values(&[source, kind]);
    }
}

/// Creates the series of an integration source at 0: the MQTT channel (`mqtt`) or the HTTP
/// upload API (`http`, which stores files).
pub fn prime_integration_source(source: &str, http: bool) {
    prime_source(source);
    for code in [
        crate::integration::codes::OK,
        crate::integration::codes::BAD_REQUEST,
        crate::integration::codes::MODEL_VALIDATE_FAILED,
        crate::integration::codes::DEVICE_NOT_FOUND,
        crate::integration::codes::DECODER_FAILED,
        crate::integration::codes::TOO_LARGE,
        crate::integration::codes::INTERNAL,
    ] {
        INTEGRATION_REQUESTS.with_label_values(&[&code.to_string()]);
    }
    for verdict in ["accepted", "rejected"] {
        INTEGRATION_ENTRIES.with_label_values(&[verdict]);
    }
    if http {
        INTEGRATION_STORED_FILES.with_label_values(&[source]);
        INTEGRATION_STORED_BYTES.with_label_values(&[source]);
    } else {
        MQTT_CONNECTED.with_label_values(&[source]);
        MQTT_IN_FLIGHT.with_label_values(&[source]);
        for event in ["connect", "disconnect", "failed"] {
            MQTT_CONNECTION_EVENTS.with_label_values(&[source, event]);
        }
        for reason in DECODER_ERROR_REASONS {
            INTEGRATION_DECODER_ERRORS.with_label_values(&[reason]);
        }
    }
}

/// Creates the engine's and the device registry's series at 0.
pub fn prime_engine() {
    LazyLock::force(&REGISTRY_KNOWN_DEVICES);
    LazyLock::force(&REGISTRY_ONLINE_DEVICES);
    for kind in ["data", "error"] {
        OUTPUT_RECORDS.with_label_values(&[kind]);
    }
    for kind in REGISTRY_UPDATE_KINDS {
        for result in REGISTRY_UPDATE_RESULTS {
            REGISTRY_UPDATES.with_label_values(&[kind.name(), result]);
        }
    }
    for result in ["ok", "error"] {
        RULE_RELOADS.with_label_values(&[result]);
    }
}

/// Records the process start and registers the process metrics; called at startup (by
/// [`crate::telemetry::init_logging`]), and again, harmlessly, by [`render`].
pub fn init() {
    LazyLock::force(&STARTED);
    LazyLock::force(&PROCESS_START_TIME);
    LazyLock::force(&BUILD_INFO);
}

/// Renders the registry in the Prometheus text format.
pub fn render() -> String {
    use prometheus::Encoder;
    init();
    PROCESS_UPTIME.set(STARTED.0.elapsed().as_secs_f64());
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&REGISTRY.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, line_start: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(line_start).and_then(|rest| rest.trim().parse().ok()))
    }

    #[test]
    fn local_rule_metrics_reach_the_registry_on_flush_and_forget_removes_them() {
        let m = RuleMetrics::new("metrics-unit-rule");
        let local = m.local();
        local.matched.inc();
        local.passed.inc();
        local.failed[2].inc();
        local.outputs.inc_by(2);
        local.eval.observe(3e-6);
        assert_eq!(value(&render(), "sluice_rule_matched_messages_total{rule=\"metrics-unit-rule\"}"), Some(0.0), "not flushed yet");
        local.flush();
        let text = render();
        assert_eq!(value(&text, "sluice_rule_matched_messages_total{rule=\"metrics-unit-rule\"}"), Some(1.0));
        assert_eq!(value(&text, "sluice_rule_failed_records_total{reason=\"select\",rule=\"metrics-unit-rule\"}"), Some(1.0));
        assert_eq!(value(&text, "sluice_rule_failed_records_total{reason=\"where\",rule=\"metrics-unit-rule\"}"), Some(0.0));
        assert_eq!(value(&text, "sluice_rule_output_records_total{rule=\"metrics-unit-rule\"}"), Some(2.0));
        assert_eq!(value(&text, "sluice_rule_eval_seconds_count{rule=\"metrics-unit-rule\"}"), Some(1.0));
        assert_eq!(value(&text, "sluice_rule_eval_seconds_bucket{rule=\"metrics-unit-rule\",le=\"0.0000025\"}"), Some(0.0));
        assert_eq!(value(&text, "sluice_rule_eval_seconds_bucket{rule=\"metrics-unit-rule\",le=\"0.000005\"}"), Some(1.0));
        forget_rule("metrics-unit-rule");
        assert!(!render().contains("metrics-unit-rule"));
    }

    #[test]
    fn process_metrics_are_rendered() {
        let text = render();
        assert_eq!(value(&text, &format!("sluice_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))), Some(1.0));
        assert!(value(&text, "sluice_process_start_time_seconds").is_some_and(|t| t > 1.6e9));
        assert!(value(&text, "sluice_process_uptime_seconds").is_some_and(|t| t >= 0.0));
    }
}
