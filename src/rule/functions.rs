//! The function library (Alibaba IoT data-forwarding functions, plus what EMQX users expect).
//! Each entry of [`FUNCTIONS`] carries its signature, doc and examples; the registry binds calls
//! through this table. The implementations live in the submodules, by category.
//!
//! Conventions: a NULL argument gives NULL unless the doc says otherwise; a wrong argument is an
//! error naming the value; nothing panics on message data.

use std::borrow::Cow;

use crate::rule::expr::Args;
use crate::rule::registry::{Example, FunctionDef};
use crate::value::{Num, Value};

use crate::rule::expr::quote;
pub use time::java_format;

mod bits;
mod compress;
mod hash;
mod json;
mod math;
mod message;
mod string;
mod time;
mod types;

/// The largest string or byte value a function builds (padding, replacing, formatting,
/// decompressing): 1 MiB, the engine's default `max_payload_bytes`. A result that would be larger
/// is an evaluation error, so no argument can make a function allocate without bound.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// An error for a result of `len` bytes when it is above [`MAX_VALUE_BYTES`].
fn check_size(len: usize) -> Result<(), String> {
    if len > MAX_VALUE_BYTES {
        Err(format!("the result would be {len} bytes, above the limit of {MAX_VALUE_BYTES}"))
    } else {
        Ok(())
    }
}

type R<'a> = Result<Value<'a>, String>;

static NULL: Value<'static> = Value::Null;

/// Argument `i` (NULL when absent, so optional arguments need no bounds checks).
fn arg<'v, 'a>(args: &'v Args<'a>, i: usize) -> &'v Value<'a> {
    args.get(i).unwrap_or(&NULL)
}

fn wrong<T>(args: &Args<'_>, i: usize, what: &str) -> Result<T, String> {
    let v = arg(args, i);
    Err(format!("argument {} must be {what}, got {} {}", i + 1, v.type_name(), quote(v)))
}

/// Argument `i` as a number, accepting numeric strings (`None` for NULL).
fn num_arg(args: &Args<'_>, i: usize) -> Result<Option<Num>, String> {
    match arg(args, i) {
        Value::Null => Ok(None),
        v => match v.as_number() {
            Some(n) => Ok(Some(n)),
            None => wrong(args, i, "a number"),
        },
    }
}

/// Argument `i` as an `f64` (`None` for NULL).
fn f64_arg(args: &Args<'_>, i: usize) -> Result<Option<f64>, String> {
    Ok(num_arg(args, i)?.map(Num::to_f64))
}

