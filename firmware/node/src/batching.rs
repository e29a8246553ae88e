//! The batching task: readings from the channel become v2 batches in the RAM log. A batch is
//! closed when the next reading would not fit its buffer or `linger` after its first reading,
//! whichever comes first, so one record costs one batch header only when readings are rare.

use embassy_futures::select::{Either, select};
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_time::{Duration, Instant, Timer};
use rill_core::batch::{BatchBuilder, BatchParams, BuildError};

use crate::node::NodeState;
use crate::reading;
use crate::sampling::Reading;

/// Collects readings into batches of at most `batch_buf.len()` bytes and appends them to the
/// node's log, for ever. `device` goes into every record (see [`reading`]).
pub async fn collect<M: RawMutex, const BYTES: usize, const BATCHES: usize, const QUEUE: usize>(
    device: &str,
    node: &NodeState<M, BYTES, BATCHES, QUEUE>,
    batch_buf: &mut [u8],
    linger: Duration,
) -> ! {
    let readings = node.readings.receiver();
    let mut carried: Option<Reading> = None;
    loop {
        let first = match carried.take() {
            Some(reading) => reading,
            None => readings.receive().await,
        };
        let closes_at = Instant::now() + linger;
        let Ok(mut builder) = BatchBuilder::new(batch_buf, BatchParams::default()) else {
            // The board's buffer cannot hold a batch header: `Node` checks this at startup.
            node.count_unbatchable();
            continue;
        };
        if push(&mut builder, device, &first).is_err() {
            // Too large for any batch of this buffer (the board's sizes are wrong): counted.
            node.count_unbatchable();
            continue;
        }
        while let Either::First(next) = select(readings.receive(), Timer::at(closes_at)).await {
            match push(&mut builder, device, &next) {
                Ok(()) => {}
                Err(BuildError::BufferFull { .. }) => {
                    carried = Some(next);
                    break;
                }
                Err(_) => node.count_unbatchable(),
            }
        }
        // Cannot fail: the builder holds at least the first reading.
        if let Ok(batch) = builder.finish() {
            node.append(batch);
        }
    }
}

fn push(builder: &mut BatchBuilder<'_>, device: &str, r: &Reading) -> Result<(), BuildError> {
    // Milliseconds since boot pass i64 after 292 million years.
    reading(builder, device, r.at_ms as i64, r.key.as_bytes(), &r.value)
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use embassy_futures::select::select;
    use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
    use rill_core::batch::BatchHeader;

    use super::*;
    use crate::sampling::Value;

    type TestNode = NodeState<CriticalSectionRawMutex, 8192, 32, 4>;

    fn reading_at(at_ms: u64) -> Reading {
        Reading { at_ms, key: "t", value: Value::from_slice(b"21.5").unwrap() }
    }

    /// Records per batch in the log, oldest first.
    fn batch_sizes(node: &TestNode) -> Vec<i32> {
        node.with_log(|log| log.iter().map(|b| BatchHeader::decode(b).unwrap().records_count).collect())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_closes_when_full_or_after_its_linger() {
        let node = TestNode::new();
        let mut buf = [0u8; 200];
        let script = async {
            // 10 readings at once: more than one 200-byte batch holds, so one closes full and the
            // next takes the reading that did not fit.
            for i in 0..10 {
                node.readings.send(reading_at(i)).await;
            }
            Timer::after_millis(150).await;
            let sizes = batch_sizes(&node);
            assert!(sizes.len() >= 2 && sizes.iter().sum::<i32>() == 10, "{sizes:?}");
            // One reading alone goes out after the linger.
            node.readings.send(reading_at(100)).await;
            Timer::after_millis(150).await;
            assert_eq!(batch_sizes(&node).last(), Some(&1));
            assert!(node.with_log(|log| log.iter().all(|b| b.len() <= 200)));
        };
        select(collect("node-1", &node, &mut buf, Duration::from_millis(50)), script).await;
        assert_eq!(node.stats().unbatchable, 0);
    }
}
