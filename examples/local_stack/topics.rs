//! The Kafka topics the stack creates, derived from the compiled sample rules: every action and
//! `[error_action]` topic; a template such as `iot-property-${productKey}` once for every
//! product of the thing models (`models/`, the products of the seed samples); plus the engine's
//! default error topic and the Kafka source's input topic.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context};
use sluice::control::compile_paths;
use sluice::devices::ThingModel;
use sluice::rule::template::Template;

/// The engine's default error topic (`[engine] default_error_topic`).
pub const ERRORS: &str = "sluice-errors";
/// The Kafka source's input topic (data-flow messages).
pub const INPUT: &str = "iot-in";

/// The topics for the rules under `rules` and the products of `models`, sorted.
pub fn derive(rules: &Path, models: &Path) -> anyhow::Result<Vec<String>> {
    let (compiled, errors) = compile_paths(&[rules.to_path_buf()]);
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        bail!("the rules in {} do not compile:\n{}", rules.display(), list.join("\n"));
    }
    let products = products(models)?;
    let mut topics = BTreeSet::from([ERRORS.to_string(), INPUT.to_string()]);
    for rule in &compiled {
        let error_topic = match &rule.error_topic {
            Some(t) => Some(Template::parse(t).map_err(|(_, e)| anyhow::anyhow!("rule {}: {e}", rule.name))?),
            None => None,
        };
        for t in rule.actions.iter().map(|a| &a.topic).chain(error_topic.as_ref()) {
            if t.fields().next().is_none() {
                topics.insert(t.source.clone());
                continue;
            }
            // Every field of a topic template stands for the product: `${productKey}`,
            // `${gwProductKey}`.
            for pk in &products {
                topics.insert(t.render(|_| Ok(pk.clone())).map_err(|e| anyhow::anyhow!("rule {}: {e}", rule.name))?);
            }
        }
    }
    Ok(topics.into_iter().collect())
}

/// The product keys of the thing models in `models` (the files the registry loads: every
/// `*.toml` but `devices.toml`).
fn products(models: &Path) -> anyhow::Result<Vec<String>> {
    let mut files: Vec<_> = std::fs::read_dir(models)
        .with_context(|| format!("reading {}", models.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.file_name().is_some_and(|n| n != "devices.toml"))
        .collect();
    files.sort();
    files.iter().map(|f| ThingModel::load(f).map(|m| m.product_key).map_err(anyhow::Error::msg)).collect()
}
