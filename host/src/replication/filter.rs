//! A mirror's filter: a transform plugin run over the batches an edge ships, so that a metered
//! link carries only what the aggregation node needs (a downsampled series, readings past a
//! threshold, records without a private field).
//!
//! The copy keeps the edge's offsets. Each filtered batch goes upstream over the range of the
//! batch it came from, its surviving records at their own offsets (the plugin contract says how:
//! `wit/plugin.wit`, `transform`), gaps where records were dropped, as in a compacted Kafka topic.
//! A batch left with no record goes as an empty batch over its range, which consumers step over.
//! A batch kept whole goes as it was stored. The follower needs no change: ranges are what it
//! checks.
//!
//! A stateful plugin (downsampling) must see each record once, in order; yet the leader sends
//! again from the follower's end after a connection is lost. So the plugin's state is
//! checkpointed after every filtered read, and a read that does not continue the previous one
//! puts back the checkpoint at or before where it starts and replays the records in between
//! through the plugin (their output discarded). The checkpoint at or below the acknowledged
//! offset is saved beside the acknowledged offsets, so a restart resumes from it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;

use rill_core::batch::{self, BatchError, BatchHeader, Compression};
use rill_core::replication::ReadFailure;
use serde::{Deserialize, Serialize};

use crate::compression::{self, RebuildError, plain_batch, with_records};
use crate::limits::{
    DECOMPRESSED_BYTES_MAX, MIRROR_FILTER_CHECKPOINT_BYTES_MAX, MIRROR_FILTER_CHECKPOINTS_MAX,
    MIRROR_FILTER_REPLAY_BYTES_MAX, MIRROR_FRAME_BYTES,
};
use crate::plugins::StageSpec;
use crate::plugins::catalog::CatalogError;
use crate::plugins::{CompiledPlugin, ErrorKind, PluginCatalog, PluginError, PluginInstance, PluginKind, PluginLimits};
use crate::storage::{DocumentWrite, Store};

/// The storage kind of a mirror's filter states (named after the mirror).
pub const STATE_KIND: &str = "mirror-filter-state";

/// A mirrored partition as the filter knows it: `topic/partition` and the topic's incarnation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilterKey {
    pub partition: String,
    pub incarnation: uuid::Uuid,
}

/// What the filter did, for the mirror's status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterCounts {
    /// Records the plugin dropped from what went upstream.
    pub records_dropped: u64,
    /// Batches the plugin refused as invalid input: they went upstream empty (a gap).
    pub batches_refused: u64,
}

/// A plugin state saved with the offset it was taken at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SavedState {
    incarnation: uuid::Uuid,
    offset: u64,
    state: Vec<u8>,
}

/// The states of a written document, by partition.
#[derive(Debug)]
pub struct SavedPartitions(BTreeMap<String, SavedState>);

/// Per partition (`topic/partition`), the incarnation and offset of the filter state saved for
/// `mirror`: retention keeps what a restart would replay.
pub fn saved_offsets(store: &Store, mirror: &str) -> BTreeMap<String, (uuid::Uuid, u64)> {
    let saved = store.resource(STATE_KIND, mirror).ok().flatten();
    let saved = saved.and_then(|bytes| postcard::from_bytes::<SavedStates>(&bytes).ok()).unwrap_or_default();
    saved.partitions.into_iter().map(|(partition, state)| (partition, (state.incarnation, state.offset))).collect()
}

/// A mirror's saved states: which plugin and configuration they belong to, and one per
/// partition.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedStates {
    plugin: String,
    partitions: BTreeMap<String, SavedState>,
}

/// The filter of one partition: its own plugin instance, so that rewinding one partition leaves
/// the others' state alone.
struct Partition {
    instance: PluginInstance,
    /// Where the next read continues the last one; anything else is a rewind. [`UNKNOWN`] at
    /// first (the state is rebuilt from the log start) and after a failure.
    next: u64,
    /// States after recent reads, oldest first: (offset read up to, state). Stateful plugins only.
    checkpoints: VecDeque<(u64, Vec<u8>)>,
    /// The latest state at or below the acknowledged offset: what is saved, and the oldest point
    /// a rewind can return to.
    committed: (u64, Vec<u8>),
}

