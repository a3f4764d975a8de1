//! Broker outages while `sluice` runs; nothing may be lost, and Sluice recovers by itself.
//!
//! - `broker_outage_*`: the only broker is killed mid-run and restarted on the same port and
//!   database, with the default (idempotent) producer.
//! - `sink_outage_*`: inputs come from one broker and outputs go to another, which is killed.
//!   The source could go on reading, so the pipeline must apply backpressure: consumption
//!   pauses, memory stays flat, nothing is committed past what was delivered; records time out
//!   in the producer and are produced again with backoff; after the restart every output
//!   arrives. This one runs without idempotence: after a local message timeout librdkafka bumps
//!   the idempotent producer's epoch (InitProducerId with its current id), which tansu 0.6 does
//!   not implement (its broker task panics and every later produce fails).

use sluice_testkit as support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use support::admin::{wait_check, wait_until};
use support::config::merge;
use support::metrics::{wait_metric, Metrics};
use support::{kafka_config, produce, tail, write, Broker, Collector, In, Rec, Sluice};

const RULE: &str = "sql = \"\"\"SELECT deviceName() AS dn, seq FROM \"/sys/+/+/thing/event/property/post\" \"\"\"\n[[actions]]\ntopic = \"out\"\nkey = \"${dn}\"\n";

fn inputs(n: u64) -> impl Iterator<Item = In> {
    (0..n).map(|seq| In::iot(&format!("/sys/pk1/dev{}/thing/event/property/post", seq % 100), json!({"seq": seq, "items": {"temp": {"value": 20, "time": 1}}}).to_string()))
}

fn seqs(recs: &[Rec]) -> HashSet<u64> {
    recs.iter().map(|r| r.json()["seq"].as_u64().expect("seq")).collect()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

#[test]
fn broker_outage_and_restart_lose_nothing() {
    let _heavy = support::heavy();
    const N: u64 = 30_000;
    let started = Instant::now();
    let mut broker = Broker::start();
    let dir = support::temp_dir("sluice-test-");
    let rules = dir.path().join("rules");
    write(&rules.join("r.toml"), RULE);
    broker.create_topics(&[("iot-in", 2), ("out", 2), ("sluice-errors", 1)]);
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "iot-in", inputs(N));

    let config_path = dir.path().join("sluice.toml");
    let config = kafka_config(&bootstrap, "outage", &["iot-in"], &rules);
    let log = dir.path().join("sluice.log");
    let collector = Collector::start(&bootstrap, &["out"]);
    let (mut sluice, admin) = Sluice::start_admin(&config, &config_path, &log);
    assert!(collector.wait_for(Duration::from_secs(60), |r| r.len() >= (N / 4) as usize), "no progress before the outage; log:\n{}", tail(&log, 60));

    broker.kill();
    let at = collector.len();
    let killed = Instant::now();
    eprintln!("outage: broker killed after {at} outputs");
    // Sluice sees the outage (its sink is not ready), which lasts 8 s: the scenario's length, not
    // a wait for state.
    assert!(wait_check(&admin, "sink:kafka", false, Duration::from_secs(30)), "the sink never saw the outage; log:\n{}", tail(&log, 60));
    std::thread::sleep(Duration::from_secs(8).saturating_sub(killed.elapsed()));
    assert!(sluice.running(), "sluice must ride out the outage; log:\n{}", tail(&log, 60));
    broker.restart();
    eprintln!("outage: broker restarted after {:.1}s", killed.elapsed().as_secs_f64());

    let complete = collector.wait_for(Duration::from_secs(180), |r| r.len() as u64 >= N && seqs(r).len() as u64 == N);
    let records = collector.records();
    let seen = seqs(&records);
    assert!(complete, "{} of {N} inputs have their output; log:\n{}", seen.len(), tail(&log, 80));
    assert_eq!(seen, (0..N).collect::<HashSet<u64>>());
    // Sluice also recovers its commits by itself: its group session may have expired during
    // the outage (the assignment is then lost, nothing is committed for it, and the records
    // are read again once it rejoins), so wait for the committed offsets to reach the end.
    let end = broker.end_offsets("iot-in", 2);
    broker.wait_committed("outage", "iot-in", 2, Duration::from_secs(120));
    let recovered = broker.committed("outage", "iot-in", 2);
    assert_eq!(recovered, end, "committed offsets never caught up after the outage; log:\n{}", tail(&log, 60));
    let status = sluice.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}; log:\n{}", tail(&log, 40));
    let (committed, end) = (broker.committed("outage", "iot-in", 2), broker.end_offsets("iot-in", 2));
    assert_eq!(committed, end, "committed offsets after a graceful stop; log:\n{}", tail(&log, 60));
    eprintln!("outage: {N} inputs, {} outputs ({} duplicates), total {:.1}s", records.len(), records.len() - seen.len(), started.elapsed().as_secs_f64());
}

