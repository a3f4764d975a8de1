//! The smoke run's clients, from the test kit: an MQTT client that publishes requests and
//! collects the replies ([`Publisher`]), a Kafka collector of the output topics
//! ([`Collector`]) and a producer; records are printed as `kafka_tool tail` prints them.

use std::time::Duration;

pub use sluice_testkit::mosquitto::{Publisher, Reply};
pub use sluice_testkit::{produce, Collector, In, Rec};

use crate::signals::{Interrupted, Signals};

/// `{"topic", "partition", "offset", "key", "headers", "value"}` (`value` is the JSON value
/// when the record is JSON, else a string), the line `kafka_tool tail` prints.
pub fn record_line(r: &Rec) -> String {
    let headers: serde_json::Map<String, serde_json::Value> = r.headers.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
    let value = serde_json::from_slice::<serde_json::Value>(&r.value).unwrap_or_else(|_| String::from_utf8_lossy(&r.value).into_owned().into());
    serde_json::json!({"topic": r.topic, "partition": r.partition, "offset": r.offset, "key": r.key, "headers": headers, "value": value}).to_string()
}

/// The reply whose body's `id` is `id`, once it arrived (None after `timeout`).
pub fn wait_reply(p: &Publisher, id: &str, timeout: Duration, signals: &Signals) -> Result<Option<Reply>, Interrupted> {
    let mut got = None;
    signals.wait_until(timeout, Duration::from_millis(20), || {
        got = p.replies().into_iter().find(|r| r.body["id"] == id);
        got.is_some()
    })?;
    Ok(got)
}

/// The records of `topic` whose JSON value satisfies `wanted`, once there are `n` of them
/// (None after `timeout`).
pub fn wait_records(c: &Collector, topic: &str, n: usize, timeout: Duration, signals: &Signals, wanted: impl Fn(&serde_json::Value) -> bool) -> Result<Option<Vec<Rec>>, Interrupted> {
    let pick = || -> Vec<Rec> { c.records().into_iter().filter(|r| r.topic == topic && serde_json::from_slice(&r.value).is_ok_and(|v| wanted(&v))).collect() };
    let done = signals.wait_until(timeout, Duration::from_millis(100), || pick().len() >= n)?;
    Ok(done.then(pick))
}
