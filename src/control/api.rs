//! The rules REST API, served by the admin server under `/api/v1`, behind a bearer token.
//!
//! | method & path | does |
//! | --- | --- |
//! | `GET /api/v1/rules` | list every rule file: name, status, errors |
//! | `POST /api/v1/rules[?name=N]` | create a rule from a rule file's text (the body) |
//! | `GET /api/v1/rules/{name}` | one rule, with its file's text |
//! | `PUT /api/v1/rules/{name}` | replace a rule's text |
//! | `DELETE /api/v1/rules/{name}` | delete a rule (its file) |
//! | `POST /api/v1/rules/{name}/enable`, `…/disable` | set `enabled` in its file |
//! | `POST /api/v1/rules/{name}/test` | run the rule on a sample message (`sluice test`'s path) |
//! | `GET /api/v1/rules/{name}/errors` | compile errors and recent evaluation failures |
//! | `POST /api/v1/test` | test an unsaved rule text on a sample message |
//! | `POST /api/v1/reload` | rescan the rules folder now (as SIGHUP does) |
//! | `GET /api/v1/rules/{name}/history` | the rule's saved versions (`.history/` beside the rules) |
//! | `GET /api/v1/rules/{name}/history/{version}` | one version's text |
//! | `POST /api/v1/rules/{name}/rollback` `{"version"}` | restore a version in one step |
//! | `POST /api/v1/rules/{name}/shadow` | run a candidate text (the body) beside the live rule on live traffic |
//! | `GET /api/v1/rules/{name}/shadow`, `DELETE …` | the shadow run's counts and diffs; stop it |
//! | `POST /api/v1/rules/{name}/shadow/promote` | write the candidate's text to the rule's file (a reload swaps it in) |
//! | `POST /api/v1/check[?file=F]` | check a rule text (the body) as `sluice check` checks file `F` |
//! | `GET /api/v1/functions` | the function registry: signatures, docs, examples |
//! | `GET /api/v1/samples` | the shipped seed-format sample messages |
//! | `GET /api/v1/integration` | the integration channel: replies by code, entries by verdict, recent rejected requests, stored files |
//! | `GET /api/v1/tap`, `POST /api/v1/tap` `{"filter"}`, `DELETE /api/v1/tap[?filter=F]` | live samples: the captures, start one, stop one or all |
//!
//! Writes go to the rules folder (the source of truth) and are reloaded at once; a rule that
//! does not compile is refused with 422 and its `path:line:col` errors, and nothing changes.

use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::control::playground;
use crate::control::store::RuleStore;
use crate::control::view::{ApiErrorBody, ErrorView, Removed, RuleChange, RuleErrors, RuleList, TestAnswer};
use crate::error::StoreError;
use crate::message::{Message, Metadata};
use crate::secret::same_secret;
use crate::telemetry::metrics;
use crate::value::base64_decode;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    store: Arc<RuleStore>,
    token: Option<Arc<str>>,
}

