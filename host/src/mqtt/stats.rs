//! What a bridge has done, and the headers its dead letters carry.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Headers on a dead-lettered MQTT message.
pub mod headers {
    pub const MQTT_TOPIC: &str = "rill.dlq.mqtt.topic";
    pub const ERROR: &str = "rill.dlq.error";
    pub const PLUGIN: &str = "rill.dlq.plugin";
    pub const BRIDGE: &str = "rill.dlq.bridge";
}

/// What a bridge has done, read by the admin API, the status page and `/metrics`.
#[derive(Debug, Default)]
pub struct BridgeStats {
    pub connected: AtomicBool,
    pub messages_in: AtomicU64,
    pub records_out: AtomicU64,
    pub messages_dead_lettered: AtomicU64,
    pub plugin_failures: AtomicU64,
    pub connects: AtomicU64,
    /// QoS 0 messages dropped because the bridge was behind.
    pub qos0_dropped: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    pub messages_redelivered: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl BridgeStats {
    pub(super) fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }
}
