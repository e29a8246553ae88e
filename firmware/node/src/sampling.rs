//! The sampling task: a sensor read at a fixed period, each reading stamped on the device clock
//! and handed to the batching task through a bounded channel.

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_time::{Duration, Instant, Ticker};

use crate::READING_VALUE_BYTES_MAX;
use crate::node::NodeState;

/// A reading's value: the sensor's bytes (a number as text, JSON, CBOR — the gateway stores them
/// as they are).
pub type Value = heapless::Vec<u8, READING_VALUE_BYTES_MAX>;

/// One measurement: what was measured (the record key) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    pub key: &'static str,
    pub value: Value,
}

/// A measurement with the time it was taken (ms on the device clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub at_ms: u64,
    pub key: &'static str,
    pub value: Value,
}

/// What the board samples: a real sensor behind a bus driver, or a simulated one.
// The firmware runs on one single-threaded executor: no `Send` bound is wanted on the future.
#[allow(async_fn_in_trait)]
pub trait Sensor {
    async fn measure(&mut self) -> Measurement;
}

/// Reads `sensor` every `period` for ever. A reading waits for room in the channel rather than
/// being dropped: the batching task only copies into RAM, so the wait is short, and the log's
/// drop-oldest policy (counted and reported upstream) is the one place readings are given up.
pub async fn sample<M: RawMutex, S: Sensor, const BYTES: usize, const BATCHES: usize, const QUEUE: usize>(
    sensor: &mut S,
    period: Duration,
    node: &NodeState<M, BYTES, BATCHES, QUEUE>,
) -> ! {
    let readings = node.readings.sender();
    let mut ticker = Ticker::every(period);
    loop {
        let Measurement { key, value } = sensor.measure().await;
        readings.send(Reading { at_ms: Instant::now().as_millis(), key, value }).await;
        ticker.next().await;
    }
}