/// The `/api/v1` routes over `store`, protected by `token` (without one, every API request is
/// refused with 403: the API is off).
pub fn router(store: Arc<RuleStore>, token: Option<String>) -> Router {
    let state = ApiState { store, token: token.map(Arc::from) };
    Router::new()
        .route("/api/v1/rules", get(list).post(create))
        .route("/api/v1/rules/{name}", get(get_rule).put(update).delete(delete))
        .route("/api/v1/rules/{name}/enable", post(enable))
        .route("/api/v1/rules/{name}/disable", post(disable))
        .route("/api/v1/rules/{name}/test", post(test_saved))
        .route("/api/v1/rules/{name}/errors", get(errors))
        .route("/api/v1/rules/{name}/history", get(history))
        .route("/api/v1/rules/{name}/history/{version}", get(version))
        .route("/api/v1/rules/{name}/rollback", post(rollback))
        .route("/api/v1/rules/{name}/shadow", get(shadow_get).post(shadow_start).delete(shadow_stop))
        .route("/api/v1/rules/{name}/shadow/promote", post(shadow_promote))
        .route("/api/v1/test", post(test_text))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/check", post(check))
        .route("/api/v1/functions", get(|| async { Json(playground::functions()).into_response() }))
        .route("/api/v1/samples", get(|| async { Json(playground::samples()).into_response() }))
        .route("/api/v1/integration", get(|| async { Json(playground::integration()).into_response() }))
        .route("/api/v1/tap", get(tap_list).post(tap_start).delete(tap_stop))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

async fn auth(State(st): State<ApiState>, headers: HeaderMap, req: Request, next: Next) -> Response {
    let Some(token) = &st.token else {
        metrics::API_REQUESTS.with_label_values(&["auth", "403"]).inc();
        return (StatusCode::FORBIDDEN, Json(ApiErrorBody::new("the rules API is disabled: set [admin] token or token_file, or SLUICE_ADMIN_TOKEN"))).into_response();
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    match given {
        Some(g) if same_secret(g.as_bytes(), token) => next.run(req).await,
        other => {
            metrics::API_REQUESTS.with_label_values(&["auth", "401"]).inc();
            let msg = if other.is_none() { "missing bearer token (Authorization: Bearer <token>)" } else { "invalid bearer token" };
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer realm=\"sluice\"")], Json(ApiErrorBody::new(msg))).into_response()
        }
    }
}

/// An API failure, as a status code and a JSON body.
struct ApiError(StatusCode, ApiErrorBody);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Conflict(..) => StatusCode::CONFLICT,
            StoreError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::BadRequest(_) | StoreError::NoFolder => StatusCode::BAD_REQUEST,
            StoreError::Io { source, .. } if read_only(source) => StatusCode::CONFLICT,
            StoreError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut body = ApiErrorBody::new(e.to_string());
        match &e {
            StoreError::Invalid(errs) => body.errors = errs.iter().map(ErrorView::from).collect(),
            StoreError::Io { source, .. } if read_only(source) => {
                body.hint =
                    Some("the rules folder is read-only here (a Kubernetes ConfigMap mount, say): change the rules where the folder comes from; Sluice reloads them when the files change".into())
            }
            _ => {}
        }
        ApiError(status, body)
    }
}

/// Whether a write failed because the rules folder cannot be written at all (not a passing
/// I/O failure): the request conflicts with how the instance is deployed.
fn read_only(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied)
}

type ApiResult = Result<Response, ApiError>;

/// Runs blocking store work (file I/O, compiling) off the async threads, counting the request.
async fn blocking<T: Send + 'static>(op: &'static str, f: impl FnOnce() -> Result<T, StoreError> + Send + 'static, ok: impl FnOnce(T) -> Response) -> ApiResult {
    let r = tokio::task::spawn_blocking(f).await.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, ApiErrorBody::new(format!("task failed: {e}"))));
    let r = match r {
        Ok(Ok(v)) => Ok(ok(v)),
        Ok(Err(e)) => Err(ApiError::from(e)),
        Err(e) => Err(e),
    };
    let status = match &r {
        Ok(resp) => resp.status(),
        Err(e) => e.0,
    };
    metrics::API_REQUESTS.with_label_values(&[op, status.as_str()]).inc();
    r
}

fn text_body(body: &Bytes) -> Result<String, ApiError> {
    String::from_utf8(body.to_vec()).map_err(|_| ApiError(StatusCode::BAD_REQUEST, ApiErrorBody::new("the body must be a UTF-8 rule file (TOML)")))
}

async fn list(State(st): State<ApiState>) -> ApiResult {
    blocking("list", move || Ok(st.store.list()), |rules| Json(RuleList { rules }).into_response()).await
}

async fn get_rule(State(st): State<ApiState>, UrlPath(name): UrlPath<String>) -> ApiResult {
    blocking("get", move || st.store.get(&name), |r| Json(r).into_response()).await
}

#[derive(Deserialize)]
struct CreateQuery {
    name: Option<String>,
}

