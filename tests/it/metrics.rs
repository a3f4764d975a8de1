//! The real binary's `/metrics` and `/readyz`, against real brokers (tansu, Mosquitto) on free
//! ports.
//!
//! `metrics_count_exactly_what_happened` feeds a known input through two rules — messages that
//! pass, that a WHERE filters out, that fail at each stage (decode, where, select, action), that
//! match no rule, a record that is not a message (no IoT topic), and registry updates — waits
//! until every output is in Kafka and every input committed, scrapes `/metrics`, parses it with a
//! Prometheus text-format parser and checks the exact values.
//!
//! `readyz_follows_kafka_and_mqtt` starts Sluice before its brokers: `/readyz` is 503 naming the
//! failing checks, 200 once both are up, 503 again while either is killed, 200 when it is back;
//! then every metric the Grafana dashboard queries is in the scrape.

use sluice_testkit as support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::metrics::Metrics;
use support::mosquitto::Mosquitto;
use support::{free_port, produce, tail, temp_dir, write, Broker, Collector, In, Sluice};

/// `GET /readyz`: status and body (None while the server does not answer).
fn readyz(admin: &str) -> Option<(u16, serde_json::Value)> {
    let r = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().ok()?.get(format!("http://{admin}/readyz")).send().ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().ok()?))
}

/// Polls until `done` holds, up to `timeout`; panics with `what` and the log otherwise.
fn eventually<T>(timeout: Duration, log: &Path, what: &str, mut done: impl FnMut() -> Option<T>) -> T {
    let mut got = None;
    support::poll_until(timeout, Duration::from_millis(200), || {
        got = done();
        got.is_some()
    });
    got.unwrap_or_else(|| panic!("{what}: not within {timeout:?}; sluice log:\n{}", tail(log, 80)))
}

const TEMP_ALERT: &str = r#"name = "temp-alert"
sql = """
SELECT deviceName, items.temp.value AS temp, 100 / (items.temp.value - 45) AS inv
FROM "/sys/+/+/thing/event/property/post"
WHERE items.temp.value + 0 > 30
"""
[[actions]]
topic = "alerts"
key = "${deviceName}"
"#;

const POWER: &str = r#"name = "power"
sql = """
SELECT deviceName, items.Power.value AS power
FROM "/sys/+/+/thing/event/property/post"
WHERE items.Power.value = 'on'
"""
[[actions]]
topic = "power"
[[actions]]
topic = "power-copy"
"#;

