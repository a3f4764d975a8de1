//! String functions. Strings are counted and cut in characters, never bytes.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use regex::{Regex, RegexBuilder};
use serde_json::Value as Json;

use super::{arg, int_arg, quote, text_arg, R};
use crate::rule::expr::{Args, Ctx};
use crate::value::Value;

fn owned<'a>(s: String) -> Value<'a> {
    Value::Str(Cow::Owned(s))
}

pub(super) fn concat<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let mut s = String::new();
    for a in &args {
        if let Some(t) = a.as_text() {
            s.push_str(&t);
        }
    }
    Ok(owned(s))
}

pub(super) fn lower<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(text_arg(&args, 0).map_or(Value::Null, |t| owned(t.to_lowercase())))
}

pub(super) fn upper<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(text_arg(&args, 0).map_or(Value::Null, |t| owned(t.to_uppercase())))
}

/// Applies `f` to the text of argument 0, keeping a borrowed string borrowed.
fn trim_with<'a>(mut args: Args<'a>, f: fn(&str) -> &str) -> R<'a> {
    let v = if args.is_empty() { Value::Null } else { args.swap_remove(0) };
    Ok(match v {
        Value::Null => Value::Null,
        Value::Str(Cow::Borrowed(s)) => Value::Str(Cow::Borrowed(f(s))),
        other => owned(f(&other.as_text().unwrap_or_default()).to_string()),
    })
}

pub(super) fn trim<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    trim_with(args, str::trim)
}

pub(super) fn ltrim<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    trim_with(args, str::trim_start)
}

pub(super) fn rtrim<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    trim_with(args, str::trim_end)
}

pub(super) fn startswith<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(match (text_arg(&args, 0), text_arg(&args, 1)) {
        (Some(s), Some(p)) => Value::Bool(s.starts_with(p.as_ref())),
        _ => Value::Null,
    })
}

pub(super) fn endswith<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(match (text_arg(&args, 0), text_arg(&args, 1)) {
        (Some(s), Some(p)) => Value::Bool(s.ends_with(p.as_ref())),
        _ => Value::Null,
    })
}

pub(super) fn replace<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(match (text_arg(&args, 0), text_arg(&args, 1), text_arg(&args, 2)) {
        (Some(s), Some(t), Some(r)) => owned(s.replace(t.as_ref(), &r)),
        _ => Value::Null,
    })
}

/// The byte offset of character `n` of `s` (its length when `n` is past the end).
fn char_offset(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

pub(super) fn substring<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let Some(s) = text_arg(&args, 0) else {
        return Ok(Value::Null);
    };
    let Some(start) = int_arg(&args, 1)? else {
        return Ok(Value::Null);
    };
    let end = if args.len() > 2 {
        match int_arg(&args, 2)? {
            Some(e) => Some(e),
            None => return Ok(Value::Null),
        }
    } else {
        None
    };
    let start = usize::try_from(start.max(0)).unwrap_or(usize::MAX);
    let from = char_offset(&s, start);
    let to = match end {
        None => s.len(),
        Some(e) => {
            let e = usize::try_from(e.max(0)).unwrap_or(usize::MAX);
            if e <= start {
                return Ok(Value::str(""));
            }
            from + char_offset(&s[from..], e - start)
        }
    };
    Ok(owned(s[from..to].to_string()))
}

pub(super) fn length<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let n = match arg(&args, 0) {
        Value::Null => return Ok(Value::Null),
        Value::Json(j) => match j.as_ref() {
            Json::Array(a) => a.len(),
            Json::Object(o) => o.len(),
            _ => 0,
        },
        Value::Bytes(b) => b.len(),
        other => other.as_text().map_or(0, |t| t.chars().count()),
    };
    Ok(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)))
}

pub(super) fn split<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let (Some(s), Some(sep)) = (text_arg(&args, 0), text_arg(&args, 1)) else {
        return Ok(Value::Null);
    };
    if sep.is_empty() {
        return Err("the separator must not be empty".into());
    }
    let parts = s.split(sep.as_ref()).filter(|p| !p.is_empty()).map(|p| Json::String(p.to_string())).collect();
    Ok(Value::Json(Cow::Owned(Json::Array(parts))))
}

pub(super) fn newuuid<'a>(_: &Ctx<'a>, _: Args<'a>) -> R<'a> {
    Ok(owned(uuid::Uuid::new_v4().to_string()))
}

/// Compiled regexes, per thread; cleared when it reaches [`REGEX_CACHE_MAX`] entries.
const REGEX_CACHE_MAX: usize = 256;

thread_local! {
    static REGEX_CACHE: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
}

/// A compiled regex from the per-thread cache. Invalid or too large patterns are errors.
pub(super) fn regex(pattern: &str) -> Result<Regex, String> {
    if let Some(r) = REGEX_CACHE.with(|c| c.borrow().get(pattern).cloned()) {
        return Ok(r);
    }
    let re = RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regular expression {}: {}", quote(&Value::str(pattern)), e.to_string().lines().last().unwrap_or("").trim()))?;
    REGEX_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= REGEX_CACHE_MAX {
            c.clear();
        }
        c.insert(pattern.to_string(), re.clone());
    });
    Ok(re)
}

pub(super) fn regex_match<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let (Some(s), Some(p)) = (text_arg(&args, 0), text_arg(&args, 1)) else {
        return Ok(Value::Null);
    };
    Ok(Value::Bool(regex(&p)?.is_match(&s)))
}

pub(super) fn regex_replace<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let (Some(s), Some(p), Some(r)) = (text_arg(&args, 0), text_arg(&args, 1), text_arg(&args, 2)) else {
        return Ok(Value::Null);
    };
    Ok(owned(regex(&p)?.replace_all(&s, r.as_ref()).into_owned()))
}
