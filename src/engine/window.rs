//! Window state: the groups of every windowed rule, what a record adds to them, and when their
//! windows close.
//!
//! - A record's **group** is its GROUP BY key values (as JSON text); each group holds its open
//!   windows (tumbling, hopping, session: one accumulator per aggregate slot) or its recent rows
//!   (sliding and count windows), its watermark and when it was last seen.
//! - **Time** is the rule's `event_time` expression, or the engine's clock (processing time).
//! - **The watermark is per group**: the greatest event time the group has seen. Grouping by the
//!   device (as windowed rules usually do) gives one watermark per device, so one device's fast
//!   or replayed clock never makes another device's records late. A record is late when every
//!   window it belongs to has already closed: an error record of stage `late` (counted in
//!   `sluice_late_events_total`), never a silent drop.
//! - An event-time window closes when the group's watermark passes its end plus the allowed
//!   lateness, or when the group has been silent for `idle_timeout_ms` of processing time (so a
//!   device that stops still gets its last window). A processing-time window closes when the
//!   clock passes its end. [`Windows::tick`] closes what the clock closes; a record closes what
//!   its watermark closes, and those windows travel with its batch.
//! - An emitted window carries the header `sluice-window`: `{"start","end","key"}`, with the
//!   `sluice-rule` header its identity, for consumers to deduplicate on.

use std::collections::VecDeque;
use std::sync::Arc;

use dashmap::DashMap;
use prometheus::{IntCounter, IntGauge};
use serde_json::Value as Json;

use crate::engine::types::Stage;
use crate::error::EvalError;
use crate::rule::expr::Ctx;
use crate::rule::functions::aggregate::Acc;
use crate::rule::plan::WindowSpec;
use crate::rule::{FuturePolicy, Rule, WindowRule};
use crate::telemetry::metrics;
use crate::value::Value;

/// The header naming an emitted window.
pub const WINDOW_HEADER: &str = "sluice-window";

/// How many groups an eviction looks at to find the least recently seen.
const EVICTION_SAMPLE: usize = 16;

/// One open time window of a group.
#[derive(Clone, Debug)]
struct Win {
    start: i64,
    /// When it closes: the end for tumbling and hopping windows; the last record + timeout
    /// for a session.
    end: i64,
    /// A session's last record time.
    last: i64,
    accs: Vec<Acc>,
}

/// A kept row (sliding and count windows): a record's time and its aggregate arguments.
#[derive(Clone, Debug)]
struct Row {
    t: i64,
    args: Vec<Vec<Json>>,
}

/// A window ready to emit.
#[derive(Debug)]
pub(crate) struct Closed {
    /// Its group's key (JSON array text).
    pub key: String,
    /// The topic of its group's last record.
    pub topic: String,
    /// Bounds.
    pub start: i64,
    /// End (exclusive).
    pub end: i64,
    /// The aggregate values.
    pub values: Vec<Value<'static>>,
}

/// One group's state.
#[derive(Debug)]
struct Group {
    topic: String,
    watermark: i64,
    seen_ms: i64,
    wins: Vec<Win>,
    rows: VecDeque<Row>,
    count: u64,
}

impl Group {
    fn new() -> Group {
        Group { topic: String::new(), watermark: i64::MIN, seen_ms: i64::MIN, wins: Vec::new(), rows: VecDeque::new(), count: 0 }
    }

    fn is_empty(&self) -> bool {
        self.wins.is_empty() && self.rows.is_empty()
    }
}

/// The state of one windowed rule.
pub(crate) struct RuleWindows {
    fingerprint: u64,
    groups: DashMap<String, Group>,
    late: IntCounter,
    evictions: IntCounter,
    emitted: IntCounter,
    keys: IntGauge,
}

/// The window state of every windowed rule, by rule name.
#[derive(Default)]
pub(crate) struct Windows {
    rules: DashMap<Arc<str>, Arc<RuleWindows>>,
}

/// A record's time.
fn time_of(v: Value<'_>) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(i),
        Value::UInt(u) => i64::try_from(u).map_err(|_| format!("event time {u} is beyond i64 ms")),
        Value::Float(f) if f.is_finite() && f.abs() < 9.2e18 => Ok(f as i64),
        Value::Str(s) => match s.trim().parse::<i64>() {
            Ok(i) => Ok(i),
            Err(_) => chrono::DateTime::parse_from_rfc3339(s.trim()).map(|d| d.timestamp_millis()).map_err(|_| format!("event time {:?} is neither ms since the epoch nor RFC 3339", s.as_ref())),
        },
        Value::Null => Err("event time is NULL".into()),
        other => Err(format!("event time must be ms since the epoch or RFC 3339 text, got {} {}", other.type_name(), crate::value::quote(&other))),
    }
}

