//! The pipeline's contract: what travels from sources through the engine to sinks, and how
//! delivery travels back. Sources, the engine and sinks all import it; it imports only the
//! message type and the integration contract (validator, verdicts) below it.
//!
//! ```text
//!  source ──Envelope{msg, ack}──▶ engine ──Batch{records, ack}──▶ sink
//!     ▲                                                             │
//!     └──────────── Ack::done(Delivery) once all records are durable ┘
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::integration::{RequestVerdict, Validator};
use crate::message::Message;

/// A boxed future, for object-safe async traits.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One output record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputRecord {
    /// The rule that produced it.
    pub rule: Arc<str>,
    /// Target topic (shared with the rule's action when it is fixed).
    pub topic: Arc<str>,
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
        serde_json::json!({ "rule": &*self.rule, "topic": &*self.topic, "key": self.key, "headers": headers, "value": value }).to_string()
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

/// How the outputs of a message ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Every output was written (or there was none).
    Delivered,
    /// At least one output could not be written; the source must not commit past it.
    Failed(String),
    /// The message was given up before its outputs were delivered (a stage stopped with it in
    /// hand, or shutdown): nothing is known to be written, and nothing refused it. The source
    /// must not commit past it, and may leave it to be delivered again.
    Dropped,
}

/// Called exactly once when all the outputs of a message are delivered (or failed). Sources use
/// it to commit input positions only after their outputs are safe (at-least-once).
///
/// An ack dropped without [`done`](Ack::done) (a stage stopped or panicked with the message in
/// hand) reports [`Delivery::Dropped`]: the source never commits past it, and never waits for
/// it forever.
///
/// An integration request's ack ([`Ack::judged`]) also carries back the worker stage's
/// [`RequestVerdict`] (per-entry verdicts, reply code and data), attached by the stage with
/// [`Ack::attach`]: the source hears of it at once (to log it) and answers the request with it
/// once the outputs are delivered.
pub struct Ack {
    callback: Option<Callback>,
    verdict: Option<RequestVerdict>,
    on_verdict: Option<OnVerdict>,
}

/// What a judged ack runs when the verdict is attached.
type OnVerdict = Box<dyn FnOnce(&RequestVerdict) + Send>;

enum Callback {
    Plain(Box<dyn FnOnce(Delivery) + Send>),
    Judged(Box<dyn FnOnce(Delivery, Option<RequestVerdict>) + Send>),
}

impl Ack {
    /// An ack that does nothing (sources with nothing to commit).
    pub fn none() -> Ack {
        Ack { callback: None, verdict: None, on_verdict: None }
    }

    /// An ack running `f`.
    pub fn new(f: impl FnOnce(Delivery) + Send + 'static) -> Ack {
        Ack { callback: Some(Callback::Plain(Box::new(f))), verdict: None, on_verdict: None }
    }

    /// An ack running `on_verdict` as soon as the worker stage attaches its verdict, and `f`
    /// with the delivery and that verdict (`None` when the message never reached the stage, or
    /// the stage failed before judging it).
    pub fn judged(on_verdict: impl FnOnce(&RequestVerdict) + Send + 'static, f: impl FnOnce(Delivery, Option<RequestVerdict>) + Send + 'static) -> Ack {
        Ack { callback: Some(Callback::Judged(Box::new(f))), verdict: None, on_verdict: Some(Box::new(on_verdict)) }
    }

    /// Attaches the verdict on the request (the worker stage does, before the outputs go to the
    /// sink).
    pub fn attach(&mut self, verdict: RequestVerdict) {
        if let Some(f) = self.on_verdict.take() {
            f(&verdict);
        }
        self.verdict = Some(verdict);
    }

    /// Reports the delivery.
    pub fn done(mut self, d: Delivery) {
        self.fire(d);
    }

    fn fire(&mut self, d: Delivery) {
        match self.callback.take() {
            Some(Callback::Plain(f)) => f(d),
            Some(Callback::Judged(f)) => f(d, self.verdict.take()),
            None => {}
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        self.fire(Delivery::Dropped);
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.callback.is_some() { "Ack(pending)" } else { "Ack(none)" })
    }
}

