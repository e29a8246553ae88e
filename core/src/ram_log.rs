//! A fixed-capacity log for devices: whole v2 batches in a byte ring of `BYTES`, indexed by a
//! deque of at most `BATCHES` entries. No allocator, no panics on any input.
//!
//! A device appends the batches it builds (offsets are assigned here, from 0, like the gateway's
//! log does), sends them over the uplink, and releases them once the gateway acknowledged them
//! ([`RamLog::release_through`]). What is not released stays for a resend after a reconnect.
//!
//! # When the log is full
//!
//! "Full" means the new batch does not fit in the free bytes, or the index already holds
//! `BATCHES` batches. The caller picks the policy at construction ([`FullPolicy`]):
//! - [`FullPolicy::Reject`]: `append` returns [`RamLogError::Full`] and changes nothing; the device
//!   keeps its unsent data and decides itself (stop sampling, retry later).
//! - [`FullPolicy::DropOldest`]: the oldest batches are evicted, unacknowledged or not, until the
//!   new one fits; `dropped_batches`/`dropped_records` count them so the loss can be reported.
//!   Fresh readings usually matter more than old ones on a sensor.
//!
//! A batch larger than `BYTES` never fits and is always [`RamLogError::TooLarge`], whatever the
//! policy. Offsets keep counting across drops, so the gateway sees the gap.
//!
//! # Layout
//!
//! Batches sit contiguously in the ring, oldest at the front, each in one piece so that
//! [`RamLog::read`] returns a plain slice. A batch that does not fit between the newest batch and
//! the end of the buffer goes to the start instead, if the space before the oldest batch is large
//! enough; the tail bytes it skipped stay unused until the ring wraps past them.

use core::fmt;

use heapless::Deque;

use crate::batch::{self, Batch, BatchError};
use crate::limits::OFFSET_MAX;

/// What an append did: where the batch went and what it holds. Shared by every log in the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// The offset assigned to the batch's first record.
    pub base_offset: u64,
    /// The offset of its last record (inclusive).
    pub last_offset: u64,
    /// The batch's `maxTimestamp`.
    pub max_timestamp: i64,
    /// The batch's length in bytes.
    pub size_bytes: usize,
    /// The batch's `recordsCount`.
    pub records_count: u32,
}

/// What to do when an append does not fit. See the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// DropOldest first: its discriminant is 0, so a device's `static` log under it is all zero bytes
// and the linker keeps it in .bss, rather than copying kilobytes of zeros from flash (.data).
pub enum FullPolicy {
    /// Evict the oldest batches until the new one fits, and count them.
    DropOldest,
    /// Refuse the new batch; keep everything stored.
    Reject,
}

/// Why [`RamLog::append`] refused a batch. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RamLogError {
    /// The bytes are not exactly one valid v2 batch.
    InvalidBatch(BatchError),
    /// The batch is larger than the whole buffer.
    TooLarge {
        /// The batch's length.
        size_bytes: usize,
        /// The buffer's capacity (`BYTES`).
        capacity_bytes: usize,
    },
    /// No room, and the policy is [`FullPolicy::Reject`].
    Full,
    /// The batch's offsets would pass [`OFFSET_MAX`].
    OffsetOverflow,
}

impl fmt::Display for RamLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidBatch(e) => write!(f, "invalid batch: {e}"),
            Self::TooLarge { size_bytes, capacity_bytes } => {
                write!(f, "batch of {size_bytes} bytes can never fit the RAM log of {capacity_bytes} bytes")
            }
            Self::Full => f.write_str("RAM log is full: release acknowledged batches first"),
            Self::OffsetOverflow => {
                write!(f, "the batch's offsets would pass the largest offset {OFFSET_MAX}")
            }
        }
    }
}

impl core::error::Error for RamLogError {}

/// Where one stored batch lives.
#[derive(Debug, Clone, Copy)]
struct Entry {
    base_offset: u64,
    last_offset: u64,
    start: usize,
    len: usize,
    records_count: u32,
}

