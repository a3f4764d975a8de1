//! Aggregate functions: what a window keeps per aggregate call ([`Acc`]), how a record's
//! argument values update it, and the value it finishes with. The catalog lists them (category
//! `aggregate`) with signatures, docs and examples like the scalar functions; the planner turns
//! their calls in a windowed rule into slots the window fills ([`crate::rule::window`]).
//!
//! Exactness: `sum`, `min`, `max`, `first_value`, `last_value`, `collect` and `deduplicate`
//! keep 64-bit integers exact. `sum` of integers is computed in `i128` and is an integer while it
//! fits `i64` or `u64` (like `+`), else the nearest float; any float operand makes the sum a
//! float. `avg`, `stddev*`, `var*` and `percentile_cont` are floats.
//!
//! Accumulators are plain data (serde), so window state can be stored and restored.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::rule::ctx::{Args, Ctx};
use crate::value::{int_value, Num, Value};

/// The implementation of an aggregate's catalog entry: never reached in a compiled rule (the
/// planner turns aggregate calls into window slots, and rejects them elsewhere).
pub(crate) fn outside_window<'a>(_: &Ctx<'a>, _: Args<'a>) -> Result<Value<'a>, String> {
    Err("an aggregate is computed by a window (GROUP BY … <window>)".into())
}

/// `window_start()`.
pub(crate) fn window_start<'a>(ctx: &Ctx<'a>, _: Args<'a>) -> Result<Value<'a>, String> {
    Ok(ctx.window.and_then(|w| w.start_ms).map_or(Value::Null, Value::Int))
}

/// `window_end()`.
pub(crate) fn window_end<'a>(ctx: &Ctx<'a>, _: Args<'a>) -> Result<Value<'a>, String> {
    Ok(ctx.window.and_then(|w| w.end_ms).map_or(Value::Null, Value::Int))
}

/// `silence()`.
pub(crate) fn silence<'a>(ctx: &Ctx<'a>, _: Args<'a>) -> Result<Value<'a>, String> {
    Ok(ctx.window.and_then(|w| w.silence).map_or(Value::Null, Value::str))
}

/// `event_time()`.
pub(crate) fn event_time<'a>(ctx: &Ctx<'a>, _: Args<'a>) -> Result<Value<'a>, String> {
    Ok(ctx.window.and_then(|w| w.event_ms).map_or(Value::Null, Value::Int))
}

/// The values a `collect`, `deduplicate`, `count(DISTINCT …)` or percentile keeps at most per
/// window; more are counted in the result's window but not kept (bad input must not grow state
/// without bound).
pub const KEPT_VALUES_MAX: usize = 10_000;

/// Which aggregate a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    /// `count(*)` (every record) or `count(x)` (non-NULL x).
    Count,
    /// `count(DISTINCT x)`.
    CountDistinct,
    /// `sum(x)`.
    Sum,
    /// `avg(x)`.
    Avg,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
    /// `first_value(x)`.
    First,
    /// `last_value(x)`.
    Last,
    /// `collect(x)`.
    Collect,
    /// `deduplicate(x)`.
    Deduplicate,
    /// `stddev(x)`: population standard deviation.
    Stddev,
    /// `stddevs(x)`: sample standard deviation.
    Stddevs,
    /// `var(x)`: population variance.
    Var,
    /// `vars(x)`: sample variance.
    Vars,
    /// `percentile_cont(x, p)`.
    PercentileCont,
    /// `percentile_disc(x, p)`.
    PercentileDisc,
}

/// The state of one aggregate call in one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Acc {
    /// Records (or non-NULL values) counted.
    Count {
        /// How many.
        n: u64,
    },
    /// Distinct non-NULL values.
    Distinct {
        /// Their canonical texts.
        seen: Vec<String>,
        /// Distinct values beyond [`KEPT_VALUES_MAX`] are not told apart: counted here.
        over: u64,
    },
    /// A sum.
    Sum {
        /// The integer part, exact (stored as text: JSON numbers stop at 64 bits).
        #[serde(with = "i128_text")]
        int: i128,
        /// The float part, once a float was added.
        float: Option<f64>,
        /// Whether any non-NULL value was added.
        any: bool,
    },
    /// Count, mean and sum of squared deviations (Welford): avg, stddev, var.
    Moments {
        /// Values.
        n: u64,
        /// Their mean.
        mean: f64,
        /// Sum of squared deviations from the mean.
        m2: f64,
    },
    /// The least or greatest value so far.
    Extreme {
        /// The value.
        v: Option<Json>,
    },
    /// The first or last value.
    Pick {
        /// The value (`None` before any record).
        v: Option<Json>,
    },
    /// Values kept in arrival order (`collect`, `deduplicate`, percentiles).
    Values {
        /// The values.
        vs: Vec<Json>,
        /// The percentile asked for (percentiles only; the last record's).
        p: Option<f64>,
    },
}

