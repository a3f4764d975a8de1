//! The rules REST API of a running `sluice run` (real binary, real Mosquitto): every endpoint,
//! bad tokens, invalid rules, and the `sluice rules` CLI front. The folder stays the source of
//! truth: every write shows in it, and an invalid rule changes nothing.

use sluice_testkit as support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::admin::{file_records, Admin, Instance};
use support::mosquitto::Publisher;
use support::{tail, write};

const TOKEN: &str = "test-token-0123456789";
const TOPIC: &str = "sys/pkA/integration/measurepoint/post";

fn rule(name: &str, where_: &str, topic: &str) -> String {
    format!(
        "name = \"{name}\"\ndescription = \"{name} rule\"\nsql = \"\"\"\nSELECT deviceKey, measurepoints.temp AS temp\nFROM \"sys/+/integration/measurepoint/post\"\n{where_}\n\"\"\"\n\n[[actions]]\ntopic = \"{topic}\"\nkey = \"${{deviceKey}}\"\n"
    )
}

fn request(id: &str, device: &str, temp: Value) -> String {
    json!({"id": id, "version": "1.0", "method": "integration.measurepoint.post", "params": [{"deviceKey": device, "measurepoints": {"temp": temp}, "time": 1700000000000_i64}]}).to_string()
}

