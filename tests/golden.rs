//! Golden rule tests: one test per case file under `tests/rules/`, run through the real
//! `sluice test` binary.
//!
//! A case named `<case>` is `tests/rules/<case>.toml` (a rule file) plus either
//!
//! - `<case>.input.jsonl`: one message per line,
//!   `{"topic": …, "payload": <JSON> | "payload_base64": "…", "now": <ms, optional>}`
//!   (no payload key means an empty payload; `now` defaults to [`DEFAULT_NOW_MS`]), and
//!   `<case>.expected.jsonl`: the exact standard output of
//!   `sluice test tests/rules/<case>.toml --topic T --payload - --now N` for every input line,
//!   in order. Text is compared exactly: key order is part of the contract (SELECT order);
//! - or `<case>.expected.err`: the rule must not compile; the file holds the exact first line
//!   of standard error, `tests/rules/<case>.toml:L:C: message[; hint]` (exit code 2). A case
//!   without an input file is a compile-error case.
//!
//! `SLUICE_BLESS=1 cargo test --test golden` rewrites the expected files from the actual
//! output. Blessing is for writing new cases: read every rewritten file against the rule and
//! the seed documents before committing it (`git diff tests/rules`).
//!
//! - or `<case>.sequence.jsonl` (stateful rules): the same lines run as one sequence,
//!   `sluice test tests/rules/<case>.toml --input <case>.sequence.jsonl --now 1700000000000`, on
//!   a virtual clock that each line's `now` moves (a line without `topic` only moves it), with
//!   `<case>.expected.jsonl` the exact output of the whole run.
//!
//! Cases under `tests/rules/pending/` show known engine bugs: they hold the expected (correct)
//! output and fail today, so they are skipped. `SLUICE_PENDING=1` runs them too (as
//! `pending/<case>`), to check a fix; move a case up to `tests/rules/` once it passes.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libtest_mimic::{Arguments, Failed, Trial};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The clock of an input line without `now`: 2023-11-14T22:13:20Z.
const DEFAULT_NOW_MS: i64 = 1_700_000_000_000;

/// Where the cases live, relative to the package root (also the binary's working directory, so
/// that paths in error messages are stable).
const CASES: &str = "tests/rules";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    topic: String,
    payload: Option<Box<RawValue>>,
    payload_base64: Option<String>,
    now: Option<i64>,
}

