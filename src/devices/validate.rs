//! The registry as the integration channel's [`Validator`]: registered, enabled devices and
//! values that fit the product's thing model, judged on the decoded request.

use serde_json::Value as Json;

use crate::devices::model::{self, DataType};
use crate::devices::Registry;
use crate::doc::Node;
use crate::integration::{codes, EntryVerdict, Validation, Validator};
use crate::topic::TopicKind;

impl Registry {
    /// Validates one `params` entry (see [`Validator`]).
    fn validate_entry(&self, kind: TopicKind, topic_pk: &str, entry: &Node<'_>) -> EntryVerdict {
        let reject = |code, message: String| EntryVerdict::Rejected { code, message };
        if !matches!(entry, Node::Object(_)) {
            return reject(codes::BAD_REQUEST, "entry must be an object".into());
        }
        let device = match (entry.get("assetId"), entry.get("deviceKey")) {
            (Some(Node::Str(asset)), _) => match self.device_by_asset(asset) {
                Some(d) => d,
                None => return reject(codes::DEVICE_NOT_FOUND, format!("asset `{asset}` not found")),
            },
            (Some(other), _) if *other != Node::Null => return reject(codes::BAD_REQUEST, "`assetId` must be a string".into()),
            (_, Some(Node::Str(dk))) => {
                let pk = match entry.get("productKey") {
                    None | Some(Node::Null) => topic_pk,
                    Some(Node::Str(pk)) => pk.as_ref(),
                    Some(_) => return reject(codes::BAD_REQUEST, "`productKey` must be a string".into()),
                };
                match self.device(pk, dk) {
                    Some(d) => d,
                    None => return reject(codes::DEVICE_NOT_FOUND, format!("device `{dk}` of product `{pk}` not found")),
                }
            }
            (_, Some(_)) => return reject(codes::BAD_REQUEST, "`deviceKey` must be a string".into()),
            (_, None) => return reject(codes::BAD_REQUEST, "missing `deviceKey` (or `assetId`)".into()),
        };
        if !device.enabled {
            return reject(codes::DEVICE_NOT_FOUND, format!("device `{}` of product `{}` is disabled", device.device_key, device.product_key));
        }
        let Some(field) = kind.batch_field() else {
            return EntryVerdict::Accepted;
        };
        let data = match entry.get(field) {
            Some(data @ Node::Object(_)) => data,
            Some(_) => return reject(codes::BAD_REQUEST, format!("`{field}` must be an object")),
            None => return reject(codes::BAD_REQUEST, format!("missing `{field}`")),
        };
        let Some(model) = self.model(&device.product_key) else {
            return reject(codes::MODEL_VALIDATE_FAILED, format!("no thing model for product {}", device.product_key));
        };
        let (defs, what) = match kind {
            TopicKind::IntegrationMeasurepoint => (&model.measurepoints, "measure point"),
            TopicKind::IntegrationAttributes => (&model.attributes, "attribute"),
            _ => (&model.events, "event"),
        };
        for (id, value) in data.fields() {
            let Some(t) = defs.get(id) else {
                return reject(codes::MODEL_VALIDATE_FAILED, format!("unknown {what} `{id}` in the model of product {}", device.product_key));
            };
            let value = if kind == TopicKind::IntegrationMeasurepoint { measurepoint_value(t, value) } else { Ok(value) };
            if let Err(problem) = value.and_then(|v| t.check(v)) {
                return reject(codes::MODEL_VALIDATE_FAILED, format!("{what} `{id}`: {problem}"));
            }
        }
        EntryVerdict::Accepted
    }
}

/// A measure point's value: plain, or `{value, quality}` (quality an integer, optional).
fn measurepoint_value<'v, 'a>(t: &DataType, v: &'v Node<'a>) -> Result<&'v Node<'a>, String> {
    let Node::Object(obj) = v else {
        return Ok(v);
    };
    let struct_with_value = matches!(t, DataType::Struct { members } if members.contains_key("value"));
    let Some(value) = v.get("value") else {
        return Ok(v);
    };
    if struct_with_value || obj.iter().any(|(k, _)| k != "value" && k != "quality") {
        return Ok(v);
    }
    if let Some(q) = v.get("quality") {
        if !matches!(q, Node::Int(_) | Node::UInt(_)) {
            return Err(format!("quality must be an integer, got {}", model::describe(q)));
        }
    }
    Ok(value)
}

impl Validator for Registry {
    /// Per `params` entry: a missing or non-string `deviceKey` (or `assetId`) is
    /// [`codes::BAD_REQUEST`]; an unknown or disabled device [`codes::DEVICE_NOT_FOUND`]; a value
    /// that does not fit the product's model [`codes::MODEL_VALIDATE_FAILED`]. A request that is
    /// not an object with a `params` array is a request-level [`codes::BAD_REQUEST`].
    fn validate(&self, kind: TopicKind, product_key: &str, request: &Node<'_>) -> Validation {
        let Node::Object(_) = request else {
            return Validation::Request { code: codes::BAD_REQUEST, message: "request must be a JSON object".into() };
        };
        match request.get("params") {
            Some(Node::Array(params)) => Validation::Entries(params.iter().map(|e| self.validate_entry(kind, product_key, e)).collect()),
            _ => Validation::Request { code: codes::BAD_REQUEST, message: "`params` must be an array of entries".into() },
        }
    }

    fn product_key_of(&self, entry: &Json) -> Option<String> {
        match entry.get("assetId").and_then(Json::as_str) {
            Some(asset) => self.device_by_asset(asset).map(|d| d.product_key),
            None => entry.get("productKey").and_then(Json::as_str).map(str::to_string),
        }
    }
}
