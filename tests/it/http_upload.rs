//! The HTTP event upload (seed 002) end to end, in-process: the production assembly
//! (`App::build`) with the shipped `integration-event` rule, the registry of `models/`, the HTTP
//! source on a free port and the file sink, and a real HTTP client sending real multipart
//! bodies. Two tests put a sink or a validator of their own in the same App (a failing sink, a
//! panicking validator: `App::build_with`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use md5::{Digest, Md5};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use sluice::app::{Parts, RunOutcome};
use sluice::devices::Registry;
use sluice::engine::pipeline::PipelineReport;
use sluice::error::SinkError;
use sluice::flow::Delivery;
use sluice::flow::{Batch, BoxFuture};
use sluice::sink::{Sink, SinkReport};
use sluice::telemetry::metrics;
use tokio::sync::mpsc;

const ORG: &str = "yourOrgId";
const TOKEN: &str = "yourAccessToken";

/// What a [`KeepSink`] got: each record's IoT topic and value.
type Kept = Arc<Mutex<Vec<(String, Value)>>>;

/// Keeps every record's value; fails every batch while `fail` is set.
struct KeepSink {
    records: Kept,
    fail: Arc<AtomicBool>,
}

impl Sink for KeepSink {
    fn run(self: Box<Self>, mut rx: mpsc::Receiver<Batch>) -> BoxFuture<Result<SinkReport, SinkError>> {
        Box::pin(async move {
            while let Some(b) = rx.recv().await {
                if self.fail.load(Ordering::Relaxed) {
                    b.ack.done(Delivery::Failed("the sink refused it".into()));
                    continue;
                }
                for r in &b.records {
                    self.records.lock().unwrap().push((b.iot_topic.clone(), serde_json::from_slice(&r.value).unwrap()));
                }
                b.ack.done(Delivery::Delivered);
            }
            Ok(SinkReport::default())
        })
    }
}

struct Running {
    app: sluice_testkit::app::InProcess,
    /// What a [`KeepSink`] of the test got, when it has one (else the file sink writes into
    /// `out`).
    kept: Option<Kept>,
    url: String,
    files: tempfile::TempDir,
    /// The file sink's folder.
    out: tempfile::TempDir,
    client: reqwest::Client,
}

/// The HTTP source's configuration: `tokens`, `files_dir`, and `extra`.
fn source_table(files: &Path, extra: Value) -> toml::Table {
    let mut cfg = sluice_testkit::config::table(json!({"type": "http", "listen": "127.0.0.1:0", "tokens": {ORG: ["other", TOKEN], "org2": ["t2"]}, "files_dir": sluice_testkit::config::path(files)}));
    sluice_testkit::config::merge(&mut cfg, extra);
    cfg
}

fn url_of(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}/connect-service/v2.1/integration?action=postEvent&orgId={ORG}")
}

impl Running {
    /// The production App: the shipped `integration-event` rule, the registry of `models/`,
    /// the HTTP source on a free port and the file sink.
    fn start(extra: Value) -> Running {
        Running::start_with(extra, Parts::default())
    }

    /// The same App with `validator` and a [`KeepSink`] that fails every batch while `fail` is
    /// set.
    fn start_custom(validator: Arc<dyn sluice::integration::Validator>, fail: Arc<AtomicBool>) -> Running {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let sink = KeepSink { records: kept.clone(), fail };
        let mut r = Running::start_with(json!({}), Parts { validator: Some(validator), sink: Some(Box::new(sink)) });
        r.kept = Some(kept);
        r
    }

