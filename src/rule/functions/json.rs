//! JSON and collection functions. Values pass through untouched: a `u64` above `i64::MAX` or a
//! borrowed sub-object comes out as it went in.

use std::borrow::Cow;

use serde_json::Value as Json;

use super::args::{arg, int_arg, text_arg, R};
use crate::rule::ctx::{Args, Ctx};
use crate::value::{quote, Value};

/// Takes argument `i` out of `args` (NULL when absent).
fn take<'a>(args: &mut Args<'a>, i: usize) -> Value<'a> {
    match args.get_mut(i) {
        Some(v) => std::mem::replace(v, Value::Null),
        None => Value::Null,
    }
}

/// A child of a JSON value, borrowing when the value borrows.
fn child<'a>(v: Value<'a>, pick: impl Fn(&Json) -> Option<&Json>) -> Value<'a> {
    match v {
        Value::Json(Cow::Borrowed(j)) => pick(j).map_or(Value::Null, Value::from_json),
        Value::Json(Cow::Owned(j)) => pick(&j).map_or(Value::Null, |c| Value::from_owned_json(c.clone())),
        _ => Value::Null,
    }
}

pub(crate) fn coalesce<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(args.into_iter().find(|v| !v.is_null()).unwrap_or(Value::Null))
}

pub(crate) fn json_encode<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    serde_json::to_string(arg(&args, 0)).map(|s| Value::Str(Cow::Owned(s))).map_err(|e| format!("cannot encode {}: {e}", quote(arg(&args, 0))))
}

pub(crate) fn json_decode<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let parsed = match arg(&args, 0) {
        Value::Null => return Ok(Value::Null),
        Value::Bytes(b) => serde_json::from_slice::<Json>(b),
        other => serde_json::from_str::<Json>(&other.as_text().unwrap_or_default()),
    };
    parsed.map(Value::from_owned_json).map_err(|e| format!("invalid JSON {}: {e}", quote(arg(&args, 0))))
}

pub(crate) fn nth<'a>(_: &Ctx<'a>, mut args: Args<'a>) -> R<'a> {
    let Some(n) = int_arg(&args, 0)? else {
        return Ok(Value::Null);
    };
    let list = take(&mut args, 1);
    match &list {
        Value::Null => return Ok(Value::Null),
        Value::Json(j) if j.is_array() => {}
        other => return Err(format!("argument 2 must be an array, got {} {}", other.type_name(), quote(other))),
    }
    let Some(i) = n.checked_sub(1).and_then(|i| usize::try_from(i).ok()) else {
        return Ok(Value::Null);
    };
    Ok(child(list, |j| j.get(i)))
}

pub(crate) fn map_get<'a>(_: &Ctx<'a>, mut args: Args<'a>) -> R<'a> {
    let default = take(&mut args, 2);
    let Some(key) = text_arg(&args, 0).map(Cow::into_owned) else {
        return Ok(default);
    };
    let map = take(&mut args, 1);
    match &map {
        Value::Null => return Ok(default),
        Value::Json(j) if j.is_object() => {}
        other => return Err(format!("argument 2 must be an object, got {} {}", other.type_name(), quote(other))),
    }
    let has = map.as_json().and_then(|j| j.get(key.as_str())).is_some();
    Ok(if has { child(map, |j| j.get(key.as_str())) } else { default })
}
