//! Which rules a set of files defines: the one place that lists rule files and settles
//! duplicate names, shared by `sluice check`, `sluice run` and the rule store's reloads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{CompileError, Pos};
use crate::rule::{compile_file, Rule};

/// The `*.toml` files under the given files or folders, sorted, and the folders that could
/// not be read.
pub fn rule_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<CompileError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(rd) => files.extend(rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|f| f.extension().is_some_and(|x| x == "toml") && f.is_file())),
                Err(e) => errors.push(CompileError { path: p.clone(), pos: Pos { line: 1, col: 1 }, message: format!("cannot read rules folder: {e}"), hint: None, source_line: None }),
            }
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    files.dedup();
    (files, errors)
}

/// What runs from one file after [`resolve`].
#[derive(Debug, Default)]
pub struct Resolved {
    /// The rule that runs from the file, if any.
    pub running: Option<Arc<Rule>>,
    /// Set when a rule name the file offered was taken by an earlier file.
    pub conflict: Option<CompileError>,
}

/// Settles duplicate names across files, in file order. Each file offers its candidate rules
/// in order of preference (its current compile, then the last good one); the first candidate
/// whose name no earlier file claimed runs. A name taken by an earlier file is a conflict.
pub fn resolve<'a>(files: impl IntoIterator<Item = (&'a Path, Vec<Arc<Rule>>)>) -> Vec<Resolved> {
    let mut claimed: HashMap<Arc<str>, &Path> = HashMap::new();
    let mut out = Vec::new();
    for (path, mut candidates) in files {
        candidates.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let mut r = Resolved::default();
        for c in candidates {
            match claimed.get(&c.name) {
                Some(other) if *other != path => {
                    if r.conflict.is_none() {
                        r.conflict = Some(CompileError {
                            path: path.to_path_buf(),
                            pos: Pos { line: 1, col: 1 },
                            message: format!("duplicate rule name `{}` (also in {})", c.name, other.display()),
                            hint: Some("set a unique `name`".into()),
                            source_line: None,
                        });
                    }
                }
                _ => {
                    claimed.insert(c.name.clone(), path);
                    r.running = Some(c);
                    break;
                }
            }
        }
        out.push(r);
    }
    out
}

/// Compiles every rule file under `paths` (files or folders of `*.toml`): the rules that
/// would run, and every error (compile errors, unreadable folders, duplicate names).
pub fn compile_paths(paths: &[PathBuf]) -> (Vec<Rule>, Vec<CompileError>) {
    let (files, mut errors) = rule_files(paths);
    let mut compiled: Vec<(&Path, Vec<Arc<Rule>>)> = Vec::new();
    for f in &files {
        match compile_file(f) {
            Ok(r) => compiled.push((f, vec![Arc::new(r)])),
            Err(e) => errors.extend(e),
        }
    }
    let mut rules = Vec::new();
    for r in resolve(compiled) {
        errors.extend(r.conflict);
        // Each rule was compiled once above and offered once, so its Arc is unique.
        rules.extend(r.running.and_then(Arc::into_inner));
    }
    (rules, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::compile_str;

    fn rule(name: &str) -> Arc<Rule> {
        let text = format!("name = \"{name}\"\nsql = \"SELECT 1 AS one FROM \\\"t\\\"\"\n[[actions]]\ntopic = \"x\"\n");
        Arc::new(compile_str(Path::new("r.toml"), &text).unwrap())
    }

    #[test]
    fn the_first_file_keeps_a_duplicate_name_and_a_fallback_candidate_runs() {
        let (a, b, c) = (Path::new("a.toml"), Path::new("b.toml"), Path::new("c.toml"));
        let old_c = rule("c");
        let out = resolve([(a, vec![rule("x")]), (b, vec![rule("x")]), (c, vec![rule("x"), old_c.clone()])]);
        assert_eq!(&*out[0].running.as_ref().unwrap().name, "x");
        assert!(out[0].conflict.is_none());
        assert!(out[1].running.is_none());
        assert_eq!(out[1].conflict.as_ref().unwrap().message, "duplicate rule name `x` (also in a.toml)");
        // c's new text clashes; its last good rule (another name) keeps running.
        assert!(Arc::ptr_eq(out[2].running.as_ref().unwrap(), &old_c));
        assert!(out[2].conflict.is_some());
    }
}
