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
//! - [`spawn_reloader`] reloads when a watched file changes (debounced) and on SIGHUP.
//!
//! A reload swaps one `Arc`: each message is evaluated entirely by the old set or entirely by
//! the new one, so a reload loses and duplicates no message.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

use crate::engine::Engine;
use crate::error::{CompileError, Pos, StoreError};
use crate::rule::{compile_str, Rule};
use crate::shutdown::Shutdown;
use crate::telemetry::metrics;

/// One rule file as the store last saw it.
struct FileState {
    /// The file's text.
    text: String,
    /// The rule compiled from `text`, when it compiles.
    compiled: Option<Arc<Rule>>,
    /// The rule the engine runs from this file (the last good one, when `text` is broken).
    running: Option<Arc<Rule>>,
    /// Why `text` does not compile.
    errors: Vec<CompileError>,
    /// Set when the rule's name is taken by an earlier file.
    conflict: Option<CompileError>,
}

impl FileState {
    /// The rule name the file declares (or would declare): running or compiled name, else the
    /// `name` key, else the file stem.
    fn declared_name(&self, path: &Path) -> String {
        if let Some(r) = self.compiled.as_ref().or(self.running.as_ref()) {
            return r.name.to_string();
        }
        toml::from_str::<toml::Table>(&self.text)
            .ok()
            .and_then(|t| t.get("name").and_then(|n| n.as_str().map(str::to_string)))
            .unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
    }
}

/// What a reload did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReloadReport {
    /// Rules running after the reload.
    pub rules: usize,
    /// Files (re)compiled because their text changed.
    pub compiled: usize,
    /// Whether the engine's rule set was swapped.
    pub swapped: bool,
    /// Rules added, changed and removed by this reload.
    pub added: Vec<String>,
    /// Rules whose definition changed.
    pub changed: Vec<String>,
    /// Rules no longer running.
    pub removed: Vec<String>,
    /// Every file that does not compile now (its previous rule, if any, keeps running).
    pub errors: Vec<ErrorView>,
}

/// A compile error, for the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorView {
    /// The file.
    pub path: String,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// A suggestion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// `path:line:col: message[; hint]`.
    pub text: String,
}

impl From<&CompileError> for ErrorView {
    fn from(e: &CompileError) -> Self {
        ErrorView { path: e.path.display().to_string(), line: e.pos.line, col: e.pos.col, message: e.message.clone(), hint: e.hint.clone(), text: e.to_string() }
    }
}

/// A rule, for the API.
#[derive(Clone, Debug, Serialize)]
pub struct RuleView {
    /// The rule's name.
    pub name: String,
    /// Its file.
    pub path: String,
    /// `running`, `disabled`, `invalid` (does not compile; the previous version, if any, keeps
    /// running: see `running_sql`) or `conflict` (its name is taken).
    pub status: &'static str,
    /// Whether the file enables the rule.
    pub enabled: bool,
    /// Free text.
    pub description: String,
    /// The SQL of the running rule (or the file's, when it compiles).
    pub sql: Option<String>,
    /// The topic filter.
    pub from: Option<String>,
    /// Action topic templates.
    pub actions: Vec<String>,
    /// The error action's topic.
    pub error_topic: Option<String>,
    /// Whether a version of the rule is running in the engine.
    pub running: bool,
    /// Compile errors of the file's current text.
    pub errors: Vec<ErrorView>,
    /// The file's text (only for a single rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

struct State {
    files: BTreeMap<PathBuf, FileState>,
}

/// Keeps the engine's rules in step with the rule paths.
pub struct RuleStore {
    paths: Vec<PathBuf>,
    engine: Arc<Engine>,
    state: Mutex<State>,
    /// Serializes API writes (check, write, reload) so two writers cannot both pass a check.
    writes: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a rule name can name a file the API creates.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

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

impl RuleStore {
    /// A store over `paths` driving `engine`. Call [`reload`](Self::reload) to load.
    pub fn new(paths: Vec<PathBuf>, engine: Arc<Engine>) -> RuleStore {
        RuleStore { paths, engine, state: Mutex::new(State { files: BTreeMap::new() }), writes: Mutex::new(()) }
    }

    /// The engine the store drives.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The folder the API writes new rules to: the first configured folder.
    pub fn folder(&self) -> Option<&Path> {
        self.paths.iter().find(|p| p.is_dir()).map(PathBuf::as_path)
    }

