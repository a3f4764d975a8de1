//! The engine's side of shadow runs ([`crate::engine::shadow`]): starting, reading, stopping
//! and feeding them.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::*;
use crate::engine::shadow::{side, Diff, Shadow, ShadowReport, Side, SHADOW_EXAMPLES};

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
