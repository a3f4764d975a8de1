//! The files of `deploy/` stay true to the code, checked by what they mean, not by the source
//! text: the Grafana dashboard is valid JSON and shows the main metrics (that Sluice serves every
//! metric it queries is checked against a running binary's `/metrics` by
//! `metrics::readyz_follows_kafka_and_mqtt`), the Kubernetes ConfigMap holds a configuration
//! Sluice's own parser accepts, its probes get `/healthz` (liveness) and `/readyz` (readiness)
//! on the container port of the configured admin address, the Prometheus scrape target is the
//! admin server's default address as Sluice's parser fills it in, and the systemd unit runs
//! `sluice run` on its configuration.

use std::collections::BTreeMap;
use std::path::Path;

use sluice_testkit::metric_names;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn grafana_dashboard_queries_only_defined_metrics() {
    let dash: serde_json::Value = serde_json::from_str(&read("deploy/grafana/sluice-dashboard.json")).expect("the dashboard is valid JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "main panels present");
    let mut queried = 0;
    for p in panels {
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("panel {} has no targets", p["title"]));
        assert!(!targets.is_empty(), "panel {} has no queries", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "panel {}: `{expr}` queries no Sluice metric", p["title"]);
            queried += names.len();
        }
    }
    assert!(queried >= 10);
    // The main panels: throughput per rule, errors, consumer lag, dead letters, integration codes.
    for needed in [
        "sluice_rule_passed_records_total",
        "sluice_rule_output_records_total",
        "sluice_rule_failed_records_total",
        "sluice_source_decode_errors_total",
        "sluice_sink_errors_total",
        "sluice_kafka_consumer_lag_records",
        "sluice_sink_dead_letters_total",
        "sluice_integration_requests_total",
        "sluice_kafka_committed_offset",
    ] {
        assert!(panels.iter().any(|p| p.to_string().contains(needed)), "no panel shows {needed}");
    }
    // Panels do not overlap.
    let mut cells = std::collections::HashSet::new();
    for p in panels {
        let g = &p["gridPos"];
        let (x, y, w, h) = (g["x"].as_u64().unwrap(), g["y"].as_u64().unwrap(), g["w"].as_u64().unwrap(), g["h"].as_u64().unwrap());
        assert!(x + w <= 24, "panel {} is wider than the grid", p["title"]);
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "panel {} overlaps another", p["title"]);
            }
        }
    }
}

#[test]
fn kubernetes_configmap_holds_a_valid_configuration() {
    let yaml = read("deploy/k8s/sluice.yaml");
    let start = yaml.find("  sluice.toml: |\n").expect("sluice.toml in the ConfigMap") + "  sluice.toml: |\n".len();
    let toml: String = yaml[start..].lines().take_while(|l| l.starts_with("    ") || l.is_empty()).map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l))).collect();
    let toml = toml.replace("@POD_NAME@", "sluice-0");
    let cfg = sluice::config::Config::parse(Path::new("deploy/k8s/sluice.yaml#sluice.toml"), &toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let listen = cfg.admin.expect("admin server for the probes").listen;
    assert_eq!(listen, "0.0.0.0:9898");
    // The container port named `metrics` is the admin server's, and both probes get it.
    let port = yaml.lines().map(str::trim).filter_map(|l| l.strip_prefix("- ")).map(flow_map).find(|m| m.get("name").map(String::as_str) == Some("metrics")).expect("a container port named metrics");
    assert_eq!(port.get("containerPort").map(String::as_str), listen.rsplit(':').next(), "the metrics port is the admin server's");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let lines: Vec<&str> = yaml.lines().map(str::trim).collect();
        let at = lines.iter().position(|l| *l == format!("{probe}:")).unwrap_or_else(|| panic!("no {probe}"));
        let get = flow_map(lines[at + 1].strip_prefix("httpGet:").unwrap_or_else(|| panic!("{probe} is not an httpGet")));
        assert_eq!((get.get("path").map(String::as_str), get.get("port").map(String::as_str)), (Some(path), Some("metrics")), "{probe}");
    }
}

/// A YAML flow mapping of plain scalars, `{ a: b, c: d }`.
fn flow_map(text: &str) -> BTreeMap<String, String> {
    let inner = text.trim().strip_prefix('{').and_then(|t| t.strip_suffix('}')).unwrap_or("");
    inner.split(',').filter_map(|kv| kv.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect()
}

/// The `key=value` settings of a systemd unit, by section.
fn unit_settings(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.entry((section.clone(), k.to_string())).or_default().push(v.to_string());
        }
    }
    out
}

#[test]
fn prometheus_scrapes_the_admin_default_address() {
    // The [admin] default, as Sluice's parser fills it in.
    let minimal = sluice_testkit::config::table(serde_json::json!({
        "rules": {"paths": []},
        "sources": [{"type": "file", "path": "in.jsonl"}],
        "sink": {"type": "file", "dir": "out"},
        "admin": {},
    }));
    let cfg = sluice::config::Config::parse(Path::new("minimal.toml"), &toml::to_string(&minimal).unwrap()).unwrap_or_else(|e| panic!("{e}"));
    let default_listen = cfg.admin.expect("[admin]").listen;
    assert_eq!(default_listen, "127.0.0.1:9898");
    // The first job scrapes /metrics there.
    let prom = read("deploy/prometheus.yml");
    let lines: Vec<&str> = prom.lines().map(str::trim).collect();
    let job = lines.iter().position(|l| *l == "- job_name: sluice").expect("the sluice job");
    let next_job = lines[job + 1..].iter().position(|l| l.starts_with("- job_name:")).map_or(lines.len(), |i| job + 1 + i);
    let job_lines = &lines[job..next_job];
    assert!(job_lines.contains(&"metrics_path: /metrics"), "{job_lines:?}");
    let targets = job_lines.iter().find_map(|l| l.strip_prefix("- targets:")).expect("static targets");
    let targets: Vec<String> = serde_json::from_str(targets.trim()).expect("a list of targets");
    assert_eq!(targets, vec![default_listen], "scrape target is the [admin] default");
    // The unit runs the binary on the configuration it installs.
    let unit = unit_settings(&read("deploy/systemd/sluice.service"));
    let get = |section: &str, key: &str| unit.get(&(section.to_string(), key.to_string())).cloned().unwrap_or_default();
    assert_eq!(get("Service", "ExecStart"), vec!["/usr/local/bin/sluice run --config /etc/sluice/sluice.toml"]);
    assert_eq!(get("Service", "KillSignal"), vec!["SIGTERM"]);
}
