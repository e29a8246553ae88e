//! The leader-epoch history of one partition: Kafka's `LeaderEpochFileCache`, in memory.
//!
//! Each entry `(epoch, start_offset)` says "the first batch written in `epoch` has base offset
//! `start_offset`". Entries are strictly increasing in both fields. The history is what a follower
//! (or a demoted leader coming back) compares against to find where its log diverged: it asks the
//! leader for [`EpochHistory::end_offset_for`] its own latest epoch and truncates to the answer.
//!
//! Differences from Kafka, all deliberate:
//! - `assign` with an epoch lower than the latest is an error (the writer is fenced), not a
//!   silent rewrite of history: the log model never needs to rewrite it.
//! - `assign` with the latest epoch is a no-op, whatever the offset (Kafka rewrites the entry
//!   when the offset is lower; here that can only happen after a truncation, which already
//!   removed the entry).
//! - The number of entries is bounded by [`EPOCH_HISTORY_ENTRIES_MAX`].

use alloc::vec::Vec;
use core::fmt;

use crate::limits::EPOCH_HISTORY_ENTRIES_MAX;

/// `epoch` began at `start_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EpochEntry {
    /// The partition leader epoch.
    pub epoch: u32,
    /// The base offset of the first batch written in `epoch`.
    pub start_offset: u64,
}

/// Why an epoch could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EpochError {
    /// A write carried an epoch older than the latest one: its leader has been replaced.
    Fenced {
        /// The epoch of the rejected write.
        epoch: u32,
        /// The latest epoch in the history.
        latest_epoch: u32,
    },
    /// A new epoch would start below where the latest one started.
    NonMonotonicOffset {
        /// The rejected start offset.
        start_offset: u64,
        /// Where the latest epoch started.
        latest_start_offset: u64,
    },
    /// The history already holds [`EPOCH_HISTORY_ENTRIES_MAX`] entries.
    TooManyEpochs,
}

impl fmt::Display for EpochError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fenced { epoch, latest_epoch } => {
                write!(f, "leader epoch {epoch} is fenced: the partition is at epoch {latest_epoch}")
            }
            Self::NonMonotonicOffset { start_offset, latest_start_offset } => write!(
                f,
                "epoch start offset {start_offset} is below the latest epoch's start offset \
                 {latest_start_offset}"
            ),
            Self::TooManyEpochs => write!(
                f,
                "the leader-epoch history is full ({EPOCH_HISTORY_ENTRIES_MAX} entries): too many \
                 leadership changes"
            ),
        }
    }
}

impl core::error::Error for EpochError {}

/// The leader-epoch history of one partition. See the module doc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochHistory {
    entries: Vec<EpochEntry>,
}

impl EpochHistory {
    /// An empty history (a new partition).
    pub const fn new() -> Self {
        Self { entries: Vec::new() }
    }

    /// Rebuilds a history from persisted entries, checking that they are strictly increasing in
    /// both fields and within bounds.
    pub fn from_entries(entries: &[EpochEntry]) -> Result<Self, EpochError> {
        let mut history = Self::new();
        for entry in entries {
            match history.entries.last() {
                Some(last) if entry.epoch <= last.epoch => {
                    return Err(EpochError::Fenced { epoch: entry.epoch, latest_epoch: last.epoch });
                }
                Some(last) if entry.start_offset <= last.start_offset => {
                    return Err(EpochError::NonMonotonicOffset {
                        start_offset: entry.start_offset,
                        latest_start_offset: last.start_offset,
                    });
                }
                _ => {}
            }
            if history.entries.len() >= EPOCH_HISTORY_ENTRIES_MAX {
                return Err(EpochError::TooManyEpochs);
            }
            history.entries.push(*entry);
        }
        Ok(history)
    }

