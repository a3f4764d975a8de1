//! The `sluice` command line.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use sluice::config::{parse_timezone, Config, SinkConfig, SourceConfig};
use sluice::engine::pipeline::{Clock, Pipeline};
use sluice::engine::{Engine, EngineOptions, RuleSet, Scratch};
use sluice::message::{Message, Metadata};
use sluice::registry::Registry;
use sluice::rule::expr::Env;
use sluice::shutdown::Shutdown;
use sluice::sink::file::FileSink;
use sluice::sink::kafka::KafkaSink;
use sluice::sink::{OutputRecord, Sink};
use sluice::source::file::FileSource;
use sluice::source::http::HttpSource;
use sluice::source::kafka::KafkaSource;
use sluice::source::mqtt::MqttSource;
use sluice::source::Source;

#[derive(Parser)]
#[command(name = "sluice", version, about = "IoT rule-engine stream processor: SQL rules over topics, routed to Kafka")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile rules; exit 2 printing `path:line:col: message` for each error.
    Check {
        /// Rule files or folders (default: rules/).
        paths: Vec<PathBuf>,
    },
    /// Evaluate one rule on one message, exactly as the engine does; print each output record
    /// as a JSON line.
    Test {
        /// The rule file.
        rule: PathBuf,
        /// The message's IoT topic.
        #[arg(long)]
        topic: String,
        /// The payload file, or `-` for standard input (default: empty payload).
        #[arg(long)]
        payload: Option<String>,
        /// Fix the clock (timestamp functions and the receive time), ms since the epoch.
        #[arg(long)]
        now: Option<i64>,
        /// Time zone of timestamp(): UTC or ±HH:MM.
        #[arg(long, default_value = "UTC")]
        timezone: String,
    },
    /// Run the pipeline described by a configuration file.
    Run {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the function reference (Markdown).
    Functions,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Check { paths } => Ok(check(paths)),
        Cmd::Test { rule, topic, payload, now, timezone } => test(rule, topic, payload, now, &timezone),
        Cmd::Run { config } => run(config),
        Cmd::Functions => {
            print!("{}", sluice::rule::registry::markdown_reference());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(paths: Vec<PathBuf>) -> ExitCode {
    let paths = if paths.is_empty() { vec![PathBuf::from("rules")] } else { paths };
    let (rules, errors) = sluice::rule::compile_paths(&paths);
    for e in &errors {
        eprintln!("{}", e.render());
    }
    if errors.is_empty() {
        println!("{} rule(s) OK", rules.len());
        ExitCode::SUCCESS
    } else {
        eprintln!("{} error(s)", errors.len());
        ExitCode::from(2)
    }
}

fn test(rule_path: PathBuf, topic: String, payload: Option<String>, now: Option<i64>, timezone: &str) -> anyhow::Result<ExitCode> {
    let mut rule = match sluice::rule::compile_file(&rule_path) {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}", e.render());
            }
            return Ok(ExitCode::from(2));
        }
    };
    rule.enabled = true;
    if !rule.filter.matches(&topic) {
        eprintln!("note: topic `{topic}` does not match the rule's filter `{}`", rule.filter.as_str());
    }
    let bytes = match payload.as_deref() {
        None => Vec::new(),
        Some("-") => {
            let mut b = Vec::new();
            std::io::stdin().read_to_end(&mut b).context("reading the payload from standard input")?;
            b
        }
        Some(path) => std::fs::read(path).with_context(|| format!("reading payload file {path}"))?,
    };
    let clock = now.map_or(Clock::System, Clock::Fixed);
    let env = Env { tz: parse_timezone(timezone).map_err(anyhow::Error::msg)?, ..Env::default() };
    let engine = Engine::new(RuleSet::new(vec![rule]), env, EngineOptions::default());
    let now_ms = clock.now_ms();
    let msg = Message { topic, payload: bytes.into(), meta: Metadata { source: Arc::from("sluice-test"), received_ms: now_ms, id: 1, ..Metadata::default() } };
    let mut out = Vec::new();
    engine.process(&msg, now_ms, &mut Scratch::default(), &mut out);
    for rec in &out {
        println!("{}", record_line(rec)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `{"rule", "topic", "key", "headers", "value"}` — the `sluice test` output contract.
fn record_line(rec: &OutputRecord) -> anyhow::Result<String> {
    let value: &serde_json::value::RawValue = serde_json::from_slice(&rec.value)?;
    let headers: serde_json::Map<String, serde_json::Value> = rec.headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    Ok(serde_json::to_string(&serde_json::json!({
        "rule": &*rec.rule,
        "topic": rec.topic,
        "key": rec.key,
        "headers": headers,
        "value": value,
    }))?)
}

fn run(config_path: PathBuf) -> anyhow::Result<ExitCode> {
    sluice::telemetry::init_logging();
    let cfg = Config::load(&config_path)?;
    let (rules, errors) = sluice::rule::compile_paths(&cfg.rules.paths);
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{}", e.render());
        }
        anyhow::bail!("{} rule error(s); nothing was run", errors.len());
    }
    tracing::info!(rules = rules.len(), enabled = rules.iter().filter(|r| r.enabled).count(), "rules compiled");
    let tz = parse_timezone(&cfg.engine.timezone).map_err(anyhow::Error::msg)?;
    let registry = match &cfg.registry {
        None => None,
        Some(r) => {
            let reg = Registry::load(&r.models, r.devices.as_deref()).context("loading the device registry")?.with_timezone(tz);
            let (models, devices) = reg.len();
            tracing::info!(models, devices, "device registry loaded");
            Some(Arc::new(reg))
        }
    };
    let mut env = Env { tz, ..Env::default() };
    if let Some(r) = &registry {
        env.devices = Box::new(r.clone());
    }
    let opts = EngineOptions { default_error_topic: cfg.engine.default_error_topic.clone(), max_payload_bytes: cfg.engine.max_payload_bytes };
    let engine = Arc::new(Engine::new(RuleSet::new(rules), env, opts));
    let shutdown_timeout = std::time::Duration::from_millis(cfg.engine.shutdown_timeout_ms);
    let Config { sources, sink, engine: engine_cfg, admin, .. } = cfg;
    // Integration requests are validated by the device registry when one is configured.
    let validator: Arc<dyn sluice::integration::Validator> = match &registry {
        Some(r) => r.clone(),
        None => Arc::new(sluice::integration::AcceptAll),
    };
    let sources: Vec<Box<dyn Source>> = sources
        .into_iter()
        .map(|s| -> anyhow::Result<Box<dyn Source>> {
            Ok(match s {
                SourceConfig::File { path } => Box::new(FileSource::new(path)),
                SourceConfig::Kafka(k) => Box::new(KafkaSource::new(k, shutdown_timeout)),
                SourceConfig::Mqtt(m) => Box::new(MqttSource::new(m, validator.clone(), shutdown_timeout)),
                SourceConfig::Http(h) => Box::new(HttpSource::bind(h, validator.clone(), shutdown_timeout)?),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let sink: Box<dyn Sink> = match sink {
        SinkConfig::File { dir } => Box::new(FileSink::new(dir)),
        SinkConfig::Kafka(k) => Box::new(KafkaSink::new(k, engine_cfg.default_error_topic.clone())),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The admin server stays up while the pipeline drains, and stops with it.
    let admin_stop = Shutdown::new();
    if let Some(a) = &admin {
        let listener = rt.block_on(tokio::net::TcpListener::bind(&a.listen)).with_context(|| format!("admin server: cannot listen on {}", a.listen))?;
        let stop = admin_stop.clone();
        rt.spawn(async move {
            if let Err(e) = sluice::telemetry::http::serve(listener, stop).await {
                tracing::error!(error = %e, "admin HTTP server failed");
            }
        });
    }
    let report = rt.block_on(async {
        let shutdown = Shutdown::new();
        shutdown.on_signals();
        let pipeline = Pipeline { engine, sources, sink, capacity: engine_cfg.channel_capacity, workers: engine_cfg.workers, clock: Clock::System, registry };
        // After a signal, the pipeline has `shutdown_timeout` to drain, flush and commit.
        let deadline = async {
            shutdown.wait().await;
            tokio::time::sleep(shutdown_timeout).await;
        };
        tokio::select! {
            r = pipeline.run(shutdown.clone()) => Some(r),
            () = deadline => None,
        }
    });
    admin_stop.trigger();
    let Some(report) = report else {
        tracing::warn!(timeout_ms = engine_cfg.shutdown_timeout_ms, "shutdown timeout: exiting with work in flight (not committed: it is read again on restart)");
        rt.shutdown_timeout(std::time::Duration::from_millis(100));
        return Ok(ExitCode::SUCCESS);
    };
    let report = report?;
    for (name, r) in &report.sources {
        tracing::info!(source = %name, messages = r.messages, rejected = r.rejected, "source done");
    }
    tracing::info!(records = report.sink.records, error_records = report.sink.error_records, bytes = report.sink.bytes, "sink flushed");
    println!("{} message(s) in, {} record(s) out ({} error record(s))", report.sources.iter().map(|(_, r)| r.messages + r.rejected).sum::<u64>(), report.sink.records, report.sink.error_records);
    Ok(ExitCode::SUCCESS)
}
