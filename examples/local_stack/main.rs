//! A local Sluice stack to try it by hand (`deploy/local-stack.sh` builds and runs this):
//!
//! - Mosquitto, the integration channel's MQTT broker;
//! - tansu, a Kafka-compatible broker (sqlite storage), with the topics the sample rules write
//!   to, derived from the compiled rules ([`topics`]), the error topic and the input topic
//!   `iot-in`;
//! - Sluice (`sluice run`) with the sample rules, the registry of `models/`, an MQTT
//!   integration source (publish on `sys/{productKey}/integration/.../post`, replies on
//!   `..._reply`), a Kafka source reading `iot-in` (data-flow messages, IoT topic in the
//!   `iot-topic` header), the Kafka sink and the admin server (`/metrics`, `/healthz`,
//!   `/integration/errors`).
//!
//! Everything runs on free loopback ports in a temporary folder. Ctrl-C (or SIGTERM) stops
//! Sluice, then the brokers, and removes the folder; the services die with this program even
//! when it is killed outright (parent-death signal), and a watchdog then removes the folder.
//! `--smoke` checks one request end to end and exits 0 or 1 ([`smoke`]).
//!
//! `cargo run --release --example local_stack -- --help` (with `sluice` built:
//! `cargo build --release --bin sluice`; `deploy/local-stack.sh` does both).

mod banner;
mod cli;
mod clients;
mod files;
mod services;
mod signals;
mod smoke;
mod topics;
mod watchdog;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::cli::{Cli, Env};
use crate::files::{Ports, Work};
use crate::services::{Stack, Tools};
use crate::signals::{Interrupted, Signals};
use crate::watchdog::Watchdog;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(dir) = &cli.watchdog {
        return watchdog::run(dir, cli.remove);
    }
    match Signals::install().and_then(|signals| run(&cli, &signals)) {
        Ok(code) => code,
        Err(e) => exit_code(&e),
    }
}

/// 128 + the signal's number for a stack stopped by a signal (as a shell reports it), else 1
/// (the error printed).
fn exit_code(e: &anyhow::Error) -> ExitCode {
    match e.downcast_ref::<Interrupted>() {
        Some(Interrupted(sig)) => ExitCode::from(128 + *sig as u8),
        None => {
            eprintln!("local-stack: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up the folder and the watchdog, runs the stack, then stops it whatever happened.
fn run(cli: &Cli, signals: &Signals) -> anyhow::Result<ExitCode> {
    let repo = sluice_testkit::repo_root();
    let env = Env::read()?;
    let tools = Tools::find(&repo)?;
    let work = Work::create(cli.dir.as_deref(), cli.keep, &repo)?;
    let watchdog = match Watchdog::start(&work.dir, work.remove) {
        Ok(w) => w,
        Err(e) => {
            work.finish();
            return Err(e);
        }
    };
    let mut stack = Stack::new(watchdog, signals.clone(), env.timeout, cli.smoke);
    let code = match up(cli, &env, &tools, &work, &mut stack, signals) {
        Ok(code) => code,
        Err(e) => exit_code(&e),
    };
    // Signals from here on are only recorded: the stops run to their end.
    stack.stop();
    work.finish();
    stack.done();
    Ok(code)
}

/// Starts the services, then runs the smoke check or waits for a signal.
fn up(cli: &Cli, env: &Env, tools: &Tools, work: &Work, stack: &mut Stack, signals: &Signals) -> anyhow::Result<ExitCode> {
    let repo = sluice_testkit::repo_root();
    let topics = topics::derive(&work.rules(), &repo.join("models"))?;
    let mqtt = stack.start_mosquitto(&tools.mosquitto, work, env.mqtt_port)?;
    let kafka = stack.start_tansu(&tools.tansu, work, env.kafka_port)?;
    let mut ports = Ports { mqtt, kafka, admin: 0 };

    let wanted: Vec<(&str, i32)> = topics.iter().map(|t| (t.as_str(), 1)).collect();
    if let Err(e) = sluice_testkit::create_topics(&ports.brokers(), &wanted, env.timeout) {
        stack.check_alive()?;
        anyhow::bail!("could not create the Kafka topics on {}: {e}\n{}", ports.brokers(), stack.tail("tansu", 30));
    }
    if let Err(e) = sluice_testkit::index_tansu_headers(&work.path("tansu/tansu.db")) {
        eprintln!("local-stack: could not index tansu's record headers (fetches get slower as topics grow): {e}");
    }

    ports.admin = stack.start_sluice(&tools.sluice, work, env.admin_port, &env.rust_log, |admin| work.write_sluice_toml(&Ports { admin, ..ports }, &repo, &env.token))?;
    let publisher = clients::Publisher::connect(mqtt, "local-stack-ready");
    stack.wait_answering(&publisher)?;
    work.write_samples()?;
    work.write_env_sh(&ports, &env.token, &tools.kafka_tool)?;

    if cli.smoke {
        let smoke = smoke::Smoke { work, ports, token: &env.token, sluice: &tools.sluice, publisher: &publisher, signals, timeout: env.timeout };
        return match smoke.run(stack) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) if e.is::<Interrupted>() => Err(e),
            Err(e) => {
                eprintln!("local-stack: smoke FAILED: {e:#}");
                eprintln!("{}", stack.tail("sluice", 20));
                Ok(ExitCode::FAILURE)
            }
        };
    }
    drop(publisher);
    banner::print(work, &ports, &tools.kafka_tool, &repo);
    // Runs until a signal, or until a service dies.
    loop {
        stack.check_alive()?;
        signals.wait_until(Duration::from_secs(1), Duration::from_secs(1), || false)?;
    }
}
