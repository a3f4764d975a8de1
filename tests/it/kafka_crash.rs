//! Crash: 100,000 messages through the `sluice` binary, which is killed with SIGKILL four
//! times while it works (no drain, no commit) and restarted at once each time, as the same static
//! group member (`group.instance.id`), so the restart takes its predecessor's partitions without
//! waiting for the dead member's session to expire. Every input's output
//! must arrive (compared as sets); duplicates are allowed (at-least-once) and counted.

use sluice_testkit as support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use support::config::write_config;
use support::{kafka_config, produce, tail, write, Broker, Collector, In, Sluice};

const MESSAGES: u64 = 100_000;

#[test]
fn sigkill_and_restart_lose_nothing() {
    let _heavy = sluice_testkit::heavy();
    let started = Instant::now();
    let broker = Broker::start();
    let dir = support::temp_dir("sluice-test-");
    let rules = dir.path().join("rules");
    write(
        &rules.join("temps.toml"),
        "sql = \"\"\"SELECT deviceName() AS dn, seq, items.temp.value AS temp FROM \"/sys/+/+/thing/event/property/post\" \"\"\"\n[[actions]]\ntopic = \"out\"\nkey = \"${dn}\"\n",
    );
    broker.create_topics(&[("iot-in", 4), ("out", 4), ("sluice-errors", 1)]);
    let bootstrap = broker.bootstrap();

    let inputs = (0..MESSAGES).map(|seq| {
        let dn = format!("dev{}", seq % 1000);
        In::iot(&format!("/sys/pk1/{dn}/thing/event/property/post"), json!({"seq": seq, "items": {"temp": {"value": seq % 50, "time": 1_700_000_000_000_u64 + seq}}}).to_string())
    });
    produce(&bootstrap, "iot-in", inputs);
    let produced_at = started.elapsed();

    let config_path = dir.path().join("sluice.toml");
    let mut config = kafka_config(&bootstrap, "crash", &["iot-in"], &rules);
    // Static membership, as a supervised deployment would run it: the restarted process takes
    // its dead predecessor's place in the group at once (no wait for its session to expire).
    support::config::merge(support::config::source(&mut config, 0), json!({"properties": {"group.instance.id": "crash-1"}}));
    write_config(&config_path, &config);
    let log = dir.path().join("sluice.log");
    let collector = Collector::start(&bootstrap, &["out"]);
    let seqs = |recs: &[support::Rec]| -> HashSet<u64> { recs.iter().map(|r| r.json()["seq"].as_u64().expect("seq")).collect() };

    let mut sluice = Sluice::start(&config_path, &log);
    let mut kills = 0;
    for fraction in [0.10, 0.30, 0.50, 0.70] {
        let target = (MESSAGES as f64 * fraction) as usize;
        let reached = collector.wait_for(Duration::from_secs(120), |r| r.len() >= target);
        assert!(reached, "stuck at {} outputs before kill {}; log:\n{}", collector.len(), kills + 1, tail(&log, 60));
        assert!(sluice.running(), "sluice exited by itself; log:\n{}", tail(&log, 60));
        sluice.kill9();
        kills += 1;
        eprintln!("crash: SIGKILL #{kills} after {} outputs; committed {:?}", collector.len(), broker.committed("crash", "iot-in", 4));
        sluice = Sluice::start(&config_path, &log);
    }

    let complete = collector.wait_for(Duration::from_secs(180), |r| r.len() as u64 >= MESSAGES && seqs(r).len() as u64 == MESSAGES);
    let records = collector.records();
    let seen = seqs(&records);
    assert!(complete, "{} of {MESSAGES} inputs have their output; log:\n{}", seen.len(), tail(&log, 60));
    assert_eq!(seen, (0..MESSAGES).collect::<HashSet<u64>>());
    let duplicates = records.len() - seen.len();

    let status = sluice.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}; log:\n{}", tail(&log, 40));
    assert_eq!(broker.committed("crash", "iot-in", 4), broker.end_offsets("iot-in", 4), "every input offset is committed after SIGTERM");
    eprintln!(
        "crash: {MESSAGES} inputs, {kills} SIGKILLs, {} outputs, all {} inputs present, {duplicates} duplicates ({:.2}%); produced in {:.1}s, total {:.1}s",
        records.len(),
        seen.len(),
        duplicates as f64 * 100.0 / MESSAGES as f64,
        produced_at.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
