//! Functions about the message (topic, payload, id, properties) and its device (names, tags,
//! status, gateway).

use std::borrow::Cow;

use serde_json::{Map, Value as Json};

use super::args::{arg, int_arg, text_arg, R};
use crate::rule::ctx::{Args, Ctx};
use crate::value::{base64_encode, quote, Value};

fn opt_str<'a>(s: Option<&'a str>) -> Value<'a> {
    s.map_or(Value::Null, Value::str)
}

pub(crate) fn device_name<'a>(ctx: &Ctx<'a>, _: Args<'a>) -> R<'a> {
    Ok(opt_str(ctx.device_name()))
}

pub(crate) fn product_key<'a>(ctx: &Ctx<'a>, _: Args<'a>) -> R<'a> {
    Ok(opt_str(ctx.product_key()))
}

pub(crate) fn device_key<'a>(ctx: &Ctx<'a>, _: Args<'a>) -> R<'a> {
    Ok(opt_str(ctx.device_key()))
}

pub(crate) fn message_id<'a>(ctx: &Ctx<'a>, _: Args<'a>) -> R<'a> {
    let id = ctx.msg.meta.id;
    Ok(i64::try_from(id).map_or(Value::UInt(id), Value::Int))
}

pub(crate) fn payload<'a>(ctx: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let bytes: &'a [u8] = &ctx.msg.payload;
    let encoding = if args.is_empty() {
        Cow::Borrowed("utf-8")
    } else {
        match text_arg(&args, 0) {
            Some(e) => Cow::Owned(e.to_ascii_lowercase()),
            None => return Ok(Value::Null),
        }
    };
    Ok(match encoding.as_ref() {
        "utf-8" | "utf8" => match std::str::from_utf8(bytes) {
            Ok(s) => Value::Str(Cow::Borrowed(s)),
            Err(e) => return Err(format!("the payload is not valid UTF-8 (at byte {}); use payload('base64') or payload('hex')", e.valid_up_to())),
        },
        "base64" => Value::Str(Cow::Owned(base64_encode(bytes))),
        "hex" => Value::Str(Cow::Owned(hex::encode(bytes))),
        _ => return Err(format!("unknown text encoding {}; use 'utf-8', 'base64' or 'hex'", quote(arg(&args, 0)))),
    })
}

pub(crate) fn topic<'a>(ctx: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let t: &'a str = &ctx.msg.topic;
    if args.is_empty() {
        return Ok(Value::str(t));
    }
    let Some(n) = int_arg(&args, 0)? else {
        return Ok(Value::Null);
    };
    let level = n.checked_sub(1).and_then(|i| usize::try_from(i).ok()).and_then(|i| t.strip_prefix('/').unwrap_or(t).split('/').nth(i));
    Ok(opt_str(level))
}

pub(crate) fn topic_kind<'a>(ctx: &Ctx<'a>, _: Args<'a>) -> R<'a> {
    Ok(Value::str(ctx.info.kind.name()))
}

/// Adds property `name` with value `v` to `out`, Alibaba style: a struct (object) value becomes
/// one `<name>_<member>` field per member; any other value is `name` itself.
fn flat_property(out: &mut Map<String, Json>, name: &str, v: &crate::doc::Node<'_>) {
    match v {
        crate::doc::Node::Object(members) => {
            for (k, m) in members {
                out.insert(format!("{name}_{k}"), m.to_json());
            }
        }
        other => {
            out.insert(name.to_string(), other.to_json());
        }
    }
}

pub(crate) fn thing_property_flat_map<'a>(ctx: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let items = ctx.record.and_then(|r| r.get("items"));
    let mut out = Map::new();
    if args.is_empty() {
        // Every property of the post, in payload order.
        if let Some(crate::doc::Node::Object(props)) = items {
            for (name, p) in props {
                if let Some(v) = p.get("value") {
                    flat_property(&mut out, name, v);
                }
            }
        }
        return Ok(Value::Json(Cow::Owned(Json::Object(out))));
    }
    for (i, a) in args.iter().enumerate() {
        let name = match a {
            Value::Null => continue,
            Value::Str(s) => s.as_ref(),
            other => return Err(format!("argument {} must be a property name, got {} {}", i + 1, other.type_name(), quote(other))),
        };
        if let Some(v) = items.and_then(|it| it.get(name)).and_then(|p| p.get("value")) {
            flat_property(&mut out, name, v);
        }
    }
    Ok(Value::Json(Cow::Owned(Json::Object(out))))
}

pub(crate) fn attribute<'a>(ctx: &Ctx<'a>, args: Args<'a>) -> R<'a> {
    let (Some(key), Some(pk), Some(dn)) = (text_arg(&args, 0), ctx.product_key(), ctx.device_name()) else {
        return Ok(Value::Null);
    };
    Ok(ctx.env.devices.attribute(pk, dn, &key).map_or(Value::Null, |s| Value::Str(Cow::Owned(s))))
}

pub(crate) fn device_status<'a>(ctx: &Ctx<'a>, _: Args<'a>) -> R<'a> {
    let (Some(pk), Some(dn)) = (ctx.product_key(), ctx.device_name()) else {
        return Ok(Value::Null);
    };
    Ok(ctx.env.devices.status(pk, dn).map_or(Value::Null, |s| Value::Str(Cow::Owned(s))))
}

pub(crate) fn gateway<'a>(ctx: &Ctx<'a>, _: Args<'a>) -> R<'a> {
    let (Some(pk), Some(dn)) = (ctx.product_key(), ctx.device_name()) else {
        return Ok(Value::Null);
    };
    Ok(match ctx.env.devices.gateway(pk, dn) {
        None => Value::Null,
        Some((gpk, gdn)) => {
            let mut m = Map::new();
            m.insert("productKey".into(), Json::String(gpk));
            m.insert("deviceName".into(), Json::String(gdn));
            Value::Json(Cow::Owned(Json::Object(m)))
        }
    })
}
