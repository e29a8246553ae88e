//! [`LogState`]: the offsets and epochs of one partition, without its bytes.

use core::fmt;

use super::epoch::{EpochError, EpochHistory};
use crate::batch::{self, BatchError, BatchHeader};
use crate::limits::{LEADER_EPOCH_MAX, OFFSET_MAX};
use crate::ram_log::AppendInfo;

/// Why a batch could not be appended. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendError {
    /// The bytes are not one whole v2 batch header (or the base offset could not be written).
    InvalidBatch(BatchError),
    /// The batch's offsets would go past [`OFFSET_MAX`].
    OffsetOverflow {
        /// Where the batch would start.
        base_offset: u64,
        /// Its `lastOffsetDelta`.
        last_offset_delta: i32,
    },
    /// A replicated batch does not start at the log end offset.
    OffsetMismatch {
        /// The log end offset.
        expected: u64,
        /// The batch's base offset.
        found: i64,
    },
    /// A replicated batch carries no valid partition leader epoch.
    InvalidLeaderEpoch(i32),
    /// The epoch history refused the batch's epoch (fenced, or too many epochs).
    Epoch(EpochError),
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidBatch(e) => write!(f, "invalid batch: {e}"),
            Self::OffsetOverflow { base_offset, last_offset_delta } => write!(
                f,
                "batch at offset {base_offset} with lastOffsetDelta {last_offset_delta} would pass \
                 the largest offset {OFFSET_MAX}"
            ),
            Self::OffsetMismatch { expected, found } => {
                write!(f, "replicated batch starts at offset {found}, but the log ends at {expected}")
            }
            Self::InvalidLeaderEpoch(epoch) => {
                write!(f, "replicated batch has partition leader epoch {epoch}, expected >= 0")
            }
            Self::Epoch(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for AppendError {}

/// A fetch offset outside `log_start_offset..=next_offset` (Kafka's `OFFSET_OUT_OF_RANGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetOutOfRange {
    /// The requested offset.
    pub offset: u64,
    /// The first offset still in the log.
    pub log_start_offset: u64,
    /// The log end offset.
    pub next_offset: u64,
}

impl fmt::Display for OffsetOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offset {} is out of range: the log holds {}..{}",
            self.offset, self.log_start_offset, self.next_offset
        )
    }
}

impl core::error::Error for OffsetOutOfRange {}

/// Why the state could not be changed or restored as asked. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    /// A truncation below the log start (use [`LogState::truncate_fully_and_start_at`]).
    BelowLogStart {
        /// The requested offset.
        offset: u64,
        /// The first offset still in the log.
        log_start_offset: u64,
    },
    /// An offset above [`OFFSET_MAX`].
    OffsetTooLarge(u64),
    /// A leader epoch lower than the current one, or above [`LEADER_EPOCH_MAX`].
    InvalidLeaderEpoch {
        /// The requested epoch.
        epoch: u32,
        /// The current epoch.
        current: u32,
    },
    /// Restored offsets break `log_start_offset <= high_watermark <= next_offset`, or the epoch
    /// history does not fit them.
    Inconsistent,
    /// A skip to an offset below the log end (a gap can only move the log end forward).
    BehindLogEnd {
        /// The requested offset.
        offset: u64,
        /// The log end offset.
        next_offset: u64,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BelowLogStart { offset, log_start_offset } => {
                write!(f, "cannot truncate to {offset}: below the log start offset {log_start_offset}")
            }
            Self::OffsetTooLarge(offset) => {
                write!(f, "offset {offset} is above the largest offset {OFFSET_MAX}")
            }
            Self::InvalidLeaderEpoch { epoch, current } => write!(
                f,
                "leader epoch {epoch} is invalid: the partition is at {current}, the largest \
                 epoch is {LEADER_EPOCH_MAX}"
            ),
            Self::Inconsistent => f.write_str(
                "inconsistent partition state: expected log start <= high watermark <= log end, \
                 and epochs starting inside the log",
            ),
            Self::BehindLogEnd { offset, next_offset } => {
                write!(f, "cannot skip to {offset}: the log already ends at {next_offset}")
            }
        }
    }
}

