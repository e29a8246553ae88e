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

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::limits::PIPELINES_MAX;
use crate::plugins::StageSpec;
use crate::plugins::{PluginCatalog, Slot};
use crate::registry::{Kind, Registry, RegistryError};
use crate::storage::{DocumentWrite, Store, TopicConfig};
pub use chain::BuildError;
use chain::Chain;
use runner::{Control, Runner, RunnerStatus};
pub use spec::{Counts, LimitsSpec, PipelineSpec, Progress, Segment, StartAt};

impl From<BuildError> for RegistryError {
    fn from(e: BuildError) -> Self {
        RegistryError::Invalid { field: e.field, message: e.message }
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
    /// `running`, `paused`, or `stopped` (not running on this node: its stored progress does
    /// not decode).
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
#[derive(Debug)]
pub struct Running {
    control: mpsc::Sender<Control>,
    status: watch::Receiver<RunnerStatus>,
    task: JoinHandle<()>,
}

/// What a pipeline needs to run: its progress as read (or made) at store generation
/// `generation`, and its plugins, or why they cannot be loaded.
pub struct Launch {
    progress: Progress,
    generation: u64,
    chain: Option<Chain>,
    unloaded: Option<String>,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch").field("generation", &self.generation).field("unloaded", &self.unloaded).finish()
    }
}

/// Every pipeline of the node.
pub type Pipelines = Registry<PipelineKind>;

/// What pipelines need: the store, the plugins, and the broker's stop signal (they stop
/// between batches once it turns true).
#[derive(Debug)]
pub struct PipelineKind {
    store: Store,
    catalog: PluginCatalog,
    stopping: watch::Receiver<bool>,
}

impl Pipelines {
    /// The pipelines of `store` (none runs before [`Registry::start`]).
    pub fn for_store(store: Store, catalog: PluginCatalog, stopping: watch::Receiver<bool>) -> Self {
        Registry::local(PipelineKind { store: store.clone(), catalog, stopping }, store)
    }

    pub fn catalog(&self) -> &PluginCatalog {
        &self.kind().catalog
    }

