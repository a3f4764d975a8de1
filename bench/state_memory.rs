//! Memory of window state (issue 13): 100,000 devices (N, the first argument) × one 60 s
//! tumbling window each, through the engine's own code path (a rule set with one windowed
//! rule, `Engine::process` per message, `Engine::tick` for the clock). Prints the process RSS
//! and the groups held before the windows open, while they are open, and after they have closed
//! and the idle groups were dropped; and the state's serialized size (what a checkpoint of
//! every group would write). Run:
//! `cargo run --release --example state_memory -- 100000`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sluice::engine::{Engine, EngineOptions, RuleSet, Scratch};
use sluice::message::{Message, Metadata};
use sluice::rule::compile_str;
use sluice::rule::expr::Env;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    kb / 1024.0
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let text = "name = \"avg\"\nsql = \"\"\"SELECT deviceName() AS dn, avg(items.temp.value) AS temp, count(*) AS n FROM \"/sys/+/+/thing/event/property/post\" GROUP BY deviceName(), TUMBLINGWINDOW(ss, 60)\"\"\"\n[[actions]]\ntopic = \"out\"\n";
    let rule = compile_str(Path::new("avg.toml"), text).expect("the rule compiles");
    let engine = Engine::new(RuleSet::new(vec![rule]), Env::default(), EngineOptions::default());
    let (mut scratch, mut out) = (Scratch::default(), Vec::new());
    let payload = br#"{"items":{"temp":{"value":21.5,"time":1700000000000}}}"#.to_vec();
    let t0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000;
    println!("devices: {n}; RSS before: {:.1} MB", rss_mb());
    let started = Instant::now();
    for round in 0..3i64 {
        for d in 0..n {
            let msg = Message {
                topic: format!("/sys/pk/dev-{d:07}/thing/event/property/post"),
                payload: payload.clone().into(),
                meta: Metadata { source: Arc::from("bench"), received_ms: t0, id: d as u64, ..Metadata::default() },
            };
            out.clear();
            engine.process(&msg, t0 + round * 1_000, &mut scratch, &mut out);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let state_bytes: usize = engine.state_snapshot_all_bytes();
    println!(
        "3 records per device into open windows: {:.2} s ({:.2} µs/record); groups held: {}; RSS: {:.1} MB; state serialized: {:.1} MB ({:.0} bytes/group)",
        secs,
        secs * 1e6 / (3 * n) as f64,
        engine.state_keys("avg"),
        rss_mb(),
        state_bytes as f64 / 1e6,
        state_bytes as f64 / n.max(1) as f64
    );
    // The clock passes the windows' end: every window is emitted.
    let emitted: usize = engine.tick(t0 + 61_000).iter().map(|(_, r)| r.len()).sum();
    println!("after the windows close: {emitted} windows emitted; groups held: {}; RSS: {:.1} MB", engine.state_keys("avg"), rss_mb());
    // Past the idle timeout (one window length) the empty groups go.
    engine.tick(t0 + 200_000);
    println!("after the idle timeout: groups held: {}; RSS: {:.1} MB (mimalloc keeps freed pages for reuse)", engine.state_keys("avg"), rss_mb());
}
