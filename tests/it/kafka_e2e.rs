//! End to end through a real broker: one message of every seed format (see
//! shared/seeds/README.md) is produced to Kafka with its IoT topic in the `iot-topic` header
//! (and through the key and a fixed topic on two more sources); the `sluice` binary runs the
//! rules; every output arrives at its topic with the expected key, headers and value. Then
//! SIGTERM: exit 0, and every input offset is committed (unmatched messages included).

use sluice_testkit as support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::engine::{Engine, EngineOptions, RuleSet, Scratch};
use sluice::message::Message;
use sluice::rule::expr::Env;
use support::config::{push_source, write_config};
use support::{kafka_config, produce, tail, write, Broker, Collector, In, Sluice};

/// Rules over every seed format: (file name, text).
const RULES: &[(&str, &str)] = &[
    ("status.toml", "sql = \"\"\"SELECT deviceName() AS dn, status, lastTime FROM \"/as/mqtt/status/+/+\" \"\"\"\n[[actions]]\ntopic = \"device-status\"\nkey = \"${dn}\"\n[actions.headers]\nkind = \"status\"\n"),
    ("props.toml", "sql = \"\"\"SELECT deviceName() AS dn, items.Power.value AS power, items.Position.value.latitude AS lat FROM \"/sys/+/+/thing/event/property/post\" \"\"\"\n[[actions]]\ntopic = \"props\"\nkey = \"${dn}\"\n[actions.headers]\nkind = \"property\"\npower = \"${power}\"\n"),
    ("events.toml", "sql = \"\"\"SELECT deviceName() AS dn, identifier, value FROM \"/sys/+/+/thing/event/+/post\" WHERE identifier = 'BrokenInfo'\"\"\"\n[[actions]]\ntopic = \"events\"\nkey = \"${dn}\"\n"),
    ("lifecycle.toml", "sql = \"\"\"SELECT deviceName() AS dn, action FROM \"/sys/+/+/thing/lifecycle\" \"\"\"\n[[actions]]\ntopic = \"lifecycle\"\nkey = \"${dn}\"\n"),
    ("topo.toml", "sql = \"\"\"SELECT gwDeviceName AS gw, action, devices FROM \"/sys/+/+/thing/topo/lifecycle\" \"\"\"\n[[actions]]\ntopic = \"topo\"\nkey = \"${gw}\"\n"),
    ("found.toml", "sql = \"\"\"SELECT gwDeviceName AS gw, devices FROM \"/sys/+/+/thing/list/found\" \"\"\"\n[[actions]]\ntopic = \"found\"\nkey = \"${gw}\"\n"),
    ("downlink.toml", "sql = \"\"\"SELECT deviceName() AS dn, code, message FROM \"/sys/+/+/thing/downlink/reply/message\" WHERE code <> 200\"\"\"\n[[actions]]\ntopic = \"downlink-errors\"\nkey = \"${dn}\"\n"),
    ("int_events.toml", "sql = \"\"\"SELECT concat(deviceKey, assetId) AS dev, events, time, method FROM \"sys/+/integration/event/post\" \"\"\"\n[[actions]]\ntopic = \"int-events\"\nkey = \"${dev}\"\n"),
    ("int_measurepoints.toml", "sql = \"\"\"SELECT deviceName() AS dn, measurepoints.temp AS temp, measurepoints.Power.quality AS quality, time FROM \"sys/+/integration/measurepoint/post\" \"\"\"\n[[actions]]\ntopic = \"int-measurepoints\"\nkey = \"${dn}\"\n"),
    ("int_attributes.toml", "sql = \"\"\"SELECT deviceName() AS dn, attributes FROM \"sys/+/integration/attributes/post\" \"\"\"\n[[actions]]\ntopic = \"int-attributes\"\nkey = \"${dn}\"\n"),
    ("int_raw.toml", "sql = \"\"\"SELECT 'raw' AS kind FROM \"sys/+/integration/up_raw\" \"\"\"\n[[actions]]\ntopic = \"int-raw\"\n"),
];

const OUTPUTS: &[&str] = &["device-status", "props", "events", "lifecycle", "topo", "found", "downlink-errors", "int-events", "int-measurepoints", "int-attributes", "int-raw", "sluice-errors"];

