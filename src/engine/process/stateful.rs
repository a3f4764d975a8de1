//! The engine's stateful side: windowed rules on a record and on the clock, the durable
//! state's attachment and checkpoint snapshot, the delivery audit's records.

use std::sync::Arc;

use super::*;

impl Engine {
    /// A windowed rule on one record: WHERE, then the record joins its group's windows; the
    /// windows it closes are emitted (their failures become error records here). `Ok(true)`
    /// when the record joined.
    pub(super) fn eval_windowed<'a>(&self, windows: &Windows, rule: &'a Rule, w: &'a WindowRule, ctx: &Ctx<'a>, out: &mut Vec<OutputRecord>, live: bool) -> Result<bool, (Stage, EvalError)> {
        if !passes_where(rule, ctx)? {
            return Ok(false);
        }
        for closed in windows.observe(rule, w, ctx)? {
            self.emit_window(rule, w, &closed, ctx.now_ms, out, live);
        }
        Ok(true)
    }

    pub(super) fn emit_window(&self, rule: &Rule, w: &WindowRule, closed: &Closed, now_ms: i64, out: &mut Vec<OutputRecord>, live: bool) {
        let before = out.len();
        let result = guard::catch(|| window_output(rule, w, closed, &self.env, now_ms, out)).unwrap_or_else(|panic| Err((Stage::Panic, EvalError(format!("window evaluation panicked: {panic}")))));
        if let Err((stage, e)) = result {
            out.truncate(before);
            let msg = Message::new(closed.topic.clone(), Vec::new());
            out.push(self.rule_failed(rule, &msg, stage, &format!("window [{}, {}) of key {}: {}", closed.start, closed.end, closed.key, e.0), None, live));
        }
    }

    /// Closes the windows the clock closes at `now_ms` (processing-time windows past their end;
    /// the windows of keys silent for their rule's idle timeout) and returns their output and
    /// error records, each with the IoT topic of its key's last record.
    pub fn tick(&self, now_ms: i64) -> Vec<(String, Vec<OutputRecord>)> {
        let set = self.rules.load_full();
        self.tick_with(&set, &self.windows, now_ms, true)
    }

    /// The end of a bounded input (every source ended by itself, e.g. a file source at its
    /// end): every open window is closed and emitted, as a stream processor does at the end of
    /// bounded input, except silence windows (the input ended; the devices did not fall silent).
    pub fn flush_windows(&self, now_ms: i64) -> Vec<(String, Vec<OutputRecord>)> {
        let set = self.rules.load_full();
        let rules: Vec<Arc<Rule>> = set.rules.iter().filter(|r| r.window.as_ref().is_some_and(|w| !matches!(w.plan.spec, crate::rule::plan::WindowSpec::Silence { .. }))).cloned().collect();
        self.emit_closed(self.windows.tick(&rules, i64::MAX), now_ms, true)
    }

    pub(super) fn tick_with(&self, set: &RuleSet, windows: &Windows, now_ms: i64, live: bool) -> Vec<(String, Vec<OutputRecord>)> {
        if !set.rules.iter().any(|r| r.window.is_some() || r.analytics.as_ref().is_some_and(|a| a.idle_timeout_ms.is_some())) {
            return Vec::new();
        }
        self.emit_closed(windows.tick(&set.rules, now_ms), now_ms, live)
    }

    /// The output and error records of closed windows, each with the IoT topic of its key's
    /// last record.
    fn emit_closed(&self, closed: Vec<(Arc<Rule>, Vec<Closed>)>, now_ms: i64, live: bool) -> Vec<(String, Vec<OutputRecord>)> {
        let mut out = Vec::new();
        for (rule, closed) in closed {
            let Some(w) = &rule.window else { continue };
            for c in closed {
                let mut records = Vec::new();
                self.emit_window(&rule, w, &c, now_ms, &mut records, live);
                if !records.is_empty() {
                    out.push((c.topic, records));
                }
            }
        }
        out
    }

    /// Makes the stateful rules' state durable in `store`: restores what it holds for the
    /// current rules (state of changed or removed rules is discarded), then tracks changes for
    /// the checkpoints ([`crate::state`]). Call once, after the rules are loaded and before the
    /// pipeline runs.
    pub fn attach_state(&self, store: StateStore, interval: std::time::Duration, registry: Option<Arc<Registry>>) -> Result<(), StoreError> {
        let mut loaded = store.load()?;
        if let Some(r) = registry {
            if let Some(bytes) = loaded.registry.take() {
                match r.import(&bytes) {
                    Ok(n) => tracing::info!(devices = n, "device registry restored from the state store"),
                    Err(e) => tracing::warn!(error = %e, "the stored device registry cannot be read; starting from the devices file"),
                }
            }
            let _ = self.registry.set((r.clone(), std::sync::atomic::AtomicU64::new(r.version())));
        }
        let (epoch, groups) = (loaded.epoch, loaded.groups.len() + loaded.parts.len());
        let rules = self.rules();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        for rule in self.windows.restore(&rules.rules, loaded, now) {
            store.drop_rule(&rule)?;
        }
        tracing::info!(epoch, keys = groups, "state restored from the store");
        self.windows.tracking.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.checkpoints.set(Checkpoints::new(store, epoch, interval));
        Ok(())
    }

    /// The checkpoints of the durable state, when attached.
    pub fn checkpoints(&self) -> Option<&Arc<Checkpoints>> {
        self.checkpoints.get()
    }

    /// The state changed since the last call (a checkpoint's cut).
    pub fn state_snapshot(&self) -> Snapshot {
        let mut s = self.windows.snapshot();
        if let Some((r, seen)) = self.registry.get() {
            let v = r.version();
            if seen.swap(v, std::sync::atomic::Ordering::Relaxed) != v {
                s.registry = Some(r.export());
            }
        }
        s
    }

    /// The serialized size of every group and partition held (what a checkpoint writing all of
    /// them would write): the state-size figure of `bench/state_memory.rs`.
    pub fn state_snapshot_all_bytes(&self) -> usize {
        self.windows.serialized_bytes()
    }

    /// The version of the device registry the checkpoints keep, when there is one.
    pub(crate) fn registry_version(&self) -> Option<u64> {
        self.registry.get().map(|(r, _)| r.version())
    }

    /// Whether an input of digest `d` is one the last checkpoint already holds.
    pub(crate) fn replayed(&self, d: u64) -> bool {
        self.windows.replayed(d)
    }

    /// Whether digests of inputs the last checkpoint holds are still expected back.
    pub(crate) fn replaying(&self) -> bool {
        self.windows.replaying()
    }

    /// Groups a windowed rule holds state for.
    pub fn state_keys(&self, rule: &str) -> usize {
        self.windows.keys(rule)
    }

    /// Counts what a rule's delivery audit saw on a record, and writes an audit record for a
    /// gap: `{"rule", "key": [productKey, deviceName], "from", "to", "missing", "topic",
    /// "received_ms", "message_id"}`.
    pub(super) fn audit(&self, rule: &Rule, topic: &str, ctx: &Ctx<'_>, event: Option<&crate::value::Value<'static>>, out: &mut Vec<OutputRecord>) {
        use crate::telemetry::metrics::{AUDIT_DUPLICATES, AUDIT_MISSING, AUDIT_REORDERS};
        use crate::value::Value;
        match event {
            Some(Value::Str(s)) if s == "duplicate" => AUDIT_DUPLICATES.with_label_values(&[&rule.name]).inc(),
            Some(Value::Str(s)) if s == "reorder" => AUDIT_REORDERS.with_label_values(&[&rule.name]).inc(),
            Some(Value::Json(j)) => {
                let (from, to) = (j["gap"][0].as_i64().unwrap_or(0), j["gap"][1].as_i64().unwrap_or(0));
                let missing = (i128::from(to) - i128::from(from) + 1).max(0) as u64;
                AUDIT_MISSING.with_label_values(&[&rule.name]).inc_by(missing);
                let value = serde_json::json!({
                    "rule": &*rule.name,
                    "key": [ctx.product_key(), ctx.device_name()],
                    "from": from,
                    "to": to,
                    "missing": missing,
                    "topic": ctx.msg.topic,
                    "received_ms": ctx.msg.meta.received_ms,
                    "message_id": ctx.msg.meta.id,
                });
                out.push(OutputRecord {
                    rule: rule.name.clone(),
                    topic: Arc::from(topic),
                    key: None,
                    headers: vec![("sluice-audit".into(), "gap".into())],
                    value: serde_json::to_vec(&value).unwrap_or_default(),
                    is_error: false,
                });
            }
            _ => {}
        }
    }
}
