//! The command line (the options of the former bash script, unchanged) and the environment
//! variables the stack reads.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

const ENVIRONMENT: &str = "\
Environment:
  SLUICE_BIN          the sluice binary (deploy/local-stack.sh sets it: `cargo build --release`
                      of this repository, i.e. what `cargo run --release -- run --config …` runs)
  SLUICE_KAFKA_TOOL   the kafka_tool example binary the banner shows (default: next to this
                      program)
  SLUICE_TANSU        the tansu binary (default ~/.cache/sluice/tools/bin/tansu; installed by
                      scripts/test-deps.sh when missing: 15-20 minutes the first time)
  SLUICE_MOSQUITTO    the mosquitto binary (default: PATH, /usr/sbin)
  SLUICE_STACK_MQTT_PORT, SLUICE_STACK_KAFKA_PORT, SLUICE_STACK_ADMIN_PORT
                      fixed ports (default: free ones)
  SLUICE_STACK_TIMEOUT  seconds to wait for each step (default 60)
  SLUICE_ADMIN_TOKEN  the admin server's token (default local-stack)
  RUST_LOG            Sluice's log filter (default info; the log is <dir>/sluice.log)";

/// A local Sluice stack to try it by hand: Mosquitto, tansu (Kafka) and Sluice with the sample
/// rules, on free loopback ports in a temporary folder. Ctrl-C (or SIGTERM) stops it all and
/// removes the folder.
#[derive(Parser, Debug)]
#[command(name = "local-stack", bin_name = "deploy/local-stack.sh", after_help = ENVIRONMENT)]
pub struct Cli {
    /// Start the stack, publish seed 003's measure points over MQTT and a property post through
    /// Kafka, check the 200 reply and the output records, stop; exit 0 when all arrived, 1
    /// otherwise.
    #[arg(long)]
    pub smoke: bool,
    /// Keep the temporary folder (configuration, logs, broker data) on exit.
    #[arg(long)]
    pub keep: bool,
    /// Work in DIR (created if missing, never removed) instead of a temporary folder.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Internal: the watchdog of a stack (reads the stack's process ids on stdin; once the
    /// stack is gone it kills them and, with --remove, removes DIR).
    #[arg(long, value_name = "DIR", hide = true)]
    pub watchdog: Option<PathBuf>,
    /// Internal: the watchdog removes its folder.
    #[arg(long, hide = true, requires = "watchdog")]
    pub remove: bool,
}

/// What the environment sets.
#[derive(Debug)]
pub struct Env {
    /// `SLUICE_STACK_MQTT_PORT`.
    pub mqtt_port: Option<u16>,
    /// `SLUICE_STACK_KAFKA_PORT`.
    pub kafka_port: Option<u16>,
    /// `SLUICE_STACK_ADMIN_PORT`.
    pub admin_port: Option<u16>,
    /// `SLUICE_STACK_TIMEOUT`: the wait for each step.
    pub timeout: Duration,
    /// `SLUICE_ADMIN_TOKEN`.
    pub token: String,
    /// `RUST_LOG` for Sluice.
    pub rust_log: String,
}

impl Env {
    /// Reads the environment.
    pub fn read() -> anyhow::Result<Env> {
        let port = |name: &str| -> anyhow::Result<Option<u16>> {
            match std::env::var(name) {
                Ok(v) if !v.is_empty() && v != "0" => Ok(Some(v.parse().with_context(|| format!("{name}={v} is not a port"))?)),
                _ => Ok(None),
            }
        };
        let timeout = match std::env::var("SLUICE_STACK_TIMEOUT") {
            Ok(v) => v.parse::<u64>().with_context(|| format!("SLUICE_STACK_TIMEOUT={v} is not a number of seconds"))?,
            Err(_) => 60,
        };
        if timeout == 0 {
            bail!("SLUICE_STACK_TIMEOUT must be at least 1 second");
        }
        Ok(Env {
            mqtt_port: port("SLUICE_STACK_MQTT_PORT")?,
            kafka_port: port("SLUICE_STACK_KAFKA_PORT")?,
            admin_port: port("SLUICE_STACK_ADMIN_PORT")?,
            timeout: Duration::from_secs(timeout),
            token: std::env::var("SLUICE_ADMIN_TOKEN").unwrap_or_else(|_| "local-stack".into()),
            rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        })
    }
}
