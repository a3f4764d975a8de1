//! The few fields Sluice reads from librdkafka's statistics (the JSON a client emits every
//! `statistics.interval.ms`, handed to `ClientContext::stats_raw`): broker connection states
//! (is Kafka reachable?) and, for consumers, each assigned partition's lag.
//!
//! Lag comes from the statistics rather than from watermark requests: librdkafka learns each
//! partition's high watermark from every fetch response and its committed offset from every
//! commit, so the lag costs no extra request to the brokers and no blocking call on the
//! consumer's thread. Fields are parsed leniently (missing ones take defaults), so a librdkafka
//! version that adds or drops fields does not silence the metrics.

use std::collections::HashMap;

use serde::Deserialize;

/// A statistics document.
#[derive(Debug, Default, Deserialize)]
pub struct Stats {
    /// Brokers by name (`host:port/nodeid`, `host:port/bootstrap`, logical brokers).
    #[serde(default)]
    pub brokers: HashMap<String, BrokerStats>,
    /// Topics by name.
    #[serde(default)]
    pub topics: HashMap<String, TopicStats>,
}

/// One broker's connection.
#[derive(Debug, Default, Deserialize)]
pub struct BrokerStats {
    /// `INIT`, `DOWN`, `CONNECT`, `AUTH`, `APIVERSION_QUERY`, `AUTH_HANDSHAKE`, `UP`, `UPDATE`.
    #[serde(default)]
    pub state: String,
}

/// One topic.
#[derive(Debug, Default, Deserialize)]
pub struct TopicStats {
    /// Partitions by id (`-1` is librdkafka's internal unassigned partition).
    #[serde(default)]
    pub partitions: HashMap<String, PartitionStats>,
}

/// One partition, as a consumer sees it. Offsets are negative when unknown.
#[derive(Debug, Deserialize)]
pub struct PartitionStats {
    /// The partition id.
    pub partition: i32,
    /// Whether the consumer has it assigned.
    #[serde(default)]
    pub desired: bool,
    /// The fetcher's state (`active` while assigned and fetched).
    #[serde(default)]
    pub fetch_state: String,
    /// Low watermark.
    #[serde(default = "unknown")]
    pub lo_offset: i64,
    /// High watermark.
    #[serde(default = "unknown")]
    pub hi_offset: i64,
    /// Last stable offset (the end for `read_committed` consumers).
    #[serde(default = "unknown")]
    pub ls_offset: i64,
    /// Last committed offset.
    #[serde(default = "unknown")]
    pub committed_offset: i64,
    /// librdkafka's own lag: end offset minus committed offset, `-1` when either is unknown.
    #[serde(default = "unknown")]
    pub consumer_lag: i64,
}

fn unknown() -> i64 {
    -1
}

impl Stats {
    /// Parses a statistics document.
    pub fn parse(json: &[u8]) -> Result<Stats, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// How many brokers are connected (`UP`), and how many are known.
    pub fn brokers_up(&self) -> (usize, usize) {
        (self.brokers.values().filter(|b| b.state == "UP").count(), self.brokers.len())
    }

    /// `(topic, partition, lag)` of every assigned partition whose lag is known, sorted.
    pub fn consumer_lags(&self) -> Vec<(&str, i32, i64)> {
        let mut out: Vec<(&str, i32, i64)> = self
            .topics
            .iter()
            .flat_map(|(t, ts)| ts.partitions.values().map(move |p| (t.as_str(), p)))
            .filter(|(_, p)| p.partition >= 0 && (p.desired || p.fetch_state == "active"))
            .filter_map(|(t, p)| p.lag().map(|lag| (t, p.partition, lag)))
            .collect();
        out.sort_unstable();
        out
    }
}

impl PartitionStats {
    /// Records not yet committed: librdkafka's `consumer_lag` when it knows it; else, for a
    /// partition never committed (read from its start), the end offset minus the low watermark.
    pub fn lag(&self) -> Option<i64> {
        if self.consumer_lag >= 0 {
            return Some(self.consumer_lag);
        }
        let end = if self.ls_offset >= 0 { self.ls_offset } else { self.hi_offset };
        let base = if self.committed_offset >= 0 { self.committed_offset } else { self.lo_offset };
        (end >= 0 && base >= 0).then(|| (end - base).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_and_lags_are_read_leniently() {
        let json = br#"{
            "name": "rdkafka#consumer-1", "type": "consumer", "ts": 1,
            "brokers": {
                "127.0.0.1:9092/bootstrap": {"name": "127.0.0.1:9092/bootstrap", "nodeid": -1, "state": "UP"},
                "127.0.0.1:9092/1": {"name": "127.0.0.1:9092/1", "nodeid": 1, "state": "CONNECT", "extra": [1, 2]}
            },
            "topics": {
                "iot-in": {"topic": "iot-in", "partitions": {
                    "0": {"partition": 0, "desired": true, "fetch_state": "active", "hi_offset": 10, "ls_offset": 10, "lo_offset": 0, "committed_offset": 7, "consumer_lag": 3},
                    "1": {"partition": 1, "desired": true, "fetch_state": "active", "hi_offset": 5, "ls_offset": -1, "lo_offset": 2, "committed_offset": -1001, "consumer_lag": -1},
                    "2": {"partition": 2, "desired": false, "fetch_state": "none", "hi_offset": 5, "committed_offset": 1, "consumer_lag": 4},
                    "3": {"partition": 3, "desired": true, "fetch_state": "offset-query", "hi_offset": -1, "committed_offset": -1001, "consumer_lag": -1},
                    "-1": {"partition": -1, "desired": false, "consumer_lag": -1}
                }}
            }
        }"#;
        let s = Stats::parse(json).unwrap();
        assert_eq!(s.brokers_up(), (1, 2));
        assert_eq!(s.consumer_lags(), vec![("iot-in", 0, 3), ("iot-in", 1, 3)]);
        assert_eq!(Stats::parse(b"{}").unwrap().brokers_up(), (0, 0));
    }
}
