//! A driver for the CMSDK APB UART (Arm DDI0479): one byte each way, 8N1. Receiving is
//! interrupt-driven into a pipe, so no byte is lost while the tasks are busy; sending writes the
//! holding register and, when it is full, sleeps until the transmit interrupt.

use core::convert::Infallible;
use core::future::poll_fn;
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::Poll;

use cortex_m::peripheral::NVIC;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::pipe::Pipe;
use embassy_sync::waitqueue::AtomicWaker;

use crate::board::{Irq, SYSCLK_HZ, UART_BAUD, UART0_BASE};
use crate::limits::RX_BUFFER_BYTES;

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const INTSTATUS: usize = 0x0c;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;
const CTRL_TX_INTEN: u32 = 1 << 2;
const CTRL_RX_INTEN: u32 = 1 << 3;
const INT_TX: u32 = 1 << 0;
const INT_RX: u32 = 1 << 1;

/// A UART's registers.
#[derive(Debug, Clone, Copy)]
pub struct Regs(usize);

impl Regs {
    /// # Safety
    /// `base` must be a CMSDK APB UART's register block.
    pub const unsafe fn at(base: usize) -> Regs {
        Regs(base)
    }

    fn read(self, offset: usize) -> u32 {
        // SAFETY: `at`'s contract: the block is this UART's, and every offset used is a register.
        unsafe { ptr::read_volatile((self.0 + offset) as *const u32) }
    }

    fn write(self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { ptr::write_volatile((self.0 + offset) as *mut u32, value) }
    }

    /// Sets the baud rate and enables the transmitter (and the receiver with its interrupt when
    /// `receive`).
    pub fn enable(self, receive: bool) {
        self.write(BAUDDIV, SYSCLK_HZ / UART_BAUD);
        let rx = if receive { CTRL_RX_EN | CTRL_RX_INTEN } else { 0 };
        self.write(CTRL, CTRL_TX_EN | rx);
    }

    pub fn tx_full(self) -> bool {
        self.read(STATE) & STATE_TX_FULL != 0
    }

    pub fn send(self, byte: u8) {
        self.write(DATA, u32::from(byte));
    }

    /// Read-modify-write of CTRL: the transmit interrupt clears TX_INTEN behind the tasks' back.
    fn update_ctrl(self, f: impl FnOnce(u32) -> u32) {
        critical_section::with(|_| self.write(CTRL, f(self.read(CTRL))));
    }
}

// SAFETY: UART0_BASE is the AN386 image's UART0.
const UPLINK: Regs = unsafe { Regs::at(UART0_BASE) };

/// Bytes received on the uplink, filled by the receive interrupt.
static RECEIVED: Pipe<CriticalSectionRawMutex, RX_BUFFER_BYTES> = Pipe::new();
/// Bytes dropped because the pipe was full (the uplink protocol's CRC and acks recover them).
static RX_OVERRUNS: AtomicU32 = AtomicU32::new(0);
/// The task waiting for room in the transmit register.
static TX_WAITER: AtomicWaker = AtomicWaker::new();

/// The uplink UART, started: the receiving half is a pipe, the sending half [`UplinkTx`].
pub fn start_uplink(nvic: &mut NVIC) -> (&'static Pipe<CriticalSectionRawMutex, RX_BUFFER_BYTES>, UplinkTx) {
    UPLINK.enable(true);
    // SAFETY: the handlers of these interrupts (src/irq.rs) share state with the tasks only
    // through the pipe, the waker and CTRL updates in critical sections.
    unsafe {
        nvic.set_priority(Irq::Uart0Rx, 0x40);
        nvic.set_priority(Irq::Uart0Tx, 0x40);
        NVIC::unmask(Irq::Uart0Rx);
        NVIC::unmask(Irq::Uart0Tx);
    }
    (&RECEIVED, UplinkTx)
}

pub fn rx_overruns() -> u32 {
    RX_OVERRUNS.load(Ordering::Relaxed)
}

/// The receive interrupt: moves every waiting byte into the pipe.
pub fn on_uplink_rx() {
    // Clear first: a byte arriving while this runs raises the interrupt again.
    UPLINK.write(INTSTATUS, INT_RX);
    while UPLINK.read(STATE) & STATE_RX_FULL != 0 {
        let byte = UPLINK.read(DATA) as u8;
        if RECEIVED.try_write(&[byte]).is_err() {
            RX_OVERRUNS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The transmit interrupt: the holding register emptied; wake the sender.
pub fn on_uplink_tx() {
    UPLINK.write(INTSTATUS, INT_TX);
    UPLINK.update_ctrl(|ctrl| ctrl & !CTRL_TX_INTEN);
    TX_WAITER.wake();
}

/// The uplink's sending half.
#[derive(Debug)]
pub struct UplinkTx;

impl embedded_io_async::ErrorType for UplinkTx {
    type Error = Infallible;
}

impl embedded_io_async::Write for UplinkTx {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &byte in buf {
            poll_fn(|cx| {
                if !UPLINK.tx_full() {
                    return Poll::Ready(());
                }
                TX_WAITER.register(cx.waker());
                UPLINK.update_ctrl(|ctrl| ctrl | CTRL_TX_INTEN);
                // The register may have emptied before the interrupt was enabled.
                if UPLINK.tx_full() { Poll::Pending } else { Poll::Ready(()) }
            })
            .await;
            UPLINK.send(byte);
        }
        Ok(buf.len())
    }

    /// Every byte is in the transmit register when `write` returns; the UART has no FIFO.
    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}
