//! The rule store: the rules folder is the source of truth, and the store keeps the running
//! engine in step with it.
//!
//! - [`RuleStore::reload`] rescans the rule paths, recompiles the files whose text changed and
//!   swaps the engine's rule set atomically. A file that does not compile (or whose rule name is
//!   taken) never replaces the rule running from it: the old rule keeps running, and the error is
//!   logged with `path:line:col`, counted, and shown by the API.
//! - The API's writes (create, update, delete, enable, disable) are checked first (a rule that
//!   does not compile is refused and nothing is written), then written to the folder atomically
//!   (temporary file + rename), then reloaded.
//! - [`spawn_reloader`](super::watch::spawn_reloader) reloads when a watched file changes (debounced) and on SIGHUP.
//!
//! A reload swaps one `Arc`: each message is evaluated entirely by the old set or entirely by
//! the new one, so a reload loses and duplicates no message.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::control::resolve::{resolve, rule_files};
use crate::control::view::{ErrorView, ReloadReport, RuleCounts, RuleStatus, RuleView};
use crate::engine::Engine;
use crate::error::{CompileError, Pos, StoreError};
use crate::rule::{compile_str, Rule};
use crate::telemetry::metrics;

/// One rule file as the store last saw it.
pub(super) struct FileState {
    /// The file's text.
    pub(super) text: String,
    /// The rule compiled from `text`, when it compiles.
    pub(super) compiled: Option<Arc<Rule>>,
    /// The rule the engine runs from this file (the last good one, when `text` is broken).
    pub(super) running: Option<Arc<Rule>>,
    /// Why `text` does not compile.
    pub(super) errors: Vec<CompileError>,
    /// Set when the rule's name is taken by an earlier file.
    pub(super) conflict: Option<CompileError>,
}

impl FileState {
    /// The rule name the file declares (or would declare): running or compiled name, else the
    /// `name` key, else the file stem.
    pub(super) fn declared_name(&self, path: &Path) -> String {
        if let Some(r) = self.compiled.as_ref().or(self.running.as_ref()) {
            return r.name.to_string();
        }
        toml::from_str::<toml::Table>(&self.text)
            .ok()
            .and_then(|t| t.get("name").and_then(|n| n.as_str().map(str::to_string)))
            .unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
    }
}

pub(super) struct State {
    pub(super) files: BTreeMap<PathBuf, FileState>,
}

