//! [`MemLog`]: a partition log in memory, one `Vec<u8>` per batch. The reference model for the
//! host's redb store (same row-per-batch shape, same offsets), and a log for tests and tools.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::state::{AppendError, LogState, OffsetOutOfRange, StateError};
use crate::ram_log::AppendInfo;
use crate::retention::{self, Decision, RetentionPolicy, Summary};

/// One stored batch and the facts the log needs without reparsing it.
#[derive(Debug, Clone)]
struct Stored {
    bytes: Vec<u8>,
    last_offset: u64,
    /// When it was appended (the caller's clock): what time retention measures.
    appended_ms: i64,
}

/// A partition log in memory. See the module doc.
#[derive(Debug, Clone, Default)]
pub struct MemLog {
    state: LogState,
    /// Keyed by base offset; batches are contiguous from the log start to the log end.
    batches: BTreeMap<u64, Stored>,
    total_bytes: u64,
}

impl MemLog {
    /// An empty log at offset 0, leader epoch 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offsets, high watermark and epochs.
    pub fn state(&self) -> &LogState {
        &self.state
    }

    /// Bytes of all stored batches.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Stored batches.
    pub fn batch_count(&self) -> usize {
        self.batches.len()
    }

    /// See [`LogState::set_leader_epoch`].
    pub fn set_leader_epoch(&mut self, epoch: u32) -> Result<(), StateError> {
        self.state.set_leader_epoch(epoch)
    }

    /// See [`LogState::advance_high_watermark`].
    pub fn advance_high_watermark(&mut self, offset: u64) -> u64 {
        self.state.advance_high_watermark(offset)
    }

    /// Appends one validated batch as leader at `appended_ms` (the caller's clock, for
    /// retention): offsets and epoch are written into it.
    pub fn append(&mut self, mut batch: Vec<u8>, appended_ms: i64) -> Result<AppendInfo, AppendError> {
        let info = self.state.prepare_append(&mut batch)?;
        self.store(info, batch, appended_ms);
        Ok(info)
    }

    /// Appends one replicated batch as it is (offsets and epoch already assigned by the leader),
    /// at `appended_ms` as [`append`](Self::append).
    pub fn append_follower(&mut self, batch: Vec<u8>, appended_ms: i64) -> Result<AppendInfo, AppendError> {
        let info = self.state.append_follower(&batch)?;
        self.store(info, batch, appended_ms);
        Ok(info)
    }

    fn store(&mut self, info: AppendInfo, bytes: Vec<u8>, appended_ms: i64) {
        debug_assert_eq!(info.size_bytes, bytes.len());
        self.total_bytes += bytes.len() as u64;
        let stored = Stored { bytes, last_offset: info.last_offset, appended_ms };
        let previous = self.batches.insert(info.base_offset, stored);
        assert!(previous.is_none(), "two batches at offset {}", info.base_offset);
    }

