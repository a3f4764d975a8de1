//! The Kafka shards of the window state: a partition's state restored from its changelog when
//! the partition is assigned, and dropped when it is revoked.

use super::*;
use crate::state::changelog::Restored;

impl Windows {
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
