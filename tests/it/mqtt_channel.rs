//! The MQTT integration channel against a real Mosquitto, no Kafka, through the production App:
//! shared subscriptions, an oversized request and the broker's dropped messages (file sink),
//! delivery failures and a failed sink (sinks of the tests' own, `App::build_with`).

use sluice_testkit as support;

use std::time::Duration;

use serde_json::json;
use sluice::app::Parts;
use sluice::engine::pipeline::PipelineReport;
use sluice::error::SinkError;
use sluice::flow::Delivery;
use sluice::flow::{Batch, BoxFuture};
use sluice::sink::{Sink, SinkReport};
use support::app::InProcess;
use support::mosquitto::{Mosquitto, Publisher};
use support::wait_until;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

/// Acknowledges every batch with a fixed delivery.
struct FixedSink(Delivery);

impl Sink for FixedSink {
    fn run(self: Box<Self>, mut rx: mpsc::Receiver<Batch>) -> BoxFuture<Result<SinkReport, SinkError>> {
        Box::pin(async move {
            while let Some(b) = rx.recv().await {
                b.ack.done(self.0.clone());
            }
            Ok(SinkReport::default())
        })
    }
}

/// The production App without rules: MQTT sources `(client id, extra settings)` on `m`, the
/// file sink into `out`.
fn app(m: &Mosquitto, sources: &[(&str, serde_json::Value)], out: &std::path::Path) -> InProcess {
    app_with(m, sources, out, Parts::default())
}

/// [`app`] with `parts` (a sink of the test's own) in place of what the configuration builds.
fn app_with(m: &Mosquitto, sources: &[(&str, serde_json::Value)], out: &std::path::Path, parts: Parts) -> InProcess {
    let sources: Vec<toml::Value> = sources
        .iter()
        .map(|(client_id, extra)| {
            let mut t = sluice_testkit::config::table(json!({"type": "mqtt", "url": m.url(), "client_id": client_id, "reconnect_backoff_ms": 100}));
            sluice_testkit::config::merge(&mut t, extra.clone());
            toml::Value::Table(t)
        })
        .collect();
    let config = sluice_testkit::config::table(json!({
        "rules": {"paths": [], "watch": false},
        "engine": {"channel_capacity": 16, "workers": 1, "shutdown_timeout_ms": 5000},
        "sources": sources,
        "sink": {"type": "file", "dir": sluice_testkit::config::path(out)},
    }));
    InProcess::start_with(&config, parts)
}

/// The App with one MQTT source (`client_id`) and `sink` in place of the file sink.
fn app_with_sink(m: &Mosquitto, client_id: &str, sink: impl Sink + 'static) -> (InProcess, tempfile::TempDir) {
    let out = sluice_testkit::temp_dir("sluice-mqtt-sink-");
    let app = app_with(m, &[(client_id, json!({}))], out.path(), Parts { sink: Some(Box::new(sink)), ..Parts::default() });
    (app, out)
}

/// The report of a finished App.
fn report(app: InProcess) -> PipelineReport {
    match app.stop().expect("the app runs") {
        sluice::app::RunOutcome::Finished(r) => r,
        sluice::app::RunOutcome::TimedOut => panic!("the app did not drain in time"),
    }
}

const REQUEST: &str = r#"{"id":"7","version":"1.0","params":[{"deviceKey":"device1","events":{"e":{"a":1}}}],"method":"integration.event.post"}"#;

#[test]
fn failed_delivery_is_answered_500_and_the_channel_goes_on() {
    let m = Mosquitto::start();
    let (running, _out) = app_with_sink(&m, "sluice-fail", FixedSink(Delivery::Failed("the sink refused it".into())));
    let p = Publisher::connect(m.port, "third-party");
    p.wait_for_sluice(WAIT);
    for _ in 0..3 {
        let r = p.request("sys/pk/integration/event/post", REQUEST, WAIT).expect("reply");
        assert_eq!(r.body, json!({"id": "7", "code": 500, "data": {"error": "the sink refused it"}, "message": "Internal error"}));
    }
    let errors = sluice::integration::channel_log::recent_errors();
    assert!(errors.iter().any(|e| e.stage == "delivery" && e.code == 500 && e.request_id == Some(json!("7"))), "{errors:?}");
    report(running);
}

