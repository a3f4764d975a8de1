//! The catalog's tests: every function documented, every example run, and the behaviour of
//! the functions on the example message.

use super::*;
use crate::message::Message;
use crate::rule::ctx::{Ctx, DeviceLookup, Env};
use crate::rule::plan::{plan, SelectItem};
use crate::topic::TopicInfo;
use crate::value::Value;
use chrono::{FixedOffset, TimeZone};
use serde_json::Value as Json;

fn message(topic: &str, payload: &[u8]) -> Message {
    let mut m = Message::new(topic, payload.to_vec());
    m.meta.id = EXAMPLE_MESSAGE_ID;
    m.meta.received_ms = EXAMPLE_NOW_MS;
    m
}

fn example_message() -> Message {
    message(EXAMPLE_TOPIC, EXAMPLE_PAYLOAD.as_bytes())
}

/// Compiles `SELECT <expr> AS r FROM "#"` and evaluates it against `msg`.
fn eval_with(msg: &Message, env: &Env, expr: &str) -> Result<Value<'static>, String> {
    let sql = format!("SELECT {expr} AS r FROM \"#\"");
    let plan = plan(&sql).map_err(|e| format!("does not compile: {e:?}"))?;
    let record: Option<crate::doc::Node<'_>> = crate::doc::Node::parse(&msg.payload).ok();
    let info = TopicInfo::parse(&msg.topic);
    let ctx = Ctx { msg, info: &info, record: record.as_ref(), now_ms: EXAMPLE_NOW_MS, env, item: None, window: None };
    match plan.select.first() {
        Some(SelectItem::Named { expr, .. }) => expr.eval(&ctx).map(Value::into_owned).map_err(|e| e.0),
        other => Err(format!("unexpected select item {other:?}")),
    }
}

/// Compiles `SELECT <expr> AS r FROM "#" GROUP BY TUMBLINGWINDOW(ss, 1)` and evaluates it as
/// the window of the records `{"x": v}` for v in [`EXAMPLE_ROWS`].
fn eval_aggregate(expr: &str) -> Result<Value<'static>, String> {
    use crate::rule::ctx::WindowView;
    use crate::rule::functions::aggregate::EXAMPLE_ROWS;
    let sql = format!("SELECT {expr} AS r FROM \"#\" GROUP BY TUMBLINGWINDOW(ss, 1)");
    let plan = plan(&sql).map_err(|e| format!("does not compile: {e:?}"))?;
    let w = plan.window.as_ref().ok_or("not windowed")?;
    let env = Env::default();
    let rows: Vec<Json> = serde_json::from_str(EXAMPLE_ROWS).expect("rows");
    let mut accs: Vec<_> = w.aggs.iter().map(|a| a.kind.start()).collect();
    for x in rows {
        let msg = message(EXAMPLE_TOPIC, serde_json::json!({ "x": x }).to_string().as_bytes());
        let record = crate::doc::Node::parse(&msg.payload).ok();
        let info = TopicInfo::parse(&msg.topic);
        let ctx = Ctx { msg: &msg, info: &info, record: record.as_ref(), now_ms: EXAMPLE_NOW_MS, env: &env, item: None, window: None };
        for (a, acc) in w.aggs.iter().zip(accs.iter_mut()) {
            let args: Vec<Json> = a.args.iter().map(|e| e.eval(&ctx).map(|v| v.to_json())).collect::<Result<_, _>>().map_err(|e| e.0)?;
            a.kind.update(acc, &args)?;
        }
    }
    let values: Vec<Value<'static>> = w.aggs.iter().zip(&accs).map(|(a, acc)| a.kind.finish(acc)).collect();
    let view = WindowView { aggs: &values, start_ms: Some(0), end_ms: Some(1000), event_ms: None, silence: None };
    let msg = example_message();
    let info = TopicInfo::parse(&msg.topic);
    let ctx = Ctx { msg: &msg, info: &info, record: None, now_ms: EXAMPLE_NOW_MS, env: &env, item: None, window: Some(&view) };
    match plan.select.first() {
        Some(SelectItem::Named { expr, .. }) => expr.eval(&ctx).map(Value::into_owned).map_err(|e| e.0),
        other => Err(format!("unexpected select item {other:?}")),
    }
}

/// Compiles `SELECT <expr> AS r FROM "#"` and evaluates it on the records `{"x": v}` for v in
/// [`EXAMPLE_ROWS`] in turn (one partition): the value for the last record.
fn eval_analytic(expr: &str) -> Result<Value<'static>, String> {
    use crate::rule::ctx::WindowView;
    use crate::rule::functions::aggregate::EXAMPLE_ROWS;
    let sql = format!("SELECT {expr} AS r FROM \"#\"");
    let plan = plan(&sql).map_err(|e| format!("does not compile: {e:?}"))?;
    let env = Env::default();
    let rows: Vec<Json> = serde_json::from_str(EXAMPLE_ROWS).expect("rows");
    let mut memory: Vec<_> = plan.analytics.iter().map(|a| a.kind.start()).collect();
    let mut last = Value::Null;
    for x in rows {
        let msg = message(EXAMPLE_TOPIC, serde_json::json!({ "x": x }).to_string().as_bytes());
        let record = crate::doc::Node::parse(&msg.payload).ok();
        let info = TopicInfo::parse(&msg.topic);
        let ctx = Ctx { msg: &msg, info: &info, record: record.as_ref(), now_ms: EXAMPLE_NOW_MS, env: &env, item: None, window: None };
        let mut values = Vec::new();
        for (a, h) in plan.analytics.iter().zip(memory.iter_mut()) {
            let args: Vec<Json> = a.args.iter().map(|e| e.eval(&ctx).map(|v| v.to_json())).collect::<Result<_, _>>().map_err(|e| e.0)?;
            values.push(a.kind.step(h, &args)?);
        }
        let view = WindowView { aggs: &values, ..WindowView::default() };
        let ctx = Ctx { window: Some(&view), ..ctx };
        last = match plan.select.first() {
            Some(SelectItem::Named { expr, .. }) => expr.eval(&ctx).map(Value::into_owned).map_err(|e| e.0)?,
            other => return Err(format!("unexpected select item {other:?}")),
        };
    }
    Ok(last)
}

fn eval(expr: &str) -> Result<Value<'static>, String> {
    eval_with(&example_message(), &Env::default(), expr)
}

/// The result of `expr` on the example message as JSON text.
fn json(expr: &str) -> String {
    match eval(expr) {
        Ok(v) => serde_json::to_string(&v).expect("serializes"),
        Err(e) => panic!("{expr}: {e}"),
    }
}

