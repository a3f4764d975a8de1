//! The engine: evaluates every rule whose filter matches a message on its decoded records and
//! renders their actions into output records; failures become error records. Rule sets are
//! immutable and shared as `Arc`s; a reload swaps the whole set atomically.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use serde_json::Value as Json;
use smallvec::{smallvec, SmallVec};

use crate::devices::Registry;
use crate::engine::eval::{eval_rule, passes_where, window_output, Star};
use crate::engine::guard;
use crate::engine::input::{self, Records};
use crate::engine::ruleset::{RuleSet, Scratch, FLUSH_EVERY};
use crate::engine::types::{EngineOptions, EntryFailure, Outcome, RecentError, Stage, ERROR_ENTRIES_MAX, RECENT_ERRORS_PER_RULE};
use crate::engine::window::{Closed, Windows};
use crate::error::EvalError;
use crate::flow::OutputRecord;
use crate::message::{is_batch, Message};
use crate::rule::ctx::WindowView;
use crate::rule::expr::{Ctx, Env};
use crate::rule::{Rule, WindowRule};
use crate::state::{Checkpoints, Snapshot, StateStore, StoreError};
use crate::telemetry::metrics::EVAL_TIMING_EVERY;
use crate::topic::TopicInfo;
use crate::value::base64_encode;

mod partitions;
mod shadow;
mod stateful;

/// Whose window state an evaluation uses: the engine's (live), or a test's own.
#[derive(Clone, Copy)]
pub(crate) enum Mode<'w> {
    /// The running engine: its window state; failures are remembered for the rules API.
    Live,
    /// A test run (`sluice test`, the rules API's test): state of its own, nothing remembered.
    Test(&'w Windows),
}

/// One step of [`Engine::test_sequence`].
#[derive(Debug)]
pub struct TestStep {
    /// The virtual clock at this step, ms since the epoch.
    pub now_ms: i64,
    /// The message, if any (a step without one only moves the clock).
    pub msg: Option<Message>,
}

/// The rule engine.
pub struct Engine {
    rules: ArcSwap<RuleSet>,
    env: Env,
    opts: EngineOptions,
    /// The last few failures of each rule (touched only when a rule fails).
    recent: dashmap::DashMap<Arc<str>, std::collections::VecDeque<RecentError>>,
    /// The windows of the windowed rules.
    windows: Windows,
    /// The durable store's checkpoints, once attached ([`Engine::attach_state`]).
    checkpoints: std::sync::OnceLock<Arc<Checkpoints>>,
    /// The device registry whose learnt state the checkpoints keep, and its version at the
    /// last cut.
    registry: std::sync::OnceLock<(Arc<Registry>, std::sync::atomic::AtomicU64)>,
    /// The console's live-sample tap ([`Engine::set_tap`]; off until configured).
    tap: std::sync::OnceLock<crate::engine::tap::Tap>,
    /// Shadow runs of candidate rule versions ([`crate::engine::shadow`]).
    shadows: crate::engine::shadow::Shadows,
}

impl Engine {
    /// An engine over a rule set.
    pub fn new(rules: RuleSet, env: Env, opts: EngineOptions) -> Engine {
        Engine {
            rules: ArcSwap::from_pointee(rules),
            env,
            opts,
            recent: dashmap::DashMap::new(),
            windows: Windows::default(),
            checkpoints: std::sync::OnceLock::new(),
            registry: std::sync::OnceLock::new(),
            tap: std::sync::OnceLock::new(),
            shadows: crate::engine::shadow::Shadows::default(),
        }
    }

    /// Configures the live-sample tap (once, before the pipeline runs).
    pub fn set_tap(&self, cfg: crate::engine::tap::TapConfig) {
        let _ = self.tap.set(crate::engine::tap::Tap::new(cfg));
    }

    /// The live-sample tap (off when not configured).
    pub fn tap(&self) -> &crate::engine::tap::Tap {
        self.tap.get_or_init(crate::engine::tap::Tap::default)
    }

    /// The most recent failures of the rule named `rule`, oldest first.
    pub fn recent_errors(&self, rule: &str) -> Vec<RecentError> {
        self.recent.get(rule).map(|q| q.iter().cloned().collect()).unwrap_or_default()
    }

