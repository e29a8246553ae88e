//! The flash backlog (`rill-node`'s feature `flash-backlog`) on this board's CPU: pushes and
//! pops batches through a 16 KiB region of RAM that behaves as NOR flash (`nor.rs`), and prints
//! what it did on the console. `cargo xtask firmware size` builds it twice, with and without the
//! backlog (feature `probe-baseline`), to report the flash the backlog's code takes.
#![no_std]
#![no_main]

#[path = "../board.rs"]
#[allow(dead_code)]
mod board;
#[path = "../console.rs"]
mod console;
#[path = "../irq.rs"]
mod irq;
#[path = "../limits.rs"]
#[allow(dead_code)]
mod limits;
#[path = "../nor.rs"]
mod nor;
#[path = "../uart.rs"]
#[allow(dead_code)]
mod uart;

use panic_halt as _;

use crate::nor::{MemoryNor, PAGE_BYTES};

/// Pages of the RAM standing in for NOR flash.
const PAGES: usize = 4;

#[cortex_m_rt::entry]
fn main() -> ! {
    console::start();
    let mut flash = [0xFFu8; PAGES * PAGE_BYTES];
    let mut nor = MemoryNor(&mut flash);
    // A batch of 512 bytes, as the firmware's batching task makes them.
    let batch = [0x5Au8; 512];
    let mut buf = [0u8; rill_node::flash_log::buffer_bytes(512)];
    let (pushed, popped) = embassy_futures::block_on(exercise(&mut nor, &batch, &mut buf));
    console::line(format_args!("flash backlog probe: {pushed} batches pushed, {popped} read back intact and popped"));
    loop {
        cortex_m::asm::wfi();
    }
}

#[cfg(not(feature = "probe-baseline"))]
async fn exercise(nor: &mut MemoryNor<'_>, batch: &[u8], buf: &mut [u8]) -> (u32, u32) {
    use rill_node::flash_log::FlashBacklog;
    let Ok(mut backlog) = FlashBacklog::open(nor, 0..(PAGES * PAGE_BYTES) as u32, buf).await else { return (0, 0) };
    let mut item = [0u8; 512];
    let (mut pushed, mut popped) = (0, 0);
    for seq in 0..100u32 {
        // Each batch's first byte names it, so a read-back shows which one came.
        item.copy_from_slice(batch);
        item[0] = seq as u8;
        if backlog.push(1, seq, &item, buf).await.is_ok() {
            pushed += 1;
        }
        if seq % 2 == 1 {
            // The oldest left (full pages drop the oldest), read back and checked, then popped.
            let (boot, oldest) = match backlog.oldest(buf).await {
                Ok(Some(stored)) if stored.batch[1..] == batch[1..] && stored.batch[0] == stored.seq as u8 => {
                    (stored.boot, stored.seq)
                }
                _ => continue,
            };
            if matches!(backlog.pop_oldest_if(boot, oldest, buf).await, Ok(true)) {
                popped += 1;
            }
        }
    }
    (pushed, popped)
}

/// The same writes without the backlog: what the probe costs on its own.
#[cfg(feature = "probe-baseline")]
async fn exercise(nor: &mut MemoryNor<'_>, batch: &[u8], buf: &mut [u8]) -> (u32, u32) {
    use embedded_storage_async::nor_flash::NorFlash;
    buf[..batch.len()].copy_from_slice(batch);
    let _ = nor.erase(0, PAGE_BYTES as u32).await;
    let _ = nor.write(0, &buf[..batch.len()]).await;
    (1, 0)
}
