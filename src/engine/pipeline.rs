//! The running pipeline: sources → bounded channel → engine workers (each running the
//! [`WorkerStage`]) → bounded channel → sink.
//!
//! Every channel is bounded, so a slow sink blocks the workers, which block the sources:
//! backpressure, never drops. Shutdown: the sources stop, the workers drain what is queued, the
//! sink flushes, and acks let sources commit.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::devices::Registry;
use crate::engine::process::Engine;
use crate::engine::stage::WorkerStage;
use crate::error::{SinkError, SourceError};
use crate::flow::{Batch, Envelope};
use crate::shutdown::Shutdown;
use crate::sink::{Sink, SinkReport};
use crate::source::{Source, SourceReport};
use crate::telemetry::{health, metrics};

pub use crate::engine::types::Clock;

/// What a pipeline run did.
#[derive(Debug, Default)]
pub struct PipelineReport {
    /// Per source.
    pub sources: Vec<(String, SourceReport)>,
    /// The sink.
    pub sink: SinkReport,
}

/// A pipeline failure.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A task panicked or was cancelled.
    #[error("task failed: {0}")]
    Task(String),
}

/// A pipeline ready to run.
pub struct Pipeline {
    /// The engine (shared: reloads swap its rules while running).
    pub engine: Arc<Engine>,
    /// The sources.
    pub sources: Vec<Box<dyn Source>>,
    /// The sink.
    pub sink: Box<dyn Sink>,
    /// Channel capacity between stages.
    pub capacity: usize,
    /// Engine workers.
    pub workers: usize,
    /// The clock.
    pub clock: Clock,
    /// The device registry, kept current from data-flow messages (lifecycle, topology, status)
    /// before the rules see them.
    pub registry: Option<Arc<Registry>>,
}

