//! The MQTT integration channel end to end: a real Mosquitto, a real Kafka-compatible broker
//! (tansu), Sluice's production App in process (so tests can plug in their own validators), and
//! a real MQTT client playing the third-party system.

use sluice_testkit as support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sluice::app::Parts;
use sluice::integration::{codes, EntryVerdict, Validation, Validator};
use sluice::topic::TopicKind;
use support::mosquitto::{Mosquitto, Publisher};
use support::{Broker, Collector};

const OUT_TOPICS: [&str; 3] = ["iot-integration-measurepoint", "iot-integration-event", "iot-integration-attributes"];
const WAIT: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The integration rules the tests run.
fn rule_files() -> Vec<PathBuf> {
    ["integration_measurepoint.toml", "integration_event.toml", "integration_attributes.toml"].iter().map(|f| repo().join("rules").join(f)).collect()
}

/// Who validates the requests.
enum Validating {
    /// Everything is accepted (no `[registry]`).
    Accept,
    /// The device registry and thing models of `models/` (`[registry]`).
    Models,
    /// A validator of the test's own (`App::build_with`).
    Custom(Arc<dyn Validator>),
}

/// Sluice in process: the production assembly (`App::build` on a configuration, with the
/// test's validator if it has one). Held for its drop, which stops it.
struct Sluice(#[allow(dead_code)] support::app::InProcess);

impl Sluice {
    fn start(mqtt_url: &str, client_id: &str, bootstrap: &str, decoders: &Path, validating: Validating) -> Sluice {
        let paths: Vec<String> = rule_files().iter().map(|p| support::config::path(p)).collect();
        let mut config = support::config::table(json!({
            "rules": {"paths": paths},
            "engine": {"default_error_topic": "sluice-errors", "channel_capacity": 64, "workers": 1},
            "sources": [{"type": "mqtt", "url": mqtt_url, "client_id": client_id, "decoders_dir": support::config::path(decoders), "reconnect_backoff_ms": 100}],
            "sink": {"type": "kafka", "brokers": bootstrap, "linger_ms": 1},
        }));
        let parts = match validating {
            Validating::Accept => Parts::default(),
            Validating::Models => {
                support::config::merge(&mut config, json!({"registry": {"models": support::config::path(&repo().join("models"))}}));
                Parts::default()
            }
            Validating::Custom(v) => Parts { validator: Some(v), ..Parts::default() },
        };
        Sluice(support::app::InProcess::start_with(&config, parts))
    }
}

struct World {
    _broker: Broker,
    mosquitto: Mosquitto,
    collector: Collector,
    _sluice: Sluice,
    publisher: Publisher,
}

fn world(validating: Validating, decoders: &Path) -> World {
    eprintln!("world: starting tansu");
    let broker = Broker::start();
    eprintln!("world: tansu on {}", broker.port);
    let mut topics: Vec<(&str, i32)> = OUT_TOPICS.iter().map(|t| (*t, 1)).collect();
    topics.push(("sluice-errors", 1));
    broker.create_topics(&topics);
    let mosquitto = Mosquitto::start();
    eprintln!("world: mosquitto on {}", mosquitto.port);
    let collector = Collector::start(&broker.bootstrap(), &OUT_TOPICS);
    let sluice = Sluice::start(&mosquitto.url(), "sluice-test", &broker.bootstrap(), decoders, validating);
    eprintln!("world: sluice started");
    let publisher = Publisher::connect(mosquitto.port, "third-party");
    eprintln!("world: publisher connected");
    publisher.wait_for_sluice(WAIT);
    eprintln!("world: sluice answers");
    World { _broker: broker, mosquitto, collector, _sluice: sluice, publisher }
}

/// The records of `topic`, as (deviceKey or device, value).
fn records_of(c: &Collector, topic: &str) -> Vec<Value> {
    c.records().into_iter().filter(|r| r.topic == topic).map(|r| r.json()).collect()
}

fn keys(values: &[Value], field: &str) -> Vec<String> {
    let mut k: Vec<String> = values.iter().map(|v| v[field].as_str().unwrap_or_default().to_string()).collect();
    k.sort();
    k
}

// The seed samples (000: event; 003: attributes — its trailing comma removed —, measure points,
// events).
const SEED_000_EVENT: &str = r#"{"id":"123","version":"1.0","params":[{"deviceKey":"device1","events":{"eventId1":{"alarm":9,"level":3}},"time":123456},{"deviceKey":"device2","events":{"eventId2":{"result":"ok"}},"time":123456}],"method":"integration.event.post"}"#;
const SEED_003_ATTRIBUTES: &str = r#"{"id":"123","version":"1.0","params":[{"deviceKey":"device1","attributes":{"attr1":{"key1":"val1","key2":"val2"}}},{"deviceKey":"device2","attributes":{"attr2":2.3}}],"method":"integration.attribute.post"}"#;
const SEED_003_MEASUREPOINTS: &str = r#"{"id":"123","version":"1.0","params":[{"deviceKey":"device1","measurepoints":{"Power":{"value":1,"quality":9},"temp":1.02,"branchCurr":["1.02","2.02","7.93"]},"time":123456},{"deviceKey":"device1","measurepoints":{"Power":{"value":2,"quality":9},"temp":2.02,"branchCurr":["2.02","3.02","9.93"]},"time":123567},{"deviceKey":"device2","measurepoints":{"Power":{"value":1,"quality":9},"temp":1.02,"branchCurr":["1.02","2.02","7.93"]},"time":123456}],"method":"integration.measurepoint.post"}"#;
const SEED_003_EVENT: &str = r#"{"id":"123","version":"1.0","params":[{"deviceKey":"device1","events":{"eventId1":{"alarm":9,"level":3}},"time":123456},{"deviceKey":"device2","events":{"eventId2":{"result":"ok"}},"time":123456}],"method":"integration.event.post"}"#;

#[test]
fn seed_requests_are_answered_200_and_imported() {
    let w = world(Validating::Accept, &repo().join("decoders"));
    let p = &w.publisher;
    for (topic, body) in [
        ("sys/pk1/integration/event/post", SEED_000_EVENT),
        ("sys/pk1/integration/attributes/post", SEED_003_ATTRIBUTES),
        ("sys/pk1/integration/measurepoint/post", SEED_003_MEASUREPOINTS),
        ("sys/pk2/integration/event/post", SEED_003_EVENT),
    ] {
        let r = p.request(topic, body, WAIT).unwrap_or_else(|| panic!("no reply to {topic}; mosquitto log:\n{}", w.mosquitto.log()));
        assert_eq!(r.topic, format!("{topic}_reply"));
        assert_eq!(r.body, json!({"id": "123", "code": 200, "data": {}, "message": "OK"}), "{topic}");
    }
    let c = &w.collector;
    assert!(c.wait_for(WAIT, |r| r.len() >= 9), "{} of 9 records: {:?}", c.len(), c.records());
    assert_eq!(keys(&records_of(c, "iot-integration-event"), "device"), ["device1", "device1", "device2", "device2"]);
    assert_eq!(keys(&records_of(c, "iot-integration-attributes"), "deviceKey"), ["device1", "device2"]);
    let mp = records_of(c, "iot-integration-measurepoint");
    assert_eq!(keys(&mp, "deviceKey"), ["device1", "device1", "device2"]);
    assert!(mp.iter().any(|v| v["power"] == json!(2) && v["time"] == json!(123567)), "{mp:?}");
}

/// Rejects device2 (1257) and a `temp` that is not a number (1204).
struct TestValidator;

impl Validator for TestValidator {
    fn validate(&self, _: TopicKind, _: &str, request: &sluice::doc::Node<'_>) -> Validation {
        let request = &request.to_json();
        let Some(params) = request["params"].as_array() else {
            return Validation::Request { code: codes::BAD_REQUEST, message: "no params".into() };
        };
        Validation::Entries(
            params
                .iter()
                .map(|e| {
                    if e["deviceKey"] == "device2" {
                        EntryVerdict::Rejected { code: codes::DEVICE_NOT_FOUND, message: "device `device2` is not registered".into() }
                    } else if e["measurepoints"]["temp"].is_string() {
                        EntryVerdict::Rejected { code: codes::MODEL_VALIDATE_FAILED, message: "measure point `temp` must be a float".into() }
                    } else {
                        EntryVerdict::Accepted
                    }
                })
                .collect(),
        )
    }
}

#[test]
fn partial_failures_import_only_valid_entries() {
    let w = world(Validating::Custom(Arc::new(TestValidator)), &repo().join("decoders"));
    let p = &w.publisher;
    let topic = "sys/pk1/integration/measurepoint/post";
    let req = json!({"id": "42", "version": "1.0", "method": "integration.measurepoint.post", "params": [
        {"deviceKey": "device1", "measurepoints": {"temp": 1.5}, "time": 1},
        {"deviceKey": "device2", "measurepoints": {"temp": 2.5}, "time": 2},
        {"deviceKey": "device3", "measurepoints": {"temp": "hot"}, "time": 3},
        {"deviceKey": "device4", "measurepoints": {"temp": 4.5}, "time": 4},
    ]});
    let r = p.request(topic, req.to_string(), WAIT).expect("reply");
    assert_eq!(
        r.body,
        json!({"id": "42", "code": 1257, "data": {"accepted": 2, "failed": [
            {"index": 1, "deviceKey": "device2", "code": 1257, "message": "device `device2` is not registered"},
            {"index": 2, "deviceKey": "device3", "code": 1204, "message": "measure point `temp` must be a float"},
        ]}, "message": "Device not found"})
    );
    // Nothing accepted: answered at once, nothing imported.
    let req = json!({"id": 43, "version": "1.0", "params": [{"deviceKey": "device3", "measurepoints": {"temp": "x"}}]});
    let r = p.request(topic, req.to_string(), WAIT).expect("reply");
    assert_eq!((r.body["id"].clone(), r.body["code"].clone(), r.body["data"]["accepted"].clone()), (json!(43), json!(1204), json!(0)));
    // Malformed JSON.
    let r = p.request(topic, "{\"id\": \"44\", params: [", WAIT).expect("reply");
    assert_eq!((r.body["id"].clone(), r.body["code"].clone(), r.body["message"].clone()), (Value::Null, json!(1203), json!("Invalid request")));
    assert!(r.body["data"]["error"].as_str().unwrap().starts_with("malformed JSON"), "{:?}", r.body);
    // A final valid request: once its record is in, every earlier one would be too.
    let r = p.request(topic, json!({"id": "45", "version": "1.0", "params": [{"deviceKey": "device5", "measurepoints": {"temp": 5.5}}]}).to_string(), WAIT).expect("reply");
    assert_eq!(r.body["code"], json!(200));
    let c = &w.collector;
    assert!(c.wait_for(WAIT, |r| r.iter().any(|r| r.key.as_deref() == Some("device5"))), "{:?}", c.records());
    let mp = records_of(c, "iot-integration-measurepoint");
    assert_eq!(keys(&mp, "deviceKey"), ["device1", "device4", "device5"]);
    let errors = sluice::integration::channel_log::recent_errors();
    assert!(errors.iter().any(|e| e.stage == "validation" && e.code == 1257 && e.request_id == Some(json!("42"))), "{errors:?}");
    assert!(errors.iter().any(|e| e.stage == "bad_request" && e.code == 1203), "{errors:?}");
}

#[test]
fn up_raw_is_decoded_by_the_product_script() {
    let dir = support::temp_dir("sluice-decoders-");
    std::fs::copy(repo().join("decoders/productKey1.js"), dir.path().join("productKey1.js")).expect("sample decoder");
    std::fs::write(dir.path().join("pkThrow.js"), "function rawDataToProtocol(b) { throw new Error('checksum mismatch'); }").unwrap();
    std::fs::write(dir.path().join("pkLoop.js"), "function rawDataToProtocol(b) { while (true) {} }").unwrap();
    std::fs::write(dir.path().join("pkBad.js"), "function rawDataToProtocol(b) { return [1, 2, 3]; }").unwrap();
    let w = world(Validating::Accept, dir.path());
    let p = &w.publisher;
    let frame: &[u8] = &[0x01, 0x03, 0x04, 0x00, 0x0A, 0x01, 0x02, 0xFF, 0x7E];
    let r = p.request("sys/productKey1/integration/up_raw", frame, WAIT).expect("reply");
    assert_eq!(r.topic, "sys/productKey1/integration/up_raw_reply");
    assert_eq!(r.body, json!({"id": null, "code": 200, "data": {}, "message": "OK"}));
    for (pk, reason) in [("pkThrow", "checksum mismatch"), ("pkLoop", "ran longer than 50 ms"), ("pkBad", "an array instead of a request object"), ("pkNone", "no decoder script")] {
        let r = p.request(&format!("sys/{pk}/integration/up_raw"), frame, WAIT).expect("reply");
        assert_eq!(r.body["code"], json!(1270), "{pk}: {:?}", r.body);
        assert_eq!(r.body["message"], json!("Decoder script failed"));
        assert!(r.body["data"]["error"].as_str().unwrap().contains(reason), "{pk}: {:?}", r.body);
    }
    // Still serving.
    let r = p.request("sys/productKey1/integration/up_raw", [0x07, 0x03, 0x04, 0x01, 0x00, 0x00, 0x05, 0x00, 0x00], WAIT).expect("reply");
    assert_eq!(r.body["code"], json!(200));
    let c = &w.collector;
    assert!(c.wait_for(WAIT, |r| r.len() >= 2), "{:?}", c.records());
    let mp = records_of(c, "iot-integration-measurepoint");
    assert_eq!(keys(&mp, "deviceKey"), ["device1", "device7"]);
    let d1 = mp.iter().find(|v| v["deviceKey"] == "device1").unwrap();
    assert_eq!((d1["temp"].clone(), d1["power"].clone()), (json!(1), json!(258)));
    let errors = sluice::integration::channel_log::recent_errors();
    assert_eq!(errors.iter().filter(|e| e.stage == "decoder" && e.code == 1270).count(), 4, "{errors:?}");
}

/// The channel with the real device registry and thing models of `models/` as its validator:
/// the seed samples are accepted, an unknown device is 1257 and a value that does not fit the
/// model is 1204, each with the entry that failed; only accepted entries reach Kafka.
#[test]
fn registry_validates_requests_with_the_documented_codes() {
    let w = world(Validating::Models, &repo().join("decoders"));
    let p = &w.publisher;
    for (topic, body) in [
        ("sys/productKey1/integration/event/post", SEED_000_EVENT),
        ("sys/productKey1/integration/attributes/post", SEED_003_ATTRIBUTES),
        ("sys/productKey1/integration/measurepoint/post", SEED_003_MEASUREPOINTS),
    ] {
        let r = p.request(topic, body, WAIT).unwrap_or_else(|| panic!("no reply to {topic}"));
        assert_eq!(r.body, json!({"id": "123", "code": 200, "data": {}, "message": "OK"}), "{topic}");
    }
    let unknown = r#"{"id":"7","version":"1.0","params":[{"deviceKey":"device1","measurepoints":{"temp":3.5},"time":1},{"deviceKey":"nosuchdevice","measurepoints":{"temp":1.0},"time":1}],"method":"integration.measurepoint.post"}"#;
    let r = p.request("sys/productKey1/integration/measurepoint/post", unknown, WAIT).expect("reply");
    assert_eq!(r.body["code"], json!(1257), "{}", r.body);
    assert_eq!(r.body["message"], json!("Device not found"));
    assert_eq!(r.body["data"]["accepted"], json!(1));
    assert_eq!(r.body["data"]["failed"][0]["index"], json!(1));
    assert_eq!(r.body["data"]["failed"][0]["deviceKey"], json!("nosuchdevice"));
    let mismatch = r#"{"id":"8","version":"1.0","params":[{"deviceKey":"device2","measurepoints":{"temp":"hot"},"time":2}],"method":"integration.measurepoint.post"}"#;
    let r = p.request("sys/productKey1/integration/measurepoint/post", mismatch, WAIT).expect("reply");
    assert_eq!(r.body["code"], json!(1204), "{}", r.body);
    assert_eq!(r.body["message"], json!("Model validate failed"));
    assert!(r.body["data"]["failed"][0]["message"].as_str().unwrap_or_default().contains("temp"), "{}", r.body);

    // 2 event + 2 attribute + 3 measure point records from the seeds, plus device1's temp 3.5.
    let c = &w.collector;
    assert!(c.wait_for(WAIT, |r| r.len() >= 8), "{} of 8 records: {:?}", c.len(), c.records());
    // Every request was answered, so every output is in the broker: read them all.
    assert!(c.wait_caught_up(WAIT), "the collector did not catch up with the broker");
    let mp = records_of(c, "iot-integration-measurepoint");
    assert_eq!(keys(&mp, "deviceKey"), ["device1", "device1", "device1", "device2"], "no record of the unknown device or the rejected entry");
}
