//! Window state: the groups of every windowed rule, what a record adds to them, and when their
//! windows close.
//!
//! - A record's **group** is its GROUP BY key values (as JSON text); each group holds its open
//!   windows (tumbling, hopping, session: one accumulator per aggregate slot) or its recent rows
//!   (sliding and count windows), its watermark and when it was last seen.
//! - **Time** is the rule's `event_time` expression, or the engine's clock (processing time).
//! - **The watermark is per device**: a group of one device's records (GROUP BY the device, as
//!   windowed rules usually do) has the greatest event time it has seen; a coarser group (GROUP
//!   BY productKey(), or no key) keeps each device's clock and has the least of its active
//!   devices' (a device silent for `idle_timeout_ms` stops holding it back), never going back. So
//!   one device's fast or replayed clock never makes another device's records late. A record is late when every
//!   window it belongs to has already closed: an error record of stage `late` (counted in
//!   `sluice_late_events_total`), never a silent drop.
//! - An event-time window closes when the group's watermark passes its end plus the allowed
//!   lateness, or when the group has been silent for `idle_timeout_ms` of processing time (so a
//!   device that stops still gets its last window). A processing-time window closes when the
//!   clock passes its end. [`Windows::tick`] closes what the clock closes; a record closes what
//!   its watermark closes, and those windows travel with its batch.
//! - An emitted window carries the header `sluice-window`: `{"start","end","key"}`, with the
//!   `sluice-rule` header its identity, for consumers to deduplicate on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dashmap::DashMap;
use prometheus::{IntCounter, IntGauge};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::engine::types::Stage;
use crate::error::EvalError;
use crate::message::Shard;
use crate::rule::expr::Ctx;
use crate::rule::functions::analytic::History;
use crate::rule::{AnalyticRule, FuturePolicy, Rule, WindowRule};
use crate::state::store::{self, Loaded, Snapshot};
use crate::telemetry::metrics;
use crate::value::Value;

mod group;
mod restore;

use group::{add, close_due, Done, Group};

/// The header naming an emitted window.
pub const WINDOW_HEADER: &str = "sluice-window";

/// How many groups an eviction looks at to find the least recently seen.
const EVICTION_SAMPLE: usize = 16;

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
    /// For a silence window: `silent` (the group went quiet) or `back` (it sent again).
    pub kind: Option<&'static str>,
}

/// One partition's memory of one analytic call.
#[derive(Debug, Serialize, Deserialize)]
struct Part {
    seen_ms: i64,
    history: History,
    #[serde(skip)]
    shard: Shard,
}

/// The state of one windowed rule (its groups) or of one rule with analytic calls (its
/// partitions, keyed by `<call>:<partition key>`).
pub(crate) struct RuleWindows {
    fingerprint: u64,
    groups: DashMap<String, Group>,
    parts: DashMap<String, Part>,
    /// Keys of `groups` and `parts` changed since the last checkpoint (with a durable store),
    /// with their shards.
    dirty: std::sync::Mutex<Dirty>,
    late: IntCounter,
    violations: IntCounter,
    evictions: IntCounter,
    emitted: IntCounter,
    keys: IntGauge,
}

/// Changed group keys and partition keys, with their shards.
type Dirty = (HashMap<String, Shard>, HashMap<String, Shard>);

impl RuleWindows {
    fn touch_group(&self, track: bool, key: &str, shard: Shard) {
        if track {
            self.dirty.lock().unwrap_or_else(|p| p.into_inner()).0.insert(key.to_string(), shard);
        }
    }

    fn touch_part(&self, track: bool, key: &str, shard: Shard) {
        if track {
            self.dirty.lock().unwrap_or_else(|p| p.into_inner()).1.insert(key.to_string(), shard);
        }
    }

    /// A record of shard `got` for a key kept in shard `kept`: the input is not keyed so that
    /// all of a key's records share a partition. Counted and logged (at most every 10 s per
    /// rule); the key's state stays in `kept`.
    fn misrouted(&self, rule: &str, key: &str, kept: Shard, got: Shard) {
        self.violations.inc();
        static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
        let now = chrono::Utc::now().timestamp();
        if LAST.swap(now, std::sync::atomic::Ordering::Relaxed) + 10 <= now {
            let (kept, got) = (kept.lane(), got.lane());
            tracing::warn!(rule, key, kept = ?kept, got = ?got, "a key's records come from two partitions: key the input by device (the key's state stays in its first partition's changelog)");
        }
    }
}

