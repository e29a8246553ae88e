//! Test doubles shared by the library's tests.

use std::vec;
use std::vec::Vec;

use rill_core::uplink::{self, Deframer, Frame, UPLINK_WIRE_BYTES_MAX};

/// A gateway in memory, as the host's device listener behaves: decodes the device's byte stream
/// (frames may arrive in pieces), stores each new (boot, seq) once, acks what it holds, and
/// answers a frame whose `prev` it lacks with a nak.
#[derive(Debug)]
pub struct Gateway {
    deframer: Deframer<Vec<u8>>,
    /// (boot, seq, batch) of every frame stored, in order.
    pub stored: Vec<(u32, u32, Vec<u8>)>,
    last: Option<(u32, u32)>,
    pub duplicates: usize,
    pub naks: usize,
    /// Frames that did not decode (line noise, a frame cut by a broken link).
    pub bad_frames: usize,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            deframer: Deframer::new(vec![0u8; UPLINK_WIRE_BYTES_MAX]),
            stored: Vec::new(),
            last: None,
            duplicates: 0,
            naks: 0,
            bad_frames: 0,
        }
    }
}

impl Gateway {
    /// Takes bytes the device sent; returns the answers' wire bytes.
    pub fn receive(&mut self, wire: &[u8]) -> Vec<u8> {
        let mut answers = Vec::new();
        let Gateway { deframer, stored, last, duplicates, naks, bad_frames } = self;
        deframer.feed(wire, |frame| {
            let data = match frame {
                Ok(Frame::Data(data)) => data,
                Ok(other) => panic!("the device sent {other:?}"),
                Err(_) => {
                    *bad_frames += 1;
                    return;
                }
            };
            let held = last.filter(|(boot, _)| *boot == data.boot).map(|(_, seq)| seq);
            if held.is_some_and(|seq| data.seq <= seq) {
                *duplicates += 1;
            } else if data.prev.is_some_and(|prev| held.is_none_or(|seq| prev > seq)) {
                *naks += 1;
                answers.push(Frame::Nak { boot: data.boot, after: held });
                return;
            } else {
                stored.push((data.boot, data.seq, data.batch.to_vec()));
                *last = Some((data.boot, data.seq));
            }
            let (boot, seq) = last.unwrap_or((data.boot, data.seq));
            answers.push(Frame::Ack { boot, seq });
        });
        let mut wire = Vec::new();
        for answer in answers {
            let (mut scratch, mut out) = ([0u8; 64], [0u8; 128]);
            let len = uplink::encode(&answer, &mut scratch, &mut out).expect("an answer fits");
            wire.extend_from_slice(&out[..len]);
        }
        wire
    }
}

/// A NOR flash in RAM, as `embedded-storage` describes one: erasing sets a page to `0xFF`, writing
/// only clears bits (words of 4 bytes, written as often as wanted), and the power can be cut
/// after a given number of bytes written or erased — mid-word or mid-erase — after which every
/// operation fails until [`revive`](Self::revive) (the reboot). How the cut leaves the flash is
/// a [`CutStyle`].
#[cfg(feature = "flash-backlog")]
#[derive(Debug, Clone)]
pub struct FakeNor {
    bytes: Vec<u8>,
    page: usize,
    /// Bytes written and pages erased since creation: the write cost.
    pub written: u64,
    pub erased_pages: u64,
    budget: Option<u64>,
    /// Only erases spend the budget: the cut comes in the next erase.
    erase_only: bool,
    dead: bool,
    style: CutStyle,
}

/// What a cut leaves behind.
#[cfg(feature = "flash-backlog")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutStyle {
    /// Erases run from the page's start; the bytes before the cut are done, the rest untouched.
    Clean,
    /// Erases run from the page's end (some parts do), so the page's start keeps old data.
    EraseBackwards,
    /// The byte being written or erased at the cut is left half-done: some bits changed.
    Garbled,
}

#[cfg(feature = "flash-backlog")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeNorError {
    PowerCut,
    Misused,
}

#[cfg(feature = "flash-backlog")]
mod fake_nor {
    use core::cell::RefCell;
    use std::vec;

    use embassy_futures::block_on;
    use embedded_storage_async::nor_flash::{
        ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
    };

    use super::{CutStyle, FakeNor, FakeNorError};

    pub const PAGE_BYTES: usize = 4096;

    impl FakeNor {
        pub fn capacity_bytes(&self) -> u32 {
            self.bytes.len() as u32
        }

        pub fn new(pages: usize) -> FakeNor {
            FakeNor {
                bytes: vec![0xFF; pages * PAGE_BYTES],
                page: PAGE_BYTES,
                written: 0,
                erased_pages: 0,
                budget: None,
                erase_only: false,
                dead: false,
                style: CutStyle::Clean,
            }
        }

        /// A flash whose pages hold old bytes (a chip used before, with no backlog on it): the
        /// backlog must erase each page before writing it.
        pub fn used(pages: usize) -> FakeNor {
            FakeNor { bytes: vec![0x00; pages * PAGE_BYTES], ..FakeNor::new(pages) }
        }