    fn start_with(extra: Value, parts: Parts) -> Running {
        let root = sluice_testkit::repo_root();
        let (files, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let config = sluice_testkit::config::table(json!({
            "rules": {"paths": [sluice_testkit::config::path(&root.join("rules/integration_event.toml"))], "watch": false},
            "engine": {"channel_capacity": 16, "workers": 1, "shutdown_timeout_ms": 5000},
            "sources": [toml::Value::Table(source_table(files.path(), extra))],
            "sink": {"type": "file", "dir": sluice_testkit::config::path(out.path())},
            "registry": {"models": sluice_testkit::config::path(&root.join("models"))},
        }));
        let app = sluice_testkit::app::InProcess::start_with(&config, parts);
        let url = url_of(app.http_addrs[0]);
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
        Running { app, kept: None, url, files, out, client }
    }

    /// Every record delivered so far: (IoT topic, value).
    fn records(&self) -> Vec<(String, Value)> {
        if let Some(kept) = &self.kept {
            return kept.lock().unwrap().clone();
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.out.path()).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        paths
            .iter()
            .flat_map(|p| std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect::<Vec<_>>())
            .map(|r| (r["iot_topic"].as_str().unwrap_or_default().to_string(), r["value"].clone()))
            .collect()
    }

    /// Runs `f` on the app's runtime.
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.app.block_on(f)
    }

    /// Posts `form` with `token` to `url`; returns the HTTP status and the JSON body.
    fn post_to(&self, url: &str, token: Option<&str>, form: Form) -> (u16, Value) {
        self.block_on(async {
            let mut req = self.client.post(url).multipart(form);
            if let Some(t) = token {
                req = req.header("apim-accesstoken", t);
            }
            let resp = req.send().await.expect("response");
            let status = resp.status().as_u16();
            (status, resp.json().await.expect("JSON body"))
        })
    }

    fn post(&self, form: Form) -> (u16, Value) {
        self.post_to(&self.url.clone(), Some(TOKEN), form)
    }

    fn stop(self) -> PipelineReport {
        match self.app.stop().expect("the app runs") {
            RunOutcome::Finished(report) => report,
            RunOutcome::TimedOut => panic!("the app did not drain in time"),
        }
    }
}

fn md5_hex(b: &[u8]) -> String {
    hex::encode(Md5::digest(b))
}

const FILE1: &[u8] = b"content of filename1\n";
const FILE2: &[u8] = b"\x00\x01binary content of filename2\xff";

/// Seed 002's request message, with md5 and fileLength fitting FILE1 and FILE2.
fn seed_message() -> Value {
    json!({
      "method": "integration.event.post",
      "id": "123",
      "version": "1.1",
      "params": [
        {"productKey": "productKey1", "deviceKey": "deviceKey1", "time": 1579580182824_i64,
         "events": {"eventId1": {"intParam1": 123, "fileParam1": "local://filename1"}}},
        {"assetId": "assetId2", "time": 1579580182824_i64,
         "events": {"eventId2": {"intParam2": 123, "fileParam2": "local://filename2"}}}
      ],
      "files": {
        "filename1": {"featureId": "eventId1", "produckKey": "productKey1", "deviceKey": "deviceKey1",
                      "originalFilename": "test.txt", "fileExt": ".txt", "md5": md5_hex(FILE1)},
        "filename2": {"featureId": "eventId2", "assetId": "assetId2", "md5": md5_hex(FILE2), "fileLength": FILE2.len()}
      }
    })
}

fn file_part(name: &str, bytes: &[u8]) -> Part {
    Part::bytes(bytes.to_vec()).file_name(name.to_string()).mime_str("application/octet-stream").unwrap()
}

fn form(message: &Value, files: &[(&str, &[u8])]) -> Form {
    let mut f = Form::new().text("enos-message", message.to_string());
    for (name, bytes) in files {
        f = f.part("enos-file", file_part(name, bytes));
    }
    f
}

fn seed_form() -> Form {
    form(&seed_message(), &[("filename1", FILE1), ("filename2", FILE2)])
}

/// The local path of a stored file's `file://` URI, checked to be under `root`.
fn stored_path(uri: &str, root: &Path) -> PathBuf {
    let p = PathBuf::from(uri.strip_prefix("file://").unwrap_or_else(|| panic!("{uri} is not a file:// URI")));
    let root = std::fs::canonicalize(root).unwrap();
    let canon = std::fs::canonicalize(&p).unwrap();
    assert!(canon.starts_with(&root), "{} is outside {}", canon.display(), root.display());
    canon
}

