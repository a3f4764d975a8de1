//! The compiled expression tree and its evaluation. Built once by the planner; evaluated per
//! record with no parsing and no name lookups.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::doc::Node;
use chrono::FixedOffset;
use smallvec::SmallVec;

use crate::error::EvalError;
use crate::message::Message;
use crate::rule::registry::FunctionDef;
use crate::topic::TopicInfo;
use crate::value::{Num, Value};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    /// An object key.
    Key(String),
    /// A 0-based array index.
    Index(usize),
}

/// Looks a path up in a JSON value; `None` when any step is missing.
pub fn lookup<'r, 'a>(mut v: &'r Node<'a>, path: &[Seg]) -> Option<&'r Node<'a>> {
    for seg in path {
        v = match (seg, v) {
            (Seg::Key(k), Node::Object(_)) => v.get(k)?,
            (Seg::Index(i), Node::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Parses a path as written in a double-quoted name: `devices[0].deviceName`,
/// `measurepoints.branchCurr[1]`.
pub fn parse_path(text: &str) -> Result<Vec<Seg>, String> {
    let mut out = Vec::new();
    for part in text.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && (out.is_empty() || rest.is_empty()) {
            return Err(format!("empty name in path `{text}`"));
        }
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while !rest.is_empty() {
            let close = rest.find(']').ok_or_else(|| format!("unclosed `[` in path `{text}`"))?;
            let idx: usize = rest[1..close].trim().parse().map_err(|_| format!("array index `{}` in path `{text}` is not a non-negative integer", &rest[1..close]))?;
            out.push(Seg::Index(idx));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("unexpected `{rest}` after `]` in path `{text}`"));
            }
        }
    }
    Ok(out)
}

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
}

impl<'a> Ctx<'a> {
    /// The context of one `FOREACH` element: the same message and record, with `item` bound.
    pub fn with_item<'b>(&'b self, item: &'b Value<'b>) -> Ctx<'b> {
        Ctx { msg: self.msg, info: self.info, record: self.record, now_ms: self.now_ms, env: self.env, item: Some(item) }
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

/// Arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>` or `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

/// A compiled LIKE pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LikePattern {
    toks: Vec<LikeTok>,
    case_insensitive: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum LikeTok {
    Char(char),
    One,
    Any,
}

