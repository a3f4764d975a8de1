//! The broker's count of dropped messages. Mosquitto drops the QoS 1 messages it cannot queue
//! for a client (beyond `max_queued_messages`, 1000 by default, or with `max_inflight_messages`
//! full), which for Sluice's persistent session means requests lost before Sluice sees them:
//! the one loss at-least-once cannot cover. Mosquitto counts them, broker-wide, in
//! [`DROPPED_TOPIC`], published (retained, every `sys_interval`) when the count changes.
//!
//! With `watch_broker_drops` (the default) the source subscribes to it at QoS 0 (so nothing is
//! queued for its session while it is away) and exports the count as
//! `sluice_mqtt_broker_dropped_messages{source}`; a count above 0 is named in the source's
//! readiness detail (the check still passes: the loss is past, and a restart would not undo
//! it) and every increase is logged. A broker that refuses the subscription (ACL) is logged
//! once and not asked again; one that never publishes the topic leaves the gauge at 0.

use prometheus::IntGauge;
use rumqttc::{QoS, SubscribeFilter, SubscribeReasonCode};

use crate::telemetry::metrics;

/// Mosquitto's count of publishes dropped for lack of queue or in-flight room.
pub const DROPPED_TOPIC: &str = "$SYS/broker/publish/messages/dropped";

/// Whether a topic is in the broker's `$SYS` tree (never a request).
pub fn is_sys(topic: &str) -> bool {
    topic.starts_with("$SYS/")
}

/// What an MQTT source knows of its broker's dropped messages.
pub struct BrokerDrops {
    source: String,
    /// The source's gauge, when watching.
    gauge: Option<IntGauge>,
    dropped: Option<u64>,
    refused: bool,
}

impl BrokerDrops {
    /// The watcher of source `source`; with `watch` off it subscribes to nothing and ignores
    /// `$SYS` messages (an earlier run's subscription may live on in a persistent session).
    pub fn new(source: &str, watch: bool) -> BrokerDrops {
        let gauge = watch.then(|| metrics::MQTT_BROKER_DROPPED.with_label_values(&[source]));
        BrokerDrops { source: source.to_string(), gauge, dropped: None, refused: false }
    }

    /// The subscription to add at each connection: None when off, or refused before.
    pub fn subscription(&self) -> Option<SubscribeFilter> {
        (self.gauge.is_some() && !self.refused).then(|| SubscribeFilter::new(DROPPED_TOPIC.to_string(), QoS::AtMostOnce))
    }

    /// The broker answered the subscription with `code`. A refusal is logged the first time
    /// only, and the subscription is not asked for again.
    pub fn subscribed(&mut self, code: &SubscribeReasonCode) {
        if matches!(code, SubscribeReasonCode::Failure) && !self.refused {
            self.refused = true;
            tracing::warn!(target: "sluice::channel", source = %self.source, topic = DROPPED_TOPIC, "the broker refused the subscription to its dropped-message count (an ACL?); it is not watched (watch_broker_drops = false stops asking)");
        }
    }

    /// A message on a `$SYS` topic. Returns true when the dropped count changed (the readiness
    /// detail then changes too).
    pub fn observe(&mut self, topic: &str, payload: &[u8]) -> bool {
        let Some(gauge) = &self.gauge else { return false };
        if topic != DROPPED_TOPIC {
            return false;
        }
        let Some(n) = std::str::from_utf8(payload).ok().and_then(|s| s.trim().parse::<u64>().ok()) else {
            tracing::debug!(source = %self.source, topic, "not a count; ignored");
            return false;
        };
        let before = self.dropped.replace(n);
        gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        match before {
            Some(b) if n > b => {
                tracing::warn!(target: "sluice::channel", source = %self.source, dropped = n, new = n - b, "the MQTT broker dropped messages (max_queued_messages / max_inflight_messages reached)");
            }
            None if n > 0 => {
                tracing::warn!(target: "sluice::channel", source = %self.source, dropped = n, "the MQTT broker has dropped messages since it started (max_queued_messages / max_inflight_messages reached)");
            }
            Some(b) if n < b => tracing::info!(target: "sluice::channel", source = %self.source, dropped = n, was = b, "the MQTT broker's dropped-message count went down (broker restarted)"),
            _ => {}
        }
        before != Some(n)
    }

