//! The compiled expression tree and its evaluation. Built once by the planner; evaluated per
//! record with no parsing and no name lookups.

use std::borrow::Cow;
use std::cmp::Ordering;

use smallvec::SmallVec;

use crate::doc::Node;
use crate::error::EvalError;
use crate::rule::ctx::FunctionDef;
use crate::rule::functions::aggregate::AggKind;
use crate::rule::functions::analytic::AnalyticKind;
use crate::value::Value;
use sqlparser::tokenizer::Span;

mod like;
mod ops;

pub use crate::rule::ctx::{Args, Ctx, DeviceLookup, Env, NoDevices};
pub use crate::value::int_value;
pub use like::LikePattern;
pub use ops::{arith, compare, negate, ArithOp, CmpOp};

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
    /// An aggregate call as written (`avg(x)`, `count(DISTINCT x)`): the planner turns it into
    /// an [`Expr::Agg`] slot of a windowed rule, and rejects it anywhere else (at `span`).
    Aggregate(AggKind, Vec<Expr>, Span),
    /// An analytic call as written (`lag(x) OVER (PARTITION BY k)`): the planner turns it into
    /// an [`Expr::Agg`] slot the engine fills per record.
    Analytic(AnalyticKind, Vec<Expr>, Option<Vec<Expr>>, Span),
    /// The value of a windowed rule's aggregate call number `.0` when its window is emitted, or
    /// of a rule's analytic call number `.0` for the current record.
    Agg(usize),
}

type Res<'a> = Result<Value<'a>, EvalError>;

impl Expr {
    /// Whether evaluating the expression reads the decoded record.
    pub fn reads_record(&self) -> bool {
        match self {
            Expr::Field(_) => true,
            Expr::Lit(_) | Expr::Payload | Expr::Item(_) | Expr::Agg(_) => false,
            Expr::Aggregate(_, args, _) => args.iter().any(Expr::reads_record),
            Expr::Analytic(_, args, part, _) => args.iter().chain(part.iter().flatten()).any(Expr::reads_record),
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
            Expr::Aggregate(kind, _, _) => Err(EvalError(format!("{}(): an aggregate is computed by a window (GROUP BY … <window>)", kind.name()))),
            Expr::Analytic(kind, _, _, _) => Err(EvalError(format!("{}(): an analytic function is computed by the engine", kind.name()))),
            Expr::Agg(i) => Ok(ctx.window.and_then(|w| w.aggs.get(*i)).map_or(Value::Null, borrow_value)),
        }
    }

    /// The expressions directly inside this one.
    pub fn children_mut(&mut self) -> Vec<&mut Expr> {
        match self {
            Expr::Lit(_) | Expr::Field(_) | Expr::Payload | Expr::Item(_) | Expr::Agg(_) => Vec::new(),
            Expr::Neg(a) | Expr::Not(a) | Expr::IsNull(a, _) | Expr::IsBool(a, _, _) | Expr::Like(a, _, _) => vec![&mut **a],
            Expr::Array(l) | Expr::Call(_, l) | Expr::Aggregate(_, l, _) => l.iter_mut().collect(),
            Expr::Analytic(_, l, p, _) => l.iter_mut().chain(p.iter_mut().flatten()).collect(),
            Expr::Arith(_, a, b) | Expr::Cmp(_, a, b) | Expr::Concat(a, b) | Expr::And(a, b) | Expr::Or(a, b) | Expr::LikeDyn(a, b, _, _) => vec![&mut **a, &mut **b],
            Expr::InList(a, l, _) => std::iter::once(&mut **a).chain(l.iter_mut()).collect(),
            Expr::Between(a, b, c, _) => vec![&mut **a, &mut **b, &mut **c],
            Expr::Case(o, w, e) => {
                let mut out: Vec<&mut Expr> = Vec::new();
                if let Some(o) = o {
                    out.push(&mut **o);
                }
                for (a, b) in w {
                    out.push(a);
                    out.push(b);
                }
                if let Some(e) = e {
                    out.push(&mut **e);
                }
                out
            }
        }
    }

    /// Whether `pred` holds for this expression or any inside it.
    pub fn any(&mut self, pred: &dyn Fn(&Expr) -> bool) -> bool {
        pred(self) || self.children_mut().into_iter().any(|c| c.any(pred))
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
}
