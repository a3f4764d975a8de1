//! Topics: MQTT-style filters, the trie index that finds the rules for a topic, and the
//! recognition of the documented topic kinds (seeds 000–004).

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
    let mut t = topic.split('/');
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
        let mut levels = topic.split('/');
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

/// The documented topic kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// `sys/{pk}/integration/measurepoint/post` (seed 003).
    IntegrationMeasurepoint,
    /// `sys/{pk}/integration/attributes/post` (seed 003).
    IntegrationAttributes,
    /// `sys/{pk}/integration/event/post` (seeds 000, 001, 003).
    IntegrationEvent,
    /// `sys/{pk}/integration/up_raw`: raw bytes (seed 003).
    IntegrationUpRaw,
    /// `/as/mqtt/status/{pk}/{dn}` (seed 004).
    Status,
    /// `/sys/{pk}/{dn}/thing/event/property/post` (seed 004).
    PropertyPost,
    /// `/sys/{pk}/{dn}/thing/event/{identifier}/post` (seed 004).
    EventPost,
    /// `/sys/{pk}/{dn}/thing/lifecycle` (seed 004).
    Lifecycle,
    /// `/sys/{pk}/{dn}/thing/topo/lifecycle` (seed 004).
    TopoLifecycle,
    /// `/sys/{pk}/{dn}/thing/list/found` (seed 004).
    ListFound,
    /// `/sys/{pk}/{dn}/thing/downlink/reply/message` (seed 004).
    DownlinkReply,
    /// Any other topic.
    Custom,
}

impl TopicKind {
    /// A stable snake_case name (used in metrics labels and `topicKind()`).
    pub fn name(self) -> &'static str {
        match self {
            TopicKind::IntegrationMeasurepoint => "integration_measurepoint",
            TopicKind::IntegrationAttributes => "integration_attributes",
            TopicKind::IntegrationEvent => "integration_event",
            TopicKind::IntegrationUpRaw => "integration_up_raw",
            TopicKind::Status => "status",
            TopicKind::PropertyPost => "property_post",
            TopicKind::EventPost => "event_post",
            TopicKind::Lifecycle => "lifecycle",
            TopicKind::TopoLifecycle => "topo_lifecycle",
            TopicKind::ListFound => "list_found",
            TopicKind::DownlinkReply => "downlink_reply",
            TopicKind::Custom => "custom",
        }
    }

    /// Integration kinds whose payload is a batch (`params` array) of per-device entries, and
    /// the entry field holding the data.
    pub fn batch_field(self) -> Option<&'static str> {
        match self {
            TopicKind::IntegrationMeasurepoint => Some("measurepoints"),
            TopicKind::IntegrationAttributes => Some("attributes"),
            TopicKind::IntegrationEvent => Some("events"),
            _ => None,
        }
    }
}

/// A topic's recognised parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicInfo<'t> {
    /// The kind.
    pub kind: TopicKind,
    /// The product key, where the topic has one.
    pub product_key: Option<&'t str>,
    /// The device name (data-flow topics).
    pub device_name: Option<&'t str>,
    /// The event identifier (`/thing/event/{identifier}/post`).
    pub identifier: Option<&'t str>,
}

impl<'t> TopicInfo<'t> {
    /// Recognises a topic. Never fails: unknown shapes are [`TopicKind::Custom`].
    pub fn parse(topic: &'t str) -> TopicInfo<'t> {
        let custom = TopicInfo { kind: TopicKind::Custom, product_key: None, device_name: None, identifier: None };
        let mut parts = [""; 9];
        let mut n = 0;
        for p in topic.split('/') {
            if n == parts.len() {
                return custom;
            }
            parts[n] = p;
            n += 1;
        }
        let p = &parts[..n];
        let some = |s: &'t str| if s.is_empty() { None } else { Some(s) };
        let with = |kind, pk: &'t str, dn: Option<&'t str>, id: Option<&'t str>| {
            if pk.is_empty() || dn == Some("") || id == Some("") {
                custom
            } else {
                TopicInfo { kind, product_key: some(pk), device_name: dn, identifier: id }
            }
        };
        match p {
            ["sys", pk, "integration", "measurepoint", "post"] => with(TopicKind::IntegrationMeasurepoint, pk, None, None),
            ["sys", pk, "integration", "attributes", "post"] => with(TopicKind::IntegrationAttributes, pk, None, None),
            ["sys", pk, "integration", "event", "post"] => with(TopicKind::IntegrationEvent, pk, None, None),
            ["sys", pk, "integration", "up_raw"] => with(TopicKind::IntegrationUpRaw, pk, None, None),
            ["", "as", "mqtt", "status", pk, dn] => with(TopicKind::Status, pk, Some(dn), None),
            ["", "sys", pk, dn, "thing", "event", "property", "post"] => with(TopicKind::PropertyPost, pk, Some(dn), None),
            ["", "sys", pk, dn, "thing", "event", id, "post"] => with(TopicKind::EventPost, pk, Some(dn), Some(id)),
            ["", "sys", pk, dn, "thing", "lifecycle"] => with(TopicKind::Lifecycle, pk, Some(dn), None),
            ["", "sys", pk, dn, "thing", "topo", "lifecycle"] => with(TopicKind::TopoLifecycle, pk, Some(dn), None),
            ["", "sys", pk, dn, "thing", "list", "found"] => with(TopicKind::ListFound, pk, Some(dn), None),
            ["", "sys", pk, dn, "thing", "downlink", "reply", "message"] => with(TopicKind::DownlinkReply, pk, Some(dn), None),
            _ => custom,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn recognises_every_documented_kind() {
        let cases = [
            ("sys/pk1/integration/measurepoint/post", TopicKind::IntegrationMeasurepoint, Some("pk1"), None, None),
            ("sys/pk1/integration/attributes/post", TopicKind::IntegrationAttributes, Some("pk1"), None, None),
            ("sys/pk1/integration/event/post", TopicKind::IntegrationEvent, Some("pk1"), None, None),
            ("sys/pk1/integration/up_raw", TopicKind::IntegrationUpRaw, Some("pk1"), None, None),
            ("/as/mqtt/status/pk1/dev1", TopicKind::Status, Some("pk1"), Some("dev1"), None),
            ("/sys/pk1/dev1/thing/event/property/post", TopicKind::PropertyPost, Some("pk1"), Some("dev1"), None),
            ("/sys/pk1/dev1/thing/event/BrokenInfo/post", TopicKind::EventPost, Some("pk1"), Some("dev1"), Some("BrokenInfo")),
            ("/sys/pk1/dev1/thing/lifecycle", TopicKind::Lifecycle, Some("pk1"), Some("dev1"), None),
            ("/sys/pk1/dev1/thing/topo/lifecycle", TopicKind::TopoLifecycle, Some("pk1"), Some("dev1"), None),
            ("/sys/pk1/dev1/thing/list/found", TopicKind::ListFound, Some("pk1"), Some("dev1"), None),
            ("/sys/pk1/dev1/thing/downlink/reply/message", TopicKind::DownlinkReply, Some("pk1"), Some("dev1"), None),
            ("/pk1/dev1/user/update", TopicKind::Custom, None, None, None),
            ("sys/pk1/integration/event/post_reply", TopicKind::Custom, None, None, None),
            ("/sys//dev1/thing/lifecycle", TopicKind::Custom, None, None, None),
        ];
        for (topic, kind, pk, dn, id) in cases {
            let info = TopicInfo::parse(topic);
            assert_eq!((info.kind, info.product_key, info.device_name, info.identifier), (kind, pk, dn, id), "{topic}");
        }
    }

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