fn main() {
    let args = Arguments::from_args();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bless = std::env::var("SLUICE_BLESS").is_ok_and(|v| v == "1");
    let mut names = case_names(&root.join(CASES));
    if std::env::var("SLUICE_PENDING").is_ok_and(|v| v == "1") {
        names.extend(case_names(&root.join(CASES).join("pending")).into_iter().map(|n| format!("pending/{n}")));
    }
    let trials = names
        .into_iter()
        .map(|name| {
            let root = root.clone();
            Trial::test(name.clone(), move || run_case(&root, &name, bless))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// The `<case>` of every `<case>.toml` directly in `dir`, sorted.
fn case_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".toml")).map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Runs case `name` (`pending/<case>` for a pending one).
fn run_case(root: &Path, name: &str, bless: bool) -> Result<(), Failed> {
    let dir = root.join(CASES);
    let rule = format!("{CASES}/{name}.toml");
    let input = dir.join(format!("{name}.input.jsonl"));
    let expected_err = dir.join(format!("{name}.expected.err"));
    let expected_out = dir.join(format!("{name}.expected.jsonl"));
    let sequence = dir.join(format!("{name}.sequence.jsonl"));
    if sequence.exists() {
        if input.exists() {
            return Err(format!("{name}: has both .input.jsonl and .sequence.jsonl").into());
        }
        return sequence_case(root, &rule, &sequence, &expected_out, bless);
    }
    if expected_err.exists() || !input.exists() {
        if expected_out.exists() {
            return Err(format!("{name}: has both .expected.jsonl and a compile-error form (no .input.jsonl or an .expected.err)").into());
        }
        compile_error_case(root, &rule, &expected_err, bless)
    } else {
        output_case(root, &rule, &input, &expected_out, bless)
    }
}

fn sluice(root: &Path, rule: &str, topic: &str, now: i64, payload: &[u8]) -> Result<std::process::Output, Failed> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(root)
        .args(["test", rule, "--topic", topic, "--payload", "-", "--now", &now.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run sluice: {e}"))?;
    // A rule that does not compile makes sluice exit before it reads its input.
    match child.stdin.take().expect("piped stdin").write_all(payload) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(format!("writing the payload: {e}").into()),
        _ => {}
    }
    Ok(child.wait_with_output().map_err(|e| format!("waiting for sluice: {e}"))?)
}

fn compile_error_case(root: &Path, rule: &str, expected: &Path, bless: bool) -> Result<(), Failed> {
    let out = sluice(root, rule, "golden/compile-error", DEFAULT_NOW_MS, b"{}")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or("").to_string();
    if out.status.code() != Some(2) {
        return Err(format!("expected the rule not to compile (exit code 2), got {}\nstdout:\n{}\nstderr:\n{stderr}", out.status, String::from_utf8_lossy(&out.stdout)).into());
    }
    if bless {
        std::fs::write(expected, format!("{first}\n")).map_err(|e| format!("writing {}: {e}", expected.display()))?;
        return Ok(());
    }
    let want = read(expected)?;
    let want = want.strip_suffix('\n').unwrap_or(&want);
    if want != first {
        return Err(format!("compile error differs\n{}\nfull stderr:\n{stderr}", diff(want, &first)).into());
    }
    Ok(())
}

fn output_case(root: &Path, rule: &str, input: &Path, expected: &Path, bless: bool) -> Result<(), Failed> {
    let text = read(input)?;
    let mut actual = String::new();
    let mut lines = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        let at = format!("{}:{}", input.display(), i + 1);
        let msg: Input = serde_json::from_str(line).map_err(|e| format!("{at}: bad input line: {e}"))?;
        let payload = match (&msg.payload, &msg.payload_base64) {
            (Some(p), None) => p.get().as_bytes().to_vec(),
            (None, Some(b)) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(b).map_err(|e| format!("{at}: bad payload_base64: {e}"))?
            }
            (None, None) => Vec::new(),
            (Some(_), Some(_)) => return Err(format!("{at}: give payload or payload_base64, not both").into()),
        };
        let out = sluice(root, rule, &msg.topic, msg.now.unwrap_or(DEFAULT_NOW_MS), &payload)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!("{at}: sluice test failed with {}\nstderr:\n{stderr}", out.status).into());
        }
        if let Some(other) = stderr.lines().find(|l| !l.starts_with("note: ")) {
            return Err(format!("{at}: unexpected standard error: {other}\nfull stderr:\n{stderr}").into());
        }
        actual.push_str(&String::from_utf8(out.stdout).map_err(|e| format!("{at}: output is not UTF-8: {e}"))?);
    }
    if lines == 0 {
        return Err(format!("{}: no input lines", input.display()).into());
    }
    if bless {
        std::fs::write(expected, &actual).map_err(|e| format!("writing {}: {e}", expected.display()))?;
        return Ok(());
    }
    let want = read(expected)?;
    if want != actual {
        return Err(format!("output differs from {}\n{}", expected.display(), diff(&want, &actual)).into());
    }
    Ok(())
}

/// A stateful case: the whole sequence in one `sluice test --input` run, on its virtual clock.
fn sequence_case(root: &Path, rule: &str, sequence: &Path, expected: &Path, bless: bool) -> Result<(), Failed> {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(root)
        .args(["test", rule, "--input", &sequence.display().to_string(), "--now", &DEFAULT_NOW_MS.to_string()])
        .output()
        .map_err(|e| format!("cannot run sluice: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("sluice test --input failed with {}\nstderr:\n{stderr}", out.status).into());
    }
    if let Some(other) = stderr.lines().find(|l| !l.starts_with("note: ")) {
        return Err(format!("unexpected standard error: {other}\nfull stderr:\n{stderr}").into());
    }
    let actual = String::from_utf8(out.stdout).map_err(|e| format!("output is not UTF-8: {e}"))?;
    if bless {
        std::fs::write(expected, &actual).map_err(|e| format!("writing {}: {e}", expected.display()))?;
        return Ok(());
    }
    let want = read(expected)?;
    if want != actual {
        return Err(format!("output differs from {}\n{}", expected.display(), diff(&want, &actual)).into());
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, Failed> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}\n(write it by hand, or run with SLUICE_BLESS=1 and review what was written)", path.display()).into())
}

/// A line diff (longest common subsequence): `-` expected, `+` actual, and for a changed line the
/// column where it starts to differ.
fn diff(want: &str, got: &str) -> String {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut out = String::from("--- expected\n+++ actual\n");
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            i += 1;
            j += 1;
        } else if i < n && j < m && lcs[i + 1][j] == lcs[i][j + 1] && lcs[i + 1][j + 1] == lcs[i][j] {
            // One line replaced by another: show both and where they part.
            let col = a[i].chars().zip(b[j].chars()).take_while(|(x, y)| x == y).count();
            let _ = writeln!(out, "- {}\n+ {}\n  {}^ first difference at column {}", a[i], b[j], " ".repeat(col), col + 1);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        }
    }
    if want.ends_with('\n') != got.ends_with('\n') && !(want.is_empty() || got.is_empty()) {
        out.push_str("(the files differ in the final newline)\n");
    }
    out
}
