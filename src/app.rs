//! The production assembly: a [`Config`] becomes a running topology. `sluice run` and the
//! integration tests build the same [`App`], so the tests run what ships.
//!
//! [`App::build`] does everything that can fail before any message moves: it loads the device
//! registry, compiles the rules once (into the rule store that then owns them), builds every
//! source and the sink, and binds the listeners (port 0 picks a free port; the bound
//! addresses are readable before [`App::run`]). [`App::run`] serves the admin server, starts
//! the reloader and runs the pipeline until its sources end or shutdown drains it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{parse_timezone, Config, SinkConfig, SourceConfig};
use crate::control::watch::spawn_reloader;
use crate::control::RuleStore;
use crate::devices::{Registry, RegistryError};
use crate::engine::pipeline::{Clock, Pipeline, PipelineError, PipelineReport};
use crate::engine::{Engine, EngineOptions, RuleSet};
use crate::error::CompileError;
use crate::integration::{AcceptAll, Validator};
use crate::rule::expr::Env;
use crate::shutdown::Shutdown;
use crate::sink::file::FileSink;
use crate::sink::kafka::KafkaSink;
use crate::sink::Sink;
use crate::source::file::FileSource;
use crate::source::http::HttpSource;
use crate::source::kafka::KafkaSource;
use crate::source::mqtt::MqttSource;
use crate::source::Source;

