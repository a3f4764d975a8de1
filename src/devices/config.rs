//! `[registry]` of the configuration.

use std::path::PathBuf;

use serde::Deserialize;

/// `[registry]`: product thing models and the device registry (format: `models/README.md`).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Folder of thing models, one `<productKey>.toml` per product.
    pub models: PathBuf,
    /// The devices file (`[[devices]]` tables); default `<models>/devices.toml` when it exists.
    pub devices: Option<PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig { models: PathBuf::from("models"), devices: None }
    }
}
