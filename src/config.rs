//! Configuration of `sluice run`: a TOML file (see `deploy/sluice.toml` for every key,
//! annotated). Unknown keys are errors. Relative paths are relative to the working directory.

use std::collections::BTreeMap;
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
    /// The device registry and thing models (optional: without it, integration entries are
    /// not validated against models and device lookups in rules are NULL).
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
    /// The admin HTTP server (`/metrics`, `/healthz`, `/integration/errors`); off without it.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The durable store of the stateful rules' state (windows, analytic memory); without it
    /// that state lives in memory only.
    #[serde(default)]
    pub state: Option<StateConfig>,
}

pub use crate::state::config::StateConfig;

pub use crate::telemetry::config::AdminConfig;

pub use crate::devices::config::RegistryConfig;

pub use crate::control::config::RulesConfig;

pub use crate::engine::config::EngineConfig;

/// A source.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A JSON-lines file: `{"topic": …, "payload": …}` per line.
    File {
        /// The file.
        path: PathBuf,
    },
    /// Kafka topics, read by a consumer group (see [`KafkaSourceConfig`]).
    Kafka(KafkaSourceConfig),
    /// The MQTT integration channel (see [`MqttSourceConfig`]).
    Mqtt(MqttSourceConfig),
    /// The HTTP event upload of the integration channel (seed 002, see [`HttpSourceConfig`]).
    Http(HttpSourceConfig),
}

/// `[[sources]] type = "http"`: the HTTP "Upload Events" API of seed 002,
/// `POST /connect-service/v2.1/integration?action=postEvent&orgId=…` with a multipart body (one
/// `enos-message` part, zero or more `enos-file` parts). Files are stored in `files_dir`; the
/// accepted entries go to the rules with `local://name` replaced by the stored file's URI, and
/// the request is answered once they are delivered (at-least-once).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Address to listen on, `host:port` (port 0: any free port).
    #[serde(default = "default_http_listen")]
    pub listen: String,
    /// Access tokens accepted in the `apim-accesstoken` header, per orgId:
    /// `tokens = { "yourOrgId" = ["token1", "token2"] }`. An orgId not listed is refused (401).
    pub tokens: BTreeMap<String, Vec<String>>,
    /// Root folder of the local object store where uploaded files are kept (created if
    /// missing), as `<orgId>/<uuid>/<sanitized file name>`.
    #[serde(default = "default_http_files_dir")]
    pub files_dir: PathBuf,
    /// Store uploaded files in an S3-compatible bucket instead of `files_dir`.
    #[serde(default)]
    pub s3: Option<S3StoreConfig>,
    /// Largest request body (bytes); larger requests are refused with HTTP 413, code 1413.
    #[serde(default = "default_http_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest `enos-message` part (bytes).
    #[serde(default = "default_http_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Largest `enos-file` part (bytes).
    #[serde(default = "default_http_max_file_bytes")]
    pub max_file_bytes: usize,
    /// Most `enos-file` parts in one request.
    #[serde(default = "default_http_max_files")]
    pub max_files: usize,
}

fn default_http_listen() -> String {
    "127.0.0.1:8080".into()
}
/// `s3 = { … }` of an HTTP source: an S3-compatible object store for uploaded files, which are
/// then referred to as `s3://<bucket>/<orgId>/<uuid>/<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3StoreConfig {
    /// The bucket (it must exist).
    pub bucket: String,
    /// The region.
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// The endpoint of an S3-compatible service (e.g. `http://127.0.0.1:9000`); AWS when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Access key id; when absent, taken from `AWS_ACCESS_KEY_ID`.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key; when absent, taken from `AWS_SECRET_ACCESS_KEY`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint.
    #[serde(default)]
    pub allow_http: bool,
}

fn default_s3_region() -> String {
    "us-east-1".into()
}

fn default_http_files_dir() -> PathBuf {
    PathBuf::from("uploads")
}
fn default_http_max_body_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_http_max_message_bytes() -> usize {
    1024 * 1024
}
fn default_http_max_file_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_http_max_files() -> usize {
    16
}

impl HttpSourceConfig {
    fn validate(&self) -> Result<(), String> {
        self.listen.parse::<std::net::SocketAddr>().map_err(|e| format!("`listen` `{}`: {e}", self.listen))?;
        if self.tokens.is_empty() || self.tokens.values().any(|t| t.is_empty() || t.iter().any(String::is_empty)) {
            return Err("`tokens` needs at least one orgId, each with at least one non-empty token".into());
        }
        if self.max_body_bytes == 0 || self.max_message_bytes == 0 || self.max_file_bytes == 0 {
            return Err("`max_body_bytes`, `max_message_bytes` and `max_file_bytes` must be at least 1".into());
        }
        Ok(())
    }
}

