//! Edge → cloud replication, sans-IO: the messages, and the two state machines that move a
//! partition's batches from the edge (the [`Leader`], which owns the log) to an aggregation node
//! (the [`Follower`], which keeps a copy at the same offsets).
//!
//! Same offsets on both sides make duplicates impossible by construction: the follower appends a
//! batch only at its log end, so a batch sent twice is recognised by its offsets alone. The copy
//! stays a prefix of the edge's durable log:
//!
//! - the leader ships only batches below the partition's durable end (under the interval
//!   durability policy, the tail a crash could take back never leaves the edge);
//! - on every connection the leader finds where the copy diverged, by leader epoch
//!   ([`divergence`]), and the follower cuts it there before taking batches;
//! - batches travel byte for byte (their CRC checked on arrival) and are appended only where the
//!   copy ends.
//!
//! Where the leader has no records (deleted before they were mirrored, or a gap in its own log),
//! it says so with a `Skip` and the copy's log end jumps over the gap, as offsets removed by
//! compaction do in a Kafka topic. Records a filter removed on the way keep their batch's offset
//! range, so they leave gaps inside batches, not between them.
//!
//! The host drives both machines the same way: feed frames with `step`, time with `tick`, then
//! move what `ready` returns (frames to send, writes to persist) and call `advance` once done.
//! The state machines never block, allocate only for what they hold, and never panic on input.

pub mod divergence;
mod follower;
mod leader;
pub mod protocol;

#[cfg(test)]
mod sim;

pub use follower::{
    Follower, FollowerConfig, FollowerEvent, FollowerReady, FollowerSlotStatus, FollowerWrite, HelloRequest, SlotInit,
};
pub use leader::{
    CloseReason, Leader, LeaderConfig, LeaderEvent, LeaderReady, LogSource, PartitionLog, ReadFailure, SlotPhase,
    SlotStatus,
};
pub use protocol::{GapReason, Incarnation, PartitionHello, PartitionId, SlotWelcome, ToFollower, ToLeader};
