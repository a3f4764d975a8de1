//! The worker stage: what a pipeline worker does with each message, in order.
//!
//! 1. **Topic**: [`TopicInfo::parse`], once; the topic index finds the matching rules.
//! 2. **Decode**: the payload becomes the engine's document ([`input::decode`], counted in
//!    `sluice_payload_decodes_total`), once, when validation, the device registry or a rule
//!    reads it.
//! 3. **Judge and observe**: a raw integration request (MQTT channel) is judged entry by entry
//!    on the document ([`crate::integration::judge`]); its verdict travels back with the ack. A
//!    request with no accepted entry is answered at once: nothing goes to the rules. Data-flow
//!    messages update the device registry ([`Registry::observe_decoded`]).
//! 4. **Split**: an integration batch becomes one record per (accepted) entry ([`Records`]).
//! 5. **Rules**: the [`Engine`] evaluates the matching rules on the records.
//!
//! It is the one place a message is looked at as a whole before the rules: per-device routing
//! and per-device state attach here.

use std::sync::Arc;
use std::time::Instant;

use prometheus::{Histogram, IntCounter};

use crate::devices::Registry;
use crate::engine::guard;
use crate::engine::input::{self, Records};
use crate::engine::process::Engine;
use crate::engine::ruleset::Scratch;
use crate::engine::types::Clock;
use crate::engine::types::Outcome;
use crate::flow::{Ack, Batch, Delivery, Envelope, OutputRecord};
use crate::integration::{codes, judge, RequestVerdict, Validator};
use crate::message::Message;
use crate::telemetry::metrics;
use crate::topic::TopicInfo;

/// A source's counters, resolved once (label lookups hash and lock; not per message).
struct SourceCounters {
    source: Arc<str>,
    unmatched: IntCounter,
}

/// What the stage did with a message.
enum Step {
    /// The rules ran.
    Ran(Outcome),
    /// A judged request without accepted entries: answered, nothing for the rules.
    Answered,
}

/// One worker's stage: its engine, the device registry, its clock and scratch space.
pub struct WorkerStage {
    id: usize,
    engine: Arc<Engine>,
    devices: Option<Arc<Registry>>,
    clock: Clock,
    scratch: Scratch,
    hist: Histogram,
    data_records: IntCounter,
    error_records: IntCounter,
    sources: Vec<SourceCounters>,
}

impl WorkerStage {
    /// The stage of worker `id`.
    pub fn new(id: usize, engine: Arc<Engine>, devices: Option<Arc<Registry>>, clock: Clock) -> WorkerStage {
        WorkerStage {
            id,
            engine,
            devices,
            clock,
            scratch: Scratch::default(),
            hist: metrics::PROCESS_SECONDS.with_label_values(&[&id.to_string()]),
            data_records: metrics::OUTPUT_RECORDS.with_label_values(&["data"]),
            error_records: metrics::OUTPUT_RECORDS.with_label_values(&["error"]),
            sources: Vec::new(),
        }
    }

    /// The worker ran out of work: its per-rule counts reach the shared metrics.
    pub fn idle(&mut self) {
        self.scratch.flush_metrics();
    }

