//! Digests and encodings. They work on the raw bytes of a bytes value (`*`) and on the UTF-8 of
//! anything else's text.

use std::borrow::Cow;

use super::args::{arg, bytes_input as input, text_arg, R};
use crate::rule::ctx::{Args, Ctx};
use crate::value::{base64_encode, quote, Value};

fn digest<D: md5::Digest>(data: &[u8]) -> String {
    hex::encode(D::digest(data))
}

/// The lowercase hex digest of `data` with `algo` (case-insensitive; `-` optional).
pub(crate) fn hex_digest(algo: &str, data: &[u8]) -> Option<String> {
    let norm: String = algo.chars().filter(|c| *c != '-' && *c != '_').collect::<String>().to_ascii_uppercase();
    Some(match norm.as_str() {
        "MD2" => digest::<md2::Md2>(data),
        "MD5" => digest::<md5::Md5>(data),
        "SHA1" => digest::<sha1::Sha1>(data),
        "SHA256" => digest::<sha2::Sha256>(data),
        "SHA384" => digest::<sha2::Sha384>(data),
        "SHA512" => digest::<sha2::Sha512>(data),
        _ => return None,
    })
}

pub(crate) fn crypto<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let Some(algo) = text_arg(&args, 1) else {
        return Ok(Value::Null);
    };
    let Some(data) = input(arg(&args, 0)) else {
        return Ok(Value::Null);
    };
    hex_digest(&algo, &data).map(|h| Value::Str(Cow::Owned(h))).ok_or_else(|| format!("unknown algorithm {}; use MD2, MD5, SHA1, SHA-256, SHA-384 or SHA-512", quote(arg(&args, 1))))
}

fn fixed<'a>(args: &Args<'a>, algo: &str) -> R<'a> {
    Ok(input(arg(args, 0)).and_then(|d| hex_digest(algo, &d)).map_or(Value::Null, |h| Value::Str(Cow::Owned(h))))
}

pub(crate) fn md5<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    fixed(&args, "MD5")
}

pub(crate) fn sha1<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    fixed(&args, "SHA1")
}

pub(crate) fn sha256<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    fixed(&args, "SHA256")
}

pub(crate) fn to_base64<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(input(arg(&args, 0)).map_or(Value::Null, |d| Value::Str(Cow::Owned(base64_encode(&d)))))
}

pub(crate) fn to_hex<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(input(arg(&args, 0)).map_or(Value::Null, |d| Value::Str(Cow::Owned(hex::encode(d)))))
}
