//! The writer's memory of each partition: the core log model, its size, and the newest group
//! while it may still grow, as loaded from the file and kept after each commit.

use std::collections::{BTreeMap, HashMap};

use rill_core::log::{EpochEntry, EpochHistory, LogState};

use super::StorageError;
use super::catalog::{PartitionOffsets, PartitionState};
use super::layout::{BATCHES, PART_BYTES, is_whole_part};
use super::meta::PartitionMeta;
use super::read::BatchRows;

/// A partition as the writer sees it: the core log model plus what the model does not track.
#[derive(Debug, Clone)]
pub(super) struct PartitionLog {
    pub state: LogState,
    pub size_bytes: u64,
    /// The newest group while it may still grow (see [`super::layout`]).
    pub open_group: Option<OpenGroup>,
    /// When a batch was last appended (see [`super::ages`]).
    pub last_append_ms: i64,
}

/// Every partition's writer state as the file has it: metadata rows and open groups.
pub(super) fn load_logs(
    db: &redb::Database,
    metas: &BTreeMap<u64, PartitionMeta>,
) -> Result<HashMap<u64, PartitionLog>, StorageError> {
    use redb::ReadableDatabase;
    let txn = db.begin_read()?;
    let rows = txn.open_table(BATCHES)?;
    let mut logs = HashMap::new();
    for (key, meta) in metas {
        match PartitionLog::from_meta(meta) {
            Ok(mut log) => {
                log.open_group = open_group(&rows, *key)?;
                logs.insert(*key, log);
            }
            Err(e) => {
                tracing::error!(partition_key = key, error = %e, "partition metadata is inconsistent; partition skipped");
            }
        }
    }
    Ok(logs)
}

/// Where the next bytes of a partition's newest group go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenGroup {
    pub base_offset: u64,
    /// Bytes in the group so far.
    pub bytes: usize,
    /// The part that the next bytes start in: `tail` holds what it already has.
    pub next_part: u32,
    /// The partial last part (shorter than `PART_BYTES`; empty when the next bytes start a
    /// new part). Rewritten, with the new bytes after it, by the next commit.
    pub tail: Vec<u8>,
}

impl PartitionLog {
    pub(super) fn from_meta(meta: &PartitionMeta) -> Result<Self, StorageError> {
        let entries: Vec<EpochEntry> =
            meta.epochs.iter().map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset }).collect();
        let epochs = EpochHistory::from_entries(&entries)?;
        // Everything in the file was committed, so the high watermark is the log end.
        let state =
            LogState::restore(meta.log_start_offset, meta.next_offset, meta.next_offset, meta.leader_epoch, epochs)?;
        Ok(Self { state, size_bytes: meta.size_bytes, open_group: None, last_append_ms: meta.last_append_ms })
    }

    pub(super) fn to_meta(&self) -> PartitionMeta {
        PartitionMeta {
            log_start_offset: self.state.log_start_offset(),
            next_offset: self.state.next_offset(),
            size_bytes: self.size_bytes,
            leader_epoch: self.state.leader_epoch(),
            epochs: self.state.epochs().entries().iter().map(|e| (e.epoch, e.start_offset)).collect(),
            last_append_ms: self.last_append_ms,
        }
    }
}

pub(super) fn publish(partition: &PartitionState, log: &PartitionLog, durable: bool) {
    let previous = partition.offsets();
    let high_watermark = log.state.high_watermark();
    partition.publish(PartitionOffsets {
        log_start_offset: log.state.log_start_offset(),
        high_watermark,
        durable_offset: if durable { high_watermark } else { previous.durable_offset.min(high_watermark) },
        size_bytes: log.size_bytes,
    });
}

/// The newest group of partition `key` if it can still grow: all its parts but the last are
/// whole ([`is_whole_part`]) and the last one is whole or a tail. A group in any other shape is
/// left closed: the next append starts a new group, which is always correct.
pub(super) fn open_group(table: &impl BatchRows, key: u64) -> Result<Option<OpenGroup>, StorageError> {
    let last = table.range((key, 0, 0)..=(key, u64::MAX, u32::MAX))?.next_back();
    let Some(last) = last else { return Ok(None) };
    let (last_key, _) = last?;
    let (_, base_offset, last_part) = last_key.value();
    let group = table.range((key, base_offset, 0)..=(key, base_offset, last_part))?;
    let mut bytes = 0;
    let mut tail = Vec::new();
    for (expected_part, row) in (0..).zip(group) {
        let (row_key, value) = row?;
        let (len, part) = (value.value().len(), row_key.value().2);
        let whole = is_whole_part(len);
        let is_tail = part == last_part && len < PART_BYTES;
        if part != expected_part || !(whole || is_tail) {
            return Ok(None);
        }
        bytes += len;
        if is_tail {
            tail = value.value().to_vec();
        }
    }
    let next_part = if tail.is_empty() { last_part + 1 } else { last_part };
    Ok(Some(OpenGroup { base_offset, bytes, next_part, tail }))
}

/// Batch bytes stored over all partitions.
pub(super) fn stored_bytes(logs: &HashMap<u64, PartitionLog>) -> u64 {
    logs.values().map(|log| log.size_bytes).sum()
}
