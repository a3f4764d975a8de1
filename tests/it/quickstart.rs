//! The quickstart end to end: `sluice run` on a copy of `deploy/quickstart.toml` whose sink
//! writes into a temporary folder, over `rules/` and `examples/quickstart.jsonl`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Output file → number of lines, for the committed rules and sample input.
const EXPECTED_FILES: &[(&str, usize)] = &[
    ("iot-custom-telemetry.jsonl", 2),
    ("iot-downlink-errors.jsonl", 1),
    ("iot-downlink-failed-123xxxx554.jsonl", 1),
    ("iot-event-X5eCzh6fEH7.jsonl", 1),
    ("iot-integration-attributes.jsonl", 2),
    ("iot-integration-event.jsonl", 5),
    ("iot-integration-measurepoint.jsonl", 3),
    ("iot-integration-up-raw.jsonl", 1),
    ("iot-lifecycle.jsonl", 1),
    ("iot-list-found.jsonl", 1),
    ("iot-property-1234556554.jsonl", 1),
    ("iot-status-12345565569.jsonl", 2),
    ("iot-topo-1234556554.jsonl", 1),
    ("sluice-errors.jsonl", 6),
];

struct Run {
    _tmp: tempfile::TempDir,
    stdout: String,
    stderr: String,
    files: BTreeMap<String, Vec<String>>,
}

impl Run {
    fn lines(&self, file: &str) -> &[String] {
        self.files.get(file).unwrap_or_else(|| panic!("no output file {file}; files: {:?}", self.files.keys().collect::<Vec<_>>()))
    }

    fn records(&self, file: &str) -> Vec<Value> {
        self.lines(file).iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: not JSON ({e}): {l}"))).collect()
    }
}

/// Runs the quickstart with the sink redirected into a fresh temporary folder.
fn run_quickstart() -> Run {
    run_quickstart_with(&[("RUST_LOG", "warn")])
}

/// [`run_quickstart`] with these environment variables.
fn run_quickstart_with(env: &[(&str, &str)]) -> Run {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::TempDir::new().expect("temp dir");
    let out = tmp.path().join("out");
    let text = std::fs::read_to_string(root.join("deploy/quickstart.toml")).expect("deploy/quickstart.toml");
    let mut cfg: toml::Table = text.parse().expect("deploy/quickstart.toml is TOML");
    let sink = cfg.get_mut("sink").and_then(|s| s.as_table_mut()).expect("[sink]");
    assert_eq!(sink.get("type").and_then(|t| t.as_str()), Some("file"), "the quickstart writes files");
    assert_eq!(sink.get("dir").and_then(|t| t.as_str()), Some("out/quickstart"), "README promises out/quickstart/");
    sink.insert("dir".into(), toml::Value::String(out.to_str().expect("UTF-8 temp path").into()));
    let config = tmp.path().join("quickstart.toml");
    std::fs::write(&config, toml::to_string(&cfg).expect("serialize config")).expect("write config");

    // Relative paths in the config (rules/, examples/) are relative to the working directory.
    let output = Command::new(env!("CARGO_BIN_EXE_sluice")).current_dir(&root).arg("run").arg("--config").arg(&config).envs(env.iter().copied()).output().expect("run sluice");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "sluice run failed: {}\nstdout:\n{stdout}\nstderr:\n{}", output.status, String::from_utf8_lossy(&output.stderr));

    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&out).expect("output folder exists") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("file name").to_string();
        files.insert(name, read_lines(&path));
    }
    Run { _tmp: tmp, stdout, stderr: String::from_utf8_lossy(&output.stderr).into_owned(), files }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).expect("read output").lines().map(str::to_string).collect()
}

