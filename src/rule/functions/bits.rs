//! Bit functions (EMQX): exact on the whole `i64` and `u64` range, two's complement like
//! Erlang's unbounded integers. A result outside both ranges is an error, never a wrap.

use super::args::{arg, exact_int_arg, R};
use crate::rule::ctx::{Args, Ctx};
use crate::value::{quote, Num, Value};

/// A bit result as `Int`/`UInt`, or an error naming the operation when it fits in neither.
fn fit<'a>(r: i128, what: impl FnOnce() -> String) -> R<'a> {
    Num::from_i128(r).map(Num::into_value).ok_or_else(|| format!("{} = {r} does not fit in 64 bits", what()))
}

/// Both integer arguments; `None` when either is NULL.
fn two(args: &Args<'_>) -> Result<Option<(i128, i128)>, String> {
    Ok(match (exact_int_arg(args, 0)?, exact_int_arg(args, 1)?) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    })
}

pub(crate) fn bitnot<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let Some(x) = exact_int_arg(&args, 0)? else {
        return Ok(Value::Null);
    };
    fit(!x, || format!("bitnot({})", quote(arg(&args, 0))))
}

fn binary<'a>(args: &Args<'a>, name: &str, op: fn(i128, i128) -> i128) -> R<'a> {
    let Some((a, b)) = two(args)? else {
        return Ok(Value::Null);
    };
    fit(op(a, b), || format!("{name}({a}, {b})"))
}

pub(crate) fn bitand<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    binary(&args, "bitand", |a, b| a & b)
}

pub(crate) fn bitor<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    binary(&args, "bitor", |a, b| a | b)
}

pub(crate) fn bitxor<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    binary(&args, "bitxor", |a, b| a ^ b)
}

/// The shift count: a non-negative integer.
fn shift_count(args: &Args<'_>, n: i128) -> Result<u32, String> {
    if n < 0 {
        return Err(format!("the shift count must not be negative, got {}", quote(arg(args, 1))));
    }
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

pub(crate) fn bitsl<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let Some((x, n)) = two(&args)? else {
        return Ok(Value::Null);
    };
    let n = shift_count(&args, n)?;
    if x == 0 {
        return Ok(Value::Int(0));
    }
    // |x| >= 1, so a shift of 65 or more leaves 64 bits; below that, x * 2^n fits in i128.
    let shifted = if n < 65 { x.checked_mul(1i128 << n) } else { None };
    match shifted {
        Some(r) => fit(r, || format!("bitsl({x}, {n})")),
        None => Err(format!("bitsl({x}, {n}) does not fit in 64 bits")),
    }
}

pub(crate) fn bitsr<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let Some((x, n)) = two(&args)? else {
        return Ok(Value::Null);
    };
    let n = shift_count(&args, n)?;
    // Arithmetic shift: negative numbers keep their sign (bitsr(-8, 1) = -4, bitsr(-1, 99) = -1).
    fit(x >> n.min(127), || format!("bitsr({x}, {n})"))
}
