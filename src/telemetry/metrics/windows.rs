//! The metrics of windowed rules (part of [`super`], where every metric name lives).

use std::sync::LazyLock;

use prometheus::{Histogram, IntCounterVec, IntGaugeVec};

use super::register::{counter, gauge, histogram};

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

/// Records of a stateful rule whose key's state is kept in another Kafka partition (the
/// input is not keyed by the GROUP BY or PARTITION BY key), by rule.
pub static STATE_PARTITION_VIOLATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter("sluice_state_partition_violations_total", "Records of a stateful rule from a Kafka partition other than the one its key's state is kept in (key the input by device).", &["rule"])
});
/// Kafka partitions whose state was restored from the changelog, by source.
pub static STATE_RESTORED_PARTITIONS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_state_restored_partitions_total", "Kafka partitions whose state was restored from the source's changelog topic on assignment.", &["source"]));
/// Keys restored from the changelog, by source.
pub static STATE_RESTORED_KEYS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_state_restored_keys_total", "Groups and analytic partitions restored from a Kafka source's changelog topic.", &["source"]));
/// Records acknowledged without processing because the restored state already held them.
pub static STATE_COVERED_SKIPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_state_covered_skipped_total",
        "Kafka records read again after a crash or rebalance whose effects the restored changelog state already held (acknowledged, not processed again).",
        &["source"],
    )
});

/// Time to write one checkpoint of the state store (one redb transaction).
pub static STATE_CHECKPOINT_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram("sluice_state_checkpoint_seconds", "Time to write one checkpoint of the state store (one durable transaction).", &[1e-4, 1e-3, 5e-3, 2e-2, 1e-1, 1.0], &[]).with_label_values::<&str>(&[])
});
/// Inputs skipped on replay because the last checkpoint already held their contribution.
pub static STATE_REPLAY_SKIPPED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    counter("sluice_state_replay_skipped_total", "Inputs delivered again after a restart whose contribution the last checkpoint already held (skipped by the stateful rules).", &[])
        .with_label_values::<&str>(&[])
});

/// Sequence numbers a rule's delivery audit found missing (the sizes of its gaps), by rule.
pub static AUDIT_MISSING: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_audit_missing_total", "Sequence numbers a rule's delivery audit found missing (the sizes of the gaps; each gap is one audit record).", &["rule"]));
/// Sequence numbers a rule's delivery audit saw again, by rule.
pub static AUDIT_DUPLICATES: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("sluice_audit_duplicates_total", "Records whose sequence number the rule's delivery audit had seen before.", &["rule"]));
/// Missing sequence numbers that arrived late, by rule.
pub static AUDIT_REORDERS: LazyLock<IntCounterVec> = LazyLock::new(|| counter("sluice_audit_reorders_total", "Records whose sequence number was missing and arrived late (out of order).", &["rule"]));
