//! The bodies of Sluice's fuzz targets (`fuzz/fuzz_targets/*.rs` call them), shared with the
//! stable replay test: `tests/fuzz_regressions.rs` includes this very file, so every regression
//! input under `fuzz/regressions/<target>/` and every seed under `fuzz/corpus/<target>/` is
//! replayed by `cargo test` through the same code as the fuzzer runs.
//!
//! Each target panics on a defect: a panic in Sluice, an error record of stage `panic` (the
//! engine's panic guard), or a broken invariant checked here.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use serde_json::{json, Value};
use sluice::devices::Registry;
use sluice::doc::Node;
use sluice::engine::guard::panic_text;
use sluice::engine::{Engine, EngineOptions, RuleSet, Scratch};
use sluice::flow::OutputRecord;
use sluice::integration::{codes, Validator};
use sluice::message::{Message, Metadata};
use sluice::rule::catalog::{self as functions, EXAMPLE_MESSAGE_ID, EXAMPLE_NOW_MS, EXAMPLE_PAYLOAD};
use sluice::rule::expr::Env;
use sluice::rule::template::valid_kafka_topic;
use sluice::rule::{compile_str, Rule};
use sluice::source::decoder::{parse_output, topic_level, DecodeError};
use sluice::source::mqtt::{handle_request, judge, Handled};
use sluice::topic::{filter_matches, TopicFilter, TopicIndex, TopicInfo, TopicKind};

/// A target's body.
pub type Body = fn(&[u8]);

/// Every target: its name (the folder of its corpus and regressions) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("rule_compile", rule_compile),
    ("payload_eval", payload_eval),
    ("integration_validate", integration_validate),
    ("decoder_output", decoder_output),
    ("http_upload", http_upload),
    ("topic_match", topic_match),
];

/// The repository: the fuzz crate's parent, or the package itself (replay test).
pub fn repo() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    if dir.join("models").is_dir() {
        dir.to_path_buf()
    } else {
        dir.parent().expect("fuzz/ has a parent").to_path_buf()
    }
}

// ------------------------------------------------------------------------------ known panics

/// Panics being fixed on another branch, skipped while fuzzing only (`--cfg fuzzing`) so the
/// fuzzer gets past them; the replay test does not skip them (their inputs sit in
/// `fuzz/regressions/<target>/known/`, which it leaves out until the fix is merged).
/// (file suffix, message fragment). Empty: the two found so far (`i64::MIN / -1` in
/// `src/rule/expr.rs`, `timestamp(fmt)` with 65,536+ pattern letters) are fixed, and their
/// inputs are plain regressions.
const KNOWN_PANICS: &[(&str, &str)] = &[];

fn known_panic(file: &str, message: &str) -> bool {
    cfg!(fuzzing) && KNOWN_PANICS.iter().any(|(f, m)| file.ends_with(f) && message.contains(m))
}

/// Runs `f`; while fuzzing, a known panic (see [`KNOWN_PANICS`]) ends the input quietly.
fn guarded(f: impl FnOnce()) {
    if !cfg!(fuzzing) {
        return f();
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        // libFuzzer's hook aborts; let known panics unwind to the catch below instead.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map_or("", |l| l.file());
            if !known_panic(file, panic_text(info.payload())) {
                previous(info);
            }
        }));
    });
    if let Err(p) = std::panic::catch_unwind(AssertUnwindSafe(f)) {
        if !KNOWN_PANICS.iter().any(|(_, m)| panic_text(&*p).contains(m)) {
            std::panic::resume_unwind(p);
        }
    }
}

// ------------------------------------------------------------------------------ shared checks

/// Checks an engine's output: no `panic` stage (the panic guard's error records), every error
/// record says why, every output is JSON on a valid Kafka topic.
fn check_records(out: &[OutputRecord], what: &dyn std::fmt::Display) {
    for r in out {
        assert!(valid_kafka_topic(&r.topic), "{what}: rule {} wrote to the invalid topic {:?}", r.rule, r.topic);
        let stage = r.headers.iter().find(|(k, _)| k == "sluice-error-stage").map(|(_, v)| v.as_str());
        let not_json = |e: serde_json::Error| -> ! { panic!("{what}: rule {} wrote a value that is not JSON ({e}): {:?}", r.rule, String::from_utf8_lossy(&r.value)) };
        if !r.is_error && stage.is_none() {
            serde_json::from_slice::<serde::de::IgnoredAny>(&r.value).unwrap_or_else(|e| not_json(e));
            continue;
        }
        let value: ErrorValue = serde_json::from_slice(&r.value).unwrap_or_else(|e| not_json(e));
        let reason = &value.reason;
        if stage == Some("panic") && !KNOWN_PANICS.iter().any(|(_, m)| cfg!(fuzzing) && reason.contains(m)) {
            panic!("{what}: rule {} panicked: {reason}", r.rule);
        }
        assert!(r.is_error && stage == Some(value.stage.as_str()), "{what}: an error record is marked as one, its stage in a header: {stage:?} {value:?}");
        assert!(!reason.is_empty(), "{what}: an error record without a reason: {value:?}");
    }
}

