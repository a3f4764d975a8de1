//! MQTT-style topic filters and the trie index that finds the rules for a topic.

use rustc_hash::FxHashMap;

/// A topic filter as written in a rule's FROM clause: `+` matches one level, `#` the rest
/// (last level only, and it also matches the parent level, as in MQTT).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicFilter {
    text: String,
}

impl TopicFilter {
    /// Validates a filter. Errors name the offending level.
    pub fn parse(text: &str) -> Result<TopicFilter, String> {
        if text.is_empty() {
            return Err("empty topic filter".into());
        }
        let levels: Vec<&str> = text.split('/').collect();
        for (i, level) in levels.iter().enumerate() {
            if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
                return Err(format!("`#` must be a whole level and the last one (level {} is `{level}`)", i + 1));
            }
            if level.contains('+') && *level != "+" {
                return Err(format!("`+` must be a whole level (level {} is `{level}`)", i + 1));
            }
        }
        Ok(TopicFilter { text: text.to_string() })
    }

    /// The filter text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the filter matches a topic (MQTT rules, including `$`-topics not matched by a
    /// leading wildcard).
    pub fn matches(&self, topic: &str) -> bool {
        filter_matches(&self.text, topic)
    }
}

/// MQTT topic matching, used by [`TopicFilter::matches`] and as the reference for the index.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = super::levels::levels(topic);
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A trie over filter levels: finding the rules for a topic costs one walk down the topic's
/// levels, whatever the number of rules whose filters cannot match.
#[derive(Debug, Default)]
pub struct TopicIndex {
    root: Node,
    len: usize,
}

#[derive(Debug, Default)]
struct Node {
    exact: FxHashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    /// Ids whose filter ends with `#` at this node.
    hash: Vec<usize>,
    /// Ids whose filter ends exactly at this node.
    here: Vec<usize>,
}

impl TopicIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `id` under `filter`.
    pub fn insert(&mut self, filter: &TopicFilter, id: usize) {
        let mut node = &mut self.root;
        for level in filter.as_str().split('/') {
            match level {
                "#" => {
                    node.hash.push(id);
                    self.len += 1;
                    return;
                }
                "+" => node = node.plus.get_or_insert_with(Default::default),
                l => node = node.exact.entry(l.into()).or_default(),
            }
        }
        node.here.push(id);
        self.len += 1;
    }

    /// Number of filters indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends to `out` the ids of every filter matching `topic` (sorted, deduplicated).
    pub fn matches(&self, topic: &str, out: &mut Vec<usize>) {
        out.clear();
        let dollar = topic.starts_with('$');
        let mut levels = super::levels::levels(topic);
        collect(&self.root, &mut levels, out, dollar);
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }
}

fn collect<'t>(node: &Node, levels: &mut (impl Iterator<Item = &'t str> + Clone), out: &mut Vec<usize>, first_is_dollar: bool) {
    // `#` at this node matches the rest, including nothing (the parent level).
    if !first_is_dollar {
        out.extend_from_slice(&node.hash);
    }
    match levels.next() {
        None => out.extend_from_slice(&node.here),
        Some(level) => {
            if let Some(child) = node.exact.get(level) {
                collect(child, &mut levels.clone(), out, false);
            }
            if !first_is_dollar {
                if let Some(plus) = &node.plus {
                    collect(plus, levels, out, false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn filters_are_validated() {
        assert!(TopicFilter::parse("/sys/+/+/thing/#").is_ok());
        assert!(TopicFilter::parse("#").is_ok());
        assert!(TopicFilter::parse("a/#/b").is_err());
        assert!(TopicFilter::parse("a/b#").is_err());
        assert!(TopicFilter::parse("a/x+/b").is_err());
        assert!(TopicFilter::parse("").is_err());
    }

    #[test]
    fn mqtt_matching_examples() {
        assert!(filter_matches("sport/#", "sport"));
        assert!(filter_matches("sport/#", "sport/tennis/player1"));
        assert!(filter_matches("sport/+", "sport/"));
        assert!(!filter_matches("sport/+", "sport"));
        assert!(filter_matches("+/+", "/finance"));
        assert!(filter_matches("/+", "/finance"));
        assert!(!filter_matches("+", "/finance"));
        assert!(!filter_matches("#", "$SYS/x"));
        assert!(filter_matches("$SYS/#", "$SYS/x"));
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), Just("a".to_string()), Just("b".to_string()), Just("$s".to_string()), Just("sys".to_string())]
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5).prop_map(|v| v.join("/"))
    }

    fn filter() -> impl Strategy<Value = String> {
        (prop::collection::vec(prop_oneof![level(), Just("+".to_string())], 0..5), any::<bool>()).prop_map(|(mut v, hash)| {
            if hash || v.concat().is_empty() {
                v.push("#".into());
            }
            v.join("/")
        })
    }

    proptest! {
        #[test]
        fn index_agrees_with_reference_matching(filters in prop::collection::vec(filter(), 1..12), topics in prop::collection::vec(topic(), 1..12)) {
            let mut index = TopicIndex::new();
            let parsed: Vec<TopicFilter> = filters.iter().map(|f| TopicFilter::parse(f).unwrap()).collect();
            for (i, f) in parsed.iter().enumerate() {
                index.insert(f, i);
            }
            let mut got = Vec::new();
            for t in &topics {
                index.matches(t, &mut got);
                let want: Vec<usize> = parsed.iter().enumerate().filter(|(_, f)| f.matches(t)).map(|(i, _)| i).collect();
                prop_assert_eq!(&got, &want, "topic {:?} filters {:?}", t, filters);
            }
        }

        #[test]
        fn a_topic_matches_itself_and_hash(t in topic()) {
            prop_assert!(filter_matches(&t, &t));
            prop_assert_eq!(filter_matches("#", &t), !t.starts_with('$'));
        }
    }
}
