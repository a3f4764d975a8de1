//! `[state]`: where windowed and analytic rules keep their state.

use std::path::PathBuf;

use serde::Deserialize;

/// The default checkpoint interval (ms).
pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 100;

/// `[state]`: the embedded store of the stateful rules' state. Without it, state lives in
/// memory only and a restart starts empty.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The data folder (created when missing): `state.redb` in it holds every windowed rule's
    /// groups and every analytic partition, checkpointed with what was acknowledged.
    pub dir: PathBuf,
    /// How often (ms) the state is checkpointed. An input that touched state is acknowledged
    /// (MQTT reply and PUBACK, HTTP answer, Kafka commit) only after the checkpoint holding its
    /// contribution is durable, so this bounds the extra latency those inputs see.
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
}

fn default_checkpoint_interval_ms() -> u64 {
    DEFAULT_CHECKPOINT_INTERVAL_MS
}
