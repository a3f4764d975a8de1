//! Rules: parse (TOML + SQL) → plan (bind names and functions) → expr (the tree evaluated per
//! message) → functions (the library) → catalog (lookup, docs, examples); `ctx` holds what they
//! share (the evaluation context and the shape of a function).
//!
//! A rule is one TOML file:
//! ```toml
//! name = "overheat"
//! sql = """SELECT deviceName() AS dn FROM "/sys/+/+/thing/event/property/post" WHERE items.temp.value > 38"""
//! [[actions]]
//! topic = "alerts-${dn}"
//! ```

pub mod catalog;
pub mod ctx;
pub mod expr;
pub mod functions;
pub mod plan;
mod strmap;
pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{line_text, pos_of_offset, CompileError, Pos};
use crate::rule::expr::Expr;
use crate::rule::plan::{Foreach, Plan, SelectItem};
use crate::rule::template::{valid_kafka_topic, Template};
use crate::topic::TopicFilter;
use strmap::StrMap;

/// A rule file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The rule's name; defaults to the file stem.
    pub name: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Disabled rules are compiled (so errors show) but not run.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// `SELECT … FROM "topic filter" [WHERE …]`, or
    /// `FOREACH <array> [AS x] [DO …] [INCASE …] FROM "topic filter" [WHERE …]`.
    pub sql: Spanned<String>,
    /// Where the output records go (one or more).
    #[serde(default)]
    pub actions: Vec<ActionFile>,
    /// Where evaluation failures go (else the engine's default error topic).
    pub error_action: Option<ErrorActionFile>,
    /// Windowed rules: the record's event time, a SQL expression giving ms since the epoch (or
    /// an RFC 3339 text), e.g. `time` for integration entries or `items.temp.time`. Without it
    /// windows run on processing time (the engine's clock when the record is processed).
    pub event_time: Option<Spanned<String>>,
    /// Windowed rules on event time: how long after a window's end its records are still
    /// accepted (the window is emitted once the key's watermark passes end + lateness).
    pub allowed_lateness_ms: Option<u64>,
    /// Windowed rules on event time: records more than this ahead of the engine's clock do not
    /// advance any watermark; they are error records of stage `future` (or clamped, see
    /// `future`). Default [`DEFAULT_MAX_FUTURE_SKEW_MS`].
    pub max_future_skew_ms: Option<u64>,
    /// What to do with a record beyond `max_future_skew_ms`: `dead_letter` (default) or
    /// `clamp` (its event time becomes now + max_future_skew_ms).
    pub future: Option<FuturePolicy>,
    /// Windowed rules: a key's windows are emitted when it has sent nothing for this long
    /// (processing time), so a silent device's last window still closes. Default: one window
    /// length plus the allowed lateness.
    pub idle_timeout_ms: Option<u64>,
    /// Windowed rules: the most keys (groups) held at once; a new key beyond it first evicts the
    /// least recently seen of a sample (its windows are emitted early, counted in
    /// `sluice_state_evictions_total`). Default [`DEFAULT_MAX_STATE_KEYS`].
    pub max_state_keys: Option<usize>,
    /// A delivery audit: a SQL expression giving each record's sequence number (an integer, or
    /// a numeric string such as a request `id`), e.g. `items.seq.value`. Per device (the
    /// default partition) the rule counts gaps, duplicates and reorders, and writes one audit
    /// record per gap to `audit_topic`.
    pub audit_sequence: Option<Spanned<String>>,
    /// Where the audit records go. Default [`DEFAULT_AUDIT_TOPIC`].
    pub audit_topic: Option<Spanned<String>>,
}

/// The default of `audit_topic`.
pub const DEFAULT_AUDIT_TOPIC: &str = "sluice-audit";

/// The default of `max_future_skew_ms`: 5 minutes.
pub const DEFAULT_MAX_FUTURE_SKEW_MS: u64 = 300_000;
/// The default of `max_state_keys`.
pub const DEFAULT_MAX_STATE_KEYS: usize = 1_000_000;

