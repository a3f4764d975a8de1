//! The JSON-lines file source: one message per line,
//! `{"topic": "…", "payload": <any JSON>}` or `{"topic": "…", "payload_base64": "…"}`,
//! with an optional `"received_ms"` to fix the receive time. The source ends at end of file.
//! A line that is not a valid message is routed to the dead-letter topic with `path:line: reason`.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::error::SourceError;
use crate::message::{Message, Metadata};
use crate::shutdown::Shutdown;
use crate::sink::BoxFuture;
use crate::source::{Ack, Envelope, Source, SourceReport};
use crate::telemetry::metrics;

/// Reads messages from a JSON-lines file.
pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    /// A source over `path`.
    pub fn new(path: impl Into<PathBuf>) -> FileSource {
        FileSource { path: path.into() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    topic: String,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    payload_base64: Option<String>,
    received_ms: Option<i64>,
}

/// Parses one line into a message (without metadata).
pub fn parse_line(line: &str) -> Result<(String, Vec<u8>, Option<i64>), String> {
    let l: Line<'_> = serde_json::from_str(line).map_err(|e| format!("not a message line: {e}"))?;
    if l.topic.is_empty() {
        return Err("`topic` is empty".into());
    }
    let payload = match (l.payload, l.payload_base64) {
        (Some(p), None) => p.get().as_bytes().to_vec(),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b.trim()).map_err(|e| format!("`payload_base64` is not base64: {e}"))?,
        (Some(_), Some(_)) => return Err("give `payload` or `payload_base64`, not both".into()),
        (None, None) => return Err("missing `payload` (JSON) or `payload_base64` (bytes)".into()),
    };
    Ok((l.topic, payload, l.received_ms))
}

impl Source for FileSource {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn run(self: Box<Self>, tx: mpsc::Sender<Envelope>, shutdown: Shutdown) -> BoxFuture<Result<SourceReport, SourceError>> {
        Box::pin(async move {
            let name: Arc<str> = self.name().into();
            metrics::prime_source(&name);
            let io = |error| SourceError::Io { source_name: name.to_string(), error };
            let file = tokio::fs::File::open(&self.path).await.map_err(io)?;
            let mut lines = BufReader::with_capacity(1 << 16, file).lines();
            let mut report = SourceReport::default();
            let mut line_no: u64 = 0;
            let received_records = metrics::SOURCE_RECEIVED_RECORDS.with_label_values(&[&*name]);
            let received_bytes = metrics::SOURCE_RECEIVED_BYTES.with_label_values(&[&*name]);
            let decode_errors = metrics::SOURCE_DECODE_ERRORS.with_label_values(&[&*name]);
            while let Some(line) = lines.next_line().await.map_err(io)? {
                line_no += 1;
                if shutdown.is_triggered() {
                    break;
                }
                if line.trim().is_empty() {
                    continue;
                }
                received_records.inc();
                received_bytes.inc_by(line.len() as u64);
                let now = chrono::Utc::now().timestamp_millis();
                let env = match parse_line(&line) {
                    Ok((topic, payload, received)) => {
                        report.messages += 1;
                        let meta = Metadata { source: name.clone(), received_ms: received.unwrap_or(now), id: line_no, ..Metadata::default() };
                        Envelope::new(Message { topic, payload: payload.into(), meta }, Ack::none())
                    }
                    Err(reason) => {
                        report.rejected += 1;
                        decode_errors.inc();
                        let reason = format!("{}:{line_no}: {reason}", self.path.display());
                        tracing::warn!(source = %name, line = line_no, %reason, "rejected input line");
                        let meta = Metadata { source: name.clone(), received_ms: now, id: line_no, ..Metadata::default() };
                        Envelope::rejected(Message { topic: String::new(), payload: line.into_bytes().into(), meta }, Ack::none(), reason)
                    }
                };
                if tx.send(env).await.is_err() {
                    break;
                }
            }
            Ok(report)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_the_payload_text_exactly() {
        let (t, p, r) = parse_line(r#"{"topic":"/a","payload":{"x": 1.50, "big": 18446744073709551615}}"#).unwrap();
        assert_eq!(t, "/a");
        assert_eq!(std::str::from_utf8(&p).unwrap(), r#"{"x": 1.50, "big": 18446744073709551615}"#);
        assert_eq!(r, None);
        let (_, p, r) = parse_line(r#"{"topic":"/a","payload_base64":"AQID","received_ms":5}"#).unwrap();
        assert_eq!(p, vec![1, 2, 3]);
        assert_eq!(r, Some(5));
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(parse_line("{").unwrap_err().starts_with("not a message line"));
        assert_eq!(parse_line(r#"{"topic":"/a"}"#).unwrap_err(), "missing `payload` (JSON) or `payload_base64` (bytes)");
        assert!(parse_line(r#"{"topic":"/a","payload_base64":"!!"}"#).unwrap_err().starts_with("`payload_base64` is not base64"));
        assert!(parse_line(r#"{"topic":"/a","payload":1,"extra":2}"#).unwrap_err().contains("unknown field `extra`"));
    }
}
