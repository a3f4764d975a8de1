//! # Sluice
//!
//! An IoT rule-engine stream processor: SQL rules over MQTT-style topics, routed to Kafka.
//!
//! ```text
//!  source/ ──▶ [bounded] ──▶ engine (topic index → decode → WHERE → SELECT → actions) ──▶ [bounded] ──▶ sink/
//!   file, …                          ▲ rule/: parse → plan → expr → functions → registry          file, …
//!                                    └─ compiled once, swapped atomically on reload
//! ```
//!
//! - [`message`]: messages, metadata, and integration batches split into per-device records.
//! - [`topic`]: topic filters, the trie index, and recognition of the documented topic kinds.
//! - [`doc`]: the decoded payload: a borrowed, order-keeping JSON document.
//! - [`value`]: the runtime value type and its coercion rules.
//! - [`jsonw`]: the JSON writer of output values (the bytes of `serde_json`, faster).
//! - [`rule`]: rule files and the SQL compiler (parse → plan → expr → functions → registry).
//! - [`integration`]: the integration channel's contract: return codes, verdicts, validation.
//! - [`devices`]: the device registry and product thing models (validation, device facts).
//! - [`engine`]: evaluation of a rule set on a message, and the running pipeline.
//! - [`source`]: where messages come from (one file per source).
//! - [`sink`]: where output records go (one file per sink).
//! - [`kafka`]: the librdkafka plumbing the Kafka source and sink share.
//! - [`retry`]: retry delays (exponential backoff with jitter), and which layer retries what.
//! - [`telemetry`]: logging, Prometheus metrics, readiness checks and the admin HTTP server.
//! - [`api`]: the token-protected rules REST API (hot reload through the rules folder).
//! - [`config`]: the `sluice run` configuration.
//! - [`error`]: error types per layer.
//! - [`shutdown`]: graceful shutdown.
#![warn(missing_docs)]

pub mod app;
pub mod config;
pub mod control;
pub mod devices;
pub mod doc;
pub mod engine;
pub mod error;
pub mod flow;
pub mod integration;
pub mod jsonw;
pub mod kafka;
pub mod message;
pub mod retry;
pub mod rule;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod topic;
pub mod value;
