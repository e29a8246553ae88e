//! MQTT sensor ingest: bridges that subscribe to an MQTT broker (mosquitto on the gateway), turn
//! messages into records with an ingest plugin, and append them durably before acknowledging
//! them, so nothing is lost across crashes and disconnects (see [`bridge`]).
//!
//! Bridges come from `[[mqtt]]` sections of the config file (stored at start, replacing a stored
//! bridge of the same name) and from the admin API (`/v1/mqtt`, `rill mqtt ...`); they are stored
//! in redb and run again after a restart.

pub mod bridge;
mod client;
mod dedup;
mod session;
pub mod spec;
mod tls;
mod worker;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::limits::MQTT_BRIDGES_MAX;
use crate::pipelines::load_instance;
use crate::plugins::{PluginCatalog, PluginKind, PluginLimits};
use crate::storage::{DocumentWrite, PutMode, ResourceError, Store};
use bridge::{Bridge, BridgeStats};
pub use spec::{BridgeSpec, DedupSpec, InvalidBridge, Subscription, TlsSpec};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Invalid(#[from] InvalidBridge),
    #[error("unknown MQTT bridge {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("storage: {0}")]
    Storage(String),
}

/// A bridge as the admin API shows it (the password left out).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BridgeView {
    #[serde(flatten)]
    pub spec: BridgeSpec,
    pub status: BridgeStatus,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BridgeStatus {
    /// Connected to the MQTT broker and subscribed: messages published now reach the bridge.
    pub connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub messages_in: u64,
    pub records_out: u64,
    pub messages_dead_lettered: u64,
    pub plugin_failures: u64,
    /// Messages (or records, with ids from a record header) recognised as already stored and
    /// dropped. Only a bridge with `dedup` recognises them: without ids, up to the in-flight window
    /// may be stored twice after a crash.
    pub duplicates_dropped: u64,
    /// Messages the MQTT broker marked as sent before (DUP): each a possible duplicate, stored
    /// twice unless the bridge deduplicates.
    #[serde(default)]
    pub messages_redelivered: u64,
    pub connects: u64,
    /// QoS 0 messages dropped because the bridge was behind (at most once, by definition).
    #[serde(default)]
    pub qos0_dropped: u64,
}

struct Handle {
    spec: BridgeSpec,
    stats: Arc<BridgeStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Every MQTT bridge of the broker.
#[derive(Clone)]
pub struct Bridges {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    catalog: PluginCatalog,
    handles: Mutex<BTreeMap<String, Handle>>,
    admin: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Bridges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridges").finish_non_exhaustive()
    }
}