impl Partition {
    /// Keeps the state after a read that ended at `end`. Past the bounds, every other checkpoint
    /// between the oldest and the newest goes: the oldest is the next to become committed, the
    /// newest where the next read starts, and a rewind between replays a little more.
    fn checkpoint(&mut self, end: u64, state: Vec<u8>) {
        self.checkpoints.push_back((end, state));
        thin(&mut self.checkpoints);
    }
}

/// Past the bounds, every other checkpoint between the oldest and the newest goes.
fn thin(checkpoints: &mut VecDeque<(u64, Vec<u8>)>) {
    let bytes = |c: &VecDeque<(u64, Vec<u8>)>| c.iter().map(|(_, state)| state.len()).sum::<usize>();
    while checkpoints.len() > 2
        && (checkpoints.len() > MIRROR_FILTER_CHECKPOINTS_MAX
            || bytes(checkpoints) > MIRROR_FILTER_CHECKPOINT_BYTES_MAX)
    {
        let last = checkpoints.len() - 1;
        let mut index = 0;
        checkpoints.retain(|_| {
            let keep = index == 0 || index == last || index % 2 == 0;
            index += 1;
            keep
        });
    }
}

/// [`Partition::next`] when the state must be rebuilt before the next read.
const UNKNOWN: u64 = u64::MAX;

/// A loaded filter: the plugin, and its instances per partition.
pub struct MirrorFilter {
    label: String,
    /// The plugin and its configuration: a saved state belongs to exactly these.
    identity: String,
    mirror: String,
    stage: StageSpec,
    catalog: PluginCatalog,
    compiled: CompiledPlugin,
    stateful: bool,
    /// A fresh instance's state: where a partition starts over when no checkpoint is early enough.
    initial_state: Vec<u8>,
    partitions: HashMap<FilterKey, Partition>,
    saved: BTreeMap<String, SavedState>,
    /// A committed state moved since the last [`state_document`](Self::state_document).
    unsaved: bool,
    counts: FilterCounts,
}

impl std::fmt::Debug for MirrorFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorFilter").field("plugin", &self.label).field("mirror", &self.mirror).finish()
    }
}

/// Why filtering failed: the connection closes and the mirror tries again after its back-off.
fn failed(label: &str, reason: impl std::fmt::Display) -> ReadFailure {
    ReadFailure::Failed(format!("filter {label}: {reason}"))
}

/// Why a partition cannot be filtered, whatever is tried again: it stops, the others go on.
fn unshippable(label: &str, reason: impl std::fmt::Display) -> ReadFailure {
    ReadFailure::Unshippable(format!("filter {label}: {reason}"))
}

/// A plugin error as the leader takes it: a passing condition is tried again later; anything
/// else (a trap, a fatal error, output that does not keep offsets) stops the partition.
fn plugin_failure(label: &str, error: PluginError) -> ReadFailure {
    match error {
        PluginError::Returned { kind: ErrorKind::Retryable, .. } => failed(label, error),
        other => unshippable(label, other),
    }
}

