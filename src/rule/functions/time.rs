//! Time functions: the evaluation clock, Java `SimpleDateFormat`-style formatting (Alibaba's
//! `timestamp(format)`) and RFC 3339 conversions (EMQX).

use std::borrow::Cow;

use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, Timelike, Utc};

use super::args::{arg, int_arg, text_arg, R};
use crate::rule::ctx::{Args, Ctx};
use crate::value::{quote, Value};

const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// Writes `v` zero-padded to `width` characters (the sign counts), like Java's repeated pattern
/// letters. No `format!` width: it panics from 65,536 on, and a format may come from a payload.
fn pad(out: &mut String, v: i64, width: usize) {
    let digits = v.unsigned_abs().to_string();
    let sign = usize::from(v < 0);
    if v < 0 {
        out.push('-');
    }
    out.extend(std::iter::repeat_n('0', width.saturating_sub(digits.len() + sign)));
    out.push_str(&digits);
}

/// `+0800`, `+08:00`, `+08` (minutes shown only when non-zero, like Java's `X`).
fn offset_text(secs: i32, style: u8) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let (h, m) = (secs.unsigned_abs() / 3600, secs.unsigned_abs() % 3600 / 60);
    match style {
        1 if m == 0 => format!("{sign}{h:02}"),
        1 | 2 => format!("{sign}{h:02}{m:02}"),
        _ => format!("{sign}{h:02}:{m:02}"),
    }
}

/// Formats `t` with a Java `SimpleDateFormat` pattern: `yyyy yy MM M MMM MMMM dd d HH H hh h
/// kk KK mm m ss s SSS a E EEE EEEE u D G Z X XX XXX z`, `'quoted text'` and `''` for a quote.
/// Other ASCII letters are an error; other characters are copied. A result above
/// [`MAX_VALUE_BYTES`](crate::rule::functions::MAX_VALUE_BYTES) is an error.
pub fn java_format(pattern: &str, t: &DateTime<FixedOffset>) -> Result<String, String> {
    let out = java_format_unbounded(pattern, t)?;
    super::args::check_size(out.len())?;
    Ok(out)
}

fn java_format_unbounded(pattern: &str, t: &DateTime<FixedOffset>) -> Result<String, String> {
    let bad = |what: String| format!("{what} in date format {}", quote(&Value::str(pattern)));
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(bad("unterminated quote".into())),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        out.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        out.push(ch);
                        i += 1;
                    }
                }
            }
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        i += n;
        let hour = i64::from(t.hour());
        match c {
            'G' => out.push_str(if t.year() > 0 { "AD" } else { "BC" }),
            'y' if n == 2 => pad(&mut out, i64::from(t.year()).rem_euclid(100), 2),
            'y' => pad(&mut out, i64::from(t.year()), n),
            'M' if n >= 4 => out.push_str(MONTHS[t.month0() as usize % 12]),
            'M' if n == 3 => out.push_str(&MONTHS[t.month0() as usize % 12][..3]),
            'M' => pad(&mut out, i64::from(t.month()), n),
            'd' => pad(&mut out, i64::from(t.day()), n),
            'D' => pad(&mut out, i64::from(t.ordinal()), n),
            'H' => pad(&mut out, hour, n),
            'k' => pad(&mut out, if hour == 0 { 24 } else { hour }, n),
            'K' => pad(&mut out, hour % 12, n),
            'h' => pad(&mut out, if hour % 12 == 0 { 12 } else { hour % 12 }, n),
            'm' => pad(&mut out, i64::from(t.minute()), n),
            's' => pad(&mut out, i64::from(t.second()), n),
            'S' => pad(&mut out, i64::from(t.timestamp_subsec_millis().min(999)), n),
            'a' => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            'E' if n >= 4 => out.push_str(DAYS[t.weekday().num_days_from_monday() as usize % 7]),
            'E' => out.push_str(&DAYS[t.weekday().num_days_from_monday() as usize % 7][..3]),
            'u' => pad(&mut out, i64::from(t.weekday().number_from_monday()), n),
            'Z' => out.push_str(&offset_text(t.offset().local_minus_utc(), 2)),
            'X' if n > 3 => return Err(bad(format!("too many pattern letters X ({n}; at most XXX)"))),
            'X' if t.offset().local_minus_utc() == 0 => out.push('Z'),
            'X' => out.push_str(&offset_text(t.offset().local_minus_utc(), n as u8)),
            'z' if t.offset().local_minus_utc() == 0 => out.push_str("UTC"),
            'z' => out.push_str(&format!("GMT{}", offset_text(t.offset().local_minus_utc(), 3))),
            other => return Err(bad(format!("unknown pattern letter '{other}' (quote literal text: 'T')"))),
        }
    }
    Ok(out)
}

/// The evaluation clock as a date-time in `tz`.
fn now_in(ctx: &Ctx<'_>, tz: FixedOffset) -> Result<DateTime<FixedOffset>, String> {
    DateTime::from_timestamp_millis(ctx.now_ms).map(|t| t.with_timezone(&tz)).ok_or_else(|| format!("clock {} ms is out of range", ctx.now_ms))
}

