//! A mirror's filter: a transform plugin run over the batches an edge ships, so that a metered
//! link carries only what the aggregation node needs (a downsampled series, readings past a
//! threshold, records without a private field).
//!
//! The copy keeps the edge's offsets. Each filtered batch goes upstream over the range of the
//! batch it came from, its surviving records at their own offsets (the plugin contract says how:
//! `wit/plugin.wit`, `transform`), gaps where records were dropped, as in a compacted Kafka topic.
//! A batch left with no record goes as an empty batch over its range, which consumers step over.
//! The follower needs no change: ranges are what it checks.
//!
//! A stateful plugin (downsampling) must see each record once, in order; yet the leader sends
//! again from the follower's end after a connection is lost. So the plugin's state is
//! checkpointed after every filtered read, and a read that does not continue the previous one
//! puts back the checkpoint at or before where it starts and replays the records in between
//! through the plugin (their output discarded). The checkpoint at or below the acknowledged
//! offset is saved beside the acknowledged offsets, so a restart resumes from it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rill_core::batch::{self, Batch, BatchHeader, Compression};
use rill_core::replication::ReadFailure;
use serde::{Deserialize, Serialize};

use crate::compression;
use crate::limits::{
    DECOMPRESSED_BYTES_MAX, MIRROR_FILTER_CHECKPOINTS_MAX, MIRROR_FILTER_REPLAY_BYTES_MAX, MIRROR_FRAME_BYTES,
};
use crate::pipelines::StageSpec;
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

/// A mirror's saved states: which plugin they belong to, and one per partition.
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

/// [`Partition::next`] when the state must be rebuilt before the next read.
const UNKNOWN: u64 = u64::MAX;

