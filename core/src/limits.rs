//! Every bound that `rill-core` enforces, in one place, each with the reason for its number.
//! Host-side bounds (queues, connections, cache sizes) live in the host's own `limits.rs`.

// ---- batch codec ----------------------------------------------------------------------------

/// Largest record batch the codec accepts, header included. Kafka's default `message.max.bytes`
/// is 1 MiB (+ overhead); a gateway has no use for bigger batches, and a bound here stops a corrupt
/// length field from making a reader wait for (or allocate) gigabytes.
pub const BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;

// ---- log model ------------------------------------------------------------------------------

/// Largest offset the log assigns (inclusive). Kafka's offsets are `i64` on the wire and in the
/// batch header; the core keeps `u64`, so anything above `i64::MAX` could not be sent or stamped.
pub const OFFSET_MAX: u64 = i64::MAX as u64;

/// Largest partition leader epoch. The batch header's `partitionLeaderEpoch` is an `i32`, and
/// Kafka reserves negative values (`-1` = no epoch).
pub const LEADER_EPOCH_MAX: u32 = i32::MAX as u32;

/// Entries in one partition's leader-epoch history. One entry per leadership change that wrote
/// data still in the log (older ones are dropped as the log start moves). 4096 is years of daily
/// fail-overs; the bound keeps persisted partition state under 64 KiB, so a corrupt length in it
/// cannot make the host allocate more, and a bug that bumps the epoch per connection shows up as
/// an error instead of unbounded growth.
pub const EPOCH_HISTORY_ENTRIES_MAX: usize = 4096;

const _: () = assert!(OFFSET_MAX <= i64::MAX as u64);
const _: () = assert!(LEADER_EPOCH_MAX <= i32::MAX as u32);

// ---- replication ----------------------------------------------------------------------------

/// Largest replication frame (length prefix excluded): one message, or one partition's batches.
/// A frame carries at least one whole batch, so it must fit the largest batch plus its header;
/// the rest is room for a `Hello` or `Welcome` naming many partitions.
pub const REPLICATION_FRAME_BYTES_MAX: usize = BATCH_BYTES_MAX + 1024 * 1024;

/// Partitions one edge may mirror over one connection. Bounds the handshake frames (a `Hello`
/// entry is a topic name and a few numbers, a `Welcome` entry carries an epoch tail) and the
/// per-connection state on both sides.
pub const REPLICATION_PARTITIONS_MAX: usize = 4096;

/// Latest leader epochs a follower states per partition in its `Welcome`. Epochs change only on
/// a leadership change, so 32 is decades of an edge's life; a follower with a longer history
/// states the newest 32, and a divergence older than those stops the partition with an error
/// rather than guessing.
pub const REPLICATION_EPOCHS_STATED_MAX: usize = 32;

/// Identity strings in a `Hello` (edge id, token) and reasons in refusals.
pub const REPLICATION_TEXT_BYTES_MAX: usize = 1024;

// A `Welcome` for every partition (each epoch entry at most 15 bytes in postcard, plus ~64 for
// the partition's numbers) fits one frame; so does a `Hello` (topic names up to 249 bytes).
const _: () =
    assert!((REPLICATION_EPOCHS_STATED_MAX * 15 + 64) * REPLICATION_PARTITIONS_MAX < REPLICATION_FRAME_BYTES_MAX);
const _: () = assert!((249 + 64) * REPLICATION_PARTITIONS_MAX < REPLICATION_FRAME_BYTES_MAX);

// ---- device uplink --------------------------------------------------------------------------

/// Largest record batch in one uplink frame. A sensor node sends a batch per frame from a RAM
/// buffer; 16 KiB is hundreds of readings, and bounds the buffers a gateway holds per device
/// connection (a few frames' worth) and a device's own frame buffers.
pub const UPLINK_BATCH_BYTES_MAX: usize = 16 * 1024;

/// Longest device id (UTF-8 bytes): it names the device in records and metrics.
pub const UPLINK_DEVICE_ID_BYTES_MAX: usize = 64;
