//! The uplink task: [`UplinkClient`] driven over a byte stream (a UART, or a TCP socket on a
//! board with a network stack). It sends what the client allows, feeds the gateway's answers
//! back, and takes silence while frames wait for an answer as a broken link: a UART has no
//! connection that could say so. After the client's back-off it sends again from the oldest
//! batch not acknowledged, which the gateway recognises as repeats where they arrived before.

use embassy_futures::select::{Either3, select3};
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_time::{Duration, Instant, Timer, with_timeout};
use embedded_io_async::{Read, Write};
use rill_core::uplink::Deframer;
pub use rill_core::uplink::{frame_bytes_for, wire_bytes_for};

use crate::client::UplinkClient;
use crate::node::NodeState;

/// Bytes of a decoded answer (ack or nak) with room to spare: version, tag, two `u32` varints and
/// an option tag, CRC; COBS adds two.
pub const ANSWER_WIRE_BYTES_MAX: usize = 32;

/// The uplink's buffers, which the board sizes for its largest batch.
#[derive(Debug)]
pub struct UplinkBuffers<'b> {
    /// Holds a decoded frame: at least [`frame_bytes_for`] the largest batch.
    pub frame: &'b mut [u8],
    /// Holds the COBS-encoded frame: at least [`wire_bytes_for`] the largest batch.
    pub wire: &'b mut [u8],
    /// Holds one answer being deframed: [`ANSWER_WIRE_BYTES_MAX`].
    pub answer: &'b mut [u8],
}

/// Runs the uplink for ever over `rx`/`tx`. `buffers` must hold frames of the largest batch the
/// batching task builds (see [`frame_bytes_for`]); a frame that does not fit is a sizing bug
/// and panics.
pub async fn run_uplink<M, R, W, const BYTES: usize, const BATCHES: usize, const QUEUE: usize>(
    client: &mut UplinkClient<'_>,
    node: &NodeState<M, BYTES, BATCHES, QUEUE>,
    mut rx: R,
    mut tx: W,
    buffers: UplinkBuffers<'_>,
) -> !
where
    M: RawMutex,
    R: Read,
    W: Write,
{
    let UplinkBuffers { frame, wire, answer } = buffers;
    let mut deframer = Deframer::new(answer);
    let answer_timeout = Duration::from_millis(client.config().answer_timeout_ms);
    let mut read_buf = [0u8; ANSWER_WIRE_BYTES_MAX];
    // Since when frames on the link have waited for an answer, if any wait.
    let mut waiting_since: Option<Instant> = None;
    loop {
        if let Some(retry_at) = client.retry_at() {
            Timer::at(Instant::from_millis(retry_at)).await;
            // Nothing to open on a UART: "connecting" is sending again from the oldest batch
            // not acknowledged.
            client.connected();
            waiting_since = None;
        }
        let mut broken = false;
        loop {
            let now = Instant::now();
            let next = node.with_log(|log| client.next_frame(log, now.as_millis(), frame, wire));
            let len = match next {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => panic!("the uplink's buffers do not hold a frame of the log's batches: {e:?}"),
            };
            // A link that stops taking bytes (a gateway that stopped reading, a flow-controlled
            // cable) is as broken as one that stops answering.
            let sent = with_timeout(answer_timeout, async {
                tx.write_all(&wire[..len]).await?;
                tx.flush().await
            })
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                broken = true;
                break;
            }
            waiting_since.get_or_insert(now);
        }
        if broken {
            client.disconnected(Instant::now().as_millis());
            continue;
        }
        let answer_due = async {
            match waiting_since {
                Some(since) => Timer::at(since + answer_timeout).await,
                None => core::future::pending().await,
            }
        };
        match select3(rx.read(&mut read_buf), node.appended(), answer_due).await {
            Either3::First(Ok(n)) if n > 0 => {
                let mut answered = false;
                deframer.feed(&read_buf[..n], |frame| {
                    // Frames that do not decode are line noise: the CRC caught it, and a lost
                    // answer is made up for by the next one or by the timeout.
                    let Ok(frame) = frame else { return };
                    answered |= client.is_answer(&frame);
                    node.with_log(|log| client.on_frame(&frame, log));
                });
                if answered {
                    let still_waiting = node.with_log(|log| client.in_flight(log)) > 0;
                    waiting_since = still_waiting.then(Instant::now);
                }
            }
            // The stream ended or failed (a socket closed; a UART reports framing errors).
            Either3::First(_) => client.disconnected(Instant::now().as_millis()),
            Either3::Second(()) => {}
            Either3::Third(()) => client.disconnected(Instant::now().as_millis()),
        }
    }
}

#[cfg(test)]
mod tests {
    use core::cell::{Cell, RefCell};
    use std::vec::Vec;

    use embassy_futures::join::join3;
    use embassy_futures::select::select3;
    use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
    use embassy_sync::pipe::Pipe;
    use rill_core::batch::Batch;
    use rill_core::uplink::Clock;

    use super::*;
    use crate::client::ClientConfig;
    use crate::sampling::{Measurement, Sensor, Value, sample};
    use crate::testing::Gateway;
    use crate::{DEVICE_HEADER, collect};

