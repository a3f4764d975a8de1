//! The integration channel's contract (seeds 000–003): third-party systems push historical and
//! offline data; each request is validated entry by entry against the device registry and the
//! product thing models, answered with a documented code, and its accepted entries feed the
//! rules. The device registry implements [`Validator`]; the MQTT channel and the HTTP upload
//! use it.

pub mod channel_log;

use serde::Serialize;
use serde_json::{json, Value as Json};

use crate::doc::Node;
use crate::message::batch_params;
use crate::topic::TopicKind;

/// Return codes of integration replies.
pub mod codes {
    /// Every entry was accepted.
    pub const OK: u32 = 200;
    /// The request is not valid JSON, or misses a mandatory field (`params`, `deviceKey`, …).
    pub const BAD_REQUEST: u32 = 1203;
    /// A value does not fit the product's thing model (seed 000: "Model validate failed").
    pub const MODEL_VALIDATE_FAILED: u32 = 1204;
    /// The device is not registered, or disabled (seed 000: "Device not found").
    pub const DEVICE_NOT_FOUND: u32 = 1257;
    /// The product's raw-data decoder script failed (up_raw).
    pub const DECODER_FAILED: u32 = 1270;
    /// The request is larger than allowed.
    pub const TOO_LARGE: u32 = 1413;
    /// Sluice could not deliver the accepted entries (sink failure); retry later.
    pub const INTERNAL: u32 = 500;

    /// The message of a code.
    pub fn message(code: u32) -> &'static str {
        match code {
            OK => "OK",
            BAD_REQUEST => "Invalid request",
            MODEL_VALIDATE_FAILED => "Model validate failed",
            DEVICE_NOT_FOUND => "Device not found",
            DECODER_FAILED => "Decoder script failed",
            TOO_LARGE => "Request too large",
            INTERNAL => "Internal error",
            _ => "Error",
        }
    }
}

/// The verdict on one `params` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EntryVerdict {
    /// Imported.
    Accepted,
    /// Not imported.
    Rejected {
        /// A code of [`codes`].
        code: u32,
        /// Why, naming the offending identifier or value.
        message: String,
    },
}

/// The verdict on a whole request: one verdict per `params` entry, in order, or a request-level
/// failure (malformed JSON, no `params` array).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Per-entry verdicts.
    Entries(Vec<EntryVerdict>),
    /// The request as a whole is invalid.
    Request {
        /// A code of [`codes`].
        code: u32,
        /// Why.
        message: String,
    },
}

/// Validates integration requests: registered, enabled devices and values that fit the model.
pub trait Validator: Send + Sync + 'static {
    /// Validates a decoded request on an integration topic of `kind` for product `product_key`.
    fn validate(&self, kind: TopicKind, product_key: &str, request: &Node<'_>) -> Validation;

    /// The product key of the device a `params` entry names (its `productKey`, or the product
    /// of its `assetId`), when known. The HTTP upload uses it to pick the message's topic.
    fn product_key_of(&self, entry: &serde_json::Value) -> Option<String> {
        entry.get("productKey").and_then(|p| p.as_str()).map(str::to_string)
    }
}

/// A validator that accepts every well-formed entry (no registry configured).
pub struct AcceptAll;

impl Validator for AcceptAll {
    fn validate(&self, _: TopicKind, _: &str, request: &Node<'_>) -> Validation {
        match request.get("params") {
            Some(Node::Array(params)) => Validation::Entries(
                params
                    .iter()
                    .map(|e| {
                        if e.get("deviceKey").and_then(Node::as_str).is_some() || e.get("assetId").is_some() {
                            EntryVerdict::Accepted
                        } else {
                            EntryVerdict::Rejected { code: codes::BAD_REQUEST, message: "missing deviceKey".into() }
                        }
                    })
                    .collect(),
            ),
            _ => Validation::Request { code: codes::BAD_REQUEST, message: "`params` must be an array of entries".into() },
        }
    }
}

/// The verdict on one integration request, as its reply tells it: the request's `id`, the
/// reply's code and data, how many entries were accepted and rejected, and the error to record
/// in the channel log (stage and message). The worker stage makes it ([`judge`]) and the MQTT
/// source answers with it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestVerdict {
    /// The request's `id` (null when there is none).
    pub id: Json,
    /// The reply's code.
    pub code: u32,
    /// The reply's `data`.
    pub data: Json,
    /// Entries accepted.
    pub accepted: usize,
    /// Entries rejected.
    pub rejected: usize,
    /// An error to record in the channel log: stage and message.
    pub error: Option<(&'static str, String)>,
}

impl RequestVerdict {
    /// A request that failed as a whole.
    pub fn fail(id: Json, code: u32, stage: &'static str, message: String) -> RequestVerdict {
        RequestVerdict { id, code, data: json!({"error": message}), accepted: 0, rejected: 0, error: Some((stage, message)) }
    }
}

/// Judges a decoded integration request (`Err`: its JSON did not parse) on a topic of `kind`
/// for product `product_key`: the request must be an object with a `params` array (the batch
/// rules of [`batch_params`]), then `validator` judges each entry. Returns the verdict and,
/// per `params` entry, whether it was accepted (empty when the request failed as a whole).
pub fn judge(request: Result<&Node<'_>, &serde_json::Error>, kind: TopicKind, product_key: &str, validator: &dyn Validator) -> (RequestVerdict, Vec<bool>) {
    let request = match request {
        Ok(r @ Node::Object(_)) => r,
        Ok(_) => return (RequestVerdict::fail(Json::Null, codes::BAD_REQUEST, "bad_request", "the request must be a JSON object".into()), Vec::new()),
        Err(e) => return (RequestVerdict::fail(Json::Null, codes::BAD_REQUEST, "bad_request", format!("malformed JSON: {e}")), Vec::new()),
    };
    let id = request.get("id").map_or(Json::Null, Node::to_json);
    let Ok(params) = batch_params(request) else {
        return (RequestVerdict::fail(id, codes::BAD_REQUEST, "bad_request", "`params` must be an array of entries".into()), Vec::new());
    };
    let verdicts = match validator.validate(kind, product_key, request) {
        Validation::Request { code, message } => return (RequestVerdict::fail(id, code, "validation", message), Vec::new()),
        Validation::Entries(v) if v.len() != params.len() => {
            return (RequestVerdict::fail(id, codes::INTERNAL, "validation", format!("the validator judged {} of {} entries", v.len(), params.len())), Vec::new());
        }
        Validation::Entries(v) => v,
    };
    let mut keep = Vec::with_capacity(params.len());
    let mut failed = Vec::new();
    for (i, (entry, verdict)) in params.iter().zip(&verdicts).enumerate() {
        keep.push(*verdict == EntryVerdict::Accepted);
        if let EntryVerdict::Rejected { code, message } = verdict {
            failed.push(json!({"index": i, "deviceKey": entry.get("deviceKey").map_or(Json::Null, Node::to_json), "code": code, "message": message}));
        }
    }
    let (accepted, rejected) = (params.len() - failed.len(), failed.len());
    let (code, data, error) = match failed.first() {
        None => (codes::OK, json!({}), None),
        Some(first) => {
            let code = first["code"].as_u64().unwrap_or(u64::from(codes::INTERNAL)) as u32;
            let msg = format!("{rejected} of {} entries rejected; first: params[{}] {}: {}", params.len(), first["index"], first["deviceKey"], first["message"].as_str().unwrap_or_default());
            (code, json!({"accepted": accepted, "failed": failed}), Some(("validation", msg)))
        }
    };
    (RequestVerdict { id, code, data, accepted, rejected, error }, keep)
}
