//! A durable backlog in the node's NOR flash (feature `flash-backlog`): batches that must
//! outlive a power cut, on `sequential-storage`'s queue, which writes flash sequentially, erases
//! a page only when it moves on, and repairs what a power cut interrupted.
//!
//! Each item is a batch with the (boot, sequence) it was first numbered with: after a reboot
//! the node sends it under those numbers, so the gateway recognises what it already holds. A
//! full backlog drops its oldest batches (counted, as the RAM log does).
//!
//! Why not redb here: redb writes pages in place at byte offsets, which NOR flash cannot do
//! without erasing a whole sector first.

use core::ops::Range;

use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use rill_core::batch::BatchHeader;
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::queue::{QueueConfig, QueueStorage};

/// Bytes of an item's own header: boot and sequence, little-endian.
pub const FLASH_ITEM_HEADER_BYTES: usize = 8;

/// One stored batch.
#[derive(Debug, PartialEq, Eq)]
pub struct StoredBatch<'b> {
    pub boot: u32,
    pub seq: u32,
    pub batch: &'b [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlashLogError<E> {
    /// The flash failed (or lost power mid-operation): nothing is known to be stored.
    Flash(E),
    /// The flash holds something the queue cannot read, even after its repair.
    Corrupted,
    /// The batch cannot be stored even in an empty backlog (a page must hold it whole).
    TooLarge,
    /// `buf` is smaller than the item (or larger than the queue handles).
    Buffer,
    /// `sequential-storage` reports a bug of its own: the flash is not known to be bad.
    Library,
}

impl<E> From<sequential_storage::Error<E>> for FlashLogError<E> {
    fn from(e: sequential_storage::Error<E>) -> Self {
        match e {
            sequential_storage::Error::Storage { value, .. } => FlashLogError::Flash(value),
            sequential_storage::Error::ItemTooBig | sequential_storage::Error::FullStorage => FlashLogError::TooLarge,
            sequential_storage::Error::BufferTooSmall(_) | sequential_storage::Error::BufferTooBig => {
                FlashLogError::Buffer
            }
            sequential_storage::Error::Corrupted { .. } => FlashLogError::Corrupted,
            _ => FlashLogError::Library,
        }
    }
}

/// No cache: each push finds the youngest page by reading the page states (memory-mapped flash
/// reads are cheap), and the backlog needs no RAM per page.
type NoCache = Cache<Uncached, Uncached, Uncached>;

/// The backlog over `flash`, in the page-aligned `range` of it.
pub struct FlashBacklog<S: MultiwriteNorFlash> {
    queue: QueueStorage<S, NoCache>,
    dropped_batches: u64,
    dropped_records: u64,
}

impl<S: MultiwriteNorFlash> FlashBacklog<S> {
    /// Opens the backlog; what an earlier boot left is still there. Panics if `range` is not
    /// whole pages of `flash` (a board's constant, checked at its first start).
    pub fn new(flash: S, range: Range<u32>) -> Self {
        FlashBacklog {
            queue: QueueStorage::new(flash, QueueConfig::new(range), Cache::new_uncached()),
            dropped_batches: 0,
            dropped_records: 0,
        }
    }

