//! A durable backlog in the node's NOR flash (feature `flash-backlog`): batches that must outlive
//! a power cut, in a small log over the flash's erase pages ([`layout`]) that writes each byte
//! once, erases a page only when the log comes round to it, and after a power cut at any point
//! finds again exactly what it had confirmed.
//!
//! Each stored batch carries the (boot, sequence) it was first numbered with: after a reboot the
//! node sends it under those numbers, so the gateway recognises what it already holds. A full
//! backlog drops its oldest batches (counted, as the RAM log does).
//!
//! Why its own log: redb writes pages in place at byte offsets, which NOR flash cannot do without
//! erasing a whole sector; and `sequential-storage` 8.0.2 (used before) loses a confirmed batch
//! when an erase is cut short from the page's end (`firmware/README.md`). Here the page before
//! says, in a trailer written before the erase starts, that the next page is condemned, so no
//! half-erased page is ever read as live, whichever way the erase runs. Each entry is written
//! once, so flash that cannot write a word twice (with ECC) works too.
//!
//! How a power cut is survived ([`FlashBacklog::open`] reads the flash again):
//! - a cut **write** leaves an entry whose CRC fails: the page's entries end before it, and the
//!   log goes on in the next page;
//! - a cut **erase** leaves a page whose header is gone (it holds nothing) or whose header
//!   survived in a page its predecessor condemned (ignored, and erased again before use);
//! - a cut **pop** leaves the popped marker unwritten or torn: the batch is still there.
//!
//! A pop is durable when it returns, except when the backlog is full to its last page and the
//! oldest page still holds unsent batches: the marker then waits in RAM for the next push (which
//! drops that page anyway) rather than drop them, and a power cut meanwhile brings the batches
//! popped since back (sent again, the gateway recognises them).

mod layout;
#[cfg(test)]
mod tests;

use core::ops::Range;

use embedded_storage_async::nor_flash::NorFlash;
use layout::{ENTRY_HEADER, Kind, Position, SLOT, Start};
use rill_core::batch::BatchHeader;

/// Bytes of flash a stored batch takes besides itself (before padding to the write size): the
/// entry's header, boot and sequence.
pub const FLASH_ITEM_HEADER_BYTES: usize = ENTRY_HEADER + 8;

/// The buffer [`FlashBacklog`] needs for batches of up to `batch_max` bytes.
pub const fn buffer_bytes(batch_max: usize) -> usize {
    layout::padded(FLASH_ITEM_HEADER_BYTES + batch_max, SLOT)
}

/// One stored batch.
#[derive(Debug, PartialEq, Eq)]
pub struct StoredBatch<'b> {
    pub boot: u32,
    pub seq: u32,
    pub batch: &'b [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlashLogError<E> {
    /// The flash failed (or lost power mid-operation): the operation may or may not have
    /// happened; the next call reads the flash again.
    Flash(E),
    /// The batch cannot be stored even in an empty backlog (a page must hold it whole).
    TooLarge,
    /// `buf` is smaller than [`buffer_bytes`] for what is stored.
    Buffer,
    /// The range is not at least 2 whole pages of the flash, or the flash's read, write and erase
    /// sizes do not suit the layout (writes of at most 16 bytes, pages of at least 256).
    Layout,
}

/// The page the log appends to.
#[derive(Debug, Clone, Copy)]
struct Head {
    index: u32,
    seq: u32,
    /// Where the next entry goes.
    offset: u32,
    /// The trailer is written: the log has moved on from this page (or is about to).
    closed: bool,
    /// A write was cut here: nothing more may be written to this page.
    torn: bool,
}

/// The backlog over `flash`, in a page-aligned range of it.
pub struct FlashBacklog<S: NorFlash> {
    flash: S,
    base: u32,
    pages: u32,
    head: Option<Head>,
    /// The oldest page in the log: pages `oldest_seq..=head.seq` follow each other in the range,
    /// circularly, in index as in sequence.
    oldest_seq: u32,
    /// Where the oldest batch not popped is looked for.
    read: Position,
    dropped_batches: u64,
    dropped_records: u64,
    /// Pops since the last popped marker that could not be written without dropping batches.
    pops_pending: bool,
    /// A flash operation failed: the flash may not be what this says; read it again first.
    stale: bool,
}

/// What is at an offset of a page.
enum Found {
    /// A whole entry of `bytes` flash bytes, read into the buffer.
    Entry { kind: Kind, payload_len: usize, bytes: u32 },
    /// The page's entries end here (erased, or no room for another).
    End,
    /// A write was cut here.
    Torn,
}