    /// Rescans the rule paths and swaps the engine's rule set if anything changed.
    pub fn reload(&self) -> ReloadReport {
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
        let mut claimed: HashMap<Arc<str>, PathBuf> = HashMap::new();
        for (path, fs) in next.iter_mut() {
            fs.conflict = None;
            let mut candidates: Vec<Arc<Rule>> = fs.compiled.iter().chain(fs.running.iter()).cloned().collect();
            candidates.dedup_by(|a, b| Arc::ptr_eq(a, b));
            let mut chosen = None;
            for c in candidates {
                match claimed.get(&c.name) {
                    Some(other) if other != path => {
                        if fs.conflict.is_none() {
                            fs.conflict = Some(CompileError {
                                path: path.clone(),
                                pos: Pos { line: 1, col: 1 },
                                message: format!("duplicate rule name `{}` (also in {})", c.name, other.display()),
                                hint: Some("set a unique `name`".into()),
                                source_line: None,
                            });
                        }
                    }
                    _ => {
                        chosen = Some(c);
                        break;
                    }
                }
            }
            if let Some(c) = &chosen {
                claimed.insert(c.name.clone(), path.clone());
            }
            fs.running = chosen;
        }
        for (_, fs) in next.iter() {
            report.errors.extend(fs.errors.iter().chain(fs.conflict.iter()).map(ErrorView::from));
        }
        report.errors.extend(list_errors.iter().map(ErrorView::from));

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
        report
    }

    /// Every rule file, sorted by path.
    pub fn list(&self) -> Vec<RuleView> {
        let st = lock(&self.state);
        st.files.iter().map(|(p, f)| view(p, f, false)).collect()
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

    /// Creates a rule from a rule file's text. Its name is `name`, or the file's `name` key;
    /// it is written to `<folder>/<name>.toml`.
    pub fn create(&self, name: Option<&str>, text: &str) -> Result<(RuleView, ReloadReport), StoreError> {
        let _w = lock(&self.writes);
        let folder = self.folder().ok_or(StoreError::NoFolder)?.to_path_buf();
        let declared = toml::from_str::<toml::Table>(text).ok().and_then(|t| t.get("name").and_then(|n| n.as_str().map(str::to_string)));
        let name = match (name, declared.as_deref()) {
            (Some(n), Some(d)) if n != d => return Err(StoreError::BadRequest(format!("the name `{n}` differs from the file's name `{d}`"))),
            (Some(n), _) | (None, Some(n)) => n.to_string(),
            (None, None) => return Err(StoreError::BadRequest("the rule needs a name: a `name` key or the `name` parameter".into())),
        };
        if !valid_name(&name) {
            return Err(StoreError::BadRequest(format!("`{name}` cannot name a rule file: use letters, digits, `_`, `-` and `.` (at most 128)")));
        }
        let path = folder.join(format!("{name}.toml"));
        {
            let st = lock(&self.state);
            if let Some((p, _)) = find(&st, &name) {
                return Err(StoreError::Conflict(name, p.clone()));
            }
        }
        if path.exists() {
            return Err(StoreError::Conflict(name, path));
        }
        compile_str(&path, text).map_err(StoreError::Invalid)?;
        write_atomic(&path, text)?;
        let report = self.reload();
        Ok((self.get(&name)?, report))
    }

    /// Replaces the rule named `name` with a new text (same name).
    pub fn update(&self, name: &str, text: &str) -> Result<(RuleView, ReloadReport), StoreError> {
        let _w = lock(&self.writes);
        let path = self.path_of(name)?;
        let rule = compile_str(&path, text).map_err(StoreError::Invalid)?;
        if &*rule.name != name {
            return Err(StoreError::BadRequest(format!("the text names the rule `{}`, not `{name}`: to rename a rule, create the new one and delete the old", rule.name)));
        }
        write_atomic(&path, text)?;
        let report = self.reload();
        Ok((self.get(name)?, report))
    }

    /// Enables or disables the rule named `name` (rewrites `enabled` in its file, keeping the
    /// rest of the file as it is).
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(RuleView, ReloadReport), StoreError> {
        let _w = lock(&self.writes);
        let path = self.path_of(name)?;
        let text = std::fs::read_to_string(&path).map_err(|source| StoreError::Io { path: path.clone(), source })?;
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
            let pos = e.span().map_or(Pos { line: 1, col: 1 }, |s| crate::error::pos_of_offset(&text, s.start));
            StoreError::Invalid(vec![CompileError { path: path.clone(), pos, message: e.message().to_string(), hint: None, source_line: crate::error::line_text(&text, pos.line) }])
        })?;
        doc["enabled"] = toml_edit::value(enabled);
        let new_text = doc.to_string();
        compile_str(&path, &new_text).map_err(StoreError::Invalid)?;
        if new_text != text {
            write_atomic(&path, &new_text)?;
        }
        let report = self.reload();
        Ok((self.get(name)?, report))
    }

    /// Deletes the rule named `name` (removes its file).
    pub fn delete(&self, name: &str) -> Result<ReloadReport, StoreError> {
        let _w = lock(&self.writes);
        let path = self.path_of(name)?;
        std::fs::remove_file(&path).map_err(|source| StoreError::Io { path: path.clone(), source })?;
        Ok(self.reload())
    }

