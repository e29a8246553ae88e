//! One task per pipeline: read a source partition, run the plugins, and commit the output, the
//! input progress and the plugins' state in one transaction (exactly once); failed batches go to
//! the dead-letter topic; operators' commands (pause, resume, upgrade, stop) apply between
//! batches.
//!
//! The runner's memory (progress, plugin state) is a copy of what the last commit stored. When a
//! commit's outcome is unknown (a storage error: after an IO error the writer reopens the file,
//! and commits that were not yet durable may be gone), when the store reopened since the copy was
//! read (its commits carry the store generation they were prepared at, and the writer refuses
//! them after a reopen), or when a plugin cannot be put back to its committed state, the copy is
//! marked stale and reloaded from the file, plugins rebuilt from the stored snapshots, before
//! anything else is processed.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::batches::{self, DeadLetter, Input};
use super::chain::{Applied, Chain, Failure};
use super::spec::{KIND, PROGRESS_KIND, PipelineSpec, Progress};
use crate::limits::{
    PIPELINE_DEAD_LETTER_HEADROOM_BYTES, PIPELINE_IDLE_RECHECK, PIPELINE_READ_BYTES, PIPELINE_RETRIES_MAX,
    PIPELINE_RETRY_BACKOFF,
};
use crate::plugins::{AfterFailure, PluginCatalog, PluginError, Slot, SlotError};
use crate::registry::RegistryError;
use crate::storage::{AppendError, DocumentWrite, Documents, ReadError, Store, TopicConfig, TopicError};

type Reply = oneshot::Sender<Result<(), RegistryError>>;

/// What an operator asks of a running pipeline; answered between batches.
pub(super) enum Control {
    Pause {
        reply: Reply,
    },
    Resume {
        reply: Reply,
    },
    /// `chain` is built from `spec`'s plugins already; the runner hands it the running plugins'
    /// state. Only the plugins and the partitioner of `spec` are taken.
    Upgrade {
        spec: Box<PipelineSpec>,
        chain: Box<Chain>,
        reply: Reply,
    },
    Stop {
        reply: oneshot::Sender<()>,
    },
}

/// What the runner publishes for the admin API, the status page and metrics.
#[derive(Debug, Clone)]
pub struct RunnerStatus {
    pub spec: PipelineSpec,
    /// Without the plugins' snapshots.
    pub progress: Progress,
    /// `name@version` of the running stages.
    pub plugins: Vec<String>,
    /// Why the plugins could not be loaded, while they cannot.
    pub unloaded: Option<String>,
}

impl RunnerStatus {
    pub fn new(spec: &PipelineSpec, progress: &Progress, chain: Option<&Chain>, unloaded: Option<String>) -> Self {
        let progress = Progress { snapshots: Vec::new(), ..progress.clone() };
        let plugins = chain.map(Chain::labels).unwrap_or_default();
        Self { spec: spec.clone(), progress, plugins, unloaded }
    }
}

/// How handling one input ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Committed (output or dead letters), or the pipeline paused itself or went stale: nothing
    /// to wait for.
    Done,
    /// Nothing committed; the same input is read again after a back-off.
    RetryLater,
}

pub(super) struct Runner {
    pub store: Store,
    pub catalog: PluginCatalog,
    pub spec: PipelineSpec,
    pub progress: Progress,
    /// `None` while the plugins cannot be loaded (the pipeline waits, paused, for a resume).
    /// Empty while the plugins cannot be loaded, and once a call's task failed.
    pub chain: Slot<Chain>,
    pub unloaded: Option<String>,
    pub control: mpsc::Receiver<Control>,
    /// Commands that arrived during a back-off, handled before the next input.
    pub pending: VecDeque<Control>,
    pub status: watch::Sender<RunnerStatus>,
    pub stopping: watch::Receiver<bool>,
    /// The source partition read next (round robin).
    pub cursor: u32,
    /// Per source partition, tries of its current input that ended in "retry later" (retryable
    /// plugin errors, failed commits); reset when an input of the partition is done.
    pub retries: BTreeMap<u32, u32>,
    /// The memory may differ from the file: reload before processing (see the module docs).
    pub stale: bool,
    /// The store generation the memory was read at: commits are refused once the store has
    /// reopened since (a background sync can fail and lose commits without any of ours failing).
    pub generation: u64,
}

