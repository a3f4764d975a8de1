use super::*;
use crate::flow::OutputRecord;
use crate::message::Message;
use crate::message::Metadata;
use crate::rule::compile_str;
use crate::rule::expr::Env;
use crate::rule::Rule;
use crate::telemetry::metrics::{forget_rule, RULE_EVAL_SECONDS, RULE_FAILED, RULE_MATCHED, RULE_NO_RESULT, RULE_OUTPUT_RECORDS, RULE_PASSED};
use serde_json::Value as Json;
use std::path::Path;
use std::sync::Arc;

fn rule(name: &str, sql: &str) -> Rule {
    compile_str(Path::new("t.toml"), &format!("name = \"{name}\"\nsql = \"\"\"\n{sql}\n\"\"\"\n[[actions]]\ntopic = \"out\"\n[[actions]]\ntopic = \"copy\"\n")).unwrap_or_else(|e| panic!("{e:?}"))
}

fn msg(topic: &str, payload: &str) -> Message {
    Message { topic: topic.into(), payload: payload.as_bytes().to_vec().into(), meta: Metadata { source: Arc::from("t"), received_ms: 1, id: 1, ..Metadata::default() } }
}

#[test]
fn per_rule_metrics_count_records_and_reach_the_registry_on_flush() {
    let name = "engine-unit-batch";
    let engine =
        Engine::new(RuleSet::new(vec![rule(name, "SELECT deviceKey FROM \"sys/+/integration/measurepoint/post\" WHERE measurepoints.temp + 0 > 10")]), Env::default(), EngineOptions::default());
    let batch = r#"{"id":"1","version":"1.0","method":"integration.measurepoint.post","params":[
        {"deviceKey":"d1","measurepoints":{"temp":20},"time":1},
        {"deviceKey":"d2","measurepoints":{"temp":5},"time":1},
        {"deviceKey":"d3","measurepoints":{"temp":"warm"},"time":1},
        7]}"#;
    let get = |v: &prometheus::IntCounterVec, labels: &[&str]| v.with_label_values(labels).get();
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let outcome = engine.process(&msg("sys/pk/integration/measurepoint/post", batch), 1, &mut scratch, &mut out);
    assert_eq!(outcome, Outcome { matched: 1, passed: 1, filtered: 1, failed: 2, stateful: false });
    assert_eq!(get(&RULE_MATCHED, &[name]), 0, "counted locally until a flush");
    scratch.flush_metrics();
    assert_eq!((get(&RULE_MATCHED, &[name]), get(&RULE_PASSED, &[name]), get(&RULE_NO_RESULT, &[name])), (1, 1, 1));
    assert_eq!(get(&RULE_OUTPUT_RECORDS, &[name]), 2, "two actions");
    assert_eq!((get(&RULE_FAILED, &[name, "decode"]), get(&RULE_FAILED, &[name, "where"]), get(&RULE_FAILED, &[name, "select"])), (1, 1, 0));
    assert_eq!(RULE_EVAL_SECONDS.with_label_values(&[name]).get_sample_count(), 1, "the first message is timed");

    // A message that is not JSON fails the rule once; a new rule set flushes the old one's
    // counts, and the rule keeps its series.
    engine.process(&msg("sys/pk/integration/measurepoint/post", "{"), 1, &mut scratch, &mut out);
    engine.reload(RuleSet::new(vec![rule(name, "SELECT deviceKey FROM \"sys/+/integration/measurepoint/post\"")]));
    engine.process(&msg("/no/rule", "{}"), 1, &mut scratch, &mut out);
    assert_eq!(get(&RULE_FAILED, &[name, "decode"]), 1, "no rule matched: nothing bound, nothing flushed");
    engine.process(&msg("sys/pk/integration/measurepoint/post", batch), 1, &mut scratch, &mut out);
    assert_eq!(get(&RULE_FAILED, &[name, "decode"]), 2, "flushed when the new set was bound");
    drop(scratch);
    assert_eq!(get(&RULE_MATCHED, &[name]), 3, "flushed on drop");
    assert_eq!(get(&RULE_PASSED, &[name]), 4, "1, then 3 entries of the second set's SELECT");
    forget_rule(name);
    assert!(!crate::telemetry::metrics::render().contains(name));
}

