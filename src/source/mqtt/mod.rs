//! The MQTT integration channel (issue 4, seeds 000/001/003): third-party systems publish
//! historical and offline data to a dedicated broker; Sluice subscribes (QoS 1) to
//! `sys/+/integration/+/post` and `sys/+/integration/up_raw`, optionally as a shared
//! subscription `$share/<group>/…` so several instances split the load.
//!
//! For each request:
//!
//! 1. `up_raw`: the product's decoder script (`<decoders_dir>/<productKey>.js`, see
//!    [`crate::source::decoder`]) turns the bytes into a JSON request whose `method` names the
//!    kind; JSON topics: the payload is parsed. Failures are answered right away (1270 decoder
//!    failed, 1203 invalid request, 1413 too large).
//! 2. The [`Validator`] judges each `params` entry.
//! 3. A message with only the accepted entries (same `id`, `version`, `method`) goes to the
//!    rules, on the request topic (decoded `up_raw` requests: on the JSON topic of their kind,
//!    `sys/{pk}/integration/{measurepoint|attributes|event}/post`). When its outputs are
//!    delivered, the reply is published on `<request topic>_reply` and then the MQTT publish is
//!    acknowledged (manual acks). If nothing was accepted, the reply goes out at once.
//!
//! At-least-once: the PUBACK of a request is sent only after its reply, which is sent only
//! after its outputs are durably delivered. With a persistent session (`clean_session = false`
//! and a fixed client id), a request that was in flight when Sluice died is delivered again by
//! the broker when Sluice reconnects. When the sink reports a failure, the reply is code 500
//! (retry later) and the publish *is* acknowledged: the publisher is told to retry, and an
//! unacknowledged publish would hold one of the broker's in-flight slots until the next
//! reconnect only to fail again.
//!
//! The broker's own count of the messages it dropped (a session's queue full: Mosquitto's
//! `max_queued_messages`) is watched by [`broker_drops`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeFilter, SubscribeReasonCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::MqttSourceConfig;
use crate::error::SourceError;
use crate::flow::{Ack, BoxFuture, Delivery, Envelope};
use crate::integration::channel_log::{self, ErrorRecord};
use crate::integration::{codes, RequestVerdict, Validator};
use crate::message::{Message, Metadata};
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::source::decoder::Decoders;
use crate::source::mqtt::broker_drops::{is_sys, BrokerDrops};
use crate::source::mqtt::request::{intake, Intake};
use crate::source::mqtt::tls::connection_failure;
use crate::source::{Source, SourceReport};
use crate::telemetry::{health, metrics};
use crate::topic::{TopicInfo, TopicKind};

pub mod broker_drops;
pub mod request;
pub mod tls;

pub use request::{handle_request, judge, reply_body, Handled, MQTT_MAX_PACKET_BYTES};

/// The integration channel's MQTT client.
pub struct MqttSource {
    cfg: MqttSourceConfig,
    validator: Arc<dyn Validator>,
    name: String,
    shutdown_timeout: Duration,
}

impl MqttSource {
    /// A source from its configuration, judging requests with `validator`; `shutdown_timeout`
    /// bounds the wait for in-flight requests at shutdown.
    pub fn new(cfg: MqttSourceConfig, validator: Arc<dyn Validator>, shutdown_timeout: Duration) -> MqttSource {
        let name = format!("mqtt:{}:{}", cfg.url, cfg.client_id);
        MqttSource { cfg, validator, name, shutdown_timeout }
    }

    /// The topic filters subscribed to (with the `$share/<group>/` prefix when configured).
    pub fn subscriptions(cfg: &MqttSourceConfig) -> Vec<String> {
        let prefix = cfg.shared_group.as_ref().map(|g| format!("$share/{g}/")).unwrap_or_default();
        ["sys/+/integration/+/post", "sys/+/integration/up_raw"].iter().map(|t| format!("{prefix}{t}")).collect()
    }

