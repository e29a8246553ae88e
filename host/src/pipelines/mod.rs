//! Pipelines: in-broker stream processing. A pipeline reads a topic, runs each batch through a
//! chain of WebAssembly plugins and appends the result to another topic, exactly once: the output
//! batches, the pipeline's input progress and its stateful plugins' snapshots are committed in
//! one redb transaction ([`crate::storage::Store::transact`]), so a crash at any point neither
//! repeats nor loses a record.
//!
//! - [`Pipelines`] manages them (create, list, pause, resume, upgrade, delete) for the admin API
//!   and starts the stored ones when the broker starts.
//! - Each runs in its own task ([`runner`]); the plugins run off the async runtime.
//! - A batch a plugin fails on goes to the dead-letter topic (`<source>.dlq` by default) with
//!   headers saying which plugin failed, why, and where the records came from
//!   ([`batches::headers`]); after [`PipelineSpec::pause_after_failures`] failures in a row
//!   the pipeline pauses itself and says why.
//! - An upgrade swaps plugin versions between two batches; the progress keeps which versions
//!   wrote which output offsets ([`spec::Segment`]), without touching the records.

pub mod batches;
mod chain;
mod runner;
pub mod spec;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::limits::PIPELINES_MAX;
use crate::plugins::PluginCatalog;
use crate::storage::{DocumentWrite, Store, TopicConfig};
use chain::Chain;
pub use chain::{BuildError, load_instance};
use runner::{Control, Runner, RunnerStatus};
pub use spec::{Counts, LimitsSpec, PipelineSpec, Progress, Segment, StageSpec, StartAt};

/// Why a pipeline operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("unknown pipeline {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}

fn invalid(field: &str, message: impl Into<String>) -> PipelineError {
    PipelineError::Invalid { field: field.to_owned(), message: message.into() }
}

impl From<BuildError> for PipelineError {
    fn from(e: BuildError) -> Self {
        PipelineError::Invalid { field: e.field, message: e.message }
    }
}

/// A pipeline as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PipelineView {
    #[serde(flatten)]
    pub spec: PipelineSpec,
    pub status: PipelineStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PipelineStatus {
    /// `running` or `paused`.
    pub state: String,
    /// Why it is paused, when it paused itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `name@version` of the running plugins (the partitioner last).
    pub plugins: Vec<String>,
    pub partitions: Vec<PartitionProgress>,
    /// Records in the source not yet processed, over all partitions.
    pub lag: u64,
    pub counts: Counts,
    pub consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub history: Vec<Segment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionProgress {
    pub partition: u32,
    pub next_offset: u64,
    pub high_watermark: u64,
    pub lag: u64,
}

/// A running pipeline's task and how to reach it.
struct Handle {
    control: mpsc::Sender<Control>,
    status: watch::Receiver<RunnerStatus>,
    task: JoinHandle<()>,
}

/// Every pipeline of the broker.
#[derive(Clone)]
pub struct Pipelines {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    catalog: PluginCatalog,
    handles: Mutex<BTreeMap<String, Handle>>,
    /// Admin operations one at a time (create checks the name, then stores it).
    admin: tokio::sync::Mutex<()>,
    stopping: watch::Receiver<bool>,
}

impl std::fmt::Debug for Pipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipelines").field("running", &self.names()).finish()
    }
}

