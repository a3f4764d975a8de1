//! Analytic functions: per-partition memory of earlier records, usable in any rule without a
//! window (eKuiper's `lag`, `latest`, `changed_col`, `had_changed`). The partition is the device
//! (productKey + deviceName, or the entry's deviceKey) unless `OVER (PARTITION BY …)` says
//! otherwise. Every analytic call of a rule is computed for every record its topic filter
//! matches, before WHERE, so `WHERE changed(x)` sees every record; each call has its own memory.
//!
//! The memory is plain data (serde), like the window accumulators.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::rule::ctx::{Args, Ctx};
use crate::value::{json_eq, Value};

/// Which analytic function a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnalyticKind {
    /// `lag(x[, n[, default]])`.
    Lag,
    /// `latest(x[, default])`.
    Latest,
    /// `changed(x)`.
    Changed,
    /// `had_changed(ignore_null, x, …)`.
    HadChanged,
}

/// What a call remembers for one partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum History {
    /// The last values (at most n), oldest first.
    Lag {
        /// Values.
        vs: VecDeque<Json>,
    },
    /// The latest non-NULL value.
    Latest {
        /// The value.
        v: Option<Json>,
    },
    /// The previous value of each argument (`None` before the first).
    Previous {
        /// Per argument.
        vs: Vec<Option<Json>>,
    },
}

/// The most records `lag` looks back.
pub const LAG_MAX: usize = 1_000;

impl AnalyticKind {
    /// The analytic function of a catalog name.
    pub fn of(name: &str) -> Option<AnalyticKind> {
        Some(match name {
            "lag" => AnalyticKind::Lag,
            "latest" => AnalyticKind::Latest,
            "changed" => AnalyticKind::Changed,
            "had_changed" => AnalyticKind::HadChanged,
            _ => return None,
        })
    }

    /// The function's name.
    pub fn name(self) -> &'static str {
        match self {
            AnalyticKind::Lag => "lag",
            AnalyticKind::Latest => "latest",
            AnalyticKind::Changed => "changed",
            AnalyticKind::HadChanged => "had_changed",
        }
    }

    /// Fresh memory.
    pub fn start(self) -> History {
        match self {
            AnalyticKind::Lag => History::Lag { vs: VecDeque::new() },
            AnalyticKind::Latest => History::Latest { v: None },
            AnalyticKind::Changed | AnalyticKind::HadChanged => History::Previous { vs: Vec::new() },
        }
    }

    /// The call's value for this record (`args` evaluated on it), updating the memory.
    pub fn step(self, h: &mut History, args: &[Json]) -> Result<Value<'static>, String> {
        let x = args.first().cloned().unwrap_or(Json::Null);
        match (self, h) {
            (AnalyticKind::Lag, History::Lag { vs }) => {
                let n = match args.get(1) {
                    None => 1,
                    Some(Json::Number(n)) => n.as_u64().filter(|n| (1..=LAG_MAX as u64).contains(n)).ok_or_else(|| format!("lag(): n must be an integer from 1 to {LAG_MAX}, got {n}"))? as usize,
                    Some(other) => return Err(format!("lag(): n must be an integer from 1 to {LAG_MAX}, got {other}")),
                };
                let default = args.get(2).cloned().unwrap_or(Json::Null);
                let out = if vs.len() >= n { vs[vs.len() - n].clone() } else { default };
                vs.push_back(x);
                while vs.len() > n {
                    vs.pop_front();
                }
                Ok(Value::from_owned_json(out))
            }
            (AnalyticKind::Latest, History::Latest { v }) => {
                if !x.is_null() {
                    *v = Some(x);
                }
                Ok(Value::from_owned_json(v.clone().or_else(|| args.get(1).cloned()).unwrap_or(Json::Null)))
            }
            (AnalyticKind::Changed, History::Previous { vs }) => {
                if x.is_null() {
                    return Ok(Value::Null);
                }
                let changed = !matches!(vs.first(), Some(Some(prev)) if json_eq(prev, &x));
                *vs = vec![Some(x)];
                Ok(Value::Bool(changed))
            }
            (AnalyticKind::HadChanged, History::Previous { vs }) => {
                let ignore_null = match args.first() {
                    Some(Json::Bool(b)) => *b,
                    other => return Err(format!("had_changed(): the first argument (ignore_null) must be a boolean, got {}", other.map_or("nothing".to_string(), Json::to_string))),
                };
                let values = &args[1..];
                vs.resize(values.len(), None);
                let mut changed = false;
                for (v, prev) in values.iter().zip(vs.iter_mut()) {
                    if ignore_null && v.is_null() {
                        continue;
                    }
                    if !matches!(prev, Some(p) if json_eq(p, v)) {
                        changed = true;
                    }
                    *prev = Some(v.clone());
                }
                Ok(Value::Bool(changed))
            }
            (kind, h) => Err(format!("internal: memory {h:?} does not belong to {kind:?}")),
        }
    }
}

