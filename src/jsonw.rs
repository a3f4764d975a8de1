//! A direct JSON writer for the engine's output values: the same bytes as `serde_json`'s compact
//! serializer (which it falls back to for numbers, escaped strings and `serde_json` values), but
//! without going through the serde data model for objects, arrays and plain strings, which is
//! most of the cost of serializing a payload.

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

/// Whether any byte of `b` must be escaped, checked eight bytes at a time (the tail padded with
/// spaces, which need no escape).
fn needs_escape(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(8);
    let mut hit = false;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        hit |= word_needs_escape(u64::from_le_bytes(w));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut x = u64::from_le_bytes([b' '; 8]);
        for (i, &b) in rest.iter().enumerate() {
            x = (x & !(0xff << (8 * i))) | (u64::from(b) << (8 * i));
        }
        hit |= word_needs_escape(x);
    }
    hit
}

/// Writes `s` as a JSON string.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        // Rare: let serde_json escape it (writing a string to a Vec cannot fail).
        let _ = s.serialize(&mut serde_json::Serializer::new(&mut *out));
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Writes a scalar through serde_json (numbers keep serde_json's exact formatting).
fn write_scalar<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> Result<(), serde_json::Error> {
    v.serialize(&mut serde_json::Serializer::new(&mut *out))
}

/// Writes a payload node.
pub fn write_node(out: &mut Vec<u8>, n: &Node<'_>) -> Result<(), serde_json::Error> {
    match n {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(true) => out.extend_from_slice(b"true"),
        Node::Bool(false) => out.extend_from_slice(b"false"),
        Node::Str(s) => write_str(out, s),
        Node::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_node(out, v)?;
            }
            out.push(b']');
        }
        Node::Object(o) => {
            out.push(b'{');
            for (i, (k, v)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_node(out, v)?;
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
    use std::borrow::Cow;

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
}