/// What the checks read of an error record's value.
#[derive(Debug, serde::Deserialize)]
struct ErrorValue {
    stage: String,
    reason: String,
}

fn message(topic: &str, payload: &[u8]) -> Message {
    Message { topic: topic.to_string(), payload: payload.to_vec().into(), meta: Metadata { source: Arc::from("fuzz"), received_ms: EXAMPLE_NOW_MS, id: EXAMPLE_MESSAGE_ID, ..Metadata::default() } }
}

/// The device registry and thing models of `models/`.
static REGISTRY: LazyLock<Arc<Registry>> = LazyLock::new(|| Arc::new(Registry::load(&repo().join("models"), None).expect("models/ loads")));

fn env() -> Env {
    Env { tz: chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00"), devices: Box::new(REGISTRY.clone()) }
}

fn engine(rules: Vec<Rule>) -> Engine {
    Engine::new(RuleSet::unmetered(rules.into_iter().map(Arc::new).collect()), env(), EngineOptions { rule_metrics: false, ..EngineOptions::default() })
}

/// The sample rules of `rules/`, on the registry of `models/`.
static SAMPLE_RULES: LazyLock<Engine> = LazyLock::new(|| {
    let (rules, errors) = sluice::control::compile_paths(&[repo().join("rules")]);
    assert!(errors.is_empty(), "rules/ compiles: {errors:?}");
    engine(rules)
});

fn run(engine: &Engine, msg: &Message) {
    let mut out = Vec::new();
    engine.process(msg, EXAMPLE_NOW_MS, &mut Scratch::default(), &mut out);
    check_records(&out, &format_args!("topic {:?}", msg.topic));
}

/// Checks what the integration channel made of a request on `topic` with `params` entries.
fn check_handled(topic: &str, h: &Handled, params: Option<usize>) {
    assert!(serde_json::to_vec(&sluice::source::mqtt::reply_body(&h.id, h.code, h.data.clone())).is_ok());
    if h.accepted + h.rejected > 0 {
        assert_eq!(Some(h.accepted + h.rejected), params, "{topic}: every entry gets a verdict");
    }
    assert_eq!(h.code == codes::OK, h.error.is_none(), "{topic}: code {} with error {:?}", h.code, h.error);
    assert_eq!(h.forward.is_some(), h.accepted > 0, "{topic}: forwarded iff an entry was accepted");
    if h.rejected > 0 {
        assert_ne!(h.code, codes::OK, "{topic}: rejected entries are not OK");
    }
}

/// The forwarded request holds exactly the accepted entries, and they are accepted again.
fn check_forward(h: &Handled, kind: TopicKind) {
    let Some((topic, payload)) = &h.forward else {
        return;
    };
    let info = TopicInfo::parse(topic);
    assert_eq!(info.kind, kind, "forwarded on {topic}");
    let request: Value = serde_json::from_slice(payload).expect("the forwarded request is JSON");
    assert_eq!(request["params"].as_array().map(Vec::len), Some(h.accepted), "forwarded params are the accepted entries");
    let again = handle_request(topic, payload, &**REGISTRY, &DECODERS, usize::MAX);
    assert_eq!((again.accepted, again.rejected, again.code), (h.accepted, 0, codes::OK), "accepted entries are accepted again: {:?}", again.error);
    run(&SAMPLE_RULES, &message(topic, payload));
}

static DECODERS: LazyLock<sluice::source::decoder::Decoders> = LazyLock::new(|| sluice::source::decoder::Decoders::new(repo().join("decoders"), std::time::Duration::from_millis(50), 16 << 20));

// ------------------------------------------------------------------------------ 1. rule_compile

/// A rule file (TOML + SQL) compiles, or fails with errors at positions inside the file; a rule
/// that compiles runs on a message of a topic its filter matches.
pub fn rule_compile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    guarded(|| match compile_str(Path::new("fuzz.toml"), text) {
        Err(errors) => {
            assert!(!errors.is_empty(), "a failed compile names its errors");
            let lines: Vec<&str> = text.split('\n').collect();
            for e in &errors {
                let shown = e.to_string();
                assert!(shown.starts_with("fuzz.toml:"), "{shown}");
                assert!(e.pos.line >= 1 && e.pos.col >= 1, "{shown}");
                assert!(e.pos.line <= lines.len(), "{shown}: line past the end of the file ({} lines)", lines.len());
                let line = lines[e.pos.line - 1];
                assert!(e.pos.col <= line.chars().count() + 1, "{shown}: column past the end of line {line:?}");
            }
        }
        Ok(rule) => {
            let topic = topic_for(&rule.filter);
            assert!(rule.filter.matches(&topic), "{topic:?} matches {:?}", rule.filter.as_str());
            let engine = engine(vec![Rule { enabled: true, ..rule }]);
            for payload in [EXAMPLE_PAYLOAD.as_bytes(), br#"{"id":"1","params":[{"deviceKey":"device1","a":-1,"b":[1.5,"x"]},3]}"#, b"\xff raw"] {
                run(&engine, &message(&topic, payload));
            }
        }
    });
}

