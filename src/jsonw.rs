//! A direct JSON writer for the engine's output values: the same bytes as `serde_json`'s compact
//! serializer (which it falls back to for numbers, escaped strings and `serde_json` values), but
//! without going through the serde data model for objects, arrays and plain strings, which is
//! most of the cost of serializing a payload.

use std::borrow::Cow;

use serde::Serialize;

use crate::doc::Node;
use crate::value::Value;

/// Whether any of the eight bytes of `x` must be escaped in a JSON string (`"`, `\` or a
/// control character). Exact: the `!x` terms rule out bytes that already had the high bit set.
fn word_needs_escape(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let ctrl = x.wrapping_sub(ONES * 0x20) & !x;
    let q = x ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let s = x ^ (ONES * u64::from(b'\\'));
    let slash = s.wrapping_sub(ONES) & !s;
    (ctrl | quote | slash) & HIGH != 0
}

/// The bytes that must be escaped in a JSON string: `"`, `\\` and the control characters.
static ESCAPED: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Whether any byte of `b` must be escaped: eight bytes at a time, then the tail byte by byte.
#[inline]
fn needs_escape(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w: [u8; 8] = c.try_into().unwrap_or_default();
        if word_needs_escape(u64::from_le_bytes(w)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| ESCAPED[usize::from(b)])
}

/// Writes `s` as a JSON string.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if needs_escape(b) {
        // Rare: let serde_json escape it (writing a string to a Vec cannot fail).
        let _ = s.serialize(&mut serde_json::Serializer::new(&mut *out));
    } else {
        out.reserve(b.len() + 2);
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
    }
}

/// Writes a scalar through serde_json (numbers keep serde_json's exact formatting).
fn write_scalar<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> Result<(), serde_json::Error> {
    v.serialize(&mut serde_json::Serializer::new(&mut *out))
}

/// Writes a payload node.
pub fn write_node(out: &mut Vec<u8>, n: &Node<'_>) -> Result<(), serde_json::Error> {
    write_node_as::<false>(out, n)
}

/// Writes a node of a document decoded by [`Node::parse`] from JSON text: its borrowed
/// strings (keys and values) are copied without the escape check, since the parser lends a
/// string only when its text has no escape, and JSON text cannot hold a raw `"`, `\\` or
/// control character in a string. Owned strings (the parser unescaped them) are checked as
/// usual. Never call it on a document borrowed from anything else ([`Node::from_json`]).
pub fn write_parsed_node(out: &mut Vec<u8>, n: &Node<'_>) -> Result<(), serde_json::Error> {
    write_node_as::<true>(out, n)
}

/// Writes a string of a node (see [`write_parsed_node`] for `PARSED`).
// The `Cow` is the point: whether it borrows tells if the parser saw an escape.
#[allow(clippy::ptr_arg)]
#[inline]
fn write_node_str<const PARSED: bool>(out: &mut Vec<u8>, s: &Cow<'_, str>) {
    match s {
        Cow::Borrowed(b) if PARSED => {
            debug_assert!(!needs_escape(b.as_bytes()), "a parsed, borrowed string needs no escape");
            out.reserve(b.len() + 2);
            out.push(b'"');
            out.extend_from_slice(b.as_bytes());
            out.push(b'"');
        }
        _ => write_str(out, s),
    }
}

fn write_node_as<const PARSED: bool>(out: &mut Vec<u8>, n: &Node<'_>) -> Result<(), serde_json::Error> {
    match n {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(true) => out.extend_from_slice(b"true"),
        Node::Bool(false) => out.extend_from_slice(b"false"),
        Node::Str(s) => write_node_str::<PARSED>(out, s),
        Node::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_node_as::<PARSED>(out, v)?;
            }
            out.push(b']');
        }
        Node::Object(o) => {
            out.push(b'{');
            for (i, (k, v)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_node_str::<PARSED>(out, k);
                out.push(b':');
                write_node_as::<PARSED>(out, v)?;
            }
            out.push(b'}');
        }
        Node::Int(_) | Node::UInt(_) | Node::Float(_) => write_scalar(out, n)?,
    }
    Ok(())
}

