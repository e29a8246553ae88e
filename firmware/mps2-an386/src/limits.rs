//! Every bound of the firmware, in one place.

use embassy_time::Duration;
use rill_node::ClientConfig;

/// The RAM log: what the node holds while the gateway is out of reach. At ~100 bytes a reading
/// (batch headers included) and 10 readings a second, 32 KiB is about 30 s of outage.
pub const LOG_BYTES: usize = 32 * 1024;
/// Batches the log indexes (at least `LOG_BYTES` / the smallest batch that lingers).
pub const LOG_BATCHES: usize = 256;
/// Readings waiting between the sampling and the batching task.
pub const READINGS_QUEUE: usize = 8;
/// The largest batch, and so the largest uplink frame (its buffers are sized from it).
pub const BATCH_BYTES: usize = 1024;
/// Bytes received from the gateway waiting for the uplink task (acks are ~20 bytes).
pub const RX_BUFFER_BYTES: usize = 128;

pub const SAMPLE_PERIOD: Duration = Duration::from_millis(100);
/// A batch closes this long after its first reading if it has not filled up.
pub const LINGER: Duration = Duration::from_millis(500);
/// How often the console prints the node's state.
pub const STATUS_PERIOD: Duration = Duration::from_secs(5);

pub const UPLINK: ClientConfig =
    ClientConfig { window: 4, backoff_first_ms: 250, backoff_max_ms: 4_000, answer_timeout_ms: 1_500 };