impl Entry {
    fn end(&self) -> usize {
        self.start + self.len
    }
}

/// A fixed-capacity log of whole batches. See the module doc.
#[derive(Debug)]
pub struct RamLog<const BYTES: usize, const BATCHES: usize> {
    buffer: [u8; BYTES],
    index: Deque<Entry, BATCHES>,
    policy: FullPolicy,
    next_offset: u64,
    dropped_batches: u64,
    dropped_records: u64,
}

impl<const BYTES: usize, const BATCHES: usize> RamLog<BYTES, BATCHES> {
    /// Rejects, at compile time, sizes that could never hold a batch.
    const SIZES_OK: () = assert!(BATCHES > 0 && BYTES >= batch::HEADER_LEN);

    /// An empty log; the first batch gets offset 0. `const` so it can live in a `static`.
    pub const fn new(policy: FullPolicy) -> Self {
        let () = Self::SIZES_OK;
        Self { buffer: [0; BYTES], index: Deque::new(), policy, next_offset: 0, dropped_batches: 0, dropped_records: 0 }
    }

    /// Validates `batch` (exactly one v2 batch), assigns its offsets and stores a copy.
    pub fn append(&mut self, batch: &[u8]) -> Result<AppendInfo, RamLogError> {
        let parsed = Batch::parse(batch).map_err(RamLogError::InvalidBatch)?;
        let header = parsed.header();
        if batch.len() > BYTES {
            return Err(RamLogError::TooLarge { size_bytes: batch.len(), capacity_bytes: BYTES });
        }
        let base_offset = self.next_offset;
        let delta = u64::try_from(header.last_offset_delta).map_err(|_| RamLogError::OffsetOverflow)?;
        let last_offset =
            base_offset.checked_add(delta).filter(|&last| last < OFFSET_MAX).ok_or(RamLogError::OffsetOverflow)?;
        let start = self.make_room(batch.len())?;
        let stored = &mut self.buffer[start..start + batch.len()];
        stored.copy_from_slice(batch);
        // Cannot fail: the slice is the validated batch. Offsets <= OFFSET_MAX fit an i64.
        batch::set_base_offset(stored, base_offset as i64).map_err(RamLogError::InvalidBatch)?;
        let records_count = u32::try_from(header.records_count).unwrap_or(0);
        let entry = Entry { base_offset, last_offset, start, len: batch.len(), records_count };
        // `make_room` left a free index slot.
        if self.index.push_back(entry).is_err() {
            return Err(RamLogError::Full);
        }
        self.next_offset = last_offset + 1;
        self.debug_check();
        Ok(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp: header.max_timestamp,
            size_bytes: batch.len(),
            records_count,
        })
    }

    /// Where a batch of `len` bytes goes, evicting under [`FullPolicy::DropOldest`].
    fn make_room(&mut self, len: usize) -> Result<usize, RamLogError> {
        loop {
            if !self.index.is_full()
                && let Some(start) = self.free_start(len)
            {
                return Ok(start);
            }
            match self.policy {
                FullPolicy::Reject => return Err(RamLogError::Full),
                FullPolicy::DropOldest => {
                    // An empty log always has room for `len <= BYTES`, so this ends.
                    let Some(evicted) = self.index.pop_front() else {
                        return Err(RamLogError::Full);
                    };
                    self.dropped_batches = self.dropped_batches.saturating_add(1);
                    self.dropped_records = self.dropped_records.saturating_add(u64::from(evicted.records_count));
                }
            }
        }
    }

    /// The start of a free run of `len` bytes after the newest batch, if there is one.
    fn free_start(&self, len: usize) -> Option<usize> {
        let (Some(oldest), Some(newest)) = (self.index.front(), self.index.back()) else {
            // Empty: start over at 0, so the whole buffer is one free run.
            return (len <= BYTES).then_some(0);
        };
        if newest.start >= oldest.start {
            // Not wrapped: free runs are [newest.end, BYTES) and [0, oldest.start).
            if BYTES - newest.end() >= len { Some(newest.end()) } else { (oldest.start >= len).then_some(0) }
        } else {
            // Wrapped: the only free run is [newest.end, oldest.start).
            (oldest.start - newest.end() >= len).then_some(newest.end())
        }
    }

    /// The batch holding `offset`, if it is still stored.
    pub fn read(&self, offset: u64) -> Option<&[u8]> {
        let (front, back) = self.index.as_slices();
        let in_back = back.first().is_some_and(|e| e.base_offset <= offset);
        let half = if in_back { back } else { front };
        let i = half.partition_point(|e| e.last_offset < offset);
        let entry = half.get(i).filter(|e| e.base_offset <= offset)?;
        Some(self.bytes_of(entry))
    }

    /// The oldest stored batch.
    pub fn oldest(&self) -> Option<&[u8]> {
        self.index.front().map(|e| self.bytes_of(e))
    }

    /// The stored batches, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.index.iter().map(|e| self.bytes_of(e))
    }

    /// Drops every batch whose last offset is `<= offset` (the gateway acknowledged them).
    /// Returns how many batches were released.
    pub fn release_through(&mut self, offset: u64) -> usize {
        let mut released = 0;
        while self.index.pop_front_if(|e| e.last_offset <= offset).is_some() {
            released += 1;
        }
        self.debug_check();
        released
    }

    /// The offset the next batch gets.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The base offset of the oldest stored batch.
    pub fn first_offset(&self) -> Option<u64> {
        self.index.front().map(|e| e.base_offset)
    }

    /// Stored batches.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// No batch stored.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes held by stored batches (not counting skipped tail bytes).
    pub fn bytes_used(&self) -> usize {
        self.index.iter().map(|e| e.len).sum()
    }

    /// Batches evicted by [`FullPolicy::DropOldest`] since creation.
    pub fn dropped_batches(&self) -> u64 {
        self.dropped_batches
    }

    /// Records in those batches.
    pub fn dropped_records(&self) -> u64 {
        self.dropped_records
    }

    fn bytes_of(&self, entry: &Entry) -> &[u8] {
        // Entries only ever describe ranges `free_start` found inside the buffer.
        &self.buffer[entry.start..entry.end()]
    }

    fn debug_check(&self) {
        debug_assert!(self.index.iter().all(|e| e.end() <= BYTES && e.len > 0));
        debug_assert!(
            self.index.iter().zip(self.index.iter().skip(1)).all(|(a, b)| a.last_offset < b.base_offset),
            "RAM log index out of order"
        );
        debug_assert!(self.index.back().is_none_or(|e| e.last_offset < self.next_offset));
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use alloc::vec::Vec;

    use super::*;
    use crate::batch::{BatchParams, RecordSpec, build_vec};

    /// A batch of `count` records whose values are `tag`.
    fn batch(count: usize, tag: u8) -> Vec<u8> {
        let value = [tag; 8];
        let specs: Vec<RecordSpec<'_>> = (0..count)
            .map(|i| RecordSpec { timestamp: i as i64, key: None, value: Some(&value), headers: &[] })
            .collect();
        build_vec(BatchParams::default(), &specs).unwrap()
    }

    fn base_offset(bytes: &[u8]) -> i64 {
        Batch::parse(bytes).unwrap().base_offset()
    }

    #[test]
    fn append_assigns_offsets_and_read_finds_containing_batch() {
        let mut log = RamLog::<1024, 8>::new(FullPolicy::Reject);
        let a = log.append(&batch(3, 1)).unwrap();
        let b = log.append(&batch(2, 2)).unwrap();
        assert_eq!((a.base_offset, a.last_offset, a.records_count), (0, 2, 3));
        assert_eq!((b.base_offset, b.last_offset), (3, 4));
        assert_eq!(log.next_offset(), 5);
        for offset in 0..3 {
            assert_eq!(base_offset(log.read(offset).unwrap()), 0);
        }
        assert_eq!(base_offset(log.read(4).unwrap()), 3);
        assert_eq!(log.read(5), None);
        assert_eq!(log.iter().count(), 2);
        assert_eq!(log.oldest().map(base_offset), Some(0));
        assert_eq!(log.bytes_used(), a.size_bytes + b.size_bytes);
    }

    #[test]
    fn invalid_or_oversized_batches_change_nothing() {
        let mut log = RamLog::<128, 4>::new(FullPolicy::DropOldest);
        log.append(&batch(1, 1)).unwrap();
        let mut corrupt = batch(1, 2);
        *corrupt.last_mut().unwrap() ^= 1;
        assert!(matches!(log.append(&corrupt), Err(RamLogError::InvalidBatch(_))));
        assert!(matches!(log.append(&[]), Err(RamLogError::InvalidBatch(_))));
        let big = batch(10, 3);
        assert_eq!(log.append(&big), Err(RamLogError::TooLarge { size_bytes: big.len(), capacity_bytes: 128 }));
        assert_eq!((log.len(), log.next_offset(), log.dropped_batches()), (1, 1, 0));
    }

    #[test]
    fn reject_policy_refuses_when_bytes_or_slots_run_out() {
        let one = batch(1, 1);
        let mut log = RamLog::<1024, 2>::new(FullPolicy::Reject);
        log.append(&one).unwrap();
        log.append(&one).unwrap();
        assert_eq!(log.append(&one), Err(RamLogError::Full));
        assert_eq!(log.next_offset(), 2);

        let mut log = RamLog::<200, 8>::new(FullPolicy::Reject);
        while log.append(&one).is_ok() {}
        assert_eq!(log.len(), 200 / one.len());
        assert_eq!(log.dropped_batches(), 0);
    }

    #[test]
    fn drop_oldest_evicts_and_counts() {
        let mut log = RamLog::<1024, 3>::new(FullPolicy::DropOldest);
        for count in 1..=5 {
            log.append(&batch(count, count as u8)).unwrap();
        }
        // Batches of 1, 2, 3, 4, 5 records; the last three remain.
        assert_eq!((log.dropped_batches(), log.dropped_records()), (2, 3));
        assert_eq!(log.first_offset(), Some(3));
        assert_eq!(log.read(2), None);
        assert_eq!(base_offset(log.read(14).unwrap()), 10);
    }

    #[test]
    fn ring_wraps_and_keeps_batches_whole() {
        let one = batch(1, 7);
        let slots = 3;
        // Room for three batches and a bit: the fourth wraps to the start once the first is gone.
        let mut log = RamLog::<256, 8>::new(FullPolicy::Reject);
        assert!(one.len() * slots <= 256 && one.len() * (slots + 1) > 256);
        for _ in 0..slots {
            log.append(&one).unwrap();
        }
        assert_eq!(log.append(&one), Err(RamLogError::Full));
        assert_eq!(log.release_through(0), 1);
        let info = log.append(&one).unwrap();
        assert_eq!(info.base_offset, 3);
        let offsets: Vec<i64> = log.iter().map(base_offset).collect();
        assert_eq!(offsets, [1, 2, 3]);
        assert_eq!(log.read(3).unwrap().len(), one.len());
        assert_eq!(log.release_through(2), 2);
        assert_eq!(log.release_through(100), 1);
        assert!(log.is_empty());
        // Empty again: the whole buffer is free from the start.
        for _ in 0..slots {
            log.append(&one).unwrap();
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut log = RamLog::<512, 4>::new(FullPolicy::DropOldest);
        let mut bytes = batch(2, 9);
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                bytes[i] ^= flip;
                let _ = log.append(&bytes);
                let _ = log.append(&bytes[..i]);
                bytes[i] ^= flip;
            }
        }
        log.append(&bytes).unwrap();
    }
}
