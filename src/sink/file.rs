//! The file sink: one JSON-lines file per target topic under an output folder. A run replaces
//! the files it writes (a topic's file is truncated when the run first writes to it). Each line is
//! `{"rule": …, "key": …, "headers": {…}, "iot_topic": …, "value": {…}}`. Metrics: records and
//! bytes written (`sluice_sink_sent_*{sink="file"}`), records refused and I/O errors
//! (`sluice_sink_errors_total{sink="file"}`).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::error::SinkError;
use crate::rule::template::valid_kafka_topic;
use crate::sink::{Batch, BoxFuture, Sink, SinkReport};
use crate::source::Delivery;
use crate::telemetry::metrics;

/// The `sink` label of this sink's metrics.
const SINK: &str = "file";

/// Writes `<dir>/<topic>.jsonl`.
pub struct FileSink {
    dir: PathBuf,
}

impl FileSink {
    /// A sink writing under `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> FileSink {
        FileSink { dir: dir.into() }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    rule: &'a str,
    key: Option<&'a str>,
    headers: serde_json::Map<String, serde_json::Value>,
    iot_topic: &'a str,
    value: &'a RawValue,
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
            tokio::fs::create_dir_all(&self.dir).await.map_err(io)?;
            let mut files: HashMap<String, tokio::io::BufWriter<tokio::fs::File>> = HashMap::new();
            let mut report = SinkReport::default();
            let mut buf = Vec::with_capacity(1024);
            while let Some(batch) = rx.recv().await {
                let mut failure = None;
                for rec in &batch.records {
                    // Topics are validated by the engine; this keeps file names safe regardless.
                    if !valid_kafka_topic(&rec.topic) {
                        metrics::SINK_ERRORS.with_label_values(&[SINK, "invalid_topic"]).inc();
                        failure = Some(format!("invalid topic name `{}`", rec.topic));
                        continue;
                    }
                    let value: &RawValue = match serde_json::from_slice(&rec.value) {
                        Ok(v) => v,
                        Err(e) => {
                            metrics::SINK_ERRORS.with_label_values(&[SINK, "invalid_value"]).inc();
                            failure = Some(format!("record value is not JSON: {e}"));
                            continue;
                        }
                    };
                    let headers = rec.headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
                    buf.clear();
                    serde_json::to_writer(&mut buf, &Line { rule: &rec.rule, key: rec.key.as_deref(), headers, iot_topic: &batch.iot_topic, value })
                        .map_err(|e| SinkError::Other { sink: "file".into(), message: e.to_string() })?;
                    buf.push(b'\n');
                    if !files.contains_key(&rec.topic) {
                        let path = self.dir.join(format!("{}.jsonl", rec.topic));
                        let f = tokio::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&path).await.map_err(io)?;
                        files.insert(rec.topic.clone(), tokio::io::BufWriter::with_capacity(1 << 16, f));
                    }
                    let w = files.get_mut(&rec.topic).expect("inserted above");
                    w.write_all(&buf).await.map_err(io)?;
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
                batch.ack.done(match failure {
                    None => Delivery::Delivered,
                    Some(f) => Delivery::Failed(f),
                });
            }
            for (_, mut w) in files {
                w.flush().await.map_err(io)?;
                w.into_inner().sync_all().await.map_err(io)?;
            }
            Ok(report)
        })
    }
}
