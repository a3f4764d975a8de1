//! The registry and the helpers that create and register metrics (for [`super`]).

use std::sync::LazyLock;

use prometheus::{Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The registry served at `/metrics`.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

pub(super) fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    REGISTRY.register(Box::new(c.clone())).expect("unique metric");
    c
}

pub(super) fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    REGISTRY.register(Box::new(g.clone())).expect("unique metric");
    g
}

pub(super) fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).expect("valid metric");
    REGISTRY.register(Box::new(h.clone())).expect("unique metric");
    h
}

pub(super) fn float_gauge(name: &str, help: &str) -> Gauge {
    let g = Gauge::new(name, help).expect("valid metric");
    REGISTRY.register(Box::new(g.clone())).expect("unique metric");
    g
}
