//! The Kafka consumer's flow control as a plain state machine, with no broker and no clock of
//! its own: what is in flight (an [`OffsetTracker`] per partition), what is held back (consumed
//! records the channel had no room for), when to pause and resume the assignment
//! (backpressure), and which acknowledged watermarks to store or commit.
//!
//! The consumer loop (`consume`) feeds it events — a record arrived, an ack came back, the
//! channel took or refused a record, a commit tick, a rebalance — and does what it answers
//! (pause, resume, store, commit); the times it needs are passed in.
//!
//! Backpressure: a short stall (full channel, or `max_in_flight` records in flight) only holds
//! the consumer back; a stall longer than [`PAUSE_AFTER`] pauses the assignment, which drops
//! what librdkafka has prefetched, so it is kept for when the pipeline really stops (e.g. the
//! sink's broker is down). Paused, it resumes once nothing is held, in flight is below 3/4 of
//! `max_in_flight`, and no stall is long.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::source::offsets::{OffsetTracker, TopicPartition};

/// How long the consumer may be stalled (channel full, or too much in flight) before it
/// pauses its partitions.
pub const PAUSE_AFTER: Duration = Duration::from_millis(500);
/// How often acknowledged watermarks are stored for the next automatic commit.
pub const STORE_INTERVAL: Duration = Duration::from_millis(100);

/// What a consumer has taken in and not yet committed, and whether it is paused. `T` is what a
/// held record carries (an `Envelope` in the source).
#[derive(Debug)]
pub struct Intake<T> {
    tracker: OffsetTracker,
    /// Consumed records not yet sent on (the channel was full), in order.
    held: VecDeque<(TopicPartition, T)>,
    max_in_flight: usize,
    /// Paused, resume once in flight is below this.
    resume_below: usize,
    paused: bool,
    /// The assignment changed: the pause state must be applied to the new one.
    reassigned: bool,
    /// Since when the channel has refused the front held record.
    blocked_since: Option<Instant>,
    /// Since when `max_in_flight` records have been in flight.
    over_since: Option<Instant>,
    last_store: Instant,
}

impl<T> Intake<T> {
    /// Nothing in flight, not paused; `now` starts the store interval.
    pub fn new(max_in_flight: usize, now: Instant) -> Intake<T> {
        Intake {
            tracker: OffsetTracker::new(),
            held: VecDeque::new(),
            max_in_flight,
            resume_below: (max_in_flight * 3 / 4).max(1),
            paused: false,
            reassigned: false,
            blocked_since: None,
            over_since: None,
            last_store: now,
        }
    }

    // Records and acks.

    /// A record arrived: tracks it. Returns the generation its ack must carry, or `None` if it
    /// is below what its partition already tracked (it is skipped).
    pub fn track(&mut self, tp: &TopicPartition, offset: i64) -> Option<u64> {
        self.tracker.track(tp, offset)
    }

    /// A record's ack: `delivered`, or failed or dropped (it must be read again). Stale acks (of
    /// a revoked assignment) and duplicates are ignored. Returns whether the partition's
    /// watermark moved.
    pub fn ack(&mut self, tp: &TopicPartition, generation: u64, offset: i64, delivered: bool) -> bool {
        self.tracker.ack(tp, generation, offset, delivered).unwrap_or(false)
    }

    /// Records tracked and not acknowledged.
    pub fn in_flight(&self) -> usize {
        self.tracker.in_flight()
    }

    /// Records in flight in `tps`.
    pub fn in_flight_of(&self, tps: &[TopicPartition]) -> usize {
        self.tracker.in_flight_of(tps)
    }

    /// The first failed record, if one failed: the consumer must stop before committing past
    /// it.
    pub fn failed(&self) -> Option<(TopicPartition, i64)> {
        self.tracker.failed()
    }

    // Records held back.

    /// Whether records are held back (new ones must queue behind them, in order).
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Holds a record back, behind the others.
    pub fn hold(&mut self, tp: TopicPartition, item: T) {
        self.held.push_back((tp, item));
    }

    /// The first held record, to send on.
    pub fn next_held(&mut self) -> Option<(TopicPartition, T)> {
        self.held.pop_front()
    }

    /// The channel took the record from [`next_held`](Self::next_held): no longer blocked.
    pub fn sent(&mut self) {
        self.blocked_since = None;
    }