/// `[[sources]] type = "mqtt"`: the integration channel (seed 003). Subscribes with QoS 1 to
/// `sys/+/integration/+/post` and `sys/+/integration/up_raw`, validates each request, sends its
/// accepted entries to the rules and answers on `<request topic>_reply`. A request is
/// acknowledged to the broker only after its reply is sent, which is after its outputs are
/// delivered: with a persistent session (`clean_session = false`, fixed `client_id`) a request
/// in flight when Sluice dies is delivered again.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// The broker: `mqtt://host:port` (plain TCP) or `mqtts://host:port` (TLS, needs `[tls]`).
    pub url: String,
    /// The client id; keep it fixed so the broker keeps the session (and its unacknowledged
    /// requests) across restarts.
    pub client_id: String,
    /// User name, if the broker wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, if the broker wants one.
    #[serde(default)]
    pub password: Option<String>,
    /// TLS settings (used with `mqtts://`).
    #[serde(default)]
    pub tls: Option<MqttTlsConfig>,
    /// Subscribe as `$share/<group>/…` so several instances split the requests.
    #[serde(default)]
    pub shared_group: Option<String>,
    /// MQTT clean session; `false` (default) keeps unacknowledged requests for redelivery.
    #[serde(default)]
    pub clean_session: bool,
    /// Keep-alive interval (seconds).
    #[serde(default = "default_mqtt_keep_alive_secs")]
    pub keep_alive_secs: u64,
    /// First delay (ms) before reconnecting after a connection failure; doubles on each
    /// consecutive failure up to `reconnect_backoff_max_ms`.
    #[serde(default = "default_mqtt_reconnect_backoff_ms")]
    pub reconnect_backoff_ms: u64,
    /// Longest delay (ms) between two connection attempts.
    #[serde(default = "default_mqtt_reconnect_backoff_max_ms")]
    pub reconnect_backoff_max_ms: u64,
    /// Requests larger than this are answered with code 1413 and not imported.
    #[serde(default = "default_mqtt_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Folder of the up_raw decoder scripts, one `<productKey>.js` per product.
    #[serde(default = "default_mqtt_decoders_dir")]
    pub decoders_dir: PathBuf,
    /// Time limit (ms) of one decoder call.
    #[serde(default = "default_mqtt_decoder_timeout_ms")]
    pub decoder_timeout_ms: u64,
    /// Memory limit (bytes) of one decoder call.
    #[serde(default = "default_mqtt_decoder_memory_bytes")]
    pub decoder_memory_bytes: usize,
    /// Subscribe (QoS 0) to Mosquitto's `$SYS/broker/publish/messages/dropped` and export it
    /// as `sluice_mqtt_broker_dropped_messages`, naming a count above 0 in `/readyz` (default
    /// `true`). A broker that refuses it is logged once; one without it costs nothing.
    #[serde(default = "default_mqtt_watch_broker_drops")]
    pub watch_broker_drops: bool,
}

/// `[sources.tls]` of an MQTT source: PEM files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsConfig {
    /// CA certificate(s) the broker's certificate must chain to.
    pub ca_file: PathBuf,
    /// Client certificate, for brokers that authenticate clients by certificate.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

fn default_mqtt_keep_alive_secs() -> u64 {
    30
}
fn default_mqtt_reconnect_backoff_ms() -> u64 {
    200
}
fn default_mqtt_reconnect_backoff_max_ms() -> u64 {
    30_000
}
fn default_mqtt_max_request_bytes() -> usize {
    1024 * 1024
}
fn default_mqtt_decoders_dir() -> PathBuf {
    PathBuf::from("decoders")
}
fn default_mqtt_decoder_timeout_ms() -> u64 {
    50
}
fn default_mqtt_decoder_memory_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_mqtt_watch_broker_drops() -> bool {
    true
}

