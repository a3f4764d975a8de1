//! A small Kafka client for trying Sluice locally (`deploy/local-stack.sh` uses it), so that no
//! other Kafka tool has to be installed:
//!
//! - `create-topics --brokers B TOPIC[:PARTITIONS]…`: waits for the broker, creates the topics
//!   (existing ones are fine) and waits until the broker's metadata shows them.
//! - `tail --brokers B [--count N] [--timeout-ms T] [--match TEXT] [TOPIC|^REGEX…]`: prints
//!   every record of the topics (default: every topic not starting with `__`), from the
//!   beginning, as one JSON line `{"topic", "partition", "offset", "key", "headers", "value"}`
//!   (`value` is the JSON value when the record is JSON, else a string); with `--match`, only
//!   the lines containing TEXT. Runs until Ctrl-C; with `--count` it stops after N records;
//!   with `--timeout-ms` it stops after T ms, exit 1 if `--count` records were not seen by then.
//! - `send --brokers B --topic T [FILE|-]`: produces JSON lines in the format of
//!   `examples/quickstart.jsonl` (`{"topic": <IoT topic>, "payload": <JSON>}` or
//!   `{"topic", "payload_base64"}`, optional `"key"`) to Kafka topic T, the IoT topic in the
//!   `iot-topic` header (what Sluice's Kafka source reads by default). Lines that are not such
//!   messages are reported and skipped.
//!
//! `cargo run --release --example kafka_tool -- tail --brokers 127.0.0.1:9092 iot-integration-event`

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::{Parser, Subcommand};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::value::RawValue;
use sluice_testkit::wait_for_broker;

#[derive(Parser)]
#[command(about = "Create topics, read and write records on a Kafka(-compatible) broker")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Creates topics (TOPIC or TOPIC:PARTITIONS); topics that already exist are fine.
    CreateTopics {
        /// bootstrap.servers, host:port[,host:port…]
        #[arg(long)]
        brokers: String,
        /// Partitions of topics given without `:PARTITIONS`.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// How long to wait for the broker, in ms.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        /// The topics.
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Prints the records of topics as JSON lines, from the beginning.
    Tail {
        /// bootstrap.servers, host:port[,host:port…]
        #[arg(long)]
        brokers: String,
        /// Stop after this many records.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many ms (exit 1 if --count records were not seen by then).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Print (and count) only the records whose JSON line contains this text.
        #[arg(long = "match", value_name = "TEXT")]
        matching: Option<String>,
        /// Topic names, or `^regex` patterns over the broker's topics (default: every topic not
        /// starting with `__`).
        topics: Vec<String>,
    },
    /// Produces JSON lines `{"topic", "payload" | "payload_base64", "key"?}` with the IoT topic
    /// in the `iot-topic` header.
    Send {
        /// bootstrap.servers, host:port[,host:port…]
        #[arg(long)]
        brokers: String,
        /// The Kafka topic to write to.
        #[arg(long)]
        topic: String,
        /// The header carrying the IoT topic.
        #[arg(long, default_value = "iot-topic")]
        header: String,
        /// JSON-lines file, or `-` for standard input.
        #[arg(default_value = "-")]
        file: String,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::CreateTopics { brokers, partitions, timeout_ms, topics } => create_topics(&brokers, partitions, Duration::from_millis(timeout_ms), &topics),
        Cmd::Tail { brokers, count, timeout_ms, matching, topics } => tail(&brokers, count, timeout_ms.map(Duration::from_millis), matching.as_deref(), &topics),
        Cmd::Send { brokers, topic, header, file } => send(&brokers, &topic, &header, &file),
    };
    if let Err(e) = result {
        eprintln!("kafka_tool: {e}");
        std::process::exit(1);
    }
}

type Result<T> = std::result::Result<T, String>;

fn create_topics(brokers: &str, partitions: i32, timeout: Duration, topics: &[String]) -> Result<()> {
    let mut wanted: Vec<(&str, i32)> = Vec::new();
    for t in topics {
        let (name, n) = match t.rsplit_once(':') {
            Some((name, n)) => (name, n.parse().map_err(|_| format!("`{t}`: partitions must be a number"))?),
            None => (t.as_str(), partitions),
        };
        // A name given twice is created once.
        if !wanted.iter().any(|(w, _)| *w == name) {
            wanted.push((name, n));
        }
    }
    wait_for_broker(brokers, timeout)?;
    let created = sluice_testkit::create_topics(brokers, &wanted, timeout)?;
    eprintln!("kafka_tool: {} topic(s) ready ({created} created)", wanted.len());
    Ok(())
}

/// The topics of `md` that the selectors name (every topic not starting with `__` when there
/// is none), with their partition counts.
fn select_topics(md: &Metadata, selectors: &[String]) -> Result<Vec<(String, usize)>> {
    let all: Vec<(String, usize)> = md.topics().iter().map(|t| (t.name().to_string(), t.partitions().len())).collect();
    if selectors.is_empty() {
        return Ok(all.into_iter().filter(|(t, _)| !t.starts_with("__")).collect());
    }
    let mut picked: Vec<(String, usize)> = Vec::new();
    let mut seen = HashSet::new();
    for s in selectors {
        if let Some(pattern) = s.strip_prefix('^') {
            let re = regex::Regex::new(&format!("^{pattern}")).map_err(|e| format!("pattern `{s}`: {e}"))?;
            for (t, n) in all.iter().filter(|(t, _)| re.is_match(t)) {
                if seen.insert(t.clone()) {
                    picked.push((t.clone(), *n));
                }
            }
        } else {
            let (t, n) = all.iter().find(|(t, _)| t == s).ok_or_else(|| format!("no topic `{s}` on the broker"))?;
            if seen.insert(t.clone()) {
                picked.push((t.clone(), *n));
            }
        }
    }
    Ok(picked)
}