/// The implementation of an analytic function's catalog entry: never reached in a compiled rule
/// (the planner turns the calls into per-record slots).
pub(crate) fn unplanned<'a>(_: &Ctx<'a>, _: Args<'a>) -> Result<Value<'a>, String> {
    Err("an analytic function is computed by the engine per partition".into())
}

/// Runs `kind` over `rows` (each the argument values of one record) in one partition: the value
/// for the last row (the catalog examples).
pub fn run(kind: AnalyticKind, rows: &[Vec<Json>]) -> Result<Value<'static>, String> {
    let mut h = kind.start();
    let mut last = Value::Null;
    for r in rows {
        last = kind.step(&mut h, r)?;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seq(kind: AnalyticKind, rows: &[Json]) -> Vec<Json> {
        let mut h = kind.start();
        rows.iter().map(|r| kind.step(&mut h, r.as_array().unwrap()).unwrap().to_json()).collect()
    }

    #[test]
    fn lag_looks_back_n_records_with_a_default() {
        assert_eq!(seq(AnalyticKind::Lag, &[json!([1]), json!([2]), json!([null]), json!([4])]), vec![json!(null), json!(1), json!(2), json!(null)]);
        assert_eq!(seq(AnalyticKind::Lag, &[json!([1, 2, 0]), json!([2, 2, 0]), json!([3, 2, 0])]), vec![json!(0), json!(0), json!(1)]);
        assert_eq!(seq(AnalyticKind::Lag, &[json!([u64::MAX]), json!([0])]), vec![json!(null), json!(u64::MAX)]);
        assert!(AnalyticKind::Lag.step(&mut AnalyticKind::Lag.start(), &[json!(1), json!(0)]).is_err());
    }

    #[test]
    fn changed_reports_the_first_value_and_each_change() {
        assert_eq!(
            seq(AnalyticKind::Changed, &[json!(["on"]), json!(["on"]), json!([null]), json!(["off"]), json!(["off"]), json!([1]), json!([1.0])]),
            vec![json!(true), json!(false), json!(null), json!(true), json!(false), json!(true), json!(false)]
        );
        assert_eq!(seq(AnalyticKind::Changed, &[json!([9007199254740993_i64]), json!([9007199254740992_i64])]), vec![json!(true), json!(true)], "exact at 2^53");
        assert_eq!(seq(AnalyticKind::Latest, &[json!([null, "d"]), json!([1]), json!([null])]), vec![json!("d"), json!(1), json!(1)]);
        assert_eq!(
            seq(AnalyticKind::HadChanged, &[json!([true, 1, "a"]), json!([true, 1, null]), json!([true, 1, "a"]), json!([false, 1, null])]),
            vec![json!(true), json!(false), json!(false), json!(true)]
        );
    }

    #[test]
    fn memory_round_trips_through_serde() {
        let mut h = AnalyticKind::Lag.start();
        AnalyticKind::Lag.step(&mut h, &[json!(i64::MIN), json!(3)]).unwrap();
        let back: History = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }
}