    /// Stores `batch` as (`boot`, `seq`), dropping the oldest batches while it does not fit.
    /// `buf` holds the item: at least [`FLASH_ITEM_HEADER_BYTES`] more than the largest batch.
    pub async fn push(
        &mut self,
        boot: u32,
        seq: u32,
        batch: &[u8],
        buf: &mut [u8],
    ) -> Result<(), FlashLogError<S::Error>> {
        let len = FLASH_ITEM_HEADER_BYTES + batch.len();
        if buf.len() < len {
            return Err(FlashLogError::Buffer);
        }
        loop {
            let item = &mut buf[..len];
            item[..4].copy_from_slice(&boot.to_le_bytes());
            item[4..8].copy_from_slice(&seq.to_le_bytes());
            item[8..].copy_from_slice(batch);
            match self.queue.push(item, false).await {
                Ok(()) => return Ok(()),
                // Drop-oldest, reading the oldest into `buf` (the item is written again after).
                Err(sequential_storage::Error::FullStorage) => {
                    if !self.drop_oldest(buf).await? {
                        return Err(FlashLogError::TooLarge);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Drops the oldest batch, counting its records; false when there is none.
    async fn drop_oldest(&mut self, buf: &mut [u8]) -> Result<bool, FlashLogError<S::Error>> {
        let Some(item) = self.queue.pop(buf).await? else { return Ok(false) };
        let records = item
            .get(FLASH_ITEM_HEADER_BYTES..)
            .and_then(|batch| BatchHeader::decode(batch).ok())
            .map_or(0, |header| header.records_count.max(0) as u64);
        self.dropped_batches += 1;
        self.dropped_records += records;
        Ok(true)
    }

    /// The oldest stored batch, read into `buf`.
    pub async fn oldest<'b>(&mut self, buf: &'b mut [u8]) -> Result<Option<StoredBatch<'b>>, FlashLogError<S::Error>> {
        let Some(item) = self.queue.peek(buf).await? else { return Ok(None) };
        Ok(Some(parse(item)?))
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
        let mut iter = self.queue.iter().await?;
        let Some(entry) = iter.next(buf).await? else { return Ok(false) };
        let stored = parse::<S::Error>(&entry)?;
        if (stored.boot, stored.seq) != (boot, seq) {
            return Ok(false);
        }
        entry.pop().await?;
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
        self.queue.destroy().0
    }
}

impl<S: MultiwriteNorFlash> core::fmt::Debug for FlashBacklog<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlashBacklog")
            .field("flash_range", &self.queue.flash_range())
            .field("dropped_batches", &self.dropped_batches)
            .field("dropped_records", &self.dropped_records)
            .finish_non_exhaustive()
    }
}

fn parse<E>(item: &[u8]) -> Result<StoredBatch<'_>, FlashLogError<E>> {
    let (header, batch) = item.split_at_checked(FLASH_ITEM_HEADER_BYTES).ok_or(FlashLogError::Corrupted)?;
    let word = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    Ok(StoredBatch { boot: word(0), seq: word(4), batch })
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use embassy_futures::block_on;
    use rill_core::batch::{BatchBuilder, BatchParams, RecordSpec};

    use super::*;
    use crate::testing::{CutStyle, FakeNor, FakeNorError, PAGE_BYTES};

    const BUF: usize = 1024;

    /// Batch `n`: `records` readings whose values name it, about `records` × 40 bytes.
    fn batch(n: u32, records: usize) -> Vec<u8> {
        let values: Vec<std::string::String> = (0..records).map(|i| std::format!("{{\"n\":{n},\"i\":{i}}}")).collect();
        let mut buf = [0u8; BUF];
        let mut builder = BatchBuilder::new(&mut buf, BatchParams::default()).unwrap();
        for v in &values {
            let spec = RecordSpec { timestamp: i64::from(n), key: Some(b"t"), value: Some(v.as_bytes()), headers: &[] };
            builder.push(&spec).unwrap();
        }
        builder.finish().unwrap().to_vec()
    }

    fn open(flash: FakeNor) -> FlashBacklog<FakeNor> {
        let end = flash.capacity_bytes();
        FlashBacklog::new(flash, 0..end)
    }

    /// Every stored (boot, seq), oldest first, removing them; each batch must read back as it
    /// was written.
    fn try_drain(backlog: &mut FlashBacklog<FakeNor>) -> Result<Vec<(u32, u32)>, std::string::String> {
        let mut buf = [0u8; BUF];
        let mut out = Vec::new();
        loop {
            let oldest = block_on(backlog.oldest(&mut buf)).map_err(|e| std::format!("oldest: {e:?}"))?;
            let Some(stored) = oldest else { return Ok(out) };
            if stored.batch != &batch(stored.seq, 4)[..] {
                return Err(std::format!("batch {} does not read back as written", stored.seq));
            }
            let (boot, seq) = (stored.boot, stored.seq);
            out.push((boot, seq));
            match block_on(backlog.pop_oldest_if(boot, seq, &mut buf)) {
                Ok(true) => {}
                other => return Err(std::format!("popping ({boot}, {seq}) after {out:?}: {other:?}")),
            }
        }
    }