    /// Sends `command` (made with its reply channel) to pipeline `name`'s runner.
    async fn ask<T>(
        &self,
        name: &str,
        command: impl FnOnce(oneshot::Sender<T>) -> Control,
    ) -> Result<T, RegistryError> {
        let control = self.with_running(name, |running| running.control.clone());
        let control = control.ok_or_else(|| not_found(name))?;
        let (reply, answer) = oneshot::channel();
        let stopped = || RegistryError::Unavailable(format!("pipeline {name:?} is stopping"));
        control.send(command(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }

    /// Operations on one pipeline go through its runner, which takes them one at a time between
    /// batches: they do not hold the admin lock while it answers.
    pub async fn pause(&self, name: &str) -> Result<PipelineView, RegistryError> {
        self.ask(name, |reply| Control::Pause { reply }).await??;
        tracing::info!(pipeline = %name, "pipeline paused");
        self.found(name)
    }

    pub async fn resume(&self, name: &str) -> Result<PipelineView, RegistryError> {
        self.ask(name, |reply| Control::Resume { reply }).await??;
        tracing::info!(pipeline = %name, "pipeline resumed");
        self.found(name)
    }

    /// Replaces the pipeline's plugins (new versions, other configuration) between two batches.
    pub async fn upgrade(
        &self,
        name: &str,
        plugins: Vec<StageSpec>,
        partitioner: Option<StageSpec>,
    ) -> Result<PipelineView, RegistryError> {
        let admin = self.lock_admin().await;
        let current = self.found(name)?.spec;
        let mut spec = PipelineSpec { plugins, partitioner, ..current };
        let chain = self.kind().build(&mut spec).await?;
        drop(admin);
        let (spec, chain) = (Box::new(spec), Box::new(chain));
        self.ask(name, |reply| Control::Upgrade { spec, chain, reply }).await??;
        self.found(name)
    }

    /// Pipelines that use plugin `name` at `version` (hold [`Registry::lock_admin`] so that none
    /// starts using it meanwhile).
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
}

fn not_found(name: &str) -> RegistryError {
    RegistryError::NotFound { noun: "pipeline", name: name.to_owned() }
}

impl PipelineKind {
    /// Resolves plugin versions, checks the spec against the broker, and builds its plugins.
    async fn build(&self, spec: &mut PipelineSpec) -> Result<Chain, RegistryError> {
        spec.check_shape().map_err(|(field, message)| RegistryError::Invalid { field, message })?;
        for (field, topic) in [("from", &spec.from), ("to", &spec.to)] {
            crate::storage::topic::validate_topic_name(topic).map_err(|e| RegistryError::invalid(field, e))?;
        }
        crate::storage::topic::validate_topic_name(&spec.dead_letter_topic())
            .map_err(|e| RegistryError::invalid("dead_letter_topic", e))?;
        if self.store.topic(&spec.from).is_none() {
            return Err(RegistryError::invalid("from", format!("unknown topic {:?}", spec.from)));
        }
        let count = spec.plugins.len();
        for (i, stage) in spec.plugins.iter_mut().chain(&mut spec.partitioner).enumerate() {
            let field = if i < count { format!("plugins[{i}]") } else { "partitioner".to_owned() };
            let artifact = self
                .catalog
                .resolve(&stage.plugin, stage.version.as_deref())
                .map_err(|e| RegistryError::invalid(field, e))?;
            stage.version = Some(artifact.version);
        }
        let (catalog, built_spec) = (self.catalog.clone(), spec.clone());
        let chain = tokio::task::spawn_blocking(move || Chain::build(&catalog, &built_spec, &[]))
            .await
            .map_err(|e| RegistryError::Unavailable(format!("the plugin task failed: {e}")))??;
        Ok(chain)
    }

    /// Makes the output topic and the progress of a new pipeline: it starts from the source as
    /// the store has it now.
    async fn begin(&self, spec: &PipelineSpec, chain: &Chain) -> Result<(Progress, u64), RegistryError> {
        let generation = self.store.generation();
        let source = self
            .store
            .topic(&spec.from)
            .ok_or_else(|| RegistryError::invalid("from", format!("unknown topic {:?}", spec.from)))?;
        // The output gets the source's partition count, so records keep their partition, and
        // its batch size limit, so what the source took fits.
        let config = TopicConfig { max_message_bytes: source.config.max_message_bytes, ..TopicConfig::default() };
        self.store
            .topic_or_create(&spec.to, source.partitions.len() as u32, config)
            .await
            .map_err(|e| RegistryError::Unavailable(format!("cannot create the output topic: {e}")))?;
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
        Ok((progress, generation))
    }

    fn status_view(&self, status: RunnerStatus, state: &str) -> PipelineView {
        let RunnerStatus { spec, progress, plugins, unloaded } = status;
        let topic = self.store.topic(&spec.from);
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
        PipelineView {
            status: PipelineStatus {
                state: state.to_owned(),
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
}

impl Kind for PipelineKind {
    type Spec = PipelineSpec;
    type Prepared = Launch;
    type Running = Running;
    type View = PipelineView;

    const KIND: &'static str = spec::KIND;
    const NOUN: &'static str = "pipeline";
    const PLURAL: &'static str = "pipelines";
    const MAX: usize = PIPELINES_MAX;

    fn name(spec: &PipelineSpec) -> &str {
        &spec.name
    }

    async fn prepare(&self, spec: &mut PipelineSpec, _others: &[&PipelineSpec]) -> Result<Launch, RegistryError> {
        let chain = self.build(spec).await?;
        let (progress, generation) = self.begin(spec, &chain).await?;
        Ok(Launch { progress, generation, chain: Some(chain), unloaded: None })
    }

    /// Pipelines come from the admin API only.
    async fn admit_configured(&self, _spec: &mut PipelineSpec) -> Result<(), RegistryError> {
        Ok(())
    }

    /// A pipeline whose plugins cannot be loaded waits, paused, saying why.
    async fn restore(&self, spec: &PipelineSpec) -> Result<Launch, RegistryError> {
        let generation = self.store.generation();
        let progress = match self.store.resource(spec::PROGRESS_KIND, &spec.name).map_err(RegistryError::Read)? {
            None => Progress::default(),
            Some(bytes) => Progress::decode(&bytes).map_err(|e| {
                RegistryError::Unavailable(format!("the stored pipeline progress does not decode: {e}"))
            })?,
        };
        let (catalog, built_spec, snapshots) = (self.catalog.clone(), spec.clone(), progress.snapshots.clone());
        let built = tokio::task::spawn_blocking(move || Chain::build(&catalog, &built_spec, &snapshots))
            .await
            .map_err(|e| RegistryError::Unavailable(format!("the plugin task failed: {e}")))?;
        let (chain, unloaded) = match built {
            Ok(chain) => (Some(chain), None),
            Err(e) => {
                tracing::error!(pipeline = %spec.name, error = %e, "pipeline's plugins cannot be loaded; it waits for a resume");
                (None, Some(e.to_string()))
            }
        };
        Ok(Launch { progress, generation, chain, unloaded })
    }

    fn companions(&self, spec: &PipelineSpec, launch: &Launch) -> Vec<DocumentWrite> {
        let progress = launch.progress.encode();
        vec![DocumentWrite { kind: spec::PROGRESS_KIND.into(), name: spec.name.clone(), document: Some(progress) }]
    }

    /// Its progress (its topics stay).
    fn leftovers(&self, name: &str) -> Result<Vec<DocumentWrite>, RegistryError> {
        Ok(vec![DocumentWrite { kind: spec::PROGRESS_KIND.into(), name: name.to_owned(), document: None }])
    }

    fn run(&self, spec: PipelineSpec, launch: Launch) -> Running {
        let Launch { progress, generation, chain, unloaded } = launch;
        let (control, inbox) = mpsc::channel(4);
        let (status, watcher) = watch::channel(RunnerStatus::new(&spec, &progress, chain.as_ref(), unloaded.clone()));
        let runner = Runner {
            store: self.store.clone(),
            catalog: self.catalog.clone(),
            spec,
            progress,
            chain: chain.map_or_else(Slot::default, Slot::new),
            unloaded,
            control: inbox,
            pending: Default::default(),
            status,
            stopping: self.stopping.clone(),
            cursor: 0,
            retries: BTreeMap::new(),
            stale: false,
            generation,
        };
        Running { control, status: watcher, task: tokio::spawn(runner.run()) }
    }

    /// The runner stops between batches.
    async fn stop(&self, running: Running) {
        let (reply, answer) = oneshot::channel();
        if running.control.send(Control::Stop { reply }).await.is_ok() {
            let _ = answer.await;
        }
        let _ = running.task.await;
    }

    fn view(&self, spec: &PipelineSpec, running: Option<&Running>) -> PipelineView {
        match running {
            Some(running) => {
                let status = running.status.borrow().clone();
                let running = !status.spec.paused && status.unloaded.is_none();
                self.status_view(status, if running { "running" } else { "paused" })
            }
            None => self.status_view(RunnerStatus::new(spec, &Progress::default(), None, None), "stopped"),
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
        let rows: Vec<(PipelineLabels, PipelineView)> =
            self.0.list().into_iter().map(|view| (PipelineLabels { pipeline: view.spec.name.clone() }, view)).collect();
        let families: [crate::metrics::FamilySpec<PipelineView>; 8] = [
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
        crate::metrics::encode_families(&mut encoder, &families, &rows)
    }
}