async fn create(State(st): State<ApiState>, Query(q): Query<CreateQuery>, body: Bytes) -> ApiResult {
    let text = text_body(&body)?;
    blocking("create", move || st.store.create(q.name.as_deref(), &text), |(rule, reload)| (StatusCode::CREATED, Json(RuleChange { rule, reload })).into_response()).await
}

async fn update(State(st): State<ApiState>, UrlPath(name): UrlPath<String>, body: Bytes) -> ApiResult {
    let text = text_body(&body)?;
    blocking("update", move || st.store.update(&name, &text), |(rule, reload)| Json(RuleChange { rule, reload }).into_response()).await
}

async fn delete(State(st): State<ApiState>, UrlPath(name): UrlPath<String>) -> ApiResult {
    blocking("delete", move || st.store.delete(&name), |reload| Json(Removed { reload }).into_response()).await
}

async fn enable(State(st): State<ApiState>, UrlPath(name): UrlPath<String>) -> ApiResult {
    blocking("enable", move || st.store.set_enabled(&name, true), |(rule, reload)| Json(RuleChange { rule, reload }).into_response()).await
}

async fn disable(State(st): State<ApiState>, UrlPath(name): UrlPath<String>) -> ApiResult {
    blocking("disable", move || st.store.set_enabled(&name, false), |(rule, reload)| Json(RuleChange { rule, reload }).into_response()).await
}

async fn history(State(st): State<ApiState>, UrlPath(name): UrlPath<String>) -> ApiResult {
    blocking("history", move || st.store.history(&name), |h| Json(h).into_response()).await
}

async fn version(State(st): State<ApiState>, UrlPath((name, version)): UrlPath<(String, u64)>) -> ApiResult {
    blocking("history", move || st.store.version(&name, version), move |text| Json(serde_json::json!({"version": version, "text": text})).into_response()).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    version: u64,
}

async fn rollback(State(st): State<ApiState>, UrlPath(name): UrlPath<String>, body: Bytes) -> ApiResult {
    let req: RollbackRequest = serde_json::from_slice(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, ApiErrorBody::new(format!("invalid rollback request (want {{\"version\": N}}): {e}"))))?;
    blocking("rollback", move || st.store.rollback(&name, req.version), |(rule, reload)| Json(RuleChange { rule, reload }).into_response()).await
}

fn no_shadow(name: &str) -> StoreError {
    StoreError::NotFound(format!("shadow run beside `{name}`"))
}

async fn shadow_start(State(st): State<ApiState>, UrlPath(name): UrlPath<String>, body: Bytes) -> ApiResult {
    let text = text_body(&body)?;
    blocking(
        "shadow",
        move || {
            let path = st.store.path_of(&name)?;
            let rule = crate::rule::compile_str(&path, &text).map_err(StoreError::Invalid)?;
            if *rule.name != *name {
                return Err(StoreError::BadRequest(format!("the candidate names the rule `{}`, not `{name}`", rule.name)));
            }
            st.store.engine().start_shadow(rule, &text).map_err(StoreError::BadRequest)
        },
        |r| (StatusCode::CREATED, Json(r)).into_response(),
    )
    .await
}

async fn shadow_get(State(st): State<ApiState>, UrlPath(name): UrlPath<String>) -> ApiResult {
    blocking("shadow", move || st.store.engine().shadow(&name).ok_or_else(|| no_shadow(&name)), |r| Json(r).into_response()).await
}

async fn shadow_stop(State(st): State<ApiState>, UrlPath(name): UrlPath<String>) -> ApiResult {
    blocking("shadow", move || st.store.engine().stop_shadow(&name).ok_or_else(|| no_shadow(&name)), |r| Json(r).into_response()).await
}

async fn shadow_promote(State(st): State<ApiState>, UrlPath(name): UrlPath<String>) -> ApiResult {
    blocking(
        "promote",
        move || {
            let report = st.store.engine().shadow(&name).ok_or_else(|| no_shadow(&name))?;
            let change = st.store.replace(&name, &report.text, "promote")?;
            st.store.engine().stop_shadow(&name);
            Ok(change)
        },
        |(rule, reload)| Json(RuleChange { rule, reload }).into_response(),
    )
    .await
}

