//! The librdkafka plumbing shared by the Kafka source (`source::kafka`) and the Kafka sink
//! (`sink::kafka`): one client context (log mapping, error callbacks, statistics → readiness
//! and lag), the statistics interval, the classification of connection errors, and the
//! reading of librdkafka's statistics.
//!
//! It imports neither `source` nor `sink`: both import it.

pub mod client;
pub mod stats;
