//! `rill`: the daemon and CLI. Everything that touches a disk, socket or clock lives here;
//! the pure logic lives in `rill-core`.

#[cfg(test)]
mod alloc;
pub mod bench;
pub mod client;
pub mod clock;
pub mod compression;
pub mod config;
pub mod devices;
pub mod health;
pub mod http;
pub mod kafka;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod mqtt;
pub mod pipelines;
pub mod plugins;
pub mod records;
pub mod registry;
pub mod replication;
pub mod serve;
pub mod storage;

/// Unit tests measure what decoding hostile Kafka requests allocates.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;