/// The `future` option: what happens to records too far ahead of the clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FuturePolicy {
    /// An error record of stage `future`.
    #[default]
    DeadLetter,
    /// The event time is clamped to now + max_future_skew_ms.
    Clamp,
}

/// The compiled time and state options of a windowed rule.
#[derive(Debug)]
pub struct WindowRule {
    /// GROUP BY, the window, the aggregate slots, HAVING.
    pub plan: plan::Windowed,
    /// The event time expression; `None`: processing time.
    pub event_time: Option<Expr>,
    /// See [`RuleFile::allowed_lateness_ms`].
    pub allowed_lateness_ms: i64,
    /// See [`RuleFile::max_future_skew_ms`].
    pub max_future_skew_ms: i64,
    /// See [`RuleFile::future`].
    pub future: FuturePolicy,
    /// See [`RuleFile::idle_timeout_ms`].
    pub idle_timeout_ms: i64,
    /// See [`RuleFile::max_state_keys`].
    pub max_state_keys: usize,
    /// A fingerprint of what shapes the rule's state (its SQL and state options, see
    /// [`state_fingerprint`]): a reload keeps a windowed rule's state only when it is unchanged.
    pub fingerprint: u64,
}

fn default_enabled() -> bool {
    true
}

/// An `[[actions]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionFile {
    /// Target topic template, e.g. `alerts-${productKey}`.
    pub topic: Spanned<String>,
    /// Record key template.
    pub key: Option<Spanned<String>>,
    /// Record headers; values are templates.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

/// The `[error_action]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorActionFile {
    /// The topic that receives error records.
    pub topic: Spanned<String>,
}

/// A compiled action.
#[derive(Debug)]
pub struct Action {
    /// Target topic.
    pub topic: Template,
    /// Record key.
    pub key: Option<Template>,
    /// Headers.
    pub headers: Vec<(String, Template)>,
}

/// A compiled rule, shared by the engine as an `Arc`.
#[derive(Debug)]
pub struct Rule {
    /// Name (unique in a rule set).
    pub name: Arc<str>,
    /// Description.
    pub description: String,
    /// Whether the engine runs it.
    pub enabled: bool,
    /// The file it came from.
    pub path: PathBuf,
    /// The SQL text.
    pub sql: String,
    /// FROM.
    pub filter: TopicFilter,
    /// SELECT list.
    pub select: Vec<SelectItem>,
    /// WHERE.
    pub where_: Option<Expr>,
    /// `FOREACH … [DO …] [INCASE …]`: one output per array element (the DO items are `select`).
    pub foreach: Option<Foreach>,
    /// Actions.
    pub actions: Vec<Action>,
    /// The error action's topic, if set.
    pub error_topic: Option<String>,
    /// Whether evaluation reads the decoded payload (so a non-JSON payload is an error).
    pub reads_record: bool,
    /// Whether output names are known only at run time.
    pub dynamic_fields: bool,
    /// `GROUP BY …, <window>`: the rule keeps windows (see [`WindowRule`]).
    pub window: Option<WindowRule>,
    /// Analytic calls (`lag`, `changed` …) of a rule without a window (see [`AnalyticRule`]).
    pub analytics: Option<AnalyticRule>,
}

/// The analytic calls of a rule and the bounds of their memory.
#[derive(Debug)]
pub struct AnalyticRule {
    /// The calls, by slot.
    pub calls: Vec<plan::AnalyticCall>,
    /// See [`RuleFile::max_state_keys`] (partitions × calls).
    pub max_state_keys: usize,
    /// A partition not seen for this long is forgotten (`None`: kept, within max_state_keys).
    pub idle_timeout_ms: Option<i64>,
    /// See [`WindowRule::fingerprint`].
    pub fingerprint: u64,
    /// The delivery audit: the slot of its call and the audit records' topic.
    pub audit: Option<(usize, String)>,
}

