//! Configuration of `sluice run`: a TOML file (see `deploy/sluice.toml` for every key,
//! annotated). Unknown keys are errors. Relative paths are relative to the working directory.

use std::path::{Path, PathBuf};

use chrono::FixedOffset;
use serde::Deserialize;

use crate::error::{pos_of_offset, ConfigError};

/// The whole configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the rules come from.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Engine settings.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Message sources (at least one).
    pub sources: Vec<SourceConfig>,
    /// The sink receiving every output record.
    pub sink: SinkConfig,
}

/// `[rules]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Rule files or folders of `*.toml` rules.
    #[serde(default = "default_rule_paths")]
    pub paths: Vec<PathBuf>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            paths: default_rule_paths(),
        }
    }
}

fn default_rule_paths() -> Vec<PathBuf> {
    vec![PathBuf::from("rules")]
}

/// `[engine]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Topic of error records for rules without an `[error_action]`, and of dead letters.
    #[serde(default = "default_error_topic")]
    pub default_error_topic: String,
    /// Payloads larger than this are not evaluated; each matching rule gets an error record.
    #[serde(default = "default_max_payload_bytes")]
    pub max_payload_bytes: usize,
    /// Capacity of every channel between stages (messages). Full channels block the stage
    /// before them: backpressure, never drops.
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
    /// Engine worker tasks. Messages are spread by topic, so one topic's messages keep their
    /// order.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Time zone of `timestamp()`, as `UTC` or `±HH:MM`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default_error_topic: default_error_topic(),
            max_payload_bytes: default_max_payload_bytes(),
            channel_capacity: default_channel_capacity(),
            workers: default_workers(),
            timezone: default_timezone(),
        }
    }
}

fn default_error_topic() -> String {
    "sluice-errors".into()
}
fn default_max_payload_bytes() -> usize {
    1024 * 1024
}
fn default_channel_capacity() -> usize {
    1024
}
fn default_workers() -> usize {
    1
}
fn default_timezone() -> String {
    "UTC".into()
}

/// A source.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A JSON-lines file: `{"topic": …, "payload": …}` per line.
    File {
        /// The file.
        path: PathBuf,
    },
}

/// The sink.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// One JSON-lines file per target topic.
    File {
        /// Output folder (created if missing).
        dir: PathBuf,
    },
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parses configuration text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let pos = e
                .span()
                .map(|s| pos_of_offset(text, s.start))
                .unwrap_or_default();
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line: pos.line.max(1),
                col: pos.col.max(1),
                message: e.message().trim().to_string(),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.sources.is_empty() {
            return Err(ConfigError::Value(
                "at least one [[sources]] is needed".into(),
            ));
        }
        if self.engine.channel_capacity == 0 {
            return Err(ConfigError::Value(
                "engine.channel_capacity must be at least 1".into(),
            ));
        }
        if self.engine.workers == 0 {
            return Err(ConfigError::Value(
                "engine.workers must be at least 1".into(),
            ));
        }
        if !crate::rule::template::valid_kafka_topic(&self.engine.default_error_topic) {
            return Err(ConfigError::Value(format!(
                "engine.default_error_topic `{}` is not a valid topic name",
                self.engine.default_error_topic
            )));
        }
        parse_timezone(&self.engine.timezone).map_err(ConfigError::Value)?;
        Ok(())
    }
}

/// Parses `UTC`, `Z` or `±HH:MM`.
pub fn parse_timezone(tz: &str) -> Result<FixedOffset, String> {
    let bad = || format!("timezone `{tz}` must be UTC or ±HH:MM");
    if tz.eq_ignore_ascii_case("utc") || tz == "Z" {
        return Ok(FixedOffset::east_opt(0).expect("zero offset"));
    }
    let (sign, rest) = match tz.as_bytes().first() {
        Some(b'+') => (1, &tz[1..]),
        Some(b'-') => (-1, &tz[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(Path::new("c.toml"), "[[sources]]\ntype = \"file\"\npath = \"in.jsonl\"\n[sink]\ntype = \"file\"\ndir = \"out\"\n").unwrap();
        assert_eq!(c.engine.default_error_topic, "sluice-errors");
        assert_eq!(c.rules.paths, vec![PathBuf::from("rules")]);
    }

    #[test]
    fn unknown_keys_are_errors_with_positions() {
        let e = Config::parse(Path::new("c.toml"), "[engine]\nworkrs = 2\n[[sources]]\ntype = \"file\"\npath = \"x\"\n[sink]\ntype = \"file\"\ndir = \"o\"\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("c.toml:2:1: unknown field `workrs`"),
            "{e}"
        );
        let e = Config::parse(Path::new("c.toml"), "[[sources]]\ntype = \"file\"\npath = \"x\"\nbogus = 1\n[sink]\ntype = \"file\"\ndir = \"o\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
    }

    #[test]
    fn timezones() {
        assert_eq!(
            parse_timezone("+08:00").unwrap().local_minus_utc(),
            8 * 3600
        );
        assert_eq!(
            parse_timezone("-05:30").unwrap().local_minus_utc(),
            -(5 * 3600 + 1800)
        );
        assert!(parse_timezone("CET").is_err());
    }
}
