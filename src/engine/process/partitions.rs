//! The engine's side of a Kafka source's rebalances: the state of stateful rules follows the
//! partitions ([`crate::state::changelog`]).

use std::time::{Duration, Instant};

use super::*;
use crate::flow::PartitionState;
use crate::message::Shard;
use crate::state::coverage::Coverage;
use crate::telemetry::metrics;

/// How long creating or reading a changelog may take at most.
const CHANGELOG_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a revocation waits at most for the checkpoints holding the partitions' state.
const REVOKE_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

impl Engine {
    /// Keeps the state of Kafka source `source`'s partitions in `changelog` (call after
    /// [`attach_state`](Engine::attach_state), before the pipeline runs).
    pub fn attach_changelog(&self, source: &str, changelog: crate::state::changelog::Changelog) {
        if let Some(c) = self.checkpoints() {
            tracing::info!(source, topic = changelog.topic(), "the state of the source's partitions is kept in its changelog topic");
            c.add_changelog(source, Arc::new(changelog));
        }
    }
}

impl PartitionState for Engine {
    fn assigned(&self, source: &str, partitions: &[i32], partition_count: i32) -> Result<Vec<crate::flow::Covered>, String> {
        let Some(c) = self.checkpoints() else { return Ok(Vec::new()) };
        let Some(log) = c.changelog(source) else {
            for &p in partitions {
                c.own(Shard::of(source, p), Vec::new());
            }
            return Ok(Vec::new());
        };
        let started = Instant::now();
        log.ensure(partition_count.max(partitions.iter().max().map_or(0, |p| p + 1)), CHANGELOG_TIMEOUT).map_err(|e| e.to_string())?;
        let mut restored = log.read(partitions, CHANGELOG_TIMEOUT).map_err(|e| e.to_string())?;
        let rules = self.rules();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let (mut out, mut keys, mut discarded) = (Vec::new(), 0, 0);
        let repair: Vec<_> = restored.values_mut().flat_map(|r| std::mem::take(&mut r.repair)).collect();
        if !repair.is_empty() {
            log.write_blocking(repair).map_err(|e| e.to_string())?;
        }
        for (p, mut r) in restored {
            let shard = Shard::of(source, p);
            let coverage: Vec<(Arc<str>, Coverage)> = std::mem::take(&mut r.coverage).into_iter().map(|(t, cov)| (Arc::from(t), cov)).collect();
            // What an earlier assignment left, if anything, is older than the changelog.
            self.windows.drop_shard(shard);
            let (k, d) = self.windows.restore_shard(&rules.rules, shard, r, now);
            (keys, discarded) = (keys + k, discarded + d);
            out.extend(coverage.iter().map(|(t, cov)| ((t.to_string(), p), cov.clone())));
            c.own(shard, coverage);
        }
        metrics::STATE_RESTORED_PARTITIONS.with_label_values(&[source]).inc_by(partitions.len() as u64);
        metrics::STATE_RESTORED_KEYS.with_label_values(&[source]).inc_by(keys as u64);
        tracing::info!(source, topic = log.topic(), partitions = ?partitions, keys, discarded, ms = started.elapsed().as_millis() as u64, "partition state restored from the changelog");
        Ok(out)
    }

    fn revoked(&self, source: &str, partitions: &[i32]) {
        let Some(c) = self.checkpoints() else { return };
        if c.changelog(source).is_none() {
            return;
        }
        let mut keys = 0;
        for &p in partitions {
            let shard = Shard::of(source, p);
            c.disown(shard);
            keys += self.windows.drop_shard(shard);
        }
        if !c.wait_sealed_written(Instant::now() + REVOKE_FLUSH_TIMEOUT) {
            tracing::warn!(source, "revoke: the checkpoints holding the partitions' state are not written yet; their next owner may apply some records again");
        }
        tracing::info!(source, partitions = ?partitions, keys, "partition state handed over");
    }
}
