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

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::MqttSourceConfig;
use crate::error::SourceError;
use crate::flow::BoxFuture;
use crate::flow::{Ack, Delivery, Envelope};
use crate::integration::{codes, EntryVerdict, Validation, Validator};
use crate::message::{Message, Metadata};
use crate::shutdown::Shutdown;
use crate::source::channel_log::{self, ErrorRecord};
use crate::source::decoder::{topic_level, Decoders};
use crate::source::{Source, SourceReport};
use crate::telemetry::{health, metrics};
use crate::topic::{TopicInfo, TopicKind};

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
            use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
            let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| err(format!("reading {}: {e}", p.display())));
            // A file without a certificate (or key) is a configuration error: say so now
            // rather than fail every connection attempt.
            let certs = |key: &str, p: &std::path::Path| {
                let pem = read(p)?;
                match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                    Ok(c) if !c.is_empty() => Ok(pem),
                    Ok(_) => Err(err(format!("`tls.{key}` {}: no PEM certificate in it", p.display()))),
                    Err(e) => Err(err(format!("`tls.{key}` {}: {e}", p.display()))),
                }
            };
            let ca = certs("ca_file", &t.ca_file)?;
            let client_auth = match (&t.client_cert_file, &t.client_key_file) {
                (Some(c), Some(k)) => {
                    let key = read(k)?;
                    if let Err(e) = PrivateKeyDer::from_pem_slice(&key) {
                        return Err(err(format!("`tls.client_key_file` {}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}", k.display())));
                    }
                    Some((certs("client_cert_file", c)?, key))
                }
                _ => None,
            };
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple { ca, alpn: None, client_auth }));
        } else if tls {
            return Err(err("mqtts:// needs [tls]".into()));
        }
        Ok(o)
    }
}

/// The largest packet MQTT can carry (a 268,435,455-byte remaining length plus its fixed
/// header): the client's limit, so that the size limit is Sluice's (`max_request_bytes`, 1413).
pub const MQTT_MAX_PACKET_BYTES: usize = 268_435_455 + 5;

/// The `id` of a request too large to handle, when its JSON can still be read (scanned, not
/// built: only `id` is kept). `null` otherwise, or when the id is not a string or a number.
fn oversized_request_id(payload: &[u8]) -> Value {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        #[serde(default)]
        id: Value,
    }
    match serde_json::from_slice::<IdOnly>(payload) {
        Ok(IdOnly { id: id @ (Value::String(_) | Value::Number(_)) }) => id,
        _ => Value::Null,
    }
}

/// A reply to publish, then the request to acknowledge.
struct Completion {
    reply_topic: String,
    reply: Vec<u8>,
    code: u32,
    publish: Publish,
}

/// The reply body: `{"id", "code", "data", "message"}` (seeds 000/003).
pub fn reply_body(id: &Value, code: u32, data: Value) -> Value {
    json!({"id": id, "code": code, "data": data, "message": codes::message(code)})
}