fn cli(admin: &Admin, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice")).arg("rules").args(["--url", &admin.base]).args(args).env("SLUICE_ADMIN_TOKEN", token).output().expect("run sluice rules");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn names(admin: &Admin) -> Vec<String> {
    let (s, v) = admin.get("/api/v1/rules");
    assert_eq!(s, 200, "{v}");
    v["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn every_endpoint_of_the_rules_api() {
    let sum = "name = \"sum\"\nsql = \"SELECT measurepoints.temp + 1 AS t FROM \\\"sys/+/integration/+/post\\\"\"\n[[actions]]\ntopic = \"sums\"\n";
    let files = [("hot.toml", &*rule("hot", "WHERE measurepoints.temp > 30", "alerts")), ("all.toml", &*rule("all", "", "all-temps")), ("sum.toml", sum)];
    let Instance { mosquitto, dir, rules, out, mut sluice, log, admin } = Instance::start("sluice-api-", TOKEN, true, &files);

    // Tokens: none, wrong, right. Health and metrics need none.
    for bad in [None, Some("wrong"), Some("test-token-012345678")] {
        let a = Admin::new(&admin.base, bad);
        for (m, p) in [(Method::GET, "/api/v1/rules"), (Method::GET, "/api/v1/rules/hot"), (Method::DELETE, "/api/v1/rules/hot"), (Method::POST, "/api/v1/reload")] {
            let (s, v) = a.call(m.clone(), p, None);
            assert_eq!(s, 401, "{m} {p} with token {bad:?}: {v}");
            assert!(v["error"].as_str().unwrap().contains("bearer token"), "{v}");
        }
    }
    assert!(rules.join("hot.toml").exists(), "a refused request changed nothing");
    assert_eq!(Admin::new(&admin.base, None).get("/healthz").0, 200);

    // List and get.
    assert_eq!(names(&admin), vec!["all", "hot", "sum"]);
    let (s, hot) = admin.get("/api/v1/rules/hot");
    assert_eq!(s, 200);
    assert_eq!((hot["status"].as_str(), hot["enabled"].as_bool(), hot["from"].as_str()), (Some("running"), Some(true), Some("sys/+/integration/measurepoint/post")));
    assert_eq!(hot["actions"], json!(["alerts"]));
    assert_eq!(hot["source"].as_str(), Some(rule("hot", "WHERE measurepoints.temp > 30", "alerts").as_str()));
    assert_eq!(admin.get("/api/v1/rules/nosuch").0, 404);

    // Create: valid, duplicate, invalid (with path:line:col), bad name.
    let (s, v) = admin.post("/api/v1/rules", &rule("cold", "WHERE measurepoints.temp < 0", "cold-alerts"));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["rule"]["status"], "running");
    assert_eq!(v["reload"]["added"], json!(["cold"]));
    assert!(rules.join("cold.toml").is_file());
    let (s, v) = admin.post("/api/v1/rules", &rule("cold", "", "x"));
    assert_eq!(s, 409, "{v}");
    let bad = "name = \"broken\"\nsql = \"SELECT devicename() FROM \\\"t\\\"\"\n[[actions]]\ntopic = \"x\"\n";
    let (s, v) = admin.post("/api/v1/rules", bad);
    assert_eq!(s, 422, "{v}");
    let text = v["errors"][0]["text"].as_str().unwrap();
    assert!(text.ends_with("broken.toml:2:15: unknown function devicename; did you mean deviceName?"), "{text}");
    assert_eq!((v["errors"][0]["line"].as_u64(), v["errors"][0]["col"].as_u64()), (Some(2), Some(15)));
    assert!(!rules.join("broken.toml").exists(), "an invalid rule is not written");
    let (s, v) = admin.call(Method::POST, "/api/v1/rules?name=..%2Fescape", Some(&rule("../escape", "", "x")));
    assert_eq!(s, 400, "{v}");
    let (s, v) = admin.post("/api/v1/rules", "sql = \"SELECT a FROM \\\"t\\\"\"\n[[actions]]\ntopic = \"x\"\n");
    assert_eq!(s, 400, "a rule needs a name: {v}");
    let (s, v) = admin.call(Method::POST, "/api/v1/rules?name=named", Some("sql = \"SELECT a FROM \\\"t\\\"\"\n[[actions]]\ntopic = \"x\"\n"));
    assert_eq!(s, 201, "the name may come from the query: {v}");
    assert_eq!(names(&admin), vec!["all", "cold", "hot", "named", "sum"]);

    // Update: valid, invalid (the running version stays), renaming refused.
    let (s, v) = admin.call(Method::PUT, "/api/v1/rules/cold", Some(&rule("cold", "WHERE measurepoints.temp < 5", "cold-alerts")));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["reload"]["changed"], json!(["cold"]));
    assert!(std::fs::read_to_string(rules.join("cold.toml")).unwrap().contains("temp < 5"));
    let (s, v) = admin.call(Method::PUT, "/api/v1/rules/cold", Some("name = \"cold\"\nsql = \"SELECT FROM WHERE\"\n[[actions]]\ntopic = \"x\"\n"));
    assert_eq!(s, 422, "{v}");
    assert!(std::fs::read_to_string(rules.join("cold.toml")).unwrap().contains("temp < 5"), "the file is unchanged");
    let (s, v) = admin.call(Method::PUT, "/api/v1/rules/cold", Some(&rule("colder", "", "x")));
    assert_eq!(s, 400, "{v}");
    assert_eq!(admin.call(Method::PUT, "/api/v1/rules/nosuch", Some(&rule("nosuch", "", "x"))).0, 404);

    // Disable and enable: the file's `enabled` changes, the rest of it stays.
    let (s, v) = admin.post("/api/v1/rules/hot/disable", "");
    assert_eq!((s, v["rule"]["status"].as_str()), (200, Some("disabled")), "{v}");
    let disabled = std::fs::read_to_string(rules.join("hot.toml")).unwrap();
    assert!(disabled.contains("enabled = false") && disabled.contains("description = \"hot rule\""), "{disabled}");

    // Messages flow through the running rules; the disabled one produces nothing.
    let publisher = Publisher::connect(mosquitto.port, "third-party");
    publisher.wait_for_sluice(Duration::from_secs(30));
    let n = publisher.replies().len();
    publisher.publish(TOPIC, request("r1", "dev1", json!(40)));
    assert_eq!(publisher.wait_reply(n, Duration::from_secs(20)).map(|r| r.body["code"].clone()), Some(json!(200)), "log:\n{}", tail(&log, 30));
    let (s, v) = admin.post("/api/v1/rules/hot/enable", "");
    assert_eq!((s, v["rule"]["status"].as_str()), (200, Some("running")), "{v}");
    publisher.publish(TOPIC, request("r2", "dev2", json!(41)));
    assert_eq!(publisher.wait_reply(n + 1, Duration::from_secs(20)).map(|r| r.body["code"].clone()), Some(json!(200)));

    // A record `sum` cannot evaluate: its failures are listed per rule.
    publisher.publish(TOPIC, request("r3", "dev3", json!("warm")));
    assert!(publisher.wait_reply(n + 2, Duration::from_secs(20)).is_some());
    let (s, v) = admin.get("/api/v1/rules/sum/errors");
    assert_eq!(s, 200, "{v}");
    let recent = v["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 1, "{v}");
    assert_eq!((recent[0]["stage"].as_str(), recent[0]["topic"].as_str()), (Some("select"), Some(TOPIC)), "{v}");
    assert!(recent[0]["reason"].as_str().unwrap().contains("cannot apply + to string \"warm\""), "{v}");
    let (_, v) = admin.get("/api/v1/rules/all/errors");
    assert_eq!(v["recent"], json!([]), "{v}");
    assert_eq!(v["compile"], json!([]));
    let (_, v) = admin.get("/api/v1/rules/cold/errors");
    assert_eq!(v["compile"], json!([]), "the refused update left no error: nothing changed");
    assert_eq!(admin.get("/api/v1/rules/nosuch/errors").0, 404);

    // Test a saved rule and an unsaved text, through the code path of `sluice test`.
    let (s, v) = admin.post(
        "/api/v1/rules/hot/test",
        &json!({"topic": TOPIC, "payload_json": {"id": "t", "version": "1.0", "params": [{"deviceKey": "d9", "measurepoints": {"temp": 99}, "time": 5}]}, "now": 1000}).to_string(),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["topic_matches"], true);
    assert_eq!(v["records"], json!([{"rule": "hot", "topic": "alerts", "key": "d9", "headers": {}, "value": {"deviceKey": "d9", "temp": 99}}]));
    let (s, v) = admin.post("/api/v1/rules/hot/test", &json!({"topic": TOPIC, "payload": "{\"params\":[{\"deviceKey\":\"d9\",\"measurepoints\":{\"temp\":1}}]}"}).to_string());
    assert_eq!((s, v["records"].clone()), (200, json!([])), "WHERE false: no record");
    let (s, v) = admin.post("/api/v1/rules/hot/test", "{not json");
    assert_eq!(s, 400, "{v}");
    let (s, v) = admin.post("/api/v1/rules/hot/test", &json!({"topic": TOPIC, "payload": "a", "payload_base64": "YQ=="}).to_string());
    assert_eq!(s, 400, "{v}");
    let (s, v) = admin.post(
        "/api/v1/test",
        &json!({"rule": rule("draft", "", "drafts"), "topic": TOPIC, "payload_base64": "eyJwYXJhbXMiOlt7ImRldmljZUtleSI6ImQxIiwibWVhc3VyZXBvaW50cyI6eyJ0ZW1wIjoyfSwidGltZSI6MX1dfQ=="}).to_string(),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["records"][0]["value"], json!({"deviceKey": "d1", "temp": 2}));
    let (s, v) = admin.post("/api/v1/test", &json!({"rule": bad, "topic": TOPIC}).to_string());
    assert_eq!(s, 422, "{v}");
    assert!(v["errors"][0]["text"].as_str().unwrap().starts_with("<request>:2:15: unknown function devicename"), "{v}");
    assert!(!rules.join("draft.toml").exists(), "testing writes nothing");

    // Reload picks up a file edited by hand; a broken hand edit keeps the running version.
    write(&rules.join("all.toml"), "name = \"all\"\nsql = \"SELECT nosuch(1) FROM \\\"t\\\"\"\n[[actions]]\ntopic = \"x\"\n");
    let (s, v) = admin.post("/api/v1/reload", "");
    assert_eq!(s, 200, "{v}");
    assert!(v["errors"].as_array().unwrap().iter().any(|e| e["text"].as_str().unwrap().ends_with("all.toml:2:15: unknown function nosuch")), "{v}");
    let all = admin.rule("all").unwrap();
    assert_eq!((all["status"].as_str(), all["running"].as_bool(), all["actions"].clone()), (Some("invalid"), Some(true), json!(["all-temps"])), "{all}");

    // Delete.
    let (s, v) = admin.call(Method::DELETE, "/api/v1/rules/named", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["reload"]["removed"], json!(["named"]));
    assert!(!rules.join("named.toml").exists());
    assert_eq!(admin.call(Method::DELETE, "/api/v1/rules/named", None).0, 404);

    // The CLI front: list, disable, enable, test, create (invalid: exit 2), bad token (exit 1).
    let (code, stdout, stderr) = cli(&admin, TOKEN, &["list"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.lines().next().unwrap().starts_with("NAME"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("hot ") && l.contains("running")), "{stdout}");
    assert!(stdout.contains("all.toml:2:15: unknown function nosuch"), "{stdout}");
    assert_eq!(cli(&admin, TOKEN, &["disable", "cold"]).0, 0);
    assert_eq!(admin.rule("cold").unwrap()["status"], "disabled");
    assert_eq!(cli(&admin, TOKEN, &["enable", "cold"]).0, 0);
    assert_eq!(admin.rule("cold").unwrap()["status"], "running");
    let payload = dir.path().join("p.json");
    write(&payload, r#"{"params":[{"deviceKey":"d7","measurepoints":{"temp":-3},"time":1}]}"#);
    let (code, stdout, stderr) = cli(&admin, TOKEN, &["test", "cold", "--topic", TOPIC, "--payload", payload.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let line: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(line, json!({"rule": "cold", "topic": "cold-alerts", "key": "d7", "headers": {}, "value": {"deviceKey": "d7", "temp": -3}}));
    let bad_file = dir.path().join("bad.toml");
    write(&bad_file, bad);
    let (code, _, stderr) = cli(&admin, TOKEN, &["create", bad_file.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.toml:2:15: unknown function devicename"), "{stderr}");
    let (code, _, stderr) = cli(&admin, "nope", &["list"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("invalid bearer token"), "{stderr}");

    // The API's requests are counted.
    let metrics = admin.metrics();
    assert!(metrics.contains("sluice_api_requests_total{op=\"create\",status=\"422\"} 2"), "{metrics}");
    assert!(metrics.contains("sluice_api_requests_total{op=\"auth\",status=\"401\"} 13"), "{metrics}");

    let status = sluice.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}; log:\n{}", tail(&log, 30));
    // What the rules produced: r1 only by `all` (hot was disabled), r2 by both.
    let alerts = file_records(&out, "alerts");
    assert_eq!(alerts.iter().map(|r| r["key"].clone()).collect::<Vec<_>>(), vec![json!("dev2")], "{alerts:?}");
    let all = file_records(&out, "all-temps");
    assert!(all.iter().map(|r| r["key"].clone()).collect::<Vec<_>>().starts_with(&[json!("dev1"), json!("dev2")]), "{all:?}");
}

/// Without a token, the rules API is off: every request is refused with 403.
#[test]
fn without_a_token_the_api_is_off() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a.toml"), &rule("a", "", "x"));
    let engine = std::sync::Arc::new(sluice::engine::Engine::new(sluice::engine::RuleSet::new(Vec::new()), Default::default(), Default::default()));
    let store = std::sync::Arc::new(sluice::control::RuleStore::new(vec![dir.path().to_path_buf()], engine));
    store.reload();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = sluice::shutdown::Shutdown::new();
    let server = rt.spawn(sluice::telemetry::http::serve_with(listener, stop.clone(), sluice::control::api::router(store, None)));
    let t = std::thread::spawn(move || {
        let a = Admin::new(&base, Some("anything"));
        let (s, v) = a.get("/api/v1/rules");
        let health = a.get("/healthz").0;
        (s, v, health)
    });
    let (s, v, health) = rt.block_on(async { tokio::task::spawn_blocking(move || t.join().unwrap()).await.unwrap() });
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("disabled"), "{v}");
    assert_eq!(health, 200);
    stop.trigger();
    rt.block_on(server).unwrap().unwrap();
    assert!(Path::new(&dir.path().join("a.toml")).exists());
}

/// The console's pages and endpoints: `/ui/` needs no token and sets a Content-Security-Policy;
/// check, functions, samples and the tap answer only with the token; the tap is off unless
/// configured (`[engine.tap]`, on in the browser test).
#[test]
fn the_console_pages_and_endpoints() {
    let _heavy = sluice_testkit::heavy();
    let inst = Instance::start("sluice-console-api-", TOKEN, false, &[("a.toml", &rule("a", "", "out"))]);
    let http = reqwest::blocking::Client::new();
    for (path, kind) in [("/ui/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")] {
        let r = http.get(format!("{}{path}", inst.admin.base)).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"), "{path}");
    }
    let bad = Admin::new(&inst.admin.base, Some("wrong-token"));
    let none = Admin::new(&inst.admin.base, None);
    let endpoints: [(Method, &str, Option<&str>); 5] = [
        (Method::POST, "/api/v1/check", Some("sql = \"SELECT 1 AS one FROM \\\"t/#\\\"\"\n[[actions]]\ntopic = \"o\"\n")),
        (Method::GET, "/api/v1/functions", None),
        (Method::GET, "/api/v1/samples", None),
        (Method::GET, "/api/v1/tap", None),
        (Method::POST, "/api/v1/tap", Some("{\"filter\": \"sys/#\"}")),
    ];
    for (m, path, body) in &endpoints {
        assert_eq!(bad.call(m.clone(), path, *body).0, 401, "{m} {path} with a wrong token");
        assert_eq!(none.call(m.clone(), path, *body).0, 401, "{m} {path} without a token");
    }
    let (s, v) = inst.admin.post("/api/v1/check?file=x.toml", "sql = \"SELECT nope( FROM \\\"t/#\\\"\"\n");
    assert_eq!((s, &v["ok"]), (200, &json!(false)), "{v}");
    let rendered = v["errors"][0]["rendered"].as_str().unwrap();
    assert!(rendered.starts_with("x.toml:1:") && rendered.trim_end().ends_with('^'), "{rendered}");
    let (s, v) = inst.admin.call(Method::POST, "/api/v1/check", endpoints[0].2);
    assert_eq!((s, &v["ok"]), (200, &json!(true)), "{v}");
    let (s, v) = inst.admin.get("/api/v1/functions");
    assert!(s == 200 && v.as_array().unwrap().iter().any(|f| f["name"] == "avg" && f["category"] == "aggregate"), "{v}");
    let (s, v) = inst.admin.get("/api/v1/samples");
    assert!(s == 200 && v.as_array().unwrap().iter().any(|x| x["topic"] == "sys/productKey1/integration/measurepoint/post"), "{v}");
    let (s, v) = inst.admin.post("/api/v1/tap", "{\"filter\": \"sys/#\"}");
    assert_eq!(s, 409, "the tap is off by default: {v}");
    assert!(v["error"].as_str().unwrap().contains("[engine.tap] enabled = true"), "{v}");
    let (s, v) = inst.admin.get("/api/v1/tap");
    assert_eq!((s, &v["enabled"]), (200, &json!(false)), "{v}");
    // A test of an unsaved text under a file name: the rule is named after it, numbers exact.
    let (s, v) = inst.admin.post(
        "/api/v1/test",
        &json!({"rule": "sql = \"SELECT v FROM \\\"t/#\\\"\"\n[[actions]]\ntopic = \"o\"\n", "file": "playground.toml", "topic": "t/x", "payload": "{\"v\": 9007199254740993}"}).to_string(),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["lines"], json!(["{\"rule\":\"playground\",\"topic\":\"o\",\"key\":null,\"headers\":{},\"value\":{\"v\":9007199254740993}}"]), "{v}");
    // The sequence mode: a windowed rule over several messages; the clock closes the window.
    let windowed = "sql = \"SELECT count(*) AS n, sum(v) AS s FROM \\\"t/#\\\" GROUP BY TUMBLINGWINDOW(ss, 10)\"\n[[actions]]\ntopic = \"o\"\n";
    let seq = "{\"now\": 1700000000000, \"topic\": \"t/a\", \"payload\": {\"v\": 2}}\n{\"now\": 1700000001000, \"topic\": \"t/a\", \"payload\": {\"v\": 3}}\n{\"now\": 1700000010000}\n";
    let (s, v) = inst.admin.post("/api/v1/test", &json!({"rule": windowed, "file": "playground.toml", "topic": "", "sequence": seq}).to_string());
    assert_eq!(s, 200, "{v}");
    let lines = v["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{v}");
    let rec: Value = serde_json::from_str(lines[0].as_str().unwrap()).unwrap();
    assert_eq!(rec["value"], json!({"n": 2, "s": 5}), "{v}");
    let (s, v) = inst.admin.post("/api/v1/test", &json!({"rule": windowed, "topic": "", "sequence": "{\"now\": 1}\nnot json"}).to_string());
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("sequence line 2"), "{v}");
}

/// History, rollback, shadow runs and promote, through the API (with wrong tokens) and the
/// `sluice rules` CLI; the folder holds every step.
#[test]
fn history_rollback_shadow_and_promote() {
    let _heavy = sluice_testkit::heavy();
    let inst = Instance::start("sluice-shadow-", TOKEN, false, &[("other.toml", &rule("other", "WHERE false", "x"))]);
    let (admin, rules) = (&inst.admin, inst.rules.clone());
    let v1 = rule("meter", "", "out");
    let v2 = rule("meter", "WHERE measurepoints.temp > 100", "out");
    assert_eq!(admin.post("/api/v1/rules?name=meter", &v1).0, 201);
    assert_eq!(admin.call(Method::PUT, "/api/v1/rules/meter", Some(&v2)).0, 200);
    let (s, h) = admin.get("/api/v1/rules/meter/history");
    assert_eq!(s, 200, "{h}");
    let actions: Vec<&str> = h["versions"].as_array().unwrap().iter().map(|v| v["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["create", "update"]);
    assert!(rules.join(".history/meter/000001-create.toml").is_file(), "the history lives beside the rules");
    let (s, v) = admin.get("/api/v1/rules/meter/history/1");
    assert_eq!((s, v["text"].as_str()), (200, Some(v1.as_str())));
    assert_eq!(admin.get("/api/v1/rules/meter/history/9").0, 404);
    let (s, v) = admin.post("/api/v1/rules/meter/rollback", "{\"version\": 1}");
    assert_eq!(s, 200, "{v}");
    assert_eq!(std::fs::read_to_string(rules.join("meter.toml")).unwrap(), v1, "rolled back in one step");
    assert_eq!(admin.post("/api/v1/rules/meter/rollback", "{\"v\": 1}").0, 400);

    // A shadow run: the candidate doubles nothing but filters everything out.
    assert_eq!(admin.post("/api/v1/rules/nosuch/shadow", &v2).0, 404);
    assert_eq!(admin.post("/api/v1/rules/meter/shadow", "sql = \"SELECT nope(\"").0, 422);
    let (s, v) = admin.post("/api/v1/rules/meter/shadow", &v2);
    assert_eq!(s, 201, "{v}");
    let publisher = Publisher::connect(inst.mosquitto.port, "shadow-client");
    publisher.wait_for_sluice(Duration::from_secs(30));
    let n = publisher.replies().len();
    publisher.publish(TOPIC, request("s1", "dev1", json!(40)));
    assert!(publisher.wait_reply(n, Duration::from_secs(20)).is_some(), "log:\n{}", tail(&inst.log, 30));
    let (s, v) = admin.get("/api/v1/rules/meter/shadow");
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["live"]["passed"].as_u64(), v["candidate"]["passed"].as_u64(), v["differing"].as_u64()), (Some(1), Some(0), Some(1)), "{v}");
    assert_eq!(v["examples"][0]["candidate"], json!([]), "{v}");
    assert_eq!(std::fs::read_to_string(rules.join("meter.toml")).unwrap(), v1, "a shadow run writes nothing");
    // The CLI shows it, and promotes it.
    let (code, out, err) = cli(admin, TOKEN, &["shadow-status", "meter"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"differing\": 1"), "{out}");
    let (code, _, err) = cli(admin, TOKEN, &["promote", "meter"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(rules.join("meter.toml")).unwrap(), v2, "promoted");
    assert_eq!(admin.get("/api/v1/rules/meter/shadow").0, 404, "a promoted run ends");
    let (code, out, err) = cli(admin, TOKEN, &["history", "meter"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().filter_map(|l| l.split_whitespace().nth(1)).collect::<Vec<_>>(), ["create", "update", "rollback", "promote"], "{out}");
    let (code, _, err) = cli(admin, TOKEN, &["rollback", "meter", "1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(rules.join("meter.toml")).unwrap(), v1);
    let cand = inst.dir.path().join("cand.toml");
    write(&cand, &v2);
    let (code, _, err) = cli(admin, TOKEN, &["shadow", "meter", cand.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(admin, TOKEN, &["shadow-stop", "meter"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(cli(admin, "wrong", &["history", "meter"]).0, 1, "a wrong token fails the CLI");

    let bad = Admin::new(&admin.base, Some("wrong-token"));
    for (m, path, body) in [
        (Method::GET, "/api/v1/rules/meter/history", None),
        (Method::GET, "/api/v1/rules/meter/history/1", None),
        (Method::POST, "/api/v1/rules/meter/rollback", Some("{\"version\": 1}")),
        (Method::POST, "/api/v1/rules/meter/shadow", Some(v2.as_str())),
        (Method::GET, "/api/v1/rules/meter/shadow", None),
        (Method::DELETE, "/api/v1/rules/meter/shadow", None),
        (Method::POST, "/api/v1/rules/meter/shadow/promote", None),
    ] {
        assert_eq!(bad.call(m.clone(), path, body).0, 401, "{m} {path}");
    }
    assert_eq!(std::fs::read_to_string(rules.join("meter.toml")).unwrap(), v1, "nothing changed without the token");
}
