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
    /// A rule's `audit_sequence`: gaps, duplicates and reorders of a per-partition sequence.
    Audit,
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
    /// A delivery audit: the greatest sequence number seen and the ranges still missing.
    Audit {
        /// The greatest number seen (`None` before the first).
        max: Option<i64>,
        /// Missing ranges `[from, to]` below it, oldest first (at most [`AUDIT_GAPS_KEPT`]).
        missing: VecDeque<(i64, i64)>,
    },
}

/// The missing ranges an audit remembers per partition, to tell a late arrival (a reorder)
/// from a duplicate; older ones are forgotten (a number of theirs arriving then counts as a
/// duplicate).
pub const AUDIT_GAPS_KEPT: usize = 64;

/// What an audited record shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditEvent {
    /// The next number (or the first).
    InOrder,
    /// Numbers `from..=to` were skipped.
    Gap {
        /// First missing.
        from: i64,
        /// Last missing.
        to: i64,
    },
    /// A number seen before.
    Duplicate,
    /// A missing number, arriving late.
    Reorder,
    /// No sequence number (NULL): not audited.
    Unknown,
}

/// Audits one sequence number against a partition's memory.
pub fn audit(h: &mut History, seq: Option<i64>) -> AuditEvent {
    let (History::Audit { max, missing }, Some(seq)) = (h, seq) else {
        return AuditEvent::Unknown;
    };
    match *max {
        None => {
            *max = Some(seq);
            AuditEvent::InOrder
        }
        Some(m) if seq == m.saturating_add(1) => {
            *max = Some(seq);
            AuditEvent::InOrder
        }
        Some(m) if seq > m => {
            *max = Some(seq);
            missing.push_back((m + 1, seq - 1));
            while missing.len() > AUDIT_GAPS_KEPT {
                missing.pop_front();
            }
            AuditEvent::Gap { from: m + 1, to: seq - 1 }
        }
        Some(_) => match missing.iter().position(|(a, b)| (*a..=*b).contains(&seq)) {
            Some(i) => {
                let (a, b) = missing[i];
                missing.remove(i);
                if a < seq {
                    missing.insert(i, (a, seq - 1));
                }
                if seq < b {
                    missing.insert(i + usize::from(a < seq), (seq + 1, b));
                }
                AuditEvent::Reorder
            }
            None => AuditEvent::Duplicate,
        },
    }
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
            AnalyticKind::Audit => "audit_sequence",
        }
    }

    /// Fresh memory.
    pub fn start(self) -> History {
        match self {
            AnalyticKind::Lag => History::Lag { vs: VecDeque::new() },
            AnalyticKind::Latest => History::Latest { v: None },
            AnalyticKind::Changed | AnalyticKind::HadChanged => History::Previous { vs: Vec::new() },
            AnalyticKind::Audit => History::Audit { max: None, missing: VecDeque::new() },
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
            (AnalyticKind::Audit, h @ History::Audit { .. }) => {
                let seq = match &x {
                    Json::Null => None,
                    other => Some(Value::from_json(other).as_i64().ok_or_else(|| format!("audit_sequence: expected an integer sequence number, got {other}"))?),
                };
                Ok(match audit(h, seq) {
                    AuditEvent::InOrder | AuditEvent::Unknown => Value::Null,
                    AuditEvent::Gap { from, to } => Value::Json(std::borrow::Cow::Owned(serde_json::json!({"gap": [from, to]}))),
                    AuditEvent::Duplicate => Value::str("duplicate"),
                    AuditEvent::Reorder => Value::str("reorder"),
                })
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
    fn audits_tell_gaps_duplicates_and_reorders_apart() {
        let mut h = AnalyticKind::Audit.start();
        let seq = [Some(1), Some(2), Some(5), Some(3), Some(3), Some(2), None, Some(4), Some(6), Some(i64::MAX), Some(7)];
        let got: Vec<AuditEvent> = seq.iter().map(|s| audit(&mut h, *s)).collect();
        use AuditEvent::*;
        assert_eq!(got, vec![InOrder, InOrder, Gap { from: 3, to: 4 }, Reorder, Duplicate, Duplicate, Unknown, Reorder, InOrder, Gap { from: 7, to: i64::MAX - 1 }, Reorder]);
        assert!(matches!(&h, History::Audit { missing, .. } if missing.len() == 1 && missing[0] == (8, i64::MAX - 1)));
    }

    #[test]
    fn memory_round_trips_through_serde() {
        let mut h = AnalyticKind::Lag.start();
        AnalyticKind::Lag.step(&mut h, &[json!(i64::MIN), json!(3)]).unwrap();
        let back: History = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }
}
