//! Evaluation of one rule on one record: WHERE, then FOREACH or the select list, then the
//! actions rendered into output records.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value as Json;
use smallvec::SmallVec;

use crate::doc::Node;
use crate::engine::types::{Stage, FOREACH_MAX_ELEMENTS, FOREACH_MAX_OUTPUT_BYTES};
use crate::engine::window::{Closed, WINDOW_HEADER};
use crate::error::EvalError;
use crate::flow::OutputRecord;
use crate::jsonw;
use crate::message::Message;
use crate::rule::ctx::{Env, WindowView};
use crate::rule::expr::Ctx;
use crate::rule::plan::{Foreach, SelectItem};
use crate::rule::template::{valid_kafka_topic, Template};
use crate::rule::{Rule, WindowRule};
use crate::topic::TopicInfo;
use crate::value::Value;

/// A record's `SELECT *` output, serialized once for all the rules of its message that have one.
#[derive(Clone, Debug)]
pub(crate) struct Star {
    /// The record comes from [`Node::parse`] of the payload (see [`crate::engine::input::Records::parsed`]).
    pub(crate) parsed: bool,
    /// The output, once a rule wrote it.
    pub(crate) bytes: Option<Vec<u8>>,
}

/// Evaluates one rule on one record: `Ok(true)` when it produced output. `star` caches the
/// record serialized whole (a `SELECT *` output) for the other rules of the message.
pub(crate) fn eval_rule<'a>(rule: &'a Rule, ctx: &Ctx<'a>, star: &mut Star, out: &mut Vec<OutputRecord>) -> Result<bool, (Stage, EvalError)> {
    if !passes_where(rule, ctx)? {
        return Ok(false);
    }
    match &rule.foreach {
        Some(each) => eval_foreach(rule, each, ctx, star, out),
        None => select_output(rule, ctx, star, out),
    }
}

/// Whether the record passes the rule's WHERE (true without one).
pub(crate) fn passes_where<'a>(rule: &'a Rule, ctx: &Ctx<'a>) -> Result<bool, (Stage, EvalError)> {
    if let Some(w) = &rule.where_ {
        let v = w.eval(ctx).map_err(|e| (Stage::Where, e))?;
        return match v.truth() {
            Ok(t) => Ok(t == Some(true)),
            Err(e) => Err((Stage::Where, EvalError(e))),
        };
    }
    Ok(true)
}

/// Evaluates HAVING and the select list of a closed window and emits its output, with the
/// `sluice-window` header naming it: `Ok(false)` when HAVING keeps it back.
pub(crate) fn window_output(rule: &Rule, w: &WindowRule, closed: &Closed, env: &Env, now_ms: i64, out: &mut Vec<OutputRecord>) -> Result<bool, (Stage, EvalError)> {
    let msg = Message::new(closed.topic.clone(), Vec::new());
    let info = TopicInfo::parse(&msg.topic);
    let view = WindowView { aggs: &closed.values, start_ms: Some(closed.start), end_ms: Some(closed.end), event_ms: None, silence: closed.kind };
    let ctx = Ctx { msg: &msg, info: &info, record: None, now_ms, env, item: None, window: Some(&view) };
    if let Some(h) = &w.plan.having {
        match h.eval(&ctx).map_err(|e| (Stage::Select, EvalError(format!("HAVING: {}", e.0))))?.truth() {
            Ok(Some(true)) => {}
            Ok(_) => return Ok(false),
            Err(e) => return Err((Stage::Select, EvalError(format!("HAVING: {e}")))),
        }
    }
    let before = out.len();
    select_output(rule, &ctx, &mut Star { parsed: false, bytes: None }, out)?;
    let id = format!("{{\"start\":{},\"end\":{},\"key\":{}}}", closed.start, closed.end, closed.key);
    for r in &mut out[before..] {
        r.headers.push((WINDOW_HEADER.to_string(), id.clone()));
    }
    Ok(true)
}

