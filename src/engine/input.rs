//! A message's payload, decoded once: the document ([`decode`], counted in
//! `sluice_payload_decodes_total`), and the records rules see ([`Records`]): one per accepted
//! integration entry, else the payload itself.

use std::sync::LazyLock;

use prometheus::IntCounter;
use smallvec::{smallvec, SmallVec};

use crate::doc::Node;
use crate::message::{is_batch, split_entries, Message};
use crate::telemetry::metrics;
use crate::topic::TopicInfo;

/// The source kinds of `sluice_payload_decodes_total` (the prefix of a source's name; `other`
/// for the rest): a bounded label.
pub const SOURCE_KINDS: [&str; 5] = ["mqtt", "http", "file", "kafka", "other"];

static DECODES: LazyLock<[IntCounter; 5]> = LazyLock::new(|| SOURCE_KINDS.map(|k| metrics::PAYLOAD_DECODES.with_label_values(&[k])));

/// The kind of a source by its name (`mqtt:…`, `http:…`, `file:…`, `kafka:…`): an index into
/// [`SOURCE_KINDS`].
fn source_kind(source: &str) -> usize {
    let prefix = source.split(':').next().unwrap_or_default();
    SOURCE_KINDS.iter().position(|k| *k == prefix).unwrap_or(SOURCE_KINDS.len() - 1)
}

/// Decodes a message's payload into the engine's document: the one parse of a message on its
/// way through the pipeline (validation, the device registry and the rules all read this one).
/// `decoded` is the document a source decoded already (see [`crate::flow::Envelope::decoded`]):
/// it is read as it is, not parsed again (the source counted its decode).
pub fn decode<'a>(msg: &'a Message, decoded: Option<&'a serde_json::Value>) -> Result<Node<'a>, serde_json::Error> {
    if let Some(v) = decoded {
        return Ok(Node::from_json(v));
    }
    DECODES[source_kind(&msg.meta.source)].inc();
    Node::parse(&msg.payload)
}

/// The records the rules see for one message.
pub struct Records<'a> {
    /// A whole-message failure (not JSON, too large, not a valid batch): it fails every rule
    /// that reads fields (every rule when the payload is too large).
    pub failure: Option<String>,
    /// The payload is over `max_payload_bytes` (it was not decoded for the rules).
    pub oversized: bool,
    /// The payload is an integration batch split into entries (error records list the entries
    /// that failed).
    pub batch: bool,
    /// One per integration entry (an entry that is not an object is an error of its own), else
    /// the payload (`None`: not decoded, or not JSON).
    pub list: SmallVec<[Result<Option<Node<'a>>, String>; 1]>,
    /// Set by the caller when the records come from [`Node::parse`] of the payload's bytes:
    /// then every borrowed string in them is JSON text with no escape, which the `SELECT *`
    /// writer copies without checking ([`crate::jsonw::write_parsed_node`]). `false` (always
    /// safe) for a document borrowed from a `serde_json::Value`.
    pub parsed: bool,
}

impl<'a> Records<'a> {
    /// The records of `msg` on a topic of `info`: `doc` is its decoded payload (`None` when it
    /// was not decoded); `wanted` says whether the rules read it (else they see no record);
    /// `keep` flags the integration entries that go to the rules (the accepted ones).
    pub fn new(msg: &'a Message, info: &TopicInfo<'_>, doc: Option<Result<Node<'a>, serde_json::Error>>, wanted: bool, max_payload_bytes: usize, keep: Option<&[bool]>) -> Records<'a> {
        let oversized = msg.payload.len() > max_payload_bytes;
        let decoded: Result<Option<Node<'a>>, String> = if oversized {
            Err(format!("payload of {} bytes exceeds max_payload_bytes ({max_payload_bytes})", msg.payload.len()))
        } else if wanted {
            match doc {
                Some(Ok(n)) => Ok(Some(n)),
                Some(Err(e)) => Err(format!("payload is not valid JSON: {e}")),
                None => Ok(None),
            }
        } else {
            Ok(None)
        };
        let split = match (&decoded, is_batch(info)) {
            (Ok(Some(root)), true) => Some(split_entries(root, msg.meta.received_ms, keep)),
            _ => None,
        };
        // A whole-message failure fails every rule that reads fields; a bad entry fails alone.
        let mut failure = decoded.as_ref().err().cloned();
        let batch = split.is_some();
        let list = match (decoded, split) {
            (_, Some(Ok(entries))) => entries.into_iter().map(|e| e.map(Some).map_err(|e| format!("invalid integration request: {e}"))).collect(),
            (_, Some(Err(e))) => {
                failure = Some(format!("invalid integration request: {e}"));
                smallvec![Ok(None)]
            }
            (Ok(root), None) => smallvec![Ok(root)],
            (Err(_), None) => smallvec![Ok(None)],
        };
        Records { failure, oversized, batch, list, parsed: false }
    }
}