/// The window state of every windowed rule, by rule name.
#[derive(Default)]
pub(crate) struct Windows {
    rules: DashMap<Arc<str>, Arc<RuleWindows>>,
    /// Whether changes are tracked for checkpoints (a durable store is configured).
    pub(crate) tracking: std::sync::atomic::AtomicBool,
    /// Digests of inputs the last checkpoint already holds (after a restart): delivered again,
    /// they are skipped by the stateful rules.
    replayed: std::sync::Mutex<HashMap<u64, u32>>,
    /// How many of those are still expected (read without the lock on every message).
    replay_left: std::sync::atomic::AtomicUsize,
    /// Rules whose stored state must go at the next checkpoint (changed on reload, removed).
    discarded: std::sync::Mutex<Vec<String>>,
}

/// The fingerprint of a stateful rule's state (`None`: the rule keeps none).
fn fingerprint(r: &Rule) -> Option<u64> {
    r.window.as_ref().map(|w| w.fingerprint).or(r.analytics.as_ref().map(|a| a.fingerprint))
}

/// A record's device, for the per-device watermarks of coarser groups: FNV-1a of its
/// productKey and deviceName (or deviceKey), stable across runs.
fn device_of(ctx: &Ctx<'_>) -> u64 {
    let id = [ctx.product_key().unwrap_or_default(), "/", ctx.device_name().unwrap_or_default()];
    id.iter().flat_map(|s| s.bytes()).fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
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
    fn track(&self) -> bool {
        self.tracking.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The state of `rule`, created (or started afresh, when the rule's text changed) as needed.
    fn of(&self, rule: &Rule, fingerprint: u64) -> Arc<RuleWindows> {
        if let Some(s) = self.rules.get(&rule.name) {
            if s.fingerprint == fingerprint {
                return s.clone();
            }
        }
        let fresh = Arc::new(RuleWindows {
            fingerprint,
            groups: DashMap::new(),
            parts: DashMap::new(),
            dirty: std::sync::Mutex::new((HashMap::new(), HashMap::new())),
            late: metrics::LATE_EVENTS.with_label_values(&[&rule.name]),
            violations: metrics::STATE_PARTITION_VIOLATIONS.with_label_values(&[&rule.name]),
            evictions: metrics::STATE_EVICTIONS.with_label_values(&[&rule.name]),
            emitted: metrics::WINDOWS_EMITTED.with_label_values(&[&rule.name]),
            keys: metrics::STATE_KEYS.with_label_values(&[&rule.name]),
        });
        match self.rules.entry(rule.name.clone()) {
            dashmap::mapref::entry::Entry::Occupied(mut o) => {
                if o.get().fingerprint == fingerprint {
                    return o.get().clone();
                }
                let dropped = o.get().groups.len() + o.get().parts.len();
                if dropped > 0 {
                    metrics::STATE_DISCARDED.with_label_values(&[&rule.name]).inc_by(dropped as u64);
                    tracing::info!(rule = %rule.name, keys = dropped, "the windowed rule changed: its state starts afresh");
                }
                o.insert(fresh.clone());
                if self.track() {
                    self.discarded.lock().unwrap_or_else(|p| p.into_inner()).push(rule.name.to_string());
                }
                fresh
            }
            dashmap::mapref::entry::Entry::Vacant(v) => v.insert(fresh).clone(),
        }
    }

    /// Forgets a rule's state (the rule is gone).
    pub(crate) fn forget(&self, rule: &str) {
        if self.rules.remove(rule).is_some() && self.track() {
            self.discarded.lock().unwrap_or_else(|p| p.into_inner()).push(rule.to_string());
        }
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

        let state = self.of(rule, w.fingerprint);
        let mut closed = Vec::new();
        if !state.groups.contains_key(&key) && state.groups.len() >= w.max_state_keys {
            self.evict(rule, w, &state, &mut closed);
        }
        let shard = ctx.msg.meta.shard;
        let mut g = state.groups.entry(key.clone()).or_insert_with(|| Group { shard, ..Group::new() });
        if g.shard != shard {
            state.misrouted(&rule.name, &key, g.shard, shard);
        }
        state.touch_group(self.track(), &key, g.shard);
        g.topic.clear();
        g.topic.push_str(&ctx.msg.topic);
        let seen_before = g.seen_ms;
        g.seen_ms = g.seen_ms.max(now);
        let result = add(&mut g, w, t, event, args);
        if event {
            g.seen_ms = seen_before;
            g.advance(device_of(&ctx), t, now);
            g.seen_ms = g.seen_ms.max(now);
        }
        if result.is_ok() {
            g.last_t = g.last_t.max(t);
        }
        let closing = match result {
            Err(late) => {
                drop(g);
                state.late.inc();
                return Err((Stage::Late, EvalError(late)));
            }
            Ok(mut done) => {
                let clock = if event { g.watermark } else { now };
                done.extend(close_due(&mut g, w, clock, event, false));
                done
            }
        };
        let topic = g.topic.clone();
        drop(g);
        for d in closing {
            closed.push(finish(w, &key, &topic, d));
        }
        state.emitted.inc_by(closed.len() as u64);
        Ok(closed)
    }

    /// The values of a rule's analytic calls for one record (each call's memory of its
    /// partition updated): the slots its expressions read.
    pub(crate) fn analytic<'a>(&self, rule: &'a Rule, a: &'a AnalyticRule, ctx: &Ctx<'a>) -> Result<Vec<Value<'static>>, (Stage, EvalError)> {
        let select = |e: EvalError| (Stage::Select, e);
        let state = self.of(rule, a.fingerprint);
        let mut out = Vec::with_capacity(a.calls.len());
        for (i, call) in a.calls.iter().enumerate() {
            let part = match &call.partition {
                Some(p) => {
                    let mut k = Vec::with_capacity(p.len());
                    for e in p {
                        k.push(e.eval(ctx).map_err(select)?.to_json());
                    }
                    Json::Array(k)
                }
                None => Json::Array(vec![ctx.product_key().map_or(Json::Null, Json::from), ctx.device_name().map_or(Json::Null, Json::from)]),
            };
            let mut args = Vec::with_capacity(call.args.len());
            for e in &call.args {
                args.push(e.eval(ctx).map_err(select)?.to_json());
            }
            let key = format!("{i}:{part}");
            if !state.parts.contains_key(&key) && state.parts.len() >= a.max_state_keys {
                let victim = state.parts.iter().take(EVICTION_SAMPLE).min_by_key(|p| p.seen_ms).map(|p| (p.key().clone(), p.shard));
                if let Some((v, shard)) = victim {
                    state.parts.remove(&v);
                    state.touch_part(self.track(), &v, shard);
                    state.evictions.inc();
                    tracing::warn!(rule = %rule.name, max_state_keys = a.max_state_keys, "analytic state is full: the least recently seen partition of a sample is forgotten");
                }
            }
            let shard = ctx.msg.meta.shard;
            let mut p = state.parts.entry(key.clone()).or_insert_with(|| Part { seen_ms: ctx.now_ms, history: call.kind.start(), shard });
            if p.shard != shard {
                state.misrouted(&rule.name, &key, p.shard, shard);
            }
            state.touch_part(self.track(), &key, p.shard);
            p.seen_ms = p.seen_ms.max(ctx.now_ms);
            out.push(call.kind.step(&mut p.history, &args).map_err(|m| (Stage::Select, EvalError(m)))?);
        }
        Ok(out)
    }

    /// Evicts the least recently seen of a sample of the rule's groups, emitting its windows.
    fn evict(&self, rule: &Rule, w: &WindowRule, state: &RuleWindows, closed: &mut Vec<Closed>) {
        let victim = state.groups.iter().take(EVICTION_SAMPLE).min_by_key(|g| g.seen_ms).map(|g| g.key().clone());
        if let Some(k) = victim {
            if let Some((k, mut g)) = state.groups.remove(&k) {
                state.touch_group(self.track(), &k, g.shard);
                state.evictions.inc();
                tracing::warn!(rule = %rule.name, max_state_keys = w.max_state_keys, "window state is full: the least recently seen key of a sample is evicted, its windows emitted early");
                for d in close_due(&mut g, w, i64::MAX, true, true) {
                    closed.push(finish(w, &k, &g.topic, d));
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
            if let (Some(a), Some(idle)) = (&rule.analytics, rule.analytics.as_ref().and_then(|a| a.idle_timeout_ms)) {
                if let Some(state) = self.rules.get(&rule.name).map(|s| s.clone()).filter(|s| s.fingerprint == a.fingerprint) {
                    state.parts.retain(|k, p| {
                        let keep = p.seen_ms.saturating_add(idle) > now;
                        if !keep {
                            state.touch_part(self.track(), k, p.shard);
                        }
                        keep
                    });
                    state.keys.set(state.parts.len() as i64);
                }
            }
            let Some(w) = &rule.window else { continue };
            let Some(state) = self.rules.get(&rule.name).map(|s| s.clone()) else { continue };
            if state.fingerprint != w.fingerprint {
                continue;
            }
            let event = w.event_time.is_some();
            let mut closed = Vec::new();
            state.groups.retain(|key, g| {
                let idle = g.seen_ms.saturating_add(w.idle_timeout_ms) <= now;
                if event {
                    g.expire_devices(now, w.idle_timeout_ms);
                }
                let due = if event { close_due(g, w, g.watermark, true, idle) } else { close_due(g, w, now, false, idle) };
                let changed = !due.is_empty();
                for d in due {
                    closed.push(finish(w, key, &g.topic, d));
                }
                if idle {
                    g.rows.clear();
                }
                if changed || idle {
                    state.touch_group(self.track(), key, g.shard);
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

    /// The changed state since the last call, for a checkpoint (run under the state gate,
    /// taken alone): each changed key's group or partition as JSON, or its removal; the
    /// fingerprint of each rule with state; the store keys of rules discarded at start.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot { drop_rules: std::mem::take(&mut *self.discarded.lock().unwrap_or_else(|p| p.into_inner())), ..Snapshot::default() };
        for r in self.rules.iter() {
            let (rule, state) = (r.key(), r.value());
            let (groups, parts) = std::mem::take(&mut *state.dirty.lock().unwrap_or_else(|p| p.into_inner()));
            if groups.is_empty() && parts.is_empty() {
                continue;
            }
            for (k, shard) in groups {
                let v = state.groups.get(&k).and_then(|g| serde_json::to_vec(&*g).ok());
                s.groups.push((shard, store::key(rule, &k), v));
            }
            for (k, shard) in parts {
                let v = state.parts.get(&k).and_then(|p| serde_json::to_vec(&*p).ok());
                s.parts.push((shard, store::key(rule, &k), v));
            }
            s.fingerprints.push((rule.to_string(), state.fingerprint));
        }
        s
    }

    /// The JSON size of every group and partition held.
    pub(crate) fn serialized_bytes(&self) -> usize {
        self.rules
            .iter()
            .map(|r| r.groups.iter().map(|g| serde_json::to_vec(&*g).map_or(0, |v| v.len())).sum::<usize>() + r.parts.iter().map(|p| serde_json::to_vec(&*p).map_or(0, |v| v.len())).sum::<usize>())
            .sum()
    }

    /// Groups (or analytic partitions) held by `rule` (tests and metrics).
    pub(crate) fn keys(&self, rule: &str) -> usize {
        self.rules.get(rule).map_or(0, |s| s.groups.len() + s.parts.len())
    }
}

fn finish(w: &WindowRule, key: &str, topic: &str, d: Done) -> Closed {
    let values = w.plan.aggs.iter().zip(&d.accs).map(|(a, acc)| a.kind.finish(acc)).collect();
    Closed { key: key.to_string(), topic: topic.to_string(), start: d.start, end: d.end, values, kind: d.kind }
}