    /// Handles one message: the batch of its outputs for the sink, or `None` when it was
    /// answered here (a judged request with no accepted entry: its ack is done).
    pub fn handle(&mut self, env: Envelope) -> Option<Batch> {
        let Envelope { msg, mut ack, reject, validate, decoded } = env;
        self.engine.tap().observe(&msg);
        let mut records = Vec::new();
        // With durable state, every record of a Kafka partition goes through the checkpoints
        // (stateful or not): what a checkpoint holds is then one run of offsets, which the
        // partition's next owner skips ([`crate::state::coverage`]).
        let kafka = msg.meta.kafka.as_ref().filter(|_| msg.meta.shard.is_kafka()).map(|k| (msg.meta.shard, k.topic.clone(), k.offset));
        if let Some(reason) = &reject {
            // Counted by the source (sluice_source_decode_errors_total).
            records.push(self.engine.dead_letter(&msg, reason));
            if let (Some(c), Some(pos)) = (self.engine.checkpoints(), kafka) {
                ack = c.hold(None, Some(pos), ack);
            }
        } else {
            let started = Instant::now();
            // With durable state, a message is processed inside the state gate (a checkpoint
            // never cuts through it), and one that a stateful rule took is acknowledged only
            // once the checkpoint holding it is durable.
            let checkpoints = self.engine.checkpoints().cloned();
            let gate = checkpoints.as_ref().map(|c| c.share());
            // The digest is needed early only while redeliveries after a restart are expected,
            // else only for a message a stateful rule took.
            // (Kafka records are recognised by their offsets instead.)
            let early = (checkpoints.is_some() && kafka.is_none() && self.engine.replaying()).then(|| message_digest(&msg));
            self.scratch.skip_state = early.is_some_and(|d| self.engine.replayed(d))
                // A straggler of a revoked partition: its contribution is the next owner's (its
                // ack is given up; the next owner reads it again).
                || kafka.as_ref().is_some_and(|(shard, _, _)| checkpoints.as_ref().is_some_and(|c| !c.owns(*shard)));
            let registry_before = checkpoints.as_ref().and_then(|_| self.engine.registry_version());
            let (engine, devices, scratch, now_ms) = (&*self.engine, self.devices.as_deref(), &mut self.scratch, self.clock.now_ms());
            // Each rule's evaluation is guarded inside the engine; this guard catches a panic
            // anywhere else on the message's way (validation, registry update, decode): the
            // message becomes a dead letter of stage `panic`, and the worker goes on.
            let processed = guard::catch(|| run(engine, devices, &msg, decoded.as_ref(), validate.as_deref(), &mut ack, now_ms, scratch, &mut records));
            let outcome = match processed {
                Ok(Step::Answered) => {
                    ack.done(Delivery::Delivered);
                    return None;
                }
                Ok(Step::Ran(outcome)) => outcome,
                Err(panic) => {
                    tracing::error!(worker = self.id, topic = %msg.topic, reason = %panic, "processing a message panicked; it becomes a dead letter");
                    records.clear();
                    records.push(self.engine.panic_record(&msg, &format!("processing the message panicked: {panic}")));
                    // Its counts may be half-done: start over.
                    self.scratch = Scratch::default();
                    Outcome { matched: 1, ..Outcome::default() }
                }
            };
            // A message that changed the device registry is held like a stateful one: what the
            // registry learnt is in the same checkpoints.
            let taught = registry_before.is_some() && self.engine.registry_version() != registry_before;
            if let Some(c) = &checkpoints {
                if kafka.is_some() {
                    ack = c.hold(None, kafka, ack);
                } else if outcome.stateful || taught {
                    ack = c.hold(Some(early.unwrap_or_else(|| message_digest(&msg))), None, ack);
                }
            }
            drop(gate);
            self.hist.observe(started.elapsed().as_secs_f64());
            if outcome.matched == 0 {
                self.unmatched(&msg);
            }
        }
        self.engine.shadow_compare(&msg, &records, self.clock.now_ms());
        let errors = records.iter().filter(|r| r.is_error).count() as u64;
        if errors > 0 {
            self.error_records.inc_by(errors);
        }
        if records.len() as u64 > errors {
            self.data_records.inc_by(records.len() as u64 - errors);
        }
        Some(Batch { iot_topic: msg.topic, records, ack })
    }

    fn unmatched(&mut self, msg: &Message) {
        let i = match self.sources.iter().position(|c| c.source == msg.meta.source) {
            Some(i) => i,
            None => {
                let s = msg.meta.source.clone();
                self.sources.push(SourceCounters { unmatched: metrics::SOURCE_UNMATCHED_RECORDS.with_label_values(&[&*s]), source: s });
                self.sources.len() - 1
            }
        };
        self.sources[i].unmatched.inc();
    }
}

