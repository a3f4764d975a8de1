//! The changelog topic of a Kafka source's state: the state follows the partitions.
//!
//! In a consumer group, the state of stateful rules is sharded like the input: a group (or an
//! analytic partition) belongs to the partition its records come from, and each checkpoint
//! writes what changed in partition `p` to partition `p` of the source's changelog topic (as
//! Kafka Streams and Quix Streams do). When partitions are assigned, their state is read back
//! from the changelog (latest record per key) before any of their records is processed; when
//! they are revoked, the state goes once the checkpoints holding it are durable.
//!
//! Records (keys and values are bytes):
//! - `g\0<rule>\0<group key>` → the rule's fingerprint (8 bytes, little-endian) then the
//!   group as JSON; a tombstone (no value) when the group is gone;
//! - `p\0<rule>\0<key>` → the same for an analytic partition;
//! - `c\0` → the **marker** that ends each checkpoint's writes to the partition: the offset
//!   ranges of each input topic in this partition that the state now holds (`{topic:
//!   [[start, end], …]}`): records the next owner acknowledges without applying them again.
//!
//! A checkpoint's records to one partition are not atomic (the producer may die halfway), so
//! a restore takes only what precedes the partition's last marker; a key written after it (a
//! checkpoint cut short) gets its committed value (or a tombstone) written again, with a new
//! marker, before the partition's records are read.
//!
//! The topic should be compacted (`cleanup.policy=compact`; Sluice creates it so when it is
//! missing, with as many partitions as the source's topics).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::state::coverage::Coverage;
use crate::state::store::StoreError;

/// What one partition of a changelog holds.
#[derive(Debug, Default)]
pub struct Restored {
    /// Groups: (rule, group key, fingerprint, JSON).
    pub groups: Vec<(String, String, u64, Vec<u8>)>,
    /// Analytic partitions, the same way.
    pub parts: Vec<(String, String, u64, Vec<u8>)>,
    /// Kafka topic → the offsets of this partition the state holds.
    pub coverage: Vec<(String, Coverage)>,
    /// Records that repair the partition's log (keys written after its last marker: their
    /// committed value or a tombstone, then the marker again), to write before the partition
    /// is used.
    pub repair: Vec<Entry>,
}

/// One record to write: partition, key, value (`None`: a tombstone).
pub type Entry = (i32, Vec<u8>, Option<Vec<u8>>);

/// The changelog of one Kafka source.
pub struct Changelog {
    topic: String,
    config: ClientConfig,
    producer: FutureProducer,
}

/// The key of a group (`table` `g`) or analytic partition (`p`).
pub fn state_key(table: u8, store_key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(store_key.len() + 2);
    k.push(table);
    k.push(0);
    k.extend_from_slice(store_key.as_bytes());
    k
}

/// The key of a partition's marker.
pub const MARKER_KEY: &[u8] = b"c\0";

/// A marker's value: each topic's coverage.
pub fn marker_value(coverage: &[(&str, &Coverage)]) -> Vec<u8> {
    let m: serde_json::Map<String, serde_json::Value> = coverage.iter().map(|(t, c)| (t.to_string(), serde_json::to_value(c).unwrap_or_default())).collect();
    serde_json::to_vec(&m).unwrap_or_default()
}

/// A state value: the rule's fingerprint, then the JSON.
pub fn state_value(fingerprint: u64, json: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(json.len() + 8);
    v.extend_from_slice(&fingerprint.to_le_bytes());
    v.extend_from_slice(json);
    v
}

impl Changelog {
    /// The changelog `topic`, reached with `config` (the source's brokers and security
    /// properties).
    pub fn new(topic: String, config: ClientConfig) -> Result<Changelog, StoreError> {
        let mut p = config.clone();
        p.set("enable.idempotence", "true").set("acks", "all").set("linger.ms", "5").set("compression.type", "lz4").set("message.timeout.ms", "30000");
        let producer: FutureProducer = p.create().map_err(|e| err(&topic, e))?;
        Ok(Changelog { topic, config, producer })
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Creates the topic (compacted, `partitions` partitions) when it is missing; refuses one
    /// with fewer partitions than needed.
    pub fn ensure(&self, partitions: i32, timeout: Duration) -> Result<(), StoreError> {
        let have = self.partitions(timeout)?;
        if have == 0 {
            let admin: AdminClient<DefaultClientContext> = self.config.create().map_err(|e| err(&self.topic, e))?;
            let topic = NewTopic::new(&self.topic, partitions, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| err(&self.topic, e))?;
            let results = rt.block_on(admin.create_topics(&[topic], &AdminOptions::new().operation_timeout(Some(timeout)))).map_err(|e| err(&self.topic, e))?;
            for r in results {
                match r {
                    Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((_, e)) => return Err(err(&self.topic, e)),
                }
            }
            tracing::info!(topic = %self.topic, partitions, "changelog topic created");
            let deadline = Instant::now() + timeout;
            while self.partitions(timeout)? < partitions {
                if Instant::now() > deadline {
                    return Err(err(&self.topic, format!("the changelog topic has not got its {partitions} partitions after {timeout:?}")));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        } else if have < partitions {
            return Err(err(&self.topic, format!("the changelog topic has {have} partitions; the source's topics have {partitions}: give it as many")));
        }
        Ok(())
    }

    /// How many partitions the topic has (0: missing).
    fn partitions(&self, timeout: Duration) -> Result<i32, StoreError> {
        let c: BaseConsumer = self.config.create().map_err(|e| err(&self.topic, e))?;
        let m = c.fetch_metadata(Some(&self.topic), timeout).map_err(|e| err(&self.topic, e))?;
        Ok(m.topics().first().filter(|t| t.error().is_none()).map_or(0, |t| t.partitions().len() as i32))
    }

    /// [`write`](Self::write) from a thread outside the async runtime (a rebalance callback).
    pub fn write_blocking(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| err(&self.topic, e))?;
        rt.block_on(self.write(entries))
    }

    /// Writes `entries` (in order: per partition, a checkpoint's keys, then its marker) and
    /// waits until the brokers have them all (`acks=all`).
    pub async fn write(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let mut pending = Vec::with_capacity(entries.len());
        for (partition, key, value) in &entries {
            let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).partition(*partition).key(&key[..]);
            if let Some(v) = value {
                r = r.payload(&v[..]);
            }
            match self.producer.send_result(r) {
                Ok(f) => pending.push(f),
                Err((e, _)) => return Err(err(&self.topic, e)),
            }
        }
        for f in pending {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(err(&self.topic, e)),
                Err(_) => return Err(err(&self.topic, "the producer went away")),
            }
        }
        Ok(())
    }

