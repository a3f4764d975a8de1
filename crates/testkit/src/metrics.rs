//! Sluice's `/metrics`, parsed with a Prometheus text-format parser: tests wait on metric
//! values and check them exactly, instead of reading log lines.

use std::time::Duration;

use prometheus_parse::{Scrape, Value};

/// A parsed scrape.
pub struct Metrics(pub Scrape);

impl Metrics {
    /// `GET http://{admin}/metrics`, parsed; panics when the server does not answer.
    pub fn fetch(admin: &str) -> Metrics {
        Metrics::try_fetch(admin).expect("GET /metrics")
    }

    /// `GET http://{admin}/metrics`, parsed; None while the server does not answer.
    pub fn try_fetch(admin: &str) -> Option<Metrics> {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().ok()?;
        let text = client.get(format!("http://{admin}/metrics")).send().and_then(|r| r.error_for_status()).and_then(|r| r.text()).ok()?;
        Some(Metrics(Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")))
    }

    /// The value of the sample of `name` with exactly `labels` (counters, gauges, histogram
    /// `_count` and `_sum` lines).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.samples.iter().find(|s| s.metric == name && same_labels(&s.labels, labels)).map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a plain value: {other:?}"),
        })
    }

    /// Like [`Metrics::get`], panicking with the whole scrape when the series is missing.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in the scrape: {:#?}", self.names()))
    }

    /// `(upper bound, cumulative count)` of a histogram's buckets.
    pub fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let s = self.0.samples.iter().find(|s| s.metric == name && same_labels(&s.labels, labels)).unwrap_or_else(|| panic!("no histogram {name}{labels:?}"));
        match &s.value {
            Value::Histogram(b) => b.iter().map(|h| (h.less_than, h.count)).collect(),
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    /// The sum of every series of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    }

    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.0.samples.iter().map(|s| format!("{}{:?}", s.metric, s.labels)).collect();
        n.sort();
        n
    }
}

pub fn same_labels(have: &prometheus_parse::Labels, want: &[(&str, &str)]) -> bool {
    have.len() == want.len() && want.iter().all(|(k, v)| have.get(k) == Some(*v))
}

/// Waits until the value of `name` with exactly `labels` at `admin` satisfies `ok`; false on
/// timeout.
pub fn wait_metric(admin: &str, name: &str, labels: &[(&str, &str)], timeout: Duration, mut ok: impl FnMut(f64) -> bool) -> bool {
    crate::poll_until(timeout, Duration::from_millis(100), || Metrics::try_fetch(admin).and_then(|m| m.get(name, labels)).is_some_and(&mut ok))
}