impl Windows {
    /// The state of `rule`, created (or started afresh, when the rule's text changed) as needed.
    fn of(&self, rule: &Rule, w: &WindowRule) -> Arc<RuleWindows> {
        if let Some(s) = self.rules.get(&rule.name) {
            if s.fingerprint == w.fingerprint {
                return s.clone();
            }
        }
        let fresh = Arc::new(RuleWindows {
            fingerprint: w.fingerprint,
            groups: DashMap::new(),
            late: metrics::LATE_EVENTS.with_label_values(&[&rule.name]),
            evictions: metrics::STATE_EVICTIONS.with_label_values(&[&rule.name]),
            emitted: metrics::WINDOWS_EMITTED.with_label_values(&[&rule.name]),
            keys: metrics::STATE_KEYS.with_label_values(&[&rule.name]),
        });
        match self.rules.entry(rule.name.clone()) {
            dashmap::mapref::entry::Entry::Occupied(mut o) => {
                if o.get().fingerprint == w.fingerprint {
                    return o.get().clone();
                }
                let dropped = o.get().groups.len();
                if dropped > 0 {
                    metrics::STATE_DISCARDED.with_label_values(&[&rule.name]).inc_by(dropped as u64);
                    tracing::info!(rule = %rule.name, keys = dropped, "the windowed rule changed: its state starts afresh");
                }
                o.insert(fresh.clone());
                fresh
            }
            dashmap::mapref::entry::Entry::Vacant(v) => v.insert(fresh).clone(),
        }
    }

    /// Forgets a rule's state (the rule is gone).
    pub(crate) fn forget(&self, rule: &str) {
        self.rules.remove(rule);
    }

