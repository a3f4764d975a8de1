//! The runtime value of the rule language, and its coercion rules.
//!
//! Values borrow from the decoded payload wherever they can (`Cow`), so that a
//! rule selecting a string or a sub-object does not copy it until the output is
//! serialized. Integers are kept as `i64`/`u64` and never pass through `f64`, so
//! a 64-bit id survives a rule unchanged.
//!
//! Coercion rules (documented in README, "Types and coercion"):
//! - arithmetic on two integers is exact over the whole `i64` and `u64` range (computed in
//!   `i128`): the result is an integer when it fits in `i64` or `u64`, else it falls back to a
//!   float; any float operand makes the result a float; `/` gives an integer only when exact;
//! - a string that parses as a number is accepted where a number is expected;
//! - NULL in arithmetic, comparison or a function argument that needs a value gives NULL;
//! - numbers compare exactly across int/float (never through `f64`); strings compare by code
//!   point; a number compares with a numeric string numerically; arrays and objects are equal
//!   when they have the same elements / the same keys (in any order) with equal values (numbers
//!   by number equality); other mixes are not comparable (NULL).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::Value as Json;

use crate::doc::Node;

mod num;
mod text;

pub use num::{json_eq, parse_num, Num};
pub use text::{base64_decode, base64_encode, format_float};

