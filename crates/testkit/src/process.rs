//! Process supervision: child processes that die with their parent ([`die_with_parent`],
//! Linux's `PR_SET_PDEATHSIG`), and [`Service`], a long-running child with a name and a log
//! file, checked for life, stopped with a signal and a deadline, and killed on drop.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that spawned the child ends, not the process:
//! spawn from the main thread, or from a thread that lives as long as the program.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// Makes the child of `cmd` receive SIGKILL when its parent (the spawning thread) ends, however
/// it ends (SIGKILL included). A child whose parent is already gone when it starts exits at once.
/// A program that changes its user id (a daemon dropping root) loses the setting: the kernel
/// clears it on a change of credentials.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: getpid is async-signal-safe; it runs before the fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, getppid and
    // _exit, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between the fork and the prctl: then nobody will signal.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        })
    }
}

/// Sends signal `sig` to process `pid`; false when there is no such process.
pub fn signal(pid: u32, sig: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Whether process `pid` runs (a zombie, ended but not yet reaped, does not).
pub fn running(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|state| state != "Z"))
}

/// The process group of process `pid`, while it runs.
pub fn process_group(pid: u32) -> Option<u32> {
    stat_fields(pid).filter(|f| f.first().is_some_and(|state| state != "Z"))?.get(2)?.parse().ok()
}

/// The fields of `/proc/PID/stat` after `pid (comm)`: state, ppid, pgrp, ….
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: the fields start after the last `)`.
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().map(str::to_string).collect())
}

/// A long-running child process: its name, its log file (stdout and stderr, appended), and its
/// exit status once it ended. Killed (SIGKILL) on drop when it still runs.
pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Service {
    /// Spawns `cmd` as service `name`, stdin from /dev/null, stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> io::Result<Service> {
        let out = OpenOptions::new().create(true).append(true).open(log)?;
        let child = cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).spawn().map_err(|e| io::Error::new(e.kind(), format!("cannot start {name} ({:?}): {e}", cmd.get_program())))?;
        Ok(Service { name: name.to_string(), child, log: log.to_path_buf(), status: None })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        crate::tail(&self.log, n)
    }

    /// Its exit status, once it ended (reaping it).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Sends it signal `sig` (nothing once it ended).
    pub fn signal(&mut self, sig: i32) {
        if self.alive() {
            signal(self.pid(), sig);
        }
    }

    /// Stops it: SIGTERM, then SIGKILL when it still runs after `grace`. Returns its exit status.
    pub fn terminate(&mut self, grace: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        crate::wait_until(grace, || !self.alive());
        self.kill()
    }

    /// Kills it (SIGKILL) when it still runs, and reaps it. Returns its exit status.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.exit_status() {
            return s;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for a child that was killed");
        self.status = Some(status);
        status
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_is_stopped_by_sigterm_and_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        die_with_parent(&mut cmd);
        let mut s = Service::spawn("sleep", cmd, &dir.path().join("sleep.log")).unwrap();
        assert!(s.alive());
        let status = s.terminate(Duration::from_secs(5));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert!(!s.alive());
    }

    #[test]
    fn a_child_of_a_thread_that_ended_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        // The spawning thread ends: the kernel kills the child, even though the process lives.
        let mut s = std::thread::spawn(move || {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            die_with_parent(&mut cmd);
            Service::spawn("sleep", cmd, &log).unwrap()
        })
        .join()
        .unwrap();
        assert!(crate::wait_until(Duration::from_secs(10), || !s.alive()), "the child outlived its parent thread");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(s.exit_status().and_then(|s| s.signal()), Some(libc::SIGKILL));
    }
}