impl MirrorFilter {
    /// Loads `stage` (a transform plugin) for mirror `mirror`, with the states it saved.
    /// Blocking: loading may compile.
    pub fn load(
        catalog: &PluginCatalog,
        store: &Store,
        mirror: &str,
        stage: &StageSpec,
    ) -> Result<Self, FilterLoadError> {
        let artifact = catalog.resolve(&stage.plugin, stage.version.as_deref())?;
        let compiled =
            catalog.load(&artifact).map_err(|source| FilterLoadError::Compile { label: artifact.label(), source })?;
        let label = artifact.label();
        let mut probe = instantiate(catalog, &compiled, stage)?;
        let kind = probe.metadata().kind;
        if kind != PluginKind::Transform {
            return Err(FilterLoadError::NotATransform { label, kind });
        }
        let stateful = probe.metadata().stateful;
        let initial_state = if stateful { probe.snapshot()? } else { Vec::new() };
        let identity = format!("{label} {:?}", stage.config);
        let saved = store
            .resource(STATE_KIND, mirror)
            .ok()
            .flatten()
            .and_then(|bytes| postcard::from_bytes::<SavedStates>(&bytes).ok())
            .filter(|saved| saved.plugin == identity)
            .map(|saved| saved.partitions)
            .unwrap_or_default();
        Ok(MirrorFilter {
            label,
            identity,
            mirror: mirror.to_owned(),
            stage: stage.clone(),
            catalog: catalog.clone(),
            compiled,
            stateful,
            initial_state,
            partitions: HashMap::new(),
            saved,
            unsaved: false,
            counts: FilterCounts::default(),
        })
    }

