//! The control plane, above the engine: which rules run and how they change while Sluice runs.
//!
//! ```text
//!  rules folder ──▶ resolve (list files, compile, settle duplicate names) ──▶ RuleStore ──▶ Engine::reload_rules
//!       ▲                                                                       ▲   ▲
//!       └── edit (API writes: check, write atomically, reload) ◀── api ─────────┘   └── watch (folder events, SIGHUP)
//! ```
//!
//! - [`resolve`]: the rule files under the configured paths and what runs from them; shared by
//!   `sluice check`, `sluice run` and every reload.
//! - [`store`]: the rule store: the folder is the source of truth; reloads swap the engine's
//!   rule set atomically, keeping the last good version of a broken file.
//! - [`edit`]: the API's writes to the folder.
//! - [`history`]: every version the API wrote (`.history/` beside the rules), for rollback.
//! - [`watch`]: reloads on folder changes (debounced) and SIGHUP.
//! - [`api`]: the token-protected rules REST API.
//! - [`console`]: the web console's pages (`/ui/`), built into the binary.
//! - [`playground`]: what the console's playground asks: checks, the function registry, samples.
//! - [`client`]: a blocking client of the API (`sluice rules …`).
//! - [`view`]: the API's typed bodies, shared by the server and the `sluice rules` client.
//! - [`config`]: the `[rules]` configuration.

pub mod api;
pub mod client;
pub mod config;
pub mod console;
pub mod edit;
pub mod history;
pub mod playground;
pub mod resolve;
pub mod store;
pub mod view;
pub mod watch;

pub use resolve::compile_paths;
pub use store::RuleStore;
