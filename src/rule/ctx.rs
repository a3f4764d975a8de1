//! What every part of the rule compiler shares: the evaluation context ([`Ctx`]) of one record,
//! the settings behind it ([`Env`], [`DeviceLookup`]), and the shape of a function of the
//! language ([`FunctionDef`], [`Args`], [`FnImpl`], [`Example`]). The expression tree, the
//! function library and the catalog all build on this file; it imports none of them.

use chrono::FixedOffset;
use smallvec::SmallVec;

use crate::doc::Node;
use crate::message::Message;
use crate::topic::TopicInfo;
use crate::value::Value;

/// Device facts the rules may read (`attribute()`, device status, gateway). The device registry
/// provides them; without one, every lookup is NULL.
pub trait DeviceLookup: Send + Sync {
    /// The device's tag `key`.
    fn attribute(&self, product_key: &str, device: &str, key: &str) -> Option<String>;
    /// `"online"` / `"offline"`, when known.
    fn status(&self, product_key: &str, device: &str) -> Option<String>;
    /// The device's gateway as `(productKey, deviceName)`, when it has one.
    fn gateway(&self, product_key: &str, device: &str) -> Option<(String, String)>;
}

/// The lookup used when no device registry is configured.
pub struct NoDevices;

impl DeviceLookup for NoDevices {
    fn attribute(&self, _: &str, _: &str, _: &str) -> Option<String> {
        None
    }
    fn status(&self, _: &str, _: &str) -> Option<String> {
        None
    }
    fn gateway(&self, _: &str, _: &str) -> Option<(String, String)> {
        None
    }
}

/// Settings shared by all evaluations.
pub struct Env {
    /// The time zone of `timestamp()` (UTC by default).
    pub tz: FixedOffset,
    /// Device facts.
    pub devices: Box<dyn DeviceLookup>,
}

impl Default for Env {
    fn default() -> Self {
        Env { tz: FixedOffset::east_opt(0).expect("UTC"), devices: Box::new(NoDevices) }
    }
}

/// What an expression is evaluated against: one record of one message.
pub struct Ctx<'a> {
    /// The message.
    pub msg: &'a Message,
    /// The message topic's recognised parts.
    pub info: &'a TopicInfo<'a>,
    /// The decoded record (the payload, or one integration entry); `None` if not JSON.
    pub record: Option<&'a Node<'a>>,
    /// The evaluation clock, ms since the epoch.
    pub now_ms: i64,
    /// Shared settings.
    pub env: &'a Env,
    /// The element a `FOREACH` is at (`item` or its alias); `None` outside `FOREACH`.
    pub item: Option<&'a Value<'a>>,
    /// A windowed rule's view: the record's event time, or (when a window is emitted) its
    /// bounds and aggregate values. `None` for stateless rules.
    pub window: Option<&'a WindowView<'a>>,
}

/// What a windowed rule's expressions see besides the record (see [`Ctx::window`]).
#[derive(Debug, Default)]
pub struct WindowView<'a> {
    /// The aggregate values of the window being emitted, by slot (empty per record).
    pub aggs: &'a [Value<'static>],
    /// The window's start, ms since the epoch (when one is emitted).
    pub start_ms: Option<i64>,
    /// The window's end (exclusive).
    pub end_ms: Option<i64>,
    /// The record's event time (per record).
    pub event_ms: Option<i64>,
    /// A silence window's emission: `silent` or `back`.
    pub silence: Option<&'a str>,
}

impl<'a> Ctx<'a> {
    /// The context of one `FOREACH` element: the same message and record, with `item` bound.
    pub fn with_item<'b>(&'b self, item: &'b Value<'b>) -> Ctx<'b> {
        Ctx { msg: self.msg, info: self.info, record: self.record, now_ms: self.now_ms, env: self.env, item: Some(item), window: self.window }
    }

    /// The device name: from the topic, else the record's `deviceName` or `deviceKey`.
    pub fn device_name(&self) -> Option<&'a str> {
        self.info.device_name.or_else(|| self.record_str("deviceName")).or_else(|| self.record_str("deviceKey"))
    }

    /// The device key: the record's `deviceKey`, else the topic's device name.
    pub fn device_key(&self) -> Option<&'a str> {
        self.record_str("deviceKey").or(self.info.device_name)
    }

    /// The product key: from the topic, else the record's `productKey`.
    pub fn product_key(&self) -> Option<&'a str> {
        self.info.product_key.or_else(|| self.record_str("productKey"))
    }

    fn record_str(&self, key: &str) -> Option<&'a str> {
        self.record?.get(key)?.as_str()
    }
}

/// Evaluated function arguments.
pub type Args<'a> = SmallVec<[Value<'a>; 4]>;

/// A function implementation: evaluated arguments in, a value or an error message out.
/// It must never panic on message data.
pub type FnImpl = for<'a> fn(&Ctx<'a>, Args<'a>) -> Result<Value<'a>, String>;

/// A documented example: `expr` evaluated against the example message (see
/// [`EXAMPLE_TOPIC`](crate::rule::catalog::EXAMPLE_TOPIC),
/// [`EXAMPLE_PAYLOAD`](crate::rule::catalog::EXAMPLE_PAYLOAD),
/// [`EXAMPLE_NOW_MS`](crate::rule::catalog::EXAMPLE_NOW_MS)) gives `result`.
#[derive(Debug)]
pub struct Example {
    /// A SQL expression.
    pub expr: &'static str,
    /// The expected result as JSON text, or `type:<name>` when only the type is fixed
    /// (for `rand()`, `newuuid()`).
    pub result: &'static str,
}

/// A function of the rule language.
#[derive(Debug)]
pub struct FunctionDef {
    /// The name, case-sensitive, as in Alibaba IoT / EMQX.
    pub name: &'static str,
    /// Group in the reference (math, string, bit, hash, compress, time, json, type, message,
    /// device).
    pub category: &'static str,
    /// `name(arg: type, …) -> type`.
    pub signature: &'static str,
    /// What it does, including NULL and error behaviour.
    pub doc: &'static str,
    /// Minimum number of arguments.
    pub min_args: usize,
    /// Maximum number of arguments (`usize::MAX` for variadic).
    pub max_args: usize,
    /// Whether it reads the decoded record (so the payload must be JSON).
    pub reads_record: bool,
    /// Whether, in a SELECT list without an alias, its object result is merged into the output
    /// (`thingPropertyFlatMap`).
    pub flattens: bool,
    /// Whether it is an aggregate (`count`, `avg` …): usable only in a windowed rule's select
    /// list and HAVING, where the window computes it (its examples run over
    /// [`EXAMPLE_ROWS`](crate::rule::functions::aggregate::EXAMPLE_ROWS)).
    pub aggregate: bool,
    /// Whether it is an analytic function (`lag`, `changed` …): computed per partition, before
    /// WHERE (its examples run over the same rows, giving the last row's value).
    pub analytic: bool,
    /// Examples, run as tests.
    pub examples: &'static [Example],
    /// The implementation.
    pub imp: FnImpl,
}

impl FunctionDef {
    /// "1 argument", "1 to 2 arguments", "any number of arguments"…
    pub fn arity_text(&self) -> String {
        let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
        match (self.min_args, self.max_args) {
            (0, usize::MAX) => "any number of arguments".into(),
            (a, usize::MAX) => format!("at least {a} {}", plural(a)),
            (a, b) if a == b => format!("{a} {}", plural(a)),
            (a, b) => format!("{a} to {b} arguments"),
        }
    }
}
