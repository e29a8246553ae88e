//! The node's three tasks over an in-memory link to [`Gateway`], the link cut and healed by the
//! tests; with the flash backlog, the node's power cut too.

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
use crate::node::NodeStats;
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

/// The numbers the gateway stored for `boot`, in order, with each record's device header checked.
fn stored_numbers(gateway: &Gateway, boot: u32) -> Vec<u32> {
    let mut numbers = Vec::new();
    for (_, _, bytes) in gateway.stored.iter().filter(|(b, _, _)| *b == boot) {
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

/// The numbers `0..n`: what a boot's readings must be, each once and in order.
fn from_zero(n: usize) -> Vec<u32> {
    (0..n as u32).collect()
}

/// The sampling, batching and uplink tasks of boot `boot` over an in-memory link to `gateway`,
/// batches moved to `backlog` while the link is down. `script` drives the link (`up` false:
/// bytes vanish both ways, as on a UART whose cable is out); when it returns, the node stops
/// where it is, as at a power cut.
async fn run_node<B: Backlog>(
    config: ClientConfig,
    boot: u32,
    gateway: Gateway,
    backlog: &mut B,
    script: impl AsyncFnOnce(&Cell<bool>, &RefCell<Gateway>, &TestNode),
) -> Gateway {
    let node = TestNode::new();
    let (to_gateway, to_device) = (Pipe::<M, 4096>::new(), Pipe::<M, 256>::new());
    let (up, gateway) = (Cell::new(true), RefCell::new(gateway));
    let mut sensor = Counter(0);
    let mut client = UplinkClient::new("node-1", boot, Clock::SinceBoot, config);
    let mut batch_buf = [0u8; BATCH_BYTES];
    let (mut frame, mut wire) = ([0u8; frame_bytes_for(BATCH_BYTES)], [0u8; wire_bytes_for(BATCH_BYTES)]);
    let mut answer = [0u8; ANSWER_WIRE_BYTES_MAX];
    let buffers = UplinkBuffers { frame: &mut frame, wire: &mut wire, answer: &mut answer };
    let device = join3(
        sample(&mut sensor, Duration::from_millis(5), &node),
        collect("node-1", &node, &mut batch_buf, Duration::from_millis(10)),
        run_uplink_with(&mut client, &node, backlog, &to_device, &to_gateway, buffers),
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

/// Waits until the gateway stored `n` readings of `boot`.
async fn until_stored(gateway: &RefCell<Gateway>, boot: u32, n: usize) {
    while stored_numbers(&gateway.borrow(), boot).len() < n {
        Timer::after_millis(5).await;
    }
}

const CUT_LINK: ClientConfig =
    ClientConfig { window: 2, backoff_first_ms: 10, backoff_max_ms: 80, answer_timeout_ms: 50 };

/// The link goes for 300 ms and comes back: every reading arrives once and in order. Returns
/// the node's stats at the end.
async fn through_a_broken_link<B: Backlog>(backlog: &mut B) -> (Gateway, NodeStats) {
    let mut stats = None;
    let gateway = run_node(CUT_LINK, 3, Gateway::default(), backlog, async |up, gateway, node| {
        until_stored(gateway, 3, 30).await;
        up.set(false);
        // Long enough for the answer timeout and several back-offs; readings pile up meanwhile.
        Timer::after_millis(300).await;
        let stored_at_cut = stored_numbers(&gateway.borrow(), 3).len();
        assert!(node.stats().stored_until as usize >= stored_at_cut, "{:?}", node.stats());
        up.set(true);
        until_stored(gateway, 3, stored_at_cut + 100).await;
        stats = Some(node.stats());
    })
    .await;
    let numbers = stored_numbers(&gateway, 3);
    assert_eq!(numbers, from_zero(numbers.len()), "every reading once, in order");
    assert!(gateway.stored.len() < numbers.len(), "readings were batched");
    let stats = stats.unwrap();
    assert_eq!(stats.dropped_records, 0, "the cut stayed within the log's capacity");
    (gateway, stats)
}

#[tokio::test(flavor = "current_thread")]
async fn readings_arrive_once_and_in_order_through_a_broken_link() {
    let (_, stats) = through_a_broken_link(&mut NoBacklog).await;
    assert_eq!(stats.spilled_batches, 0, "without a backlog the RAM log holds the outage");
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_log_drops_the_oldest_readings_and_says_so() {
    let config = ClientConfig { window: 2, backoff_first_ms: 10, backoff_max_ms: 20, answer_timeout_ms: 30 };
    let gateway = run_node(config, 3, Gateway::default(), &mut NoBacklog, async |up, gateway, node| {
        up.set(false);
        // Wait for the full log to drop some.
        while node.stats().dropped_records == 0 {
            Timer::after_millis(10).await;
        }
        up.set(true);
        let dropped = node.stats().dropped_records as usize;
        until_stored(gateway, 3, 100 + dropped).await;
    })
    .await;
    let numbers = stored_numbers(&gateway, 3);
    assert!(numbers[0] > 0, "the oldest readings were dropped");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "what is kept arrives in order, without gaps");
}

#[cfg(feature = "flash-backlog")]
mod flash {
    use super::*;
    use crate::backlog::FlashSpill;
    use crate::flash_log::{FlashBacklog, buffer_bytes};
    use crate::testing::{CutStyle, FakeNor, SharedNor};

    const FLASH_BUF: usize = buffer_bytes(BATCH_BYTES);

    async fn open<'f>(flash: &'f RefCell<FakeNor>, buf: &mut [u8]) -> FlashBacklog<SharedNor<'f>> {
        let end = flash.borrow().capacity_bytes();
        FlashBacklog::open(SharedNor(flash), 0..end, buf).await.unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn with_a_flash_backlog_an_outage_goes_to_flash_and_arrives_once_in_order() {
        let flash = RefCell::new(FakeNor::new(16));
        let mut buf = [0u8; FLASH_BUF];
        let log = open(&flash, &mut buf).await;
        let mut backlog = FlashSpill::new(log, &mut buf);
        let (_, stats) = through_a_broken_link(&mut backlog).await;
        assert!(stats.spilled_batches > 5, "the outage went to flash: {stats:?}");
        assert!(flash.borrow().written > 0);
        let mut buf = [0u8; FLASH_BUF];
        let mut log = backlog.into_log();
        assert_eq!(log.oldest(&mut buf).await.unwrap(), None, "everything acknowledged was popped");
    }

    /// Boot 1 sends 20 readings, loses its link, moves batches to flash, and loses its power in
    /// the middle of a flash write or erase (`cut` says where). Boot 2 opens the
    /// flash, finds the batches, and sends them under boot 1's numbers before its own readings.
    async fn power_cut_with_the_link_down(flash: FakeNor, cut: impl FnOnce(&mut FakeNor)) {
        let flash = RefCell::new(flash);
        let mut buf = [0u8; FLASH_BUF];
        let log = open(&flash, &mut buf).await;
        let mut backlog = FlashSpill::new(log, &mut buf);
        let (mut confirmed, mut at_link_cut) = (0, 0);
        let gateway = run_node(CUT_LINK, 1, Gateway::default(), &mut backlog, async |up, gateway, node| {
            until_stored(gateway, 1, 20).await;
            up.set(false);
            at_link_cut = node.stats().stored_until;
            while node.stats().spilled_batches < 10 {
                Timer::after_millis(5).await;
            }
            cut(&mut flash.borrow_mut());
            while flash.borrow().powered() {
                Timer::after_millis(1).await;
            }
            // The flash is gone, so nothing is confirmed from here on: this is all a power cut
            // may not take.
            confirmed = node.stats().stored_until;
        })
        .await;
        assert_eq!(backlog.dropped_records(), 0, "the outage fit in the flash");
        assert!(confirmed > at_link_cut + 10, "confirmed through flash: {at_link_cut} -> {confirmed}");
        flash.borrow_mut().revive();
        let mut buf = [0u8; FLASH_BUF];
        let log = open(&flash, &mut buf).await;
        let mut backlog = FlashSpill::new(log, &mut buf);
        let gateway = run_node(CUT_LINK, 2, gateway, &mut backlog, async |_, gateway, _| {
            until_stored(gateway, 2, 20).await;
        })
        .await;
        let first = stored_numbers(&gateway, 1);
        assert_eq!(first, from_zero(first.len()), "boot 1: every reading once, in order");
        assert!(first.len() as u64 >= confirmed, "{} of boot 1 arrived; {confirmed} were confirmed", first.len());
        let second = stored_numbers(&gateway, 2);
        assert_eq!(second, from_zero(second.len()), "boot 2: every reading once, in order");
        let boots: Vec<u32> = gateway.stored.iter().map(|(boot, _, _)| *boot).collect();
        assert!(boots.is_sorted(), "boot 1's batches all went before boot 2's: {boots:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_power_cut_mid_write_loses_no_reading_confirmed_as_stored() {
        for (bytes, style) in [(700, CutStyle::Clean), (1_501, CutStyle::Garbled)] {
            power_cut_with_the_link_down(FakeNor::new(8), |flash| flash.cut_after(bytes, style)).await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_power_cut_mid_erase_loses_no_reading_confirmed_as_stored() {
        // On a used chip, the push that moves on to the next page erases it first; the cut lands
        // in that erase.
        for (bytes, style) in [(100, CutStyle::EraseBackwards), (4_000, CutStyle::Garbled)] {
            power_cut_with_the_link_down(FakeNor::used(8), |flash| flash.cut_in_next_erase(bytes, style)).await;
        }
    }
}
