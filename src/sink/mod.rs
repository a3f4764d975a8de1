//! Sinks: where output records go. A sink receives batches (all the outputs of one input
//! message) and calls the batch's [`Ack`] once every record of it is durably written.

pub mod file;
pub mod kafka;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::SinkError;
use crate::source::Ack;

/// A boxed future, for object-safe async traits.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One output record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputRecord {
    /// The rule that produced it.
    pub rule: Arc<str>,
    /// Target topic.
    pub topic: String,
    /// Record key.
    pub key: Option<String>,
    /// Headers from the rule's action.
    pub headers: Vec<(String, String)>,
    /// The value: a JSON document.
    pub value: Vec<u8>,
    /// Whether this is an error record (evaluation failure or dead letter).
    pub is_error: bool,
}

impl OutputRecord {
    /// `{"rule", "topic", "key", "headers", "value"}` as one JSON line: the output contract of
    /// `sluice test` and of the rules API's test. The value is embedded as written (numbers
    /// keep their exact text); a value that is not JSON (never produced by the engine) is
    /// shown as a string.
    pub fn test_line(&self) -> String {
        let headers: serde_json::Map<String, serde_json::Value> = self.headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        let fallback;
        let value: &serde_json::value::RawValue = match serde_json::from_slice(&self.value) {
            Ok(v) => v,
            Err(_) => {
                fallback = serde_json::value::to_raw_value(&String::from_utf8_lossy(&self.value)).unwrap_or_default();
                &fallback
            }
        };
        serde_json::json!({ "rule": &*self.rule, "topic": self.topic, "key": self.key, "headers": headers, "value": value }).to_string()
    }
}

/// The outputs of one input message, acknowledged together.
pub struct Batch {
    /// The IoT topic of the input (sinks put it in a header).
    pub iot_topic: String,
    /// The outputs (possibly none: the ack still has to travel in order).
    pub records: Vec<OutputRecord>,
    /// Called once all records are delivered.
    pub ack: Ack,
}

/// What a sink did, reported when it stops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkReport {
    /// Records written.
    pub records: u64,
    /// Of which error records.
    pub error_records: u64,
    /// Bytes of record values written.
    pub bytes: u64,
}

/// A destination for output records.
pub trait Sink: Send + 'static {
    /// Consumes batches until the channel closes, then flushes and returns.
    fn run(self: Box<Self>, rx: mpsc::Receiver<Batch>) -> BoxFuture<Result<SinkReport, SinkError>>;
}
