//! One librdkafka client context for the Kafka source's consumer and the Kafka sink's producer.
//!
//! [`Context`] carries a [`Client`] (what the client works for, its readiness check) and the
//! component's own state, which the source's `ConsumerContext` and the sink's `ProducerContext`
//! use. The [`Client`] does what both need the same way:
//! - librdkafka's log lines go to `tracing` at the matching level, with the component's key
//!   (`source = <name>` or `sink = "kafka"`);
//! - librdkafka's statistics (every `statistics.interval.ms`, default
//!   [`STATISTICS_INTERVAL_MS`]) drive the readiness check (ready while at least one broker
//!   connection is up) and, for a consumer, the lag of each assigned partition
//!   (`sluice_kafka_consumer_lag_records`);
//! - error callbacks are logged (connection errors, which librdkafka logs and recovers from
//!   itself, only at debug), and counted for a consumer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

use crate::kafka::stats::Stats;
use crate::telemetry::{health, metrics};

/// Default `statistics.interval.ms` of Sluice's clients (lag and readiness); a `properties`
/// entry overrides it (`0` turns statistics off: no lag metric, and the readiness check always
/// passes).
pub const STATISTICS_INTERVAL_MS: u64 = 1000;

/// What a client works for: the key of its log lines, and what its statistics feed.
#[derive(Clone, Debug)]
pub enum Role {
    /// The consumer of the Kafka source of this name: logs carry `source = <name>`, errors
    /// count in `sluice_kafka_consumer_errors_total`, statistics give partition lags.
    Consumer(Arc<str>),
    /// The producer of the Kafka sink: logs carry `sink = "kafka"`.
    Producer,
}

/// Logs at `$level` with the role's key (`source = <name>` or `sink = "kafka"`).
macro_rules! log_as {
    ($role:expr, $level:ident, $($rest:tt)*) => {
        match $role {
            Role::Consumer(name) => tracing::$level!(source = %name, $($rest)*),
            Role::Producer => tracing::$level!(sink = "kafka", $($rest)*),
        }
    };
}

/// What the consumer and the producer share: their role, readiness check and stop flag.
#[derive(Debug)]
pub struct Client {
    role: Role,
    /// The readiness check's name (`source:<name>`, `sink:kafka`).
    check: String,
    /// Set when the component stops: statistics no longer update its readiness.
    stopped: AtomicBool,
}

impl Client {
    /// A client of `role` whose statistics set the readiness check `check`.
    pub fn new(role: Role, check: impl Into<String>) -> Client {
        Client { role, check: check.into(), stopped: AtomicBool::new(false) }
    }

    /// A librdkafka configuration with Sluice's common defaults (the statistics interval); the
    /// component sets the rest.
    pub fn config() -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("statistics.interval.ms", STATISTICS_INTERVAL_MS.to_string());
        c
    }

    /// Sets the readiness check before the first statistics: `connecting`, or passing when
    /// `config` turns statistics off.
    pub fn start(&self, config: &ClientConfig) {
        if config.get("statistics.interval.ms").is_some_and(|v| v.trim() == "0") {
            health::set(&self.check, true, "not checked: statistics.interval.ms = 0");
        } else {
            health::set(&self.check, false, "connecting");
        }
    }

    /// The component stopped: its check fails (`stopped`) and statistics no longer update it.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        health::set(&self.check, false, "stopped");
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// A librdkafka log line, at the matching `tracing` level.
    pub fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => log_as!(&self.role, error, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => log_as!(&self.role, warn, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => log_as!(&self.role, info, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Debug => log_as!(&self.role, debug, fac, "librdkafka: {message}"),
        }
    }

    /// librdkafka's statistics: broker connection states (readiness) and, for a consumer,
    /// partition lags.
    pub fn stats(&self, json: &[u8]) {
        if self.stopped() {
            return;
        }
        let stats = match Stats::parse(json) {
            Ok(s) => s,
            Err(e) => {
                log_as!(&self.role, debug, error = %e, "unreadable librdkafka statistics");
                return;
            }
        };
        let (up, known) = stats.brokers_up();
        health::set(&self.check, up > 0, format!("{up} of {known} broker connections up"));
        if let Role::Consumer(name) = &self.role {
            for (topic, partition, lag) in stats.consumer_lags() {
                metrics::KAFKA_CONSUMER_LAG.with_label_values(&[&**name, topic, &partition.to_string()]).set(lag);
            }
        }
    }

    /// librdkafka's error callback.
    pub fn error(&self, error: &KafkaError, reason: &str) {
        match &self.role {
            Role::Consumer(name) => {
                metrics::KAFKA_CONSUMER_ERRORS.with_label_values(&[&**name]).inc();
                if is_connection_error(error) {
                    // librdkafka logs these itself.
                    tracing::debug!(source = %name, %error, "kafka consumer: {reason}");
                } else {
                    tracing::warn!(source = %name, %error, "kafka consumer: {reason}");
                }
            }
            Role::Producer => {
                if is_connection_error(error) {
                    tracing::debug!(sink = "kafka", %error, "kafka producer: {reason}");
                } else {
                    tracing::warn!(sink = "kafka", %error, "kafka producer: {reason}");
                }
            }
        }
    }
}

