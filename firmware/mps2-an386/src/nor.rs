//! Memory that behaves as NOR flash: erasing sets a page to `0xFF`, writing only clears bits,
//! in 4-byte words. The MPS2 board has no flash controller QEMU models, so the flash backlog
//! runs on memory with flash's rules: RAM for the flash probe, and for the firmware the board's
//! PSRAM, which the QEMU harness backs with a file that outlives QEMU (`qemu.sh`), as a chip's
//! flash outlives a power cut. Every access is volatile: when a write returns, its bytes are in
//! the memory, not in a register the optimiser kept them in.

use core::convert::Infallible;
use core::ptr;

use embedded_storage_async::nor_flash::{ErrorType, NorFlash, ReadNorFlash};

/// An erase page.
pub const PAGE_BYTES: usize = 4096;

/// Memory with NOR flash's rules.
#[derive(Debug)]
pub struct MemoryNor<'a>(pub &'a mut [u8]);

impl ErrorType for MemoryNor<'_> {
    type Error = Infallible;
}

impl ReadNorFlash for MemoryNor<'_> {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Infallible> {
        let from = &self.0[offset as usize..offset as usize + bytes.len()];
        for (byte, stored) in bytes.iter_mut().zip(from) {
            // SAFETY: `stored` is a valid, aligned reference into the memory.
            *byte = unsafe { ptr::read_volatile(stored) };
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.0.len()
    }
}

impl NorFlash for MemoryNor<'_> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = PAGE_BYTES;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Infallible> {
        for stored in &mut self.0[from as usize..to as usize] {
            // SAFETY: `stored` is a valid, aligned, exclusive reference into the memory.
            unsafe { ptr::write_volatile(stored, 0xFF) };
        }
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Infallible> {
        for (stored, byte) in self.0[offset as usize..].iter_mut().zip(bytes) {
            // SAFETY: as in `erase`; flash can only clear bits.
            unsafe { ptr::write_volatile(stored, ptr::read_volatile(stored) & byte) };
        }
        Ok(())
    }
}