impl core::error::Error for StateError {}

/// The offsets and leader epochs of one partition, without its bytes: the pure part of a log,
/// shared by [`super::MemLog`] and the host's store (which persists these fields).
///
/// Invariant: `log_start_offset <= high_watermark <= next_offset <= OFFSET_MAX`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogState {
    log_start_offset: u64,
    next_offset: u64,
    high_watermark: u64,
    leader_epoch: u32,
    epochs: EpochHistory,
}

impl LogState {
    /// An empty partition at offset 0, leader epoch 0.
    pub const fn new() -> Self {
        Self { log_start_offset: 0, next_offset: 0, high_watermark: 0, leader_epoch: 0, epochs: EpochHistory::new() }
    }

    /// Rebuilds the state from persisted fields, checking the invariants.
    pub fn restore(
        log_start_offset: u64,
        next_offset: u64,
        high_watermark: u64,
        leader_epoch: u32,
        epochs: EpochHistory,
    ) -> Result<Self, StateError> {
        let offsets_ok =
            log_start_offset <= high_watermark && high_watermark <= next_offset && next_offset <= OFFSET_MAX;
        let epochs_ok =
            epochs.latest().is_none_or(|latest| latest.epoch <= leader_epoch && latest.start_offset <= next_offset);
        if !offsets_ok || !epochs_ok || leader_epoch > LEADER_EPOCH_MAX {
            return Err(StateError::Inconsistent);
        }
        Ok(Self { log_start_offset, next_offset, high_watermark, leader_epoch, epochs })
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }

    /// The log end offset: the offset the next batch gets.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Offsets below this are committed (durable, and mirrored where the host requires it):
    /// consumers read up to here.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    /// The epoch stamped into batches appended now.
    pub fn leader_epoch(&self) -> u32 {
        self.leader_epoch
    }

    /// The leader-epoch history.
    pub fn epochs(&self) -> &EpochHistory {
        &self.epochs
    }

    /// [`EpochHistory::end_offset_for`] with this log's end offset: what a follower at
    /// `requested_epoch` should truncate to.
    pub fn end_offset_for(&self, requested_epoch: u32) -> Option<(u32, u64)> {
        self.epochs.end_offset_for(requested_epoch, self.next_offset)
    }

    /// Leadership changed (e.g. this replica was promoted): batches appended from now on carry
    /// `epoch`. The history records it with the first batch written in it.
    pub fn set_leader_epoch(&mut self, epoch: u32) -> Result<(), StateError> {
        if epoch < self.leader_epoch || epoch > LEADER_EPOCH_MAX {
            return Err(StateError::InvalidLeaderEpoch { epoch, current: self.leader_epoch });
        }
        self.leader_epoch = epoch;
        Ok(())
    }

    /// Appends one batch as leader: writes the base offset (the log end offset) and the current
    /// leader epoch into `batch` in place, records the epoch, and moves the log end past the
    /// batch. `batch` must be exactly one batch that the caller already validated; only its
    /// header is read here.
    ///
    /// The state changes before the caller stores the bytes: if storing fails, the caller undoes
    /// it with [`truncate_to`](Self::truncate_to)`(info.base_offset)`.
    pub fn prepare_append(&mut self, batch: &mut [u8]) -> Result<AppendInfo, AppendError> {
        let header = decode_whole(batch)?;
        // Both fields lie in the header that `decode_whole` found complete.
        batch::set_base_offset(batch, self.next_offset as i64).map_err(AppendError::InvalidBatch)?;
        batch::set_partition_leader_epoch(batch, self.leader_epoch as i32).map_err(AppendError::InvalidBatch)?;
        self.prepare_append_header(&header)
    }

