//! What planning produces: the plan of a rule query, its select items and `FOREACH`, and the
//! positioned SQL error.

use std::borrow::Cow;

use sqlparser::tokenizer::Span;

use crate::error::EvalError;
use crate::rule::ctx::Ctx;
use crate::rule::expr::Expr;
use crate::rule::functions::aggregate::AggKind;
use crate::rule::functions::analytic::AnalyticKind;
use crate::topic::TopicFilter;
use crate::value::Value;

/// An error in the SQL text, at a 1-based line and column of the SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlError {
    /// Line in the SQL text.
    pub line: u64,
    /// Column in the SQL text.
    pub col: u64,
    /// What is wrong.
    pub message: String,
    /// A suggestion.
    pub hint: Option<String>,
}

/// One item of the select list.
#[derive(Debug)]
pub enum SelectItem {
    /// `*`: every field of the record.
    Star,
    /// `expr [AS name]`.
    Named {
        /// The output field name.
        name: String,
        /// The expression.
        expr: Expr,
    },
    /// A flattening function without alias (`thingPropertyFlatMap(…)`): its object's fields are
    /// merged into the output.
    Flatten(Expr),
}

/// A planned rule query.
#[derive(Debug)]
pub struct Plan {
    /// The FROM topic filter.
    pub filter: TopicFilter,
    /// The select list (for `FOREACH`, the `DO` items; empty without `DO`).
    pub select: Vec<SelectItem>,
    /// The WHERE condition.
    pub where_: Option<Expr>,
    /// `FOREACH … [DO …] [INCASE …]`: one output per array element instead of one per record.
    pub foreach: Option<Foreach>,
    /// `GROUP BY …, <window> [HAVING …]`: a windowed rule (its select items read the window's
    /// slots).
    pub window: Option<Windowed>,
    /// The analytic calls of a rule without a window, by slot ([`Expr::Agg`]).
    pub analytics: Vec<AnalyticCall>,
}

/// One analytic call of a rule: computed for every record, before WHERE.
#[derive(Debug)]
pub struct AnalyticCall {
    /// The function.
    pub kind: AnalyticKind,
    /// Its arguments.
    pub args: Vec<Expr>,
    /// `OVER (PARTITION BY …)`; `None`: the device.
    pub partition: Option<Vec<Expr>>,
}

/// The compiled `FOREACH <array> [AS alias] [DO <items>] [INCASE <cond>]` of an EMQX-style rule.
/// WHERE filters the record first; then every element of the array that INCASE keeps makes one
/// output: the `DO` items evaluated with the element bound to `alias`, or without `DO` the
/// element itself.
#[derive(Debug)]
pub struct Foreach {
    /// The array expression.
    pub array: Expr,
    /// The name the element is bound to in `DO` and `INCASE` (`item` without `AS`).
    pub alias: String,
    /// Whether `DO` was given (its items are the plan's select list); without it each element
    /// is the output as it is.
    pub has_do: bool,
    /// The `INCASE` condition on each element.
    pub incase: Option<Expr>,
}

impl Foreach {
    /// The elements of the array for one record: NULL (a missing field) gives none; a value that
    /// is not an array is an error.
    pub fn elements<'a>(&'a self, ctx: &Ctx<'a>) -> Result<Vec<Value<'a>>, EvalError> {
        use serde_json::Value as Json;
        Ok(match self.array.eval(ctx)? {
            Value::Null => Vec::new(),
            Value::Json(Cow::Borrowed(Json::Array(a))) => a.iter().map(Value::from_json).collect(),
            Value::Json(Cow::Owned(Json::Array(a))) => a.into_iter().map(Value::from_owned_json).collect(),
            Value::Doc(crate::doc::Node::Array(a)) => a.iter().map(Value::from_node).collect(),
            other => return Err(EvalError(format!("FOREACH needs an array, got {} {}", other.type_name(), crate::value::quote(&other)))),
        })
    }

    /// Whether INCASE keeps the element bound in `ctx` (always, without INCASE). Like WHERE,
    /// only true keeps it; a value that is not a truth value is an error.
    pub fn keep(&self, ctx: &Ctx<'_>) -> Result<bool, EvalError> {
        match &self.incase {
            None => Ok(true),
            Some(c) => Ok(c.eval(ctx)?.truth().map_err(|e| EvalError(format!("INCASE: {e}")))? == Some(true)),
        }
    }
}

impl Plan {
    /// Whether the output field names are known only at run time (`*`, flattening, `FOREACH`
    /// without `DO`).
    pub fn dynamic_fields(&self) -> bool {
        self.foreach.as_ref().is_some_and(|f| !f.has_do) || self.select.iter().any(|s| !matches!(s, SelectItem::Named { .. }))
    }

