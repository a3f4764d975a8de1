//! The acknowledged watermark of a partitioned log (Kafka), for at-least-once commits.
//!
//! A source [`track`](PartitionTracker::track)s every record it sends on, in log order, and the
//! sink's acks (which may come in any order: workers and target partitions run independently)
//! [`ack`](PartitionTracker::ack) them. The watermark is the offset after the longest prefix of
//! tracked records that are all acknowledged: everything below it has had every output written,
//! so it is the offset to commit. A failed record stops the watermark for good (its partition
//! must be re-read from the last commit).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// What became of a tracked record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    InFlight,
    Done,
    Failed,
}

/// Why an ack was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckError {
    /// The offset is not tracked (never tracked, or already below the watermark).
    Unknown,
    /// The offset was already acknowledged.
    Duplicate,
}

/// The in-flight records of one partition and its contiguous acknowledged watermark.
#[derive(Debug, Default)]
pub struct PartitionTracker {
    /// Tracked records above the watermark, in increasing offset order.
    window: VecDeque<(i64, State)>,
    /// Next offset to commit (the offset after the acknowledged prefix); `None` before the first
    /// record is acknowledged.
    watermark: Option<i64>,
    /// The watermark last handed out by [`take_commit`](Self::take_commit).
    committed: Option<i64>,
    /// Records tracked and not yet acknowledged.
    in_flight: usize,
    /// The first failure, if any: the watermark never passes it.
    failed: Option<i64>,
}

impl PartitionTracker {
    /// An empty tracker.
    pub fn new() -> PartitionTracker {
        PartitionTracker::default()
    }

    /// Starts tracking `offset`. Offsets must increase (gaps are fine: compacted logs and
    /// transaction markers skip offsets); a lower or repeated offset is refused.
    pub fn track(&mut self, offset: i64) -> bool {
        let last = self.window.back().map(|&(o, _)| o).or(self.watermark.map(|w| w - 1));
        if last.is_some_and(|l| offset <= l) {
            return false;
        }
        self.window.push_back((offset, State::InFlight));
        self.in_flight += 1;
        true
    }

    /// Acknowledges `offset`: delivered (`ok`) or failed. Returns whether the watermark moved.
    pub fn ack(&mut self, offset: i64, ok: bool) -> Result<bool, AckError> {
        let i = self.window.binary_search_by_key(&offset, |&(o, _)| o).map_err(|_| AckError::Unknown)?;
        let slot = &mut self.window[i].1;
        if *slot != State::InFlight {
            return Err(AckError::Duplicate);
        }
        self.in_flight -= 1;
        if ok {
            *slot = State::Done;
        } else {
            *slot = State::Failed;
            if self.failed.is_none_or(|f| offset < f) {
                self.failed = Some(offset);
            }
        }
        let mut moved = false;
        while let Some(&(o, State::Done)) = self.window.front() {
            self.window.pop_front();
            self.watermark = Some(o + 1);
            moved = true;
        }
        Ok(moved)
    }

    /// The offset to commit: every tracked record below it is acknowledged.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// The watermark if it moved since the last call (what a periodic commit needs).
    pub fn take_commit(&mut self) -> Option<i64> {
        match self.watermark {
            Some(w) if self.committed != Some(w) => {
                self.committed = Some(w);
                Some(w)
            }
            _ => None,
        }
    }

    /// Forgets what was handed out, so the next [`take_commit`](Self::take_commit) returns the
    /// watermark again (after a failed commit).
    pub fn retry_commit(&mut self) {
        self.committed = None;
    }

    /// Tracked records not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The lowest failed offset, if a record failed.
    pub fn failed(&self) -> Option<i64> {
        self.failed
    }
}

/// A partition of a topic.
pub type TopicPartition = (Arc<str>, i32);

/// The trackers of every assigned partition of a consumer, with assignment generations: a
/// revoked partition's tracker is dropped, and acks from its generation are then ignored even if
/// the partition comes back.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<TopicPartition, (u64, PartitionTracker)>,
    generation: u64,
    in_flight: usize,
    any_failed: bool,
}

