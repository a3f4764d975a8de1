//! Math functions. Integers stay integers wherever the result is exact and fits.

use super::args::{arg, f64_arg, int_arg, num_arg, R};
use crate::rule::ctx::{Args, Ctx};
use crate::value::{Num, Value};

/// Applies `f` to a float argument; NULL gives NULL.
fn unary<'a>(args: &Args<'a>, f: fn(f64) -> f64) -> R<'a> {
    Ok(f64_arg(args, 0)?.map_or(Value::Null, |x| Value::Float(f(x))))
}

/// An integral `f64` as an integer when it fits in `i64` or `u64`, else the float.
fn int_if_fits(f: f64) -> Value<'static> {
    Num::int_of_f64(f).map_or(Value::Float(f), Num::into_value)
}

/// An `i128` as `Int`/`UInt` when it fits, else a float.
fn from_i128(i: i128) -> Value<'static> {
    crate::value::int_value(i)
}

fn int_of(n: Num) -> Option<i128> {
    n.to_i128()
}

pub(crate) fn abs<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(match num_arg(&args, 0)? {
        None => Value::Null,
        Some(Num::Int(i)) => i.checked_abs().map_or(Value::UInt(i.unsigned_abs()), Value::Int),
        Some(Num::UInt(u)) => Value::UInt(u),
        Some(Num::Float(f)) => Value::Float(f.abs()),
    })
}

pub(crate) fn asin<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    unary(&args, f64::asin)
}

pub(crate) fn cos<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    unary(&args, f64::cos)
}

pub(crate) fn cosh<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    unary(&args, f64::cosh)
}

pub(crate) fn exp<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    unary(&args, f64::exp)
}

pub(crate) fn sin<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    unary(&args, f64::sin)
}

pub(crate) fn sinh<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    unary(&args, f64::sinh)
}

pub(crate) fn tan<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    unary(&args, f64::tan)
}

pub(crate) fn tanh<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    unary(&args, f64::tanh)
}

pub(crate) fn sqrt<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    unary(&args, f64::sqrt)
}

pub(crate) fn log10<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    unary(&args, f64::log10)
}

pub(crate) fn log<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let Some(x) = f64_arg(&args, 0)? else {
        return Ok(Value::Null);
    };
    if args.len() < 2 {
        return Ok(Value::Float(x.ln()));
    }
    Ok(f64_arg(&args, 1)?.map_or(Value::Null, |base| Value::Float(x.ln() / base.ln())))
}

/// Rounds toward negative (`floor`) or positive (`ceil`) infinity.
fn floor_ceil<'a>(args: &Args<'a>, f: fn(f64) -> f64) -> R<'a> {
    Ok(match num_arg(args, 0)? {
        None => Value::Null,
        Some(Num::Float(x)) => int_if_fits(f(x)),
        Some(n) => n.into_value(),
    })
}

pub(crate) fn floor<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    floor_ceil(&args, f64::floor)
}

pub(crate) fn ceil<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    floor_ceil(&args, f64::ceil)
}

pub(crate) fn modulo<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let (Some(a), Some(b)) = (num_arg(&args, 0)?, num_arg(&args, 1)?) else {
        return Ok(Value::Null);
    };
    if let (Some(x), Some(y)) = (int_of(a), int_of(b)) {
        if y == 0 {
            return Err(format!("modulo by zero ({} mod 0)", crate::value::quote(arg(&args, 0))));
        }
        return Ok(from_i128(x % y));
    }
    let (x, y) = (a.to_f64(), b.to_f64());
    if y == 0.0 {
        return Err(format!("modulo by zero ({} mod 0)", crate::value::quote(arg(&args, 0))));
    }
    Ok(Value::Float(x % y))
}

pub(crate) fn power<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let (Some(a), Some(b)) = (num_arg(&args, 0)?, num_arg(&args, 1)?) else {
        return Ok(Value::Null);
    };
    if let (Some(x), Some(y)) = (int_of(a), int_of(b)) {
        if let Ok(e) = u32::try_from(y) {
            if let Some(p) = x.checked_pow(e) {
                if let Ok(v) = i64::try_from(p) {
                    return Ok(Value::Int(v));
                }
                if let Ok(u) = u64::try_from(p) {
                    return Ok(Value::UInt(u));
                }
            }
        }
    }
    Ok(Value::Float(a.to_f64().powf(b.to_f64())))
}

pub(crate) fn rand<'a>(_: &Ctx<'a>, _: Args<'a>) -> R<'a> {
    Ok(Value::Float(rand::random::<f64>()))
}

pub(crate) fn nanvl<'a>(_: &Ctx<'a>, mut args: Args<'a>) -> R<'a> {
    let default = if args.len() > 1 { args.swap_remove(1) } else { Value::Null };
    let value = if args.is_empty() { Value::Null } else { args.swap_remove(0) };
    Ok(match value {
        Value::Null => default,
        Value::Float(f) if f.is_nan() => default,
        v => v,
    })
}

pub(crate) fn round<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let Some(n) = num_arg(&args, 0)? else {
        return Ok(Value::Null);
    };
    if args.len() < 2 {
        return Ok(match n {
            Num::Float(f) => int_if_fits(f.round()),
            n => n.into_value(),
        });
    }
    let Some(digits) = int_arg(&args, 1)? else {
        return Ok(Value::Null);
    };
    Ok(match n {
        Num::Float(f) => Value::Float(round_decimal(f, digits)),
        n if digits >= 0 => n.into_value(),
        n => {
            let x = int_of(n).unwrap_or(0);
            // |x| < 2^64 < 10^20: rounding to 10^20 or more gives 0.
            match 10i128.checked_pow(u32::try_from(digits.unsigned_abs()).unwrap_or(u32::MAX)) {
                Some(p) if p <= 10i128.pow(20) => {
                    let r = (x.abs() + p / 2) / p * p;
                    from_i128(if x < 0 { -r } else { r })
                }
                _ => Value::Int(0),
            }
        }
    })
}

/// Rounds `x` half away from zero at `digits` decimal places (negative: tens, hundreds…),
/// working on its shortest decimal form, so `round(2.675, 2)` is 2.68 as written.
pub(crate) fn round_decimal(x: f64, digits: i64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    // Display of f64 never uses an exponent: it is plain digits with an optional '.'.
    let text = format!("{}", x.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut ds: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b.wrapping_sub(b'0')).collect();
    let mut point = int.len() as i64;
    let keep = point.saturating_add(digits);
    if keep >= ds.len() as i64 {
        return x;
    }
    if keep < 0 {
        return 0.0;
    }
    let keep = keep as usize;
    let up = ds[keep] >= 5;
    ds.truncate(keep);
    if up {
        let mut j = keep;
        loop {
            if j == 0 {
                ds.insert(0, 1);
                point += 1;
                break;
            }
            j -= 1;
            if ds[j] == 9 {
                ds[j] = 0;
            } else {
                ds[j] += 1;
                break;
            }
        }
    }
    let point = point as usize;
    let mut s = String::with_capacity(ds.len().max(point) + 2);
    for (i, d) in ds.iter().enumerate() {
        if i == point {
            s.push('.');
        }
        s.push(char::from(b'0' + d));
    }
    for _ in ds.len()..point {
        s.push('0');
    }
    if s.is_empty() {
        return 0.0;
    }
    let r: f64 = s.parse().unwrap_or(x.abs());
    if r == 0.0 {
        0.0
    } else if x < 0.0 {
        -r
    } else {
        r
    }
}
