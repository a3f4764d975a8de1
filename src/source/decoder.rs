//! Raw-data decoders of the integration channel's `up_raw` topic (seed 003): a per-product
//! JavaScript file `<dir>/<productKey>.js` defines
//!
//! ```js
//! function rawDataToProtocol(bytes) { // bytes: an array of numbers 0–255
//!     return { id: "1", version: "1.0", method: "integration.measurepoint.post", params: [ … ] };
//! }
//! ```
//!
//! returning the JSON request the product would have posted on a JSON integration topic. Its
//! `method` names the kind: `integration.measurepoint.post`, `integration.attribute.post` (or
//! `integration.attributes.post`) or `integration.event.post`. Each call runs in a fresh QuickJS
//! runtime (no state survives between calls) with a time limit and a memory limit.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rquickjs::{Context, Function, Runtime};

use crate::topic::TopicKind;

/// Why a decoder failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No script for the product (or an unusable product key).
    #[error("no decoder script for product `{0}`")]
    Missing(String),
    /// The script threw (or failed to compile).
    #[error("decoder script threw: {0}")]
    Threw(String),
    /// The call ran past its time limit.
    #[error("decoder script ran longer than {0} ms")]
    Timeout(u64),
    /// The call ran out of memory.
    #[error("decoder script ran out of memory ({0} bytes)")]
    Memory(usize),
    /// The script returned something that is not a request object.
    #[error("decoder script returned {0}")]
    BadOutput(String),
}

impl DecodeError {
    /// A bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Missing(_) => "missing",
            DecodeError::Threw(_) => "threw",
            DecodeError::Timeout(_) => "timeout",
            DecodeError::Memory(_) => "memory",
            DecodeError::BadOutput(_) => "bad_output",
        }
    }
}

/// The kind of a request `method` (`integration.measurepoint.post` → measure points, …).
pub fn kind_of_method(method: &str) -> Option<TopicKind> {
    match method {
        "integration.measurepoint.post" => Some(TopicKind::IntegrationMeasurepoint),
        "integration.attribute.post" | "integration.attributes.post" => Some(TopicKind::IntegrationAttributes),
        "integration.event.post" => Some(TopicKind::IntegrationEvent),
        _ => None,
    }
}

/// The topic level of a JSON integration kind (`sys/{pk}/integration/<level>/post`).
pub fn topic_level(kind: TopicKind) -> Option<&'static str> {
    match kind {
        TopicKind::IntegrationMeasurepoint => Some("measurepoint"),
        TopicKind::IntegrationAttributes => Some("attributes"),
        TopicKind::IntegrationEvent => Some("event"),
        _ => None,
    }
}

/// Turns what a decoder script returned (its result as JSON text) into the request object and its
/// kind: an object with a known `method` string and a `params` array, else
/// [`DecodeError::BadOutput`] saying what it was instead.
pub fn parse_output(text: &str) -> Result<(serde_json::Value, TopicKind), DecodeError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DecodeError::BadOutput(format!("invalid JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(DecodeError::BadOutput(format!("{} instead of a request object", json_type(&value))));
    };
    let kind = match obj.get("method") {
        Some(serde_json::Value::String(m)) => kind_of_method(m).ok_or_else(|| DecodeError::BadOutput(format!("unknown method `{m}`")))?,
        _ => return Err(DecodeError::BadOutput("a request without a `method` string".into())),
    };
    if !obj.get("params").is_some_and(|p| p.is_array()) {
        return Err(DecodeError::BadOutput("a request without a `params` array".into()));
    }
    Ok((value, kind))
}

/// A decoder script's request.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The request object.
    pub request: serde_json::Value,
    /// Its kind, by its `method`.
    pub kind: TopicKind,
    /// Its JSON text.
    pub text: String,
}

/// Runs the decoder scripts of a folder.
#[derive(Clone, Debug)]
pub struct Decoders {
    dir: PathBuf,
    timeout: Duration,
    memory: usize,
}

impl Decoders {
    /// Scripts from `dir`, each call limited to `timeout` and `memory` bytes.
    pub fn new(dir: PathBuf, timeout: Duration, memory: usize) -> Decoders {
        Decoders { dir, timeout, memory }
    }

