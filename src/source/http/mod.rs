//! The HTTP event upload of the integration channel (seed 002, "Upload Events"):
//! `POST /connect-service/v2.1/integration?action=postEvent&orgId=…` with the header
//! `apim-accesstoken` and a multipart/form-data body of exactly one `enos-message` part (the JSON
//! request) and zero or more `enos-file` parts (`filename` in Content-Disposition).
//!
//! For each request:
//!
//! 1. The orgId must be configured and the token one of its tokens (else HTTP 401, code 401).
//! 2. The parts are read within the limits (body, message part, file size, file count; else
//!    HTTP 413, code 1413), each file's MD5 computed on the way.
//! 3. Request checks (code 1203 unless said): one `enos-message` part of JSON with a `params`
//!    array; every `local://name` in the params has an `enos-file` part named `name`, every part
//!    is referred to, every `files` entry has its part; a `files` entry's `md5` and `fileLength`,
//!    when given, match the part (else 1204, naming the file).
//! 4. The [`Validator`] judges each entry (1257 device not found, 1204 model validate failed).
//! 5. The files referred to by accepted entries are stored in the object store as
//!    `<orgId>/<uuid>/<sanitized name>` (the client's name is never used as a path), and one
//!    message goes to the rules on `sys/{productKey}/integration/event/post` (the product of the
//!    first accepted entry) with the accepted entries, each `local://name` replaced by the stored
//!    file's URI, and `files` mapping each stored name to its metadata plus `uri`.
//! 6. The HTTP response is sent once the message's outputs are delivered (at-least-once):
//!    `{"code": 200, "msg": "OK", "requestId": "<uuid>", "data": {}}`; a delivery failure is
//!    HTTP 500, code 500 (retry). Partial failure: the code of the first rejected entry, data
//!    `{"accepted": N, "failed": [{"index", "code", "message"}]}`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use md5::{Digest, Md5};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use prometheus::IntCounter;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::config::HttpSourceConfig;
use crate::doc::Node;
use crate::error::SourceError;
use crate::flow::BoxFuture;
use crate::flow::{Ack, Delivery, Envelope};
use crate::integration::channel_log::{self, ErrorRecord};
use crate::integration::{codes, EntryVerdict, Validation, Validator};
use crate::message::{Message, Metadata};
use crate::secret::token_matches;
use crate::shutdown::Shutdown;
use crate::source::http::files::{check_files, local_refs, rewrite_refs, Upload};
use crate::source::{Source, SourceReport};
use crate::telemetry::metrics;
use crate::topic::TopicKind;

pub mod files;

pub use files::safe_name;

/// The request path of seed 002.
pub const PATH: &str = "/connect-service/v2.1/integration";

/// The answer to every authentication failure (bad or missing token, unknown orgId): one text,
/// so that it does not tell which orgIds exist.
pub const UNAUTHORIZED_MSG: &str = "unknown orgId or missing or invalid `apim-accesstoken`";

/// Code of an authentication failure (bad or missing token, unknown orgId).
pub const UNAUTHORIZED: u32 = 401;

/// The HTTP event upload server.
pub struct HttpSource {
    cfg: HttpSourceConfig,
    validator: Arc<dyn Validator>,
    name: String,
    shutdown_timeout: Duration,
    listener: std::net::TcpListener,
}

impl HttpSource {
    /// Binds `cfg.listen` at once (so the address is known before the pipeline runs); requests
    /// are judged by `validator`; `shutdown_timeout` bounds the wait for in-flight requests.
    pub fn bind(cfg: HttpSourceConfig, validator: Arc<dyn Validator>, shutdown_timeout: Duration) -> Result<HttpSource, SourceError> {
        let name = format!("http:{}", cfg.listen);
        let io = |error| SourceError::Io { source_name: name.clone(), error };
        let listener = std::net::TcpListener::bind(&cfg.listen).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        Ok(HttpSource { cfg, validator, name, shutdown_timeout, listener })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }
}

