//! Stateful rules on Kafka in and out, their state in the source's changelog topic:
//! - kill -9 ×3 during 100,000 device messages (60-s tumbling averages per device over event
//!   time): every window's result equals what an uninterrupted run gives (computed here from the
//!   inputs: exact counts and integer sums); a window emitted twice is identical, and counted;
//! - rebalance: two instances in a group, one killed (SIGKILL) mid-window; the survivor restores
//!   the dead one's partitions from the changelog, and its results for them are complete.
//!
//! Input is keyed by device (the device's records share a partition), as the changelog needs.

use sluice_testkit as support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::json;
use support::config::{merge, source, write_config};
use support::metrics::Metrics;
use support::{kafka_config, produce, tail, write, Broker, Collector, In, Rec, Sluice};

const DEVICES: u64 = 1000;
/// Records per device; each device's records are 2 s apart in event time, so its 100 records
/// fill windows of 30, 30, 30 and 10.
const PER_DEVICE: u64 = 100;
const BASE_MS: i64 = 1_700_000_040_000; // a minute boundary
const STEP_MS: i64 = 2_000;
const PARTITIONS: i32 = 4;

const RULE: &str = r#"sql = """SELECT deviceName() AS dn, count(*) AS n, sum(items.temp.value) AS total, avg(items.temp.value) AS avg_temp, window_start() AS ws
FROM "/sys/+/+/thing/event/property/post"
GROUP BY deviceName(), TUMBLINGWINDOW(ss, 60)"""
event_time = "items.temp.time"
idle_timeout_ms = 600000
[[actions]]
topic = "out"
key = "${dn}"
"#;

fn device(d: u64) -> String {
    format!("dev{d:04}")
}

fn temp(d: u64, i: u64) -> i64 {
    ((d * 7 + i * 13) % 50) as i64 - 10
}

/// Record `i` of device `d`, keyed by the device.
fn input(d: u64, i: u64) -> In {
    let dn = device(d);
    let value = json!({"id": format!("{d}-{i}"), "items": {"temp": {"value": temp(d, i), "time": BASE_MS + i as i64 * STEP_MS}}});
    In { key: Some(dn.clone().into_bytes()), ..In::iot(&format!("/sys/pk1/{dn}/thing/event/property/post"), value.to_string()) }
}

/// Records `from..to` of every device, interleaved as devices report.
fn inputs(from: u64, to: u64) -> impl Iterator<Item = In> {
    (from..to).flat_map(|i| (0..DEVICES).map(move |d| input(d, i)))
}

/// One record per device far ahead in event time: its watermark closes every earlier window.
fn sentinels() -> impl Iterator<Item = In> {
    (0..DEVICES).map(|d| input(d, 1000))
}

/// What an uninterrupted run emits: (device, window start) → (count, sum).
fn expected() -> HashMap<(String, i64), (u64, i64)> {
    let mut out: HashMap<(String, i64), (u64, i64)> = HashMap::new();
    for d in 0..DEVICES {
        for i in 0..PER_DEVICE {
            let t = BASE_MS + i as i64 * STEP_MS;
            let e = out.entry((device(d), t - t.rem_euclid(60_000))).or_default();
            e.0 += 1;
            e.1 += temp(d, i);
        }
    }
    out
}

/// The window results among `recs`: (device, window start) → every value emitted for it.
fn windows(recs: &[Rec]) -> HashMap<(String, i64), Vec<serde_json::Value>> {
    let mut out: HashMap<(String, i64), Vec<serde_json::Value>> = HashMap::new();
    for r in recs {
        let v = r.json();
        let key = (v["dn"].as_str().unwrap_or_default().to_string(), v["ws"].as_i64().unwrap_or_default());
        out.entry(key).or_default().push(v);
    }
    out
}

/// Windows of `expected` whose result has arrived, with the right count and sum.
fn correct(got: &HashMap<(String, i64), Vec<serde_json::Value>>, expected: &HashMap<(String, i64), (u64, i64)>) -> usize {
    expected.iter().filter(|(k, (n, total))| got.get(*k).is_some_and(|vs| vs.iter().any(|v| v["n"] == json!(n) && v["total"] == json!(total)))).count()
}

/// A few windows of `expected` without their right result, with what came instead.
fn wrong(got: &HashMap<(String, i64), Vec<serde_json::Value>>, expected: &HashMap<(String, i64), (u64, i64)>) -> String {
    let mut bad: Vec<String> = expected
        .iter()
        .filter(|(k, (n, total))| !got.get(*k).is_some_and(|vs| vs.iter().any(|v| v["n"] == json!(n) && v["total"] == json!(total))))
        .map(|(k, (n, total))| format!("{k:?}: want n={n} total={total}, got {:?}", got.get(k).map(|vs| vs.iter().map(|v| (v["n"].clone(), v["total"].clone())).collect::<Vec<_>>())))
        .collect();
    let n = bad.len();
    bad.sort();
    bad.truncate(8);
    format!("{n} wrong, e.g.:\n  {}", bad.join("\n  "))
}

/// Checks every emitted window of `expected`: the right count and sum, and every copy identical.
/// Returns how many copies were duplicates.
fn check(got: &HashMap<(String, i64), Vec<serde_json::Value>>, expected: &HashMap<(String, i64), (u64, i64)>, log: &str) -> usize {
    let mut duplicates = 0;
    for (k, (n, total)) in expected {
        let vs = got.get(k).unwrap_or_else(|| panic!("no result for window {k:?}; log:\n{log}"));
        assert_eq!((&vs[0]["n"], &vs[0]["total"]), (&json!(n), &json!(total)), "window {k:?}: a contribution missed or counted twice; log:\n{log}");
        assert!(vs.iter().all(|v| v == &vs[0]), "window {k:?} emitted with different values: {vs:?}");
        duplicates += vs.len() - 1;
    }
    duplicates
}

fn setup(group: &str) -> (Broker, tempfile::TempDir, toml::Table) {
    let broker = Broker::start();
    let dir = support::temp_dir("sluice-test-");
    broker.create_topics(&[("iot-in", PARTITIONS), ("out", 4), ("sluice-errors", 1)]);
    let rules = dir.path().join("rules");
    write(&rules.join("avg.toml"), RULE);
    let config = kafka_config(&broker.bootstrap(), group, &["iot-in"], &rules);
    (broker, dir, config)
}

#[test]
fn kill9_three_times_windows_equal_the_uninterrupted_run() {
    let _heavy = sluice_testkit::heavy();
    let started = Instant::now();
    let (broker, dir, mut config) = setup("state-crash");
    let bootstrap = broker.bootstrap();
    let total = produce(&bootstrap, "iot-in", inputs(0, PER_DEVICE).chain(sentinels())) as i64;
    merge(&mut config, json!({"state": {"dir": support::config::path(&dir.path().join("state"))}}));
    merge(source(&mut config, 0), json!({"properties": {"group.instance.id": "state-crash-1"}}));
    let config_path = dir.path().join("sluice.toml");
    write_config(&config_path, &config);
    let log = dir.path().join("sluice.log");
    let collector = Collector::start(&bootstrap, &["out"]);
    let want = expected();

    let mut sluice = Sluice::start(&config_path, &log);
    let committed = || broker.committed("state-crash", "iot-in", PARTITIONS).iter().sum::<i64>();
    for (kill, fraction) in [0.2, 0.45, 0.7].into_iter().enumerate() {
        let target = (total as f64 * fraction) as i64;
        let reached = support::poll_until(Duration::from_secs(180), Duration::from_millis(100), || committed() >= target);
        assert!(reached, "stuck at {} of {total} committed before kill {}; log:\n{}", committed(), kill + 1, tail(&log, 60));
        assert!(sluice.running(), "sluice exited by itself; log:\n{}", tail(&log, 60));
        sluice.kill9();
        eprintln!("state crash: SIGKILL #{} at {} of {total} committed, {} outputs", kill + 1, committed(), collector.len());
        sluice = Sluice::start(&config_path, &log);
    }
    let done = collector.wait_for(Duration::from_secs(240), |r| correct(&windows(r), &want) == want.len());
    let got = windows(&collector.records());
    assert!(done, "{} of {} windows have their right result: {}; log:\n{}", correct(&got, &want), want.len(), wrong(&got, &want), tail(&log, 60));
    let duplicates = check(&got, &want, &tail(&log, 40));
    assert!(tail(&log, 100_000).contains("partition state restored from the changelog"), "the restarts restore from the changelog");
    let status = sluice.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}; log:\n{}", tail(&log, 40));
    eprintln!("state crash: {total} inputs, 3 SIGKILLs, {} windows all exact, {duplicates} emitted twice (identical); {:.1}s", want.len(), started.elapsed().as_secs_f64());
}

/// How many partitions the instance with admin server `admin` has (0 while it does not answer).
fn assigned(admin: &str) -> usize {
    Metrics::try_fetch(admin).map_or(0, |m| m.sum("sluice_kafka_assigned_partitions") as usize)
}

#[test]
fn rebalance_the_survivor_restores_the_dead_instances_windows() {
    let _heavy = sluice_testkit::heavy();
    let started = Instant::now();
    let (broker, dir, mut config) = setup("state-rb");
    let bootstrap = broker.bootstrap();
    merge(source(&mut config, 0), json!({"properties": {"session.timeout.ms": "6000"}}));
    let mut instances = Vec::new();
    for name in ["a", "b"] {
        let mut c = config.clone();
        merge(&mut c, json!({"state": {"dir": support::config::path(&dir.path().join(format!("state-{name}")))}}));
        let rules = dir.path().join(format!("rules-{name}"));
        write(&rules.join("avg.toml"), &RULE.replace("key = \"${dn}\"", &format!("key = \"${{dn}}\"\n[actions.headers]\ninstance = \"{name}\"")));
        merge(&mut c, json!({"rules": {"paths": [support::config::path(&rules)]}}));
        let log = dir.path().join(format!("sluice-{name}.log"));
        let (sluice, admin) = Sluice::start_admin(&c, &dir.path().join(format!("sluice-{name}.toml")), &log);
        instances.push((sluice, log, admin));
        if name == "a" {
            assert!(support::poll_until(Duration::from_secs(30), Duration::from_millis(100), || assigned(&instances[0].2) == PARTITIONS as usize), "a gets every partition first");
        }
    }
    let (log_a, log_b, admin_a, admin_b) = (instances[0].1.clone(), instances[1].1.clone(), instances[0].2.clone(), instances[1].2.clone());
    let shared = support::poll_until(Duration::from_secs(60), Duration::from_millis(100), || assigned(&admin_a) == 2 && assigned(&admin_b) == 2);
    assert!(shared, "the group splits 4 partitions 2 + 2; a:\n{}\nb:\n{}", tail(&log_a, 30), tail(&log_b, 30));
    let collector = Collector::start(&bootstrap, &["out"]);

    // The first half of every device's first window, then b dies with its half of those
    // windows open (in its memory and in the changelog).
    produce(&bootstrap, "iot-in", inputs(0, 15));
    let processed = broker.wait_committed("state-rb", "iot-in", PARTITIONS, Duration::from_secs(120));
    assert!(processed, "the first records are processed and committed; a:\n{}\nb:\n{}", tail(&log_a, 30), tail(&log_b, 30));
    assert!(collector.is_empty(), "no window has closed yet");
    instances[1].0.kill9();
    let took_over = support::poll_until(Duration::from_secs(60), Duration::from_millis(100), || assigned(&admin_a) == PARTITIONS as usize);
    assert!(took_over, "a takes b's partitions; a:\n{}", tail(&log_a, 40));
    eprintln!("state rebalance: b killed; a has every partition after {:.1}s", started.elapsed().as_secs_f64());

    produce(&bootstrap, "iot-in", inputs(15, PER_DEVICE).chain(sentinels()));
    let want = expected();
    let done = collector.wait_for(Duration::from_secs(180), |r| correct(&windows(r), &want) == want.len());
    let records = collector.records();
    let got = windows(&records);
    assert!(done, "{} of {} windows have their right result: {}; a:\n{}", correct(&got, &want), want.len(), wrong(&got, &want), tail(&log_a, 60));
    let duplicates = check(&got, &want, &tail(&log_a, 40));
    // Every first window closed after b died: a emitted them all, b's devices' from the state
    // it restored (15 records each) plus what came after.
    let first: Vec<&Rec> = records.iter().filter(|r| r.json()["ws"] == json!(BASE_MS)).collect();
    assert!(first.iter().all(|r| r.header("instance") == Some("a")), "a emits every first window");
    let m = Metrics::try_fetch(&admin_a).expect("a's metrics");
    let restored = m.sum("sluice_state_restored_keys_total");
    assert!(restored >= (DEVICES / 4) as f64, "a restored b's devices' groups from the changelog: {restored}");
    assert_eq!(m.sum("sluice_state_partition_violations_total"), 0.0, "device-keyed input: no key in two partitions");
    let devices_a: HashSet<&str> = first.iter().filter_map(|r| r.key.as_deref()).collect();
    assert_eq!(devices_a.len() as u64, DEVICES);
    let status = instances[0].0.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}; log:\n{}", tail(&log_a, 40));
    eprintln!("state rebalance: {} windows exact, {restored} keys restored by a, {duplicates} duplicates; {:.1}s", want.len(), started.elapsed().as_secs_f64());
}

/// A checkpoint cut short (the process died between a checkpoint's keys and its marker): the
/// changelog's tail after its last marker is ignored by the restore and written back.
#[test]
fn a_checkpoint_cut_short_in_the_changelog_is_ignored_and_repaired() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

    let _heavy = sluice_testkit::heavy();
    let (broker, dir, mut config) = setup("state-cut");
    let bootstrap = broker.bootstrap();
    const FEW: u64 = 8;
    let few = |from: u64, to: u64| (from..to).flat_map(|i| (0..FEW).map(move |d| input(d, i)));
    produce(&bootstrap, "iot-in", few(0, 15));
    merge(&mut config, json!({"state": {"dir": support::config::path(&dir.path().join("state"))}}));
    let config_path = dir.path().join("sluice.toml");
    write_config(&config_path, &config);
    let log = dir.path().join("sluice.log");
    let mut sluice = Sluice::start(&config_path, &log);
    assert!(broker.wait_committed("state-cut", "iot-in", PARTITIONS, Duration::from_secs(120)), "log:\n{}", tail(&log, 40));
    assert!(sluice.terminate(Duration::from_secs(30)).success(), "log:\n{}", tail(&log, 40));

    // Every group the changelog holds gets a tombstone, with no marker after it.
    let changelog = "state-cut-sluice-state";
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &bootstrap).set("group.id", "test-reader").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..PARTITIONS {
        let (_, high) = c.fetch_watermarks(changelog, p, Duration::from_secs(10)).unwrap();
        if high > 0 {
            ends.insert(p, high);
            tpl.add_partition_offset(changelog, p, Offset::Beginning).unwrap();
        }
    }
    c.assign(&tpl).unwrap();
    let mut keys: HashSet<(i32, Vec<u8>)> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            if let Some(k) = m.key().filter(|k| k.starts_with(b"g\0")) {
                keys.insert((m.partition(), k.to_vec()));
            }
            if ends.get(&m.partition()).is_some_and(|&e| m.offset() + 1 >= e) {
                ends.remove(&m.partition());
            }
        }
    }
    assert_eq!(keys.len() as u64, FEW, "one group per device in the changelog");
    let p: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    for (partition, key) in &keys {
        p.send(BaseRecord::<[u8], [u8]>::to(changelog).partition(*partition).key(&key[..])).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();

    // The restart restores the groups as the last marker left them, and repairs the log.
    let collector = Collector::start(&bootstrap, &["out"]);
    let mut sluice = Sluice::start(&config_path, &log);
    produce(&bootstrap, "iot-in", few(15, PER_DEVICE).chain((0..FEW).map(|d| input(d, 1000))));
    let want: HashMap<(String, i64), (u64, i64)> = expected().into_iter().filter(|((dn, _), _)| (0..FEW).any(|d| device(d) == *dn)).collect();
    let done = collector.wait_for(Duration::from_secs(120), |r| correct(&windows(r), &want) == want.len());
    let got = windows(&collector.records());
    assert!(done, "{}; log:\n{}", wrong(&got, &want), tail(&log, 40));
    check(&got, &want, "");
    assert!(tail(&log, 100_000).contains("checkpoint cut short"), "the restore saw the cut-short checkpoint");
    assert!(sluice.terminate(Duration::from_secs(30)).success());
}
