//! The device registry and the product thing models (issue 4, part 1).
//!
//! - Thing models: one TOML file per product in a folder (`models/*.toml`, format in
//!   `models/README.md`), see [`model`].
//! - Devices: a TOML file (`models/devices.toml` by default) of `[[devices]]`, held in
//!   concurrent maps by `(productKey, deviceKey)`, by `(productKey, deviceName)` and by
//!   `assetId`.
//! - Kept current from the data-flow topics (seed 004) by [`Registry::observe`]: device
//!   lifecycle, topology lifecycle and online/offline status (the status with the latest
//!   `lastTime` wins, whatever the arrival order).
//! - Read by rules through [`DeviceLookup`] (`attribute()`, `deviceStatus()`, `gateway()`), and
//!   used by the integration channel through [`Validator`].

pub mod config;
pub mod device;
pub mod model;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::FixedOffset;
use dashmap::DashMap;

use crate::doc::Node;
use crate::message::Message;
use crate::rule::expr::DeviceLookup;
use crate::telemetry::metrics;
use crate::topic::{TopicInfo, TopicKind};

pub use device::{Device, DeviceEntry, DevicesFile, GatewayRef};
pub use model::{DataType, ThingModel};

type Key = (String, String);

/// The last known online/offline status of a device.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Status {
    status: String,
    last_ms: i64,
}

/// The device registry and thing models, shared (`Arc`) by the engine, the pipeline and the
/// integration channel.
#[derive(Default)]
pub struct Registry {
    models: DashMap<String, Arc<ThingModel>>,
    devices: DashMap<Key, Device>,
    by_name: DashMap<Key, String>,
    by_asset: DashMap<String, Key>,
    /// Status by `(productKey, deviceName)`: devices need not be registered to have one.
    status: DashMap<Key, Status>,
    /// Time zone of the status messages' `lastTime` (used when `utcLastTime` is absent).
    tz: Option<FixedOffset>,
    /// How many entries of `status` say online (`sluice_registry_online_devices`).
    online: AtomicI64,
    /// Bumped whenever a data-flow message changes the registry (for the state store).
    version: std::sync::atomic::AtomicU64,
    /// Devices a data-flow message deleted (persisted, so a restart does not bring them back
    /// from the devices file).
    removed: DashMap<Key, ()>,
}

/// What the state store keeps of the registry: what the data-flow topics taught it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Learnt {
    devices: Vec<Device>,
    status: Vec<(String, String, Status)>,
    removed: Vec<Key>,
}

