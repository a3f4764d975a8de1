//! The consumer loop: polls the consumer on a blocking thread (so it stays in its group),
//! turns records into envelopes, sends them on, and does what the [`Intake`] state machine
//! decides (pause, resume, store offsets); at shutdown, lets the pipeline drain and commits
//! what was delivered.
//!
//! [`Intake`]: crate::source::kafka::intake::Intake

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message as _;
use tokio::sync::mpsc;

use crate::error::SourceError;
use crate::flow::{Ack, Delivery, Envelope, PartitionState};
use crate::kafka::client::{is_connection_error, Client, Context, Role};
use crate::message::{KafkaPos, Message, Metadata, Shard};
use crate::shutdown::Shutdown;
use crate::source::kafka::config::{IotTopicFrom, KafkaSourceConfig};
use crate::source::kafka::consumer::{Consumption, KafkaConsumer};
use crate::source::offsets::TopicPartition;
use crate::source::SourceReport;
use crate::telemetry::metrics;

/// How long one wait for room in the channel lasts (the consumer is polled in between).
const WAIT_SLICE: Duration = Duration::from_millis(100);
/// Records taken from the consumer at most before they are sent on together.
const BURST: usize = 256;

/// The source's metric handles, resolved once.
struct Meters {
    in_flight: IntGauge,
    paused: IntGauge,
    received_records: IntCounter,
    received_bytes: IntCounter,
    decode_errors: IntCounter,
}

impl Meters {
    fn new(name: &str) -> Meters {
        Meters {
            in_flight: metrics::KAFKA_SOURCE_IN_FLIGHT.with_label_values(&[name]),
            paused: metrics::KAFKA_SOURCE_PAUSED.with_label_values(&[name]),
            received_records: metrics::SOURCE_RECEIVED_RECORDS.with_label_values(&[name]),
            received_bytes: metrics::SOURCE_RECEIVED_BYTES.with_label_values(&[name]),
            decode_errors: metrics::SOURCE_DECODE_ERRORS.with_label_values(&[name]),
        }
    }
}

/// Runs the source `name` until shutdown, the channel closes, or a record's delivery fails.
pub fn consume(
    cfg: &KafkaSourceConfig,
    name: &Arc<str>,
    shutdown_timeout: Duration,
    state: Option<Arc<dyn PartitionState>>,
    tx: mpsc::Sender<Envelope>,
    shutdown: &Shutdown,
    rt: &tokio::runtime::Handle,
) -> Result<SourceReport, SourceError> {
    let err = |message: String| SourceError::Other { source_name: name.to_string(), message };
    let config = cfg.client_config();
    let client = Client::new(Role::Consumer(name.clone()), format!("source:{name}"));
    client.start(&config);
    let c = Arc::new(Consumption::new(name.clone(), cfg.max_in_flight, Duration::from_millis(cfg.revoke_timeout_ms)).with_state(state));
    let consumer: KafkaConsumer = config.create_with_context(Context { client, state: c.clone() }).map_err(|e| err(format!("cannot create the consumer: {e}")))?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| err(format!("cannot subscribe to {topics:?}: {e}")))?;
    tracing::info!(source = %name, topics = ?topics, group = %cfg.group_id, "kafka source subscribed");

    let meters = Meters::new(name);
    let mut report = SourceReport::default();
    let failure = pump(cfg, &consumer, &c, &meters, &mut report, &tx, shutdown, rt);

    // Shutdown: stop taking records, let the pipeline drain, commit what was delivered.
    let downstream_gone = tx.is_closed();
    drop(tx);
    let held = c.lock().take_held();
    let held_n = held.len();
    drop(held); // outside the lock: their acks (dropped) take it
    if failure.is_none() && !downstream_gone {
        let deadline = Instant::now() + shutdown_timeout.mul_f64(0.8);
        let left = c.wait_in_flight(None, held_n, deadline);
        if left > held_n {
            tracing::warn!(source = %name, in_flight = left - held_n, "shutdown timeout: committing what was delivered; the rest is read again on restart");
        }
    }
    // The last commit is retried until the shutdown deadline: after a broker outage the
    // group coordinator may still be being looked up.
    let commit_deadline = Instant::now() + shutdown_timeout.mul_f64(0.15);
    while !c.commit_now(&consumer, None) && Instant::now() < commit_deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    let abandoned = c.lock().in_flight();
    if abandoned > 0 {
        metrics::KAFKA_ABANDONED.with_label_values(&[&**name]).inc_by(abandoned as u64);
    }
    meters.in_flight.set(0);
    meters.paused.set(0);
    consumer.context().client.stop();
    drop(consumer); // leaves the group (the revoke callback commits nothing new)
    tracing::info!(source = %name, messages = report.messages, rejected = report.rejected, abandoned, "kafka source stopped");
    match failure {
        Some(f) => Err(err(f)),
        None => Ok(report),
    }
}

