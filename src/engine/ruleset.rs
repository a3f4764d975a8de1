//! Rule sets (the compiled rules of one load, with their topic index) and the per-worker
//! scratch space that counts each rule's evaluations between two metric flushes.

use std::sync::Arc;

use crate::rule::Rule;
use crate::telemetry::metrics::{LocalRuleMetrics, RuleMetrics};
use crate::topic::TopicIndex;

/// An immutable set of compiled rules with its topic index.
pub struct RuleSet {
    pub(crate) rules: Vec<Arc<Rule>>,
    /// Each enabled rule's metric handles, parallel to `rules` (resolved once here, never per
    /// message).
    pub(crate) metrics: Vec<Option<RuleMetrics>>,
    pub(crate) index: TopicIndex,
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

/// Per-worker scratch space, reused across messages. It also holds the worker's per-rule counts
/// ([`LocalRuleMetrics`]), which reach the shared metrics every [`FLUSH_EVERY`] messages, on
/// [`Scratch::flush_metrics`] (the pipeline calls it when its worker is idle), when the rule
/// set changes, and when the scratch is dropped.
#[derive(Default)]
pub struct Scratch {
    /// The rules whose filter matches the current message (filled by the topic index).
    pub(crate) ids: Vec<usize>,
    pub(crate) stats: RuleStats,
    /// The current message was applied by the last checkpoint already (a redelivery after a
    /// restart): the stateful rules skip it.
    pub(crate) skip_state: bool,
}

/// Messages a worker processes between two flushes of its per-rule counts.
pub const FLUSH_EVERY: u32 = 256;

const NO_SLOT: u32 = u32::MAX;

/// A worker's per-rule counts for the rule set it last used.
#[derive(Default)]
pub(crate) struct RuleStats {
    /// The set the counts belong to.
    set: Option<Arc<RuleSet>>,
    /// Rule index → position in `locals` (`NO_SLOT` until the rule first matches).
    slots: Vec<u32>,
    /// Local metrics of the rules that matched since the set was bound.
    locals: Vec<LocalRuleMetrics>,
    /// Positions in `locals` counted since the last flush.
    dirty: Vec<u32>,
    dirty_flags: Vec<bool>,
    pub(crate) since_flush: u32,
}

impl RuleStats {
    /// Makes `set` the current set, flushing the counts of the previous one.
    pub(crate) fn bind(&mut self, set: &Arc<RuleSet>) {
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
    pub(crate) fn rule(&mut self, i: usize) -> Option<&LocalRuleMetrics> {
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

    pub(crate) fn flush(&mut self) {
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