/// A message's identity for replay detection: FNV-1a over its topic and payload (stable across
/// runs and builds).
fn message_digest(msg: &Message) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in msg.topic.bytes().chain([0u8]).chain(msg.payload.iter().copied()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The stage's steps for one message (see the module's documentation); a judged request's
/// verdict is attached to its `ack`.
#[allow(clippy::too_many_arguments)]
fn run<'a>(
    engine: &Engine,
    devices: Option<&Registry>,
    msg: &'a Message,
    decoded: Option<&'a serde_json::Value>,
    validator: Option<&dyn Validator>,
    ack: &mut Ack,
    now_ms: i64,
    scratch: &mut Scratch,
    out: &mut Vec<OutputRecord>,
) -> Step {
    // 1. Topic.
    let info = TopicInfo::parse(&msg.topic);
    let set = engine.current();
    set.index.matches(&msg.topic, &mut scratch.ids);
    let max = engine.options().max_payload_bytes;
    let wanted = !scratch.ids.is_empty() && engine.wants_document(&set, &scratch.ids, &info, msg);
    let observer = devices.filter(|_| Registry::observes(info.kind));
    // 2. Decode, once.
    let doc = (validator.is_some() || observer.is_some() || (wanted && msg.payload.len() <= max)).then(|| input::decode(msg, decoded));
    // 3. Judge the request's entries; observe data-flow messages.
    let mut keep = None;
    if let (Some(v), Some(doc)) = (validator, &doc) {
        // A validator that panics (a bug) fails the request alone, like any internal failure.
        let judged = guard::catch(|| judge(doc.as_ref(), info.kind, info.product_key.unwrap_or_default(), v));
        let (verdict, accepted) = judged.unwrap_or_else(|panic| (RequestVerdict::fail(serde_json::Value::Null, codes::INTERNAL, "internal", format!("request handler failed: {panic}")), Vec::new()));
        let answered = verdict.accepted == 0;
        ack.attach(verdict);
        if answered {
            return Step::Answered;
        }
        keep = Some(accepted);
    }
    if let (Some(d), Some(doc)) = (observer, &doc) {
        d.observe_decoded(&msg.topic, &info, doc.as_ref());
    }
    if scratch.ids.is_empty() {
        return Step::Ran(Outcome::default());
    }
    // 4. Split into the records the rules see.
    let mut records = Records::new(msg, &info, doc, wanted, max, keep.as_deref());
    records.parsed = decoded.is_none();
    // 5. Rules.
    Step::Ran(engine.eval(&set, msg, &info, &records, now_ms, scratch, out, crate::engine::process::Mode::Live))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineOptions, RuleSet};
    use crate::rule::expr::Env;
    use crate::source::decoder::Decoders;
    use crate::source::mqtt::request::{intake, Intake};
    use std::path::Path;
    use std::sync::Mutex;

    type Seen = Arc<Mutex<Vec<(Delivery, Option<RequestVerdict>)>>>;

    /// The MQTT channel's part (intake, raw forward with a judged ack), then the stage.
    fn request(stage: &mut WorkerStage, registry: &Arc<Registry>, topic: &str, payload: &[u8], seen: &Seen) -> Option<Batch> {
        let decoders = Decoders::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("decoders"), std::time::Duration::from_millis(50), 16 << 20);
        let Intake::Forward { topic, payload, decoded } = intake(topic, &bytes::Bytes::copy_from_slice(payload), &decoders, 1 << 20) else {
            panic!("forwarded");
        };
        let meta = crate::message::Metadata { source: Arc::from("mqtt:tcp://test:1883:decode-once"), received_ms: 5, id: 1, kafka: None, shard: crate::message::Shard::LOCAL, mqtt_pkid: Some(1) };
        let s = seen.clone();
        let ack = Ack::judged(|_| {}, move |d, v| s.lock().unwrap().push((d, v)));
        let validator: Arc<dyn Validator> = registry.clone();
        stage.handle(Envelope::request(Message { topic, payload, meta }, ack, validator).with_decoded(decoded))
    }

    fn mqtt_decodes() -> u64 {
        metrics::PAYLOAD_DECODES.with_label_values(&["mqtt"]).get()
    }

    /// One MQTT integration request is decoded exactly once on its way from the request bytes
    /// to the output records: validation, the split and the rules all read the one document.
    #[test]
    fn an_mqtt_request_is_decoded_once_end_to_end() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let registry = Arc::new(Registry::load(&root.join("models"), None).unwrap());
        let (rules, errors) = crate::control::compile_paths(&[root.join("rules")]);
        assert!(errors.is_empty(), "{errors:?}");
        let env = Env { devices: Box::new(registry.clone()), ..Env::default() };
        let engine = Arc::new(Engine::new(RuleSet::unmetered(rules.into_iter().map(Arc::new).collect()), env, EngineOptions { rule_metrics: false, ..EngineOptions::default() }));
        let mut stage = WorkerStage::new(0, engine, Some(registry.clone()), Clock::Fixed(1));
        let seen: Seen = Arc::default();
        let topic = "sys/productKey1/integration/measurepoint/post";

        // Two accepted entries: two records, reply 200 once delivered.
        let before = mqtt_decodes();
        let req = r#"{"id":"123","version":"1.0","params":[{"deviceKey":"device1","measurepoints":{"temp":1.02},"time":123456},{"deviceKey":"device2","measurepoints":{"temp":2.02}}],"method":"integration.measurepoint.post"}"#;
        let batch = request(&mut stage, &registry, topic, req.as_bytes(), &seen).expect("accepted entries go to the sink");
        assert_eq!(mqtt_decodes() - before, 1, "decoded exactly once");
        assert_eq!(batch.records.len(), 2, "{:?}", batch.records);
        assert!(batch.records.iter().all(|r| !r.is_error && &*r.topic == "iot-integration-measurepoint"));
        assert!(std::str::from_utf8(&batch.records[1].value).unwrap().contains(r#""time":5"#), "a missing time is the receive time");
        assert!(seen.lock().unwrap().is_empty(), "answered once delivered");
        batch.ack.done(Delivery::Delivered);
        let (d, v) = seen.lock().unwrap().pop().unwrap();
        let v = v.expect("judged");
        assert_eq!((d, v.code, v.accepted, v.id), (Delivery::Delivered, 200, 2, serde_json::json!("123")));

        // A rejected entry: the rules see the accepted one only, the reply names the other.
        let before = mqtt_decodes();
        let req = r#"{"id":"124","params":[{"deviceKey":"device1","measurepoints":{"temp":1}},{"deviceKey":"device9","measurepoints":{"temp":1}}]}"#;
        let batch = request(&mut stage, &registry, topic, req.as_bytes(), &seen).expect("one accepted entry");
        assert_eq!(mqtt_decodes() - before, 1);
        assert_eq!(batch.records.len(), 1);
        batch.ack.done(Delivery::Delivered);
        let v = seen.lock().unwrap().pop().unwrap().1.unwrap();
        assert_eq!((v.code, v.accepted, v.rejected), (codes::DEVICE_NOT_FOUND, 1, 1));
        assert_eq!(v.data["failed"][0]["deviceKey"], "device9");

        // Not JSON: answered at once by the stage, nothing for the sink.
        let before = mqtt_decodes();
        assert!(request(&mut stage, &registry, topic, b"{not json", &seen).is_none());
        assert_eq!(mqtt_decodes() - before, 1);
        let (d, v) = seen.lock().unwrap().pop().unwrap();
        let v = v.unwrap();
        assert_eq!((d, v.code, v.error.unwrap().0), (Delivery::Delivered, codes::BAD_REQUEST, "bad_request"));

        // An up_raw frame (seed 003's sample decoder, decoders/productKey1.js): the decoder's
        // output is decoded once, and the stage reads that document.
        let before = mqtt_decodes();
        let frame = [0x01, 0x03, 0x04, 0x00, 0x0a, 0x01, 0x02, 0xff, 0x7e];
        let batch = request(&mut stage, &registry, "sys/productKey1/integration/up_raw", &frame, &seen).expect("the decoded entry goes to the sink");
        assert_eq!(mqtt_decodes() - before, 1, "decoded exactly once");
        assert_eq!(batch.records.len(), 1, "{:?}", batch.records);
        assert_eq!(&*batch.records[0].topic, "iot-integration-measurepoint");
        batch.ack.done(Delivery::Delivered);
        let v = seen.lock().unwrap().pop().unwrap().1.unwrap();
        assert_eq!((v.code, v.accepted), (200, 1));
    }
}
