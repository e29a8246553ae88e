//! Idempotent producers: per partition and producer id, the epoch and the last batches appended,
//! so a retried batch is acknowledged with its original offsets instead of being stored twice, and
//! a gap in sequence numbers is refused. Kept in memory by the writer and written in the same
//! transaction as the batches they describe (table `producers`), so they survive restarts exactly
//! as far as the batches do.

use std::collections::{BTreeMap, HashMap};

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use rill_core::batch::BatchHeader;
use serde::{Deserialize, Serialize};

use super::StorageError;
use super::journal::redo::{self, Txn};
use super::layout::PRODUCERS;
use super::meta;
use crate::limits::{PRODUCER_BATCHES_REMEMBERED, PRODUCER_ID_EXPIRATION_MS, PRODUCERS_PER_PARTITION_MAX};

/// A producer's state in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    pub epoch: i16,
    /// The newest batches appended in `epoch`, oldest first (at most
    /// [`PRODUCER_BATCHES_REMEMBERED`]: Kafka clients have at most 5 requests in flight).
    pub batches: Vec<SequencedBatch>,
    pub last_append_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencedBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: u64,
    pub last_offset: u64,
}

/// Why a producer's batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceError {
    /// An older epoch than the partition has seen: a newer instance of the producer exists.
    StaleEpoch { found: i16, current: i16 },
    /// Not the next sequence number (a batch went missing in between).
    OutOfOrder { found: i32, expected: i32 },
}

/// What to do with a producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Store it (and then [`ProducerState::record`] it).
    Append,
    /// A retry of a batch already stored: acknowledge these offsets, store nothing.
    Duplicate { base_offset: u64, last_offset: u64 },
}

/// The sequence number after `sequence` (Kafka's wrap at `i32::MAX`).
pub fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX { 0 } else { sequence + 1 }
}

/// The last sequence number of a batch (sequences advance by one per record offset).
pub fn last_sequence(header: &BatchHeader) -> i32 {
    let last = i64::from(header.base_sequence) + i64::from(header.last_offset_delta);
    // Kafka wraps sequences at i32::MAX back to 0.
    if last > i64::from(i32::MAX) { (last - i64::from(i32::MAX) - 1) as i32 } else { last as i32 }
}

/// Checks a batch of producer `header.producer_id` against what the partition knows of it
/// (`None`: nothing, e.g. a new producer, or one whose state expired — then any sequence goes, as
/// in Kafka).
pub fn check(state: Option<&ProducerState>, header: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
    let Some(state) = state else {
        return Ok(SequenceCheck::Append);
    };
    let epoch = header.producer_epoch;
    if epoch < state.epoch {
        return Err(SequenceError::StaleEpoch { found: epoch, current: state.epoch });
    }
    if epoch > state.epoch {
        // A new epoch starts its sequences over.
        return if header.base_sequence == 0 {
            Ok(SequenceCheck::Append)
        } else {
            Err(SequenceError::OutOfOrder { found: header.base_sequence, expected: 0 })
        };
    }
    let last = last_sequence(header);
    if let Some(stored) =
        state.batches.iter().find(|b| b.first_sequence == header.base_sequence && b.last_sequence == last)
    {
        return Ok(SequenceCheck::Duplicate { base_offset: stored.base_offset, last_offset: stored.last_offset });
    }
    match state.batches.last() {
        Some(newest) if header.base_sequence != next_sequence(newest.last_sequence) => Err(SequenceError::OutOfOrder {
            found: header.base_sequence,
            expected: next_sequence(newest.last_sequence),
        }),
        _ => Ok(SequenceCheck::Append),
    }
}

impl ProducerState {
    /// The state after appending `header`'s batch at `base_offset..=last_offset`.
    pub fn record(
        state: Option<ProducerState>,
        header: &BatchHeader,
        base_offset: u64,
        last_offset: u64,
        now_ms: i64,
    ) -> ProducerState {
        let mut state = match state {
            Some(state) if state.epoch == header.producer_epoch => state,
            _ => ProducerState { epoch: header.producer_epoch, batches: Vec::new(), last_append_ms: now_ms },
        };
        if state.batches.len() == PRODUCER_BATCHES_REMEMBERED {
            state.batches.remove(0);
        }
        state.batches.push(SequencedBatch {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            base_offset,
            last_offset,
        });
        state.last_append_ms = now_ms;
        state
    }
}

/// Every partition's producers, by partition key then producer id.
#[derive(Debug, Clone, Default)]
pub struct Producers {
    by_partition: HashMap<u64, BTreeMap<i64, ProducerState>>,
}

impl Producers {
    pub fn get(&self, key: u64, producer_id: i64) -> Option<&ProducerState> {
        self.by_partition.get(&key)?.get(&producer_id)
    }

    /// Sets a producer's state; when the partition holds too many producers, forgets the one
    /// idle longest and returns its id (its retries would then be taken as new batches).
    pub fn insert(&mut self, key: u64, producer_id: i64, state: ProducerState) -> Option<i64> {
        let producers = self.by_partition.entry(key).or_default();
        producers.insert(producer_id, state);
        if producers.len() <= PRODUCERS_PER_PARTITION_MAX {
            return None;
        }
        let idle = producers.iter().min_by_key(|(_, state)| state.last_append_ms).map(|(id, _)| *id)?;
        producers.remove(&idle);
        Some(idle)
    }

