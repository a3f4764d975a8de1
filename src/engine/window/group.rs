//! One group of a windowed rule: its open windows or kept rows, and the two algorithms on it:
//! what a record adds ([`add`]) and which windows are due ([`close_due`]).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::message::Shard;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::rule::functions::aggregate::Acc;
use crate::rule::plan::WindowSpec;
use crate::rule::WindowRule;

/// One open time window of a group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Win {
    pub(super) start: i64,
    /// When it closes: the end for tumbling and hopping windows; the last record + timeout
    /// for a session.
    pub(super) end: i64,
    /// A session's last record time.
    pub(super) last: i64,
    pub(super) accs: Vec<Acc>,
}

/// A kept row (sliding and count windows): a record's time and its aggregate arguments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Row {
    pub(super) t: i64,
    pub(super) args: Vec<Vec<Json>>,
}

/// A window taken out of a group, before its values are finished.
#[derive(Debug)]
pub(super) struct Done {
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) accs: Vec<Acc>,
    /// For a silence window: `silent` or `back`.
    pub(super) kind: Option<&'static str>,
}

/// One group's state.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Group {
    pub(super) topic: String,
    pub(super) watermark: i64,
    pub(super) seen_ms: i64,
    pub(super) wins: Vec<Win>,
    pub(super) rows: VecDeque<Row>,
    pub(super) count: u64,
    /// Silence windows: the group is silent (its next record is a comeback).
    pub(super) silent: bool,
    /// The time of the group's last record.
    pub(super) last_t: i64,
    /// Where the group's state is kept (the shard of its first record; not serialized: a
    /// changelog partition is the shard).
    #[serde(skip)]
    pub(super) shard: Shard,
    /// The device of the group's records (a hash of productKey/deviceName, or deviceKey) while
    /// they all come from one.
    #[serde(default)]
    pub(super) device: u64,
    /// Each device's clock, once a second device's records joined the group (event time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) clocks: Option<Box<Clocks>>,
}

/// The devices of a group coarser than the device (GROUP BY productKey(), say) and their
/// watermarks: the group's watermark is the least of its active devices', so one device's fast
/// clock never makes the others late.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Clocks {
    /// Device → (its watermark, when it last sent, processing time).
    devices: HashMap<u64, (i64, i64)>,
    /// The devices' watermarks as a multiset (rebuilt after a restore).
    #[serde(skip)]
    order: BTreeMap<i64, u32>,
}

impl Clocks {
    fn order(&mut self) -> &mut BTreeMap<i64, u32> {
        if self.order.is_empty() && !self.devices.is_empty() {
            for &(wm, _) in self.devices.values() {
                *self.order.entry(wm).or_default() += 1;
            }
        }
        &mut self.order
    }

    fn take(&mut self, wm: i64) {
        if let Some(n) = self.order().get_mut(&wm) {
            *n -= 1;
            if *n == 0 {
                self.order.remove(&wm);
            }
        }
    }

    fn set(&mut self, device: u64, t: i64, now: i64) {
        self.order();
        let old = self.devices.get(&device).map(|&(wm, _)| wm);
        let wm = old.map_or(t, |o| o.max(t));
        if let Some(o) = old {
            self.take(o);
        }
        *self.order.entry(wm).or_default() += 1;
        self.devices.insert(device, (wm, now));
    }

    /// The least watermark of the devices.
    fn min(&mut self) -> Option<i64> {
        self.order().keys().next().copied()
    }

    /// Forgets the devices silent since `before` (processing time); keeps one at least.
    fn expire(&mut self, before: i64) {
        let gone: Vec<(u64, i64)> = self.devices.iter().filter(|(_, &(_, seen))| seen < before).map(|(&d, &(wm, _))| (d, wm)).collect();
        if gone.len() == self.devices.len() {
            return;
        }
        for (d, wm) in gone {
            self.take(wm);
            self.devices.remove(&d);
        }
    }
}

impl Group {
    /// Advances the clock of device `device` to event time `t` (at processing time `now`): the
    /// group's watermark becomes the least of its devices' (never going back).
    pub(super) fn advance(&mut self, device: u64, t: i64, now: i64) {
        match &mut self.clocks {
            None if self.device == device || self.watermark == i64::MIN => {
                self.device = device;
                self.watermark = self.watermark.max(t);
            }
            None => {
                let mut c = Box::<Clocks>::default();
                c.set(self.device, self.watermark, self.seen_ms);
                c.set(device, t, now);
                self.clocks = Some(c);
            }
            Some(c) => c.set(device, t, now),
        }
        if let Some(min) = self.clocks.as_mut().and_then(|c| c.min()) {
            self.watermark = self.watermark.max(min);
        }
    }

    /// Devices silent for `idle_ms` no longer hold the group's watermark back.
    pub(super) fn expire_devices(&mut self, now: i64, idle_ms: i64) {
        if let Some(c) = &mut self.clocks {
            c.expire(now.saturating_sub(idle_ms));
            if let Some(min) = c.min() {
                self.watermark = self.watermark.max(min);
            }
        }
    }
}

