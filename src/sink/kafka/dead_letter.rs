//! The dead letter of a record the broker refused for good: a JSON error record naming the
//! rule, the input's IoT topic, the target topic, key and headers, and the reason.

use crate::flow::OutputRecord;
use crate::value::base64_encode;

/// Output values up to this size are copied (base64) into their dead letter.
const DEAD_LETTER_VALUE_MAX: usize = 64 * 1024;

/// The dead-letter record, for `topic`, of `rec` (an output of an input on `iot_topic`) that
/// the broker refused (`kind` is the metric's reason). The value is copied in when small, and
/// never when it was refused for its size.
pub fn dead_letter(rec: &OutputRecord, iot_topic: &str, kind: &str, reason: &str, topic: &str) -> OutputRecord {
    let headers: serde_json::Map<String, serde_json::Value> = rec.headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let value = serde_json::json!({
        "rule": &*rec.rule,
        "topic": iot_topic,
        "stage": "sink",
        "reason": reason,
        "target_topic": &*rec.topic,
        "key": rec.key,
        "headers": headers,
        "value_bytes": rec.value.len(),
        "value_base64": (kind != "too_large" && rec.value.len() <= DEAD_LETTER_VALUE_MAX).then(|| base64_encode(&rec.value)),
    });
    OutputRecord {
        rule: rec.rule.clone(),
        topic: topic.into(),
        key: rec.key.clone(),
        headers: vec![("sluice-error-stage".into(), "sink".into())],
        value: serde_json::to_vec(&value).unwrap_or_default(),
        is_error: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn dead_letters_name_the_record_and_keep_small_values() {
        let rec = OutputRecord { rule: Arc::from("r1"), topic: "missing".into(), key: Some("k".into()), headers: vec![("h".into(), "v".into())], value: b"{\"a\":1}".to_vec(), is_error: false };
        let dl = dead_letter(&rec, "/a/b", "unknown_topic", "nope", "sluice-errors");
        assert_eq!(&*dl.topic, "sluice-errors");
        assert!(dl.is_error);
        let v: serde_json::Value = serde_json::from_slice(&dl.value).unwrap();
        assert_eq!(v["rule"], "r1");
        assert_eq!(v["topic"], "/a/b");
        assert_eq!(v["stage"], "sink");
        assert_eq!(v["target_topic"], "missing");
        assert_eq!(v["reason"], "nope");
        assert_eq!(v["headers"]["h"], "v");
        assert_eq!(v["value_base64"], base64_encode(b"{\"a\":1}"));
        let v: serde_json::Value = serde_json::from_slice(&dead_letter(&rec, "/a/b", "too_large", "big", "e").value).unwrap();
        assert_eq!(v["value_base64"], serde_json::Value::Null);
        assert_eq!(v["value_bytes"], 7);
    }
}