    /// `name@version`.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn counts(&self) -> FilterCounts {
        self.counts
    }

    /// Forgets partitions no longer mirrored (a deleted topic, an old incarnation): their
    /// instances and states.
    pub fn retain(&mut self, mirrored: &[FilterKey]) {
        self.partitions.retain(|key, _| mirrored.contains(key));
        self.saved.retain(|partition, saved| {
            mirrored.iter().any(|key| &key.partition == partition && key.incarnation == saved.incarnation)
        });
    }

    /// The filter of `key`, made on first use (and restored to its saved state).
    fn partition(&mut self, key: &FilterKey) -> Result<&mut Partition, ReadFailure> {
        if !self.partitions.contains_key(key) {
            let mut instance =
                instantiate(&self.catalog, &self.compiled, &self.stage).map_err(|e| failed(&self.label, e))?;
            let saved = self.saved.get(&key.partition).filter(|saved| saved.incarnation == key.incarnation);
            // Without a saved state, the state is rebuilt from the log start to the first read.
            let mut committed = (0, self.initial_state.clone());
            let mut next = UNKNOWN;
            if let Some(saved) = saved.filter(|_| self.stateful) {
                match instance.restore(saved.state.clone()) {
                    Ok(()) => (committed, next) = ((saved.offset, saved.state.clone()), saved.offset),
                    Err(e) => tracing::warn!(
                        mirror = %self.mirror, partition = %key.partition, plugin = %self.label, error = %e,
                        "the filter's saved state is refused; the partition's filter starts afresh"
                    ),
                }
            }
            let fresh = Partition { instance, next, checkpoints: VecDeque::new(), committed };
            self.partitions.insert(key.clone(), fresh);
        }
        self.partitions.get_mut(key).ok_or_else(|| failed(&self.label, "partition vanished"))
    }

    /// Filters `raw` (whole stored batches, read at `offset` for shipping) below `durable_end`
    /// (the leader's, which ships no further) and about `max_bytes`; returns the batches to
    /// ship, over the same ranges. `read` reads the partition again for a replay.
    pub fn apply(
        &mut self,
        key: &FilterKey,
        (topic, partition): (&str, u32),
        (offset, durable_end, max_bytes): (u64, u64, usize),
        raw: &[u8],
        read: &mut dyn FnMut(u64, usize) -> Result<Vec<u8>, ReadFailure>,
    ) -> Result<Vec<u8>, ReadFailure> {
        let plugin = Plugin { label: self.label.clone(), topic, partition, stateful: self.stateful };
        let fresh_state = self.initial_state.clone();
        let part = self.partition(key)?;
        if plugin.stateful && part.next != offset {
            rewind(part, &plugin, &fresh_state, offset, read)?;
        }
        let range = offset..durable_end;
        let filtered = match filter_batches(&mut part.instance, &plugin, raw, range.clone(), max_bytes, Calls::Together)
        {
            // The state went part way into the batches: back to where they start, then one by one.
            Err(Failure::RefusedTogether) => {
                if plugin.stateful {
                    part.next = UNKNOWN;
                    rewind(part, &plugin, &fresh_state, offset, read)?;
                }
                filter_batches(&mut part.instance, &plugin, raw, range, max_bytes, Calls::EachBatch)
            }
            other => other,
        };
        let filtered = match filtered {
            Ok(filtered) => filtered,
            Err(e) => {
                // The state may be part way through the batches: the next read rewinds.
                part.next = UNKNOWN;
                return Err(e.into_read_failure(&plugin.label));
            }
        };
        part.next = filtered.next;
        if plugin.stateful && filtered.next > offset {
            match part.instance.snapshot() {
                Ok(state) => part.checkpoint(filtered.next, state),
                Err(e) => {
                    part.next = UNKNOWN;
                    return Err(plugin_failure(&plugin.label, e));
                }
            }
        }
        self.counts.records_dropped += filtered.records_dropped;
        self.counts.batches_refused += filtered.refused.len() as u64;
        for (base, reason) in &filtered.refused {
            tracing::error!(
                mirror = %self.mirror, partition = %key.partition, plugin = %plugin.label, offset = base, %reason,
                "the mirror filter refused a batch as invalid input: it goes upstream without records (a gap)"
            );
        }
        Ok(filtered.bytes)
    }

    /// The aggregation node holds `key` durably below `acked`: the state checkpointed there is
    /// the one to keep.
    pub fn acked(&mut self, key: &FilterKey, acked: u64) {
        let Some(part) = self.partitions.get_mut(key) else { return };
        while part.checkpoints.front().is_some_and(|(end, _)| *end <= acked) {
            if let Some(checkpoint) = part.checkpoints.pop_front() {
                part.committed = checkpoint;
                self.unsaved = true;
            }
        }
    }

    /// The committed states as one document to write with the acknowledged offsets, when one
    /// moved since the last saved; once written, [`state_saved`](Self::state_saved) says so.
    pub fn state_document(&self) -> Option<(DocumentWrite, SavedPartitions)> {
        if !self.stateful || !self.unsaved {
            return None;
        }
        let mut partitions = self.saved.clone();
        for (key, part) in &self.partitions {
            let (offset, state) = part.committed.clone();
            partitions.insert(key.partition.clone(), SavedState { incarnation: key.incarnation, offset, state });
        }
        let saved = SavedStates { plugin: self.identity.clone(), partitions };
        let document = postcard::to_allocvec(&saved).ok()?;
        let write = DocumentWrite { kind: STATE_KIND.into(), name: self.mirror.clone(), document: Some(document) };
        Some((write, SavedPartitions(saved.partitions)))
    }

    /// The document [`state_document`](Self::state_document) made is durable.
    pub fn state_saved(&mut self, saved: SavedPartitions) {
        self.saved = saved.0;
        self.unsaved = false;
    }

    /// Where a restart would replay `key` from (its saved state; the log start when none is
    /// saved yet): retention must keep what lies above. `None` for a stateless plugin.
    pub fn replay_floor(&self, key: &FilterKey) -> Option<u64> {
        let saved = self.saved.get(&key.partition).filter(|saved| saved.incarnation == key.incarnation);
        self.stateful.then(|| saved.map_or(0, |saved| saved.offset))
    }
}

/// Why a mirror's filter cannot run (the mirror waits, showing why).
#[derive(Debug, thiserror::Error)]
pub enum FilterLoadError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{label}: {source}")]
    Compile { label: String, source: CatalogError },
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("{label} is a {kind:?} plugin; a filter is a Transform plugin")]
    NotATransform { label: String, kind: PluginKind },
}

fn instantiate(
    catalog: &PluginCatalog,
    compiled: &CompiledPlugin,
    stage: &StageSpec,
) -> Result<PluginInstance, PluginError> {
    let config = stage.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    PluginInstance::new(catalog.runtime(), compiled, config, PluginLimits::default())
}

