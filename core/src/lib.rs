//! `rill-core`: the part of Rill that runs everywhere — in the broker, on a sensor node and inside
//! every Wasm plugin. Pure logic: no IO, no async, no allocation unless the `alloc` feature is on.
//!
//! - [`batch`]: the Kafka v2 RecordBatch codec (validate, iterate, build, rewrite in place).
//! - `log` (with `alloc`): the log model (offsets, high watermark, leader epochs, append/read/truncate).
//! - [`retention`]: retention decisions returned as values, never performed here.
//! - `replication` (with `alloc`): edge → cloud mirroring, its protocol and state machines.
//! - [`ram_log`]: a fixed-capacity log for devices.
//! - [`partitioner`]: Kafka-compatible partitioners.
//! - [`uplink`]: the frames between a sensor node and its gateway.
//! - [`limits`]: every bound in one place.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod batch;
pub mod limits;
#[cfg(feature = "alloc")]
pub mod log;
pub mod partitioner;
pub mod ram_log;
#[cfg(feature = "alloc")]
pub mod replication;
pub mod retention;
pub mod uplink;
pub mod varint;