/// The loop proper; returns why it stopped on a failed delivery (`None`: shutdown or the
/// channel closed).
#[allow(clippy::too_many_arguments)]
fn pump(
    cfg: &KafkaSourceConfig,
    consumer: &KafkaConsumer,
    c: &Arc<Consumption>,
    meters: &Meters,
    report: &mut SourceReport,
    tx: &mpsc::Sender<Envelope>,
    shutdown: &Shutdown,
    rt: &tokio::runtime::Handle,
) -> Option<String> {
    let name = &c.name;
    let mut burst: Vec<(TopicPartition, Envelope)> = Vec::with_capacity(BURST);
    // The last record's topic name, shared by the records of that topic.
    let mut topic: Option<Arc<str>> = None;
    // The last record's partition and its state shard.
    let mut shard: (i32, Shard) = (-1, Shard::LOCAL);
    loop {
        if shutdown.is_triggered() || tx.is_closed() {
            return None;
        }
        let (in_flight, store) = {
            let mut st = c.lock();
            if let Some((tp, offset)) = st.failed() {
                return Some(format!("the outputs of {}[{}] offset {offset} could not be delivered; stopping so that a restart reads it again from the last commit", tp.0, tp.1));
            }
            if let Some(reason) = c.fatal() {
                return Some(reason);
            }
            (st.in_flight(), st.store_due(Instant::now()))
        };
        if let Some(offsets) = store {
            c.store(consumer, &offsets);
        }
        meters.in_flight.set(in_flight as i64);

        // Send on what is held, in order: waiting a little for room for the first, then as many
        // as the channel has room for. (Held records already count as in flight: they must go
        // on even when no more may be taken in.)
        if c.lock().holding() {
            match rt.block_on(tokio::time::timeout(WAIT_SLICE, tx.reserve())) {
                Ok(Ok(permit)) => {
                    let mut st = c.lock();
                    if let Some((_, env)) = st.next_held() {
                        permit.send(env);
                        st.sent();
                    }
                    while st.holding() {
                        let Ok(permit) = tx.try_reserve() else { break };
                        if let Some((_, env)) = st.next_held() {
                            permit.send(env);
                        }
                    }
                }
                Ok(Err(_)) => return None,
                Err(_) => c.lock().stalled(Instant::now()),
            }
        }

        // Backpressure: pause or resume as the state machine decides.
        let (toggle, was) = {
            let mut st = c.lock();
            (st.backpressure(Instant::now(), in_flight), st.paused())
        };
        if let Some(pause) = toggle {
            let now = set_paused(consumer, name, &meters.paused, was, pause);
            c.lock().set_paused(now);
        }
        let (wait, holding) = {
            let st = c.lock();
            (st.must_wait(in_flight), st.holding())
        };
        if wait {
            // Wait a little for acks rather than take more records.
            c.wait_in_flight(None, cfg.max_in_flight - 1, Instant::now() + WAIT_SLICE);
            continue;
        }

        // A burst: what librdkafka already holds is taken without waiting (up to `BURST`, and
        // not past `max_in_flight`), then sent on together, so the next stage wakes once per
        // burst rather than once per record.
        let room = BURST.min(cfg.max_in_flight.saturating_sub(in_flight)).max(1);
        let mut timeout = if holding { Duration::ZERO } else { WAIT_SLICE };
        while burst.len() < room {
            match consumer.poll(timeout) {
                None => break,
                Some(Err(e)) => {
                    metrics::KAFKA_CONSUMER_ERRORS.with_label_values(&[&**name]).inc();
                    if is_connection_error(&e) {
                        tracing::debug!(source = %name, error = %e, "kafka consumer error");
                    } else {
                        tracing::warn!(source = %name, error = %e, "kafka consumer error");
                    }
                    break;
                }
                Some(Ok(m)) => {
                    timeout = Duration::ZERO;
                    let shared = match &topic {
                        Some(t) if **t == *m.topic() => t.clone(),
                        _ => topic.insert(Arc::from(m.topic())).clone(),
                    };
                    let tp: TopicPartition = (shared, m.partition());
                    let offset = m.offset();
                    let Some(generation) = c.lock().track(&tp, offset) else {
                        tracing::debug!(source = %name, topic = %tp.0, partition = tp.1, offset, "record below the tracked offsets skipped");
                        continue;
                    };
                    if c.covered(&tp, offset) {
                        // The restored state already holds it: its outputs were delivered.
                        c.ack(&tp, generation, offset, &Delivery::Delivered);
                        metrics::STATE_COVERED_SKIPPED.with_label_values(&[&**name]).inc();
                        continue;
                    }
                    let ack = {
                        let c = c.clone();
                        let tp = tp.clone();
                        Ack::new(move |d: Delivery| c.ack(&tp, generation, offset, &d))
                    };
                    if shard.0 != tp.1 {
                        shard = (tp.1, Shard::of(name, tp.1));
                    }
                    let env = envelope(&cfg.iot_topic, name, &m, &tp, shard.1, ack, meters, report);
                    burst.push((tp, env));
                }
            }
        }
        if burst.is_empty() {
            continue;
        }
        // Behind what is held, in order; else straight on while there is room.
        let mut closed = Vec::new();
        {
            let mut st = c.lock();
            let mut records = burst.drain(..);
            for (tp, env) in records.by_ref() {
                if st.holding() {
                    st.hold(tp, env);
                    continue;
                }
                match tx.try_send(env) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(env)) => st.hold(tp, env),
                    Err(mpsc::error::TrySendError::Closed(env)) => {
                        closed.push(env);
                        break;
                    }
                }
            }
            closed.extend(records.map(|(_, env)| env));
        }
        if !closed.is_empty() {
            // Dropped outside the lock: their acks take it.
            drop(closed);
            return None;
        }
    }
}

