//! The watchdog: a second process (this program with the hidden `--watchdog DIR`) that cleans
//! up when the stack is killed outright (SIGKILL), which the stack cannot handle itself. The
//! services die with the stack anyway (parent-death signal); the watchdog also kills them, waits
//! until they are gone and removes the temporary folder.
//!
//! The stack writes `pid N` for each service to the watchdog's stdin, then `done` when it has
//! stopped everything itself. End of file without `done` means the stack is gone. The watchdog
//! leads the process group of the services: Ctrl-C in a terminal signals the foreground group
//! (the stack) only, so the stack decides the order of the stops.

use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context;
use sluice_testkit::process;

/// The stack's end of a watchdog.
pub struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts the watchdog of `dir` (removed when the stack dies, with `remove`).
    pub fn start(dir: &Path, remove: bool) -> anyhow::Result<Watchdog> {
        let mut cmd = Command::new(std::env::current_exe().context("this program's path")?);
        cmd.arg("--watchdog").arg(dir);
        if remove {
            cmd.arg("--remove");
        }
        let mut child = cmd.process_group(0).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().context("starting the watchdog")?;
        let stdin = child.stdin.take();
        Ok(Watchdog { child, stdin })
    }

    /// The process group the services join (the watchdog leads it).
    pub fn pgid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Hands process `pid` to the watchdog.
    pub fn watch(&mut self, pid: u32) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "pid {pid}");
        }
    }

    /// Tells the watchdog that the stack has cleaned up, and waits for it to exit.
    pub fn done(mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = writeln!(s, "done");
        }
        let _ = self.child.wait();
    }
}

/// The watchdog's process: runs until the stack is done (exit 0), or gone (cleans up).
pub fn run(dir: &Path, remove: bool) -> ExitCode {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions. The watchdog
    // outlives the signals that stop the stack (a terminal's SIGHUP, a SIGTERM to the group).
    unsafe {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let mut pids = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == "done" {
            return ExitCode::SUCCESS;
        }
        if let Some(pid) = line.strip_prefix("pid ").and_then(|p| p.parse::<u32>().ok()) {
            pids.push(pid);
        }
    }
    // The stack is gone: everything it started goes too, then its folder.
    // Only the processes still in the watchdog's group: a pid may have been reused since.
    let group = std::process::id();
    pids.retain(|&p| process::process_group(p) == Some(group));
    for &pid in &pids {
        process::signal(pid, libc::SIGKILL);
    }
    sluice_testkit::wait_until(Duration::from_secs(10), || !pids.iter().any(|&p| process::running(p)));
    if remove {
        let _ = std::fs::remove_dir_all(dir);
    }
    ExitCode::SUCCESS
}
