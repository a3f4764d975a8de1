//! The documented topic kinds (seeds 000–004) and the recognition of a topic's parts.

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
        for p in super::levels::levels(topic) {
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
}
