//! How the backlog lays out a page of NOR flash, and the pure encoding of its parts.
//!
//! A page (one erase unit):
//!
//! ```text
//! [page header: 16 bytes] [entry] [entry] … (erased) … [trailer: 16 bytes]
//! ```
//!
//! - The **page header** is written right after the page is erased: a magic, the page's sequence
//!   number (one more than the page before it in the log), and their CRC. A page without a valid
//!   header holds nothing.
//! - An **entry** is `[crc u32][kind u8][0xFF][len u16][payload][padding to the write size]`, the
//!   CRC-32C covering everything after itself up to the payload's end. Entries are appended in
//!   order and each is written once. A kind of `0xFF` (erased) ends the page's entries; an entry
//!   whose CRC fails is where a write was cut, and ends them too.
//! - The **trailer** is written once, when the log moves on from the page, *before* the next page
//!   is erased: it condemns that next page (the oldest) so that, should the erase be cut short,
//!   whatever of the old page survives is never read as live. Any bit cleared in it counts.
//!
//! Everything is little-endian. Entries start at multiples of the write size, which must divide
//! 16 (the header, trailer and entry sizes are multiples of 16 bytes or padded to the write size).

/// Bytes of the page header, of the trailer, and the most read to look at an entry's start.
pub const SLOT: usize = 16;

/// Bytes of an entry's own header.
pub const ENTRY_HEADER: usize = 8;

/// The magic that starts a page header ("RLQ1": Rill log queue, layout 1).
const PAGE_MAGIC: [u8; 4] = *b"RLQ1";

/// What the trailer says (any cleared bit would do).
pub const TRAILER: [u8; SLOT] = *b"RLQ1 next erased";

/// An entry's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A stored batch: boot, sequence, the batch.
    Data = 1,
    /// Everything before a position in the log has been popped.
    Popped = 2,
}

/// A page header for `seq`.
pub fn page_header(seq: u32) -> [u8; SLOT] {
    let mut header = [0xFF; SLOT];
    header[..4].copy_from_slice(&PAGE_MAGIC);
    header[4..8].copy_from_slice(&seq.to_le_bytes());
    let crc = rill_core::batch::crc32c(&header[..8]);
    header[8..12].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The sequence number of a valid page header.
pub fn parse_page_header(header: &[u8; SLOT]) -> Option<u32> {
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    (header[..4] == PAGE_MAGIC && rill_core::batch::crc32c(&header[..8]) == crc)
        .then(|| u32::from_le_bytes([header[4], header[5], header[6], header[7]]))
}

/// Whether `bytes` are all erased.
pub fn is_erased(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0xFF)
}

/// `len` rounded up to a multiple of `write_size`.
pub const fn padded(len: usize, write_size: usize) -> usize {
    len.div_ceil(write_size) * write_size
}

/// The flash bytes of an entry with `payload_len` bytes of payload.
pub const fn entry_bytes(payload_len: usize, write_size: usize) -> usize {
    padded(ENTRY_HEADER + payload_len, write_size)
}

/// Completes the entry whose payload is already in `buf[ENTRY_HEADER..][..payload_len]`: its
/// header and padding. Returns the entry's flash bytes, `buf[..n]`. `buf` must hold them.
pub fn seal(buf: &mut [u8], kind: Kind, payload_len: usize, write_size: usize) -> usize {
    let n = entry_bytes(payload_len, write_size);
    buf[4] = kind as u8;
    buf[5] = 0xFF;
    buf[6..8].copy_from_slice(&(payload_len as u16).to_le_bytes());
    buf[ENTRY_HEADER + payload_len..n].fill(0xFF);
    let crc = rill_core::batch::crc32c(&buf[4..ENTRY_HEADER + payload_len]);
    buf[..4].copy_from_slice(&crc.to_le_bytes());
    n
}

/// What the start of an entry says, before its CRC is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Erased: the page's entries end here.
    Erased,
    /// An entry of this kind and payload length (its CRC still to be checked).
    Entry { kind: Kind, payload_len: usize },
    /// Not an entry: a write was cut here.
    Torn,
}

/// Reads the start of an entry (at least [`ENTRY_HEADER`] bytes).
pub fn entry_start(bytes: &[u8]) -> Start {
    let header = &bytes[..ENTRY_HEADER];
    if is_erased(header) {
        return Start::Erased;
    }
    let payload_len = usize::from(u16::from_le_bytes([header[6], header[7]]));
    match header[4] {
        1 => Start::Entry { kind: Kind::Data, payload_len },
        2 => Start::Entry { kind: Kind::Popped, payload_len },
        _ => Start::Torn,
    }
}

/// Whether the whole entry in `bytes` (header and payload) has the CRC it carries.
pub fn entry_is_whole(bytes: &[u8], payload_len: usize) -> bool {
    let crc = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    rill_core::batch::crc32c(&bytes[4..ENTRY_HEADER + payload_len]) == crc
}

/// A place in the log: a page (by its sequence number) and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub seq: u32,
    pub offset: u32,
}

impl Position {
    pub fn to_bytes(self) -> [u8; 8] {
        let mut out = [0; 8];
        out[..4].copy_from_slice(&self.seq.to_le_bytes());
        out[4..].copy_from_slice(&self.offset.to_le_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Position> {
        let word = |at: usize| bytes.get(at..at + 4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        Some(Position { seq: word(0)?, offset: word(4)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_entries_and_positions_read_back() {
        assert_eq!(parse_page_header(&page_header(7)), Some(7));
        let mut damaged = page_header(7);
        damaged[5] ^= 1;
        assert_eq!(parse_page_header(&damaged), None);
        assert_eq!(parse_page_header(&[0xFF; SLOT]), None);

        let mut buf = [0u8; 64];
        buf[ENTRY_HEADER..ENTRY_HEADER + 5].copy_from_slice(b"hello");
        let n = seal(&mut buf, Kind::Data, 5, 4);
        assert_eq!(n, 16);
        assert_eq!(entry_start(&buf), Start::Entry { kind: Kind::Data, payload_len: 5 });
        assert!(entry_is_whole(&buf, 5));
        buf[9] ^= 0x10;
        assert!(!entry_is_whole(&buf, 5));
        assert_eq!(entry_start(&[0xFF; 16]), Start::Erased);
        assert_eq!(entry_start(&[0x00; 16]), Start::Torn);

        let at = Position { seq: 3, offset: 4080 };
        assert_eq!(Position::from_bytes(&at.to_bytes()), Some(at));
        assert!(Position { seq: 3, offset: 9 } < Position { seq: 4, offset: 0 });
    }
}
