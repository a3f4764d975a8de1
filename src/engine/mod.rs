//! The engine: finds the rules for a message through the topic index, decodes the payload once,
//! evaluates every matching rule and renders its actions into output records. Rule sets are
//! immutable and shared as `Arc`s; a reload swaps the whole set atomically.
//!
//! - [`stage`]: the worker stage, what a pipeline worker does with each message (topic →
//!   decode → judge and observe → split → rules).
//! - [`process`]: the [`Engine`] (rules on decoded records, error records).
//! - [`input`]: the decoded payload and the records rules see.
//! - [`eval`]: one rule on one record.
//! - [`ruleset`]: rule sets and the per-worker scratch space.
//! - [`types`]: settings, outcomes, stages and bounds.
//! - [`pipeline`]: the running pipeline (sources → workers → sink).
//! - [`guard`]: panics caught per rule and per message.
//! - [`window`]: the window state of windowed rules (groups, watermarks, closing).
//! - [`tap`]: the live-sample tap of the console (off unless configured).
//! - [`shadow`]: shadow runs of candidate rule versions (counts and diffs).
//! - [`testing`]: the multi-message input of `sluice test --input` and the console.

pub mod config;
pub mod eval;
pub mod guard;
pub mod input;
pub mod pipeline;
pub mod process;
pub mod ruleset;
pub mod shadow;
pub mod stage;
pub mod tap;
pub mod testing;
pub mod types;
pub mod window;

pub use process::{Engine, TestStep};
pub use ruleset::{RuleSet, Scratch, FLUSH_EVERY};
pub use types::{EngineOptions, Outcome, RecentError, Stage, DEFAULT_ERROR_PAYLOAD_MAX_BYTES, ERROR_ENTRIES_MAX, FOREACH_MAX_ELEMENTS, FOREACH_MAX_OUTPUT_BYTES, RECENT_ERRORS_PER_RULE};

#[cfg(test)]
mod tests;
