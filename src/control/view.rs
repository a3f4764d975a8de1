//! What the rule store and its API tell: the typed bodies of the rules API, which the server
//! serializes and `sluice rules` deserializes.

use serde::{Deserialize, Serialize};

use crate::error::CompileError;

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Rules running after the reload.
    pub rules: usize,
    /// Files (re)compiled because their text changed.
    pub compiled: usize,
    /// Whether the engine's rule set was swapped.
    pub swapped: bool,
    /// Rules added, changed and removed by this reload.
    pub added: Vec<String>,
    /// Rules whose definition changed.
    pub changed: Vec<String>,
    /// Rules no longer running.
    pub removed: Vec<String>,
    /// Every file that does not compile now (its previous rule, if any, keeps running).
    pub errors: Vec<ErrorView>,
}

/// A compile error, for the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorView {
    /// The file.
    pub path: String,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// A suggestion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// `path:line:col: message[; hint]`.
    pub text: String,
    /// What `sluice check` prints: `text`, the offending source line and a caret under the
    /// column.
    #[serde(default)]
    pub rendered: String,
}

impl From<&CompileError> for ErrorView {
    fn from(e: &CompileError) -> Self {
        ErrorView { path: e.path.display().to_string(), line: e.pos.line, col: e.pos.col, message: e.message.clone(), hint: e.hint.clone(), text: e.to_string(), rendered: e.render() }
    }
}

/// A rule's counts since the process started, from the same counters as `/metrics`
/// (`sluice_rule_matched_messages_total`, `…_passed_…`, `sluice_rule_failed_records_total`
/// summed over reasons): the console turns them into rates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounts {
    /// Messages whose topic matched.
    pub matched: u64,
    /// Records that passed WHERE.
    pub passed: u64,
    /// Failed records, every reason.
    pub failed: u64,
}

impl RuleCounts {
    /// The counts of rule `name` now.
    pub fn of(name: &str) -> RuleCounts {
        use crate::telemetry::metrics::{RULE_FAILED, RULE_FAILURE_REASONS, RULE_MATCHED, RULE_PASSED};
        RuleCounts {
            matched: RULE_MATCHED.with_label_values(&[name]).get(),
            passed: RULE_PASSED.with_label_values(&[name]).get(),
            failed: RULE_FAILURE_REASONS.iter().map(|r| RULE_FAILED.with_label_values(&[name, r]).get()).sum(),
        }
    }
}

/// A rule, for the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    /// The rule's name.
    pub name: String,
    /// Its file.
    pub path: String,
    /// Whether it runs, and why not.
    pub status: RuleStatus,
    /// Whether the file enables the rule.
    pub enabled: bool,
    /// Free text.
    pub description: String,
    /// The SQL of the running rule (or the file's, when it compiles).
    pub sql: Option<String>,
    /// The topic filter.
    pub from: Option<String>,
    /// Action topic templates.
    pub actions: Vec<String>,
    /// The error action's topic.
    pub error_topic: Option<String>,
    /// Whether a version of the rule is running in the engine.
    pub running: bool,
    /// Compile errors of the file's current text.
    pub errors: Vec<ErrorView>,
    /// The file's text (only for a single rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Its counts (in the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<RuleCounts>,
    /// Its last evaluation failure, `stage: reason` (in the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Whether a rule file's rule runs, and why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleStatus {
    /// Enabled and running.
    Running,
    /// The file disables it.
    Disabled,
    /// The file does not compile; its previous version, if any, keeps running (`running`).
    Invalid,
    /// Its name is taken by an earlier file.
    Conflict,
}

impl RuleStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleStatus::Running => "running",
            RuleStatus::Disabled => "disabled",
            RuleStatus::Invalid => "invalid",
            RuleStatus::Conflict => "conflict",
        }
    }
}

/// `GET /api/v1/rules`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleList {
    /// Every rule file, sorted by path.
    pub rules: Vec<RuleView>,
}

/// The answer to a write that leaves a rule (create, update, enable, disable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleChange {
    /// The rule after the write.
    pub rule: RuleView,
    /// The reload that followed it.
    pub reload: ReloadReport,
}

/// The answer to `DELETE /api/v1/rules/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// The reload that followed the delete.
    pub reload: ReloadReport,
}

/// `GET /api/v1/rules/{name}/errors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleErrors {
    /// The rule's name.
    pub rule: String,
    /// Compile errors of its file's current text.
    pub compile: Vec<ErrorView>,
    /// Its recent evaluation failures, newest last.
    pub recent: Vec<serde_json::Value>,
}

/// The answer to a rule test: whether the topic matches the rule's filter, and each output
/// record as `sluice test` prints it.
#[derive(Debug, Serialize, Deserialize)]
pub struct TestAnswer {
    /// Whether the sample's topic matches the rule's filter.
    pub topic_matches: bool,
    /// The output records (`{"rule", "topic", "key", "headers", "value"}`).
    pub records: Vec<Box<serde_json::value::RawValue>>,
    /// The same records as `sluice test` prints them, one JSON text each (numbers exactly as
    /// written: a browser's JSON parser would round 64-bit integers).
    #[serde(default)]
    pub lines: Vec<String>,
}

/// The body of every failed API request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// What went wrong.
    pub error: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The compile errors of a refused rule text (422).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorView>,
}

impl ApiErrorBody {
    /// A body with only the error.
    pub fn new(error: impl Into<String>) -> ApiErrorBody {
        ApiErrorBody { error: error.into(), ..ApiErrorBody::default() }
    }
}