#[test]
fn disabled_rules_have_no_series() {
    let mut r = rule("engine-unit-disabled", "SELECT a FROM \"/a\"");
    r.enabled = false;
    let set = RuleSet::new(vec![r]);
    assert!(set.metrics[0].is_none());
    assert!(!crate::telemetry::metrics::render().contains("engine-unit-disabled"));
}

#[test]
fn rule_metrics_off_means_no_rule_series_and_the_same_outputs() {
    let name = "engine-unit-unmetered";
    let engine = Engine::new(RuleSet::new(Vec::new()), Env::default(), EngineOptions { rule_metrics: false, ..EngineOptions::default() });
    engine.reload_rules(vec![Arc::new(rule(name, "SELECT deviceKey FROM \"sys/+/integration/measurepoint/post\""))]);
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let batch = r#"{"id":"1","version":"1.0","params":[{"deviceKey":"d1","measurepoints":{"temp":20},"time":1}]}"#;
    let outcome = engine.process(&msg("sys/pk/integration/measurepoint/post", batch), 1, &mut scratch, &mut out);
    assert_eq!(outcome, Outcome { matched: 1, passed: 1, filtered: 0, failed: 0, stateful: false });
    assert_eq!(out.len(), 2, "two actions");
    drop(scratch);
    assert!(!crate::telemetry::metrics::render().contains(name));
}

/// Fault injection: a device lookup that panics when asked for the attribute `boom` (the
/// registry is the engine's one pluggable part that rules call into).
pub(crate) struct Panicking;

impl crate::rule::expr::DeviceLookup for Panicking {
    fn attribute(&self, _: &str, device: &str, key: &str) -> Option<String> {
        if key == "boom" {
            panic!("injected panic for {device}");
        }
        Some(key.to_string())
    }
    fn status(&self, _: &str, _: &str) -> Option<String> {
        None
    }
    fn gateway(&self, _: &str, _: &str) -> Option<(String, String)> {
        None
    }
}

fn value(r: &OutputRecord) -> Json {
    serde_json::from_slice(&r.value).unwrap()
}