impl Runner {
    pub(super) fn publish(&self) {
        self.status.send_replace(RunnerStatus::new(
            &self.spec,
            &self.progress,
            self.chain.get(),
            self.unloaded.clone(),
        ));
    }

    pub(super) async fn run(mut self) {
        self.publish();
        tracing::info!(pipeline = %self.spec.name, from = %self.spec.from, to = %self.spec.to, paused = self.spec.paused, "pipeline started");
        loop {
            if *self.stopping.borrow() {
                return;
            }
            while let Some(command) = self.pending.pop_front().or_else(|| self.control.try_recv().ok()) {
                if !self.handle(command).await {
                    return;
                }
            }
            // The store reopened since our copy was read: commits we saw may be gone.
            if self.store.generation() != self.generation {
                self.stale = true;
            }
            if self.stale && !self.reload().await {
                continue;
            }
            let waiting = self.spec.paused || !self.chain.is_loaded();
            let next = if waiting {
                self.wait(false).await
            } else if self.step().await {
                continue;
            } else {
                self.wait(true).await
            };
            match next {
                Wake::Command(command) => {
                    if !self.handle(command).await {
                        return;
                    }
                }
                Wake::Stop => return,
                Wake::Input => {}
            }
        }
    }

    /// Waits for a command, the broker stopping, or (`for_input`) new source records.
    async fn wait(&mut self, for_input: bool) -> Wake {
        let mut appended = JoinSet::new();
        if for_input {
            // Subscribed before looking, so an append in between still wakes us.
            let partitions = self.store.topic(&self.spec.from).map_or(0, |t| t.partitions.len() as u32);
            for partition in 0..partitions {
                if let Some(mut offsets) = self.store.watch_offsets(&self.spec.from, partition) {
                    appended.spawn(async move { offsets.changed().await.is_ok() });
                }
            }
            if self.has_input() {
                return Wake::Input;
            }
        } else {
            appended.spawn(std::future::pending());
        }
        let recheck = if for_input { PIPELINE_IDLE_RECHECK } else { Duration::MAX };
        tokio::select! {
            command = self.control.recv() => command.map_or(Wake::Stop, Wake::Command),
            _ = self.stopping.changed() => Wake::Stop,
            _ = appended.join_next() => Wake::Input,
            _ = tokio::time::sleep(recheck) => Wake::Input,
        }
    }

    fn has_input(&self) -> bool {
        let Some(topic) = self.store.topic(&self.spec.from) else { return false };
        topic.partitions.iter().enumerate().any(|(p, partition)| {
            partition.offsets().high_watermark > self.next_offset(p as u32, partition.offsets().log_start_offset)
        })
    }

    fn next_offset(&self, partition: u32, log_start_offset: u64) -> u64 {
        // A partition added after the pipeline was created is read from its start.
        self.progress.next_offsets.get(&partition).copied().unwrap_or(log_start_offset)
    }