impl MqttSourceConfig {
    /// `(host, port, tls)` of `url`.
    pub fn endpoint(&self) -> Result<(String, u16, bool), String> {
        let (tls, rest) = if let Some(r) = self.url.strip_prefix("mqtt://").or_else(|| self.url.strip_prefix("tcp://")) {
            (false, r)
        } else if let Some(r) = self.url.strip_prefix("mqtts://").or_else(|| self.url.strip_prefix("ssl://")) {
            (true, r)
        } else {
            return Err(format!("`url` `{}` must be mqtt://host:port or mqtts://host:port", self.url));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("`url` `{}`: bad port", self.url))?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(format!("`url` `{}` has no host", self.url));
        }
        Ok((host.to_string(), port, tls))
    }

    fn validate(&self) -> Result<(), String> {
        let (_, _, tls) = self.endpoint()?;
        if tls && self.tls.is_none() {
            return Err("an mqtts:// `url` needs a [tls] table with `ca_file`".into());
        }
        if self.client_id.trim().is_empty() {
            return Err("`client_id` is empty".into());
        }
        if let Some(g) = &self.shared_group {
            if g.is_empty() || g.contains(['/', '+', '#']) {
                return Err(format!("`shared_group` `{g}` must be non-empty without `/`, `+` or `#`"));
            }
        }
        if let Some(t) = &self.tls {
            if t.client_cert_file.is_some() != t.client_key_file.is_some() {
                return Err("`tls.client_cert_file` and `tls.client_key_file` go together".into());
            }
        }
        if self.reconnect_backoff_ms == 0 || self.reconnect_backoff_max_ms < self.reconnect_backoff_ms {
            return Err("`reconnect_backoff_ms` must be at least 1 and at most `reconnect_backoff_max_ms`".into());
        }
        if self.decoder_timeout_ms == 0 || self.decoder_memory_bytes < 1024 * 1024 {
            return Err("`decoder_timeout_ms` must be at least 1 and `decoder_memory_bytes` at least 1 MiB".into());
        }
        Ok(())
    }
}

pub use crate::source::kafka::config::{IotTopicFrom, KafkaSourceConfig, KAFKA_SOURCE_RESERVED};

/// The sink.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// One JSON-lines file per target topic.
    File {
        /// Output folder (created if missing).
        dir: PathBuf,
        /// Append to the topics' files instead of replacing them when a run first writes to
        /// them (default `false`: a run's output is the files). Set it for a long-running
        /// source (MQTT, HTTP, Kafka), so that a restart keeps what earlier runs wrote.
        #[serde(default)]
        append: bool,
        /// `fsync` each group of batches before acknowledging it (default `true`): an
        /// acknowledged input survives a crash of the machine. With `false` the lines are
        /// written to the OS (flushed) before the acknowledgement, which survives `kill -9` of
        /// Sluice but not a power loss, for less cost per batch.
        #[serde(default = "default_true")]
        fsync: bool,
    },
    /// A Kafka producer (see [`KafkaSinkConfig`]).
    Kafka(KafkaSinkConfig),
}

pub use crate::sink::kafka::config::{KafkaSinkConfig, KAFKA_SINK_RESERVED};

