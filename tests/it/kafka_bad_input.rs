//! Bad input through a real broker: malformed JSON, wrong types, a record without its IoT
//! topic, an unknown target topic and an oversized output each end as a record in the
//! dead-letter topic (the engine's default error topic) with its reason, and the partition
//! keeps moving: a good message after them is processed and every offset is committed. A poison
//! record (`i64::MIN / -1`, which once panicked the worker and stalled the partition for good)
//! is evaluated exactly.

use sluice_testkit as support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::config::{merge, write_config};
use support::{kafka_config, produce, tail, write, Broker, Collector, In, Sluice};

/// Seed 003's attributes sample, verbatim: its trailing comma makes it invalid JSON.
const SEED_003_ATTRIBUTES: &str = r#"{
    "id":"123",
    "version":"1.0",
    "params":[
        {
            "deviceKey":"device1",
            "attributes":{
                "attr1":{
                    "key1":"val1",
                    "key2":"val2",
                }
            }
        }
    ],
    "method":"integration.attribute.post"
}"#;

#[test]
fn bad_input_becomes_dead_letters_with_reasons() {
    let started = Instant::now();
    let broker = Broker::start();
    let dir = support::temp_dir("sluice-test-");
    let rules = dir.path().join("rules");
    write(&rules.join("attrs.toml"), "sql = \"\"\"SELECT deviceName() AS dn, attributes FROM \"sys/+/integration/attributes/post\" \"\"\"\n[[actions]]\ntopic = \"attrs-out\"\nkey = \"${dn}\"\n");
    write(
        &rules.join("temp.toml"),
        "sql = \"\"\"SELECT deviceName() AS dn, abs(items.temp.value) AS t FROM \"/sys/+/+/thing/event/property/post\" \"\"\"\n[[actions]]\ntopic = \"temps\"\nkey = \"${dn}\"\n",
    );
    write(&rules.join("lost.toml"), "sql = \"\"\"SELECT deviceName() AS dn FROM \"/sys/+/+/thing/lifecycle\" \"\"\"\n[[actions]]\ntopic = \"no-such-topic\"\nkey = \"${dn}\"\n");
    write(
        &rules.join("div.toml"),
        "sql = \"\"\"SELECT items.v.value / items.d.value AS q, items.v.value % items.d.value AS r, -items.v.value AS n FROM \"/div/+\" \"\"\"\n[[actions]]\ntopic = \"div-out\"\n",
    );
    write(&rules.join("big.toml"), "sql = \"\"\"SELECT * FROM \"/big/+\" \"\"\"\n[[actions]]\ntopic = \"big-out\"\n");
    broker.create_topics(&[("iot-in", 1), ("attrs-out", 1), ("temps", 1), ("big-out", 1), ("div-out", 1), ("sluice-errors", 1)]);
    let bootstrap = broker.bootstrap();

    let big = json!({"blob": "x".repeat(30_000)}).to_string();
    let inputs = vec![
        In::iot("sys/pk1/integration/attributes/post", SEED_003_ATTRIBUTES),
        In::iot("/sys/pk1/dev1/thing/event/property/post", json!({"items": {"temp": {"value": "hot", "time": 1}}}).to_string()),
        In { key: None, headers: vec![("other".into(), b"x".to_vec())], value: b"{\"no\":\"iot topic\"}".to_vec() },
        In::iot("/sys/pk1/dev2/thing/lifecycle", json!({"action": "create"}).to_string()),
        In::iot("/big/one", big.clone()),
        In::iot("/div/poison", r#"{"items":{"v":{"value":-9223372036854775808},"d":{"value":-1}}}"#),
        In::iot("/sys/pk1/dev3/thing/event/property/post", json!({"items": {"temp": {"value": -21.5, "time": 2}}}).to_string()),
    ];
    produce(&bootstrap, "iot-in", inputs);

    let mut config = kafka_config(&bootstrap, "bad", &["iot-in"], &rules);
    merge(&mut config, json!({"sink": {"batch_bytes": 20000, "properties": {"message.max.bytes": "20000"}}}));
    let config_path = dir.path().join("sluice.toml");
    write_config(&config_path, &config);
    let collector = Collector::start(&bootstrap, &["sluice-errors", "temps", "attrs-out", "big-out", "div-out"]);
    let mut sluice = Sluice::start(&config_path, &dir.path().join("sluice.log"));

    let done =
        collector.wait_for(Duration::from_secs(60), |r| r.iter().filter(|r| r.topic == "sluice-errors").count() >= 5 && r.iter().any(|r| r.topic == "temps") && r.iter().any(|r| r.topic == "div-out"));
    assert!(done, "got {:#?}\nsluice log:\n{}", collector.records(), tail(&sluice.log, 60));
    // Every input committed (its outputs and dead letters delivered before), every output read.
    assert!(broker.wait_committed("bad", "iot-in", 1, Duration::from_secs(30)), "inputs not committed; log:\n{}", tail(&sluice.log, 40));
    assert!(collector.wait_caught_up(Duration::from_secs(30)), "the collector did not catch up with the broker");
    let records = collector.records();
    let errors: Vec<Value> = records.iter().filter(|r| r.topic == "sluice-errors").map(|r| r.json()).collect();
    assert_eq!(errors.len(), 5, "{errors:#?}");
    let find = |stage: &str, needle: &str| -> &Value {
        errors.iter().find(|e| e["stage"] == stage && e["reason"].as_str().unwrap_or_default().contains(needle)).unwrap_or_else(|| panic!("no `{stage}` dead letter with `{needle}` in {errors:#?}"))
    };

    let malformed = find("decode", "not valid JSON");
    assert_eq!(malformed["rule"], "attrs");
    assert_eq!(malformed["topic"], "sys/pk1/integration/attributes/post");
    assert_eq!(malformed["payload_base64"], sluice::value::base64_encode(SEED_003_ATTRIBUTES.as_bytes()));

    let wrong_type = find("select", "must be a number");
    assert_eq!(wrong_type["rule"], "temp");
    assert_eq!(wrong_type["topic"], "/sys/pk1/dev1/thing/event/property/post");

    let no_topic = find("source", "`iot-topic` header");
    assert_eq!(no_topic["rule"], Value::Null);
    assert!(no_topic["reason"].as_str().unwrap().starts_with("iot-in[0] offset 2:"), "{no_topic}");

    let unknown = find("sink", "no-such-topic");
    assert_eq!(unknown["rule"], "lost");
    assert_eq!(unknown["target_topic"], "no-such-topic");
    assert_eq!(unknown["key"], "dev2");
    assert!(unknown["reason"].as_str().unwrap().to_lowercase().contains("unknown topic"), "{unknown}");

    let oversized = find("sink", "big-out");
    assert_eq!(oversized["rule"], "big");
    assert!(oversized["reason"].as_str().unwrap().to_lowercase().contains("too large"), "{oversized}");
    assert!(oversized["value_bytes"].as_u64().unwrap() > 30_000);
    assert_eq!(oversized["value_base64"], Value::Null);

    // Dead letters carry their stage and rule in headers too.
    let dl = records.iter().find(|r| r.topic == "sluice-errors" && r.json()["stage"] == "sink" && r.json()["rule"] == "lost").unwrap();
    assert_eq!(dl.header("sluice-error-stage"), Some("sink"));
    assert_eq!(dl.header("sluice-rule"), Some("lost"));
    assert_eq!(dl.header("iot-topic"), Some("/sys/pk1/dev2/thing/lifecycle"));

    // The partition kept moving: the good message after the bad ones went through.
    let temps: Vec<Value> = records.iter().filter(|r| r.topic == "temps").map(|r| r.json()).collect();
    assert_eq!(temps, vec![json!({"dn": "dev3", "t": 21.5})]);
    assert!(records.iter().all(|r| r.topic != "attrs-out" && r.topic != "big-out"));
    // The poison record: exact integers, no panic, no stall.
    let div: Vec<&support::Rec> = records.iter().filter(|r| r.topic == "div-out").collect();
    assert_eq!(div.len(), 1);
    assert_eq!(String::from_utf8_lossy(&div[0].value), r#"{"q":9223372036854775808,"r":0,"n":9223372036854775808}"#);

    let status = sluice.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}; log:\n{}", tail(&sluice.log, 40));
    assert_eq!(broker.committed("bad", "iot-in", 1), vec![7], "every input offset is committed");
    eprintln!("bad input: 5 dead letters with reasons in {:.1}s", started.elapsed().as_secs_f64());
}