#[test]
fn seed_sample_is_stored_and_forwarded_after_delivery() {
    let r = Running::start(json!({}));
    // Every test's source is `http:127.0.0.1:0` and they run in parallel: counts only grow.
    let stored = || (metrics::INTEGRATION_STORED_FILES.with_label_values(&["http:127.0.0.1:0"]).get(), metrics::INTEGRATION_STORED_BYTES.with_label_values(&["http:127.0.0.1:0"]).get());
    let before = stored();
    let (status, body) = r.post(seed_form());
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["code"], &body["msg"], &body["data"]), (&json!(200), &json!("OK"), &json!({})), "{body}");
    assert_eq!(body["requestId"].as_str().unwrap().len(), 36, "{body}");
    // Answered after delivery: the records are already there.
    let records = r.records();
    assert_eq!(records.len(), 2, "{records:?}");
    // assetId2 is a device of productKey1: one message on productKey1's topic.
    assert!(records.iter().all(|(t, _)| t == "sys/productKey1/integration/event/post"), "{records:?}");
    let e1 = &records.iter().find(|(_, v)| v["device"] == "deviceKey1").expect("deviceKey1 record").1;
    let e2 = &records.iter().find(|(_, v)| v["device"] == "assetId2").expect("assetId2 record").1;
    assert_eq!(e1["events"]["eventId1"]["intParam1"], 123);
    assert_eq!(e1["requestId"], "123");
    let uri1 = e1["events"]["eventId1"]["fileParam1"].as_str().unwrap();
    let uri2 = e2["events"]["eventId2"]["fileParam2"].as_str().unwrap();
    let p1 = stored_path(uri1, r.files.path());
    let p2 = stored_path(uri2, r.files.path());
    assert_eq!(std::fs::read(&p1).unwrap(), FILE1);
    assert_eq!(std::fs::read(&p2).unwrap(), FILE2);
    // <root>/<orgId>/<uuid>/<name>: the original name when given, else the part's name.
    assert_eq!(p1.file_name().unwrap(), "test.txt");
    assert_eq!(p2.file_name().unwrap(), "filename2");
    assert_eq!(p1.parent().unwrap().parent().unwrap().file_name().unwrap(), ORG);
    let after = stored();
    assert!(after.0 >= before.0 + 2 && after.1 >= before.1 + (FILE1.len() + FILE2.len()) as u64, "stored files counted: {before:?} → {after:?}");
    let report = r.stop();
    assert_eq!((report.sources[0].1.messages, report.sources[0].1.rejected), (1, 0));
}

/// The request part is decoded once: by the source (it stores the files the accepted entries
/// name and rewrites their references), which hands its document on to the worker stage; the
/// rule, which reads fields, reads that document (runs in its own process: the counter is
/// global).
#[test]
fn an_upload_is_decoded_once() {
    if !sluice_testkit::own_process(module_path!(), "an_upload_is_decoded_once") {
        return;
    }
    let r = Running::start(json!({}));
    let decodes = || metrics::PAYLOAD_DECODES.with_label_values(&["http"]).get();
    let before = decodes();
    let (status, body) = r.post(seed_form());
    assert_eq!(status, 200, "{body}");
    assert_eq!(r.records().len(), 2);
    assert_eq!(decodes() - before, 1, "one decode per upload");
    r.stop();
}

#[test]
fn bad_token_and_unknown_org_are_401() {
    let r = Running::start(json!({}));
    let before = metrics::INTEGRATION_REQUESTS.with_label_values(&["401"]).get();
    // A wrong token, no token, a token of another org, an org not configured, and a token that
    // only starts like the right one: all refused with the same answer, so the answer does not
    // tell which orgIds exist.
    let answers: Vec<(u16, Value)> = [
        (r.url.clone(), Some("wrong")),
        (r.url.clone(), None),
        (r.url.replace(ORG, "org2"), Some(TOKEN)),
        (r.url.replace(ORG, "nobody"), Some(TOKEN)),
        (r.url.clone(), Some(&TOKEN[..TOKEN.len() - 1])),
    ]
    .into_iter()
    .map(|(url, token)| r.post_to(&url, token, seed_form()))
    .collect();
    for (status, body) in &answers {
        assert_eq!((*status, &body["code"]), (401, &json!(401)), "{body}");
        assert_eq!(body["msg"], json!("unknown orgId or missing or invalid `apim-accesstoken`"), "{body}");
        assert_eq!(body["data"], answers[0].1["data"], "{body}");
    }
    assert!(metrics::INTEGRATION_REQUESTS.with_label_values(&["401"]).get() >= before + 5);
    assert!(r.records().is_empty());
    assert_eq!(std::fs::read_dir(r.files.path()).unwrap().count(), 0, "nothing stored");
    r.stop();
}