/// Writes a rule value (as its `Serialize` implementation would).
pub fn write_value(out: &mut Vec<u8>, v: &Value<'_>) -> Result<(), serde_json::Error> {
    match v {
        Value::Str(s) => write_str(out, s),
        Value::Doc(n) => write_node(out, n)?,
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        other => write_scalar(out, other)?,
    }
    Ok(())
}

/// Writes ordered `(name, value)` pairs as one JSON object (as [`crate::value::Fields`]
/// serializes them).
pub fn write_fields<K: AsRef<str>>(out: &mut Vec<u8>, fields: &[(K, Value<'_>)]) -> Result<(), serde_json::Error> {
    out.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k.as_ref());
        out.push(b':');
        write_value(out, v)?;
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Fields;

    #[test]
    fn strings_match_serde_json() {
        let mut cases: Vec<String> = vec!["".into(), "plain".into(), "exactly8".into(), "0123456789abcdefg".into(), "é ü 漢字 🙂 long enough to chunk".into()];
        for b in (0u8..0x20).chain([b'"', b'\\', 0x7f]) {
            for pos in [0, 3, 7, 8, 9, 15, 16] {
                let mut s = "abcdefghijklmnopq".to_string();
                s.insert(pos, b as char);
                cases.push(s);
            }
        }
        for s in cases {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn nodes_and_fields_match_serde_json() {
        let text = br#"{"a":[1,-2,3.5,1e300,-0.0,18446744073709551615,true,false,null,{}],"b\"c":{"d":"e\nf","g":[]},"h":"\u00e9\u0001","big":-9223372036854775808}"#;
        let n = Node::parse(text).unwrap();
        let mut out = Vec::new();
        write_node(&mut out, &n).unwrap();
        assert_eq!(out, serde_json::to_vec(&n).unwrap());
        let mut parsed = Vec::new();
        write_parsed_node(&mut parsed, &n).unwrap();
        assert_eq!(parsed, out, "escaped strings are owned, so they are still escaped");

        let json = serde_json::json!({"x": [1, "y", {"z": null}]});
        let fields: Vec<(Cow<str>, Value)> = vec![
            ("n".into(), Value::Null),
            ("b".into(), Value::Bool(true)),
            ("i".into(), Value::Int(-7)),
            ("u".into(), Value::UInt(u64::MAX)),
            ("f".into(), Value::Float(98.60000000000001)),
            ("nan".into(), Value::Float(f64::NAN)),
            ("inf".into(), Value::Float(f64::INFINITY)),
            ("s\t".into(), Value::str("a\"b")),
            ("bytes".into(), Value::Bytes(Cow::Borrowed(b"\x00\xff"))),
            ("json".into(), Value::Json(Cow::Borrowed(&json))),
            ("doc".into(), Value::Doc(&n)),
        ];
        let mut out = Vec::new();
        write_fields(&mut out, &fields).unwrap();
        assert_eq!(out, serde_json::to_vec(&Fields(&fields)).unwrap());
    }

    proptest::proptest! {
        /// Whatever the strings hold (quotes, backslashes, control characters, any Unicode),
        /// a parsed document written without the escape check is what serde_json writes.
        #[test]
        fn parsed_nodes_match_serde_json(keys in proptest::collection::vec(".{0,12}", 0..6), vals in proptest::collection::vec(".{0,20}", 0..6)) {
            let mut m = serde_json::Map::new();
            for (k, v) in keys.iter().zip(vals.iter()) {
                m.insert(k.clone(), serde_json::json!([v, {"k": v}]));
            }
            let text = serde_json::to_vec(&serde_json::Value::Object(m)).unwrap();
            let n = Node::parse(&text).unwrap();
            let mut out = Vec::new();
            write_parsed_node(&mut out, &n).unwrap();
            proptest::prop_assert_eq!(out, serde_json::to_vec(&n).unwrap());
        }
    }
}