    /// Forgets what the engine keeps about a rule that no longer exists.
    pub fn forget_rule(&self, rule: &str) {
        self.recent.remove(rule);
        self.windows.forget(rule);
        crate::telemetry::metrics::forget_rule(rule);
    }

    /// Evaluates `rule` (forced enabled) alone on one message, exactly as the running engine
    /// would, with this engine's environment (time zone, device registry): the code path of
    /// `sluice test` and of the rules API's test.
    pub fn test_rule(&self, mut rule: Rule, msg: &Message, now_ms: i64) -> Vec<OutputRecord> {
        rule.enabled = true;
        let set = Arc::new(RuleSet::unmetered(vec![Arc::new(rule)]));
        let mut out = Vec::new();
        let windows = Windows::default();
        self.process_with(&set, msg, now_ms, &mut Scratch::default(), &mut out, Mode::Test(&windows));
        out
    }

    /// Runs `rule` (forced enabled) over a sequence of steps on a virtual clock, with window
    /// state of its own: before each step's message, the clock moves to the step's `now_ms` and
    /// closes what it closes (window ends, idle keys), as the running engine's timer would.
    /// Returns every output and error record in order: the code path of `sluice test --input`.
    pub fn test_sequence(&self, mut rule: Rule, steps: impl IntoIterator<Item = TestStep>) -> Vec<OutputRecord> {
        rule.enabled = true;
        let set = Arc::new(RuleSet::unmetered(vec![Arc::new(rule)]));
        let windows = Windows::default();
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        for step in steps {
            for (_, records) in self.tick_with(&set, &windows, step.now_ms, false) {
                out.extend(records);
            }
            if let Some(msg) = &step.msg {
                self.process_with(&set, msg, step.now_ms, &mut scratch, &mut out, Mode::Test(&windows));
            }
        }
        out
    }

    /// Swaps in a new rule set; messages being processed finish with the old one.
    pub fn reload(&self, rules: RuleSet) {
        self.rules.store(Arc::new(rules));
    }

    /// Indexes `rules` into a new set, with per-rule metrics or not as the options say, and
    /// swaps it in.
    pub fn reload_rules(&self, rules: Vec<Arc<Rule>>) {
        self.reload(RuleSet::with_metrics(rules, self.opts.rule_metrics));
    }

    /// The current rule set.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// Options.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Runs every matching rule on `msg`, appending output and error records to `out`.
    /// Never fails: bad input becomes error records.
    pub fn process(&self, msg: &Message, now_ms: i64, scratch: &mut Scratch, out: &mut Vec<OutputRecord>) -> Outcome {
        let set = self.rules.load();
        self.process_with(&set, msg, now_ms, scratch, out, Mode::Live)
    }

    /// [`process`](Self::process) with a given rule set; `live` records failures for the
    /// rules API (a test run does not).
    fn process_with(&self, set: &Arc<RuleSet>, msg: &Message, now_ms: i64, scratch: &mut Scratch, out: &mut Vec<OutputRecord>, mode: Mode<'_>) -> Outcome {
        set.index.matches(&msg.topic, &mut scratch.ids);
        if scratch.ids.is_empty() {
            return Outcome::default();
        }
        let info = TopicInfo::parse(&msg.topic);
        let wanted = self.wants_document(set, &scratch.ids, &info, msg);
        let doc = (wanted && msg.payload.len() <= self.opts.max_payload_bytes).then(|| input::decode(msg, None));
        let mut records = Records::new(msg, &info, doc, wanted, self.opts.max_payload_bytes, None);
        records.parsed = true;
        self.eval(set, msg, &info, &records, now_ms, scratch, out, mode)
    }

    /// The current rule set, for a worker's message.
    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<RuleSet>> {
        self.rules.load()
    }

    /// Whether the rules `ids` of `set` read the decoded payload of `msg`: when a rule reads
    /// fields, for batches, and whenever the payload looks like a JSON object (so deviceName()
    /// and friends can fall back to its fields). A decode error only fails the rules that read
    /// fields.
    pub(crate) fn wants_document(&self, set: &RuleSet, ids: &[usize], info: &TopicInfo<'_>, msg: &Message) -> bool {
        ids.iter().any(|&i| set.rules[i].reads_record) || is_batch(info) || msg.payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
    }