    fn options(&self) -> Result<MqttOptions, SourceError> {
        let err = |message: String| SourceError::Other { source_name: self.name.clone(), message };
        let (host, port, tls) = self.cfg.endpoint().map_err(err)?;
        let mut o = MqttOptions::new(self.cfg.client_id.clone(), host, port);
        o.set_clean_session(self.cfg.clean_session)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(self.cfg.keep_alive_secs.max(5)))
            // Accept any packet the broker can deliver: a request over `max_request_bytes` must
            // be read to be answered 1413 and acknowledged. A client limit below the broker's
            // makes the client drop the connection and the broker deliver it again, forever.
            .set_max_packet_size(MQTT_MAX_PACKET_BYTES, MQTT_MAX_PACKET_BYTES);
        if let Some(user) = &self.cfg.username {
            o.set_credentials(user.clone(), self.cfg.password.clone().unwrap_or_default());
        }
        if let Some(t) = &self.cfg.tls {
            o.set_transport(tls::transport(t, err)?);
        } else if tls {
            return Err(err("mqtts:// needs [tls]".into()));
        }
        Ok(o)
    }
}

/// The most requests the broker can have in flight to one client: QoS 1 publishes are
/// acknowledged only after their reply, and a session has at most this many packet ids. The
/// request and completion queues are bounded by it, so the completion queue (filled from acks,
/// which cannot wait) never fills, and a full request queue holds the event loop.
pub const IN_FLIGHT_MAX: usize = u16::MAX as usize;

/// A reply to publish, then the request to acknowledge.
struct Completion {
    reply_topic: String,
    reply: Vec<u8>,
    code: u32,
    publish: Publish,
}

/// What the channel log says of a received request.
struct Received {
    topic: String,
    bytes: usize,
    pkid: u16,
    dup: bool,
}

impl Received {
    fn of(p: &Publish) -> Received {
        Received { topic: p.topic.clone(), bytes: p.payload.len(), pkid: p.pkid, dup: p.dup }
    }
}

/// State shared by the event loop, the request processor and the completer.
struct Shared {
    name: Arc<str>,
    in_flight: AtomicI64,
    seq: AtomicU64,
    rejected: AtomicU64,
}

impl Shared {
    fn in_flight(&self, delta: i64) {
        let n = self.in_flight.fetch_add(delta, Ordering::AcqRel) + delta;
        metrics::MQTT_IN_FLIGHT.with_label_values(&[&*self.name]).set(n);
    }

