//! What a pipeline is, as the admin API and the CLI give it (a JSON document stored under
//! kind `pipelines`), and what it has done so far (its progress, stored beside it and rewritten
//! in the same transaction as every output batch).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits::{PIPELINE_FAILURES_BEFORE_PAUSE_DEFAULT, PIPELINE_HISTORY_MAX, PIPELINE_STAGES_MAX};
use crate::plugins::{PluginLimits, StageSpec};

/// The storage kind of pipeline documents.
pub const KIND: &str = "pipelines";
/// The storage kind of pipelines' progress.
pub const PROGRESS_KIND: &str = "pipeline-progress";

/// A pipeline: records read from `from`, passed through `plugins` in order, appended to `to`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub name: String,
    pub from: String,
    pub to: String,
    /// Transform (or ingest) plugins, applied in order.
    pub plugins: Vec<StageSpec>,
    /// Chooses each output record's partition; without one, a record keeps its source partition
    /// (modulo the output topic's partition count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioner: Option<StageSpec>,
    /// Where a new pipeline starts reading.
    #[serde(default)]
    pub start: StartAt,
    /// Where batches a plugin fails on go; `<from>.dlq` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// Failed batches in a row after which the pipeline pauses itself.
    #[serde(default = "default_failures_before_pause")]
    pub pause_after_failures: u32,
    /// Budgets of each plugin call; the runtime's defaults when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSpec>,
    /// Set by `pause` (or by the pipeline itself after failures), cleared by `resume`.
    #[serde(default)]
    pub paused: bool,
}

fn default_failures_before_pause() -> u32 {
    PIPELINE_FAILURES_BEFORE_PAUSE_DEFAULT
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Every record the source topic still has.
    #[default]
    Earliest,
    /// Only records appended after the pipeline is created.
    Latest,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub fuel_per_call: Option<u64>,
    pub memory_bytes: Option<usize>,
}

impl PipelineSpec {
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter_topic.clone().unwrap_or_else(|| format!("{}.dlq", self.from))
    }

    pub fn plugin_limits(&self) -> PluginLimits {
        let defaults = PluginLimits::default();
        match self.limits {
            None => defaults,
            Some(limits) => PluginLimits {
                fuel_per_call: limits.fuel_per_call.unwrap_or(defaults.fuel_per_call),
                memory_bytes: limits.memory_bytes.unwrap_or(defaults.memory_bytes),
            },
        }
    }

    /// Every stage: the plugins, then the partitioner.
    pub fn stages(&self) -> impl Iterator<Item = &StageSpec> {
        self.plugins.iter().chain(&self.partitioner)
    }

    /// Checks what can be checked without the broker: `(field, message)` on error.
    pub fn check_shape(&self) -> Result<(), (String, String)> {
        if self.plugins.is_empty() {
            return Err(("plugins".into(), "a pipeline needs at least one plugin".into()));
        }
        if self.plugins.len() > PIPELINE_STAGES_MAX {
            return Err(("plugins".into(), format!("at most {PIPELINE_STAGES_MAX} plugins per pipeline")));
        }
        if self.from == self.to {
            return Err(("to".into(), "a pipeline cannot write to the topic it reads".into()));
        }
        if self.dead_letter_topic() == self.from || self.dead_letter_topic() == self.to {
            return Err(("dead_letter_topic".into(), "must differ from the source and the output".into()));
        }
        if self.pause_after_failures == 0 {
            return Err(("pause_after_failures".into(), "must be at least 1".into()));
        }
        if let Some(limits) = self.limits {
            if limits.fuel_per_call == Some(0) {
                return Err(("limits.fuel_per_call".into(), "must be at least 1".into()));
            }
            if limits.memory_bytes.is_some_and(|bytes| bytes < 1 << 20) {
                return Err(("limits.memory_bytes".into(), "must be at least 1 MiB".into()));
            }
        }
        Ok(())
    }
}

/// What a pipeline has done: rewritten with every commit, in the commit's transaction.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    /// Per source partition, the next offset to read.
    pub next_offsets: BTreeMap<u32, u64>,
    /// The state of each stage (in [`PipelineSpec::stages`] order; empty for stateless ones),
    /// as of `next_offsets`.
    pub snapshots: Vec<Vec<u8>>,
    pub counts: Counts,
    /// Failed batches in a row.
    pub consecutive_failures: u32,
    /// Why the pipeline paused itself, until it is resumed.
    pub pause_reason: Option<String>,
    pub last_error: Option<String>,
    /// Which plugin versions produced which output offsets, oldest first (bounded).
    pub history: Vec<Segment>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub records_in: u64,
    pub records_out: u64,
    pub batches_failed: u64,
    pub records_dead_lettered: u64,
    /// Records the source topic's retention deleted before the pipeline read them.
    pub records_skipped: u64,
}

/// A run of one set of plugin versions.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Segment {
    /// `name@version` of every stage.
    pub plugins: Vec<String>,
    pub started_ms: i64,
    /// Per output partition, the first and last offset this run wrote.
    pub outputs: BTreeMap<u32, (u64, u64)>,
}

impl Progress {
    /// Starts a new history segment (at creation and at every upgrade).
    pub fn begin_segment(&mut self, plugins: Vec<String>, now_ms: i64) {
        self.history.push(Segment { plugins, started_ms: now_ms, outputs: BTreeMap::new() });
        if self.history.len() > PIPELINE_HISTORY_MAX {
            self.history.remove(0);
        }
    }

    /// Records output offsets in the current segment.
    pub fn record_outputs(&mut self, outputs: impl IntoIterator<Item = (u32, u64, u64)>) {
        let Some(segment) = self.history.last_mut() else { return };
        for (partition, first, last) in outputs {
            segment.outputs.entry(partition).and_modify(|range| range.1 = last).or_insert((first, last));
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("progress encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("stored pipeline progress does not decode: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> PipelineSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_and_shape_checks() {
        let s = spec(serde_json::json!({"name": "p", "from": "a", "to": "b", "plugins": [{"plugin": "f"}]}));
        assert_eq!((s.start, s.pause_after_failures, s.dead_letter_topic()), (StartAt::Earliest, 10, "a.dlq".into()));
        assert_eq!(s.check_shape(), Ok(()));
        let loop_back = spec(serde_json::json!({"name": "p", "from": "a", "to": "a", "plugins": [{"plugin": "f"}]}));
        assert_eq!(loop_back.check_shape().unwrap_err().0, "to");
        let none = spec(serde_json::json!({"name": "p", "from": "a", "to": "b", "plugins": []}));
        assert_eq!(none.check_shape().unwrap_err().0, "plugins");
    }

    #[test]
    fn progress_round_trips_and_history_names_output_ranges() {
        let mut progress = Progress::default();
        progress.begin_segment(vec!["f@1".into()], 5);
        progress.record_outputs([(0, 0, 9), (1, 0, 4)]);
        progress.record_outputs([(0, 10, 19)]);
        progress.begin_segment(vec!["f@2".into()], 6);
        progress.record_outputs([(0, 20, 29)]);
        assert_eq!(progress.history[0].outputs[&0], (0, 19));
        assert_eq!(progress.history[1].outputs[&0], (20, 29));
        assert_eq!(Progress::decode(&progress.encode()).unwrap(), progress);
    }
}
