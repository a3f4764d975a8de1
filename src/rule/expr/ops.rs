//! The operators of the expression tree: arithmetic and comparison under the documented
//! coercion rules.

use std::cmp::Ordering;

use crate::error::EvalError;
use crate::value::{int_value, quote, Num, Value};

type Res<'a> = Result<Value<'a>, EvalError>;

/// Arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>` or `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

/// Applies an arithmetic operator under the documented coercion rules: integers are exact over
/// the whole `i64`/`u64` range (computed in `i128`, an integer result when it fits in `i64` or
/// `u64`, else a float); any float operand makes a float. Never panics.
pub fn arith<'a>(op: ArithOp, x: Value<'a>, y: Value<'a>) -> Res<'a> {
    if x.is_null() || y.is_null() {
        return Ok(Value::Null);
    }
    let sym = match op {
        ArithOp::Add => "+",
        ArithOp::Sub => "-",
        ArithOp::Mul => "*",
        ArithOp::Div => "/",
        ArithOp::Mod => "%",
    };
    let (a, b) = match (x.as_number(), y.as_number()) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            let hint = if op == ArithOp::Add && (matches!(x, Value::Str(_)) || matches!(y, Value::Str(_))) { " (use concat() or || to join strings)" } else { "" };
            return Err(EvalError(format!("cannot apply {sym} to {} {} and {} {}{hint}", x.type_name(), quote(&x), y.type_name(), quote(&y))));
        }
    };
    if let (Some(a), Some(b)) = (a.to_i128(), b.to_i128()) {
        // Both are in [-2^63, 2^64): sums and differences fit in i128, products may not.
        let exact = match op {
            ArithOp::Add => a.checked_add(b),
            ArithOp::Sub => a.checked_sub(b),
            ArithOp::Mul => a.checked_mul(b),
            ArithOp::Div if b == 0 => return Err(EvalError("division by zero".into())),
            ArithOp::Div if a % b == 0 => Some(a / b),
            ArithOp::Div => return Ok(Value::Float(div_to_f64(a, b))),
            ArithOp::Mod if b == 0 => return Err(EvalError("modulo by zero".into())),
            ArithOp::Mod => Some(a % b),
        };
        return Ok(match exact {
            Some(r) => int_value(r),
            // Only a product of two 64-bit integers can leave i128.
            None => Value::Float(a as f64 * b as f64),
        });
    }
    let (a, b) = (a.to_f64(), b.to_f64());
    let r = match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div if b == 0.0 => return Err(EvalError("division by zero".into())),
        ArithOp::Div => a / b,
        ArithOp::Mod if b == 0.0 => return Err(EvalError("modulo by zero".into())),
        ArithOp::Mod => a % b,
    };
    Ok(Value::Float(r))
}

/// `a / b` (b ≠ 0, both within ±2^64) correctly rounded to the nearest float, so a quotient that
/// is representable comes out exactly.
fn div_to_f64(a: i128, b: i128) -> f64 {
    let negative = (a < 0) != (b < 0);
    let (n, d) = (a.unsigned_abs(), b.unsigned_abs());
    // Scale the dividend so that the quotient has at least 62 significant bits, then fold the
    // remainder into a sticky bit: one rounding (u128 → f64) then gives the correctly rounded
    // quotient, and the power-of-two scale is exact.
    let shift = n.leading_zeros().saturating_sub(1);
    let scaled = n << shift;
    let (q, r) = (scaled / d, scaled % d);
    let f = (q | u128::from(r != 0)) as f64 / 2f64.powi(shift as i32);
    if negative {
        -f
    } else {
        f
    }
}

/// Unary minus: exact for integers (`-(-2^63)` is the `u64` 2^63, `-(2^63)` the `i64` minimum),
/// a float below `-(2^63)`; floats negate. NULL gives NULL; a non-number is an error.
pub fn negate<'a>(v: Value<'a>) -> Res<'a> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    match v.as_number() {
        Some(Num::Float(f)) => Ok(Value::Float(-f)),
        Some(n) => Ok(int_value(-n.to_i128().unwrap_or(0))),
        None => Err(EvalError(format!("cannot negate {} {}", v.type_name(), quote(&v)))),
    }
}