/// `FOREACH`: one output per element of the array that INCASE keeps (the DO items evaluated with
/// the element bound, or the element itself without DO). `Ok(false)` when no element made an
/// output; on a failure, no output of the record is kept.
fn eval_foreach<'a>(rule: &'a Rule, each: &'a Foreach, ctx: &Ctx<'a>, star: &mut Star, out: &mut Vec<OutputRecord>) -> Result<bool, (Stage, EvalError)> {
    let start = out.len();
    let result = (|| {
        let mut any = false;
        let elements = each.elements(ctx).map_err(|e| (Stage::Select, e))?;
        if elements.len() > FOREACH_MAX_ELEMENTS {
            return Err((Stage::Select, EvalError(format!("FOREACH over {} elements: at most {FOREACH_MAX_ELEMENTS} per record", elements.len()))));
        }
        let (mut bytes, mut counted) = (0usize, start);
        for element in &elements {
            bytes += out[counted..].iter().map(|r| r.value.len()).sum::<usize>();
            counted = out.len();
            if bytes > FOREACH_MAX_OUTPUT_BYTES {
                return Err((Stage::Select, EvalError(format!("FOREACH outputs of one record exceed {FOREACH_MAX_OUTPUT_BYTES} bytes"))));
            }
            let ctx = ctx.with_item(element);
            if !each.keep(&ctx).map_err(|e| (Stage::Select, e))? {
                continue;
            }
            if each.has_do {
                select_output(rule, &ctx, star, out)?;
            } else {
                let mut value = Vec::with_capacity(128);
                jsonw::write_value(&mut value, element).map_err(|e| (Stage::Select, EvalError(format!("cannot serialize output: {e}"))))?;
                let lookup = |name: &str| {
                    let field = match element {
                        Value::Doc(n) => n.get(name).map(Value::from_node),
                        Value::Json(j) => j.get(name).map(Value::from_json),
                        _ => None,
                    };
                    template_field(name, field)
                };
                emit(rule, value, lookup, out)?;
            }
            any = true;
        }
        Ok(any)
    })();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Evaluates the select list on one record (or FOREACH element) and emits its output.
fn select_output<'a>(rule: &'a Rule, ctx: &Ctx<'a>, star: &mut Star, out: &mut Vec<OutputRecord>) -> Result<bool, (Stage, EvalError)> {
    // `SELECT *` alone: the record is the output, serialized as it is.
    if let ([SelectItem::Star], Some(record @ Node::Object(_))) = (rule.select.as_slice(), ctx.record) {
        let value = match &star.bytes {
            Some(v) => v.clone(),
            None => {
                let mut v = Vec::with_capacity(ctx.msg.payload.len() + 16);
                let written = if star.parsed { jsonw::write_parsed_node(&mut v, record) } else { jsonw::write_node(&mut v, record) };
                written.map_err(|e| (Stage::Select, EvalError(format!("cannot serialize output: {e}"))))?;
                star.bytes.insert(v).clone()
            }
        };
        let lookup = |name: &str| template_field(name, record.get(name).map(Value::from_node));
        return emit(rule, value, lookup, out).map(|()| true);
    }
    let mut fields: OutFields<'a> = SmallVec::new();
    for item in &rule.select {
        match item {
            SelectItem::Named { name, expr } => {
                let v = expr.eval(ctx).map_err(|e| (Stage::Select, e))?;
                set_field(&mut fields, Cow::Borrowed(name.as_str()), v, rule.dynamic_fields);
            }
            SelectItem::Star => match ctx.record {
                Some(Node::Object(m)) => {
                    for (k, v) in m {
                        set_field(&mut fields, Cow::Borrowed(k.as_ref()), Value::from_node(v), true);
                    }
                }
                Some(other) => return Err((Stage::Select, EvalError(format!("SELECT * needs a JSON object payload, got {}", Value::from_node(other).type_name())))),
                None => return Err((Stage::Select, EvalError("SELECT * needs a JSON object payload".into()))),
            },
            SelectItem::Flatten(expr) => match expr.eval(ctx).map_err(|e| (Stage::Select, e))? {
                Value::Json(Cow::Borrowed(Json::Object(m))) => {
                    for (k, v) in m {
                        set_field(&mut fields, Cow::Borrowed(k.as_str()), Value::from_json(v), true);
                    }
                }
                Value::Json(Cow::Owned(Json::Object(m))) => {
                    for (k, v) in m {
                        set_field(&mut fields, Cow::Owned(k), Value::from_owned_json(v), true);
                    }
                }
                Value::Doc(Node::Object(m)) => {
                    for (k, v) in m {
                        set_field(&mut fields, Cow::Borrowed(k.as_ref()), Value::from_node(v), true);
                    }
                }
                Value::Null => {}
                other => return Err((Stage::Select, EvalError(format!("expected an object to flatten, got {}", other.type_name())))),
            },
        }
    }

    let mut value = Vec::with_capacity(256);
    jsonw::write_fields(&mut value, &fields[..]).map_err(|e| (Stage::Select, EvalError(format!("cannot serialize output: {e}"))))?;
    let lookup = |name: &str| -> Result<String, String> {
        match fields.iter().rev().find(|(k, _)| k == name) {
            Some((_, v)) => v.as_text().map(Cow::into_owned).ok_or_else(|| format!("template field `{name}` is null")),
            None => Err(format!("template field `{name}` is not in the output")),
        }
    };
    emit(rule, value, lookup, out)?;
    Ok(true)
}