/// What the handlers share.
struct St {
    name: Arc<str>,
    cfg: HttpSourceConfig,
    validator: Arc<dyn Validator>,
    store: Arc<dyn ObjectStore>,
    /// The URI prefix of stored files: `file://<canonical root>` or `s3://<bucket>`.
    root: String,
    tx: mpsc::Sender<Envelope>,
    seq: AtomicU64,
    forwarded: AtomicU64,
    rejected: AtomicU64,
    received_records: IntCounter,
    received_bytes: IntCounter,
    decode_errors: IntCounter,
    stored_files: IntCounter,
    stored_bytes: IntCounter,
}

/// An answer: HTTP status, code, message, data.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    code: u32,
    msg: String,
    data: Value,
}

impl Reply {
    fn new(code: u32, msg: impl Into<String>) -> Reply {
        let status = match code {
            UNAUTHORIZED => StatusCode::UNAUTHORIZED,
            codes::TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            codes::INTERNAL => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::OK,
        };
        Reply { status, code, msg: msg.into(), data: json!({}) }
    }

    fn bad(msg: impl Into<String>) -> Reply {
        Reply::new(codes::BAD_REQUEST, msg)
    }
}

impl Source for HttpSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run(self: Box<Self>, tx: mpsc::Sender<Envelope>, shutdown: Shutdown) -> BoxFuture<Result<SourceReport, SourceError>> {
        Box::pin(async move {
            let HttpSource { cfg, validator, name, shutdown_timeout, listener } = *self;
            metrics::prime_integration_source(&name, true);
            let io = |error| SourceError::Io { source_name: name.clone(), error };
            let listener = tokio::net::TcpListener::from_std(listener).map_err(io)?;
            let store_err = |e: object_store::Error| SourceError::Other { source_name: name.clone(), message: format!("object store: {e}") };
            let (store, root): (Arc<dyn ObjectStore>, String) = match &cfg.s3 {
                None => {
                    std::fs::create_dir_all(&cfg.files_dir).map_err(io)?;
                    let root = std::fs::canonicalize(&cfg.files_dir).map_err(io)?;
                    (Arc::new(LocalFileSystem::new_with_prefix(&root).map_err(store_err)?), format!("file://{}", root.display()))
                }
                Some(s3) => {
                    let mut b = AmazonS3Builder::from_env().with_bucket_name(&s3.bucket).with_region(&s3.region).with_allow_http(s3.allow_http);
                    if let Some(e) = &s3.endpoint {
                        b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
                    }
                    if let Some(k) = &s3.access_key_id {
                        b = b.with_access_key_id(k);
                    }
                    if let Some(k) = &s3.secret_access_key {
                        b = b.with_secret_access_key(k);
                    }
                    (Arc::new(b.build().map_err(store_err)?), format!("s3://{}", s3.bucket))
                }
            };
            let st = St::new(&name, cfg, validator, store, root, tx);
            let app = app(st.clone());
            tracing::info!(target: "sluice::channel", source = %name, addr = ?listener.local_addr().ok(), "HTTP event upload listening");
            let sd = shutdown.clone();
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move { sd.wait().await }).into_future();
            let deadline = async {
                shutdown.wait().await;
                tokio::time::sleep(shutdown_timeout).await;
            };
            tokio::select! {
                r = serve => r.map_err(io)?,
                () = deadline => tracing::warn!(source = %name, "shutdown: HTTP requests still in flight are dropped (clients retry)"),
            }
            Ok(SourceReport { messages: st.forwarded.load(Ordering::Relaxed), rejected: st.rejected.load(Ordering::Relaxed) })
        })
    }
}

impl St {
    fn new(name: &str, cfg: HttpSourceConfig, validator: Arc<dyn Validator>, store: Arc<dyn ObjectStore>, root: String, tx: mpsc::Sender<Envelope>) -> Arc<St> {
        let counter = |vec: &prometheus::IntCounterVec| vec.with_label_values(&[name]);
        Arc::new(St {
            name: Arc::from(name),
            cfg,
            validator,
            store,
            root,
            tx,
            seq: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            received_records: counter(&metrics::SOURCE_RECEIVED_RECORDS),
            received_bytes: counter(&metrics::SOURCE_RECEIVED_BYTES),
            decode_errors: counter(&metrics::SOURCE_DECODE_ERRORS),
            stored_files: counter(&metrics::INTEGRATION_STORED_FILES),
            stored_bytes: counter(&metrics::INTEGRATION_STORED_BYTES),
        })
    }
}

