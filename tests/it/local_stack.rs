//! `deploy/local-stack.sh` (the `local_stack` example), README's "Try it locally": the smoke
//! run (a seed sample over MQTT answered 200 and imported into Kafka, a data-flow message
//! through the Kafka source), and that nothing it starts outlives it: stopped by SIGTERM (it
//! stops Sluice, then the brokers) or even by SIGKILL (its services die with it, its watchdog
//! removes the folder). It runs the test build of `sluice` (SLUICE_BIN), so no release build is
//! needed: the script builds the examples in the same target folder and profile.
//! The stack runs its services in a process group of their own (so that Ctrl-C in a terminal
//! reaches the stack alone), so a run is followed by a mark instead: an environment variable
//! that every process it starts inherits. None of them may be left once the script is gone.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sluice_testkit::poll_until;

struct Script {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    /// The threads reading stdout and stderr: they end at the pipes' end of file.
    readers: Vec<std::thread::JoinHandle<()>>,
    /// The script's TMPDIR: its temporary work folder is made in there.
    tmp: tempfile::TempDir,
    /// The value of [`MARK`] in the environment of this run's processes.
    mark: String,
}

/// The environment variable that marks the processes of one run.
const MARK: &str = "SLUICE_LOCAL_STACK_TEST_MARK";