/// A loaded filter: the plugin, and its instances per partition.
pub struct MirrorFilter {
    label: String,
    mirror: String,
    stage: StageSpec,
    catalog: PluginCatalog,
    compiled: CompiledPlugin,
    stateful: bool,
    /// A fresh instance's state: where a partition starts over when no checkpoint is early enough.
    initial_state: Vec<u8>,
    partitions: HashMap<FilterKey, Partition>,
    saved: BTreeMap<String, SavedState>,
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

impl MirrorFilter {
    /// Loads `stage` (a transform plugin) for mirror `mirror`, with the states it saved.
    /// Blocking: loading may compile.
    pub fn load(catalog: &PluginCatalog, store: &Store, mirror: &str, stage: &StageSpec) -> Result<Self, String> {
        let artifact = catalog.resolve(&stage.plugin, stage.version.as_deref()).map_err(|e| e.to_string())?;
        let compiled = catalog.load(&artifact).map_err(|e| format!("{}: {e}", artifact.label()))?;
        let label = artifact.label();
        let mut probe = instantiate(catalog, &compiled, stage)?;
        if probe.metadata().kind != PluginKind::Transform {
            return Err(format!("{label} is a {:?} plugin; a filter is a Transform plugin", probe.metadata().kind));
        }
        let stateful = probe.metadata().stateful;
        let initial_state = if stateful { probe.snapshot().map_err(|e| e.to_string())? } else { Vec::new() };
        let saved = store
            .resource(STATE_KIND, mirror)
            .ok()
            .flatten()
            .and_then(|bytes| postcard::from_bytes::<SavedStates>(&bytes).ok())
            .filter(|saved| saved.plugin == label)
            .map(|saved| saved.partitions)
            .unwrap_or_default();
        Ok(MirrorFilter {
            label,
            mirror: mirror.to_owned(),
            stage: stage.clone(),
            catalog: catalog.clone(),
            compiled,
            stateful,
            initial_state,
            partitions: HashMap::new(),
            saved,
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

    /// Filters `raw` (whole stored batches, read at `offset` for shipping) up to `durable_end`
    /// and about `max_bytes`; returns the batches to ship, over the same ranges. `read` reads
    /// the partition again for a replay.
    pub fn apply(
        &mut self,
        key: &FilterKey,
        (topic, partition): (&str, u32),
        (offset, durable_end, max_bytes): (u64, u64, usize),
        raw: &[u8],
        read: &mut dyn FnMut(u64, usize) -> Result<Vec<u8>, ReadFailure>,
    ) -> Result<Vec<u8>, ReadFailure> {
        let (label, stateful) = (self.label.clone(), self.stateful);
        let fresh_state = self.initial_state.clone();
        let part = self.partition(key)?;
        if part.next != offset && stateful {
            rewind(part, &label, &fresh_state, (topic, partition), offset, read)?;
        }
        let filtered =
            filter_batches(&mut part.instance, &label, (topic, partition), raw, offset..durable_end, max_bytes);
        let filtered = match filtered {
            Ok(filtered) => filtered,
            Err(e) => {
                // The state may be part way through the batches: the next read rewinds.
                part.next = UNKNOWN;
                return Err(e);
            }
        };
        part.next = filtered.next;
        if stateful && filtered.next > offset {
            let state = part.instance.snapshot().map_err(|e| failed(&label, e))?;
            part.checkpoints.push_back((filtered.next, state));
            if part.checkpoints.len() > MIRROR_FILTER_CHECKPOINTS_MAX {
                part.checkpoints.pop_front();
            }
        }
        self.counts.records_dropped += filtered.records_dropped;
        self.counts.batches_refused += filtered.refused.len() as u64;
        for (base, reason) in &filtered.refused {
            tracing::error!(
                mirror = %self.mirror, partition = %key.partition, plugin = %label, offset = base, %reason,
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
            }
        }
    }

    /// The committed states, as one document to write with the acknowledged offsets.
    pub fn state_document(&self) -> Option<DocumentWrite> {
        if !self.stateful {
            return None;
        }
        let mut partitions = self.saved.clone();
        for (key, part) in &self.partitions {
            let (offset, state) = part.committed.clone();
            partitions.insert(key.partition.clone(), SavedState { incarnation: key.incarnation, offset, state });
        }
        let document = postcard::to_allocvec(&SavedStates { plugin: self.label.clone(), partitions }).ok()?;
        Some(DocumentWrite { kind: STATE_KIND.into(), name: self.mirror.clone(), document: Some(document) })
    }
}

fn instantiate(
    catalog: &PluginCatalog,
    compiled: &CompiledPlugin,
    stage: &StageSpec,
) -> Result<PluginInstance, String> {
    let config = stage.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    PluginInstance::new(catalog.runtime(), compiled, config, PluginLimits::default()).map_err(|e| e.to_string())
}

/// Puts the plugin back to its state at `offset`: the latest checkpoint at or before it, then
/// the records from there to `offset` replayed (at most [`MIRROR_FILTER_REPLAY_BYTES_MAX`]).
fn rewind(
    part: &mut Partition,
    label: &str,
    fresh_state: &[u8],
    (topic, partition): (&str, u32),
    offset: u64,
    read: &mut dyn FnMut(u64, usize) -> Result<Vec<u8>, ReadFailure>,
) -> Result<(), ReadFailure> {
    while part.checkpoints.back().is_some_and(|(end, _)| *end > offset) {
        part.checkpoints.pop_back();
    }
    let (mut at, state) = match part.checkpoints.back() {
        Some(checkpoint) => checkpoint.clone(),
        None if part.committed.0 <= offset => part.committed.clone(),
        // The copy is behind what it acknowledged (replaced upstream): start afresh.
        None => (offset, fresh_state.to_vec()),
    };
    part.instance.restore(state).map_err(|e| failed(label, e))?;
    let mut replayed = 0;
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
        let filtered =
            filter_batches(&mut part.instance, label, (topic, partition), &raw, at..offset, MIRROR_FRAME_BYTES)?;
        if filtered.next <= at {
            break;
        }
        replayed += raw.len();
        at = filtered.next;
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

/// A stored batch taken for filtering.
enum Taken {
    /// Passed on as stored (a transaction marker is not data to filter).
    Control(Vec<u8>),
    /// Uncompressed, for the plugin; with the stored header (epoch, range).
    Data { stored: BatchHeader, plain: Vec<u8> },
}

/// Runs the plugin over the whole batches of `raw` within `range` (a batch ending at or past
/// its end waits), taking batches until about `max_bytes` are in.
fn filter_batches(
    instance: &mut PluginInstance,
    label: &str,
    (topic, partition): (&str, u32),
    raw: &[u8],
    range: std::ops::Range<u64>,
    max_bytes: usize,
) -> Result<Filtered, ReadFailure> {
    let mut taken = Vec::new();
    let (mut next, mut plain_bytes) = (range.start, 0usize);
    for parsed in batch::batches(raw) {
        let parsed = parsed.map_err(|e| failed(label, format!("stored batch at or after offset {next}: {e}")))?;
        let header = *parsed.header();
        let last = header.last_offset() as u64;
        if last < range.start {
            continue;
        }
        if last >= range.end || (!taken.is_empty() && plain_bytes >= max_bytes) {
            break;
        }
        next = last + 1;
        if header.is_control() {
            taken.push(Taken::Control(parsed.as_bytes().to_vec()));
            continue;
        }
        let plain = plain_batch(&parsed).map_err(|e| failed(label, e))?;
        plain_bytes += plain.len();
        taken.push(Taken::Data { stored: header, plain });
    }
    let mut filtered = Filtered { bytes: Vec::new(), next, records_dropped: 0, refused: Vec::new() };
    let data: Vec<(i64, &[u8])> = taken
        .iter()
        .filter_map(|t| match t {
            Taken::Data { stored, plain } => Some((stored.base_offset, plain.as_slice())),
            Taken::Control(_) => None,
        })
        .collect();
    let Some(&(first, _)) = data.first() else {
        // Only transaction markers: nothing for the plugin.
        refit(&taken, &[], &mut filtered).map_err(|e| failed(label, e))?;
        return Ok(filtered);
    };
    let input: Vec<u8> = data.iter().flat_map(|(_, plain)| plain.iter().copied()).collect();
    let mut output = Vec::new();
    match instance.transform(topic, partition, first as u64, &input) {
        Ok(bytes) => output = bytes,
        // One bad record must not hold back the rest: the batches go one by one, and only the
        // one refused goes without records.
        Err(PluginError::Returned { kind: ErrorKind::InvalidInput, .. }) if data.len() > 1 => {
            for &(base, plain) in &data {
                match instance.transform(topic, partition, base as u64, plain) {
                    Ok(bytes) => output.extend(bytes),
                    Err(e @ PluginError::Returned { kind: ErrorKind::InvalidInput, .. }) => {
                        filtered.refused.push((base, e.to_string()));
                    }
                    Err(e) => return Err(failed(label, e)),
                }
            }
        }
        Err(e @ PluginError::Returned { kind: ErrorKind::InvalidInput, .. }) => {
            filtered.refused.push((first, e.to_string()));
        }
        Err(e) => return Err(failed(label, e)),
    }
    refit(&taken, &output, &mut filtered).map_err(|e| failed(label, e))?;
    Ok(filtered)
}

/// `parsed` with its records uncompressed, sealed.
fn plain_batch(parsed: &Batch<'_>) -> Result<Vec<u8>, String> {
    if parsed.compression() == Compression::None {
        return Ok(parsed.as_bytes().to_vec());
    }
    let records = compression::decompress(parsed.compression(), parsed.records_section(), DECOMPRESSED_BYTES_MAX)
        .map_err(|e| format!("batch at offset {}: {e}", parsed.base_offset()))?;
    with_records(parsed.header(), &records, Compression::None)
}

/// `plain` (an uncompressed batch) with its records compressed by `codec`, sealed.
fn compressed(plain: &Batch<'_>, codec: Compression) -> Result<Vec<u8>, String> {
    let records = compression::compress(codec, plain.records_section()).map_err(|e| e.to_string())?;
    with_records(plain.header(), &records, codec)
}

/// A batch with `header`'s fields but a new records section, encoded by `codec`; sealed.
fn with_records(header: &BatchHeader, records: &[u8], codec: Compression) -> Result<Vec<u8>, String> {
    let mut bytes = vec![0u8; batch::HEADER_LEN];
    bytes.extend_from_slice(records);
    let length = i32::try_from(bytes.len() - batch::LOG_OVERHEAD)
        .map_err(|_| format!("batch at offset {} is too large", header.base_offset))?;
    let header = BatchHeader {
        batch_length: length,
        attributes: batch::attributes(codec, header.timestamp_type(), header.is_transactional(), false),
        ..*header
    };
    header.encode(&mut bytes).map_err(|e| e.to_string())?;
    batch::seal_crc(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Lays the plugin's `output` over the batches `taken`: each data batch's output (one batch at
/// its base offset, over its range) or an empty batch in its place; control batches as they are.
fn refit(taken: &[Taken], output: &[u8], filtered: &mut Filtered) -> Result<(), String> {
    let mut outputs = batch::batches(output).peekable();
    for item in taken {
        let stored = match item {
            Taken::Control(bytes) => {
                filtered.bytes.extend_from_slice(bytes);
                continue;
            }
            Taken::Data { stored, .. } => stored,
        };
        let mine = match outputs.peek() {
            Some(Ok(out)) if out.header().base_offset == stored.base_offset => {
                outputs.next().transpose().map_err(|e| e.to_string())?
            }
            _ => None,
        };
        let Some(out) = mine else {
            filtered.records_dropped += stored.records_count.max(0) as u64;
            filtered.bytes.extend_from_slice(&batch::empty_like(stored));
            continue;
        };
        let header = *out.header();
        if header.last_offset_delta != stored.last_offset_delta {
            return Err(format!(
                "its output batch at offset {} spans {} offsets, its input {}: the plugin does not keep offsets",
                stored.base_offset,
                i64::from(header.last_offset_delta) + 1,
                i64::from(stored.last_offset_delta) + 1
            ));
        }
        filtered.records_dropped += (stored.records_count - header.records_count).max(0) as u64;
        let start = filtered.bytes.len();
        match stored.compression() {
            // A metered link carries it compressed, as the producer stored it.
            Ok(codec) if codec != Compression::None => filtered.bytes.extend(compressed(&out, codec)?),
            _ => filtered.bytes.extend_from_slice(out.as_bytes()),
        }
        // The leader epoch lies outside the CRC: the sealed batch stays valid.
        batch::set_partition_leader_epoch(&mut filtered.bytes[start..], stored.partition_leader_epoch)
            .map_err(|e| e.to_string())?;
    }
    match outputs.next() {
        None => Ok(()),
        Some(Err(e)) => Err(e.to_string()),
        Some(Ok(extra)) => Err(format!(
            "it returned a batch at offset {} that stands for no input batch (base offset -1: a record \
             made into several; a mirror filter keeps at most one record per input record)",
            extra.header().base_offset
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_core::batch::{BatchParams, OffsetLayout, RecordSpec};

    fn spec(value: &[u8]) -> RecordSpec<'_> {
        RecordSpec { timestamp: 1_000, key: Some(b"k"), value: Some(value), headers: &[] }
    }

    /// A stored batch of `count` records at `base`, in leader epoch 3.
    fn stored(base: i64, count: usize) -> Vec<u8> {
        let specs = vec![spec(b"reading"); count];
        let params = BatchParams { base_offset: base, partition_leader_epoch: 3, ..BatchParams::default() };
        batch::build_vec(params, &specs).unwrap()
    }

    fn header(bytes: &[u8]) -> BatchHeader {
        *Batch::parse(bytes).unwrap().header()
    }

    /// What a plugin keeping `deltas` of the batch at `base` (spanning `last_delta`) returns.
    fn kept(base: i64, deltas: &[i32], last_delta: i32) -> Vec<u8> {
        let specs = vec![spec(b"kept"); deltas.len()];
        let layout = OffsetLayout { offset_deltas: deltas, last_offset_delta: last_delta };
        let params = BatchParams { base_offset: base, ..BatchParams::default() };
        let mut bytes = batch::build_vec_at_without_crc(params, &specs, layout).unwrap();
        batch::seal_crc(&mut bytes).unwrap();
        bytes
    }

    fn data(bytes: &[u8]) -> Taken {
        let parsed = Batch::parse(bytes).unwrap();
        Taken::Data { stored: *parsed.header(), plain: plain_batch(&parsed).unwrap() }
    }

    fn fresh() -> Filtered {
        Filtered { bytes: Vec::new(), next: 0, records_dropped: 0, refused: Vec::new() }
    }

    /// (base offset, last offset, records' offsets, epoch, codec) of each shipped batch.
    fn shipped(bytes: &[u8]) -> Vec<(i64, i64, Vec<i64>, i32, Compression)> {
        batch::batches(bytes)
            .map(|parsed| {
                let parsed = parsed.unwrap();
                let h = *parsed.header();
                let plain = plain_batch(&parsed).unwrap();
                let records =
                    Batch::parse(&plain).unwrap().records().unwrap().map(|r| r.unwrap().offset(h.base_offset));
                (h.base_offset, h.last_offset(), records.collect(), h.partition_leader_epoch, parsed.compression())
            })
            .collect()
    }

    #[test]
    fn survivors_keep_their_offsets_and_an_emptied_batch_keeps_its_range() {
        let (a, b) = (stored(10, 4), stored(14, 2));
        let mut filtered = fresh();
        refit(&[data(&a), data(&b)], &kept(10, &[1, 3], 3), &mut filtered).unwrap();
        assert_eq!(
            shipped(&filtered.bytes),
            [(10, 13, vec![11, 13], 3, Compression::None), (14, 15, vec![], 3, Compression::None)]
        );
        assert_eq!(filtered.records_dropped, 4);
    }

    #[test]
    fn compressed_input_goes_upstream_compressed() {
        let plain = stored(20, 3);
        let gzip = with_records(
            &header(&plain),
            &compression::compress(Compression::Gzip, &plain[batch::HEADER_LEN..]).unwrap(),
            Compression::Gzip,
        )
        .unwrap();
        assert!(Batch::parse(&gzip).is_ok());
        assert_eq!(plain_batch(&Batch::parse(&gzip).unwrap()).unwrap(), plain, "decompressed, it is the plain batch");
        let mut filtered = fresh();
        refit(&[data(&gzip)], &kept(20, &[0, 2], 2), &mut filtered).unwrap();
        assert_eq!(shipped(&filtered.bytes), [(20, 22, vec![20, 22], 3, Compression::Gzip)]);
    }

    #[test]
    fn output_that_does_not_keep_offsets_is_refused() {
        let a = stored(10, 4);
        let mut several = kept(10, &[0, 1], 3);
        batch::set_base_offset(&mut several, -1).unwrap();
        let error = refit(&[data(&a)], &several, &mut fresh()).unwrap_err();
        assert!(error.contains("stands for no input batch"), "{error}");
        let error = refit(&[data(&a)], &kept(10, &[0, 1], 1), &mut fresh()).unwrap_err();
        assert!(error.contains("does not keep offsets"), "{error}");
    }
}