fn app(st: Arc<St>) -> Router {
    let max_body = st.cfg.max_body_bytes;
    Router::new().route(PATH, post(post_event)).layer(DefaultBodyLimit::max(max_body)).with_state(st)
}

/// The upload's routes as [`HttpSource`] serves them, without a listener: files go to `store`
/// (their URIs start with `root`), accepted requests into `tx` as messages of source `name`. For
/// driving the upload in-process (fuzzing, tests).
pub fn router(name: &str, cfg: HttpSourceConfig, validator: Arc<dyn Validator>, store: Arc<dyn ObjectStore>, root: String, tx: mpsc::Sender<Envelope>) -> Router {
    app(St::new(name, cfg, validator, store, root, tx))
}

async fn post_event(State(st): State<Arc<St>>, Query(q): Query<HashMap<String, String>>, headers: HeaderMap, mp: Result<Multipart, MultipartRejection>) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let org = q.get("orgId").cloned().unwrap_or_default();
    // A panic while handling a request (a bug) is answered 500 like any internal failure,
    // instead of a dropped connection.
    let reply = match futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(handle(&st, &q, &headers, mp))).await {
        Ok(Ok(r) | Err(r)) => r,
        Err(panic) => {
            tracing::error!(source = %st.name, reason = crate::engine::guard::panic_text(&*panic), "handling an HTTP upload panicked");
            Reply::new(codes::INTERNAL, "internal error while handling the request; retry it")
        }
    };
    metrics::INTEGRATION_REQUESTS.with_label_values(&[&reply.code.to_string()]).inc();
    st.received_records.inc();
    if matches!(reply.code, codes::BAD_REQUEST | codes::TOO_LARGE) {
        st.decode_errors.inc();
    }
    tracing::info!(target: "sluice::channel", source = %st.name, org = %org, request_id = %request_id, code = reply.code, "HTTP upload answered");
    if reply.code != codes::OK {
        channel_log::error(ErrorRecord {
            time_ms: chrono::Utc::now().timestamp_millis(),
            source: st.name.to_string(),
            topic: format!("{PATH}?orgId={org}"),
            request_id: Some(Value::String(request_id.clone())),
            stage: "http".into(),
            code: reply.code,
            message: reply.msg.clone(),
        });
    }
    (reply.status, Json(json!({"code": reply.code, "msg": reply.msg, "requestId": request_id, "data": reply.data}))).into_response()
}

