//! Windowed rules in a running `sluice run`, on the real clock: the integration channel of a
//! real Mosquitto, the file sink. The deterministic cases (every window type, late and future
//! records, silence on a virtual clock) are golden cases (`tests/rules/window_*`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_testkit::admin::{file_records, Instance};
use sluice_testkit::mosquitto::Publisher;
use sluice_testkit::wait_until;

const WAIT: Duration = Duration::from_secs(20);

const SILENCE_RULE: &str = r#"description = "A device silent for 2 s"
sql = """
SELECT deviceKey AS dk, silence() AS state, count(*) AS n, window_start() AS since, window_end() AS until
FROM "sys/+/integration/measurepoint/post"
GROUP BY deviceKey, SILENCEWINDOW(ss, 2, COMEBACK)
"""
[[actions]]
topic = "silence"
key = "${dk}"
"#;

fn request(id: &str, device: &str) -> String {
    json!({"id": id, "version": "1.0", "method": "integration.measurepoint.post",
           "params": [{"deviceKey": device, "measurepoints": {"temp": 20.5}, "time": 1_700_000_000_000_i64}]})
    .to_string()
}

/// A device stops: its silence record arrives within the duration + 1 s of its last request's
/// reply, with no other input; when it sends again, a comeback record follows at once.
#[test]
fn a_silent_device_is_reported_within_the_duration_plus_one_second() {
    let inst = Instance::start("silence", "tok", false, &[("silence.toml", SILENCE_RULE)]);
    let p = Publisher::connect(inst.mosquitto.port, "silence-publisher");
    p.wait_for_sluice(WAIT);
    let topic = "sys/pk1/integration/measurepoint/post";
    let reply = p.request(topic, request("1", "meter-7"), WAIT).expect("a reply");
    assert_eq!(reply.body["code"], json!(200), "{:?}", reply.body);
    let replied = Instant::now();
    let silent = |recs: &[Value]| recs.iter().any(|r| r["value"]["state"] == "silent");
    assert!(wait_until(WAIT, || silent(&file_records(&inst.out, "silence"))), "no silence record; log:\n{}", std::fs::read_to_string(&inst.log).unwrap_or_default());
    let after = replied.elapsed();
    assert!(after <= Duration::from_secs(3), "the silence record came {after:?} after the last reply (duration 2 s + 1 s)");
    assert!(after >= Duration::from_millis(1500), "the silence record came too early: {after:?}");
    let recs: Vec<Value> = file_records(&inst.out, "silence").into_iter().map(|r| r["value"].clone()).collect();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!((recs[0]["dk"].clone(), recs[0]["n"].clone()), (json!("meter-7"), json!(1)), "{recs:?}");
    assert_eq!(recs[0]["until"].as_i64().unwrap() - recs[0]["since"].as_i64().unwrap(), 2000, "{recs:?}");

    let reply = p.request(topic, request("2", "meter-7"), WAIT).expect("a reply");
    assert_eq!(reply.body["code"], json!(200));
    assert!(wait_until(WAIT, || file_records(&inst.out, "silence").iter().any(|r| r["value"]["state"] == "back")), "no comeback record");
    let back = file_records(&inst.out, "silence").into_iter().map(|r| r["value"].clone()).find(|r| r["state"] == "back").unwrap();
    assert!(back["until"].as_i64().unwrap() - back["since"].as_i64().unwrap() >= 2000, "the gap: {back:?}");
}

