//! The live-sample tap: the last few messages seen on the topic filters the console asks for,
//! captured by the worker stage, rate limited, bounded in memory, and off unless
//! `[engine.tap] enabled = true`.
//!
//! With no filter asked for, the stage pays one atomic load per message.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::message::Message;
use crate::topic::TopicFilter;

/// Payload bytes kept per sample at most (a longer payload is cut, and the sample says so).
pub const TAP_PAYLOAD_MAX_BYTES: usize = 64 * 1024;

/// `[engine.tap]`: live samples for the console's playground.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TapConfig {
    /// Whether the console may capture live samples (default false: the tap refuses to
    /// start).
    pub enabled: bool,
    /// Messages kept per topic filter (the most recent; default 20).
    pub samples: usize,
    /// Messages captured per second at most, over every filter (default 20); the rest are
    /// not captured (and counted in the filter's `skipped`).
    pub max_per_second: u32,
    /// Topic filters captured at once at most (default 8; a new one replaces the oldest).
    pub max_filters: usize,
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig { enabled: false, samples: 20, max_per_second: 20, max_filters: 8 }
    }
}

/// One captured message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapSample {
    /// Its IoT topic.
    pub topic: String,
    /// The payload as text, when it is UTF-8.
    pub payload: Option<String>,
    /// The payload in base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// Whether the payload was cut at [`TAP_PAYLOAD_MAX_BYTES`].
    #[serde(default)]
    pub truncated: bool,
    /// When it was received (ms since the epoch).
    pub received_ms: i64,
    /// The source it came from.
    pub source: String,
}

/// One filter's capture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    /// The topic filter.
    pub filter: String,
    /// The most recent matching messages, oldest first.
    pub samples: VecDeque<TapSample>,
    /// Matching messages not captured (over the rate limit).
    pub skipped: u64,
}

/// The tap of an engine.
pub struct Tap {
    cfg: TapConfig,
    active: AtomicBool,
    captures: Mutex<Vec<(TopicFilter, Capture)>>,
    /// Token bucket: (tokens, last refill).
    bucket: Mutex<(f64, Instant)>,
}

impl Default for Tap {
    fn default() -> Self {
        Tap::new(TapConfig::default())
    }
}

impl Tap {
    /// A tap with `cfg`.
    pub fn new(cfg: TapConfig) -> Tap {
        let tokens = f64::from(cfg.max_per_second);
        Tap { cfg, active: AtomicBool::new(false), captures: Mutex::new(Vec::new()), bucket: Mutex::new((tokens, Instant::now())) }
    }

    /// Whether the configuration allows captures.
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(TopicFilter, Capture)>> {
        self.captures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Captures `msg` for every filter it matches (the worker stage calls it for each message).
    pub fn observe(&self, msg: &Message) {
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        let mut caps = self.lock();
        let mut sample: Option<TapSample> = None;
        for (f, cap) in caps.iter_mut().filter(|(f, _)| f.matches(&msg.topic)) {
            if !self.take_token() {
                cap.skipped += 1;
                continue;
            }
            let s = sample.get_or_insert_with(|| sample_of(msg)).clone();
            if cap.samples.len() >= self.cfg.samples.max(1) {
                cap.samples.pop_front();
            }
            cap.samples.push_back(s);
            let _ = f;
        }
    }

    fn take_token(&self) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let rate = f64::from(self.cfg.max_per_second);
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(rate.max(1.0));
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// Starts capturing `filter` (again: its samples are kept). Refused when the tap is off or
    /// the filter is invalid.
    pub fn start(&self, filter: &str) -> Result<Capture, String> {
        if !self.cfg.enabled {
            return Err("the live-sample tap is off: set [engine.tap] enabled = true".into());
        }
        let f = TopicFilter::parse(filter.trim())?;
        let mut caps = self.lock();
        if let Some((_, c)) = caps.iter().find(|(x, _)| x.as_str() == f.as_str()) {
            return Ok(c.clone());
        }
        if caps.len() >= self.cfg.max_filters.max(1) {
            caps.remove(0);
        }
        let cap = Capture { filter: f.as_str().to_string(), samples: VecDeque::new(), skipped: 0 };
        caps.push((f, cap.clone()));
        self.active.store(true, Ordering::Relaxed);
        Ok(cap)
    }

    /// Stops capturing `filter` (every filter with `None`).
    pub fn stop(&self, filter: Option<&str>) {
        let mut caps = self.lock();
        match filter {
            Some(f) => caps.retain(|(x, _)| x.as_str() != f.trim()),
            None => caps.clear(),
        }
        self.active.store(!caps.is_empty(), Ordering::Relaxed);
    }

    /// Every capture.
    pub fn captures(&self) -> Vec<Capture> {
        self.lock().iter().map(|(_, c)| c.clone()).collect()
    }
}

fn sample_of(msg: &Message) -> TapSample {
    let bytes = &msg.payload[..msg.payload.len().min(TAP_PAYLOAD_MAX_BYTES)];
    let truncated = msg.payload.len() > TAP_PAYLOAD_MAX_BYTES;
    let (payload, payload_base64) = match std::str::from_utf8(bytes) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (None, Some(crate::value::base64_encode(bytes))),
    };
    TapSample { topic: msg.topic.clone(), payload, payload_base64, truncated, received_ms: msg.meta.received_ms, source: msg.meta.source.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_matching_messages_bounded_and_rate_limited() {
        let off = Tap::default();
        assert!(off.start("a/#").unwrap_err().contains("enabled = true"));
        let tap = Tap::new(TapConfig { enabled: true, samples: 2, max_per_second: 3, max_filters: 1 });
        assert!(tap.start("a/+").is_ok());
        for i in 0..5 {
            tap.observe(&Message::new("a/x", format!("{{\"i\":{i}}}")));
        }
        tap.observe(&Message::new("b/x", "{}"));
        let c = &tap.captures()[0];
        assert_eq!(c.samples.len(), 2, "the most recent 2 are kept");
        assert_eq!((c.samples[1].payload.as_deref(), c.skipped), (Some("{\"i\":2}"), 2), "3 per second at most");
        tap.start("b/#").unwrap();
        assert_eq!(tap.captures().len(), 1, "a new filter replaces the oldest");
        tap.stop(None);
        assert!(tap.captures().is_empty());
        assert!(tap.start("a/#/b").is_err());
    }
}
