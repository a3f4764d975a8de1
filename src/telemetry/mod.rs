//! Telemetry: logging setup, Prometheus metrics (all names in [`metrics`]), readiness checks
//! ([`health`]), librdkafka statistics ([`kafka_stats`]) and the admin HTTP server ([`http`]).

pub mod health;
pub mod http;
pub mod kafka_stats;
pub mod metrics;

/// Installs the `tracing` subscriber (key/value text to stderr, colored only on a terminal;
/// `RUST_LOG` filters, default info) and records the process start for the process metrics
/// ([`metrics::init`]).
pub fn init_logging() {
    metrics::init();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).with_target(false).try_init();
}