/// Argument `i` as an integer: integers, integral floats and integer strings (`None` for NULL).
fn int_arg(args: &Args<'_>, i: usize) -> Result<Option<i64>, String> {
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
fn bytes_input<'v>(v: &'v Value<'_>) -> Option<Cow<'v, [u8]>> {
    match v {
        Value::Null => None,
        Value::Bytes(b) => Some(Cow::Borrowed(b.as_ref())),
        Value::Str(s) => Some(Cow::Borrowed(s.as_bytes())),
        other => Some(Cow::Owned(other.to_string().into_bytes())),
    }
}

/// Argument `i` as text (`None` for NULL): strings as they are, other values printed.
fn text_arg<'v>(args: &'v Args<'_>, i: usize) -> Option<Cow<'v, str>> {
    arg(args, i).as_text()
}

/// Argument `i` as an exact integer (`Int`/`UInt`, or an integer string); `None` for NULL.
/// Floats are an error, even integral ones.
fn exact_int_arg(args: &Args<'_>, i: usize) -> Result<Option<i128>, String> {
    match num_arg(args, i) {
        Ok(None) => Ok(None),
        Ok(Some(n)) => n.to_i128().map(Some).map_or_else(|| wrong(args, i, "an integer"), Ok),
        Err(_) => wrong(args, i, "an integer"),
    }
}

/// For variadic functions.
const MANY: usize = usize::MAX;

/// `def!(category, name, signature, doc, min..=max, imp, [expr => result, …] [, field: value…])`
macro_rules! def {
    ($cat:literal, $name:literal, $sig:literal, $doc:literal, $min:literal ..= $max:expr, $imp:expr,
     [$($e:literal => $r:literal),+ $(,)?] $(,)?) => {
        FunctionDef {
            name: $name,
            category: $cat,
            signature: $sig,
            doc: $doc,
            min_args: $min,
            max_args: $max,
            reads_record: false,
            flattens: false,
            examples: &[$(Example { expr: $e, result: $r }),+],
            imp: $imp,
        }
    };
    ($cat:literal, $name:literal, $sig:literal, $doc:literal, $min:literal ..= $max:expr, $imp:expr,
     [$($e:literal => $r:literal),+ $(,)?], $($k:ident: $v:expr),+ $(,)?) => {
        FunctionDef { $($k: $v,)+ ..def!($cat, $name, $sig, $doc, $min..=$max, $imp, [$($e => $r),+]) }
    };
}

/// Every function, in reference order.
pub static FUNCTIONS: &[FunctionDef] = &[
    // ---------------------------------------------------------------- math
    def!("math", "abs", "abs(x: number) -> number",
        "Absolute value. Integers stay integers. NULL gives NULL; a non-number is an error.",
        1..=1, math::abs, ["abs(-3)" => "3", "abs(-1.5)" => "1.5", "abs('-2')" => "2"]),
    def!("math", "asin", "asin(x: number) -> float",
        "Arc sine in radians. Outside [-1, 1] it is NaN (written as null; see nanvl). NULL gives NULL.",
        1..=1, math::asin, ["asin(1)" => "1.5707963267948966", "asin(0)" => "0.0"]),
    def!("math", "cos", "cos(x: number) -> float",
        "Cosine of an angle in radians. NULL gives NULL.",
        1..=1, math::cos, ["cos(0)" => "1.0"]),
    def!("math", "cosh", "cosh(x: number) -> float",
        "Hyperbolic cosine. NULL gives NULL.",
        1..=1, math::cosh, ["cosh(0)" => "1.0"]),
    def!("math", "sin", "sin(x: number) -> float",
        "Sine of an angle in radians. NULL gives NULL.",
        1..=1, math::sin, ["sin(0)" => "0.0"]),
    def!("math", "sinh", "sinh(x: number) -> float",
        "Hyperbolic sine. NULL gives NULL.",
        1..=1, math::sinh, ["sinh(0)" => "0.0"]),
    def!("math", "tan", "tan(x: number) -> float",
        "Tangent of an angle in radians. NULL gives NULL.",
        1..=1, math::tan, ["tan(0)" => "0.0"]),
    def!("math", "tanh", "tanh(x: number) -> float",
        "Hyperbolic tangent. NULL gives NULL.",
        1..=1, math::tanh, ["tanh(0)" => "0.0"]),
    def!("math", "exp", "exp(x: number) -> float",
        "e raised to the power x. NULL gives NULL.",
        1..=1, math::exp, ["exp(0)" => "1.0", "exp(1)" => "2.718281828459045"]),
    def!("math", "log", "log(x: number[, base: number]) -> float",
        "Natural logarithm of x, or its logarithm in `base`. Zero gives -Infinity and negatives NaN (both written as null). NULL gives NULL.",
        1..=2, math::log, ["log(1)" => "0.0", "log(100, 10)" => "2.0"]),
    def!("math", "log10", "log10(x: number) -> float",
        "Base-10 logarithm. NULL gives NULL.",
        1..=1, math::log10, ["log10(1000)" => "3.0"]),
    def!("math", "sqrt", "sqrt(x: number) -> float",
        "Square root; negatives give NaN (written as null; see nanvl). NULL gives NULL.",
        1..=1, math::sqrt, ["sqrt(16)" => "4.0"]),
    def!("math", "floor", "floor(x: number) -> int",
        "Largest integer not above x: an int when it fits in 64 bits (i64 or u64), else a float. Integers are returned unchanged. NULL gives NULL.",
        1..=1, math::floor, ["floor(1.5)" => "1", "floor(-1.5)" => "-2", "floor(7)" => "7", "floor(1e19)" => "10000000000000000000"]),
    def!("math", "ceil", "ceil(x: number) -> int",
        "Smallest integer not below x: an int when it fits in 64 bits (i64 or u64), else a float. Integers are returned unchanged. NULL gives NULL.",
        1..=1, math::ceil, ["ceil(1.2)" => "2", "ceil(-1.2)" => "-1", "ceil(1.5e19)" => "15000000000000000000"]),
    def!("math", "round", "round(x: number[, digits: int]) -> number",
        "Rounds half away from zero: to an int (i64 or u64, a float beyond) without `digits`, else to that many decimals as written (negative: tens, hundreds…), floats staying floats. NULL gives NULL.",
        1..=2, math::round, ["round(2.5)" => "3", "round(-2.5)" => "-3", "round(2.675, 2)" => "2.68", "round(1250, -2)" => "1300", "round(1e19)" => "10000000000000000000"]),
    def!("math", "mod", "mod(a: number, b: number) -> number",
        "Remainder of a / b with the sign of a (the `%` operator); integers are exact over the whole i64 and u64 range. b = 0 is an error; NULL gives NULL.",
        2..=2, math::modulo, ["mod(7, 3)" => "1", "mod(-7, 3)" => "-1", "mod(7.5, 2)" => "1.5", "mod(18446744073709551615, 10)" => "5"]),
    def!("math", "power", "power(x: number, y: number) -> number",
        "x raised to the power y: an int when both are integers, y >= 0 and the result fits, else a float. NULL gives NULL.",
        2..=2, math::power, ["power(2, 10)" => "1024", "power(2, -1)" => "0.5", "power(9, 0.5)" => "3.0"]),
    def!("math", "rand", "rand() -> float",
        "A random float in [0, 1), new for each evaluation.",
        0..=0, math::rand, ["rand()" => "type:float"]),
    def!("math", "nanvl", "nanvl(value: any, default: any) -> any",
        "`default` when `value` is NULL or NaN (as in Alibaba's nanvl, for a missing property), else `value` unchanged: infinities are kept (they are written as null).",
        2..=2, math::nanvl, ["nanvl(sqrt(-1), 0)" => "0", "nanvl(NULL, 'n/a')" => "\"n/a\"", "nanvl(1.5, 0)" => "1.5"]),
    // ---------------------------------------------------------------- string
    def!("string", "concat", "concat(s1: any, s2: any, …) -> string",
        "Joins the text of its arguments; NULL arguments are skipped.",
        1..=MANY, string::concat, ["concat('dev', '-', 1)" => "\"dev-1\"", "concat(deviceType, NULL, '!')" => "\"Ammeter!\""]),
    def!("string", "lower", "lower(s: string) -> string",
        "Lower case. NULL gives NULL.",
        1..=1, string::lower, ["lower('AbC')" => "\"abc\""]),
    def!("string", "upper", "upper(s: string) -> string",
        "Upper case. NULL gives NULL.",
        1..=1, string::upper, ["upper('AbC')" => "\"ABC\""]),
    def!("string", "trim", "trim(s: string) -> string",
        "Removes leading and trailing white space. NULL gives NULL.",
        1..=1, string::trim, ["trim('  a b  ')" => "\"a b\""]),
    def!("string", "ltrim", "ltrim(s: string) -> string",
        "Removes leading white space. NULL gives NULL.",
        1..=1, string::ltrim, ["ltrim('  a b  ')" => "\"a b  \""]),
    def!("string", "rtrim", "rtrim(s: string) -> string",
        "Removes trailing white space. NULL gives NULL.",
        1..=1, string::rtrim, ["rtrim('  a b  ')" => "\"  a b\""]),
    def!("string", "startswith", "startswith(s: string, prefix: string) -> bool",
        "Whether s starts with prefix. NULL gives NULL.",
        2..=2, string::startswith, ["startswith(topic(), '/sys/')" => "true"]),
    def!("string", "endswith", "endswith(input: string, suffix: string) -> bool",
        "Whether input ends with suffix. NULL gives NULL.",
        2..=2, string::endswith, ["endswith(topic(), '/post')" => "true", "endswith('abc', 'x')" => "false"]),
    def!("string", "replace", "replace(src: string, target: string, replacement: string) -> string",
        "Replaces every occurrence of target in src. NULL gives NULL.",
        3..=3, string::replace, ["replace('a-b-c', '-', '_')" => "\"a_b_c\""]),
    def!("string", "substring", "substring(s: string, start: int[, end: int]) -> string",
    "Characters [start, end) of s, counted from 0: a negative start counts as 0, an end past the length means the end, and end <= start gives ''. NULL gives NULL; a non-integer position is an error.",
    2..=3, string::substring, [
        "substring('012345', 2)" => "\"2345\"",
        "substring('012345', 1, 3)" => "\"12\"",
        "substring('012345', -1)" => "\"012345\"",
        "substring('012345', 3, 1)" => "\"\"",
        "substring('012345', 4, 99)" => "\"45\"",
    ]),
    def!("string", "length", "length(x: string/array/object) -> int",
        "Characters of a string, elements of an array, keys of an object (other values: characters of their text). NULL gives NULL.",
        1..=1, string::length, ["length('héllo')" => "5", "length(items)" => "2"]),
    def!("string", "split", "split(s: string, sep: string) -> array",
        "Splits s at every sep into an array of strings, dropping empty parts (as EMQX does). An empty sep is an error; NULL gives NULL.",
        2..=2, string::split, ["split('a/b//c', '/')" => "[\"a\",\"b\",\"c\"]", "split(topic(), '/')" => "[\"sys\",\"1234556554\",\"deviceName1234\",\"thing\",\"event\",\"property\",\"post\"]"]),
    def!("string", "regex_match", "regex_match(s: string, re: string) -> bool",
        "Whether the regular expression matches somewhere in s (anchor it with ^…$ for a whole match). An invalid expression is an error; NULL gives NULL.",
        2..=2, string::regex_match, ["regex_match('dev-12', '^dev-[0-9]+$')" => "true", "regex_match(deviceType, 'meter')" => "true"]),
    def!("string", "regex_replace", "regex_replace(s: string, re: string, replacement: string) -> string",
        "Replaces every match of the regular expression; $1 or ${name} in replacement insert groups. An invalid expression is an error; NULL gives NULL.",
        3..=3, string::regex_replace, ["regex_replace('a1b22', '[0-9]+', '#')" => "\"a#b#\"", "regex_replace('2023-11-14', '(\\d+)-(\\d+)-(\\d+)', '$3/$2/$1')" => "\"14/11/2023\""]),
    def!("string", "pad", "pad(s: string, len: int[, side: string[, char: string]]) -> string",
    "s padded with char (one character; a space by default) to len characters, at the end ('trailing' or 'right', the default), the start ('leading' or 'left') or both ends ('both'; the odd one at the end), as EMQX does. A string of len characters or more is unchanged. A result above 1 MiB, an unknown side or a char that is not one character is an error; NULL gives NULL.",
    2..=4, string::pad, [
        "pad('ab', 5)" => "\"ab   \"",
        "pad('7', 3, 'leading', '0')" => "\"007\"",
        "pad('ab', 5, 'both', '*')" => "\"*ab**\"",
        "pad('abcdef', 3)" => "\"abcdef\"",
    ]),
    def!("string", "sprintf", "sprintf(format: string, arg: any, …) -> string",
    "Formats the arguments with Erlang io_lib:format control sequences, as EMQX's sprintf: ~s text, ~p or ~w the value as JSON text, ~f ~e ~g a float (precision P: ~.2f), ~B / ~b an integer in base P (~.16B), ~c a character code, ~i skips an argument, ~n a newline, ~~ a tilde; a field width F right-justifies (negative F: left), ~F.P.cC pads with c, and * takes F or P from the arguments. Too few or too many arguments, an unknown sequence or a result above 1 MiB is an error; a NULL format gives NULL.",
    1..=MANY, string::sprintf, [
        "sprintf('hello, ~s!', 'steve')" => "\"hello, steve!\"",
        "sprintf('~s: ~p', deviceType, items.Power.value)" => "\"Ammeter: \\\"on\\\"\"",
        "sprintf('~.2f|~5..0B|~.16B|~-4s|', 3.14159, 42, 255, 'ab')" => "\"3.14|00042|FF|ab  |\"",
    ]),
    def!("string", "newuuid", "newuuid() -> string",
        "A random UUID (version 4), new for each evaluation.",
        0..=0, string::newuuid, ["newuuid()" => "type:string", "length(newuuid())" => "36"]),
    // ---------------------------------------------------------------- bit
    def!("bit", "bitand", "bitand(a: int, b: int) -> int",
        "Bitwise AND, exact on i64 and u64 (negative numbers in two's complement). A float or a result outside 64 bits is an error; NULL gives NULL.",
        2..=2, bits::bitand, ["bitand(12, 10)" => "8", "bitand(-1, 18446744073709551615)" => "18446744073709551615"]),
    def!("bit", "bitor", "bitor(a: int, b: int) -> int",
        "Bitwise OR, exact on i64 and u64. A float or a result outside 64 bits is an error; NULL gives NULL.",
        2..=2, bits::bitor, ["bitor(12, 10)" => "14"]),
    def!("bit", "bitxor", "bitxor(a: int, b: int) -> int",
        "Bitwise exclusive OR, exact on i64 and u64. A float or a result outside 64 bits is an error; NULL gives NULL.",
        2..=2, bits::bitxor, ["bitxor(12, 10)" => "6"]),
    def!("bit", "bitnot", "bitnot(x: int) -> int",
        "Bitwise NOT in two's complement (bitnot(x) = -x - 1, as in EMQX). A float, or an x above i64::MAX (its NOT is below i64::MIN), is an error; NULL gives NULL.",
        1..=1, bits::bitnot, ["bitnot(0)" => "-1", "bitnot(-9223372036854775808)" => "9223372036854775807"]),
    def!("bit", "bitsl", "bitsl(x: int, n: int) -> int",
        "x shifted left by n bits (x × 2^n), exact. A negative n, a float, or a result outside 64 bits (i64 or u64) is an error; NULL gives NULL.",
        2..=2, bits::bitsl, ["bitsl(1, 4)" => "16", "bitsl(1, 63)" => "9223372036854775808"]),
    def!("bit", "bitsr", "bitsr(x: int, n: int) -> int",
        "x shifted right by n bits, arithmetically (a negative x stays negative: bitsr(-8, 1) = -4). A negative n or a float is an error; NULL gives NULL.",
        2..=2, bits::bitsr, ["bitsr(256, 4)" => "16", "bitsr(-8, 1)" => "-4", "bitsr(-1, 99)" => "-1"]),
    // ---------------------------------------------------------------- hash
    def!("hash", "crypto", "crypto(x: any, algorithm: string) -> string",
    "Lowercase hex digest of x's UTF-8 text (raw bytes for `*`) with MD2, MD5, SHA1, SHA-256, SHA-384 or SHA-512 (any case). An unknown algorithm is an error; NULL gives NULL.",
    2..=2, hash::crypto, [
        "crypto('abc', 'MD5')" => "\"900150983cd24fb0d6963f7d28e17f72\"",
        "crypto('abc', 'sha-256')" => "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"",
    ]),
    def!("hash", "md5", "md5(x: any) -> string",
        "Lowercase hex MD5 of x's UTF-8 text (raw bytes for `*`). NULL gives NULL.",
        1..=1, hash::md5, ["md5('abc')" => "\"900150983cd24fb0d6963f7d28e17f72\""]),
    def!("hash", "sha1", "sha1(x: any) -> string",
        "Lowercase hex SHA-1 of x's UTF-8 text (raw bytes for `*`). NULL gives NULL.",
        1..=1, hash::sha1, ["sha1('abc')" => "\"a9993e364706816aba3e25717850c26c9cd0d89d\""]),
    def!("hash", "sha256", "sha256(x: any) -> string",
        "Lowercase hex SHA-256 of x's UTF-8 text (raw bytes for `*`). NULL gives NULL.",
        1..=1, hash::sha256, ["sha256('abc')" => "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\""]),
    def!("hash", "to_base64", "to_base64(x: any) -> string",
        "Standard base64 (padded) of x's UTF-8 text, or of the raw bytes for `*`. NULL gives NULL.",
        1..=1, hash::to_base64, ["to_base64('hello')" => "\"aGVsbG8=\""]),
    def!("hash", "to_hex", "to_hex(x: any) -> string",
        "Lowercase hex of x's UTF-8 text, or of the raw bytes for `*`. NULL gives NULL.",
        1..=1, hash::to_hex, ["to_hex('hi')" => "\"6869\""]),
    // ---------------------------------------------------------------- compress
    def!("compress", "gzip", "gzip(x: any) -> bytes",
        "gzip (RFC 1952) of x's raw bytes (`*`) or UTF-8 text. NULL gives NULL.",
        1..=1, compress::gzip, ["json_decode(gunzip(gzip('{\"a\":1}')))" => "{\"a\":1}", "typeof(gzip('a'))" => "\"bytes\""]),
    def!("compress", "gunzip", "gunzip(x: bytes) -> bytes",
        "Decompresses gzip data (`gunzip(*)` for a gzip payload; json_decode() reads the result). Invalid data, or more than 1 MiB of output (a decompression bomb), is an error; NULL gives NULL.",
        1..=1, compress::gunzip, ["json_decode(gunzip(gzip('[1,2]')))" => "[1,2]"]),
    def!("compress", "zip", "zip(x: any) -> bytes",
        "Raw deflate (RFC 1951, no header or checksum: Erlang's zlib:zip, as in EMQX) of x's raw bytes or UTF-8 text. NULL gives NULL.",
        1..=1, compress::zip, ["to_hex(zip('a'))" => "\"4b0400\""]),
    def!("compress", "unzip", "unzip(x: bytes) -> bytes",
        "Decompresses raw deflate data. Invalid data, or more than 1 MiB of output, is an error; NULL gives NULL.",
        1..=1, compress::unzip, ["json_decode(unzip(zip('[1,2]')))" => "[1,2]"]),
    def!("compress", "zip_compress", "zip_compress(x: any) -> bytes",
        "zlib (RFC 1950: deflate with a header and an Adler-32 checksum) of x's raw bytes or UTF-8 text. NULL gives NULL.",
        1..=1, compress::zip_compress, ["to_hex(zip_compress('a'))" => "\"789c4b040000620062\""]),
    def!("compress", "zip_uncompress", "zip_uncompress(x: bytes) -> bytes",
        "Decompresses zlib data. Invalid data, or more than 1 MiB of output, is an error; NULL gives NULL.",
        1..=1, compress::zip_uncompress, ["json_decode(zip_uncompress(zip_compress('[1,2]')))" => "[1,2]"]),
    // ---------------------------------------------------------------- time
    def!("time", "timestamp", "timestamp([format: string]) -> int or string",
    "The evaluation time: ms since the epoch, or formatted in the configured time zone with a Java SimpleDateFormat pattern (yyyy MM dd HH hh mm ss SSS a E Z X, 'quoted text'). An unknown pattern letter is an error; a NULL format gives NULL.",
    0..=1, time::timestamp, [
        "timestamp()" => "1700000000000",
        "timestamp('yyyy-MM-dd HH:mm:ss')" => "\"2023-11-14 22:13:20\"",
        "timestamp('yyyy-MM-dd''T''HH:mm:ss.SSSXXX')" => "\"2023-11-14T22:13:20.000Z\"",
    ]),
    def!("time", "timestamp_utc", "timestamp_utc([format: string]) -> int or string",
    "Like timestamp(), but a format is always applied in UTC.",
    0..=1, time::timestamp_utc, [
        "timestamp_utc()" => "1700000000000",
        "timestamp_utc('yyyy-MM-dd''T''HH:mm:ss.SSSZ')" => "\"2023-11-14T22:13:20.000+0000\"",
        "timestamp_utc('EEE d MMM yy h:mm a')" => "\"Tue 14 Nov 23 10:13 PM\"",
    ]),
    def!("time", "now_timestamp", "now_timestamp([unit: string]) -> int",
        "The evaluation time since the epoch in unit 'second', 'millisecond' (default), 'microsecond' or 'nanosecond'. An unknown unit is an error.",
        0..=1, time::now_timestamp, ["now_timestamp()" => "1700000000000", "now_timestamp('second')" => "1700000000"]),
    def!("time", "now_rfc3339", "now_rfc3339([unit: string]) -> string",
        "The evaluation time as RFC 3339 in UTC, with the precision of unit 'second', 'millisecond' (default), 'microsecond' or 'nanosecond'.",
        0..=1, time::now_rfc3339, ["now_rfc3339()" => "\"2023-11-14T22:13:20.000Z\"", "now_rfc3339('second')" => "\"2023-11-14T22:13:20Z\""]),
    def!("time", "unix_ts_to_rfc3339", "unix_ts_to_rfc3339(ts: int[, unit: string]) -> string",
    "An epoch timestamp in unit 'second', 'millisecond' (default), 'microsecond' or 'nanosecond' as RFC 3339 in UTC. A non-integer or out-of-range ts is an error; NULL gives NULL.",
    1..=2, time::unix_ts_to_rfc3339, [
        "unix_ts_to_rfc3339(1700000000000)" => "\"2023-11-14T22:13:20.000Z\"",
        "unix_ts_to_rfc3339(1700000000, 'second')" => "\"2023-11-14T22:13:20Z\"",
        "unix_ts_to_rfc3339(gmtCreate)" => "\"2017-11-16T02:34:30.074Z\"",
    ]),
    def!("time", "rfc3339_to_unix_ts", "rfc3339_to_unix_ts(s: string[, unit: string]) -> int",
    "An RFC 3339 date-time as an epoch timestamp in unit 'second', 'millisecond' (default), 'microsecond' or 'nanosecond'. Invalid text is an error; NULL gives NULL.",
    1..=2, time::rfc3339_to_unix_ts, [
        "rfc3339_to_unix_ts('2023-11-14T22:13:20Z')" => "1700000000000",
        "rfc3339_to_unix_ts('2023-11-15T06:13:20.5+08:00', 'second')" => "1700000000",
    ]),
    // ---------------------------------------------------------------- json
    def!("json", "coalesce", "coalesce(a: any, b: any, …) -> any",
        "The first argument that is not NULL (NULL when all are), unchanged.",
        1..=MANY, json::coalesce, ["coalesce(NULL, items.Power.value, 'off')" => "\"on\"", "coalesce(items.Missing.value, 0)" => "0"]),
    def!("json", "json_encode", "json_encode(x: any) -> string",
        "x as JSON text (NULL gives 'null', bytes a base64 string).",
        1..=1, json::json_encode, ["json_encode(items.Position.value)" => "\"{\\\"latitude\\\":39.9,\\\"longitude\\\":116.38}\"", "json_encode('a')" => "\"\\\"a\\\"\""]),
    def!("json", "json_decode", "json_decode(s: string) -> any",
        "Parses JSON text into a value. Invalid JSON is an error; NULL gives NULL.",
        1..=1, json::json_decode, ["json_decode('{\"a\":[1,2]}')" => "{\"a\":[1,2]}", "json_decode('18446744073709551615')" => "18446744073709551615"]),
    def!("json", "nth", "nth(n: int, array: array) -> any",
        "Element n of the array, counted from 1 (as in EMQX); NULL when out of range or either is NULL. A non-array is an error.",
        2..=2, json::nth, ["nth(2, json_decode('[10,20,30]'))" => "20", "nth(4, json_decode('[10,20,30]'))" => "null"]),
    def!("json", "map_get", "map_get(key: string, map: object[, default: any]) -> any",
        "The value under key (a plain key, not a path), or default (NULL when not given) when the key or the map is missing. A non-object map is an error.",
        2..=3, json::map_get, ["map_get('latitude', items.Position.value)" => "39.9", "map_get('height', items.Position.value, 0)" => "0"]),
    // ---------------------------------------------------------------- type
    def!("type", "typeof", "typeof(x: any) -> string",
        "The type of x: null, bool, int, float, string, bytes, array or object.",
        1..=1, types::type_of, ["typeof(items)" => "\"object\"", "typeof(gmtCreate)" => "\"int\"", "typeof(NULL)" => "\"null\""]),
    def!("type", "is_null", "is_null(x: any) -> bool",
        "Whether x is NULL (or missing).",
        1..=1, types::is_null, ["is_null(items.Missing)" => "true", "is_null(deviceType)" => "false"]),
    def!("type", "is_not_null", "is_not_null(x: any) -> bool",
        "Whether x is not NULL.",
        1..=1, types::is_not_null, ["is_not_null(deviceType)" => "true"]),
    def!("type", "is_str", "is_str(x: any) -> bool",
        "Whether x is a string (false for NULL).",
        1..=1, types::is_str, ["is_str(deviceType)" => "true", "is_str(1)" => "false"]),
    def!("type", "is_num", "is_num(x: any) -> bool",
        "Whether x is a number, int or float (a numeric string is not; false for NULL).",
        1..=1, types::is_num, ["is_num(1.5)" => "true", "is_num('1')" => "false"]),
    def!("type", "is_int", "is_int(x: any) -> bool",
        "Whether x is an integer (false for NULL).",
        1..=1, types::is_int, ["is_int(gmtCreate)" => "true", "is_int(1.0)" => "false"]),
    def!("type", "is_float", "is_float(x: any) -> bool",
        "Whether x is a float (false for NULL).",
        1..=1, types::is_float, ["is_float(items.Position.value.latitude)" => "true", "is_float(1)" => "false"]),
    def!("type", "is_bool", "is_bool(x: any) -> bool",
        "Whether x is a boolean (false for NULL).",
        1..=1, types::is_bool, ["is_bool(true)" => "true", "is_bool('true')" => "false"]),
    def!("type", "is_map", "is_map(x: any) -> bool",
        "Whether x is a JSON object (false for NULL).",
        1..=1, types::is_map, ["is_map(items)" => "true", "is_map(deviceType)" => "false"]),
    def!("type", "is_array", "is_array(x: any) -> bool",
        "Whether x is a JSON array (false for NULL).",
        1..=1, types::is_array, ["is_array(json_decode('[1]'))" => "true", "is_array(items)" => "false"]),
    def!("type", "int", "int(x: any) -> int",
        "x as an integer (also CAST(x AS int)): floats truncate toward zero, numeric strings parse, booleans give 1/0. Anything else, or out of range, is an error; NULL gives NULL.",
        1..=1, types::int, ["int('42')" => "42", "int(-3.9)" => "-3", "CAST('12.7' AS int)" => "12", "int(true)" => "1"]),
    def!("type", "float", "float(x: any) -> float",
        "x as a float (also CAST(x AS float)): numbers, numeric strings, booleans as 1.0/0.0. Anything else is an error; NULL gives NULL.",
        1..=1, types::float, ["float('1.5')" => "1.5", "float(2)" => "2.0", "CAST(gmtCreate AS double)" => "1510799670074.0"]),
    def!("type", "string", "string(x: any) -> string",
        "x as text (also CAST(x AS string)): strings as they are, other values as JSON text. NULL gives NULL.",
        1..=1, types::string, ["string(12)" => "\"12\"", "string(items.Position.value)" => "\"{\\\"latitude\\\":39.9,\\\"longitude\\\":116.38}\""]),
    def!("type", "bool", "bool(x: any) -> bool",
        "x as a boolean (also CAST(x AS bool)): booleans, 'true'/'false' in any case, numbers (non-zero is true). Anything else is an error; NULL gives NULL.",
        1..=1, types::bool, ["bool('TRUE')" => "true", "bool(0)" => "false", "CAST(1 AS boolean)" => "true"]),
    // ---------------------------------------------------------------- message
    def!("message", "topic", "topic([n: int]) -> string",
    "The message topic, or its n-th level counted from 1 after one leading '/' (topic(1) of '/sys/pk/dev/…' is 'sys'). Out of range gives NULL.",
    0..=1, message::topic, [
        "topic()" => "\"/sys/1234556554/deviceName1234/thing/event/property/post\"",
        "topic(2)" => "\"1234556554\"",
        "topic(1)" => "\"sys\"",
        "topic(9)" => "null",
    ]),
    def!("message", "topicKind", "topicKind() -> string",
        "The recognised kind of the topic: property_post, event_post, lifecycle, status, integration_event, … or custom.",
        0..=0, message::topic_kind, ["topicKind()" => "\"property_post\""]),
    def!("message", "messageId", "messageId() -> int",
        "The message id: unique within its source (line number, Kafka offset, MQTT packet id…).",
        0..=0, message::message_id, ["messageId()" => "42"]),
    def!("message", "payload", "payload([encoding: string]) -> string",
    "The raw payload as text: 'utf-8' (default; invalid UTF-8 is an error), or 'base64' / 'hex' for binary payloads. An unknown encoding is an error.",
    0..=1, message::payload, [
        "map_get('deviceType', json_decode(payload()))" => "\"Ammeter\"",
        "substring(payload('hex'), 0, 8)" => "\"7b22696f\"",
        "substring(payload('base64'), 0, 8)" => "\"eyJpb3RJ\"",
    ]),
    def!("message", "thingPropertyFlatMap", "thingPropertyFlatMap([name: string, …]) -> object",
        "The named properties of a property post (every property without arguments) flattened as Alibaba does: the items.<name>.value level is dropped, giving {name: value}, and a struct (object) value gives one <name>_<member> field per member. Missing properties and NULL names are skipped. Without an alias in SELECT its fields are merged into the output.",
        0..=50, message::thing_property_flat_map, [
            "thingPropertyFlatMap('Power', 'Position', 'Missing')" => "{\"Power\":\"on\",\"Position_latitude\":39.9,\"Position_longitude\":116.38}",
            "thingPropertyFlatMap()" => "{\"Power\":\"on\",\"Position_latitude\":39.9,\"Position_longitude\":116.38}",
            "thingPropertyFlatMap('Power')" => "{\"Power\":\"on\"}",
        ], reads_record: true, flattens: true),
    // ---------------------------------------------------------------- device
    def!("device", "deviceName", "deviceName() -> string",
        "The device name: from the topic, else the record's deviceName or deviceKey (integration entries). NULL when none.",
        0..=0, message::device_name, ["deviceName()" => "\"deviceName1234\""]),
    def!("device", "productKey", "productKey() -> string",
        "The product key: from the topic, else the record's productKey. NULL when none.",
        0..=0, message::product_key, ["productKey()" => "\"1234556554\""]),
    def!("device", "deviceKey", "deviceKey() -> string",
        "The device key: the record's deviceKey (integration entries), else the topic's device name. NULL when none.",
        0..=0, message::device_key, ["deviceKey()" => "\"deviceName1234\""]),
    def!("device", "attribute", "attribute(key: string) -> string",
        "The device's tag `key` from the device registry; NULL when unknown or no registry is configured.",
        1..=1, message::attribute, ["attribute('location')" => "null"]),
    def!("device", "deviceStatus", "deviceStatus() -> string",
        "'online' or 'offline' from the device registry; NULL when unknown or no registry is configured.",
        0..=0, message::device_status, ["deviceStatus()" => "null"]),
    def!("device", "gateway", "gateway() -> object",
        "The device's gateway as {productKey, deviceName} from the device registry; NULL when it has none or no registry is configured.",
        0..=0, message::gateway, ["gateway()" => "null"]),
];