/// A value produced while evaluating a rule expression.
#[derive(Clone, Debug)]
pub enum Value<'a> {
    /// SQL NULL / JSON null / a missing field.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A double-precision float (may be NaN or infinite; those serialize as null).
    Float(f64),
    /// A string.
    Str(Cow<'a, str>),
    /// Raw bytes (the payload of `*` in a function argument, or a digest).
    Bytes(Cow<'a, [u8]>),
    /// A JSON array or object (computed, or owned).
    Json(Cow<'a, Json>),
    /// An array or object of the decoded payload, borrowed without copying.
    Doc(&'a Node<'a>),
}

impl<'a> Value<'a> {
    /// Wraps a borrowed JSON value without copying it.
    pub fn from_json(v: &'a Json) -> Value<'a> {
        match v {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => number_value(n),
            Json::String(s) => Value::Str(Cow::Borrowed(s.as_str())),
            Json::Array(_) | Json::Object(_) => Value::Json(Cow::Borrowed(v)),
        }
    }

    /// Wraps a node of the decoded payload without copying it.
    pub fn from_node(n: &'a Node<'a>) -> Value<'a> {
        match n {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::Int(*i),
            Node::UInt(u) => Value::UInt(*u),
            Node::Float(f) => Value::Float(*f),
            Node::Str(s) => Value::Str(Cow::Borrowed(s.as_ref())),
            Node::Array(_) | Node::Object(_) => Value::Doc(n),
        }
    }

    /// Turns a borrowed payload array/object into a `serde_json` one (function arguments).
    pub fn materialize(self) -> Value<'a> {
        match self {
            Value::Doc(n) => Value::Json(Cow::Owned(n.to_json())),
            other => other,
        }
    }

    /// Wraps an owned JSON value.
    pub fn from_owned_json(v: Json) -> Value<'static> {
        match v {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => number_value(&n),
            Json::String(s) => Value::Str(Cow::Owned(s)),
            other => Value::Json(Cow::Owned(other)),
        }
    }

    /// A string value.
    pub fn str(s: impl Into<Cow<'a, str>>) -> Value<'a> {
        Value::Str(s.into())
    }

    /// Converts to an owned JSON value (NaN and infinities become null; bytes become base64).
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::UInt(u) => Json::from(*u),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Value::Str(s) => Json::String(s.to_string()),
            Value::Bytes(b) => Json::String(base64_encode(b)),
            Value::Json(j) => j.as_ref().clone(),
            Value::Doc(n) => n.to_json(),
        }
    }

    /// Detaches the value from the payload it borrows from.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::UInt(u) => Value::UInt(u),
            Value::Float(f) => Value::Float(f),
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Bytes(b) => Value::Bytes(Cow::Owned(b.into_owned())),
            Value::Json(j) => Value::Json(Cow::Owned(j.into_owned())),
            Value::Doc(n) => Value::Json(Cow::Owned(n.to_json())),
        }
    }

    /// True for NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The name of the value's type, as used in error messages and `typeof`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::UInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Json(j) => match j.as_ref() {
                Json::Array(_) => "array",
                _ => "object",
            },
            Value::Doc(Node::Array(_)) => "array",
            Value::Doc(_) => "object",
        }
    }

    /// The value as a number, accepting numeric strings.
    pub fn as_number(&self) -> Option<Num> {
        match self {
            Value::Int(i) => Some(Num::Int(*i)),
            Value::UInt(u) => Some(Num::UInt(*u)),
            Value::Float(f) => Some(Num::Float(*f)),
            Value::Str(s) => parse_num(s.trim()),
            _ => None,
        }
    }

    /// The value as an `f64`, accepting numeric strings.
    pub fn as_f64(&self) -> Option<f64> {
        self.as_number().map(Num::to_f64)
    }

    /// The value as an `i64`: integers, integral floats and integer strings.
    pub fn as_i64(&self) -> Option<i64> {
        match self.as_number()? {
            Num::Int(i) => Some(i),
            Num::UInt(u) => i64::try_from(u).ok(),
            Num::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
            Num::Float(_) => None,
        }
    }

    /// The value as text: strings as they are, numbers and booleans printed, JSON encoded.
    /// NULL gives `None`.
    pub fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Null => None,
            Value::Str(s) => Some(Cow::Borrowed(s.as_ref())),
            Value::Bytes(b) => Some(String::from_utf8_lossy(b)),
            other => Some(Cow::Owned(other.to_string())),
        }
    }

    /// The JSON array or object, if the value is one.
    pub fn as_json(&self) -> Option<&Json> {
        match self {
            Value::Json(j) => Some(j.as_ref()),
            _ => None,
        }
    }

    /// Truth value for WHERE and boolean operators: booleans, numbers (non-zero is true)
    /// and NULL (unknown). Other types are an error.
    pub fn truth(&self) -> Result<Option<bool>, String> {
        match self {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            Value::Int(i) => Ok(Some(*i != 0)),
            Value::UInt(u) => Ok(Some(*u != 0)),
            Value::Float(f) => Ok(Some(*f != 0.0)),
            Value::Str(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Value::Str(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            other => Err(format!("expected a boolean, got {} {}", other.type_name(), quote(other))),
        }
    }

    /// SQL equality: NULL when either side is NULL, else whether both are equal under the
    /// comparison rules (numbers across types, numeric strings with numbers, JSON structurally).
    pub fn sql_eq(&self, other: &Value<'_>) -> Option<bool> {
        if self.is_null() || other.is_null() {
            return None;
        }
        match (self, other) {
            (Value::Json(a), Value::Json(b)) => return Some(json_eq(a, b)),
            (Value::Doc(a), Value::Doc(b)) => return Some(json_eq(&a.to_json(), &b.to_json())),
            (Value::Doc(a), Value::Json(b)) | (Value::Json(b), Value::Doc(a)) => return Some(json_eq(&a.to_json(), b)),
            (Value::Json(_) | Value::Doc(_), _) | (_, Value::Json(_) | Value::Doc(_)) => return Some(false),
            _ => {}
        }
        if let (Value::Bool(a), Value::Bool(b)) = (self, other) {
            return Some(a == b);
        }
        match self.sql_cmp(other) {
            Some(o) => Some(o == Ordering::Equal),
            None => Some(false),
        }
    }

    /// SQL ordering; `None` when the two values are not comparable.
    pub fn sql_cmp(&self, other: &Value<'_>) -> Option<Ordering> {
        match (self, other) {
            (Value::Null, _) | (_, Value::Null) => None,
            (Value::Str(a), Value::Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Bytes(a), Value::Bytes(b)) => Some(a.as_ref().cmp(b.as_ref())),
            (a, b) => {
                let (x, y) = (a.as_number()?, b.as_number()?);
                x.compare(&y)
            }
        }
    }
}

fn number_value(n: &serde_json::Number) -> Value<'static> {
    if let Some(i) = n.as_i64() {
        Value::Int(i)
    } else if let Some(u) = n.as_u64() {
        Value::UInt(u)
    } else {
        Value::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

impl Num {
    /// Back into a value.
    pub fn into_value(self) -> Value<'static> {
        match self {
            Num::Int(i) => Value::Int(i),
            Num::UInt(u) => Value::UInt(u),
            Num::Float(f) => Value::Float(f),
        }
    }
}

/// Quotes a value for an error message, shortened.
pub fn quote(v: &Value<'_>) -> String {
    let s = match v {
        Value::Str(s) => format!("{:?}", s.as_ref()),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// An exact integer result: `Int` or `UInt` when it fits, else the nearest float (the documented
/// overflow fallback).
pub fn int_value(r: i128) -> Value<'static> {
    Num::from_i128(r).map_or(Value::Float(r as f64), Num::into_value)
}

impl fmt::Display for Value<'_> {
    /// Text form: strings bare, everything else as JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Float(x) => f.write_str(&format_float(*x)),
            Value::Str(s) => f.write_str(s),
            Value::Bytes(b) => f.write_str(&base64_encode(b)),
            Value::Json(j) => write!(f, "{j}"),
            Value::Doc(n) => f.write_str(&serde_json::to_string(n).map_err(|_| fmt::Error)?),
        }
    }
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => s.serialize_u64(*u),
            Value::Float(x) if x.is_finite() => s.serialize_f64(*x),
            Value::Float(_) => s.serialize_unit(),
            Value::Str(t) => s.serialize_str(t),
            Value::Bytes(b) => s.serialize_str(&base64_encode(b)),
            Value::Json(j) => j.serialize(s),
            Value::Doc(n) => n.serialize(s),
        }
    }
}