async fn reload(State(st): State<ApiState>) -> ApiResult {
    blocking("reload", move || Ok(st.store.reload()), |report| Json(report).into_response()).await
}

async fn errors(State(st): State<ApiState>, UrlPath(name): UrlPath<String>) -> ApiResult {
    blocking(
        "errors",
        move || {
            let rule = st.store.get(&name)?;
            let recent = st.store.engine().recent_errors(&name).iter().filter_map(|e| serde_json::to_value(e).ok()).collect();
            Ok(RuleErrors { rule: name, compile: rule.errors, recent })
        },
        |v| Json(v).into_response(),
    )
    .await
}

#[derive(Deserialize)]
struct FileQuery {
    file: Option<String>,
}

async fn check(Query(q): Query<FileQuery>, body: Bytes) -> ApiResult {
    let text = text_body(&body)?;
    metrics::API_REQUESTS.with_label_values(&["check", "200"]).inc();
    Ok(Json(playground::check(&text, q.file.as_deref())).into_response())
}

async fn tap_list(State(st): State<ApiState>) -> ApiResult {
    let tap = st.store.engine().tap();
    Ok(Json(serde_json::json!({"enabled": tap.enabled(), "captures": tap.captures()})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TapRequest {
    filter: String,
}

async fn tap_start(State(st): State<ApiState>, body: Bytes) -> ApiResult {
    let req: TapRequest = serde_json::from_slice(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, ApiErrorBody::new(format!("invalid tap request: {e}"))))?;
    let tap = st.store.engine().tap();
    match tap.start(&req.filter) {
        Ok(c) => {
            metrics::API_REQUESTS.with_label_values(&["tap", "200"]).inc();
            Ok(Json(c).into_response())
        }
        Err(e) => {
            let status = if tap.enabled() { StatusCode::BAD_REQUEST } else { StatusCode::CONFLICT };
            metrics::API_REQUESTS.with_label_values(&["tap", status.as_str()]).inc();
            Err(ApiError(status, ApiErrorBody::new(e)))
        }
    }
}

#[derive(Deserialize)]
struct TapQuery {
    filter: Option<String>,
}

async fn tap_stop(State(st): State<ApiState>, Query(q): Query<TapQuery>) -> ApiResult {
    st.store.engine().tap().stop(q.filter.as_deref());
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A sample message to test a rule on. The payload is given as text (`payload`), as any JSON
/// value (`payload_json`, sent as its JSON text) or as bytes (`payload_base64`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    /// The message's IoT topic.
    topic: String,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    payload_json: Option<serde_json::Value>,
    #[serde(default)]
    payload_base64: Option<String>,
    /// The clock (ms since the epoch); default: now.
    #[serde(default)]
    now: Option<i64>,
    /// `POST /api/v1/test` only: the rule file's text.
    #[serde(default)]
    rule: Option<String>,
    /// `POST /api/v1/test` only: the file name the text is compiled as (its stem names the
    /// rule; default `<request>`).
    #[serde(default)]
    file: Option<String>,
    /// `POST /api/v1/test` only: a sequence of messages instead of one (the lines of `sluice
    /// test --input`: `{"topic", "payload", "now"}`), for windowed and analytic rules.
    #[serde(default)]
    sequence: Option<String>,
}

impl TestRequest {
    fn message(&self) -> Result<(Message, i64), StoreError> {
        let payload: Vec<u8> = match (&self.payload, &self.payload_json, &self.payload_base64) {
            (Some(p), None, None) => p.clone().into_bytes(),
            (None, Some(j), None) => j.to_string().into_bytes(),
            (None, None, Some(b)) => base64_decode(b).map_err(|e| StoreError::BadRequest(format!("payload_base64: {e}")))?,
            (None, None, None) => Vec::new(),
            _ => return Err(StoreError::BadRequest("give at most one of payload, payload_json and payload_base64".into())),
        };
        let now = self.now.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let meta = Metadata { source: Arc::from("sluice-api-test"), received_ms: now, id: 1, ..Metadata::default() };
        Ok((Message { topic: self.topic.clone(), payload: payload.into(), meta }, now))
    }
}

fn test_response(lines: Vec<String>, matches: bool) -> Response {
    let records: Vec<Box<serde_json::value::RawValue>> = lines.iter().filter_map(|l| serde_json::value::RawValue::from_string(l.clone()).ok()).collect();
    Json(TestAnswer { topic_matches: matches, records, lines }).into_response()
}

fn parse_test(body: &Bytes) -> Result<TestRequest, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, ApiErrorBody::new(format!("invalid test request: {e}"))))
}

