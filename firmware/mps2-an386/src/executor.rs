//! The executor's loop: embassy's raw executor, asleep in WFI whenever no task is ready.
//!
//! embassy's thread-mode executor for Cortex-M sleeps in WFE. QEMU treats WFE as a yield and
//! spins, taking a whole host core for a board that is idle nearly all the time; WFI it models
//! as a real sleep until the next interrupt. On hardware both sleep.

use core::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::{Spawner, raw};

/// Set when a task is woken: poll again before sleeping.
static WOKEN: AtomicBool = AtomicBool::new(false);

/// The executor calls this when a task becomes ready, from a task or an interrupt handler.
#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    WOKEN.store(true, Ordering::Release);
}

/// Runs the executor for ever; `init` spawns the first tasks. Call once, from `main`.
pub fn run(init: impl FnOnce(Spawner)) -> ! {
    let executor: &'static raw::Executor =
        cortex_m::singleton!(: raw::Executor = raw::Executor::new(core::ptr::null_mut()))
            .expect("the executor runs once");
    init(executor.spawner());
    loop {
        // SAFETY: polled from this loop only, in thread mode, never re-entered.
        unsafe { executor.poll() };
        // With interrupts masked, a wake cannot slip in between the check and the sleep: WFI
        // still returns when an interrupt is pending, and its handler runs once they are unmasked.
        cortex_m::interrupt::disable();
        if !WOKEN.swap(false, Ordering::AcqRel) {
            cortex_m::asm::wfi();
        }
        // SAFETY: interrupts were enabled before `disable` (the executor runs with them on).
        unsafe { cortex_m::interrupt::enable() };
    }
}