    /// Adds a record (WHERE already passed) to its group's windows; returns the windows it
    /// closes (event time, sliding and count windows). Late and future records are errors of
    /// stage `late` and `future`.
    pub(crate) fn observe<'a>(&self, rule: &'a Rule, w: &'a WindowRule, ctx: &Ctx<'a>) -> Result<Vec<Closed>, (Stage, EvalError)> {
        let select = |e: EvalError| (Stage::Select, e);
        let now = ctx.now_ms;
        let event = w.event_time.is_some();
        let mut t = match &w.event_time {
            Some(e) => time_of(e.eval(ctx).map_err(select)?).map_err(|m| (Stage::Select, EvalError(format!("event_time: {m}"))))?,
            None => now,
        };
        let limit = now.saturating_add(w.max_future_skew_ms);
        if event && t > limit {
            match w.future {
                FuturePolicy::DeadLetter => {
                    return Err((Stage::Future, EvalError(format!("future: event time {t} is more than max_future_skew_ms = {} ahead of the clock {now}", w.max_future_skew_ms))));
                }
                FuturePolicy::Clamp => t = limit,
            }
        }
        let view = crate::rule::ctx::WindowView { event_ms: Some(t), ..Default::default() };
        let ctx = Ctx { window: Some(&view), ..*ctx };
        let mut key = Vec::with_capacity(w.plan.keys.len());
        for k in &w.plan.keys {
            key.push(k.eval(&ctx).map_err(select)?.to_json());
        }
        let key = serde_json::to_string(&key).unwrap_or_default();
        let mut args = Vec::with_capacity(w.plan.aggs.len());
        for a in &w.plan.aggs {
            let mut vs = Vec::with_capacity(a.args.len());
            for e in &a.args {
                vs.push(e.eval(&ctx).map_err(select)?.to_json());
            }
            a.kind.check(&vs).map_err(|m| (Stage::Select, EvalError(m)))?;
            args.push(vs);
        }

        let state = self.of(rule, w);
        let mut closed = Vec::new();
        if !state.groups.contains_key(&key) && state.groups.len() >= w.max_state_keys {
            self.evict(rule, w, &state, &mut closed);
        }
        let mut g = state.groups.entry(key.clone()).or_insert_with(Group::new);
        g.topic.clear();
        g.topic.push_str(&ctx.msg.topic);
        g.seen_ms = g.seen_ms.max(now);
        let result = add(&mut g, w, t, event, args);
        if event {
            g.watermark = g.watermark.max(t);
        }
        let closing = match &result {
            Err(_) => Vec::new(),
            Ok(rows) => {
                let clock = if event { g.watermark } else { now };
                let mut c = close_due(&mut g, w, clock, event, false);
                c.extend(rows.iter().cloned());
                c
            }
        };
        let topic = g.topic.clone();
        drop(g);
        if let Err(late) = result {
            state.late.inc();
            return Err((Stage::Late, EvalError(late)));
        }
        for (start, end, accs) in closing {
            closed.push(finish(w, &key, &topic, start, end, &accs));
        }
        state.emitted.inc_by(closed.len() as u64);
        Ok(closed)
    }

    /// Evicts the least recently seen of a sample of the rule's groups, emitting its windows.
    fn evict(&self, rule: &Rule, w: &WindowRule, state: &RuleWindows, closed: &mut Vec<Closed>) {
        let victim = state.groups.iter().take(EVICTION_SAMPLE).min_by_key(|g| g.seen_ms).map(|g| g.key().clone());
        if let Some(k) = victim {
            if let Some((k, mut g)) = state.groups.remove(&k) {
                state.evictions.inc();
                tracing::warn!(rule = %rule.name, max_state_keys = w.max_state_keys, "window state is full: the least recently seen key of a sample is evicted, its windows emitted early");
                for (start, end, accs) in close_due(&mut g, w, i64::MAX, true, true) {
                    closed.push(finish(w, &k, &g.topic, start, end, &accs));
                }
            }
        }
    }

    /// Closes what the clock closes at `now`: processing-time windows past their end, and every
    /// window of a group silent for the idle timeout; drops groups with nothing left. Returns the
    /// windows to emit, with each rule.
    pub(crate) fn tick(&self, rules: &[Arc<Rule>], now: i64) -> Vec<(Arc<Rule>, Vec<Closed>)> {
        let mut out = Vec::new();
        for rule in rules {
            let Some(w) = &rule.window else { continue };
            let Some(state) = self.rules.get(&rule.name).map(|s| s.clone()) else { continue };
            if state.fingerprint != w.fingerprint {
                continue;
            }
            let event = w.event_time.is_some();
            let mut closed = Vec::new();
            state.groups.retain(|key, g| {
                let idle = g.seen_ms.saturating_add(w.idle_timeout_ms) <= now;
                let due = if event { close_due(g, w, g.watermark, true, idle) } else { close_due(g, w, now, false, idle) };
                for (start, end, accs) in due {
                    closed.push(finish(w, key, &g.topic, start, end, &accs));
                }
                if idle {
                    g.rows.clear();
                }
                !(idle && g.is_empty())
            });
            // In time order (then by key): the map's order is not stable.
            closed.sort_by(|a, b| (a.end, a.start, &a.key).cmp(&(b.end, b.start, &b.key)));
            state.keys.set(state.groups.len() as i64);
            state.emitted.inc_by(closed.len() as u64);
            if !closed.is_empty() {
                out.push((rule.clone(), closed));
            }
        }
        out
    }

    /// Groups held by `rule` (tests and metrics).
    pub(crate) fn keys(&self, rule: &str) -> usize {
        self.rules.get(rule).map_or(0, |s| s.groups.len())
    }
}