/// Compiles a rule file from disk.
pub fn compile_file(path: &Path) -> Result<Rule, Vec<CompileError>> {
    match std::fs::read_to_string(path) {
        Ok(text) => compile_str(path, &text),
        Err(e) => Err(vec![CompileError { path: path.to_path_buf(), pos: Pos { line: 1, col: 1 }, message: format!("cannot read rule file: {e}"), hint: None, source_line: None }]),
    }
}

/// Compiles rule file text; `path` names it in errors and gives the default name.
pub fn compile_str(path: &Path, text: &str) -> Result<Rule, Vec<CompileError>> {
    let at = |pos: Pos, message: String, hint: Option<String>| CompileError { path: path.to_path_buf(), pos, message, hint, source_line: line_text(text, pos.line) };
    let file: RuleFile = toml::from_str(text).map_err(|e| {
        let pos = e.span().map_or(Pos { line: 1, col: 1 }, |s| pos_of_offset(text, s.start));
        vec![at(pos, e.message().trim().to_string(), None)]
    })?;
    let sql_span = file.sql.span();
    let origin = StrMap::new(text, sql_span.clone());
    let sql = file.sql.get_ref().clone();
    let mut errors = Vec::new();

    let plan: Option<Plan> = match plan::plan(&sql) {
        Ok(p) => Some(p),
        Err(errs) => {
            errors.extend(errs.into_iter().map(|e| at(origin.sql_pos(text, &sql, e.line, e.col), e.message, e.hint)));
            None
        }
    };

    let name = file.name.clone().unwrap_or_else(|| path.file_stem().map_or_else(|| "rule".to_string(), |s| s.to_string_lossy().into_owned()));
    if name.trim().is_empty() {
        errors.push(at(Pos { line: 1, col: 1 }, "rule name is empty".into(), None));
    }
    if file.actions.is_empty() {
        errors.push(at(Pos { line: text.lines().count().max(1), col: 1 }, "a rule needs at least one [[actions]] table".into(), Some("add [[actions]] with topic = \"…\"".into())));
    }

    let outputs: Vec<String> = plan.as_ref().map(|p| p.output_names().into_iter().map(str::to_string).collect()).unwrap_or_default();
    let dynamic = plan.as_ref().is_none_or(Plan::dynamic_fields);
    let mut template = |s: &Spanned<String>, what: &str, is_topic: bool| -> Option<Template> {
        // +1 skips the opening quote of a one-line string.
        let map = StrMap::new(text, s.span());
        match Template::parse(s.get_ref()) {
            Err((off, msg)) => {
                errors.push(at(map.text_pos(text, s.get_ref(), off), format!("{what}: {msg}"), None));
                None
            }
            Ok(t) => {
                for f in t.fields() {
                    if !dynamic && !outputs.iter().any(|o| o == f) {
                        let off = s.get_ref().find(&format!("${{{f}")).unwrap_or(0);
                        let hint = if outputs.is_empty() { None } else { Some(format!("the rule's output fields are: {}", outputs.join(", "))) };
                        errors.push(at(map.text_pos(text, s.get_ref(), off), format!("{what}: `${{{f}}}` is not an output field of the rule"), hint));
                    }
                }
                if is_topic && t.fields().next().is_none() && !valid_kafka_topic(&t.source) {
                    errors.push(at(
                        map.text_pos(text, s.get_ref(), 0),
                        format!("{what}: `{}` is not a valid Kafka topic name", t.source),
                        Some("use letters, digits, `.`, `_` and `-` (at most 249)".into()),
                    ));
                }
                Some(t)
            }
        }
    };

    let mut actions = Vec::new();
    for a in &file.actions {
        let topic = template(&a.topic, "action topic", true);
        let key = a.key.as_ref().map(|k| template(k, "action key", false));
        let mut headers = Vec::new();
        for (hname, v) in &a.headers {
            if let Some(t) = template(v, &format!("header {hname}"), false) {
                headers.push((hname.clone(), t));
            }
        }
        if let (Some(topic), Some(key)) = (topic, key.unwrap_or(Some(Template { source: String::new(), parts: Vec::new(), fixed: None }))) {
            actions.push(Action { topic, key: if a.key.is_some() { Some(key) } else { None }, headers });
        }
    }
    let error_topic = file.error_action.as_ref().map(|e| {
        let t = e.topic.get_ref().clone();
        if !valid_kafka_topic(&t) {
            errors.push(at(StrMap::new(text, e.topic.span()).text_pos(text, &t, 0), format!("error_action topic `{t}` is not a valid Kafka topic name"), None));
        }
        t
    });

    let mut plan = plan;
    let windowed = plan.as_mut().and_then(|p| p.window.take());
    let analytic_calls = plan.as_mut().map(|p| std::mem::take(&mut p.analytics)).unwrap_or_default();
    let stateful_keys: [(&str, Option<std::ops::Range<usize>>); 6] = [
        ("event_time", file.event_time.as_ref().map(Spanned::span)),
        ("allowed_lateness_ms", file.allowed_lateness_ms.map(|_| key_span(text, "allowed_lateness_ms"))),
        ("max_future_skew_ms", file.max_future_skew_ms.map(|_| key_span(text, "max_future_skew_ms"))),
        ("future", file.future.map(|_| key_span(text, "future"))),
        ("idle_timeout_ms", file.idle_timeout_ms.map(|_| key_span(text, "idle_timeout_ms"))),
        ("max_state_keys", file.max_state_keys.map(|_| key_span(text, "max_state_keys"))),
    ];
    if windowed.is_none() && plan.is_some() {
        // Rules with analytic calls keep per-partition memory: its bounds apply to them.
        let memory_only = !analytic_calls.is_empty() || file.audit_sequence.is_some();
        for (key, span) in stateful_keys.iter().filter(|(k, _)| !(memory_only && matches!(*k, "max_state_keys" | "idle_timeout_ms"))).filter_map(|(k, s)| s.clone().map(|s| (k, s))) {
            errors.push(at(
                pos_of_offset(text, span.start),
                format!("`{key}` applies to windowed rules only"),
                Some("add GROUP BY …, TUMBLINGWINDOW(ss, 60) (or another window) to the SQL, or remove it".into()),
            ));
        }
    }
    let event_time = match &file.event_time {
        Some(e) if windowed.is_some() => {
            let map = StrMap::new(text, e.span());
            match plan::expression(e.get_ref()) {
                Ok(x) => Some(x),
                Err(err) => {
                    errors.push(at(map.sql_pos(text, e.get_ref(), err.line, err.col), format!("event_time: {}", err.message), err.hint));
                    None
                }
            }
        }
        _ => None,
    };
    if let (Some(w), Some(e)) = (&windowed, &file.event_time) {
        if matches!(w.spec, plan::WindowSpec::Silence { .. }) {
            errors.push(at(
                pos_of_offset(text, e.span().start),
                "SILENCEWINDOW runs on processing time: it has no event_time".into(),
                Some("remove event_time: silence is measured on the engine's clock".into()),
            ));
        }
    }
    if file.max_state_keys == Some(0) {
        errors.push(at(pos_of_offset(text, key_span(text, "max_state_keys").start), "max_state_keys must be at least 1".into(), None));
    }
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let window = windowed.map(|w| {
        let lateness = clamp(file.allowed_lateness_ms.unwrap_or(0));
        WindowRule {
            event_time,
            allowed_lateness_ms: lateness,
            max_future_skew_ms: clamp(file.max_future_skew_ms.unwrap_or(DEFAULT_MAX_FUTURE_SKEW_MS)),
            future: file.future.unwrap_or_default(),
            idle_timeout_ms: file.idle_timeout_ms.map_or_else(|| w.spec.default_idle_ms().saturating_add(lateness), clamp).max(1),
            max_state_keys: file.max_state_keys.unwrap_or(DEFAULT_MAX_STATE_KEYS).max(1),
            fingerprint: state_fingerprint(&file),
            plan: w,
        }
    });

    let mut analytic_calls = analytic_calls;
    let mut audit = None;
    if let Some(seq) = &file.audit_sequence {
        let map = StrMap::new(text, seq.span());
        if window.is_some() {
            errors.push(at(pos_of_offset(text, seq.span().start), "audit_sequence is not supported in windowed rules yet".into(), Some("audit the same topic filter in a rule of its own".into())));
        } else {
            match plan::expression(seq.get_ref()) {
                Ok(e) => {
                    analytic_calls.push(plan::AnalyticCall { kind: crate::rule::functions::analytic::AnalyticKind::Audit, args: vec![e], partition: None });
                    let topic = file.audit_topic.as_ref().map_or(DEFAULT_AUDIT_TOPIC.to_string(), |t| t.get_ref().clone());
                    if !valid_kafka_topic(&topic) {
                        errors.push(at(pos_of_offset(text, file.audit_topic.as_ref().map_or(0, |t| t.span().start)), format!("audit_topic `{topic}` is not a valid Kafka topic name"), None));
                    }
                    audit = Some((analytic_calls.len() - 1, topic));
                }
                Err(err) => errors.push(at(map.sql_pos(text, seq.get_ref(), err.line, err.col), format!("audit_sequence: {}", err.message), err.hint)),
            }
        }
    }
    let analytics = (!analytic_calls.is_empty()).then(|| AnalyticRule {
        audit,
        calls: analytic_calls,
        max_state_keys: file.max_state_keys.unwrap_or(DEFAULT_MAX_STATE_KEYS).max(1),
        idle_timeout_ms: file.idle_timeout_ms.map(clamp),
        fingerprint: state_fingerprint(&file),
    });

    match plan {
        Some(plan) if errors.is_empty() => Ok(Rule {
            window,
            analytics,
            name: name.into(),
            description: file.description,
            enabled: file.enabled,
            path: path.to_path_buf(),
            sql,
            reads_record: plan.reads_record(),
            dynamic_fields: plan.dynamic_fields(),
            filter: plan.filter,
            select: plan.select,
            where_: plan.where_,
            foreach: plan.foreach,
            actions,
            error_topic,
        }),
        _ => {
            errors.sort_by_key(|e| (e.pos.line, e.pos.col));
            Err(errors)
        }
    }
}

