//! What the functions share: argument access and coercion, and the size limit of built values.

use std::borrow::Cow;

use crate::rule::ctx::Args;
use crate::value::{quote, Num, Value};

/// The largest string or byte value a function builds (padding, replacing, formatting,
/// decompressing): 1 MiB, the engine's default `max_payload_bytes`. A result that would be larger
/// is an evaluation error, so no argument can make a function allocate without bound.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// An error for a result of `len` bytes when it is above [`MAX_VALUE_BYTES`].
pub(super) fn check_size(len: usize) -> Result<(), String> {
    if len > MAX_VALUE_BYTES {
        Err(format!("the result would be {len} bytes, above the limit of {MAX_VALUE_BYTES}"))
    } else {
        Ok(())
    }
}

pub(super) type R<'a> = Result<Value<'a>, String>;

static NULL: Value<'static> = Value::Null;

/// Argument `i` (NULL when absent, so optional arguments need no bounds checks).
pub(super) fn arg<'v, 'a>(args: &'v Args<'a>, i: usize) -> &'v Value<'a> {
    args.get(i).unwrap_or(&NULL)
}

pub(super) fn wrong<T>(args: &Args<'_>, i: usize, what: &str) -> Result<T, String> {
    let v = arg(args, i);
    Err(format!("argument {} must be {what}, got {} {}", i + 1, v.type_name(), quote(v)))
}

/// Argument `i` as a number, accepting numeric strings (`None` for NULL).
pub(super) fn num_arg(args: &Args<'_>, i: usize) -> Result<Option<Num>, String> {
    match arg(args, i) {
        Value::Null => Ok(None),
        v => match v.as_number() {
            Some(n) => Ok(Some(n)),
            None => wrong(args, i, "a number"),
        },
    }
}

/// Argument `i` as an `f64` (`None` for NULL).
pub(super) fn f64_arg(args: &Args<'_>, i: usize) -> Result<Option<f64>, String> {
    Ok(num_arg(args, i)?.map(Num::to_f64))
}

/// Argument `i` as an integer: integers, integral floats and integer strings (`None` for NULL).
pub(super) fn int_arg(args: &Args<'_>, i: usize) -> Result<Option<i64>, String> {
    match arg(args, i) {
        Value::Null => Ok(None),
        v => match v.as_i64() {
            Some(n) => Ok(Some(n)),
            None => wrong(args, i, "an integer"),
        },
    }
}

/// The bytes a function works on (digests, encodings, compression): raw bytes, or the text's
/// UTF-8, or any other value's JSON text. NULL gives `None`.
pub(super) fn bytes_input<'v>(v: &'v Value<'_>) -> Option<Cow<'v, [u8]>> {
    match v {
        Value::Null => None,
        Value::Bytes(b) => Some(Cow::Borrowed(b.as_ref())),
        Value::Str(s) => Some(Cow::Borrowed(s.as_bytes())),
        other => Some(Cow::Owned(other.to_string().into_bytes())),
    }
}

/// Argument `i` as text (`None` for NULL): strings as they are, other values printed.
pub(super) fn text_arg<'v>(args: &'v Args<'_>, i: usize) -> Option<Cow<'v, str>> {
    arg(args, i).as_text()
}

/// Argument `i` as an exact integer (`Int`/`UInt`, or an integer string); `None` for NULL.
/// Floats are an error, even integral ones.
pub(super) fn exact_int_arg(args: &Args<'_>, i: usize) -> Result<Option<i128>, String> {
    match num_arg(args, i) {
        Ok(None) => Ok(None),
        Ok(Some(n)) => n.to_i128().map(Some).map_or_else(|| wrong(args, i, "an integer"), Ok),
        Err(_) => wrong(args, i, "an integer"),
    }
}
