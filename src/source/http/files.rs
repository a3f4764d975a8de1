//! The files of an HTTP upload: the checks between `local://` references, `enos-file` parts
//! and the `files` metadata, the rewriting of references into stored URIs, and safe names.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::integration::codes;

/// A file part.
pub struct Upload {
    /// The part's filename.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Their MD5, in hex.
    pub md5: String,
}

fn bad(message: String) -> (u32, String) {
    (codes::BAD_REQUEST, message)
}

/// Every `local://name` must have its part, every part must be referred to, every `files` entry
/// must have its part and match it (`md5`, `fileLength`: 1204) and the entries referring to it
/// (`featureId` = the event, `productKey`/`produckKey`, `deviceKey`, `assetId` when both sides
/// give them: 1203).
pub fn check_files(params: &[Value], uploads: &[Upload], meta: &Map<String, Value>) -> Result<(), (u32, String)> {
    let mut referred = BTreeSet::new();
    // (file name, entry, event id) of every reference.
    let mut refs = Vec::new();
    for e in params {
        for (event, v) in e.get("events").and_then(Value::as_object).into_iter().flatten() {
            let mut names = BTreeSet::new();
            local_refs(&json!({"events": v}), &mut names);
            refs.extend(names.into_iter().map(|n| (n, e, event.as_str())));
        }
        local_refs(e, &mut referred);
    }
    let part = |name: &str| uploads.iter().find(|u| u.name == name);
    if let Some(r) = referred.iter().find(|r| part(r).is_none()) {
        return Err(bad(format!("`local://{r}` refers to no `enos-file` part")));
    }
    if let Some(u) = uploads.iter().find(|u| !referred.contains(&u.name)) {
        return Err(bad(format!("file part `{}` is not referred to by any `local://` parameter", u.name)));
    }
    for (name, m) in meta {
        let Some(u) = part(name) else {
            return Err(bad(format!("`files` describes `{name}` but there is no `enos-file` part of that name")));
        };
        let Value::Object(m) = m else {
            return Err(bad(format!("`files.{name}` must be an object")));
        };
        for (entry, event) in refs.iter().filter(|(n, ..)| n == name).map(|(_, e, ev)| (e, ev)) {
            if let Some(f) = m.get("featureId").and_then(Value::as_str).filter(|f| f != event) {
                return Err(bad(format!("`files.{name}.featureId` is `{f}` but `local://{name}` is in event `{event}`")));
            }
            for (meta_key, entry_key) in [("productKey", "productKey"), ("produckKey", "productKey"), ("deviceKey", "deviceKey"), ("assetId", "assetId")] {
                if let (Some(a), Some(b)) = (m.get(meta_key).and_then(Value::as_str), entry.get(entry_key).and_then(Value::as_str)) {
                    if a != b {
                        return Err(bad(format!("`files.{name}.{meta_key}` is `{a}` but the entry referring to it has {entry_key} `{b}`")));
                    }
                }
            }
        }
        match m.get("md5") {
            None | Some(Value::Null) => {}
            Some(Value::String(md5)) if md5.eq_ignore_ascii_case(&u.md5) => {}
            Some(other) => return Err((codes::MODEL_VALIDATE_FAILED, format!("md5 mismatch for file `{name}`: `files` says {other}, the part's is \"{}\"", u.md5))),
        }
        match m.get("fileLength") {
            None | Some(Value::Null) => {}
            Some(n) if n.as_u64() == Some(u.bytes.len() as u64) => {}
            Some(other) => return Err((codes::MODEL_VALIDATE_FAILED, format!("fileLength mismatch for file `{name}`: `files` says {other}, the part has {} bytes", u.bytes.len()))),
        }
    }
    Ok(())
}

/// The names of the `local://name` strings in an entry's `events`.
pub fn local_refs(entry: &Value, out: &mut BTreeSet<String>) {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::String(s) => {
                if let Some(n) = s.strip_prefix("local://") {
                    out.insert(n.to_string());
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    if let Some(events) = entry.get("events") {
        walk(events, out);
    }
}

/// Replaces each `local://name` of an entry's `events` by the stored file's URI.
pub fn rewrite_refs(entry: &mut Value, uris: &BTreeMap<String, String>) {
    fn walk(v: &mut Value, uris: &BTreeMap<String, String>) {
        match v {
            Value::String(s) => {
                if let Some(uri) = s.strip_prefix("local://").and_then(|n| uris.get(n)) {
                    *s = uri.clone();
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|v| walk(v, uris)),
            Value::Object(o) => o.values_mut().for_each(|v| walk(v, uris)),
            _ => {}
        }
    }
    if let Some(events) = entry.get_mut("events") {
        walk(events, uris);
    }
}

/// A name safe as one path segment: the last component of `name` (after `/` or `\`), only
/// ASCII letters, digits, `.`, `-`, `_` (others become `_`), no leading dot, at most 100
/// characters; `file` when nothing is left.
pub fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let s: String = base.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).take(100).collect();
    let s = s.trim_start_matches('.');
    if s.is_empty() {
        "file".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_stay_one_segment() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("..\\..\\win.ini"), "win.ini");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(safe_name("a b/c?.txt"), "c_.txt");
        assert_eq!(safe_name(".hidden"), "hidden");
        assert_eq!(safe_name("test.txt"), "test.txt");
    }

    #[test]
    fn local_refs_are_found_and_rewritten() {
        let mut e = json!({"events": {"eventId1": {"intParam1": 1, "fileParam1": "local://f1", "nested": ["local://f2"]}}, "deviceKey": "local://no"});
        let mut refs = BTreeSet::new();
        local_refs(&e, &mut refs);
        assert_eq!(refs.into_iter().collect::<Vec<_>>(), vec!["f1", "f2"]);
        let uris = BTreeMap::from([("f1".to_string(), "file:///r/a".to_string()), ("f2".to_string(), "file:///r/b".to_string())]);
        rewrite_refs(&mut e, &uris);
        assert_eq!(e["events"]["eventId1"]["fileParam1"], "file:///r/a");
        assert_eq!(e["events"]["eventId1"]["nested"][0], "file:///r/b");
        assert_eq!(e["deviceKey"], "local://no");
    }
}
