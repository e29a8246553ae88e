//! A pipeline's plugins, instantiated, applied to one input at a time (blocking: run it off the
//! async runtime), with the state each stateful plugin had at the last commit.

use std::collections::BTreeMap;

use super::batches::{self, Input};
use super::spec::PipelineSpec;
use crate::plugins::{ErrorKind, PluginCatalog, PluginError, PluginInstance, PluginKind, StageSpec, load_instance};
use crate::records::RecordsError;

/// One plugin of the chain.
struct Stage {
    /// `name@version`.
    label: String,
    instance: PluginInstance,
    /// The state committed with the pipeline's progress (empty when stateless).
    committed: Vec<u8>,
}

pub struct Chain {
    stages: Vec<Stage>,
    partitioner: Option<Stage>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.labels()).finish()
    }
}

/// A plugin failed on an input.
#[derive(Debug, Clone)]
pub struct Failure {
    /// `name@version` of the plugin.
    pub plugin: String,
    pub error: PluginError,
}

impl Failure {
    /// The plugin said trying again may help.
    pub fn retryable(&self) -> bool {
        matches!(self.error, PluginError::Returned { kind: ErrorKind::Retryable, .. })
    }
}

/// What the chain made of an input.
#[derive(Debug)]
pub struct Applied {
    /// Output batches per output partition.
    pub outputs: BTreeMap<u32, Vec<u8>>,
    pub records_out: u64,
    /// Every stage's state after this input (empty for stateless stages).
    pub snapshots: Vec<Vec<u8>>,
}