impl AggKind {
    /// The aggregate of a catalog name (`distinct` for `count(DISTINCT …)`).
    pub fn of(name: &str, distinct: bool) -> Option<AggKind> {
        Some(match name {
            "count" if distinct => AggKind::CountDistinct,
            "count" => AggKind::Count,
            "sum" => AggKind::Sum,
            "avg" => AggKind::Avg,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            "first_value" => AggKind::First,
            "last_value" => AggKind::Last,
            "collect" => AggKind::Collect,
            "deduplicate" => AggKind::Deduplicate,
            "stddev" => AggKind::Stddev,
            "stddevs" => AggKind::Stddevs,
            "var" => AggKind::Var,
            "vars" => AggKind::Vars,
            "percentile_cont" => AggKind::PercentileCont,
            "percentile_disc" => AggKind::PercentileDisc,
            _ => return None,
        })
    }

    /// Checks a record's arguments without keeping them: the error `update` would give (a
    /// non-number to a numeric aggregate, a bad percentile), so a record is refused before it
    /// touches any window.
    pub fn check(self, args: &[Json]) -> Result<(), String> {
        match self {
            AggKind::Sum | AggKind::Avg | AggKind::Stddev | AggKind::Stddevs | AggKind::Var | AggKind::Vars | AggKind::PercentileCont | AggKind::PercentileDisc => self.update(&mut self.start(), args),
            _ => Ok(()),
        }
    }

    /// A fresh accumulator.
    pub fn start(self) -> Acc {
        match self {
            AggKind::Count => Acc::Count { n: 0 },
            AggKind::CountDistinct => Acc::Distinct { seen: Vec::new(), over: 0 },
            AggKind::Sum => Acc::Sum { int: 0, float: None, any: false },
            AggKind::Avg | AggKind::Stddev | AggKind::Stddevs | AggKind::Var | AggKind::Vars => Acc::Moments { n: 0, mean: 0.0, m2: 0.0 },
            AggKind::Min | AggKind::Max => Acc::Extreme { v: None },
            AggKind::First | AggKind::Last => Acc::Pick { v: None },
            AggKind::Collect | AggKind::Deduplicate | AggKind::PercentileCont | AggKind::PercentileDisc => Acc::Values { vs: Vec::new(), p: None },
        }
    }