/// Pauses or resumes the whole current assignment; returns the new state (`was` if that
/// failed).
fn set_paused(consumer: &KafkaConsumer, name: &str, gauge: &IntGauge, was: bool, pause: bool) -> bool {
    let assignment = match consumer.assignment() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(source = %name, error = %e, "cannot read the assignment");
            return was;
        }
    };
    let r = if pause { consumer.pause(&assignment) } else { consumer.resume(&assignment) };
    match r {
        Ok(()) => {
            if pause && !was {
                metrics::KAFKA_SOURCE_PAUSES.with_label_values(&[name]).inc();
                tracing::info!(source = %name, "pipeline is not keeping up: consumption paused");
            } else if was && !pause {
                tracing::info!(source = %name, "consumption resumed");
            }
            gauge.set(i64::from(pause));
            pause
        }
        Err(e) => {
            tracing::warn!(source = %name, error = %e, "cannot pause/resume partitions");
            was
        }
    }
}

/// The envelope of a record: a message, or a rejected input when its IoT topic is missing.
#[allow(clippy::too_many_arguments)]
fn envelope(from: &IotTopicFrom, name: &Arc<str>, m: &BorrowedMessage<'_>, tp: &TopicPartition, shard: Shard, ack: Ack, meters: &Meters, report: &mut SourceReport) -> Envelope {
    let offset = m.offset();
    let received_ms = m.timestamp().to_millis().unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let kafka = Some(KafkaPos { topic: tp.0.clone(), partition: tp.1, offset });
    let meta = Metadata { source: name.clone(), received_ms, id: offset as u64, kafka, shard, ..Metadata::default() };
    let payload = bytes::Bytes::copy_from_slice(m.payload().unwrap_or_default());
    meters.received_records.inc();
    meters.received_bytes.inc_by(payload.len() as u64);
    match iot_topic(from, m.key(), |name| header(m, name)) {
        Ok(topic) => {
            report.messages += 1;
            Envelope::new(Message { topic, payload, meta }, ack)
        }
        Err(reason) => {
            report.rejected += 1;
            meters.decode_errors.inc();
            let reason = format!("{}[{}] offset {offset}: {reason}", tp.0, tp.1);
            tracing::warn!(source = %name, %reason, "rejected record");
            Envelope::rejected(Message { topic: String::new(), payload, meta }, ack, reason)
        }
    }
}

