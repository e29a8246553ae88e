//! The unit tests' allocator: the system allocator, counting what each thread asks for, so a test
//! can prove how much decoding a hostile request allocates (`kafka::bounds_tests`).
//!
//! The rest of Rill forbids `unsafe`; this module needs it because a global allocator is an
//! unsafe trait (the other exception is loading compiled plugins, `PluginRuntime::load_compiled`).
//! It is compiled for tests only: the binary uses the system allocator as it is.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // `const`-initialised and without a destructor: reading it never allocates, so the allocator
    // may use it.
    static ASKED: Cell<usize> = const { Cell::new(0) };
}

/// See the module documentation. Install with `#[global_allocator]`.
#[derive(Debug, Default)]
pub struct Counting;

fn count(bytes: usize) {
    let _ = ASKED.try_with(|asked| asked.set(asked.get().saturating_add(bytes)));
}

/// Bytes this thread has asked the allocator for so far (frees are not subtracted): the
/// difference across a step is everything the step allocated, however briefly.
pub fn asked_by_this_thread() -> usize {
    ASKED.try_with(Cell::get).unwrap_or(0)
}

// SAFETY: every call is forwarded to `System` with the caller's guarantees; counting touches only
// a thread-local cell.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size.saturating_sub(layout.size()));
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_a_thread_allocates_is_counted() {
        let before = super::asked_by_this_thread();
        let block: Vec<u8> = Vec::with_capacity(10_000);
        assert!(super::asked_by_this_thread() - before >= 10_000);
        drop(block);
    }
}
