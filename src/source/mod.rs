//! Sources: where messages come from. A source sends [`Envelope`]s into a bounded channel
//! (backpressure blocks it) until its input ends or shutdown is requested.

pub mod channel_log;
pub mod decoder;
pub mod file;
pub mod http;
pub mod kafka;
pub mod mqtt;
pub mod offsets;

use std::fmt;

use tokio::sync::mpsc;

use crate::error::SourceError;
use crate::message::Message;
use crate::shutdown::Shutdown;
use crate::sink::BoxFuture;

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
pub struct Ack(Option<Box<dyn FnOnce(Delivery) + Send>>);

impl Ack {
    /// An ack that does nothing (sources with nothing to commit).
    pub fn none() -> Ack {
        Ack(None)
    }

    /// An ack running `f`.
    pub fn new(f: impl FnOnce(Delivery) + Send + 'static) -> Ack {
        Ack(Some(Box::new(f)))
    }

    /// Reports the delivery.
    pub fn done(mut self, d: Delivery) {
        if let Some(f) = self.0.take() {
            f(d);
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Delivery::Dropped);
        }
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Ack(pending)" } else { "Ack(none)" })
    }
}

/// A message with its ack.
#[derive(Debug)]
pub struct Envelope {
    /// The message.
    pub msg: Message,
    /// Called when its outputs are delivered.
    pub ack: Ack,
    /// Set when the source could not make a valid message of its input: the engine routes it
    /// to the dead-letter topic with this reason instead of running rules.
    pub reject: Option<String>,
}

impl Envelope {
    /// A valid message.
    pub fn new(msg: Message, ack: Ack) -> Envelope {
        Envelope { msg, ack, reject: None }
    }

    /// An input the source could not decode; `msg.payload` holds the raw input.
    pub fn rejected(msg: Message, ack: Ack, reason: impl Into<String>) -> Envelope {
        Envelope { msg, ack, reject: Some(reason.into()) }
    }
}

/// What a source did, reported when it stops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceReport {
    /// Messages sent on.
    pub messages: u64,
    /// Input lines or records that were not messages (each logged and counted).
    pub rejected: u64,
}

/// A producer of messages.
pub trait Source: Send + 'static {
    /// The source's name, for logs and metrics.
    fn name(&self) -> String;
    /// Sends messages until the input ends or `shutdown` fires.
    fn run(self: Box<Self>, tx: mpsc::Sender<Envelope>, shutdown: Shutdown) -> BoxFuture<Result<SourceReport, SourceError>>;
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
    fn a_dropped_ack_reports_a_failure() {
        let (ack, seen) = recorder();
        drop(ack);
        assert_eq!(*seen.lock().unwrap(), vec![Delivery::Dropped]);
        drop(Ack::none());
    }
}