    pub fn remove(&mut self, key: u64, producer_id: i64) {
        if let Some(producers) = self.by_partition.get_mut(&key) {
            producers.remove(&producer_id);
        }
    }

    pub fn remove_partition(&mut self, key: u64) {
        self.by_partition.remove(&key);
    }

    /// Producers idle since before `now_ms - PRODUCER_ID_EXPIRATION_MS` (Kafka's
    /// `producer.id.expiration.ms`).
    pub fn expired(&self, now_ms: i64) -> Vec<(u64, i64)> {
        let horizon = now_ms.saturating_sub(PRODUCER_ID_EXPIRATION_MS);
        self.by_partition
            .iter()
            .flat_map(|(key, producers)| {
                producers.iter().filter(|(_, state)| state.last_append_ms < horizon).map(|(id, _)| (*key, *id))
            })
            .collect()
    }
}

/// Reads every producer state (at open and after a reopen).
pub(super) fn load(db: &redb::Database) -> Result<Producers, StorageError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(PRODUCERS)?;
    let mut producers = Producers::default();
    for row in table.iter()? {
        let (key, value) = row?;
        let (partition, producer_id) = key.value();
        let state: ProducerState =
            meta::decode(|| format!("producer {producer_id} of partition {partition}"), value.value())?;
        producers.by_partition.entry(partition).or_default().insert(producer_id, state);
    }
    Ok(producers)
}

/// Writes the given producers' rows (`None`: delete the row) into `txn`.
pub(super) fn write(
    txn: &Txn<'_>,
    changes: impl IntoIterator<Item = ((u64, i64), Option<ProducerState>)>,
) -> Result<(), StorageError> {
    let mut table = txn.open(&redo::PRODUCERS)?;
    for ((key, producer_id), state) in changes {
        match state {
            Some(state) => table.insert((key, producer_id), meta::encode(&state).as_slice()),
            None => table.remove((key, producer_id)),
        }?;
    }
    Ok(())
}

/// Deletes a partition's producers (the partition is being deleted).
pub(super) fn delete_partition(txn: &WriteTransaction, key: u64) -> Result<(), StorageError> {
    let mut table = txn.open_table(PRODUCERS)?;
    table.retain_in((key, i64::MIN)..=(key, i64::MAX), |_, _| false)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: 7,
            producer_epoch: epoch,
            base_sequence,
            records_count: records,
        }
    }

    fn after(state: Option<ProducerState>, header: &BatchHeader, base: u64) -> ProducerState {
        let last = base + header.last_offset_delta as u64;
        ProducerState::record(state, header, base, last, 0)
    }

    #[test]
    fn in_order_batches_append_and_a_retry_gets_its_original_offsets() {
        let first = header(0, 0, 3);
        assert_eq!(check(None, &first), Ok(SequenceCheck::Append));
        let state = after(None, &first, 10);
        let second = header(0, 3, 2);
        assert_eq!(check(Some(&state), &second), Ok(SequenceCheck::Append));
        let state = after(Some(state), &second, 13);
        assert_eq!(check(Some(&state), &first), Ok(SequenceCheck::Duplicate { base_offset: 10, last_offset: 12 }));
        assert_eq!(check(Some(&state), &second), Ok(SequenceCheck::Duplicate { base_offset: 13, last_offset: 14 }));
    }

    #[test]
    fn a_gap_and_a_stale_epoch_are_refused() {
        let state = after(None, &header(1, 0, 3), 0);
        assert_eq!(check(Some(&state), &header(1, 4, 1)), Err(SequenceError::OutOfOrder { found: 4, expected: 3 }));
        assert_eq!(check(Some(&state), &header(0, 3, 1)), Err(SequenceError::StaleEpoch { found: 0, current: 1 }));
        // A new epoch must start at 0.
        assert_eq!(check(Some(&state), &header(2, 5, 1)), Err(SequenceError::OutOfOrder { found: 5, expected: 0 }));
        assert_eq!(check(Some(&state), &header(2, 0, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut state = None;
        for n in 0..7 {
            state = Some(after(state, &header(0, n, 1), n as u64));
        }
        let state = state.expect("recorded");
        assert_eq!(state.batches.len(), PRODUCER_BATCHES_REMEMBERED);
        assert_eq!(
            check(Some(&state), &header(0, 6, 1)),
            Ok(SequenceCheck::Duplicate { base_offset: 6, last_offset: 6 })
        );
        // Too old to be recognised: it is out of order instead.
        assert!(matches!(check(Some(&state), &header(0, 0, 1)), Err(SequenceError::OutOfOrder { .. })));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let state = after(None, &header(0, i32::MAX - 1, 2), 0);
        assert_eq!(state.batches[0].last_sequence, i32::MAX);
        assert_eq!(check(Some(&state), &header(0, 0, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn a_full_partition_forgets_the_producer_idle_longest() {
        let mut producers = Producers::default();
        let state = |ms| ProducerState { epoch: 0, batches: Vec::new(), last_append_ms: ms };
        for id in 0..PRODUCERS_PER_PARTITION_MAX as i64 {
            assert_eq!(producers.insert(1, id, state(100 + id)), None);
        }
        assert_eq!(producers.insert(1, -5, state(1_000_000)), Some(0));
        assert!(producers.get(1, 0).is_none() && producers.get(1, -5).is_some());
        assert_eq!(producers.expired(PRODUCER_ID_EXPIRATION_MS + 102), vec![(1, 1)]);
    }
}