impl Group {
    pub(super) fn new() -> Group {
        Group {
            topic: String::new(),
            watermark: i64::MIN,
            seen_ms: i64::MIN,
            wins: Vec::new(),
            rows: VecDeque::new(),
            count: 0,
            silent: false,
            last_t: i64::MIN,
            shard: Shard::LOCAL,
            device: 0,
            clocks: None,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.wins.is_empty() && self.rows.is_empty()
    }
}

/// Adds a record at time `t` to group `g`: `Ok` with the windows it emits at once (sliding and
/// count windows), `Err` with the reason when it is late for every window it belongs to.
pub(super) fn add(g: &mut Group, w: &WindowRule, t: i64, event: bool, args: Vec<Vec<Json>>) -> Result<Vec<Done>, String> {
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
            update(open_at(g, start, || fresh(start, end)), &args);
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
                    update(open_at(g, start, || fresh(start, end)), &args);
                }
                start = start.saturating_sub(hop);
            }
            match (any, latest) {
                (false, Some((s, e))) => Err(late(s, e)),
                _ => Ok(Vec::new()),
            }
        }
        WindowSpec::Session { max, timeout } => {
            let found = g.wins.iter().position(|x| t >= x.start.saturating_sub(timeout) && t < x.last.saturating_add(timeout) && t.max(x.last).saturating_sub(t.min(x.start)) < max);
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
            Ok(vec![Done { start: win.start, end: win.end, accs: win.accs, kind: None }])
        }
        WindowSpec::Silence { duration, comeback } => {
            let mut out = Vec::new();
            if std::mem::take(&mut g.silent) && comeback {
                // The gap: from the last record before the silence to this one.
                let mut back = fresh(g.last_t, t);
                update(&mut back, &args);
                out.push(Done { start: back.start, end: back.end, accs: back.accs, kind: Some("back") });
            }
            match g.wins.first_mut() {
                Some(x) => {
                    x.last = x.last.max(t);
                    x.end = x.last.saturating_add(duration);
                    update(x, &args);
                }
                None => {
                    let mut x = fresh(t, t.saturating_add(duration));
                    update(&mut x, &args);
                    g.wins.push(x);
                }
            }
            Ok(out)
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
                return Ok(vec![Done { start: win.start, end: win.end, accs: win.accs, kind: None }]);
            }
            Ok(Vec::new())
        }
    }
}

/// The open window of `g` starting at `start`, opened with `fresh` when there is none.
fn open_at(g: &mut Group, start: i64, fresh: impl FnOnce() -> Win) -> &mut Win {
    let i = match g.wins.iter().position(|x| x.start == start) {
        Some(i) => i,
        None => {
            g.wins.push(fresh());
            g.wins.len() - 1
        }
    };
    &mut g.wins[i]
}

/// Takes out the windows of `g` that are due: those whose end (plus the lateness, on event
/// time) `clock` has reached, or all of them with `all`. A silence window that ends leaves its
/// group silent.
pub(super) fn close_due(g: &mut Group, w: &WindowRule, clock: i64, event: bool, all: bool) -> Vec<Done> {
    let lateness = if event { w.allowed_lateness_ms } else { 0 };
    let silence = matches!(w.plan.spec, WindowSpec::Silence { .. });
    let mut out = Vec::new();
    let mut i = 0;
    while i < g.wins.len() {
        if all || g.wins[i].end.saturating_add(lateness) <= clock {
            let x = g.wins.swap_remove(i);
            out.push(Done { start: x.start, end: x.end, accs: x.accs, kind: silence.then_some("silent") });
            g.silent |= silence;
        } else {
            i += 1;
        }
    }
    out.sort_by_key(|d| d.start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coarse_groups_watermark_is_its_slowest_active_devices_and_survives_a_restore() {
        let mut g = Group::new();
        g.advance(1, 100, 0);
        g.advance(1, 150, 0);
        assert_eq!((g.watermark, g.clocks.is_none()), (150, true), "one device: its own clock");
        g.seen_ms = 0;
        g.advance(2, 120, 10);
        assert_eq!(g.watermark, 150, "a slower device joining never moves the watermark back");
        g.advance(1, 500, 20);
        assert_eq!(g.watermark, 150, "the fast device does not move it either");
        g.advance(2, 200, 30);
        assert_eq!(g.watermark, 200);
        let mut back: Group = serde_json::from_slice(&serde_json::to_vec(&g).unwrap()).unwrap();
        back.advance(2, 600, 40);
        assert_eq!(back.watermark, 500, "restored clocks: the least is device 1's 500");
        back.expire_devices(1_000, 100);
        assert_eq!(back.watermark, 500, "every device silent: the last ones are kept");
        back.advance(2, 700, 1_000);
        back.expire_devices(1_050, 100);
        assert_eq!(back.watermark, 700, "device 1, silent for the idle timeout, no longer holds it back");
    }
}