/// Reads the IoT topic of a record from its key or a header (`header` finds one by name).
fn iot_topic<'m>(from: &IotTopicFrom, key: Option<&'m [u8]>, header: impl Fn(&str) -> Option<&'m [u8]>) -> Result<String, String> {
    let text = |bytes: Option<&[u8]>, what: &str| -> Result<String, String> {
        match bytes {
            None => Err(format!("record has no {what}")),
            Some(b) => match std::str::from_utf8(b) {
                Ok("") => Err(format!("record's {what} is empty")),
                Ok(s) => Ok(s.to_string()),
                Err(_) => Err(format!("record's {what} is not UTF-8")),
            },
        }
    };
    match from {
        IotTopicFrom::Header { name } => text(header(name), &format!("`{name}` header (the IoT topic)")),
        IotTopicFrom::Key => text(key, "key (the IoT topic)"),
        IotTopicFrom::Fixed { topic } => Ok(topic.clone()),
    }
}

/// The value of a record's first header named `name` (a header without a value reads as empty).
fn header<'m>(m: &'m BorrowedMessage<'_>, name: &str) -> Option<&'m [u8]> {
    m.headers().and_then(|hs| hs.iter().find(|h| h.key == name).map(|h| h.value.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iot_topic_from_header_key_or_fixed() {
        let headers = [("other", &b"x"[..]), ("iot-topic", &b"/sys/pk/dn/thing/lifecycle"[..]), ("empty", &b""[..]), ("bad", &[0xff, 0xfe][..])];
        let find = |name: &str| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let from_header = |name: &str| IotTopicFrom::Header { name: name.into() };
        assert_eq!(iot_topic(&from_header("iot-topic"), None, find).unwrap(), "/sys/pk/dn/thing/lifecycle");
        assert_eq!(iot_topic(&from_header("missing"), None, find).unwrap_err(), "record has no `missing` header (the IoT topic)");
        assert_eq!(iot_topic(&from_header("empty"), None, find).unwrap_err(), "record's `empty` header (the IoT topic) is empty");
        assert_eq!(iot_topic(&from_header("bad"), None, find).unwrap_err(), "record's `bad` header (the IoT topic) is not UTF-8");
        assert_eq!(iot_topic(&IotTopicFrom::Key, Some(b"/a/b"), find).unwrap(), "/a/b");
        assert_eq!(iot_topic(&IotTopicFrom::Key, None, find).unwrap_err(), "record has no key (the IoT topic)");
        assert_eq!(iot_topic(&IotTopicFrom::Fixed { topic: "/f".into() }, None, find).unwrap(), "/f");
    }
}
