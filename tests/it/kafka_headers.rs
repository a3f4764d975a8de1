//! `[sink] headers` through a real broker: two `sluice` instances read the same kind of input
//! (a good property post, one that fails the rule, one whose target topic does not exist), one
//! with the default built-in headers and one with `headers = []`. The records are read back
//! with their headers in order: the default instance's outputs carry `iot-topic`, `sluice-rule`
//! and the rule's own header; the other's only the rule's own; error records and dead letters of
//! both keep `sluice-error-stage`, `iot-topic` and `sluice-rule`.

use sluice_testkit as support;

use std::time::Duration;

use serde_json::json;
use support::config::{merge, write_config};
use support::{kafka_config, produce, tail, write, Broker, Collector, In, Rec, Sluice};

/// `(name, value)` pairs, as the collector reads headers.
fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn sink_headers_default_and_none() {
    let broker = Broker::start();
    let dir = support::temp_dir("sluice-test-");
    let rules = dir.path().join("rules");
    write(
        &rules.join("tag.toml"),
        "sql = \"\"\"SELECT deviceName() AS dn, abs(items.temp.value) AS t FROM \"/sys/+/+/thing/event/property/post\" \"\"\"\n[[actions]]\ntopic = \"hdr-out\"\nkey = \"${dn}\"\n[actions.headers]\nkind = \"tagged\"\n",
    );
    write(&rules.join("lost.toml"), "sql = \"\"\"SELECT deviceName() AS dn FROM \"/sys/+/+/thing/lifecycle\" \"\"\"\n[[actions]]\ntopic = \"no-such-topic\"\nkey = \"${dn}\"\n");
    broker.create_topics(&[("in-default", 1), ("in-none", 1), ("hdr-out", 1), ("sluice-errors", 1)]);
    let bootstrap = broker.bootstrap();
    let post = |dn: &str| format!("/sys/pk1/{dn}/thing/event/property/post");
    let lifecycle = |dn: &str| format!("/sys/pk1/{dn}/thing/lifecycle");
    for variant in ["default", "none"] {
        produce(
            &bootstrap,
            &format!("in-{variant}"),
            [
                In::iot(&post(&format!("ok-{variant}")), json!({"items": {"temp": {"value": -2, "time": 1}}}).to_string()),
                In::iot(&post(&format!("bad-{variant}")), json!({"items": {"temp": {"value": "hot", "time": 1}}}).to_string()),
                In::iot(&lifecycle(&format!("lost-{variant}")), json!({"action": "create"}).to_string()),
            ],
        );
    }

    let collector = Collector::start(&bootstrap, &["hdr-out", "sluice-errors"]);
    let mut instances = Vec::new();
    for variant in ["default", "none"] {
        let mut config = kafka_config(&bootstrap, &format!("hdr-{variant}"), &[&format!("in-{variant}")], &rules);
        if variant == "none" {
            merge(&mut config, json!({"sink": {"headers": []}}));
        }
        let path = dir.path().join(format!("sluice-{variant}.toml"));
        write_config(&path, &config);
        instances.push((variant, Sluice::start(&path, &dir.path().join(format!("sluice-{variant}.log")))));
    }
    let logs = |instances: &[(&str, Sluice)]| instances.iter().map(|(v, s)| format!("---- {v}:\n{}", tail(&s.log, 40))).collect::<Vec<_>>().join("\n");

    // Two outputs, and per instance an error record and a dead letter.
    let done = collector.wait_for(Duration::from_secs(60), |r| r.iter().filter(|r| r.topic == "hdr-out").count() >= 2 && r.iter().filter(|r| r.topic == "sluice-errors").count() >= 4);
    assert!(done, "got {:#?}\n{}", collector.records(), logs(&instances));
    for variant in ["default", "none"] {
        assert!(broker.wait_committed(&format!("hdr-{variant}"), &format!("in-{variant}"), 1, Duration::from_secs(30)), "{variant}: inputs not committed\n{}", logs(&instances));
    }
    assert!(collector.wait_caught_up(Duration::from_secs(30)), "the collector did not catch up with the broker");
    let records = collector.records();
    assert_eq!(records.len(), 6, "{records:#?}");
    let find = |topic: &str, what: &dyn Fn(&Rec) -> bool| -> Rec { records.iter().find(|r| r.topic == topic && what(r)).cloned().unwrap_or_else(|| panic!("no such record on {topic}: {records:#?}")) };

    // Data records: the built-in headers as configured, then the rule's own.
    let out = find("hdr-out", &|r| r.key.as_deref() == Some("ok-default"));
    assert_eq!(out.headers, pairs(&[("iot-topic", &post("ok-default")), ("sluice-rule", "tag"), ("kind", "tagged")]));
    assert_eq!(out.json(), json!({"dn": "ok-default", "t": 2}));
    let out = find("hdr-out", &|r| r.key.as_deref() == Some("ok-none"));
    assert_eq!(out.headers, pairs(&[("kind", "tagged")]), "headers = []: only the rule's own");
    assert_eq!(out.json(), json!({"dn": "ok-none", "t": 2}));

    // Error records and dead letters keep their diagnostic headers whatever `headers` says.
    for variant in ["default", "none"] {
        let topic = post(&format!("bad-{variant}"));
        let err = find("sluice-errors", &|r| r.json()["topic"] == topic.as_str());
        assert_eq!(err.json()["stage"], "select", "{err:?}");
        assert_eq!(err.header("sluice-error-stage"), Some("select"), "{variant}: {err:?}");
        assert_eq!(err.header("iot-topic"), Some(topic.as_str()), "{variant}: {err:?}");
        assert_eq!(err.header("sluice-rule"), Some("tag"), "{variant}: {err:?}");
        let topic = lifecycle(&format!("lost-{variant}"));
        let dl = find("sluice-errors", &|r| r.json()["topic"] == topic.as_str());
        assert_eq!(dl.json()["target_topic"], "no-such-topic", "{dl:?}");
        assert_eq!(dl.headers, pairs(&[("iot-topic", &topic), ("sluice-rule", "lost"), ("sluice-error-stage", "sink")]), "{variant}");
    }

    for (variant, mut sluice) in instances {
        let status = sluice.terminate(Duration::from_secs(30));
        assert!(status.success(), "{variant}: exit status {status}; log:\n{}", tail(&sluice.log, 40));
    }
}
