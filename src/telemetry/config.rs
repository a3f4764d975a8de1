//! `[admin]`: the admin HTTP server (`/metrics`, `/healthz`, `/readyz`, the rules API).

use std::path::PathBuf;

use serde::Deserialize;

/// `[admin]`: the admin HTTP server.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on. Default: `127.0.0.1:9898`; port 0 picks a free port (the bound
    /// address is logged and reported by the app).
    pub listen: String,
    /// Bearer token of the rules API (`/api/v1/…`). Prefer `token_file` or the
    /// `SLUICE_ADMIN_TOKEN` environment variable (which wins over both). Without a token the
    /// rules API answers 403; `/metrics`, `/healthz` and `/readyz` need none.
    pub token: Option<String>,
    /// A file holding the bearer token (surrounding whitespace is ignored), e.g. a mounted
    /// Kubernetes secret.
    pub token_file: Option<PathBuf>,
    /// Serve the web console under `/ui/` (default true). Its pages need no token; everything
    /// it shows or changes goes through the token-protected API.
    pub console: bool,
}

impl AdminConfig {
    /// The rules API token: `SLUICE_ADMIN_TOKEN`, else `token_file`, else `token`.
    pub fn resolve_token(&self) -> Result<Option<String>, String> {
        if let Ok(t) = std::env::var("SLUICE_ADMIN_TOKEN") {
            if !t.trim().is_empty() {
                return Ok(Some(t.trim().to_string()));
            }
        }
        if let Some(f) = &self.token_file {
            let t = std::fs::read_to_string(f).map_err(|e| format!("admin.token_file {}: {e}", f.display()))?;
            if t.trim().is_empty() {
                return Err(format!("admin.token_file {} is empty", f.display()));
            }
            return Ok(Some(t.trim().to_string()));
        }
        Ok(self.token.as_ref().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: "127.0.0.1:9898".into(), token: None, token_file: None, console: true }
    }
}