fn err(expr: &str) -> String {
    match eval(expr) {
        Ok(v) => panic!("{expr}: expected an error, got {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn every_function_is_documented() {
    assert!(!all().is_empty());
    let mut seen = std::collections::HashSet::new();
    for f in all() {
        assert!(seen.insert(f.name), "{} is defined twice", f.name);
        assert!(!f.examples.is_empty(), "{} has no example", f.name);
        assert!(!f.doc.trim().is_empty(), "{} has no doc", f.name);
        assert!(f.signature.starts_with(&format!("{}(", f.name)), "{}: signature {:?} must start with its name", f.name, f.signature);
        assert!(f.signature.contains(") -> "), "{}: signature {:?} must give the result type", f.name, f.signature);
        assert!(!f.category.is_empty(), "{} has no category", f.name);
        assert!(f.min_args <= f.max_args, "{}: min_args > max_args", f.name);
        assert!(std::ptr::eq(get(f.name).expect("registered"), f), "{} does not look itself up", f.name);
    }
    for name in ["floor", "ceil", "substring", "trim", "int", "float", "string", "bool"] {
        assert!(get(name).is_some(), "the planner maps SQL syntax to {name}(), which must exist");
    }
}

#[test]
fn every_example_holds() {
    let msg = example_message();
    let env = Env::default();
    let mut failures = Vec::new();
    for f in all() {
        for ex in f.examples {
            let got = if f.aggregate {
                eval_aggregate(ex.expr)
            } else if f.analytic {
                eval_analytic(ex.expr)
            } else {
                eval_with(&msg, &env, ex.expr)
            };
            let got = match got {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{}: example `{}` failed: {e}", f.name, ex.expr));
                    continue;
                }
            };
            if let Some(ty) = ex.result.strip_prefix("type:") {
                if got.type_name() != ty {
                    failures.push(format!("{}: example `{}` gave {} {got:?}, expected type {ty}", f.name, ex.expr, got.type_name()));
                }
                continue;
            }
            let want: Json = match serde_json::from_str(ex.result) {
                Ok(j) => j,
                Err(e) => {
                    failures.push(format!("{}: example `{}` has an invalid expected result {:?}: {e}", f.name, ex.expr, ex.result));
                    continue;
                }
            };
            if got.to_json() != want {
                failures.push(format!("{}: example `{}` gave {}, expected {}", f.name, ex.expr, got.to_json(), ex.result));
            }
        }
    }
    assert!(failures.is_empty(), "{} failing examples:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn suggests_the_right_case() {
    assert_eq!(suggest("devicename"), Some("deviceName"));
    assert_eq!(suggest("DEVICENAME"), Some("deviceName"));
    assert_eq!(suggest("timestmp"), Some("timestamp"));
    assert_eq!(suggest("completely_unrelated_name"), None);
}

#[test]
fn markdown_reference_lists_every_function() {
    let md = markdown_reference();
    for f in all() {
        assert!(!f.signature.contains('|'), "{}: `|` in a signature breaks the reference table", f.name);
        assert!(md.contains(&format!("| `{}` |", f.signature)), "{} missing from the reference", f.name);
    }
}

#[test]
fn substring_follows_alibaba() {
    assert_eq!(json("substring('012345', 2)"), "\"2345\"");
    assert_eq!(json("substring('012345', -1)"), "\"012345\"");
    assert_eq!(json("substring('012345', 3, 1)"), "\"\"");
    assert_eq!(json("substring('012345', 3, 3)"), "\"\"");
    assert_eq!(json("substring('012345', 2, 100)"), "\"2345\"");
    assert_eq!(json("substring('012345', 10)"), "\"\"");
    assert_eq!(json("substring('012345', -5, 2)"), "\"01\"");
    assert_eq!(json("substring('héllo wörld', 1, 8)"), "\"éllo wö\"");
    assert_eq!(json("substring('日本語テキスト', 2)"), "\"語テキスト\"");
    assert_eq!(json("substring(123456, 1, 3)"), "\"23\"");
    assert_eq!(json("substring(NULL, 1)"), "null");
    assert_eq!(json("substring('abc', NULL)"), "null");
    assert_eq!(json("substring('abc', '1')"), "\"bc\"");
    assert_eq!(json("SUBSTRING('012345', 1, 2)"), "\"1\"");
    assert!(err("substring('abc', 'x')").contains("argument 2 must be an integer, got string \"x\""));
    assert!(err("substring('abc', 1.5)").contains("must be an integer"));
    assert_eq!(json("substring('abc', 9223372036854775807)"), "\"\"");
    assert_eq!(json("substring('abc', 0, 9223372036854775807)"), "\"abc\"");
}

#[test]
fn crypto_matches_known_vectors() {
    let vectors = [
        ("MD2", "da853b0d3f88d99b30283a69e6ded6bb"),
        ("MD5", "900150983cd24fb0d6963f7d28e17f72"),
        ("SHA1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ("SHA-256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("SHA-384", "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"),
        ("SHA-512", "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
    ];
    for (algo, hex) in vectors {
        assert_eq!(json(&format!("crypto('abc', '{algo}')")), format!("\"{hex}\""), "{algo}");
        assert_eq!(json(&format!("crypto('abc', '{}')", algo.to_lowercase())), format!("\"{hex}\""), "{algo} lower case");
    }
    assert_eq!(json("md5('')"), "\"d41d8cd98f00b204e9800998ecf8427e\"");
    assert_eq!(json("crypto(NULL, 'MD5')"), "null");
    assert_eq!(json("crypto(*, 'MD5') = md5(payload())"), "true");
    let e = err("crypto('abc', 'SHA3')");
    assert!(e.starts_with("crypto(): unknown algorithm \"SHA3\""), "{e}");
}

#[test]
fn hashes_and_encodings_use_raw_bytes() {
    let msg = message("t/bin", &[0xff, 0x00, 0x41]);
    let env = Env::default();
    let v = |e: &str| eval_with(&msg, &env, e).map(|v| v.to_json());
    assert_eq!(v("to_hex(*)").unwrap(), Json::from("ff0041"));
    assert_eq!(v("to_base64(*)").unwrap(), Json::from("/wBB"));
    assert_eq!(v("payload('hex')").unwrap(), Json::from("ff0041"));
    assert_eq!(v("payload('BASE64')").unwrap(), Json::from("/wBB"));
    assert_eq!(v("md5(*)").unwrap(), v("crypto(*, 'md5')").unwrap());
    let e = v("payload()").unwrap_err();
    assert!(e.contains("not valid UTF-8 (at byte 0)"), "{e}");
    assert!(v("payload('latin1')").unwrap_err().contains("unknown text encoding \"latin1\""));
    assert_eq!(json("to_hex('é')"), "\"c3a9\"");
    assert_eq!(json("to_base64(NULL)"), "null");
}

#[test]
fn java_date_formats() {
    let tz = FixedOffset::east_opt(8 * 3600).unwrap();
    let t = tz.with_ymd_and_hms(2023, 1, 5, 6, 7, 8).unwrap() + chrono::Duration::milliseconds(9);
    let f = |p: &str| crate::rule::functions::java_format(p, &t);
    assert_eq!(f("yyyy-MM-dd HH:mm:ss").unwrap(), "2023-01-05 06:07:08");
    assert_eq!(f("yyyy-MM-dd'T'HH:mm:ss.SSSZ").unwrap(), "2023-01-05T06:07:08.009+0800");
    assert_eq!(f("yy/M/d H:m:s").unwrap(), "23/1/5 6:7:8");
    assert_eq!(f("hh:mm a").unwrap(), "06:07 AM");
    assert_eq!(f("h a, E EEE EEEE").unwrap(), "6 AM, Thu Thu Thursday");
    assert_eq!(f("MMM MMMM D u").unwrap(), "Jan January 5 4");
    assert_eq!(f("X XX XXX Z").unwrap(), "+08 +0800 +08:00 +0800");
    assert_eq!(f("z").unwrap(), "GMT+08:00");
    assert_eq!(f("'o''clock' '' HH").unwrap(), "o'clock ' 06");
    assert_eq!(f("yyyyMMdd-é").unwrap(), "20230105-é");
    let utc = FixedOffset::east_opt(0).unwrap();
    let t0 = utc.with_ymd_and_hms(2023, 11, 14, 12, 0, 0).unwrap();
    assert_eq!(crate::rule::functions::java_format("XXX X Z h a", &t0).unwrap(), "Z Z +0000 12 PM");
    let minus = FixedOffset::west_opt(5 * 3600 + 30 * 60).unwrap();
    let tm = minus.with_ymd_and_hms(2023, 11, 14, 0, 0, 0).unwrap();
    assert_eq!(crate::rule::functions::java_format("X XX XXX h a", &tm).unwrap(), "-0530 -0530 -05:30 12 AM");
    assert!(f("yyyy-MM-ddTHH").unwrap_err().contains("unknown pattern letter 'T'"));
    assert!(f("'unterminated").unwrap_err().contains("unterminated quote"));
    assert!(f("XXXX").unwrap_err().contains("too many pattern letters"));
    assert!(err("timestamp('Q')").starts_with("timestamp(): unknown pattern letter 'Q'"));
}

#[test]
fn timestamp_uses_the_configured_zone() {
    let env = Env { tz: FixedOffset::east_opt(8 * 3600).unwrap(), ..Env::default() };
    let msg = example_message();
    let v = |e: &str| eval_with(&msg, &env, e).unwrap().to_json();
    assert_eq!(v("timestamp('yyyy-MM-dd HH:mm:ss XXX')"), Json::from("2023-11-15 06:13:20 +08:00"));
    assert_eq!(v("timestamp_utc('yyyy-MM-dd HH:mm:ss XXX')"), Json::from("2023-11-14 22:13:20 Z"));
    assert_eq!(v("timestamp()"), Json::from(EXAMPLE_NOW_MS));
    assert_eq!(json("timestamp(NULL)"), "null");
}

#[test]
fn rfc3339_conversions() {
    assert_eq!(json("unix_ts_to_rfc3339(1700000000000123, 'microsecond')"), "\"2023-11-14T22:13:20.000123Z\"");
    assert_eq!(json("unix_ts_to_rfc3339(1700000000000000001, 'nanosecond')"), "\"2023-11-14T22:13:20.000000001Z\"");
    assert_eq!(json("unix_ts_to_rfc3339(-1, 'second')"), "\"1969-12-31T23:59:59Z\"");
    assert_eq!(json("unix_ts_to_rfc3339('1700000000', 'second')"), "\"2023-11-14T22:13:20Z\"");
    assert!(err("unix_ts_to_rfc3339(9223372036854775807, 'second')").contains("out of range"));
    assert!(err("unix_ts_to_rfc3339(1, 'fortnight')").contains("unknown time unit \"fortnight\""));
    assert!(err("unix_ts_to_rfc3339(1.5)").contains("must be an integer"));
    assert_eq!(json("unix_ts_to_rfc3339(NULL)"), "null");
    assert_eq!(json("rfc3339_to_unix_ts('2023-11-14T22:13:20.000123Z', 'microsecond')"), "1700000000000123");
    assert_eq!(json("rfc3339_to_unix_ts('2023-11-14T22:13:20Z', 'nanosecond')"), "1700000000000000000");
    assert!(err("rfc3339_to_unix_ts('yesterday')").contains("\"yesterday\" is not an RFC 3339 date-time"));
    assert!(err("rfc3339_to_unix_ts('2500-01-01T00:00:00Z', 'nanosecond')").contains("out of range"));
    assert_eq!(json("rfc3339_to_unix_ts(unix_ts_to_rfc3339(gmtCreate))"), "1510799670074");
    assert_eq!(json("now_timestamp('microsecond')"), "1700000000000000");
    assert_eq!(json("now_timestamp('nanosecond')"), "1700000000000000000");
    assert_eq!(json("now_rfc3339('nanosecond')"), "\"2023-11-14T22:13:20.000000000Z\"");
}

#[test]
fn topic_levels() {
    assert_eq!(json("topic(1)"), "\"sys\"");
    assert_eq!(json("topic(3)"), "\"deviceName1234\"");
    assert_eq!(json("topic(7)"), "\"post\"");
    assert_eq!(json("topic(8)"), "null");
    assert_eq!(json("topic(0)"), "null");
    assert_eq!(json("topic(-1)"), "null");
    assert_eq!(json("topic(NULL)"), "null");
    assert!(err("topic('x')").contains("must be an integer"));
    let env = Env::default();
    let msg = message("sys/pk1/integration/event/post", b"{}");
    assert_eq!(eval_with(&msg, &env, "topic(1)").unwrap().to_json(), Json::from("sys"));
    assert_eq!(eval_with(&msg, &env, "topic(2)").unwrap().to_json(), Json::from("pk1"));
    assert_eq!(eval_with(&msg, &env, "topic(5)").unwrap().to_json(), Json::from("post"));
    assert_eq!(eval_with(&msg, &env, "topic(6)").unwrap().to_json(), Json::Null);
    assert_eq!(eval_with(&msg, &env, "topicKind()").unwrap().to_json(), Json::from("integration_event"));
    let msg = message("//a", b"{}");
    assert_eq!(eval_with(&msg, &env, "topic(1)").unwrap().to_json(), Json::from(""));
    assert_eq!(eval_with(&msg, &env, "topic(2)").unwrap().to_json(), Json::from("a"));
}

#[test]
fn nanvl_and_nan() {
    assert_eq!(json("nanvl(sqrt(-1), 'x')"), "\"x\"");
    assert_eq!(json("nanvl(log(-1), -1)"), "-1");
    assert_eq!(json("nanvl(0.0, 1)"), "0.0");
    assert_eq!(json("nanvl('abc', 1)"), "\"abc\"");
    assert_eq!(json("nanvl(NULL, NULL)"), "null");
    assert_eq!(json("nanvl(items.Position.value, 0)"), "{\"latitude\":39.9,\"longitude\":116.38}");
    // NULL and NaN only: an infinity is kept (and written as null).
    assert_eq!(json("nanvl(log(0), 1)"), "null");
    assert_eq!(json("nanvl(log(0), 1) < 0"), "true");
    assert_eq!(json("sqrt(-1)"), "null");
    assert_eq!(json("asin(2)"), "null");
}

#[test]
fn big_integers_pass_through() {
    let payload = br#"{"big":18446744073709551615,"arr":[18446744073709551614],"obj":{"k":9223372036854775808}}"#;
    let msg = message("t", payload);
    let env = Env::default();
    let v = |e: &str| serde_json::to_string(&eval_with(&msg, &env, e).unwrap()).unwrap();
    assert_eq!(v("coalesce(NULL, big)"), "18446744073709551615");
    assert_eq!(v("nth(1, arr)"), "18446744073709551614");
    assert_eq!(v("map_get('k', obj)"), "9223372036854775808");
    assert_eq!(v("json_encode(big)"), "\"18446744073709551615\"");
    assert_eq!(v("json_encode(obj)"), "\"{\\\"k\\\":9223372036854775808}\"");
    assert_eq!(v("json_decode(json_encode(arr))"), "[18446744073709551614]");
    assert_eq!(v("nanvl(big, 0)"), "18446744073709551615");
    assert_eq!(v("abs(big)"), "18446744073709551615");
    assert_eq!(v("floor(big)"), "18446744073709551615");
    assert_eq!(v("round(big)"), "18446744073709551615");
    assert_eq!(v("int(big)"), "18446744073709551615");
    assert_eq!(v("mod(big, 10)"), "5");
    assert_eq!(v("string(big)"), "\"18446744073709551615\"");
    assert_eq!(v("is_int(big)"), "true");
    assert_eq!(v("typeof(big)"), "\"int\"");
}

#[test]
fn integers_stay_integers() {
    assert_eq!(json("abs(-9223372036854775808)"), "9223372036854775808");
    assert_eq!(json("abs(-0.0)"), "0.0");
    assert_eq!(json("floor(1e300)"), "1e+300");
    assert_eq!(json("ceil(-0.5)"), "0");
    assert_eq!(json("round(1e19)"), "10000000000000000000");
    assert_eq!(json("round(1.9e19)"), "1.9e+19");
    assert_eq!(json("floor(-9.3e18)"), "-9.3e+18");
    assert_eq!(json("floor(-9223372036854775808.0)"), "-9223372036854775808");
    assert_eq!(json("ceil(18446744073709549568.0)"), "18446744073709549568");
    assert_eq!(json("int(1e19)"), "10000000000000000000");
    assert_eq!(json("round(2.4)"), "2");
    assert_eq!(json("round(7, 2)"), "7");
    assert_eq!(json("round(-1250, -2)"), "-1300");
    assert_eq!(json("round(1249, -2)"), "1200");
    assert_eq!(json("round(5, -30)"), "0");
    assert_eq!(json("round(1.005, 2)"), "1.01");
    assert_eq!(json("round(-1.005, 2)"), "-1.01");
    assert_eq!(json("round(9.995, 2)"), "10.0");
    assert_eq!(json("round(0.004, 2)"), "0.0");
    assert_eq!(json("round(1234.5, -2)"), "1200.0");
    assert_eq!(json("round(99.5, -2)"), "100.0");
    assert_eq!(json("round(1.5, 400)"), "1.5");
    assert_eq!(json("round(1.5, -400)"), "0.0");
    assert_eq!(json("round(NULL, 2)"), "null");
    assert_eq!(json("mod(9223372036854775807, -1)"), "0");
    assert_eq!(json("mod(-9223372036854775808, -1)"), "0");
    assert_eq!(json("mod(-7.5, 2)"), "-1.5");
    assert!(err("mod(1, 0)").contains("modulo by zero"));
    assert!(err("mod(1.5, 0.0)").contains("modulo by zero"));
    assert_eq!(json("power(2, 63)"), "9223372036854775808");
    assert_eq!(json("power(2, 64)"), "1.8446744073709552e+19");
    assert_eq!(json("power(10, 400)"), "null");
    assert_eq!(json("power(-2, 3)"), "-8");
    assert_eq!(json("power('3', 2)"), "9");
    assert!(err("power('x', 2)").contains("argument 1 must be a number, got string \"x\""));
    assert_eq!(json("log(8, 2)"), "3.0");
    assert_eq!(json("abs(NULL)"), "null");
}

#[test]
fn regexes() {
    let e = err("regex_match('a', '(')");
    assert!(e.starts_with("regex_match(): invalid regular expression \"(\""), "{e}");
    assert!(err("regex_replace('a', '[', 'x')").contains("invalid regular expression \"[\""));
    assert_eq!(json("regex_match('xx-dev-1', 'dev-[0-9]')"), "true");
    assert_eq!(json("regex_match('abc', '^b')"), "false");
    assert_eq!(json("regex_match(NULL, 'a')"), "null");
    assert_eq!(json("regex_replace('a.b.c', '\\.', '/')"), "\"a/b/c\"");
    assert_eq!(json("regex_replace('key=val', '(?P<k>\\w+)=(?P<v>\\w+)', '${v}=${k}')"), "\"val=key\"");
    for i in 0..600 {
        assert_eq!(json(&format!("regex_match('v{i}', '^v{i}$')")), "true");
    }
}

#[test]
fn strings() {
    assert_eq!(json("split('/a/b/', '/')"), "[\"a\",\"b\"]");
    assert_eq!(json("split('', ',')"), "[]");
    assert_eq!(json("split('a, b', ', ')"), "[\"a\",\"b\"]");
    assert!(err("split('abc', '')").contains("separator must not be empty"));
    assert_eq!(json("length(json_decode('[1,2,3]'))"), "3");
    assert_eq!(json("length(12.5)"), "4");
    assert_eq!(json("length('')"), "0");
    assert_eq!(json("length(NULL)"), "null");
    assert_eq!(json("trim(NULL)"), "null");
    assert_eq!(json("trim(deviceType)"), "\"Ammeter\"");
    assert_eq!(json("upper('straße')"), "\"STRASSE\"");
    assert_eq!(json("replace('aaa', 'a', 'bb')"), "\"bbbbbb\"");
    assert_eq!(json("replace('abc', NULL, 'x')"), "null");
    assert_eq!(json("startswith(NULL, 'a')"), "null");
    assert_eq!(json("endswith(12345, 45)"), "true");
    assert_eq!(json("concat(NULL)"), "\"\"");
    assert_eq!(json("concat('a', true, 1.5, items.Position.value)"), "\"atrue1.5{\\\"latitude\\\":39.9,\\\"longitude\\\":116.38}\"");
    assert_ne!(json("newuuid()"), json("newuuid()"));
    let r = eval("rand()").unwrap();
    assert!(matches!(r, Value::Float(f) if (0.0..1.0).contains(&f)));
}

#[test]
fn json_and_collections() {
    assert!(err("json_decode('{bad')").starts_with("json_decode(): invalid JSON \"{bad\""));
    assert_eq!(json("json_decode(NULL)"), "null");
    assert_eq!(json("json_decode('\"s\"')"), "\"s\"");
    assert_eq!(json("json_encode(NULL)"), "\"null\"");
    assert_eq!(json("json_encode(sqrt(-1))"), "\"null\"");
    assert_eq!(json("nth(0, json_decode('[1]'))"), "null");
    assert_eq!(json("nth(-1, json_decode('[1]'))"), "null");
    assert_eq!(json("nth(1, NULL)"), "null");
    assert_eq!(json("nth(NULL, json_decode('[1]'))"), "null");
    assert_eq!(json("nth(1, json_decode('[{\"a\":1}]'))"), "{\"a\":1}");
    assert!(err("nth(1, items)").contains("argument 2 must be an array, got object"));
    assert!(err("nth('x', json_decode('[1]'))").contains("must be an integer"));
    assert_eq!(json("map_get('Power', items)"), "{\"value\":\"on\",\"time\":1510799670074}");
    assert_eq!(json("map_get('x', NULL, 'd')"), "\"d\"");
    assert_eq!(json("map_get('k', json_decode('{\"k\":null}'), 'd')"), "null");
    assert!(err("map_get('k', 'str')").contains("argument 2 must be an object, got string \"str\""));
    assert_eq!(json("coalesce(NULL, NULL)"), "null");
}

#[test]
fn casts() {
    assert_eq!(json("int(' 7 ')"), "7");
    assert_eq!(json("int('1e3')"), "1000");
    assert_eq!(json("int(false)"), "0");
    assert_eq!(json("int(NULL)"), "null");
    assert!(err("int('abc')").contains("cannot convert string \"abc\" to int"));
    assert!(err("int(1e30)").contains("out of range"));
    assert!(err("int(items)").contains("cannot convert object"));
    assert_eq!(json("float(true)"), "1.0");
    assert!(err("float('x1')").contains("cannot convert string \"x1\" to float"));
    assert_eq!(json("string('a')"), "\"a\"");
    assert_eq!(json("string(true)"), "\"true\"");
    assert_eq!(json("string(1.0)"), "\"1.0\"");
    assert_eq!(json("string(NULL)"), "null");
    assert_eq!(json("CAST(12 AS varchar)"), "\"12\"");
    assert_eq!(json("bool('False')"), "false");
    assert_eq!(json("bool(2.5)"), "true");
    assert!(err("bool('yes')").contains("cannot convert string \"yes\" to bool"));
    assert!(err("bool(items)").contains("cannot convert object"));
    assert_eq!(json("is_num(NULL)"), "false");
    assert_eq!(json("is_str(NULL)"), "false");
    assert_eq!(json("is_not_null(NULL)"), "false");
    assert_eq!(json("typeof(json_decode('[]'))"), "\"array\"");
    assert_eq!(json("typeof(*)"), "\"bytes\"");
}

struct Registry;

impl DeviceLookup for Registry {
    fn attribute(&self, pk: &str, dn: &str, key: &str) -> Option<String> {
        (pk == "1234556554" && dn == "deviceName1234" && key == "location").then(|| "hangzhou".to_string())
    }
    fn status(&self, _: &str, dn: &str) -> Option<String> {
        (dn == "deviceName1234").then(|| "online".to_string())
    }
    fn gateway(&self, pk: &str, _: &str) -> Option<(String, String)> {
        Some((pk.to_string(), "gw1".to_string()))
    }
}

#[test]
fn device_registry_lookups() {
    let env = Env { devices: Box::new(Registry), ..Env::default() };
    let msg = example_message();
    let v = |e: &str| eval_with(&msg, &env, e).unwrap().to_json();
    assert_eq!(v("attribute('location')"), Json::from("hangzhou"));
    assert_eq!(v("attribute('other')"), Json::Null);
    assert_eq!(v("attribute(NULL)"), Json::Null);
    assert_eq!(v("deviceStatus()"), Json::from("online"));
    assert_eq!(v("gateway()"), serde_json::json!({"productKey": "1234556554", "deviceName": "gw1"}));
    // No device in the topic or record: NULL without asking the registry.
    let msg = message("custom/topic", b"{}");
    assert_eq!(eval_with(&msg, &env, "gateway()").unwrap().to_json(), Json::Null);
    assert_eq!(eval_with(&msg, &env, "deviceName()").unwrap().to_json(), Json::Null);
    // Integration entries carry their device in the record.
    let msg = message("custom/topic", br#"{"productKey":"pk9","deviceKey":"dk9"}"#);
    assert_eq!(eval_with(&msg, &env, "deviceKey()").unwrap().to_json(), Json::from("dk9"));
    assert_eq!(eval_with(&msg, &env, "productKey()").unwrap().to_json(), Json::from("pk9"));
    assert_eq!(eval_with(&msg, &env, "deviceName()").unwrap().to_json(), Json::from("dk9"));
}

#[test]
fn thing_property_flat_map_flattens() {
    let p = plan("SELECT thingPropertyFlatMap('Power', 'Position') FROM \"#\"").unwrap();
    assert!(matches!(p.select.first(), Some(SelectItem::Flatten(_))));
    assert!(p.reads_record());
    assert_eq!(json("thingPropertyFlatMap('Missing')"), "{}");
    assert_eq!(json("thingPropertyFlatMap(NULL, 'Power')"), "{\"Power\":\"on\"}");
    assert!(err("thingPropertyFlatMap(1)").contains("argument 1 must be a property name, got int 1"));
    let many = (0..51).map(|i| format!("'p{i}'")).collect::<Vec<_>>().join(", ");
    let e = plan(&format!("SELECT thingPropertyFlatMap({many}) FROM \"#\"")).unwrap_err();
    assert!(e[0].message.contains("takes 0 to 50 arguments, got 51"), "{:?}", e[0]);
    // Alibaba: the items.<name>.value level goes; a struct gives <name>_<member> fields.
    let msg = message(EXAMPLE_TOPIC, br#"{"items":{"T":{"value":21.5,"time":1},"S":{"value":{"a":1,"b":[2]},"time":1},"N":{"time":1},"Z":{"value":null}}}"#);
    let v = |e: &str| serde_json::to_string(&eval_with(&msg, &Env::default(), e).unwrap()).unwrap();
    assert_eq!(v("thingPropertyFlatMap()"), r#"{"T":21.5,"S_a":1,"S_b":[2],"Z":null}"#);
    assert_eq!(v("thingPropertyFlatMap('S', 'N')"), r#"{"S_a":1,"S_b":[2]}"#);
    let msg = message(EXAMPLE_TOPIC, br#"{"items":[1]}"#);
    assert_eq!(serde_json::to_string(&eval_with(&msg, &Env::default(), "thingPropertyFlatMap()").unwrap()).unwrap(), "{}");
}

/// A message whose payload is `payload` (JSON), on the example topic.
fn with_payload(payload: &str) -> Message {
    message(EXAMPLE_TOPIC, payload.as_bytes())
}

fn eval_on(msg: &Message, expr: &str) -> Result<String, String> {
    eval_with(msg, &Env::default(), expr).map(|v| serde_json::to_string(&v).expect("serializes"))
}

/// Regression: `v / d` and `v % d` with v = i64::MIN, d = -1 panicked ("attempt to calculate
/// the remainder with overflow"). The values come from the payload, so no planner folding.
#[test]
fn no_operator_panics_on_extreme_integers() {
    let msg = with_payload(r#"{"v":-9223372036854775808,"d":-1,"m":9223372036854775807,"u":18446744073709551615,"z":0}"#);
    let v = |e: &str| eval_on(&msg, e).unwrap_or_else(|err| panic!("{e}: {err}"));
    assert_eq!(v("v / d"), "9223372036854775808");
    assert_eq!(v("v % d"), "0");
    assert_eq!(v("mod(v, d)"), "0");
    assert_eq!(v("v * d"), "9223372036854775808");
    assert_eq!(v("-v"), "9223372036854775808");
    assert_eq!(v("0 - v"), "9223372036854775808");
    assert_eq!(v("- -9223372036854775808"), "9223372036854775808");
    assert_eq!(v("-(0 - v)"), "-9223372036854775808");
    assert_eq!(v("abs(v)"), "9223372036854775808");
    assert_eq!(v("v - 1"), "-9.223372036854776e+18");
    assert_eq!(v("v + v"), "-1.8446744073709552e+19");
    assert_eq!(v("u * u"), "3.402823669209385e+38");
    assert_eq!(v("u + u"), "3.6893488147419103e+19");
    assert_eq!(v("-u"), "-1.8446744073709552e+19");
    assert_eq!(v("v / 1"), "-9223372036854775808");
    assert_eq!(v("m / -1"), "-9223372036854775807");
    assert_eq!(v("v % 1"), "0");
    assert!(eval_on(&msg, "v / z").unwrap_err().contains("division by zero"));
    assert!(eval_on(&msg, "v % z").unwrap_err().contains("modulo by zero"));
    assert!(eval_on(&msg, "u % 0").unwrap_err().contains("modulo by zero"));
    for op in ["+", "-", "*", "/", "%"] {
        for a in ["v", "d", "m", "u", "z", "-1", "1", "0.5", "'-9223372036854775808'"] {
            for b in ["v", "d", "m", "u", "-1", "1", "2", "-0.0", "1e308"] {
                let _ = eval_on(&msg, &format!("{a} {op} {b}"));
                let _ = eval_on(&msg, &format!("mod({a}, {b})"));
                let _ = eval_on(&msg, &format!("power({a}, {b})"));
            }
        }
    }
}

#[test]
fn unsigned_arithmetic_is_exact() {
    let msg = with_payload(r#"{"u":18446744073709551615,"i":9223372036854775807,"h":9223372036854775808}"#);
    let v = |e: &str| eval_on(&msg, e).unwrap_or_else(|err| panic!("{e}: {err}"));
    assert_eq!(v("u % 10"), "5");
    assert_eq!(v("u % 2"), "1");
    assert_eq!(v("u % -7"), "1");
    assert_eq!(v("u - 1"), "18446744073709551614");
    assert_eq!(v("u - i"), "9223372036854775808");
    assert_eq!(v("u - u"), "0");
    assert_eq!(v("h - 1"), "9223372036854775807");
    assert_eq!(v("h * 1"), "9223372036854775808");
    assert_eq!(v("h + i"), "18446744073709551615");
    assert_eq!(v("h * 2"), "1.8446744073709552e+19");
    assert_eq!(v("u / 5"), "3689348814741910323");
    assert_eq!(v("u / 3"), "6148914691236517205");
    assert_eq!(v("u / -1"), "-1.8446744073709552e+19");
    assert_eq!(v("0 - h"), "-9223372036854775808");
    assert_eq!(v("u + 1"), "1.8446744073709552e+19", "beyond u64: the nearest float, 2^64");
    // Inexact division: the correctly rounded float.
    assert_eq!(v("u / 2"), "9.223372036854776e+18");
    assert_eq!(v("7 / 2"), "3.5");
    assert_eq!(v("-7 / 2"), "-3.5");
    assert_eq!(v("1 / 3"), "0.3333333333333333");
    assert_eq!(v("9007199254740991 / 2"), "4503599627370495.5");
    assert_eq!(v("9007199254740993 / 2"), "4503599627370496.0", "the tie rounds to even");
    assert_eq!(v("i / 10"), "9.223372036854776e+17");
    assert_eq!(v("u % 10.0"), "6.0", "a float operand makes float arithmetic");
    assert_eq!(v("typeof(u - 1)"), "\"int\"");
}

#[test]
fn comparisons_are_exact() {
    assert_eq!(json("9007199254740993 > 9007199254740992.0"), "true");
    assert_eq!(json("9007199254740993 = 9007199254740992.0"), "false");
    assert_eq!(json("9007199254740993 <> 9007199254740992.0"), "true");
    assert_eq!(json("1700000000000000001 > 1.7e18"), "true");
    assert_eq!(json("1700000000000000000 = 1.7e18"), "true");
    assert_eq!(json("9007199254740993 IN (9007199254740992.0, 1)"), "false");
    assert_eq!(json("9007199254740992 IN (9007199254740992.0, 1)"), "true");
    assert_eq!(json("9007199254740993 BETWEEN 9007199254740992.0 AND 9007199254740992.0"), "false");
    assert_eq!(json("18446744073709551615 > 1.8446744073709552e19"), "false");
    assert_eq!(json("18446744073709551615 < 1.8446744073709552e19"), "true");
    assert_eq!(json("-9223372036854775808 = -9.223372036854775808e18"), "true");
    assert_eq!(json("9223372036854775807 < 9.223372036854775807e18"), "true");
    assert_eq!(json("CASE 9007199254740993 WHEN 9007199254740992.0 THEN 'bad' ELSE 'ok' END"), "\"ok\"");
    assert_eq!(json("sqrt(-1) = sqrt(-1)"), "false");
    assert_eq!(json("sqrt(-1) < 1"), "null");
}

#[test]
fn structures_compare_by_value() {
    assert_eq!(json("[1, 2] = [1, 2.0]"), "true");
    assert_eq!(json("[1, 2] = [2, 1]"), "false");
    assert_eq!(json("[1, 2] <> [1, 2.0]"), "false");
    assert_eq!(json("json_decode('{\"a\":1,\"b\":2}') = json_decode('{\"b\":2.0,\"a\":1}')"), "true");
    assert_eq!(json("items.Position.value = json_decode('{\"longitude\":116.38,\"latitude\":39.9}')"), "true");
    assert_eq!(json("items = items"), "true");
    assert_eq!(json("[1] IN ([1.0], 2)"), "true");
    assert_eq!(json("[1] = 1"), "false");
}

#[test]
fn array_literals() {
    assert_eq!(json("[1, 'a', NULL, deviceType, [true]]"), "[1,\"a\",null,\"Ammeter\",[true]]");
    assert_eq!(json("[]"), "[]");
    assert_eq!(json("length([1, 2, 3])"), "3");
    assert_eq!(json("nth(2, [10, 18446744073709551615])"), "18446744073709551615");
    assert_eq!(json("typeof([1])"), "\"array\"");
}

#[test]
fn is_true_and_is_false_are_never_null() {
    for (e, want) in [
        ("NULL IS TRUE", "false"),
        ("NULL IS FALSE", "false"),
        ("NULL IS NOT TRUE", "true"),
        ("NULL IS NOT FALSE", "true"),
        ("items.Missing IS TRUE", "false"),
        ("true IS TRUE", "true"),
        ("false IS TRUE", "false"),
        ("false IS FALSE", "true"),
        ("true IS NOT TRUE", "false"),
        ("false IS NOT TRUE", "true"),
        ("(1 > 0) IS NOT FALSE", "true"),
        ("(NULL > 0) IS NOT TRUE", "true"),
        ("1 IS TRUE", "false"),
        ("'true' IS TRUE", "false"),
    ] {
        assert_eq!(json(e), want, "{e}");
    }
}

/// Regression: a format with 65,536 or more repeated letters panicked in `format!`
/// ("Formatting argument out of range"); the format may come from a payload field.
#[test]
fn huge_date_format_runs_do_not_panic() {
    for letter in ["y", "d", "H", "h", "k", "K", "m", "s", "S", "D", "u"] {
        let fmt = letter.repeat(70_000);
        let msg = with_payload(&format!(r#"{{"f":"{fmt}"}}"#));
        let out = eval_with(&msg, &Env::default(), "timestamp(f)").unwrap_or_else(|e| panic!("{letter}: {e}"));
        let Value::Str(s) = out else { panic!("{letter}: not a string") };
        assert_eq!(s.chars().count(), 70_000, "{letter}");
    }
    let msg = with_payload(&format!(r#"{{"f":"{}"}}"#, "y".repeat(1_100_000)));
    let e = eval_with(&msg, &Env::default(), "timestamp_utc(f)").unwrap_err();
    assert!(e.contains("above the limit"), "{e}");
    let msg = with_payload(&format!(r#"{{"f":"{}"}}"#, "X".repeat(70_000)));
    assert!(eval_with(&msg, &Env::default(), "timestamp(f)").unwrap_err().contains("too many pattern letters X (70000"));
    // Java pads to the width, the sign included.
    let t = FixedOffset::east_opt(0).unwrap().with_ymd_and_hms(2023, 1, 5, 6, 7, 8).unwrap();
    assert_eq!(crate::rule::functions::java_format("yyyyyy MMM ddd", &t).unwrap(), "002023 Jan 005");
}

#[test]
fn time_functions_do_not_panic_at_the_ends_of_the_range() {
    for unit in ["second", "millisecond", "microsecond", "nanosecond"] {
        for ts in ["9223372036854775807", "-9223372036854775808", "8210266876799", "-8334601228800", "0", "18446744073709551615"] {
            let _ = eval(&format!("unix_ts_to_rfc3339({ts}, '{unit}')"));
        }
        for s in ["'+262143-12-31T23:59:59Z'", "'-262143-01-01T00:00:00Z'", "'9999-12-31T23:59:59.999999999+23:59'", "'0000-01-01T00:00:00-23:59'"] {
            let _ = eval(&format!("rfc3339_to_unix_ts({s}, '{unit}')"));
        }
    }
    let env = Env::default();
    for now in [i64::MAX, i64::MIN, 8_210_266_876_799_999, -8_334_601_228_800_000] {
        let msg = example_message();
        let record: Option<crate::doc::Node<'_>> = crate::doc::Node::parse(&msg.payload).ok();
        let info = TopicInfo::parse(&msg.topic);
        let ctx = Ctx { msg: &msg, info: &info, record: record.as_ref(), now_ms: now, env: &env, item: None, window: None };
        for e in ["timestamp('yyyy-MM-dd G E')", "timestamp_utc('yy')", "now_rfc3339('nanosecond')", "now_timestamp('nanosecond')", "now_rfc3339()"] {
            let p = plan(&format!("SELECT {e} AS r FROM \"#\"")).unwrap();
            if let Some(SelectItem::Named { expr, .. }) = p.select.first() {
                let _ = expr.eval(&ctx);
            }
        }
    }
}

#[test]
fn bit_functions() {
    assert_eq!(json("bitand(18446744073709551615, 9223372036854775808)"), "9223372036854775808");
    assert_eq!(json("bitor(-9223372036854775808, 1)"), "-9223372036854775807");
    assert_eq!(json("bitxor(-1, 9223372036854775807)"), "-9223372036854775808");
    assert_eq!(json("bitnot(9223372036854775807)"), "-9223372036854775808");
    assert_eq!(json("bitnot(-1)"), "0");
    assert_eq!(json("bitsl(3, 62)"), "13835058055282163712");
    assert_eq!(json("bitsl(-1, 63)"), "-9223372036854775808");
    assert_eq!(json("bitsl(0, 1000)"), "0");
    assert_eq!(json("bitsr(18446744073709551615, 63)"), "1");
    assert_eq!(json("bitsr(1, 9223372036854775807)"), "0");
    assert_eq!(json("bitsr(-9223372036854775808, 200)"), "-1");
    assert_eq!(json("bitand('12', 10)"), "8");
    assert_eq!(json("bitand(NULL, 1)"), "null");
    assert_eq!(json("bitsl(1, NULL)"), "null");
    assert!(err("bitnot(18446744073709551615)").contains("does not fit in 64 bits"));
    assert!(err("bitsl(1, 64)").contains("bitsl(1, 64) = 18446744073709551616 does not fit in 64 bits"));
    assert!(err("bitsl(2, 63)").contains("does not fit"));
    assert!(err("bitsl(-1, 64)").contains("does not fit"));
    assert!(err("bitsl(1, 9223372036854775807)").contains("does not fit"));
    assert!(err("bitsl(1, -1)").contains("shift count must not be negative"));
    assert!(err("bitsr(1, -1)").contains("shift count must not be negative"));
    assert!(err("bitxor(-1, 9223372036854775808)").contains("does not fit"));
    assert!(err("bitand(1.0, 1)").contains("argument 1 must be an integer, got float 1.0"));
    assert!(err("bitor(1, 'x')").contains("argument 2 must be an integer, got string \"x\""));
}

#[test]
fn sprintf_and_pad() {
    assert_eq!(json("sprintf('~p ~w ~s', 1.5, [1, 'a'], NULL)"), "\"1.5 [1,\\\"a\\\"] null\"");
    assert_eq!(json("sprintf('~10s|~-6s|~3.2s|', 'right', 'left', 'truncate')"), "\"     right|left  | tr|\"");
    assert_eq!(json("sprintf('~e ~.3e ~g ~g', 1.0, 12345.678, 0.5, 123456.0)"), "\"1.00000e+0 1.23e+4 0.500000 1.23456e+5\"");
    assert_eq!(json("sprintf('~.2b ~.36B ~B ~.16b', 5, 35, -9223372036854775808, 18446744073709551615)"), "\"101 Z -9223372036854775808 ffffffffffffffff\"");
    assert_eq!(json("sprintf('~c~c ~~ ~i~s~n', 72, 105, 'skipped', '!')"), "\"Hi ~ !\\n\"");
    assert_eq!(json("sprintf('~*s|~.*f', 4, 'a', 1, 2.26)"), "\"   a|2.3\"");
    assert_eq!(json("sprintf('~8.3.0f', 3.14159)"), "\"0003.142\"");
    assert_eq!(json("sprintf('no directives')"), "\"no directives\"");
    assert_eq!(json("sprintf(NULL, 1)"), "null");
    assert!(err("sprintf('~s ~s', 'a')").contains("needs more arguments"));
    assert!(err("sprintf('~s', 'a', 'b')").contains("1 argument(s) left over"));
    assert!(err("sprintf('~q', 1)").contains("unknown control sequence ~q"));
    assert!(err("sprintf('abc~')").contains("lone ~"));
    assert!(err("sprintf('~f', 'x')").contains("~f needs a number"));
    assert!(err("sprintf('~B', 1.5)").contains("~B needs an integer"));
    assert!(err("sprintf('~.1B', 1)").contains("base of ~B must be 2 to 36"));
    assert!(err("sprintf('~c', -1)").contains("~c needs a character code"));
    assert!(err("sprintf('~99999999999s', 'a')").contains("above the limit"));
    assert!(err("sprintf('~*s', 9223372036854775807, 'a')").contains("above the limit"));
    assert!(err("sprintf('~.-1f', 1.0)").contains("precision must not be negative"));

    assert_eq!(json("pad('héllo', 7, 'right', 'é')"), "\"hélloéé\"");
    assert_eq!(json("pad('ab', 6, 'LEFT')"), "\"    ab\"");
    assert_eq!(json("pad('ab', 3, 'both', '-')"), "\"ab-\"");
    assert_eq!(json("pad('ab', -5)"), "\"ab\"");
    assert_eq!(json("pad(12, 4, 'leading', 0)"), "\"0012\"");
    assert_eq!(json("pad(NULL, 4)"), "null");
    assert_eq!(json("pad('a', NULL)"), "null");
    assert!(err("pad('a', 9223372036854775807)").contains("above the limit"));
    assert!(err("pad('a', 2000000)").contains("above the limit"));
    assert!(err("pad('a', 3, 'middle')").contains("unknown direction \"middle\""));
    assert!(err("pad('a', 3, 'left', 'xy')").contains("argument 4 must be one character"));
    assert!(err("pad('a', 3, 'left', '')").contains("argument 4 must be one character"));
    assert!(err("pad('a', 1.5)").contains("must be an integer"));
}

#[test]
fn string_results_are_bounded() {
    let big = "a".repeat(600_000);
    let msg = with_payload(&format!(r#"{{"s":"{big}"}}"#));
    let e = eval_on(&msg, "replace(s, 'a', 'bb')").unwrap_err();
    assert!(e.contains("above the limit of 1048576"), "{e}");
    assert!(eval_on(&msg, "replace(s, '', 'x')").unwrap_err().contains("above the limit"));
    assert!(eval_on(&msg, "regex_replace(s, 'a', 'bb')").unwrap_err().contains("above the limit"));
    assert!(eval_on(&msg, "regex_replace(s, '', 'x')").unwrap_err().contains("above the limit"));
    assert_eq!(eval_on(&msg, "length(replace(s, 'a', 'b'))").unwrap(), "600000");
    assert!(eval_on(&msg, "regex_replace(s, 'a+', '$0$0')").unwrap_err().contains("the result would be 1200000 bytes"));
    assert_eq!(eval_on(&msg, "length(regex_replace(s, 'a+', '$0'))").unwrap(), "600000");
    assert_eq!(json("replace('abc', '', '-')"), "\"-a-b-c-\"");
    assert_eq!(json("regex_replace('abc', 'x*', '-')"), "\"-a-b-c-\"");
}

#[test]
fn compression_round_trips_and_bombs_are_refused() {
    use std::io::Write as _;
    assert_eq!(json("json_decode(zip_uncompress(zip_compress(json_encode(items))))"), json("items"));
    assert_eq!(json("length(gunzip(gzip('')))"), "0");
    assert_eq!(json("gzip(NULL)"), "null");
    assert_eq!(json("unzip(NULL)"), "null");
    assert!(err("gunzip('not gzip')").starts_with("gunzip(): not valid gzip data"));
    assert!(err("zip_uncompress('x')").starts_with("zip_uncompress(): not valid zlib data"));
    assert!(err("unzip(zip_compress('abc'))").starts_with("unzip(): not valid raw deflate data"));
    // The raw bytes of a compressed payload.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(br#"{"t":21.5}"#).unwrap();
    let msg = message("t/gz", &e.finish().unwrap());
    let env = Env::default();
    assert_eq!(eval_with(&msg, &env, "json_decode(gunzip(*))").unwrap().to_json(), serde_json::json!({"t": 21.5}));
    // A bomb: 64 MiB of zeros in about 64 KiB.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 1 << 17, "{}", bomb.len());
    let msg = message("t/gz", &bomb);
    let e = eval_with(&msg, &env, "gunzip(*)").unwrap_err();
    assert_eq!(e, "gunzip(): the decompressed data is larger than the limit of 1048576 bytes");
    // Exactly at the limit is fine.
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&zeros).unwrap();
    let msg = message("t/zip", &e.finish().unwrap());
    assert_eq!(eval_with(&msg, &env, "length(unzip(*))").unwrap().to_json(), serde_json::json!(1 << 20));
}

#[test]
fn message_id_and_payload() {
    assert_eq!(json("messageId()"), "42");
    let mut msg = example_message();
    msg.meta.id = u64::MAX;
    assert_eq!(serde_json::to_string(&eval_with(&msg, &Env::default(), "messageId()").unwrap()).unwrap(), "18446744073709551615");
    assert_eq!(json("payload()"), serde_json::to_string(EXAMPLE_PAYLOAD).unwrap());
    assert_eq!(json("payload('UTF-8') = payload()"), "true");
    assert_eq!(json("payload(NULL)"), "null");
}
