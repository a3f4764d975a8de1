//! The engine: finds the rules for a message through the topic index, decodes the payload once,
//! evaluates every matching rule and renders its actions into output records. Rule sets are
//! immutable and shared as `Arc`s; a reload swaps the whole set atomically.

pub mod guard;
pub mod pipeline;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use serde_json::Value as Json;

use crate::doc::Node;
use crate::error::EvalError;
use crate::flow::OutputRecord;
use crate::jsonw;
use crate::message::{is_batch, split_integration_batch, Message};
use crate::rule::expr::{Ctx, Env};
use crate::rule::plan::{Foreach, SelectItem};
use crate::rule::template::{valid_kafka_topic, Template};
use crate::rule::Rule;
use crate::telemetry::metrics::{LocalRuleMetrics, RuleMetrics};
use crate::topic::{TopicIndex, TopicInfo};
use crate::value::{base64_encode, Value};
use smallvec::{smallvec, SmallVec};

/// An immutable set of compiled rules with its topic index.
pub struct RuleSet {
    rules: Vec<Arc<Rule>>,
    /// Each enabled rule's metric handles, parallel to `rules` (resolved once here, never per
    /// message).
    metrics: Vec<Option<RuleMetrics>>,
    index: TopicIndex,
}

impl RuleSet {
    /// Indexes the enabled rules (disabled ones are kept for listing).
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        RuleSet::from_shared(rules.into_iter().map(Arc::new).collect())
    }

    /// Indexes already shared rules: a reload keeps the compiled rules whose files did not
    /// change (or no longer compile) and swaps the set. A rule keeps its metric series across
    /// sets (they are found by its name).
    pub fn from_shared(rules: Vec<Arc<Rule>>) -> RuleSet {
        RuleSet::with_metrics(rules, true)
    }

    /// A set whose evaluations count in no metric (a test run of a rule, or an engine with
    /// per-rule metrics turned off).
    pub fn unmetered(rules: Vec<Arc<Rule>>) -> RuleSet {
        RuleSet::with_metrics(rules, false)
    }

    /// Indexes shared rules; with `metered`, each enabled rule counts into its metric series.
    pub fn with_metrics(rules: Vec<Arc<Rule>>, metered: bool) -> RuleSet {
        let mut index = TopicIndex::new();
        for (i, r) in rules.iter().enumerate() {
            if r.enabled {
                index.insert(&r.filter, i);
            }
        }
        let metrics = rules.iter().map(|r| (metered && r.enabled).then(|| RuleMetrics::new(&r.name))).collect();
        RuleSet { rules, metrics, index }
    }

    /// The rules, in load order.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Where error records go when a rule has no error action.
    pub default_error_topic: String,
    /// Payloads above this size are not evaluated: they become error records.
    pub max_payload_bytes: usize,
    /// Whether rule sets loaded by [`Engine::reload_rules`] count into per-rule metrics.
    pub rule_metrics: bool,
    /// At most this many payload bytes are copied into an error record (the rest is cut and
    /// the record says so).
    pub error_payload_max_bytes: usize,
}

/// Default of [`EngineOptions::error_payload_max_bytes`]: 64 KiB.
pub const DEFAULT_ERROR_PAYLOAD_MAX_BYTES: usize = 64 * 1024;

/// At most this many failed entries of an integration batch are listed (with their reasons) in
/// the one error record a rule writes for the batch; `failed_entries` counts them all.
pub const ERROR_ENTRIES_MAX: usize = 100;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { default_error_topic: "sluice-errors".into(), max_payload_bytes: 1024 * 1024, rule_metrics: true, error_payload_max_bytes: DEFAULT_ERROR_PAYLOAD_MAX_BYTES }
    }
}

/// A failed entry of an integration batch: its index, stage and reason.
type EntryFailure = (usize, Stage, String);

/// What happened to one message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Rules whose filter matched.
    pub matched: u32,
    /// Records for which a rule produced output.
    pub passed: u32,
    /// Records a WHERE filtered out.
    pub filtered: u32,
    /// Evaluation failures (each produced an error record).
    pub failed: u32,
}

/// Per-worker scratch space, reused across messages. It also holds the worker's per-rule counts
/// ([`LocalRuleMetrics`]), which reach the shared metrics every [`FLUSH_EVERY`] messages, on
/// [`Scratch::flush_metrics`] (the pipeline calls it when its worker is idle), when the rule
/// set changes, and when the scratch is dropped.
#[derive(Default)]
pub struct Scratch {
    ids: Vec<usize>,
    stats: RuleStats,
}

