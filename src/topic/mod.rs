//! Topics: MQTT-style filters and the trie index that finds the rules for a topic
//! ([`filter`]), and the recognition of the documented topic kinds, seeds 000–004 ([`kind`]).

pub mod filter;
pub mod kind;
pub mod levels;

pub use filter::{filter_matches, TopicFilter, TopicIndex};
pub use kind::{TopicInfo, TopicKind};
pub use levels::{levels, Levels};
