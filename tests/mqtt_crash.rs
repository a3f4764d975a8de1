//! Crash between receiving an integration request and replying: the Kafka broker is down, so
//! the request's outputs cannot be delivered and no reply is sent; Sluice is killed (SIGKILL)
//! and restarted after the broker is back. The broker redelivers the unacknowledged request to
//! the persistent session, and it is imported and answered: nothing is lost.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::mosquitto::{Mosquitto, Publisher};
use support::{tail, write, Broker, Collector, Sluice};

#[test]
fn sigkill_before_the_reply_loses_nothing() {
    let started = Instant::now();
    let mut broker = Broker::start();
    broker.create_topics(&[("iot-integration-measurepoint", 1), ("sluice-errors", 1)]);
    let mosquitto = Mosquitto::start();
    let dir = support::temp_dir("sluice-test-");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = dir.path().join("sluice.toml");
    write(
        &config,
        &format!(
            r#"[rules]
paths = [{rules:?}]

[engine]
shutdown_timeout_ms = 5000

[[sources]]
type = "mqtt"
url = "{url}"
client_id = "sluice-crash"
decoders_dir = {decoders:?}
reconnect_backoff_ms = 100
reconnect_backoff_max_ms = 1000

[sink]
type = "kafka"
brokers = "{bootstrap}"
linger_ms = 1
retry_backoff_max_ms = 500
"#,
            rules = repo.join("rules/integration_measurepoint.toml").display().to_string(),
            decoders = repo.join("decoders").display().to_string(),
            url = mosquitto.url(),
            bootstrap = broker.bootstrap(),
        ),
    );
    let log = dir.path().join("sluice.log");
    let mut sluice = Sluice::start(&config, &log);
    let publisher = Publisher::connect(mosquitto.port, "third-party");
    publisher.wait_for_sluice(Duration::from_secs(30));

    // The sink cannot deliver: the request is received but not answered.
    broker.kill();
    let before = publisher.replies().len();
    let req = json!({"id": "crash-1", "version": "1.0", "method": "integration.measurepoint.post", "params": [{"deviceKey": "deviceC", "measurepoints": {"temp": 21.5}, "time": 1700000000000_i64}]});
    publisher.publish("sys/pkC/integration/measurepoint/post", req.to_string());
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(3) && !tail(&log, 200).contains("pkC/integration/measurepoint/post") {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(tail(&log, 200).contains("pkC/integration/measurepoint/post"), "sluice did not receive the request; log:\n{}", tail(&log, 40));
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