    /// [`prepare_append`](Self::prepare_append) for a host that decoded the batch's header
    /// already and writes the leader's fields itself: the batch gets `info.base_offset` and
    /// [`leader_epoch`](Self::leader_epoch) (as read before this call). Nothing changes on an
    /// error.
    pub fn prepare_append_header(&mut self, header: &BatchHeader) -> Result<AppendInfo, AppendError> {
        if header.last_offset_delta < 0 {
            return Err(AppendError::InvalidBatch(BatchError::InvalidLastOffsetDelta {
                last_offset_delta: header.last_offset_delta,
                records_count: header.records_count,
            }));
        }
        let base_offset = self.next_offset;
        // OFFSET_MAX and LEADER_EPOCH_MAX make the host's conversions to i64 and i32 lossless.
        let next_offset = offsets_after(base_offset, header.last_offset_delta)?;
        // `assign` changes nothing when it fails.
        self.epochs.assign(self.leader_epoch, base_offset).map_err(AppendError::Epoch)?;
        self.next_offset = next_offset;
        self.check();
        Ok(append_info(header, base_offset, next_offset - 1, header.total_len()))
    }

    /// Appends one replicated batch whose offsets and epoch the leader already assigned: it must
    /// start at the log end offset, and its epoch must not be older than the latest here.
    pub fn append_follower(&mut self, batch: &[u8]) -> Result<AppendInfo, AppendError> {
        let header = decode_whole(batch)?;
        if u64::try_from(header.base_offset) != Ok(self.next_offset) {
            return Err(AppendError::OffsetMismatch { expected: self.next_offset, found: header.base_offset });
        }
        let epoch = u32::try_from(header.partition_leader_epoch)
            .map_err(|_| AppendError::InvalidLeaderEpoch(header.partition_leader_epoch))?;
        let next_offset = offsets_after(self.next_offset, header.last_offset_delta)?;
        let base_offset = self.next_offset;
        // `assign` changes nothing when it fails.
        self.epochs.assign(epoch, base_offset).map_err(AppendError::Epoch)?;
        self.leader_epoch = self.leader_epoch.max(epoch);
        self.next_offset = next_offset;
        self.check();
        Ok(append_info(&header, base_offset, next_offset - 1, batch.len()))
    }

    /// Marks offsets below `offset` committed. Clamped to the log end; never moves back.
    /// Returns the high watermark.
    pub fn advance_high_watermark(&mut self, offset: u64) -> u64 {
        self.high_watermark = self.high_watermark.max(offset.min(self.next_offset));
        self.check();
        self.high_watermark
    }

    /// Removes the suffix from `offset` on (divergence found by epoch, or a failed store).
    /// `offset >= next_offset` changes nothing. The high watermark follows down if needed.
    pub fn truncate_to(&mut self, offset: u64) -> Result<(), StateError> {
        if offset < self.log_start_offset {
            return Err(StateError::BelowLogStart { offset, log_start_offset: self.log_start_offset });
        }
        if offset >= self.next_offset {
            return Ok(());
        }
        self.next_offset = offset;
        self.high_watermark = self.high_watermark.min(offset);
        self.epochs.truncate_from_end(offset);
        self.check();
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (Kafka's `truncateFullyAndStartAt`): for a
    /// follower whose log is entirely behind the leader's log start.
    pub fn truncate_fully_and_start_at(&mut self, offset: u64) -> Result<(), StateError> {
        if offset > OFFSET_MAX {
            return Err(StateError::OffsetTooLarge(offset));
        }
        self.log_start_offset = offset;
        self.next_offset = offset;
        self.high_watermark = offset;
        self.epochs.clear();
        self.check();
        Ok(())
    }

    /// A follower's log end jumps to `offset` over offsets the leader no longer has (deleted
    /// before the follower copied them) or never had: the range stays empty, as offsets removed
    /// by compaction do in a Kafka topic, and readers skip it. An empty log simply restarts at
    /// `offset`. A high watermark at the log end moves with it: nothing can ever be appended in
    /// the gap, so there is nothing to wait for.
    pub fn skip_to(&mut self, offset: u64) -> Result<(), StateError> {
        if offset > OFFSET_MAX {
            return Err(StateError::OffsetTooLarge(offset));
        }
        if offset < self.next_offset {
            return Err(StateError::BehindLogEnd { offset, next_offset: self.next_offset });
        }
        if self.log_start_offset == self.next_offset {
            self.log_start_offset = offset;
        }
        if self.high_watermark == self.next_offset {
            self.high_watermark = offset;
        }
        self.next_offset = offset;
        self.check();
        Ok(())
    }

    /// Moves the log start up to `offset` (DeleteRecords, retention), clamped to the high
    /// watermark (uncommitted data is never deleted from the front); never moves back.
    /// Returns the log start offset.
    pub fn advance_log_start(&mut self, offset: u64) -> u64 {
        let offset = offset.min(self.high_watermark);
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            self.epochs.truncate_from_start(offset);
        }
        self.check();
        self.log_start_offset
    }

    /// Whether a fetch may start at `offset`: `log_start_offset <= offset <= next_offset`
    /// (fetching at the log end is valid and returns nothing yet).
    pub fn check_fetch(&self, offset: u64) -> Result<(), OffsetOutOfRange> {
        if offset < self.log_start_offset || offset > self.next_offset {
            return Err(OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                next_offset: self.next_offset,
            });
        }
        Ok(())
    }