impl LikePattern {
    /// Compiles `%` (any run) and `_` (one character); `escape` makes the next character literal.
    pub fn new(pattern: &str, escape: Option<char>, case_insensitive: bool) -> LikePattern {
        let mut toks = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let tok = match c {
                c if Some(c) == escape => LikeTok::Char(chars.next().unwrap_or(c)),
                '%' => LikeTok::Any,
                '_' => LikeTok::One,
                c if case_insensitive => LikeTok::Char(c.to_ascii_lowercase()),
                c => LikeTok::Char(c),
            };
            if !(tok == LikeTok::Any && toks.last() == Some(&LikeTok::Any)) {
                toks.push(tok);
            }
        }
        LikePattern { toks, case_insensitive }
    }

    /// Whether `text` matches (iterative wildcard matching with backtracking to the last `%`).
    pub fn matches(&self, text: &str) -> bool {
        let text: SmallVec<[char; 64]> = if self.case_insensitive { text.chars().map(|c| c.to_ascii_lowercase()).collect() } else { text.chars().collect() };
        let (mut p, mut t) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.toks.get(p) {
                Some(LikeTok::Any) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(LikeTok::One) => {
                    p += 1;
                    t += 1;
                }
                Some(LikeTok::Char(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.toks[p..].iter().all(|t| *t == LikeTok::Any)
    }
}

/// A compiled expression.
#[derive(Debug)]
pub enum Expr {
    /// A literal.
    Lit(Value<'static>),
    /// A field of the record, by path; `*` alone is the whole record.
    Field(Vec<Seg>),
    /// `*` as a function argument: the raw payload bytes.
    Payload,
    /// `- x`
    Neg(Box<Expr>),
    /// `NOT x`
    Not(Box<Expr>),
    /// Arithmetic.
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    /// Comparison.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `a || b`: string concatenation.
    Concat(Box<Expr>, Box<Expr>),
    /// `AND`, three-valued.
    And(Box<Expr>, Box<Expr>),
    /// `OR`, three-valued.
    Or(Box<Expr>, Box<Expr>),
    /// `IS [NOT] NULL`
    IsNull(Box<Expr>, bool),
    /// `x IS [NOT] TRUE` / `x IS [NOT] FALSE`: (whether x is the boolean `.1`) != `.2`; never
    /// NULL (NULL IS TRUE is false, NULL IS NOT TRUE is true).
    IsBool(Box<Expr>, bool, bool),
    /// `[a, b, …]`: an array of the values.
    Array(Vec<Expr>),
    /// A path into the current `FOREACH` element (empty: the element itself).
    Item(Vec<Seg>),
    /// `x [NOT] IN (…)`
    InList(Box<Expr>, Vec<Expr>, bool),
    /// `x [NOT] BETWEEN lo AND hi`
    Between(Box<Expr>, Box<Expr>, Box<Expr>, bool),
    /// `x [NOT] LIKE 'literal'`
    Like(Box<Expr>, LikePattern, bool),
    /// `x [NOT] LIKE <expression>` (pattern compiled per evaluation).
    LikeDyn(Box<Expr>, Box<Expr>, bool, bool),
    /// `CASE [operand] WHEN … THEN … [ELSE …] END`
    Case(Option<Box<Expr>>, Vec<(Expr, Expr)>, Option<Box<Expr>>),
    /// A function call.
    Call(&'static FunctionDef, Vec<Expr>),
}

type Res<'a> = Result<Value<'a>, EvalError>;

/// Evaluated function arguments.
pub type Args<'a> = SmallVec<[Value<'a>; 4]>;

impl Expr {
    /// Whether evaluating the expression reads the decoded record.
    pub fn reads_record(&self) -> bool {
        match self {
            Expr::Field(_) => true,
            Expr::Lit(_) | Expr::Payload | Expr::Item(_) => false,
            Expr::Neg(a) | Expr::Not(a) | Expr::IsNull(a, _) | Expr::IsBool(a, _, _) | Expr::Like(a, _, _) => a.reads_record(),
            Expr::Array(l) => l.iter().any(Expr::reads_record),
            Expr::Arith(_, a, b) | Expr::Cmp(_, a, b) | Expr::Concat(a, b) | Expr::And(a, b) | Expr::Or(a, b) | Expr::LikeDyn(a, b, _, _) => a.reads_record() || b.reads_record(),
            Expr::InList(a, l, _) => a.reads_record() || l.iter().any(Expr::reads_record),
            Expr::Between(a, b, c, _) => a.reads_record() || b.reads_record() || c.reads_record(),
            Expr::Case(o, w, e) => o.as_ref().is_some_and(|o| o.reads_record()) || w.iter().any(|(a, b)| a.reads_record() || b.reads_record()) || e.as_ref().is_some_and(|e| e.reads_record()),
            Expr::Call(f, args) => f.reads_record || args.iter().any(Expr::reads_record),
        }
    }

    /// Evaluates against one record.
    pub fn eval<'a>(&'a self, ctx: &Ctx<'a>) -> Res<'a> {
        match self {
            Expr::Lit(v) => Ok(borrow(v)),
            Expr::Field(path) => Ok(match ctx.record.and_then(|r| lookup(r, path)) {
                Some(n) => Value::from_node(n),
                None => Value::Null,
            }),
            Expr::Payload => Ok(Value::Bytes(Cow::Borrowed(&ctx.msg.payload[..]))),
            Expr::Neg(a) => negate(a.eval(ctx)?),
            Expr::Not(a) => Ok(match truth(&a.eval(ctx)?)? {
                Some(b) => Value::Bool(!b),
                None => Value::Null,
            }),
            Expr::Arith(op, a, b) => arith(*op, a.eval(ctx)?, b.eval(ctx)?),
            Expr::Cmp(op, a, b) => {
                let (x, y) = (a.eval(ctx)?, b.eval(ctx)?);
                Ok(compare(*op, &x, &y))
            }
            Expr::Concat(a, b) => {
                let (x, y) = (a.eval(ctx)?, b.eval(ctx)?);
                Ok(match (x.as_text(), y.as_text()) {
                    (Some(x), Some(y)) => Value::Str(Cow::Owned(format!("{x}{y}"))),
                    _ => Value::Null,
                })
            }
            Expr::And(a, b) => {
                let x = truth(&a.eval(ctx)?)?;
                if x == Some(false) {
                    return Ok(Value::Bool(false));
                }
                let y = truth(&b.eval(ctx)?)?;
                Ok(match (x, y) {
                    (_, Some(false)) => Value::Bool(false),
                    (Some(true), Some(true)) => Value::Bool(true),
                    _ => Value::Null,
                })
            }
            Expr::Or(a, b) => {
                let x = truth(&a.eval(ctx)?)?;
                if x == Some(true) {
                    return Ok(Value::Bool(true));
                }
                let y = truth(&b.eval(ctx)?)?;
                Ok(match (x, y) {
                    (_, Some(true)) => Value::Bool(true),
                    (Some(false), Some(false)) => Value::Bool(false),
                    _ => Value::Null,
                })
            }
            Expr::IsNull(a, negated) => Ok(Value::Bool(a.eval(ctx)?.is_null() != *negated)),
            Expr::IsBool(a, want, negated) => Ok(Value::Bool(matches!(a.eval(ctx)?, Value::Bool(b) if b == *want) != *negated)),
            Expr::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(item.eval(ctx)?.to_json());
                }
                Ok(Value::Json(Cow::Owned(serde_json::Value::Array(out))))
            }
            Expr::Item(path) => Ok(match ctx.item {
                Some(item) => item_path(item, path),
                None => Value::Null,
            }),
            Expr::InList(a, list, negated) => {
                let x = a.eval(ctx)?;
                if x.is_null() {
                    return Ok(Value::Null);
                }
                let mut saw_null = false;
                for item in list {
                    match x.sql_eq(&item.eval(ctx)?) {
                        Some(true) => return Ok(Value::Bool(!negated)),
                        None => saw_null = true,
                        Some(false) => {}
                    }
                }
                Ok(if saw_null { Value::Null } else { Value::Bool(*negated) })
            }
            Expr::Between(a, lo, hi, negated) => {
                let x = a.eval(ctx)?;
                let (lo, hi) = (lo.eval(ctx)?, hi.eval(ctx)?);
                Ok(match (x.sql_cmp(&lo), x.sql_cmp(&hi)) {
                    (Some(l), Some(h)) => Value::Bool((l != Ordering::Less && h != Ordering::Greater) != *negated),
                    _ => Value::Null,
                })
            }
            Expr::Like(a, pat, negated) => Ok(match a.eval(ctx)?.as_text() {
                Some(t) => Value::Bool(pat.matches(&t) != *negated),
                None => Value::Null,
            }),
            Expr::LikeDyn(a, p, negated, ci) => {
                let (x, p) = (a.eval(ctx)?, p.eval(ctx)?);
                Ok(match (x.as_text(), p.as_text()) {
                    (Some(t), Some(p)) => Value::Bool(LikePattern::new(&p, Some('\\'), *ci).matches(&t) != *negated),
                    _ => Value::Null,
                })
            }
            Expr::Case(operand, whens, otherwise) => {
                let subject = match operand {
                    Some(o) => Some(o.eval(ctx)?),
                    None => None,
                };
                for (cond, then) in whens {
                    let c = cond.eval(ctx)?;
                    let hit = match &subject {
                        Some(s) => s.sql_eq(&c) == Some(true),
                        None => truth(&c)? == Some(true),
                    };
                    if hit {
                        return then.eval(ctx);
                    }
                }
                match otherwise {
                    Some(e) => e.eval(ctx),
                    None => Ok(Value::Null),
                }
            }
            Expr::Call(f, args) => {
                let mut vals: Args<'a> = SmallVec::with_capacity(args.len());
                for a in args {
                    // Functions see payload arrays/objects as serde_json values.
                    vals.push(a.eval(ctx)?.materialize());
                }
                (f.imp)(ctx, vals).map_err(|e| EvalError(format!("{}(): {e}", f.name)))
            }
        }
    }
}

/// The value at `path` inside a `FOREACH` element, borrowed from it (NULL when missing).
fn item_path<'a>(item: &'a Value<'a>, path: &[Seg]) -> Value<'a> {
    if path.is_empty() {
        return borrow_value(item);
    }
    match item {
        Value::Doc(n) => lookup(n, path).map_or(Value::Null, Value::from_node),
        Value::Json(j) => {
            let mut v: &'a serde_json::Value = j.as_ref();
            for seg in path {
                let next = match seg {
                    Seg::Key(k) => v.get(k.as_str()),
                    Seg::Index(i) => v.get(*i),
                };
                match next {
                    Some(n) => v = n,
                    None => return Value::Null,
                }
            }
            Value::from_json(v)
        }
        _ => Value::Null,
    }
}

/// A value borrowing from `v` (no copy of its string, bytes or JSON).
pub fn borrow_value<'a>(v: &'a Value<'a>) -> Value<'a> {
    match v {
        Value::Str(s) => Value::Str(Cow::Borrowed(s.as_ref())),
        Value::Bytes(b) => Value::Bytes(Cow::Borrowed(b.as_ref())),
        Value::Json(j) => Value::Json(Cow::Borrowed(j.as_ref())),
        Value::Null => Value::Null,
        Value::Bool(b) => Value::Bool(*b),
        Value::Int(i) => Value::Int(*i),
        Value::UInt(u) => Value::UInt(*u),
        Value::Float(f) => Value::Float(*f),
        Value::Doc(n) => Value::Doc(n),
    }
}

/// Borrows a literal without copying its string or JSON.
pub fn borrow<'a>(v: &'a Value<'static>) -> Value<'a> {
    borrow_value(v)
}

fn truth(v: &Value<'_>) -> Result<Option<bool>, EvalError> {
    v.truth().map_err(EvalError)
}

/// Quotes a value for an error message, shortened.
pub fn quote(v: &Value<'_>) -> String {
    let s = match v {
        Value::Str(s) => format!("{:?}", s.as_ref()),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// Applies an arithmetic operator under the documented coercion rules: integers are exact over
/// the whole `i64`/`u64` range (computed in `i128`, an integer result when it fits in `i64` or
/// `u64`, else a float); any float operand makes a float. Never panics.
pub fn arith<'a>(op: ArithOp, x: Value<'a>, y: Value<'a>) -> Res<'a> {
    if x.is_null() || y.is_null() {
        return Ok(Value::Null);
    }
    let sym = match op {
        ArithOp::Add => "+",
        ArithOp::Sub => "-",
        ArithOp::Mul => "*",
        ArithOp::Div => "/",
        ArithOp::Mod => "%",
    };
    let (a, b) = match (x.as_number(), y.as_number()) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            let hint = if op == ArithOp::Add && (matches!(x, Value::Str(_)) || matches!(y, Value::Str(_))) { " (use concat() or || to join strings)" } else { "" };
            return Err(EvalError(format!("cannot apply {sym} to {} {} and {} {}{hint}", x.type_name(), quote(&x), y.type_name(), quote(&y))));
        }
    };
    if let (Some(a), Some(b)) = (a.to_i128(), b.to_i128()) {
        // Both are in [-2^63, 2^64): sums and differences fit in i128, products may not.
        let exact = match op {
            ArithOp::Add => a.checked_add(b),
            ArithOp::Sub => a.checked_sub(b),
            ArithOp::Mul => a.checked_mul(b),
            ArithOp::Div if b == 0 => return Err(EvalError("division by zero".into())),
            ArithOp::Div if a % b == 0 => Some(a / b),
            ArithOp::Div => return Ok(Value::Float(div_to_f64(a, b))),
            ArithOp::Mod if b == 0 => return Err(EvalError("modulo by zero".into())),
            ArithOp::Mod => Some(a % b),
        };
        return Ok(match exact {
            Some(r) => int_value(r),
            // Only a product of two 64-bit integers can leave i128.
            None => Value::Float(a as f64 * b as f64),
        });
    }
    let (a, b) = (a.to_f64(), b.to_f64());
    let r = match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div if b == 0.0 => return Err(EvalError("division by zero".into())),
        ArithOp::Div => a / b,
        ArithOp::Mod if b == 0.0 => return Err(EvalError("modulo by zero".into())),
        ArithOp::Mod => a % b,
    };
    Ok(Value::Float(r))
}