    /// Reads the pipeline back from the file and rebuilds its plugins from the stored snapshots;
    /// `false` when the file cannot be read yet (after a back-off, the loop tries again).
    async fn reload(&mut self) -> bool {
        let name = self.spec.name.clone();
        let generation = self.store.generation();
        let read = |kind: &str| self.store.resource(kind, &name).map_err(|e| e.to_string());
        let stored = read(KIND).and_then(|spec| Ok((spec, read(PROGRESS_KIND)?))).and_then(|docs| match docs {
            (Some(spec), Some(progress)) => {
                let spec: PipelineSpec = serde_json::from_slice(&spec).map_err(|e| e.to_string())?;
                Ok(Some((spec, Progress::decode(&progress)?)))
            }
            // Being deleted: the stop command follows.
            _ => Ok(None),
        });
        let (spec, progress) = match stored {
            Ok(Some(stored)) => stored,
            Ok(None) => {
                self.stale = false;
                self.spec.paused = true;
                return true;
            }
            Err(e) => {
                tracing::warn!(pipeline = %name, error = %e, "cannot read the pipeline back after a storage error; will retry");
                self.pause_briefly(PIPELINE_RETRY_BACKOFF).await;
                return false;
            }
        };
        self.chain.take();
        let (catalog, built_spec, snapshots) = (self.catalog.clone(), spec.clone(), progress.snapshots.clone());
        let built = tokio::task::spawn_blocking(move || Chain::build(&catalog, &built_spec, &snapshots)).await;
        match built {
            Ok(Ok(chain)) => (self.chain, self.unloaded) = (Slot::new(chain), None),
            Ok(Err(e)) => self.unloaded = Some(e.to_string()),
            Err(e) => self.unloaded = Some(format!("rebuilding the plugins failed: {e}")),
        }
        (self.spec, self.progress, self.stale, self.generation) = (spec, progress, false, generation);
        self.retries.clear();
        tracing::info!(pipeline = %name, unloaded = ?self.unloaded, "pipeline reloaded from storage");
        self.publish();
        true
    }

    /// Handles one input from the next source partition that has records; `false` when none has.
    async fn step(&mut self) -> bool {
        let Some(source) = self.store.topic(&self.spec.from) else {
            self.pause_itself(format!("the source topic {:?} no longer exists", self.spec.from)).await;
            return false;
        };
        let Some(output) = self.store.topic(&self.spec.to) else {
            self.pause_itself(format!("the output topic {:?} no longer exists", self.spec.to)).await;
            return false;
        };
        let (count, out_partitions) = (source.partitions.len() as u32, output.partitions.len() as u32);
        for i in 0..count {
            let partition = (self.cursor + i) % count;
            let Some(state) = source.partition(partition) else { continue };
            let offsets = state.offsets();
            let next = self.next_offset(partition, offsets.log_start_offset);
            if next >= offsets.high_watermark {
                continue;
            }
            self.cursor = partition + 1;
            let Some(input) = self.read(partition, next).await else { return false };
            if input.batches.is_empty() {
                // Only control batches: nothing for the plugins, but the position moves on.
                self.progress.next_offsets.insert(partition, input.next_offset);
                return true;
            }
            if self.handle_input(partition, input, out_partitions, true).await == Outcome::RetryLater {
                self.back_off(partition).await;
            } else {
                self.retries.remove(&partition);
            }
            return true;
        }
        false
    }

    async fn read(&mut self, partition: u32, next: u64) -> Option<Input> {
        let (store, from) = (self.store.clone(), self.spec.from.clone());
        let read = tokio::task::spawn_blocking(move || store.read(&from, partition, next, PIPELINE_READ_BYTES)).await;
        match read {
            Ok(Ok(read)) => match batches::plain_input(&read.records, next) {
                Ok(input) => Some(input),
                Err(e) => {
                    self.pause_itself(format!("partition {partition} at offset {next} cannot be read: {e}")).await;
                    None
                }
            },
            Ok(Err(ReadError::OffsetOutOfRange { log_start_offset, next_offset, .. })) => {
                let resume_at = if next < log_start_offset { log_start_offset } else { next_offset };
                if next < log_start_offset {
                    self.progress.counts.records_skipped += log_start_offset - next;
                }
                tracing::warn!(pipeline = %self.spec.name, partition, from = next, to = resume_at,
                    "records were deleted from the source before the pipeline read them (retention); skipping them");
                self.progress.next_offsets.insert(partition, resume_at);
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(pipeline = %self.spec.name, partition, error = %e, "source read failed; will retry");
                self.pause_briefly(PIPELINE_RETRY_BACKOFF).await;
                None
            }
            Err(e) => {
                tracing::error!(pipeline = %self.spec.name, error = %e, "source read task failed; will retry");
                self.pause_briefly(PIPELINE_RETRY_BACKOFF).await;
                None
            }
        }
    }