async fn handle(st: &St, q: &HashMap<String, String>, headers: &HeaderMap, mp: Result<Multipart, MultipartRejection>) -> Result<Reply, Reply> {
    let Some(org) = q.get("orgId").filter(|o| !o.is_empty()) else {
        return Err(Reply::bad("missing the `orgId` query parameter"));
    };
    // Unknown orgIds are answered like bad tokens, in the same time: the answer does not tell
    // which orgs exist, and the comparison does not tell how much of a token was right.
    let token = headers.get("apim-accesstoken").map(|t| t.as_bytes()).unwrap_or_default();
    // Constant time, and an unknown orgId costs the same as a wrong token.
    if !token_matches(st.cfg.tokens.get(org).map(Vec::as_slice), token) {
        return Err(Reply::new(UNAUTHORIZED, UNAUTHORIZED_MSG));
    }
    match q.get("action").map(String::as_str) {
        Some("postEvent") => {}
        Some(other) => return Err(Reply::bad(format!("the `action` query parameter must be `postEvent`, not `{other}`"))),
        None => return Err(Reply::bad("missing the `action` query parameter (it must be `postEvent`)")),
    }
    let declared = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|&n| n > st.cfg.max_body_bytes) {
        return Err(Reply::new(codes::TOO_LARGE, format!("request body of {n} bytes is larger than {}", st.cfg.max_body_bytes)));
    }
    let mp = mp.map_err(|e| Reply::bad(format!("the body must be multipart/form-data: {e}")))?;
    let (message, uploads) = read_parts(st, mp).await?;
    let message = message.ok_or_else(|| Reply::bad("missing the `enos-message` part"))?;
    // Decoded once, here: the files are stored and the entries rewritten before the rules see
    // the request, and the worker stage reads this document (`Envelope::decoded`).
    metrics::PAYLOAD_DECODES.with_label_values(&["http"]).inc();
    let mut request: Value = serde_json::from_slice(&message).map_err(|e| Reply::bad(format!("malformed JSON in the `enos-message` part: {e}")))?;
    if !request.is_object() {
        return Err(Reply::bad("the `enos-message` part must be a JSON object"));
    }
    let Some(params) = request.get("params").and_then(Value::as_array).cloned() else {
        return Err(Reply::bad("`params` must be an array of entries"));
    };
    let files_meta = match request.get("files") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(Reply::bad("`files` must be an object")),
    };
    check_files(&params, &uploads, &files_meta).map_err(|(code, msg)| Reply::new(code, msg))?;

    let verdicts = match st.validator.validate(TopicKind::IntegrationEvent, "", &Node::from_json(&request)) {
        Validation::Request { code, message } => return Err(Reply::new(code, message)),
        Validation::Entries(v) if v.len() != params.len() => return Err(Reply::new(codes::INTERNAL, format!("the validator judged {} of {} entries", v.len(), params.len()))),
        Validation::Entries(v) => v,
    };
    let mut accepted = Vec::new();
    let mut failed = Vec::new();
    for (i, (entry, verdict)) in params.into_iter().zip(verdicts).enumerate() {
        match verdict {
            EntryVerdict::Accepted => accepted.push(entry),
            EntryVerdict::Rejected { code, message } => failed.push(json!({"index": i, "code": code, "message": message})),
        }
    }
    metrics::INTEGRATION_ENTRIES.with_label_values(&["accepted"]).inc_by(accepted.len() as u64);
    metrics::INTEGRATION_ENTRIES.with_label_values(&["rejected"]).inc_by(failed.len() as u64);
    let outcome = match failed.first() {
        None => Reply::new(codes::OK, "OK"),
        Some(first) => {
            let code = first["code"].as_u64().map_or(codes::INTERNAL, |c| c as u32);
            let msg = format!("{} of {} entries rejected; first: params[{}]: {}", failed.len(), failed.len() + accepted.len(), first["index"], first["message"].as_str().unwrap_or_default());
            Reply { data: json!({"accepted": accepted.len(), "failed": failed}), ..Reply::new(code, msg) }
        }
    };
    if accepted.is_empty() {
        st.rejected.fetch_add(1, Ordering::Relaxed);
        return Ok(outcome);
    }

    // Store the files the accepted entries refer to, then point the entries at them.
    let mut referred = BTreeSet::new();
    for e in &accepted {
        local_refs(e, &mut referred);
    }
    let mut uris = BTreeMap::new();
    let mut files_out = Map::new();
    for u in uploads.iter().filter(|u| referred.contains(&u.name)) {
        let meta = files_meta.get(&u.name).and_then(Value::as_object).cloned().unwrap_or_default();
        let original = meta.get("originalFilename").and_then(Value::as_str).unwrap_or(&u.name);
        let path = object_store::path::Path::from_iter([safe_name(org), uuid::Uuid::new_v4().to_string(), safe_name(original)]);
        st.store.put(&path, PutPayload::from(u.bytes.clone())).await.map_err(|e| Reply::new(codes::INTERNAL, format!("storing file `{}`: {e}", u.name)))?;
        st.stored_files.inc();
        st.stored_bytes.inc_by(u.bytes.len() as u64);
        let uri = format!("{}/{path}", st.root);
        crate::integration::channel_log::stored(crate::integration::channel_log::StoredFile {
            time_ms: chrono::Utc::now().timestamp_millis(),
            source: st.name.to_string(),
            uri: uri.clone(),
            original: original.to_string(),
            bytes: u.bytes.len() as u64,
        });
        let mut m = meta;
        m.insert("md5".into(), json!(u.md5));
        m.insert("fileLength".into(), json!(u.bytes.len()));
        m.insert("uri".into(), json!(uri));
        files_out.insert(u.name.clone(), Value::Object(m));
        uris.insert(u.name.clone(), uri);
    }
    for e in &mut accepted {
        rewrite_refs(e, &uris);
    }
    let pk = accepted.iter().find_map(|e| st.validator.product_key_of(e)).map_or_else(|| "_".to_string(), |p| p.replace(['/', '+', '#'], "_"));
    request["params"] = Value::Array(accepted);
    request["files"] = Value::Object(files_out);
    let topic = format!("sys/{pk}/integration/event/post");
    let meta = Metadata { source: Arc::from(&*st.name), received_ms: chrono::Utc::now().timestamp_millis(), id: st.seq.fetch_add(1, Ordering::Relaxed), ..Metadata::default() };
    // The bytes are what the rules' `payload()` and error records read.
    let msg = Message { topic, payload: serde_json::to_vec(&request).unwrap_or_default().into(), meta };
    let (done_tx, done_rx) = oneshot::channel();
    let ack = Ack::new(move |d| {
        let _ = done_tx.send(d);
    });
    if st.tx.send(Envelope::new(msg, ack).with_decoded(Some(request))).await.is_err() {
        return Err(Reply::new(codes::INTERNAL, "the pipeline is stopping; retry later"));
    }
    st.forwarded.fetch_add(1, Ordering::Relaxed);
    match done_rx.await {
        Ok(Delivery::Delivered) => Ok(outcome),
        Ok(Delivery::Failed(reason)) => Err(Reply { data: json!({"error": reason}), ..Reply::new(codes::INTERNAL, format!("accepted entries not delivered: {reason}")) }),
        Ok(Delivery::Dropped) | Err(_) => Err(Reply::new(codes::INTERNAL, "accepted entries not delivered: the pipeline dropped them")),
    }
}

