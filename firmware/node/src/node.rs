//! What the node's tasks share: the RAM log, the readings channel, and the signal that wakes the
//! uplink when a batch is appended. One `static` of [`NodeState`] per board.

use core::cell::RefCell;

use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::channel::Channel;
use embassy_sync::signal::Signal;
use rill_core::ram_log::{FullPolicy, RamLog};

use crate::sampling::Reading;

/// The node's shared state: `BYTES` and `BATCHES` size the RAM log, `QUEUE` the readings channel
/// between the sampling and the batching task.
pub struct NodeState<M: RawMutex, const BYTES: usize, const BATCHES: usize, const QUEUE: usize> {
    held: Mutex<M, RefCell<Held<BYTES, BATCHES>>>,
    pub(crate) readings: Channel<M, Reading, QUEUE>,
    appended: Signal<M, ()>,
}

#[derive(Debug)]
struct Held<const BYTES: usize, const BATCHES: usize> {
    log: RamLog<BYTES, BATCHES>,
    /// Readings lost before reaching the log because the board's sizes cannot hold them.
    unbatchable: u32,
    /// Batches moved from the log to the backlog while the link was down.
    spilled_batches: u32,
    /// Backlog operations that failed (the flash failed): the console shows them.
    backlog_errors: u32,
}

/// A snapshot for the board's console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStats {
    pub held_batches: usize,
    pub held_bytes: usize,
    /// The next offset: readings batched this boot.
    pub next_offset: u64,
    /// Records the full log dropped (oldest first); reported upstream in every frame.
    pub dropped_records: u64,
    pub unbatchable: u32,
    /// Every reading below this offset is stored: acknowledged by the gateway, or in the flash
    /// backlog (or counted in `dropped_records`). What a power cut cannot take; a reading at or
    /// past it is in RAM only.
    pub stored_until: u64,
    /// Batches moved to the backlog while the link was down.
    pub spilled_batches: u32,
    /// Backlog operations that failed.
    pub backlog_errors: u32,
}

impl<M: RawMutex, const BYTES: usize, const BATCHES: usize, const QUEUE: usize> NodeState<M, BYTES, BATCHES, QUEUE> {
    /// Empty, `const` so it can be a `static`. A full log drops its oldest batches: a sensor
    /// node wants its newest readings, and the drops are counted and reported upstream.
    pub const fn new() -> Self {
        NodeState {
            held: Mutex::new(RefCell::new(Held {
                log: RamLog::new(FullPolicy::DropOldest),
                unbatchable: 0,
                spilled_batches: 0,
                backlog_errors: 0,
            })),
            readings: Channel::new(),
            appended: Signal::new(),
        }
    }

    /// Appends a finished batch and wakes the uplink.
    pub fn append(&self, batch: &[u8]) {
        self.with_held(|held| {
            // Under drop-oldest the only failures are a batch larger than the whole log or one
            // that does not parse: the board's sizes or a bug. Counted, not silently lost.
            if held.log.append(batch).is_err() {
                let records = rill_core::batch::BatchHeader::decode(batch).map_or(1, |h| h.records_count.max(1) as u32);
                held.unbatchable = held.unbatchable.saturating_add(records);
            }
        });
        self.appended.signal(());
    }

    pub(crate) fn count_unbatchable(&self) {
        self.with_held(|held| held.unbatchable = held.unbatchable.saturating_add(1));
    }

    /// The oldest batch, ending at offset `last`, is in the backlog now: the log lets it go.
    pub(crate) fn spilled(&self, last: u64) {
        self.with_held(|held| {
            held.log.release_through(last);
            held.spilled_batches = held.spilled_batches.saturating_add(1);
        });
    }

    pub(crate) fn count_backlog_error(&self) {
        self.with_held(|held| held.backlog_errors = held.backlog_errors.saturating_add(1));
    }

    fn with_held<R>(&self, f: impl FnOnce(&mut Held<BYTES, BATCHES>) -> R) -> R {
        self.held.lock(|held| f(&mut held.borrow_mut()))
    }

    /// Runs `f` on the log, holding the lock (keep it short: no awaiting inside).
    pub fn with_log<R>(&self, f: impl FnOnce(&mut RamLog<BYTES, BATCHES>) -> R) -> R {
        self.with_held(|held| f(&mut held.log))
    }

    /// Waits until a batch is appended after the last wait.
    pub async fn appended(&self) {
        self.appended.wait().await;
    }

    pub fn stats(&self) -> NodeStats {
        self.held.lock(|held| {
            let held = held.borrow();
            NodeStats {
                held_batches: held.log.len(),
                held_bytes: held.log.bytes_used(),
                next_offset: held.log.next_offset(),
                dropped_records: held.log.dropped_records(),
                unbatchable: held.unbatchable,
                // The log holds exactly what is neither acknowledged, nor in the backlog, nor
                // dropped.
                stored_until: held.log.first_offset().unwrap_or_else(|| held.log.next_offset()),
                spilled_batches: held.spilled_batches,
                backlog_errors: held.backlog_errors,
            }
        })
    }
}

impl<M: RawMutex, const BYTES: usize, const BATCHES: usize, const QUEUE: usize> core::fmt::Debug
    for NodeState<M, BYTES, BATCHES, QUEUE>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NodeState").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl<M: RawMutex, const BYTES: usize, const BATCHES: usize, const QUEUE: usize> Default
    for NodeState<M, BYTES, BATCHES, QUEUE>
{
    fn default() -> Self {
        Self::new()
    }
}
