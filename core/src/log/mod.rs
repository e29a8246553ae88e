//! The log model of one partition: offsets, high watermark, leader epochs, and the operations on
//! them (append, read, truncate, advance the log start). Pure: the host's redb store and
//! [`MemLog`] both drive a [`LogState`] and store the bytes themselves.
//!
//! # Offsets
//!
//! `log_start_offset <= high_watermark <= next_offset` (the log end offset), all `u64` and at most
//! [`OFFSET_MAX`](crate::limits::OFFSET_MAX) (Kafka's `i64` wire values are converted at the
//! edges). The leader assigns a batch's base offset at append, in place (the field lies outside
//! the CRC). Consumers read below the high watermark, which the host advances once a batch is
//! durable (and, where the topic requires it, mirrored).
//!
//! # Leader epochs
//!
//! Every batch carries the partition leader epoch it was written in, stamped at append like the
//! base offset. The epoch changes only on a leadership change — the edge leader restarting as a
//! new leader after a failover, or a follower promoted to leader — never per connection or per
//! restart of the same leader. [`EpochHistory`] records where each epoch's first batch starts.
//! When a replica reconnects to a leader it sends its latest epoch; the leader answers with
//! [`EpochHistory::end_offset_for`] that epoch, and the replica truncates its log there: every
//! offset below the answer was written by the same leader in the same epoch on both sides, so the
//! logs agree up to it (Kafka's KIP-101/KIP-279 divergence detection). An epoch enters the history
//! with the first batch appended in it, not when it is set.

mod epoch;
mod mem_log;
mod state;

pub use self::epoch::{EpochEntry, EpochError, EpochHistory};
pub use self::mem_log::MemLog;
pub use self::state::{AppendError, LogState, OffsetOutOfRange, StateError};
pub use crate::ram_log::AppendInfo;