    fn drain(backlog: &mut FlashBacklog<FakeNor>) -> Vec<(u32, u32)> {
        try_drain(backlog).unwrap()
    }

    #[test]
    fn batches_outlive_a_reboot_with_their_numbers_in_order() {
        let mut backlog = open(FakeNor::new(4));
        let mut buf = [0u8; BUF];
        for seq in 0..20 {
            block_on(backlog.push(7, seq, &batch(seq, 4), &mut buf)).unwrap();
        }
        let mut rebooted = open(backlog.into_flash());
        let expected: Vec<(u32, u32)> = (0..20).map(|seq| (7, seq)).collect();
        assert_eq!(drain(&mut rebooted), expected);
    }

    /// A workload of pushes and pops that goes nearly twice round 4 pages (erasing them as it
    /// goes), cut at every 31st byte it writes or erases, each cut leaving the flash as `style`
    /// says. After each reboot the backlog must hold exactly what was confirmed and not popped,
    /// give or take the one operation the cut interrupted, in order and byte for byte, and work
    /// on. Returns how many cuts were tried, or the first that broke this.
    fn cut_everywhere(style: CutStyle) -> Result<usize, std::string::String> {
        const PUSHES: u32 = 150;
        const PAGES: usize = 4;
        // The pushes and pops of the workload; returns (pushes confirmed, pops confirmed, what
        // was in flight when the power went).
        fn workload(flash: FakeNor) -> (FakeNor, u32, u32, Option<&'static str>) {
            let mut backlog = open(flash);
            let mut buf = [0u8; BUF];
            let (mut pushed, mut popped) = (0, 0);
            for seq in 0..PUSHES {
                if let Err(e) = block_on(backlog.push(1, seq, &batch(seq, 4), &mut buf)) {
                    assert_eq!(e, FlashLogError::Flash(FakeNorError::PowerCut));
                    return (backlog.into_flash(), pushed, popped, Some("push"));
                }
                pushed += 1;
                // Two pops for three pushes.
                if seq % 3 != 0 {
                    match block_on(backlog.pop_oldest_if(1, popped, &mut buf)) {
                        Ok(true) => popped += 1,
                        Ok(false) => panic!("batch {popped} is the oldest"),
                        Err(e) => {
                            assert_eq!(e, FlashLogError::Flash(FakeNorError::PowerCut));
                            return (backlog.into_flash(), pushed, popped, Some("pop"));
                        }
                    }
                }
            }
            (backlog.into_flash(), pushed, popped, None)
        }
        let (whole, _, _, _) = workload(FakeNor::new(PAGES));
        assert!(whole.erased_pages >= PAGES as u64, "the workload erases pages: {}", whole.erased_pages);
        let total = whole.written + whole.erased_pages * PAGE_BYTES as u64;
        let mut cuts = 0;
        for cut in (0..total).step_by(31) {
            let mut flash = FakeNor::new(PAGES);
            flash.cut_after(cut, style);
            let (mut flash, pushed, popped, in_flight) = workload(flash);
            flash.revive();
            let mut rebooted = open(flash);
            let broken = |why: std::string::String| {
                std::format!(
                    "{style:?} cut after {cut} bytes ({in_flight:?} in flight, {pushed} pushed, {popped} popped): {why}"
                )
            };
            let seqs: Vec<u32> = try_drain(&mut rebooted).map_err(broken)?.into_iter().map(|(_, seq)| seq).collect();
            let first_ok = if in_flight == Some("pop") { [popped, popped + 1] } else { [popped, popped] };
            let last_ok = if in_flight == Some("push") { [pushed, pushed + 1] } else { [pushed, pushed] };
            let (first, end) = (seqs.first().copied().unwrap_or(popped), seqs.last().map_or(popped, |s| s + 1));
            if in_flight.is_none()
                || !seqs.windows(2).all(|w| w[1] == w[0] + 1)
                || !first_ok.contains(&first)
                || !last_ok.contains(&end)
            {
                return Err(broken(std::format!("found {seqs:?}")));
            }
            let mut buf = [0u8; BUF];
            block_on(rebooted.push(2, 0, &batch(0, 4), &mut buf))
                .map_err(|e| broken(std::format!("no push after the reboot: {e:?}")))?;
            cuts += 1;
        }
        Ok(cuts)
    }

