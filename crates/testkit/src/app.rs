//! The production assembly in process: a configuration (a TOML table) built by
//! [`sluice::app::App::build`], as `sluice run` builds it (optionally with a validator or a sink
//! of the test's own: [`sluice::app::Parts`]), and run on a runtime of its own until
//! [`InProcess::stop`] (or drop).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sluice::app::{App, AppError, Parts, RunOutcome};
use sluice::config::Config;
use sluice::shutdown::Shutdown;

/// A running [`App`].
pub struct InProcess {
    rt: Option<tokio::runtime::Runtime>,
    shutdown: Shutdown,
    handle: Option<tokio::task::JoinHandle<Result<RunOutcome, AppError>>>,
    /// The admin server's bound address (`[admin] listen` may be port 0).
    pub admin_addr: Option<SocketAddr>,
    /// The HTTP upload sources' bound addresses.
    pub http_addrs: Vec<SocketAddr>,
}

impl InProcess {
    /// Parses `config` with Sluice's own parser, builds the app and runs it.
    pub fn start(config: &toml::Table) -> InProcess {
        InProcess::start_with(config, Parts::default())
    }

    /// [`InProcess::start`] with `parts` (a validator or a sink of the test's own) in place of
    /// what the configuration would build ([`App::build_with`]).
    pub fn start_with(config: &toml::Table, parts: Parts) -> InProcess {
        let text = toml::to_string(config).expect("serialize the configuration");
        let cfg = Config::parse(Path::new("test.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let app = App::build_with(cfg, parts).unwrap_or_else(|e| panic!("App::build: {e}"));
        let (admin_addr, http_addrs) = (app.admin_addr(), app.http_addrs().to_vec());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let shutdown = Shutdown::new();
        let handle = rt.spawn(app.run(shutdown.clone()));
        InProcess { rt: Some(rt), shutdown, handle: Some(handle), admin_addr, http_addrs }
    }

    /// Runs `f` to completion on the app's runtime (a client of the app, say).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().expect("running").block_on(f)
    }

    /// Triggers shutdown and waits for the run to end (at most 15 s).
    pub fn stop(mut self) -> Result<RunOutcome, AppError> {
        self.stop_inner().expect("the app stops within 15 s")
    }

    /// Waits up to `timeout` for the run to end by itself (no shutdown requested): its result,
    /// or `None` when it still runs.
    pub fn wait_end(&mut self, timeout: Duration) -> Option<Result<RunOutcome, AppError>> {
        let (rt, handle) = (self.rt.as_ref()?, self.handle.as_mut()?);
        let r = rt.block_on(async { tokio::time::timeout(timeout, handle).await }).ok()?.expect("app task");
        self.handle = None;
        Some(r)
    }

    fn stop_inner(&mut self) -> Option<Result<RunOutcome, AppError>> {
        self.shutdown.trigger();
        let (rt, handle) = (self.rt.take()?, self.handle.take()?);
        let r = rt.block_on(async { tokio::time::timeout(Duration::from_secs(15), handle).await }).ok().map(|j| j.expect("app task"));
        rt.shutdown_timeout(Duration::from_secs(1));
        r
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}
