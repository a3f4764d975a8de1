//! The stack's processes: Mosquitto, tansu and Sluice, each a [`Service`] that dies with this
//! program (parent-death signal) in the watchdog's process group, started on a free port (or
//! the one the environment fixes) and waited for by state: the port answers, the broker serves
//! metadata, `/readyz` says ready and Sluice answers an integration request. Stopped in reverse
//! order: Sluice first (it drains and commits), then the brokers.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use sluice_testkit::mosquitto::Publisher;
use sluice_testkit::process::{die_with_parent, Service};

use crate::files::Work;
use crate::signals::Signals;
use crate::watchdog::Watchdog;

/// The programs the stack runs.
pub struct Tools {
    /// `sluice`.
    pub sluice: PathBuf,
    /// The kafka_tool example (for the banner).
    pub kafka_tool: PathBuf,
    /// `tansu`.
    pub tansu: PathBuf,
    /// `mosquitto`.
    pub mosquitto: PathBuf,
}

impl Tools {
    /// Finds them; installs the brokers with `scripts/test-deps.sh` when one is missing.
    pub fn find(repo: &Path) -> anyhow::Result<Tools> {
        let exe = std::env::current_exe().context("this program's path")?;
        // target/<profile>/examples/local_stack: sluice is in target/<profile>.
        let examples = exe.parent().context("this program's folder")?.to_path_buf();
        let sluice = match std::env::var_os("SLUICE_BIN") {
            Some(p) => PathBuf::from(p),
            None => examples.parent().context("the target folder")?.join("sluice"),
        };
        if !sluice.is_file() {
            bail!("the sluice binary is not at {} (deploy/local-stack.sh builds it; or set SLUICE_BIN)", sluice.display());
        }
        let kafka_tool = std::env::var_os("SLUICE_KAFKA_TOOL").map_or_else(|| examples.join("kafka_tool"), PathBuf::from);
        let brokers = || match (sluice_testkit::find_tansu(), sluice_testkit::mosquitto::find_mosquitto()) {
            (Ok(t), Some(m)) => Ok((t, m)),
            (Err(e), _) => Err(e),
            (_, None) => Err("mosquitto not found (set SLUICE_MOSQUITTO)".to_string()),
        };
        let (tansu, mosquitto) = match brokers() {
            Ok(found) => found,
            Err(_) => {
                println!("local-stack: installing the brokers with scripts/test-deps.sh (building tansu takes 15-20 minutes the first time)");
                let status = Command::new("bash").arg(repo.join("scripts/test-deps.sh")).status().context("running scripts/test-deps.sh")?;
                if !status.success() {
                    bail!("scripts/test-deps.sh failed ({status})");
                }
                brokers().map_err(|e| anyhow::anyhow!("{e} after scripts/test-deps.sh"))?
            }
        };
        Ok(Tools { sluice, kafka_tool, tansu, mosquitto })
    }
}

/// The running services, in start order.
pub struct Stack {
    services: Vec<Service>,
    watchdog: Watchdog,
    signals: Signals,
    /// The wait for each step.
    pub timeout: Duration,
    /// No "stopping …" lines (the smoke run).
    pub quiet: bool,
}

impl Stack {
    /// A stack without services yet.
    pub fn new(watchdog: Watchdog, signals: Signals, timeout: Duration, quiet: bool) -> Stack {
        Stack { services: Vec::new(), watchdog, signals, timeout, quiet }
    }

    /// Mosquitto, on `port` or a free one; returns the port once it accepts connections.
    pub fn start_mosquitto(&mut self, bin: &Path, work: &Work, port: Option<u16>) -> anyhow::Result<u16> {
        let log = work.path("mosquitto/mosquitto.log");
        self.start_on_port(
            "mosquitto",
            port,
            "SLUICE_STACK_MQTT_PORT",
            |port| {
                let mut cmd = Command::new(bin);
                cmd.arg("-c").arg(work.write_mosquitto_conf(port)?);
                Ok((cmd, log.clone()))
            },
            |port| TcpStream::connect(("127.0.0.1", port)).is_ok(),
            |_| true,
        )
    }

    /// tansu (sqlite storage in `<dir>/tansu`), on `port` or a free one; returns the port once
    /// it answers metadata requests.
    pub fn start_tansu(&mut self, bin: &Path, work: &Work, port: Option<u16>) -> anyhow::Result<u16> {
        let dir = work.path("tansu");
        self.start_on_port(
            "tansu",
            port,
            "SLUICE_STACK_KAFKA_PORT",
            |port| Ok((sluice_testkit::tansu_command(bin, &dir, port), dir.join("tansu.log"))),
            |port| sluice_testkit::wait_for_broker(&format!("127.0.0.1:{port}"), Duration::from_secs(1)).is_ok(),
            |_| true,
        )
    }