    fn check(&self) {
        assert!(
            self.log_start_offset <= self.high_watermark
                && self.high_watermark <= self.next_offset
                && self.next_offset <= OFFSET_MAX,
            "log offsets out of order: start {} hw {} end {}",
            self.log_start_offset,
            self.high_watermark,
            self.next_offset
        );
        debug_assert!(self.epochs.latest().is_none_or(|e| e.epoch <= self.leader_epoch));
    }
}

/// The header of `batch`, which must be exactly one batch long.
fn decode_whole(batch: &[u8]) -> Result<BatchHeader, AppendError> {
    let header = BatchHeader::decode(batch).map_err(AppendError::InvalidBatch)?;
    if header.total_len() != batch.len() {
        return Err(AppendError::InvalidBatch(BatchError::LengthMismatch {
            declared: header.total_len(),
            actual: batch.len(),
        }));
    }
    if header.last_offset_delta < 0 {
        return Err(AppendError::InvalidBatch(BatchError::InvalidLastOffsetDelta {
            last_offset_delta: header.last_offset_delta,
            records_count: header.records_count,
        }));
    }
    Ok(header)
}

/// The log end offset after a batch at `base_offset` with `last_offset_delta` (>= 0).
fn offsets_after(base_offset: u64, last_offset_delta: i32) -> Result<u64, AppendError> {
    let overflow = AppendError::OffsetOverflow { base_offset, last_offset_delta };
    let delta = u64::try_from(last_offset_delta).map_err(|_| overflow)?;
    let last = base_offset.checked_add(delta).ok_or(overflow)?;
    if last >= OFFSET_MAX {
        // The next offset (last + 1) must still be representable as an offset.
        return Err(overflow);
    }
    Ok(last + 1)
}

