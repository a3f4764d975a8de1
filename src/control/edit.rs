//! The rules API's writes: each is checked first (a rule that does not compile is refused and
//! nothing is written), written to the rules folder atomically, then reloaded. One writer at a
//! time, so two writers cannot both pass a check.

use std::path::Path;

use crate::control::history;
use crate::control::store::{find, lock, RuleStore};
use crate::control::view::{ReloadReport, RuleView};
use crate::error::{CompileError, Pos, StoreError};
use crate::rule::compile_str;

/// Whether a rule name can name a file the API creates.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl RuleStore {
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
        history::record(&folder, &name, None, text, "create")?;
        let report = self.reload();
        Ok((self.get(&name)?, report))
    }

    /// Replaces the rule named `name` with a new text (same name).
    pub fn update(&self, name: &str, text: &str) -> Result<(RuleView, ReloadReport), StoreError> {
        self.replace(name, text, "update")
    }

    /// [`update`](Self::update), saved in the history as `action`.
    pub(crate) fn replace(&self, name: &str, text: &str, action: &str) -> Result<(RuleView, ReloadReport), StoreError> {
        let _w = lock(&self.writes);
        let path = self.path_of(name)?;
        let rule = compile_str(&path, text).map_err(StoreError::Invalid)?;
        if &*rule.name != name {
            return Err(StoreError::BadRequest(format!("the text names the rule `{}`, not `{name}`: to rename a rule, create the new one and delete the old", rule.name)));
        }
        let before = std::fs::read_to_string(&path).ok();
        write_atomic(&path, text)?;
        self.save_version(&path, name, before.as_deref(), text, action)?;
        let report = self.reload();
        Ok((self.get(name)?, report))
    }

    /// Saves a written text in the history of the folder holding `path`.
    fn save_version(&self, path: &Path, name: &str, before: Option<&str>, text: &str, action: &str) -> Result<(), StoreError> {
        if let Some(folder) = path.parent() {
            history::record(folder, name, before, text, action)?;
        }
        Ok(())
    }

    /// The saved versions of rule `name` (it may have been deleted since).
    pub fn history(&self, name: &str) -> Result<history::History, StoreError> {
        let folder = self.path_of(name).ok().and_then(|p| p.parent().map(Path::to_path_buf)).or_else(|| self.folder().map(Path::to_path_buf)).ok_or(StoreError::NoFolder)?;
        let h = history::list(&folder, name);
        if h.versions.is_empty() && self.path_of(name).is_err() {
            return Err(StoreError::NotFound(name.into()));
        }
        Ok(h)
    }

    /// The text of a saved version of rule `name`.
    pub fn version(&self, name: &str, version: u64) -> Result<String, StoreError> {
        let folder = self.path_of(name).ok().and_then(|p| p.parent().map(Path::to_path_buf)).or_else(|| self.folder().map(Path::to_path_buf)).ok_or(StoreError::NoFolder)?;
        history::read(&folder, name, version)
    }

    /// Restores version `version` of rule `name` in one step: its text becomes the rule's
    /// (checked first; recreated when the rule was deleted), saved as a `rollback` version.
    pub fn rollback(&self, name: &str, version: u64) -> Result<(RuleView, ReloadReport), StoreError> {
        let text = self.version(name, version)?;
        if self.path_of(name).is_ok() {
            return self.replace(name, &text, "rollback");
        }
        self.create(Some(name), &text)
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
            self.save_version(&path, name, Some(&text), &new_text, if enabled { "enable" } else { "disable" })?;
        }
        let report = self.reload();
        Ok((self.get(name)?, report))
    }

    /// Deletes the rule named `name` (removes its file).
    pub fn delete(&self, name: &str) -> Result<ReloadReport, StoreError> {
        let _w = lock(&self.writes);
        let path = self.path_of(name)?;
        let before = std::fs::read_to_string(&path).ok();
        std::fs::remove_file(&path).map_err(|source| StoreError::Io { path: path.clone(), source })?;
        if let Some(b) = &before {
            self.save_version(&path, name, Some(b), b, "delete")?;
        }
        Ok(self.reload())
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