    /// `sluice run --config <dir>/sluice.toml` (written by `config(admin_port)`), its admin
    /// server on `port` or a free one; returns the port once `/readyz` says ready.
    pub fn start_sluice(&mut self, bin: &Path, work: &Work, port: Option<u16>, rust_log: &str, mut config: impl FnMut(u16) -> anyhow::Result<PathBuf>) -> anyhow::Result<u16> {
        self.start_on_port(
            "sluice",
            port,
            "SLUICE_STACK_ADMIN_PORT",
            |port| {
                let mut cmd = Command::new(bin);
                cmd.arg("run").arg("--config").arg(config(port)?).env("RUST_LOG", rust_log);
                Ok((cmd, work.path("sluice.log")))
            },
            |port| sluice_testkit::admin::readyz(&format!("127.0.0.1:{port}")).is_some_and(|(status, _)| status == 200),
            |log| log.contains("admin server: cannot listen"),
        )
    }

    /// Sends an empty integration request (id `ping`, on `sys/local-stack/integration/event/post`)
    /// until Sluice answers one: its MQTT subscriptions are in place.
    pub fn wait_answering(&mut self, publisher: &Publisher) -> anyhow::Result<()> {
        let ping = format!(r#"{{"id":"{}","version":"1.0","params":[],"method":"integration.event.post"}}"#, sluice_testkit::mosquitto::PING_ID);
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            self.check_alive()?;
            let n = publisher.pings();
            publisher.publish("sys/local-stack/integration/event/post", ping.as_str());
            if self.signals.wait_until(Duration::from_secs(1), Duration::from_millis(20), || publisher.pings() > n)? {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                bail!("sluice did not answer on MQTT within {}s\n{}", self.timeout.as_secs(), self.tail("sluice", 30));
            }
        }
    }

    /// Err naming the first service that ended, with the end of its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for s in &mut self.services {
            if let Some(status) = s.exit_status() {
                bail!("{} exited unexpectedly ({status})\nlast lines of {}:\n{}", s.name(), s.log().display(), s.log_tail(30));
            }
        }
        Ok(())
    }

    /// The last `n` lines of service `name`'s log.
    pub fn tail(&self, name: &str, n: usize) -> String {
        self.services.iter().find(|s| s.name() == name).map(|s| format!("last lines of {}:\n{}", s.log().display(), s.log_tail(n))).unwrap_or_default()
    }

    /// Stops every service, the last started first: SIGTERM, SIGKILL after 8 s.
    pub fn stop(&mut self) {
        while let Some(mut s) = self.services.pop() {
            if s.alive() {
                if !self.quiet {
                    println!("local-stack: stopping {}", s.name());
                }
                s.terminate(Duration::from_secs(8));
            }
        }
    }

    /// Lets the watchdog go: the stack has stopped everything and cleaned up.
    pub fn done(self) {
        self.watchdog.done();
    }

    fn spawn(&mut self, name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<()> {
        die_with_parent(&mut cmd).process_group(self.watchdog.pgid());
        let s = Service::spawn(name, cmd, log)?;
        self.watchdog.watch(s.pid());
        self.services.push(s);
        Ok(())
    }

    /// Starts service `name` on `fixed` (it must be free) or a free port and waits until
    /// `ready(port)`. A port picked free may be taken by another process before the service
    /// binds it: a service that exits before it is ready, and whose log says `taken`, is
    /// started again on a new port (up to 5 times).
    fn start_on_port(
        &mut self,
        name: &str,
        fixed: Option<u16>,
        env: &str,
        mut command: impl FnMut(u16) -> anyhow::Result<(Command, PathBuf)>,
        mut ready: impl FnMut(u16) -> bool,
        taken: impl Fn(&str) -> bool,
    ) -> anyhow::Result<u16> {
        for attempt in 1.. {
            let port = match fixed {
                Some(p) if TcpListener::bind(("127.0.0.1", p)).is_err() => bail!("port {p} ({env}) is in use"),
                Some(p) => p,
                None => sluice_testkit::free_port(),
            };
            let (cmd, log) = command(port)?;
            self.spawn(name, cmd, &log)?;
            let service = self.services.last_mut().expect("just started");
            let up = self.signals.wait_until(self.timeout, Duration::from_millis(100), || !service.alive() || ready(port))?;
            match service.exit_status() {
                None if up => return Ok(port),
                None => bail!("{name} not ready on port {port} after {}s\nlast lines of {}:\n{}", self.timeout.as_secs(), log.display(), service.log_tail(30)),
                Some(status) => {
                    let tail = service.log_tail(30);
                    self.services.pop();
                    if fixed.is_none() && attempt < 5 && taken(&tail) {
                        eprintln!("local-stack: {name} could not listen on {port}; again on a new port");
                        continue;
                    }
                    bail!("{name} exited ({status}) before it was ready on port {port}\nlast lines of {}:\n{tail}", log.display());
                }
            }
        }
        unreachable!("the loop returns")
    }
}