    /// The channel had no room for the record from [`next_held`](Self::next_held): it goes
    /// back in front, and the stall counts from `now` (if not already counting).
    pub fn refused(&mut self, tp: TopicPartition, item: T, now: Instant) {
        self.held.push_front((tp, item));
        self.stalled(now);
    }

    /// The channel had no room for the front held record (it stays in front): the stall
    /// counts from `now` (if not already counting).
    pub fn stalled(&mut self, now: Instant) {
        self.blocked_since.get_or_insert(now);
    }

    /// Takes every held record (shutdown). The caller drops them after releasing any lock the
    /// records' acks take.
    pub fn take_held(&mut self) -> VecDeque<(TopicPartition, T)> {
        std::mem::take(&mut self.held)
    }

    // Backpressure.

    /// Decides pause or resume, given the records in flight. Returns `Some(pause)` when the
    /// assignment must be paused (`true`) or resumed (`false`) — a change, or the current state
    /// to apply to a new assignment — and `None` when nothing is to be done. Report the outcome
    /// with [`set_paused`](Self::set_paused).
    pub fn backpressure(&mut self, now: Instant, in_flight: usize) -> Option<bool> {
        if in_flight >= self.max_in_flight {
            self.over_since.get_or_insert(now);
        } else {
            self.over_since = None;
        }
        let long = |since: Option<Instant>| since.is_some_and(|t| now.saturating_duration_since(t) >= PAUSE_AFTER);
        let stalled = long(self.blocked_since) || long(self.over_since);
        let want = if self.paused { stalled || self.holding() || in_flight >= self.resume_below } else { stalled };
        // After a rebalance, apply the state to the whole new assignment (librdkafka keeps a
        // partition's pause across a revocation and a new assignment of it).
        let reassigned = std::mem::take(&mut self.reassigned);
        (want != self.paused || reassigned).then_some(want)
    }

    /// The assignment is now paused (or not), after [`backpressure`](Self::backpressure) asked
    /// (a failed pause or resume leaves the state as it was).
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Whether consumption is paused.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Whether the consumer must wait for acks rather than take more records: `max_in_flight`
    /// are in flight and it is not paused (paused, it only polls to stay in its group).
    pub fn must_wait(&self, in_flight: usize) -> bool {
        in_flight >= self.max_in_flight && !self.paused
    }

    // Commits.

    /// The commit tick: every [`STORE_INTERVAL`], the watermarks that moved since the last
    /// store (`None` between ticks).
    pub fn store_due(&mut self, now: Instant) -> Option<Vec<(TopicPartition, i64)>> {
        if now.saturating_duration_since(self.last_store) < STORE_INTERVAL {
            return None;
        }
        self.last_store = now;
        Some(self.tracker.take_commits())
    }

    /// Every watermark of `tps` (all partitions if `None`), moved or not: what a synchronous
    /// commit before partitions go (revocation, shutdown) commits.
    pub fn watermarks(&mut self, tps: Option<&[TopicPartition]>) -> Vec<(TopicPartition, i64)> {
        match tps {
            Some(tps) => self.tracker.watermarks_of(tps),
            None => self.tracker.watermarks(),
        }
    }

    // Rebalances.

    /// The assignment changed (after any rebalance): the pause state is applied to it next.
    pub fn reassigned(&mut self) {
        self.reassigned = true;
    }

    /// Revocation begins: the held records of `tps` are taken out (returned, to be dropped
    /// once no lock their acks take is held).
    pub fn revoke_held(&mut self, tps: &[TopicPartition]) -> Vec<T> {
        let (gone, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.held).into_iter().partition(|(tp, _)| tps.contains(tp));
        self.held = kept;
        gone.into_iter().map(|(_, item)| item).collect()
    }