        /// The power goes after `bytes` more bytes written or erased, leaving the flash as
        /// `style` says.
        pub fn cut_after(&mut self, bytes: u64, style: CutStyle) {
            (self.budget, self.style, self.erase_only) = (Some(bytes), style, false);
        }

        /// The power goes `bytes` into the next erase, whatever is written before it.
        pub fn cut_in_next_erase(&mut self, bytes: u64, style: CutStyle) {
            (self.budget, self.style, self.erase_only) = (Some(bytes), style, true);
        }

        /// Whether the power is still on (false once a cut happened, until `revive`).
        pub fn powered(&self) -> bool {
            !self.dead
        }

        /// Power back on: the flash keeps what it holds.
        pub fn revive(&mut self) {
            (self.budget, self.dead, self.erase_only) = (None, false, false);
        }

        /// Takes one byte of the budget; false when the power just went.
        fn spend(&mut self) -> bool {
            match &mut self.budget {
                Some(0) => {
                    self.dead = true;
                    false
                }
                Some(left) => {
                    *left -= 1;
                    true
                }
                None => true,
            }
        }
    }

    impl NorFlashError for FakeNorError {
        fn kind(&self) -> NorFlashErrorKind {
            match self {
                FakeNorError::PowerCut => NorFlashErrorKind::Other,
                FakeNorError::Misused => NorFlashErrorKind::NotAligned,
            }
        }
    }

    impl ErrorType for FakeNor {
        type Error = FakeNorError;
    }

    impl ReadNorFlash for FakeNor {
        const READ_SIZE: usize = 1;

        async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FakeNorError> {
            if self.dead {
                return Err(FakeNorError::PowerCut);
            }
            let at = offset as usize;
            let from = self.bytes.get(at..at + bytes.len()).ok_or(FakeNorError::Misused)?;
            bytes.copy_from_slice(from);
            Ok(())
        }

        fn capacity(&self) -> usize {
            self.bytes.len()
        }
    }

    impl NorFlash for FakeNor {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = PAGE_BYTES;

        async fn erase(&mut self, from: u32, to: u32) -> Result<(), FakeNorError> {
            let (from, to) = (from as usize, to as usize);
            if self.dead {
                return Err(FakeNorError::PowerCut);
            }
            if !from.is_multiple_of(self.page) || !to.is_multiple_of(self.page) || to > self.bytes.len() || from > to {
                return Err(FakeNorError::Misused);
            }
            for page in (from..to).step_by(self.page) {
                // An erase cut short leaves the page partly erased.
                let backwards = self.style == CutStyle::EraseBackwards;
                for i in 0..self.page {
                    let at = if backwards { page + self.page - 1 - i } else { page + i };
                    if !self.spend() {
                        if self.style == CutStyle::Garbled {
                            self.bytes[at] |= 0x5A;
                        }
                        return Err(FakeNorError::PowerCut);
                    }
                    self.bytes[at] = 0xFF;
                }
                self.erased_pages += 1;
            }
            Ok(())
        }

        async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FakeNorError> {
            let at = offset as usize;
            if self.dead {
                return Err(FakeNorError::PowerCut);
            }
            if !at.is_multiple_of(Self::WRITE_SIZE)
                || !bytes.len().is_multiple_of(Self::WRITE_SIZE)
                || at + bytes.len() > self.bytes.len()
            {
                return Err(FakeNorError::Misused);
            }
            for (i, &byte) in bytes.iter().enumerate() {
                // A write cut short leaves the bytes before the cut written.
                if !self.erase_only && !self.spend() {
                    if self.style == CutStyle::Garbled {
                        // Some of the bits the write clears are cleared.
                        self.bytes[at + i] &= byte | 0xA5;
                    }
                    return Err(FakeNorError::PowerCut);
                }
                self.bytes[at + i] &= byte;
                self.written += 1;
            }
            Ok(())
        }
    }

    impl MultiwriteNorFlash for FakeNor {}

    /// A [`FakeNor`] shared with the test that cuts its power while a backlog writes to it. The
    /// fake's operations never wait, so each borrow ends within the call.
    #[derive(Debug, Clone, Copy)]
    pub struct SharedNor<'a>(pub &'a RefCell<FakeNor>);

    impl ErrorType for SharedNor<'_> {
        type Error = FakeNorError;
    }

    impl ReadNorFlash for SharedNor<'_> {
        const READ_SIZE: usize = FakeNor::READ_SIZE;

        async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FakeNorError> {
            block_on(self.0.borrow_mut().read(offset, bytes))
        }

        fn capacity(&self) -> usize {
            self.0.borrow().capacity()
        }
    }

    impl NorFlash for SharedNor<'_> {
        const WRITE_SIZE: usize = FakeNor::WRITE_SIZE;
        const ERASE_SIZE: usize = FakeNor::ERASE_SIZE;

        async fn erase(&mut self, from: u32, to: u32) -> Result<(), FakeNorError> {
            block_on(self.0.borrow_mut().erase(from, to))
        }

        async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FakeNorError> {
            block_on(self.0.borrow_mut().write(offset, bytes))
        }
    }
}

#[cfg(feature = "flash-backlog")]
pub use fake_nor::{PAGE_BYTES, SharedNor};
