//! The `sluice` command line.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use sluice::config::{parse_timezone, Config, SinkConfig, SourceConfig};
use sluice::engine::pipeline::{Clock, Pipeline};
use sluice::engine::{Engine, EngineOptions, RuleSet};
use sluice::message::{Message, Metadata};
use sluice::devices::Registry;
use sluice::rule::expr::Env;
use sluice::shutdown::Shutdown;
use sluice::sink::file::FileSink;
use sluice::sink::kafka::KafkaSink;
use sluice::sink::Sink;
use sluice::source::file::FileSource;
use sluice::source::http::HttpSource;
use sluice::source::kafka::KafkaSource;
use sluice::source::mqtt::MqttSource;
use sluice::source::Source;
use sluice::telemetry::LogFormat;

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
        #[command(flatten)]
        sample: Sample,
        /// Time zone of timestamp(): UTC or ±HH:MM.
        #[arg(long, default_value = "UTC")]
        timezone: String,
    },
    /// Run the pipeline described by a configuration file.
    Run {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Log format on stderr: `text` (key=value) or `json` (one object per line, for log
        /// collectors).
        #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Print the function reference (Markdown).
    Functions,
    /// Manage the rules of a running instance through its rules API.
    Rules(RulesCli),
}

/// A sample message to test a rule on.
#[derive(clap::Args)]
struct Sample {
    /// The message's IoT topic.
    #[arg(long)]
    topic: String,
    /// The payload file, or `-` for standard input (default: empty payload).
    #[arg(long)]
    payload: Option<String>,
    /// Fix the clock (timestamp functions and the receive time), ms since the epoch.
    #[arg(long)]
    now: Option<i64>,
}

#[derive(clap::Args)]
struct RulesCli {
    /// The instance's admin server.
    #[arg(long, env = "SLUICE_URL", default_value = "http://127.0.0.1:9898", global = true)]
    url: String,
    /// The rules API token.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    #[command(subcommand)]
    cmd: RulesCmd,
}

#[derive(Subcommand)]
enum RulesCmd {
    /// List the rules: name, status, topic filter, file.
    List,
    /// Show one rule (JSON), with its file's text.
    Get {
        /// The rule's name.
        name: String,
    },
    /// Create a rule from a rule file (refused, with its errors, if it does not compile).
    Create {
        /// The rule file.
        file: PathBuf,
        /// The rule's name (default: the file's `name` key).
        #[arg(long)]
        name: Option<String>,
    },
    /// Replace a rule's text with a rule file.
    Update {
        /// The rule's name.
        name: String,
        /// The rule file.
        file: PathBuf,
    },
    /// Delete a rule (its file in the instance's rules folder).
    Delete {
        /// The rule's name.
        name: String,
    },
    /// Enable a rule.
    Enable {
        /// The rule's name.
        name: String,
    },
    /// Disable a rule.
    Disable {
        /// The rule's name.
        name: String,
    },
    /// Run a rule of the instance on a sample message; print each output record as a JSON
    /// line (like `sluice test`).
    Test {
        /// The rule's name.
        name: String,
        #[command(flatten)]
        sample: Sample,
    },
    /// Show a rule's compile errors and its recent evaluation failures.
    Errors {
        /// The rule's name.
        name: String,
    },
    /// Rescan the instance's rules folder now.
    Reload,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Printing commands end quietly when their reader goes away (`sluice rules list | head`),
    // as Unix tools do. `run` keeps SIGPIPE ignored: its sockets get EPIPE errors instead.
    #[cfg(unix)]
    if !matches!(cli.cmd, Cmd::Run { .. }) {
        // SAFETY: restoring the default disposition of SIGPIPE at start, before any thread.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
        Cmd::Test { rule, sample: Sample { topic, payload, now }, timezone } => test(rule, topic, payload, now, &timezone),
        Cmd::Run { config, log_format } => run(config, log_format),
        Cmd::Rules(r) => rules_cli(r),
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
    // A panic while the rule evaluates is an error record of stage `panic`, printed like any.
    sluice::engine::guard::install_hook();
    let rule = match sluice::rule::compile_file(&rule_path) {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}", e.render());
            }
            return Ok(ExitCode::from(2));
        }
    };
    if !rule.filter.matches(&topic) {
        eprintln!("note: topic `{topic}` does not match the rule's filter `{}`", rule.filter.as_str());
    }
    let bytes = read_payload(payload.as_deref())?;
    let clock = now.map_or(Clock::System, Clock::Fixed);
    let env = Env { tz: parse_timezone(timezone).map_err(anyhow::Error::msg)?, ..Env::default() };
    let engine = Engine::new(RuleSet::new(Vec::new()), env, EngineOptions::default());
    let now_ms = clock.now_ms();
    let msg = Message { topic, payload: bytes.into(), meta: Metadata { source: Arc::from("sluice-test"), received_ms: now_ms, id: 1, ..Metadata::default() } };
    for rec in engine.test_rule(rule, &msg, now_ms) {
        println!("{}", rec.test_line());
    }
    Ok(ExitCode::SUCCESS)
}

