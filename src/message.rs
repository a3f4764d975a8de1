//! Messages as they enter the engine, and the records rules see.

use std::sync::Arc;

use std::borrow::Cow;

use crate::doc::Node;

use crate::topic::TopicInfo;

/// Where a message came from, and when.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    /// The source's name (from the config, e.g. `file:examples/quickstart.jsonl`).
    pub source: Arc<str>,
    /// Receive time, milliseconds since the Unix epoch.
    pub received_ms: i64,
    /// A message id unique within the source (line number, Kafka offset, MQTT packet id…);
    /// `messageId()` returns it.
    pub id: u64,
    /// Kafka topic, partition and offset, for Kafka sources.
    pub kafka: Option<KafkaPos>,
    /// The state shard of the message (its Kafka source and partition), whose changelog keeps
    /// the state its stateful contributions change; [`Shard::LOCAL`] for other sources.
    pub shard: Shard,
    /// MQTT packet id, for MQTT sources.
    pub mqtt_pkid: Option<u16>,
}

/// Where a Kafka record was read.
#[derive(Clone, Debug)]
pub struct KafkaPos {
    /// The Kafka topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// Where the state a message changes lives: [`Shard::LOCAL`] (the embedded store) or one Kafka
/// source's partition (its changelog partition), interned for the process's life as a small
/// number. All of a device's records must come through one shard for its state to follow the
/// partition (device-keyed input); the engine counts the records that do not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard(pub u32);

static SHARDS: std::sync::RwLock<Vec<(Arc<str>, i32)>> = std::sync::RwLock::new(Vec::new());

impl Shard {
    /// The embedded store's shard (every non-Kafka source).
    pub const LOCAL: Shard = Shard(0);

    /// The shard of partition `partition` of Kafka source `source`.
    pub fn of(source: &str, partition: i32) -> Shard {
        let known = |t: &[(Arc<str>, i32)]| t.iter().position(|(s, p)| &**s == source && *p == partition).map(|i| Shard(i as u32 + 1));
        if let Some(s) = known(&SHARDS.read().unwrap_or_else(|p| p.into_inner())) {
            return s;
        }
        let mut t = SHARDS.write().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = known(&t) {
            return s;
        }
        t.push((Arc::from(source), partition));
        Shard(t.len() as u32)
    }

    /// The Kafka source and partition of a shard (`None` for [`Shard::LOCAL`]).
    pub fn lane(self) -> Option<(Arc<str>, i32)> {
        let i = self.0.checked_sub(1)? as usize;
        SHARDS.read().unwrap_or_else(|p| p.into_inner()).get(i).cloned()
    }

    /// Whether it is a Kafka partition's.
    pub fn is_kafka(self) -> bool {
        self.0 != 0
    }
}

/// One message: an IoT topic, the payload bytes and where it came from.
#[derive(Clone, Debug)]
pub struct Message {
    /// The IoT topic (MQTT-style levels separated by `/`).
    pub topic: String,
    /// The payload, as received.
    pub payload: bytes::Bytes,
    /// Metadata.
    pub meta: Metadata,
}

impl Message {
    /// A message with default metadata.
    pub fn new(topic: impl Into<String>, payload: impl Into<bytes::Bytes>) -> Self {
        Message { topic: topic.into(), payload: payload.into(), meta: Metadata::default() }
    }
}

/// Why an integration batch could not be split into per-device records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The payload is not a JSON object.
    #[error("integration request must be a JSON object")]
    NotObject,
    /// `params` is missing or not an array.
    #[error("integration request needs `params`, an array of per-device entries")]
    NoParams,
    /// An entry of `params` is not an object.
    #[error("params[{0}] must be an object")]
    EntryNotObject(usize),
}

/// The `params` entries of an integration request: the request must be a JSON object with a
/// `params` array. The one place that says what a batch is: the engine splits it
/// ([`split_integration_batch`]) and the integration channel judges its entries
/// ([`crate::integration::judge`]) by it.
pub fn batch_params<'n, 'a>(root: &'n Node<'a>) -> Result<&'n [Node<'a>], BatchError> {
    let Node::Object(_) = root else {
        return Err(BatchError::NotObject);
    };
    match root.get("params") {
        Some(Node::Array(params)) => Ok(params),
        _ => Err(BatchError::NoParams),
    }
}

