//! Sinks: where output records go. A sink receives batches (all the outputs of one input
//! message) and calls the batch's [`Ack`] once every record of it is durably written.

pub mod file;
pub mod kafka;

use tokio::sync::mpsc;

use crate::error::SinkError;
use crate::flow::{Batch, BoxFuture};

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