/// A template field's text, from the field of a whole-record output (`SELECT *`, or a FOREACH
/// element): an error when it is NULL or missing.
fn template_field(name: &str, field: Option<Value<'_>>) -> Result<String, String> {
    match field {
        Some(Value::Null) => Err(format!("template field `{name}` is null")),
        Some(v) => Ok(v.as_text().map(Cow::into_owned).unwrap_or_default()),
        None => Err(format!("template field `{name}` is not in the output")),
    }
}

/// Renders the rule's actions for one output value and appends the records; on any failure
/// nothing is appended.
fn emit(rule: &Rule, value: Vec<u8>, lookup: impl Fn(&str) -> Result<String, String>, out: &mut Vec<OutputRecord>) -> Result<(), (Stage, EvalError)> {
    let render = |t: &Template| t.render(&lookup).map_err(|e| (Stage::Action, EvalError(format!("template `{}`: {e}", t.source))));
    let start = out.len();
    let mut value = Some(value);
    let last = rule.actions.len().saturating_sub(1);
    let rendered = (|| {
        for (n, action) in rule.actions.iter().enumerate() {
            // A fixed topic was checked when the rule compiled, and is shared.
            let topic = match &action.topic.fixed {
                Some(t) => t.clone(),
                None => {
                    let topic = render(&action.topic)?;
                    if !valid_kafka_topic(&topic) {
                        return Err((Stage::Action, EvalError(format!("target topic `{topic}` (from `{}`) is not a valid Kafka topic name", action.topic.source))));
                    }
                    Arc::from(topic)
                }
            };
            let key = action.key.as_ref().map(render).transpose()?;
            let mut headers = Vec::with_capacity(action.headers.len());
            for (h, t) in &action.headers {
                headers.push((h.clone(), render(t)?));
            }
            // The last action takes the serialized value; earlier ones copy it.
            let v = if n == last { value.take().unwrap_or_default() } else { value.clone().unwrap_or_default() };
            out.push(OutputRecord { rule: rule.name.clone(), topic, key, headers, value: v, is_error: false });
        }
        Ok(())
    })();
    if rendered.is_err() {
        out.truncate(start);
    }
    rendered
}

/// The fields of one output, in order (on the stack for the usual handful).
type OutFields<'a> = SmallVec<[(Cow<'a, str>, Value<'a>); 8]>;

/// Adds a field; with `replace`, an existing field of the same name is overwritten in place
/// (so `SELECT *, upper(x) AS x` replaces `x`).
fn set_field<'a>(fields: &mut OutFields<'a>, name: Cow<'a, str>, v: Value<'a>, replace: bool) {
    if replace {
        if let Some(slot) = fields.iter_mut().find(|(k, _)| *k == name) {
            slot.1 = v;
            return;
        }
    }
    fields.push((name, v));
}
