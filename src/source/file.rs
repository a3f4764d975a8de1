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
use crate::flow::BoxFuture;
use crate::flow::{Ack, Envelope};
use crate::message::{Message, Metadata};
use crate::shutdown::Shutdown;
use crate::source::{Source, SourceReport};
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

/// Parses one line into a message (without metadata). A line that is not UTF-8 is refused
/// (JSON is UTF-8): bytes that are not text go in `payload_base64`.
pub fn parse_line(line: &[u8]) -> Result<(String, Vec<u8>, Option<i64>), String> {
    let line = std::str::from_utf8(line).map_err(|e| format!("not a message line: invalid UTF-8 at byte {} (JSON lines are UTF-8; give binary payloads as `payload_base64`)", e.valid_up_to()))?;
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
            let mut reader = BufReader::with_capacity(1 << 16, file);
            let mut report = SourceReport::default();
            let mut line_no: u64 = 0;
            let received_records = metrics::SOURCE_RECEIVED_RECORDS.with_label_values(&[&*name]);
            let received_bytes = metrics::SOURCE_RECEIVED_BYTES.with_label_values(&[&*name]);
            let decode_errors = metrics::SOURCE_DECODE_ERRORS.with_label_values(&[&*name]);
            let mut raw = Vec::with_capacity(1024);
            loop {
                raw.clear();
                // Lines are bytes: a line that is not UTF-8 is one bad line, not the end.
                if reader.read_until(b'\n', &mut raw).await.map_err(io)? == 0 {
                    break;
                }
                line_no += 1;
                if shutdown.is_triggered() {
                    break;
                }
                let line = raw.strip_suffix(b"\n").unwrap_or(&raw);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                received_records.inc();
                received_bytes.inc_by(line.len() as u64);
                let now = chrono::Utc::now().timestamp_millis();
                let env = match parse_line(line) {
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
                        Envelope::rejected(Message { topic: String::new(), payload: line.to_vec().into(), meta }, Ack::none(), reason)
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
        let (t, p, r) = parse_line(r#"{"topic":"/a","payload":{"x": 1.50, "big": 18446744073709551615}}"#.as_bytes()).unwrap();
        assert_eq!(t, "/a");
        assert_eq!(std::str::from_utf8(&p).unwrap(), r#"{"x": 1.50, "big": 18446744073709551615}"#);
        assert_eq!(r, None);
        let (_, p, r) = parse_line(r#"{"topic":"/a","payload_base64":"AQID","received_ms":5}"#.as_bytes()).unwrap();
        assert_eq!(p, vec![1, 2, 3]);
        assert_eq!(r, Some(5));
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(parse_line("{".as_bytes()).unwrap_err().starts_with("not a message line"));
        assert_eq!(parse_line(r#"{"topic":"/a"}"#.as_bytes()).unwrap_err(), "missing `payload` (JSON) or `payload_base64` (bytes)");
        assert!(parse_line(r#"{"topic":"/a","payload_base64":"!!"}"#.as_bytes()).unwrap_err().starts_with("`payload_base64` is not base64"));
        assert!(parse_line(r#"{"topic":"/a","payload":1,"extra":2}"#.as_bytes()).unwrap_err().contains("unknown field `extra`"));
    }

    #[test]
    fn a_line_that_is_not_utf8_says_where() {
        let e = parse_line(b"not JSON \xff\xfe").unwrap_err();
        assert_eq!(e, "not a message line: invalid UTF-8 at byte 9 (JSON lines are UTF-8; give binary payloads as `payload_base64`)");
        assert!(parse_line(b"{\"topic\":\"/a\",\"payload\":\"\xff\"}").unwrap_err().contains("invalid UTF-8 at byte 25"));
    }

    /// Regression: one line of invalid UTF-8 ended the source (`invalid utf-8`, exit 1). It is
    /// a dead letter `path:line: reason`, and the next lines are read.
    #[tokio::test]
    async fn bad_bytes_are_one_rejected_line_and_reading_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let mut text = b"{\"topic\":\"/a\",\"payload\":1}\nnot JSON \xff\xfe\n{\"topic\":\"/a\",\"payload\":\"\xff\"}\r\n\n".to_vec();
        text.extend_from_slice(b"{\"topic\":\"/b\",\"payload\":2}");
        std::fs::write(&path, text).unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let report = Box::new(FileSource::new(&path)).run(tx, Shutdown::new()).await.unwrap();
        assert_eq!((report.messages, report.rejected), (2, 2));
        let mut got = Vec::new();
        while let Some(env) = rx.recv().await {
            got.push((env.msg.topic.clone(), env.reject.clone()));
        }
        let p = path.display();
        assert_eq!(got[0], ("/a".to_string(), None));
        assert_eq!(got[1].1.as_deref(), Some(&*format!("{p}:2: not a message line: invalid UTF-8 at byte 9 (JSON lines are UTF-8; give binary payloads as `payload_base64`)")));
        assert!(got[2].1.as_deref().is_some_and(|r| r.starts_with(&format!("{p}:3: "))), "{:?}", got[2]);
        assert_eq!(got[3], ("/b".to_string(), None), "the last line, without a newline, is read too");
    }
}