/// A message with its ack.
pub struct Envelope {
    /// The message.
    pub msg: Message,
    /// Called when its outputs are delivered.
    pub ack: Ack,
    /// Set when the source could not make a valid message of its input: the engine routes it
    /// to the dead-letter topic with this reason instead of running rules.
    pub reject: Option<String>,
    /// Set for a raw integration request (MQTT channel): the worker stage judges its entries
    /// with this validator on the decoded request, runs the rules on the accepted entries only,
    /// and attaches its verdict to the ack.
    pub validate: Option<Arc<dyn Validator>>,
    /// The payload, already decoded by a source that had to read it itself (the HTTP upload,
    /// which stores the files its entries name; an `up_raw` decoder's output): the worker stage
    /// reads this document instead of parsing `msg.payload` again. `msg.payload` holds the same
    /// document's bytes, for the rules that read the raw payload and for error records.
    pub decoded: Option<serde_json::Value>,
}

impl Envelope {
    /// A valid message.
    pub fn new(msg: Message, ack: Ack) -> Envelope {
        Envelope { msg, ack, reject: None, validate: None, decoded: None }
    }

    /// An input the source could not decode; `msg.payload` holds the raw input.
    pub fn rejected(msg: Message, ack: Ack, reason: impl Into<String>) -> Envelope {
        Envelope { msg, ack, reject: Some(reason.into()), validate: None, decoded: None }
    }

    /// A raw integration request, to be judged by `validator` in the worker stage (its ack
    /// should be [`Ack::judged`], to get the verdict back).
    pub fn request(msg: Message, ack: Ack, validator: Arc<dyn Validator>) -> Envelope {
        Envelope { msg, ack, reject: None, validate: Some(validator), decoded: None }
    }

    /// This envelope with its payload's document, decoded by the source (see
    /// [`Envelope::decoded`]; `value` must be what `msg.payload` holds).
    pub fn with_decoded(mut self, value: Option<serde_json::Value>) -> Envelope {
        self.decoded = value;
        self
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("msg", &self.msg)
            .field("ack", &self.ack)
            .field("reject", &self.reject)
            .field("validate", &self.validate.is_some())
            .field("decoded", &self.decoded.is_some())
            .finish()
    }
}

/// A topic and partition, and the offsets of it that restored state already holds.
pub type Covered = ((String, i32), crate::state::coverage::Coverage);

/// What a Kafka source tells the engine when its partitions come and go, so that the state of
/// stateful rules follows the partitions across a consumer group ([`crate::state::changelog`]).
/// Both calls block the consumer's thread inside its rebalance: no record of an assigned
/// partition is read before its state is back, and a revoked partition's state is durable
/// before the partition goes.
pub trait PartitionState: Send + Sync {
    /// Partitions `partitions` of Kafka source `source` were assigned: their state is read back
    /// from the changelog. Returns, per (topic, partition), the offset ranges the restored
    /// state already holds: those records are acknowledged without being processed again.
    /// `partition_count` is how many partitions the source's topics have (its changelog gets
    /// as many).
    fn assigned(&self, source: &str, partitions: &[i32], partition_count: i32) -> Result<Vec<Covered>, String>;
    /// Partitions `partitions` of `source` were revoked (their in-flight records are
    /// delivered): their state is dropped once the checkpoints holding it are written.
    fn revoked(&self, source: &str, partitions: &[i32]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn recorder() -> (Ack, Arc<Mutex<Vec<Delivery>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (Ack::new(move |d| s.lock().unwrap().push(d)), seen)
    }

    #[test]
    fn an_ack_reports_once() {
        let (ack, seen) = recorder();
        ack.done(Delivery::Delivered);
        assert_eq!(*seen.lock().unwrap(), vec![Delivery::Delivered]);
    }

    #[test]
    fn a_judged_ack_hears_the_verdict_at_once_and_gets_it_back_with_the_delivery() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (h, s) = (heard.clone(), seen.clone());
        let mut ack = Ack::judged(move |v| h.lock().unwrap().push(v.code), move |d, v| s.lock().unwrap().push((d, v.map(|v| v.code))));
        ack.attach(RequestVerdict::fail(serde_json::Value::Null, 1203, "bad_request", "x".into()));
        assert_eq!(*heard.lock().unwrap(), vec![1203]);
        assert!(seen.lock().unwrap().is_empty());
        ack.done(Delivery::Delivered);
        assert_eq!(*seen.lock().unwrap(), vec![(Delivery::Delivered, Some(1203))]);
        // Dropped before the stage: no verdict.
        let s = seen.clone();
        drop(Ack::judged(|_| {}, move |d, v| s.lock().unwrap().push((d, v.map(|v| v.code)))));
        assert_eq!(seen.lock().unwrap()[1], (Delivery::Dropped, None));
    }

    #[test]
    fn a_dropped_ack_reports_a_failure() {
        let (ack, seen) = recorder();
        drop(ack);
        assert_eq!(*seen.lock().unwrap(), vec![Delivery::Dropped]);
        drop(Ack::none());
    }
}
