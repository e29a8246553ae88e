//! `rill-node`: the part of a sensor node's firmware that runs anywhere (`no_std`, no allocator,
//! no IO of its own). The board binary gives it a sensor, a byte stream to the gateway (its UART)
//! and an embassy time driver; this does the rest, in three tasks over [`NodeState`]:
//!
//! - [`sample`]: reads the [`Sensor`] at a fixed period, each reading stamped on the device clock,
//!   into a bounded embassy-sync channel;
//! - [`collect`]: batches readings (v2 batches built by `rill-core`, the device id as a record
//!   header, see [`reading`]) into the core's RAM log, which drops its oldest batches when full
//!   and counts what it dropped;
//! - [`run_uplink`]: forwards the log to the gateway with [`UplinkClient`] — what to send next,
//!   what an ack releases, when the link counts as down and when to try again.
//!
//! While the link is down, [`run_uplink_with`] moves batches to a [`backlog::Backlog`]: with the
//! feature `flash-backlog`, [`backlog::FlashSpill`] keeps them in NOR flash ([`flash_log`]), so
//! that a power cut takes no reading [`NodeStats::stored_until`] had confirmed as stored.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod backlog;
mod batching;
mod client;
#[cfg(feature = "flash-backlog")]
pub mod flash_log;
mod link;
mod node;
mod sampling;
#[cfg(test)]
mod testing;

pub use batching::collect;
pub use client::{Backoff, ClientConfig, UplinkClient};
pub use link::{ANSWER_WIRE_BYTES_MAX, UplinkBuffers, frame_bytes_for, run_uplink, run_uplink_with, wire_bytes_for};
pub use node::{NodeState, NodeStats};
pub use sampling::{Measurement, Reading, Sensor, Value, sample};

use rill_core::batch::{BatchBuilder, BuildError, RecordSpec};

/// The record header naming the device that took a reading.
pub const DEVICE_HEADER: &[u8] = b"device";

/// The largest reading value: readings wait in the channel by value, so this bounds its RAM.
pub const READING_VALUE_BYTES_MAX: usize = 64;

/// Adds a reading to the batch being built: `key` says what was measured, `timestamp_ms` is on
/// the device's clock. [`BuildError::BufferFull`] means: finish this batch, append it to the log,
/// and start the next with this reading.
pub fn reading(
    builder: &mut BatchBuilder<'_>,
    device: &str,
    timestamp_ms: i64,
    key: &[u8],
    value: &[u8],
) -> Result<(), BuildError> {
    let headers: [(&[u8], Option<&[u8]>); 1] = [(DEVICE_HEADER, Some(device.as_bytes()))];
    builder.push(&RecordSpec { timestamp: timestamp_ms, key: Some(key), value: Some(value), headers: &headers })
}