const PAGE_HEADER_OFFSET: u32 = 0;
const FIRST_ENTRY: u32 = SLOT as u32;

impl<S: NorFlash> FlashBacklog<S> {
    /// Opens the backlog, finding what earlier boots left whatever a power cut did to it. `buf`
    /// must hold [`buffer_bytes`] of the largest batch ever stored.
    pub async fn open(flash: S, range: Range<u32>, buf: &mut [u8]) -> Result<Self, FlashLogError<S::Error>> {
        let page = S::ERASE_SIZE;
        let sizes_fit = S::WRITE_SIZE <= SLOT
            && SLOT.is_multiple_of(S::WRITE_SIZE)
            && S::WRITE_SIZE.is_multiple_of(S::READ_SIZE)
            && page >= 256
            && page.is_multiple_of(SLOT);
        let range_fits = range.start.is_multiple_of(page as u32)
            && range.end.is_multiple_of(page as u32)
            && range.end as usize <= flash.capacity()
            && range.end.saturating_sub(range.start) >= 2 * page as u32;
        if !(sizes_fit && range_fits) {
            return Err(FlashLogError::Layout);
        }
        let mut backlog = FlashBacklog {
            flash,
            base: range.start,
            pages: (range.end - range.start) / page as u32,
            head: None,
            oldest_seq: 0,
            read: Position { seq: 0, offset: FIRST_ENTRY },
            dropped_batches: 0,
            dropped_records: 0,
            pops_pending: false,
            stale: true,
        };
        backlog.refresh(buf).await?;
        Ok(backlog)
    }

    /// Stores `batch` as (`boot`, `seq`), dropping the oldest batches when the log has come round
    /// to a page that still holds some. `buf` must hold [`buffer_bytes`]`(batch.len())`.
    pub async fn push(
        &mut self,
        boot: u32,
        seq: u32,
        batch: &[u8],
        buf: &mut [u8],
    ) -> Result<(), FlashLogError<S::Error>> {
        let payload_len = 8 + batch.len();
        let bytes = layout::entry_bytes(payload_len, S::WRITE_SIZE);
        if bytes > S::ERASE_SIZE - 2 * SLOT || payload_len > usize::from(u16::MAX) {
            return Err(FlashLogError::TooLarge);
        }
        if buf.len() < bytes {
            return Err(FlashLogError::Buffer);
        }
        self.refresh(buf).await?;
        self.make_room(bytes as u32, buf).await?;
        let payload = &mut buf[ENTRY_HEADER..ENTRY_HEADER + payload_len];
        payload[..4].copy_from_slice(&boot.to_le_bytes());
        payload[4..8].copy_from_slice(&seq.to_le_bytes());
        payload[8..].copy_from_slice(batch);
        self.write_entry(Kind::Data, payload_len, buf).await?;
        if self.pops_pending && self.head_has_room(Self::MARKER_BYTES) {
            self.write_popped_marker(buf).await?;
        }
        Ok(())
    }