/// What to do with one request.
#[derive(Debug, PartialEq)]
pub struct Handled {
    /// The request's `id` (null when there is none).
    pub id: Value,
    /// The reply's code and data once the accepted entries are delivered (or at once when
    /// nothing goes to the rules).
    pub code: u32,
    /// The reply's `data`.
    pub data: Value,
    /// The message for the rules: topic and payload with the accepted entries only.
    pub forward: Option<(String, Vec<u8>)>,
    /// Entries accepted and rejected.
    pub accepted: usize,
    /// Entries rejected.
    pub rejected: usize,
    /// An error to record in the channel log: stage and message.
    pub error: Option<(&'static str, String)>,
}

impl Handled {
    fn fail(id: Value, code: u32, stage: &'static str, message: String) -> Handled {
        Handled { id, code, data: json!({"error": message}), forward: None, accepted: 0, rejected: 0, error: Some((stage, message)) }
    }
}

/// Handles one request on `topic`: decode (up_raw), parse, validate, filter. Pure apart from
/// running the decoder script.
pub fn handle_request(topic: &str, payload: &[u8], validator: &dyn Validator, decoders: &Decoders, max_bytes: usize) -> Handled {
    let info = TopicInfo::parse(topic);
    let pk = info.product_key.unwrap_or_default().to_string();
    if payload.len() > max_bytes {
        let id = if topic_level(info.kind).is_some() { oversized_request_id(payload) } else { Value::Null };
        return Handled::fail(id, codes::TOO_LARGE, "too_large", format!("request of {} bytes is larger than max_request_bytes ({max_bytes})", payload.len()));
    }
    let (request, kind) = match info.kind {
        TopicKind::IntegrationUpRaw => match decoders.decode(&pk, payload) {
            Ok(r) => r,
            Err(e) => {
                metrics::INTEGRATION_DECODER_ERRORS.with_label_values(&[e.reason()]).inc();
                return Handled::fail(Value::Null, codes::DECODER_FAILED, "decoder", e.to_string());
            }
        },
        k if topic_level(k).is_some() => {
            let text = match std::str::from_utf8(payload) {
                Ok(t) => t,
                Err(e) => {
                    return Handled::fail(
                        Value::Null,
                        codes::BAD_REQUEST,
                        "bad_request",
                        format!("the request is not UTF-8 text (invalid byte at offset {}); JSON requests are UTF-8", e.valid_up_to()),
                    )
                }
            };
            match serde_json::from_str::<Value>(text) {
                Ok(v) if v.is_object() => (v, k),
                Ok(_) => return Handled::fail(Value::Null, codes::BAD_REQUEST, "bad_request", "the request must be a JSON object".into()),
                Err(e) => return Handled::fail(Value::Null, codes::BAD_REQUEST, "bad_request", format!("malformed JSON: {e}")),
            }
        }
        _ => return Handled::fail(Value::Null, codes::BAD_REQUEST, "bad_request", format!("`{topic}` is not an integration request topic")),
    };
    judge(topic, &request, kind, validator)
}

/// Judges a request received on `topic` once parsed (or decoded: `kind` is then its `method`'s):
/// validates its entries and builds the message for the rules. Pure.
pub fn judge(topic: &str, request: &Value, kind: TopicKind, validator: &dyn Validator) -> Handled {
    let info = TopicInfo::parse(topic);
    let pk = info.product_key.unwrap_or_default();
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(params) = request.get("params").and_then(Value::as_array) else {
        return Handled::fail(id, codes::BAD_REQUEST, "bad_request", "`params` must be an array of entries".into());
    };
    let verdicts = match validator.validate(kind, pk, request) {
        Validation::Request { code, message } => return Handled::fail(id, code, "validation", message),
        Validation::Entries(v) if v.len() != params.len() => {
            return Handled::fail(id, codes::INTERNAL, "validation", format!("the validator judged {} of {} entries", v.len(), params.len()));
        }
        Validation::Entries(v) => v,
    };
    let mut accepted = Vec::new();
    let mut failed = Vec::new();
    for (i, (entry, verdict)) in params.iter().zip(&verdicts).enumerate() {
        match verdict {
            EntryVerdict::Accepted => accepted.push(entry.clone()),
            EntryVerdict::Rejected { code, message } => {
                failed.push(json!({"index": i, "deviceKey": entry.get("deviceKey").cloned().unwrap_or(Value::Null), "code": code, "message": message}));
            }
        }
    }
    let (n_acc, n_rej) = (accepted.len(), failed.len());
    let (code, data, error) = match failed.first() {
        None => (codes::OK, json!({}), None),
        Some(first) => {
            let code = first["code"].as_u64().unwrap_or(u64::from(codes::INTERNAL)) as u32;
            let msg = format!("{n_rej} of {} entries rejected; first: params[{}] {}: {}", params.len(), first["index"], first["deviceKey"], first["message"].as_str().unwrap_or_default());
            (code, json!({"accepted": n_acc, "failed": failed}), Some(("validation", msg)))
        }
    };
    let forward = (n_acc > 0).then(|| {
        let mut filtered = request.clone();
        filtered["params"] = Value::Array(accepted);
        let target = match info.kind {
            TopicKind::IntegrationUpRaw => format!("sys/{pk}/integration/{}/post", topic_level(kind).unwrap_or("measurepoint")),
            _ => topic.to_string(),
        };
        (target, serde_json::to_vec(&filtered).unwrap_or_default())
    });
    Handled { id, code, data, forward, accepted: n_acc, rejected: n_rej, error }
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

/// Takes requests in order: handles each, then sends its message into the pipeline (or its
/// reply to the completer).
async fn process(
    shared: Arc<Shared>,
    mut requests: mpsc::UnboundedReceiver<Publish>,
    tx: mpsc::Sender<Envelope>,
    done: mpsc::UnboundedSender<Completion>,
    validator: Arc<dyn Validator>,
    decoders: Decoders,
    max_bytes: usize,
) {
    while let Some(publish) = requests.recv().await {
        let received_ms = chrono::Utc::now().timestamp_millis();
        let h = {
            let (topic, payload, validator, decoders) = (publish.topic.clone(), publish.payload.clone(), validator.clone(), decoders.clone());
            match tokio::task::spawn_blocking(move || handle_request(&topic, &payload, &*validator, &decoders, max_bytes)).await {
                Ok(h) => h,
                Err(e) => Handled::fail(Value::Null, codes::INTERNAL, "internal", format!("request handler failed: {e}")),
            }
        };
        tracing::info!(target: "sluice::channel", source = %shared.name, topic = %publish.topic, bytes = publish.payload.len(), pkid = publish.pkid, dup = publish.dup, request_id = %h.id, accepted = h.accepted, rejected = h.rejected, code = h.code, "payload received");
        metrics::INTEGRATION_ENTRIES.with_label_values(&["accepted"]).inc_by(h.accepted as u64);
        metrics::INTEGRATION_ENTRIES.with_label_values(&["rejected"]).inc_by(h.rejected as u64);
        if let Some(("bad_request" | "too_large" | "decoder", _)) = &h.error {
            metrics::SOURCE_DECODE_ERRORS.with_label_values(&[&*shared.name]).inc();
        }
        if let Some((stage, message)) = &h.error {
            shared.record_error(&publish.topic, &h.id, stage, h.code, message.clone());
        }
        let Some((target, payload)) = h.forward else {
            if h.accepted == 0 && h.error.is_some() {
                shared.rejected.fetch_add(1, Ordering::Relaxed);
            }
            let _ = done.send(completion(publish, &h.id, h.code, h.data));
            continue;
        };
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let meta = Metadata { source: Arc::from(&*shared.name), received_ms, id: seq, kafka: None, mqtt_pkid: Some(publish.pkid) };
        let msg = Message { topic: target, payload: payload.into(), meta };
        let ack = {
            let (shared, done, id, code, data) = (shared.clone(), done.clone(), h.id.clone(), h.code, h.data);
            Ack::new(move |d| {
                let c = match d {
                    Delivery::Delivered => completion(publish, &id, code, data),
                    // Given up undelivered (shutdown): no reply and no PUBACK, so the broker
                    // delivers the request again on the next connection.
                    Delivery::Dropped => {
                        shared.in_flight(-1);
                        return;
                    }
                    Delivery::Failed(reason) => {
                        shared.record_error(&publish.topic, &id, "delivery", codes::INTERNAL, format!("accepted entries not delivered: {reason}"));
                        completion(publish, &id, codes::INTERNAL, json!({"error": reason}))
                    }
                };
                let _ = done.send(c);
            })
        };
        if tx.send(Envelope::new(msg, ack)).await.is_err() {
            tracing::warn!(source = %shared.name, "pipeline closed; request processor stops");
            break;
        }
    }
}

/// Publishes replies and then acknowledges their requests, in order.
async fn complete(shared: Arc<Shared>, client: AsyncClient, mut done: mpsc::UnboundedReceiver<Completion>) {
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
            let (req_tx, req_rx) = mpsc::unbounded_channel();
            let (done_tx, done_rx) = mpsc::unbounded_channel();
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
    async fn event_loop(&self, mut ev: EventLoop, client: &AsyncClient, shared: &Shared, req_tx: mpsc::UnboundedSender<Publish>, shutdown: &Shutdown) -> u64 {
        let name = &*shared.name;
        let connected_gauge = metrics::MQTT_CONNECTED.with_label_values(&[name]);
        let received_records = metrics::SOURCE_RECEIVED_RECORDS.with_label_values(&[name]);
        let received_bytes = metrics::SOURCE_RECEIVED_BYTES.with_label_values(&[name]);
        let check = format!("source:{name}");
        health::set(&check, false, "connecting");
        let host = self.cfg.endpoint().map(|(h, _, _)| h).unwrap_or_default();
        let subs = Self::subscriptions(&self.cfg);
        let min_backoff = Duration::from_millis(self.cfg.reconnect_backoff_ms);
        let max_backoff = Duration::from_millis(self.cfg.reconnect_backoff_max_ms);
        let mut backoff = min_backoff;
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
                    backoff = min_backoff;
                    connected_gauge.set(1);
                    health::set(&check, true, "connected");
                    metrics::MQTT_CONNECTION_EVENTS.with_label_values(&[name, "connect"]).inc();
                    tracing::info!(target: "sluice::channel", source = %name, session_present = ack.session_present, "connected");
                    if let Err(e) = client.try_subscribe_many(subs.iter().map(|s| SubscribeFilter::new(s.clone(), QoS::AtLeastOnce))) {
                        tracing::error!(source = %name, error = %e, "subscribe failed");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) {
                        tracing::error!(target: "sluice::channel", source = %name, "the broker refused a subscription");
                    } else {
                        tracing::info!(target: "sluice::channel", source = %name, topics = ?subs, "subscribed");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => match &req_tx {
                    // While stopping, new requests stay unacknowledged: the broker keeps them.
                    Some(tx) => {
                        received += 1;
                        received_records.inc();
                        received_bytes.inc_by(p.payload.len() as u64);
                        shared.in_flight(1);
                        if tx.send(p).is_err() {
                            shared.in_flight(-1);
                        }
                    }
                    None => tracing::debug!(source = %name, topic = %p.topic, "shutdown: request left to the broker"),
                },
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    let reason = connection_failure(&e, &host);
                    health::set(&check, false, format!("not connected: {reason}"));
                    if connected {
                        connected = false;
                        connected_gauge.set(0);
                        metrics::MQTT_CONNECTION_EVENTS.with_label_values(&[name, "disconnect"]).inc();
                        tracing::warn!(target: "sluice::channel", source = %name, error = %reason, "disconnected");
                    } else {
                        tracing::warn!(target: "sluice::channel", source = %name, error = %reason, retry_ms = backoff.as_millis() as u64, "connection failed");
                    }
                    if stopping.is_some() {
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.wait() => {}
                    }
                    backoff = (backoff * 2).min(max_backoff);
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

/// The TLS error under a connection error, if any (rustls errors reach rumqttc wrapped in an
/// `io::Error`, whose `source()` skips them, so each level is unwrapped by hand).
fn rustls_error(e: &ConnectionError) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// Why a connection attempt to `host` failed, for the log and the readiness check: TLS
/// failures say what is wrong and which setting to look at, then rumqttc's own text.
fn connection_failure(e: &ConnectionError, host: &str) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as R};
    let what = match rustls_error(e) {
        Some(R::InvalidCertificate(C::UnknownIssuer)) => "TLS: unknown issuer: the broker's certificate is not signed by a CA in `tls.ca_file`".to_string(),
        Some(R::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => format!("TLS: hostname mismatch: the broker's certificate is not valid for `{host}` (the host in `url`)"),
        Some(R::InvalidCertificate(C::Expired | C::ExpiredContext { .. })) => "TLS: certificate expired: the broker's certificate has expired".to_string(),
        Some(R::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. })) => "TLS: the broker's certificate is not valid yet (check the clocks)".to_string(),
        Some(R::InvalidCertificate(_)) => "TLS: the broker's certificate was rejected".to_string(),
        Some(R::AlertReceived(A::CertificateExpired)) => "TLS: certificate expired: the broker rejected the client certificate (`tls.client_cert_file`) as expired".to_string(),
        Some(R::AlertReceived(A::CertificateRequired | A::NoCertificate)) => "TLS: the broker requires a client certificate (`tls.client_cert_file`, `tls.client_key_file`)".to_string(),
        Some(R::AlertReceived(a @ (A::BadCertificate | A::UnsupportedCertificate | A::CertificateRevoked | A::CertificateUnknown | A::UnknownCA | A::AccessDenied))) => {
            format!("TLS: the broker rejected the client certificate (`tls.client_cert_file`): {a:?}")
        }
        Some(R::AlertReceived(a)) => format!("TLS: the broker ended the handshake: {a:?}"),
        Some(_) => "TLS: handshake failed".to_string(),
        None => return e.to_string(),
    };
    format!("{what} ({e})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integration::AcceptAll;

    fn tls_failure(e: rustls::Error) -> String {
        connection_failure(&ConnectionError::Tls(rumqttc::TlsError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))), "localhost")
    }

    #[test]
    fn tls_failures_say_what_is_wrong() {
        use rustls::{AlertDescription, CertificateError, Error};
        let t = tls_failure(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        assert!(t.starts_with("TLS: unknown issuer: ") && t.contains("tls.ca_file") && t.ends_with("(TLS: I/O: invalid peer certificate: UnknownIssuer)"), "{t}");
        let t = tls_failure(Error::InvalidCertificate(CertificateError::NotValidForName));
        assert!(t.starts_with("TLS: hostname mismatch: ") && t.contains("`localhost`"), "{t}");
        let t = tls_failure(Error::InvalidCertificate(CertificateError::Expired));
        assert!(t.starts_with("TLS: certificate expired: the broker's certificate"), "{t}");
        let t = tls_failure(Error::AlertReceived(AlertDescription::CertificateExpired));
        assert!(t.starts_with("TLS: certificate expired: the broker rejected the client certificate"), "{t}");
        let t = tls_failure(Error::AlertReceived(AlertDescription::CertificateRequired));
        assert!(t.contains("requires a client certificate"), "{t}");
        let t = tls_failure(Error::AlertReceived(AlertDescription::UnknownCA));
        assert!(t.contains("rejected the client certificate") && t.contains("UnknownCA"), "{t}");
        // The TLS error may also come as a plain I/O error (after the handshake, TLS 1.3).
        let io = ConnectionError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, Error::AlertReceived(AlertDescription::CertificateExpired)));
        assert!(connection_failure(&io, "h").starts_with("TLS: certificate expired"));
        // Not TLS: rumqttc's text.
        let refused = ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(connection_failure(&refused, "h"), refused.to_string());
    }

