//! Crash between receiving an integration request and replying: the Kafka broker is down, so
//! the request's outputs cannot be delivered and no reply is sent; Sluice is killed (SIGKILL)
//! and restarted after the broker is back. The broker redelivers the unacknowledged request to
//! the persistent session, and it is imported and answered: nothing is lost.

use sluice_testkit as support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use support::config::{self, table};
use support::metrics::wait_metric;
use support::mosquitto::{Mosquitto, Publisher};
use support::{tail, Broker, Collector, Sluice};

/// Starts `sluice run` on `dir/sluice.toml`: the sample measure-point rule, the MQTT
/// integration source on `mosquitto` as `client_id`, `shutdown_timeout_ms`, the given `[sink]`
/// table, and the admin server on a free port. Returns the process, the config file, its log
/// and the admin address (`127.0.0.1:PORT`).
fn start(dir: &Path, mosquitto: &Mosquitto, client_id: &str, shutdown_timeout_ms: u64, sink: serde_json::Value) -> (Sluice, PathBuf, PathBuf, String) {
    let (path, log) = (dir.join("sluice.toml"), dir.join("sluice.log"));
    let (sluice, port) = Sluice::start_with_admin(&path, &log, |port| config(mosquitto, client_id, shutdown_timeout_ms, sink.clone(), &format!("127.0.0.1:{port}")));
    (sluice, path, log, format!("127.0.0.1:{port}"))
}

/// The configuration of [`start`], its admin server on `admin`.
fn config(mosquitto: &Mosquitto, client_id: &str, shutdown_timeout_ms: u64, sink: serde_json::Value, admin: &str) -> toml::Table {
    let repo = support::repo_root();
    table(json!({
        "rules": {"paths": [config::path(&repo.join("rules/integration_measurepoint.toml"))]},
        "engine": {"shutdown_timeout_ms": shutdown_timeout_ms},
        "sources": [{
            "type": "mqtt",
            "url": mosquitto.url(),
            "client_id": client_id,
            "decoders_dir": config::path(&repo.join("decoders")),
            "reconnect_backoff_ms": 100,
            "reconnect_backoff_max_ms": 1000,
        }],
        "sink": sink,
        "admin": {"listen": admin},
    }))
}

/// Waits until the MQTT source `client_id` of the sluice whose admin server is `admin` holds
/// `n` requests received and not answered (`sluice_mqtt_in_flight_requests`).
fn wait_in_flight(admin: &str, mosquitto: &Mosquitto, client_id: &str, n: f64) -> bool {
    let source = format!("mqtt:{}:{client_id}", mosquitto.url());
    wait_metric(admin, "sluice_mqtt_in_flight_requests", &[("source", &source)], Duration::from_secs(10), |v| v == n)
}

#[test]
fn sigkill_before_the_reply_loses_nothing() {
    let started = Instant::now();
    let mut broker = Broker::start();
    broker.create_topics(&[("iot-integration-measurepoint", 1), ("sluice-errors", 1)]);
    let mosquitto = Mosquitto::start();
    let dir = support::temp_dir("sluice-test-");
    let sink = json!({"type": "kafka", "brokers": broker.bootstrap(), "linger_ms": 1, "retry_backoff_max_ms": 500});
    let (mut sluice, config, log, admin) = start(dir.path(), &mosquitto, "sluice-crash", 5000, sink);
    let publisher = Publisher::connect(mosquitto.port, "third-party");
    publisher.wait_for_sluice(Duration::from_secs(30));

    // The sink cannot deliver: the request is received but not answered.
    broker.kill();
    let before = publisher.replies().len();
    let req = json!({"id": "crash-1", "version": "1.0", "method": "integration.measurepoint.post", "params": [{"deviceKey": "deviceC", "measurepoints": {"temp": 21.5}, "time": 1700000000000_i64}]});
    publisher.publish("sys/pkC/integration/measurepoint/post", req.to_string());
    assert!(wait_in_flight(&admin, &mosquitto, "sluice-crash", 1.0), "sluice did not receive the request; log:\n{}", tail(&log, 40));
    // A negative: a wrong reply gets half a second to show (no state marks its absence).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(publisher.replies().len(), before, "no reply while the outputs are not delivered: {:?}", publisher.replies());
    assert!(sluice.running());
    sluice.kill9();

    broker.restart();
    let collector = Collector::start(&broker.bootstrap(), &["iot-integration-measurepoint"]);
    let mut sluice = Sluice::start(&config, &log);
    let reply = publisher.wait_reply(before, Duration::from_secs(30)).unwrap_or_else(|| panic!("no reply after the restart; log:\n{}", tail(&log, 60)));
    assert_eq!(reply.body, json!({"id": "crash-1", "code": 200, "data": {}, "message": "OK"}));
    assert!(collector.wait_for(Duration::from_secs(30), |r| r.iter().any(|r| r.key.as_deref() == Some("deviceC"))), "not imported; log:\n{}", tail(&log, 60));
    let rec = collector.records().into_iter().find(|r| r.key.as_deref() == Some("deviceC")).unwrap();
    assert_eq!(rec.json()["temp"], json!(21.5));
    let status = sluice.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit status {status}; log:\n{}", tail(&log, 40));
    eprintln!("mqtt crash: redelivered and imported after SIGKILL; total {:.1}s", started.elapsed().as_secs_f64());
}

