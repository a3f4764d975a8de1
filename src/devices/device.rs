//! Registered devices and the devices file (`[[devices]]` tables, format in `models/README.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The product key.
    pub product_key: String,
    /// The device key (unique within the product).
    pub device_key: String,
    /// The device name used by data-flow topics (defaults to the device key).
    pub device_name: String,
    /// The asset id (HTTP uploads name devices by it).
    pub asset_id: Option<String>,
    /// Tags, read by `attribute(key)`.
    pub tags: BTreeMap<String, String>,
    /// Disabled devices are "not found" for the integration channel.
    pub enabled: bool,
    /// The gateway, as `(productKey, deviceName)`.
    pub gateway: Option<(String, String)>,
}

/// The devices file: `[[devices]]` tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesFile {
    /// The devices.
    #[serde(default)]
    pub devices: Vec<DeviceEntry>,
}

/// One `[[devices]]` table of the devices file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// The product key.
    pub product_key: String,
    /// The device key.
    pub device_key: String,
    /// The device name (defaults to the device key).
    #[serde(default)]
    pub device_name: Option<String>,
    /// The asset id.
    #[serde(default)]
    pub asset_id: Option<String>,
    /// Tags (string values), read by `attribute(key)`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Whether the device is enabled.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The gateway.
    #[serde(default)]
    pub gateway: Option<GatewayRef>,
}

fn default_enabled() -> bool {
    true
}

/// `gateway = { product_key = "…", device_name = "…" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRef {
    /// The gateway's product key.
    pub product_key: String,
    /// The gateway's device name.
    pub device_name: String,
}

impl From<DeviceEntry> for Device {
    fn from(e: DeviceEntry) -> Device {
        Device {
            device_name: e.device_name.unwrap_or_else(|| e.device_key.clone()),
            product_key: e.product_key,
            device_key: e.device_key,
            asset_id: e.asset_id,
            tags: e.tags,
            enabled: e.enabled,
            gateway: e.gateway.map(|g| (g.product_key, g.device_name)),
        }
    }
}