/// Why the registry could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not valid.
    #[error("{0}")]
    Invalid(String),
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Sets the time zone of status messages' `lastTime` (`yyyy-MM-dd HH:mm:ss.SSS`, local time
    /// of the platform); `utcLastTime` is preferred when present. Default UTC.
    pub fn with_timezone(mut self, tz: FixedOffset) -> Registry {
        self.tz = Some(tz);
        self
    }

    /// Loads every `*.toml` model in `models_dir` (except the devices file, `devices.toml`) and
    /// the devices of `devices_file` (default: `models_dir/devices.toml` when it exists).
    pub fn load(models_dir: &Path, devices_file: Option<&Path>) -> Result<Registry, RegistryError> {
        let reg = Registry::new();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RegistryError::Io { path, source }
        };
        let default_devices = models_dir.join("devices.toml");
        let devices_path = devices_file.map(Path::to_path_buf).or_else(|| default_devices.is_file().then(|| default_devices.clone()));
        let mut paths: Vec<PathBuf> = std::fs::read_dir(models_dir)
            .map_err(io(models_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.file_name().is_some_and(|n| n != "devices.toml"))
            .filter(|p| devices_path.as_deref() != Some(p.as_path()))
            .collect();
        paths.sort();
        for p in paths {
            let m = ThingModel::load(&p).map_err(RegistryError::Invalid)?;
            if reg.models.contains_key(&m.product_key) {
                return Err(RegistryError::Invalid(format!("{}: a second model for product `{}`", p.display(), m.product_key)));
            }
            reg.add_model(m);
        }
        if let Some(path) = devices_path {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let file: DevicesFile = toml::from_str(&text).map_err(|e| RegistryError::Invalid(format!("{}: {}", path.display(), e.to_string().trim())))?;
            for d in file.devices {
                if reg.devices.contains_key(&(d.product_key.clone(), d.device_key.clone())) {
                    return Err(RegistryError::Invalid(format!("{}: device `{}/{}` is listed twice", path.display(), d.product_key, d.device_key)));
                }
                reg.upsert(d.into());
            }
        }
        Ok(reg)
    }

    /// Adds (or replaces) a product's model.
    pub fn add_model(&self, model: ThingModel) {
        self.models.insert(model.product_key.clone(), Arc::new(model));
    }

    /// The model of a product.
    pub fn model(&self, product_key: &str) -> Option<Arc<ThingModel>> {
        self.models.get(product_key).map(|m| m.clone())
    }

    /// Number of models and of devices.
    pub fn len(&self) -> (usize, usize) {
        (self.models.len(), self.devices.len())
    }

    /// True when there is no model and no device.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty() && self.devices.is_empty()
    }

    /// Adds or replaces a device (and its name and asset indexes).
    pub fn upsert(&self, device: Device) {
        let key = (device.product_key.clone(), device.device_key.clone());
        self.removed.remove(&key);
        self.remove(&key.0, &key.1);
        self.by_name.insert((device.product_key.clone(), device.device_name.clone()), device.device_key.clone());
        if let Some(a) = &device.asset_id {
            self.by_asset.insert(a.clone(), key.clone());
        }
        self.devices.insert(key, device);
        metrics::REGISTRY_KNOWN_DEVICES.set(self.devices.len() as i64);
    }

    /// Removes a device by key; returns it.
    pub fn remove(&self, product_key: &str, device_key: &str) -> Option<Device> {
        let (_, old) = self.devices.remove(&(product_key.to_string(), device_key.to_string()))?;
        metrics::REGISTRY_KNOWN_DEVICES.set(self.devices.len() as i64);
        self.by_name.remove_if(&(old.product_key.clone(), old.device_name.clone()), |_, k| *k == old.device_key);
        if let Some(a) = &old.asset_id {
            self.by_asset.remove_if(a, |_, k| k.0 == old.product_key && k.1 == old.device_key);
        }
        Some(old)
    }

    /// A device by product key and device key.
    pub fn device(&self, product_key: &str, device_key: &str) -> Option<Device> {
        self.devices.get(&(product_key.to_string(), device_key.to_string())).map(|d| d.clone())
    }

    /// A device by asset id.
    pub fn device_by_asset(&self, asset_id: &str) -> Option<Device> {
        let key = self.by_asset.get(asset_id)?.clone();
        self.devices.get(&key).map(|d| d.clone())
    }

    /// The key of a device named by data-flow topics (`deviceName`), or by its device key.
    fn resolve(&self, product_key: &str, device: &str) -> Option<Key> {
        let name_key = (product_key.to_string(), device.to_string());
        if let Some(dk) = self.by_name.get(&name_key) {
            return Some((product_key.to_string(), dk.clone()));
        }
        self.devices.contains_key(&name_key).then_some(name_key)
    }

    /// A device by its device name (data-flow topics) or device key.
    pub fn device_by_name(&self, product_key: &str, device: &str) -> Option<Device> {
        let key = self.resolve(product_key, device)?;
        self.devices.get(&key).map(|d| d.clone())
    }

    fn with_device<T>(&self, product_key: &str, device: &str, f: impl FnOnce(&mut Device) -> T) -> Option<T> {
        let key = self.resolve(product_key, device)?;
        self.devices.get_mut(&key).map(|mut d| f(&mut d))
    }

    /// Whether [`observe`](Self::observe) reads messages on topics of `kind` (the worker stage
    /// decodes their payload for it).
    pub fn observes(kind: TopicKind) -> bool {
        matches!(kind, TopicKind::Lifecycle | TopicKind::TopoLifecycle | TopicKind::Status)
    }

    /// Applies a data-flow message (seed 004) to the registry (and keeps the gauges
    /// `sluice_registry_known_devices` and `sluice_registry_online_devices` current): device lifecycle
    /// (`/sys/{pk}/{dn}/thing/lifecycle`), topology lifecycle (`/sys/{pk}/{dn}/thing/topo/lifecycle`)
    /// and status (`/as/mqtt/status/{pk}/{dn}`). Other topics are ignored. Malformed payloads
    /// are counted (`sluice_registry_updates_total{result="malformed"}`) and logged. Decodes the
    /// payload; the worker stage, which has decoded it already, calls
    /// [`observe_decoded`](Self::observe_decoded).
    pub fn observe(&self, msg: &Message) {
        let info = TopicInfo::parse(&msg.topic);
        if Registry::observes(info.kind) {
            self.observe_decoded(&msg.topic, &info, Node::parse(&msg.payload).as_ref());
        }
    }

    /// [`observe`](Self::observe) with the topic recognised and the payload decoded (`Err`: it is
    /// not JSON).
    pub fn observe_decoded(&self, topic: &str, info: &TopicInfo<'_>, payload: Result<&Node<'_>, &serde_json::Error>) {
        let kind = info.kind;
        if !Registry::observes(kind) {
            return;
        }
        let (Some(pk), Some(dn)) = (info.product_key, info.device_name) else {
            return;
        };
        let result = match payload {
            Err(e) => Err(format!("payload is not JSON: {e}")),
            Ok(payload) => match kind {
                TopicKind::Lifecycle => self.lifecycle(pk, dn, payload),
                TopicKind::TopoLifecycle => self.topo(pk, dn, payload),
                _ => self.apply_status(pk, dn, payload),
            },
        };
        let outcome = match result {
            Ok(o) => o,
            Err(reason) => {
                tracing::warn!(topic = %topic, %reason, "registry: malformed data-flow message ignored");
                "malformed"
            }
        };
        metrics::REGISTRY_UPDATES.with_label_values(&[kind.name(), outcome]).inc();
        if outcome == "applied" {
            self.version.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A number that changes whenever a data-flow message changes the registry.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// The registry's devices and statuses as JSON, for the state store.
    pub fn export(&self) -> Vec<u8> {
        let learnt = Learnt {
            devices: self.devices.iter().map(|d| d.value().clone()).collect(),
            status: self.status.iter().map(|s| (s.key().0.clone(), s.key().1.clone(), s.value().clone())).collect(),
            removed: self.removed.iter().map(|r| r.key().clone()).collect(),
        };
        serde_json::to_vec(&learnt).unwrap_or_default()
    }

    /// Restores what [`export`](Self::export) wrote (at start, over the devices file).
    pub fn import(&self, bytes: &[u8]) -> Result<usize, serde_json::Error> {
        let learnt: Learnt = serde_json::from_slice(bytes)?;
        for (pk, dk) in &learnt.removed {
            self.remove(pk, dk);
            self.removed.insert((pk.clone(), dk.clone()), ());
        }
        let n = learnt.devices.len();
        for d in learnt.devices {
            self.upsert(d);
        }
        for (pk, dn, st) in learnt.status {
            let online = i64::from(st.status == "online");
            if let Some(old) = self.status.insert((pk, dn), st) {
                self.count_online(i64::from(old.status == "online"), online);
            } else {
                self.count_online(0, online);
            }
        }
        Ok(n)
    }

    fn lifecycle(&self, pk: &str, dn: &str, p: &Node<'_>) -> Result<&'static str, String> {
        let action = p.get("action").and_then(Node::as_str).ok_or("`action` must be a string")?;
        match action {
            "create" => {
                match self.resolve(pk, dn) {
                    Some(_) => {
                        self.with_device(pk, dn, |d| d.enabled = true);
                    }
                    None => self.upsert(Device {
                        product_key: pk.to_string(),
                        device_key: dn.to_string(),
                        device_name: dn.to_string(),
                        asset_id: None,
                        tags: BTreeMap::new(),
                        enabled: true,
                        gateway: None,
                    }),
                }
                Ok("applied")
            }
            "delete" => {
                if let Some((_, s)) = self.status.remove(&(pk.to_string(), dn.to_string())) {
                    self.count_online(i64::from(s.status == "online"), 0);
                }
                match self.resolve(pk, dn) {
                    Some((pk, dk)) => {
                        self.remove(&pk, &dk);
                        self.removed.insert((pk, dk), ());
                        Ok("applied")
                    }
                    None => Ok("unknown_device"),
                }
            }
            "enable" | "disable" => Ok(self.with_device(pk, dn, |d| d.enabled = action == "enable").map_or("unknown_device", |()| "applied")),
            other => Err(format!("unknown lifecycle action `{other}`")),
        }
    }

    fn topo(&self, pk: &str, dn: &str, p: &Node<'_>) -> Result<&'static str, String> {
        let action = p.get("action").and_then(Node::as_str).ok_or("`action` must be a string")?;
        if !matches!(action, "add" | "remove" | "enable" | "disable") {
            return Err(format!("unknown topology action `{action}`"));
        }
        let gw_pk = p.get("gwProductKey").and_then(Node::as_str).unwrap_or(pk);
        let gw_dn = p.get("gwDeviceName").and_then(Node::as_str).unwrap_or(dn);
        let Some(Node::Array(devices)) = p.get("devices") else {
            return Err("`devices` must be an array".into());
        };
        let mut subs = Vec::with_capacity(devices.len());
        for (i, d) in devices.iter().enumerate() {
            match (d.get("productKey").and_then(Node::as_str), d.get("deviceName").and_then(Node::as_str)) {
                (Some(spk), Some(sdn)) => subs.push((spk, sdn)),
                _ => return Err(format!("devices[{i}] needs string `productKey` and `deviceName`")),
            }
        }
        let mut outcome = "applied";
        for (spk, sdn) in subs {
            let found = self.with_device(spk, sdn, |d| match action {
                "add" => d.gateway = Some((gw_pk.to_string(), gw_dn.to_string())),
                "remove" => {
                    if d.gateway.as_ref().is_none_or(|(p, n)| p == gw_pk && n == gw_dn) {
                        d.gateway = None;
                    }
                }
                _ => d.enabled = action == "enable",
            });
            if found.is_none() {
                tracing::debug!(product_key = spk, device_name = sdn, action, "registry: topology change for an unregistered sub-device");
                outcome = "unknown_device";
            }
        }
        Ok(outcome)
    }

    fn apply_status(&self, pk: &str, dn: &str, p: &Node<'_>) -> Result<&'static str, String> {
        let status = p.get("status").and_then(Node::as_str).ok_or("`status` must be a string")?;
        if status != "online" && status != "offline" {
            return Err(format!("`status` `{status}` must be online or offline"));
        }
        let last_ms = self.last_time_ms(p).ok_or("needs `utcLastTime` (RFC 3339) or `lastTime` (yyyy-MM-dd HH:mm:ss.SSS)")?;
        let key = (pk.to_string(), dn.to_string());
        let mut applied = false;
        let mut was_online = false;
        self.status
            .entry(key)
            .and_modify(|s| {
                if last_ms >= s.last_ms {
                    was_online = s.status == "online";
                    *s = Status { status: status.to_string(), last_ms };
                    applied = true;
                }
            })
            .or_insert_with(|| {
                applied = true;
                Status { status: status.to_string(), last_ms }
            });
        if applied {
            self.count_online(i64::from(was_online), i64::from(status == "online"));
        }
        Ok(if applied { "applied" } else { "stale" })
    }

    /// A status went from online (`was` 1) or not to online (`now` 1) or not.
    fn count_online(&self, was: i64, now: i64) {
        if was != now {
            let n = self.online.fetch_add(now - was, Ordering::AcqRel) + now - was;
            metrics::REGISTRY_ONLINE_DEVICES.set(n);
        }
    }

    /// Devices whose last status said online.
    pub fn online(&self) -> usize {
        self.online.load(Ordering::Acquire).max(0) as usize
    }

    fn last_time_ms(&self, p: &Node<'_>) -> Option<i64> {
        if let Some(t) = p.get("utcLastTime").and_then(Node::as_str).and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok()) {
            return Some(t.timestamp_millis());
        }
        match p.get("lastTime")? {
            Node::Int(n) => Some(*n),
            Node::Str(s) => {
                let naive = chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f").ok()?;
                let offset = self.tz.map_or(0, |tz| i64::from(tz.local_minus_utc()));
                Some(naive.and_utc().timestamp_millis() - offset * 1000)
            }
            _ => None,
        }
    }
}

impl DeviceLookup for Registry {
    fn attribute(&self, product_key: &str, device: &str, key: &str) -> Option<String> {
        let k = self.resolve(product_key, device)?;
        self.devices.get(&k)?.tags.get(key).cloned()
    }

    fn status(&self, product_key: &str, device: &str) -> Option<String> {
        let direct = (product_key.to_string(), device.to_string());
        if let Some(s) = self.status.get(&direct) {
            return Some(s.status.clone());
        }
        // `device` may be a device key whose device name differs.
        let name = self.devices.get(&direct).map(|d| d.device_name.clone())?;
        self.status.get(&(product_key.to_string(), name)).map(|s| s.status.clone())
    }

    fn gateway(&self, product_key: &str, device: &str) -> Option<(String, String)> {
        let k = self.resolve(product_key, device)?;
        self.devices.get(&k)?.gateway.clone()
    }
}

/// Lets the engine's `Env.devices` share the registry with the pipeline.
impl DeviceLookup for Arc<Registry> {
    fn attribute(&self, product_key: &str, device: &str, key: &str) -> Option<String> {
        self.as_ref().attribute(product_key, device, key)
    }
    fn status(&self, product_key: &str, device: &str) -> Option<String> {
        self.as_ref().status(product_key, device)
    }
    fn gateway(&self, product_key: &str, device: &str) -> Option<(String, String)> {
        self.as_ref().gateway(product_key, device)
    }
}

#[cfg(test)]
mod tests;