    /// Runs `input` through the plugins and commits what comes out. When a plugin fails on an
    /// input of several batches (or the output refuses what it made), each batch is tried on its
    /// own, so only the batch it fails on goes to the dead-letter topic.
    async fn handle_input(&mut self, partition: u32, input: Input, out_partitions: u32, split: bool) -> Outcome {
        let failure = match self.apply(partition, &input, out_partitions).await {
            None => return Outcome::RetryLater,
            Some(Ok(applied)) => match self.commit(partition, &input, applied).await {
                Ok(outcome) => return outcome,
                Err(refused) => refused,
            },
            Some(Err(failure)) => failure,
        };
        self.rollback().await;
        if self.stale {
            return Outcome::Done;
        }
        if split && input.batches.len() > 1 {
            for one in input.split() {
                if self.spec.paused || self.stale {
                    // Paused itself on a failure: the rest waits, uncommitted, for a resume.
                    return Outcome::Done;
                }
                if Box::pin(self.handle_input(partition, one, out_partitions, false)).await == Outcome::RetryLater {
                    return Outcome::RetryLater;
                }
            }
            return Outcome::Done;
        }
        self.fail(partition, input, failure).await
    }

    /// The plugins' output for `input`; `None` when the plugin task itself failed (the plugins
    /// are lost with it and rebuilt from storage).
    async fn apply(&mut self, partition: u32, input: &Input, out_partitions: u32) -> Option<Result<Applied, Failure>> {
        let (from, input) = (self.spec.from.clone(), input.clone());
        let applied = self
            .chain
            .call(AfterFailure::Keep, move |chain| {
                Ok::<_, std::convert::Infallible>(chain.apply(&from, partition, &input, out_partitions))
            })
            .await;
        match applied {
            Ok(applied) => Some(applied),
            Err(SlotError::Empty) => None,
            Err(e) => {
                tracing::error!(pipeline = %self.spec.name, partition, error = %e, "rebuilding the plugins");
                self.stale = true;
                None
            }
        }
    }

    /// Puts stateful plugins back to their committed state; when one cannot be, the plugins are
    /// rebuilt from storage before the next input.
    async fn rollback(&mut self) {
        match self.chain.call(AfterFailure::Drop, Chain::rollback).await {
            Ok(()) | Err(SlotError::Empty) => {}
            Err(SlotError::Failed(failure)) => {
                tracing::error!(pipeline = %self.spec.name, plugin = %failure.plugin, error = %failure.error,
                    "a plugin cannot return to its committed state; rebuilding the plugins from storage");
                self.stale = true;
            }
            Err(SlotError::Lost(e)) => {
                tracing::error!(pipeline = %self.spec.name, error = %e, "the plugin task failed; rebuilding the plugins");
                self.stale = true;
            }
        }
    }