/// One input per seed format (samples from shared/seeds, device names made distinct).
fn inputs() -> Vec<(String, Vec<u8>)> {
    let j = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
    vec![
        // 004: online/offline status.
        (
            "/as/mqtt/status/pk1/dn1".into(),
            j(
                json!({"status":"online","productKey":"pk1","deviceName":"dn1","time":"2018-08-31 15:32:28.205","utcTime":"2018-08-31T07:32:28.205Z","lastTime":"2018-08-31 15:32:28.195","utcLastTime":"2018-08-31T07:32:28.195Z","clientIp":"123.123.123.123"}),
            ),
        ),
        // 004: property post.
        (
            "/sys/pk1/dn1/thing/event/property/post".into(),
            j(
                json!({"iotId":"4z819VQHk6VSLmmBJfrf00107ee200","productKey":"pk1","deviceName":"dn1","gmtCreate":1510799670074_i64,"deviceType":"Ammeter","items":{"Power":{"value":"on","time":1510799670074_i64},"Position":{"time":1510292697470_i64,"value":{"latitude":39.9,"longitude":116.38}}}}),
            ),
        ),
        // 004: event post.
        (
            "/sys/pk1/dn2/thing/event/BrokenInfo/post".into(),
            j(
                json!({"identifier":"BrokenInfo","name":"损坏率上报","type":"info","iotId":"4z819VQHk6VSLmmBJfrf00107ee200","productKey":"pk1","deviceName":"dn2","gmtCreate":1510799670074_i64,"value":{"Power":"on","Position":{"latitude":39.9,"longitude":116.38}},"time":1510799670074_i64}),
            ),
        ),
        // 004: lifecycle.
        (
            "/sys/pk1/dn3/thing/lifecycle".into(),
            j(json!({"action":"create","iotId":"4z819VQHk6VSLmmxxxxxxxxxxee200","productKey":"pk1","deviceName":"dn3","deviceSecret":"","messageCreateTime":1510292739881_i64})),
        ),
        // 004: topology change.
        (
            "/sys/pk1/gw1/thing/topo/lifecycle".into(),
            j(
                json!({"action":"add","gwIotId":"4z819VQHk6VSLmmBJfrf00107ee200","gwProductKey":"pk1","gwDeviceName":"gw1","devices":[{"iotId":"4z819VQHk6VSLmmxxxxxxxxxxee201","productKey":"pk2","deviceName":"sub1"}],"messageCreateTime":1510292739881_i64}),
            ),
        ),
        // 004: sub-devices found.
        (
            "/sys/pk1/gw1/thing/list/found".into(),
            j(
                json!({"gwIotId":"4z819VQHk6VSLmmBJfrf00107ee200","gwProductKey":"pk1","gwDeviceName":"gw1","devices":[{"iotId":"4z819VQHk6VSLmmxxxxxxxxxxee201","productKey":"pk2","deviceName":"sub2"}]}),
            ),
        ),
        // 004: downlink results, one success (filtered out) and one failure.
        (
            "/sys/pk1/dn4/thing/downlink/reply/message".into(),
            j(
                json!({"gmtCreate":1510292739881_i64,"iotId":"x","productKey":"pk1","deviceName":"dn4","requestId":1234,"code":200,"message":"success","topic":"/sys/pk1/dn4/thing/service/property/set","data":{}}),
            ),
        ),
        (
            "/sys/pk1/dn5/thing/downlink/reply/message".into(),
            j(
                json!({"gmtCreate":1510292739881_i64,"iotId":"y","productKey":"pk1","deviceName":"dn5","requestId":1235,"code":460,"message":"request parameter error","topic":"/sys/pk1/dn5/thing/service/property/set","data":{}}),
            ),
        ),
        // 000/001/003: integration event post, two devices.
        (
            "sys/pk1/integration/event/post".into(),
            j(
                json!({"id":"123","version":"1.0","params":[{"deviceKey":"device1","events":{"eventId1":{"alarm":9,"level":3}},"time":123456},{"deviceKey":"device2","events":{"eventId2":{"result":"ok"}},"time":123456}],"method":"integration.event.post"}),
            ),
        ),
        // 002: the HTTP upload's enos-message (a device by productKey+deviceKey, one by assetId).
        (
            "sys/productKey1/integration/event/post".into(),
            j(
                json!({"method":"integration.event.post","id":"123","version":"1.1","params":[{"productKey":"productKey1","deviceKey":"deviceKey1","time":1579580182824_i64,"events":{"eventId1":{"intParam1":123,"fileParam1":"local://filename1"}}},{"assetId":"assetId2","time":1579580182824_i64,"events":{"eventId2":{"intParam2":123,"fileParam2":"local://filename2"}}}],"files":{"filename1":{"featureId":"eventId1","produckKey":"productKey1","deviceKey":"deviceKey1","originalFilename":"test.txt","fileExt":".txt","md5":"0e202f9b67323d11df8a79b319a3d4f6"},"filename2":{"featureId":"eventId2","assetId":"assetId2","md5":"aa8ea05bdbcbadfcda7300c65c40859f","fileLength":1024000}}}),
            ),
        ),
        // 003: measure points (plain, {value, quality}, arrays).
        (
            "sys/pk1/integration/measurepoint/post".into(),
            j(
                json!({"id":"123","version":"1.0","params":[{"deviceKey":"device1","measurepoints":{"Power":{"value":1,"quality":9},"temp":1.02,"branchCurr":["1.02","2.02","7.93"]},"time":123456},{"deviceKey":"device2","measurepoints":{"Power":{"value":2,"quality":9},"temp":2.02,"branchCurr":["2.02","3.02","9.93"]},"time":123567}],"method":"integration.measurepoint.post"}),
            ),
        ),
        // 003: attributes.
        (
            "sys/pk1/integration/attributes/post".into(),
            j(
                json!({"id":"123","version":"1.0","params":[{"deviceKey":"device1","attributes":{"attr1":{"key1":"val1","key2":"val2"}},"time":123456},{"deviceKey":"device2","attributes":{"attr2":2.3},"time":123456}],"method":"integration.attribute.post"}),
            ),
        ),
        // 003: raw pass-through bytes.
        ("sys/pk1/integration/up_raw".into(), vec![0x01, 0x02, 0xff, 0x00]),
        // No rule matches: no output, but its offset must be committed.
        ("/custom/nobody/listens".into(), b"{}".to_vec()),
    ]
}

