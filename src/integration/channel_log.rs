//! The integration channel's log (seed 003): connect/disconnect records, payload transfer
//! records and error records are structured `tracing` events (target `sluice::channel`) and
//! metrics; the most recent error records are also kept in memory, for an HTTP view.

use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex};

use serde::Serialize;

/// How many error records [`recent_errors`] keeps.
pub const RECENT_ERRORS: usize = 100;

/// One error of the integration channel.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRecord {
    /// When, ms since the epoch.
    pub time_ms: i64,
    /// The source's name.
    pub source: String,
    /// The request topic.
    pub topic: String,
    /// The request's `id`, when it had one.
    pub request_id: Option<serde_json::Value>,
    /// What went wrong: `bad_request`, `validation`, `decoder`, `too_large` or `delivery`.
    pub stage: String,
    /// The reply code.
    pub code: u32,
    /// Why (for validation errors: the first rejected entry's reason and how many failed).
    pub message: String,
}

/// A file of an HTTP upload, stored in the object store.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredFile {
    /// When, ms since the epoch.
    pub time_ms: i64,
    /// The source's name.
    pub source: String,
    /// Where it is (the URI the entries now refer to).
    pub uri: String,
    /// Its name in the upload.
    pub original: String,
    /// Its size.
    pub bytes: u64,
}

/// A bounded ring of error records: the newest `cap`.
pub type ErrorRing = Ring<ErrorRecord>;

/// A bounded ring of records: the newest `cap`.
#[derive(Debug)]
pub struct Ring<T> {
    cap: usize,
    records: Mutex<VecDeque<T>>,
}

impl<T: Clone> Ring<T> {
    /// An empty ring keeping at most `cap` records.
    pub fn new(cap: usize) -> Ring<T> {
        Ring { cap: cap.max(1), records: Mutex::new(VecDeque::new()) }
    }

    /// Adds a record, dropping the oldest when full.
    pub fn push(&self, rec: T) {
        let mut r = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() == self.cap {
            r.pop_front();
        }
        r.push_back(rec);
    }

    /// The records, oldest first.
    pub fn snapshot(&self) -> Vec<T> {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

static RING: LazyLock<ErrorRing> = LazyLock::new(|| ErrorRing::new(RECENT_ERRORS));
static FILES: LazyLock<Ring<StoredFile>> = LazyLock::new(|| Ring::new(RECENT_ERRORS));

/// Records a stored upload file (the console lists the last [`RECENT_ERRORS`]).
pub fn stored(file: StoredFile) {
    FILES.push(file);
}

/// The last stored upload files, oldest first.
pub fn recent_files() -> Vec<StoredFile> {
    FILES.snapshot()
}

/// Records an error of the channel: an error log event and the ring.
pub fn error(rec: ErrorRecord) {
    tracing::warn!(target: "sluice::channel", source = %rec.source, topic = %rec.topic, request_id = ?rec.request_id, stage = %rec.stage, code = rec.code, "integration error: {}", rec.message);
    RING.push(rec);
}

/// The last [`RECENT_ERRORS`] error records of every integration channel, oldest first.
pub fn recent_errors() -> Vec<ErrorRecord> {
    RING.snapshot()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest() {
        let ring = ErrorRing::new(2);
        for i in 0..3 {
            ring.push(ErrorRecord { time_ms: i, source: "s".into(), topic: "t".into(), request_id: None, stage: "decoder".into(), code: 1270, message: "m".into() });
        }
        let got: Vec<i64> = ring.snapshot().iter().map(|r| r.time_ms).collect();
        assert_eq!(got, vec![1, 2]);
        assert!(serde_json::to_string(&ring.snapshot()[0]).unwrap().contains("\"requestId\":null"));
    }
}
