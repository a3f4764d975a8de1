//! The MQTT integration path, request bytes → output records: a 2-entry measure point request
//! (seed 003) is judged by the device registry of `models/` and run through the sample rules of
//! `rules/`. Run: `cargo bench --bench mqtt_path -- --warm-up-time 2 --measurement-time 5`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::engine::{Engine, EngineOptions, RuleSet, Scratch};
use sluice::flow::OutputRecord;
use sluice::message::{Message, Metadata};
use sluice::registry::Registry;
use sluice::rule::expr::Env;
use sluice::source::decoder::Decoders;
use sluice::source::mqtt::handle_request;

/// Seed 003's measure point request, two entries (two registered devices of `productKey1`).
const REQUEST: &str = r#"{"id":"123","version":"1.0","params":[{"deviceKey":"device1","measurepoints":{"Power":{"value":1,"quality":9},"temp":1.02,"branchCurr":["1.02","2.02","7.93"]},"time":123456},{"deviceKey":"device2","measurepoints":{"Power":{"value":2,"quality":9},"temp":2.02,"branchCurr":["2.02","3.02","9.93"]},"time":123567}],"method":"integration.measurepoint.post"}"#;
const TOPIC: &str = "sys/productKey1/integration/measurepoint/post";

struct World {
    registry: Arc<Registry>,
    decoders: Decoders,
    engine: Engine,
}

fn world() -> World {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let registry = Arc::new(Registry::load(&root.join("models"), None).expect("models/ loads"));
    let (rules, errors) = sluice::rule::compile_paths(&[root.join("rules")]);
    assert!(errors.is_empty(), "rules/ compiles: {errors:?}");
    let env = Env { devices: Box::new(registry.clone()), ..Env::default() };
    let engine = Engine::new(RuleSet::new(rules), env, EngineOptions::default());
    let decoders = Decoders::new(root.join("decoders"), Duration::from_millis(50), 16 << 20);
    World { registry, decoders, engine }
}

/// One request through the validator and the engine, as the MQTT source and a pipeline worker
/// run it.
fn mqtt_path(w: &World, request: &[u8], scratch: &mut Scratch, out: &mut Vec<OutputRecord>) -> u32 {
    let h = handle_request(TOPIC, request, &*w.registry, &w.decoders, 1 << 20);
    let (topic, payload) = h.forward.expect("accepted entries");
    let msg = Message { topic, payload: payload.into(), meta: Metadata { source: Arc::from("mqtt:bench"), received_ms: 1, id: 1, mqtt_pkid: Some(1), ..Metadata::default() } };
    w.engine.process(&msg, 1, scratch, out);
    h.code
}

fn bench(c: &mut Criterion) {
    let w = world();
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let code = mqtt_path(&w, REQUEST.as_bytes(), &mut scratch, &mut out);
    assert_eq!(code, 200);
    assert_eq!(out.len(), 2, "one record per entry: {out:?}");
    assert!(out.iter().all(|r| !r.is_error && r.topic == "iot-integration-measurepoint"), "{out:?}");

    let mut g = c.benchmark_group("mqtt_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("measurepoint_2_entries", |b| {
        b.iter(|| {
            out.clear();
            black_box(mqtt_path(&w, black_box(REQUEST.as_bytes()), &mut scratch, &mut out));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
