//! Shadow runs: a candidate version of a rule evaluated beside the live one on live traffic.
//! Its outputs go nowhere: the worker stage hands each message's live outputs here, the
//! candidate runs on the same message (the code path of `sluice test`, with window state of
//! its own), and the two are counted and compared record by record. The console and the API
//! show the counts, how many messages gave different outputs and a few of them; "promote"
//! writes the candidate's text to the rule's file (a reload swaps it in).

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::engine::ruleset::RuleSet;
use crate::engine::window::Windows;
use crate::flow::OutputRecord;

/// Example diffs kept per shadow run (the most recent).
pub const SHADOW_EXAMPLES: usize = 5;

/// One side's counts: messages the rule's filter matched, that gave data records, that gave
/// error records, and the data records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Side {
    /// Messages whose topic matched the rule's filter.
    pub matched: u64,
    /// Of those, messages with at least one data record.
    pub passed: u64,
    /// Of those, messages with at least one error record.
    pub failed: u64,
    /// Data records.
    pub records: u64,
}

/// A message whose outputs differed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    /// Its topic.
    pub topic: String,
    /// When it was received (ms since the epoch).
    pub received_ms: i64,
    /// The live rule's records, as `sluice test` prints them.
    pub live: Vec<String>,
    /// The candidate's.
    pub candidate: Vec<String>,
}

/// `GET /api/v1/rules/{name}/shadow`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowReport {
    /// The live rule.
    pub rule: String,
    /// The candidate's text.
    pub text: String,
    /// When the run started (ms since the epoch).
    pub started_ms: i64,
    /// The live rule's counts.
    pub live: Side,
    /// The candidate's counts.
    pub candidate: Side,
    /// Messages compared (matched by either).
    pub compared: u64,
    /// Of those, messages whose outputs differed.
    pub differing: u64,
    /// The most recent differing messages.
    pub examples: VecDeque<Diff>,
}

/// One running shadow.
pub(crate) struct Shadow {
    pub(crate) candidate: Arc<RuleSet>,
    pub(crate) filter_live: Arc<str>,
    pub(crate) windows: Windows,
    pub(crate) report: Mutex<ShadowReport>,
}

/// Every shadow run of an engine, by live rule name.
#[derive(Default)]
pub(crate) struct Shadows {
    pub(crate) runs: dashmap::DashMap<Arc<str>, Arc<Shadow>>,
    pub(crate) any: AtomicBool,
}

pub(crate) fn side(s: &mut Side, matched: bool, records: &[&OutputRecord]) {
    if !matched {
        return;
    }
    s.matched += 1;
    let data = records.iter().filter(|r| !r.is_error).count() as u64;
    s.records += data;
    if data > 0 {
        s.passed += 1;
    }
    if records.iter().any(|r| r.is_error) {
        s.failed += 1;
    }
}
