//! The files of `deploy/` stay true to the code: the Grafana dashboard is valid JSON, queries
//! only metrics Sluice defines and shows the main ones, the Kubernetes ConfigMap holds a
//! configuration Sluice accepts and probes `/healthz` (liveness) and `/readyz` (readiness), and
//! the Prometheus scrape target is the admin server's default address.

use sluice_testkit as support;

use std::path::Path;

use support::metric_names;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn grafana_dashboard_queries_only_defined_metrics() {
    let dash: serde_json::Value = serde_json::from_str(&read("deploy/grafana/sluice-dashboard.json")).expect("the dashboard is valid JSON");
    let defined = read("src/telemetry/metrics.rs");
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
            for n in names {
                assert!(defined.contains(&format!("\"{n}\"")), "panel {}: metric {n} is not defined in src/telemetry/metrics.rs", p["title"]);
                queried += 1;
            }
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
    assert_eq!(cfg.admin.expect("admin server for the probes").listen, "0.0.0.0:9898");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert!(yaml.contains(&format!("{probe}:\n            httpGet: {{ path: {path}, port: metrics }}")), "{probe} on {path}");
    }
}

#[test]
fn prometheus_scrapes_the_admin_default_address() {
    let prom = read("deploy/prometheus.yml");
    assert!(prom.contains("metrics_path: /metrics"));
    assert!(prom.contains("127.0.0.1:9898"), "scrape target is the [admin] default");
    assert!(read("src/config.rs").contains("\"127.0.0.1:9898\".into()"), "the [admin] default is 127.0.0.1:9898");
    let unit = read("deploy/systemd/sluice.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/sluice run --config /etc/sluice/sluice.toml"));
}