/// Serializes ordered `(name, value)` pairs as one JSON object, without building a map: the
/// serde reference that the engine's writer ([`crate::jsonw::write_fields`]) is tested against.
#[cfg(test)]
pub struct Fields<'r, 'a, K: AsRef<str>>(pub &'r [(K, Value<'a>)]);

#[cfg(test)]
impl<K: AsRef<str>> Serialize for Fields<'_, '_, K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k.as_ref(), v)?;
        }
        m.end()
    }
}

/// Serializes a slice of values as a JSON array.
pub struct Values<'r, 'a>(pub &'r [Value<'a>]);

impl Serialize for Values<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut q = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            q.serialize_element(v)?;
        }
        q.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn big_integers_keep_their_digits() {
        let j: Json = serde_json::from_str("9223372036854775807").unwrap();
        let v = Value::from_json(&j);
        assert_eq!(serde_json::to_string(&v).unwrap(), "9223372036854775807");
        let j: Json = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(serde_json::to_string(&Value::from_json(&j)).unwrap(), "18446744073709551615");
    }

    #[test]
    fn floats_print_as_they_came() {
        for text in ["1.02", "0.1", "39.9", "1.0", "-2.5e-7"] {
            let j: Json = serde_json::from_str(text).unwrap();
            let back = serde_json::to_string(&Value::from_json(&j)).unwrap();
            assert_eq!(back.parse::<f64>().unwrap(), text.parse::<f64>().unwrap());
        }
        let j: Json = serde_json::from_str("1.02").unwrap();
        assert_eq!(serde_json::to_string(&Value::from_json(&j)).unwrap(), "1.02");
    }

    #[test]
    fn comparisons_follow_the_documented_rules() {
        assert_eq!(Value::Int(3).sql_cmp(&Value::Float(2.5)), Some(Ordering::Greater));
        assert_eq!(Value::str("10").sql_eq(&Value::Int(10)), Some(true));
        assert_eq!(Value::Null.sql_eq(&Value::Int(1)), None);
        assert_eq!(Value::str("a").sql_cmp(&Value::Int(1)), None);
        assert_eq!(Value::Bool(true).sql_eq(&Value::Int(1)), Some(false));
        let a = json!({"x": [1, 2]});
        let b = json!({"x": [1, 2]});
        assert_eq!(Value::from_json(&a).sql_eq(&Value::from_json(&b)), Some(true));
    }

    fn cmp(a: Num, b: Num) -> Option<Ordering> {
        a.compare(&b)
    }

    #[test]
    fn int_float_comparisons_are_exact() {
        use Ordering::*;
        // 2^53 + 1 is not a float: through f64 both sides would be 2^53.
        assert_eq!(cmp(Num::Int(9_007_199_254_740_993), Num::Float(9_007_199_254_740_992.0)), Some(Greater));
        assert_eq!(cmp(Num::Float(9_007_199_254_740_992.0), Num::Int(9_007_199_254_740_993)), Some(Less));
        assert_eq!(cmp(Num::Int(1_700_000_000_000_000_001), Num::Float(1.7e18)), Some(Greater));
        assert_eq!(cmp(Num::Int(1_700_000_000_000_000_000), Num::Float(1.7e18)), Some(Equal));
        // i64::MAX is not a float; 2^63 is.
        assert_eq!(cmp(Num::Int(i64::MAX), Num::Float(9_223_372_036_854_775_808.0)), Some(Less));
        assert_eq!(cmp(Num::UInt(1 << 63), Num::Float(9_223_372_036_854_775_808.0)), Some(Equal));
        assert_eq!(cmp(Num::UInt(u64::MAX), Num::Float(18_446_744_073_709_551_616.0)), Some(Less));
        assert_eq!(cmp(Num::Int(i64::MIN), Num::Float(-9_223_372_036_854_775_808.0)), Some(Equal));
        assert_eq!(cmp(Num::Int(i64::MIN), Num::Float(-9.3e18)), Some(Greater));
        assert_eq!(cmp(Num::Int(2), Num::Float(2.5)), Some(Less));
        assert_eq!(cmp(Num::Int(-2), Num::Float(-2.5)), Some(Greater));
        assert_eq!(cmp(Num::Int(-3), Num::Float(-2.5)), Some(Less));
        assert_eq!(cmp(Num::Int(0), Num::Float(-0.0)), Some(Equal));
        assert_eq!(cmp(Num::Int(i64::MAX), Num::Float(f64::INFINITY)), Some(Less));
        assert_eq!(cmp(Num::UInt(u64::MAX), Num::Float(f64::NEG_INFINITY)), Some(Greater));
        assert_eq!(cmp(Num::Int(1), Num::Float(f64::NAN)), None);
        assert_eq!(cmp(Num::Float(1e300), Num::UInt(u64::MAX)), Some(Greater));
        assert_eq!(cmp(Num::Int(-1), Num::UInt(u64::MAX)), Some(Less));
        assert_eq!(Value::Int(9_007_199_254_740_993).sql_eq(&Value::Float(9_007_199_254_740_992.0)), Some(false));
        assert_eq!(Value::UInt(u64::MAX).sql_eq(&Value::str("18446744073709551615")), Some(true));
    }

    #[test]
    fn floats_become_integers_only_when_integral_and_in_range() {
        assert_eq!(Num::int_of_f64(1e19), Some(Num::UInt(10_000_000_000_000_000_000)));
        assert_eq!(Num::int_of_f64(-9_223_372_036_854_775_808.0), Some(Num::Int(i64::MIN)));
        assert_eq!(Num::int_of_f64(18_446_744_073_709_551_616.0), None);
        assert_eq!(Num::int_of_f64(-9.3e18), None);
        assert_eq!(Num::int_of_f64(1.5), None);
        assert_eq!(Num::int_of_f64(f64::NAN), None);
        assert_eq!(Num::int_of_f64(f64::INFINITY), None);
    }

    #[test]
    fn structures_compare_by_value() {
        let v = |t: &str| Value::from_owned_json(serde_json::from_str(t).unwrap());
        assert_eq!(v("[1,2]").sql_eq(&v("[1,2.0]")), Some(true));
        assert_eq!(v("[1,2]").sql_eq(&v("[2,1]")), Some(false));
        assert_eq!(v("[1,2]").sql_eq(&v("[1,2,3]")), Some(false));
        assert_eq!(v(r#"{"a":1,"b":[true,"x"]}"#).sql_eq(&v(r#"{"b":[true,"x"],"a":1.0}"#)), Some(true));
        assert_eq!(v(r#"{"a":1}"#).sql_eq(&v(r#"{"a":1,"b":2}"#)), Some(false));
        assert_eq!(v(r#"{"a":1}"#).sql_eq(&v(r#"{"b":1}"#)), Some(false));
        assert_eq!(v("[18446744073709551615]").sql_eq(&v("[1.8446744073709552e19]")), Some(false), "u64::MAX is not 2^64");
        assert_eq!(v("[\"1\"]").sql_eq(&v("[1]")), Some(false), "inside structures a string is not a number");
        assert_eq!(v("[1]").sql_eq(&Value::Int(1)), Some(false));
        let doc = crate::doc::Node::parse(br#"{"b":2.0,"a":[1]}"#).unwrap();
        assert_eq!(Value::from_node(&doc).sql_eq(&v(r#"{"a":[1.0],"b":2}"#)), Some(true));
        assert_eq!(Value::from_node(&doc).sql_eq(&Value::from_node(&doc)), Some(true));
    }

    #[test]
    fn numeric_strings_parse_but_words_do_not() {
        assert_eq!(parse_num("1.02"), Some(Num::Float(1.02)));
        assert_eq!(parse_num("-7"), Some(Num::Int(-7)));
        assert_eq!(parse_num("inf"), None);
        assert_eq!(parse_num("NaN"), None);
        assert_eq!(parse_num(""), None);
    }
}
