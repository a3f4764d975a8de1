//! Shadow runs: a candidate version of a rule evaluated beside the live one on live traffic.
//! Its outputs go nowhere: the worker stage hands each message's live outputs here, the
//! candidate runs on the same message (the code path of `sluice test`, with window state of
//! its own), and the two are counted and compared record by record. The console and the API
//! show the counts, how many messages gave different outputs and a few of them; "promote"
//! writes the candidate's text to the rule's file (a reload swaps it in).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::*;

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
    candidate: Arc<RuleSet>,
    filter_live: Arc<str>,
    windows: Windows,
    report: Mutex<ShadowReport>,
}

/// Every shadow run of an engine, by live rule name.
#[derive(Default)]
pub(crate) struct Shadows {
    runs: dashmap::DashMap<Arc<str>, Arc<Shadow>>,
    any: AtomicBool,
}

fn side(s: &mut Side, matched: bool, records: &[&OutputRecord]) {
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

impl Engine {
    /// Starts (or restarts) a shadow run of `candidate` beside the live rule of the same name.
    pub fn start_shadow(&self, candidate: Rule, text: &str) -> Result<ShadowReport, String> {
        let name = candidate.name.clone();
        let live = self.rules().rules.iter().find(|r| r.name == name).cloned().ok_or_else(|| format!("no rule `{name}` runs: a shadow runs beside a live rule (save it first)"))?;
        let mut candidate = candidate;
        candidate.enabled = true;
        let report = ShadowReport {
            rule: name.to_string(),
            text: text.to_string(),
            started_ms: chrono::Utc::now().timestamp_millis(),
            live: Side::default(),
            candidate: Side::default(),
            compared: 0,
            differing: 0,
            examples: VecDeque::new(),
        };
        let run = Shadow {
            candidate: Arc::new(RuleSet::unmetered(vec![Arc::new(candidate)])),
            filter_live: Arc::from(live.filter.as_str()),
            windows: Windows::default(),
            report: Mutex::new(report.clone()),
        };
        self.shadows.runs.insert(name, Arc::new(run));
        self.shadows.any.store(true, Ordering::Relaxed);
        tracing::info!(rule = %report.rule, "shadow run started");
        Ok(report)
    }

    /// The report of the shadow run beside rule `name`.
    pub fn shadow(&self, name: &str) -> Option<ShadowReport> {
        self.shadows.runs.get(name).map(|s| s.report.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Stops the shadow run beside rule `name`; its last report.
    pub fn stop_shadow(&self, name: &str) -> Option<ShadowReport> {
        let r = self.shadows.runs.remove(name).map(|(_, s)| s.report.lock().unwrap_or_else(|p| p.into_inner()).clone());
        self.shadows.any.store(!self.shadows.runs.is_empty(), Ordering::Relaxed);
        r
    }

    /// Compares the live outputs `live` of message `msg` with each shadow candidate's (the
    /// worker stage calls it for every message; one atomic load when no shadow runs).
    pub fn shadow_compare(&self, msg: &Message, live: &[OutputRecord], now_ms: i64) {
        if !self.shadows.any.load(Ordering::Relaxed) {
            return;
        }
        let runs: Vec<(Arc<str>, Arc<Shadow>)> = self.shadows.runs.iter().map(|e| (e.key().clone(), e.value().clone())).collect();
        for (name, run) in runs {
            let live_matched = crate::topic::filter_matches(&run.filter_live, &msg.topic);
            let cand_matched = run.candidate.rules.first().is_some_and(|r| r.filter.matches(&msg.topic));
            if !live_matched && !cand_matched {
                continue;
            }
            let mut out = Vec::new();
            if cand_matched {
                let _ = guard::catch(|| self.process_with(&run.candidate, msg, now_ms, &mut Scratch::default(), &mut out, Mode::Test(&run.windows)));
            }
            let live: Vec<&OutputRecord> = live.iter().filter(|r| r.rule == name).collect();
            let cand: Vec<&OutputRecord> = out.iter().collect();
            let lines = |rs: &[&OutputRecord]| rs.iter().map(|r| r.test_line()).collect::<Vec<String>>();
            let (l, c) = (lines(&live), lines(&cand));
            let mut rep = run.report.lock().unwrap_or_else(|p| p.into_inner());
            side(&mut rep.live, live_matched, &live);
            side(&mut rep.candidate, cand_matched, &cand);
            rep.compared += 1;
            if l != c {
                rep.differing += 1;
                if rep.examples.len() >= SHADOW_EXAMPLES {
                    rep.examples.pop_front();
                }
                rep.examples.push_back(Diff { topic: msg.topic.clone(), received_ms: msg.meta.received_ms, live: l, candidate: c });
            }
        }
    }
}