    /// Commits the output of `input`. `Err`: the output topic refused it (too large, a partition
    /// gone), which is handled as a failure of the input.
    async fn commit(&mut self, partition: u32, input: &Input, applied: Applied) -> Result<Outcome, Failure> {
        let Applied { outputs, records_out, snapshots } = applied;
        let mut progress = self.progress.clone();
        progress.next_offsets.insert(partition, input.next_offset);
        progress.snapshots = snapshots.clone();
        progress.counts.records_in += input.records;
        progress.counts.records_out += records_out;
        progress.consecutive_failures = 0;
        let written: Vec<u32> = outputs.keys().copied().collect();
        let appends = outputs.into_iter().map(|(p, bytes)| (self.spec.to.clone(), p, bytes)).collect();
        match self.transact(appends, written, progress, None).await {
            Ok(()) => {
                if let Some(chain) = self.chain.get_mut() {
                    chain.commit(snapshots);
                }
                Ok(Outcome::Done)
            }
            // Unknown outcome: `transact` marked the runner stale.
            Err(AppendError::Storage(_) | AppendError::ShutDown) => Ok(Outcome::RetryLater),
            Err(refused) => Err(Failure {
                plugin: format!("output topic {}", self.spec.to),
                error: PluginError::BadOutput { plugin: self.spec.to.clone(), reason: refused.to_string() },
            }),
        }
    }

    /// A plugin failed on `input` (one batch): try again later if it asked, else dead-letter the
    /// batch and move on; pause after too many failures in a row.
    async fn fail(&mut self, partition: u32, input: Input, failure: Failure) -> Outcome {
        let error = failure.error.to_string();
        let tries = self.retries.get(&partition).copied().unwrap_or(0);
        if failure.retryable() && tries < PIPELINE_RETRIES_MAX {
            tracing::warn!(pipeline = %self.spec.name, partition, offset = input.first_offset(), %error, retry = tries + 1, "plugin asked to retry");
            return Outcome::RetryLater;
        }
        let dead_letter_topic = self.spec.dead_letter_topic();
        if let Err(e) = self.ensure_dead_letter_topic(&dead_letter_topic).await {
            self.pause_itself(format!("cannot create the dead-letter topic {dead_letter_topic:?}: {e}")).await;
            return Outcome::Done;
        }
        let why = DeadLetter {
            plugin: &failure.plugin,
            error: &error,
            source_topic: &self.spec.from,
            source_partition: partition,
        };
        let letters = match batches::dead_letters(&input, &why) {
            Ok(letters) => letters,
            Err(e) => {
                self.pause_itself(format!("cannot dead-letter offsets from {}: {e}", input.first_offset())).await;
                return Outcome::Done;
            }
        };
        tracing::warn!(pipeline = %self.spec.name, partition, first_offset = input.first_offset(), records = input.records,
            plugin = %failure.plugin, %error, dead_letter_topic = %dead_letter_topic, "batch failed; dead-lettered");
        let mut progress = self.progress.clone();
        progress.next_offsets.insert(partition, input.next_offset);
        progress.counts.records_in += input.records;
        progress.counts.batches_failed += 1;
        progress.counts.records_dead_lettered += input.records;
        progress.consecutive_failures += 1;
        progress.last_error = Some(format!("{}: {error}", failure.plugin));
        let mut spec = None;
        if progress.consecutive_failures >= self.spec.pause_after_failures {
            let reason = format!(
                "paused after {} failed batches in a row; the last: {}: {error}",
                progress.consecutive_failures, failure.plugin
            );
            tracing::error!(pipeline = %self.spec.name, %reason, "pipeline paused itself");
            progress.pause_reason = Some(reason);
            spec = Some(PipelineSpec { paused: true, ..self.spec.clone() });
        }
        match self.transact(vec![(dead_letter_topic.clone(), 0, letters)], Vec::new(), progress, spec).await {
            Ok(()) => Outcome::Done,
            Err(AppendError::Storage(_) | AppendError::ShutDown) => Outcome::RetryLater,
            Err(refused) => {
                self.pause_itself(format!(
                    "the dead-letter topic {dead_letter_topic:?} refused a failed batch: {refused}"
                ))
                .await;
                Outcome::Done
            }
        }
    }

