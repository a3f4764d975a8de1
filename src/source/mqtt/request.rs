//! What the MQTT channel does with one request before the pipeline, and the reply it sends.
//!
//! [`intake`] answers at once what needs no decoding (1413 too large, 1270 decoder failed for
//! `up_raw`, 1203 for text that is not UTF-8 or a topic that is not a request topic) and
//! otherwise forwards the request raw (a decoded `up_raw` request: the decoder's JSON, on the
//! JSON topic of its kind). The worker stage decodes it once, judges its entries
//! ([`crate::integration::judge`]) and runs the rules on the accepted ones; its verdict comes
//! back with the ack and becomes the reply ([`reply_body`]).

use bytes::Bytes;
use serde_json::{json, Value};

use crate::doc::Node;
use crate::integration::{codes, judge as judge_request, RequestVerdict, Validator};
use crate::source::decoder::{topic_level, Decoders};
use crate::telemetry::metrics;
use crate::topic::{TopicInfo, TopicKind};

/// The largest packet MQTT can carry (a 268,435,455-byte remaining length plus its fixed
/// header): the client's limit, so that the size limit is Sluice's (`max_request_bytes`, 1413).
pub const MQTT_MAX_PACKET_BYTES: usize = 268_435_455 + 5;

/// The `id` of a request too large to handle, when its JSON can still be read (scanned, not
/// built: only `id` is kept). `null` otherwise, or when the id is not a string or a number.
fn oversized_request_id(payload: &[u8]) -> Value {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        #[serde(default)]
        id: Value,
    }
    match serde_json::from_slice::<IdOnly>(payload) {
        Ok(IdOnly { id: id @ (Value::String(_) | Value::Number(_)) }) => id,
        _ => Value::Null,
    }
}

/// The reply body: `{"id", "code", "data", "message"}` (seeds 000/003).
pub fn reply_body(id: &Value, code: u32, data: Value) -> Value {
    json!({"id": id, "code": code, "data": data, "message": codes::message(code)})
}

/// What the source does with a request.
#[derive(Debug, PartialEq)]
pub enum Intake {
    /// Answer at once, with this verdict.
    Answer(RequestVerdict),
    /// Send to the worker stage, raw: the topic of its kind and the request's bytes.
    Forward {
        /// The JSON request topic (`sys/{pk}/integration/{measurepoint|attributes|event}/post`).
        topic: String,
        /// The request (for `up_raw`: the decoder's JSON text).
        payload: Bytes,
        /// For `up_raw`, the decoder's request, decoded already (the stage reads it as it is).
        decoded: Option<Value>,
    },
}

/// Takes one request on `topic`: size, then the `up_raw` decoder or the UTF-8 check of a JSON
/// request. Pure apart from running the decoder script; decodes no JSON.
pub fn intake(topic: &str, payload: &Bytes, decoders: &Decoders, max_bytes: usize) -> Intake {
    let info = TopicInfo::parse(topic);
    let pk = info.product_key.unwrap_or_default();
    let fail = |id, code, stage, message| Intake::Answer(RequestVerdict::fail(id, code, stage, message));
    if payload.len() > max_bytes {
        let id = if topic_level(info.kind).is_some() { oversized_request_id(payload) } else { Value::Null };
        return fail(id, codes::TOO_LARGE, "too_large", format!("request of {} bytes is larger than max_request_bytes ({max_bytes})", payload.len()));
    }
    match info.kind {
        TopicKind::IntegrationUpRaw => match decoders.decode(pk, payload) {
            Ok(d) => {
                // The decoder's output was parsed once (to read its `method`): the stage reads
                // that document, not the text again.
                metrics::PAYLOAD_DECODES.with_label_values(&["mqtt"]).inc();
                Intake::Forward { topic: forward_topic(topic, pk, d.kind), payload: Bytes::from(d.text), decoded: Some(d.request) }
            }
            Err(e) => {
                metrics::INTEGRATION_DECODER_ERRORS.with_label_values(&[e.reason()]).inc();
                fail(Value::Null, codes::DECODER_FAILED, "decoder", e.to_string())
            }
        },
        k if topic_level(k).is_some() => match std::str::from_utf8(payload) {
            Ok(_) => Intake::Forward { topic: topic.to_string(), payload: payload.clone(), decoded: None },
            Err(e) => fail(Value::Null, codes::BAD_REQUEST, "bad_request", format!("the request is not UTF-8 text (invalid byte at offset {}); JSON requests are UTF-8", e.valid_up_to())),
        },
        _ => fail(Value::Null, codes::BAD_REQUEST, "bad_request", format!("`{topic}` is not an integration request topic")),
    }
}

