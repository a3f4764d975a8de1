//! Sluice's integration tests, one module per area, linked as one test binary (`it`) on the
//! shared test kit (`crates/testkit`). Tests run in parallel threads of this one process: each
//! starts its services on its own ports and in its own temporary folders, and a test that needs
//! a process of its own (global state: the health checks, the metrics registry, the
//! environment) runs `sluice` as a child process (`env!("CARGO_BIN_EXE_sluice")`).
//!
//! `cargo test --test it kafka_` runs the Kafka tests, `cargo test --test it -- --list` lists
//! them all.

mod admin_http;
mod architecture;
mod console;
mod deploy;
mod fuzz_regressions;
mod hot_reload;
mod http_upload;
mod kafka_bad_input;
mod kafka_crash;
mod kafka_e2e;
mod kafka_headers;
mod kafka_outage;
mod kafka_scale_out;
mod kafka_state;
mod local_stack;
mod metrics;
mod mqtt_channel;
mod mqtt_crash;
mod mqtt_integration;
mod mqtt_tls;
mod quickstart;
mod readme;
mod registry_flow;
mod rules_api;
mod windows;

/// The kit finds the binary cargo built for these tests.
#[test]
fn the_kit_runs_the_binary_cargo_built() {
    let kit = sluice_testkit::sluice_bin().canonicalize().expect("the kit's sluice binary");
    let cargo = std::path::Path::new(env!("CARGO_BIN_EXE_sluice")).canonicalize().expect("cargo's sluice binary");
    assert_eq!(kit, cargo);
}
