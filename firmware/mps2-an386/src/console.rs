//! Status lines on the second UART, written by polling: a few lines at boot and every few
//! seconds, for whoever watches the board (the QEMU test prints them when it fails).

use core::fmt::{self, Write};

use crate::board::UART1_BASE;
use crate::uart::Regs;

// SAFETY: UART1_BASE is the AN386 image's UART1.
const CONSOLE: Regs = unsafe { Regs::at(UART1_BASE) };

pub fn start() {
    CONSOLE.enable(false);
}

struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            while CONSOLE.tx_full() {}
            CONSOLE.send(byte);
        }
        Ok(())
    }
}

/// Writes one line.
pub fn line(args: fmt::Arguments<'_>) {
    // Writing to the console cannot fail.
    let _ = Console.write_fmt(args);
    let _ = Console.write_str("\r\n");
}