/// Applies a comparison; NULL when the values are NULL or not comparable (`=`/`<>` on
/// different types are false/true).
pub fn compare(op: CmpOp, x: &Value<'_>, y: &Value<'_>) -> Value<'static> {
    match op {
        CmpOp::Eq => x.sql_eq(y).map_or(Value::Null, Value::Bool),
        CmpOp::NotEq => x.sql_eq(y).map_or(Value::Null, |b| Value::Bool(!b)),
        _ => match x.sql_cmp(y) {
            None => Value::Null,
            Some(o) => Value::Bool(match op {
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::LtEq => o != Ordering::Greater,
                CmpOp::Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num() -> impl proptest::strategy::Strategy<Value = Num> {
        use proptest::prelude::*;
        prop_oneof![
            any::<i64>().prop_map(Num::Int),
            (i64::MAX as u64 + 1..=u64::MAX).prop_map(Num::UInt),
            prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(-1), Just(0), Just(1)].prop_map(Num::Int),
            prop_oneof![Just(1u64 << 63), Just(u64::MAX)].prop_map(Num::UInt),
            any::<f64>().prop_map(Num::Float),
            (-1e19f64..2e19).prop_map(|f| Num::Float(f.trunc())),
        ]
    }

    proptest::proptest! {
        /// Integer arithmetic equals the exact i128 result whenever that fits in i64 or u64, and
        /// nothing panics for any operands.
        #[test]
        fn integer_arithmetic_is_exact(a in num(), b in num()) {
            for op in [ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div, ArithOp::Mod] {
                let got = arith(op, a.into_value(), b.into_value());
                let (Some(x), Some(y)) = (a.to_i128(), b.to_i128()) else { continue };
                let exact = match op {
                    ArithOp::Add => x.checked_add(y),
                    ArithOp::Sub => x.checked_sub(y),
                    ArithOp::Mul => x.checked_mul(y),
                    ArithOp::Div => (y != 0 && x % y == 0).then(|| x / y),
                    ArithOp::Mod => (y != 0).then(|| x % y),
                };
                if let Some(r) = exact.and_then(Num::from_i128) {
                    let got = got.map(|v| v.as_number()).unwrap_or(None);
                    proptest::prop_assert_eq!(got, Some(r), "{:?} {:?} {:?}", a, op, b);
                }
            }
            let _ = negate(a.into_value());
        }

        /// Int/float comparison agrees with exact i128 comparison for integral floats, and is
        /// antisymmetric.
        #[test]
        fn int_float_comparison_is_exact(a in num(), b in num()) {
            let ab = a.compare(&b);
            proptest::prop_assert_eq!(ab.map(Ordering::reverse), b.compare(&a));
            let exact = |n: Num| n.to_i128().or(match n {
                Num::Float(f) if f.fract() == 0.0 && f.abs() < 1e30 => Some(f as i128),
                _ => None,
            });
            if let (Some(x), Some(y)) = (exact(a), exact(b)) {
                proptest::prop_assert_eq!(ab, Some(x.cmp(&y)));
            }
        }
    }

    #[test]
    fn inexact_division_is_correctly_rounded() {
        // Below 2^53 both operands are exact floats and IEEE division rounds correctly.
        let mut x: i64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = i128::from(x >> 11);
            let b = i128::from((x % 1_000_003).max(1)) * if x & 1 == 0 { 1 } else { -1 };
            if a % b != 0 {
                assert_eq!(div_to_f64(a, b), a as f64 / b as f64, "{a} / {b}");
            }
        }
        assert_eq!(div_to_f64(1, 3), 1.0 / 3.0);
        assert_eq!(div_to_f64(-1, 18_446_744_073_709_551_615), -1.0 / 18_446_744_073_709_551_615.0);
        // (2^64 - 1) / 2 = 2^63 - 0.5: rounds to 2^63.
        assert_eq!(div_to_f64(18_446_744_073_709_551_615, 2), 9_223_372_036_854_775_808.0);
        // 2^63 + 1 over 2^11: exactly representable, though 2^63 + 1 is not a float.
        assert_eq!(div_to_f64((1 << 63) + 1, 1 << 11), 4_503_599_627_370_496.0 + 1.0 / 2048.0);
    }

    #[test]
    fn arithmetic_keeps_integers() {
        assert!(matches!(arith(ArithOp::Add, Value::Int(i64::MAX - 1), Value::Int(1)).unwrap(), Value::Int(i64::MAX)));
        assert!(matches!(arith(ArithOp::Div, Value::Int(6), Value::Int(3)).unwrap(), Value::Int(2)));
        assert!(matches!(arith(ArithOp::Div, Value::Int(7), Value::Int(2)).unwrap(), Value::Float(f) if f == 3.5));
        assert!(matches!(arith(ArithOp::Mul, Value::str("2.5"), Value::Int(2)).unwrap(), Value::Float(f) if f == 5.0));
        assert!(arith(ArithOp::Div, Value::Int(1), Value::Int(0)).is_err());
        assert!(matches!(arith(ArithOp::Add, Value::Null, Value::Int(1)).unwrap(), Value::Null));
        let e = arith(ArithOp::Add, Value::str("a"), Value::Int(1)).unwrap_err();
        assert_eq!(e.0, "cannot apply + to string \"a\" and int 1 (use concat() or || to join strings)");
    }
}