impl Bridges {
    pub fn new(store: Store, catalog: PluginCatalog) -> Self {
        Self {
            inner: Arc::new(Inner { store, catalog, handles: Mutex::default(), admin: tokio::sync::Mutex::new(()) }),
        }
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Handle>> {
        self.inner.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the config file's bridges (replacing stored ones of the same name), then starts
    /// every stored bridge.
    pub async fn start(&self, configured: &[BridgeSpec]) -> Result<usize, BridgeError> {
        for spec in configured {
            spec.check()?;
            self.store(spec, None).await?;
        }
        let stored = self.inner.store.resources(spec::KIND).map_err(|e| BridgeError::Storage(e.to_string()))?;
        for (name, document) in &stored {
            match serde_json::from_slice::<BridgeSpec>(document) {
                Ok(spec) => self.spawn(spec),
                Err(e) => {
                    tracing::error!(bridge = %name, error = %e, "stored MQTT bridge does not decode; not started")
                }
            }
        }
        Ok(stored.len())
    }

    async fn store(&self, spec: &BridgeSpec, mode: Option<PutMode>) -> Result<(), BridgeError> {
        let document = serde_json::to_vec(spec).expect("a bridge spec encodes");
        let store = &self.inner.store;
        match mode {
            Some(mode) => store.put_resource(spec::KIND, &spec.name, document, mode, None).await.map_err(|e| match e {
                ResourceError::AlreadyExists { .. } => {
                    BridgeError::Conflict(format!("MQTT bridge {:?} exists", spec.name))
                }
                other => BridgeError::Storage(other.to_string()),
            }),
            None => {
                let write =
                    DocumentWrite { kind: spec::KIND.into(), name: spec.name.clone(), document: Some(document) };
                store.write_documents(vec![write]).await.map_err(|e| BridgeError::Storage(e.to_string()))
            }
        }
    }

    fn spawn(&self, spec: BridgeSpec) {
        let (stop, stopping) = watch::channel(false);
        let stats = Arc::new(BridgeStats::default());
        let bridge = Bridge {
            spec: spec.clone(),
            store: self.inner.store.clone(),
            catalog: self.inner.catalog.clone(),
            stats: Arc::clone(&stats),
            stopping,
        };
        let task = tokio::spawn(bridge.run());
        self.handles().insert(spec.name.clone(), Handle { spec, stats, stop, task });
    }

    /// Checks a new bridge against the broker: its plugins load and are of the right kinds.
    async fn check_plugins(&self, spec: &mut BridgeSpec) -> Result<(), BridgeError> {
        let catalog = &self.inner.catalog;
        for (field, stage, kind) in [
            ("ingest", Some(&mut spec.ingest), PluginKind::Ingest),
            ("partitioner", spec.partitioner.as_mut(), PluginKind::Partitioner),
        ] {
            let Some(stage) = stage else { continue };
            let artifact = catalog.resolve(&stage.plugin, stage.version.as_deref()).map_err(|e| invalid(field, e))?;
            stage.version = Some(artifact.version.clone());
            let (catalog, loaded) = (catalog.clone(), stage.clone());
            let instance =
                tokio::task::spawn_blocking(move || load_instance(&catalog, &loaded, PluginLimits::default()))
                    .await
                    .map_err(|e| BridgeError::Storage(e.to_string()))?
                    .map_err(|e| invalid(field, e))?;
            let found = instance.1.metadata().kind;
            if found != kind {
                return Err(invalid(field, format!("{} is a {found:?} plugin, not {kind:?}", instance.0)));
            }
        }
        Ok(())
    }

    pub async fn add(&self, mut spec: BridgeSpec) -> Result<BridgeView, BridgeError> {
        let _admin = self.inner.admin.lock().await;
        spec.check()?;
        if self.handles().len() >= MQTT_BRIDGES_MAX {
            return Err(BridgeError::Conflict(format!("a broker runs at most {MQTT_BRIDGES_MAX} MQTT bridges")));
        }
        if self.handles().values().any(|h| h.spec.client_id() == spec.client_id()) {
            return Err(invalid("client_id", format!("{:?} is used by another bridge", spec.client_id())));
        }
        self.check_plugins(&mut spec).await?;
        if self.inner.store.resource(spec::KIND, &spec.name).ok().flatten().is_none() {
            // A new bridge starts with no ids remembered (a removal cut short may have left some).
            dedup::DedupWindow::forget(&self.inner.store, &spec.name).await.map_err(BridgeError::Storage)?;
        }
        self.store(&spec, Some(PutMode::Create)).await?;
        tracing::info!(bridge = %spec.name, url = %spec.url, target = %spec.target, "MQTT bridge added");
        let name = spec.name.clone();
        self.spawn(spec);
        self.get(&name).ok_or(BridgeError::NotFound(name))
    }

    /// Stops and deletes a bridge. Its session stays at the MQTT broker (add it again with the
    /// same client id and it resumes).
    pub async fn remove(&self, name: &str) -> Result<(), BridgeError> {
        let _admin = self.inner.admin.lock().await;
        let handle = self.handles().remove(name);
        if let Some(handle) = handle {
            let _ = handle.stop.send(true);
            let _ = handle.task.await;
        }
        // The ids go first: a bridge added again under this name must not find them, even if
        // the deletion below fails and is retried.
        dedup::DedupWindow::forget(&self.inner.store, name).await.map_err(BridgeError::Storage)?;
        let deleted = self
            .inner
            .store
            .delete_resource(spec::KIND, name, |_| None)
            .await
            .map_err(|e| BridgeError::Storage(e.to_string()))?;
        if !deleted {
            return Err(BridgeError::NotFound(name.to_owned()));
        }
        tracing::info!(bridge = %name, "MQTT bridge removed");
        Ok(())
    }

    pub fn list(&self) -> Vec<BridgeView> {
        self.handles().values().map(view).collect()
    }

    pub fn get(&self, name: &str) -> Option<BridgeView> {
        self.handles().get(name).map(view)
    }

    /// Stops every bridge (after the broker's stop signal): each finishes the batch it is
    /// committing and acknowledges it.
    pub async fn shutdown(&self) {
        let handles: Vec<Handle> = std::mem::take(&mut *self.handles()).into_values().collect();
        for handle in &handles {
            let _ = handle.stop.send(true);
        }
        for handle in handles {
            let _ = handle.task.await;
        }
    }

    /// Reads every bridge's counters and state at scrape time.
    pub fn collector(&self) -> Box<dyn prometheus_client::collector::Collector> {
        Box::new(BridgesCollector(self.clone()))
    }
}

fn invalid(field: &str, message: impl ToString) -> BridgeError {
    BridgeError::Invalid(InvalidBridge { field: field.to_owned(), message: message.to_string() })
}

fn view(handle: &Handle) -> BridgeView {
    let stats = &handle.stats;
    let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    BridgeView {
        spec: BridgeSpec {
            password: handle.spec.password.as_ref().map(|_| "********".to_owned()),
            ..handle.spec.clone()
        },
        status: BridgeStatus {
            connected: stats.connected.load(Ordering::Relaxed),
            last_error: stats.last_error(),
            messages_in: read(&stats.messages_in),
            records_out: read(&stats.records_out),
            messages_dead_lettered: read(&stats.messages_dead_lettered),
            plugin_failures: read(&stats.plugin_failures),
            duplicates_dropped: read(&stats.duplicates_dropped),
            messages_redelivered: read(&stats.messages_redelivered),
            connects: read(&stats.connects),
            qos0_dropped: read(&stats.qos0_dropped),
        },
    }
}

#[derive(Debug)]
struct BridgesCollector(Bridges);

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct BridgeLabels {
    bridge: String,
}

impl prometheus_client::collector::Collector for BridgesCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>) -> std::fmt::Result {
        use prometheus_client::metrics::MetricType;
        let views: Vec<(BridgeLabels, BridgeView)> =
            self.0.list().into_iter().map(|v| (BridgeLabels { bridge: v.spec.name.clone() }, v)).collect();
        type Read = fn(&BridgeStatus) -> u64;
        let families: [(&str, &str, MetricType, Read); 9] = [
            (
                "mqtt_connected",
                "1 while the bridge is connected to its MQTT broker and subscribed",
                MetricType::Gauge,
                |s| u64::from(s.connected),
            ),
            ("mqtt_messages_in", "MQTT messages received", MetricType::Counter, |s| s.messages_in),
            ("mqtt_records_out", "Records appended from MQTT messages", MetricType::Counter, |s| s.records_out),
            ("mqtt_messages_dead_lettered", "MQTT messages the ingest plugin rejected", MetricType::Counter, |s| {
                s.messages_dead_lettered
            }),
            ("mqtt_plugin_failures", "Ingest or partitioner plugin failures", MetricType::Counter, |s| {
                s.plugin_failures
            }),
            ("mqtt_duplicates_dropped", "Redelivered MQTT messages recognised and dropped", MetricType::Counter, |s| {
                s.duplicates_dropped
            }),
            (
                "mqtt_messages_redelivered",
                "MQTT messages the broker marked as sent before (DUP)",
                MetricType::Counter,
                |s| s.messages_redelivered,
            ),
            ("mqtt_connects", "Connections made to the MQTT broker", MetricType::Counter, |s| s.connects),
            ("mqtt_qos0_dropped", "QoS 0 messages dropped while the bridge was behind", MetricType::Counter, |s| {
                s.qos0_dropped
            }),
        ];
        for (name, help, metric_type, read) in families {
            let values = views.iter().map(|(labels, view)| (labels, read(&view.status)));
            crate::metrics::encode_family(&mut encoder, name, help, metric_type, values)?;
        }
        Ok(())
    }
}