    fn decoders() -> Decoders {
        Decoders::new("decoders".into(), Duration::from_millis(50), 16 << 20)
    }

    struct RejectDevice2;
    impl Validator for RejectDevice2 {
        fn validate(&self, _: TopicKind, _: &str, request: &Value) -> Validation {
            Validation::Entries(
                request["params"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| match e["deviceKey"].as_str() {
                        Some("device2") => EntryVerdict::Rejected { code: codes::DEVICE_NOT_FOUND, message: "device2 is not registered".into() },
                        _ => EntryVerdict::Accepted,
                    })
                    .collect(),
            )
        }
    }

    #[test]
    fn all_accepted_forwards_the_request() {
        let req = json!({"id":"123","version":"1.0","params":[{"deviceKey":"device1","events":{"e":{"a":1}},"time":1}],"method":"integration.event.post"});
        let h = handle_request("sys/pk/integration/event/post", req.to_string().as_bytes(), &AcceptAll, &decoders(), 1 << 20);
        assert_eq!((h.code, &h.data, &h.id), (200, &json!({}), &json!("123")));
        let (topic, payload) = h.forward.unwrap();
        assert_eq!(topic, "sys/pk/integration/event/post");
        assert_eq!(serde_json::from_slice::<Value>(&payload).unwrap(), req);
        assert_eq!(serde_json::to_string(&reply_body(&h.id, h.code, h.data)).unwrap(), r#"{"id":"123","code":200,"data":{},"message":"OK"}"#);
    }

    #[test]
    fn partial_failure_keeps_valid_entries() {
        let req = json!({"id":"9","version":"1.0","params":[{"deviceKey":"device1"},{"deviceKey":"device2"},{"deviceKey":"device3"}],"method":"integration.attribute.post"});
        let h = handle_request("sys/pk/integration/attributes/post", req.to_string().as_bytes(), &RejectDevice2, &decoders(), 1 << 20);
        assert_eq!(h.code, codes::DEVICE_NOT_FOUND);
        assert_eq!(h.data, json!({"accepted": 2, "failed": [{"index": 1, "deviceKey": "device2", "code": 1257, "message": "device2 is not registered"}]}));
        let fwd: Value = serde_json::from_slice(&h.forward.unwrap().1).unwrap();
        assert_eq!(fwd["params"], json!([{"deviceKey":"device1"},{"deviceKey":"device3"}]));
        assert_eq!(fwd["id"], json!("9"));
    }

    #[test]
    fn bad_requests_are_answered_at_once() {
        let h = handle_request("sys/pk/integration/event/post", b"{not json", &AcceptAll, &decoders(), 1 << 20);
        assert_eq!((h.code, h.forward.is_none(), h.error.unwrap().0), (codes::BAD_REQUEST, true, "bad_request"));
        let h = handle_request("sys/pk/integration/event/post", b"{\"id\":\"1\"}", &AcceptAll, &decoders(), 1 << 20);
        assert_eq!((h.code, h.id), (codes::BAD_REQUEST, json!("1")));
        let h = handle_request("sys/pk/integration/event/post", &[b' '; 100], &AcceptAll, &decoders(), 10);
        assert_eq!(h.code, codes::TOO_LARGE);
        let h = handle_request("sys/pk/integration/other/post", b"{}", &AcceptAll, &decoders(), 1 << 20);
        assert_eq!(h.code, codes::BAD_REQUEST);
        let h = handle_request("sys/nodecoder/integration/up_raw", &[1, 2], &AcceptAll, &decoders(), 1 << 20);
        assert_eq!(h.code, codes::DECODER_FAILED);
        let h = handle_request("sys/pk/integration/event/post", b"{\"id\":\"\xff\"}", &AcceptAll, &decoders(), 1 << 20);
        assert_eq!((h.code, h.error.unwrap().1), (codes::BAD_REQUEST, "the request is not UTF-8 text (invalid byte at offset 7); JSON requests are UTF-8".to_string()));
    }

    /// Regression: the 1413 reply to an oversized JSON request had `"id": null`.
    #[test]
    fn an_oversized_request_keeps_its_id_when_its_json_can_be_read() {
        let big = format!(r#"{{"params":[{{"x":"{}"}}],"id":"big-7"}}"#, "y".repeat(200));
        let h = handle_request("sys/pk/integration/event/post", big.as_bytes(), &AcceptAll, &decoders(), 100);
        assert_eq!((h.code, h.id), (codes::TOO_LARGE, json!("big-7")));
        let h = handle_request("sys/pk/integration/event/post", &big.as_bytes()[..150], &AcceptAll, &decoders(), 100);
        assert_eq!((h.code, h.id), (codes::TOO_LARGE, Value::Null), "truncated JSON: no id");
        let h = handle_request("sys/pk/integration/event/post", format!(r#"{{"id":{{"a":1}},"p":"{}"}}"#, "y".repeat(200)).as_bytes(), &AcceptAll, &decoders(), 100);
        assert_eq!(h.id, Value::Null, "only a string or number id is echoed");
    }

    #[test]
    fn shipped_decoder_decodes_the_quickstart_frame() {
        // examples/quickstart.jsonl: sys/productKey1/integration/up_raw, "AQMEAAoBAv9+".
        let frame = [0x01, 0x03, 0x04, 0x00, 0x0A, 0x01, 0x02, 0xFF, 0x7E];
        let h = handle_request("sys/productKey1/integration/up_raw", &frame, &AcceptAll, &decoders(), 1 << 20);
        assert_eq!(h.code, 200, "{h:?}");
        let (topic, payload) = h.forward.unwrap();
        assert_eq!(topic, "sys/productKey1/integration/measurepoint/post");
        let fwd: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(fwd["params"][0]["deviceKey"], json!("device1"));
        assert_eq!(fwd["params"][0]["measurepoints"], json!({"temp": 1, "Power": {"value": 258, "quality": 0}}));
    }

    #[test]
    fn tls_files_are_read_into_the_transport() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "c.pem"] {
            std::fs::write(dir.path().join(f), "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").unwrap();
        }
        std::fs::write(dir.path().join("c.key"), "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n").unwrap();
        std::fs::write(dir.path().join("not-pem.pem"), "not a certificate\n").unwrap();
        let d = dir.path().display();
        let cfg = |ca: &str| -> MqttSourceConfig {
            toml::from_str(&format!(
                "url = \"mqtts://h:8883\"\nclient_id = \"c\"\nusername = \"u\"\npassword = \"p\"\n[tls]\nca_file = \"{d}/{ca}\"\nclient_cert_file = \"{d}/c.pem\"\nclient_key_file = \"{d}/c.key\"\n"
            ))
            .unwrap()
        };
        let o = MqttSource::new(cfg("ca.pem"), Arc::new(AcceptAll), Duration::from_secs(1)).options().unwrap();
        assert!(matches!(o.transport(), Transport::Tls(TlsConfiguration::Simple { client_auth: Some(_), .. })));
        assert!(!o.clean_session());
        assert_eq!(o.broker_address(), ("h".to_string(), 8883));
        let e = MqttSource::new(cfg("missing.pem"), Arc::new(AcceptAll), Duration::from_secs(1)).options().unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = MqttSource::new(cfg("not-pem.pem"), Arc::new(AcceptAll), Duration::from_secs(1)).options().unwrap_err();
        assert!(e.to_string().contains("`tls.ca_file`") && e.to_string().contains("not-pem.pem: no PEM certificate"), "{e}");
        // A key file without a key (here: a certificate).
        let mut bad_key = cfg("ca.pem");
        bad_key.tls.as_mut().unwrap().client_key_file = Some(dir.path().join("c.pem"));
        let e = MqttSource::new(bad_key, Arc::new(AcceptAll), Duration::from_secs(1)).options().unwrap_err();
        assert!(e.to_string().contains("`tls.client_key_file`") && e.to_string().contains("no PEM private key"), "{e}");
    }

    #[test]
    fn shared_subscriptions() {
        let mut cfg: MqttSourceConfig = toml::from_str("url = \"mqtt://h:1\"\nclient_id = \"c\"\nshared_group = \"g\"").unwrap();
        assert_eq!(MqttSource::subscriptions(&cfg), vec!["$share/g/sys/+/integration/+/post", "$share/g/sys/+/integration/up_raw"]);
        cfg.shared_group = None;
        assert_eq!(MqttSource::subscriptions(&cfg)[0], "sys/+/integration/+/post");
    }
}