impl Script {
    fn start(args: &[&str]) -> Script {
        use std::os::unix::process::CommandExt;
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let tmp = tempfile::Builder::new().prefix("sluice-local-stack-test-").tempdir().expect("temp dir");
        let mark = tmp.path().display().to_string();
        let mut child = Command::new("bash")
            .arg(repo.join("deploy/local-stack.sh"))
            .args(args)
            .env("SLUICE_BIN", env!("CARGO_BIN_EXE_sluice"))
            .env("SLUICE_STACK_TIMEOUT", "90")
            .env("TMPDIR", tmp.path())
            .env(MARK, &mark)
            .env_remove("SLUICE_STACK_MQTT_PORT")
            .env_remove("SLUICE_STACK_KAFKA_PORT")
            .env_remove("SLUICE_STACK_ADMIN_PORT")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start deploy/local-stack.sh");
        let collect = |mut r: Box<dyn Read + Send>| {
            let buf = Arc::new(Mutex::new(String::new()));
            let b = buf.clone();
            let reader = std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    b.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            });
            (buf, reader)
        };
        let (out, out_reader) = collect(Box::new(child.stdout.take().expect("stdout")));
        let (err, err_reader) = collect(Box::new(child.stderr.take().expect("stderr")));
        Script { child, out, err, readers: vec![out_reader, err_reader], tmp, mark }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn output(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout(), self.err.lock().unwrap())
    }

    /// Waits for the exit; on timeout stops the script (SIGTERM, then its whole group) and fails.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let mut status = None;
        if poll_until(timeout, Duration::from_millis(100), || {
            status = self.child.try_wait().expect("wait");
            status.is_some()
        }) {
            // The reader threads take the last output: they end at the pipes' end of file (a
            // process left holding a pipe is reported by `assert_nothing_left`).
            let _ = poll_until(Duration::from_secs(5), Duration::from_millis(20), || self.readers.iter().all(|r| r.is_finished()));
            return status.expect("exit status");
        }
        signal(self.pid(), "TERM");
        // The script's trap stops what it started: give it the time its own stop takes.
        let _ = poll_until(Duration::from_secs(15), Duration::from_millis(100), || self.child.try_wait().ok().flatten().is_some());
        self.kill_all();
        panic!("deploy/local-stack.sh did not finish within {timeout:?}\n{}", self.output());
    }

    /// Waits until stdout contains `text`.
    fn wait_for_stdout(&mut self, text: &str, timeout: Duration) {
        let mut exited = None;
        let printed = poll_until(timeout, Duration::from_millis(100), || {
            exited = self.child.try_wait().expect("wait");
            exited.is_some() || self.stdout().contains(text)
        });
        if let Some(s) = exited.filter(|_| !self.stdout().contains(text)) {
            panic!("the script exited ({s}) before printing {text:?}\n{}", self.output());
        }
        if !printed {
            self.kill_all();
            panic!("no {text:?} within {timeout:?}\n{}", self.output());
        }
    }

    /// The processes of this run still running: (pid, command).
    fn processes(&self) -> Vec<(u32, String)> {
        marked_processes(&self.mark)
    }

    /// Kills the script's group and every process of this run.
    fn kill_all(&mut self) {
        signal_group(self.pid(), "KILL");
        for (pid, _) in self.processes() {
            signal(pid, "KILL");
        }
        let _ = self.child.wait();
    }

    /// Asserts that no process of this run is left (polling up to `timeout`: the script may be
    /// gone before the processes it stops), and that its temporary folder is gone.
    fn assert_nothing_left(&mut self, timeout: Duration) {
        if !poll_until(timeout, Duration::from_millis(200), || self.processes().is_empty()) {
            let left = self.processes();
            self.kill_all();
            panic!("processes left running by deploy/local-stack.sh: {left:?}\n{}", self.output());
        }
        let entries: Vec<PathBuf> = std::fs::read_dir(self.tmp.path()).expect("TMPDIR").map(|e| e.expect("entry").path()).collect();
        assert!(entries.is_empty(), "the script left {entries:?} in its TMPDIR\n{}", self.output());
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() || !self.processes().is_empty() {
            self.kill_all();
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

fn signal_group(pgid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg("--").arg(format!("-{pgid}")).stderr(Stdio::null()).status();
}

/// The processes (pid, command) whose environment holds `MARK=mark`, zombies excepted.
fn marked_processes(mark: &str) -> Vec<(u32, String)> {
    let want = format!("{MARK}={mark}").into_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if !environ.split(|b| *b == 0).any(|var| var == want) || !sluice_testkit::process::running(pid) {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_string();
        found.push((pid, comm));
    }
    found
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Checks a successful smoke run's output; returns the request id it used.
fn check_smoke_output(s: &Script) -> String {
    let out = s.stdout();
    assert!(out.contains("local-stack: smoke OK"), "{}", s.output());
    // The rules API answers with the stack's token (`sluice rules list`).
    assert!(out.lines().any(|l| l.starts_with("integration-measurepoint ") && l.contains(" running ")), "no rule list\n{}", s.output());
    // The seed sample's request id is made unique per run: `smoke-<time>-<pid>`.
    let prefix = "reply: sys/productKey1/integration/measurepoint/post_reply ";
    let reply = out.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no reply printed\n{}", s.output()));
    let reply: Value = serde_json::from_str(reply).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {reply}"));
    let id = reply["id"].as_str().unwrap_or_default().to_string();
    assert!(id.starts_with("smoke-"), "{reply}");
    assert_eq!(reply, serde_json::json!({"id": id, "code": 200, "data": {}, "message": "OK"}));

    let records = json_lines(&out);
    let mp: Vec<&Value> = records.iter().filter(|r| r["topic"] == "iot-integration-measurepoint").collect();
    assert_eq!(mp.len(), 3, "the three entries of seed 003's request\n{}", s.output());
    assert!(mp.iter().all(|r| r["value"]["requestId"] == id.as_str()), "records of this run's request\n{}", s.output());
    assert_eq!(mp.iter().map(|r| r["key"].as_str().unwrap_or_default()).collect::<Vec<_>>(), ["device1", "device1", "device2"]);
    assert_eq!(mp[1]["value"]["temp"], serde_json::json!(2.02));
    assert_eq!(mp[1]["value"]["branchCurr"], serde_json::json!(["2.02", "3.02", "9.93"]));
    assert_eq!(mp[0]["headers"]["kind"], "integration_measurepoint");
    assert_eq!(mp[0]["headers"]["iot-topic"], "sys/productKey1/integration/measurepoint/post");

    let prop: Vec<&Value> = records.iter().filter(|r| r["topic"] == "iot-property-1234556554").collect();
    assert_eq!(prop.len(), 1, "the property post sent to iot-in\n{}", s.output());
    assert_eq!(prop[0]["key"], "deviceName1234");
    assert_eq!(prop[0]["value"]["latitude"], serde_json::json!(39.9));
    assert_eq!(prop[0]["headers"]["sluice-rule"], "property-post");
    id
}

#[test]
fn smoke_run_answers_200_and_writes_the_outputs_to_kafka() {
    // One stack at a time: each starts three servers on a small machine.
    let _heavy = sluice_testkit::heavy();
    let mut s = Script::start(&["--smoke"]);
    let status = s.wait(Duration::from_secs(400));
    assert!(status.success(), "--smoke failed ({status})\n{}", s.output());
    check_smoke_output(&s);
    s.assert_nothing_left(Duration::from_secs(10));
}

/// A given folder is kept, and a second run in it (topics and the consumer group's offsets
/// already there) checks its own records, not the first run's.
#[test]
fn smoke_runs_twice_in_a_given_folder() {
    // One stack at a time: each starts three servers on a small machine.
    let _heavy = sluice_testkit::heavy();
    let dir = tempfile::Builder::new().prefix("sluice-local-stack-dir-").tempdir().expect("temp dir");
    let work = dir.path().join("stack");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut s = Script::start(&["--smoke", "--dir", work.to_str().expect("UTF-8 path")]);
        let status = s.wait(Duration::from_secs(400));
        assert!(status.success(), "--smoke --dir failed ({status})\n{}", s.output());
        ids.push(check_smoke_output(&s));
        s.assert_nothing_left(Duration::from_secs(10));
        assert!(work.join("sluice.toml").is_file() && work.join("tansu/tansu.db").is_file(), "the given folder is kept");
    }
    assert_ne!(ids[0], ids[1]);
}

/// Waits until the stack is up, then checks what it printed for the user.
fn started_stack() -> Script {
    let mut s = Script::start(&[]);
    s.wait_for_stdout("Ctrl-C stops everything", Duration::from_secs(300));
    let out = s.stdout();
    for needle in ["mosquitto_pub -h 127.0.0.1 -p ", "/samples/measurepoint.json", "kafka_tool tail --brokers 127.0.0.1:", "/metrics", "/readyz", "sluice rules list"] {
        assert!(out.contains(needle), "the banner lacks {needle:?}\n{}", s.output());
    }
    s
}

#[test]
fn sigterm_stops_everything_and_removes_the_work_folder() {
    // One stack at a time: each starts three servers on a small machine.
    let _heavy = sluice_testkit::heavy();
    let mut s = started_stack();
    assert!(s.processes().len() >= 5, "the stack, its watchdog, mosquitto, tansu and sluice run: {:?}", s.processes());
    signal(s.pid(), "TERM");
    let status = s.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(143), "exit status after SIGTERM\n{}", s.output());
    s.assert_nothing_left(Duration::from_secs(5));
}

#[test]
fn sigkill_of_the_script_still_stops_what_it_started() {
    // One stack at a time: each starts three servers on a small machine.
    let _heavy = sluice_testkit::heavy();
    let mut s = started_stack();
    s.child.kill().expect("SIGKILL");
    let _ = s.child.wait();
    // The services die with the stack (parent-death signal); its watchdog sees the stack gone
    // at once, waits for them and removes the folder.
    s.assert_nothing_left(Duration::from_secs(20));
}
