//! The process allocator: the system allocator, except that a single allocation of
//! [`HUGE_BYTES`] or more is mapped with `MAP_NORESERVE`.
//!
//! Why: kafka-protocol 0.18 decodes an array by calling `Vec::with_capacity(count)` with the
//! count read off the wire, before it decodes a single element (upstream pull requests #152, #161
//! and #200 fix it; none is released). An 18-byte request claiming `i32::MAX` elements asks for
//! ~150 GB; the system allocator refuses, and Rust aborts the process — a remote crash, not a
//! panic anyone can catch. No allocation Rill makes on purpose comes near a gigabyte (every
//! bound is in `limits.rs`: requests 16 MiB, commits 8 MiB, decompression 64 MiB), so an
//! allocation this large can only be such a guess. Mapped with `MAP_NORESERVE`, it costs address
//! space and no memory: the decoder fails on the missing elements long before it touches more
//! than the request's own bytes, and the mapping is returned. (Under `vm.overcommit_memory = 2`
//! the kernel ignores `MAP_NORESERVE` and the abort is back; gateways run the default, 0.)
//!
//! The rest of Rill forbids `unsafe`; this module needs it because a global allocator is an
//! unsafe trait (the other exception is loading compiled plugins, `PluginRuntime::load_compiled`).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are mapped without reserving memory.
pub const HUGE_BYTES: usize = 1 << 30;

/// Page alignment `mmap` guarantees; larger alignments go to the system allocator.
const PAGE_ALIGN: usize = 4096;

/// See the module documentation. Install with `#[global_allocator]`.
#[derive(Debug, Default)]
pub struct NoReserveHuge;

fn is_huge(layout: Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE_ALIGN
}

// SAFETY: small layouts go to `System` unchanged. Huge layouts get a fresh anonymous private
// mapping of at least `layout.size()` bytes, page-aligned (so any alignment up to a page holds),
// zero-filled, and are unmapped with the same size; `dealloc` receives the layout the block was
// allocated with, so it always takes the same branch as `alloc` did.
unsafe impl GlobalAlloc for NoReserveHuge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            map(layout.size()) // anonymous mappings are zero-filled
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(layout) {
            // SAFETY: `ptr` came from `map(layout.size())` (same branch as the allocation).
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` and `layout.align()` form a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(layout) && !is_huge(new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Crossing the threshold (rare: only a huge capacity guess grows or shrinks here).
        // SAFETY: `new_layout` is valid (see above).
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}

/// An anonymous private mapping that reserves no swap or memory up front; null on failure.
fn map(size: usize) -> *mut u8 {
    // SAFETY: a new anonymous mapping at an address of the kernel's choosing touches no
    // existing memory.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED { std::ptr::null_mut() } else { ptr.cast() }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_huge_capacity_guess_costs_no_memory() {
        // 64 GiB, more than this machine has: the system allocator would refuse and abort.
        let mut guess: Vec<u64> = Vec::with_capacity(8 << 30);
        guess.push(7);
        guess.extend_from_slice(&[1, 2, 3]);
        assert_eq!(guess.iter().sum::<u64>(), 13);
        guess.shrink_to_fit(); // crosses back below the threshold: copied into a small block
        assert_eq!(guess, vec![7, 1, 2, 3]);
    }
}
