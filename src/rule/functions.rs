//! The function library (Alibaba IoT data-forwarding functions, plus what EMQX users expect):
//! the implementations, by category. The catalog ([`crate::rule::catalog`]) lists them with
//! their signatures, docs and examples; the planner binds calls through it.
//!
//! Conventions: a NULL argument gives NULL unless the doc says otherwise; a wrong argument is an
//! error naming the value; nothing panics on message data.

pub use args::MAX_VALUE_BYTES;
pub use time::java_format;

pub mod aggregate;
pub mod analytic;
mod args;
pub(crate) mod bits;
pub(crate) mod compress;
pub(crate) mod hash;
pub(crate) mod json;
pub(crate) mod math;
pub(crate) mod message;
pub(crate) mod string;
pub(crate) mod time;
pub(crate) mod types;