    type M = CriticalSectionRawMutex;
    /// 32 KiB of log: about 800 readings at ~40 bytes each (batch headers included), 4 s at the
    /// tests' 5 ms sampling, so that a stalled test process does not overflow it.
    type TestNode = NodeState<M, 32_768, 128, 4>;
    const BATCH_BYTES: usize = 512;

    /// Counts its readings: the value is the reading's number, so a gap or a repeat shows.
    struct Counter(u32);

    impl Sensor for Counter {
        async fn measure(&mut self) -> Measurement {
            let mut value = Value::new();
            let text = std::format!("{}", self.0);
            value.extend_from_slice(text.as_bytes()).unwrap();
            self.0 += 1;
            Measurement { key: "n", value }
        }
    }

    /// The numbers the gateway stored, in order, with each record's device header checked.
    fn stored_numbers(gateway: &Gateway) -> Vec<u32> {
        let mut numbers = Vec::new();
        for (_, _, bytes) in &gateway.stored {
            for record in Batch::parse(bytes).unwrap().records().unwrap() {
                let record = record.unwrap();
                let header = record.headers().next().unwrap();
                assert_eq!((header.key, header.value), (DEVICE_HEADER, Some(&b"node-1"[..])));
                let text = core::str::from_utf8(record.value.unwrap()).unwrap();
                numbers.push(text.parse().unwrap());
            }
        }
        numbers
    }

    /// The sampling, batching and uplink tasks over an in-memory link to [`Gateway`]. `script`
    /// drives the link (`up` false: bytes vanish both ways, as on a UART whose cable is out).
    async fn run_node(
        log_config: ClientConfig,
        script: impl AsyncFnOnce(&Cell<bool>, &RefCell<Gateway>, &TestNode),
    ) -> Gateway {
        let node = TestNode::new();
        let (to_gateway, to_device) = (Pipe::<M, 4096>::new(), Pipe::<M, 256>::new());
        let (up, gateway) = (Cell::new(true), RefCell::new(Gateway::default()));
        let mut sensor = Counter(0);
        let mut client = UplinkClient::new("node-1", 3, Clock::SinceBoot, log_config);
        let mut batch_buf = [0u8; BATCH_BYTES];
        let (mut frame, mut wire) = ([0u8; frame_bytes_for(BATCH_BYTES)], [0u8; wire_bytes_for(BATCH_BYTES)]);
        let mut answer = [0u8; ANSWER_WIRE_BYTES_MAX];
        let buffers = UplinkBuffers { frame: &mut frame, wire: &mut wire, answer: &mut answer };
        let device = join3(
            sample(&mut sensor, Duration::from_millis(5), &node),
            collect("node-1", &node, &mut batch_buf, Duration::from_millis(10)),
            run_uplink(&mut client, &node, &to_device, &to_gateway, buffers),
        );
        let carry = async {
            let mut buf = [0u8; 1024];
            loop {
                let n = to_gateway.read(&mut buf).await;
                if up.get() {
                    let answers = gateway.borrow_mut().receive(&buf[..n]);
                    to_device.write_all(&answers).await;
                }
            }
        };
        let timeout = tokio::time::sleep(std::time::Duration::from_secs(30));
        select3(device, carry, async {
            tokio::select! {
                () = script(&up, &gateway, &node) => {}
                () = timeout => panic!("the script did not finish in 30 s"),
            }
        })
        .await;
        gateway.into_inner()
    }

    /// Waits until the gateway stored `n` readings.
    async fn until_stored(gateway: &RefCell<Gateway>, n: usize) {
        while stored_numbers(&gateway.borrow()).len() < n {
            Timer::after_millis(5).await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn readings_arrive_once_and_in_order_through_a_broken_link() {
        let config = ClientConfig { window: 2, backoff_first_ms: 10, backoff_max_ms: 80, answer_timeout_ms: 50 };
        let gateway = run_node(config, async |up, gateway, node| {
            until_stored(gateway, 30).await;
            up.set(false);
            // Long enough for the answer timeout and several back-offs; readings pile up meanwhile.
            Timer::after_millis(300).await;
            assert!(node.stats().held_batches > 2, "readings were kept while the link was down");
            let stored_at_cut = stored_numbers(&gateway.borrow()).len();
            up.set(true);
            until_stored(gateway, stored_at_cut + 100).await;
            assert_eq!(node.stats().dropped_records, 0, "the cut stayed within the log's capacity");
        })
        .await;
        let numbers = stored_numbers(&gateway);
        let expected: Vec<u32> = (0..numbers.len() as u32).collect();
        assert_eq!(numbers, expected, "every reading once, in order");
        assert!(gateway.stored.len() < numbers.len(), "readings were batched");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_log_drops_the_oldest_readings_and_says_so() {
        let config = ClientConfig { window: 2, backoff_first_ms: 10, backoff_max_ms: 20, answer_timeout_ms: 30 };
        let gateway = run_node(config, async |up, gateway, node| {
            up.set(false);
            // Wait for the full log to drop some.
            while node.stats().dropped_records == 0 {
                Timer::after_millis(10).await;
            }
            up.set(true);
            let dropped = node.stats().dropped_records as usize;
            until_stored(gateway, 100 + dropped).await;
        })
        .await;
        let numbers = stored_numbers(&gateway);
        assert!(numbers[0] > 0, "the oldest readings were dropped");
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "what is kept arrives in order, without gaps");
    }
}