/// Messages a worker processes between two flushes of its per-rule counts.
pub const FLUSH_EVERY: u32 = 256;

const NO_SLOT: u32 = u32::MAX;

/// A worker's per-rule counts for the rule set it last used.
#[derive(Default)]
struct RuleStats {
    /// The set the counts belong to.
    set: Option<Arc<RuleSet>>,
    /// Rule index → position in `locals` (`NO_SLOT` until the rule first matches).
    slots: Vec<u32>,
    /// Local metrics of the rules that matched since the set was bound.
    locals: Vec<LocalRuleMetrics>,
    /// Positions in `locals` counted since the last flush.
    dirty: Vec<u32>,
    dirty_flags: Vec<bool>,
    since_flush: u32,
}

impl RuleStats {
    /// Makes `set` the current set, flushing the counts of the previous one.
    fn bind(&mut self, set: &Arc<RuleSet>) {
        if self.set.as_ref().is_some_and(|s| Arc::ptr_eq(s, set)) {
            return;
        }
        self.flush();
        self.slots.clear();
        self.slots.resize(set.rules.len(), NO_SLOT);
        self.locals.clear();
        self.dirty_flags.clear();
        self.set = Some(set.clone());
    }

    /// The local metrics of rule `i` of the bound set (`None` for a disabled rule).
    fn rule(&mut self, i: usize) -> Option<&LocalRuleMetrics> {
        let mut slot = *self.slots.get(i)?;
        if slot == NO_SLOT {
            let shared = self.set.as_ref()?.metrics.get(i)?.as_ref()?;
            slot = self.locals.len() as u32;
            self.locals.push(shared.local());
            self.dirty_flags.push(false);
            self.slots[i] = slot;
        }
        let s = slot as usize;
        if !self.dirty_flags[s] {
            self.dirty_flags[s] = true;
            self.dirty.push(slot);
        }
        self.locals.get(s)
    }

    fn flush(&mut self) {
        for slot in self.dirty.drain(..) {
            let s = slot as usize;
            self.locals[s].flush();
            self.dirty_flags[s] = false;
        }
        self.since_flush = 0;
    }
}

impl Scratch {
    /// Adds this worker's pending per-rule counts to the shared metrics.
    pub fn flush_metrics(&mut self) {
        self.stats.flush();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.stats.flush();
    }
}

/// Processing stages named in error records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The source could not make a message of its input.
    Source,
    /// The payload could not be decoded (not JSON, bad batch, too large).
    Decode,
    /// WHERE failed.
    Where,
    /// SELECT failed.
    Select,
    /// An action template failed.
    Action,
    /// Evaluation panicked (a bug, caught by [`guard`]): the rule failed on this record only.
    Panic,
}

impl Stage {
    /// The index of a rule failure at this stage in [`LocalRuleMetrics::failed`] (a source
    /// failure is not a rule's).
    fn failure_index(self) -> usize {
        match self {
            Stage::Source | Stage::Decode => 0,
            Stage::Where => 1,
            Stage::Select => 2,
            Stage::Action => 3,
            Stage::Panic => 4,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Decode => "decode",
            Stage::Where => "where",
            Stage::Select => "select",
            Stage::Action => "action",
            Stage::Panic => "panic",
        }
    }
}

/// How many recent error records the engine keeps per rule (for the rules API).
pub const RECENT_ERRORS_PER_RULE: usize = 20;

/// A recent evaluation failure of a rule, as the rules API shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecentError {
    /// When the message was received (ms since the epoch).
    pub received_ms: i64,
    /// The message's IoT topic.
    pub topic: String,
    /// The source it came from.
    pub source: String,
    /// The failing stage: decode, where, select, action or panic.
    pub stage: &'static str,
    /// What went wrong.
    pub reason: String,
}

/// The rule engine.
pub struct Engine {
    rules: ArcSwap<RuleSet>,
    env: Env,
    opts: EngineOptions,
    /// The last few failures of each rule (touched only when a rule fails).
    recent: dashmap::DashMap<Arc<str>, std::collections::VecDeque<RecentError>>,
}

impl Engine {
    /// An engine over a rule set.
    pub fn new(rules: RuleSet, env: Env, opts: EngineOptions) -> Engine {
        Engine { rules: ArcSwap::from_pointee(rules), env, opts, recent: dashmap::DashMap::new() }
    }

    /// The most recent failures of the rule named `rule`, oldest first.
    pub fn recent_errors(&self, rule: &str) -> Vec<RecentError> {
        self.recent.get(rule).map(|q| q.iter().cloned().collect()).unwrap_or_default()
    }