/// What a plugin call needs to know besides the batches.
struct Plugin<'a> {
    label: String,
    topic: &'a str,
    partition: u32,
    stateful: bool,
}

/// Puts the plugin back to its state at `offset`: the latest checkpoint at or before it, then
/// the records from there to `offset` replayed (at most [`MIRROR_FILTER_REPLAY_BYTES_MAX`]); the
/// state at `offset` is checkpointed.
fn rewind(
    part: &mut Partition,
    plugin: &Plugin<'_>,
    fresh_state: &[u8],
    offset: u64,
    read: &mut dyn FnMut(u64, usize) -> Result<Vec<u8>, ReadFailure>,
) -> Result<(), ReadFailure> {
    // Until it is done, the state is nowhere in particular.
    part.next = UNKNOWN;
    while part.checkpoints.back().is_some_and(|(end, _)| *end > offset) {
        part.checkpoints.pop_back();
    }
    let (mut at, state) = match part.checkpoints.back() {
        Some(checkpoint) => checkpoint.clone(),
        None if part.committed.0 <= offset => part.committed.clone(),
        // The copy is behind what it acknowledged (replaced upstream): start afresh.
        None => (offset, fresh_state.to_vec()),
    };
    part.instance.restore(state).map_err(|e| plugin_failure(&plugin.label, e))?;
    let mut replayed = 0;
    let mut replayed_any = false;
    while at < offset && replayed < MIRROR_FILTER_REPLAY_BYTES_MAX {
        let raw = match read(at, MIRROR_FRAME_BYTES) {
            Ok(raw) => raw,
            // Deleted meanwhile: the state goes on from what is left.
            Err(ReadFailure::OutOfRange { log_start }) if log_start > at => {
                at = log_start;
                continue;
            }
            Err(e) => return Err(e),
        };
        let before = part.instance.snapshot().map_err(|e| plugin_failure(&plugin.label, e))?;
        let range = at..offset;
        let filtered = match filter_batches(
            &mut part.instance,
            plugin,
            &raw,
            range.clone(),
            MIRROR_FRAME_BYTES,
            Calls::Together,
        ) {
            Err(Failure::RefusedTogether) => {
                part.instance.restore(before).map_err(|e| plugin_failure(&plugin.label, e))?;
                filter_batches(&mut part.instance, plugin, &raw, range, MIRROR_FRAME_BYTES, Calls::EachBatch)
            }
            other => other,
        }
        .map_err(|e| e.into_read_failure(&plugin.label))?;
        if filtered.next <= at {
            break;
        }
        replayed += raw.len();
        replayed_any = true;
        at = filtered.next;
    }
    if replayed_any {
        let state = part.instance.snapshot().map_err(|e| plugin_failure(&plugin.label, e))?;
        part.checkpoint(offset, state);
    }
    part.next = offset;
    Ok(())
}

/// What one pass of the plugin over stored batches made.
struct Filtered {
    /// The batches to ship, over their inputs' ranges.
    bytes: Vec<u8>,
    /// Where the batches taken end.
    next: u64,
    records_dropped: u64,
    /// Batches the plugin refused as invalid input (base offset, why).
    refused: Vec<(i64, String)>,
}

/// How the plugin is called over the batches taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Calls {
    /// Once for all of them: the usual case.
    Together,
    /// Once per batch, after a call over all was refused as invalid input, so that only the
    /// batch at fault goes without records (a stateful plugin's state is put back after it).
    EachBatch,
}

enum Failure {
    /// The call over all the batches was refused as invalid input: call again batch by batch,
    /// from the state before it.
    RefusedTogether,
    Read(ReadFailure),
}

impl Failure {
    fn into_read_failure(self, label: &str) -> ReadFailure {
        match self {
            Failure::Read(failure) => failure,
            Failure::RefusedTogether => failed(label, "refused batches it accepted one by one"),
        }
    }
}

impl From<ReadFailure> for Failure {
    fn from(failure: ReadFailure) -> Self {
        Failure::Read(failure)
    }
}