/// The context of a Sluice client: the shared [`Client`] and the component's `state` (its
/// `ConsumerContext` or `ProducerContext` is implemented on `Context<its state>`).
pub struct Context<S> {
    /// Logs, statistics and errors.
    pub client: Client,
    /// The component's state, for its rebalance, commit or delivery callbacks.
    pub state: S,
}

impl<S: Send + Sync + 'static> ClientContext for Context<S> {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.client.log(level, fac, message);
    }

    fn stats_raw(&self, json: &[u8]) {
        self.client.stats(json);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.client.error(&error, reason);
    }
}

/// Broker connection errors, which librdkafka logs itself and recovers from.
pub fn is_connection_error(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(e.rdkafka_error_code(), Some(C::BrokerTransportFailure | C::AllBrokersDown | C::Resolve))
}

/// Refuses `properties` that set one of `reserved` (Sluice sets those itself).
pub fn check_reserved(properties: &BTreeMap<String, String>, reserved: &[&str]) -> Result<(), String> {
    match properties.keys().find(|k| reserved.contains(&k.as_str())) {
        Some(k) => Err(format!("property `{k}` is set by Sluice (use the dedicated field)")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn connection_errors_are_recognised() {
        assert!(is_connection_error(&KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)));
        assert!(is_connection_error(&KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure)));
        assert!(!is_connection_error(&KafkaError::Global(RDKafkaErrorCode::TopicAuthorizationFailed)));
    }

    fn check(name: &str) -> Option<(bool, String)> {
        health::report().checks.into_iter().find(|c| c.name == name).map(|c| (c.ok, c.detail))
    }

    #[test]
    fn statistics_set_readiness_until_stopped() {
        let name = "kafka-client-unit:producer";
        let c = Client::new(Role::Producer, name);
        c.start(Client::config().set("statistics.interval.ms", "0"));
        assert_eq!(check(name), Some((true, "not checked: statistics.interval.ms = 0".to_string())));
        c.start(&Client::config());
        assert_eq!(check(name), Some((false, "connecting".to_string())));
        c.stats(b"not json");
        assert_eq!(check(name), Some((false, "connecting".to_string())), "unreadable statistics change nothing");
        c.stats(br#"{"brokers": {"b:9092/1": {"state": "UP"}, "b:9092/bootstrap": {"state": "DOWN"}}}"#);
        assert_eq!(check(name), Some((true, "1 of 2 broker connections up".to_string())));
        c.stop();
        assert!(c.stopped());
        c.stats(br#"{"brokers": {"b:9092/1": {"state": "UP"}}}"#);
        assert_eq!(check(name), Some((false, "stopped".to_string())));
        health::remove(name);
    }

    #[test]
    fn reserved_properties_are_refused() {
        let mut p = BTreeMap::new();
        p.insert("acks".to_string(), "all".to_string());
        assert_eq!(check_reserved(&p, &["bootstrap.servers"]), Ok(()));
        p.insert("bootstrap.servers".to_string(), "x".to_string());
        assert_eq!(check_reserved(&p, &["bootstrap.servers"]).unwrap_err(), "property `bootstrap.servers` is set by Sluice (use the dedicated field)");
    }
}