fn default_true() -> bool {
    true
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        Config::parse(path, &text)
    }

    /// Parses configuration text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let pos = e.span().map(|s| pos_of_offset(text, s.start)).unwrap_or_default();
            ConfigError::Invalid { path: path.to_path_buf(), line: pos.line.max(1), col: pos.col.max(1), message: e.message().trim().to_string() }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.sources.is_empty() {
            return Err(ConfigError::Value("at least one [[sources]] is needed".into()));
        }
        if self.engine.channel_capacity == 0 {
            return Err(ConfigError::Value("engine.channel_capacity must be at least 1".into()));
        }
        if self.engine.workers == 0 {
            return Err(ConfigError::Value("engine.workers must be at least 1".into()));
        }
        if !crate::rule::template::valid_kafka_topic(&self.engine.default_error_topic) {
            return Err(ConfigError::Value(format!("engine.default_error_topic `{}` is not a valid topic name", self.engine.default_error_topic)));
        }
        parse_timezone(&self.engine.timezone).map_err(ConfigError::Value)?;
        for (i, s) in self.sources.iter().enumerate() {
            match s {
                SourceConfig::Kafka(k) => k.validate().map_err(|e| ConfigError::Value(format!("sources[{i}]: {e}")))?,
                SourceConfig::Mqtt(m) => m.validate().map_err(|e| ConfigError::Value(format!("sources[{i}]: {e}")))?,
                SourceConfig::Http(h) => h.validate().map_err(|e| ConfigError::Value(format!("sources[{i}]: {e}")))?,
                SourceConfig::File { .. } => {}
            }
        }
        if let SinkConfig::Kafka(k) = &self.sink {
            k.validate().map_err(|e| ConfigError::Value(format!("sink: {e}")))?;
        }
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
        assert!(e.to_string().starts_with("c.toml:2:1: unknown field `workrs`"), "{e}");
        let e = Config::parse(Path::new("c.toml"), "[[sources]]\ntype = \"file\"\npath = \"x\"\nbogus = 1\n[sink]\ntype = \"file\"\ndir = \"o\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
    }

    #[test]
    fn kafka_source_and_sink_get_defaults() {
        let c = Config::parse(
            Path::new("c.toml"),
            "[[sources]]\ntype = \"kafka\"\nbrokers = \"b:9092\"\ntopics = [\"in\", \"^iot-.*\"]\ngroup_id = \"g\"\n[sources.properties]\n\"session.timeout.ms\" = \"6000\"\n[sink]\ntype = \"kafka\"\nbrokers = \"b:9092\"\n",
        )
        .unwrap();
        let SourceConfig::Kafka(s) = &c.sources[0] else { panic!("kafka source") };
        assert_eq!(s.iot_topic, IotTopicFrom::Header { name: "iot-topic".into() });
        assert_eq!(s.max_in_flight, 10_000);
        assert_eq!(s.properties["session.timeout.ms"], "6000");
        let SinkConfig::Kafka(k) = &c.sink else { panic!("kafka sink") };
        assert!(k.idempotence);
        assert_eq!(k.compression, "lz4");
        assert_eq!(c.engine.shutdown_timeout_ms, 30_000);
    }

    #[test]
    fn kafka_sink_headers_are_checked_with_positions() {
        let text = |headers: &str| format!("[[sources]]\ntype = \"file\"\npath = \"x\"\n[sink]\ntype = \"kafka\"\nbrokers = \"b:9092\"\n{headers}");
        let c = Config::parse(Path::new("c.toml"), &text("")).unwrap();
        let SinkConfig::Kafka(k) = &c.sink else { panic!("kafka sink") };
        assert_eq!(k.headers, [crate::sink::kafka::config::SinkHeader::IotTopic, crate::sink::kafka::config::SinkHeader::Rule]);
        let c = Config::parse(Path::new("c.toml"), &text("headers = []\n")).unwrap();
        let SinkConfig::Kafka(k) = &c.sink else { panic!("kafka sink") };
        assert!(k.headers.is_empty());
        let e = Config::parse(Path::new("c.toml"), &text("headers = [\"iot-topic\", \"rule\"]\n")).unwrap_err().to_string();
        // The position is the `[sink]` table's (an internally tagged enum: serde has no finer span).
        assert!(e.starts_with("c.toml:4:1: "), "{e}");
        assert!(e.contains("unknown variant `rule`, expected `iot-topic` or `sluice-rule`"), "{e}");
        let e = Config::parse(Path::new("c.toml"), &text("headers = [\"iot-topic\", \"iot-topic\"]\n")).unwrap_err().to_string();
        assert_eq!(e, "sink: `headers` names `iot-topic` twice (entry 2)");
    }

    #[test]
    fn kafka_iot_topic_sources() {
        let base = "[[sources]]\ntype = \"kafka\"\nbrokers = \"b\"\ntopics = [\"in\"]\ngroup_id = \"g\"\n";
        let sink = "[sink]\ntype = \"file\"\ndir = \"o\"\n";
        let parse = |extra: &str| Config::parse(Path::new("c.toml"), &format!("{base}{extra}{sink}"));
        let c = parse("iot_topic = { from = \"key\" }\n").unwrap();
        let SourceConfig::Kafka(s) = &c.sources[0] else { panic!() };
        assert_eq!(s.iot_topic, IotTopicFrom::Key);
        let c = parse("iot_topic = { from = \"fixed\", topic = \"/a/b\" }\n").unwrap();
        let SourceConfig::Kafka(s) = &c.sources[0] else { panic!() };
        assert_eq!(s.iot_topic, IotTopicFrom::Fixed { topic: "/a/b".into() });
        let c = parse("iot_topic = { from = \"header\", name = \"t\" }\n").unwrap();
        let SourceConfig::Kafka(s) = &c.sources[0] else { panic!() };
        assert_eq!(s.iot_topic, IotTopicFrom::Header { name: "t".into() });
        assert!(parse("iot_topic = { from = \"nowhere\" }\n").is_err());
        let e = parse("[sources.properties]\n\"enable.auto.commit\" = \"true\"\n").unwrap_err();
        assert!(e.to_string().contains("`enable.auto.commit` is set by Sluice"), "{e}");
        let e = parse("topicz = []\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `topicz`"), "{e}");
    }

    #[test]
    fn registry_section() {
        let base = "[[sources]]\ntype = \"file\"\npath = \"in.jsonl\"\n[sink]\ntype = \"file\"\ndir = \"out\"\n";
        assert!(Config::parse(Path::new("c.toml"), base).unwrap().registry.is_none());
        let c = Config::parse(Path::new("c.toml"), &format!("{base}[registry]\n")).unwrap();
        let r = c.registry.unwrap();
        assert_eq!((r.models, r.devices), (PathBuf::from("models"), None));
        let c = Config::parse(Path::new("c.toml"), &format!("{base}[registry]\nmodels = \"m\"\ndevices = \"d.toml\"\n")).unwrap();
        assert_eq!(c.registry.unwrap().devices, Some(PathBuf::from("d.toml")));
        assert!(Config::parse(Path::new("c.toml"), &format!("{base}[registry]\nmodel = \"m\"\n")).is_err());
    }

    #[test]
    fn mqtt_source_gets_defaults() {
        let c = Config::parse(Path::new("c.toml"), "[[sources]]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\nclient_id = \"sluice-1\"\n[sink]\ntype = \"file\"\ndir = \"o\"\n").unwrap();
        let SourceConfig::Mqtt(m) = &c.sources[0] else { panic!("mqtt source") };
        assert_eq!(m.endpoint().unwrap(), ("127.0.0.1".to_string(), 1883, false));
        assert!(!m.clean_session);
        assert_eq!(m.decoder_timeout_ms, 50);
        assert_eq!(m.decoders_dir, PathBuf::from("decoders"));
        assert!(m.watch_broker_drops, "the broker's dropped-message count is watched by default");
        let c = Config::parse(Path::new("c.toml"), "[[sources]]\ntype = \"mqtt\"\nurl = \"mqtt://h\"\nclient_id = \"s\"\nwatch_broker_drops = false\n[sink]\ntype = \"file\"\ndir = \"o\"\n").unwrap();
        let SourceConfig::Mqtt(m) = &c.sources[0] else { panic!("mqtt source") };
        assert!(!m.watch_broker_drops);
        let e = Config::parse(Path::new("c.toml"), "[[sources]]\ntype = \"mqtt\"\nurl = \"mqtts://h:8883\"\nclient_id = \"s\"\n[sink]\ntype = \"file\"\ndir = \"o\"\n").unwrap_err();
        assert!(e.to_string().contains("needs a [tls] table"), "{e}");
    }

    #[test]
    fn http_source_gets_defaults() {
        let c = Config::parse(Path::new("c.toml"), "[[sources]]\ntype = \"http\"\ntokens = { org1 = [\"t1\"] }\n[sink]\ntype = \"file\"\ndir = \"o\"\n").unwrap();
        let SourceConfig::Http(h) = &c.sources[0] else { panic!("http source") };
        assert_eq!((h.listen.as_str(), h.files_dir.as_path(), h.max_files), ("127.0.0.1:8080", Path::new("uploads"), 16));
        let e = Config::parse(Path::new("c.toml"), "[[sources]]\ntype = \"http\"\ntokens = {}\n[sink]\ntype = \"file\"\ndir = \"o\"\n").unwrap_err();
        assert!(e.to_string().contains("`tokens`"), "{e}");
        assert!(Config::parse(Path::new("c.toml"), "[[sources]]\ntype = \"http\"\ntokens = { o = [\"t\"] }\nport = 1\n[sink]\ntype = \"file\"\ndir = \"o\"\n").is_err());
    }

    #[test]
    fn timezones() {
        assert_eq!(parse_timezone("+08:00").unwrap().local_minus_utc(), 8 * 3600);
        assert_eq!(parse_timezone("-05:30").unwrap().local_minus_utc(), -(5 * 3600 + 1800));
        assert!(parse_timezone("CET").is_err());
    }

    #[test]
    fn shipped_sample_configs_load() {
        for f in ["deploy/sluice.toml", "deploy/kafka.toml", "deploy/quickstart.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
            Config::load(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }
}