    #[test]
    fn a_power_cut_anywhere_loses_nothing_confirmed() {
        for style in [CutStyle::Clean, CutStyle::Garbled] {
            let cuts = cut_everywhere(style).unwrap();
            assert!(cuts > 1_000, "{style:?}: {cuts} cuts tried");
        }
    }

    /// Found by this evaluation: an erase cut short that leaves the page's end erased and its
    /// start not (some parts erase that way; a real cut can leave any bits) makes
    /// sequential-storage 8.0.2 lose a confirmed batch. Run with `--ignored` after an upgrade.
    #[test]
    #[ignore = "sequential-storage 8.0.2 loses a confirmed batch when an erase is cut from the page's end (firmware/README.md)"]
    fn a_power_cut_in_an_erase_from_the_page_end_loses_nothing_confirmed() {
        cut_everywhere(CutStyle::EraseBackwards).unwrap();
    }

    #[test]
    fn a_full_backlog_drops_its_oldest_batches_and_counts_their_records() {
        let mut backlog = open(FakeNor::new(3));
        let mut buf = [0u8; BUF];
        for seq in 0..200 {
            block_on(backlog.push(1, seq, &batch(seq, 4), &mut buf)).unwrap();
        }
        assert!(backlog.dropped_batches() > 0);
        assert_eq!(backlog.dropped_records(), backlog.dropped_batches() * 4);
        let seqs: Vec<u32> = drain(&mut backlog).into_iter().map(|(_, seq)| seq).collect();
        assert_eq!(seqs.last(), Some(&199), "the newest are kept");
        assert_eq!(seqs.first().map(|&s| u64::from(s)), Some(backlog.dropped_batches()), "the oldest went first");
        assert!(matches!(
            block_on(backlog.push(1, 200, &[0u8; PAGE_BYTES], &mut [0u8; 2 * PAGE_BYTES])),
            Err(FlashLogError::TooLarge)
        ));
    }

    /// The write cost, counted on the fake: bytes written and pages erased per byte of batch,
    /// pushing and popping 2,000 batches of ~170 bytes through 16 pages of 4 KiB.
    #[test]
    fn write_cost_stays_near_the_bytes_stored() {
        let mut backlog = open(FakeNor::new(16));
        let mut buf = [0u8; BUF];
        let mut payload = 0u64;
        for seq in 0..2_000 {
            let batch = batch(seq, 4);
            payload += batch.len() as u64;
            block_on(backlog.push(1, seq, &batch, &mut buf)).unwrap();
            if seq >= 50 {
                assert!(block_on(backlog.pop_oldest_if(1, seq - 50, &mut buf)).unwrap());
            }
        }
        // What awaiting a push or a pop holds (in an embassy task, in the task's static storage).
        let push_future = core::mem::size_of_val(&backlog.push(1, 0, &[], &mut buf));
        let pop_future = core::mem::size_of_val(&backlog.pop_oldest_if(1, 0, &mut buf));
        let flash = backlog.into_flash();
        let amplification = flash.written as f64 / payload as f64;
        let erases_per_mib = flash.erased_pages as f64 / (payload as f64 / (1 << 20) as f64);
        std::println!(
            "flash backlog: {payload} batch bytes -> {} bytes written ({amplification:.2}x), {} page erases ({erases_per_mib:.0} per MiB); RAM {} bytes besides the flash and a batch buffer, futures: push {push_future} bytes, pop {pop_future} bytes (64-bit host)",
            flash.written,
            flash.erased_pages,
            core::mem::size_of::<FlashBacklog<FakeNor>>() - core::mem::size_of::<FakeNor>(),
        );
        // Item headers, alignment and pop marks cost something; a rewrite of the data would not.
        assert!(amplification < 1.3, "{amplification}");
        assert!(erases_per_mib < 1.5 * (1 << 20) as f64 / PAGE_BYTES as f64, "{erases_per_mib}");
    }
}