#[test]
fn metrics_count_exactly_what_happened() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topics(&[("iot-in", 1), ("alerts", 1), ("power", 1), ("power-copy", 1), ("sluice-errors", 1)]);

    let post = "/sys/pk/dev/thing/event/property/post";
    let inputs = vec![
        In::iot(post, json!({"deviceName": "dev1", "items": {"temp": {"value": 40}, "Power": {"value": "on"}}}).to_string()), // both pass
        In::iot(post, json!({"deviceName": "dev2", "items": {"temp": {"value": 35}, "Power": {"value": "on"}}}).to_string()), // both pass
        In::iot(post, json!({"deviceName": "dev3", "items": {"temp": {"value": 20}}}).to_string()),                           // no result: both
        In::iot(post, json!({"deviceName": "dev4", "items": {"temp": {"value": "hot"}}}).to_string()),                        // temp-alert: where
        In::iot(post, json!({"items": {"temp": {"value": 50}}}).to_string()),                                                 // temp-alert: action (key is null)
        In::iot(post, "{not json"),                                                                                           // both: decode
        In::iot(post, json!({"deviceName": "dev7", "items": {"temp": {"value": 45}}}).to_string()),                           // temp-alert: select (100 / 0)
        In::iot("/custom/nobody/listens", "{}"),                                                                              // unmatched
        In { key: None, headers: vec![], value: b"no iot-topic header".to_vec() },                                            // not a message: dead letter
        In::iot("/as/mqtt/status/pk/dev1", json!({"status": "online", "utcLastTime": "2024-01-01T00:00:00Z"}).to_string()),   // registry: dev1 online
        In::iot("/sys/pk/dev9/thing/lifecycle", json!({"action": "create"}).to_string()),                                     // registry: a third device
    ];
    let input_bytes: usize = inputs.iter().map(|i| i.value.len()).sum();
    let n = inputs.len();
    produce(&bootstrap, "iot-in", inputs);

    let dir = temp_dir("sluice-metrics-");
    let rules = dir.path().join("rules");
    write(&rules.join("temp-alert.toml"), TEMP_ALERT);
    write(&rules.join("power.toml"), POWER);
    let models = dir.path().join("models");
    write(&models.join("devices.toml"), "[[devices]]\nproduct_key = \"pk\"\ndevice_key = \"dev1\"\n\n[[devices]]\nproduct_key = \"pk\"\ndevice_key = \"dev2\"\n");
    let group = "metrics-test";
    let config = dir.path().join("sluice.toml");
    let mut text = support::kafka_config(&bootstrap, group, &["iot-in"], &rules);
    support::config::merge(&mut text, json!({"registry": {"models": support::config::path(&models)}}));

    let collector = Collector::start(&bootstrap, &["alerts", "power", "power-copy", "sluice-errors"]);
    let (sluice, admin) = Sluice::start_admin(&text, &config, &dir.path().join("sluice.log"));
    let count = |recs: &[support::Rec], topic: &str| recs.iter().filter(|r| r.topic == topic).count();
    let all_out = collector.wait_for(Duration::from_secs(90), |r| count(r, "alerts") >= 2 && count(r, "power") >= 2 && count(r, "power-copy") >= 2 && count(r, "sluice-errors") >= 6);
    assert!(all_out, "outputs: {:?}; sluice log:\n{}", collector.records().iter().map(|r| &r.topic).collect::<Vec<_>>(), tail(&sluice.log, 80));

    // Every input committed, and the consumer's lag (from librdkafka's statistics) back to 0.
    let source = format!("kafka:{group}:iot-in");
    let partition = [("source", source.as_str()), ("topic", "iot-in"), ("partition", "0")];
    let m = eventually(Duration::from_secs(60), &sluice.log, "lag 0 and every input committed", || {
        let m = Metrics::fetch(&admin);
        (m.get("sluice_kafka_consumer_lag_records", &partition) == Some(0.0) && m.get("sluice_kafka_committed_offset", &partition) == Some(n as f64)).then_some(m)
    });
    // Every input committed: every output is in the broker; once read, the set is complete.
    assert!(collector.wait_caught_up(Duration::from_secs(30)), "the collector did not catch up with the broker");
    let outputs = collector.records();
    assert_eq!(outputs.len(), 12, "no more outputs than expected: {outputs:#?}");
    let output_bytes: usize = outputs.iter().map(|r| r.value.len()).sum();

    // Per source.
    let src = [("source", source.as_str())];
    assert_eq!(m.value("sluice_source_received_records_total", &src), n as f64);
    assert_eq!(m.value("sluice_source_received_bytes_total", &src), input_bytes as f64);
    assert_eq!(m.value("sluice_source_decode_errors_total", &src), 1.0);
    assert_eq!(m.value("sluice_source_unmatched_records_total", &src), 3.0, "custom topic, status, lifecycle");

    // Per rule.
    let expect = |rule: &str, matched: f64, passed: f64, no_result: f64, failed: [f64; 4], outputs: f64| {
        let r = [("rule", rule)];
        assert_eq!(m.value("sluice_rule_matched_messages_total", &r), matched, "{rule} matched");
        assert_eq!(m.value("sluice_rule_passed_records_total", &r), passed, "{rule} passed");
        assert_eq!(m.value("sluice_rule_no_result_records_total", &r), no_result, "{rule} no result");
        for (reason, want) in ["decode", "where", "select", "action"].iter().zip(failed) {
            assert_eq!(m.value("sluice_rule_failed_records_total", &[("rule", rule), ("reason", reason)]), want, "{rule} failed at {reason}");
        }
        assert_eq!(m.value("sluice_rule_output_records_total", &r), outputs, "{rule} outputs");
        // Sampled: each worker times the first message of a rule it matches after a flush of
        // its counts, then one in 16.
        let timed = m.value("sluice_rule_eval_seconds_count", &r);
        assert!((1.0..=matched).contains(&timed), "{rule}: {timed} of {matched} matched messages timed");
        let buckets = m.buckets("sluice_rule_eval_seconds", &r);
        assert_eq!(buckets.last().map(|b| (b.0.is_infinite(), b.1)), Some((true, timed)), "{rule} +Inf bucket: {buckets:?}");
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative buckets: {buckets:?}");
        assert!(m.value("sluice_rule_eval_seconds_sum", &r) > 0.0);
    };
    expect("temp-alert", 7.0, 2.0, 1.0, [1.0, 1.0, 1.0, 1.0], 2.0);
    expect("power", 7.0, 2.0, 4.0, [1.0, 0.0, 0.0, 0.0], 4.0);

    // Engine and sink.
    assert_eq!(m.value("sluice_output_records_total", &[("kind", "data")]), 6.0);
    assert_eq!(m.value("sluice_output_records_total", &[("kind", "error")]), 6.0, "5 rule failures and 1 dead letter");
    assert_eq!(m.sum("sluice_engine_process_seconds_count"), (n - 1) as f64, "every message but the dead letter went through the engine");
    assert_eq!(m.value("sluice_sink_sent_records_total", &[("sink", "kafka"), ("kind", "data")]), 6.0);
    assert_eq!(m.value("sluice_sink_sent_records_total", &[("sink", "kafka"), ("kind", "error")]), 6.0);
    assert_eq!(m.value("sluice_sink_sent_bytes_total", &[("sink", "kafka")]), output_bytes as f64);
    assert_eq!(m.value("sluice_sink_in_flight_records", &[("sink", "kafka")]), 0.0);
    assert_eq!(m.sum("sluice_sink_dead_letters_total"), 0.0);
    // Series that counted nothing are there, at 0.
    assert_eq!(m.value("sluice_sink_dead_letters_total", &[("sink", "kafka"), ("reason", "too_large")]), 0.0);
    assert_eq!(m.value("sluice_sink_retries_total", &[("sink", "kafka"), ("reason", "timeout")]), 0.0);
    assert_eq!(m.value("sluice_kafka_commits_total", &[("source", source.as_str()), ("result", "error")]), 0.0);
    assert_eq!(m.value("sluice_registry_updates_total", &[("kind", "status"), ("result", "malformed")]), 0.0);
    assert_eq!(m.sum("sluice_sink_errors_total"), 0.0);
    assert_eq!(m.value("sluice_kafka_source_in_flight_messages", &src), 0.0);

    // Device registry: two devices from the file, one created by a lifecycle message; one online.
    assert_eq!(m.value("sluice_registry_known_devices", &[]), 3.0);
    assert_eq!(m.value("sluice_registry_online_devices", &[]), 1.0);
    assert_eq!(m.value("sluice_registry_updates_total", &[("kind", "status"), ("result", "applied")]), 1.0);
    assert_eq!(m.value("sluice_registry_updates_total", &[("kind", "lifecycle"), ("result", "applied")]), 1.0);

    // Process.
    assert_eq!(m.value("sluice_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert!(m.value("sluice_process_uptime_seconds", &[]) > 0.0);
    assert!(m.value("sluice_process_start_time_seconds", &[]) > 1.6e9);

    // Everything is up: ready.
    let (status, body) = readyz(&admin).expect("/readyz answers");
    assert_eq!(status, 200, "{body:#}");
    let names: Vec<&str> = body["checks"].as_array().expect("checks").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, vec!["pipeline", "rules", "sink:kafka", &format!("source:{source}")]);
    drop(sluice);
}

