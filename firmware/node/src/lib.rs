//! `rill-node`: the part of a sensor node's firmware that runs anywhere (`no_std`, no allocator,
//! no IO). The board binary gives it the bytes from its UART and a clock; this decides what to
//! send.
//!
//! - [`reading`]: a reading as a record of a v2 batch, the device id as a record header (so the
//!   gateway stores the batch as the device built it).
//! - [`UplinkClient`]: the uplink's sending side over the core's RAM log — what to send next, what
//!   an ack releases, and when to try the link again after it drops.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

mod client;

pub use client::{Backoff, ClientConfig, UplinkClient};

use rill_core::batch::{BatchBuilder, BuildError, RecordSpec};

/// The record header naming the device that took a reading.
pub const DEVICE_HEADER: &[u8] = b"device";

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