    /// Adds one record's argument values (`args[0]` is the aggregated value; `count(*)` has
    /// none). A value of the wrong type is an error naming it; NULL is skipped (except by
    /// `count(*)`, `first_value`, `last_value` and `collect`).
    pub fn update(self, acc: &mut Acc, args: &[Json]) -> Result<(), String> {
        let x = args.first().unwrap_or(&Json::Null);
        match (self, acc) {
            (AggKind::Count, Acc::Count { n }) => {
                if args.is_empty() || !x.is_null() {
                    *n += 1;
                }
            }
            (AggKind::CountDistinct, Acc::Distinct { seen, over }) => {
                if !x.is_null() {
                    let key = canonical(x);
                    if !seen.contains(&key) {
                        if seen.len() < KEPT_VALUES_MAX {
                            seen.push(key);
                        } else {
                            *over += 1;
                        }
                    }
                }
            }
            (AggKind::Sum, Acc::Sum { int, float, any }) => match number(x, "sum")? {
                None => {}
                Some(Num::Int(i)) => {
                    *any = true;
                    *int += i128::from(i);
                }
                Some(Num::UInt(u)) => {
                    *any = true;
                    *int += i128::from(u);
                }
                Some(Num::Float(f)) => {
                    *any = true;
                    *float = Some(float.unwrap_or(0.0) + f);
                }
            },
            (AggKind::Avg | AggKind::Stddev | AggKind::Stddevs | AggKind::Var | AggKind::Vars, Acc::Moments { n, mean, m2 }) => {
                if let Some(v) = number(x, self.name())? {
                    let v = v.to_f64();
                    *n += 1;
                    let d = v - *mean;
                    *mean += d / *n as f64;
                    *m2 += d * (v - *mean);
                }
            }
            (AggKind::Min | AggKind::Max, Acc::Extreme { v }) => {
                if !x.is_null() {
                    let better = match v {
                        None => true,
                        Some(old) => {
                            let ord = total_cmp(x, old);
                            if self == AggKind::Min {
                                ord == Ordering::Less
                            } else {
                                ord == Ordering::Greater
                            }
                        }
                    };
                    if better {
                        *v = Some(x.clone());
                    }
                }
            }
            (AggKind::First, Acc::Pick { v }) => {
                if v.is_none() {
                    *v = Some(x.clone());
                }
            }
            (AggKind::Last, Acc::Pick { v }) => *v = Some(x.clone()),
            (AggKind::Collect, Acc::Values { vs, .. }) => {
                if vs.len() < KEPT_VALUES_MAX {
                    vs.push(x.clone());
                }
            }
            (AggKind::Deduplicate, Acc::Values { vs, .. }) => {
                if !x.is_null() && vs.len() < KEPT_VALUES_MAX && !vs.iter().any(|v| canonical(v) == canonical(x)) {
                    vs.push(x.clone());
                }
            }
            (AggKind::PercentileCont | AggKind::PercentileDisc, Acc::Values { vs, p }) => {
                let q = match args.get(1) {
                    Some(q) => number(q, self.name())?.map(Num::to_f64),
                    None => None,
                };
                match q {
                    Some(q) if (0.0..=1.0).contains(&q) => *p = Some(q),
                    Some(q) => return Err(format!("{}(): the percentile must be between 0 and 1, got {q}", self.name())),
                    None => return Err(format!("{}(): the percentile is NULL", self.name())),
                }
                if let Some(v) = number(x, self.name())? {
                    if vs.len() < KEPT_VALUES_MAX {
                        vs.push(v.into_value().to_json());
                    }
                }
            }
            (kind, acc) => return Err(format!("internal: accumulator {acc:?} does not belong to {kind:?}")),
        }
        Ok(())
    }

    /// The aggregate's value for the window (NULL for an empty one, except counts, which are 0).
    pub fn finish(self, acc: &Acc) -> Value<'static> {
        match (self, acc) {
            (_, Acc::Count { n }) => int_value(i128::from(*n)),
            (_, Acc::Distinct { seen, over }) => int_value(seen.len() as i128 + i128::from(*over)),
            (_, Acc::Sum { any: false, .. }) => Value::Null,
            (_, Acc::Sum { int, float: None, .. }) => int_value(*int),
            (_, Acc::Sum { int, float: Some(f), .. }) => Value::Float(*int as f64 + f),
            (_, Acc::Moments { n: 0, .. }) => Value::Null,
            (AggKind::Avg, Acc::Moments { mean, .. }) => Value::Float(*mean),
            (AggKind::Var, Acc::Moments { n, m2, .. }) => Value::Float(m2 / *n as f64),
            (AggKind::Stddev, Acc::Moments { n, m2, .. }) => Value::Float((m2 / *n as f64).sqrt()),
            (AggKind::Vars | AggKind::Stddevs, Acc::Moments { n: 1, .. }) => Value::Null,
            (AggKind::Vars, Acc::Moments { n, m2, .. }) => Value::Float(m2 / (*n - 1) as f64),
            (AggKind::Stddevs, Acc::Moments { n, m2, .. }) => Value::Float((m2 / (*n - 1) as f64).sqrt()),
            (_, Acc::Moments { .. }) => Value::Null,
            (_, Acc::Extreme { v }) | (_, Acc::Pick { v }) => v.clone().map_or(Value::Null, Value::from_owned_json),
            (AggKind::PercentileCont | AggKind::PercentileDisc, Acc::Values { vs, p }) => percentile(self == AggKind::PercentileCont, vs, p.unwrap_or(0.5)),
            (_, Acc::Values { vs, .. }) => Value::Json(std::borrow::Cow::Owned(Json::Array(vs.clone()))),
        }
    }

    /// The function's name.
    pub fn name(self) -> &'static str {
        match self {
            AggKind::Count => "count",
            AggKind::CountDistinct => "count(DISTINCT)",
            AggKind::Sum => "sum",
            AggKind::Avg => "avg",
            AggKind::Min => "min",
            AggKind::Max => "max",
            AggKind::First => "first_value",
            AggKind::Last => "last_value",
            AggKind::Collect => "collect",
            AggKind::Deduplicate => "deduplicate",
            AggKind::Stddev => "stddev",
            AggKind::Stddevs => "stddevs",
            AggKind::Var => "var",
            AggKind::Vars => "vars",
            AggKind::PercentileCont => "percentile_cont",
            AggKind::PercentileDisc => "percentile_disc",
        }
    }
}

