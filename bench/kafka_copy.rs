//! Helper of `bench/kafka_e2e.sh`, and its baseline: what the broker allows with no rules.
//!
//! - `produce BROKERS TOPIC COUNT`: COUNT property posts of about 300 bytes, topic
//!   `/sys/{pk}/{dn}/thing/event/property/post` in the `iot-topic` header (seed 004's format).
//! - `copy BROKERS FROM TO GROUP COUNT`: the plain consume-and-produce copy: a consumer in a
//!   group and a producer with the settings of Sluice's sink and its defaults
//!   (`KafkaSinkConfig::client_config`), headers kept, offsets committed every second; stops
//!   after COUNT records are delivered. With
//!   `COPY_EXTRA_HEADERS` set, each copy also gets the two more headers Sluice's benchmark
//!   outputs carry (`sluice-rule`, and the rule's own `band`).
//! - `wait BROKERS TOPIC COUNT TIMEOUT_S`: waits until TOPIC holds COUNT records (sum of its
//!   end offsets) and prints the seconds it took, then the seconds since TOPIC first held a
//!   record (the steady part: without the start, the group join and the first fetch).
//! - `create BROKERS TOPIC:PARTITIONS…`: waits for the broker, then creates the topics.
//! - `mock TOPIC:PARTITIONS…`: hosts librdkafka's mock cluster (one broker, in this process)
//!   with those topics, prints its bootstrap servers on a line, and serves until stdin closes:
//!   a broker that is not the bottleneck (it keeps records in memory).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use sluice::sink::kafka::config::KafkaSinkConfig;

/// The allocator of the `sluice` binary (src/main.rs), so the figures are what ships.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["produce", brokers, topic, count] => produce(brokers, topic, count.parse().expect("count")),
        ["copy", brokers, from, to, group, count] => copy(brokers, from, to, group, count.parse().expect("count")),
        ["wait", brokers, topic, count, timeout] => wait(brokers, topic, count.parse().expect("count"), timeout.parse().expect("timeout")),
        ["create", brokers, topics @ ..] => create(brokers, topics),
        ["mock", topics @ ..] => mock(topics),
        _ => {
            eprintln!(
                "usage: kafka_copy produce BROKERS TOPIC COUNT | copy BROKERS FROM TO GROUP COUNT | wait BROKERS TOPIC COUNT TIMEOUT_S | create BROKERS TOPIC:PARTITIONS… | mock TOPIC:PARTITIONS…"
            );
            std::process::exit(2);
        }
    }
}

/// Counts deliveries and failures.
struct Count {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Count {}
impl ProducerContext for Count {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn producer(brokers: &str) -> (ThreadedProducer<Count>, Arc<AtomicU64>, Arc<AtomicU64>) {
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Exactly the producer settings of Sluice's Kafka sink with its defaults.
    let cfg = KafkaSinkConfig { brokers: brokers.to_string(), ..KafkaSinkConfig::default() };
    let p = cfg.client_config().create_with_context(Count { ok: ok.clone(), failed: failed.clone() }).expect("producer");
    (p, ok, failed)
}

fn send<'a>(p: &ThreadedProducer<Count>, mut rec: BaseRecord<'a, [u8], [u8]>) {
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((e, back)) => {
                assert!(matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)), "produce: {e}");
                rec = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn produce(brokers: &str, topic: &str, count: u64) {
    let (p, ok, failed) = producer(brokers);
    // KEYED=1: each record keyed by its device name, as real upstreams write them (the records
    // of one device then share a partition); else no key (the producer spreads them).
    let keyed = std::env::var_os("KEYED").is_some_and(|v| v == "1");
    let started = Instant::now();
    for i in 0..count {
        let (pk, dn) = (format!("a1Bench{:04}", i % 10), format!("device{:05}", i % 10_000));
        let iot = format!("/sys/{pk}/{dn}/thing/event/property/post");
        let t = 1_700_000_000_000_u64 + i;
        let value = format!(
            r#"{{"iotId":"4z819VQHk6VSLmmBJfrf{i:010}","productKey":"{pk}","deviceName":"{dn}","gmtCreate":{t},"deviceType":"Ammeter","items":{{"temp":{{"value":{},"time":{t}}},"Power":{{"value":"on","time":{t}}},"Position":{{"time":{t},"value":{{"latitude":39.9,"longitude":116.38}}}}}}}}"#,
            i % 100
        );
        let headers = OwnedHeaders::new().insert(Header { key: "iot-topic", value: Some(iot.as_bytes()) });
        let rec = BaseRecord::to(topic).payload(value.as_bytes()).headers(headers);
        send(&p, if keyed { rec.key(dn.as_bytes()) } else { rec });
    }
    p.flush(Duration::from_secs(600)).expect("flush");
    let s = started.elapsed().as_secs_f64();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "some records were not delivered");
    println!("produced {} {} records in {s:.1}s ({:.0} msg/s)", ok.load(Ordering::Relaxed), if keyed { "device-keyed" } else { "unkeyed" }, count as f64 / s);
}