impl Pipelines {
    /// Pipelines stop between batches once `stopping` turns true.
    pub fn new(store: Store, catalog: PluginCatalog, stopping: watch::Receiver<bool>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                catalog,
                handles: Mutex::default(),
                admin: tokio::sync::Mutex::new(()),
                stopping,
            }),
        }
    }

    pub fn catalog(&self) -> &PluginCatalog {
        &self.inner.catalog
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Handle>> {
        self.inner.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn names(&self) -> Vec<String> {
        self.handles().keys().cloned().collect()
    }

    /// Starts every stored pipeline (at broker start). A pipeline whose plugins cannot be loaded
    /// waits, paused, saying why.
    pub async fn start_stored(&self) -> Result<usize, String> {
        let stored = self.inner.store.resources(spec::KIND).map_err(|e| e.to_string())?;
        for (name, document) in &stored {
            let generation = self.inner.store.generation();
            let spec: PipelineSpec = match serde_json::from_slice(document) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::error!(pipeline = %name, error = %e, "stored pipeline does not decode; not started");
                    continue;
                }
            };
            let progress = match self.inner.store.resource(spec::PROGRESS_KIND, name).map_err(|e| e.to_string())? {
                None => Progress::default(),
                Some(bytes) => match Progress::decode(&bytes) {
                    Ok(progress) => progress,
                    Err(e) => {
                        tracing::error!(pipeline = %name, error = %e, "stored pipeline progress does not decode; not started");
                        continue;
                    }
                },
            };
            let (catalog, built_spec, snapshots) =
                (self.inner.catalog.clone(), spec.clone(), progress.snapshots.clone());
            let built = tokio::task::spawn_blocking(move || Chain::build(&catalog, &built_spec, &snapshots))
                .await
                .map_err(|e| e.to_string())?;
            let (chain, unloaded) = match built {
                Ok(chain) => (Some(chain), None),
                Err(e) => {
                    tracing::error!(pipeline = %name, error = %e, "pipeline's plugins cannot be loaded; it waits for a resume");
                    (None, Some(e.to_string()))
                }
            };
            self.spawn(spec, progress, generation, chain, unloaded);
        }
        Ok(stored.len())
    }

    /// Runs a pipeline whose `progress` was read (or made) at store generation `generation`.
    fn spawn(
        &self,
        spec: PipelineSpec,
        progress: Progress,
        generation: u64,
        chain: Option<Chain>,
        unloaded: Option<String>,
    ) {
        let (control, inbox) = mpsc::channel(4);
        let (status, watcher) = watch::channel(RunnerStatus::new(&spec, &progress, chain.as_ref(), unloaded.clone()));
        let name = spec.name.clone();
        let runner = Runner {
            store: self.inner.store.clone(),
            catalog: self.inner.catalog.clone(),
            spec,
            progress,
            chain,
            unloaded,
            control: inbox,
            pending: Default::default(),
            status,
            stopping: self.inner.stopping.clone(),
            cursor: 0,
            retries: BTreeMap::new(),
            stale: false,
            generation,
        };
        let task = tokio::spawn(runner.run());
        self.handles().insert(name, Handle { control, status: watcher, task });
    }

    /// Resolves plugin versions, checks the spec against the broker, and builds its plugins.
    async fn prepare(&self, spec: &mut PipelineSpec) -> Result<Chain, PipelineError> {
        spec.check_shape().map_err(|(field, message)| PipelineError::Invalid { field, message })?;
        for (field, topic) in [("from", &spec.from), ("to", &spec.to)] {
            crate::storage::topic::validate_topic_name(topic).map_err(|e| invalid(field, e.to_string()))?;
        }
        crate::storage::topic::validate_topic_name(&spec.dead_letter_topic())
            .map_err(|e| invalid("dead_letter_topic", e.to_string()))?;
        if self.inner.store.topic(&spec.from).is_none() {
            return Err(invalid("from", format!("unknown topic {:?}", spec.from)));
        }
        let catalog = &self.inner.catalog;
        let count = spec.plugins.len();
        for (i, stage) in spec.plugins.iter_mut().chain(&mut spec.partitioner).enumerate() {
            let field = if i < count { format!("plugins[{i}]") } else { "partitioner".to_owned() };
            let artifact =
                catalog.resolve(&stage.plugin, stage.version.as_deref()).map_err(|e| invalid(&field, e.to_string()))?;
            stage.version = Some(artifact.version);
        }
        let (catalog, built_spec) = (catalog.clone(), spec.clone());
        let chain = tokio::task::spawn_blocking(move || Chain::build(&catalog, &built_spec, &[]))
            .await
            .map_err(|e| PipelineError::Failed(e.to_string()))??;
        Ok(chain)
    }

    pub async fn create(&self, mut spec: PipelineSpec) -> Result<PipelineView, PipelineError> {
        let _admin = self.inner.admin.lock().await;
        let store = &self.inner.store;
        let exists = store.resource(spec::KIND, &spec.name).map_err(|e| PipelineError::Failed(e.to_string()))?;
        if exists.is_some() || self.handles().contains_key(&spec.name) {
            return Err(PipelineError::Conflict(format!("pipeline {:?} already exists", spec.name)));
        }
        if self.handles().len() >= PIPELINES_MAX {
            return Err(PipelineError::Conflict(format!("a broker runs at most {PIPELINES_MAX} pipelines")));
        }
        let chain = self.prepare(&mut spec).await?;
        // The progress made here starts from the source as the store has it now.
        let generation = store.generation();
        let source =
            store.topic(&spec.from).ok_or_else(|| invalid("from", format!("unknown topic {:?}", spec.from)))?;
        // The output gets the source's partition count, so records keep their partition, and
        // its batch size limit, so what the source took fits.
        let config = TopicConfig { max_message_bytes: source.config.max_message_bytes, ..TopicConfig::default() };
        store
            .topic_or_create(&spec.to, source.partitions.len() as u32, config)
            .await
            .map_err(|e| PipelineError::Failed(format!("cannot create the output topic: {e}")))?;
        let mut progress = Progress::default();
        for (partition, state) in source.partitions.iter().enumerate() {
            let offsets = state.offsets();
            let start = match spec.start {
                StartAt::Earliest => offsets.log_start_offset,
                StartAt::Latest => offsets.high_watermark,
            };
            progress.next_offsets.insert(partition as u32, start);
        }
        progress.snapshots = chain.committed();
        progress.begin_segment(chain.labels(), crate::clock::now_ms());
        let documents = vec![
            DocumentWrite {
                kind: spec::KIND.into(),
                name: spec.name.clone(),
                document: Some(serde_json::to_vec(&spec).expect("a pipeline spec encodes")),
            },
            DocumentWrite {
                kind: spec::PROGRESS_KIND.into(),
                name: spec.name.clone(),
                document: Some(progress.encode()),
            },
        ];
        store
            .write_documents(documents)
            .await
            .map_err(|e| PipelineError::Failed(format!("cannot store the pipeline: {e}")))?;
        tracing::info!(pipeline = %spec.name, plugins = ?chain.labels(), "pipeline created");
        let name = spec.name.clone();
        self.spawn(spec, progress, generation, Some(chain), None);
        self.get(&name).ok_or(PipelineError::NotFound(name))
    }

    pub fn list(&self) -> Vec<PipelineView> {
        let statuses: Vec<RunnerStatus> = self.handles().values().map(|h| h.status.borrow().clone()).collect();
        statuses.into_iter().map(|status| self.view(status)).collect()
    }

    pub fn get(&self, name: &str) -> Option<PipelineView> {
        let status = self.handles().get(name).map(|h| h.status.borrow().clone())?;
        Some(self.view(status))
    }

    fn view(&self, status: RunnerStatus) -> PipelineView {
        let RunnerStatus { spec, progress, plugins, unloaded } = status;
        let topic = self.inner.store.topic(&spec.from);
        let partitions: Vec<PartitionProgress> = topic
            .iter()
            .flat_map(|topic| topic.partitions.iter().enumerate())
            .map(|(p, state)| {
                let offsets = state.offsets();
                let next_offset = progress.next_offsets.get(&(p as u32)).copied().unwrap_or(offsets.log_start_offset);
                let high_watermark = offsets.high_watermark;
                PartitionProgress {
                    partition: p as u32,
                    next_offset,
                    high_watermark,
                    lag: high_watermark.saturating_sub(next_offset),
                }
            })
            .collect();
        let reason = match (&unloaded, &progress.pause_reason) {
            (Some(unloaded), _) => Some(format!("the plugins cannot be loaded: {unloaded}")),
            (None, Some(reason)) if spec.paused => Some(reason.clone()),
            _ => None,
        };
        let running = !spec.paused && unloaded.is_none();
        PipelineView {
            status: PipelineStatus {
                state: if running { "running" } else { "paused" }.to_owned(),
                reason,
                plugins,
                lag: partitions.iter().map(|p| p.lag).sum(),
                partitions,
                counts: progress.counts,
                consecutive_failures: progress.consecutive_failures,
                last_error: progress.last_error,
                history: progress.history,
            },
            spec,
        }
    }

    /// Sends `command` (made with its reply channel) to pipeline `name`'s runner.
    async fn ask<T>(
        &self,
        name: &str,
        command: impl FnOnce(oneshot::Sender<T>) -> Control,
    ) -> Result<T, PipelineError> {
        let control = self.handles().get(name).map(|h| h.control.clone());
        let control = control.ok_or_else(|| PipelineError::NotFound(name.to_owned()))?;
        let (reply, answer) = oneshot::channel();
        let stopped = || PipelineError::Failed(format!("pipeline {name:?} is stopping"));
        control.send(command(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }

    /// Operations on one pipeline go through its runner, which takes them one at a time between
    /// batches: they do not hold the admin lock while it answers.
    pub async fn pause(&self, name: &str) -> Result<PipelineView, PipelineError> {
        self.ask(name, |reply| Control::Pause { reply }).await??;
        tracing::info!(pipeline = %name, "pipeline paused");
        self.get(name).ok_or_else(|| PipelineError::NotFound(name.to_owned()))
    }

    pub async fn resume(&self, name: &str) -> Result<PipelineView, PipelineError> {
        self.ask(name, |reply| Control::Resume { reply }).await??;
        tracing::info!(pipeline = %name, "pipeline resumed");
        self.get(name).ok_or_else(|| PipelineError::NotFound(name.to_owned()))
    }

    /// Replaces the pipeline's plugins (new versions, other configuration) between two batches.
    pub async fn upgrade(
        &self,
        name: &str,
        plugins: Vec<StageSpec>,
        partitioner: Option<StageSpec>,
    ) -> Result<PipelineView, PipelineError> {
        let admin = self.inner.admin.lock().await;
        let current = self.get(name).ok_or_else(|| PipelineError::NotFound(name.to_owned()))?.spec;
        let mut spec = PipelineSpec { plugins, partitioner, ..current };
        let chain = self.prepare(&mut spec).await?;
        drop(admin);
        let (spec, chain) = (Box::new(spec), Box::new(chain));
        self.ask(name, |reply| Control::Upgrade { spec, chain, reply }).await??;
        self.get(name).ok_or_else(|| PipelineError::NotFound(name.to_owned()))
    }

    /// Stops the pipeline and deletes it (its topics stay).
    pub async fn delete(&self, name: &str) -> Result<(), PipelineError> {
        let _admin = self.inner.admin.lock().await;
        self.stop_one(name).await;
        let store = &self.inner.store;
        let stored = store.resource(spec::KIND, name).map_err(|e| PipelineError::Failed(e.to_string()))?;
        if stored.is_none() {
            return Err(PipelineError::NotFound(name.to_owned()));
        }
        let deletes = [spec::KIND, spec::PROGRESS_KIND]
            .map(|kind| DocumentWrite { kind: kind.into(), name: name.to_owned(), document: None })
            .to_vec();
        store.write_documents(deletes).await.map_err(|e| PipelineError::Failed(e.to_string()))?;
        tracing::info!(pipeline = %name, "pipeline deleted");
        Ok(())
    }

    async fn stop_one(&self, name: &str) {
        let Some(handle) = self.handles().remove(name) else { return };
        let (reply, answer) = oneshot::channel();
        if handle.control.send(Control::Stop { reply }).await.is_ok() {
            let _ = answer.await;
        }
        let _ = handle.task.await;
    }

    /// Holds off pipeline creation, upgrades and deletion (a plugin deletion checks that no
    /// pipeline uses the plugin under it).
    pub async fn lock_admin(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.admin.lock().await
    }

    /// Pipelines that use plugin `name` at `version`.
    pub fn using_plugin(&self, name: &str, version: &str) -> Vec<String> {
        self.list()
            .into_iter()
            .filter(|view| view.spec.stages().any(|s| s.plugin == name && s.version.as_deref() == Some(version)))
            .map(|view| view.spec.name)
            .collect()
    }

    /// Reads every pipeline's counters, lag and state at scrape time.
    pub fn collector(&self) -> Box<dyn prometheus_client::collector::Collector> {
        Box::new(PipelinesCollector(self.clone()))
    }

    /// Waits for every pipeline to stop (after the broker's stop signal).
    pub async fn shutdown(&self) {
        let handles: Vec<Handle> = std::mem::take(&mut *self.handles()).into_values().collect();
        for handle in handles {
            let _ = handle.task.await;
        }
    }
}

#[derive(Debug)]
struct PipelinesCollector(Pipelines);

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct PipelineLabels {
    pipeline: String,
}

impl prometheus_client::collector::Collector for PipelinesCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>) -> std::fmt::Result {
        use prometheus_client::metrics::MetricType;
        let views: Vec<(PipelineLabels, PipelineView)> =
            self.0.list().into_iter().map(|view| (PipelineLabels { pipeline: view.spec.name.clone() }, view)).collect();
        type Read = fn(&PipelineView) -> u64;
        let families: [(&str, &str, MetricType, Read); 8] = [
            ("pipeline_records_in", "Source records a pipeline has processed", MetricType::Counter, |v| {
                v.status.counts.records_in
            }),
            ("pipeline_records_out", "Records a pipeline has written to its output", MetricType::Counter, |v| {
                v.status.counts.records_out
            }),
            ("pipeline_batches_failed", "Batches a plugin failed on (dead-lettered)", MetricType::Counter, |v| {
                v.status.counts.batches_failed
            }),
            ("pipeline_records_dead_lettered", "Records sent to the dead-letter topic", MetricType::Counter, |v| {
                v.status.counts.records_dead_lettered
            }),
            (
                "pipeline_records_skipped",
                "Source records deleted by retention before the pipeline read them",
                MetricType::Counter,
                |v| v.status.counts.records_skipped,
            ),
            ("pipeline_lag", "Source records not yet processed", MetricType::Gauge, |v| v.status.lag),
            ("pipeline_paused", "1 while the pipeline is paused", MetricType::Gauge, |v| {
                u64::from(v.status.state != "running")
            }),
            ("pipeline_consecutive_failures", "Failed batches in a row", MetricType::Gauge, |v| {
                u64::from(v.status.consecutive_failures)
            }),
        ];
        for (name, help, metric_type, read) in families {
            let values = views.iter().map(|(labels, view)| (labels, read(view)));
            crate::metrics::encode_family(&mut encoder, name, help, metric_type, values)?;
        }
        Ok(())
    }
}
