//! Type tests and casts (`CAST(x AS int)` calls `int(x)`, and so on).

use std::borrow::Cow;

use serde_json::Value as Json;

use super::args::{arg, R};
use crate::rule::ctx::{Args, Ctx};
use crate::value::{parse_num, quote, Num, Value};

fn test<'a>(args: &Args<'a>, f: fn(&Value<'a>) -> bool) -> R<'a> {
    Ok(Value::Bool(f(arg(args, 0))))
}

fn is_json(v: &Value<'_>, array: bool) -> bool {
    matches!(v, Value::Json(j) if matches!(j.as_ref(), Json::Array(_)) == array)
}

pub(crate) fn is_null<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    test(&args, |v| v.is_null())
}

pub(crate) fn is_not_null<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    test(&args, |v| !v.is_null())
}

pub(crate) fn is_str<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    test(&args, |v| matches!(v, Value::Str(_)))
}

pub(crate) fn is_num<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    test(&args, |v| matches!(v, Value::Int(_) | Value::UInt(_) | Value::Float(_)))
}

pub(crate) fn is_int<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    test(&args, |v| matches!(v, Value::Int(_) | Value::UInt(_)))
}

pub(crate) fn is_float<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    test(&args, |v| matches!(v, Value::Float(_)))
}

pub(crate) fn is_bool<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    test(&args, |v| matches!(v, Value::Bool(_)))
}

pub(crate) fn is_map<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    test(&args, |v| is_json(v, false))
}

pub(crate) fn is_array<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    test(&args, |v| is_json(v, true))
}

pub(crate) fn type_of<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(Value::str(arg(&args, 0).type_name()))
}

fn cannot<'a>(v: &Value<'_>, to: &str) -> R<'a> {
    Err(format!("cannot convert {} {} to {to}", v.type_name(), quote(v)))
}

pub(crate) fn int<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let v = arg(&args, 0);
    let n = match v {
        Value::Null => return Ok(Value::Null),
        Value::Bool(b) => return Ok(Value::Int(i64::from(*b))),
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => v.as_number(),
        Value::Str(s) => parse_num(s.trim()),
        _ => None,
    };
    match n {
        Some(Num::Float(f)) => Num::int_of_f64(f.trunc()).map_or_else(|| cannot(v, "int (out of range)"), |n| Ok(n.into_value())),
        Some(n) => Ok(n.into_value()),
        None => cannot(v, "int"),
    }
}

pub(crate) fn float<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let v = arg(&args, 0);
    match v {
        Value::Null => Ok(Value::Null),
        Value::Bool(b) => Ok(Value::Float(if *b { 1.0 } else { 0.0 })),
        Value::Int(_) | Value::UInt(_) | Value::Float(_) | Value::Str(_) => v.as_f64().map_or_else(|| cannot(v, "float"), |f| Ok(Value::Float(f))),
        _ => cannot(v, "float"),
    }
}

pub(crate) fn string<'a>(_: &Ctx<'a>, mut args: Args<'a>) -> R<'a> {
    let v = if args.is_empty() { Value::Null } else { args.swap_remove(0) };
    Ok(match v {
        Value::Null => Value::Null,
        Value::Str(s) => Value::Str(s),
        other => Value::Str(Cow::Owned(other.to_string())),
    })
}

pub(crate) fn bool<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let v = arg(&args, 0);
    Ok(match v {
        Value::Null => Value::Null,
        Value::Bool(b) => Value::Bool(*b),
        Value::Int(i) => Value::Bool(*i != 0),
        Value::UInt(_) => Value::Bool(true),
        Value::Float(f) if !f.is_nan() => Value::Bool(*f != 0.0),
        Value::Str(s) if s.trim().eq_ignore_ascii_case("true") => Value::Bool(true),
        Value::Str(s) if s.trim().eq_ignore_ascii_case("false") => Value::Bool(false),
        other => return cannot(other, "bool"),
    })
}
