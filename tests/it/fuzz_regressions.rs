//! Replays the fuzz inputs on stable, through the fuzz targets' own code (`fuzz/src/lib.rs`,
//! included here): every file of `fuzz/regressions/<target>/` (inputs that once crashed a
//! target) and every seed of `fuzz/corpus/<target>/`. CI does not run the fuzzer; this keeps
//! what it found fixed.
//!
//! Files under `fuzz/regressions/<target>/known/` are inputs of known panics being fixed on
//! another branch: they are listed but not run until that fix is merged (then move them up one
//! folder, or run them now with `SLUICE_FUZZ_KNOWN=1`).

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Runs every file of `<folder>/<target>/` (and of `<folder>/<target>/<sub>/` for each `sub`)
/// through its target; returns how many ran, and panics naming every file that failed.
fn replay(folder: &str, subs: &[&str]) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(folder);
    let mut failed = Vec::new();
    let mut ran = 0;
    for (target, body) in harness::TARGETS {
        let dir = root.join(target);
        let mut inputs = files(&dir);
        for sub in subs {
            inputs.extend(files(&dir.join(sub)));
        }
        for path in inputs {
            let data = std::fs::read(&path).unwrap();
            ran += 1;
            if std::panic::catch_unwind(|| body(&data)).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "{} of {ran} inputs fail:\n{}", failed.len(), failed.join("\n"));
    ran
}

#[test]
fn regression_inputs_pass() {
    let known: &[&str] = if std::env::var_os("SLUICE_FUZZ_KNOWN").is_some() { &["known"] } else { &[] };
    replay("regressions", known);
}

#[test]
fn corpus_seeds_pass() {
    let ran = replay("corpus", &[]);
    assert!(ran >= harness::TARGETS.len(), "every target has seeds ({ran} files)");
}

#[test]
fn every_target_has_a_fuzz_binary_and_seeds() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
    for (target, _) in harness::TARGETS {
        let body = std::fs::read_to_string(fuzz.join("fuzz_targets").join(format!("{target}.rs"))).unwrap();
        assert!(body.contains(&format!("sluice_fuzz::{target}(data)")), "fuzz_targets/{target}.rs calls its body");
        assert!(manifest.contains(&format!("name = \"{target}\"")), "fuzz/Cargo.toml has a [[bin]] {target}");
        assert!(!files(&fuzz.join("corpus").join(target)).is_empty(), "fuzz/corpus/{target}/ has seeds");
    }
}

#[test]
fn the_function_rules_cover_the_registry() {
    let rules = harness::function_rules();
    for f in sluice::rule::catalog::all() {
        assert!(rules.iter().any(|r| r.contains(&format!("{}(a", f.name)) || r.contains(&format!("{}()", f.name))), "{} gets fuzzed arguments", f.name);
    }
}