impl Pipeline {
    /// Runs until every source ends (or shutdown stops them), then drains and flushes.
    pub async fn run(self, shutdown: Shutdown) -> Result<PipelineReport, PipelineError> {
        let set = self.engine.rules();
        let enabled = set.rules().iter().filter(|r| r.enabled).count();
        health::set("rules", true, format!("{} rules loaded, {enabled} enabled", set.rules().len()));
        drop(set);
        health::set("pipeline", true, "running");
        metrics::prime_engine();
        let stopping = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.wait().await;
                health::set("pipeline", false, "shutting down");
            })
        };
        let cap = self.capacity.max(1);
        let (src_tx, mut src_rx) = mpsc::channel::<Envelope>(cap);
        let (sink_tx, sink_rx) = mpsc::channel::<Batch>(cap);

        // A sink or source that fails or panics stops the whole pipeline (and so the process,
        // with an error) instead of leaving the other stages running against a dead end.
        let sink_task = tokio::spawn(stop_on_failure(tokio::spawn(self.sink.run(sink_rx)), "sink".to_string(), shutdown.clone()));

        // Workers, each with its own bounded queue; a router spreads messages by topic so one
        // topic's messages stay in order.
        let workers = self.workers.max(1);
        let mut worker_txs = Vec::with_capacity(workers);
        let mut worker_tasks = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = mpsc::channel::<Envelope>(cap);
            worker_txs.push(tx);
            worker_tasks.push(tokio::spawn(worker(w, self.engine.clone(), self.registry.clone(), rx, sink_tx.clone(), self.clock)));
        }
        // The window timer: closes the windows the clock closes (processing-time ends, silent
        // keys) with no input needed; their records go to the sink like a message's outputs.
        let ticker = tokio::spawn(window_timer(self.engine.clone(), sink_tx.clone(), self.clock));
        // For the windows still open when a bounded input ends.
        let final_tx = sink_tx.clone();
        let stop_checkpoints = Arc::new(tokio::sync::Notify::new());
        let checkpoints = self.engine.checkpoints().cloned().map(|c| tokio::spawn(checkpointer(self.engine.clone(), c, stop_checkpoints.clone())));
        drop(sink_tx);
        let router = tokio::spawn(async move {
            while let Some(env) = src_rx.recv().await {
                let i = if worker_txs.len() == 1 { 0 } else { topic_shard(&env.msg.topic, worker_txs.len()) };
                if worker_txs[i].send(env).await.is_err() {
                    break;
                }
            }
        });

        let mut source_tasks = Vec::new();
        for s in self.sources {
            let name = s.name();
            let task = tokio::spawn(s.run(src_tx.clone(), shutdown.clone()));
            source_tasks.push((name.clone(), tokio::spawn(stop_on_failure(task, format!("source {name}"), shutdown.clone()))));
        }
        drop(src_tx);

        let mut report = PipelineReport::default();
        let mut first_err: Option<PipelineError> = None;
        for (name, t) in source_tasks {
            match t.await.unwrap_or_else(Err) {
                Ok(Ok(r)) => report.sources.push((name, r)),
                Ok(Err(e)) => {
                    tracing::error!(source = %name, error = %e, "source failed");
                    first_err.get_or_insert(e.into());
                }
                Err(e) => {
                    first_err.get_or_insert(PipelineError::Task(e.to_string()));
                }
            }
        }
        router.await.map_err(|e| PipelineError::Task(e.to_string()))?;
        for t in worker_tasks {
            t.await.map_err(|e| PipelineError::Task(e.to_string()))?;
        }
        ticker.abort();
        let _ = ticker.await;
        // Every source ended by itself (bounded input, not a shutdown): the open windows close.
        if !shutdown.is_triggered() && first_err.is_none() {
            let now = self.clock.now_ms();
            send_window_batches(&final_tx, window_batches(&self.engine, |e| e.flush_windows(now))).await;
        }
        drop(final_tx);
        // The last checkpoint: everything the workers did is cut, written once delivered.
        if let Some(c) = checkpoints {
            stop_checkpoints.notify_one();
            let _ = c.await;
        }
        report.sink = sink_task.await.unwrap_or_else(Err).map_err(|e| PipelineError::Task(format!("sink: {e}")))??;
        stopping.abort();
        health::set("pipeline", false, "stopped");
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// Awaits a stage's task; when it fails (an error or a panic) before shutdown was requested, it
/// requests shutdown so the other stages stop too.
async fn stop_on_failure<T, E: std::fmt::Display>(task: tokio::task::JoinHandle<Result<T, E>>, stage: String, shutdown: Shutdown) -> Result<Result<T, E>, tokio::task::JoinError> {
    let r = task.await;
    let failure = match &r {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(reason) = failure {
        if !shutdown.is_triggered() {
            tracing::error!(%stage, %reason, "a pipeline stage failed: stopping the pipeline");
            health::set("pipeline", false, format!("{stage} failed: {reason}"));
            shutdown.trigger();
        }
    }
    r
}

fn topic_shard(topic: &str, n: usize) -> usize {
    // FNV-1a: cheap and stable across runs.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}

/// How often the window timer looks at the clock: a processing-time window or an idle key's
/// window is emitted at most this late.
pub const WINDOW_TICK: std::time::Duration = std::time::Duration::from_millis(200);

async fn window_timer(engine: Arc<Engine>, tx: mpsc::Sender<Batch>, clock: Clock) {
    let mut every = tokio::time::interval(WINDOW_TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        if !send_window_batches(&tx, window_batches(&engine, |e| e.tick(clock.now_ms()))).await {
            return;
        }
    }
}

/// The batches of the windows `close` closes, one per key's topic. With durable state the
/// closes happen inside the state gate, and the checkpoint that forgets the closed windows
/// waits until their records are delivered.
fn window_batches(engine: &Engine, close: impl FnOnce(&Engine) -> Vec<(String, Vec<crate::flow::OutputRecord>)>) -> Vec<Batch> {
    let checkpoints = engine.checkpoints();
    let _gate = checkpoints.map(|c| c.share());
    close(engine).into_iter().map(|(topic, records)| Batch { iot_topic: topic, records, ack: checkpoints.map_or_else(crate::flow::Ack::none, |c| c.hold_output()) }).collect()
}

/// Sends window batches to the sink, counting their records; false if the sink stopped.
async fn send_window_batches(tx: &mpsc::Sender<Batch>, batches: Vec<Batch>) -> bool {
    for batch in batches {
        let failed = batch.records.iter().filter(|r| r.is_error).count() as u64;
        metrics::OUTPUT_RECORDS.with_label_values(&["error"]).inc_by(failed);
        metrics::OUTPUT_RECORDS.with_label_values(&["data"]).inc_by(batch.records.len() as u64 - failed);
        if tx.send(batch).await.is_err() {
            return false;
        }
    }
    true
}

/// Checkpoints the durable state every interval until `stop`, then once more (after the
/// workers have drained): each cut waits for its outputs' delivery, is written, and releases
/// its inputs' acknowledgements.
async fn checkpointer(engine: Arc<Engine>, checkpoints: Arc<crate::state::Checkpoints>, stop: Arc<tokio::sync::Notify>) {
    let mut last = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(checkpoints.interval()) => {}
            _ = stop.notified() => last = true,
        }
        checkpoints.cut(|| engine.state_snapshot());
        loop {
            match checkpoints.complete().await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    // The state could not be made durable: its inputs stay unacknowledged
                    // (their acks are released as not delivered), and the source reads them
                    // again after a restart.
                    tracing::error!(error = %e, "state checkpoint failed");
                    health::set("state", false, format!("checkpoint failed: {e}"));
                    break;
                }
            }
        }
        if last {
            return;
        }
    }
}