impl OffsetTracker {
    /// No partitions.
    pub fn new() -> OffsetTracker {
        OffsetTracker::default()
    }

    /// Tracks a record; returns the generation its ack must carry, or `None` if the offset is
    /// not above the partition's last tracked one.
    pub fn track(&mut self, tp: &TopicPartition, offset: i64) -> Option<u64> {
        let generation = self.generation;
        let (g, t) = self.partitions.entry(tp.clone()).or_insert_with(|| (generation, PartitionTracker::new()));
        if t.track(offset) {
            self.in_flight += 1;
            Some(*g)
        } else {
            None
        }
    }

    /// Applies an ack of `generation`; stale generations and unknown offsets are ignored
    /// (`Err`). Returns whether the partition's watermark moved.
    pub fn ack(&mut self, tp: &TopicPartition, generation: u64, offset: i64, ok: bool) -> Result<bool, AckError> {
        match self.partitions.get_mut(tp) {
            Some((g, t)) if *g == generation => {
                let moved = t.ack(offset, ok)?;
                self.in_flight -= 1;
                self.any_failed |= !ok;
                Ok(moved)
            }
            _ => Err(AckError::Unknown),
        }
    }

    /// Drops the trackers of revoked partitions (their in-flight records are abandoned: their
    /// acks will be ignored) and starts a new generation. Returns how many were abandoned.
    pub fn revoke<'a>(&mut self, tps: impl IntoIterator<Item = &'a TopicPartition>) -> usize {
        let mut abandoned = 0;
        for tp in tps {
            if let Some((_, t)) = self.partitions.remove(tp) {
                abandoned += t.in_flight();
            }
        }
        self.in_flight -= abandoned;
        self.generation += 1;
        abandoned
    }

    /// The partition's tracker.
    pub fn get(&self, tp: &TopicPartition) -> Option<&PartitionTracker> {
        self.partitions.get(tp).map(|(_, t)| t)
    }

    /// Records tracked and not acknowledged, over every partition.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Records in flight in the given partitions.
    pub fn in_flight_of<'a>(&self, tps: impl IntoIterator<Item = &'a TopicPartition>) -> usize {
        tps.into_iter().filter_map(|tp| self.get(tp)).map(PartitionTracker::in_flight).sum()
    }

    /// Watermarks that moved since the last call, for a commit.
    pub fn take_commits(&mut self) -> Vec<(TopicPartition, i64)> {
        let mut out: Vec<(TopicPartition, i64)> = self.partitions.iter_mut().filter_map(|(tp, (_, t))| t.take_commit().map(|w| (tp.clone(), w))).collect();
        out.sort();
        out
    }

    /// Every partition's watermark, moved or not (each counts as handed out).
    pub fn watermarks(&mut self) -> Vec<(TopicPartition, i64)> {
        let mut out: Vec<(TopicPartition, i64)> = self
            .partitions
            .iter_mut()
            .filter_map(|(tp, (_, t))| {
                let w = t.watermark()?;
                t.committed = Some(w);
                Some((tp.clone(), w))
            })
            .collect();
        out.sort();
        out
    }

    /// The watermarks of the given partitions, moved or not (each counts as handed out).
    pub fn watermarks_of<'a>(&mut self, tps: impl IntoIterator<Item = &'a TopicPartition>) -> Vec<(TopicPartition, i64)> {
        let mut out = Vec::new();
        for tp in tps {
            if let Some((_, t)) = self.partitions.get_mut(tp) {
                if let Some(w) = t.watermark() {
                    t.committed = Some(w);
                    out.push((tp.clone(), w));
                }
            }
        }
        out
    }

    /// Watermarks of the given partitions that moved since the last commit.
    pub fn take_commits_of<'a>(&mut self, tps: impl IntoIterator<Item = &'a TopicPartition>) -> Vec<(TopicPartition, i64)> {
        let mut out = Vec::new();
        for tp in tps {
            if let Some((_, t)) = self.partitions.get_mut(tp) {
                if let Some(w) = t.take_commit() {
                    out.push((tp.clone(), w));
                }
            }
        }
        out
    }

    /// Makes the given partitions' watermarks due for commit again (their commit failed).
    pub fn retry_commits<'a>(&mut self, tps: impl IntoIterator<Item = &'a TopicPartition>) {
        for tp in tps {
            if let Some((_, t)) = self.partitions.get_mut(tp) {
                t.retry_commit();
            }
        }
    }

    /// The first partition with a failed record, and the failed offset.
    pub fn failed(&self) -> Option<(TopicPartition, i64)> {
        if !self.any_failed {
            return None;
        }
        self.partitions.iter().find_map(|(tp, (_, t))| t.failed().map(|o| (tp.clone(), o)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_acks_advance_one_by_one() {
        let mut t = PartitionTracker::new();
        for o in 10..15 {
            assert!(t.track(o));
        }
        assert_eq!(t.watermark(), None);
        assert_eq!(t.in_flight(), 5);
        for o in 10..15 {
            assert_eq!(t.ack(o, true), Ok(true));
            assert_eq!(t.watermark(), Some(o + 1));
        }
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn out_of_order_acks_wait_for_the_gap() {
        let mut t = PartitionTracker::new();
        for o in 0..5 {
            t.track(o);
        }
        assert_eq!(t.ack(3, true), Ok(false));
        assert_eq!(t.ack(1, true), Ok(false));
        assert_eq!(t.ack(4, true), Ok(false));
        assert_eq!(t.watermark(), None, "offset 0 is still in flight");
        assert_eq!(t.ack(0, true), Ok(true));
        assert_eq!(t.watermark(), Some(2), "2 is still in flight");
        assert_eq!(t.ack(2, true), Ok(true));
        assert_eq!(t.watermark(), Some(5));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn gaps_in_offsets_are_fine() {
        // Compacted topics and transaction markers leave holes in the offsets.
        let mut t = PartitionTracker::new();
        for o in [3, 7, 8, 20] {
            assert!(t.track(o));
        }
        t.ack(7, true).unwrap();
        t.ack(3, true).unwrap();
        assert_eq!(t.watermark(), Some(8), "8 is still in flight");
        t.ack(8, true).unwrap();
        assert_eq!(t.watermark(), Some(9));
        t.ack(20, true).unwrap();
        assert_eq!(t.watermark(), Some(21));
    }

    #[test]
    fn duplicate_unknown_and_stale_acks_are_refused() {
        let mut t = PartitionTracker::new();
        t.track(1);
        t.track(2);
        assert_eq!(t.ack(2, true), Ok(false));
        assert_eq!(t.ack(2, true), Err(AckError::Duplicate));
        assert_eq!(t.ack(5, true), Err(AckError::Unknown));
        assert_eq!(t.ack(1, true), Ok(true));
        assert_eq!(t.ack(1, true), Err(AckError::Unknown), "below the watermark: gone");
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn offsets_must_increase() {
        let mut t = PartitionTracker::new();
        assert!(t.track(5));
        assert!(!t.track(5));
        assert!(!t.track(4));
        t.ack(5, true).unwrap();
        assert!(!t.track(5), "below the watermark");
        assert!(t.track(6));
    }

    #[test]
    fn a_failure_stops_the_watermark_for_good() {
        let mut t = PartitionTracker::new();
        for o in 0..4 {
            t.track(o);
        }
        t.ack(0, true).unwrap();
        assert_eq!(t.ack(1, false), Ok(false));
        t.ack(2, true).unwrap();
        t.ack(3, true).unwrap();
        assert_eq!(t.watermark(), Some(1));
        assert_eq!(t.failed(), Some(1));
        assert_eq!(t.in_flight(), 0);
        t.track(4);
        t.ack(4, true).unwrap();
        assert_eq!(t.watermark(), Some(1));
    }

    #[test]
    fn take_commit_hands_out_each_watermark_once() {
        let mut t = PartitionTracker::new();
        t.track(0);
        t.track(1);
        assert_eq!(t.take_commit(), None);
        t.ack(0, true).unwrap();
        assert_eq!(t.take_commit(), Some(1));
        assert_eq!(t.take_commit(), None);
        t.retry_commit();
        assert_eq!(t.take_commit(), Some(1));
        t.ack(1, true).unwrap();
        assert_eq!(t.take_commit(), Some(2));
    }

    #[test]
    fn generations_ignore_acks_of_revoked_assignments() {
        let tp: TopicPartition = (Arc::from("in"), 0);
        let other: TopicPartition = (Arc::from("in"), 1);
        let mut o = OffsetTracker::new();
        let g0 = o.track(&tp, 0).unwrap();
        o.track(&tp, 1).unwrap();
        o.track(&other, 0).unwrap();
        assert_eq!(o.in_flight(), 3);
        o.ack(&tp, g0, 0, true).unwrap();
        assert_eq!(o.take_commits_of([&tp]), vec![(tp.clone(), 1)]);
        assert_eq!(o.revoke([&tp]), 1, "offset 1 abandoned");
        assert_eq!(o.in_flight(), 1);
        // The partition comes back (re-read from the commit, offset 1).
        let g1 = o.track(&tp, 1).unwrap();
        assert_ne!(g0, g1);
        assert_eq!(o.ack(&tp, g0, 1, true), Err(AckError::Unknown), "stale ack");
        assert_eq!(o.get(&tp).unwrap().in_flight(), 1);
        assert_eq!(o.ack(&tp, g1, 1, true), Ok(true));
        assert_eq!(o.take_commits(), vec![(tp.clone(), 2)]);
        assert_eq!(o.in_flight_of([&other]), 1);
        assert_eq!(o.watermarks_of([&other]), vec![], "nothing acknowledged in `other`");
        assert_eq!(o.watermarks_of([&tp]), vec![(tp.clone(), 2)], "moved or not");
        assert_eq!(o.watermarks(), vec![(tp.clone(), 2)], "every watermark, moved or not");
        assert_eq!(o.take_commits(), vec![]);
    }

    #[test]
    fn failures_are_reported_with_their_partition() {
        let tp: TopicPartition = (Arc::from("in"), 3);
        let mut o = OffsetTracker::new();
        let g = o.track(&tp, 7).unwrap();
        assert_eq!(o.failed(), None);
        o.ack(&tp, g, 7, false).unwrap();
        assert_eq!(o.failed(), Some((tp, 7)));
    }

    proptest! {
        /// Whatever the order of acks, the watermark is always the offset after the longest
        /// acknowledged prefix, and ends past the last offset.
        #[test]
        fn watermark_is_the_acknowledged_prefix(n in 1usize..200, gaps in proptest::collection::vec(1i64..4, 200), seed in any::<u64>()) {
            let mut offsets = Vec::with_capacity(n);
            let mut o = 100i64;
            for g in gaps.iter().take(n) {
                offsets.push(o);
                o += g;
            }
            let mut t = PartitionTracker::new();
            for &o in &offsets {
                prop_assert!(t.track(o));
            }
            // A deterministic shuffle from the seed.
            let mut order: Vec<usize> = (0..n).collect();
            let mut s = seed | 1;
            for i in (1..n).rev() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                order.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut acked = vec![false; n];
            for &i in &order {
                t.ack(offsets[i], true).unwrap();
                acked[i] = true;
                let prefix = acked.iter().take_while(|a| **a).count();
                let expected = if prefix == 0 { None } else { Some(offsets[prefix - 1] + 1) };
                prop_assert_eq!(t.watermark(), expected);
                prop_assert_eq!(t.in_flight(), acked.iter().filter(|a| !**a).count());
            }
            prop_assert_eq!(t.watermark(), Some(offsets[n - 1] + 1));
        }
    }
}