/// An exact integer result: `Int` or `UInt` when it fits, else the nearest float (the documented
/// overflow fallback).
pub fn int_value(r: i128) -> Value<'static> {
    Num::from_i128(r).map_or(Value::Float(r as f64), Num::into_value)
}

/// `a / b` (b ≠ 0, both within ±2^64) correctly rounded to the nearest float, so a quotient that
/// is representable comes out exactly.
fn div_to_f64(a: i128, b: i128) -> f64 {
    let negative = (a < 0) != (b < 0);
    let (n, d) = (a.unsigned_abs(), b.unsigned_abs());
    // Scale the dividend so that the quotient has at least 62 significant bits, then fold the
    // remainder into a sticky bit: one rounding (u128 → f64) then gives the correctly rounded
    // quotient, and the power-of-two scale is exact.
    let shift = n.leading_zeros().saturating_sub(1);
    let scaled = n << shift;
    let (q, r) = (scaled / d, scaled % d);
    let f = (q | u128::from(r != 0)) as f64 / 2f64.powi(shift as i32);
    if negative {
        -f
    } else {
        f
    }
}

/// Unary minus: exact for integers (`-(-2^63)` is the `u64` 2^63, `-(2^63)` the `i64` minimum),
/// a float below `-(2^63)`; floats negate. NULL gives NULL; a non-number is an error.
pub fn negate<'a>(v: Value<'a>) -> Res<'a> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    match v.as_number() {
        Some(Num::Float(f)) => Ok(Value::Float(-f)),
        Some(n) => Ok(int_value(-n.to_i128().unwrap_or(0))),
        None => Err(EvalError(format!("cannot negate {} {}", v.type_name(), quote(&v)))),
    }
}

