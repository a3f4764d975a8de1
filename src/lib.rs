//! # Sluice
//!
//! An IoT rule-engine stream processor: SQL rules over MQTT-style topics, routed to Kafka.
//!
//! ```text
//!                      control/: resolve → store ⇄ api, watch (folder, SIGHUP)
//!                                     │ swaps the rule set (compiled once per change)
//!                                     ▼
//!  source/ ──Envelope──▶ [bounded] ──▶ engine/stage: topic → decode once → judge/observe → split → rules ──Batch──▶ [bounded] ──▶ sink/
//!   file, kafka,                       (devices/ validates and observes; rule/ evaluates)                            file, kafka
//!   mqtt, http   ◀──────────────────────────── Ack::done(Delivery) once every record is durable ◀───────────────────────┘
//! ```
//!
//! [`app`] builds that topology from a [`config::Config`]; `main.rs` is only the command line.
//!
//! - [`app`]: the production assembly (`App::build`, `App::run`), used by `sluice run` and the tests.
//! - [`flow`]: the pipeline's contract: envelope, ack and delivery, batch, output record.
//! - [`source`]: where messages come from (a module per source).
//! - [`engine`]: the worker stage (decode once, then route) and rule evaluation; the running pipeline.
//! - [`sink`]: where output records go (a module per sink).
//! - [`control`]: the control plane above the engine: rule files, the rule store, its API and watcher.
//! - [`state`]: durable state of stateful rules: the embedded store and its checkpoints.
//! - [`rule`]: rule files and the SQL compiler (parse → plan → expr → functions → catalog).
//! - [`devices`]: the device registry and product thing models (validation, device facts).
//! - [`integration`]: the integration channel's contract: return codes, verdicts, the channel log.
//! - [`message`]: messages, metadata, and integration batches split into per-device records.
//! - [`topic`]: topic filters and the trie index; the documented topic kinds.
//! - [`doc`]: the decoded payload: a borrowed, order-keeping JSON document.
//! - [`value`]: the runtime value type and its coercion rules.
//! - [`jsonw`]: the JSON writer of output values (the bytes of `serde_json`, faster).
//! - [`kafka`]: the librdkafka plumbing the Kafka source and sink share.
//! - [`retry`]: retry delays (exponential backoff with jitter), and which layer retries what.
//! - [`secret`]: constant-time bearer-token checks (rules API, HTTP upload).
//! - [`telemetry`]: logging, Prometheus metrics, readiness checks and the admin HTTP server.
//! - [`config`]: the `sluice run` configuration (each component's section lives beside it).
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
pub mod secret;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod state;
pub mod telemetry;
pub mod topic;
pub mod value;