/// A topic a filter matches: `+` levels become `x`, a final `#` goes.
fn topic_for(filter: &TopicFilter) -> String {
    let levels: Vec<&str> = filter.as_str().split('/').map(|l| if l == "+" { "x" } else { l }).collect();
    match levels.split_last() {
        Some((&"#", [])) => "x".into(),
        Some((&"#", rest)) => rest.join("/"),
        _ => levels.join("/"),
    }
}

// ------------------------------------------------------------------------------ 2. payload_eval

/// The topics a fuzzed payload is processed under by the rules.
pub const PAYLOAD_TOPICS: &[&str] = &["/sys/1234556554/deviceName1234/thing/event/property/post", "sys/productKey1/integration/measurepoint/post"];

/// The data-flow topics a fuzzed payload updates a registry with.
pub const REGISTRY_TOPICS: &[&str] = &["/as/mqtt/status/1234556554/deviceName1234", "/sys/1234556554/deviceName1234/thing/lifecycle", "/sys/1234556554/gw/thing/topo/lifecycle"];

/// Operators and syntax beyond the function registry, on payload fields.
const EXPRESSIONS: &[&str] = &[
    "a + b",
    "a - b",
    "a * b",
    "a / b",
    "a % b",
    "-a",
    "a = b",
    "a <> b",
    "a < b",
    "a <= b",
    "a > b",
    "a >= b",
    "a || b",
    "a AND b",
    "a OR b",
    "NOT a",
    "a IS NULL",
    "a IS NOT NULL",
    "a IN (b, c, 1, 'x')",
    "a NOT IN (b, c)",
    "a BETWEEN b AND c",
    "a LIKE 'de%v_1'",
    "a NOT LIKE '%\\%%' ESCAPE '\\'",
    "CASE WHEN a THEN b WHEN c THEN 1 ELSE 'x' END",
    "CASE a WHEN b THEN c ELSE 0 END",
    "CAST(a AS int)",
    "CAST(a AS double)",
    "CAST(a AS varchar)",
    "CAST(a AS boolean)",
    "a.b.c",
    "\"a[0]\"",
    "\"a[1].b[0]\"",
    "items.Power.value",
    "measurepoints.temp",
    "(a + 1) * (b - 2) / 3",
    "a + 0.5",
    "a * 9223372036854775807",
];

