//! The integration channel's contract (seeds 000–003): third-party systems push historical and
//! offline data; each request is validated entry by entry against the device registry and the
//! product thing models, answered with a documented code, and its accepted entries feed the
//! rules. The device registry implements [`Validator`]; the MQTT channel and the HTTP upload
//! use it.

use serde::Serialize;

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
    /// Validates a parsed request on an integration topic of `kind` for product `product_key`.
    fn validate(&self, kind: TopicKind, product_key: &str, request: &serde_json::Value) -> Validation;

    /// The product key of the device a `params` entry names (its `productKey`, or the product
    /// of its `assetId`), when known. The HTTP upload uses it to pick the message's topic.
    fn product_key_of(&self, entry: &serde_json::Value) -> Option<String> {
        entry.get("productKey").and_then(|p| p.as_str()).map(str::to_string)
    }
}

/// A validator that accepts every well-formed entry (no registry configured).
pub struct AcceptAll;

impl Validator for AcceptAll {
    fn validate(&self, _: TopicKind, _: &str, request: &serde_json::Value) -> Validation {
        match request.get("params").and_then(|p| p.as_array()) {
            Some(params) => Validation::Entries(
                params
                    .iter()
                    .map(|e| {
                        if e.get("deviceKey").and_then(|d| d.as_str()).is_some() || e.get("assetId").is_some() {
                            EntryVerdict::Accepted
                        } else {
                            EntryVerdict::Rejected { code: codes::BAD_REQUEST, message: "missing deviceKey".into() }
                        }
                    })
                    .collect(),
            ),
            None => Validation::Request { code: codes::BAD_REQUEST, message: "`params` must be an array of entries".into() },
        }
    }
}