fn copy(brokers: &str, from: &str, to: &str, group: &str, count: u64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create()
        .expect("consumer");
    consumer.subscribe(&[from]).expect("subscribe");
    let (p, ok, failed) = producer(brokers);
    let extra_headers = std::env::var_os("COPY_EXTRA_HEADERS").is_some();
    let started = Instant::now();
    let mut consumed = 0u64;
    let mut next: std::collections::HashMap<i32, i64> = Default::default();
    let mut last_commit = Instant::now();
    let commit = |next: &std::collections::HashMap<i32, i64>, mode: CommitMode| {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in next {
            let _ = tpl.add_partition_offset(from, *p, Offset::Offset(*o));
        }
        if tpl.count() > 0 {
            let _ = consumer.commit(&tpl, mode);
        }
    };
    while ok.load(Ordering::Relaxed) < count {
        if consumed < count {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let mut headers = OwnedHeaders::new();
                if let Some(hs) = m.headers() {
                    for h in hs.iter() {
                        headers = headers.insert(Header { key: h.key, value: h.value });
                    }
                }
                if extra_headers {
                    // As many headers as Sluice's outputs in the benchmark carry.
                    headers = headers.insert(Header { key: "sluice-rule", value: Some("copy") }).insert(Header { key: "band", value: Some("0") });
                }
                let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(to).headers(headers);
                if let Some(v) = m.payload() {
                    rec = rec.payload(v);
                }
                if let Some(k) = m.key() {
                    rec = rec.key(k);
                }
                send(&p, rec);
                next.insert(m.partition(), m.offset() + 1);
                consumed += 1;
            }
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Commit every second, like Sluice's default.
        if last_commit.elapsed() > Duration::from_secs(1) {
            commit(&next, CommitMode::Async);
            last_commit = Instant::now();
        }
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    commit(&next, CommitMode::Sync);
    let s = started.elapsed().as_secs_f64();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "some records were not delivered");
    println!("copied {} records in {s:.1}s ({:.0} msg/s), {:.1} CPU-s", ok.load(Ordering::Relaxed), count as f64 / s, cpu_seconds());
}

fn end_offsets(c: &BaseConsumer, topic: &str) -> i64 {
    let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(5)) else { return 0 };
    let n = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    (0..n).filter_map(|p| c.fetch_watermarks(topic, p, Duration::from_secs(5)).ok()).map(|(_, hi)| hi).sum()
}

fn wait(brokers: &str, topic: &str, count: i64, timeout_s: u64) {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("client");
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    loop {
        let n = end_offsets(&c, topic);
        if n > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if n >= count {
            // The second figure leaves out the start (group join, first fetch).
            let steady = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            println!("{:.3} {steady:.3}", started.elapsed().as_secs_f64());
            return;
        }
        if started.elapsed() > Duration::from_secs(timeout_s) {
            eprintln!("timeout: {topic} holds {n} of {count} records");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn create(brokers: &str, topics: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("client");
    let started = Instant::now();
    while c.fetch_metadata(None, Duration::from_secs(1)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "broker {brokers} not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin");
    let specs: Vec<(String, i32)> = topics
        .iter()
        .map(|t| {
            let (name, n) = t.split_once(':').expect("TOPIC:PARTITIONS");
            (name.to_string(), n.parse().expect("partitions"))
        })
        .collect();
    let new: Vec<NewTopic<'_>> = specs.iter().map(|(t, n)| NewTopic::new(t, *n, TopicReplication::Fixed(1))).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    for r in rt.block_on(admin.create_topics(&new, &AdminOptions::new())).expect("create topics") {
        if let Err((t, e)) = r {
            panic!("cannot create {t}: {e}");
        }
    }
    for (t, n) in &specs {
        while c.fetch_metadata(Some(t), Duration::from_secs(2)).ok().and_then(|m| m.topics().first().map(|t| t.partitions().len())).unwrap_or(0) != *n as usize {
            assert!(started.elapsed() < Duration::from_secs(60), "topic {t} not ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn mock(topics: &[&str]) {
    use std::io::{Read, Write};
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    for t in topics {
        let (name, n) = t.split_once(':').expect("TOPIC:PARTITIONS");
        cluster.create_topic(name, n.parse().expect("partitions"), 1).expect("create topic");
    }
    println!("{}", cluster.bootstrap_servers());
    std::io::stdout().flush().expect("stdout");
    // Serve until whoever started us closes our stdin (or kills us).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// CPU seconds (user + system) this process used, from /proc (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: state is field 3, utime 14, stime 15 (1-based) → 11, 12 here.
    (ticks(11) + ticks(12)) / 100.0
}
