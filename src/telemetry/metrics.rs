//! Every metric of Sluice, in one place. Names are `sluice_<name>_<unit>`; counters end in
//! `_total`; labels are bounded (rule names, source names, stages — never device ids).

use std::sync::LazyLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The registry served at `/metrics`.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

/// Messages received, by source.
pub static MESSAGES_RECEIVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_messages_received_total",
        "Messages received from sources.",
        &["source"],
    )
});
/// Inputs a source could not decode (routed to the dead-letter topic), by source.
pub static MESSAGES_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_messages_rejected_total",
        "Source inputs that were not valid messages (dead-lettered).",
        &["source"],
    )
});
/// Messages no rule's filter matched, by source.
pub static MESSAGES_UNMATCHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_messages_unmatched_total",
        "Messages that no rule's topic filter matched.",
        &["source"],
    )
});
/// Rule evaluations by result (`passed`, `filtered`, `failed`).
pub static RULE_EVALUATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_rule_evaluations_total",
        "Rule evaluations by result: passed, filtered (WHERE false) or failed.",
        &["result"],
    )
});
/// Output records by kind (`data`, `error`).
pub static OUTPUT_RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "sluice_output_records_total",
        "Output records produced, by kind: data or error.",
        &["kind"],
    )
});
/// Time spent processing one message in the engine.
pub static PROCESS_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let h = HistogramVec::new(
        HistogramOpts::new(
            "sluice_engine_process_seconds",
            "Engine time per message (match, decode, evaluate, serialize).",
        )
        .buckets(vec![1e-6, 5e-6, 2e-5, 1e-4, 5e-4, 2e-3, 1e-2]),
        &["worker"],
    )
    .expect("valid metric");
    REGISTRY
        .register(Box::new(h.clone()))
        .expect("unique metric");
    h
});

/// Renders the registry in the Prometheus text format.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&REGISTRY.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
