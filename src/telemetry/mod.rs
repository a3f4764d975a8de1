//! Telemetry: logging setup, Prometheus metrics (all names in [`metrics`]), readiness checks
//! ([`health`]), librdkafka statistics ([`kafka_stats`]) and the admin HTTP server ([`http`]).

pub mod config;
pub mod health;
pub mod http;
pub mod kafka_stats;
pub mod metrics;

/// The format of log lines on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `timestamp LEVEL message key=value …`, colored only on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields` (`message` and the key/values)
    /// and the enclosing `span`s, for log collectors.
    Json,
}

/// Installs the `tracing` subscriber (stderr, in `format`; `RUST_LOG` filters, default info) and
/// records the process start for the process metrics ([`metrics::init`]).
pub fn init_logging(format: LogFormat) {
    metrics::init();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}
