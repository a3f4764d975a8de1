//! The metrics of windowed rules (part of [`super`], where every metric name lives).

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGaugeVec};

use super::register::{counter, gauge};

/// Records later than every window they belong to (each an error record of stage `late`), by rule.
pub static LATE_EVENTS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_late_events_total", "Records of a windowed rule that came after every window they belong to had closed (error records of stage late).", &["rule"]));
/// Groups evicted because a windowed rule held `max_state_keys`, by rule.
pub static STATE_EVICTIONS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_state_evictions_total", "Groups of a windowed rule evicted (windows emitted early) because it held max_state_keys.", &["rule"]));
/// Windows emitted, by rule.
pub static WINDOWS_EMITTED: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_windows_emitted_total", "Windows a windowed rule closed and evaluated (before HAVING).", &["rule"]));
/// Groups whose state a changed rule discarded on reload, by rule.
pub static STATE_DISCARDED: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_state_discarded_keys_total", "Groups of a windowed rule whose state a reload of the changed rule discarded.", &["rule"]));
/// Groups a windowed rule holds (updated by the window timer), by rule.
pub static STATE_KEYS: LazyLock<IntGaugeVec> = LazyLock::new(|| gauge("sluice_state_keys", "Groups (GROUP BY keys) a windowed rule holds state for.", &["rule"]));