/// Reads the parts: the `enos-message` bytes (if any) and the file parts.
async fn read_parts(st: &St, mut mp: Multipart) -> Result<(Option<Vec<u8>>, Vec<Upload>), Reply> {
    let mut message = None;
    let mut uploads: Vec<Upload> = Vec::new();
    while let Some(field) = mp.next_field().await.map_err(|e| multipart_error(st, e))? {
        match field.name() {
            Some("enos-message") => {
                if message.is_some() {
                    return Err(Reply::bad("more than one `enos-message` part"));
                }
                message = Some(read_limited(st, field, st.cfg.max_message_bytes, "the `enos-message` part").await?);
            }
            Some("enos-file") => {
                let Some(name) = field.file_name().filter(|n| !n.is_empty()).map(str::to_string) else {
                    return Err(Reply::bad("an `enos-file` part has no filename in its Content-Disposition"));
                };
                if uploads.len() >= st.cfg.max_files {
                    return Err(Reply::new(codes::TOO_LARGE, format!("more than {} `enos-file` parts", st.cfg.max_files)));
                }
                if uploads.iter().any(|u| u.name == name) {
                    return Err(Reply::bad(format!("two `enos-file` parts named `{name}`")));
                }
                let bytes = read_limited(st, field, st.cfg.max_file_bytes, &format!("file `{name}`")).await?;
                let md5 = hex::encode(Md5::digest(&bytes));
                uploads.push(Upload { name, bytes, md5 });
            }
            Some(other) => return Err(Reply::bad(format!("unexpected part `{other}`: only `enos-message` and `enos-file` parts are allowed"))),
            None => return Err(Reply::bad("a part has no name in its Content-Disposition: only `enos-message` and `enos-file` parts are allowed")),
        }
    }
    Ok((message, uploads))
}

async fn read_limited(st: &St, mut field: Field<'_>, limit: usize, what: &str) -> Result<Vec<u8>, Reply> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(st, e))? {
        st.received_bytes.inc_by(chunk.len() as u64);
        if buf.len() + chunk.len() > limit {
            return Err(Reply::new(codes::TOO_LARGE, format!("{what} is larger than {limit} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn multipart_error(st: &St, e: MultipartError) -> Reply {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Reply::new(codes::TOO_LARGE, format!("request body is larger than {} bytes", st.cfg.max_body_bytes))
    } else {
        Reply::bad(format!("malformed multipart body: {e}"))
    }
}
