//! Every version of a rule the API writes, kept beside the rules:
//! `<rules folder>/.history/<name>/<n>-<action>.toml` (`n` counts from 1 per rule; `action` is
//! `original`, `create`, `update`, `enable`, `disable`, `rollback`, `promote` or `delete`). The
//! resolver reads only the folder's own `*.toml` files, so the history never runs. The text a
//! rule had before its first write through the API is kept as its `original` version; at most
//! [`MAX_VERSIONS`] are kept per rule (the oldest go).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// The history's folder name, inside the rules folder.
pub const HISTORY_DIR: &str = ".history";
/// Versions kept per rule at most.
pub const MAX_VERSIONS: usize = 200;

/// One saved version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Its number (from 1, per rule).
    pub version: u64,
    /// What saved it.
    pub action: String,
    /// When (ms since the epoch: the file's modification time).
    pub saved_ms: i64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// `GET /api/v1/rules/{name}/history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The rule's name.
    pub rule: String,
    /// Its versions, oldest first (the last is the current text, unless the rule was deleted
    /// or its file changed outside the API since).
    pub versions: Vec<Version>,
}

fn dir(folder: &Path, name: &str) -> PathBuf {
    folder.join(HISTORY_DIR).join(name)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// The versions of rule `name`, oldest first, with their files.
fn entries(folder: &Path, name: &str) -> Vec<(Version, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir(folder, name)) else { return Vec::new() };
    let mut out: Vec<(Version, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let stem = path.file_stem()?.to_str()?.to_string();
            let (n, action) = stem.split_once('-')?;
            let meta = e.metadata().ok()?;
            let saved_ms = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            Some((Version { version: n.parse().ok()?, action: action.to_string(), saved_ms, bytes: meta.len() }, path))
        })
        .collect();
    out.sort_by_key(|(v, _)| v.version);
    out
}

/// The history of rule `name`.
pub fn list(folder: &Path, name: &str) -> History {
    History { rule: name.to_string(), versions: entries(folder, name).into_iter().map(|(v, _)| v).collect() }
}

/// The text of version `version` of rule `name`.
pub fn read(folder: &Path, name: &str, version: u64) -> Result<String, StoreError> {
    let (_, path) = entries(folder, name).into_iter().find(|(v, _)| v.version == version).ok_or_else(|| StoreError::NotFound(format!("{name} version {version}")))?;
    std::fs::read_to_string(&path).map_err(io(&path))
}

/// Saves `text` as the next version of rule `name`, by `action`. `before` is the rule's text
/// before this write, if it had one: it is saved first as the `original` version when the
/// rule has no history yet. Returns the new version's number.
pub fn record(folder: &Path, name: &str, before: Option<&str>, text: &str, action: &str) -> Result<u64, StoreError> {
    let d = dir(folder, name);
    std::fs::create_dir_all(&d).map_err(io(&d))?;
    let mut have = entries(folder, name);
    let mut next = have.last().map_or(1, |(v, _)| v.version + 1);
    if let (true, Some(b)) = (have.is_empty(), before) {
        let p = d.join(format!("{next:06}-original.toml"));
        std::fs::write(&p, b).map_err(io(&p))?;
        next += 1;
    }
    let p = d.join(format!("{next:06}-{action}.toml"));
    std::fs::write(&p, text).map_err(io(&p))?;
    have = entries(folder, name);
    for (_, old) in have.iter().take(have.len().saturating_sub(MAX_VERSIONS)) {
        let _ = std::fs::remove_file(old);
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbered_kept_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(dir.path(), "r").versions.is_empty());
        assert_eq!(record(dir.path(), "r", Some("v0"), "v1", "update").unwrap(), 2, "the text before the first write is version 1");
        assert_eq!(record(dir.path(), "r", Some("v1"), "v2", "disable").unwrap(), 3);
        let h = list(dir.path(), "r");
        assert_eq!(h.versions.iter().map(|v| (v.version, v.action.as_str())).collect::<Vec<_>>(), vec![(1, "original"), (2, "update"), (3, "disable")]);
        assert_eq!(read(dir.path(), "r", 1).unwrap(), "v0");
        assert_eq!(read(dir.path(), "r", 3).unwrap(), "v2");
        assert!(matches!(read(dir.path(), "r", 9), Err(StoreError::NotFound(_))));
        assert_eq!(record(dir.path(), "new", None, "n1", "create").unwrap(), 1);
    }
}