/// A stored batch taken for filtering: where it is in the read, its header, its records
/// uncompressed (none for a transaction marker, passed on as stored).
struct Taken {
    at: Range<usize>,
    stored: BatchHeader,
    plain: Option<Vec<u8>>,
}

/// Runs the plugin over the whole batches of `raw` within `range` (a batch ending at or past
/// its end waits), taking batches until about `max_bytes` are in. One pass on purpose: taking,
/// decompressing and calling share the running byte count and the list of what was taken, which
/// [`refit`] needs in the same order.
fn filter_batches(
    instance: &mut PluginInstance,
    plugin: &Plugin<'_>,
    raw: &[u8],
    range: Range<u64>,
    max_bytes: usize,
    calls: Calls,
) -> Result<Filtered, Failure> {
    let label = &plugin.label;
    let mut taken = Vec::new();
    let (mut next, mut plain_bytes, mut position) = (range.start, 0usize, 0usize);
    for parsed in batch::sealed_batches(raw) {
        let parsed = parsed.map_err(|e| unshippable(label, format!("stored batch at or after offset {next}: {e}")))?;
        let at = position..position + parsed.as_bytes().len();
        position = at.end;
        let header = *parsed.header();
        let last = header.last_offset() as u64;
        if last < range.start {
            continue;
        }
        if last >= range.end || (!taken.is_empty() && plain_bytes >= max_bytes) {
            break;
        }
        next = last + 1;
        let plain = match header.is_control() {
            true => None,
            false => Some(plain_batch(&parsed, DECOMPRESSED_BYTES_MAX).map_err(|e| unshippable(label, e))?),
        };
        plain_bytes += plain.as_ref().map_or(0, Vec::len);
        taken.push(Taken { at, stored: header, plain });
    }
    let mut filtered = Filtered { bytes: Vec::new(), next, records_dropped: 0, refused: Vec::new() };
    let data: Vec<(i64, &[u8])> =
        taken.iter().filter_map(|t| Some((t.stored.base_offset, t.plain.as_deref()?))).collect();
    let mut output = Vec::new();
    if let Some(&(first, _)) = data.first() {
        let call = |instance: &mut PluginInstance, base: i64, input: &[u8]| {
            instance.transform(plugin.topic, plugin.partition, base as u64, input)
        };
        let refused = |e: &PluginError| matches!(e, PluginError::Returned { kind: ErrorKind::InvalidInput, .. });
        match calls {
            Calls::Together => {
                let input: Vec<u8> = data.iter().flat_map(|(_, plain)| plain.iter().copied()).collect();
                match call(instance, first, &input) {
                    Ok(bytes) => output = bytes,
                    // A stateless plugin refusing its only batch has nothing to put back.
                    Err(e) if refused(&e) && data.len() == 1 && !plugin.stateful => {
                        filtered.refused.push((first, e.to_string()));
                    }
                    Err(e) if refused(&e) => return Err(Failure::RefusedTogether),
                    Err(e) => return Err(plugin_failure(label, e).into()),
                }
            }
            Calls::EachBatch => {
                for &(base, plain) in &data {
                    let before = if plugin.stateful {
                        Some(instance.snapshot().map_err(|e| plugin_failure(label, e))?)
                    } else {
                        None
                    };
                    match call(instance, base, plain) {
                        Ok(bytes) => output.extend(bytes),
                        Err(e) if refused(&e) => {
                            filtered.refused.push((base, e.to_string()));
                            if let Some(state) = before {
                                instance.restore(state).map_err(|e| plugin_failure(label, e))?;
                            }
                        }
                        Err(e) => return Err(plugin_failure(label, e).into()),
                    }
                }
            }
        }
    }
    refit(raw, &taken, &output, &mut filtered).map_err(|e| unshippable(label, e))?;
    // A frame carries one read; a plugin that made it larger than a frame can hold would have
    // the whole connection fail on it, again and again.
    let frame_room = rill_core::limits::REPLICATION_FRAME_BYTES_MAX - 4096;
    if filtered.bytes.len() > frame_room {
        let (bytes, first, end) = (filtered.bytes.len(), range.start, filtered.next);
        return Err(unshippable(
            label,
            format!("its output for offsets {first}..{end} is {bytes} bytes, over a frame's {frame_room}"),
        )
        .into());
    }
    Ok(filtered)
}