/// A number argument: NULL is `None`; a numeric string counts; anything else is an error.
fn number(x: &Json, f: &str) -> Result<Option<Num>, String> {
    if x.is_null() {
        return Ok(None);
    }
    Value::from_json(x).as_number().map(Some).ok_or_else(|| format!("{f}(): expected a number, got {} {}", type_of(x), short(x)))
}

/// The order of min and max: SQL comparison where values compare (numbers exactly across int
/// and float, strings by code point), else by type: boolean < number < string < array < object.
fn total_cmp(a: &Json, b: &Json) -> Ordering {
    let rank = |x: &Json| match x {
        Json::Null => 0,
        Json::Bool(_) => 1,
        Json::Number(_) => 2,
        Json::String(_) => 3,
        Json::Array(_) => 4,
        Json::Object(_) => 5,
    };
    match (a, b) {
        (Json::Number(_), Json::Number(_)) | (Json::String(_), Json::String(_)) | (Json::Bool(_), Json::Bool(_)) => Value::from_json(a).sql_cmp(&Value::from_json(b)).unwrap_or(Ordering::Equal),
        _ => rank(a).cmp(&rank(b)),
    }
}

fn type_of(x: &Json) -> &'static str {
    Value::from_json(x).type_name()
}

fn short(x: &Json) -> String {
    crate::value::quote(&Value::from_json(x))
}

/// The text two values share when they are the same for `DISTINCT`: JSON text, with a float
/// that holds an integer written as that integer (so 1 and 1.0 are one value).
fn canonical(x: &Json) -> String {
    match x {
        Json::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The `p` percentile of numbers: continuous (interpolated, a float) or discrete (the first
/// value whose cumulative share reaches `p`, as it was).
fn percentile(cont: bool, vs: &[Json], p: f64) -> Value<'static> {
    if vs.is_empty() {
        return Value::Null;
    }
    let mut sorted: Vec<&Json> = vs.iter().collect();
    sorted.sort_by(|a, b| Value::from_json(a).sql_cmp(&Value::from_json(b)).unwrap_or(Ordering::Equal));
    if cont {
        let pos = p * (sorted.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        let f = |i: usize| Value::from_json(sorted[i]).as_f64().unwrap_or(f64::NAN);
        Value::Float(f(lo) + (f(hi) - f(lo)) * (pos - lo as f64))
    } else {
        let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        Value::from_owned_json(sorted[i].clone())
    }
}

/// `i128` as a decimal string in serde.
mod i128_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        let t = String::deserialize(d)?;
        t.parse().map_err(serde::de::Error::custom)
    }
}

/// Runs `kind` over `rows` (each the argument values of one record): the catalog examples and
/// the tests use it.
pub fn fold(kind: AggKind, rows: &[Vec<Json>]) -> Result<Value<'static>, String> {
    let mut acc = kind.start();
    for r in rows {
        kind.update(&mut acc, r)?;
    }
    Ok(kind.finish(&acc))
}

