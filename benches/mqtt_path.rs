//! The MQTT integration path, request bytes → output records: a 2-entry measure point request
//! (seed 003) is judged by the device registry of `models/` and run through the sample rules of
//! `rules/`. Run: `cargo bench --bench mqtt_path -- --warm-up-time 2 --measurement-time 5`.

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::devices::Registry;
use sluice::engine::pipeline::Clock;
use sluice::engine::stage::WorkerStage;
use sluice::engine::{Engine, EngineOptions, RuleSet};
use sluice::flow::{Ack, Delivery, Envelope, OutputRecord};
use sluice::integration::Validator;
use sluice::message::{Message, Metadata};
use sluice::rule::expr::Env;
use sluice::source::decoder::Decoders;
use sluice::source::mqtt::request::{intake, Intake};

/// The allocator of the `sluice` binary (src/main.rs), so the figures are what ships.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Seed 003's measure point request, two entries (two registered devices of `productKey1`).
const REQUEST: &str = r#"{"id":"123","version":"1.0","params":[{"deviceKey":"device1","measurepoints":{"Power":{"value":1,"quality":9},"temp":1.02,"branchCurr":["1.02","2.02","7.93"]},"time":123456},{"deviceKey":"device2","measurepoints":{"Power":{"value":2,"quality":9},"temp":2.02,"branchCurr":["2.02","3.02","9.93"]},"time":123567}],"method":"integration.measurepoint.post"}"#;
const TOPIC: &str = "sys/productKey1/integration/measurepoint/post";

struct World {
    registry: Arc<Registry>,
    decoders: Decoders,
    stage: WorkerStage,
}

fn world() -> World {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let registry = Arc::new(Registry::load(&root.join("models"), None).expect("models/ loads"));
    let (rules, errors) = sluice::control::compile_paths(&[root.join("rules")]);
    assert!(errors.is_empty(), "rules/ compiles: {errors:?}");
    let env = Env { devices: Box::new(registry.clone()), ..Env::default() };
    let engine = Arc::new(Engine::new(RuleSet::new(rules), env, EngineOptions::default()));
    let decoders = Decoders::new(root.join("decoders"), Duration::from_millis(50), 16 << 20);
    let stage = WorkerStage::new(0, engine, Some(registry.clone()), Clock::Fixed(1));
    World { registry, decoders, stage }
}

/// One request as the MQTT source and a pipeline worker run it: the source's intake, the raw
/// request in an envelope, then the worker stage (decode, judge, split, rules); the ack brings
/// the verdict back.
fn mqtt_path(w: &mut World, request: &Bytes) -> (u32, Vec<OutputRecord>) {
    let Intake::Forward { topic, payload, .. } = intake(TOPIC, request, &w.decoders, 1 << 20) else {
        panic!("a JSON request is forwarded");
    };
    let msg = Message { topic, payload, meta: Metadata { source: Arc::from("mqtt:bench"), received_ms: 1, id: 1, mqtt_pkid: Some(1), ..Metadata::default() } };
    let code = Arc::new(AtomicU32::new(0));
    let c = code.clone();
    let ack = Ack::judged(|_| {}, move |_, v| c.store(v.map_or(0, |v| v.code), Ordering::Relaxed));
    let validator: Arc<dyn Validator> = w.registry.clone();
    let batch = w.stage.handle(Envelope::request(msg, ack, validator)).expect("accepted entries");
    batch.ack.done(Delivery::Delivered);
    (code.load(Ordering::Relaxed), batch.records)
}

fn bench(c: &mut Criterion) {
    let mut w = world();
    let request = Bytes::from_static(REQUEST.as_bytes());
    let (code, out) = mqtt_path(&mut w, &request);
    assert_eq!(code, 200);
    assert_eq!(out.len(), 2, "one record per entry: {out:?}");
    assert!(out.iter().all(|r| !r.is_error && &*r.topic == "iot-integration-measurepoint"), "{out:?}");

    let mut g = c.benchmark_group("mqtt_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("measurepoint_2_entries", |b| b.iter(|| black_box(mqtt_path(&mut w, black_box(&request)))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