    /// Kafka's fetch (KIP-74): the batch containing `offset`, then the following batches while
    /// the total stays within `max_bytes` — but always at least one whole batch, so a batch larger
    /// than `max_bytes` can still be consumed. The first batch may start before `offset` (and
    /// before the log start, after DeleteRecords): consumers skip the records below what they
    /// asked for, as Kafka consumers do. Reading at the log end returns nothing.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Vec<&[u8]>, OffsetOutOfRange> {
        self.state.check_fetch(offset)?;
        let first_key = self.containing(offset).map_or(offset, |(base, _)| base);
        let mut out = Vec::new();
        let mut total = 0usize;
        for stored in self.batches.range(first_key..).map(|(_, s)| &s.bytes) {
            if !out.is_empty() && total.saturating_add(stored.len()) > max_bytes {
                break;
            }
            total = total.saturating_add(stored.len());
            out.push(stored.as_slice());
        }
        Ok(out)
    }

    /// The stored batch holding `offset`, if any.
    fn containing(&self, offset: u64) -> Option<(u64, &Stored)> {
        let (&base, stored) = self.batches.range(..=offset).next_back()?;
        (stored.last_offset >= offset).then_some((base, stored))
    }

    /// Removes every record from `offset` on. Batches are never split: when `offset` falls inside
    /// a batch, that whole batch goes too, and the log ends at its base offset (as Kafka's
    /// `LogSegment.truncateTo`) — or at the log start, if that batch began below it. Returns the
    /// new log end offset.
    pub fn truncate_to(&mut self, offset: u64) -> Result<u64, StateError> {
        let log_start = self.state.log_start_offset();
        if offset < log_start {
            return Err(StateError::BelowLogStart { offset, log_start_offset: log_start });
        }
        let containing_base = self.containing(offset).map(|(base, _)| base);
        self.state.truncate_to(containing_base.map_or(offset, |base| base.max(log_start)))?;
        let first_removed = containing_base.unwrap_or(offset);
        for (_, removed) in self.batches.split_off(&first_removed) {
            self.total_bytes -= removed.bytes.len() as u64;
        }
        self.check();
        Ok(self.state.next_offset())
    }

    /// Empties the log and restarts it at `offset` (see [`LogState::truncate_fully_and_start_at`]).
    pub fn truncate_fully_and_start_at(&mut self, offset: u64) -> Result<(), StateError> {
        self.state.truncate_fully_and_start_at(offset)?;
        self.batches.clear();
        self.total_bytes = 0;
        Ok(())
    }

    /// A gap: the log end jumps to `offset` (see [`LogState::skip_to`]); no batch changes.
    pub fn skip_to(&mut self, offset: u64) -> Result<(), StateError> {
        self.state.skip_to(offset)
    }

    /// DeleteRecords: moves the log start up to `offset` (clamped to the high watermark) and
    /// drops the batches wholly below it. A batch straddling the new start stays. Returns the
    /// log start offset.
    pub fn advance_log_start(&mut self, offset: u64) -> u64 {
        let log_start = self.state.advance_log_start(offset);
        while let Some(entry) = self.batches.first_entry() {
            if entry.get().last_offset >= log_start {
                break;
            }
            self.total_bytes -= entry.remove().bytes.len() as u64;
        }
        self.check();
        log_start
    }

    /// What retention would delete now. Never proposes batches at or above the high watermark
    /// (nor at or above `keep_from`, e.g. not yet mirrored).
    pub fn retention_decision(&self, now_ms: i64, policy: RetentionPolicy, keep_from: Option<u64>) -> Option<Decision> {
        let hw = self.state.high_watermark();
        let keep_from = Some(keep_from.map_or(hw, |k| k.min(hw)));
        let units = self.batches.iter().map(|(&base_offset, s)| Summary {
            base_offset,
            last_offset: s.last_offset,
            appended_ms: s.appended_ms,
            size_bytes: s.bytes.len() as u64,
        });
        retention::decide(units, self.total_bytes, now_ms, policy, keep_from)
    }

    /// Performs a retention decision (normally from [`retention_decision`](Self::retention_decision)):
    /// the log start moves to `decision.delete_below` (clamped to the high watermark) and whole
    /// batches below it are deleted. Returns the log start offset.
    pub fn apply_retention(&mut self, decision: &Decision) -> u64 {
        self.advance_log_start(decision.delete_below)
    }

    fn check(&self) {
        let state = &self.state;
        if let Some((_, first)) = self.batches.first_key_value() {
            assert!(
                first.last_offset >= state.log_start_offset(),
                "a batch wholly below the log start is still stored"
            );
        }
        if let Some((_, last)) = self.batches.last_key_value() {
            assert!(last.last_offset < state.next_offset(), "a batch past the log end is stored");
        }
        assert_eq!(self.batches.is_empty(), self.total_bytes == 0, "byte count out of step");
    }
}