/// A payload file, `-` for standard input, or nothing (empty).
fn read_payload(payload: Option<&str>) -> anyhow::Result<Vec<u8>> {
    Ok(match payload {
        None => Vec::new(),
        Some("-") => {
            let mut b = Vec::new();
            std::io::stdin().read_to_end(&mut b).context("reading the payload from standard input")?;
            b
        }
        Some(path) => std::fs::read(path).with_context(|| format!("reading payload file {path}"))?,
    })
}

/// `sluice rules …`: one API request; prints the answer. Exit 0 on success, 2 when the rule
/// does not compile (its `path:line:col` errors on stderr), 1 on any other failure.
fn rules_cli(r: RulesCli) -> anyhow::Result<ExitCode> {
    use reqwest::blocking::Client;
    use reqwest::Method;
    let base = r.url.trim_end_matches('/').to_string();
    let client = Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let enc = |name: &str| -> String { name.bytes().map(|b| if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') { (b as char).to_string() } else { format!("%{b:02X}") }).collect() };
    let read = |f: &PathBuf| std::fs::read_to_string(f).with_context(|| format!("reading rule file {}", f.display()));
    let (method, path, body): (Method, String, Option<String>) = match &r.cmd {
        RulesCmd::List => (Method::GET, "/api/v1/rules".into(), None),
        RulesCmd::Get { name } => (Method::GET, format!("/api/v1/rules/{}", enc(name)), None),
        RulesCmd::Create { file, name } => (Method::POST, format!("/api/v1/rules{}", name.as_ref().map(|n| format!("?name={}", enc(n))).unwrap_or_default()), Some(read(file)?)),
        RulesCmd::Update { name, file } => (Method::PUT, format!("/api/v1/rules/{}", enc(name)), Some(read(file)?)),
        RulesCmd::Delete { name } => (Method::DELETE, format!("/api/v1/rules/{}", enc(name)), None),
        RulesCmd::Enable { name } => (Method::POST, format!("/api/v1/rules/{}/enable", enc(name)), None),
        RulesCmd::Disable { name } => (Method::POST, format!("/api/v1/rules/{}/disable", enc(name)), None),
        RulesCmd::Test { name, sample: Sample { topic, payload, now } } => {
            use base64::Engine as _;
            let bytes = read_payload(payload.as_deref())?;
            let req = serde_json::json!({ "topic": topic, "payload_base64": base64::engine::general_purpose::STANDARD.encode(bytes), "now": now });
            (Method::POST, format!("/api/v1/rules/{}/test", enc(name)), Some(req.to_string()))
        }
        RulesCmd::Errors { name } => (Method::GET, format!("/api/v1/rules/{}/errors", enc(name)), None),
        RulesCmd::Reload => (Method::POST, "/api/v1/reload".into(), None),
    };
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(t) = &r.token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().with_context(|| format!("cannot reach {base}"))?;
    let status = resp.status();
    let text = resp.text()?;
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    if !status.is_success() {
        eprintln!("error: {} ({status})", json.get("error").and_then(|e| e.as_str()).unwrap_or("request failed"));
        if let Some(hint) = json.get("hint").and_then(|h| h.as_str()) {
            eprintln!("hint: {hint}");
        }
        // Errors in a rule file sent from here point at the local file.
        let local = match &r.cmd {
            RulesCmd::Create { file, .. } | RulesCmd::Update { file, .. } => Some(file.display().to_string()),
            _ => None,
        };
        for e in json.get("errors").and_then(|e| e.as_array()).into_iter().flatten() {
            match (&local, e["line"].as_u64(), e["col"].as_u64(), e["message"].as_str()) {
                (Some(f), Some(line), Some(col), Some(msg)) => eprintln!("{f}:{line}:{col}: {msg}{}", e["hint"].as_str().map(|h| format!("; {h}")).unwrap_or_default()),
                _ => eprintln!("{}", e["text"].as_str().unwrap_or_default()),
            }
        }
        return Ok(ExitCode::from(if status.as_u16() == 422 { 2 } else { 1 }));
    }
    match &r.cmd {
        RulesCmd::List => {
            let rules = json["rules"].as_array().cloned().unwrap_or_default();
            let width = rules.iter().filter_map(|r| r["name"].as_str()).map(str::len).max().unwrap_or(4).max(4);
            println!("{:width$}  {:9}  {:40}  FILE", "NAME", "STATUS", "FROM");
            for r in &rules {
                let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
                println!("{:width$}  {:9}  {:40}  {}", s("name"), s("status"), s("from"), s("path"));
                for e in r["errors"].as_array().into_iter().flatten() {
                    println!("    {}", e["text"].as_str().unwrap_or_default());
                }
            }
        }
        RulesCmd::Test { .. } => {
            if json["topic_matches"] == serde_json::Value::Bool(false) {
                eprintln!("note: the topic does not match the rule's filter");
            }
            for rec in json["records"].as_array().into_iter().flatten() {
                println!("{}", serde_json::to_string(rec)?);
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&json)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// How long after `shutdown_timeout_ms` a stuck graceful stop is cut off (exit 1).
const HARD_DEADLINE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn run(config_path: PathBuf, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    sluice::telemetry::init_logging(log_format);
    sluice::engine::guard::install_hook();
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
    let opts = EngineOptions {
        default_error_topic: cfg.engine.default_error_topic.clone(),
        max_payload_bytes: cfg.engine.max_payload_bytes,
        rule_metrics: cfg.engine.rule_metrics,
        error_payload_max_bytes: cfg.engine.error_payload_max_bytes,
    };
    // The rule store owns the rules from here on: it loads the same files into the engine and
    // reloads them when they change.
    drop(rules);
    let engine = Arc::new(Engine::new(RuleSet::new(Vec::new()), env, opts));
    let store = Arc::new(sluice::rule::store::RuleStore::new(cfg.rules.paths.clone(), engine.clone()));
    let loaded = store.reload();
    if let Some(e) = loaded.errors.first() {
        anyhow::bail!("rules changed while loading: {}", e.text);
    }
    let (watch, debounce) = (cfg.rules.watch, std::time::Duration::from_millis(cfg.rules.debounce_ms));
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
        SinkConfig::File { dir, append, fsync } => Box::new(FileSink::new(dir).append(append).fsync(fsync)),
        SinkConfig::Kafka(k) => Box::new(KafkaSink::new(k, engine_cfg.default_error_topic.clone())),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The admin server stays up while the pipeline drains, and stops with it.
    let admin_stop = Shutdown::new();
    if let Some(a) = &admin {
        let token = a.resolve_token().map_err(anyhow::Error::msg)?;
        if token.is_none() {
            tracing::warn!("no admin token: the rules API is disabled (set [admin] token_file, token or SLUICE_ADMIN_TOKEN)");
        }
        let api = sluice::api::router(store.clone(), token);
        let listener = rt.block_on(tokio::net::TcpListener::bind(&a.listen)).with_context(|| format!("admin server: cannot listen on {}", a.listen))?;
        let stop = admin_stop.clone();
        rt.spawn(async move {
            if let Err(e) = sluice::telemetry::http::serve_with(listener, stop, api).await {
                tracing::error!(error = %e, "admin HTTP server failed");
            }
        });
    }
    let report = rt.block_on(async {
        // Should the graceful stop be stuck, the process still ends shortly after the deadline.
        let shutdown = Shutdown::new().with_hard_deadline(shutdown_timeout + HARD_DEADLINE_GRACE);
        shutdown.on_signals();
        let _reloader = sluice::rule::store::spawn_reloader(store.clone(), watch, debounce, shutdown.clone());
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
