//! Compression (EMQX): `gzip`/`gunzip` (gzip, RFC 1952), `zip`/`unzip` (raw deflate, RFC 1951,
//! Erlang's `zlib:zip`), `zip_compress`/`zip_uncompress` (zlib, RFC 1950). They work on the raw
//! bytes of a bytes value (`*`) and on the UTF-8 of anything else's text, and give bytes.
//! Decompressed output is bounded by [`MAX_VALUE_BYTES`]: a decompression bomb is an error.

use std::borrow::Cow;
use std::io::{Read, Write};

use flate2::Compression;

use super::args::{arg, bytes_input as input, MAX_VALUE_BYTES, R};
use crate::rule::ctx::{Args, Ctx};
use crate::value::Value;

#[derive(Clone, Copy)]
enum Format {
    Gzip,
    Deflate,
    Zlib,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Gzip => "gzip",
            Format::Deflate => "raw deflate",
            Format::Zlib => "zlib",
        }
    }
}

fn compress<'a>(args: &Args<'a>, format: Format) -> R<'a> {
    let Some(data) = input(arg(args, 0)) else {
        return Ok(Value::Null);
    };
    let out = Vec::with_capacity(data.len() / 2 + 64);
    let level = Compression::default();
    let written = match format {
        Format::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out, level);
            e.write_all(&data).and_then(|()| e.finish())
        }
        Format::Deflate => {
            let mut e = flate2::write::DeflateEncoder::new(out, level);
            e.write_all(&data).and_then(|()| e.finish())
        }
        Format::Zlib => {
            let mut e = flate2::write::ZlibEncoder::new(out, level);
            e.write_all(&data).and_then(|()| e.finish())
        }
    };
    written.map(|b| Value::Bytes(Cow::Owned(b))).map_err(|e| format!("{} compression failed: {e}", format.name()))
}

/// Decompresses at most [`MAX_VALUE_BYTES`]; more is an error.
fn decompress<'a>(args: &Args<'a>, format: Format) -> R<'a> {
    let Some(data) = input(arg(args, 0)) else {
        return Ok(Value::Null);
    };
    let data: &[u8] = &data;
    let reader: Box<dyn Read + '_> = match format {
        Format::Gzip => Box::new(flate2::read::GzDecoder::new(data)),
        Format::Deflate => Box::new(flate2::read::DeflateDecoder::new(data)),
        Format::Zlib => Box::new(flate2::read::ZlibDecoder::new(data)),
    };
    let mut out = Vec::with_capacity((data.len() * 4).min(MAX_VALUE_BYTES));
    reader.take(MAX_VALUE_BYTES as u64 + 1).read_to_end(&mut out).map_err(|e| format!("not valid {} data: {e}", format.name()))?;
    if out.len() > MAX_VALUE_BYTES {
        return Err(format!("the decompressed data is larger than the limit of {MAX_VALUE_BYTES} bytes"));
    }
    Ok(Value::Bytes(Cow::Owned(out)))
}

pub(crate) fn gzip<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    compress(&args, Format::Gzip)
}

pub(crate) fn gunzip<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    decompress(&args, Format::Gzip)
}

pub(crate) fn zip<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    compress(&args, Format::Deflate)
}

pub(crate) fn unzip<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    decompress(&args, Format::Deflate)
}

pub(crate) fn zip_compress<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    compress(&args, Format::Zlib)
}

pub(crate) fn zip_uncompress<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    decompress(&args, Format::Zlib)
}