    /// Forgets what the engine keeps about a rule that no longer exists.
    pub fn forget_rule(&self, rule: &str) {
        self.recent.remove(rule);
        crate::telemetry::metrics::forget_rule(rule);
    }

    /// Evaluates `rule` (forced enabled) alone on one message, exactly as the running engine
    /// would, with this engine's environment (time zone, device registry): the code path of
    /// `sluice test` and of the rules API's test.
    pub fn test_rule(&self, mut rule: Rule, msg: &Message, now_ms: i64) -> Vec<OutputRecord> {
        rule.enabled = true;
        let set = Arc::new(RuleSet::unmetered(vec![Arc::new(rule)]));
        let mut out = Vec::new();
        self.process_with(&set, msg, now_ms, &mut Scratch::default(), &mut out, false);
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
        self.process_with(&set, msg, now_ms, scratch, out, true)
    }

    /// [`process`](Self::process) with a given rule set; `live` records failures for the
    /// rules API (a test run does not).
    fn process_with(&self, set: &Arc<RuleSet>, msg: &Message, now_ms: i64, scratch: &mut Scratch, out: &mut Vec<OutputRecord>, live: bool) -> Outcome {
        set.index.matches(&msg.topic, &mut scratch.ids);
        let mut outcome = Outcome { matched: scratch.ids.len() as u32, ..Outcome::default() };
        if scratch.ids.is_empty() {
            return outcome;
        }
        let info = TopicInfo::parse(&msg.topic);
        // Decode when a rule reads fields, for batches, and whenever the payload looks like a
        // JSON object (so deviceName() and friends can fall back to its fields). A decode error
        // only fails the rules that read fields.
        let needs_json = scratch.ids.iter().any(|&i| set.rules[i].reads_record) || is_batch(&info) || msg.payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');

        // Decode once for all rules.
        let decoded: Result<Option<Node<'_>>, String> = if msg.payload.len() > self.opts.max_payload_bytes {
            Err(format!("payload of {} bytes exceeds max_payload_bytes ({})", msg.payload.len(), self.opts.max_payload_bytes))
        } else if needs_json {
            match Node::parse(&msg.payload) {
                Ok(n) => Ok(Some(n)),
                Err(e) => Err(format!("payload is not valid JSON: {e}")),
            }
        } else {
            Ok(None)
        };
        let batch = match (&decoded, is_batch(&info)) {
            (Ok(Some(root)), true) => Some(split_integration_batch(root, msg.meta.received_ms)),
            _ => None,
        };
        // The records rules see: one per integration entry, else the payload (or nothing).
        // A whole-message failure fails every rule that reads fields; a bad entry fails alone.
        let oversized = msg.payload.len() > self.opts.max_payload_bytes;
        let mut failure: Option<String> = decoded.as_ref().err().cloned();
        let records: SmallVec<[Result<Option<&Node<'_>>, String>; 1]> = match (&decoded, &batch) {
            (_, Some(Ok(entries))) => entries.iter().map(|e| e.as_ref().map(Some).map_err(|e| format!("invalid integration request: {e}"))).collect(),
            (_, Some(Err(e))) => {
                failure = Some(format!("invalid integration request: {e}"));
                smallvec![Ok(None)]
            }
            (Ok(root), None) => smallvec![Ok(root.as_ref())],
            (Err(_), None) => smallvec![Ok(None)],
        };