#[test]
fn shared_subscriptions_split_the_requests() {
    let m = Mosquitto::start();
    let out = sluice_testkit::temp_dir("sluice-shared-");
    let extra = || json!({"shared_group": "sluice"});
    let running = app(&m, &[("sluice-a", extra()), ("sluice-b", extra())], out.path());
    let p = Publisher::connect(m.port, "third-party");
    p.wait_for_sluice(WAIT);
    // Both instances subscribed: the pings prove one is; nothing Sluice reports tells that the
    // second one's SUBACK is in (no metric or check for it), so this wait stays a fixed one.
    std::thread::sleep(Duration::from_millis(500));
    let before = p.replies().len();
    for i in 0..20 {
        p.publish("sys/pk/integration/event/post", REQUEST.replace("\"7\"", &format!("\"{i}\"")));
    }
    assert!(p.wait_reply(before + 19, WAIT).is_some(), "{} replies", p.replies().len() - before);
    // A sentinel request after the 20: once it is answered, a second answer to one of them
    // would have come (each instance answers in order).
    p.publish("sys/pk/integration/event/post", REQUEST.replace("\"7\"", "\"sentinel\""));
    assert!(wait_until(WAIT, || p.replies()[before..].iter().any(|r| r.body["id"] == json!("sentinel"))), "the sentinel was not answered");
    let replies: Vec<_> = p.replies()[before..].iter().filter(|r| r.body["id"] != json!("sentinel")).cloned().collect();
    assert_eq!(replies.len(), 20, "one reply per request");
    assert!(replies.iter().all(|r| r.body["code"] == json!(200)));
    let report = report(running);
    let counts: Vec<u64> = report.sources.iter().map(|(_, r)| r.messages).collect();
    assert_eq!(counts.len(), 2);
    assert!(counts.iter().all(|&n| n > 0), "both instances got requests: {counts:?}");
    assert!(counts.iter().sum::<u64>() >= 21, "{counts:?}");
}