/// The span of a top-level `key = …` line of a rule file (for errors on options whose values
/// carry no span).
fn key_span(text: &str, key: &str) -> std::ops::Range<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('=')) {
            let start = at + (line.len() - t.len());
            return start..start + key.len();
        }
        at += line.len();
    }
    0..0
}

/// What shapes a stateful rule's state, hashed (FNV-1a, stable across runs and builds): the
/// SQL and the state options (`event_time`, `allowed_lateness_ms`, `max_future_skew_ms`,
/// `future`, `idle_timeout_ms`, `max_state_keys`, `audit_sequence`). A change to any of them
/// starts the state afresh; a change to the actions, the error action, the description or
/// `enabled` keeps it.
pub fn state_fingerprint(file: &RuleFile) -> u64 {
    let text = format!(
        "{}\0{:?}\0{:?}\0{:?}\0{:?}\0{:?}\0{:?}\0{:?}",
        file.sql.get_ref(),
        file.event_time.as_ref().map(|e| e.get_ref()),
        file.allowed_lateness_ms,
        file.max_future_skew_ms,
        file.future,
        file.idle_timeout_ms,
        file.max_state_keys,
        file.audit_sequence.as_ref().map(|e| e.get_ref()),
    );
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        compile_str(Path::new("rules/x.toml"), text).unwrap_err().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn the_state_fingerprint_covers_the_sql_and_state_options_not_the_actions() {
        let fp = |text: &str| compile_str(Path::new("rules/w.toml"), text).unwrap().window.unwrap().fingerprint;
        let base = "sql = \"SELECT count(*) AS n FROM \\\"t/#\\\" GROUP BY deviceName(), TUMBLINGWINDOW(ss, 60)\"\nevent_time = \"time\"\n[[actions]]\ntopic = \"a\"\n";
        let same = [base.replace("topic = \"a\"", "topic = \"b\"\nkey = \"k\""), base.replace("sql =", "description = \"d\"\nsql =")];
        for t in &same {
            assert_eq!(fp(t), fp(base), "{t}");
        }
        let changed = [base.replace("60)", "30)"), base.replace("event_time = \"time\"", "event_time = \"items.t.time\""), base.replace("[[actions]]", "allowed_lateness_ms = 5\n[[actions]]")];
        for t in &changed {
            assert_ne!(fp(t), fp(base), "{t}");
        }
    }

    #[test]
    fn compiles_the_issue_example() {
        let text = r#"name = "overheat"
description = "Devices above 38 °C"
enabled = true
sql = """
SELECT productKey, deviceName, items.temp.value AS temp
FROM "/sys/+/+/thing/event/property/post"
WHERE items.temp.value > 38
"""
[[actions]]
topic = "alerts-${productKey}"
key = "${deviceName}"
headers = { origin = "sluice" }
[error_action]
topic = "sluice-errors"
"#;
        let r = compile_str(Path::new("rules/overheat.toml"), text).unwrap();
        assert_eq!(&*r.name, "overheat");
        assert_eq!(r.actions.len(), 1);
        assert_eq!(r.error_topic.as_deref(), Some("sluice-errors"));
    }

    #[test]
    fn sql_errors_map_to_file_positions() {
        let text = "sql = \"\"\"\nSELECT devicename()\nFROM \"t\"\n\"\"\"\n[[actions]]\ntopic = \"x\"\n";
        assert_eq!(errs(text), vec!["rules/x.toml:2:8: unknown function devicename; did you mean deviceName?"]);
        let text = "sql = \"SELECT devicename() FROM \\\"t\\\"\"\n[[actions]]\ntopic = \"x\"\n";
        assert_eq!(errs(text), vec!["rules/x.toml:1:15: unknown function devicename; did you mean deviceName?"]);
    }

    #[test]
    fn unknown_keys_and_templates_are_errors() {
        let text = "sql = \"SELECT a FROM \\\"t\\\"\"\ncolour = 1\n[[actions]]\ntopic = \"x\"\n";
        assert_eq!(errs(text), vec!["rules/x.toml:2:1: unknown field `colour`, expected one of `name`, `description`, `enabled`, `sql`, `actions`, `error_action`, `event_time`, `allowed_lateness_ms`, `max_future_skew_ms`, `future`, `idle_timeout_ms`, `max_state_keys`, `audit_sequence`, `audit_topic`"]);
        let text = "sql = \"SELECT a FROM \\\"t\\\"\"\n[[actions]]\ntopic = \"x-${b}\"\n";
        assert_eq!(errs(text), vec!["rules/x.toml:3:12: action topic: `${b}` is not an output field of the rule; the rule's output fields are: a"]);
        let text = "sql = \"SELECT a FROM \\\"t\\\"\"\n[[actions]]\ntopic = \"a/b\"\n";
        assert_eq!(errs(text)[0], "rules/x.toml:3:10: action topic: `a/b` is not a valid Kafka topic name; use letters, digits, `.`, `_` and `-` (at most 249)");
        let text = "sql = \"SELECT a FROM \\\"t\\\"\"\n";
        assert_eq!(errs(text), vec!["rules/x.toml:1:1: a rule needs at least one [[actions]] table; add [[actions]] with topic = \"…\""]);
    }
}