#[test]
fn a_panicking_rule_gives_an_error_record_and_the_others_go_on() {
    let name = "engine-unit-panic";
    let env = Env { devices: Box::new(Panicking), ..Env::default() };
    let engine = Engine::new(
        RuleSet::new(vec![
            rule(name, "SELECT attribute(k) AS a FROM \"/sys/+/+/thing/event/property/post\""),
            rule("engine-unit-panic-other", "SELECT deviceName() AS d FROM \"/sys/+/+/thing/event/property/post\""),
        ]),
        env,
        EngineOptions::default(),
    );
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let outcome = engine.process(&msg("/sys/pk/dev1/thing/event/property/post", r#"{"k":"boom"}"#), 1, &mut scratch, &mut out);
    assert_eq!(outcome, Outcome { matched: 2, passed: 1, filtered: 0, failed: 1, stateful: false });
    assert_eq!(out.len(), 3, "one error record, two outputs of the other rule: {out:?}");
    let e = &out[0];
    assert!(e.is_error);
    assert_eq!(e.headers, vec![("sluice-error-stage".to_string(), "panic".to_string())]);
    let v = value(e);
    assert_eq!(v["stage"], "panic");
    assert!(v["reason"].as_str().unwrap().starts_with("rule evaluation panicked: injected panic for"), "{v}");
    assert!(out[1..].iter().all(|r| !r.is_error && r.rule.as_ref() == "engine-unit-panic-other"));
    // The same engine and scratch go on with the next message.
    out.clear();
    let outcome = engine.process(&msg("/sys/pk/dev1/thing/event/property/post", r#"{"k":"color"}"#), 1, &mut scratch, &mut out);
    assert_eq!(outcome, Outcome { matched: 2, passed: 2, filtered: 0, failed: 0, stateful: false });
    assert_eq!(std::str::from_utf8(&out[0].value).unwrap(), r#"{"a":"color"}"#);
    scratch.flush_metrics();
    assert_eq!(RULE_FAILED.with_label_values(&[name, "panic"]).get(), 1);
    assert_eq!(engine.recent_errors(name)[0].stage, "panic");
    // `sluice test` takes the same path: the error record is its output.
    let test = engine.test_rule(rule(name, "SELECT attribute(k) AS a FROM \"/sys/+/+/thing/event/property/post\""), &msg("/sys/pk/dev1/thing/event/property/post", r#"{"k":"boom"}"#), 1);
    assert_eq!(value(&test[0])["stage"], "panic");
    forget_rule(name);
}

/// Regression: a 77 KB request whose `params` held 10,000 non-objects gave 10,000 error
/// records per rule, each with the whole payload in base64 (792 MB out).
#[test]
fn bad_entries_make_one_bounded_error_record_per_rule() {
    let engine = Engine::new(
        RuleSet::new(vec![rule("engine-unit-amplify", "SELECT deviceKey FROM \"sys/+/integration/measurepoint/post\"")]),
        Env::default(),
        EngineOptions { error_payload_max_bytes: 1000, ..EngineOptions::default() },
    );
    let params: Vec<String> = (0..10_000).map(|i| if i == 5 { r#"{"deviceKey":"d5","time":1}"#.to_string() } else { i.to_string() }).collect();
    let payload = format!(r#"{{"id":"1","version":"1.0","params":[{}]}}"#, params.join(","));
    let mut out = Vec::new();
    let outcome = engine.process(&msg("sys/pk/integration/measurepoint/post", &payload), 1, &mut Scratch::default(), &mut out);
    assert_eq!(outcome, Outcome { matched: 1, passed: 1, filtered: 0, failed: 9_999, stateful: false });
    assert_eq!(out.len(), 3, "two outputs (two actions) of the good entry, one error record");
    let e = value(&out[2]);
    assert_eq!((e["failed_entries"].as_u64(), e["entries"].as_array().map(Vec::len)), (Some(9_999), Some(ERROR_ENTRIES_MAX)));
    assert_eq!(e["entries"][0], serde_json::json!({"index": 0, "stage": "decode", "reason": "invalid integration request: params[0] must be an object"}));
    assert_eq!(e["entries"][5]["index"], 6, "entry 5 was good");
    assert_eq!((e["payload_truncated"].as_bool(), e["payload_bytes"].as_u64()), (Some(true), Some(payload.len() as u64)));
    assert_eq!(crate::value::base64_decode(e["payload_base64"].as_str().unwrap()).unwrap(), payload.as_bytes()[..1000]);
    assert!(out[2].value.len() < 12_000, "bounded: {} bytes", out[2].value.len());
    // A payload under the cap is copied whole, without the truncation fields.
    let small = r#"{"id":"1","params":[1]}"#;
    out.clear();
    engine.process(&msg("sys/pk/integration/measurepoint/post", small), 1, &mut Scratch::default(), &mut out);
    let e = value(&out[0]);
    assert!(e.get("payload_truncated").is_none() && e.get("payload_bytes").is_none(), "{e}");
    assert_eq!(e["failed_entries"], 1);
    forget_rule("engine-unit-amplify");
}

/// FOREACH cannot turn one record into unbounded output: at most
/// [`FOREACH_MAX_ELEMENTS`] elements, and [`FOREACH_MAX_OUTPUT_BYTES`] of outputs.
#[test]
fn foreach_output_is_bounded() {
    let engine = Engine::new(
        RuleSet::new(vec![rule("engine-unit-foreach", "FOREACH arr FROM \"/f/+\""), rule("engine-unit-foreach-do", "FOREACH arr AS e DO blob, e AS i FROM \"/f/+\"")]),
        Env::default(),
        EngineOptions::default(),
    );
    let mut out = Vec::new();
    let many = format!(r#"{{"arr":[{}]}}"#, vec!["1"; FOREACH_MAX_ELEMENTS + 1].join(","));
    engine.process(&msg("/f/a", &many), 1, &mut Scratch::default(), &mut out);
    assert_eq!(out.len(), 2, "one error record per rule, no outputs");
    assert!(out.iter().all(|r| r.is_error && value(r)["reason"].as_str().unwrap().starts_with("FOREACH over 10001 elements")), "{out:?}");
    // 2,000 elements, each output carrying a 10 KB field: 20 MB, over the cap.
    out.clear();
    let wide = format!(r#"{{"blob":"{}","arr":[{}]}}"#, "b".repeat(10_000), vec!["1"; 2_000].join(","));
    engine.process(&msg("/f/a", &wide), 1, &mut Scratch::default(), &mut out);
    let (errors, data): (Vec<_>, Vec<_>) = out.iter().partition(|r| r.is_error);
    assert_eq!(data.len(), 2 * 2_000, "the plain FOREACH outputs its 2,000 small elements (two actions)");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(value(errors[0])["reason"].as_str().unwrap().contains("exceed 16777216 bytes"), "{:?}", value(errors[0]));
    forget_rule("engine-unit-foreach");
    forget_rule("engine-unit-foreach-do");
}

/// Hot reload: an unchanged windowed rule keeps its state across a reload; a changed one starts
/// afresh, its old groups counted in `sluice_state_discarded_keys_total`; a removed one is
/// forgotten.
#[test]
fn a_reload_keeps_an_unchanged_windowed_rule_and_restarts_a_changed_one() {
    use crate::telemetry::metrics::STATE_DISCARDED;
    let name = "engine-unit-reload-window";
    let sql = "SELECT deviceName() AS dn, count(*) AS n FROM \"/sys/+/+/thing/event/property/post\" GROUP BY deviceName(), TUMBLINGWINDOW(ss, 60)";
    let engine = Engine::new(RuleSet::new(vec![rule(name, sql)]), Env::default(), EngineOptions::default());
    let (mut scratch, mut out) = (Scratch::default(), Vec::new());
    for d in ["a", "b", "a"] {
        engine.process(&msg(&format!("/sys/pk/{d}/thing/event/property/post"), "{}"), 1_000, &mut scratch, &mut out);
    }
    assert!(out.is_empty(), "nothing closes before the window ends: {out:?}");
    assert_eq!(engine.state_keys(name), 2);
    engine.reload_rules(vec![Arc::new(rule(name, sql))]);
    engine.process(&msg("/sys/pk/a/thing/event/property/post", "{}"), 2_000, &mut scratch, &mut out);
    assert_eq!(engine.state_keys(name), 2, "the same rule text keeps its groups");
    let closed = engine.tick(61_000);
    let counts: Vec<Json> = closed.iter().flat_map(|(_, r)| r.iter().filter(|r| &*r.topic == "out").map(value)).collect();
    assert_eq!(counts, vec![serde_json::json!({"dn": "a", "n": 3}), serde_json::json!({"dn": "b", "n": 1})], "the kept windows close with every record");

    engine.process(&msg("/sys/pk/a/thing/event/property/post", "{}"), 62_000, &mut scratch, &mut out);
    let before = STATE_DISCARDED.with_label_values(&[name]).get();
    engine.reload_rules(vec![Arc::new(rule(name, &sql.replace("count(*) AS n", "count(*) AS records")))]);
    engine.process(&msg("/sys/pk/b/thing/event/property/post", "{}"), 63_000, &mut scratch, &mut out);
    assert_eq!(STATE_DISCARDED.with_label_values(&[name]).get() - before, 1, "the changed rule's one group is discarded");
    assert_eq!(engine.state_keys(name), 1, "only the group seen since the change");
    engine.forget_rule(name);
    assert_eq!(engine.state_keys(name), 0);
}