fn assert_code(resp: (u16, Value), code: u32, msg_has: &str) {
    let (status, body) = resp;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], json!(code), "{body}");
    assert!(body["msg"].as_str().unwrap().contains(msg_has), "`{msg_has}` not in {body}");
}

#[test]
fn message_part_missing_twice_or_malformed_is_1203() {
    let r = Running::start(json!({}));
    let files = Form::new().part("enos-file", file_part("filename1", FILE1));
    assert_code(r.post(files), 1203, "missing the `enos-message` part");
    let twice = seed_form().text("enos-message", seed_message().to_string());
    assert_code(r.post(twice), 1203, "more than one `enos-message` part");
    assert_code(r.post(Form::new().text("enos-message", "{not json")), 1203, "malformed JSON");
    assert_code(r.post(Form::new().text("enos-message", "[1]")), 1203, "must be a JSON object");
    assert_code(r.post(Form::new().text("enos-message", r#"{"id":"1"}"#)), 1203, "`params`");
    assert_code(r.post(seed_form().text("other", "x")), 1203, "unexpected part `other`: only `enos-message` and `enos-file` parts are allowed");
    // Messages are written for people: no Rust debug text such as `Some("getEvent")`.
    let action = |a: &str| r.post_to(&r.url.replace("action=postEvent", a), Some(TOKEN), seed_form());
    let (status, body) = action("action=getEvent");
    assert_eq!((status, &body["msg"]), (200, &json!("the `action` query parameter must be `postEvent`, not `getEvent`")), "{body}");
    let (status, body) = action("x=1");
    assert_eq!((status, &body["msg"]), (200, &json!("missing the `action` query parameter (it must be `postEvent`)")), "{body}");
    let no_name = seed_form().part("enos-file", Part::bytes(b"x".to_vec()));
    assert_code(r.post(no_name), 1203, "no filename");
    // Not multipart at all.
    let (status, body) = r.block_on(async {
        let resp = r.client.post(&r.url).header("apim-accesstoken", TOKEN).body("{}").send().await.unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    });
    assert_eq!((status, &body["code"]), (200, &json!(1203)), "{body}");
    assert!(r.records().is_empty());
    r.stop();
}

#[test]
fn md5_or_length_mismatch_is_1204_naming_the_file() {
    let r = Running::start(json!({}));
    let mut m = seed_message();
    m["files"]["filename2"]["md5"] = json!("0e202f9b67323d11df8a79b319a3d4f6");
    assert_code(r.post(form(&m, &[("filename1", FILE1), ("filename2", FILE2)])), 1204, "md5 mismatch for file `filename2`");
    let mut m = seed_message();
    m["files"]["filename2"]["fileLength"] = json!(1024000);
    assert_code(r.post(form(&m, &[("filename1", FILE1), ("filename2", FILE2)])), 1204, "fileLength mismatch for file `filename2`");
    // Upper-case hex is the same digest.
    let mut m = seed_message();
    m["files"]["filename1"]["md5"] = json!(md5_hex(FILE1).to_uppercase());
    assert_code(r.post(form(&m, &[("filename1", FILE1), ("filename2", FILE2)])), 200, "OK");
    r.stop();
}

#[test]
fn unreferenced_or_missing_files_are_1203() {
    let r = Running::start(json!({}));
    let extra = form(&seed_message(), &[("filename1", FILE1), ("filename2", FILE2), ("filename3", b"x")]);
    assert_code(r.post(extra), 1203, "file part `filename3` is not referred to");
    let missing = form(&seed_message(), &[("filename1", FILE1)]);
    assert_code(r.post(missing), 1203, "`local://filename2` refers to no `enos-file` part");
    let mut m = seed_message();
    m["files"]["ghost"] = json!({"featureId": "eventId1"});
    assert_code(r.post(form(&m, &[("filename1", FILE1), ("filename2", FILE2)])), 1203, "`files` describes `ghost`");
    let mut m = seed_message();
    m["files"]["filename1"]["featureId"] = json!("eventId2");
    assert_code(r.post(form(&m, &[("filename1", FILE1), ("filename2", FILE2)])), 1203, "`files.filename1.featureId` is `eventId2`");
    let mut m = seed_message();
    m["files"]["filename1"]["produckKey"] = json!("productKey9");
    assert_code(r.post(form(&m, &[("filename1", FILE1), ("filename2", FILE2)])), 1203, "`files.filename1.produckKey` is `productKey9`");
    let mut m = seed_message();
    m["files"]["filename2"]["assetId"] = json!("assetId9");
    assert_code(r.post(form(&m, &[("filename1", FILE1), ("filename2", FILE2)])), 1203, "`files.filename2.assetId` is `assetId9`");
    let dup = form(&seed_message(), &[("filename1", FILE1), ("filename2", FILE2), ("filename1", FILE1)]);
    assert_code(r.post(dup), 1203, "two `enos-file` parts named `filename1`");
    assert!(r.records().is_empty());
    r.stop();
}

#[test]
fn unknown_device_is_1257_and_the_other_entry_goes_on() {
    let r = Running::start(json!({}));
    let mut m = seed_message();
    m["params"][1]["assetId"] = json!("assetNope");
    m["files"]["filename2"]["assetId"] = json!("assetNope");
    let (status, body) = r.post(form(&m, &[("filename1", FILE1), ("filename2", FILE2)]));
    assert_eq!(status, 200);
    assert_eq!(body["code"], 1257, "{body}");
    assert_eq!(body["data"]["accepted"], 1, "{body}");
    assert_eq!(body["data"]["failed"][0]["index"], 1, "{body}");
    assert_eq!(body["data"]["failed"][0]["code"], 1257, "{body}");
    assert!(body["data"]["failed"][0]["message"].as_str().unwrap().contains("assetNope"), "{body}");
    let records = r.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].1["events"]["eventId1"]["fileParam1"].as_str().unwrap().starts_with("file://"));
    // Only the accepted entry's file is stored.
    let org_dir = r.files.path().join(ORG);
    assert_eq!(std::fs::read_dir(org_dir).unwrap().count(), 1);
    // Nothing accepted: answered at once, nothing forwarded.
    m["params"][0]["deviceKey"] = json!("deviceNope");
    m["files"]["filename1"]["deviceKey"] = json!("deviceNope");
    let (_, body) = r.post(form(&m, &[("filename1", FILE1), ("filename2", FILE2)]));
    assert_eq!((&body["code"], &body["data"]["accepted"]), (&json!(1257), &json!(0)), "{body}");
    assert_eq!(r.records().len(), 1);
    r.stop();
}

#[test]
fn model_mismatch_is_1204() {
    let r = Running::start(json!({}));
    let mut m = seed_message();
    m["params"][0]["events"]["eventId1"]["intParam1"] = json!("not a number");
    let (_, body) = r.post(form(&m, &[("filename1", FILE1), ("filename2", FILE2)]));
    assert_eq!(body["code"], 1204, "{body}");
    assert!(body["data"]["failed"][0]["message"].as_str().unwrap().contains("intParam1"), "{body}");
    let mut m = seed_message();
    m["params"][1]["events"]["eventNope"] = json!({"x": 1});
    let (_, body) = r.post(form(&m, &[("filename1", FILE1), ("filename2", FILE2)]));
    assert_eq!((&body["code"], &body["data"]["failed"][0]["index"]), (&json!(1204), &json!(1)), "{body}");
    r.stop();
}

#[test]
fn too_large_is_413() {
    let r = Running::start(json!({"max_body_bytes": 4096, "max_file_bytes": 1024, "max_files": 2, "max_message_bytes": 2048}));
    let before = metrics::INTEGRATION_REQUESTS.with_label_values(&["1413"]).get();
    let check = |resp: (u16, Value), has: &str| {
        let (status, body) = resp;
        assert_eq!((status, &body["code"]), (413, &json!(1413)), "{body}");
        assert!(body["msg"].as_str().unwrap().contains(has), "`{has}` not in {body}");
    };
    let mut m = seed_message();
    m["files"]["filename1"]["md5"] = json!(md5_hex(&[b'a'; 2000]));
    check(r.post(form(&m, &[("filename1", &[b'a'; 2000]), ("filename2", FILE2)])), "file `filename1` is larger than 1024 bytes");
    check(r.post(form(&seed_message(), &[("filename1", FILE1), ("filename2", FILE2), ("filename3", b"x")])), "more than 2 `enos-file` parts");
    check(r.post(Form::new().text("enos-message", " ".repeat(3000))), "`enos-message` part is larger than 2048");
    check(r.post(form(&seed_message(), &[("filename1", &[b'a'; 1000]), ("filename2", &[b'b'; 1000]), ("x", &[b'c'; 1000]), ("y", &[b'c'; 1000]), ("z", &[b'c'; 1000])])), "larger than 4096");
    assert!(metrics::INTEGRATION_REQUESTS.with_label_values(&["1413"]).get() >= before + 4);
    // Within the limits: fine.
    assert_code(r.post(seed_form()), 200, "OK");
    r.stop();
}

#[test]
fn traversal_file_names_stay_under_the_root() {
    let r = Running::start(json!({}));
    let mut m = seed_message();
    m["files"]["filename1"]["originalFilename"] = json!("../../etc/passwd");
    m["params"][1]["events"]["eventId2"]["fileParam2"] = json!("local://../../../x/evil");
    m["files"]["../../../x/evil"] = m["files"]["filename2"].take();
    m["files"].as_object_mut().unwrap().remove("filename2");
    let (status, body) = r.post(form(&m, &[("filename1", FILE1), ("../../../x/evil", FILE2)]));
    assert_eq!((status, &body["code"]), (200, &json!(200)), "{body}");
    let records = r.records();
    let uris: Vec<String> = records
        .iter()
        .flat_map(|(_, v)| {
            v["events"].as_object().unwrap().values().flat_map(|e| e.as_object().unwrap().values().filter_map(|x| x.as_str().map(str::to_string)).collect::<Vec<_>>()).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(uris.len(), 2, "{uris:?}");
    for u in &uris {
        let p = stored_path(u, r.files.path());
        assert!(["passwd", "evil"].contains(&p.file_name().unwrap().to_str().unwrap()), "{}", p.display());
        assert!(!u.contains(".."), "{u}");
    }
    r.stop();
}

#[test]
fn failed_delivery_is_answered_500() {
    let root = sluice_testkit::repo_root();
    let fail = Arc::new(AtomicBool::new(true));
    let r = Running::start_custom(Arc::new(Registry::load(&root.join("models"), None).unwrap()), fail.clone());
    let (status, body) = r.post(seed_form());
    assert_eq!((status, &body["code"]), (500, &json!(500)), "{body}");
    assert!(body["msg"].as_str().unwrap().contains("the sink refused it"), "{body}");
    fail.store(false, Ordering::Relaxed);
    assert_code(r.post(seed_form()), 200, "OK");
    r.stop();
}

#[test]
fn asset_only_request_goes_to_the_assets_product_topic() {
    let r = Running::start(json!({}));
    let mut m = seed_message();
    m["params"].as_array_mut().unwrap().remove(0);
    m["files"].as_object_mut().unwrap().remove("filename1");
    assert_code(r.post(form(&m, &[("filename2", FILE2)])), 200, "OK");
    let records = r.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].0, "sys/productKey1/integration/event/post");
    assert_eq!(records[0].1["device"], "assetId2");
    r.stop();
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    use std::io::{Read, Write};
    let r = Running::start(json!({"max_body_bytes": 2048, "max_file_bytes": 100000}));
    let addr = r.url.split('/').nth(2).unwrap().to_string();
    let path = &r.url[r.url.find("/connect-service").unwrap()..];
    let boundary = "XyZ";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"enos-message\"\r\n\r\n{}\r\n", seed_message()).into_bytes();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"enos-file\"; filename=\"filename1\"\r\n\r\n").as_bytes());
    body.extend_from_slice(&[b'a'; 2000]);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\napim-accesstoken: {TOKEN}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    // The whole request in one write, small enough for the server to read at once: it answers
    // before reading the body to its end, and unread bytes would make its close a reset.
    let mut req = head.into_bytes();
    for chunk in body.chunks(1000) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("\"code\":1413"), "{resp}");
    assert!(r.records().is_empty());
    r.stop();
}