/// Applies a comparison; NULL when the values are NULL or not comparable (`=`/`<>` on
/// different types are false/true).
pub fn compare(op: CmpOp, x: &Value<'_>, y: &Value<'_>) -> Value<'static> {
    match op {
        CmpOp::Eq => x.sql_eq(y).map_or(Value::Null, Value::Bool),
        CmpOp::NotEq => x.sql_eq(y).map_or(Value::Null, |b| Value::Bool(!b)),
        _ => match x.sql_cmp(y) {
            None => Value::Null,
            Some(o) => Value::Bool(match op {
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::LtEq => o != Ordering::Greater,
                CmpOp::Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        assert_eq!(parse_path("devices[0].deviceName").unwrap(), vec![Seg::Key("devices".into()), Seg::Index(0), Seg::Key("deviceName".into())]);
        assert_eq!(parse_path("measurepoints.branchCurr[1]").unwrap(), vec![Seg::Key("measurepoints".into()), Seg::Key("branchCurr".into()), Seg::Index(1)]);
        assert_eq!(parse_path("a[1][2]").unwrap(), vec![Seg::Key("a".into()), Seg::Index(1), Seg::Index(2)]);
        assert!(parse_path("a[x]").is_err());
        assert!(parse_path("a..b").is_err());
        assert!(parse_path("a[1").is_err());
    }

    #[test]
    fn like_patterns() {
        let p = LikePattern::new("dev%_1", None, false);
        assert!(p.matches("device_1"));
        assert!(p.matches("dev_1"));
        assert!(!p.matches("dev1"));
        assert!(LikePattern::new("%", None, false).matches(""));
        assert!(LikePattern::new("a\\%", Some('\\'), false).matches("a%"));
        assert!(!LikePattern::new("a\\%", Some('\\'), false).matches("ab"));
        assert!(LikePattern::new("ON%", None, true).matches("online"));
        assert!(LikePattern::new("%a%b%", None, false).matches("xxaxxbxx"));
    }

    fn num() -> impl proptest::strategy::Strategy<Value = Num> {
        use proptest::prelude::*;
        prop_oneof![
            any::<i64>().prop_map(Num::Int),
            (i64::MAX as u64 + 1..=u64::MAX).prop_map(Num::UInt),
            prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(-1), Just(0), Just(1)].prop_map(Num::Int),
            prop_oneof![Just(1u64 << 63), Just(u64::MAX)].prop_map(Num::UInt),
            any::<f64>().prop_map(Num::Float),
            (-1e19f64..2e19).prop_map(|f| Num::Float(f.trunc())),
        ]
    }

    proptest::proptest! {
        /// Integer arithmetic equals the exact i128 result whenever that fits in i64 or u64, and
        /// nothing panics for any operands.
        #[test]
        fn integer_arithmetic_is_exact(a in num(), b in num()) {
            for op in [ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div, ArithOp::Mod] {
                let got = arith(op, a.into_value(), b.into_value());
                let (Some(x), Some(y)) = (a.to_i128(), b.to_i128()) else { continue };
                let exact = match op {
                    ArithOp::Add => x.checked_add(y),
                    ArithOp::Sub => x.checked_sub(y),
                    ArithOp::Mul => x.checked_mul(y),
                    ArithOp::Div => (y != 0 && x % y == 0).then(|| x / y),
                    ArithOp::Mod => (y != 0).then(|| x % y),
                };
                if let Some(r) = exact.and_then(Num::from_i128) {
                    let got = got.map(|v| v.as_number()).unwrap_or(None);
                    proptest::prop_assert_eq!(got, Some(r), "{:?} {:?} {:?}", a, op, b);
                }
            }
            let _ = negate(a.into_value());
        }

        /// Int/float comparison agrees with exact i128 comparison for integral floats, and is
        /// antisymmetric.
        #[test]
        fn int_float_comparison_is_exact(a in num(), b in num()) {
            let ab = a.compare(&b);
            proptest::prop_assert_eq!(ab.map(Ordering::reverse), b.compare(&a));
            let exact = |n: Num| n.to_i128().or(match n {
                Num::Float(f) if f.fract() == 0.0 && f.abs() < 1e30 => Some(f as i128),
                _ => None,
            });
            if let (Some(x), Some(y)) = (exact(a), exact(b)) {
                proptest::prop_assert_eq!(ab, Some(x.cmp(&y)));
            }
        }
    }

    #[test]
    fn inexact_division_is_correctly_rounded() {
        // Below 2^53 both operands are exact floats and IEEE division rounds correctly.
        let mut x: i64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = i128::from(x >> 11);
            let b = i128::from((x % 1_000_003).max(1)) * if x & 1 == 0 { 1 } else { -1 };
            if a % b != 0 {
                assert_eq!(div_to_f64(a, b), a as f64 / b as f64, "{a} / {b}");
            }
        }
        assert_eq!(div_to_f64(1, 3), 1.0 / 3.0);
        assert_eq!(div_to_f64(-1, 18_446_744_073_709_551_615), -1.0 / 18_446_744_073_709_551_615.0);
        // (2^64 - 1) / 2 = 2^63 - 0.5: rounds to 2^63.
        assert_eq!(div_to_f64(18_446_744_073_709_551_615, 2), 9_223_372_036_854_775_808.0);
        // 2^63 + 1 over 2^11: exactly representable, though 2^63 + 1 is not a float.
        assert_eq!(div_to_f64((1 << 63) + 1, 1 << 11), 4_503_599_627_370_496.0 + 1.0 / 2048.0);
    }

    #[test]
    fn arithmetic_keeps_integers() {
        assert!(matches!(arith(ArithOp::Add, Value::Int(i64::MAX - 1), Value::Int(1)).unwrap(), Value::Int(i64::MAX)));
        assert!(matches!(arith(ArithOp::Div, Value::Int(6), Value::Int(3)).unwrap(), Value::Int(2)));
        assert!(matches!(arith(ArithOp::Div, Value::Int(7), Value::Int(2)).unwrap(), Value::Float(f) if f == 3.5));
        assert!(matches!(arith(ArithOp::Mul, Value::str("2.5"), Value::Int(2)).unwrap(), Value::Float(f) if f == 5.0));
        assert!(arith(ArithOp::Div, Value::Int(1), Value::Int(0)).is_err());
        assert!(matches!(arith(ArithOp::Add, Value::Null, Value::Int(1)).unwrap(), Value::Null));
        let e = arith(ArithOp::Add, Value::str("a"), Value::Int(1)).unwrap_err();
        assert_eq!(e.0, "cannot apply + to string \"a\" and int 1 (use concat() or || to join strings)");
    }
}