    /// The entries, oldest first (to persist them).
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The latest entry, if any epoch has written anything.
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that a batch of `epoch` is written at `start_offset`. A new (higher) epoch adds an
    /// entry; the latest epoch is a no-op; a lower epoch is [`EpochError::Fenced`].
    ///
    /// A higher epoch starting exactly where the latest started replaces it: the latest epoch
    /// wrote nothing that survived (as Kafka's `maybeTruncateNonMonotonicEntries`).
    pub fn assign(&mut self, epoch: u32, start_offset: u64) -> Result<(), EpochError> {
        let Some(latest) = self.latest() else {
            self.entries.push(EpochEntry { epoch, start_offset });
            return Ok(());
        };
        if epoch < latest.epoch {
            return Err(EpochError::Fenced { epoch, latest_epoch: latest.epoch });
        }
        if epoch == latest.epoch {
            return Ok(());
        }
        if start_offset < latest.start_offset {
            return Err(EpochError::NonMonotonicOffset { start_offset, latest_start_offset: latest.start_offset });
        }
        if start_offset == latest.start_offset {
            self.entries.pop();
        } else if self.entries.len() >= EPOCH_HISTORY_ENTRIES_MAX {
            return Err(EpochError::TooManyEpochs);
        }
        self.entries.push(EpochEntry { epoch, start_offset });
        self.debug_check();
        Ok(())
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: the end offset of `requested_epoch` in this
    /// log, and the epoch that end belongs to — the largest epoch `<= requested_epoch` this log
    /// knows. `None` is Kafka's `UNDEFINED_EPOCH_OFFSET`: the requested epoch is newer than any
    /// here, or the history is empty.
    ///
    /// A follower whose latest epoch is `e` truncates to the returned offset (if lower than its
    /// own end) and continues with the returned epoch if it differs.
    pub fn end_offset_for(&self, requested_epoch: u32, log_end_offset: u64) -> Option<(u32, u64)> {
        let latest = self.latest()?;
        if requested_epoch == latest.epoch {
            return Some((latest.epoch, log_end_offset));
        }
        // First entry with epoch > requested; None when requested > latest.
        let higher_index = self.entries.partition_point(|e| e.epoch <= requested_epoch);
        let higher = self.entries.get(higher_index)?;
        let floor = higher_index.checked_sub(1).and_then(|i| self.entries.get(i));
        match floor {
            // The requested epoch predates every known one (e.g. removed by truncation from the
            // start): Kafka answers with the requested epoch itself.
            None => Some((requested_epoch, higher.start_offset)),
            Some(floor) => Some((floor.epoch, higher.start_offset)),
        }
    }

    /// The log was truncated so that `offset` is its new end: drops the epochs that started at or
    /// after it (Kafka's `truncateFromEnd`).
    pub fn truncate_from_end(&mut self, offset: u64) {
        let keep = self.entries.partition_point(|e| e.start_offset < offset);
        self.entries.truncate(keep);
    }

    /// The log start moved up to `offset`: drops the epochs wholly below it and moves the start of
    /// the epoch that contains `offset` up to `offset` (Kafka's `truncateFromStart`).
    pub fn truncate_from_start(&mut self, offset: u64) {
        // Entries starting at or below `offset`; the last of them contains `offset`.
        let at_or_below = self.entries.partition_point(|e| e.start_offset <= offset);
        if at_or_below == 0 {
            return;
        }
        self.entries.drain(..at_or_below - 1);
        if let Some(first) = self.entries.first_mut() {
            first.start_offset = offset;
        }
        self.debug_check();
    }

    /// Drops every entry (the log was emptied and restarted elsewhere).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    fn debug_check(&self) {
        debug_assert!(
            self.entries.windows(2).all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset),
            "epoch history not strictly increasing: {:?}",
            self.entries
        );
        debug_assert!(self.entries.len() <= EPOCH_HISTORY_ENTRIES_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(pairs: &[(u32, u64)]) -> EpochHistory {
        let entries: Vec<EpochEntry> =
            pairs.iter().map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset }).collect();
        EpochHistory::from_entries(&entries).unwrap()
    }

    fn pairs(h: &EpochHistory) -> Vec<(u32, u64)> {
        h.entries().iter().map(|e| (e.epoch, e.start_offset)).collect()
    }

    #[test]
    fn assign_adds_higher_ignores_same_fences_lower() {
        let mut h = EpochHistory::new();
        h.assign(2, 0).unwrap();
        h.assign(2, 5).unwrap();
        h.assign(3, 10).unwrap();
        assert_eq!(pairs(&h), [(2, 0), (3, 10)]);
        assert_eq!(h.assign(1, 20), Err(EpochError::Fenced { epoch: 1, latest_epoch: 3 }));
        assert_eq!(h.assign(4, 9), Err(EpochError::NonMonotonicOffset { start_offset: 9, latest_start_offset: 10 }));
        assert_eq!(pairs(&h), [(2, 0), (3, 10)]);
    }

    #[test]
    fn assign_at_same_offset_replaces_the_empty_epoch() {
        let mut h = history(&[(1, 0), (2, 10)]);
        h.assign(5, 10).unwrap();
        assert_eq!(pairs(&h), [(1, 0), (5, 10)]);
    }

    #[test]
    fn from_entries_rejects_unordered() {
        let e = |epoch, start_offset| EpochEntry { epoch, start_offset };
        assert!(matches!(EpochHistory::from_entries(&[e(2, 0), e(2, 5)]), Err(EpochError::Fenced { .. })));
        assert!(matches!(EpochHistory::from_entries(&[e(1, 5), e(2, 5)]), Err(EpochError::NonMonotonicOffset { .. })));
    }

    #[test]
    fn history_is_bounded() {
        let mut h = EpochHistory::new();
        for i in 0..EPOCH_HISTORY_ENTRIES_MAX as u32 {
            h.assign(i, u64::from(i)).unwrap();
        }
        let next = EPOCH_HISTORY_ENTRIES_MAX as u32;
        assert_eq!(h.assign(next, u64::from(next)), Err(EpochError::TooManyEpochs));
        // Replacing the latest (empty) epoch does not grow the history.
        h.assign(next, u64::from(next) - 1).unwrap();
    }

    // The cases below mirror Kafka's LeaderEpochFileCacheTest.
    #[test]
    fn end_offset_for_latest_epoch_is_log_end_offset() {
        let h = history(&[(2, 6), (3, 8)]);
        assert_eq!(h.end_offset_for(3, 11), Some((3, 11)));
    }

    #[test]
    fn end_offset_for_earlier_epoch_is_start_of_next() {
        let h = history(&[(2, 6), (5, 8), (7, 12)]);
        assert_eq!(h.end_offset_for(2, 20), Some((2, 8)));
        // Unknown epoch in a gap: the floor's epoch, ends where the next epoch starts.
        assert_eq!(h.end_offset_for(3, 20), Some((2, 8)));
        assert_eq!(h.end_offset_for(6, 20), Some((5, 12)));
    }

    #[test]
    fn end_offset_for_epoch_before_history_is_requested_epoch_and_first_start() {
        let h = history(&[(5, 10), (7, 20)]);
        assert_eq!(h.end_offset_for(1, 30), Some((1, 10)));
    }

    #[test]
    fn end_offset_for_unknown_newer_epoch_or_empty_history_is_undefined() {
        let h = history(&[(2, 6), (3, 8)]);
        assert_eq!(h.end_offset_for(4, 11), None);
        assert_eq!(EpochHistory::new().end_offset_for(0, 0), None);
    }

    #[test]
    fn truncate_from_end_drops_epochs_starting_at_or_after() {
        let mut h = history(&[(2, 6), (3, 8), (4, 11)]);
        h.truncate_from_end(11);
        assert_eq!(pairs(&h), [(2, 6), (3, 8)]);
        h.truncate_from_end(9);
        assert_eq!(pairs(&h), [(2, 6), (3, 8)]);
        h.truncate_from_end(6);
        assert_eq!(pairs(&h), []);
    }

    #[test]
    fn truncate_from_start_moves_first_epoch_up() {
        let mut h = history(&[(2, 6), (3, 8), (4, 11)]);
        h.truncate_from_start(5);
        assert_eq!(pairs(&h), [(2, 6), (3, 8), (4, 11)]);
        h.truncate_from_start(6);
        assert_eq!(pairs(&h), [(2, 6), (3, 8), (4, 11)]);
        h.truncate_from_start(9);
        assert_eq!(pairs(&h), [(3, 9), (4, 11)]);
        h.truncate_from_start(11);
        assert_eq!(pairs(&h), [(4, 11)]);
        h.truncate_from_start(100);
        assert_eq!(pairs(&h), [(4, 100)]);
    }
}
