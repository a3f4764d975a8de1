//! Retry delays: [`Backoff`], an exponential backoff with optional jitter, the one retry
//! policy type of Sluice.
//!
//! Who retries what:
//! - **librdkafka, inside the producer**: a produce request that fails transiently (leader
//!   change, broker restart, timeout of one request) is retried by librdkafka itself
//!   (`retries`, `retry.backoff.ms`, bounded by `message.timeout.ms`), invisibly to Sluice; with
//!   `enable.idempotence` these retries neither duplicate nor reorder. Likewise the consumer's
//!   reconnects and its automatic commits (a failed one is retried by the next).
//! - **the Kafka sink** (`sink::kafka`): when librdkafka gives up on a record (its delivery
//!   report is a retriable error, e.g. `message.timeout.ms` expired while the broker was down),
//!   the sink produces it again after a [`Backoff`] from `retry_backoff_ms` to
//!   `retry_backoff_max_ms` (one per record: [`Backoff::delay`] of its failed attempts),
//!   forever; records in flight are bounded, so this is backpressure, not a growing queue. A
//!   full producer queue is not a failure: the sink waits a fixed 5 ms and hands it over again.
//! - **the MQTT source** (`source::mqtt`): reconnects to the broker after a [`Backoff`] from
//!   `reconnect_backoff_ms` to `reconnect_backoff_max_ms`, [`reset`](Backoff::reset) once
//!   connected.
//!
//! Nothing else retries: a failed delivery acknowledged to a source stops it before it commits
//! (the input is read again on restart).

use std::time::Duration;

/// Delays that double from `initial` up to `max`, each shortened by up to `jitter` (a fraction
/// in `[0, 1]`, `0` for none) at random, so that many clients failing together do not retry in
/// step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
    attempt: u32,
}

impl Backoff {
    /// Delays from `initial`, doubling up to `max` (at least `initial`), without jitter.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max: max.max(initial), jitter: 0.0, attempt: 0 }
    }

    /// The same delays, each shortened by up to `jitter` of itself at random (`jitter` is
    /// clamped to `[0, 1]`).
    pub fn with_jitter(self, jitter: f64) -> Backoff {
        Backoff { jitter: if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) }, ..self }
    }

    /// The delay before the next attempt; the one after doubles.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Back to `initial` (the operation succeeded).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Delays handed out by [`next_delay`](Self::next_delay) since the last [`reset`](Self::reset).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay after `failures` failed attempts (`0`: the first retry waits `initial`),
    /// without changing the state: for a policy shared by many operations, each counting its
    /// own failures.
    pub fn delay(&self, failures: u32) -> Duration {
        let base = self.initial.saturating_mul(2u32.saturating_pow(failures)).min(self.max);
        if self.jitter > 0.0 {
            base.mul_f64(1.0 - self.jitter * rand::random::<f64>())
        } else {
            base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_bound_and_resets() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(delays, [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]);
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn delay_is_stateless_and_never_overflows() {
        let b = Backoff::new(100 * MS, 10_000 * MS);
        assert_eq!(b.delay(0), 100 * MS);
        assert_eq!(b.delay(3), 800 * MS);
        assert_eq!(b.delay(u32::MAX), 10_000 * MS);
        assert_eq!(b, Backoff::new(100 * MS, 10_000 * MS), "delay changes nothing");
        let mut huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.next_delay(), Duration::MAX);
        assert_eq!(huge.next_delay(), Duration::MAX);
        assert_eq!(Backoff::new(500 * MS, 100 * MS).delay(4), 500 * MS, "max is at least initial");
    }

    #[test]
    fn jitter_shortens_within_its_fraction() {
        let mut b = Backoff::new(1000 * MS, 1000 * MS).with_jitter(0.25);
        let delays: Vec<Duration> = (0..200).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d > 749 * MS && *d <= 1000 * MS), "{delays:?}");
        assert!(delays.iter().any(|d| *d != delays[0]), "jitter varies the delays");
        assert_eq!(Backoff::new(MS, MS).with_jitter(f64::NAN).next_delay(), MS);
        assert!(Backoff::new(MS, MS).with_jitter(7.0).next_delay() <= MS);
    }
}