/// Regression: the file sink acknowledged batches it had only written into a 64 KiB buffer
/// (flushed at shutdown): a 200 reply and PUBACK were sent, then SIGKILL, and 0 of 3 records
/// were on disk, with nothing redelivered. Now a batch is acknowledged after its lines are
/// fsynced, so what was answered 200 is on disk when the process is killed right after.
#[test]
fn sigkill_right_after_the_reply_loses_nothing_with_the_file_sink() {
    let mosquitto = Mosquitto::start();
    let dir = support::temp_dir("sluice-test-");
    let out = dir.path().join("out");
    let (mut sluice, config, log, _) = start(dir.path(), &mosquitto, "sluice-crash-file", 5000, json!({"type": "file", "dir": config::path(&out), "append": true}));
    let publisher = Publisher::connect(mosquitto.port, "third-party-file");
    publisher.wait_for_sluice(Duration::from_secs(30));
    let file = out.join("iot-integration-measurepoint.jsonl");
    let keys: Vec<String> = (0..3).map(|i| format!("deviceF{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let req =
            json!({"id": format!("file-{i}"), "version": "1.0", "method": "integration.measurepoint.post", "params": [{"deviceKey": key, "measurepoints": {"temp": i}, "time": 1700000000000_i64}]});
        let reply = publisher.request("sys/pkF/integration/measurepoint/post", req.to_string(), Duration::from_secs(20)).unwrap_or_else(|| panic!("no reply; log:\n{}", tail(&log, 40)));
        assert_eq!(reply.body["code"], json!(200), "{}", reply.body);
    }
    // Killed the moment the last reply arrived: no drain, no flush.
    sluice.kill9();
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let written: Vec<String> = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a whole JSON line")["key"].as_str().unwrap_or_default().to_string()).collect();
    for key in &keys {
        assert!(written.contains(key), "{key} was answered 200 but is not on disk: {written:?}");
    }
    // A restart appends to what is on disk instead of replacing it.
    let mut sluice = Sluice::start(&config, &log);
    publisher.wait_for_sluice(Duration::from_secs(30));
    let req =
        json!({"id": "file-after", "version": "1.0", "method": "integration.measurepoint.post", "params": [{"deviceKey": "deviceFafter", "measurepoints": {"temp": 9}, "time": 1700000000000_i64}]});
    let reply = publisher.request("sys/pkF/integration/measurepoint/post", req.to_string(), Duration::from_secs(20)).expect("reply after restart");
    assert_eq!(reply.body["code"], json!(200), "{}", reply.body);
    let status = sluice.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit status {status}; log:\n{}", tail(&log, 40));
    let text = std::fs::read_to_string(&file).unwrap();
    for key in keys.iter().map(String::as_str).chain(["deviceFafter"]) {
        assert!(text.contains(&format!("\"key\":\"{key}\"")), "{key} missing after the restart:\n{text}");
    }
}

/// SIGTERM always ends the process, even when the sink can never deliver (its Kafka broker is
/// gone for good): within `shutdown_timeout_ms`, plus the hard deadline's 1 s grace at worst.
#[test]
fn sigterm_ends_the_process_in_time_while_the_sink_is_stuck() {
    let mosquitto = Mosquitto::start();
    let dir = support::temp_dir("sluice-test-");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead); // nothing listens there
    let (mut sluice, _, log, admin) = start(dir.path(), &mosquitto, "sluice-stuck-sink", 2000, json!({"type": "kafka", "brokers": format!("127.0.0.1:{dead_port}")}));
    let publisher = Publisher::connect(mosquitto.port, "third-party-stuck");
    publisher.wait_for_sluice(Duration::from_secs(30));
    let req = json!({"id": "stuck-1", "version": "1.0", "method": "integration.measurepoint.post", "params": [{"deviceKey": "deviceS", "measurepoints": {"temp": 1}, "time": 1700000000000_i64}]});
    publisher.publish("sys/pkS/integration/measurepoint/post", req.to_string());
    assert!(wait_in_flight(&admin, &mosquitto, "sluice-stuck-sink", 1.0), "the request was not received; log:\n{}", tail(&log, 40));
    let started = Instant::now();
    let status = sluice.terminate(Duration::from_secs(10));
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3500), "SIGTERM took {took:?}; log:\n{}", tail(&log, 40));
    assert!(status.code().is_some(), "exited by itself, not by a signal: {status}");
    assert!(publisher.replies().iter().all(|r| r.body["id"] != json!("stuck-1")), "the undelivered request is not answered");
}
