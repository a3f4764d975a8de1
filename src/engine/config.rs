//! `[engine]` of the configuration.

use serde::Deserialize;

use crate::engine::types::DEFAULT_ERROR_PAYLOAD_MAX_BYTES;

/// `[engine]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Topic of error records for rules without an `[error_action]`, and of dead letters.
    pub default_error_topic: String,
    /// Payloads larger than this are not evaluated; each matching rule gets an error record.
    pub max_payload_bytes: usize,
    /// Capacity of every channel between stages (messages). Full channels block the stage
    /// before them: backpressure, never drops.
    pub channel_capacity: usize,
    /// Engine worker tasks. Messages are spread by topic, so one topic's messages keep their
    /// order.
    pub workers: usize,
    /// Time zone of `timestamp()`, as `UTC` or `±HH:MM`.
    pub timezone: String,
    /// After SIGINT/SIGTERM: how long (ms) sources may wait for in-flight messages to be
    /// delivered, the sink may flush and sources may commit, before the process exits anyway.
    /// Work not finished by then is not committed, so it is read again on restart
    /// (at-least-once).
    pub shutdown_timeout_ms: u64,
    /// Per-rule metric series (`sluice_rule_*`, about 20 series per enabled rule). Turn off for
    /// rule sets so large that the series would burden Prometheus; the engine, source and sink
    /// metrics stay.
    pub rule_metrics: bool,
    /// At most this many bytes of the input payload are copied (base64) into an error record;
    /// a longer payload is cut there and the record says so (`payload_truncated`,
    /// `payload_bytes`). With one error record per message and rule, this bounds what bad input
    /// can make a rule write.
    pub error_payload_max_bytes: usize,
    /// The console's live-sample tap (`[engine.tap]`, off by default).
    pub tap: crate::engine::tap::TapConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default_error_topic: "sluice-errors".into(),
            max_payload_bytes: 1024 * 1024,
            channel_capacity: 1024,
            workers: 1,
            timezone: "UTC".into(),
            shutdown_timeout_ms: 30_000,
            rule_metrics: true,
            error_payload_max_bytes: DEFAULT_ERROR_PAYLOAD_MAX_BYTES,
            tap: crate::engine::tap::TapConfig::default(),
        }
    }
}
