//! A borrowed JSON document: the decoded payload. Strings without escapes point into the
//! payload bytes, objects are small ordered vectors (input order kept, lookups by linear scan,
//! which beats hashing for the handful of keys IoT payloads have), and integers never pass
//! through `f64`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value as Json;

/// A node of a decoded payload.
#[derive(Clone, Debug, PartialEq)]
pub enum Node<'a> {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A float.
    Float(f64),
    /// A string (borrowed from the payload when it has no escapes).
    Str(Cow<'a, str>),
    /// An array.
    Array(Vec<Node<'a>>),
    /// An object, in input order.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Parses a payload.
    pub fn parse(bytes: &'a [u8]) -> Result<Node<'a>, serde_json::Error> {
        match std::str::from_utf8(bytes) {
            // Nearly always: the UTF-8 check is done once for the whole payload instead of
            // string by string (same result and same errors; only invalid UTF-8 takes the
            // byte path, for its error message).
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(bytes),
        }
    }

    /// The value of `key` in an object (the last one if repeated, like JSON parsers keep).
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(fields) => fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if the node is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A document borrowing from a `serde_json::Value` (no parse: the HTTP upload's request is
    /// already one).
    pub fn from_json(v: &'a Json) -> Node<'a> {
        match v {
            Json::Null => Node::Null,
            Json::Bool(b) => Node::Bool(*b),
            Json::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Node::Int(i),
                (None, Some(u)) => Node::UInt(u),
                _ => Node::Float(n.as_f64().unwrap_or_default()),
            },
            Json::String(s) => Node::Str(Cow::Borrowed(s)),
            Json::Array(a) => Node::Array(a.iter().map(Node::from_json).collect()),
            Json::Object(o) => Node::Object(o.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), Node::from_json(v))).collect()),
        }
    }

    /// An object's fields as a JSON map holds them: each key once, at its first position, with
    /// its last value (what `get` returns). Empty for a non-object.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Node<'a>)> + '_ {
        let fields: &[(Cow<'a, str>, Node<'a>)] = match self {
            Node::Object(f) => f,
            _ => &[],
        };
        fields.iter().enumerate().filter(move |(i, (k, _))| !fields[..*i].iter().any(|(e, _)| e == k)).map(move |(_, (k, _))| (k.as_ref(), self.get(k).unwrap_or(&Node::Null)))
    }

    /// Converts to an owned `serde_json::Value`.
    pub fn to_json(&self) -> Json {
        match self {
            Node::Null => Json::Null,
            Node::Bool(b) => Json::Bool(*b),
            Node::Int(i) => Json::from(*i),
            Node::UInt(u) => Json::from(*u),
            Node::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Node::Str(s) => Json::String(s.to_string()),
            Node::Array(a) => Json::Array(a.iter().map(Node::to_json).collect()),
            Node::Object(o) => Json::Object(o.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect()),
        }
    }
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Int(i) => s.serialize_i64(*i),
            Node::UInt(u) => s.serialize_u64(*u),
            Node::Float(f) => s.serialize_f64(*f),
            Node::Str(t) => s.serialize_str(t),
            Node::Array(a) => {
                let mut q = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    q.serialize_element(v)?;
                }
                q.end()
            }
            Node::Object(o) => {
                let mut m = s.serialize_map(Some(o.len()))?;
                for (k, v) in o {
                    m.serialize_entry(k.as_ref(), v)?;
                }
                m.end()
            }
        }
    }
}

/// A string that borrows when the deserializer can lend it.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Node<'de>, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node<'de>, E> {
                Ok(Node::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
                Ok(Node::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
                Ok(i64::try_from(v).map_or(Node::UInt(v), Node::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
                Ok(Node::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
                Ok(Node::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
                Ok(Node::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
                Ok(Node::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(x) = seq.next_element()? {
                    v.push(x);
                }
                Ok(Node::Array(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
                let mut v = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((CowStr(k), x)) = map.next_entry::<CowStr<'de>, Node<'de>>()? {
                    v.push((k, x));
                }
                Ok(Node::Object(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_borrowing_and_keeps_order_and_integers() {
        let text = br#"{"b":1,"a":"x","c":{"d":[1,2.5,"e\"f"]},"big":18446744073709551615,"neg":-9223372036854775808}"#;
        let n = Node::parse(text).unwrap();
        assert!(matches!(n.get("a"), Some(Node::Str(Cow::Borrowed("x")))));
        assert_eq!(serde_json::to_string(&n).unwrap(), std::str::from_utf8(text).unwrap());
        assert_eq!(n.get("big"), Some(&Node::UInt(u64::MAX)));
        assert_eq!(n.get("neg"), Some(&Node::Int(i64::MIN)));
        assert_eq!(n.to_json()["c"]["d"][2], Json::from("e\"f"));
    }

    #[test]
    fn rejects_invalid_json() {
        assert!(Node::parse(b"{\"a\":").is_err());
        assert!(Node::parse(b"{\"a\":1,}").is_err());
    }
}
