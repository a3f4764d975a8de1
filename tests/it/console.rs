//! The web console (`/ui/` on the admin server) in a real browser: `sluice run` on its own
//! Mosquitto (the integration channel and the data-flow topics), the file sink, the admin server
//! with a token and the tap, driven by `tests/browser/console.mjs` (playwright-core and Debian's
//! headless Chromium, which `scripts/test-deps.sh` installs). The script's screenshots are kept
//! in `target/browser-artifacts/console` (`failure.png` at the step that failed).

use sluice_testkit as support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;
use support::admin::mqtt_file_config;
use support::config::merge;
use support::{tail, write};

const TOKEN: &str = "console-token-0123456789";

/// The test's pre-existing rule, `temps` (named after its file).
const TEMPS: &str = "sql = \"SELECT deviceName() AS dn, items.temp.value AS t FROM \\\"/sys/+/+/thing/event/property/post\\\"\"\n\n[[actions]]\ntopic = \"temps\"\n";

/// How long the script may take in all (it fails itself after 5 minutes).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(360);

const INSTALL: &str = "run `bash scripts/test-deps.sh`, which installs it";

/// Whether the program `name` is on `PATH`.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// Copies every line of `from` to the test's output and into `into`.
fn stream(from: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            let mut all = into.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    })
}

/// The browser test's tools, or a failure naming the install script.
fn browser_tools(root: &Path) -> (PathBuf, PathBuf) {
    let browser = root.join("tests/browser");
    assert!(on_path("node"), "`node` (Node.js 20 or later) is not on PATH: {INSTALL}");
    assert!(browser.join("node_modules/playwright-core").is_dir(), "{} is missing: {INSTALL}", browser.join("node_modules/playwright-core").display());
    let chromium = std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(chromium.is_file(), "Chromium is not at {} (set CHROMIUM): {INSTALL}", chromium.display());
    assert!(on_path("mosquitto_pub"), "`mosquitto_pub` (mosquitto-clients) is not on PATH: {INSTALL}");
    (browser.join("console.mjs"), chromium)
}

#[test]
fn the_console_in_a_browser() {
    let _heavy = sluice_testkit::heavy();
    let root = support::repo_root();
    let (script, chromium) = browser_tools(&root);

    let mosquitto = support::mosquitto::Mosquitto::start();
    let dir = support::temp_dir("sluice-console-");
    let (rules, out) = (dir.path().join("rules"), dir.path().join("out"));
    write(&rules.join("temps.toml"), TEMPS);
    let (config, log) = (dir.path().join("sluice.toml"), dir.path().join("sluice.log"));
    let url = mosquitto.url();
    let (mut sluice, port) = support::Sluice::start_with_admin(&config, &log, |port| {
        let mut c = mqtt_file_config(&rules, &url, &out, port, TOKEN, true);
        // The tap (`[engine.tap]`, off by default) captures the integration requests the MQTT
        // source takes as the console's live samples.
        merge(&mut c, json!({"engine": {"tap": {"enabled": true}}}));
        c
    });

    let artifacts = root.join("target/browser-artifacts/console");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).expect("the artifacts folder");
    let mut child = Command::new("node")
        .arg(&script)
        .current_dir(&root)
        .env("SLUICE_URL", format!("http://127.0.0.1:{port}"))
        .env("SLUICE_TOKEN", TOKEN)
        .env("SLUICE_RULES_DIR", &rules)
        .env("SLUICE_MQTT_PORT", mosquitto.port.to_string())
        .env("SLUICE_ARTIFACTS", &artifacts)
        .env("SLUICE_KILL_PID", sluice.pid().to_string())
        .env("SLUICE_BIN", support::sluice_bin())
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node tests/browser/console.mjs");
    let output = Arc::new(Mutex::new(String::new()));
    let readers = [stream(child.stdout.take().expect("stdout"), output.clone()), stream(child.stderr.take().expect("stderr"), output.clone())];
    let mut status = None;
    let ended = support::poll_until(SCRIPT_TIMEOUT, Duration::from_millis(100), || {
        status = child.try_wait().expect("wait for the script");
        status.is_some()
    });
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
    }
    for r in readers {
        let _ = r.join();
    }
    let output = output.lock().unwrap().clone();
    let report = |why: String| format!("{why}; screenshots in {}\n--- console.mjs ---\n{output}\n--- sluice log (tail) ---\n{}", artifacts.display(), tail(&log, 60));
    assert!(ended, "{}", report(format!("console.mjs did not finish within {SCRIPT_TIMEOUT:?}")));
    let status = status.expect("exit status");
    assert!(status.success(), "{}", report(format!("console.mjs failed ({status})")));
    assert!(output.contains("steps ok"), "{}", report("console.mjs exited 0 without finishing its steps".into()));
    // Its last step killed Sluice (the console shows the API unreachable).
    assert!(!sluice.running(), "{}", report("sluice still runs after the api-down step".into()));
}