/// Per-device 60 s tumbling sums over event time, through the integration channel with the
/// embedded store: Sluice is killed (SIGKILL) three times while the requests flow and restarted
/// on the same state folder; Mosquitto redelivers what was not acknowledged. Every window's
/// result equals the one computed from the input (an uninterrupted run's), each window is
/// emitted at least once, and a window emitted twice has the same value both times.
#[test]
fn kill_9_three_times_loses_and_doubles_no_window_contribution_on_mqtt() {
    use sluice_testkit::config::{path as cpath, table};
    use sluice_testkit::mosquitto::Mosquitto;
    use sluice_testkit::{tail, Sluice};
    use std::collections::{BTreeMap, HashMap, HashSet};

    const DEVICES: i64 = 40;
    const STEPS: i64 = 300; // 5 s apart: 25 windows per device
    const PER_REQUEST: i64 = 8;
    const T0: i64 = 1_696_118_400_000; // 2023-10-01T00:00:00Z, on a window boundary
    let mosquitto = Mosquitto::start();
    let dir = sluice_testkit::temp_dir("sluice-windows-kill-");
    let (rules, out, state) = (dir.path().join("rules"), dir.path().join("out"), dir.path().join("state"));
    sluice_testkit::write(
        &rules.join("sums.toml"),
        r#"sql = """
SELECT deviceKey AS dk, sum(measurepoints.v) AS total, count(*) AS n, window_start() AS ws
FROM "sys/+/integration/measurepoint/post"
GROUP BY deviceKey, TUMBLINGWINDOW(ss, 60)
"""
event_time = "time"
idle_timeout_ms = 600000
[[actions]]
topic = "sums"
"#,
    );
    let (config_path, log) = (dir.path().join("sluice.toml"), dir.path().join("sluice.log"));
    let config = |port: u16| {
        table(json!({
            "rules": {"paths": [cpath(&rules)], "watch": false},
            "engine": {"shutdown_timeout_ms": 5000},
            "sources": [{"type": "mqtt", "url": mosquitto.url(), "client_id": "sluice-windows-kill", "reconnect_backoff_ms": 100, "reconnect_backoff_max_ms": 500}],
            "sink": {"type": "file", "dir": cpath(&out), "append": true},
            "state": {"dir": cpath(&state), "checkpoint_interval_ms": 50},
            "admin": {"listen": format!("127.0.0.1:{port}")},
        }))
    };
    let (mut sluice, _) = Sluice::start_with_admin(&config_path, &log, config);
    let p = Publisher::connect(mosquitto.port, "windows-kill-publisher");
    p.wait_for_sluice(WAIT);

    // The input, and the windows it must give.
    let mut expected: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    let mut requests = Vec::new();
    let mut entries = Vec::new();
    for k in 0..STEPS {
        for d in 0..DEVICES {
            let (t, v) = (T0 + k * 5_000, k * 10 + d);
            let dk = format!("meter-{d:03}");
            let e = expected.entry((dk.clone(), t - t.rem_euclid(60_000))).or_default();
            e.0 += v;
            e.1 += 1;
            entries.push(json!({"deviceKey": dk, "measurepoints": {"v": v}, "time": t}));
        }
    }
    for (i, chunk) in entries.chunks(PER_REQUEST as usize).enumerate() {
        requests.push(json!({"id": format!("r{i}"), "version": "1.0", "method": "integration.measurepoint.post", "params": chunk}).to_string());
    }
    let topic = "sys/pk1/integration/measurepoint/post";
    for r in &requests {
        p.publish(topic, r.as_str());
    }
    // Three SIGKILLs at a quarter, a half and three quarters of the replies.
    let answered = || p.replies().iter().filter(|r| r.body["code"] == json!(200)).filter_map(|r| r.body["id"].as_str().map(str::to_string)).collect::<HashSet<_>>().len();
    let total = requests.len();
    for at in [total / 4, total / 2, total * 3 / 4] {
        assert!(wait_until(Duration::from_secs(120), || answered() >= at), "{} of {total} answered; log:\n{}", answered(), tail(&log, 40));
        sluice.kill9();
        eprintln!("windows kill: SIGKILL after {} of {total} requests answered", answered());
        sluice = Sluice::start(&config_path, &log);
    }
    assert!(wait_until(Duration::from_secs(180), || answered() == total), "{} of {total} answered; log:\n{}", answered(), tail(&log, 60));
    // One record per device far ahead closes every device's last window.
    let flush: Vec<Value> = (0..DEVICES).map(|d| json!({"deviceKey": format!("meter-{d:03}"), "measurepoints": {"v": 0}, "time": T0 + 86_400_000})).collect();
    let reply = p.request(topic, json!({"id": "flush", "version": "1.0", "method": "integration.measurepoint.post", "params": flush}).to_string(), WAIT).expect("flush reply");
    assert_eq!(reply.body["code"], json!(200));

    let windows = |out: &std::path::Path| -> Vec<(String, i64, i64, i64)> {
        file_records(out, "sums")
            .iter()
            .map(|r| {
                (r["value"]["dk"].as_str().unwrap_or_default().to_string(), r["value"]["ws"].as_i64().unwrap_or(-1), r["value"]["total"].as_i64().unwrap_or(-1), r["value"]["n"].as_i64().unwrap_or(-1))
            })
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(60), || windows(&out).iter().map(|(dk, ws, _, _)| (dk.clone(), *ws)).collect::<HashSet<_>>().len() >= expected.len()),
        "{} of {} windows; log:\n{}",
        windows(&out).len(),
        expected.len(),
        tail(&log, 40)
    );
    let status = sluice.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit status {status}; log:\n{}", tail(&log, 40));
    let got = windows(&out);
    let mut seen: HashMap<(String, i64), (i64, i64)> = HashMap::new();
    let mut duplicates = 0;
    for (dk, ws, total, n) in &got {
        if let Some(prev) = seen.insert((dk.clone(), *ws), (*total, *n)) {
            duplicates += 1;
            assert_eq!(prev, (*total, *n), "window {dk} {ws} emitted twice with different values");
        }
    }
    for (k, want) in &expected {
        assert_eq!(seen.get(k), Some(want), "window {k:?}: (sum, count)");
    }
    assert_eq!(seen.len(), expected.len(), "no window beyond the input's");
    eprintln!("windows kill: {} windows, {} emitted twice (identical), {} records", expected.len(), duplicates, got.len());
}

/// The device registry persists in the state store: a status and a lifecycle delete learnt
/// from the data-flow topics in one run are still known in the next (file source, so each run
/// ends at the end of its input, after its last checkpoint). Without `[state]` they are not.
#[test]
fn the_device_registry_learnt_from_data_flow_survives_a_restart() {
    use sluice_testkit::config::{path as cpath, table};
    use sluice_testkit::{tail, Sluice};

    let run = |with_state: bool| -> Vec<Value> {
        let dir = sluice_testkit::temp_dir("sluice-registry-state-");
        let (rules, out, state) = (dir.path().join("rules"), dir.path().join("out"), dir.path().join("state"));
        sluice_testkit::write(
            &rules.join("status.toml"),
            "sql = \"\"\"SELECT deviceName() AS dn, deviceStatus() AS status, attribute('location') AS location FROM \"/sys/+/+/thing/event/property/post\" \"\"\"\n[[actions]]\ntopic = \"seen\"\n",
        );
        let status = r#"{"topic":"/as/mqtt/status/12345565569/deviceName1234","payload":{"status":"online","productKey":"12345565569","deviceName":"deviceName1234","time":"2018-08-31 15:32:28.205","utcTime":"2018-08-31T07:32:28.205Z","lastTime":"2018-08-31 15:32:28.195","utcLastTime":"2018-08-31T07:32:28.195Z","clientIp":"123.123.123.123"}}"#;
        let post = |dn: &str| format!(r#"{{"topic":"/sys/12345565569/{dn}/thing/event/property/post","payload":{{"items":{{"temp":{{"value":1}}}}}}}}"#);
        let repo = sluice_testkit::repo_root();
        let mut outputs = Vec::new();
        for (i, input) in [format!("{status}\n"), format!("{}\n", post("deviceName1234"))].iter().enumerate() {
            let file = dir.path().join(format!("in{i}.jsonl"));
            sluice_testkit::write(&file, input);
            let mut cfg = json!({
                "rules": {"paths": [cpath(&rules)], "watch": false},
                "sources": [{"type": "file", "path": cpath(&file)}],
                "sink": {"type": "file", "dir": cpath(&out), "append": true},
                "registry": {"models": cpath(&repo.join("models"))},
            });
            if with_state {
                cfg["state"] = json!({"dir": cpath(&state)});
            }
            let (config, log) = (dir.path().join("sluice.toml"), dir.path().join("sluice.log"));
            sluice_testkit::config::write_config(&config, &table(cfg));
            let mut s = Sluice::start(&config, &log);
            assert!(wait_until(WAIT, || !s.running()), "sluice did not end at the end of its input; log:\n{}", tail(&log, 30));
            outputs = file_records(&out, "seen");
            assert!(!outputs.is_empty() || i == 0, "no output; log:\n{}", tail(&log, 30));
        }
        outputs.into_iter().map(|r| r["value"].clone()).collect()
    };
    assert_eq!(run(true), vec![json!({"dn": "deviceName1234", "status": "online", "location": null})]);
    assert_eq!(run(false), vec![json!({"dn": "deviceName1234", "status": null, "location": null})], "without [state] the status is forgotten");
}

/// A bounded input (a file source) ends: the windows still open are emitted before the process
/// exits, as at the end of any bounded stream; the run exits 0.
#[test]
fn the_end_of_a_file_input_closes_the_open_windows() {
    use sluice_testkit::config::{path as cpath, table};
    use sluice_testkit::{tail, Sluice};
    let dir = sluice_testkit::temp_dir("sluice-windows-eof-");
    let (rules, out, input) = (dir.path().join("rules"), dir.path().join("out"), dir.path().join("in.jsonl"));
    sluice_testkit::write(
        &rules.join("avg.toml"),
        "sql = \"\"\"SELECT deviceName() AS dn, avg(items.temp.value) AS avg_temp, count(*) AS n FROM \"/sys/+/+/thing/event/property/post\" GROUP BY deviceName(), TUMBLINGWINDOW(mi, 10)\"\"\"\nevent_time = \"items.temp.time\"\n[[actions]]\ntopic = \"avg\"\n",
    );
    let line = |dn: &str, v: i64, t: i64| format!(r#"{{"topic":"/sys/pk/{dn}/thing/event/property/post","payload":{{"items":{{"temp":{{"value":{v},"time":{t}}}}}}}}}"#);
    let t = 1_700_000_400_000_i64;
    sluice_testkit::write(&input, &[line("a", 10, t), line("b", 30, t + 1), line("a", 20, t + 2)].join("\n"));
    let (config, log) = (dir.path().join("sluice.toml"), dir.path().join("sluice.log"));
    sluice_testkit::config::write_config(
        &config,
        &table(json!({"rules": {"paths": [cpath(&rules)], "watch": false}, "sources": [{"type": "file", "path": cpath(&input)}], "sink": {"type": "file", "dir": cpath(&out)}})),
    );
    let mut s = Sluice::start(&config, &log);
    assert!(wait_until(WAIT, || !s.running()), "sluice did not end at the end of its input; log:\n{}", tail(&log, 30));
    let mut got: Vec<Value> = file_records(&out, "avg").into_iter().map(|r| r["value"].clone()).collect();
    got.sort_by_key(|v| v["dn"].as_str().unwrap_or_default().to_string());
    assert_eq!(got, vec![json!({"dn": "a", "avg_temp": 15.0, "n": 2}), json!({"dn": "b", "avg_temp": 30.0, "n": 1})], "log:\n{}", tail(&log, 30));
}

/// `sluice test --input` refuses a bad sequence with the file and line: a truncated line, a
/// line that is not UTF-8, both payload forms at once, bad base64; it never panics.
#[test]
fn sluice_test_input_names_the_bad_line() {
    let dir = sluice_testkit::temp_dir("sluice-test-input-");
    let rule = dir.path().join("r.toml");
    sluice_testkit::write(&rule, "sql = \"\"\"SELECT count(*) AS n FROM \"t/#\" GROUP BY COUNTWINDOW(1)\"\"\"\n[[actions]]\ntopic = \"o\"\n");
    let good = r#"{"topic":"t/1","payload":{"a":1}}"#;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("truncated", format!("{good}\n{{\"topic\":\"t/1\",\"payl").into_bytes(), ":2: not a test line"),
        ("not UTF-8", [good.as_bytes(), b"\n{\"topic\":\"t/\xff\"}\n"].concat(), "not UTF-8"),
        ("both payloads", format!("{good}\n{{\"topic\":\"t/1\",\"payload\":1,\"payload_base64\":\"AA==\"}}").into_bytes(), ":2: give payload or payload_base64, not both"),
        ("bad base64", format!("{{\"topic\":\"t/1\",\"payload_base64\":\"%%%\",\"now\":{}}}", i64::MAX).into_bytes(), ":1: payload_base64"),
    ];
    for (what, text, want) in cases {
        let input = dir.path().join("in.jsonl");
        std::fs::write(&input, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice")).args(["test", &rule.display().to_string(), "--input", &input.display().to_string()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains(want), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(out.stdout.is_empty(), "{what}: nothing runs before the whole sequence is read");
    }
}
