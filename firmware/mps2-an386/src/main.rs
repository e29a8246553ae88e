//! Rill's sensor-node firmware for the MPS2 AN386 board (Cortex-M4F), as QEMU emulates it
//! (`qemu-system-arm -M mps2-an386`). The board-independent work is `rill-node`'s three tasks;
//! this binary gives them a sensor (simulated), the uplink UART, a time driver, a boot id and a
//! region of memory with flash's rules for the backlog that outlives a power cut.
//! See `firmware/README.md` for building, running in QEMU, and porting to a real board.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

mod board;
mod console;
mod executor;
mod irq;
mod limits;
mod nor;
mod sensor;
mod time_driver;
mod uart;

use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, ThreadModeRawMutex};
use embassy_time::Timer;
use panic_halt as _;
use rill_core::uplink::Clock;
use rill_node::backlog::FlashSpill;
use rill_node::flash_log::{FlashBacklog, buffer_bytes};
use rill_node::{
    ANSWER_WIRE_BYTES_MAX, NodeState, UplinkBuffers, UplinkClient, collect, frame_bytes_for, run_uplink_with, sample,
    wire_bytes_for,
};

use crate::limits::{
    BATCH_BYTES, LINGER, LOG_BATCHES, LOG_BYTES, READINGS_QUEUE, SAMPLE_PERIOD, STATUS_PERIOD, UPLINK,
};

/// This node's id: `RILL_DEVICE_ID` at build time. A real board reads a unique id from the chip.
const DEVICE: &str = match option_env!("RILL_DEVICE_ID") {
    Some(id) => id,
    None => "mps2-node-1",
};
// The uplink refuses other lengths: a bad id must fail the build, not halt the node at its first frame.
const _: () = assert!(!DEVICE.is_empty() && DEVICE.len() <= rill_core::limits::UPLINK_DEVICE_ID_BYTES_MAX);

/// Only tasks touch the node's state, never an interrupt handler: a thread-mode mutex, so that
/// encoding a frame or appending a batch does not mask the UART's receive interrupt (its one-byte
/// holding register would overrun on a real board).
static NODE: NodeState<ThreadModeRawMutex, LOG_BYTES, LOG_BATCHES, READINGS_QUEUE> = NodeState::new();

#[cortex_m_rt::entry]
fn main() -> ! {
    // `main` runs once, so the peripherals are there to take.
    let mut core = cortex_m::Peripherals::take().expect("the core peripherals are taken once");
    console::start();
    let boot = board::next_boot_id();
    console::line(format_args!("rill-node {DEVICE} boot {boot}"));
    time_driver::start(core.SYST);
    let (rx, tx) = uart::start_uplink(&mut core.NVIC);
    executor::run(|spawner| {
        spawner.spawn(sampling(boot).expect("the sampling task is spawned once"));
        spawner.spawn(batching().expect("the batching task is spawned once"));
        spawner.spawn(uplink(boot, rx, tx).expect("the uplink task is spawned once"));
        spawner.spawn(status().expect("the status task is spawned once"));
    })
}

/// A line on the console every few seconds.
#[embassy_executor::task]
async fn status() {
    loop {
        Timer::after(STATUS_PERIOD).await;
        let stats = NODE.stats();
        // `stored` is what a power cut cannot take: readings below it are at the gateway or in
        // the flash backlog.
        console::line(format_args!(
            "up {} s: read {} held {} batches {} B dropped {} stored {} spilled {} flash-errors {} rx-overruns {}",
            embassy_time::Instant::now().as_secs(),
            stats.next_offset,
            stats.held_batches,
            stats.held_bytes,
            stats.dropped_records,
            stats.stored_until,
            stats.spilled_batches,
            stats.backlog_errors,
            uart::rx_overruns(),
        ));
    }
}

#[embassy_executor::task]
async fn sampling(boot: u32) {
    let mut thermometer = sensor::SimulatedThermometer::new(boot);
    sample(&mut thermometer, SAMPLE_PERIOD, &NODE).await
}

#[embassy_executor::task]
async fn batching() {
    let mut batch = [0u8; BATCH_BYTES];
    collect(DEVICE, &NODE, &mut batch, LINGER).await
}

#[embassy_executor::task]
async fn uplink(
    boot: u32,
    rx: &'static embassy_sync::pipe::Pipe<CriticalSectionRawMutex, { limits::RX_BUFFER_BYTES }>,
    tx: uart::UplinkTx,
) {
    let mut client = UplinkClient::new(DEVICE, boot, Clock::SinceBoot, UPLINK);
    let mut frame = [0u8; frame_bytes_for(BATCH_BYTES)];
    let mut wire = [0u8; wire_bytes_for(BATCH_BYTES)];
    let mut answer = [0u8; ANSWER_WIRE_BYTES_MAX];
    let buffers = UplinkBuffers { frame: &mut frame, wire: &mut wire, answer: &mut answer };
    // While the gateway is out of reach, batches go to the flash backlog, where a power cut
    // cannot take them; after a reboot, what it holds from earlier boots goes first.
    let mut flash_buf = [0u8; buffer_bytes(BATCH_BYTES)];
    let memory = board::backlog_memory().expect("the backlog's memory is taken once");
    // The memory cannot fail: open fails only when the region or the buffer does not suit the
    // layout, a sizing bug.
    let Ok(log) = FlashBacklog::open(nor::MemoryNor(memory), 0..board::BACKLOG_BYTES as u32, &mut flash_buf).await
    else {
        panic!("the flash backlog's region or buffer does not suit its layout")
    };
    console::line(format_args!("flash backlog: {} KiB", board::BACKLOG_BYTES / 1024));
    let mut backlog = FlashSpill::new(log, &mut flash_buf);
    run_uplink_with(&mut client, &NODE, &mut backlog, rx, tx, buffers).await
}