    /// Creates the dead-letter topic on first use, taking batches as large as the source's plus
    /// room for the headers a dead letter carries.
    async fn ensure_dead_letter_topic(&self, name: &str) -> Result<(), TopicError> {
        if self.store.topic(name).is_some() {
            return Ok(());
        }
        let source_max = self.store.topic(&self.spec.from).map_or(0, |t| t.config.max_message_bytes);
        let default = TopicConfig::default();
        let max_message_bytes =
            default.max_message_bytes.max(source_max.saturating_add(PIPELINE_DEAD_LETTER_HEADROOM_BYTES));
        let config = TopicConfig { max_message_bytes, ..default };
        self.store.topic_or_create(name, 1, config).await.map(drop)
    }

    /// Commits `appends` with `progress` (and `spec`, when it changes) in one transaction; the
    /// first `outputs.len()` appends are the output topic's, recorded in the history. A storage
    /// error leaves the outcome unknown: the runner goes stale.
    async fn transact(
        &mut self,
        appends: Vec<(String, u32, Vec<u8>)>,
        outputs: Vec<u32>,
        mut progress: Progress,
        spec: Option<PipelineSpec>,
    ) -> Result<(), AppendError> {
        let name = self.spec.name.clone();
        let (staged, staged_outputs, staged_spec) = (progress.clone(), outputs.clone(), spec.clone());
        let documents = Documents(Box::new(move |outcomes| {
            let mut progress = staged;
            progress.record_outputs(ranges(&staged_outputs, outcomes));
            let mut writes = vec![DocumentWrite {
                kind: PROGRESS_KIND.into(),
                name: name.clone(),
                document: Some(progress.encode()),
            }];
            if let Some(spec) = staged_spec {
                let document = serde_json::to_vec(&spec).expect("a pipeline spec encodes");
                writes.push(DocumentWrite { kind: KIND.into(), name, document: Some(document) });
            }
            writes
        }));
        let outcomes = match self.store.transact(appends, documents, Some(self.generation)).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                if matches!(e, AppendError::Storage(_) | AppendError::ShutDown) {
                    tracing::warn!(pipeline = %self.spec.name, error = %e, "pipeline commit failed; reloading from storage");
                    self.stale = true;
                }
                return Err(e);
            }
        };
        progress.record_outputs(ranges(&outputs, &outcomes));
        self.progress = progress;
        if let Some(spec) = spec {
            self.spec = spec;
        }
        self.publish();
        Ok(())
    }

    /// Stores a change of the pipeline itself (no records).
    async fn save(&mut self, spec: PipelineSpec, progress: Progress) -> Result<(), RegistryError> {
        self.transact(Vec::new(), Vec::new(), progress, Some(spec)).await.map_err(RegistryError::Write)
    }

    async fn pause_itself(&mut self, reason: String) {
        tracing::error!(pipeline = %self.spec.name, %reason, "pipeline paused itself");
        let mut progress = self.progress.clone();
        progress.pause_reason = Some(reason.clone());
        let spec = PipelineSpec { paused: true, ..self.spec.clone() };
        if let Err(e) = self.save(spec.clone(), progress.clone()).await {
            // Paused in memory only: after a restart the pipeline runs, meets the same problem
            // and pauses again.
            tracing::error!(pipeline = %self.spec.name, error = %e, "cannot store the pause");
            (self.spec, self.progress, self.stale) = (spec, progress, false);
            self.publish();
        }
    }

    /// Waits before `partition`'s input is tried again: doubling with each try, bounded.
    async fn back_off(&mut self, partition: u32) {
        let tries = self.retries.entry(partition).or_default();
        let wait = PIPELINE_RETRY_BACKOFF * 2u32.saturating_pow((*tries).min(8));
        *tries = tries.saturating_add(1);
        self.pause_briefly(wait).await;
    }

    /// Sleeps, but not through the broker stopping or an operator's command (kept for the loop).
    async fn pause_briefly(&mut self, wait: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.stopping.changed() => {}
            command = self.control.recv() => {
                if let Some(command) = command {
                    self.pending.push_back(command);
                }
            }
        }
    }

    /// `false`: stop.
    async fn handle(&mut self, command: Control) -> bool {
        match command {
            Control::Stop { reply } => {
                let _ = reply.send(());
                return false;
            }
            Control::Pause { reply } => {
                let spec = PipelineSpec { paused: true, ..self.spec.clone() };
                let _ = reply.send(self.save(spec, self.progress.clone()).await);
            }
            Control::Resume { reply } => {
                let _ = reply.send(self.resume().await);
            }
            Control::Upgrade { spec, chain, reply } => {
                let _ = reply.send(self.upgrade(*spec, *chain).await);
            }
        }
        true
    }

    async fn resume(&mut self) -> Result<(), RegistryError> {
        if !self.chain.is_loaded() {
            let (catalog, spec, snapshots) = (self.catalog.clone(), self.spec.clone(), self.progress.snapshots.clone());
            let built = tokio::task::spawn_blocking(move || Chain::build(&catalog, &spec, &snapshots))
                .await
                .map_err(|e| RegistryError::Unavailable(format!("the plugin task failed: {e}")))?;
            match built {
                Ok(chain) => {
                    self.chain.put(chain);
                    self.unloaded = None;
                }
                Err(e) => {
                    self.unloaded = Some(e.to_string());
                    self.publish();
                    return Err(RegistryError::Conflict(format!("the pipeline's plugins cannot be loaded: {e}")));
                }
            }
        }
        let mut progress = self.progress.clone();
        progress.pause_reason = None;
        progress.consecutive_failures = 0;
        let spec = PipelineSpec { paused: false, ..self.spec.clone() };
        self.save(spec, progress).await
    }

    /// Swaps the plugins between two inputs: everything before is committed with the old ones,
    /// everything after goes through the new ones. Everything but the plugins stays as the
    /// runner has it (a pause that happened meanwhile stays).
    async fn upgrade(&mut self, new: PipelineSpec, mut chain: Chain) -> Result<(), RegistryError> {
        let spec = PipelineSpec { plugins: new.plugins, partitioner: new.partitioner, ..self.spec.clone() };
        let previous = self.chain.take();
        // The running plugins' state, or (when they could not be loaded) the stored one.
        let (labels, states) = match &previous {
            Some(old) => (old.labels(), old.committed()),
            None => (self.spec.stages().map(|s| s.label()).collect(), self.progress.snapshots.clone()),
        };
        let joined = tokio::task::spawn_blocking(move || {
            let adopted = chain.adopt_state(&labels, &states);
            (previous, chain, adopted)
        })
        .await;
        let Ok((previous, chain, adopted)) = joined else {
            self.stale = true;
            return Err(RegistryError::Unavailable("the plugin task failed during the upgrade".into()));
        };
        if let Err(failure) = adopted {
            self.chain = previous.map_or_else(Slot::default, Slot::new);
            return Err(RegistryError::Conflict(format!(
                "{} cannot take over the running state: {}",
                failure.plugin, failure.error
            )));
        }
        let mut progress = self.progress.clone();
        progress.snapshots = chain.committed();
        progress.begin_segment(chain.labels(), crate::clock::now_ms());
        self.chain.put(chain);
        match self.save(spec, progress).await {
            Ok(()) => {
                self.unloaded = None;
                tracing::info!(pipeline = %self.spec.name, plugins = ?self.chain.get().map(Chain::labels), "pipeline upgraded");
                self.publish();
                Ok(())
            }
            Err(e) => {
                self.chain = previous.map_or_else(Slot::default, Slot::new);
                Err(e)
            }
        }
    }
}

enum Wake {
    Command(Control),
    Input,
    Stop,
}

/// `(partition, first, last)` of each output append.
fn ranges(partitions: &[u32], outcomes: &[crate::storage::AppendOutcome]) -> Vec<(u32, u64, u64)> {
    partitions.iter().zip(outcomes).map(|(p, o)| (*p, o.base_offset, o.last_offset)).collect()
}