    /// Revocation ends: forgets `tps` (their remaining in-flight records are abandoned, their
    /// acks will be ignored). Returns how many were abandoned.
    pub fn forget(&mut self, tps: &[TopicPartition]) -> usize {
        self.tracker.revoke(tps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tp(p: i32) -> TopicPartition {
        (Arc::from("in"), p)
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// `n` records of partition `p` from `offset`, with their generations.
    fn arrive(i: &mut Intake<i64>, p: i32, offsets: std::ops::Range<i64>) -> Vec<(i64, u64)> {
        offsets.map(|o| (o, i.track(&tp(p), o).expect("tracked"))).collect()
    }

    #[test]
    fn commits_only_past_delivered_offsets() {
        let t0 = Instant::now();
        let mut i: Intake<i64> = Intake::new(100, t0);
        let recs = arrive(&mut i, 0, 10..15);
        assert_eq!(i.in_flight(), 5);
        assert_eq!(i.store_due(ms(t0, 50)), None, "not yet a commit tick");
        assert_eq!(i.store_due(ms(t0, 100)), Some(vec![]), "nothing delivered");
        // Out of order: 11 and 12 delivered, 10 still in flight.
        assert!(!i.ack(&tp(0), recs[1].1, 11, true));
        assert!(!i.ack(&tp(0), recs[2].1, 12, true));
        assert_eq!(i.store_due(ms(t0, 200)), Some(vec![]), "10 is still in flight");
        assert!(i.ack(&tp(0), recs[0].1, 10, true));
        assert_eq!(i.store_due(ms(t0, 250)), None, "between ticks");
        assert_eq!(i.store_due(ms(t0, 300)), Some(vec![(tp(0), 13)]));
        assert_eq!(i.store_due(ms(t0, 400)), Some(vec![]), "each watermark is stored once");
        // Revocation and shutdown commit every watermark, moved or not.
        assert_eq!(i.watermarks(None), vec![(tp(0), 13)]);
        assert_eq!(i.in_flight(), 2);
        assert_eq!(i.failed(), None);
    }

    #[test]
    fn a_failed_or_dropped_ack_stops_the_watermark_and_is_reported() {
        for how in ["failed", "dropped"] {
            let t0 = Instant::now();
            let mut i: Intake<i64> = Intake::new(100, t0);
            let recs = arrive(&mut i, 3, 0..3);
            i.ack(&tp(3), recs[0].1, 0, true);
            // A failed delivery and a dropped ack both arrive as "not delivered".
            i.ack(&tp(3), recs[1].1, 1, false);
            i.ack(&tp(3), recs[2].1, 2, true);
            assert_eq!(i.failed(), Some((tp(3), 1)), "{how}");
            assert_eq!(i.store_due(ms(t0, 100)), Some(vec![(tp(3), 1)]), "{how}: never past offset 1");
            assert_eq!(i.in_flight(), 0);
        }
    }

    #[test]
    fn duplicate_and_unknown_acks_are_ignored() {
        let mut i: Intake<i64> = Intake::new(100, Instant::now());
        let recs = arrive(&mut i, 0, 0..2);
        assert!(i.ack(&tp(0), recs[0].1, 0, true));
        assert!(!i.ack(&tp(0), recs[0].1, 0, true));
        assert!(!i.ack(&tp(0), recs[0].1, 7, true));
        assert_eq!(i.in_flight(), 1);
        assert_eq!(i.track(&tp(0), 1), None, "offsets must increase");
    }

    #[test]
    fn too_much_in_flight_waits_then_pauses_then_resumes_below_three_quarters() {
        let t0 = Instant::now();
        let mut i: Intake<i64> = Intake::new(8, t0);
        let recs = arrive(&mut i, 0, 0..8);
        // At the bound: wait for acks rather than take more, but do not pause yet.
        assert_eq!(i.backpressure(t0, i.in_flight()), None);
        assert!(i.must_wait(8));
        assert_eq!(i.backpressure(ms(t0, 499), 8), None);
        // Stalled for PAUSE_AFTER: pause.
        assert_eq!(i.backpressure(ms(t0, 500), 8), Some(true));
        i.set_paused(true);
        assert!(i.paused());
        assert!(!i.must_wait(8), "paused, the consumer only polls");
        assert_eq!(i.backpressure(ms(t0, 600), 8), None, "stays paused");
        // Acks bring it to 6 (3/4 of 8): still paused; below: resume.
        i.ack(&tp(0), recs[0].1, 0, true);
        i.ack(&tp(0), recs[1].1, 1, true);
        assert_eq!(i.backpressure(ms(t0, 700), i.in_flight()), None, "6 is not below 6");
        i.ack(&tp(0), recs[2].1, 2, true);
        assert_eq!(i.backpressure(ms(t0, 800), i.in_flight()), Some(false));
        i.set_paused(false);
        assert!(!i.paused());
        assert!(!i.must_wait(i.in_flight()));
    }

    #[test]
    fn a_failed_pause_is_asked_again() {
        let t0 = Instant::now();
        let mut i: Intake<i64> = Intake::new(1, t0);
        arrive(&mut i, 0, 0..1);
        i.backpressure(t0, 1);
        assert_eq!(i.backpressure(ms(t0, 500), 1), Some(true));
        // The consumer could not pause: the state stays, and the next step asks again.
        i.set_paused(false);
        assert_eq!(i.backpressure(ms(t0, 600), 1), Some(true));
    }

    #[test]
    fn a_full_channel_holds_records_in_order_then_pauses() {
        let t0 = Instant::now();
        let mut i: Intake<i64> = Intake::new(100, t0);
        arrive(&mut i, 0, 0..3);
        // The channel refused record 0: it and the next ones are held, in order.
        i.hold(tp(0), 0);
        assert!(i.holding());
        i.hold(tp(0), 1);
        let (p, r) = i.next_held().unwrap();
        i.refused(p, r, t0);
        i.hold(tp(0), 2);
        assert_eq!(i.backpressure(ms(t0, 100), 3), None, "a short stall only holds back");
        let (p, r) = i.next_held().unwrap();
        i.refused(p, r, ms(t0, 200));
        assert_eq!(i.backpressure(ms(t0, 500), 3), Some(true), "blocked since t0");
        i.set_paused(true);
        // Room again: sent on in order; paused while anything is held.
        let (_, r) = i.next_held().unwrap();
        assert_eq!(r, 0);
        i.sent();
        assert_eq!(i.backpressure(ms(t0, 600), 3), None, "still holding");
        assert_eq!(i.next_held().map(|h| h.1), Some(1));
        assert_eq!(i.next_held().map(|h| h.1), Some(2));
        assert!(!i.holding());
        assert_eq!(i.backpressure(ms(t0, 700), 3), Some(false), "resume");
    }

    #[test]
    fn a_new_assignment_gets_the_pause_state_once() {
        let t0 = Instant::now();
        let mut i: Intake<i64> = Intake::new(100, t0);
        i.reassigned();
        assert_eq!(i.backpressure(t0, 0), Some(false), "apply 'not paused' to the new assignment");
        assert_eq!(i.backpressure(t0, 0), None);
        i.set_paused(true);
        i.hold(tp(0), 0);
        i.reassigned();
        assert_eq!(i.backpressure(t0, 0), Some(true), "stay paused on the new assignment");
    }

    #[test]
    fn revoke_drops_held_records_commits_and_forgets_the_partitions() {
        let t0 = Instant::now();
        let mut i: Intake<i64> = Intake::new(100, t0);
        let p0 = arrive(&mut i, 0, 0..4);
        let p1 = arrive(&mut i, 1, 0..2);
        i.hold(tp(1), 100);
        i.hold(tp(0), 3);
        i.hold(tp(1), 101);
        i.ack(&tp(0), p0[0].1, 0, true);
        i.ack(&tp(0), p0[1].1, 1, true);
        i.ack(&tp(1), p1[0].1, 0, true);
        // Partition 0 is revoked: its held record goes, the others stay in order.
        let revoked = [tp(0)];
        assert_eq!(i.revoke_held(&revoked), vec![3]);
        assert_eq!(i.in_flight_of(&revoked), 2);
        assert_eq!(i.watermarks(Some(&revoked)), vec![(tp(0), 2)], "commit what is done");
        assert_eq!(i.forget(&revoked), 2, "offsets 2 and 3 abandoned");
        assert_eq!(i.in_flight(), 1);
        assert_eq!(i.next_held().map(|h| h.1), Some(100));
        assert_eq!(i.next_held().map(|h| h.1), Some(101));
        // Acks of the revoked assignment are ignored, even when the partition comes back.
        let again = i.track(&tp(0), 2).unwrap();
        assert!(!i.ack(&tp(0), p0[2].1, 2, true), "stale generation");
        assert!(i.ack(&tp(0), again, 2, true));
        // Partition 1's watermark was not committed with partition 0's: it is stored next.
        assert_eq!(i.store_due(ms(t0, 100)), Some(vec![(tp(0), 3), (tp(1), 1)]));
    }

    #[test]
    fn shutdown_takes_every_held_record() {
        let mut i: Intake<i64> = Intake::new(100, Instant::now());
        i.hold(tp(0), 1);
        i.hold(tp(1), 2);
        assert_eq!(i.take_held().into_iter().map(|h| h.1).collect::<Vec<_>>(), vec![1, 2]);
        assert!(!i.holding());
    }
}