    /// Reads partitions `partitions` from their start to their end (the latest record of each
    /// key wins; a tombstone removes it).
    pub fn read(&self, partitions: &[i32], timeout: Duration) -> Result<HashMap<i32, Restored>, StoreError> {
        let mut c = self.config.clone();
        c.set("enable.auto.commit", "false").set("enable.partition.eof", "false").set("auto.offset.reset", "earliest");
        if c.get("group.id").is_none() {
            c.set("group.id", format!("{}-restore", self.topic));
        }
        let consumer: BaseConsumer = c.create().map_err(|e| err(&self.topic, e))?;
        let mut ends = HashMap::new();
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            let (low, high) = consumer.fetch_watermarks(&self.topic, p, timeout).map_err(|e| err(&self.topic, e))?;
            if high > low {
                ends.insert(p, high);
                tpl.add_partition_offset(&self.topic, p, Offset::Offset(low)).map_err(|e| err(&self.topic, e))?;
            }
        }
        // Per partition: the values up to the last marker, those after it, the last marker.
        let mut logs: HashMap<i32, Log> = HashMap::new();
        if !ends.is_empty() {
            consumer.assign(&tpl).map_err(|e| err(&self.topic, e))?;
            let deadline = Instant::now() + timeout;
            while !ends.is_empty() {
                if Instant::now() > deadline {
                    return Err(err(&self.topic, format!("restoring partitions {partitions:?} took more than {timeout:?}")));
                }
                match consumer.poll(Duration::from_millis(200)) {
                    None => {}
                    Some(Err(e)) => tracing::debug!(topic = %self.topic, error = %e, "changelog read"),
                    Some(Ok(m)) => {
                        let p = m.partition();
                        if let Some(k) = m.key() {
                            let log = logs.entry(p).or_default();
                            if k == MARKER_KEY {
                                log.committed.extend(log.pending.drain());
                                log.marker = m.payload().map(<[u8]>::to_vec);
                            } else {
                                log.pending.insert(k.to_vec(), m.payload().map(<[u8]>::to_vec));
                            }
                        }
                        if ends.get(&p).is_some_and(|&end| m.offset() + 1 >= end) {
                            ends.remove(&p);
                        }
                    }
                }
            }
        }
        let mut out: HashMap<i32, Restored> = partitions.iter().map(|&p| (p, Restored::default())).collect();
        for (p, log) in logs {
            let r = out.entry(p).or_default();
            if !log.pending.is_empty() {
                for k in log.pending.keys() {
                    r.repair.push((p, k.clone(), log.committed.get(k).cloned().flatten()));
                }
                r.repair.push((p, MARKER_KEY.to_vec(), Some(log.marker.clone().unwrap_or_else(|| b"{}".to_vec()))));
                tracing::warn!(topic = %self.topic, partition = p, keys = log.pending.len(), "the changelog ends with a checkpoint cut short: its keys are written back to their committed values");
            }
            if let Some(m) = &log.marker {
                if let Ok(map) = serde_json::from_slice::<HashMap<String, Coverage>>(m) {
                    r.coverage = map.into_iter().collect();
                }
            }
            for (k, v) in log.committed {
                let Some(v) = v else { continue };
                let (table, rest) = match (k.first(), k.get(1), k.get(2..)) {
                    (Some(&t), Some(0), Some(rest)) => (t, String::from_utf8_lossy(rest).into_owned()),
                    _ => continue,
                };
                let (Some((rule, key)), Some(fp)) = (rest.split_once('\0'), v.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok())) else { continue };
                let row = (rule.to_string(), key.to_string(), u64::from_le_bytes(fp), v[8..].to_vec());
                match table {
                    b'g' => r.groups.push(row),
                    b'p' => r.parts.push(row),
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

/// One partition's log as read: values up to the last marker, values after it, the marker.
#[derive(Default)]
struct Log {
    committed: HashMap<Vec<u8>, Option<Vec<u8>>>,
    pending: HashMap<Vec<u8>, Option<Vec<u8>>>,
    marker: Option<Vec<u8>>,
}

fn err(topic: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Store { path: format!("kafka changelog {topic}").into(), source: e.to_string().into() }
}
