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
mod stats;
mod tls;
mod worker;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::limits::MQTT_BRIDGES_MAX;
use crate::plugins::{PluginCatalog, PluginKind, PluginLimits, SlotError, load_off_runtime};
use crate::registry::{Kind, Registry, RegistryError};
use crate::storage::{DocumentWrite, Store};
use bridge::Bridge;
pub use spec::{BridgeSpec, DedupSpec, InvalidBridge, Subscription};
use stats::BridgeStats;
pub use tls::TlsSpec;

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

/// A running bridge.
#[derive(Debug)]
pub struct Running {
    stats: Arc<BridgeStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Every MQTT bridge of the node.
pub type Bridges = Registry<BridgeKind>;

/// What MQTT bridges need: the store they append to and the plugins they run.
#[derive(Debug)]
pub struct BridgeKind {
    store: Store,
    catalog: PluginCatalog,
}

impl Bridges {
    /// The bridges of `store` (none runs before [`Registry::start`]).
    pub fn for_store(store: Store, catalog: PluginCatalog) -> Self {
        Registry::local(BridgeKind { store: store.clone(), catalog }, store)
    }

    /// Reads every bridge's counters and state at scrape time.
    pub fn collector(&self) -> Box<dyn prometheus_client::collector::Collector> {
        Box::new(BridgesCollector(self.clone()))
    }
}

impl BridgeKind {
    /// Checks a new bridge's plugins: they load and are of the right kinds.
    async fn check_plugins(&self, spec: &mut BridgeSpec) -> Result<(), RegistryError> {
        let catalog = &self.catalog;
        for (field, stage, kind) in [
            ("ingest", Some(&mut spec.ingest), PluginKind::Ingest),
            ("partitioner", spec.partitioner.as_mut(), PluginKind::Partitioner),
        ] {
            let Some(stage) = stage else { continue };
            let artifact = catalog
                .resolve(&stage.plugin, stage.version.as_deref())
                .map_err(|e| RegistryError::invalid(field, e))?;
            stage.version = Some(artifact.version.clone());
            let instance = load_off_runtime(catalog, stage, PluginLimits::default()).await.map_err(|e| match e {
                SlotError::Failed(e) => RegistryError::invalid(field, e),
                lost => RegistryError::Unavailable(format!("the plugin check failed: {lost}")),
            })?;
            let found = instance.1.metadata().kind;
            if found != kind {
                return Err(RegistryError::invalid(
                    field,
                    format!("{} is a {found:?} plugin, not {kind:?}", instance.0),
                ));
            }
        }
        Ok(())
    }
}

impl Kind for BridgeKind {
    type Spec = BridgeSpec;
    type Prepared = ();
    type Running = Running;
    type View = BridgeView;

    const KIND: &'static str = spec::KIND;
    const NOUN: &'static str = "MQTT bridge";
    const PLURAL: &'static str = "MQTT bridges";
    const MAX: usize = MQTT_BRIDGES_MAX;

    fn name(spec: &BridgeSpec) -> &str {
        &spec.name
    }

    async fn prepare(&self, spec: &mut BridgeSpec, others: &[&BridgeSpec]) -> Result<(), RegistryError> {
        spec.check()?;
        if others.iter().any(|other| other.client_id() == spec.client_id()) {
            return Err(RegistryError::invalid(
                "client_id",
                format!("{:?} is used by another bridge", spec.client_id()),
            ));
        }
        self.check_plugins(spec).await
    }

    async fn admit_configured(&self, spec: &mut BridgeSpec) -> Result<(), RegistryError> {
        Ok(spec.check()?)
    }

    async fn restore(&self, _spec: &BridgeSpec) -> Result<(), RegistryError> {
        Ok(())
    }

    /// The remembered message ids: a bridge added again under the name starts with none.
    fn leftovers(&self, name: &str) -> Result<Vec<DocumentWrite>, RegistryError> {
        dedup::DedupWindow::forget(&self.store, name).map_err(RegistryError::Read)
    }

    fn run(&self, spec: BridgeSpec, _prepared: ()) -> Running {
        let (stop, stopping) = watch::channel(false);
        let stats = Arc::new(BridgeStats::default());
        tracing::info!(bridge = %spec.name, url = %spec.url, target = %spec.target, "MQTT bridge starting");
        let bridge = Bridge {
            spec,
            store: self.store.clone(),
            catalog: self.catalog.clone(),
            stats: Arc::clone(&stats),
            stopping,
        };
        Running { stats, stop, task: tokio::spawn(bridge.run()) }
    }

    /// Its session stays at the MQTT broker: added again with the same client id, it resumes.
    async fn stop(&self, running: Running) {
        let _ = running.stop.send(true);
        let _ = running.task.await;
    }

    fn view(&self, spec: &BridgeSpec, running: Option<&Running>) -> BridgeView {
        let spec = BridgeSpec { password: spec.password.as_ref().map(|_| "********".to_owned()), ..spec.clone() };
        let Some(stats) = running.map(|running| &running.stats) else {
            return BridgeView { spec, status: BridgeStatus::default() };
        };
        let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let status = BridgeStatus {
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
        };
        BridgeView { spec, status }
    }
}

impl From<InvalidBridge> for RegistryError {
    fn from(e: InvalidBridge) -> Self {
        RegistryError::Invalid { field: e.field, message: e.message }
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
        let rows: Vec<(BridgeLabels, BridgeStatus)> =
            self.0.list().into_iter().map(|v| (BridgeLabels { bridge: v.spec.name }, v.status)).collect();
        let families: [crate::metrics::FamilySpec<BridgeStatus>; 9] = [
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
        crate::metrics::encode_families(&mut encoder, &families, &rows)
    }
}