/// One rule per function of the registry and arity (its arguments the payload fields `a`, `b`,
/// `c`, and `*`), one per documented example, and one per operator: the fuzzer's data reaches
/// every function's arguments.
pub fn function_rules() -> Vec<String> {
    let mut exprs: Vec<String> = Vec::new();
    let mut aggregates: Vec<String> = Vec::new();
    for f in functions::all() {
        if f.aggregate {
            // In a window of one record (COUNTWINDOW(1)): each input is added and emitted.
            for n in f.min_args..=f.max_args.min(2) {
                aggregates.push(format!("{}({})", f.name, ["a", "b"][..n].join(", ")));
            }
            aggregates.extend(f.examples.iter().map(|e| e.expr.replace("(x", "(a")));
            continue;
        }
        let top = f.max_args.min(f.min_args.max(3));
        for n in f.min_args..=top {
            exprs.push(format!("{}({})", f.name, ["a", "b", "c"][..n].join(", ")));
        }
        // `*` (the raw payload) as the argument; TRIM(…) is SQL syntax, which takes no `*`.
        if f.min_args <= 1 && f.max_args >= 1 && f.name != "trim" {
            exprs.push(format!("{}(*)", f.name));
        }
        // Examples that read the payload (the others give the same result on every input).
        exprs.extend(f.examples.iter().map(|e| e.expr).filter(|e| ["items", "deviceType", "gmtCreate", "payload(", "*"].iter().any(|field| e.contains(field))).map(str::to_string));
    }
    exprs.extend(EXPRESSIONS.iter().map(|e| e.to_string()));
    let toml_str = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let rule = |e: &str, actions: &str| format!("sql = {}\n{actions}", toml_str(&format!("SELECT {e} AS r FROM \"#\"")));
    let mut rules: Vec<String> = exprs.iter().map(|e| rule(e, "[[actions]]\ntopic = \"fuzz-out\"\n")).collect();
    for e in &aggregates {
        rules.push(format!("sql = {}\n[[actions]]\ntopic = \"fuzz-window\"\n", toml_str(&format!("SELECT {e} AS r, deviceName() AS dn FROM \"#\" GROUP BY a, COUNTWINDOW(1)"))));
    }
    rules.push(format!("sql = {}\nevent_time = \"b\"\n[[actions]]\ntopic = \"fuzz-window\"\n", toml_str("SELECT sum(a) AS s, count(*) AS n FROM \"#\" GROUP BY c, TUMBLINGWINDOW(ss, 1)")));
    // Templates over fuzzed values: keys, headers and rendered topics.
    for e in ["a", "b.c", "concat(a, b)", "a || '-' || b"] {
        rules.push(rule(e, "[[actions]]\ntopic = \"fuzz-out\"\nkey = \"${r}\"\n[[actions]]\ntopic = \"t-${r}\"\nheaders = { h = \"${r}\" }\n"));
    }
    for sql in [
        "SELECT * FROM \"#\"",
        "SELECT *, upper(a) AS a FROM \"#\" WHERE a IS NOT NULL",
        "SELECT * FROM \"#\" WHERE a > b",
        "SELECT thingPropertyFlatMap(a, b, 'Power') FROM \"#\"",
        "SELECT a.b AS x, *, deviceName() AS dn FROM \"#\" WHERE NOT (a = b)",
    ] {
        rules.push(format!("sql = {}\n[[actions]]\ntopic = \"fuzz-star\"\n[[actions]]\ntopic = \"t-${{a}}\"\nkey = \"${{b}}\"\n", toml_str(sql)));
    }
    rules
}

static FUNCTION_ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (i, text) in function_rules().iter().enumerate() {
        match compile_str(Path::new(&format!("fuzz-{i}.toml")), text) {
            Ok(r) => rules.push(r),
            Err(e) => errors.push(format!("{text}: {e:?}")),
        }
    }
    assert!(errors.is_empty(), "every generated rule compiles:\n{}", errors.join("\n"));
    engine(rules)
});

/// A payload decodes as `serde_json` decodes it, and the rules of [`function_rules`] run on it
/// under each of [`PAYLOAD_TOPICS`] without a panic, and update a registry under each of
/// [`REGISTRY_TOPICS`].
pub fn payload_eval(data: &[u8]) {
    let parsed = match (Node::parse(data), serde_json::from_slice::<Value>(data)) {
        (Ok(node), Ok(value)) => {
            assert_eq!(node.to_json(), value, "Node and serde_json agree");
            Some(value)
        }
        (Err(_), Err(_)) => None,
        (node, value) => panic!("Node::parse gave {node:?}, serde_json {value:?}"),
    };
    let engine = &*FUNCTION_ENGINE;
    guarded(|| {
        if let Some(a) = parsed.as_ref().and_then(|v| v.get("a")).filter(|a| !a.is_null()) {
            check_exact(data, a);
        }
        for topic in PAYLOAD_TOPICS {
            run(engine, &message(topic, data));
        }
        let registry = Registry::new();
        for topic in REGISTRY_TOPICS {
            registry.observe(&message(topic, data));
        }
    });
}

/// Expressions that give the payload's field `a` back unchanged: 64-bit integers, floats,
/// strings and nested values stay exact through them.
pub const EXACT: &[&str] = &["a", "coalesce(NULL, a)", "nanvl(a, 0)", "json_decode(json_encode(a))", "CASE WHEN true THEN a END"];