/// Lays the plugin's `output` over the batches `taken` from `raw`: each data batch's output (one
/// batch at its base offset, over its range, with the stored header's identity and codec), the
/// stored batch itself when it was kept whole, or an empty batch in its place; transaction
/// markers as they are.
/// Why a filter's output cannot stand in for the batches it was given.
#[derive(Debug, thiserror::Error)]
enum Misfit {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    #[error("cannot compress it again: {0}")]
    Compress(#[from] std::io::Error),
    #[error(
        "its output batch at offset {base_offset} spans {output_offsets} offsets, its input {input_offsets}: the plugin does not keep offsets"
    )]
    OffsetsChanged { base_offset: i64, output_offsets: i64, input_offsets: i64 },
    #[error(
        "it returned a batch at offset {base_offset} that stands for no input batch (base offset -1: a record made into several, or too large to build at the input's offsets; a mirror filter keeps at most one record per input record)"
    )]
    Unmatched { base_offset: i64 },
}

fn refit(raw: &[u8], taken: &[Taken], output: &[u8], filtered: &mut Filtered) -> Result<(), Misfit> {
    let mut outputs = batch::batches(output).peekable();
    for item in taken {
        let stored = &item.stored;
        let Some(plain) = &item.plain else {
            filtered.bytes.extend_from_slice(&raw[item.at.clone()]);
            continue;
        };
        let mine = match outputs.peek() {
            Some(Ok(out)) if out.header().base_offset == stored.base_offset => outputs.next().transpose()?,
            _ => None,
        };
        let Some(out) = mine else {
            filtered.records_dropped += stored.records_count.max(0) as u64;
            filtered.bytes.extend_from_slice(&batch::empty_like(stored));
            continue;
        };
        let header = *out.header();
        if header.last_offset_delta != stored.last_offset_delta {
            return Err(Misfit::OffsetsChanged {
                base_offset: stored.base_offset,
                output_offsets: i64::from(header.last_offset_delta) + 1,
                input_offsets: i64::from(stored.last_offset_delta) + 1,
            });
        }
        let records = out.records_section();
        let same_times = (header.base_timestamp, header.max_timestamp) == (stored.base_timestamp, stored.max_timestamp);
        if header.records_count == stored.records_count && same_times && records == &plain[batch::HEADER_LEN..] {
            // Kept whole: the bytes the producer stored, compressed as they were.
            filtered.bytes.extend_from_slice(&raw[item.at.clone()]);
            continue;
        }
        filtered.records_dropped += (stored.records_count - header.records_count).max(0) as u64;
        // The stored batch's identity (epoch, timestamp type), the plugin's records; the plugin
        // is not the producer of what it made.
        let fitted = BatchHeader {
            records_count: header.records_count,
            base_timestamp: header.base_timestamp,
            max_timestamp: header.max_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            ..*stored
        };
        let codec = stored.compression().unwrap_or(Compression::None);
        let plain_out = with_records(&fitted, records, Compression::None)?;
        let shipped = match codec {
            Compression::None => plain_out,
            // A metered link carries it compressed, as the producer chose (unless that does not help).
            codec => {
                let packed = compression::compress(codec, records)?;
                if packed.len() < records.len() { with_records(&fitted, &packed, codec)? } else { plain_out }
            }
        };
        filtered.bytes.extend(shipped);
    }
    match outputs.next() {
        None => Ok(()),
        Some(Err(e)) => Err(e.into()),
        Some(Ok(extra)) => Err(Misfit::Unmatched { base_offset: extra.header().base_offset }),
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
