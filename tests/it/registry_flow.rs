//! The device registry end to end: the production App with a `[registry]` over a file source where
//! data-flow lifecycle, topology and status messages precede property posts; a rule selecting
//! `attribute('site')`, `deviceStatus()` and `gateway()` shows the registry following them,
//! including a status that arrives out of order.

use std::process::Command;

use std::time::Duration;

use serde_json::{json, Value};
use sluice::app::RunOutcome;
use sluice::telemetry::metrics;
use sluice_testkit::app::InProcess;
use sluice_testkit::config::{path, table, write_config};

const RULE: &str = r#"
name = "device-facts"
sql = """
SELECT deviceName() AS dn, items.temp.value AS temp, attribute('site') AS site, deviceStatus() AS status, gateway() AS gw
FROM "/sys/+/+/thing/event/property/post"
"""
[[actions]]
topic = "facts"
"#;

const DEVICES: &str = r#"
[[devices]]
product_key = "pkS"
device_key = "sub1"
tags = { site = "plant-a" }
"#;

fn post(temp: i64) -> Value {
    json!({"topic": "/sys/pkS/sub1/thing/event/property/post", "payload": {"productKey": "pkS", "deviceName": "sub1", "items": {"temp": {"value": temp, "time": 1}}}, "received_ms": 1_700_000_000_000_i64})
}

fn status(st: &str, last: &str) -> Value {
    json!({"topic": "/as/mqtt/status/pkS/sub1", "payload": {"status": st, "productKey": "pkS", "deviceName": "sub1", "lastTime": last, "utcLastTime": last.replace(' ', "T") + "Z"}, "received_ms": 1_700_000_000_000_i64})
}

fn topo(action: &str) -> Value {
    json!({"topic": "/sys/pkG/gw1/thing/topo/lifecycle", "payload": {"action": action, "gwProductKey": "pkG", "gwDeviceName": "gw1", "devices": [{"productKey": "pkS", "deviceName": "sub1"}], "messageCreateTime": 1}, "received_ms": 1_700_000_000_000_i64})
}

fn lifecycle(pk: &str, dn: &str, action: &str) -> Value {
    json!({"topic": format!("/sys/{pk}/{dn}/thing/lifecycle"), "payload": {"action": action, "productKey": pk, "deviceName": dn, "messageCreateTime": 1}, "received_ms": 1_700_000_000_000_i64})
}

#[test]
fn rules_see_the_registry_follow_the_data_flow() {
    // The registry's counters are process-wide: this test runs alone in a process.
    if !sluice_testkit::own_process(module_path!(), "rules_see_the_registry_follow_the_data_flow") {
        return;
    }
    let tmp = tempfile::TempDir::new().expect("temp dir");
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::fs::write(dir.join("rules/facts.toml"), RULE).unwrap();
    std::fs::write(dir.join("models/devices.toml"), DEVICES).unwrap();
    std::fs::write(dir.join("models/pkS.toml"), "[measurepoints]\ntemp = { type = \"int\" }\n").unwrap();

    let input = [
        post(1),                           // registered from the file: site only
        lifecycle("pkG", "gw1", "create"), // the gateway appears
        topo("add"),                       // sub1 goes under gw1
        status("online", "2024-01-01 10:00:00.000"),
        post(2), // online, gateway gw1
        status("offline", "2024-01-01 10:05:00.000"),
        status("online", "2024-01-01 10:02:00.000"),                                               // late and older: ignored
        post(3),                                                                                   // still offline
        json!({"topic": "/as/mqtt/status/pkS/sub1", "payload": "not a status", "received_ms": 1}), // malformed: ignored
        topo("remove"),
        post(4), // no gateway any more
        lifecycle("pkS", "sub1", "delete"),
        post(5), // deleted: nothing known
    ];
    let lines: Vec<String> = input.iter().map(Value::to_string).collect();
    std::fs::write(dir.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    let out = dir.join("out");
    let config = table(json!({
        "rules": {"paths": [path(&dir.join("rules"))]},
        "engine": {"workers": 1},
        "sources": [{"type": "file", "path": path(&dir.join("in.jsonl"))}],
        "sink": {"type": "file", "dir": path(&out)},
        "registry": {"models": path(&dir.join("models"))},
    }));

    // The production App in this (own) process: it ends with its file source.
    let updates = |kind: &str, result: &str| metrics::REGISTRY_UPDATES.with_label_values(&[kind, result]).get();
    let mut app = InProcess::start(&config);
    let outcome = app.wait_end(Duration::from_secs(60)).expect("the run ends with its input");
    assert!(matches!(outcome, Ok(RunOutcome::Finished(_))), "{outcome:?}");

    let text = std::fs::read_to_string(out.join("facts.jsonl")).expect("facts.jsonl written");
    let values: Vec<Value> = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["value"].clone()).collect();
    let gw = json!({"productKey": "pkG", "deviceName": "gw1"});
    assert_eq!(
        values,
        vec![
            json!({"dn": "sub1", "temp": 1, "site": "plant-a", "status": null, "gw": null}),
            json!({"dn": "sub1", "temp": 2, "site": "plant-a", "status": "online", "gw": gw}),
            json!({"dn": "sub1", "temp": 3, "site": "plant-a", "status": "offline", "gw": gw}),
            json!({"dn": "sub1", "temp": 4, "site": "plant-a", "status": "offline", "gw": null}),
            json!({"dn": "sub1", "temp": 5, "site": null, "status": null, "gw": null}),
        ]
    );
    // The malformed status is counted, the late one too.
    assert_eq!((updates("status", "malformed"), updates("status", "stale"), updates("status", "applied")), (1, 1, 2));
}

#[test]
fn a_broken_registry_stops_the_run() {
    let tmp = tempfile::TempDir::new().expect("temp dir");
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("models/p.toml"), "[measurepoints]\nx = { type = \"decimal\" }\n").unwrap();
    std::fs::write(dir.join("in.jsonl"), "").unwrap();
    let config = table(json!({
        "rules": {"paths": [path(&dir.join("rules"))]},
        "sources": [{"type": "file", "path": path(&dir.join("in.jsonl"))}],
        "sink": {"type": "file", "dir": path(&dir.join("out"))},
        "registry": {"models": path(&dir.join("models"))},
    }));
    write_config(&dir.join("sluice.toml"), &config);
    let output = Command::new(env!("CARGO_BIN_EXE_sluice")).arg("run").arg("--config").arg(dir.join("sluice.toml")).output().expect("run sluice");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loading the device registry") && stderr.contains("p.toml"), "{stderr}");
}
