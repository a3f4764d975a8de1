//! `[rules]`: where the rules are, and how changes to them are picked up.

use std::path::PathBuf;

use serde::Deserialize;

/// `[rules]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Rule files or folders of `*.toml` rules. The first folder is where the rules API
    /// writes (the folder stays the source of truth). Default: `["rules"]`.
    pub paths: Vec<PathBuf>,
    /// Watch the rule paths and reload when a file changes (SIGHUP reloads in any case).
    /// Default: true.
    pub watch: bool,
    /// How long (ms) changes must settle before a reload, so an editor's several writes
    /// make one reload. Default: 250.
    pub debounce_ms: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig { paths: vec![PathBuf::from("rules")], watch: true, debounce_ms: 250 }
    }
}

impl RulesConfig {
    /// How long changes settle before a reload.
    pub fn debounce(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.debounce_ms)
    }
}
