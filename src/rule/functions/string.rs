//! String functions. Strings are counted and cut in characters, never bytes.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use regex::{Regex, RegexBuilder};
use serde_json::Value as Json;

use super::args::{arg, check_size, int_arg, text_arg, wrong, R};
use crate::rule::ctx::{Args, Ctx};
use crate::value::{quote, Num, Value};

fn owned<'a>(s: String) -> Value<'a> {
    Value::Str(Cow::Owned(s))
}

pub(crate) fn concat<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let mut s = String::new();
    for a in &args {
        if let Some(t) = a.as_text() {
            s.push_str(&t);
        }
    }
    Ok(owned(s))
}

pub(crate) fn lower<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(text_arg(&args, 0).map_or(Value::Null, |t| owned(t.to_lowercase())))
}

pub(crate) fn upper<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
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

pub(crate) fn trim<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    trim_with(args, str::trim)
}

pub(crate) fn ltrim<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    trim_with(args, str::trim_start)
}

pub(crate) fn rtrim<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    trim_with(args, str::trim_end)
}

pub(crate) fn startswith<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(match (text_arg(&args, 0), text_arg(&args, 1)) {
        (Some(s), Some(p)) => Value::Bool(s.starts_with(p.as_ref())),
        _ => Value::Null,
    })
}

pub(crate) fn endswith<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(match (text_arg(&args, 0), text_arg(&args, 1)) {
        (Some(s), Some(p)) => Value::Bool(s.ends_with(p.as_ref())),
        _ => Value::Null,
    })
}

pub(crate) fn replace<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let (Some(s), Some(t), Some(r)) = (text_arg(&args, 0), text_arg(&args, 1), text_arg(&args, 2)) else {
        return Ok(Value::Null);
    };
    // An empty target matches between every two characters (and at both ends).
    let hits = if t.is_empty() { s.chars().count() + 1 } else { s.matches(t.as_ref()).count() };
    check_size(s.len().saturating_sub(hits.saturating_mul(t.len())).saturating_add(hits.saturating_mul(r.len())))?;
    Ok(owned(s.replace(t.as_ref(), &r)))
}

/// The byte offset of character `n` of `s` (its length when `n` is past the end).
fn char_offset(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

pub(crate) fn substring<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
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

pub(crate) fn length<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
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

pub(crate) fn split<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let (Some(s), Some(sep)) = (text_arg(&args, 0), text_arg(&args, 1)) else {
        return Ok(Value::Null);
    };
    if sep.is_empty() {
        return Err("the separator must not be empty".into());
    }
    let parts = s.split(sep.as_ref()).filter(|p| !p.is_empty()).map(|p| Json::String(p.to_string())).collect();
    Ok(Value::Json(Cow::Owned(Json::Array(parts))))
}

pub(crate) fn newuuid<'a>(_: &Ctx<'a>, _: Args<'a>) -> R<'a> {
    Ok(owned(uuid::Uuid::new_v4().to_string()))
}

/// Compiled regexes, per thread; cleared when it reaches [`REGEX_CACHE_MAX`] entries.
const REGEX_CACHE_MAX: usize = 256;

thread_local! {
    static REGEX_CACHE: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
}

/// A compiled regex from the per-thread cache. Invalid or too large patterns are errors.
pub(crate) fn regex(pattern: &str) -> Result<Regex, String> {
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

pub(crate) fn regex_match<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let (Some(s), Some(p)) = (text_arg(&args, 0), text_arg(&args, 1)) else {
        return Ok(Value::Null);
    };
    Ok(Value::Bool(regex(&p)?.is_match(&s)))
}

pub(crate) fn regex_replace<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let (Some(s), Some(p), Some(r)) = (text_arg(&args, 0), text_arg(&args, 1), text_arg(&args, 2)) else {
        return Ok(Value::Null);
    };
    let re = regex(&p)?;
    // replace_all, with the result's size checked as it grows.
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for caps in re.captures_iter(&s) {
        let m = caps.get(0).map_or(0..0, |m| m.range());
        out.push_str(&s[last..m.start]);
        caps.expand(&r, &mut out);
        last = m.end;
        check_size(out.len())?;
    }
    out.push_str(&s[last..]);
    check_size(out.len())?;
    Ok(owned(out))
}