/// Keeps the engine's rules in step with the rule paths.
pub struct RuleStore {
    paths: Vec<PathBuf>,
    engine: Arc<Engine>,
    pub(super) state: Mutex<State>,
    /// Serializes API writes (check, write, reload) so two writers cannot both pass a check.
    pub(super) writes: Mutex<()>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RuleStore {
    /// A store over `paths` driving `engine`. Call [`reload`](Self::reload) to load.
    pub fn new(paths: Vec<PathBuf>, engine: Arc<Engine>) -> RuleStore {
        RuleStore { paths, engine, state: Mutex::new(State { files: BTreeMap::new() }), writes: Mutex::new(()) }
    }

    /// The engine the store drives.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The configured rule paths (files or folders).
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The folder the API writes new rules to: the first configured folder.
    pub fn folder(&self) -> Option<&Path> {
        self.paths.iter().find(|p| p.is_dir()).map(PathBuf::as_path)
    }

    /// The first load, at start: like [`reload`](Self::reload), but any file that does not
    /// compile (or whose name is taken) is an error, so nothing runs with a rule missing.
    pub fn load(&self) -> Result<ReloadReport, Vec<CompileError>> {
        let (report, errors) = self.rescan();
        if errors.is_empty() {
            Ok(report)
        } else {
            Err(errors)
        }
    }

    /// Rescans the rule paths and swaps the engine's rule set if anything changed.
    pub fn reload(&self) -> ReloadReport {
        self.rescan().0
    }

    /// A reload, with the compile errors of every file that does not compile now.
    fn rescan(&self) -> (ReloadReport, Vec<CompileError>) {
        let mut st = lock(&self.state);
        let (files, mut list_errors) = rule_files(&self.paths);
        let mut report = ReloadReport::default();
        let mut next: BTreeMap<PathBuf, FileState> = BTreeMap::new();
        for f in files {
            let old = st.files.remove(&f);
            let text = match std::fs::read_to_string(&f) {
                Ok(t) => t,
                Err(e) => {
                    // Unreadable (e.g. removed between listing and reading): keep what ran.
                    list_errors.push(CompileError { path: f.clone(), pos: Pos { line: 1, col: 1 }, message: format!("cannot read rule file: {e}"), hint: None, source_line: None });
                    if let Some(o) = old {
                        next.insert(f, o);
                    }
                    continue;
                }
            };
            let state = match old {
                Some(o) if o.text == text => o,
                old => {
                    report.compiled += 1;
                    let previous = old.and_then(|o| o.running);
                    match compile_str(&f, &text) {
                        Ok(rule) => FileState { text, compiled: Some(Arc::new(rule)), running: previous, errors: Vec::new(), conflict: None },
                        Err(errors) => FileState { text, compiled: None, running: previous, errors, conflict: None },
                    }
                }
            };
            next.insert(f, state);
        }
        // Decide what runs from each file: its current rule when it compiles, else the last
        // good one; a name already claimed by an earlier file is a conflict.
        let candidates = next.iter().map(|(path, fs)| (path.as_path(), fs.compiled.iter().chain(fs.running.iter()).cloned().collect()));
        let resolved = resolve(candidates.collect::<Vec<_>>());
        for (fs, r) in next.values_mut().zip(resolved) {
            fs.running = r.running;
            fs.conflict = r.conflict;
        }
        let mut errors: Vec<CompileError> = next.values().flat_map(|fs| fs.errors.iter().chain(fs.conflict.iter()).cloned()).collect();
        errors.extend(list_errors);
        report.errors = errors.iter().map(ErrorView::from).collect();

        let rules: Vec<Arc<Rule>> = next.values().filter_map(|f| f.running.clone()).collect();
        let current = self.engine.rules();
        let same = current.rules().len() == rules.len() && current.rules().iter().zip(&rules).all(|(a, b)| Arc::ptr_eq(a, b));
        if !same {
            let before: HashMap<&str, &Arc<Rule>> = current.rules().iter().map(|r| (&*r.name, r)).collect();
            let after: HashMap<&str, &Arc<Rule>> = rules.iter().map(|r| (&*r.name, r)).collect();
            for r in &rules {
                match before.get(&*r.name) {
                    None => report.added.push(r.name.to_string()),
                    Some(b) if !Arc::ptr_eq(b, r) => report.changed.push(r.name.to_string()),
                    _ => {}
                }
            }
            for r in current.rules() {
                if !after.contains_key(&*r.name) {
                    report.removed.push(r.name.to_string());
                }
            }
            self.engine.reload_rules(rules);
            for name in &report.removed {
                self.engine.forget_rule(name);
            }
            report.swapped = true;
        }
        st.files = next;
        report.rules = st.files.values().filter(|f| f.running.is_some()).count();

        metrics::RULES_LOADED.with_label_values(&["enabled"]).set(st.files.values().filter(|f| f.running.as_ref().is_some_and(|r| r.enabled)).count() as i64);
        metrics::RULES_LOADED.with_label_values(&["disabled"]).set(st.files.values().filter(|f| f.running.as_ref().is_some_and(|r| !r.enabled)).count() as i64);
        metrics::RULE_FILES_INVALID.with_label_values::<&str>(&[]).set(st.files.values().filter(|f| !f.errors.is_empty() || f.conflict.is_some()).count() as i64);
        let enabled = st.files.values().filter(|f| f.running.as_ref().is_some_and(|r| r.enabled)).count();
        let invalid = st.files.values().filter(|f| !f.errors.is_empty() || f.conflict.is_some()).count();
        crate::telemetry::health::set("rules", true, format!("{} rules loaded, {enabled} enabled, {invalid} file(s) not compiling", report.rules));
        metrics::RULE_RELOADS.with_label_values(&[if report.errors.is_empty() { "ok" } else { "error" }]).inc();
        if report.swapped {
            tracing::info!(rules = report.rules, added = ?report.added, changed = ?report.changed, removed = ?report.removed, "rule set reloaded");
        }
        if report.compiled > 0 {
            for e in &report.errors {
                tracing::warn!(error = %e.text, "rule not loaded; the running version (if any) is kept");
            }
        }
        (report, errors)
    }

    /// Every rule file, sorted by path.
    pub fn list(&self) -> Vec<RuleView> {
        let st = lock(&self.state);
        let mut rules: Vec<RuleView> = st.files.iter().map(|(p, f)| view(p, f, false)).collect();
        drop(st);
        for r in &mut rules {
            r.counts = Some(RuleCounts::of(&r.name));
            r.last_error = self.engine().recent_errors(&r.name).last().map(|e| format!("{}: {}", e.stage, e.reason));
        }
        rules
    }

    /// The rule named `name`, with its file's text.
    pub fn get(&self, name: &str) -> Result<RuleView, StoreError> {
        let st = lock(&self.state);
        let (p, f) = find(&st, name).ok_or_else(|| StoreError::NotFound(name.into()))?;
        Ok(view(p, f, true))
    }

    /// Compiles the current text of the rule named `name` (for `test`): the rule as its file
    /// defines it now, enabled.
    pub fn compile_for_test(&self, name: &str) -> Result<Rule, StoreError> {
        let (path, text) = {
            let st = lock(&self.state);
            let (p, f) = find(&st, name).ok_or_else(|| StoreError::NotFound(name.into()))?;
            (p.clone(), f.text.clone())
        };
        let mut rule = compile_str(&path, &text).map_err(StoreError::Invalid)?;
        rule.enabled = true;
        Ok(rule)
    }

    pub(crate) fn path_of(&self, name: &str) -> Result<PathBuf, StoreError> {
        let st = lock(&self.state);
        find(&st, name).map(|(p, _)| p.clone()).ok_or_else(|| StoreError::NotFound(name.into()))
    }
}

/// The file of the rule named `name`: the one running it, else one declaring it.
pub(super) fn find<'a>(st: &'a State, name: &str) -> Option<(&'a PathBuf, &'a FileState)> {
    st.files.iter().find(|(_, f)| f.running.as_ref().is_some_and(|r| &*r.name == name)).or_else(|| st.files.iter().find(|(p, f)| f.declared_name(p) == name))
}

