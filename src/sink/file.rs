//! The file sink: one JSON-lines file per target topic under an output folder. A run replaces
//! the files it writes (a topic's file is truncated when the run first writes to it), unless
//! `append` is set. Each line is
//! `{"rule": …, "key": …, "headers": {…}, "iot_topic": …, "value": {…}}`. Metrics: records and
//! bytes written (`sluice_sink_sent_*{sink="file"}`), records refused and I/O errors
//! (`sluice_sink_errors_total{sink="file"}`), and the time of each group commit
//! (`sluice_file_sink_sync_seconds`).
//!
//! **Durability: group commit.** A batch is acknowledged only once its lines are written and
//! `fsync`ed: the sink takes every batch already waiting (up to [`GROUP_MAX_BATCHES`]), writes
//! them, flushes and syncs each file they touched (and, for a file created by this run, its
//! folder), then acknowledges them all. So an acknowledged input (an MQTT PUBACK and reply, an
//! HTTP 200, a Kafka commit) survives `kill -9` and power loss, and under load one sync covers
//! many batches. With `fsync = false` the files are flushed to the OS, not synced, before the
//! acks: that survives `kill -9` of Sluice, not a power loss.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::error::SinkError;
use crate::flow::Delivery;
use crate::flow::{Batch, BoxFuture};
use crate::rule::template::valid_kafka_topic;
use crate::sink::{Sink, SinkReport};
use crate::telemetry::metrics;

/// The `sink` label of this sink's metrics.
const SINK: &str = "file";

/// Batches a group commit takes at most (the sync then acknowledges them together).
pub const GROUP_MAX_BATCHES: usize = 1024;

/// Writes `<dir>/<topic>.jsonl`.
pub struct FileSink {
    dir: PathBuf,
    append: bool,
    fsync: bool,
}

impl FileSink {
    /// A sink writing under `dir` (created if missing), replacing the files it writes.
    pub fn new(dir: impl Into<PathBuf>) -> FileSink {
        FileSink { dir: dir.into(), append: false, fsync: true }
    }

    /// Without `fsync`, a group of batches is acknowledged once written to the OS (it survives
    /// a crash of the process, not of the machine).
    pub fn fsync(mut self, fsync: bool) -> FileSink {
        self.fsync = fsync;
        self
    }

    /// With `append`, lines are added to existing files instead of replacing them.
    pub fn append(mut self, append: bool) -> FileSink {
        self.append = append;
        self
    }
}

/// One topic's open file.
struct Out {
    w: tokio::io::BufWriter<tokio::fs::File>,
    /// Written to since the last sync.
    dirty: bool,
}

#[derive(Serialize)]
struct Line<'a> {
    rule: &'a str,
    key: Option<&'a str>,
    headers: Headers<'a>,
    iot_topic: &'a str,
    value: &'a RawValue,
}

/// A record's headers as a JSON object, written from the pairs as they are (no map built per
/// record): in order of first appearance, a repeated name with its last value.
struct Headers<'a>(&'a [(String, String)]);

impl Serialize for Headers<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let pairs = self.0;
        let mut m = s.serialize_map(None)?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(seen, _)| seen == k) {
                continue;
            }
            let last = pairs.iter().rev().find(|(name, _)| name == k).map_or("", |(_, v)| v.as_str());
            m.serialize_entry(k, last)?;
        }
        m.end()
    }
}