/// Batches a worker holds at most before it hands them to the sink.
const SEND_BURST: usize = 64;

async fn worker(id: usize, engine: Arc<Engine>, registry: Option<Arc<Registry>>, mut rx: mpsc::Receiver<Envelope>, tx: mpsc::Sender<Batch>, clock: Clock) {
    let mut stage = WorkerStage::new(id, engine, registry, clock);
    // The batches of the messages processed since the last hand-over. While messages are
    // queued they are processed first, then handed over together: the sink wakes once per
    // burst rather than once per message.
    let mut ready: Vec<Batch> = Vec::with_capacity(SEND_BURST);
    loop {
        // The per-rule counts reach the shared metrics whenever the worker runs out of work.
        let env = match rx.try_recv() {
            Ok(env) => env,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                if !hand_over(id, &mut ready, &tx).await {
                    break;
                }
                stage.idle();
                match rx.recv().await {
                    Some(env) => env,
                    None => break,
                }
            }
        };
        if let Some(batch) = stage.handle(env) {
            ready.push(batch);
        }
        if ready.len() >= SEND_BURST && !hand_over(id, &mut ready, &tx).await {
            break;
        }
    }
    // What is left (nothing if the sink stopped: a failed hand-over drops the rest).
    hand_over(id, &mut ready, &tx).await;
    stage.idle();
}

/// Sends the ready batches to the sink, in order, leaving `ready` empty; `false` if the sink
/// stopped (the batches not sent are dropped: their acks report them as not delivered).
async fn hand_over(id: usize, ready: &mut Vec<Batch>, tx: &mpsc::Sender<Batch>) -> bool {
    for batch in ready.drain(..) {
        if tx.send(batch).await.is_err() {
            tracing::error!(worker = id, "sink stopped; worker exits");
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineOptions, RuleSet};
    use crate::error::SinkError;
    use crate::flow::Batch;
    use crate::flow::BoxFuture;
    use crate::rule::expr::Env;
    use crate::source::file::FileSource;
    use std::sync::Mutex;

    struct Keep(Arc<Mutex<Vec<crate::flow::OutputRecord>>>);

    impl Sink for Keep {
        fn run(self: Box<Self>, mut rx: mpsc::Receiver<Batch>) -> BoxFuture<Result<SinkReport, SinkError>> {
            Box::pin(async move {
                while let Some(b) = rx.recv().await {
                    self.0.lock().unwrap().extend(b.records);
                    b.ack.done(crate::flow::Delivery::Delivered);
                }
                Ok(SinkReport::default())
            })
        }
    }

    /// A panic injected into a rule, on every other message: each becomes an error record of
    /// stage `panic`, and every message after it is processed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_rule_does_not_stop_the_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let lines: Vec<String> = (0..20).map(|i| format!(r#"{{"topic":"/sys/pk/d{i}/thing/event/property/post","payload":{{"k":"{}"}}}}"#, if i % 2 == 0 { "boom" } else { "ok" })).collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        let rule = crate::rule::compile_str(std::path::Path::new("p.toml"), "sql = \"\"\"SELECT attribute(k) AS a FROM \"/sys/+/+/thing/event/property/post\" \"\"\"\n[[actions]]\ntopic = \"out\"\n")
            .unwrap();
        let env = Env { devices: Box::new(crate::engine::tests::Panicking), ..Env::default() };
        let engine = Arc::new(Engine::new(RuleSet::new(vec![rule]), env, EngineOptions::default()));
        let kept = Arc::new(Mutex::new(Vec::new()));
        let pipeline = Pipeline { engine, sources: vec![Box::new(FileSource::new(&path))], sink: Box::new(Keep(kept.clone())), capacity: 4, workers: 2, clock: Clock::Fixed(1), registry: None };
        pipeline.run(Shutdown::new()).await.expect("the pipeline ends normally");
        let kept = kept.lock().unwrap();
        let (errors, data): (Vec<_>, Vec<_>) = kept.iter().partition(|r| r.is_error);
        assert_eq!((errors.len(), data.len()), (10, 10), "{kept:?}");
        assert!(errors.iter().all(|r| r.headers.iter().any(|(k, v)| k == "sluice-error-stage" && v == "panic")));
        assert!(data.iter().all(|r| r.value == br#"{"a":"ok"}"#));
    }
}
