//! embassy-time's driver on SysTick: a 1 kHz tick (`tick-hz-1_000`) counted in a 64-bit
//! register in RAM, and a timer queue checked at each tick. Simple and exact to the millisecond;
//! a battery-powered board would rather run tickless on a low-power timer.

use core::cell::RefCell;
use core::task::Waker;

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time_driver::{Driver, TICK_HZ};
use embassy_time_queue_utils::Queue;

use crate::board::SYSCLK_HZ;

struct Ticks {
    now: u64,
    /// The earliest time a timer expires (`u64::MAX`: none).
    alarm: u64,
    queue: Queue,
}

struct SysTickDriver {
    ticks: Mutex<CriticalSectionRawMutex, RefCell<Ticks>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    ticks: Mutex::new(RefCell::new(Ticks { now: 0, alarm: u64::MAX, queue: Queue::new() })),
});

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        self.ticks.lock(|ticks| ticks.borrow().now)
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        self.ticks.lock(|ticks| {
            let mut ticks = ticks.borrow_mut();
            if ticks.queue.schedule_wake(at, waker) {
                let now = ticks.now;
                // Wakes what is already due and says when the next timer is.
                ticks.alarm = ticks.queue.next_expiration(now);
            }
        });
    }
}

impl SysTickDriver {
    fn tick(&self) {
        self.ticks.lock(|ticks| {
            let mut ticks = ticks.borrow_mut();
            ticks.now += 1;
            if ticks.now >= ticks.alarm {
                let now = ticks.now;
                ticks.alarm = ticks.queue.next_expiration(now);
            }
        });
    }
}

/// Starts the tick.
pub fn start(mut syst: SYST) {
    const { assert!((SYSCLK_HZ as u64).is_multiple_of(TICK_HZ) && SYSCLK_HZ as u64 / TICK_HZ <= 1 << 24) };
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload((SYSCLK_HZ as u64 / TICK_HZ) as u32 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    DRIVER.tick();
}