    fn path_of(&self, name: &str) -> Result<PathBuf, StoreError> {
        let st = lock(&self.state);
        find(&st, name).map(|(p, _)| p.clone()).ok_or_else(|| StoreError::NotFound(name.into()))
    }
}

/// The file of the rule named `name`: the one running it, else one declaring it.
fn find<'a>(st: &'a State, name: &str) -> Option<(&'a PathBuf, &'a FileState)> {
    st.files.iter().find(|(_, f)| f.running.as_ref().is_some_and(|r| &*r.name == name)).or_else(|| st.files.iter().find(|(p, f)| f.declared_name(p) == name))
}

fn view(path: &Path, f: &FileState, with_source: bool) -> RuleView {
    let shown = f.compiled.as_ref().or(f.running.as_ref());
    let enabled = f.compiled.as_ref().map(|r| r.enabled).or_else(|| toml::from_str::<toml::Table>(&f.text).ok().and_then(|t| t.get("enabled").and_then(toml::Value::as_bool))).unwrap_or(true);
    let status = if f.conflict.is_some() {
        "conflict"
    } else if !f.errors.is_empty() {
        "invalid"
    } else if enabled {
        "running"
    } else {
        "disabled"
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
    }
}

/// Writes `text` to `path` atomically: a temporary file in the same folder (not `*.toml`, so
/// a reload never reads it half-written), then a rename.
fn write_atomic(path: &Path, text: &str) -> Result<(), StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.{}.tmp", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), std::process::id()));
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Reloads `store` on SIGHUP and, with `watch`, when a file under the rule paths changes
/// (changes settle for `debounce` first). Runs until `shutdown`.
pub fn spawn_reloader(store: Arc<RuleStore>, watch: bool, debounce: Duration, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    // Capacity 1: events arriving while a reload is pending coalesce into it (every reload
    // rescans everything, so no change is missed).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(1);
    let watcher = if watch { start_watcher(&store.paths, tx.clone()) } else { None };
    #[cfg(unix)]
    {
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP");
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        tracing::info!(signal = "SIGHUP", "reloading rules");
                        let _ = tx.try_send("sighup");
                    }
                    () = shutdown.wait() => return,
                }
            }
        });
    }
    drop(tx);
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            let cause = tokio::select! {
                c = rx.recv() => match c { Some(c) => c, None => return },
                () = shutdown.wait() => return,
            };
            if cause == "watch" {
                // Let an editor finish writing; later events fold into this reload.
                tokio::time::sleep(debounce).await;
                while rx.try_recv().is_ok() {}
            }
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.reload()).await {
                Ok(r) => tracing::debug!(cause, swapped = r.swapped, errors = r.errors.len(), "rules rescanned"),
                Err(e) => tracing::error!(error = %e, "rule reload task failed"),
            }
        }
    })
}

/// Watches the rule folders (and the folders of single rule files: editors often replace a
/// file by renaming, which a watch on the file itself would miss).
fn start_watcher(paths: &[PathBuf], tx: tokio::sync::mpsc::Sender<&'static str>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let handler = move |ev: notify::Result<notify::Event>| match ev {
        Ok(ev) if ev.kind.is_access() => {}
        Ok(_) => {
            let _ = tx.try_send("watch");
        }
        Err(e) => tracing::warn!(error = %e, "rule folder watch error"),
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the rule paths; reload with SIGHUP or the API");
            return None;
        }
    };
    let mut dirs: Vec<PathBuf> =
        paths.iter().map(|p| if p.is_dir() { p.clone() } else { p.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf) }).collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        if let Err(e) = watcher.watch(&d, RecursiveMode::NonRecursive) {
            tracing::warn!(path = %d.display(), error = %e, "cannot watch a rule folder; reload with SIGHUP or the API");
        }
    }
    Some(watcher)
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
        assert_eq!(s.get("a").unwrap().status, "invalid");
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
        assert_eq!((v.status, r.added.clone()), ("running", vec!["new".to_string()]));
        assert!(dir.path().join("new.toml").exists());
        assert!(matches!(s.create(None, &rule("new", "t/n")), Err(StoreError::Conflict(..))));
        assert!(matches!(s.create(Some("../evil"), "name = \"../evil\""), Err(StoreError::BadRequest(_))));
        assert!(matches!(s.create(Some("bad"), "sql = \"SELECT FROM\""), Err(StoreError::Invalid(_))));
        assert!(!dir.path().join("bad.toml").exists());
        let text = format!("# keep this comment\n{}", rule("new", "t/n"));
        s.update("new", &text).unwrap();
        let (v, _) = s.set_enabled("new", false).unwrap();
        assert_eq!(v.status, "disabled");
        let written = std::fs::read_to_string(dir.path().join("new.toml")).unwrap();
        assert!(written.starts_with("# keep this comment\n") && written.contains("enabled = false"), "{written}");
        assert!(!s.engine().rules().rules()[0].enabled);
        assert!(matches!(s.update("new", &rule("other", "t")), Err(StoreError::BadRequest(_))));
        s.delete("new").unwrap();
        assert!(names(&s).is_empty());
        assert!(matches!(s.delete("new"), Err(StoreError::NotFound(_))));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