#[test]
fn sink_outage_applies_backpressure_and_loses_nothing() {
    let _heavy = support::heavy();
    const N: u64 = 30_000;
    let started = Instant::now();
    let inputs_broker = Broker::start();
    let mut outputs_broker = Broker::start();
    let dir = support::temp_dir("sluice-test-");
    let rules = dir.path().join("rules");
    write(&rules.join("r.toml"), RULE);
    inputs_broker.create_topics(&[("iot-in", 2)]);
    outputs_broker.create_topics(&[("out", 2), ("sluice-errors", 1)]);
    produce(&inputs_broker.bootstrap(), "iot-in", inputs(N));

    let mut config = kafka_config(&outputs_broker.bootstrap(), "bp", &["iot-in"], &rules);
    merge(&mut config, json!({"engine": {"channel_capacity": 64}, "sink": {"max_in_flight": 1000, "idempotence": false, "properties": {"message.timeout.ms": "3000"}}}));
    // The source reads from the other broker.
    let source = support::config::source(&mut config, 0);
    source.insert("brokers".into(), inputs_broker.bootstrap().into());
    source.insert("max_in_flight".into(), 2000.into());
    let config_path = dir.path().join("sluice.toml");
    let log = dir.path().join("sluice.log");
    let collector = Collector::start(&outputs_broker.bootstrap(), &["out"]);
    let (mut sluice, admin) = Sluice::start_admin(&config, &config_path, &log);
    assert!(collector.wait_for(Duration::from_secs(60), |r| r.len() >= (N / 5) as usize), "no progress before the outage; log:\n{}", tail(&log, 60));

    outputs_broker.kill();
    let killed = Instant::now();
    eprintln!("sink outage: output broker killed after {} outputs", collector.len());
    // The source pauses, and stays paused while records time out in the producer
    // (`message.timeout.ms` = 3 s) and are produced again.
    let source = [("source", "kafka:bp:iot-in")];
    assert!(wait_metric(&admin, "sluice_kafka_source_paused", &source, Duration::from_secs(30), |v| v == 1.0), "the source must pause; log:\n{}", tail(&log, 60));
    let committed_during = inputs_broker.committed("bp", "iot-in", 2);
    let rss_1 = rss_kib(sluice.pid());
    // Memory is watched over 6 s of the outage: the scenario's length, not a wait for state.
    std::thread::sleep(Duration::from_secs(6));
    let retried = || Metrics::try_fetch(&admin).map_or(0.0, |m| m.sum("sluice_sink_retries_total"));
    assert!(wait_until(Duration::from_secs(60), || retried() > 0.0), "records timed out during the outage and were produced again; log:\n{}", tail(&log, 60));
    let rss_2 = rss_kib(sluice.pid());
    let paused_metrics = Metrics::fetch(&admin);
    assert!(sluice.running(), "sluice must ride out the outage; log:\n{}", tail(&log, 60));
    assert_eq!(inputs_broker.committed("bp", "iot-in", 2), committed_during, "nothing may be committed while nothing is delivered");
    let committed_total: i64 = committed_during.iter().map(|o| o.max(&0)).sum();
    assert!((committed_total as u64) < N, "the source must not have committed everything ({committed_total})");
    assert_eq!(paused_metrics.value("sluice_kafka_source_paused", &source), 1.0, "the source stays paused during the outage");
    assert!(rss_2 < rss_1 + 20 * 1024, "memory grew during the outage: {rss_1} KiB -> {rss_2} KiB");
    outputs_broker.restart();
    eprintln!("sink outage: output broker restarted after {:.1}s (sluice RSS {rss_1} -> {rss_2} KiB during the outage)", killed.elapsed().as_secs_f64());

    let complete = collector.wait_for(Duration::from_secs(180), |r| r.len() as u64 >= N && seqs(r).len() as u64 == N);
    let records = collector.records();
    let seen = seqs(&records);
    assert!(complete, "{} of {N} inputs have their output; log:\n{}", seen.len(), tail(&log, 80));
    let pauses = Metrics::fetch(&admin).value("sluice_kafka_source_pauses_total", &source);
    let status = sluice.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}; log:\n{}", tail(&log, 40));
    assert_eq!(inputs_broker.committed("bp", "iot-in", 2), inputs_broker.end_offsets("iot-in", 2));
    eprintln!("sink outage: {N} inputs, {} outputs ({} duplicates), pauses: {pauses}, total {:.1}s", records.len(), records.len() - seen.len(), started.elapsed().as_secs_f64());
}
