//! The admin HTTP server: `GET /metrics` (Prometheus text format), `GET /healthz` (alive),
//! `GET /readyz` (ready: 200, else 503, with every check as JSON, see [`health`]) and
//! `GET /integration/errors` (the integration channel's most recent error records, newest last,
//! as JSON). Enabled by an `[admin]` section in the configuration.

use std::net::SocketAddr;

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::integration::channel_log;
use crate::shutdown::Shutdown;
use crate::telemetry::{health, metrics};

/// The admin routes.
pub fn router() -> Router {
    Router::new()
        .route("/metrics", get(|| async { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], metrics::render()) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/integration/errors", get(|| async { Json(channel_log::recent_errors()).into_response() }))
}

/// 200 when every readiness check passes, else 503; the body lists the checks.
async fn readyz() -> axum::response::Response {
    let report = health::report();
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report)).into_response()
}

/// Serves the admin routes on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, shutdown: Shutdown) -> std::io::Result<()> {
    serve_with(listener, shutdown, Router::new()).await
}

/// Serves the admin routes plus `extra` (the rules API) on `listener` until `shutdown` fires.
pub async fn serve_with(listener: TcpListener, shutdown: Shutdown, extra: Router) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "admin HTTP server listening");
    axum::serve(listener, router().merge(extra)).with_graceful_shutdown(async move { shutdown.wait().await }).await
}
