//! The redb tables of the state store.
//!
//! Why redb: a pure-Rust embedded key-value store (no C toolchain, unlike RocksDB), ACID with
//! one fsync per write transaction, one file, crash-safe by design (copy-on-write B-trees), and
//! well kept. The state is small per key and written in batches at each checkpoint, which is
//! what it is good at.
//!
//! Tables: `groups` (key `<rule>\0<group key>` → the group as JSON), `parts` (analytic
//! partitions, same keying), `digests` (checkpoint number → the digests of its inputs, the last
//! [`DIGEST_EPOCHS`] kept), `meta` (`fingerprint:<rule>` → the rule's fingerprint, `epoch`,
//! `registry` → what the device registry learnt from the data-flow topics).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};

use crate::message::Shard;
use crate::state::coverage::Coverage;

const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
const PARTS: TableDefinition<&str, &[u8]> = TableDefinition::new("parts");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const DIGESTS: TableDefinition<u64, &[u8]> = TableDefinition::new("digests");

/// How many checkpoints' input digests are kept (60 s at the default interval): an input
/// acknowledged by an older checkpoint whose acknowledgement had not reached its source (a
/// PUBACK still in the client's buffer, a Kafka commit not yet sent) when the process died is
/// still recognised when it is delivered again.
pub const DIGEST_EPOCHS: u64 = 600;

/// A state store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened, read or written.
    #[error("state store {path}: {source}")]
    Store {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What one checkpoint writes: the changed and removed keys of each table, the fingerprints of
/// the rules it covers, and the digests of its inputs.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Groups: shard, key → Some(JSON) (written) or None (removed). The embedded store keeps
    /// those of [`Shard::LOCAL`]; a Kafka shard's go to its source's changelog.
    pub groups: Vec<(Shard, String, Option<Vec<u8>>)>,
    /// Analytic partitions, the same way.
    pub parts: Vec<(Shard, String, Option<Vec<u8>>)>,
    /// Rule name → fingerprint.
    pub fingerprints: Vec<(String, u64)>,
    /// The digests of the inputs whose contributions this checkpoint adds.
    pub digests: Vec<u64>,
    /// The checkpoint's number.
    pub epoch: u64,
    /// Rules whose stored keys go first (changed on reload, or removed).
    pub drop_rules: Vec<String>,
    /// The device registry's learnt state, when it changed.
    pub registry: Option<Vec<u8>>,
    /// The offsets the state of each Kafka shard in `touched` holds, per topic.
    pub coverage: Vec<(Shard, Arc<str>, Coverage)>,
    /// The Kafka shards this checkpoint writes to (each gets a marker in its changelog).
    pub touched: Vec<Shard>,
}

impl Snapshot {
    /// Whether it writes nothing.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.parts.is_empty() && self.digests.is_empty() && self.drop_rules.is_empty() && self.registry.is_none() && self.coverage.is_empty() && self.touched.is_empty()
    }

    /// Whether the embedded store has anything to write.
    pub fn has_local(&self) -> bool {
        self.groups.iter().chain(&self.parts).any(|(s, _, _)| *s == Shard::LOCAL) || !self.digests.is_empty() || !self.drop_rules.is_empty() || self.registry.is_some()
    }
}

/// What a store holds at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Groups: (rule, group key, JSON).
    pub groups: Vec<(String, String, Vec<u8>)>,
    /// Analytic partitions: (rule, key, JSON).
    pub parts: Vec<(String, String, Vec<u8>)>,
    /// Rule name → fingerprint.
    pub fingerprints: HashMap<String, u64>,
    /// The input digests of the last [`DIGEST_EPOCHS`] checkpoints.
    pub digests: Vec<u64>,
    /// The last checkpoint's number.
    pub epoch: u64,
    /// The device registry's learnt state.
    pub registry: Option<Vec<u8>>,
}

/// The store.
pub struct StateStore {
    db: Database,
    path: PathBuf,
}

