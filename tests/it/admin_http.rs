//! The admin HTTP server: `/healthz`, `/readyz`, `/metrics` in the Prometheus text format, and
//! the integration channel's recent errors, served by the real binary's `[admin]` section.
//! (`tests/metrics.rs` checks the binary's metrics and readiness against real brokers.)

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice::integration::channel_log::{self, ErrorRecord};
use sluice::shutdown::Shutdown;
use sluice::telemetry::health;

/// In a process of its own: the health checks and the recent errors are the process's, and
/// the other tests of this binary would add theirs.
#[test]
fn serves_health_metrics_and_recent_integration_errors() {
    if !sluice_testkit::own_process(module_path!(), "serves_health_metrics_and_recent_integration_errors") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Shutdown::new();
    let server = rt.spawn(sluice::telemetry::http::serve(listener, stop.clone()));

    sluice::telemetry::metrics::SOURCE_RECEIVED_RECORDS.with_label_values(&["admin-test"]).inc_by(3);
    channel_log::error(ErrorRecord {
        time_ms: 1,
        source: "mqtt:test".into(),
        topic: "sys/pk/integration/event/post".into(),
        request_id: Some(serde_json::json!("123")),
        stage: "validation".into(),
        code: 1257,
        message: "device `nosuch` not found".into(),
    });

    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let base = format!("http://{addr}");
    assert_eq!(client.get(format!("{base}/healthz")).send().unwrap().text().unwrap(), "ok\n");

    let metrics = client.get(format!("{base}/metrics")).send().unwrap();
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = metrics.text().unwrap();
    assert!(text.contains("sluice_source_received_records_total{source=\"admin-test\"} 3"), "{text}");
    assert!(text.contains(&format!("sluice_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))), "{text}");

    // Readiness: 503 with no check or a failing one, 200 when all pass; the body names them.
    let ready = |expected: u16| -> serde_json::Value {
        let r = client.get(format!("{base}/readyz")).send().unwrap();
        assert_eq!(r.status().as_u16(), expected);
        r.json().unwrap()
    };
    assert_eq!(ready(503)["checks"], serde_json::json!([]));
    health::set("admin-test", false, "connecting");
    let body = ready(503);
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"], serde_json::json!([{"name": "admin-test", "ok": false, "detail": "connecting"}]));
    health::set("admin-test", true, "connected");
    assert_eq!(ready(200)["checks"][0]["detail"], "connected");

    let errors: serde_json::Value = client.get(format!("{base}/integration/errors")).send().unwrap().json().unwrap();
    let last = errors.as_array().and_then(|a| a.last()).cloned().unwrap_or_default();
    assert_eq!(last["code"], 1257, "{errors}");
    assert_eq!(last["requestId"], "123");
    assert_eq!(last["stage"], "validation");

    assert_eq!(client.get(format!("{base}/nothing")).send().unwrap().status(), 404);
    stop.trigger();
    rt.block_on(server).unwrap().unwrap();
}

/// `sluice run` with `[admin]` serves while it runs and refuses a config whose admin address is
/// taken, naming it.
#[test]
fn the_binary_refuses_an_admin_address_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::File::create(&input).unwrap().write_all(b"").unwrap();
    let config = dir.path().join("c.toml");
    let text = sluice_testkit::config::table(serde_json::json!({
        "rules": {"paths": []},
        "admin": {"listen": addr.to_string()},
        "sources": [{"type": "file", "path": sluice_testkit::config::path(&input)}],
        "sink": {"type": "file", "dir": sluice_testkit::config::path(&dir.path().join("out"))},
    }));
    sluice_testkit::config::write_config(&config, &text);
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice")).args(["run", "--config"]).arg(&config).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("admin server: cannot listen on {addr}")), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
