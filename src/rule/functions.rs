//! The function library (Alibaba IoT data-forwarding functions, plus what EMQX users expect).
//! Each entry of [`FUNCTIONS`] carries its signature, doc and examples; the registry binds calls
//! through this table.

use std::borrow::Cow;

use crate::rule::expr::{Args, Ctx};
use crate::rule::registry::{Example, FunctionDef};
use crate::value::Value;

type R<'a> = Result<Value<'a>, String>;

/// Takes argument `i` as a number (`None` for NULL).
fn num_arg(args: &Args<'_>, i: usize) -> Result<Option<f64>, String> {
    match &args[i] {
        Value::Null => Ok(None),
        v => v.as_f64().map(Some).ok_or_else(|| format!("argument {} must be a number, got {} {}", i + 1, v.type_name(), crate::rule::expr::quote(v))),
    }
}

/// Takes argument `i` as text (`None` for NULL).
fn text_arg<'v>(args: &'v Args<'_>, i: usize) -> Option<Cow<'v, str>> {
    args[i].as_text()
}

fn abs<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(match &args[0] {
        Value::Int(i) => i.checked_abs().map_or(Value::Float((*i as f64).abs()), Value::Int),
        _ => num_arg(&args, 0)?.map_or(Value::Null, |x| Value::Float(x.abs())),
    })
}

fn concat<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let mut s = String::new();
    for a in &args {
        if let Some(t) = a.as_text() {
            s.push_str(&t);
        }
    }
    Ok(Value::Str(Cow::Owned(s)))
}

fn device_name<'a>(ctx: &Ctx<'a>, _: Args<'a>) -> R<'a> {
    Ok(ctx.device_name().map_or(Value::Null, Value::str))
}

fn lower<'a>(_: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    Ok(text_arg(&args, 0).map_or(Value::Null, |t| Value::Str(Cow::Owned(t.to_lowercase()))))
}

/// Every function, in reference order.
pub static FUNCTIONS: &[FunctionDef] = &[
    FunctionDef {
        name: "abs",
        category: "math",
        signature: "abs(x: number) -> number",
        doc: "Absolute value. Integers stay integers. NULL gives NULL.",
        min_args: 1,
        max_args: 1,
        reads_record: false,
        flattens: false,
        examples: &[Example { expr: "abs(-3)", result: "3" }, Example { expr: "abs(-1.5)", result: "1.5" }],
        imp: abs,
    },
    FunctionDef {
        name: "concat",
        category: "string",
        signature: "concat(s1: any, s2: any, …) -> string",
        doc: "Joins the text of its arguments; NULL arguments are skipped.",
        min_args: 1,
        max_args: usize::MAX,
        reads_record: false,
        flattens: false,
        examples: &[Example { expr: "concat('dev', '-', 1)", result: "\"dev-1\"" }],
        imp: concat,
    },
    FunctionDef {
        name: "deviceName",
        category: "device",
        signature: "deviceName() -> string",
        doc: "The device name: from the topic, else the record's deviceName or deviceKey (integration entries).",
        min_args: 0,
        max_args: 0,
        reads_record: false,
        flattens: false,
        examples: &[Example { expr: "deviceName()", result: "\"deviceName1234\"" }],
        imp: device_name,
    },
    FunctionDef {
        name: "lower",
        category: "string",
        signature: "lower(s: string) -> string",
        doc: "Lower case.",
        min_args: 1,
        max_args: 1,
        reads_record: false,
        flattens: false,
        examples: &[Example { expr: "lower('AbC')", result: "\"abc\"" }],
        imp: lower,
    },
];