fn split(key: &str) -> Option<(&str, &str)> {
    key.split_once('\0')
}

impl StateStore {
    /// Opens (or creates) `<dir>/state.redb`.
    pub fn open(dir: &Path) -> Result<StateStore, StoreError> {
        let path = dir.join("state.redb");
        let err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Store { path: path.clone(), source: e };
        std::fs::create_dir_all(dir).map_err(|e| err(Box::new(e)))?;
        let db = Database::create(&path).map_err(|e| err(Box::new(e)))?;
        Ok(StateStore { db, path })
    }

    fn err(&self, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Store { path: self.path.clone(), source: Box::new(e) }
    }

    /// Reads everything (at start).
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let mut out = Loaded::default();
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        for (table, into) in [(GROUPS, &mut out.groups), (PARTS, &mut out.parts)] {
            let t = match tx.open_table(table) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(self.err(e)),
            };
            for row in t.iter().map_err(|e| self.err(e))? {
                let (k, v) = row.map_err(|e| self.err(e))?;
                if let Some((rule, key)) = split(k.value()) {
                    into.push((rule.to_string(), key.to_string(), v.value().to_vec()));
                }
            }
        }
        match tx.open_table(META) {
            Ok(t) => {
                for row in t.iter().map_err(|e| self.err(e))? {
                    let (k, v) = row.map_err(|e| self.err(e))?;
                    let (k, v) = (k.value(), v.value());
                    if let Some(rule) = k.strip_prefix("fingerprint:") {
                        if let Ok(b) = <[u8; 8]>::try_from(v) {
                            out.fingerprints.insert(rule.to_string(), u64::from_le_bytes(b));
                        }
                    } else if k == "registry" {
                        out.registry = Some(v.to_vec());
                    } else if k == "epoch" {
                        out.epoch = <[u8; 8]>::try_from(v).map(u64::from_le_bytes).unwrap_or(0);
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(self.err(e)),
        }
        match tx.open_table(DIGESTS) {
            Ok(t) => {
                for row in t.iter().map_err(|e| self.err(e))? {
                    let (_, v) = row.map_err(|e| self.err(e))?;
                    out.digests.extend(v.value().chunks_exact(8).filter_map(|c| <[u8; 8]>::try_from(c).ok()).map(u64::from_le_bytes));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(self.err(e)),
        }
        Ok(out)
    }

    /// Writes a checkpoint in one durable transaction.
    pub fn write(&self, s: &Snapshot) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            for rule in &s.drop_rules {
                self.remove_rule(&tx, rule)?;
            }
            for (table, rows) in [(GROUPS, &s.groups), (PARTS, &s.parts)] {
                let mut t = tx.open_table(table).map_err(|e| self.err(e))?;
                for (_, k, v) in rows.iter().filter(|(s, _, _)| *s == Shard::LOCAL) {
                    match v {
                        Some(v) => {
                            t.insert(k.as_str(), v.as_slice()).map_err(|e| self.err(e))?;
                        }
                        None => {
                            t.remove(k.as_str()).map_err(|e| self.err(e))?;
                        }
                    }
                }
            }
            let mut m = tx.open_table(META).map_err(|e| self.err(e))?;
            for (rule, fp) in &s.fingerprints {
                m.insert(format!("fingerprint:{rule}").as_str(), fp.to_le_bytes().as_slice()).map_err(|e| self.err(e))?;
            }
            let mut d = tx.open_table(DIGESTS).map_err(|e| self.err(e))?;
            if !s.digests.is_empty() {
                let digests: Vec<u8> = s.digests.iter().flat_map(|d| d.to_le_bytes()).collect();
                d.insert(s.epoch, digests.as_slice()).map_err(|e| self.err(e))?;
            }
            // The epochs now too old to matter.
            let old: Vec<u64> = d.range(..s.epoch.saturating_sub(DIGEST_EPOCHS)).map_err(|e| self.err(e))?.filter_map(Result::ok).map(|(k, _)| k.value()).collect();
            for e in old {
                d.remove(e).map_err(|e| self.err(e))?;
            }
            m.insert("epoch", s.epoch.to_le_bytes().as_slice()).map_err(|e| self.err(e))?;
            if let Some(r) = &s.registry {
                m.insert("registry", r.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Removes every key of `rule` (it changed or is gone).
    pub fn drop_rule(&self, rule: &str) -> Result<usize, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let n = self.remove_rule(&tx, rule)?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n)
    }

    /// Removes, in `tx`, the groups, partitions and fingerprint of `rule`; returns how many
    /// keys went.
    fn remove_rule(&self, tx: &redb::WriteTransaction, rule: &str) -> Result<usize, StoreError> {
        let prefix = format!("{rule}\0");
        let mut n = 0;
        for table in [GROUPS, PARTS] {
            let mut t = tx.open_table(table).map_err(|e| self.err(e))?;
            // The rule's keys are one run of the key order, from its prefix on.
            let keys: Vec<String> = t.range(prefix.as_str()..).map_err(|e| self.err(e))?.filter_map(Result::ok).map(|(k, _)| k.value().to_string()).take_while(|k| k.starts_with(&prefix)).collect();
            for k in &keys {
                t.remove(k.as_str()).map_err(|e| self.err(e))?;
            }
            n += keys.len();
        }
        let mut m = tx.open_table(META).map_err(|e| self.err(e))?;
        m.remove(format!("fingerprint:{rule}").as_str()).map_err(|e| self.err(e))?;
        Ok(n)
    }
}

/// The key of a rule's group or partition in the store.
pub fn key(rule: &str, key: &str) -> String {
    format!("{rule}\0{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        s.write(&Snapshot {
            groups: vec![
                (Shard::LOCAL, key("r", "[\"d1\"]"), Some(b"{}".to_vec())),
                (Shard::LOCAL, key("r", "[\"d2\"]"), Some(b"{}".to_vec())),
                (Shard(7), key("r", "[\"kafka\"]"), Some(b"{}".to_vec())),
            ],
            fingerprints: vec![("r".into(), 7)],
            digests: vec![1, u64::MAX],
            epoch: 3,
            ..Snapshot::default()
        })
        .unwrap();
        s.write(&Snapshot { groups: vec![(Shard::LOCAL, key("r", "[\"d2\"]"), None)], fingerprints: vec![("r".into(), 7)], digests: vec![9], epoch: 4, ..Snapshot::default() }).unwrap();
        drop(s);
        let l = StateStore::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(l.groups, vec![("r".to_string(), "[\"d1\"]".to_string(), b"{}".to_vec())], "a Kafka shard's group is its changelog's, not the store's");
        assert_eq!((l.fingerprints.get("r"), l.digests, l.epoch), (Some(&7), vec![1, u64::MAX, 9], 4), "the digests of recent checkpoints are kept");
        let s = StateStore::open(dir.path()).unwrap();
        // A checkpoint dropping a changed rule removes its keys only, not those of a rule whose
        // name it prefixes.
        s.write(&Snapshot { groups: vec![(Shard::LOCAL, key("r2", "[1]"), Some(b"{}".to_vec()))], fingerprints: vec![("r2".into(), 1)], epoch: 5, ..Snapshot::default() }).unwrap();
        s.write(&Snapshot { drop_rules: vec!["r".into()], epoch: 6, ..Snapshot::default() }).unwrap();
        let l = s.load().unwrap();
        assert_eq!(l.groups, vec![("r2".to_string(), "[1]".to_string(), b"{}".to_vec())]);
        assert_eq!((l.fingerprints.get("r"), l.fingerprints.get("r2")), (None, Some(&1)));
        assert_eq!(s.drop_rule("r2").unwrap(), 1);
        assert!(s.load().unwrap().groups.is_empty());
    }
}