static EXACT_ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let rule = |(i, e): (usize, &&str)| {
        let text = format!("name = \"exact-{i}\"\nsql = {}\n[[actions]]\ntopic = \"fuzz-out\"\n", serde_json::to_string(&format!("SELECT {e} AS r FROM \"#\"")).expect("a string serializes"));
        compile_str(Path::new("exact.toml"), &text).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    };
    engine(EXACT.iter().enumerate().map(rule).collect())
});

/// Every expression of [`EXACT`] gives `a` (the payload's field, as `serde_json` reads it).
fn check_exact(data: &[u8], a: &Value) {
    let mut out = Vec::new();
    EXACT_ENGINE.process(&message(PAYLOAD_TOPICS[0], data), EXAMPLE_NOW_MS, &mut Scratch::default(), &mut out);
    assert_eq!(out.len(), EXACT.len(), "one output per expression: {:?}", out.iter().map(|r| String::from_utf8_lossy(&r.value)).collect::<Vec<_>>());
    for r in &out {
        let got: Value = serde_json::from_slice(&r.value).expect("JSON");
        assert!(!r.is_error && got.get("r") == Some(a), "{}: {got} instead of r = {a}", r.rule);
    }
}

// ------------------------------------------------------------------------------ 3. integration_validate

/// Integration request topics: the first input byte picks one, the rest is the request.
pub const INTEGRATION_TOPICS: &[&str] = &[
    "sys/productKey1/integration/measurepoint/post",
    "sys/productKey1/integration/attributes/post",
    "sys/productKey1/integration/event/post",
    "sys/1234556554/integration/measurepoint/post",
    "sys/unknownProduct/integration/event/post",
];

/// An integration request is judged entry by entry against `models/`; the forwarded request
/// holds the accepted entries, which are accepted again, and runs through the sample rules.
pub fn integration_validate(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let topic = INTEGRATION_TOPICS[usize::from(pick) % INTEGRATION_TOPICS.len()];
    let kind = TopicInfo::parse(topic).kind;
    guarded(|| {
        let h = handle_request(topic, payload, &**REGISTRY, &DECODERS, 1 << 20);
        let request = serde_json::from_slice::<Value>(payload).ok();
        let params = request.as_ref().and_then(|r| r["params"].as_array());
        if let Some(params) = params {
            for e in params {
                let _ = REGISTRY.product_key_of(e);
            }
        }
        check_handled(topic, &h, params.map(Vec::len));
        check_forward(&h, kind);
    });
}

// ------------------------------------------------------------------------------ 4. decoder_output

/// What a decoder script returned (JSON text) becomes a request of a known kind or a
/// `BadOutput` error; a request is judged as a decoded `up_raw` request and forwarded on its
/// kind's topic.
pub fn decoder_output(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    guarded(|| match parse_output(text) {
        Err(e) => {
            assert!(matches!(e, DecodeError::BadOutput(_)), "{e:?}");
            assert!(!e.to_string().is_empty());
        }
        Ok((request, kind)) => {
            let level = topic_level(kind).expect("a JSON integration kind");
            let params = request["params"].as_array().map(Vec::len);
            assert!(request.is_object() && params.is_some(), "{request}");
            let h = judge("sys/productKey1/integration/up_raw", &request, kind, &**REGISTRY);
            check_handled("up_raw", &h, params);
            if let Some((topic, _)) = &h.forward {
                assert_eq!(topic, &format!("sys/productKey1/integration/{level}/post"));
            }
            check_forward(&h, kind);
        }
    });
}

// ------------------------------------------------------------------------------ 5. http_upload

/// The multipart boundary of fuzzed upload bodies.
pub const BOUNDARY: &str = "sluicefuzz";

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime"));

