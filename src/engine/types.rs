//! The engine's settings and the vocabulary of its results: outcomes, the stages named in error
//! records, recent errors, and the bounds on what one message may produce.

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
pub(crate) type EntryFailure = (usize, Stage, String);

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
    /// Whether a stateful (windowed or analytic) rule took a record: the input's
    /// acknowledgement then waits for the checkpoint holding its contribution.
    pub stateful: bool,
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
    /// A windowed rule's record came after every window it belongs to had closed.
    Late,
    /// A windowed rule's record is further ahead of the clock than `max_future_skew_ms`.
    Future,
}

impl Stage {
    /// The index of a rule failure at this stage in [`LocalRuleMetrics::failed`] (a source
    /// failure is not a rule's).
    pub(crate) fn failure_index(self) -> usize {
        match self {
            Stage::Source | Stage::Decode => 0,
            Stage::Where => 1,
            Stage::Select => 2,
            Stage::Action => 3,
            Stage::Panic => 4,
            Stage::Late => 5,
            Stage::Future => 6,
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
            Stage::Late => "late",
            Stage::Future => "future",
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

/// At most this many elements are iterated by one FOREACH on one record (more is an error of
/// stage `select`): bad input must not be amplified into unbounded output.
pub const FOREACH_MAX_ELEMENTS: usize = 10_000;

/// At most this many bytes of output values one FOREACH may produce from one record (more is
/// an error of stage `select`, and none of the record's outputs are kept).
pub const FOREACH_MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// The clock of the engine.
#[derive(Clone, Copy, Debug, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A fixed time, ms since the epoch (tests, `--now`).
    Fixed(i64),
}

impl Clock {
    /// Now, ms since the epoch.
    pub fn now_ms(self) -> i64 {
        match self {
            Clock::System => chrono::Utc::now().timestamp_millis(),
            Clock::Fixed(t) => t,
        }
    }
}
