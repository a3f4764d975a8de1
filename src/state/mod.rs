//! Durable state for stateful rules: an embedded store (redb, one file in `[state] dir`) and the
//! checkpoints that keep it consistent with what was acknowledged.
//!
//! **The contract.** An input whose processing touched state (a windowed or analytic rule took
//! it) is acknowledged only once (1) all its outputs are delivered and (2) a checkpoint holding
//! its contribution is durable. A checkpoint is cut between messages (the engine's state gate:
//! workers hold it shared while they process a message, the checkpoint takes it alone for the
//! snapshot), then waits until every output of the messages (and window closes) before the cut
//! is delivered, then writes the snapshot in one redb transaction, then releases those inputs'
//! acknowledgements. So after a crash:
//! - an input not yet acknowledged is delivered again by its source (MQTT redelivery, the HTTP
//!   client's retry, Kafka's uncommitted offset); if its contribution is not in the last
//!   checkpoint it is applied again (once), and if it is (the crash came between the write and
//!   the acknowledgement reaching the source) its digest, kept with the last checkpoints
//!   ([`store::DIGEST_EPOCHS`]), makes the engine skip it;
//! - a window closed before the crash was emitted before the checkpoint that forgot it, so it is
//!   never lost; one emitted after the last checkpoint is emitted again (same value, same
//!   `sluice-window` identity).
//!
//! **Kafka sources** keep their partitions' state in a changelog topic instead ([`changelog`]):
//! the state follows the partitions across a consumer group, and every record of a Kafka
//! partition goes through the checkpoints, which record the offsets they hold ([`coverage`])
//! instead of digests.
//!
//! Modules: [`config`] (`[state]`), [`store`] (the redb tables), [`checkpoint`] (epochs, the
//! acknowledgements they hold back), [`changelog`] (a Kafka source's state topic),
//! [`coverage`] (offset ranges).

pub mod changelog;
pub mod checkpoint;
pub mod config;
pub mod coverage;
pub mod store;

pub use checkpoint::Checkpoints;
pub use config::StateConfig;
pub use store::{Snapshot, StateStore, StoreError};