async fn test_saved(State(st): State<ApiState>, UrlPath(name): UrlPath<String>, body: Bytes) -> ApiResult {
    let req = parse_test(&body)?;
    blocking(
        "test",
        move || {
            if req.rule.is_some() {
                return Err(StoreError::BadRequest("`rule` is for POST /api/v1/test; this endpoint tests the saved rule".into()));
            }
            let rule = st.store.compile_for_test(&name)?;
            let (msg, now) = req.message()?;
            let matches = rule.filter.matches(&msg.topic);
            Ok((st.store.engine().test_rule(rule, &msg, now).iter().map(|r| r.test_line()).collect(), matches))
        },
        |(lines, m)| test_response(lines, m),
    )
    .await
}

async fn test_text(State(st): State<ApiState>, body: Bytes) -> ApiResult {
    let req = parse_test(&body)?;
    blocking(
        "test",
        move || {
            let text = req.rule.clone().ok_or_else(|| StoreError::BadRequest("`rule` (the rule file's text) is required".into()))?;
            let rule = crate::rule::compile_str(Path::new(req.file.as_deref().unwrap_or("<request>")), &text).map_err(StoreError::Invalid)?;
            if let Some(seq) = &req.sequence {
                let now = req.now.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
                let steps = crate::engine::testing::parse_steps(seq, now, "sluice-api-test").map_err(|(n, e)| StoreError::BadRequest(format!("sequence line {n}: {e}")))?;
                let matches = steps.iter().filter_map(|s| s.msg.as_ref()).any(|m| rule.filter.matches(&m.topic));
                return Ok((st.store.engine().test_sequence(rule, steps).iter().map(|r| r.test_line()).collect(), matches));
            }
            let (msg, now) = req.message()?;
            let matches = rule.filter.matches(&msg.topic);
            Ok((st.store.engine().test_rule(rule, &msg, now).iter().map(|r| r.test_line()).collect(), matches))
        },
        |(lines, m)| test_response(lines, m),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> ApiError {
        ApiError::from(StoreError::Io { path: "rules/a.toml".into(), source: std::io::Error::from(kind) })
    }

    #[test]
    fn a_read_only_rules_folder_is_a_conflict_with_a_hint() {
        for kind in [std::io::ErrorKind::ReadOnlyFilesystem, std::io::ErrorKind::PermissionDenied] {
            let ApiError(status, body) = io(kind);
            assert_eq!(status, StatusCode::CONFLICT, "{kind:?}");
            assert!(body.error.starts_with("rules/a.toml: "), "{body:?}");
            assert!(body.hint.as_deref().is_some_and(|h| h.contains("read-only")), "{body:?}");
        }
        let ApiError(status, body) = io(std::io::ErrorKind::StorageFull);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.hint.is_none());
    }

    #[test]
    fn invalid_rules_answer_422_with_positions() {
        let Err(errs) = crate::rule::compile_str(std::path::Path::new("rules/bad.toml"), "sql = \"SELECT FROM\"") else { panic!("compiled") };
        let ApiError(status, body) = ApiError::from(StoreError::Invalid(errs));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.errors[0].line > 0, "{body:?}");
        // The body the server writes is the body the client reads.
        let back: ApiErrorBody = serde_json::from_str(&serde_json::to_string(&body).unwrap()).unwrap();
        assert_eq!(back, body);
    }
}