/// Splits an integration request (seeds 000, 001, 003) into one record per `params` entry, in
/// order: the entry's fields plus the request's `id`, `version` and `method`. A missing or empty
/// `time` becomes `received_ms` (seed 000: "if empty, the server's time is used").
/// A request that is not an object with a `params` array fails as a whole; an entry that is not
/// an object fails alone, and the other entries still go through.
pub fn split_integration_batch<'a>(root: &Node<'a>, received_ms: i64) -> Result<Vec<Result<Node<'a>, BatchError>>, BatchError> {
    split_entries(root, received_ms, None)
}

/// [`split_integration_batch`], keeping only the entries whose flag in `keep` is set (the
/// entries a validator accepted; an entry without a flag is dropped), when given.
pub fn split_entries<'a>(root: &Node<'a>, received_ms: i64, keep: Option<&[bool]>) -> Result<Vec<Result<Node<'a>, BatchError>>, BatchError> {
    let params = batch_params(root)?;
    let Node::Object(envelope) = root else {
        return Err(BatchError::NotObject);
    };
    let mut out = Vec::with_capacity(params.len());
    for (i, entry) in params.iter().enumerate() {
        if keep.is_some_and(|k| !k.get(i).copied().unwrap_or(false)) {
            continue;
        }
        let Node::Object(fields) = entry else {
            out.push(Err(BatchError::EntryNotObject(i)));
            continue;
        };
        let mut rec: Vec<(Cow<'a, str>, Node<'a>)> = Vec::with_capacity(fields.len() + 3);
        rec.extend(fields.iter().cloned());
        let time_missing = match entry.get("time") {
            None | Some(Node::Null) => true,
            Some(Node::Str(s)) => s.is_empty(),
            _ => false,
        };
        if time_missing {
            match rec.iter_mut().find(|(k, _)| k == "time") {
                Some(slot) => slot.1 = Node::Int(received_ms),
                None => rec.push((Cow::Borrowed("time"), Node::Int(received_ms))),
            }
        }
        for key in ["id", "version", "method"] {
            if entry.get(key).is_none() {
                if let Some((k, v)) = envelope.iter().rev().find(|(k, _)| k == key) {
                    rec.push((k.clone(), v.clone()));
                }
            }
        }
        out.push(Ok(Node::Object(rec)));
    }
    Ok(out)
}

/// Whether the topic's payload is an integration batch that rules see entry by entry.
pub fn is_batch(info: &TopicInfo<'_>) -> bool {
    info.kind.batch_field().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn split(v: serde_json::Value, now: i64) -> Result<Vec<serde_json::Value>, BatchError> {
        let text = v.to_string();
        let root = Node::parse(text.as_bytes()).unwrap();
        split_integration_batch(&root, now).map(|r| r.into_iter().map(|e| e.map(|n| n.to_json()).unwrap_or_else(|e| serde_json::Value::String(e.to_string()))).collect())
    }

    #[test]
    fn splits_seed_000_into_entries_with_envelope_fields() {
        let req = json!({"id":"123","version":"1.0","params":[
            {"deviceKey":"device1","events":{"eventId1":{"alarm":9,"level":3}},"time":123456},
            {"deviceKey":"device2","events":{"eventId2":{"result":"ok"}}}
        ],"method":"integration.event.post"});
        let recs = split(req, 999).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0], json!({"deviceKey":"device1","events":{"eventId1":{"alarm":9,"level":3}},"time":123456,"id":"123","version":"1.0","method":"integration.event.post"}));
        assert_eq!(recs[1]["time"], json!(999));
        assert_eq!(recs[1]["deviceKey"], json!("device2"));
    }

    #[test]
    fn empty_time_string_becomes_receive_time() {
        let req = json!({"params":[{"deviceKey":"d","time":""}]});
        assert_eq!(split(req, 5).unwrap()[0]["time"], json!(5));
    }

    #[test]
    fn rejects_bad_batches() {
        assert_eq!(split(json!([1]), 0), Err(BatchError::NotObject));
        assert_eq!(split(json!({"params": {}}), 0), Err(BatchError::NoParams));
        assert_eq!(split(json!({"params": [1, {"deviceKey": "d"}]}), 0).unwrap(), vec![json!("params[0] must be an object"), json!({"deviceKey": "d", "time": 0})]);
    }
}
