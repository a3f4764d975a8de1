//! Which records of a Kafka partition a checkpoint already holds: offset ranges.
//!
//! Every record of a Kafka shard goes through the checkpoints (stateful or not), so what a
//! checkpoint covers is, per topic and partition, one run of offsets from the first record the
//! instance took to the last before the cut, plus a few stragglers a worker had not finished at
//! the cut. The ranges merge as they fill in; a gap in the log's offsets (a transaction marker,
//! a compacted record) leaves two ranges, and at most [`MAX_RANGES`] are kept (the lowest go
//! first: they are far below the committed offset by then).

use serde::{Deserialize, Serialize};

/// Ranges kept per topic and partition at most.
pub const MAX_RANGES: usize = 256;

/// Sorted, disjoint, non-adjacent inclusive offset ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Coverage(Vec<(i64, i64)>);

impl Coverage {
    /// The ranges.
    pub fn ranges(&self) -> &[(i64, i64)] {
        &self.0
    }

    /// Whether `offset` is covered.
    pub fn contains(&self, offset: i64) -> bool {
        match self.0.binary_search_by(|&(s, _)| s.cmp(&offset)) {
            Ok(_) => true,
            Err(0) => false,
            Err(i) => self.0[i - 1].1 >= offset,
        }
    }

    /// Adds one offset.
    pub fn insert(&mut self, offset: i64) {
        self.insert_range(offset, offset);
    }

    /// Adds `[start, end]`.
    pub fn insert_range(&mut self, start: i64, end: i64) {
        if start > end {
            return;
        }
        // Fast path: extends the last range (records mostly come in order).
        if let Some(last) = self.0.last_mut() {
            if start >= last.0 && start <= last.1.saturating_add(1) {
                last.1 = last.1.max(end);
                return;
            }
        }
        let i = self.0.partition_point(|&(_, e)| e.saturating_add(1) < start);
        let mut j = i;
        let (mut s, mut e) = (start, end);
        while j < self.0.len() && self.0[j].0 <= end.saturating_add(1) {
            s = s.min(self.0[j].0);
            e = e.max(self.0[j].1);
            j += 1;
        }
        self.0.splice(i..j, [(s, e)]);
        if self.0.len() > MAX_RANGES {
            let extra = self.0.len() - MAX_RANGES;
            self.0.drain(..extra);
        }
    }

    /// Adds every range of `other`.
    pub fn merge(&mut self, other: &Coverage) {
        for &(s, e) in &other.0 {
            self.insert_range(s, e);
        }
    }

    /// Whether nothing is covered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_as_stragglers_fill_in() {
        let mut c = Coverage::default();
        for o in [10, 11, 13, 14, 20] {
            c.insert(o);
        }
        assert_eq!(c.ranges(), &[(10, 11), (13, 14), (20, 20)]);
        c.insert(12);
        assert_eq!(c.ranges(), &[(10, 14), (20, 20)]);
        assert!(c.contains(10) && c.contains(14) && c.contains(20));
        assert!(!c.contains(9) && !c.contains(15) && !c.contains(21));
        c.insert(5);
        c.insert_range(15, 19);
        assert_eq!(c.ranges(), &[(5, 5), (10, 20)]);
        c.insert(i64::MAX);
        assert!(c.contains(i64::MAX));
        let mut d = Coverage::default();
        d.merge(&c);
        assert_eq!(d, c);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Coverage>(&json).unwrap(), c);
    }

    #[test]
    fn at_most_max_ranges_are_kept_the_lowest_go() {
        let mut c = Coverage::default();
        for i in 0..(MAX_RANGES as i64 + 10) {
            c.insert(i * 2);
        }
        assert_eq!(c.ranges().len(), MAX_RANGES);
        assert!(!c.contains(0) && c.contains(2 * (MAX_RANGES as i64 + 9)));
    }
}