/// The topic a request received on `topic` goes to the rules on: its own, or for a decoded
/// `up_raw` request the JSON topic of its `kind`.
fn forward_topic(topic: &str, pk: &str, kind: TopicKind) -> String {
    match TopicInfo::parse(topic).kind {
        TopicKind::IntegrationUpRaw => format!("sys/{pk}/integration/{}/post", topic_level(kind).unwrap_or("measurepoint")),
        _ => topic.to_string(),
    }
}

/// What the channel makes of one request, in one call (tests, fuzzing): [`intake`], then the
/// worker stage's judgement.
#[derive(Debug, PartialEq)]
pub struct Handled {
    /// The request's `id` (null when there is none).
    pub id: Value,
    /// The reply's code once the accepted entries are delivered (or at once when nothing goes
    /// to the rules).
    pub code: u32,
    /// The reply's `data`.
    pub data: Value,
    /// What the rules see: the topic and the request with its accepted entries only.
    pub forward: Option<(String, Vec<u8>)>,
    /// Entries accepted.
    pub accepted: usize,
    /// Entries rejected.
    pub rejected: usize,
    /// An error to record in the channel log: stage and message.
    pub error: Option<(&'static str, String)>,
}

impl Handled {
    fn new(v: RequestVerdict, forward: Option<(String, Vec<u8>)>) -> Handled {
        Handled { id: v.id, code: v.code, data: v.data, forward, accepted: v.accepted, rejected: v.rejected, error: v.error }
    }
}

/// Handles one request on `topic`: decode (up_raw), parse, validate, filter. Pure apart from
/// running the decoder script.
pub fn handle_request(topic: &str, payload: &[u8], validator: &dyn Validator, decoders: &Decoders, max_bytes: usize) -> Handled {
    match intake(topic, &Bytes::copy_from_slice(payload), decoders, max_bytes) {
        Intake::Answer(v) => Handled::new(v, None),
        Intake::Forward { topic: target, payload, decoded } => {
            let info = TopicInfo::parse(&target);
            let doc = match &decoded {
                Some(v) => Ok(Node::from_json(v)),
                None => Node::parse(&payload),
            };
            judged(target.clone(), doc.as_ref(), info.kind, info.product_key.unwrap_or_default(), validator)
        }
    }
}

/// Judges a request received on `topic` once parsed (or decoded: `kind` is then its `method`'s),
/// as the worker stage does. Pure.
pub fn judge(topic: &str, request: &Value, kind: TopicKind, validator: &dyn Validator) -> Handled {
    let pk = TopicInfo::parse(topic).product_key.unwrap_or_default();
    judged(forward_topic(topic, pk, kind), Ok(&Node::from_json(request)), kind, pk, validator)
}

fn judged(target: String, request: Result<&Node<'_>, &serde_json::Error>, kind: TopicKind, pk: &str, validator: &dyn Validator) -> Handled {
    let (v, keep) = judge_request(request, kind, pk, validator);
    let forward = match request {
        Ok(root) if v.accepted > 0 => {
            let mut filtered = root.to_json();
            let params = root.get("params").and_then(|p| if let Node::Array(a) = p { Some(a) } else { None });
            let accepted: Vec<Value> = params.into_iter().flatten().zip(&keep).filter(|(_, k)| **k).map(|(e, _)| e.to_json()).collect();
            filtered["params"] = Value::Array(accepted);
            Some((target, serde_json::to_vec(&filtered).unwrap_or_default()))
        }
        _ => None,
    };
    Handled::new(v, forward)
}