fn view(path: &Path, f: &FileState, with_source: bool) -> RuleView {
    let shown = f.compiled.as_ref().or(f.running.as_ref());
    let enabled = f.compiled.as_ref().map(|r| r.enabled).or_else(|| toml::from_str::<toml::Table>(&f.text).ok().and_then(|t| t.get("enabled").and_then(toml::Value::as_bool))).unwrap_or(true);
    let status = if f.conflict.is_some() {
        RuleStatus::Conflict
    } else if !f.errors.is_empty() {
        RuleStatus::Invalid
    } else if enabled {
        RuleStatus::Running
    } else {
        RuleStatus::Disabled
    };
    RuleView {
        name: f.declared_name(path),
        path: path.display().to_string(),
        status,
        enabled,
        description: shown.map(|r| r.description.clone()).unwrap_or_default(),
        sql: shown.map(|r| r.sql.clone()),
        from: shown.map(|r| r.filter.as_str().to_string()),
        actions: shown.map(|r| r.actions.iter().map(|a| a.topic.source.clone()).collect()).unwrap_or_default(),
        error_topic: shown.and_then(|r| r.error_topic.clone()),
        running: f.running.is_some(),
        errors: f.errors.iter().chain(f.conflict.iter()).map(ErrorView::from).collect(),
        source: with_source.then(|| f.text.clone()),
        counts: None,
        last_error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineOptions, RuleSet};
    use crate::rule::expr::Env;

    fn rule(name: &str, filter: &str) -> String {
        format!("name = \"{name}\"\nsql = \"SELECT * FROM \\\"{filter}\\\"\"\n[[actions]]\ntopic = \"out-{name}\"\n")
    }

    fn store() -> (tempfile::TempDir, RuleStore) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::new(RuleSet::new(Vec::new()), Env::default(), EngineOptions::default()));
        let s = RuleStore::new(vec![dir.path().to_path_buf()], engine);
        (dir, s)
    }

    fn names(s: &RuleStore) -> Vec<String> {
        s.engine().rules().rules().iter().map(|r| r.name.to_string()).collect()
    }

    #[test]
    fn a_broken_edit_keeps_the_running_rule() {
        let (dir, s) = store();
        std::fs::write(dir.path().join("a.toml"), rule("a", "t/a")).unwrap();
        let r = s.reload();
        assert!(r.swapped && r.errors.is_empty(), "{r:?}");
        let before = s.engine().rules().rules()[0].clone();
        std::fs::write(dir.path().join("a.toml"), "name = \"a\"\nsql = \"SELECT nosuch() FROM \\\"t/a\\\"\"\n[[actions]]\ntopic = \"x\"\n").unwrap();
        let r = s.reload();
        assert!(!r.swapped);
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].text.contains("a.toml:2:"), "{}", r.errors[0].text);
        assert!(Arc::ptr_eq(&before, &s.engine().rules().rules()[0]));
        assert_eq!(s.get("a").unwrap().status, RuleStatus::Invalid);
        assert!(s.get("a").unwrap().running);
        // Fixing it swaps the new version in.
        std::fs::write(dir.path().join("a.toml"), rule("a", "t/b")).unwrap();
        let r = s.reload();
        assert!(r.swapped && r.errors.is_empty());
        assert_eq!(r.changed, vec!["a"]);
        assert_eq!(s.engine().rules().rules()[0].filter.as_str(), "t/b");
    }

    #[test]
    fn unchanged_files_are_not_recompiled_and_deletes_remove() {
        let (dir, s) = store();
        std::fs::write(dir.path().join("a.toml"), rule("a", "t/a")).unwrap();
        std::fs::write(dir.path().join("b.toml"), rule("b", "t/b")).unwrap();
        assert_eq!(s.reload().compiled, 2);
        let r = s.reload();
        assert_eq!((r.compiled, r.swapped), (0, false));
        std::fs::remove_file(dir.path().join("a.toml")).unwrap();
        let r = s.reload();
        assert_eq!(r.removed, vec!["a"]);
        assert_eq!(names(&s), vec!["b"]);
    }

    #[test]
    fn a_duplicate_name_does_not_replace_the_first() {
        let (dir, s) = store();
        std::fs::write(dir.path().join("a.toml"), rule("same", "t/a")).unwrap();
        s.reload();
        std::fs::write(dir.path().join("b.toml"), rule("same", "t/b")).unwrap();
        let r = s.reload();
        assert_eq!(r.errors.len(), 1, "{r:?}");
        assert!(r.errors[0].message.contains("duplicate rule name `same`"));
        assert_eq!(names(&s), vec!["same"]);
        assert_eq!(s.engine().rules().rules()[0].filter.as_str(), "t/a");
    }

    #[test]
    fn api_writes_check_first_then_write_the_folder() {
        let (dir, s) = store();
        s.reload();
        let (v, r) = s.create(None, &rule("new", "t/n")).unwrap();
        assert_eq!((v.status, r.added.clone()), (RuleStatus::Running, vec!["new".to_string()]));
        assert!(dir.path().join("new.toml").exists());
        assert!(matches!(s.create(None, &rule("new", "t/n")), Err(StoreError::Conflict(..))));
        assert!(matches!(s.create(Some("../evil"), "name = \"../evil\""), Err(StoreError::BadRequest(_))));
        assert!(matches!(s.create(Some("bad"), "sql = \"SELECT FROM\""), Err(StoreError::Invalid(_))));
        assert!(!dir.path().join("bad.toml").exists());
        let text = format!("# keep this comment\n{}", rule("new", "t/n"));
        s.update("new", &text).unwrap();
        let (v, _) = s.set_enabled("new", false).unwrap();
        assert_eq!(v.status, RuleStatus::Disabled);
        let written = std::fs::read_to_string(dir.path().join("new.toml")).unwrap();
        assert!(written.starts_with("# keep this comment\n") && written.contains("enabled = false"), "{written}");
        assert!(!s.engine().rules().rules()[0].enabled);
        assert!(matches!(s.update("new", &rule("other", "t")), Err(StoreError::BadRequest(_))));
        s.delete("new").unwrap();
        assert!(names(&s).is_empty());
        assert!(matches!(s.delete("new"), Err(StoreError::NotFound(_))));
        // No temporary file is left behind; the history keeps every version, the deleted one too.
        let left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(left, [crate::control::history::HISTORY_DIR]);
        let actions: Vec<String> = crate::control::history::list(dir.path(), "new").versions.into_iter().map(|v| v.action).collect();
        assert_eq!(actions, ["create", "update", "disable", "delete"]);
    }
}