fn append_info(header: &BatchHeader, base_offset: u64, last_offset: u64, len: usize) -> AppendInfo {
    AppendInfo {
        base_offset,
        last_offset,
        max_timestamp: header.max_timestamp,
        size_bytes: len,
        records_count: u32::try_from(header.records_count).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;
    use crate::batch::{Batch, BatchParams, RecordSpec, build_vec};
    use crate::log::EpochEntry;

    /// A producer batch of `count` records with timestamps 100, 101, ...
    fn batch(count: usize) -> Vec<u8> {
        let specs: Vec<RecordSpec<'_>> = (0..count)
            .map(|i| RecordSpec { timestamp: 100 + i as i64, key: None, value: Some(b"v"), headers: &[] })
            .collect();
        build_vec(BatchParams::default(), &specs).unwrap()
    }

    fn header(bytes: &[u8]) -> BatchHeader {
        *Batch::parse(bytes).unwrap().header()
    }

    #[test]
    fn prepare_append_assigns_offsets_and_epoch_in_place() {
        let mut state = LogState::new();
        state.set_leader_epoch(3).unwrap();
        let mut first = batch(3);
        let info = state.prepare_append(&mut first).unwrap();
        assert_eq!(
            info,
            AppendInfo {
                base_offset: 0,
                last_offset: 2,
                max_timestamp: 102,
                size_bytes: first.len(),
                records_count: 3
            }
        );
        let mut second = batch(1);
        let info = state.prepare_append(&mut second).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (3, 3));
        let h = header(&second);
        assert_eq!((h.base_offset, h.partition_leader_epoch), (3, 3));
        assert_eq!(state.next_offset(), 4);
        assert_eq!(state.high_watermark(), 0);
        assert_eq!(state.epochs().entries(), [EpochEntry { epoch: 3, start_offset: 0 }]);
    }

    #[test]
    fn prepare_append_rejects_partial_or_concatenated_bytes() {
        let mut state = LogState::new();
        let one = batch(1);
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert!(matches!(state.prepare_append(&mut two), Err(AppendError::InvalidBatch(_))));
        assert!(matches!(state.prepare_append(&mut two[..30]), Err(AppendError::InvalidBatch(_))));
        assert_eq!(state, LogState::new());
    }

    #[test]
    fn epoch_changes_enter_history_at_first_append() {
        let mut state = LogState::new();
        state.prepare_append(&mut batch(2)).unwrap();
        state.set_leader_epoch(1).unwrap();
        state.set_leader_epoch(2).unwrap();
        assert_eq!(state.epochs().entries().len(), 1);
        state.prepare_append(&mut batch(1)).unwrap();
        let pairs: Vec<(u32, u64)> = state.epochs().entries().iter().map(|e| (e.epoch, e.start_offset)).collect();
        assert_eq!(pairs, [(0, 0), (2, 2)]);
        assert_eq!(state.end_offset_for(0), Some((0, 2)));
        assert_eq!(state.end_offset_for(1), Some((0, 2)));
        assert_eq!(state.end_offset_for(2), Some((2, 3)));
        assert_eq!(state.end_offset_for(3), None);
        assert!(matches!(state.set_leader_epoch(1), Err(StateError::InvalidLeaderEpoch { .. })));
        assert!(state.set_leader_epoch(LEADER_EPOCH_MAX + 1).is_err());
    }

    #[test]
    fn follower_append_checks_offset_and_epoch() {
        let mut leader = LogState::new();
        leader.set_leader_epoch(4).unwrap();
        let mut b0 = batch(2);
        leader.prepare_append(&mut b0).unwrap();
        let mut b1 = batch(1);
        leader.prepare_append(&mut b1).unwrap();

        let mut follower = LogState::new();
        let err = follower.append_follower(&b1).unwrap_err();
        assert_eq!(err, AppendError::OffsetMismatch { expected: 0, found: 2 });
        follower.append_follower(&b0).unwrap();
        follower.append_follower(&b1).unwrap();
        assert_eq!(follower.next_offset(), 3);
        assert_eq!(follower.leader_epoch(), 4);
        assert_eq!(follower.epochs(), leader.epochs());

        // An older epoch is fenced; no epoch at all is invalid.
        let mut stale = batch(1);
        crate::batch::set_base_offset(&mut stale, 3).unwrap();
        crate::batch::set_partition_leader_epoch(&mut stale, 2).unwrap();
        assert!(matches!(
            follower.append_follower(&stale),
            Err(AppendError::Epoch(EpochError::Fenced { epoch: 2, latest_epoch: 4 }))
        ));
        crate::batch::set_partition_leader_epoch(&mut stale, -1).unwrap();
        assert_eq!(follower.append_follower(&stale), Err(AppendError::InvalidLeaderEpoch(-1)));
        assert_eq!(follower.next_offset(), 3);
    }

    #[test]
    fn high_watermark_is_clamped_and_monotonic() {
        let mut state = LogState::new();
        state.prepare_append(&mut batch(5)).unwrap();
        assert_eq!(state.advance_high_watermark(3), 3);
        assert_eq!(state.advance_high_watermark(1), 3);
        assert_eq!(state.advance_high_watermark(100), 5);
    }

    #[test]
    fn truncate_to_moves_end_and_high_watermark_down() {
        let mut state = LogState::new();
        state.prepare_append(&mut batch(5)).unwrap();
        state.set_leader_epoch(1).unwrap();
        state.prepare_append(&mut batch(5)).unwrap();
        state.advance_high_watermark(8);
        state.truncate_to(20).unwrap();
        assert_eq!(state.next_offset(), 10);
        state.truncate_to(5).unwrap();
        assert_eq!((state.next_offset(), state.high_watermark()), (5, 5));
        assert_eq!(state.epochs().latest(), Some(EpochEntry { epoch: 0, start_offset: 0 }));
        state.advance_log_start(2);
        assert_eq!(state.truncate_to(1), Err(StateError::BelowLogStart { offset: 1, log_start_offset: 2 }));
        state.truncate_fully_and_start_at(42).unwrap();
        assert_eq!((state.log_start_offset(), state.high_watermark(), state.next_offset()), (42, 42, 42));
        assert!(state.epochs().entries().is_empty());
        assert!(state.truncate_fully_and_start_at(OFFSET_MAX + 1).is_err());
    }

    #[test]
    fn log_start_is_clamped_to_high_watermark_and_trims_epochs() {
        let mut state = LogState::new();
        state.prepare_append(&mut batch(5)).unwrap();
        state.set_leader_epoch(1).unwrap();
        state.prepare_append(&mut batch(5)).unwrap();
        assert_eq!(state.advance_log_start(7), 0);
        state.advance_high_watermark(7);
        assert_eq!(state.advance_log_start(9), 7);
        assert_eq!(state.advance_log_start(3), 7);
        assert_eq!(state.epochs().entries(), [EpochEntry { epoch: 1, start_offset: 7 }]);
        assert_eq!(state.check_fetch(7), Ok(()));
        assert_eq!(state.check_fetch(10), Ok(()));
        let out = OffsetOutOfRange { offset: 6, log_start_offset: 7, next_offset: 10 };
        assert_eq!(state.check_fetch(6), Err(out));
        assert_eq!(state.check_fetch(11).unwrap_err().offset, 11);
    }

    #[test]
    fn offsets_never_pass_offset_max() {
        let at = OFFSET_MAX - 2;
        let mut state = LogState::restore(at, at, at, 0, EpochHistory::new()).unwrap();
        let err = state.prepare_append(&mut batch(3)).unwrap_err();
        assert!(matches!(err, AppendError::OffsetOverflow { .. }));
        let info = state.prepare_append(&mut batch(2)).unwrap();
        assert_eq!(info.last_offset, OFFSET_MAX - 1);
        assert_eq!(state.next_offset(), OFFSET_MAX);
        assert!(state.prepare_append(&mut batch(1)).is_err());
    }

    #[test]
    fn skip_to_leaves_a_gap_and_restarts_an_empty_log() {
        let mut state = LogState::new();
        state.skip_to(50).unwrap();
        assert_eq!((state.log_start_offset(), state.high_watermark(), state.next_offset()), (50, 50, 50));
        let mut first = batch(3);
        batch::set_base_offset(&mut first, 50).unwrap();
        batch::set_partition_leader_epoch(&mut first, 0).unwrap();
        state.append_follower(&first).unwrap();
        state.skip_to(60).unwrap();
        assert_eq!((state.log_start_offset(), state.high_watermark(), state.next_offset()), (50, 50, 60));
        assert_eq!(state.skip_to(59), Err(StateError::BehindLogEnd { offset: 59, next_offset: 60 }));
        state.advance_high_watermark(60);
        state.skip_to(70).unwrap();
        assert_eq!((state.log_start_offset(), state.high_watermark(), state.next_offset()), (50, 70, 70));
        assert_eq!(state.skip_to(OFFSET_MAX + 1), Err(StateError::OffsetTooLarge(OFFSET_MAX + 1)));
    }

    #[test]
    fn restore_checks_invariants() {
        let epochs = |epoch, start_offset| EpochHistory::from_entries(&[EpochEntry { epoch, start_offset }]).unwrap();
        assert!(LogState::restore(0, 10, 5, 1, epochs(1, 3)).is_ok());
        assert!(LogState::restore(6, 10, 5, 1, EpochHistory::new()).is_err());
        assert!(LogState::restore(0, 4, 5, 1, EpochHistory::new()).is_err());
        assert!(LogState::restore(0, 10, 5, 0, epochs(1, 3)).is_err());
        assert!(LogState::restore(0, 10, 5, 1, epochs(1, 11)).is_err());
        assert!(LogState::restore(0, OFFSET_MAX + 1, 0, 0, EpochHistory::new()).is_err());
    }
}