    /// The readiness detail of a connected source.
    pub fn connected_detail(&self) -> String {
        match self.dropped {
            Some(n) if n > 0 => format!("connected; the broker reports {n} dropped messages since it started ({DROPPED_TOPIC}, all clients: max_queued_messages or max_inflight_messages reached)"),
            _ => "connected".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The source's gauge in a scrape.
    fn gauge(source: &str) -> Option<i64> {
        let line = format!("sluice_mqtt_broker_dropped_messages{{source=\"{source}\"}} ");
        metrics::render().lines().find_map(|l| l.strip_prefix(&line).and_then(|v| v.parse().ok()))
    }

    #[test]
    fn counts_are_exported_and_named_in_the_readiness_detail() {
        let mut d = BrokerDrops::new("drops-unit:a", true);
        assert_eq!(gauge("drops-unit:a"), Some(0), "primed at 0");
        assert_eq!(d.subscription().map(|s| (s.path, s.qos)), Some((DROPPED_TOPIC.to_string(), QoS::AtMostOnce)));
        assert_eq!(d.connected_detail(), "connected");
        assert!(d.observe(DROPPED_TOPIC, b"0"));
        assert_eq!(d.connected_detail(), "connected", "no drops: nothing to say");
        assert!(!d.observe(DROPPED_TOPIC, b"0"), "unchanged");
        assert!(d.observe(DROPPED_TOPIC, b"15"));
        assert_eq!(gauge("drops-unit:a"), Some(15));
        assert!(d.connected_detail().starts_with("connected; the broker reports 15 dropped messages since it started"), "{}", d.connected_detail());
        assert!(!d.observe(DROPPED_TOPIC, b"lots"), "not a count");
        assert!(!d.observe(DROPPED_TOPIC, &[0xff, 0xfe, b'1']), "not UTF-8");
        assert!(!d.observe(DROPPED_TOPIC, b"-1"), "negative");
        assert!(!d.observe(DROPPED_TOPIC, b"18446744073709551616"), "beyond u64");
        assert!(!d.observe(DROPPED_TOPIC, "9".repeat(100_000).as_bytes()), "huge");
        assert!(!d.observe(DROPPED_TOPIC, b""), "empty");
        assert!(!d.observe("$SYS/broker/uptime", b"20"), "another $SYS topic");
        assert_eq!(gauge("drops-unit:a"), Some(15));
        assert!(d.observe(DROPPED_TOPIC, b"2"), "a restarted broker counts again from 0");
        assert_eq!(gauge("drops-unit:a"), Some(2));
        assert!(d.observe(DROPPED_TOPIC, b"18446744073709551615"), "u64::MAX is a count");
        assert_eq!(metrics::MQTT_BROKER_DROPPED.with_label_values(&["drops-unit:a"]).get(), i64::MAX, "clamped to the gauge's range");
    }

    #[test]
    fn a_refusal_stops_the_subscription_and_off_means_off() {
        let mut d = BrokerDrops::new("drops-unit:b", true);
        d.subscribed(&SubscribeReasonCode::Success(QoS::AtMostOnce));
        assert!(d.subscription().is_some());
        d.subscribed(&SubscribeReasonCode::Failure);
        assert!(d.refused && d.subscription().is_none(), "refused: not asked again");
        d.subscribed(&SubscribeReasonCode::Failure);
        assert!(d.observe(DROPPED_TOPIC, b"3"), "a retained value may still come");
        let mut off = BrokerDrops::new("drops-unit:c", false);
        assert!(off.subscription().is_none());
        assert!(!off.observe(DROPPED_TOPIC, b"7"), "ignored when off");
        assert_eq!(gauge("drops-unit:c"), None, "no series when off");
        assert!(is_sys(DROPPED_TOPIC) && !is_sys("sys/pk/integration/event/post"));
    }
}