        // `SELECT *` outputs of each record, serialized once for all the rules that have one.
        let mut star: SmallVec<[Option<Vec<u8>>; 1]> = smallvec![None; records.len()];
        let Scratch { ids, stats } = scratch;
        stats.bind(set);
        // One clock read per rule: each rule's time runs from the end of the previous one.
        let mut last = Instant::now();
        for &i in ids.iter() {
            let rule = &set.rules[i];
            let m = stats.rule(i);
            if let Some(m) = m {
                m.matched.inc();
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
                if let Some(e) = &failure {
                    if rule.reads_record || oversized {
                        outcome.failed += 1;
                        fail(Stage::Decode);
                        out.push(self.rule_failed(rule, msg, Stage::Decode, e, None, live));
                        break 'rule;
                    }
                }
                for (n, record) in records.iter().enumerate() {
                    let record = match record {
                        Ok(r) => *r,
                        Err(e) if rule.reads_record => {
                            outcome.failed += 1;
                            fail(Stage::Decode);
                            failures.push((n, Stage::Decode, e.clone()));
                            continue;
                        }
                        Err(_) => None,
                    };
                    let ctx = Ctx { msg, info: &info, record, now_ms, env: &self.env, item: None };
                    let before = out.len();
                    let star_slot = &mut star[n];
                    let result = guard::catch(|| eval_rule(rule, &ctx, star_slot, out)).unwrap_or_else(|panic| {
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
                let entries = batch.is_some().then(|| (&failures[..], records.len()));
                out.push(self.rule_failed(rule, msg, failures[0].1, &failures[0].2, entries, live));
            }
            let now = Instant::now();
            if let Some(m) = m {
                m.eval.observe(now.duration_since(last).as_secs_f64());
            }
            last = now;
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
            topic,
            key: None,
            headers: vec![("sluice-error-stage".into(), stage.name().into())],
            value: serde_json::to_vec(&value).unwrap_or_default(),
            is_error: true,
        }
    }
}

/// Evaluates one rule on one record: `Ok(true)` when it produced output. `star` caches the
/// record serialized whole (a `SELECT *` output) for the other rules of the message.
fn eval_rule<'a>(rule: &'a Rule, ctx: &Ctx<'a>, star: &mut Option<Vec<u8>>, out: &mut Vec<OutputRecord>) -> Result<bool, (Stage, EvalError)> {
    if let Some(w) = &rule.where_ {
        let v = w.eval(ctx).map_err(|e| (Stage::Where, e))?;
        match v.truth() {
            Ok(Some(true)) => {}
            Ok(_) => return Ok(false),
            Err(e) => return Err((Stage::Where, EvalError(e))),
        }
    }
    match &rule.foreach {
        Some(each) => eval_foreach(rule, each, ctx, star, out),
        None => select_output(rule, ctx, star, out),
    }
}

/// `FOREACH`: one output per element of the array that INCASE keeps (the DO items evaluated with
/// the element bound, or the element itself without DO). `Ok(false)` when no element made an
/// output; on a failure, no output of the record is kept.
fn eval_foreach<'a>(rule: &'a Rule, each: &'a Foreach, ctx: &Ctx<'a>, star: &mut Option<Vec<u8>>, out: &mut Vec<OutputRecord>) -> Result<bool, (Stage, EvalError)> {
    let start = out.len();
    let result = (|| {
        let mut any = false;
        let elements = each.elements(ctx).map_err(|e| (Stage::Select, e))?;
        if elements.len() > FOREACH_MAX_ELEMENTS {
            return Err((Stage::Select, EvalError(format!("FOREACH over {} elements: at most {FOREACH_MAX_ELEMENTS} per record", elements.len()))));
        }
        let (mut bytes, mut counted) = (0usize, start);
        for element in &elements {
            bytes += out[counted..].iter().map(|r| r.value.len()).sum::<usize>();
            counted = out.len();
            if bytes > FOREACH_MAX_OUTPUT_BYTES {
                return Err((Stage::Select, EvalError(format!("FOREACH outputs of one record exceed {FOREACH_MAX_OUTPUT_BYTES} bytes"))));
            }
            let ctx = ctx.with_item(element);
            if !each.keep(&ctx).map_err(|e| (Stage::Select, e))? {
                continue;
            }
            if each.has_do {
                select_output(rule, &ctx, star, out)?;
            } else {
                let mut value = Vec::with_capacity(128);
                jsonw::write_value(&mut value, element).map_err(|e| (Stage::Select, EvalError(format!("cannot serialize output: {e}"))))?;
                let lookup = |name: &str| {
                    let field = match element {
                        Value::Doc(n) => n.get(name).map(Value::from_node),
                        Value::Json(j) => j.get(name).map(Value::from_json),
                        _ => None,
                    };
                    template_field(name, field)
                };
                emit(rule, value, lookup, out)?;
            }
            any = true;
        }
        Ok(any)
    })();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// At most this many elements are iterated by one FOREACH on one record (more is an error of
/// stage `select`): bad input must not be amplified into unbounded output.
pub const FOREACH_MAX_ELEMENTS: usize = 10_000;

/// At most this many bytes of output values one FOREACH may produce from one record (more is
/// an error of stage `select`, and none of the record's outputs are kept).
pub const FOREACH_MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// Evaluates the select list on one record (or FOREACH element) and emits its output.
fn select_output<'a>(rule: &'a Rule, ctx: &Ctx<'a>, star: &mut Option<Vec<u8>>, out: &mut Vec<OutputRecord>) -> Result<bool, (Stage, EvalError)> {
    // `SELECT *` alone: the record is the output, serialized as it is.
    if let ([SelectItem::Star], Some(record @ Node::Object(_))) = (rule.select.as_slice(), ctx.record) {
        let value = match star {
            Some(v) => v.clone(),
            None => {
                let mut v = Vec::with_capacity(ctx.msg.payload.len() + 16);
                jsonw::write_node(&mut v, record).map_err(|e| (Stage::Select, EvalError(format!("cannot serialize output: {e}"))))?;
                star.insert(v).clone()
            }
        };
        let lookup = |name: &str| template_field(name, record.get(name).map(Value::from_node));
        return emit(rule, value, lookup, out).map(|()| true);
    }
    let mut fields: OutFields<'a> = SmallVec::new();
    for item in &rule.select {
        match item {
            SelectItem::Named { name, expr } => {
                let v = expr.eval(ctx).map_err(|e| (Stage::Select, e))?;
                set_field(&mut fields, Cow::Borrowed(name.as_str()), v, rule.dynamic_fields);
            }
            SelectItem::Star => match ctx.record {
                Some(Node::Object(m)) => {
                    for (k, v) in m {
                        set_field(&mut fields, Cow::Borrowed(k.as_ref()), Value::from_node(v), true);
                    }
                }
                Some(other) => return Err((Stage::Select, EvalError(format!("SELECT * needs a JSON object payload, got {}", Value::from_node(other).type_name())))),
                None => return Err((Stage::Select, EvalError("SELECT * needs a JSON object payload".into()))),
            },
            SelectItem::Flatten(expr) => match expr.eval(ctx).map_err(|e| (Stage::Select, e))? {
                Value::Json(Cow::Borrowed(Json::Object(m))) => {
                    for (k, v) in m {
                        set_field(&mut fields, Cow::Borrowed(k.as_str()), Value::from_json(v), true);
                    }
                }
                Value::Json(Cow::Owned(Json::Object(m))) => {
                    for (k, v) in m {
                        set_field(&mut fields, Cow::Owned(k), Value::from_owned_json(v), true);
                    }
                }
                Value::Doc(Node::Object(m)) => {
                    for (k, v) in m {
                        set_field(&mut fields, Cow::Borrowed(k.as_ref()), Value::from_node(v), true);
                    }
                }
                Value::Null => {}
                other => return Err((Stage::Select, EvalError(format!("expected an object to flatten, got {}", other.type_name())))),
            },
        }
    }

    let mut value = Vec::with_capacity(256);
    jsonw::write_fields(&mut value, &fields[..]).map_err(|e| (Stage::Select, EvalError(format!("cannot serialize output: {e}"))))?;
    let lookup = |name: &str| -> Result<String, String> {
        match fields.iter().rev().find(|(k, _)| k == name) {
            Some((_, v)) => v.as_text().map(Cow::into_owned).ok_or_else(|| format!("template field `{name}` is null")),
            None => Err(format!("template field `{name}` is not in the output")),
        }
    };
    emit(rule, value, lookup, out)?;
    Ok(true)
}