impl Sink for FileSink {
    fn run(self: Box<Self>, mut rx: mpsc::Receiver<Batch>) -> BoxFuture<Result<SinkReport, SinkError>> {
        Box::pin(async move {
            metrics::prime_sink(SINK, metrics::FILE_SINK_ERROR_REASONS);
            let io = |error| {
                metrics::SINK_ERRORS.with_label_values(&[SINK, "io"]).inc();
                SinkError::Io { sink: "file".into(), error }
            };
            let (sent_data, sent_error, sent_bytes) =
                (metrics::SINK_SENT_RECORDS.with_label_values(&[SINK, "data"]), metrics::SINK_SENT_RECORDS.with_label_values(&[SINK, "error"]), metrics::SINK_SENT_BYTES.with_label_values(&[SINK]));
            let sync_seconds = &*metrics::FILE_SINK_SYNC_SECONDS;
            tokio::fs::create_dir_all(&self.dir).await.map_err(io)?;
            let mut files: HashMap<String, Out> = HashMap::new();
            let mut report = SinkReport::default();
            let mut buf = Vec::with_capacity(1024);
            let mut group: Vec<(Batch, Option<String>)> = Vec::new();
            // A file created since the last sync: the folder's entry must be synced too.
            let mut created = false;
            while let Some(first) = rx.recv().await {
                group.push((first, None));
                while group.len() < GROUP_MAX_BATCHES {
                    match rx.try_recv() {
                        Ok(b) => group.push((b, None)),
                        Err(_) => break,
                    }
                }
                for (batch, failure) in &mut group {
                    for rec in &batch.records {
                        // Topics are validated by the engine; this keeps file names safe regardless.
                        if !valid_kafka_topic(&rec.topic) {
                            metrics::SINK_ERRORS.with_label_values(&[SINK, "invalid_topic"]).inc();
                            *failure = Some(format!("invalid topic name `{}`", rec.topic));
                            continue;
                        }
                        let value: &RawValue = match serde_json::from_slice(&rec.value) {
                            Ok(v) => v,
                            Err(e) => {
                                metrics::SINK_ERRORS.with_label_values(&[SINK, "invalid_value"]).inc();
                                *failure = Some(format!("record value is not JSON: {e}"));
                                continue;
                            }
                        };
                        let headers = Headers(&rec.headers);
                        buf.clear();
                        serde_json::to_writer(&mut buf, &Line { rule: &rec.rule, key: rec.key.as_deref(), headers, iot_topic: &batch.iot_topic, value })
                            .map_err(|e| SinkError::Other { sink: "file".into(), message: e.to_string() })?;
                        buf.push(b'\n');
                        if !files.contains_key(&*rec.topic) {
                            let path = self.dir.join(format!("{}.jsonl", rec.topic));
                            let mut o = tokio::fs::OpenOptions::new();
                            if self.append {
                                o.append(true);
                            } else {
                                o.write(true).truncate(true);
                            }
                            let f = o.create(true).open(&path).await.map_err(io)?;
                            files.insert(rec.topic.to_string(), Out { w: tokio::io::BufWriter::with_capacity(1 << 16, f), dirty: false });
                            created = true;
                        }
                        let out = files.get_mut(&*rec.topic).expect("inserted above");
                        out.w.write_all(&buf).await.map_err(io)?;
                        out.dirty = true;
                        report.records += 1;
                        report.bytes += rec.value.len() as u64;
                        sent_bytes.inc_by(rec.value.len() as u64);
                        if rec.is_error {
                            report.error_records += 1;
                            sent_error.inc();
                        } else {
                            sent_data.inc();
                        }
                    }
                }
                // Group commit: every touched file flushed and synced, then the acks. An I/O
                // error stops the sink: the group's acks are dropped, so they report `Delivery::Dropped`.
                let started = std::time::Instant::now();
                let mut synced = false;
                for out in files.values_mut().filter(|o| o.dirty) {
                    out.w.flush().await.map_err(io)?;
                    if self.fsync {
                        out.w.get_ref().sync_data().await.map_err(io)?;
                    }
                    out.dirty = false;
                    synced = true;
                }
                if created && self.fsync {
                    sync_dir(&self.dir).await.map_err(io)?;
                    created = false;
                }
                if synced {
                    sync_seconds.observe(started.elapsed().as_secs_f64());
                }
                for (batch, failure) in group.drain(..) {
                    batch.ack.done(match failure {
                        None => Delivery::Delivered,
                        Some(f) => Delivery::Failed(f),
                    });
                }
            }
            Ok(report)
        })
    }
}

/// Syncs a folder, so that the entries of files created in it survive a crash.
async fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        tokio::fs::File::open(dir).await?.sync_all().await
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The headers object is the one a `serde_json::Map` of the pairs (insertion order) gives.
    #[test]
    fn headers_serialize_like_a_map_of_the_pairs() {
        let s = |k: &str, v: &str| (k.to_string(), v.to_string());
        for pairs in [vec![], vec![s("a", "1")], vec![s("b", "x\"y"), s("a", "2")], vec![s("a", "1"), s("b", "2"), s("a", "3")]] {
            let map: serde_json::Map<String, serde_json::Value> = pairs.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
            assert_eq!(serde_json::to_string(&Headers(&pairs)).unwrap(), serde_json::to_string(&map).unwrap(), "{pairs:?}");
        }
    }
}