/// The fuzzed bytes are the body of a `multipart/form-data` upload (boundary [`BOUNDARY`]) sent
/// through the HTTP upload's router in-process: the answer is a documented JSON reply with a
/// matching HTTP status, and a forwarded message is an event request of accepted entries that
/// runs through the sample rules.
pub fn http_upload(data: &[u8]) {
    use tower::ServiceExt;
    let cfg: sluice::config::HttpSourceConfig = serde_json::from_value(json!({
        "listen": "127.0.0.1:0",
        "tokens": {"yourOrgId": ["yourAccessToken"]},
        "max_body_bytes": 64 * 1024,
        "max_message_bytes": 16 * 1024,
        "max_file_bytes": 4 * 1024,
        "max_files": 4,
    }))
    .expect("an HTTP source config");
    guarded(|| {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<sluice::flow::Envelope>(4);
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let app = sluice::source::http::router("http:fuzz", cfg, REGISTRY.clone(), store, "memory://".into(), tx);
        let request = axum::http::Request::post(format!("{}?action=postEvent&orgId=yourOrgId", sluice::source::http::PATH))
            .header("apim-accesstoken", "yourAccessToken")
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(axum::body::Body::from(data.to_vec()))
            .expect("a request");
        let (status, body, forwarded) = RUNTIME.block_on(async move {
            let consume = async {
                let mut msgs = Vec::new();
                while let Some(env) = rx.recv().await {
                    msgs.push(env.msg);
                    env.ack.done(sluice::flow::Delivery::Delivered);
                }
                msgs
            };
            let answer = async {
                let response = app.oneshot(request).await.expect("the router answers");
                let status = response.status();
                (status, axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("a body"))
            };
            let ((status, body), msgs) = tokio::join!(answer, consume);
            (status, body, msgs)
        });
        let reply: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("the reply is JSON ({e}): {body:?}"));
        let code = reply["code"].as_u64().unwrap_or_else(|| panic!("a reply code: {reply}"));
        assert!(reply["msg"].is_string() && reply["requestId"].is_string() && reply.get("data").is_some(), "{reply}");
        let want = match code {
            401 => 401,
            1413 => 413,
            500 => 500,
            _ => 200,
        };
        assert_eq!(status.as_u16(), want, "HTTP status of code {code}: {reply}");
        assert!(forwarded.len() <= 1, "one message per request");
        for msg in &forwarded {
            assert!(code == 200 || reply["data"]["accepted"].as_u64().is_some_and(|n| n > 0), "a message forwarded for {reply}");
            assert_eq!(TopicInfo::parse(&msg.topic).kind, TopicKind::IntegrationEvent, "{}", msg.topic);
            let request: Value = serde_json::from_slice(&msg.payload).expect("the forwarded request is JSON");
            assert!(request["params"].as_array().is_some_and(|p| !p.is_empty()), "{request}");
            run(&SAMPLE_RULES, msg);
        }
    });
}

// ------------------------------------------------------------------------------ 6. topic_match

/// Lines of the input are topic filters (those that parse) and topics: the trie index finds
/// exactly the filters [`filter_matches`] says match, and topic recognition is consistent.
pub fn topic_match(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let mut index = TopicIndex::new();
    let mut filters = Vec::new();
    for line in &lines {
        match TopicFilter::parse(line) {
            Ok(f) => {
                assert_eq!(f.as_str(), *line);
                let levels: Vec<&str> = line.split('/').collect();
                assert!(levels.iter().enumerate().all(|(i, l)| (*l == "#" && i + 1 == levels.len()) || !l.contains('#')), "{line:?}");
                assert!(levels.iter().all(|l| *l == "+" || !l.contains('+')), "{line:?}");
                index.insert(&f, filters.len());
                filters.push(f);
            }
            Err(e) => assert!(!e.is_empty()),
        }
    }
    assert_eq!(index.len(), filters.len());
    let mut got = Vec::new();
    for topic in &lines {
        index.matches(topic, &mut got);
        let want: Vec<usize> = filters.iter().enumerate().filter(|(_, f)| f.matches(topic)).map(|(i, _)| i).collect();
        assert_eq!(got, want, "topic {topic:?}, filters {:?}", filters.iter().map(TopicFilter::as_str).collect::<Vec<_>>());
        assert_eq!(filter_matches("#", topic), !topic.starts_with('$'), "{topic:?}");
        if !topic.contains(['+', '#']) {
            assert!(filter_matches(topic, topic), "{topic:?} matches itself");
        }
        let info = TopicInfo::parse(topic);
        if info.kind == TopicKind::Custom {
            assert_eq!((info.product_key, info.device_name, info.identifier), (None, None, None), "{topic:?}");
        } else {
            let pk = info.product_key.unwrap_or_else(|| panic!("{topic:?}: a {} topic has a product key", info.kind.name()));
            assert!(!pk.is_empty() && topic.split('/').any(|l| l == pk), "{topic:?}: {info:?}");
            assert!(info.device_name.is_none_or(|d| !d.is_empty()), "{topic:?}: {info:?}");
            assert_eq!(info.kind.batch_field().is_some(), matches!(info.kind, TopicKind::IntegrationMeasurepoint | TopicKind::IntegrationAttributes | TopicKind::IntegrationEvent));
        }
    }
}