#[test]
fn readyz_follows_kafka_and_mqtt() {
    // Both brokers exist (so their ports are known) but are down when Sluice starts.
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topics(&[("iot-in", 1), ("sluice-errors", 1)]);
    broker.kill();
    let mut mosquitto = Mosquitto::start();
    mosquitto.stop();

    let dir = temp_dir("sluice-readyz-");
    let rules = dir.path().join("rules");
    write(&rules.join("power.toml"), &POWER.replace("[[actions]]\ntopic = \"power-copy\"\n", ""));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("sluice.toml");
    let fast_reconnect = json!({"reconnect.backoff.ms": "100", "reconnect.backoff.max.ms": "1000"});
    let text = support::config::table(json!({
        "rules": {"paths": [support::config::path(&rules)]},
        "admin": {"listen": admin, "token": "readyz-token"},
        "sources": [
            {"type": "kafka", "brokers": bootstrap, "topics": ["iot-in"], "group_id": "readyz-test", "properties": fast_reconnect},
            {"type": "mqtt", "url": mosquitto.url(), "client_id": "sluice-readyz", "reconnect_backoff_ms": 100, "reconnect_backoff_max_ms": 1000},
            {"type": "http", "listen": "127.0.0.1:0", "files_dir": support::config::path(&dir.path().join("files")), "tokens": {"org": ["t"]}},
        ],
        "sink": {"type": "kafka", "brokers": bootstrap, "properties": fast_reconnect},
    }));
    support::config::write_config(&config, &text);
    let sluice = Sluice::start(&config, &dir.path().join("sluice.log"));
    let log = sluice.log.clone();
    let kafka_source = "source:kafka:readyz-test:iot-in".to_string();
    let mqtt_source = format!("source:mqtt:{}:sluice-readyz", mosquitto.url());
    let check = |body: &serde_json::Value, name: &str| -> Option<bool> { body["checks"].as_array()?.iter().find(|c| c["name"] == name)?["ok"].as_bool() };
    // Waits until /readyz answers `status` and every named check is as given.
    let wait = |what: &str, status: u16, want: &[(&str, bool)]| {
        eventually(Duration::from_secs(90), &log, what, || {
            let (s, body) = readyz(&admin)?;
            (s == status && want.iter().all(|(name, ok)| check(&body, name) == Some(*ok))).then_some(body)
        })
    };

    let body = wait("503 before the brokers run", 503, &[("rules", true), ("sink:kafka", false), (&kafka_source, false), (&mqtt_source, false)]);
    assert_eq!(body["ready"], false);
    // It stays 503 while they are down: a negative, given 3 s to go wrong (no state marks it).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(readyz(&admin).map(|r| r.0), Some(503));

    broker.restart();
    wait("Kafka up, MQTT still down", 503, &[("sink:kafka", true), (&kafka_source, true), (&mqtt_source, false)]);
    mosquitto.restart();
    let body = wait("200 with both brokers up", 200, &[("rules", true), ("pipeline", true), ("sink:kafka", true), (&kafka_source, true), (&mqtt_source, true)]);
    assert_eq!(body["ready"], true);
    assert_eq!(Metrics::fetch(&admin).value("sluice_mqtt_connected", &[("source", &mqtt_source["source:".len()..])]), 1.0);

    broker.kill();
    wait("503 while Kafka is down", 503, &[("sink:kafka", false), (&kafka_source, false), (&mqtt_source, true)]);
    broker.restart();
    wait("200 when Kafka is back", 200, &[]);

    mosquitto.stop();
    wait("503 while MQTT is down", 503, &[("sink:kafka", true), (&mqtt_source, false)]);
    mosquitto.restart();
    wait("200 when MQTT is back", 200, &[]);

    // Every metric the Grafana dashboard queries is in the scrape: each component's series exist
    // from its start (at 0); the per-partition ones once an input has been read and committed,
    // the API's once it has answered a request.
    let api = reqwest::blocking::Client::new().get(format!("http://{admin}/api/v1/rules")).bearer_auth("readyz-token").send().expect("GET /api/v1/rules");
    assert_eq!(api.status().as_u16(), 200);
    produce(&bootstrap, "iot-in", [In::iot("/custom/nobody/listens", "{}")]);
    let wanted = support::dashboard_metrics();
    assert!(wanted.len() >= 30, "the dashboard queries {} metrics", wanted.len());
    let mut missing: Vec<String> = Vec::new();
    let all = support::poll_until(Duration::from_secs(60), Duration::from_millis(300), || {
        let m = Metrics::fetch(&admin);
        let have: std::collections::HashSet<&str> = m.0.samples.iter().map(|s| s.metric.as_str()).collect();
        missing = wanted.iter().filter(|n| !have.contains(n.as_str())).cloned().collect();
        missing.is_empty()
    });
    assert!(all, "dashboard metrics missing from /metrics: {missing:?}\nsluice log:\n{}", tail(&log, 40));
    drop(sluice);
}