/// Regression: a request larger than the client's packet limit made rumqttc drop the connection;
/// Mosquitto delivered it again on every reconnect, and the channel never answered anything
/// else. Now it is read, answered 1413 with its id, acknowledged, and the channel goes on; a
/// restart with the same persistent session does not see it again.
#[test]
fn an_oversized_request_is_answered_1413_acknowledged_and_the_channel_goes_on() {
    let m = Mosquitto::start();
    let client_id = "sluice-oversized";
    let out = sluice_testkit::temp_dir("sluice-oversized-");
    let extra = || json!({"max_request_bytes": 1048576});
    let running = app(&m, &[(client_id, extra())], out.path());
    let p = Publisher::connect(m.port, "third-party-big");
    p.wait_for_sluice(WAIT);
    let name = format!("mqtt:{}:{client_id}", m.url());
    let disconnects = || sluice::telemetry::metrics::MQTT_CONNECTION_EVENTS.with_label_values(&[&name, "disconnect"]).get();
    let before = disconnects();
    // 3 MiB: above the old limit of 2 × max_request_bytes, and a valid JSON request.
    let filler = "x".repeat(3 << 20);
    let big = format!(r#"{{"id":"big-1","version":"1.0","params":[{{"deviceKey":"device1","events":{{"e":{{"a":"{filler}"}}}}}}],"method":"integration.event.post"}}"#);
    let r = p.request("sys/pk/integration/event/post", big, WAIT).expect("a reply to the oversized request");
    assert_eq!(r.body["code"], json!(1413), "{}", r.body);
    assert_eq!(r.body["id"], json!("big-1"), "the id is kept: {}", r.body);
    let r = p.request("sys/pk/integration/event/post", REQUEST, WAIT).expect("the next request is answered");
    assert_eq!((&r.body["id"], &r.body["code"]), (&json!("7"), &json!(200)), "{}", r.body);
    assert_eq!(disconnects(), before, "the connection was not dropped");
    report(running);

    // Same client id, persistent session: the oversized request was acknowledged, so the broker
    // has nothing to deliver again; the first reply after the restart is the sentinel's.
    let running = app(&m, &[(client_id, extra())], out.path());
    let n = p.replies().len();
    p.wait_for_sluice(WAIT);
    // (Replies to the pings are not among `replies()`.)
    assert!(p.replies()[n..].is_empty(), "nothing delivered again: {:?}", &p.replies()[n..]);
    report(running);
}

/// A sink that fails on its first batch (an I/O error, say).
struct BrokenSink;

impl Sink for BrokenSink {
    fn run(self: Box<Self>, mut rx: mpsc::Receiver<Batch>) -> BoxFuture<Result<SinkReport, SinkError>> {
        Box::pin(async move {
            let _batch = rx.recv().await;
            Err(SinkError::Other { sink: "broken".into(), message: "disk gone".into() })
        })
    }
}

/// A failed sink stops the pipeline: the MQTT source, which would otherwise poll its broker
/// until a signal, stops too, and the pipeline ends with the sink's error. The request whose
/// batch the sink dropped is neither answered nor acknowledged: the broker keeps it.
#[test]
fn a_failed_sink_stops_the_whole_pipeline() {
    let m = Mosquitto::start();
    let (mut running, _out) = app_with_sink(&m, "sluice-broken-sink", BrokenSink);
    let p = Publisher::connect(m.port, "third-party-broken");
    p.wait_for_sluice(WAIT); // empty requests are answered without the sink
    p.publish("sys/pk/integration/event/post", REQUEST);
    let result = running.wait_end(WAIT).expect("the app stops by itself");
    let e = result.expect_err("the app reports the failure of the sink");
    assert!(e.to_string().contains("disk gone"), "{e}");
    assert!(p.replies().iter().all(|r| r.body["id"] != json!("7")), "not answered: {:?}", p.replies());
}

/// Mosquitto drops what a persistent session's queue cannot hold: a broker keeping 5 messages
/// per client, its `$SYS` tree updated every second; Sluice subscribes, stops, and 20 requests
/// arrive while it is away. On its return the broker delivers the 5 it kept, and its count of
/// dropped messages (15) shows in `sluice_mqtt_broker_dropped_messages` and in the readiness
/// detail of the source, which still passes.
#[test]
fn the_brokers_dropped_messages_are_exported_and_named_in_readiness() {
    let m = Mosquitto::start_with_options(&[("max_queued_messages", "5"), ("sys_interval", "1")]);
    let client_id = "sluice-drops";
    let out = sluice_testkit::temp_dir("sluice-drops-");
    let p = Publisher::connect(m.port, "third-party-drops");
    let running = app(&m, &[(client_id, json!({}))], out.path());
    p.wait_for_sluice(WAIT);
    report(running);
    // The broker has seen the session go: what comes now is queued for it, or dropped.
    let gone = [format!("Client {client_id} disconnected"), format!("Client {client_id} closed its connection")];
    assert!(wait_until(WAIT, || gone.iter().any(|g| m.log().contains(g))), "the broker did not see Sluice go:\n{}", m.log());
    for i in 0..20 {
        p.publish("sys/pk/integration/event/post", REQUEST.replace("\"7\"", &format!("\"r{i}\"")));
    }
    assert!(p.wait_acked(WAIT), "the broker did not acknowledge the requests");

    let running = app(&m, &[(client_id, json!({}))], out.path());
    let name = format!("mqtt:{}:{client_id}", m.url());
    let line = format!("sluice_mqtt_broker_dropped_messages{{source=\"{name}\"}} 15");
    assert!(wait_until(WAIT, || sluice::telemetry::metrics::render().lines().any(|l| l == line)), "no `{line}` in:\n{}", sluice::telemetry::metrics::render());
    let check = sluice::telemetry::health::report().checks.into_iter().find(|c| c.name == format!("source:{name}")).expect("the source's readiness check");
    assert!(check.ok, "{check:?}");
    assert!(check.detail.starts_with("connected; the broker reports 15 dropped messages"), "{check:?}");
    // The 5 the broker kept are answered (in order, before the ping that follows them).
    p.wait_for_sluice(WAIT);
    let ids: Vec<_> = p.replies().iter().map(|r| (r.body["id"].clone(), r.body["code"].clone())).collect();
    assert_eq!(ids, (0..5).map(|i| (json!(format!("r{i}")), json!(200))).collect::<Vec<_>>());
    report(running);
}
