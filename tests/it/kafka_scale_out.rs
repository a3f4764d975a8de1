//! Scale-out: two `sluice` instances in one consumer group share the input partitions; one is
//! killed (SIGKILL) mid-run and the other takes over its partitions: nothing is lost.

use sluice_testkit as support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use support::metrics::Metrics;
use support::{kafka_config, produce, tail, write, Broker, Collector, In, Rec, Sluice};

const N: u64 = 40_000;
const PARTITIONS: i32 = 4;

/// How many partitions the instance with admin server `admin` has now
/// (`sluice_kafka_assigned_partitions`, set after every rebalance); 0 while it does not answer.
fn assigned(admin: &str) -> usize {
    Metrics::try_fetch(admin).map_or(0, |m| m.sum("sluice_kafka_assigned_partitions") as usize)
}

fn wait_until(timeout: Duration, f: impl FnMut() -> bool) -> bool {
    support::poll_until(timeout, Duration::from_millis(100), f)
}

#[test]
fn two_instances_share_partitions_and_one_takes_over() {
    let _heavy = sluice_testkit::heavy();
    let started = Instant::now();
    let broker = Broker::start();
    let dir = support::temp_dir("sluice-test-");
    broker.create_topics(&[("iot-in", PARTITIONS), ("out", 4), ("sluice-errors", 1)]);
    let bootstrap = broker.bootstrap();

    // Each instance tags its outputs, so the test can tell who did what.
    let mut instances = Vec::new();
    for name in ["a", "b"] {
        let rules = dir.path().join(format!("rules-{name}"));
        write(&rules.join("r.toml"), &format!("sql = \"\"\"SELECT deviceName() AS dn, seq FROM \"/sys/+/+/thing/event/property/post\" \"\"\"\n[[actions]]\ntopic = \"out\"\nkey = \"${{dn}}\"\n[actions.headers]\ninstance = \"{name}\"\n"));
        let config = dir.path().join(format!("sluice-{name}.toml"));
        let log = dir.path().join(format!("sluice-{name}.log"));
        let (sluice, admin) = Sluice::start_admin(&kafka_config(&bootstrap, "scale", &["iot-in"], &rules), &config, &log);
        instances.push((sluice, log, admin));
        if name == "a" {
            assert!(wait_until(Duration::from_secs(30), || assigned(&instances[0].2) == PARTITIONS as usize), "a gets every partition first; log:\n{}", tail(&instances[0].1, 40));
        }
    }
    let (log_a, log_b) = (instances[0].1.clone(), instances[1].1.clone());
    let (admin_a, admin_b) = (instances[0].2.clone(), instances[1].2.clone());
    let shared = wait_until(Duration::from_secs(60), || assigned(&admin_a) == 2 && assigned(&admin_b) == 2);
    assert!(shared, "the group must split 4 partitions 2 + 2; a:\n{}\nb:\n{}", tail(&log_a, 30), tail(&log_b, 30));
    eprintln!("scale-out: partitions shared 2 + 2 after {:.1}s", started.elapsed().as_secs_f64());

    let collector = Collector::start(&bootstrap, &["out"]);
    produce(&bootstrap, "iot-in", (0..N).map(|seq| In::iot(&format!("/sys/pk1/dev{}/thing/event/property/post", seq % 100), json!({"seq": seq}).to_string())));
    let by = |recs: &[Rec], who: &str| recs.iter().filter(|r| r.header("instance") == Some(who)).count();
    let both_busy = collector.wait_for(Duration::from_secs(120), |r| r.len() >= (N / 4) as usize && by(r, "a") > 0 && by(r, "b") > 0);
    assert!(both_busy, "both instances must work; a:\n{}\nb:\n{}", tail(&log_a, 30), tail(&log_b, 30));

    instances[1].0.kill9();
    let before = collector.records();
    eprintln!("scale-out: b killed after {} outputs (a {}, b {})", before.len(), by(&before, "a"), by(&before, "b"));
    let took_over = wait_until(Duration::from_secs(60), || assigned(&admin_a) == PARTITIONS as usize);
    assert!(took_over, "a must take over b's partitions; a:\n{}", tail(&log_a, 30));

    let seqs = |recs: &[Rec]| -> HashSet<u64> { recs.iter().map(|r| r.json()["seq"].as_u64().expect("seq")).collect() };
    let complete = collector.wait_for(Duration::from_secs(180), |r| r.len() as u64 >= N && seqs(r).len() as u64 == N);
    let records = collector.records();
    let seen = seqs(&records);
    assert!(complete, "{} of {N} inputs have their output; a:\n{}", seen.len(), tail(&log_a, 40));
    assert_eq!(seen, (0..N).collect::<HashSet<u64>>());
    // The survivor also commits what it took over, by itself, before it is stopped.
    let end = broker.end_offsets("iot-in", PARTITIONS);
    let caught_up = wait_until(Duration::from_secs(120), || broker.committed("scale", "iot-in", PARTITIONS) == end);
    assert!(caught_up, "committed offsets never caught up after the takeover; a:\n{}", tail(&log_a, 40));
    let status = instances[0].0.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}; log:\n{}", tail(&log_a, 40));
    assert_eq!(broker.committed("scale", "iot-in", PARTITIONS), broker.end_offsets("iot-in", PARTITIONS));
    eprintln!(
        "scale-out: {N} inputs, {} outputs (a {}, b {}), {} duplicates, total {:.1}s",
        records.len(),
        by(&records, "a"),
        by(&records, "b"),
        records.len() - seen.len(),
        started.elapsed().as_secs_f64()
    );
}
