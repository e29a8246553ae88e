//! What the broker knows of its own health, for `/health` and `/ready`: whether each listener
//! still serves (a listener's task that ends before shutdown, or panics, is seen here).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The listeners of the node, by name (`kafka`, `http`, `replication`, `devices`).
#[derive(Debug, Default)]
pub struct Listeners {
    /// Set once every listener is bound and the stored resources run (readiness).
    ready: AtomicBool,
    serving: Mutex<BTreeMap<&'static str, bool>>,
}

impl Listeners {
    /// Marks listener `name` serving until the returned guard drops (its task ends or unwinds).
    pub fn serving(self: &Arc<Self>, name: &'static str) -> Serving {
        self.states().insert(name, true);
        Serving { listeners: Arc::clone(self), name }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Each listener and whether it serves.
    pub fn states(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, bool>> {
        self.serving.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every listener serves (none has stopped).
    pub fn all_serving(&self) -> bool {
        self.states().values().all(|serving| *serving)
    }
}

/// Held by a listener's task: dropping it (the task ended) marks the listener stopped.
#[derive(Debug)]
pub struct Serving {
    listeners: Arc<Listeners>,
    name: &'static str,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.listeners.states().insert(self.name, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_whose_task_ends_or_panics_is_reported_stopped() {
        let listeners = Arc::new(Listeners::default());
        let kafka = listeners.serving("kafka");
        let guard = listeners.serving("devices");
        let devices = tokio::spawn(async move {
            let _serving = guard;
            panic!("a listener fails");
        });
        assert!(devices.await.is_err());
        assert_eq!(*listeners.states(), BTreeMap::from([("devices", false), ("kafka", true)]));
        assert!(!listeners.all_serving());
        drop(kafka);
        assert!(!listeners.states()["kafka"]);
    }
}
