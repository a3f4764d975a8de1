//! A client of Sluice's admin server (rules API, `/metrics`), and a configuration running the
//! integration channel (MQTT) into the file sink with the admin server on a free port: a
//! long-running Sluice that needs no Kafka.

use std::path::Path;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::Value;

/// Calls the admin server at `base` with a bearer token.
pub struct Admin {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The token sent (None: no `Authorization` header).
    pub token: Option<String>,
    client: Client,
}

impl Admin {
    /// A client of `base`.
    pub fn new(base: &str, token: Option<&str>) -> Admin {
        Admin { base: base.trim_end_matches('/').to_string(), token: token.map(str::to_string), client: Client::builder().timeout(Duration::from_secs(30)).build().expect("http client") }
    }

    /// One request; the status and the JSON body (a string when the body is not JSON).
    pub fn call(&self, method: Method, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().expect("admin request");
        let status = resp.status().as_u16();
        let text = resp.text().expect("admin body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None)
    }

    /// `POST path` with a body.
    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.call(Method::POST, path, Some(body))
    }

    /// The rule `name` in `GET /api/v1/rules`, if listed.
    pub fn rule(&self, name: &str) -> Option<Value> {
        let (s, v) = self.get("/api/v1/rules");
        assert_eq!(s, 200, "{v}");
        v["rules"].as_array().and_then(|a| a.iter().find(|r| r["name"] == name).cloned())
    }

    /// `GET /metrics` as text.
    pub fn metrics(&self) -> String {
        self.client.get(format!("{}/metrics", self.base)).send().expect("metrics").text().expect("metrics body")
    }

    /// Waits until the admin server answers `/healthz`.
    pub fn wait_up(&self, timeout: Duration) {
        let up = crate::poll_until(timeout, Duration::from_millis(50), || self.client.get(format!("{}/healthz", self.base)).send().is_ok());
        assert!(up, "admin server not up at {}", self.base);
    }
}

pub use crate::wait_until;

/// `GET http://{admin}/readyz`: status and body (None while the server does not answer).
pub fn readyz(admin: &str) -> Option<(u16, Value)> {
    let r = Client::builder().timeout(Duration::from_secs(5)).build().ok()?.get(format!("http://{admin}/readyz")).send().ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().ok()?))
}

/// Whether `/readyz`'s check `name` is ok (None when there is no such check).
pub fn ready_check(body: &Value, name: &str) -> Option<bool> {
    body["checks"].as_array()?.iter().find(|c| c["name"] == name)?["ok"].as_bool()
}

/// Waits until `/readyz` at `admin` shows check `name` as `ok`; false on timeout.
pub fn wait_check(admin: &str, name: &str, ok: bool, timeout: Duration) -> bool {
    crate::poll_until(timeout, Duration::from_millis(100), || readyz(admin).is_some_and(|(_, body)| ready_check(&body, name) == Some(ok)))
}

/// `sluice run` configuration: rules from `rules` (watched unless `watch` is false), the
/// integration channel on `mqtt_url`, the file sink into `out`, the admin server on
/// `admin_port` with `token`.
pub fn mqtt_file_config(rules: &Path, mqtt_url: &str, out: &Path, admin_port: u16, token: &str, watch: bool) -> toml::Table {
    crate::config::table(serde_json::json!({
        "rules": {"paths": [crate::config::path(rules)], "watch": watch, "debounce_ms": 100},
        "engine": {"shutdown_timeout_ms": 10000},
        "sources": [{"type": "mqtt", "url": mqtt_url, "client_id": "sluice-under-test", "clean_session": true, "reconnect_backoff_ms": 100}],
        "sink": {"type": "file", "dir": crate::config::path(out)},
        "admin": {"listen": format!("127.0.0.1:{admin_port}"), "token": token},
    }))
}

/// The records of a file-sink output topic (`<out>/<topic>.jsonl`), in order.
pub fn file_records(out: &Path, topic: &str) -> Vec<Value> {
    std::fs::read_to_string(out.join(format!("{topic}.jsonl"))).unwrap_or_default().lines().map(|l| serde_json::from_str(l).expect("output line is JSON")).collect()
}

/// A running `sluice run` on the integration channel of its own Mosquitto, writing to the file
/// sink, with its rules folder and admin client. Everything stops on drop.
pub struct Instance {
    /// The broker.
    pub mosquitto: crate::mosquitto::Mosquitto,
    /// The test's folder (rules, out, config, log).
    pub dir: tempfile::TempDir,
    /// The rules folder.
    pub rules: std::path::PathBuf,
    /// The file sink's folder.
    pub out: std::path::PathBuf,
    /// The process.
    pub sluice: crate::Sluice,
    /// Its log.
    pub log: std::path::PathBuf,
    /// A client of its admin server with `token`.
    pub admin: Admin,
}

impl Instance {
    /// Writes `rules` (file name, text) and starts Sluice on them; returns once the admin
    /// server answers.
    pub fn start(prefix: &str, token: &str, watch: bool, rules: &[(&str, &str)]) -> Instance {
        let mosquitto = crate::mosquitto::Mosquitto::start();
        let dir = crate::temp_dir(prefix);
        let (rules_dir, out) = (dir.path().join("rules"), dir.path().join("out"));
        for (name, text) in rules {
            crate::write(&rules_dir.join(name), text);
        }
        let config = dir.path().join("sluice.toml");
        let log = dir.path().join("sluice.log");
        let url = mosquitto.url();
        let (sluice, port) = crate::Sluice::start_with_admin(&config, &log, |port| mqtt_file_config(&rules_dir, &url, &out, port, token, watch));
        let admin = Admin::new(&format!("http://127.0.0.1:{port}"), Some(token));
        Instance { mosquitto, dir, rules: rules_dir, out, sluice, log, admin }
    }
}
