//! The MPS2 AN386 board as QEMU models it: clock, peripheral addresses, interrupt numbers, and
//! where the boot counter and the flash backlog live. Porting to another board starts here.

use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

/// The core and peripheral clock (SysTick counts it; the UARTs divide it).
pub const SYSCLK_HZ: u32 = 25_000_000;

/// CMSDK APB UART0: the uplink to the gateway (QEMU's first `-serial`).
pub const UART0_BASE: usize = 0x4000_4000;
/// CMSDK APB UART1: the console (QEMU's second `-serial`).
pub const UART1_BASE: usize = 0x4000_5000;
/// What the UARTs run at (the gateway end of a real cable must agree; QEMU ignores it).
pub const UART_BAUD: u32 = 115_200;

/// Interrupts of the AN386 image the firmware uses.
#[derive(Debug, Clone, Copy)]
#[repr(u16)]
pub enum Irq {
    Uart0Rx = 0,
    Uart0Tx = 1,
}

// SAFETY: the numbers are the AN386 image's UART0 receive and transmit interrupts.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self as u16
    }
}

/// The boot counter: a word that outlives a reset. On this board it is the first word of the
/// 16 KiB block RAM at `0x0100_0000`, which the firmware does not otherwise use; QEMU starts
/// every run with it zeroed, so the harness stands in for non-volatile storage and writes the
/// last boot's number there (`-device loader,addr=0x01000000,data=N,data-len=4`). A real board
/// keeps it in flash, EEPROM or a battery-backed RTC register, or draws the boot id from a
/// hardware random number generator.
const BOOT_COUNTER: *mut u32 = 0x0100_0000 as *mut u32;

/// The boot id of this boot: the counter plus one (never 0), written back.
pub fn next_boot_id() -> u32 {
    // SAFETY: BOOT_COUNTER is an aligned word of RAM that nothing else in the firmware maps
    // (the linker script places nothing there), and this runs once, before the tasks start.
    unsafe {
        let boot = ptr::read_volatile(BOOT_COUNTER).wrapping_add(1).max(1);
        ptr::write_volatile(BOOT_COUNTER, boot);
        boot
    }
}

/// Where the flash backlog lives: the first 64 KiB (16 pages of 4 KiB) of the board's 16 MiB
/// PSRAM at `0x2100_0000`, which the firmware does not otherwise use (the linker script places
/// nothing there). QEMU's machine RAM is that PSRAM: the harness backs it with a file
/// (`qemu.sh`'s FLASH argument), so it outlives QEMU as a chip's flash outlives a power cut.
/// Without the file it is RAM that every start of QEMU zeroes. A real board names a region of
/// its flash here instead, with its flash driver.
const BACKLOG_BASE: usize = 0x2100_0000;
pub const BACKLOG_BYTES: usize = 64 * 1024;

static BACKLOG_TAKEN: AtomicBool = AtomicBool::new(false);

/// The memory of the flash backlog; `None` once taken (it is handed out once).
pub fn backlog_memory() -> Option<&'static mut [u8]> {
    if BACKLOG_TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY: BACKLOG_BASE..+BACKLOG_BYTES is memory of the board that nothing else in the
    // firmware maps or touches, and the flag above hands it out once, so the slice is the only
    // reference to it for the rest of the program.
    Some(unsafe { core::slice::from_raw_parts_mut(BACKLOG_BASE as *mut u8, BACKLOG_BYTES) })
}