    /// Logs and counts the verdict on a request (the channel's "payload received" record).
    fn judged(&self, r: &Received, v: &RequestVerdict) {
        tracing::info!(target: "sluice::channel", source = %self.name, topic = %r.topic, bytes = r.bytes, pkid = r.pkid, dup = r.dup, request_id = %v.id, accepted = v.accepted, rejected = v.rejected, code = v.code, "payload received");
        metrics::INTEGRATION_ENTRIES.with_label_values(&["accepted"]).inc_by(v.accepted as u64);
        metrics::INTEGRATION_ENTRIES.with_label_values(&["rejected"]).inc_by(v.rejected as u64);
        if let Some(("bad_request" | "too_large" | "decoder", _)) = &v.error {
            metrics::SOURCE_DECODE_ERRORS.with_label_values(&[&*self.name]).inc();
        }
        if let Some((stage, message)) = &v.error {
            self.record_error(&r.topic, &v.id, stage, v.code, message.clone());
        }
        if v.accepted == 0 && v.error.is_some() {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn record_error(&self, topic: &str, id: &Value, stage: &str, code: u32, message: String) {
        channel_log::error(ErrorRecord {
            time_ms: chrono::Utc::now().timestamp_millis(),
            source: self.name.to_string(),
            topic: topic.to_string(),
            request_id: (!id.is_null()).then(|| id.clone()),
            stage: stage.to_string(),
            code,
            message,
        });
    }
}

fn reply_topic(topic: &str) -> String {
    format!("{topic}_reply")
}

fn completion(publish: Publish, id: &Value, code: u32, data: Value) -> Completion {
    let reply = serde_json::to_vec(&reply_body(id, code, data)).unwrap_or_default();
    Completion { reply_topic: reply_topic(&publish.topic), reply, code, publish }
}

/// Takes requests in order: answers at once those [`intake`] answers, and sends the others raw
/// into the pipeline, to be judged by the worker stage; the verdict comes back with the ack and
/// goes to the completer.
async fn process(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<Publish>,
    tx: mpsc::Sender<Envelope>,
    done: mpsc::Sender<Completion>,
    validator: Arc<dyn Validator>,
    decoders: Decoders,
    max_bytes: usize,
) {
    while let Some(publish) = requests.recv().await {
        let received_ms = chrono::Utc::now().timestamp_millis();
        let taken = if TopicInfo::parse(&publish.topic).kind == TopicKind::IntegrationUpRaw {
            // The decoder script runs off the async threads.
            let (topic, payload, decoders) = (publish.topic.clone(), publish.payload.clone(), decoders.clone());
            match tokio::task::spawn_blocking(move || intake(&topic, &payload, &decoders, max_bytes)).await {
                Ok(i) => i,
                Err(e) => Intake::Answer(RequestVerdict::fail(Value::Null, codes::INTERNAL, "internal", format!("request handler failed: {e}"))),
            }
        } else {
            intake(&publish.topic, &publish.payload, &decoders, max_bytes)
        };
        let (target, payload, decoded) = match taken {
            Intake::Answer(v) => {
                shared.judged(&Received::of(&publish), &v);
                let _ = done.send(completion(publish, &v.id, v.code, v.data)).await;
                continue;
            }
            Intake::Forward { topic, payload, decoded } => (topic, payload, decoded),
        };
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let meta = Metadata { source: Arc::from(&*shared.name), received_ms, id: seq, kafka: None, shard: crate::message::Shard::LOCAL, mqtt_pkid: Some(publish.pkid) };
        let msg = Message { topic: target, payload, meta };
        let ack = {
            let (shared, judged, done, received) = (shared.clone(), shared.clone(), done.clone(), Received::of(&publish));
            let on_verdict = move |v: &RequestVerdict| judged.judged(&received, v);
            Ack::judged(on_verdict, move |d, verdict| {
                let c = match (d, verdict) {
                    // Given up undelivered (shutdown): no reply and no PUBACK, so the broker
                    // delivers the request again on the next connection.
                    (Delivery::Dropped, _) => {
                        shared.in_flight(-1);
                        return;
                    }
                    (Delivery::Delivered, Some(v)) => completion(publish, &v.id, v.code, v.data),
                    (Delivery::Failed(reason), Some(v)) => {
                        shared.record_error(&publish.topic, &v.id, "delivery", codes::INTERNAL, format!("accepted entries not delivered: {reason}"));
                        completion(publish, &v.id, codes::INTERNAL, json!({"error": reason}))
                    }
                    // Not judged (a stage failed before it could): retry later.
                    (Delivery::Delivered | Delivery::Failed(_), None) => {
                        let message = "request handler failed: the request was not judged".to_string();
                        shared.record_error(&publish.topic, &Value::Null, "internal", codes::INTERNAL, message.clone());
                        completion(publish, &Value::Null, codes::INTERNAL, json!({"error": message}))
                    }
                };
                // Never full: one slot per request the broker can have in flight (see
                // `IN_FLIGHT_MAX`).
                if let Err(mpsc::error::TrySendError::Full(c)) = done.try_send(c) {
                    tracing::error!(source = %shared.name, topic = %c.reply_topic, "completion queue full: the request stays unacknowledged (the broker delivers it again)");
                    shared.in_flight(-1);
                }
            })
        };
        if tx.send(Envelope::request(msg, ack, validator.clone()).with_decoded(decoded)).await.is_err() {
            tracing::warn!(source = %shared.name, "pipeline closed; request processor stops");
            break;
        }
    }
}

/// Publishes replies and then acknowledges their requests, in order.
async fn complete(shared: Arc<Shared>, client: AsyncClient, mut done: mpsc::Receiver<Completion>) {
    while let Some(c) = done.recv().await {
        metrics::INTEGRATION_REQUESTS.with_label_values(&[&c.code.to_string()]).inc();
        if let Err(e) = client.publish(c.reply_topic.clone(), QoS::AtLeastOnce, false, c.reply).await {
            tracing::warn!(source = %shared.name, topic = %c.reply_topic, error = %e, "reply not sent; the request stays unacknowledged");
        } else if let Err(e) = client.ack(&c.publish).await {
            tracing::warn!(source = %shared.name, error = %e, "request not acknowledged");
        }
        tracing::debug!(target: "sluice::channel", source = %shared.name, topic = %c.reply_topic, code = c.code, pkid = c.publish.pkid, "reply sent");
        shared.in_flight(-1);
    }
}

impl Source for MqttSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run(self: Box<Self>, tx: mpsc::Sender<Envelope>, shutdown: Shutdown) -> BoxFuture<Result<SourceReport, SourceError>> {
        Box::pin(async move {
            metrics::prime_integration_source(&self.name, false);
            let opts = self.options()?;
            let (client, eventloop) = AsyncClient::new(opts, 1024);
            let shared = Arc::new(Shared { name: Arc::from(self.name.as_str()), in_flight: AtomicI64::new(0), seq: AtomicU64::new(0), rejected: AtomicU64::new(0) });
            let decoders = Decoders::new(self.cfg.decoders_dir.clone(), Duration::from_millis(self.cfg.decoder_timeout_ms), self.cfg.decoder_memory_bytes);
            let (req_tx, req_rx) = mpsc::channel(IN_FLIGHT_MAX);
            let (done_tx, done_rx) = mpsc::channel(IN_FLIGHT_MAX);
            let processor = tokio::spawn(process(shared.clone(), req_rx, tx, done_tx, self.validator.clone(), decoders, self.cfg.max_request_bytes));
            let completer = tokio::spawn(complete(shared.clone(), client.clone(), done_rx));
            let messages = self.event_loop(eventloop, &client, &shared, req_tx, &shutdown).await;
            let _ = processor.await;
            completer.abort();
            metrics::MQTT_CONNECTED.with_label_values(&[&*shared.name]).set(0);
            Ok(SourceReport { messages, rejected: shared.rejected.load(Ordering::Relaxed) })
        })
    }
}

impl MqttSource {
    /// Polls the connection until shutdown, then until in-flight requests are answered (or the
    /// shutdown timeout); returns how many requests were received.
    async fn event_loop(&self, mut ev: EventLoop, client: &AsyncClient, shared: &Shared, req_tx: mpsc::Sender<Publish>, shutdown: &Shutdown) -> u64 {
        let name = &*shared.name;
        let connected_gauge = metrics::MQTT_CONNECTED.with_label_values(&[name]);
        let received_records = metrics::SOURCE_RECEIVED_RECORDS.with_label_values(&[name]);
        let received_bytes = metrics::SOURCE_RECEIVED_BYTES.with_label_values(&[name]);
        let check = format!("source:{name}");
        health::set(&check, false, "connecting");
        let host = self.cfg.endpoint().map(|(h, _, _)| h).unwrap_or_default();
        let subs = Self::subscriptions(&self.cfg);
        let mut drops = BrokerDrops::new(name, self.cfg.watch_broker_drops);
        let mut backoff = Backoff::new(Duration::from_millis(self.cfg.reconnect_backoff_ms), Duration::from_millis(self.cfg.reconnect_backoff_max_ms));
        let mut connected = false;
        let mut received = 0u64;
        let mut req_tx = Some(req_tx);
        let mut stopping: Option<Instant> = None;
        loop {
            if let Some(since) = stopping {
                let left = shared.in_flight.load(Ordering::Acquire);
                if left <= 0 || since.elapsed() >= self.shutdown_timeout || !connected {
                    if left > 0 {
                        tracing::warn!(source = %name, in_flight = left, "shutdown: requests not answered (the broker delivers them again)");
                    }
                    break;
                }
            }
            let polled = tokio::select! {
                () = shutdown.wait(), if stopping.is_none() => {
                    tracing::info!(source = %name, "shutdown: answering in-flight requests");
                    stopping = Some(Instant::now());
                    req_tx = None;
                    continue;
                }
                () = tokio::time::sleep(Duration::from_millis(50)), if stopping.is_some() => continue,
                e = ev.poll() => e,
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    connected = true;
                    backoff.reset();
                    connected_gauge.set(1);
                    health::set(&check, true, drops.connected_detail());
                    metrics::MQTT_CONNECTION_EVENTS.with_label_values(&[name, "connect"]).inc();
                    tracing::info!(target: "sluice::channel", source = %name, session_present = ack.session_present, "connected");
                    // The requests' filters, then (when watched) the broker's dropped count: one
                    // SUBSCRIBE, so the SUBACK's codes come in this order.
                    let filters = subs.iter().map(|s| SubscribeFilter::new(s.clone(), QoS::AtLeastOnce)).chain(drops.subscription());
                    if let Err(e) = client.try_subscribe_many(filters) {
                        tracing::error!(source = %name, error = %e, "subscribe failed");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let (requests, sys) = ack.return_codes.split_at(subs.len().min(ack.return_codes.len()));
                    if requests.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) {
                        tracing::error!(target: "sluice::channel", source = %name, "the broker refused a subscription");
                    } else {
                        tracing::info!(target: "sluice::channel", source = %name, topics = ?subs, "subscribed");
                    }
                    if let Some(code) = sys.first() {
                        drops.subscribed(code);
                    }
                }
                // The broker's own topics (the dropped count) are never requests.
                Ok(Event::Incoming(Packet::Publish(p))) if is_sys(&p.topic) => {
                    if p.qos != QoS::AtMostOnce {
                        let _ = client.try_ack(&p);
                    }
                    if drops.observe(&p.topic, &p.payload) && connected {
                        health::set(&check, true, drops.connected_detail());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => match &req_tx {
                    // While stopping, new requests stay unacknowledged: the broker keeps them.
                    Some(tx) => {
                        received += 1;
                        received_records.inc();
                        received_bytes.inc_by(p.payload.len() as u64);
                        shared.in_flight(1);
                        // Backpressure: a full queue holds the event loop (never drops).
                        if tx.send(p).await.is_err() {
                            shared.in_flight(-1);
                        }
                    }
                    None => tracing::debug!(source = %name, topic = %p.topic, "shutdown: request left to the broker"),
                },
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    let delay = backoff.next_delay();
                    let reason = connection_failure(&e, &host);
                    health::set(&check, false, format!("not connected: {reason}"));
                    if connected {
                        connected = false;
                        connected_gauge.set(0);
                        metrics::MQTT_CONNECTION_EVENTS.with_label_values(&[name, "disconnect"]).inc();
                        tracing::warn!(target: "sluice::channel", source = %name, error = %reason, "disconnected");
                    } else {
                        metrics::MQTT_CONNECTION_EVENTS.with_label_values(&[name, "failed"]).inc();
                        tracing::warn!(target: "sluice::channel", source = %name, error = %reason, retry_ms = delay.as_millis() as u64, "connection failed");
                    }
                    if stopping.is_some() {
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.wait() => {}
                    }
                }
            }
        }
        drop(req_tx);
        health::set(&check, false, "stopped");
        if connected {
            // Flush the last replies and acks, then say goodbye.
            let _ = client.try_disconnect();
            let deadline = Instant::now() + Duration::from_secs(2);
            while let Ok(Ok(e)) = tokio::time::timeout_at(deadline.into(), ev.poll()).await {
                if matches!(e, Event::Outgoing(Outgoing::Disconnect)) {
                    break;
                }
            }
            metrics::MQTT_CONNECTION_EVENTS.with_label_values(&[name, "disconnect"]).inc();
            tracing::info!(target: "sluice::channel", source = %name, "disconnected (shutdown)");
        }
        received
    }
}

#[cfg(test)]
mod tests;
