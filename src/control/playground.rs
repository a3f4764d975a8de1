//! What the console asks besides the rules: a rule text checked as `sluice check` checks a
//! file, the function registry for completion, the shipped seed-format samples, and the
//! integration channel's counts, recent rejected requests and stored files.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::control::view::ErrorView;

/// The file name an unsaved playground rule is checked and tested under (its rule is named
/// `playground`).
pub const PLAYGROUND_FILE: &str = "playground.toml";

/// `POST /api/v1/check`: whether a rule text compiles, and its errors as `sluice check` prints
/// them (`rendered`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAnswer {
    /// Whether it compiles.
    pub ok: bool,
    /// Its errors, in file order.
    pub errors: Vec<ErrorView>,
}

/// Checks `text` as the rule file `file` (default [`PLAYGROUND_FILE`]).
pub fn check(text: &str, file: Option<&str>) -> CheckAnswer {
    match crate::rule::compile_str(Path::new(file.unwrap_or(PLAYGROUND_FILE)), text) {
        Ok(_) => CheckAnswer { ok: true, errors: Vec::new() },
        Err(errs) => CheckAnswer { ok: false, errors: errs.iter().map(ErrorView::from).collect() },
    }
}

/// One function of the registry, for completion and its docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionView {
    /// Its name.
    pub name: String,
    /// Its reference group.
    pub category: String,
    /// `name(arg: type, …) -> type`.
    pub signature: String,
    /// What it does.
    pub doc: String,
    /// Documented examples: (expression, result).
    pub examples: Vec<(String, String)>,
}

/// `GET /api/v1/functions`: every function, in reference order.
pub fn functions() -> Vec<FunctionView> {
    crate::rule::catalog::all()
        .iter()
        .map(|f| FunctionView {
            name: f.name.into(),
            category: f.category.into(),
            signature: f.signature.into(),
            doc: f.doc.into(),
            examples: f.examples.iter().map(|e| (e.expr.to_string(), e.result.to_string())).collect(),
        })
        .collect()
}

/// A sample message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// What it is (its topic, numbered when several share it).
    pub name: String,
    /// The IoT topic.
    pub topic: String,
    /// The payload, as text.
    pub payload: String,
}

/// The shipped seed-format examples (`examples/quickstart.jsonl`, built in).
const QUICKSTART: &str = include_str!("../../examples/quickstart.jsonl");

/// `GET /api/v1/samples`: the seed-format examples.
pub fn samples() -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    #[derive(Deserialize)]
    struct Line {
        topic: Option<String>,
        payload: Option<Box<serde_json::value::RawValue>>,
    }
    for line in QUICKSTART.lines().filter(|l| !l.trim().is_empty()) {
        // The payload's text as written (numbers exact); a JSON string is a text payload. Lines
        // with binary payloads (`payload_base64`) are not offered.
        let Ok(Line { topic: Some(topic), payload: Some(raw) }) = serde_json::from_str::<Line>(line) else { continue };
        let topic = topic.as_str();
        let payload = serde_json::from_str::<String>(raw.get()).unwrap_or_else(|_| raw.get().to_string());
        let same = out.iter().filter(|s| s.topic == topic).count();
        let name = if same == 0 { topic.to_string() } else { format!("{topic} #{}", same + 1) };
        out.push(Sample { name, topic: topic.to_string(), payload });
    }
    out
}

/// Requests answered with one reply code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplyCount {
    /// The code.
    pub code: String,
    /// What it means.
    pub message: String,
    /// Requests so far.
    pub total: u64,
}

/// `GET /api/v1/integration`: the integration channel at a glance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IntegrationView {
    /// Requests answered, by reply code (`sluice_integration_requests_total`).
    pub replies: Vec<ReplyCount>,
    /// Entries, by verdict (`sluice_integration_entries_total`).
    pub entries: std::collections::BTreeMap<String, u64>,
    /// The most recent rejected requests, oldest first (the error ring of `/integration/errors`).
    pub errors: Vec<crate::integration::channel_log::ErrorRecord>,
    /// The most recent stored upload files, oldest first.
    pub files: Vec<crate::integration::channel_log::StoredFile>,
}

fn by_label(vec: &prometheus::IntCounterVec, label: &str) -> std::collections::BTreeMap<String, u64> {
    use prometheus::core::Collector;
    let mut out = std::collections::BTreeMap::new();
    for family in vec.collect() {
        for m in family.get_metric() {
            if let Some(l) = m.get_label().iter().find(|l| l.name() == label) {
                *out.entry(l.value().to_string()).or_default() += m.get_counter().get_value() as u64;
            }
        }
    }
    out
}

/// The integration channel's view now.
pub fn integration() -> IntegrationView {
    use crate::telemetry::metrics::{INTEGRATION_ENTRIES, INTEGRATION_REQUESTS};
    let mut view = IntegrationView {
        replies: by_label(&INTEGRATION_REQUESTS, "code")
            .into_iter()
            .map(|(code, total)| ReplyCount { message: code.parse().map_or("Error", crate::integration::codes::message).to_string(), code, total })
            .collect::<Vec<_>>(),
        entries: by_label(&INTEGRATION_ENTRIES, "verdict"),
        errors: crate::integration::channel_log::recent_errors(),
        files: crate::integration::channel_log::recent_files(),
    };
    view.replies.sort_by_key(|r| r.code.parse::<u32>().unwrap_or(u32::MAX));
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_renders_as_sluice_check_and_samples_are_the_quickstart() {
        let a = check("sql = \"SELECT devicename() AS dn FROM \\\"t/#\\\"\"\n[[actions]]\ntopic = \"out\"\n", None);
        assert!(!a.ok);
        let r = &a.errors[0].rendered;
        assert!(r.starts_with("playground.toml:1:"), "{r}");
        assert!(r.lines().last().is_some_and(|l| l.trim_end().ends_with('^')), "a caret under the column: {r}");
        assert!(check("sql = \"SELECT 1 AS one FROM \\\"t/#\\\"\"\n[[actions]]\ntopic = \"out\"\n", None).ok);
        let s = samples();
        assert!(s.len() >= 15 && s.iter().any(|s| s.topic.ends_with("/thing/event/property/post")), "{s:?}");
        assert!(s.iter().any(|s| s.payload.contains("\"seq\":18446744073709551615")), "64-bit numbers as written");
        assert!(functions().iter().any(|f| f.name == "upper" && !f.doc.is_empty()));
    }
}