/// Adds a record at time `t` to group `g`: `Ok` with the windows it emits at once (sliding and
/// count windows), `Err` with the reason when it is late for every window it belongs to.
fn add(g: &mut Group, w: &WindowRule, t: i64, event: bool, args: Vec<Vec<Json>>) -> Result<Vec<(i64, i64, Vec<Acc>)>, String> {
    let lateness = w.allowed_lateness_ms;
    let watermark = g.watermark;
    let closed = |end: i64| event && end.saturating_add(lateness) <= watermark;
    let late = |start: i64, end: i64| format!("late: event time {t} is past window [{start}, {end}), closed at watermark {watermark} (allowed_lateness_ms = {lateness})");
    let plan = &w.plan;
    let update = |win: &mut Win, args: &[Vec<Json>]| {
        for ((a, acc), vs) in plan.aggs.iter().zip(win.accs.iter_mut()).zip(args) {
            // The arguments were checked (AggKind::check): updates cannot fail.
            let updated = a.kind.update(acc, vs);
            debug_assert!(updated.is_ok(), "{updated:?}");
        }
    };
    let fresh = |start: i64, end: i64| Win { start, end, last: start, accs: plan.aggs.iter().map(|a| a.kind.start()).collect() };
    match plan.spec {
        WindowSpec::Tumbling { size } => {
            let start = t.div_euclid(size).saturating_mul(size);
            let end = start.saturating_add(size);
            if closed(end) {
                return Err(late(start, end));
            }
            let i = match g.wins.iter().position(|x| x.start == start) {
                Some(i) => i,
                None => {
                    g.wins.push(fresh(start, end));
                    g.wins.len() - 1
                }
            };
            update(&mut g.wins[i], &args);
            Ok(Vec::new())
        }
        WindowSpec::Hopping { size, hop } => {
            let mut start = t.div_euclid(hop).saturating_mul(hop);
            let mut any = false;
            let mut latest = None;
            while start > t.saturating_sub(size) {
                let end = start.saturating_add(size);
                latest.get_or_insert((start, end));
                if !closed(end) {
                    any = true;
                    let i = match g.wins.iter().position(|x| x.start == start) {
                        Some(i) => i,
                        None => {
                            g.wins.push(fresh(start, end));
                            g.wins.len() - 1
                        }
                    };
                    update(&mut g.wins[i], &args);
                }
                start = start.saturating_sub(hop);
            }
            match (any, latest) {
                (false, Some((s, e))) => Err(late(s, e)),
                _ => Ok(Vec::new()),
            }
        }
        WindowSpec::Session { max, timeout } => {
            let found = g.wins.iter().position(|x| t >= x.start.saturating_sub(timeout) && t < x.last.saturating_add(timeout) && t.max(x.last) - t.min(x.start) < max);
            match found {
                Some(i) => {
                    let x = &mut g.wins[i];
                    x.start = x.start.min(t);
                    x.last = x.last.max(t);
                    x.end = x.last.saturating_add(timeout).min(x.start.saturating_add(max));
                    update(x, &args);
                }
                None => {
                    let end = t.saturating_add(timeout);
                    if closed(end) {
                        return Err(late(t, end));
                    }
                    let mut x = fresh(t, end.min(t.saturating_add(max)));
                    update(&mut x, &args);
                    g.wins.push(x);
                }
            }
            Ok(Vec::new())
        }
        WindowSpec::Sliding { size } => {
            if event && t.saturating_add(lateness) < watermark {
                return Err(late(t.saturating_sub(size), t));
            }
            let at = g.rows.iter().rposition(|r| r.t <= t).map_or(0, |i| i + 1);
            g.rows.insert(at, Row { t, args });
            let mut win = fresh(t.saturating_sub(size), t);
            for r in g.rows.iter().filter(|r| r.t > t.saturating_sub(size) && r.t <= t) {
                update(&mut win, &r.args);
            }
            // Rows no later window can hold.
            let horizon = watermark.max(t).saturating_sub(lateness).saturating_sub(size);
            while g.rows.front().is_some_and(|r| r.t <= horizon) {
                g.rows.pop_front();
            }
            Ok(vec![(win.start, win.end, win.accs)])
        }
        WindowSpec::Count { n, hop } => {
            g.rows.push_back(Row { t, args });
            g.count += 1;
            while g.rows.len() as u64 > n {
                g.rows.pop_front();
            }
            if g.rows.len() as u64 == n && g.count % hop == 0 {
                let first = g.rows.front().map_or(t, |r| r.t);
                let last = g.rows.iter().map(|r| r.t).max().unwrap_or(t);
                let mut win = fresh(first, last.saturating_add(1));
                for r in &g.rows {
                    update(&mut win, &r.args);
                }
                if hop >= n {
                    g.rows.clear();
                }
                return Ok(vec![(win.start, win.end, win.accs)]);
            }
            Ok(Vec::new())
        }
    }
}

/// Takes out the windows of `g` that are due: those whose end (plus the lateness, on event
/// time) `clock` has reached, or all of them with `all`.
fn close_due(g: &mut Group, w: &WindowRule, clock: i64, event: bool, all: bool) -> Vec<(i64, i64, Vec<Acc>)> {
    let lateness = if event { w.allowed_lateness_ms } else { 0 };
    let mut out = Vec::new();
    let mut i = 0;
    while i < g.wins.len() {
        if all || g.wins[i].end.saturating_add(lateness) <= clock {
            let x = g.wins.swap_remove(i);
            out.push((x.start, x.end, x.accs));
        } else {
            i += 1;
        }
    }
    out.sort_by_key(|(s, _, _)| *s);
    out
}

fn finish(w: &WindowRule, key: &str, topic: &str, start: i64, end: i64, accs: &[Acc]) -> Closed {
    let values = w.plan.aggs.iter().zip(accs).map(|(a, acc)| a.kind.finish(acc)).collect();
    Closed { key: key.to_string(), topic: topic.to_string(), start, end, values }
}
