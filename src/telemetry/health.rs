//! Readiness: a process-wide registry of named checks that components register and keep
//! current (rules loaded, Kafka reachable, MQTT connected, …), served as `GET /readyz`.
//!
//! Sluice is ready when at least one check is registered and every check passes. A component
//! registers its check as failing when it starts (e.g. "connecting") and updates it as it
//! learns; checks are cheap to update (a lock and a map entry) but are meant for state changes
//! and periodic probes, not per-message work.

use std::collections::BTreeMap;
use std::sync::{LazyLock, RwLock};

use serde::Serialize;

/// One check's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The check's name (`rules`, `kafka_sink`, `kafka_source:<source>`, `mqtt:<source>`, …).
    pub name: String,
    /// Whether it passes.
    pub ok: bool,
    /// What it saw, for people.
    pub detail: String,
}

/// Every check, and whether they all pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when at least one check is registered and all pass.
    pub ready: bool,
    /// The checks, by name.
    pub checks: Vec<Check>,
}

static CHECKS: LazyLock<RwLock<BTreeMap<String, (bool, String)>>> = LazyLock::new(|| RwLock::new(BTreeMap::new()));

/// Registers or updates check `name`. Logs when its state changes.
pub fn set(name: &str, ok: bool, detail: impl Into<String>) {
    let detail = detail.into();
    let mut checks = CHECKS.write().unwrap_or_else(|e| e.into_inner());
    let changed = checks.get(name).is_none_or(|(was, _)| *was != ok);
    if changed {
        if ok {
            tracing::info!(check = name, %detail, "readiness check passes");
        } else {
            tracing::warn!(check = name, %detail, "readiness check fails");
        }
    }
    checks.insert(name.to_string(), (ok, detail));
}

/// Removes check `name` (a component that stopped for good).
pub fn remove(name: &str) {
    CHECKS.write().unwrap_or_else(|e| e.into_inner()).remove(name);
}

/// The current state of every check.
pub fn report() -> Report {
    let checks: Vec<Check> = CHECKS.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(name, (ok, detail))| Check { name: name.clone(), ok: *ok, detail: detail.clone() }).collect();
    Report { ready: !checks.is_empty() && checks.iter().all(|c| c.ok), checks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_passes() {
        set("health-unit:a", true, "fine");
        set("health-unit:b", false, "connecting");
        let r = report();
        assert!(!r.ready);
        assert!(r.checks.contains(&Check { name: "health-unit:b".into(), ok: false, detail: "connecting".into() }));
        set("health-unit:b", true, "connected");
        assert!(report().checks.iter().any(|c| c.name == "health-unit:b" && c.ok && c.detail == "connected"));
        remove("health-unit:a");
        remove("health-unit:b");
        assert!(!report().checks.iter().any(|c| c.name.starts_with("health-unit:")));
    }
}