/// Where `pad` adds its padding.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Leading,
    Trailing,
    Both,
}

pub(crate) fn pad<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let Some(s) = text_arg(&args, 0) else {
        return Ok(Value::Null);
    };
    let Some(len) = int_arg(&args, 1)? else {
        return Ok(Value::Null);
    };
    let side = if args.len() > 2 {
        let Some(d) = text_arg(&args, 2) else {
            return Ok(Value::Null);
        };
        match d.to_ascii_lowercase().as_str() {
            "trailing" | "right" => Side::Trailing,
            "leading" | "left" => Side::Leading,
            "both" => Side::Both,
            _ => return Err(format!("unknown direction {}; use 'trailing', 'leading' or 'both'", quote(arg(&args, 2)))),
        }
    } else {
        Side::Trailing
    };
    let fill = if args.len() > 3 {
        let Some(c) = text_arg(&args, 3) else {
            return Ok(Value::Null);
        };
        let mut chars = c.chars();
        match (chars.next(), chars.next()) {
            (Some(ch), None) => ch,
            _ => return wrong(&args, 3, "one character"),
        }
    } else {
        ' '
    };
    let have = s.chars().count();
    let Some(missing) = usize::try_from(len).ok().and_then(|l| l.checked_sub(have)).filter(|m| *m > 0) else {
        return Ok(owned(s.into_owned()));
    };
    check_size(s.len().saturating_add(missing.saturating_mul(fill.len_utf8())))?;
    let (before, after) = match side {
        Side::Leading => (missing, 0),
        Side::Trailing => (0, missing),
        // Like Erlang's string:pad: the odd character goes after.
        Side::Both => (missing / 2, missing - missing / 2),
    };
    let mut out = String::with_capacity(s.len() + missing * fill.len_utf8());
    out.extend(std::iter::repeat_n(fill, before));
    out.push_str(&s);
    out.extend(std::iter::repeat_n(fill, after));
    Ok(owned(out))
}

/// One `~` directive of a `sprintf` format: `~[F][.[P][.Pad]]C`.
struct Directive {
    width: Option<i64>,
    precision: Option<i64>,
    pad: char,
    control: char,
}

/// The arguments a format consumes, in order.
struct Cursor<'r, 'a> {
    args: &'r Args<'a>,
    next: usize,
}

impl<'r, 'a> Cursor<'r, 'a> {
    fn take(&mut self, what: &str) -> Result<&'r Value<'a>, String> {
        let v = self.args.get(self.next).ok_or_else(|| format!("the format needs more arguments (none left for {what})"))?;
        self.next += 1;
        Ok(v)
    }
}

type Chars<'s> = std::iter::Peekable<std::str::Chars<'s>>;

/// A field size of a directive: digits with an optional `-`, or `*` (the next argument).
fn field_size(chars: &mut Chars<'_>, cur: &mut Cursor<'_, '_>) -> Result<Option<i64>, String> {
    if chars.peek() == Some(&'*') {
        chars.next();
        let v = cur.take("*")?;
        return v.as_i64().map(Some).ok_or_else(|| format!("`*` needs an integer argument, got {} {}", v.type_name(), quote(v)));
    }
    let mut text = String::new();
    if chars.peek() == Some(&'-') {
        text.push('-');
        chars.next();
    }
    while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
        text.push(d);
        chars.next();
    }
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<i64>().map(Some).map_err(|_| format!("bad field size `{text}` in the format"))
}

/// Formats with Erlang `io_lib:format` control sequences, as EMQX's `sprintf` does.
pub(crate) fn sprintf<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let Some(fmt) = text_arg(&args, 0) else {
        return Ok(Value::Null);
    };
    let mut cur = Cursor { args: &args, next: 1 };
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        let width = field_size(&mut chars, &mut cur)?;
        let (mut precision, mut pad) = (None, ' ');
        if chars.peek() == Some(&'.') {
            chars.next();
            precision = field_size(&mut chars, &mut cur)?;
            if chars.peek() == Some(&'.') {
                chars.next();
                pad = chars.next().ok_or("the format ends inside a ~ directive")?;
            }
        }
        let control = chars.next().ok_or("the format ends with a lone ~")?;
        for n in [width, precision].into_iter().flatten() {
            check_size(usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX))?;
        }
        directive(&mut out, &Directive { width, precision, pad, control }, &mut cur)?;
        check_size(out.len())?;
    }
    if cur.next < args.len() {
        return Err(format!("{} argument(s) left over: the format uses {}", args.len() - cur.next, cur.next - 1));
    }
    Ok(owned(out))
}