    /// Evaluates the rules `scratch.ids` of `set` (the index's matches for `msg`) on its
    /// records, appending output and error records to `out`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn eval(
        &self,
        set: &Arc<RuleSet>,
        msg: &Message,
        info: &TopicInfo<'_>,
        records: &Records<'_>,
        now_ms: i64,
        scratch: &mut Scratch,
        out: &mut Vec<OutputRecord>,
        mode: Mode<'_>,
    ) -> Outcome {
        let (live, windows) = match mode {
            Mode::Live => (true, &self.windows),
            Mode::Test(w) => (false, w),
        };
        let mut outcome = Outcome { matched: scratch.ids.len() as u32, ..Outcome::default() };
        let (failure, oversized, batch, parsed) = (&records.failure, records.oversized, records.batch, records.parsed);
        let records = &records.list;

        // `SELECT *` outputs of each record, serialized once for all the rules that have one.
        let mut star: SmallVec<[Star; 1]> = smallvec![Star { parsed, bytes: None }; records.len()];
        let Scratch { ids, stats, skip_state } = scratch;
        let scratch_skip = *skip_state;
        stats.bind(set);
        for &i in ids.iter() {
            let rule = &set.rules[i];
            let m = stats.rule(i);
            // The evaluation time is sampled: reading the clock around every rule of every
            // message cost more than some rules do.
            let mut timed = None;
            if let Some(m) = m {
                m.matched.inc();
                if m.matched.get() % EVAL_TIMING_EVERY == 1 {
                    timed = Some(Instant::now());
                }
            }
            let fail = |stage: Stage| {
                if let Some(m) = m {
                    m.failed[stage.failure_index()].inc();
                }
            };
            // The entries this rule failed on: one error record for all of them (bad input
            // must not become one record, each with the payload, per entry).
            let mut failures: SmallVec<[EntryFailure; 1]> = SmallVec::new();
            'rule: {
                if let Some(e) = failure {
                    if rule.reads_record || oversized {
                        outcome.failed += 1;
                        fail(Stage::Decode);
                        out.push(self.rule_failed(rule, msg, Stage::Decode, e, None, live));
                        break 'rule;
                    }
                }
                for (n, record) in records.iter().enumerate() {
                    let record = match record {
                        Ok(r) => r.as_ref(),
                        Err(e) if rule.reads_record => {
                            outcome.failed += 1;
                            fail(Stage::Decode);
                            failures.push((n, Stage::Decode, e.clone()));
                            continue;
                        }
                        Err(_) => None,
                    };
                    let ctx = Ctx { msg, info, record, now_ms, env: &self.env, item: None, window: None };
                    let before = out.len();
                    let star_slot = &mut star[n];
                    let stateful = rule.window.is_some() || rule.analytics.is_some();
                    if stateful && scratch_skip {
                        // Delivered again after a restart: the checkpoint holds its contribution.
                        outcome.filtered += 1;
                        continue;
                    }
                    outcome.stateful |= stateful;
                    let result = guard::catch(|| match (&rule.window, &rule.analytics) {
                        (Some(w), _) => self.eval_windowed(windows, rule, w, &ctx, out, live),
                        (None, Some(a)) => {
                            // Analytic calls first, for every record (before WHERE).
                            let values = windows.analytic(rule, a, &ctx)?;
                            if let Some((slot, topic)) = &a.audit {
                                self.audit(rule, topic, &ctx, values.get(*slot), out);
                            }
                            let view = WindowView { aggs: &values, ..WindowView::default() };
                            eval_rule(rule, &Ctx { window: Some(&view), ..ctx }, star_slot, out)
                        }
                        (None, None) => eval_rule(rule, &ctx, star_slot, out),
                    })
                    .unwrap_or_else(|panic| {
                        // Whatever the rule appended before it panicked is dropped.
                        out.truncate(before);
                        Err((Stage::Panic, EvalError(format!("rule evaluation panicked: {panic}"))))
                    });
                    match result {
                        Ok(true) => {
                            outcome.passed += 1;
                            if let Some(m) = m {
                                m.passed.inc();
                                m.outputs.inc_by((out.len() - before) as u64);
                            }
                        }
                        Ok(false) => {
                            outcome.filtered += 1;
                            if let Some(m) = m {
                                m.no_result.inc();
                            }
                        }
                        Err((stage, e)) => {
                            outcome.failed += 1;
                            fail(stage);
                            failures.push((n, stage, e.0));
                        }
                    }
                }
            }
            if !failures.is_empty() {
                let entries = batch.then(|| (&failures[..], records.len()));
                out.push(self.rule_failed(rule, msg, failures[0].1, &failures[0].2, entries, live));
            }
            if let (Some(m), Some(started)) = (m, timed) {
                m.eval.observe(started.elapsed().as_secs_f64());
            }
        }
        stats.since_flush += 1;
        if stats.since_flush >= FLUSH_EVERY {
            stats.flush();
        }
        outcome
    }

    /// The error record of a failed evaluation, like AWS IoT's error action (rule, topic, stage,
    /// reason, payload), remembered (when `live`) for the rules API. For an integration batch, `entries` holds the entries that failed (and how many entries
    /// the batch has): one record for all of them.
    fn rule_failed(&self, rule: &Rule, msg: &Message, stage: Stage, reason: &str, entries: Option<(&[EntryFailure], usize)>, live: bool) -> OutputRecord {
        if live {
            let mut q = self.recent.entry(rule.name.clone()).or_default();
            if q.len() >= RECENT_ERRORS_PER_RULE {
                q.pop_front();
            }
            let reason = match entries {
                Some((failed, of)) => format!("{} of {of} entries failed; first: params[{}]: {reason}", failed.len(), failed[0].0),
                None => reason.to_string(),
            };
            q.push_back(RecentError { received_ms: msg.meta.received_ms, topic: msg.topic.clone(), source: msg.meta.source.to_string(), stage: stage.name(), reason });
        }
        let topic = rule.error_topic.clone().unwrap_or_else(|| self.opts.default_error_topic.clone());
        self.error_to(Some(&rule.name), topic, msg, stage, reason, entries)
    }

    /// A dead-letter record for an input that a source could not decode (no rule ran).
    pub fn dead_letter(&self, msg: &Message, reason: &str) -> OutputRecord {
        self.error_to(None, self.opts.default_error_topic.clone(), msg, Stage::Source, reason, None)
    }

    /// The error record of a message whose processing panicked outside any rule (decode,
    /// registry update): a dead letter with stage `panic`.
    pub fn panic_record(&self, msg: &Message, reason: &str) -> OutputRecord {
        self.error_to(None, self.opts.default_error_topic.clone(), msg, Stage::Panic, reason, None)
    }

    /// The record: `{"rule", "topic", "stage", "reason", "payload_base64", ["payload_truncated",
    /// "payload_bytes",] "source", "received_ms", "message_id", ["failed_entries", "entries"]}`.
    /// At most [`EngineOptions::error_payload_max_bytes`] of the payload and
    /// [`ERROR_ENTRIES_MAX`] entries are copied, so bad input cannot be amplified.
    fn error_to(&self, rule: Option<&Arc<str>>, topic: String, msg: &Message, stage: Stage, reason: &str, entries: Option<(&[EntryFailure], usize)>) -> OutputRecord {
        let max = self.opts.error_payload_max_bytes;
        let cut = msg.payload.len() > max;
        let mut value = serde_json::json!({
            "rule": rule.map(|r| &**r),
            "topic": msg.topic,
            "stage": stage.name(),
            "reason": reason,
            "payload_base64": base64_encode(&msg.payload[..msg.payload.len().min(max)]),
        });
        let m = value.as_object_mut().expect("an object");
        if cut {
            m.insert("payload_truncated".into(), Json::Bool(true));
            m.insert("payload_bytes".into(), Json::from(msg.payload.len()));
        }
        m.insert("source".into(), Json::from(&*msg.meta.source));
        m.insert("received_ms".into(), Json::from(msg.meta.received_ms));
        m.insert("message_id".into(), Json::from(msg.meta.id));
        if let Some((failed, _)) = entries {
            m.insert("failed_entries".into(), Json::from(failed.len()));
            let listed = failed.iter().take(ERROR_ENTRIES_MAX).map(|(i, stage, reason)| serde_json::json!({"index": i, "stage": stage.name(), "reason": reason})).collect();
            m.insert("entries".into(), Json::Array(listed));
        }
        OutputRecord {
            rule: rule.cloned().unwrap_or_else(|| Arc::from("")),
            topic: Arc::from(topic),
            key: None,
            headers: vec![("sluice-error-stage".into(), stage.name().into())],
            value: serde_json::to_vec(&value).unwrap_or_default(),
            is_error: true,
        }
    }
}
