//! Numbers taken out of values: exact integers over the whole `i64` and `u64` range, exact
//! integer/float comparison, JSON number equality, and the parsing of numeric strings.

use std::cmp::Ordering;

use serde_json::Value as Json;

/// A number taken out of a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    /// Signed integer.
    Int(i64),
    /// Unsigned integer above `i64::MAX`.
    UInt(u64),
    /// Float.
    Float(f64),
}

impl Num {
    /// As `f64` (the nearest float for integers above 2^53).
    pub fn to_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::UInt(u) => u as f64,
            Num::Float(f) => f,
        }
    }

    /// The integer, exactly, as an `i128` (`None` for a float).
    pub fn to_i128(self) -> Option<i128> {
        match self {
            Num::Int(i) => Some(i128::from(i)),
            Num::UInt(u) => Some(i128::from(u)),
            Num::Float(_) => None,
        }
    }

    /// An integer as `Int` when it fits in `i64`, else `UInt` when it fits in `u64`; `None`
    /// outside both.
    pub fn from_i128(i: i128) -> Option<Num> {
        if let Ok(v) = i64::try_from(i) {
            Some(Num::Int(v))
        } else {
            u64::try_from(i).ok().map(Num::UInt)
        }
    }

    /// A float as an integer when it is integral and fits in `i64` or `u64`.
    pub fn int_of_f64(f: f64) -> Option<Num> {
        // -2^63 and 2^64 are exact in f64; an integral float in [-2^63, 2^64) converts exactly.
        if f.fract() != 0.0 || !(-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&f) {
            return None;
        }
        Num::from_i128(f as i128)
    }

    /// Compares two numbers exactly: integers with integers over their whole range, an integer
    /// with a float by their exact values (never through `f64`); `None` when a float is NaN.
    pub fn compare(&self, other: &Num) -> Option<Ordering> {
        match (self.to_i128(), other.to_i128()) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            (Some(a), None) => cmp_int_float(a, other.to_f64()),
            (None, Some(b)) => cmp_int_float(b, self.to_f64()).map(Ordering::reverse),
            (None, None) => self.to_f64().partial_cmp(&other.to_f64()),
        }
    }
}

/// Compares integer `i` (|i| < 2^65) with float `f` exactly; `None` when `f` is NaN.
fn cmp_int_float(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // Beyond ±2^100 (and for the infinities) the float is past every 64-bit integer.
    const LIMIT: f64 = 1_267_650_600_228_229_401_496_703_205_376.0; // 2^100
    if f >= LIMIT {
        return Some(Ordering::Less);
    }
    if f <= -LIMIT {
        return Some(Ordering::Greater);
    }
    // |f| < 2^100: its integer part converts to i128 exactly.
    let whole = f.trunc();
    match i.cmp(&(whole as i128)) {
        Ordering::Equal => 0.0.partial_cmp(&(f - whole)),
        o => Some(o),
    }
}

/// Structural equality of JSON values: numbers by exact number equality (`1 = 1.0`), arrays
/// element by element, objects by their keys in any order.
pub fn json_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => json_num(x).compare(&json_num(y)) == Some(Ordering::Equal),
        (Json::Array(x), Json::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y)),
        (Json::Object(x), Json::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w))),
        _ => a == b,
    }
}

fn json_num(n: &serde_json::Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i)
    } else if let Some(u) = n.as_u64() {
        Num::UInt(u)
    } else {
        Num::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Parses a number the way JSON writes it (also accepting a leading `+` and surrounding spaces
/// trimmed by the caller). Integers stay integral.
pub fn parse_num(s: &str) -> Option<Num> {
    if s.is_empty() {
        return None;
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(Num::Int(i));
    }
    if let Ok(u) = s.parse::<u64>() {
        return Some(Num::UInt(u));
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return None; // refuse "inf", "NaN" and other words f64::from_str accepts
    }
    s.parse::<f64>().ok().map(Num::Float)
}