/// Why an app could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Rule files do not compile (each error renders as `path:line:col: message`).
    #[error("{} rule error(s); nothing was run", .0.len())]
    Rules(Vec<CompileError>),
    /// A configured value is wrong.
    #[error("{0}")]
    Config(String),
    /// The device registry could not be loaded.
    #[error("loading the device registry")]
    Registry(#[source] RegistryError),
    /// A source could not be built (e.g. its listener cannot bind).
    #[error(transparent)]
    Source(#[from] crate::error::SourceError),
    /// The admin server cannot listen.
    #[error("admin server: cannot listen on {listen}")]
    Admin {
        /// The configured address.
        listen: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state store could not be opened or restored.
    #[error("state store")]
    State(#[source] crate::state::StoreError),
    /// The pipeline failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// How a run ended.
#[derive(Debug)]
pub enum RunOutcome {
    /// Every source ended (or shutdown stopped them) and everything in flight was drained,
    /// flushed and committed.
    Finished(PipelineReport),
    /// After shutdown was requested, draining took longer than `engine.shutdown_timeout_ms`:
    /// what was in flight is not committed and is read again on restart.
    TimedOut,
}

/// Parts that replace what the configuration would build: for embedders and tests (a
/// validator that fails on purpose, a sink that keeps what it gets). Everything else is built
/// from the configuration as `sluice run` builds it.
#[derive(Default)]
pub struct Parts {
    /// Judges integration requests (MQTT channel, HTTP upload) instead of the device registry
    /// (which still observes data-flow messages and serves the rule functions).
    pub validator: Option<Arc<dyn Validator>>,
    /// Receives the output batches instead of the configured `[sink]`, which is then not
    /// built.
    pub sink: Option<Box<dyn Sink>>,
}

/// The admin server, bound.
struct Admin {
    listener: std::net::TcpListener,
    api: axum::Router,
}

/// A topology ready to run.
pub struct App {
    engine: Arc<Engine>,
    store: Arc<RuleStore>,
    registry: Option<Arc<Registry>>,
    sources: Vec<Box<dyn Source>>,
    sink: Box<dyn Sink>,
    admin: Option<Admin>,
    admin_addr: Option<SocketAddr>,
    http_addrs: Vec<SocketAddr>,
    watch: bool,
    debounce: Duration,
    capacity: usize,
    workers: usize,
    shutdown_timeout: Duration,
    clock: Clock,
}

impl App {
    /// Builds the topology `cfg` describes; nothing runs yet. Fails, before any input is read,
    /// when a rule does not compile, the registry cannot load, or a listener cannot bind.
    pub fn build(cfg: Config) -> Result<App, AppError> {
        App::build_with(cfg, Parts::default())
    }

    /// [`App::build`] with `parts` in place of what the configuration would build.
    pub fn build_with(cfg: Config, parts: Parts) -> Result<App, AppError> {
        let tz = parse_timezone(&cfg.engine.timezone).map_err(AppError::Config)?;
        let registry = match &cfg.registry {
            None => None,
            Some(r) => {
                let reg = Registry::load(&r.models, r.devices.as_deref()).map_err(AppError::Registry)?.with_timezone(tz);
                let (models, devices) = reg.len();
                tracing::info!(models, devices, "device registry loaded");
                Some(Arc::new(reg))
            }
        };
        let mut env = Env { tz, ..Env::default() };
        if let Some(r) = &registry {
            env.devices = Box::new(r.clone());
        }
        let opts = EngineOptions {
            default_error_topic: cfg.engine.default_error_topic.clone(),
            max_payload_bytes: cfg.engine.max_payload_bytes,
            rule_metrics: cfg.engine.rule_metrics,
            error_payload_max_bytes: cfg.engine.error_payload_max_bytes,
        };
        // The rule store owns the rules: it compiles them once, here, and on every change.
        let engine = Arc::new(Engine::new(RuleSet::new(Vec::new()), env, opts));
        engine.set_tap(cfg.engine.tap.clone());
        let store = Arc::new(RuleStore::new(cfg.rules.paths.clone(), engine.clone()));
        let loaded = store.load().map_err(AppError::Rules)?;
        let enabled = engine.rules().rules().iter().filter(|r| r.enabled).count();
        tracing::info!(rules = loaded.rules, enabled, "rules compiled");
        if let Some(st) = &cfg.state {
            let store = crate::state::StateStore::open(&st.dir).map_err(AppError::State)?;
            engine.attach_state(store, Duration::from_millis(st.checkpoint_interval_ms.max(1)), registry.clone()).map_err(AppError::State)?;
            crate::telemetry::health::set("state", true, format!("state store in {}", st.dir.display()));
        }

        let shutdown_timeout = Duration::from_millis(cfg.engine.shutdown_timeout_ms);
        // Integration requests are validated by the device registry when one is configured.
        let validator: Arc<dyn Validator> = match (parts.validator, &registry) {
            (Some(v), _) => v,
            (None, Some(r)) => r.clone(),
            (None, None) => Arc::new(AcceptAll),
        };
        let mut http_addrs = Vec::new();
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        for s in cfg.sources {
            sources.push(match s {
                SourceConfig::File { path } => Box::new(FileSource::new(path)),
                SourceConfig::Kafka(k) => {
                    if cfg.state.is_some() {
                        let log = crate::state::changelog::Changelog::new(k.changelog_topic(), k.changelog_config()).map_err(AppError::State)?;
                        engine.attach_changelog(&KafkaSource::source_name(&k), log);
                    }
                    let source = KafkaSource::new(k, shutdown_timeout);
                    Box::new(if cfg.state.is_some() { source.with_state(engine.clone()) } else { source })
                }
                SourceConfig::Mqtt(m) => Box::new(MqttSource::new(m, validator.clone(), shutdown_timeout)),
                SourceConfig::Http(h) => {
                    let src = HttpSource::bind(h, validator.clone(), shutdown_timeout)?;
                    http_addrs.push(src.local_addr());
                    Box::new(src)
                }
            });
        }
        let sink: Box<dyn Sink> = match (parts.sink, cfg.sink) {
            (Some(s), _) => s,
            (None, SinkConfig::File { dir, append, fsync }) => Box::new(FileSink::new(dir).append(append).fsync(fsync)),
            (None, SinkConfig::Kafka(k)) => Box::new(KafkaSink::new(k, cfg.engine.default_error_topic.clone())),
        };
        let admin = match &cfg.admin {
            None => None,
            Some(a) => {
                let token = a.resolve_token().map_err(AppError::Config)?;
                if token.is_none() {
                    tracing::warn!("no admin token: the rules API is disabled (set [admin] token_file, token or SLUICE_ADMIN_TOKEN)");
                }
                let bind_err = |source| AppError::Admin { listen: a.listen.clone(), source };
                let listener = std::net::TcpListener::bind(&a.listen).map_err(bind_err)?;
                listener.set_nonblocking(true).map_err(bind_err)?;
                let mut api = crate::control::api::router(store.clone(), token);
                if a.console {
                    api = api.merge(crate::control::console::router());
                }
                Some(Admin { listener, api })
            }
        };
        let admin_addr = admin.as_ref().and_then(|a| a.listener.local_addr().ok());
        Ok(App {
            engine,
            store,
            registry,
            sources,
            sink,
            admin,
            admin_addr,
            http_addrs,
            watch: cfg.rules.watch,
            debounce: cfg.rules.debounce(),
            capacity: cfg.engine.channel_capacity,
            workers: cfg.engine.workers,
            shutdown_timeout,
            clock: Clock::System,
        })
    }

    /// The admin server's bound address, when one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The bound addresses of the HTTP upload sources, in configuration order.
    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http_addrs
    }

    /// The engine (its rules, recent errors).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The rule store.
    pub fn store(&self) -> &Arc<RuleStore> {
        &self.store
    }

    /// How long a graceful stop may take (`engine.shutdown_timeout_ms`).
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// Replaces the clock (receive times, timestamp functions): for tests.
    pub fn with_clock(mut self, clock: Clock) -> App {
        self.clock = clock;
        self
    }

    /// Runs until every source ends, or `shutdown` fires and the pipeline drains; after a
    /// shutdown request the drain has `shutdown_timeout` before the run gives up
    /// ([`RunOutcome::TimedOut`]). Must be called within a Tokio runtime. The admin server
    /// stays up while the pipeline drains, and stops with it.
    pub async fn run(self, shutdown: Shutdown) -> Result<RunOutcome, AppError> {
        let admin_stop = Shutdown::new();
        if let Some(a) = self.admin {
            let listen = self.admin_addr.map(|a| a.to_string()).unwrap_or_default();
            let listener = tokio::net::TcpListener::from_std(a.listener).map_err(|source| AppError::Admin { listen, source })?;
            let stop = admin_stop.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::telemetry::http::serve_with(listener, stop, a.api).await {
                    tracing::error!(error = %e, "admin HTTP server failed");
                }
            });
        }
        let _reloader = spawn_reloader(self.store.clone(), self.watch, self.debounce, shutdown.clone());
        let pipeline = Pipeline { engine: self.engine, sources: self.sources, sink: self.sink, capacity: self.capacity, workers: self.workers, clock: self.clock, registry: self.registry };
        let timeout = self.shutdown_timeout;
        let deadline = async {
            shutdown.wait().await;
            tokio::time::sleep(timeout).await;
        };
        let outcome = tokio::select! {
            r = pipeline.run(shutdown.clone()) => r.map(RunOutcome::Finished),
            () = deadline => Ok(RunOutcome::TimedOut),
        };
        admin_stop.trigger();
        Ok(outcome?)
    }
}
