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