/// The rows the catalog's aggregate examples run over: the field `x` of five records.
pub const EXAMPLE_ROWS: &str = "[3, 1, 4, 1, 5]";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(kind: AggKind, xs: &[Json]) -> Json {
        let rows: Vec<Vec<Json>> = xs.iter().map(|x| vec![x.clone()]).collect();
        fold(kind, &rows).unwrap().to_json()
    }

    #[test]
    fn sums_of_integers_stay_exact_at_the_64_bit_edges() {
        assert_eq!(run(AggKind::Sum, &[json!(i64::MAX), json!(1), json!(-1)]), json!(i64::MAX));
        assert_eq!(run(AggKind::Sum, &[json!(u64::MAX), json!(-1)]), json!(u64::MAX - 1));
        assert_eq!(run(AggKind::Sum, &[json!(i64::MIN), json!(i64::MIN)]), json!(-1.8446744073709552e19), "beyond i64: the documented float fallback");
        assert_eq!(run(AggKind::Sum, &[json!(9007199254740993_i64), json!(0)]), json!(9007199254740993_i64), "above 2^53 stays exact");
        assert_eq!(run(AggKind::Sum, &[json!(1), json!(0.5)]), json!(1.5));
        assert_eq!(run(AggKind::Sum, &[json!(null)]), json!(null));
        assert_eq!(run(AggKind::Max, &[json!(9007199254740993_i64), json!(9007199254740992.0)]), json!(9007199254740993_i64));
        assert_eq!(run(AggKind::Min, &[json!(u64::MAX), json!(-1), json!(null)]), json!(-1));
    }

    #[test]
    fn statistics_follow_their_definitions() {
        let xs = [json!(2), json!(4), json!(4), json!(4), json!(5), json!(5), json!(7), json!(9)];
        assert_eq!(run(AggKind::Avg, &xs), json!(5.0));
        assert_eq!(run(AggKind::Var, &xs), json!(4.0));
        assert_eq!(run(AggKind::Stddev, &xs), json!(2.0));
        assert_eq!(run(AggKind::Vars, &xs), json!(32.0 / 7.0));
        assert_eq!(run(AggKind::Stddevs, &[json!(1)]), json!(null), "one value has no sample deviation");
        assert_eq!(run(AggKind::Count, &[json!(1), json!(null)]), json!(1));
        assert_eq!(fold(AggKind::Count, &[vec![], vec![]]).unwrap().to_json(), json!(2), "count(*) counts rows");
        assert_eq!(run(AggKind::CountDistinct, &[json!(1), json!(1.0), json!("1"), json!(null)]), json!(2));
        assert_eq!(run(AggKind::Deduplicate, &[json!(1), json!(2), json!(1), json!(null)]), json!([1, 2]));
        assert_eq!(run(AggKind::Collect, &[json!(1), json!(null)]), json!([1, null]));
        assert_eq!(run(AggKind::First, &[json!(null), json!(2)]), json!(null));
        assert_eq!(run(AggKind::Last, &[json!(1), json!(2)]), json!(2));
    }

    #[test]
    fn percentiles() {
        let rows = |p: f64| (1..=4).map(|i| vec![json!(i * 10), json!(p)]).collect::<Vec<_>>();
        assert_eq!(fold(AggKind::PercentileCont, &rows(0.5)).unwrap().to_json(), json!(25.0));
        assert_eq!(fold(AggKind::PercentileDisc, &rows(0.5)).unwrap().to_json(), json!(20));
        assert_eq!(fold(AggKind::PercentileDisc, &rows(1.0)).unwrap().to_json(), json!(40));
        assert!(fold(AggKind::PercentileCont, &rows(1.5)).unwrap_err().contains("between 0 and 1"));
    }

    #[test]
    fn wrong_types_are_errors_and_state_stays_bounded() {
        assert_eq!(fold(AggKind::Sum, &[vec![json!("x")]]).unwrap_err(), "sum(): expected a number, got string \"x\"");
        assert_eq!(fold(AggKind::Max, &[vec![json!(1)], vec![json!({"a": 1})], vec![json!("9")]]).unwrap().to_json(), json!({"a": 1}), "mixed types order by type");
        assert_eq!(fold(AggKind::Min, &[vec![json!("a")], vec![json!(true)], vec![json!(2)]]).unwrap().to_json(), json!(true));
        let mut acc = AggKind::Collect.start();
        for i in 0..KEPT_VALUES_MAX + 5 {
            AggKind::Collect.update(&mut acc, &[json!(i)]).unwrap();
        }
        assert!(matches!(&acc, Acc::Values { vs, .. } if vs.len() == KEPT_VALUES_MAX));
        let mut acc = AggKind::CountDistinct.start();
        for i in 0..KEPT_VALUES_MAX + 5 {
            AggKind::CountDistinct.update(&mut acc, &[json!(i)]).unwrap();
        }
        assert_eq!(AggKind::CountDistinct.finish(&acc).to_json(), json!(KEPT_VALUES_MAX + 5));
    }

    #[test]
    fn accumulators_round_trip_through_serde() {
        let mut acc = AggKind::Sum.start();
        AggKind::Sum.update(&mut acc, &[json!(u64::MAX)]).unwrap();
        let text = serde_json::to_string(&acc).unwrap();
        let back: Acc = serde_json::from_str(&text).unwrap();
        assert_eq!(back, acc);
    }
}
