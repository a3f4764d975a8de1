//! Test configurations as TOML tables, never as text: built from `serde_json::json!` values
//! (paths, ports and names go in as values, quoted by the serializer), changed with
//! [`merge`], written with [`write_config`].

use std::path::Path;

use serde_json::Value;

/// A JSON object as a TOML table (nulls are not allowed: TOML has none).
pub fn table(v: Value) -> toml::Table {
    toml::Table::try_from(v).expect("a JSON object that TOML can hold")
}

/// Merges `patch` (a JSON object) into `t`: tables merge key by key, recursively; any other
/// value (arrays included) replaces what was there.
pub fn merge(t: &mut toml::Table, patch: Value) {
    let patch = table(patch);
    merge_tables(t, patch);
}

fn merge_tables(t: &mut toml::Table, patch: toml::Table) {
    for (k, v) in patch {
        match (t.get_mut(&k), v) {
            (Some(toml::Value::Table(have)), toml::Value::Table(p)) => merge_tables(have, p),
            (_, v) => {
                t.insert(k, v);
            }
        }
    }
}

/// The `i`-th `[[sources]]` table.
pub fn source(t: &mut toml::Table, i: usize) -> &mut toml::Table {
    t.get_mut("sources").and_then(|s| s.as_array_mut()).and_then(|a| a.get_mut(i)).and_then(|s| s.as_table_mut()).unwrap_or_else(|| panic!("no [[sources]] number {i}"))
}

/// Appends a `[[sources]]` table.
pub fn push_source(t: &mut toml::Table, source: Value) {
    let sources = t.entry("sources").or_insert_with(|| toml::Value::Array(Vec::new()));
    sources.as_array_mut().expect("[[sources]] is an array").push(toml::Value::Table(table(source)));
}

/// A path as a TOML string.
pub fn path(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_string()
}

/// Serializes `t` into `file` (creating its folder).
pub fn write_config(file: &Path, t: &toml::Table) {
    crate::write(file, &toml::to_string(t).expect("serialize the configuration"));
}