    /// Decodes `bytes` with the script of `product_key`: the request object, its kind and its
    /// JSON text (what the script returned, serialized once by the script's runtime).
    pub fn decode(&self, product_key: &str, bytes: &[u8]) -> Result<Decoded, DecodeError> {
        if product_key.is_empty() || !product_key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') || product_key.starts_with('.') {
            return Err(DecodeError::Missing(product_key.to_string()));
        }
        let path = self.dir.join(format!("{product_key}.js"));
        let source = std::fs::read_to_string(&path).map_err(|_| DecodeError::Missing(product_key.to_string()))?;
        let text = self.run(&source, bytes)?;
        let (request, kind) = parse_output(&text)?;
        Ok(Decoded { request, kind, text })
    }

    /// Runs `rawDataToProtocol(bytes)` and returns its result as JSON text.
    fn run(&self, source: &str, bytes: &[u8]) -> Result<String, DecodeError> {
        let rt = Runtime::new().map_err(|e| DecodeError::Threw(format!("runtime: {e}")))?;
        rt.set_memory_limit(self.memory);
        rt.set_max_stack_size(512 * 1024);
        let deadline = Instant::now() + self.timeout;
        rt.set_interrupt_handler(Some(Box::new(move || Instant::now() >= deadline)));
        let ctx = Context::full(&rt).map_err(|e| DecodeError::Threw(format!("context: {e}")))?;
        let timeout_ms = self.timeout.as_millis() as u64;
        let memory = self.memory;
        ctx.with(|ctx| {
            let fail = |e: rquickjs::Error| -> DecodeError {
                if Instant::now() >= deadline {
                    return DecodeError::Timeout(timeout_ms);
                }
                let oom = matches!(e, rquickjs::Error::Allocation);
                let msg = match e {
                    rquickjs::Error::Exception => {
                        let v = ctx.catch();
                        match v.as_exception() {
                            Some(ex) => ex.message().unwrap_or_else(|| "exception".into()),
                            None => ctx.json_stringify(v).ok().flatten().and_then(|s| s.to_string().ok()).unwrap_or_else(|| "a non-error value".into()),
                        }
                    }
                    other => other.to_string(),
                };
                if oom || msg.contains("out of memory") {
                    DecodeError::Memory(memory)
                } else {
                    DecodeError::Threw(msg)
                }
            };
            ctx.eval::<(), _>(source).map_err(fail)?;
            let f: Function = ctx.globals().get("rawDataToProtocol").map_err(|_| DecodeError::Threw("the script defines no function `rawDataToProtocol`".into()))?;
            let arr: Vec<i32> = bytes.iter().map(|b| i32::from(*b)).collect();
            let v: rquickjs::Value = f.call((arr,)).map_err(fail)?;
            if v.is_undefined() || v.is_function() {
                return Err(DecodeError::BadOutput("undefined instead of a request object".into()));
            }
            let s = ctx.json_stringify(v).map_err(fail)?;
            match s {
                Some(s) => s.to_string().map_err(|e| DecodeError::BadOutput(e.to_string())),
                None => Err(DecodeError::BadOutput("a value JSON cannot represent".into())),
            }
        })
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoders(script: &str) -> (tempfile::TempDir, Decoders) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pk.js"), script).unwrap();
        let d = Decoders::new(dir.path().to_path_buf(), Duration::from_millis(50), 16 << 20);
        (dir, d)
    }

    #[test]
    fn decodes_bytes_into_a_request() {
        let (_d, dec) = decoders(
            "function rawDataToProtocol(b) { return {id: '1', version: '1.0', method: 'integration.measurepoint.post', params: [{deviceKey: 'd' + b[0], measurepoints: {v: b[1] * 256 + b[2]}}]}; }",
        );
        let Decoded { request: v, kind, text } = dec.decode("pk", &[7, 1, 2]).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), v);
        assert_eq!(kind, TopicKind::IntegrationMeasurepoint);
        assert_eq!(v, serde_json::json!({"id": "1", "version": "1.0", "method": "integration.measurepoint.post", "params": [{"deviceKey": "d7", "measurepoints": {"v": 258}}]}));
    }

    #[test]
    fn output_must_be_a_request_of_a_known_method() {
        let (v, kind) = parse_output(r#"{"method":"integration.attribute.post","params":[]}"#).unwrap();
        assert_eq!((v["params"].clone(), kind), (serde_json::json!([]), TopicKind::IntegrationAttributes));
        let bad = |text: &str| match parse_output(text) {
            Err(DecodeError::BadOutput(m)) => m,
            other => panic!("{text}: {other:?}"),
        };
        assert!(bad("{").starts_with("invalid JSON: "));
        assert_eq!(bad("[1]"), "an array instead of a request object");
        assert_eq!(bad(r#"{"params":[]}"#), "a request without a `method` string");
        assert_eq!(bad(r#"{"method":"integration.up_raw","params":[]}"#), "unknown method `integration.up_raw`");
        assert_eq!(bad(r#"{"method":"integration.event.post","params":{}}"#), "a request without a `params` array");
    }

    #[test]
    fn failures_are_decoder_errors() {
        let (_d, dec) = decoders("function rawDataToProtocol(b) { throw new Error('bad frame'); }");
        assert_eq!(dec.decode("pk", &[1]), Err(DecodeError::Threw("bad frame".into())));
        let (_d, dec) = decoders("function rawDataToProtocol(b) { for (;;) {} }");
        assert_eq!(dec.decode("pk", &[1]), Err(DecodeError::Timeout(50)));
        let (_d, dec) = decoders("function rawDataToProtocol(b) { var a = []; for (;;) { a.push(new Array(100000).fill(1)); } }");
        assert!(matches!(dec.decode("pk", &[1]), Err(DecodeError::Memory(_) | DecodeError::Timeout(_))));
        let (_d, dec) = decoders("function rawDataToProtocol(b) { return 'nope'; }");
        assert!(matches!(dec.decode("pk", &[1]), Err(DecodeError::BadOutput(_))));
        let (_d, dec) = decoders("function rawDataToProtocol(b) { return {method: 'x.y', params: []}; }");
        assert!(matches!(dec.decode("pk", &[1]), Err(DecodeError::BadOutput(_))));
        assert!(matches!(dec.decode("other", &[1]), Err(DecodeError::Missing(_))));
        assert!(matches!(dec.decode("../pk", &[1]), Err(DecodeError::Missing(_))));
    }
}