/// A template field's text, from the field of a whole-record output (`SELECT *`, or a FOREACH
/// element): an error when it is NULL or missing.
fn template_field(name: &str, field: Option<Value<'_>>) -> Result<String, String> {
    match field {
        Some(Value::Null) => Err(format!("template field `{name}` is null")),
        Some(v) => Ok(v.as_text().map(Cow::into_owned).unwrap_or_default()),
        None => Err(format!("template field `{name}` is not in the output")),
    }
}

/// Renders the rule's actions for one output value and appends the records; on any failure
/// nothing is appended.
fn emit(rule: &Rule, value: Vec<u8>, lookup: impl Fn(&str) -> Result<String, String>, out: &mut Vec<OutputRecord>) -> Result<(), (Stage, EvalError)> {
    let render = |t: &Template| t.render(&lookup).map_err(|e| (Stage::Action, EvalError(format!("template `{}`: {e}", t.source))));
    let start = out.len();
    let mut value = Some(value);
    let last = rule.actions.len().saturating_sub(1);
    let rendered = (|| {
        for (n, action) in rule.actions.iter().enumerate() {
            let topic = render(&action.topic)?;
            if !valid_kafka_topic(&topic) {
                return Err((Stage::Action, EvalError(format!("target topic `{topic}` (from `{}`) is not a valid Kafka topic name", action.topic.source))));
            }
            let key = action.key.as_ref().map(render).transpose()?;
            let mut headers = Vec::with_capacity(action.headers.len());
            for (h, t) in &action.headers {
                headers.push((h.clone(), render(t)?));
            }
            // The last action takes the serialized value; earlier ones copy it.
            let v = if n == last { value.take().unwrap_or_default() } else { value.clone().unwrap_or_default() };
            out.push(OutputRecord { rule: rule.name.clone(), topic, key, headers, value: v, is_error: false });
        }
        Ok(())
    })();
    if rendered.is_err() {
        out.truncate(start);
    }
    rendered
}