    /// Whether evaluating the rule reads the decoded payload.
    pub fn reads_record(&self) -> bool {
        self.where_.as_ref().is_some_and(Expr::reads_record)
            || self.window.as_ref().is_some_and(Windowed::reads_record)
            || self.analytics.iter().any(|a| a.args.iter().chain(a.partition.iter().flatten()).any(Expr::reads_record))
            || self.foreach.as_ref().is_some_and(|f| f.array.reads_record() || f.incase.as_ref().is_some_and(Expr::reads_record))
            || self.select.iter().any(|s| match s {
                SelectItem::Star => true,
                SelectItem::Named { expr, .. } | SelectItem::Flatten(expr) => expr.reads_record(),
            })
    }

    /// The fixed output names (those of `Named` items).
    pub fn output_names(&self) -> Vec<&str> {
        self.select
            .iter()
            .filter_map(|s| match s {
                SelectItem::Named { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }
}

pub(super) type PResult<T> = Result<T, SqlError>;

pub(super) fn err_at(span: Span, message: impl Into<String>) -> SqlError {
    SqlError { line: span.start.line.max(1), col: span.start.column.max(1), message: message.into(), hint: None }
}

/// A window, with its sizes in ms (or records, for a count window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowSpec {
    /// `TUMBLINGWINDOW(unit, size)`: back-to-back windows `[k·size, (k+1)·size)`.
    Tumbling {
        /// Length.
        size: i64,
    },
    /// `HOPPINGWINDOW(unit, size, hop)`: windows of `size` starting every `hop`.
    Hopping {
        /// Length.
        size: i64,
        /// Distance between starts.
        hop: i64,
    },
    /// `SLIDINGWINDOW(unit, size)`: on every record, the records of the last `size` up to it.
    Sliding {
        /// Length.
        size: i64,
    },
    /// `SESSIONWINDOW(unit, max, timeout)`: records closer than `timeout` to each other, for
    /// at most `max`.
    Session {
        /// Longest session.
        max: i64,
        /// Gap that ends a session.
        timeout: i64,
    },
    /// `SILENCEWINDOW(unit, duration[, COMEBACK])`: one emission when a group has sent nothing
    /// for `duration` of processing time (and, with `COMEBACK`, one when it sends again).
    Silence {
        /// How long a group must be silent.
        duration: i64,
        /// Whether the first record after a silence is emitted too.
        comeback: bool,
    },
    /// `COUNTWINDOW(n[, hop])`: every `hop` records (default `n`), the last `n`.
    Count {
        /// Records per window.
        n: u64,
        /// Records between emissions.
        hop: u64,
    },
}

/// How long a silence window remembers a silent group by default (7 days).
pub const SILENCE_MEMORY_MS: i64 = 7 * 86_400_000;

impl WindowSpec {
    /// How long after its last record a key's windows stay open by default (ms of processing
    /// time): one window length (a count window: one minute).
    pub fn default_idle_ms(&self) -> i64 {
        match *self {
            WindowSpec::Tumbling { size } | WindowSpec::Hopping { size, .. } | WindowSpec::Sliding { size } => size,
            WindowSpec::Session { timeout, .. } => timeout,
            WindowSpec::Count { .. } => 60_000,
            // A silent group is remembered (to report its comeback) for a week.
            WindowSpec::Silence { .. } => SILENCE_MEMORY_MS,
        }
    }
}

/// One aggregate call of a windowed rule: its accumulator kind and its argument expressions,
/// evaluated per record.
#[derive(Debug)]
pub struct AggCall {
    /// The aggregate.
    pub kind: AggKind,
    /// Its arguments (none for `count(*)`).
    pub args: Vec<Expr>,
}

/// What makes a rule windowed.
#[derive(Debug)]
pub struct Windowed {
    /// The window.
    pub spec: WindowSpec,
    /// The GROUP BY expressions other than the window: the group key (none: one group).
    pub keys: Vec<Expr>,
    /// The slots the select list and HAVING read ([`Expr::Agg`]).
    pub aggs: Vec<AggCall>,
    /// HAVING, on the emitted window.
    pub having: Option<Expr>,
}

impl Windowed {
    /// Whether a record's evaluation reads the decoded record.
    pub fn reads_record(&self) -> bool {
        self.keys.iter().any(Expr::reads_record) || self.aggs.iter().any(|a| a.args.iter().any(Expr::reads_record))
    }
}