fn tail(brokers: &str, count: Option<usize>, timeout: Option<Duration>, matching: Option<&str>, selectors: &[String]) -> Result<()> {
    let started = Instant::now();
    let md = wait_for_broker(brokers, timeout.unwrap_or(Duration::from_secs(30)))?;
    let topics = select_topics(&md, selectors)?;
    if topics.is_empty() {
        return Err("no topic to read".into());
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-kafka-tool")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .set("log_level", "3")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for (t, n) in &topics {
        for p in 0..*n as i32 {
            tpl.add_partition_offset(t, p, Offset::Beginning).map_err(|e| format!("{t}/{p}: {e}"))?;
        }
    }
    consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    let stdout = std::io::stdout();
    let mut seen = 0;
    loop {
        if count.is_some_and(|n| seen >= n) {
            return Ok(());
        }
        if let Some(t) = timeout {
            if started.elapsed() >= t {
                return match count {
                    Some(n) => Err(format!("{seen} of {n} record(s) after {t:?}")),
                    None => Ok(()),
                };
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => eprintln!("kafka_tool: {e}"),
            Some(Ok(m)) => {
                let line = record_line(&m);
                if matching.is_some_and(|t| !line.contains(t)) {
                    continue;
                }
                let mut out = stdout.lock();
                // A closed pipe (`| head`) ends the tail.
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return Ok(());
                }
                seen += 1;
            }
        }
    }
}

/// `{"topic", "partition", "offset", "key", "headers", "value"}`.
fn record_line(m: &rdkafka::message::BorrowedMessage<'_>) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let headers: serde_json::Map<String, serde_json::Value> =
        m.headers().map(|hs| hs.iter().map(|h| (h.key.to_string(), h.value.map_or(serde_json::Value::Null, |v| text(v).into()))).collect()).unwrap_or_default();
    let payload = m.payload().unwrap_or_default();
    let value: Box<RawValue> = match std::str::from_utf8(payload).ok().and_then(|s| serde_json::from_str::<Box<RawValue>>(s).ok()) {
        Some(json) => json,
        None => serde_json::value::to_raw_value(&text(payload)).expect("a string is JSON"),
    };
    serde_json::json!({
        "topic": m.topic(),
        "partition": m.partition(),
        "offset": m.offset(),
        "key": m.key().map(text),
        "headers": headers,
        "value": value,
    })
    .to_string()
}

/// Waits for the broker's acknowledgement of each record (by line number).
fn wait_delivered(rt: &tokio::runtime::Runtime, file: &str, pending: Vec<(usize, rdkafka::producer::DeliveryFuture)>) -> Result<()> {
    for (line, d) in pending {
        match rt.block_on(d) {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(format!("{file}:{line}: not delivered: {e}")),
            Err(_) => return Err(format!("{file}:{line}: delivery cancelled")),
        }
    }
    Ok(())
}

/// One line of a quickstart-format file.
#[derive(serde::Deserialize)]
struct Line {
    topic: String,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    payload_base64: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

fn send(brokers: &str, topic: &str, header: &str, file: &str) -> Result<()> {
    let reader: Box<dyn BufRead> =
        if file == "-" { Box::new(std::io::BufReader::new(std::io::stdin())) } else { Box::new(std::io::BufReader::new(std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?)) };
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "5").set("message.timeout.ms", "30000").create().map_err(|e| format!("producer: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
    let (mut sent, mut skipped) = (0, 0);
    let mut pending = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("{file}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: std::result::Result<(Line, Vec<u8>), String> = serde_json::from_str::<Line>(&line).map_err(|e| e.to_string()).and_then(|l| {
            let bytes = match (&l.payload, &l.payload_base64) {
                (Some(p), None) => p.get().as_bytes().to_vec(),
                (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).map_err(|e| format!("payload_base64: {e}"))?,
                _ => return Err("needs exactly one of `payload` (JSON) and `payload_base64`".into()),
            };
            Ok((l, bytes))
        });
        let (l, bytes) = match parsed {
            Ok(p) => p,
            Err(e) => {
                eprintln!("kafka_tool: {file}:{}: skipped: {e}", i + 1);
                skipped += 1;
                continue;
            }
        };
        let headers = OwnedHeaders::new().insert(Header { key: header, value: Some(l.topic.as_bytes()) });
        let mut rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).payload(&bytes[..]).headers(headers);
        if let Some(k) = &l.key {
            rec = rec.key(k.as_str());
        }
        let delivery = producer.send_result(rec).map_err(|(e, _)| format!("{file}:{}: {e}", i + 1))?;
        pending.push((i + 1, delivery));
        sent += 1;
        // Bounded: well below librdkafka's queue (100,000 messages by default).
        if pending.len() >= 10_000 {
            wait_delivered(&rt, file, std::mem::take(&mut pending))?;
        }
    }
    wait_delivered(&rt, file, pending)?;
    eprintln!("kafka_tool: sent {sent} record(s) to {topic}{}", if skipped > 0 { format!(", skipped {skipped} line(s)") } else { String::new() });
    Ok(())
}