/// Expands one directive into `out`.
fn directive(out: &mut String, d: &Directive, cur: &mut Cursor<'_, '_>) -> Result<(), String> {
    let text: String = match d.control {
        '~' => "~".into(),
        'n' => "\n".into(),
        'i' => {
            cur.take("~i")?;
            return Ok(());
        }
        's' => {
            let v = cur.take("~s")?;
            let t = v.as_text().unwrap_or(Cow::Borrowed("null"));
            match d.precision.and_then(|p| usize::try_from(p).ok()) {
                Some(p) => t.chars().take(p).collect(),
                None => t.into_owned(),
            }
        }
        'p' | 'w' => serde_json::to_string(cur.take("~p")?).map_err(|e| format!("cannot encode a ~p argument: {e}"))?,
        'f' | 'e' | 'g' => {
            let v = cur.take("~f")?;
            let x = v.as_f64().ok_or_else(|| format!("~{} needs a number, got {} {}", d.control, v.type_name(), quote(v)))?;
            let p = usize::try_from(d.precision.unwrap_or(6)).map_err(|_| "the precision must not be negative".to_string())?;
            float_text(x, p, d.control)
        }
        'B' | 'b' => {
            let v = cur.take("~B")?;
            let n = v.as_number().and_then(Num::to_i128).ok_or_else(|| format!("~{} needs an integer, got {} {}", d.control, v.type_name(), quote(v)))?;
            let base = d.precision.unwrap_or(10);
            if !(2..=36).contains(&base) {
                return Err(format!("the base of ~{} must be 2 to 36, got {base}", d.control));
            }
            radix(n, base as u32, d.control == 'B')
        }
        'c' => {
            let v = cur.take("~c")?;
            let code = v.as_i64().and_then(|c| u32::try_from(c).ok()).and_then(char::from_u32).ok_or_else(|| format!("~c needs a character code, got {} {}", v.type_name(), quote(v)))?;
            code.to_string()
        }
        other => return Err(format!("unknown control sequence ~{other} in the format (use ~s, ~p, ~f, ~e, ~g, ~B, ~b, ~c, ~i, ~n or ~~)")),
    };
    match d.width {
        None => out.push_str(&text),
        Some(w) => {
            let missing = usize::try_from(w.unsigned_abs()).unwrap_or(usize::MAX).saturating_sub(text.chars().count());
            if w < 0 {
                out.push_str(&text);
                out.extend(std::iter::repeat_n(d.pad, missing));
            } else {
                out.extend(std::iter::repeat_n(d.pad, missing));
                out.push_str(&text);
            }
        }
    }
    Ok(())
}

/// `n` in `base`, with a leading `-` when negative.
fn radix(n: i128, base: u32, upper: bool) -> String {
    let mut digits = Vec::new();
    let mut m = n.unsigned_abs();
    loop {
        let d = (m % u128::from(base)) as u32;
        let c = char::from_digit(d, base).unwrap_or('?');
        digits.push(if upper { c.to_ascii_uppercase() } else { c });
        m /= u128::from(base);
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        digits.push('-');
    }
    digits.iter().rev().collect()
}

/// `~f` (P decimals), `~e` (P significant digits, Erlang's `1.00000e+0`), `~g` (`~f` for
/// 0.1 <= |x| < 10000, else `~e`).
fn float_text(x: f64, p: usize, control: char) -> String {
    if !x.is_finite() {
        return crate::value::format_float(x);
    }
    let exp_form = |x: f64| {
        let s = format!("{:.*e}", p.saturating_sub(1), x);
        match s.split_once('e') {
            Some((m, e)) if e.starts_with('-') => format!("{m}e{e}"),
            Some((m, e)) => format!("{m}e+{e}"),
            None => s,
        }
    };
    match control {
        'f' => format!("{x:.p$}"),
        'e' => exp_form(x),
        _ if (0.1..10000.0).contains(&x.abs()) => format!("{x:.p$}"),
        _ => exp_form(x),
    }
}
