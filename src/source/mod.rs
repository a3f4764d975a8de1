//! Sources: where messages come from. A source sends [`Envelope`]s into a bounded channel
//! (backpressure blocks it) until its input ends or shutdown is requested.

pub mod decoder;
pub mod file;
pub mod http;
pub mod kafka;
pub mod mqtt;
pub mod offsets;

use tokio::sync::mpsc;

use crate::error::SourceError;
use crate::flow::{BoxFuture, Envelope};
use crate::shutdown::Shutdown;

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