/// The fields of one output, in order (on the stack for the usual handful).
type OutFields<'a> = SmallVec<[(Cow<'a, str>, Value<'a>); 8]>;

/// Adds a field; with `replace`, an existing field of the same name is overwritten in place
/// (so `SELECT *, upper(x) AS x` replaces `x`).
fn set_field<'a>(fields: &mut OutFields<'a>, name: Cow<'a, str>, v: Value<'a>, replace: bool) {
    if replace {
        if let Some(slot) = fields.iter_mut().find(|(k, _)| *k == name) {
            slot.1 = v;
            return;
        }
    }
    fields.push((name, v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Metadata;
    use crate::rule::compile_str;
    use crate::telemetry::metrics::{forget_rule, RULE_EVAL_SECONDS, RULE_FAILED, RULE_MATCHED, RULE_NO_RESULT, RULE_OUTPUT_RECORDS, RULE_PASSED};
    use std::path::Path;

    fn rule(name: &str, sql: &str) -> Rule {
        compile_str(Path::new("t.toml"), &format!("name = \"{name}\"\nsql = \"\"\"\n{sql}\n\"\"\"\n[[actions]]\ntopic = \"out\"\n[[actions]]\ntopic = \"copy\"\n")).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn msg(topic: &str, payload: &str) -> Message {
        Message { topic: topic.into(), payload: payload.as_bytes().to_vec().into(), meta: Metadata { source: Arc::from("t"), received_ms: 1, id: 1, ..Metadata::default() } }
    }

    #[test]
    fn per_rule_metrics_count_records_and_reach_the_registry_on_flush() {
        let name = "engine-unit-batch";
        let engine =
            Engine::new(RuleSet::new(vec![rule(name, "SELECT deviceKey FROM \"sys/+/integration/measurepoint/post\" WHERE measurepoints.temp + 0 > 10")]), Env::default(), EngineOptions::default());
        let batch = r#"{"id":"1","version":"1.0","method":"integration.measurepoint.post","params":[
            {"deviceKey":"d1","measurepoints":{"temp":20},"time":1},
            {"deviceKey":"d2","measurepoints":{"temp":5},"time":1},
            {"deviceKey":"d3","measurepoints":{"temp":"warm"},"time":1},
            7]}"#;
        let get = |v: &prometheus::IntCounterVec, labels: &[&str]| v.with_label_values(labels).get();
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        let outcome = engine.process(&msg("sys/pk/integration/measurepoint/post", batch), 1, &mut scratch, &mut out);
        assert_eq!(outcome, Outcome { matched: 1, passed: 1, filtered: 1, failed: 2 });
        assert_eq!(get(&RULE_MATCHED, &[name]), 0, "counted locally until a flush");
        scratch.flush_metrics();
        assert_eq!((get(&RULE_MATCHED, &[name]), get(&RULE_PASSED, &[name]), get(&RULE_NO_RESULT, &[name])), (1, 1, 1));
        assert_eq!(get(&RULE_OUTPUT_RECORDS, &[name]), 2, "two actions");
        assert_eq!((get(&RULE_FAILED, &[name, "decode"]), get(&RULE_FAILED, &[name, "where"]), get(&RULE_FAILED, &[name, "select"])), (1, 1, 0));
        assert_eq!(RULE_EVAL_SECONDS.with_label_values(&[name]).get_sample_count(), 1, "one evaluation time per message");

        // A message that is not JSON fails the rule once; a new rule set flushes the old one's
        // counts, and the rule keeps its series.
        engine.process(&msg("sys/pk/integration/measurepoint/post", "{"), 1, &mut scratch, &mut out);
        engine.reload(RuleSet::new(vec![rule(name, "SELECT deviceKey FROM \"sys/+/integration/measurepoint/post\"")]));
        engine.process(&msg("/no/rule", "{}"), 1, &mut scratch, &mut out);
        assert_eq!(get(&RULE_FAILED, &[name, "decode"]), 1, "no rule matched: nothing bound, nothing flushed");
        engine.process(&msg("sys/pk/integration/measurepoint/post", batch), 1, &mut scratch, &mut out);
        assert_eq!(get(&RULE_FAILED, &[name, "decode"]), 2, "flushed when the new set was bound");
        drop(scratch);
        assert_eq!(get(&RULE_MATCHED, &[name]), 3, "flushed on drop");
        assert_eq!(get(&RULE_PASSED, &[name]), 4, "1, then 3 entries of the second set's SELECT");
        forget_rule(name);
        assert!(!crate::telemetry::metrics::render().contains(name));
    }

    #[test]
    fn disabled_rules_have_no_series() {
        let mut r = rule("engine-unit-disabled", "SELECT a FROM \"/a\"");
        r.enabled = false;
        let set = RuleSet::new(vec![r]);
        assert!(set.metrics[0].is_none());
        assert!(!crate::telemetry::metrics::render().contains("engine-unit-disabled"));
    }

    #[test]
    fn rule_metrics_off_means_no_rule_series_and_the_same_outputs() {
        let name = "engine-unit-unmetered";
        let engine = Engine::new(RuleSet::new(Vec::new()), Env::default(), EngineOptions { rule_metrics: false, ..EngineOptions::default() });
        engine.reload_rules(vec![Arc::new(rule(name, "SELECT deviceKey FROM \"sys/+/integration/measurepoint/post\""))]);
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        let batch = r#"{"id":"1","version":"1.0","params":[{"deviceKey":"d1","measurepoints":{"temp":20},"time":1}]}"#;
        let outcome = engine.process(&msg("sys/pk/integration/measurepoint/post", batch), 1, &mut scratch, &mut out);
        assert_eq!(outcome, Outcome { matched: 1, passed: 1, filtered: 0, failed: 0 });
        assert_eq!(out.len(), 2, "two actions");
        drop(scratch);
        assert!(!crate::telemetry::metrics::render().contains(name));
    }

    /// Fault injection: a device lookup that panics when asked for the attribute `boom` (the
    /// registry is the engine's one pluggable part that rules call into).
    pub(crate) struct Panicking;

    impl crate::rule::expr::DeviceLookup for Panicking {
        fn attribute(&self, _: &str, device: &str, key: &str) -> Option<String> {
            if key == "boom" {
                panic!("injected panic for {device}");
            }
            Some(key.to_string())
        }
        fn status(&self, _: &str, _: &str) -> Option<String> {
            None
        }
        fn gateway(&self, _: &str, _: &str) -> Option<(String, String)> {
            None
        }
    }

    fn value(r: &OutputRecord) -> Json {
        serde_json::from_slice(&r.value).unwrap()
    }

    #[test]
    fn a_panicking_rule_gives_an_error_record_and_the_others_go_on() {
        let name = "engine-unit-panic";
        let env = Env { devices: Box::new(Panicking), ..Env::default() };
        let engine = Engine::new(
            RuleSet::new(vec![
                rule(name, "SELECT attribute(k) AS a FROM \"/sys/+/+/thing/event/property/post\""),
                rule("engine-unit-panic-other", "SELECT deviceName() AS d FROM \"/sys/+/+/thing/event/property/post\""),
            ]),
            env,
            EngineOptions::default(),
        );
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        let outcome = engine.process(&msg("/sys/pk/dev1/thing/event/property/post", r#"{"k":"boom"}"#), 1, &mut scratch, &mut out);
        assert_eq!(outcome, Outcome { matched: 2, passed: 1, filtered: 0, failed: 1 });
        assert_eq!(out.len(), 3, "one error record, two outputs of the other rule: {out:?}");
        let e = &out[0];
        assert!(e.is_error);
        assert_eq!(e.headers, vec![("sluice-error-stage".to_string(), "panic".to_string())]);
        let v = value(e);
        assert_eq!(v["stage"], "panic");
        assert!(v["reason"].as_str().unwrap().starts_with("rule evaluation panicked: injected panic for"), "{v}");
        assert!(out[1..].iter().all(|r| !r.is_error && r.rule.as_ref() == "engine-unit-panic-other"));
        // The same engine and scratch go on with the next message.
        out.clear();
        let outcome = engine.process(&msg("/sys/pk/dev1/thing/event/property/post", r#"{"k":"color"}"#), 1, &mut scratch, &mut out);
        assert_eq!(outcome, Outcome { matched: 2, passed: 2, filtered: 0, failed: 0 });
        assert_eq!(std::str::from_utf8(&out[0].value).unwrap(), r#"{"a":"color"}"#);
        scratch.flush_metrics();
        assert_eq!(RULE_FAILED.with_label_values(&[name, "panic"]).get(), 1);
        assert_eq!(engine.recent_errors(name)[0].stage, "panic");
        // `sluice test` takes the same path: the error record is its output.
        let test = engine.test_rule(rule(name, "SELECT attribute(k) AS a FROM \"/sys/+/+/thing/event/property/post\""), &msg("/sys/pk/dev1/thing/event/property/post", r#"{"k":"boom"}"#), 1);
        assert_eq!(value(&test[0])["stage"], "panic");
        forget_rule(name);
    }

    /// Regression: a 77 KB request whose `params` held 10,000 non-objects gave 10,000 error
    /// records per rule, each with the whole payload in base64 (792 MB out).
    #[test]
    fn bad_entries_make_one_bounded_error_record_per_rule() {
        let engine = Engine::new(
            RuleSet::new(vec![rule("engine-unit-amplify", "SELECT deviceKey FROM \"sys/+/integration/measurepoint/post\"")]),
            Env::default(),
            EngineOptions { error_payload_max_bytes: 1000, ..EngineOptions::default() },
        );
        let params: Vec<String> = (0..10_000).map(|i| if i == 5 { r#"{"deviceKey":"d5","time":1}"#.to_string() } else { i.to_string() }).collect();
        let payload = format!(r#"{{"id":"1","version":"1.0","params":[{}]}}"#, params.join(","));
        let mut out = Vec::new();
        let outcome = engine.process(&msg("sys/pk/integration/measurepoint/post", &payload), 1, &mut Scratch::default(), &mut out);
        assert_eq!(outcome, Outcome { matched: 1, passed: 1, filtered: 0, failed: 9_999 });
        assert_eq!(out.len(), 3, "two outputs (two actions) of the good entry, one error record");
        let e = value(&out[2]);
        assert_eq!((e["failed_entries"].as_u64(), e["entries"].as_array().map(Vec::len)), (Some(9_999), Some(ERROR_ENTRIES_MAX)));
        assert_eq!(e["entries"][0], serde_json::json!({"index": 0, "stage": "decode", "reason": "invalid integration request: params[0] must be an object"}));
        assert_eq!(e["entries"][5]["index"], 6, "entry 5 was good");
        assert_eq!((e["payload_truncated"].as_bool(), e["payload_bytes"].as_u64()), (Some(true), Some(payload.len() as u64)));
        assert_eq!(crate::value::base64_decode(e["payload_base64"].as_str().unwrap()).unwrap(), payload.as_bytes()[..1000]);
        assert!(out[2].value.len() < 12_000, "bounded: {} bytes", out[2].value.len());
        // A payload under the cap is copied whole, without the truncation fields.
        let small = r#"{"id":"1","params":[1]}"#;
        out.clear();
        engine.process(&msg("sys/pk/integration/measurepoint/post", small), 1, &mut Scratch::default(), &mut out);
        let e = value(&out[0]);
        assert!(e.get("payload_truncated").is_none() && e.get("payload_bytes").is_none(), "{e}");
        assert_eq!(e["failed_entries"], 1);
        forget_rule("engine-unit-amplify");
    }

    /// FOREACH cannot turn one record into unbounded output: at most
    /// [`FOREACH_MAX_ELEMENTS`] elements, and [`FOREACH_MAX_OUTPUT_BYTES`] of outputs.
    #[test]
    fn foreach_output_is_bounded() {
        let engine = Engine::new(
            RuleSet::new(vec![rule("engine-unit-foreach", "FOREACH arr FROM \"/f/+\""), rule("engine-unit-foreach-do", "FOREACH arr AS e DO blob, e AS i FROM \"/f/+\"")]),
            Env::default(),
            EngineOptions::default(),
        );
        let mut out = Vec::new();
        let many = format!(r#"{{"arr":[{}]}}"#, vec!["1"; FOREACH_MAX_ELEMENTS + 1].join(","));
        engine.process(&msg("/f/a", &many), 1, &mut Scratch::default(), &mut out);
        assert_eq!(out.len(), 2, "one error record per rule, no outputs");
        assert!(out.iter().all(|r| r.is_error && value(r)["reason"].as_str().unwrap().starts_with("FOREACH over 10001 elements")), "{out:?}");
        // 2,000 elements, each output carrying a 10 KB field: 20 MB, over the cap.
        out.clear();
        let wide = format!(r#"{{"blob":"{}","arr":[{}]}}"#, "b".repeat(10_000), vec!["1"; 2_000].join(","));
        engine.process(&msg("/f/a", &wide), 1, &mut Scratch::default(), &mut out);
        let (errors, data): (Vec<_>, Vec<_>) = out.iter().partition(|r| r.is_error);
        assert_eq!(data.len(), 2 * 2_000, "the plain FOREACH outputs its 2,000 small elements (two actions)");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(value(errors[0])["reason"].as_str().unwrap().contains("exceed 16777216 bytes"), "{:?}", value(errors[0]));
        forget_rule("engine-unit-foreach");
        forget_rule("engine-unit-foreach-do");
    }
}
