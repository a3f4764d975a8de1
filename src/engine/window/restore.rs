//! Window state coming back: from the embedded store at start (with the digests of the inputs
//! it holds, skipped when they are delivered again), and per Kafka shard from its changelog when
//! the partition is assigned (dropped when it is revoked).

use super::*;
use crate::state::changelog::Restored;

impl Windows {
    /// Loads a store's state for the rules of `rules` whose fingerprint it matches; the rest is
    /// discarded (counted). Returns the rules discarded.
    pub(crate) fn restore(&self, rules: &[Arc<Rule>], loaded: Loaded, now: i64) -> Vec<String> {
        let current: HashMap<&str, (&Arc<Rule>, u64)> = rules.iter().filter_map(|r| fingerprint(r).map(|f| (&*r.name, (r, f)))).collect();
        let mut discarded: HashSet<String> = HashSet::new();
        for (rule, fp) in &loaded.fingerprints {
            if current.get(rule.as_str()).is_none_or(|(_, f)| f != fp) {
                discarded.insert(rule.clone());
            }
        }
        let mut counts: HashMap<String, u64> = HashMap::new();
        for (table, rows) in [(0, loaded.groups), (1, loaded.parts)] {
            for (rule, key, json) in rows {
                let Some((r, fp)) = current.get(rule.as_str()).filter(|_| !discarded.contains(&rule)) else {
                    *counts.entry(rule).or_default() += 1;
                    continue;
                };
                let state = self.of(r, *fp);
                if table == 0 {
                    if let Ok(mut g) = serde_json::from_slice::<Group>(&json) {
                        // The idle timeout counts from the restart: the time the process was
                        // down is not the group's silence.
                        g.seen_ms = g.seen_ms.max(now);
                        state.groups.insert(key, g);
                    }
                } else if let Ok(p) = serde_json::from_slice::<Part>(&json) {
                    state.parts.insert(key, p);
                }
            }
        }
        for (rule, n) in counts {
            metrics::STATE_DISCARDED.with_label_values(&[&rule]).inc_by(n);
            tracing::info!(rule = %rule, keys = n, "stored state of a changed or removed rule is discarded");
            discarded.insert(rule);
        }
        let mut replayed = self.replayed.lock().unwrap_or_else(|p| p.into_inner());
        self.replay_left.fetch_add(loaded.digests.len(), std::sync::atomic::Ordering::Relaxed);
        for d in loaded.digests {
            *replayed.entry(d).or_default() += 1;
        }
        discarded.into_iter().collect()
    }

    /// Whether an input of digest `d` was already applied by the last checkpoint (once per
    /// recorded copy): delivered again after a restart, the stateful rules skip it.
    pub(crate) fn replayed(&self, d: u64) -> bool {
        if !self.replaying() {
            return false;
        }
        let mut r = self.replayed.lock().unwrap_or_else(|p| p.into_inner());
        match r.get_mut(&d) {
            Some(n) => {
                *n -= 1;
                self.replay_left.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                if *n == 0 {
                    r.remove(&d);
                }
                metrics::STATE_REPLAY_SKIPPED.inc();
                true
            }
            None => false,
        }
    }

    /// Whether restored digests are still expected back.
    pub(crate) fn replaying(&self) -> bool {
        self.replay_left.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// Loads Kafka shard `shard`'s state (read from its changelog) for the current rules whose
    /// fingerprint it matches; the rest (changed or removed rules) is discarded and counted.
    /// Returns (keys restored, keys discarded).
    pub(crate) fn restore_shard(&self, rules: &[Arc<Rule>], shard: Shard, r: Restored, now: i64) -> (usize, usize) {
        let current: HashMap<&str, (&Arc<Rule>, u64)> = rules.iter().filter_map(|r| fingerprint(r).map(|f| (&*r.name, (r, f)))).collect();
        let (mut restored, mut discarded) = (0, HashMap::<String, u64>::new());
        for (table, rows) in [(0, r.groups), (1, r.parts)] {
            for (rule, key, fp, json) in rows {
                let Some((r, _)) = current.get(rule.as_str()).filter(|(_, f)| *f == fp) else {
                    *discarded.entry(rule).or_default() += 1;
                    continue;
                };
                let state = self.of(r, fp);
                if table == 0 {
                    if let Ok(mut g) = serde_json::from_slice::<Group>(&json) {
                        // The idle timeout counts from the restore, as after a restart.
                        g.seen_ms = g.seen_ms.max(now);
                        g.shard = shard;
                        state.groups.insert(key, g);
                        restored += 1;
                    }
                } else if let Ok(mut p) = serde_json::from_slice::<Part>(&json) {
                    p.shard = shard;
                    state.parts.insert(key, p);
                    restored += 1;
                }
            }
        }
        for r in self.rules.iter() {
            r.keys.set((r.groups.len() + r.parts.len()) as i64);
        }
        let n = discarded.values().sum::<u64>() as usize;
        for (rule, k) in discarded {
            metrics::STATE_DISCARDED.with_label_values(&[&rule]).inc_by(k);
            tracing::info!(rule = %rule, keys = k, "changelog state of a changed or removed rule is discarded");
        }
        (restored, n)
    }

    /// Forgets Kafka shard `shard`'s state (its partition went to another instance, which
    /// restores it from the changelog). Returns how many keys went.
    pub(crate) fn drop_shard(&self, shard: Shard) -> usize {
        let mut n = 0;
        for r in self.rules.iter() {
            let before = r.groups.len() + r.parts.len();
            r.groups.retain(|_, g| g.shard != shard);
            r.parts.retain(|_, p| p.shard != shard);
            let after = r.groups.len() + r.parts.len();
            r.keys.set(after as i64);
            n += before - after;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_digests_are_skipped_once_per_copy() {
        let w = Windows::default();
        assert!(!w.replaying());
        w.restore(&[], Loaded { digests: vec![1, 1, 2], ..Loaded::default() }, 0);
        assert!(w.replaying());
        assert_eq!([w.replayed(1), w.replayed(3), w.replayed(1), w.replayed(1)], [true, false, true, false]);
        assert!(w.replaying(), "digest 2 is still expected");
        assert!(w.replayed(2));
        assert!(!w.replaying());
        assert!(!w.replayed(2));
    }
}
