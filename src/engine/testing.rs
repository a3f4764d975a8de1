//! The multi-message input of `sluice test --input` and of the console's sequence mode: one
//! JSON line per step, `{"topic", "payload" | "payload_base64", "now"}` (a line without a topic
//! only moves the virtual clock).

use std::sync::Arc;

use crate::engine::process::TestStep;
use crate::message::{Message, Metadata};

/// One line.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    topic: Option<String>,
    payload: Option<Box<serde_json::value::RawValue>>,
    payload_base64: Option<String>,
    now: Option<i64>,
}

/// The steps of `text`, the clock starting at `now_ms`, the messages from `source`. An error
/// names the line (from 1) and what is wrong with it.
pub fn parse_steps(text: &str, now_ms: i64, source: &str) -> Result<Vec<TestStep>, (usize, String)> {
    let mut clock = now_ms;
    let mut steps = Vec::new();
    let source: Arc<str> = Arc::from(source);
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: InputLine = serde_json::from_str(line).map_err(|e| (n + 1, format!("not a test line: {e}")))?;
        clock = l.now.unwrap_or(clock);
        let msg = match l.topic {
            None => None,
            Some(topic) => {
                let payload = match (&l.payload, &l.payload_base64) {
                    (Some(_), Some(_)) => return Err((n + 1, "give payload or payload_base64, not both".into())),
                    (Some(p), None) => p.get().as_bytes().to_vec(),
                    (None, Some(b)) => crate::value::base64_decode(b).map_err(|e| (n + 1, format!("payload_base64: {e}")))?,
                    (None, None) => Vec::new(),
                };
                Some(Message { topic, payload: payload.into(), meta: Metadata { source: source.clone(), received_ms: clock, id: n as u64 + 1, ..Metadata::default() } })
            }
        };
        steps.push(TestStep { now_ms: clock, msg });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_move_the_clock_and_name_their_errors() {
        let s = parse_steps("{\"topic\":\"a\",\"payload\":{\"x\":1},\"now\":5}\n\n{\"now\":9}\n{\"topic\":\"b\"}\n", 1, "t").unwrap();
        assert_eq!(s.iter().map(|s| (s.now_ms, s.msg.as_ref().map(|m| m.topic.clone()))).collect::<Vec<_>>(), vec![(5, Some("a".into())), (9, None), (9, Some("b".into()))]);
        assert_eq!(&s[0].msg.as_ref().unwrap().payload[..], b"{\"x\":1}");
        assert_eq!(parse_steps("{}\n{\"topic\": 1}", 0, "t").unwrap_err().0, 2);
        assert!(parse_steps("{\"topic\":\"a\",\"payload\":1,\"payload_base64\":\"AA==\"}", 0, "t").unwrap_err().1.contains("not both"));
    }
}