fn timestamp_in<'a>(ctx: &Ctx<'a>, args: &Args<'a>, tz: FixedOffset) -> R<'a> {
    if args.is_empty() {
        return Ok(Value::Int(ctx.now_ms));
    }
    let Some(fmt) = text_arg(args, 0) else {
        return Ok(Value::Null);
    };
    Ok(Value::Str(Cow::Owned(java_format(&fmt, &now_in(ctx, tz)?)?)))
}

pub(crate) fn timestamp<'a>(ctx: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    timestamp_in(ctx, &args, ctx.env.tz)
}

pub(crate) fn timestamp_utc<'a>(ctx: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    timestamp_in(ctx, &args, FixedOffset::east_opt(0).unwrap_or(ctx.env.tz))
}

/// A time unit of the EMQX functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unit {
    Second,
    Milli,
    Micro,
    Nano,
}

/// The unit of argument `i` (millisecond when absent); `None` when the argument is NULL.
fn unit_arg(args: &Args<'_>, i: usize) -> Result<Option<Unit>, String> {
    if args.len() <= i {
        return Ok(Some(Unit::Milli));
    }
    let Some(u) = text_arg(args, i) else {
        return Ok(None);
    };
    Ok(Some(match u.to_ascii_lowercase().as_str() {
        "second" | "seconds" | "s" => Unit::Second,
        "millisecond" | "milliseconds" | "ms" => Unit::Milli,
        "microsecond" | "microseconds" | "us" => Unit::Micro,
        "nanosecond" | "nanoseconds" | "ns" => Unit::Nano,
        _ => return Err(format!("unknown time unit {}; use 'second', 'millisecond', 'microsecond' or 'nanosecond'", quote(arg(args, i)))),
    }))
}

/// A timestamp in `unit` as a UTC date-time.
fn from_unix(ts: i64, unit: Unit) -> Option<DateTime<Utc>> {
    match unit {
        Unit::Second => DateTime::from_timestamp(ts, 0),
        Unit::Milli => DateTime::from_timestamp_millis(ts),
        Unit::Micro => DateTime::from_timestamp_micros(ts),
        Unit::Nano => DateTime::from_timestamp(ts.div_euclid(1_000_000_000), ts.rem_euclid(1_000_000_000) as u32),
    }
}

fn rfc3339(t: &DateTime<Utc>, unit: Unit) -> String {
    let f = match unit {
        Unit::Second => SecondsFormat::Secs,
        Unit::Milli => SecondsFormat::Millis,
        Unit::Micro => SecondsFormat::Micros,
        Unit::Nano => SecondsFormat::Nanos,
    };
    t.to_rfc3339_opts(f, true)
}

/// Milliseconds in `unit`.
fn ms_in(ms: i64, unit: Unit) -> Option<i64> {
    match unit {
        Unit::Second => Some(ms.div_euclid(1000)),
        Unit::Milli => Some(ms),
        Unit::Micro => ms.checked_mul(1000),
        Unit::Nano => ms.checked_mul(1_000_000),
    }
}

pub(crate) fn unix_ts_to_rfc3339<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let (Some(ts), Some(unit)) = (int_arg(&args, 0)?, unit_arg(&args, 1)?) else {
        return Ok(Value::Null);
    };
    let t = from_unix(ts, unit).ok_or_else(|| format!("timestamp {} is out of range", quote(arg(&args, 0))))?;
    Ok(Value::Str(Cow::Owned(rfc3339(&t, unit))))
}

pub(crate) fn rfc3339_to_unix_ts<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let (Some(s), Some(unit)) = (text_arg(&args, 0), unit_arg(&args, 1)?) else {
        return Ok(Value::Null);
    };
    let t = DateTime::parse_from_rfc3339(s.trim()).map_err(|e| format!("{} is not an RFC 3339 date-time ({e})", quote(arg(&args, 0))))?;
    let v = match unit {
        Unit::Second => Some(t.timestamp()),
        Unit::Milli => Some(t.timestamp_millis()),
        Unit::Micro => Some(t.timestamp_micros()),
        Unit::Nano => t.timestamp_nanos_opt(),
    };
    v.map(Value::Int).ok_or_else(|| format!("{} is out of range in nanoseconds", quote(arg(&args, 0))))
}

pub(crate) fn now_timestamp<'a>(ctx: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let Some(unit) = unit_arg(&args, 0)? else {
        return Ok(Value::Null);
    };
    ms_in(ctx.now_ms, unit).map(Value::Int).ok_or_else(|| format!("clock {} ms is out of range in that unit", ctx.now_ms))
}

pub(crate) fn now_rfc3339<'a>(ctx: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let Some(unit) = unit_arg(&args, 0)? else {
        return Ok(Value::Null);
    };
    let t = DateTime::from_timestamp_millis(ctx.now_ms).ok_or_else(|| format!("clock {} ms is out of range", ctx.now_ms))?;
    Ok(Value::Str(Cow::Owned(rfc3339(&t, unit))))
}
