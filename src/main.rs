//! The `sluice` command line.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use sluice::app::{App, AppError, RunOutcome};
use sluice::config::{parse_timezone, Config};
use sluice::control::client::{self, ClientError, RulesClient};
use sluice::engine::pipeline::Clock;
use sluice::engine::{Engine, EngineOptions, RuleSet};
use sluice::message::{Message, Metadata};
use sluice::rule::expr::Env;
use sluice::shutdown::Shutdown;
use sluice::telemetry::LogFormat;

/// The allocator: records are allocated and freed on every stage's thread; mimalloc's
/// per-thread free lists make that cheaper than the system allocator (README, Performance).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    ///
    /// With `--input FILE` it runs a sequence instead: one JSON object per line,
    /// `{"topic": …, "payload": <JSON> | "payload_base64": "…", "now": <ms>}` (all optional; a
    /// line without topic only moves the clock). `now` moves a virtual clock before the line's
    /// message, so windows close and timers fire as they would in the engine; it prints every
    /// output, window and error record in order.
    Test {
        /// The rule file.
        rule: PathBuf,
        /// The message's IoT topic (one message).
        #[arg(long, required_unless_present = "input", conflicts_with = "input")]
        topic: Option<String>,
        /// The payload file, or `-` for standard input (default: empty payload).
        #[arg(long, conflicts_with = "input")]
        payload: Option<String>,
        /// A sequence of messages (JSON lines), or `-` for standard input.
        #[arg(long)]
        input: Option<String>,
        /// Fix the clock (timestamp functions and the receive time), ms since the epoch; with
        /// `--input`, the clock before the first line's `now`.
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
    /// List a rule's saved versions (every write through the API keeps one).
    History {
        /// The rule's name.
        name: String,
    },
    /// Restore a saved version of a rule in one step (see `history`).
    Rollback {
        /// The rule's name.
        name: String,
        /// The version's number.
        version: u64,
    },
    /// Run a candidate version of a rule beside the live one on live traffic (its outputs go
    /// nowhere; they are counted and compared).
    Shadow {
        /// The rule's name.
        name: String,
        /// The candidate rule file.
        file: PathBuf,
    },
    /// Show a shadow run: both versions' counts, how many messages differ, example diffs.
    ShadowStatus {
        /// The rule's name.
        name: String,
    },
    /// Stop a shadow run.
    ShadowStop {
        /// The rule's name.
        name: String,
    },
    /// Promote a shadow run's candidate: its text becomes the rule's file (a reload swaps it in).
    Promote {
        /// The rule's name.
        name: String,
    },
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
        Cmd::Test { rule, input: Some(input), now, timezone, .. } => test_sequence(rule, &input, now, &timezone),
        Cmd::Test { rule, topic, payload, now, timezone, .. } => test(rule, topic.unwrap_or_default(), payload, now, &timezone),
        Cmd::Run { config, log_format } => run(config, log_format),
        Cmd::Rules(r) => rules_cli(r),
        Cmd::Functions => {
            print!("{}", sluice::rule::catalog::markdown_reference());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(paths: Vec<PathBuf>) -> ExitCode {
    let paths = if paths.is_empty() { vec![PathBuf::from("rules")] } else { paths };
    let (rules, errors) = sluice::control::compile_paths(&paths);
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

/// Compiles a rule file, printing its `path:line:col` errors when it does not compile.
fn compile_or_report(path: &std::path::Path) -> Option<sluice::rule::Rule> {
    match sluice::rule::compile_file(path) {
        Ok(r) => Some(r),
        Err(errors) => {
            for e in &errors {
                eprintln!("{}", e.render());
            }
            None
        }
    }
}

fn test(rule_path: PathBuf, topic: String, payload: Option<String>, now: Option<i64>, timezone: &str) -> anyhow::Result<ExitCode> {
    // A panic while the rule evaluates is an error record of stage `panic`, printed like any.
    sluice::engine::guard::install_hook();
    let Some(rule) = compile_or_report(&rule_path) else {
        return Ok(ExitCode::from(2));
    };
    if !rule.filter.matches(&topic) {
        eprintln!("note: topic `{topic}` does not match the rule's filter `{}`", rule.filter.as_str());
    }
    if rule.window.is_some() {
        eprintln!("note: a windowed rule emits when its windows close: run a sequence with --input (each line's `now` moves the clock)");
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

fn test_sequence(rule_path: PathBuf, input: &str, now: Option<i64>, timezone: &str) -> anyhow::Result<ExitCode> {
    sluice::engine::guard::install_hook();
    let Some(rule) = compile_or_report(&rule_path) else {
        return Ok(ExitCode::from(2));
    };
    let text = String::from_utf8(read_payload(Some(input))?).with_context(|| format!("{input}: not UTF-8"))?;
    let steps = sluice::engine::testing::parse_steps(&text, now.unwrap_or_else(|| Clock::System.now_ms()), "sluice-test").map_err(|(n, e)| anyhow::anyhow!("{input}:{n}: {e}"))?;
    for (n, s) in steps.iter().enumerate() {
        if let Some(m) = s.msg.as_ref().filter(|m| !rule.filter.matches(&m.topic)) {
            eprintln!("note: step {}: topic `{}` does not match the rule's filter `{}`", n + 1, m.topic, rule.filter.as_str());
        }
    }
    let env = Env { tz: parse_timezone(timezone).map_err(anyhow::Error::msg)?, ..Env::default() };
    let engine = Engine::new(RuleSet::new(Vec::new()), env, EngineOptions::default());
    for rec in engine.test_sequence(rule, steps) {
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
    let client = RulesClient::new(&r.url, r.token)?;
    let read = |f: &PathBuf| std::fs::read_to_string(f).with_context(|| format!("reading rule file {}", f.display()));
    let result = match &r.cmd {
        RulesCmd::List => client.list().map(|list| {
            let width = list.rules.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
            println!("{:width$}  {:9}  {:40}  FILE", "NAME", "STATUS", "FROM");
            for r in &list.rules {
                println!("{:width$}  {:9}  {:40}  {}", r.name, r.status.as_str(), r.from.as_deref().unwrap_or("-"), r.path);
                for e in &r.errors {
                    println!("    {}", e.text);
                }
            }
        }),
        RulesCmd::Test { name, sample: Sample { topic, payload, now } } => {
            use base64::Engine as _;
            let sample = client::Sample { topic: topic.clone(), payload_base64: base64::engine::general_purpose::STANDARD.encode(read_payload(payload.as_deref())?), now: *now };
            client.test(name, &sample).map(|t| {
                if !t.topic_matches {
                    eprintln!("note: the topic does not match the rule's filter");
                }
                for rec in &t.records {
                    println!("{}", rec.get());
                }
            })
        }
        RulesCmd::Get { name } => client.get(name).map(|v| print_pretty(&v)),
        RulesCmd::Create { file, name } => client.create(name.as_deref(), read(file)?).map(|v| print_pretty(&v)),
        RulesCmd::Update { name, file } => client.update(name, read(file)?).map(|v| print_pretty(&v)),
        RulesCmd::Delete { name } => client.delete(name).map(|v| print_pretty(&v)),
        RulesCmd::Enable { name } => client.set_enabled(name, true).map(|v| print_pretty(&v)),
        RulesCmd::Disable { name } => client.set_enabled(name, false).map(|v| print_pretty(&v)),
        RulesCmd::Errors { name } => client.errors(name).map(|v| print_pretty(&v)),
        RulesCmd::Reload => client.reload().map(|v| print_pretty(&v)),
        RulesCmd::History { name } => client.history(name).map(|h| {
            for v in &h.versions {
                println!("{:>6}  {:<9} {}  {} bytes", v.version, v.action, chrono::DateTime::from_timestamp_millis(v.saved_ms).map(|t| t.to_rfc3339()).unwrap_or_default(), v.bytes);
            }
        }),
        RulesCmd::Rollback { name, version } => client.rollback(name, *version).map(|v| print_pretty(&v)),
        RulesCmd::Shadow { name, file } => client.shadow(name, read(file)?).map(|v| print_pretty(&v)),
        RulesCmd::ShadowStatus { name } => client.shadow_status(name).map(|v| print_pretty(&v)),
        RulesCmd::ShadowStop { name } => client.shadow_stop(name).map(|v| print_pretty(&v)),
        RulesCmd::Promote { name } => client.promote(name).map(|v| print_pretty(&v)),
    };
    let (status, body) = match result {
        Ok(()) => return Ok(ExitCode::SUCCESS),
        Err(ClientError::Refused { status, body }) => (status, body),
        Err(e) => return Err(e.into()),
    };
    eprintln!("error: {} ({})", body.error, reqwest::StatusCode::from_u16(status).map_or_else(|_| status.to_string(), |s| s.to_string()));
    if let Some(hint) = &body.hint {
        eprintln!("hint: {hint}");
    }
    // Errors in a rule file sent from here point at the local file.
    let local = match &r.cmd {
        RulesCmd::Create { file, .. } | RulesCmd::Update { file, .. } | RulesCmd::Shadow { file, .. } => Some(file.display().to_string()),
        _ => None,
    };
    for e in &body.errors {
        match &local {
            Some(f) => eprintln!("{f}:{}:{}: {}{}", e.line, e.col, e.message, e.hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default()),
            None => eprintln!("{}", e.text),
        }
    }
    Ok(ExitCode::from(if status == 422 { 2 } else { 1 }))
}

/// Prints an API answer as pretty JSON.
fn print_pretty<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// How long after `shutdown_timeout_ms` a stuck graceful stop is cut off (exit 1).
const HARD_DEADLINE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn run(config_path: PathBuf, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    sluice::telemetry::init_logging(log_format);
    sluice::engine::guard::install_hook();
    let cfg = Config::load(&config_path)?;
    let app = match App::build(cfg) {
        Ok(app) => app,
        Err(AppError::Rules(errors)) => {
            for e in &errors {
                eprintln!("{}", e.render());
            }
            anyhow::bail!("{} rule error(s); nothing was run", errors.len());
        }
        Err(e) => return Err(e.into()),
    };
    let shutdown_timeout = app.shutdown_timeout();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = rt.block_on(async {
        // Should the graceful stop be stuck, the process still ends shortly after the deadline.
        let shutdown = Shutdown::new().with_hard_deadline(shutdown_timeout + HARD_DEADLINE_GRACE);
        shutdown.on_signals();
        app.run(shutdown).await
    })?;
    let report = match outcome {
        RunOutcome::Finished(report) => report,
        RunOutcome::TimedOut => {
            tracing::warn!(timeout_ms = shutdown_timeout.as_millis() as u64, "shutdown timeout: exiting with work in flight (not committed: it is read again on restart)");
            rt.shutdown_timeout(std::time::Duration::from_millis(100));
            return Ok(ExitCode::SUCCESS);
        }
    };
    for (name, r) in &report.sources {
        tracing::info!(source = %name, messages = r.messages, rejected = r.rejected, "source done");
    }
    tracing::info!(records = report.sink.records, error_records = report.sink.error_records, bytes = report.sink.bytes, "sink flushed");
    println!("{} message(s) in, {} record(s) out ({} error record(s))", report.sources.iter().map(|(_, r)| r.messages + r.rejected).sum::<u64>(), report.sink.records, report.sink.error_records);
    Ok(ExitCode::SUCCESS)
}
