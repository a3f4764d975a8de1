//! Hot-path benchmarks: rule compilation, and per-message parse → match → evaluate → serialize
//! with a ~300-byte property post and 10 matching rules, then with 10,000 rules whose filters
//! mostly do not match. Run: `cargo bench --bench engine`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::engine::{Engine, EngineOptions, RuleSet, Scratch};
use sluice::message::{Message, Metadata};
use sluice::rule::expr::Env;
use sluice::rule::{compile_str, Rule};

/// The allocator of the `sluice` binary (src/main.rs), so the figures are what ships.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A ~300-byte property post (seed 004 shape).
pub const PAYLOAD: &str = r#"{"iotId":"4z819VQHk6VSLmmBJfrf00107ee200","productKey":"pk0001","deviceName":"dev-000042","gmtCreate":1510799670074,"deviceType":"Ammeter","items":{"Power":{"value":"on","time":1510799670074},"temp":{"value":41.5,"time":1510799670074},"Position":{"time":1510292697470,"value":{"latitude":39.9,"longitude":116.38}}}}"#;
const TOPIC: &str = "/sys/pk0001/dev-000042/thing/event/property/post";

fn rule(i: usize, filter: &str) -> Rule {
    let (select, cond) = match i % 5 {
        0 => ("productKey, deviceName, items.temp.value AS temp", "items.temp.value > 38"),
        1 => ("deviceName() AS dn, items.Power.value AS power, gmtCreate", "items.Power.value = 'on'"),
        2 => ("*", "deviceType IN ('Ammeter', 'Meter')"),
        3 => ("deviceName, items.Position.value.latitude AS lat, items.Position.value.longitude AS lon", "items.Position.value.latitude BETWEEN 30 AND 50"),
        _ => ("iotId, items.temp.value * 1.8 + 32 AS temp_f, lower(deviceType) AS kind", "deviceName LIKE 'dev-%'"),
    };
    let text = format!("name = \"r{i}\"\nsql = \"\"\"\nSELECT {select}\nFROM \"{filter}\"\nWHERE {cond}\n\"\"\"\n[[actions]]\ntopic = \"out-{}\"\nkey = \"${{deviceName}}\"\n", i % 10);
    let text = if matches!(i % 5, 0 | 2 | 3) { text } else { text.replace("key = \"${deviceName}\"\n", "") };
    compile_str(Path::new(&format!("r{i}.toml")), &text).unwrap_or_else(|e| panic!("{e:?}"))
}

fn engine(rules: Vec<Rule>) -> Engine {
    Engine::new(RuleSet::new(rules), Env::default(), EngineOptions::default())
}

fn message() -> Message {
    Message { topic: TOPIC.into(), payload: PAYLOAD.as_bytes().to_vec().into(), meta: Metadata { source: Arc::from("bench"), received_ms: 1, id: 1, ..Metadata::default() } }
}

fn bench(c: &mut Criterion) {
    let msg = message();
    assert!(msg.payload.len() > 280 && msg.payload.len() < 340, "payload is {} bytes", msg.payload.len());

    let mut g = c.benchmark_group("compile");
    g.bench_function("rule", |b| b.iter(|| black_box(rule(black_box(0), "/sys/+/+/thing/event/property/post"))));
    g.finish();

    let ten = engine((0..10).map(|i| rule(i, "/sys/+/+/thing/event/property/post")).collect());
    let many = engine((0..10_000).map(|i| if i < 10 { rule(i, "/sys/+/+/thing/event/property/post") } else { rule(i, &format!("/sys/pk{i:05}/+/thing/event/property/post")) }).collect());
    let mut out = Vec::new();
    let mut scratch = Scratch::default();
    out.clear();
    ten.process(&msg, 1, &mut scratch, &mut out);
    assert_eq!(out.len(), 10, "all 10 rules produce output");
    out.clear();
    many.process(&msg, 1, &mut scratch, &mut out);
    assert_eq!(out.len(), 10, "10 of 10,000 rules match");

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("serde_json_value", |b| b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(black_box(&msg.payload)).unwrap())));
    g.bench_function("doc_node", |b| b.iter(|| black_box(sluice::doc::Node::parse(black_box(&msg.payload)).unwrap())));
    g.finish();

    let mut g = c.benchmark_group("process");
    g.throughput(Throughput::Elements(1));
    g.bench_function("10_rules", |b| {
        b.iter(|| {
            out.clear();
            black_box(ten.process(black_box(&msg), 1, &mut scratch, &mut out));
        })
    });
    g.bench_function("10000_rules_10_match", |b| {
        b.iter(|| {
            out.clear();
            black_box(many.process(black_box(&msg), 1, &mut scratch, &mut out));
        })
    });
    g.finish();

    // A windowed rule beside a stateless rule of the same shape (issue 13: at most 2× its
    // cost): 1,000 devices in turn, the clock 1 ms further each message, so each device's 60 s
    // window gets a record a second and closes (is emitted) once a minute.
    let devices: Vec<Message> = (0..1000)
        .map(|d| {
            let mut m = message();
            m.topic = format!("/sys/pk0001/dev-{d:06}/thing/event/property/post");
            m
        })
        .collect();
    let one = |sql: &str| {
        let text = format!("name = \"w\"\nsql = \"\"\"\n{sql}\n\"\"\"\n[[actions]]\ntopic = \"out\"\nkey = \"${{dn}}\"\n");
        engine(vec![compile_str(Path::new("w.toml"), &text).unwrap_or_else(|e| panic!("{e:?}"))])
    };
    let stateless = one("SELECT deviceName() AS dn, items.temp.value AS temp FROM \"/sys/+/+/thing/event/property/post\" WHERE items.temp.value IS NOT NULL");
    let windowed =
        one("SELECT deviceName() AS dn, avg(items.temp.value) AS temp FROM \"/sys/+/+/thing/event/property/post\" WHERE items.temp.value IS NOT NULL GROUP BY deviceName(), TUMBLINGWINDOW(ss, 60)");
    for (i, m) in devices.iter().enumerate() {
        windowed.process(m, 1_700_000_000_000 + i as i64, &mut scratch, &mut out);
    }
    out.clear();
    assert_eq!(windowed.state_keys("w"), 1000, "one group per device");
    let mut g = c.benchmark_group("state");
    g.throughput(Throughput::Elements(1));
    let mut n = 0usize;
    g.bench_function("1_stateless_rule", |b| {
        b.iter(|| {
            n += 1;
            out.clear();
            black_box(stateless.process(black_box(&devices[n % 1000]), 1_700_000_000_000 + n as i64, &mut scratch, &mut out));
        })
    });
    let mut n = 0usize;
    g.bench_function("1_tumbling_avg_per_device", |b| {
        b.iter(|| {
            n += 1;
            out.clear();
            black_box(windowed.process(black_box(&devices[n % 1000]), 1_700_000_000_000 + n as i64, &mut scratch, &mut out));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