/// A comparable view of an output record: (topic, key, sorted headers, value JSON text).
type View = (String, Option<String>, BTreeMap<String, String>, String);

#[test]
fn every_seed_format_flows_end_to_end() {
    let started = Instant::now();
    let broker = Broker::start();
    let dir = support::temp_dir("sluice-test-");
    let rules_dir = dir.path().join("rules");
    for (name, text) in RULES {
        write(&rules_dir.join(name), text);
    }
    let mut topics: Vec<(&str, i32)> = vec![("iot-in", 3), ("iot-keyed", 1), ("status-fixed", 1)];
    topics.extend(OUTPUTS.iter().map(|t| (*t, 2)));
    broker.create_topics(&topics);

    let bootstrap = broker.bootstrap();
    let inputs = inputs();
    produce(&bootstrap, "iot-in", inputs.iter().map(|(t, p)| In::iot(t, p.clone())));
    // The IoT topic in the key, and a source with a fixed IoT topic.
    let keyed = ("/sys/pk9/dnk/thing/lifecycle", json!({"action":"enable","deviceName":"dnk"}));
    produce(&bootstrap, "iot-keyed", [In { key: Some(keyed.0.as_bytes().to_vec()), headers: vec![], value: serde_json::to_vec(&keyed.1).unwrap() }]);
    let fixed = ("/as/mqtt/status/pkF/devF", json!({"status":"offline","lastTime":"2018-08-31 15:32:28.195"}));
    produce(&bootstrap, "status-fixed", [In { key: None, headers: vec![], value: serde_json::to_vec(&fixed.1).unwrap() }]);

    // What the engine makes of each input, with the headers the sink adds.
    let (rules, errors) = sluice::control::compile_paths(std::slice::from_ref(&rules_dir));
    assert!(errors.is_empty(), "{errors:?}");
    let engine = Engine::new(RuleSet::new(rules), Env::default(), EngineOptions::default());
    let mut expected: Vec<View> = Vec::new();
    let all_inputs: Vec<(String, Vec<u8>)> =
        inputs.iter().cloned().chain([(keyed.0.to_string(), serde_json::to_vec(&keyed.1).unwrap()), (fixed.0.to_string(), serde_json::to_vec(&fixed.1).unwrap())]).collect();
    for (topic, payload) in &all_inputs {
        let mut out = Vec::new();
        engine.process(&Message::new(topic.clone(), payload.clone()), 0, &mut Scratch::default(), &mut out);
        for r in out {
            let mut headers: BTreeMap<String, String> = r.headers.into_iter().collect();
            headers.insert("iot-topic".into(), topic.clone());
            headers.insert("sluice-rule".into(), r.rule.to_string());
            let value: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
            expected.push((r.topic.to_string(), r.key, headers, value.to_string()));
        }
    }
    expected.sort();
    assert_eq!(expected.len(), 18, "the rules' expected outputs: {expected:#?}");
    assert!(expected.iter().all(|e| e.0 != "sluice-errors"), "no error records expected: {expected:#?}");

    let mut config = kafka_config(&bootstrap, "e2e", &["iot-in"], &rules_dir);
    push_source(&mut config, json!({"type": "kafka", "brokers": bootstrap, "topics": ["iot-keyed"], "group_id": "e2e-keyed", "iot_topic": {"from": "key"}}));
    push_source(&mut config, json!({"type": "kafka", "brokers": bootstrap, "topics": ["status-fixed"], "group_id": "e2e-fixed", "iot_topic": {"from": "fixed", "topic": fixed.0}}));
    let config_path: PathBuf = dir.path().join("sluice.toml");
    write_config(&config_path, &config);
    let collector = Collector::start(&bootstrap, OUTPUTS);
    let mut sluice = Sluice::start(&config_path, &dir.path().join("sluice.log"));
    let arrived = collector.wait_for(Duration::from_secs(60), |r| r.len() >= expected.len());
    assert!(arrived, "only {} of {} outputs arrived; sluice log:\n{}", collector.len(), expected.len(), tail(&sluice.log, 80));
    // Every input committed (its outputs delivered before), and every output in the broker
    // read: what the collector holds is all there is, a late duplicate included.
    for (group, topic, partitions) in [("e2e", "iot-in", 3), ("e2e-keyed", "iot-keyed", 1), ("e2e-fixed", "status-fixed", 1)] {
        assert!(broker.wait_committed(group, topic, partitions, Duration::from_secs(30)), "{topic} not committed to its end; log:\n{}", tail(&sluice.log, 40));
    }
    assert!(collector.wait_caught_up(Duration::from_secs(30)), "the collector did not catch up with the broker");

    let records = collector.records();
    let mut got: Vec<View> = records.iter().map(|r| (r.topic.clone(), r.key.clone(), r.headers.iter().cloned().collect(), r.json().to_string())).collect();
    got.sort();
    assert_eq!(got, expected);

    // Spot checks written out by hand.
    let props = records.iter().find(|r| r.topic == "props").unwrap();
    assert_eq!(props.key.as_deref(), Some("dn1"));
    assert_eq!(props.json(), json!({"dn":"dn1","power":"on","lat":39.9}));
    assert_eq!(props.header("iot-topic"), Some("/sys/pk1/dn1/thing/event/property/post"));
    assert_eq!(props.header("sluice-rule"), Some("props"));
    assert_eq!(props.header("kind"), Some("property"));
    assert_eq!(props.header("power"), Some("on"));
    let mut int_keys: Vec<&str> = records.iter().filter(|r| r.topic == "int-events").filter_map(|r| r.key.as_deref()).collect();
    int_keys.sort();
    assert_eq!(int_keys, ["assetId2", "device1", "device2", "deviceKey1"]);
    let down: Vec<_> = records.iter().filter(|r| r.topic == "downlink-errors").collect();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].json(), json!({"dn":"dn5","code":460,"message":"request parameter error"}));
    let keyed_out = records.iter().find(|r| r.topic == "lifecycle" && r.key.as_deref() == Some("dnk")).expect("the keyed source's output");
    assert_eq!(keyed_out.header("iot-topic"), Some(keyed.0));
    let fixed_out = records.iter().find(|r| r.topic == "device-status" && r.key.as_deref() == Some("devF")).expect("the fixed source's output");
    assert_eq!(fixed_out.json(), json!({"dn":"devF","status":"offline","lastTime":"2018-08-31 15:32:28.195"}));
    assert_eq!(records.iter().filter(|r| r.topic == "int-raw").count(), 1);

    // SIGTERM: drain, commit, exit 0; every input offset is committed, unmatched ones too.
    let status = sluice.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}; log:\n{}", tail(&sluice.log, 40));
    assert_eq!(broker.committed("e2e", "iot-in", 3), broker.end_offsets("iot-in", 3), "committed offsets of iot-in");
    assert_eq!(broker.committed("e2e-keyed", "iot-keyed", 1), vec![1]);
    assert_eq!(broker.committed("e2e-fixed", "status-fixed", 1), vec![1]);
    eprintln!("end to end: {} inputs, {} outputs, in {:.1}s", all_inputs.len(), got.len(), started.elapsed().as_secs_f64());
}