/// Why a chain could not be built: `(field, message)` for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl Chain {
    /// Instantiates and configures every stage of `spec` (whose versions are resolved), restored
    /// to `snapshots` where given. Blocking: loading a plugin may compile it.
    pub fn build(catalog: &PluginCatalog, spec: &PipelineSpec, snapshots: &[Vec<u8>]) -> Result<Chain, BuildError> {
        let mut stages = Vec::with_capacity(spec.plugins.len());
        for (i, stage) in spec.plugins.iter().enumerate() {
            let field = format!("plugins[{i}]");
            let built = build_stage(catalog, spec, stage, &field, snapshots.get(i))?;
            let kind = built.instance.metadata().kind;
            if kind == PluginKind::Partitioner {
                return Err(BuildError {
                    field,
                    message: format!("{} is a partitioner: give it as the pipeline's partitioner", built.label),
                });
            }
            stages.push(built);
        }
        let partitioner = match &spec.partitioner {
            None => None,
            Some(stage) => {
                let built = build_stage(catalog, spec, stage, "partitioner", snapshots.get(spec.plugins.len()))?;
                let kind = built.instance.metadata().kind;
                if kind != PluginKind::Partitioner {
                    return Err(BuildError {
                        field: "partitioner".into(),
                        message: format!("{} is a {kind:?} plugin, not a partitioner", built.label),
                    });
                }
                Some(built)
            }
        };
        Ok(Chain { stages, partitioner })
    }

    /// `name@version` of every stage, the partitioner last.
    pub fn labels(&self) -> Vec<String> {
        self.all().map(|stage| stage.label.clone()).collect()
    }

    fn all(&self) -> impl Iterator<Item = &Stage> {
        self.stages.iter().chain(&self.partitioner)
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Stage> {
        self.stages.iter_mut().chain(&mut self.partitioner)
    }

    /// The committed state of every stage.
    pub fn committed(&self) -> Vec<Vec<u8>> {
        self.all().map(|stage| stage.committed.clone()).collect()
    }

    /// Runs `input` (from `topic` partition `partition`) through every stage and splits the
    /// result over `partitions` output partitions.
    pub fn apply(&mut self, topic: &str, partition: u32, input: &Input, partitions: u32) -> Result<Applied, Failure> {
        let base_offset = input.first_offset();
        let mut bytes = input.bytes.clone();
        for stage in &mut self.stages {
            let fail = |error| Failure { plugin: stage.label.clone(), error };
            bytes = match stage.instance.metadata().kind {
                PluginKind::Ingest => {
                    let messages = batches::source_messages(&bytes, topic)
                        .map_err(|reason| fail(bad_output(&stage.label, reason)))?;
                    stage.instance.ingest(&messages)
                }
                _ => stage.instance.transform(topic, partition, base_offset, &bytes),
            }
            .map_err(fail)?;
        }
        let records_out = crate::records::records_count(&bytes) as u64;
        let outputs = match &mut self.partitioner {
            _ if bytes.is_empty() => BTreeMap::new(),
            None => {
                let label = self.stages.last().map_or_else(String::new, |stage| stage.label.clone());
                let bytes = batches::without_gaps(bytes)
                    .map_err(|reason| Failure { plugin: label.clone(), error: bad_output(&label, reason) })?;
                BTreeMap::from([(partition % partitions.max(1), bytes)])
            }
            Some(stage) => {
                let fail = |error| Failure { plugin: stage.label.clone(), error };
                let chosen = stage
                    .instance
                    .partition(topic, base_offset, &bytes, partitions, records_out as usize)
                    .map_err(fail)?;
                crate::records::split_by_partition(&bytes, &chosen)
                    .map_err(|reason| fail(bad_output(&stage.label, reason)))?
            }
        };
        let mut snapshots = Vec::new();
        for stage in self.all_mut() {
            let state = if stage.instance.metadata().stateful {
                stage.instance.snapshot().map_err(|error| Failure { plugin: stage.label.clone(), error })?
            } else {
                Vec::new()
            };
            snapshots.push(state);
        }
        Ok(Applied { outputs, records_out, snapshots })
    }

    /// The states of an [`Applied`] are durable now.
    pub fn commit(&mut self, snapshots: Vec<Vec<u8>>) {
        for (stage, state) in self.all_mut().zip(snapshots) {
            if stage.instance.metadata().stateful {
                stage.instance.commit_state(state.clone());
                stage.committed = state;
            }
        }
    }

    /// Takes over the state of the stages a running chain had (`labels` and their committed
    /// `states`, in stage order), where the same plugin (any version) is at the same place: an
    /// upgraded stateful plugin carries on from where the old version was.
    pub fn adopt_state(&mut self, labels: &[String], states: &[Vec<u8>]) -> Result<(), Failure> {
        let name = |label: &str| label.split('@').next().unwrap_or_default().to_owned();
        for (i, stage) in self.all_mut().enumerate() {
            let (Some(label), Some(state)) = (labels.get(i), states.get(i)) else { continue };
            if !stage.instance.metadata().stateful || state.is_empty() || name(label) != name(&stage.label) {
                continue;
            }
            stage.instance.restore(state.clone()).map_err(|error| Failure { plugin: stage.label.clone(), error })?;
            stage.committed = state.clone();
        }
        Ok(())
    }

    /// Puts every stateful stage back to its committed state (after a failure or a commit that
    /// did not happen).
    pub fn rollback(&mut self) -> Result<(), Failure> {
        for stage in self.all_mut() {
            if stage.instance.metadata().stateful {
                let state = stage.committed.clone();
                stage.instance.restore(state).map_err(|error| Failure { plugin: stage.label.clone(), error })?;
            }
        }
        Ok(())
    }
}

fn bad_output(plugin: &str, reason: RecordsError) -> PluginError {
    // The reason becomes a dead letter's header and the pipeline's status: text from here on.
    PluginError::BadOutput { plugin: plugin.to_owned(), reason: reason.to_string() }
}

fn build_stage(
    catalog: &PluginCatalog,
    spec: &PipelineSpec,
    stage: &StageSpec,
    field: &str,
    snapshot: Option<&Vec<u8>>,
) -> Result<Stage, BuildError> {
    let refuse = |message: String| BuildError { field: field.to_owned(), message };
    let (label, mut instance) =
        load_instance(catalog, stage, spec.plugin_limits()).map_err(|e| refuse(e.to_string()))?;
    let mut committed = Vec::new();
    if instance.metadata().stateful {
        match snapshot.filter(|state| !state.is_empty()) {
            Some(state) => {
                instance.restore(state.clone()).map_err(|e| refuse(format!("cannot restore its state: {e}")))?;
                committed = state.clone();
            }
            // A fresh plugin's state is what a rollback returns to until the first commit.
            None => {
                committed = instance.snapshot().map_err(|e| refuse(e.to_string()))?;
                instance.commit_state(committed.clone());
            }
        }
    }
    Ok(Stage { label, instance, committed })
}