/// A local S3-compatible server (moto, installed by scripts/test-deps.sh) on a free port, killed
/// on drop.
struct S3Server {
    child: std::process::Child,
    port: u16,
}

impl S3Server {
    /// A port picked free may be taken before moto binds it: a server that exits before it
    /// listens is started again on a new port (up to 5 times).
    fn start() -> S3Server {
        for _ in 0..5 {
            let port = sluice_testkit::free_port();
            let child = std::process::Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("moto_server (an S3-compatible server) must be installed: run scripts/test-deps.sh");
            let mut server = S3Server { child, port };
            let mut exited = false;
            let up = sluice_testkit::poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
                exited = server.child.try_wait().ok().flatten().is_some();
                exited || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if up && !exited {
                return server;
            }
            assert!(exited, "moto_server did not start");
        }
        panic!("moto_server exited at start 5 times");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn files_go_to_an_s3_compatible_store_when_configured() {
    let s3 = S3Server::start();
    let http = reqwest::blocking::Client::new();
    assert!(http.put(format!("{}/uploads", s3.url())).send().unwrap().status().is_success(), "create bucket");
    let r = Running::start(json!({"s3": {"bucket": "uploads", "endpoint": s3.url(), "access_key_id": "test", "secret_access_key": "test", "allow_http": true}}));
    let (status, body) = r.post(seed_form());
    assert_eq!((status, &body["code"]), (200, &json!(200)), "{body}");
    let records = r.records();
    let e1 = &records.iter().find(|(_, v)| v["device"] == "deviceKey1").expect("deviceKey1 record").1;
    let uri = e1["events"]["eventId1"]["fileParam1"].as_str().unwrap().to_string();
    let key = uri.strip_prefix("s3://uploads/").unwrap_or_else(|| panic!("{uri} is not in the bucket"));
    assert!(key.starts_with(&format!("{ORG}/")) && key.ends_with("/test.txt"), "{key}");
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("uploads")
        .with_region("us-east-1")
        .with_endpoint(s3.url())
        .with_allow_http(true)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    let stored = r.block_on(async {
        use object_store::ObjectStoreExt;
        let got = store.get(&object_store::path::Path::from(key)).await.expect("object stored in the bucket");
        got.bytes().await.unwrap()
    });
    assert_eq!(stored.as_ref(), FILE1);
    // Nothing was written to the local folder.
    assert_eq!(std::fs::read_dir(r.files.path()).map(|d| d.count()).unwrap_or(0), 0);
    r.stop();
}

/// Fault injection: the models' validator, except that a request with id `panic` panics it.
struct PanickingValidator(Registry);

impl sluice::integration::Validator for PanickingValidator {
    fn validate(&self, kind: sluice::topic::TopicKind, product_key: &str, request: &sluice::doc::Node<'_>) -> sluice::integration::Validation {
        assert!(request.to_json()["id"] != json!("panic"), "injected panic in the validator");
        self.0.validate(kind, product_key, request)
    }
    fn product_key_of(&self, entry: &Value) -> Option<String> {
        self.0.product_key_of(entry)
    }
}

/// A bug that panics while a request is handled is answered 500 (not a dropped connection),
/// and the next request is handled as usual.
#[test]
fn a_panic_while_handling_is_answered_500_and_the_source_goes_on() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let r = Running::start_custom(Arc::new(PanickingValidator(Registry::load(&root.join("models"), None).unwrap())), Arc::new(AtomicBool::new(false)));
    let mut m = seed_message();
    m["id"] = json!("panic");
    let (status, body) = r.post(form(&m, &[("filename1", FILE1), ("filename2", FILE2)]));
    assert_eq!((status, &body["code"]), (500, &json!(500)), "{body}");
    assert_eq!(body["msg"], json!("internal error while handling the request; retry it"), "{body}");
    let (status, body) = r.post(seed_form());
    assert_eq!((status, &body["code"]), (200, &json!(200)), "{body}");
    r.stop();
}