#[test]
fn quickstart_writes_the_expected_files() {
    let run = run_quickstart();
    let got: Vec<(&str, usize)> = run.files.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
    assert_eq!(got, EXPECTED_FILES, "output files and line counts");
    assert_eq!(run.stdout.trim(), "24 message(s) in, 28 record(s) out (7 error record(s))");

    // Every line is a file-sink record naming its rule and input topic.
    for (file, lines) in &run.files {
        for l in lines {
            let r: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: {e}: {l}"));
            for k in ["rule", "key", "headers", "iot_topic", "value"] {
                assert!(r.get(k).is_some(), "{file}: `{k}` missing in {l}");
            }
        }
    }

    // Seed 003 measure points: one record per params entry, numbers and numeric strings as written.
    let mp = run.lines("iot-integration-measurepoint.jsonl");
    assert_eq!(
        mp[1],
        r#"{"rule":"integration-measurepoint","key":"device1","headers":{"kind":"integration_measurepoint","origin":"sluice"},"iot_topic":"sys/productKey1/integration/measurepoint/post","value":{"deviceKey":"device1","time":123567,"power":2,"powerQuality":9,"temp":2.02,"branchCurr0":"2.02","branchCurr":["2.02","3.02","9.93"],"requestId":"123"}}"#
    );

    // Event integration: seeds 000 and 002, then the request with an empty time (→ received_ms).
    let ev = run.records("iot-integration-event.jsonl");
    let keys: Vec<&str> = ev.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["device1", "device2", "deviceKey1", "assetId2", "device1"]);
    assert_eq!(ev[3]["value"]["assetId"], "assetId2");
    assert_eq!(ev[2]["value"]["time"], 1579580182824u64);
    assert_eq!(ev[4]["value"]["time"], 1700000003000u64);
    assert_eq!(ev[4]["value"]["requestId"], "124");

    // Attributes have no time in seed 003: the line's received_ms is used.
    let at = run.records("iot-integration-attributes.jsonl");
    assert_eq!(at[0]["value"]["attributes"]["attr1"]["key2"], "val2");
    assert_eq!(at[1]["value"]["time"], 1700000004000u64);

    // Status: online then offline, in input order, keyed by device.
    let st = run.records("iot-status-12345565569.jsonl");
    assert_eq!(st.iter().map(|r| r["headers"]["status"].as_str().unwrap()).collect::<Vec<_>>(), ["online", "offline"]);
    assert_eq!(st[1]["key"], "deviceName1234");

    // Property post: the nested position flattened; the event post rule dropped it (WHERE).
    let prop = run.records("iot-property-1234556554.jsonl");
    assert_eq!((prop[0]["value"]["latitude"].as_f64(), prop[0]["value"]["power"].as_str()), (Some(39.9), Some("on")));
    let event = run.records("iot-event-X5eCzh6fEH7.jsonl");
    assert_eq!(event[0]["headers"]["event"], "BrokenInfo");
    assert_eq!(event[0]["value"]["name"], "损坏率上报");

    // Lifecycle without the secret; downlink: only the failure (9201), with its meaning.
    let lc = run.records("iot-lifecycle.jsonl");
    assert!(lc[0]["value"].get("deviceSecret").is_none());
    let dl = run.records("iot-downlink-failed-123xxxx554.jsonl");
    assert_eq!((dl[0]["value"]["code"].as_u64(), dl[0]["value"]["meaning"].as_str()), (Some(9201), Some("device offline")));

    // Custom topic: 64-bit integers pass through as written.
    let custom = run.lines("iot-custom-telemetry.jsonl");
    assert!(custom[0].contains(r#""fahrenheit":103.1"#) && custom[0].contains(r#""seq":18446744073709551615"#), "{}", custom[0]);
    assert!(custom[1].contains(r#""seq":9223372036854775807"#), "{}", custom[1]);

    // up_raw bytes reach the rule that does not read them.
    let raw = run.records("iot-integration-up-raw.jsonl");
    assert_eq!(raw[0]["value"]["kind"], "integration_up_raw");
}

#[test]
fn quickstart_errors_land_in_the_error_topics_with_their_reasons() {
    let run = run_quickstart();
    let errors = run.records("sluice-errors.jsonl");
    let summary: Vec<(String, String, String)> = errors
        .iter()
        .map(|r| {
            assert_eq!(r["headers"]["sluice-error-stage"], r["value"]["stage"]);
            (r["rule"].as_str().unwrap().to_string(), r["value"]["stage"].as_str().unwrap().to_string(), r["value"]["reason"].as_str().unwrap().to_string())
        })
        .collect();
    let want = [
        ("integration-attributes", "decode", "payload is not valid JSON: trailing comma at line 11 column 17"),
        ("event-post", "decode", "payload is not valid JSON: EOF while parsing a value at line 1 column 85"),
        ("property-post", "decode", "payload is not valid JSON: EOF while parsing a value at line 1 column 85"),
        ("custom-telemetry", "select", "cannot apply * to string \"n/a\" and int 9"),
        ("", "source", "examples/quickstart.jsonl:23: not a message line: expected ident at line 1 column 2"),
        ("", "source", "examples/quickstart.jsonl:24: missing `payload` (JSON) or `payload_base64` (bytes)"),
    ];
    let want: Vec<(String, String, String)> = want.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    assert_eq!(summary, want);

    // Rule errors keep the message: topic, receive time, line number and the payload bytes.
    let attr = &errors[0]["value"];
    assert_eq!(attr["topic"], "sys/productKey1/integration/attributes/post");
    assert_eq!(attr["received_ms"], 1700000005000u64);
    assert_eq!(attr["message_id"], 5);
    assert_eq!(attr["source"], "file:examples/quickstart.jsonl");
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD.decode(attr["payload_base64"].as_str().unwrap()).unwrap();
    let payload = String::from_utf8(payload).unwrap();
    assert!(payload.contains("\"key2\":\"val2\",\n"), "the seed 003 sample as printed: {payload}");

    // Dead letters: no rule, no topic, the raw line as payload.
    let dead = &errors[4]["value"];
    assert_eq!(dead["rule"], Value::Null);
    assert_eq!(dead["topic"], "");
    assert_eq!(dead["message_id"], 23);
    assert_eq!(dead["payload_base64"], "dGhpcyBsaW5lIGlzIG5vdCBKU09O"); // "this line is not JSON"

    // The downlink rule has its own [error_action] topic.
    let dl = run.records("iot-downlink-errors.jsonl");
    assert_eq!(dl[0]["rule"], "downlink-failures");
    assert_eq!(dl[0]["value"]["stage"], "decode");
    assert_eq!(dl[0]["value"]["reason"], "payload is not valid JSON: EOF while parsing a value at line 1 column 75");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let run = run_quickstart_with(&[("RUST_LOG", "info"), ("SLUICE_LOG_FORMAT", "json")]);
    let got: Vec<(&str, usize)> = run.files.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
    assert_eq!(got, EXPECTED_FILES, "the same outputs whatever the log format");
    let lines: Vec<Value> = run.stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))).collect();
    assert!(lines.len() >= 3, "startup, progress and summary lines: {}", run.stderr);
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string() && l["fields"]["message"].is_string(), "timestamp, level, fields.message: {l}");
    }
    let compiled = lines.iter().find(|l| l["fields"]["message"] == "rules compiled").unwrap_or_else(|| panic!("no `rules compiled` line: {}", run.stderr));
    assert_eq!(compiled["level"], "INFO");
    assert!(compiled["fields"]["rules"].as_u64().is_some_and(|n| n > 0), "key/values are JSON fields: {compiled}");
}