    /// The oldest stored batch, read into `buf`.
    pub async fn oldest<'b>(&mut self, buf: &'b mut [u8]) -> Result<Option<StoredBatch<'b>>, FlashLogError<S::Error>> {
        self.refresh(buf).await?;
        let Some((payload_len, _)) = self.find_oldest(buf).await? else { return Ok(None) };
        Ok(parse(&buf[ENTRY_HEADER..ENTRY_HEADER + payload_len]))
    }

    /// Removes the oldest stored batch if it is (`boot`, `seq`): the one the gateway acknowledged.
    /// A push that dropped it meanwhile (the backlog full) leaves the next one alone, though
    /// nobody sent it yet. Returns whether it was removed.
    pub async fn pop_oldest_if(
        &mut self,
        boot: u32,
        seq: u32,
        buf: &mut [u8],
    ) -> Result<bool, FlashLogError<S::Error>> {
        self.refresh(buf).await?;
        let Some((payload_len, bytes)) = self.find_oldest(buf).await? else { return Ok(false) };
        let oldest = parse(&buf[ENTRY_HEADER..ENTRY_HEADER + payload_len]);
        if oldest.is_none_or(|stored| (stored.boot, stored.seq) != (boot, seq)) {
            return Ok(false);
        }
        self.read.offset += bytes;
        if !self.head_has_room(Self::MARKER_BYTES) && self.moving_on_drops_batches(buf).await? {
            // Making room for the marker would drop unsent batches: keep the pop in RAM until a
            // push makes room anyway (after a power cut meanwhile, it comes back, and is sent
            // again; the gateway recognises what it holds).
            self.pops_pending = true;
            return Ok(true);
        }
        self.write_popped_marker(buf).await?;
        Ok(true)
    }

    pub fn dropped_batches(&self) -> u64 {
        self.dropped_batches
    }

    pub fn dropped_records(&self) -> u64 {
        self.dropped_records
    }

    /// The flash, for a board that shares it (and for tests).
    pub fn into_flash(self) -> S {
        self.flash
    }

    // ---- reading the log back -------------------------------------------------------------

    /// After a failed flash operation (or at open), reads the flash again: the newest page, the
    /// pages before it back to the oldest (not the one the newest condemned), and in them the last
    /// popped marker and the end of the entries.
    async fn refresh(&mut self, buf: &mut [u8]) -> Result<(), FlashLogError<S::Error>> {
        if buf.len() < SLOT {
            return Err(FlashLogError::Buffer);
        }
        if !self.stale {
            return Ok(());
        }
        self.head = None;
        self.pops_pending = false;
        let mut newest: Option<(u32, u32)> = None;
        for index in 0..self.pages {
            if let Some(seq) = self.page_seq(index).await?
                && newest.is_none_or(|(_, newest_seq)| seq > newest_seq)
            {
                newest = Some((index, seq));
            }
        }
        let Some((index, seq)) = newest else {
            self.stale = false;
            return Ok(());
        };
        let mut trailer = [0u8; SLOT];
        self.read_at(self.page_addr(index) + S::ERASE_SIZE as u32 - SLOT as u32, &mut trailer).await?;
        let closed = !layout::is_erased(&trailer);
        let condemned = (index + 1) % self.pages;
        let mut oldest = seq;
        for back in 1..self.pages {
            let before = (index + self.pages - back) % self.pages;
            let expected = seq.checked_sub(back);
            if (closed && before == condemned) || expected.is_none() || self.page_seq(before).await? != expected {
                break;
            }
            oldest = seq - back;
        }
        self.head = Some(Head { index, seq, offset: FIRST_ENTRY, closed, torn: false });
        self.oldest_seq = oldest;
        self.read = Position { seq: oldest, offset: FIRST_ENTRY };
        for page_seq in oldest..=seq {
            let (end, torn, popped_to) = self.scan_page(page_seq, buf).await?;
            if let Some(popped_to) = popped_to {
                self.read = self.read.max(popped_to);
            }
            if page_seq == seq {
                self.head = Some(Head { index, seq, offset: end, closed, torn });
            }
        }
        self.stale = false;
        Ok(())
    }

    /// The end of a page's entries, whether a cut write ends them, and its last popped marker.
    async fn scan_page(
        &mut self,
        seq: u32,
        buf: &mut [u8],
    ) -> Result<(u32, bool, Option<Position>), FlashLogError<S::Error>> {
        let mut offset = FIRST_ENTRY;
        let mut popped_to = None;
        loop {
            match self.entry_at(seq, offset, buf).await? {
                Found::End => return Ok((offset, false, popped_to)),
                Found::Torn => return Ok((offset, true, popped_to)),
                Found::Entry { kind, bytes, .. } => {
                    if kind == Kind::Popped {
                        popped_to = Position::from_bytes(&buf[ENTRY_HEADER..ENTRY_HEADER + 8]);
                    }
                    offset += bytes;
                }
            }
        }
    }

    /// Moves the read position to the oldest batch not popped and reads it into `buf`; returns
    /// its payload length and flash bytes.
    async fn find_oldest(&mut self, buf: &mut [u8]) -> Result<Option<(usize, u32)>, FlashLogError<S::Error>> {
        let Some(head) = self.head else { return Ok(None) };
        loop {
            let at_head = self.read.seq == head.seq;
            if self.read.seq > head.seq || (at_head && self.read.offset >= head.offset) {
                return Ok(None);
            }
            match self.entry_at(self.read.seq, self.read.offset, buf).await? {
                Found::Entry { kind: Kind::Data, payload_len, bytes } => return Ok(Some((payload_len, bytes))),
                Found::Entry { bytes, .. } => self.read.offset += bytes,
                Found::End | Found::Torn if at_head => return Ok(None),
                Found::End | Found::Torn => self.read = Position { seq: self.read.seq + 1, offset: FIRST_ENTRY },
            }
        }
    }

    /// What is at `offset` of the page `seq`; a whole entry is read into `buf`.
    async fn entry_at(&mut self, seq: u32, offset: u32, buf: &mut [u8]) -> Result<Found, FlashLogError<S::Error>> {
        let room_ends = S::ERASE_SIZE as u32 - SLOT as u32;
        if offset + SLOT as u32 > room_ends {
            return Ok(Found::End);
        }
        let at = self.page_addr(self.index_of(seq)) + offset;
        self.read_at(at, &mut buf[..SLOT]).await?;
        let (kind, payload_len) = match layout::entry_start(&buf[..SLOT]) {
            Start::Erased => return Ok(Found::End),
            Start::Torn => return Ok(Found::Torn),
            Start::Entry { kind, payload_len } => (kind, payload_len),
        };
        let bytes = layout::entry_bytes(payload_len, S::WRITE_SIZE);
        if offset + bytes as u32 > room_ends {
            return Ok(Found::Torn);
        }
        let entry = buf.get_mut(..bytes).ok_or(FlashLogError::Buffer)?;
        self.read_at(at, entry).await?;
        if !layout::entry_is_whole(entry, payload_len) {
            return Ok(Found::Torn);
        }
        Ok(Found::Entry { kind, payload_len, bytes: bytes as u32 })
    }

    // ---- writing ------------------------------------------------------------------------------

    /// Flash bytes of a popped marker.
    const MARKER_BYTES: u32 = layout::entry_bytes(8, S::WRITE_SIZE) as u32;

    /// Records durably that everything before the read position is popped.
    async fn write_popped_marker(&mut self, buf: &mut [u8]) -> Result<(), FlashLogError<S::Error>> {
        self.make_room(Self::MARKER_BYTES, buf).await?;
        buf[ENTRY_HEADER..ENTRY_HEADER + 8].copy_from_slice(&self.read.to_bytes());
        self.write_entry(Kind::Popped, 8, buf).await?;
        self.pops_pending = false;
        Ok(())
    }

    fn head_has_room(&self, bytes: u32) -> bool {
        let fits = |head: &Head| !head.closed && !head.torn && head.offset + bytes <= (S::ERASE_SIZE - SLOT) as u32;
        self.head.as_ref().is_some_and(fits)
    }

    /// Whether moving on to the next page would drop batches not popped: the log spans every
    /// page and the oldest still holds some after the read position.
    async fn moving_on_drops_batches(&mut self, buf: &mut [u8]) -> Result<bool, FlashLogError<S::Error>> {
        let spans_every_page = self.head.is_some_and(|head| head.seq - self.oldest_seq + 1 == self.pages);
        if !spans_every_page || self.read.seq != self.oldest_seq {
            return Ok(false);
        }
        let mut offset = self.read.offset;
        while let Found::Entry { kind, bytes, .. } = self.entry_at(self.oldest_seq, offset, buf).await? {
            if kind == Kind::Data {
                return Ok(true);
            }
            offset += bytes;
        }
        Ok(false)
    }

    /// Makes sure the head page has `bytes` of room, moving the log on to the next page if not.
    async fn make_room(&mut self, bytes: u32, buf: &mut [u8]) -> Result<(), FlashLogError<S::Error>> {
        if self.head_has_room(bytes) {
            return Ok(());
        }
        self.move_on(buf).await
    }

    /// Starts the next page: condemns it in the head's trailer, drops what it still holds (when
    /// the log spans every page, it is the oldest), erases it and writes its header.
    async fn move_on(&mut self, buf: &mut [u8]) -> Result<(), FlashLogError<S::Error>> {
        let (index, seq) = match self.head {
            None => (0, self.oldest_seq.max(1)),
            Some(head) => {
                if !head.closed {
                    let trailer = self.page_addr(head.index) + (S::ERASE_SIZE - SLOT) as u32;
                    self.write_at(trailer, &layout::TRAILER).await?;
                }
                if head.seq - self.oldest_seq + 1 == self.pages {
                    self.drop_oldest_page(buf).await?;
                }
                ((head.index + 1) % self.pages, head.seq + 1)
            }
        };
        self.erase_unless_erased(index, buf).await?;
        self.write_at(self.page_addr(index) + PAGE_HEADER_OFFSET, &layout::page_header(seq)).await?;
        if self.head.is_none() {
            self.oldest_seq = seq;
            self.read = Position { seq, offset: FIRST_ENTRY };
        }
        self.head = Some(Head { index, seq, offset: FIRST_ENTRY, closed: false, torn: false });
        Ok(())
    }

    /// Counts the batches the oldest page still holds as dropped, and leaves it out of the log.
    async fn drop_oldest_page(&mut self, buf: &mut [u8]) -> Result<(), FlashLogError<S::Error>> {
        let seq = self.oldest_seq;
        let mut offset = if self.read.seq == seq { self.read.offset } else { FIRST_ENTRY };
        while let Found::Entry { kind, payload_len, bytes } = self.entry_at(seq, offset, buf).await? {
            if kind == Kind::Data {
                let batch = buf.get(FLASH_ITEM_HEADER_BYTES..ENTRY_HEADER + payload_len).unwrap_or_default();
                self.dropped_batches += 1;
                self.dropped_records += BatchHeader::decode(batch).map_or(0, |h| h.records_count.max(0) as u64);
            }
            offset += bytes;
        }
        self.oldest_seq += 1;
        if self.read.seq < self.oldest_seq {
            self.read = Position { seq: self.oldest_seq, offset: FIRST_ENTRY };
        }
        Ok(())
    }

    /// Seals the entry whose payload is in `buf` and appends it to the head page (which has room).
    async fn write_entry(
        &mut self,
        kind: Kind,
        payload_len: usize,
        buf: &mut [u8],
    ) -> Result<(), FlashLogError<S::Error>> {
        let bytes = layout::seal(buf, kind, payload_len, S::WRITE_SIZE);
        let Some(head) = self.head else { return Err(FlashLogError::Layout) };
        self.write_at(self.page_addr(head.index) + head.offset, &buf[..bytes]).await?;
        if let Some(head) = self.head.as_mut() {
            head.offset += bytes as u32;
        }
        Ok(())
    }

    async fn erase_unless_erased(&mut self, index: u32, buf: &mut [u8]) -> Result<(), FlashLogError<S::Error>> {
        let start = self.page_addr(index);
        let chunk = buf.len().min(S::ERASE_SIZE) / SLOT * SLOT;
        let mut offset = 0;
        while offset < S::ERASE_SIZE {
            let len = chunk.min(S::ERASE_SIZE - offset);
            self.read_at(start + offset as u32, &mut buf[..len]).await?;
            if !layout::is_erased(&buf[..len]) {
                let result = self.flash.erase(start, start + S::ERASE_SIZE as u32).await;
                return result.map_err(|e| self.failed(e));
            }
            offset += len;
        }
        Ok(())
    }

    // ---- the flash ------------------------------------------------------------------------------

    async fn page_seq(&mut self, index: u32) -> Result<Option<u32>, FlashLogError<S::Error>> {
        let mut header = [0u8; SLOT];
        self.read_at(self.page_addr(index) + PAGE_HEADER_OFFSET, &mut header).await?;
        Ok(layout::parse_page_header(&header))
    }

    fn page_addr(&self, index: u32) -> u32 {
        self.base + index * S::ERASE_SIZE as u32
    }

    /// The index of page `seq`, one of `oldest_seq..=head.seq`.
    fn index_of(&self, seq: u32) -> u32 {
        let head = self.head.map_or((0, seq), |head| (head.index, head.seq));
        (head.0 + self.pages - (head.1 - seq) % self.pages) % self.pages
    }

    async fn read_at(&mut self, at: u32, into: &mut [u8]) -> Result<(), FlashLogError<S::Error>> {
        let result = self.flash.read(at, into).await;
        result.map_err(|e| self.failed(e))
    }

    async fn write_at(&mut self, at: u32, bytes: &[u8]) -> Result<(), FlashLogError<S::Error>> {
        let result = self.flash.write(at, bytes).await;
        result.map_err(|e| self.failed(e))
    }

    fn failed(&mut self, e: S::Error) -> FlashLogError<S::Error> {
        self.stale = true;
        FlashLogError::Flash(e)
    }
}

impl<S: NorFlash> core::fmt::Debug for FlashBacklog<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlashBacklog")
            .field("base", &self.base)
            .field("pages", &self.pages)
            .field("oldest_seq", &self.oldest_seq)
            .field("read", &self.read)
            .field("dropped_batches", &self.dropped_batches)
            .field("dropped_records", &self.dropped_records)
            .finish_non_exhaustive()
    }
}

/// A data entry's payload: boot, sequence, the batch.
fn parse(payload: &[u8]) -> Option<StoredBatch<'_>> {
    let (numbers, batch) = payload.split_at_checked(8)?;
    let word = |at: usize| u32::from_le_bytes([numbers[at], numbers[at + 1], numbers[at + 2], numbers[at + 3]]);
    Some(StoredBatch { boot: word(0), seq: word(4), batch })
}
