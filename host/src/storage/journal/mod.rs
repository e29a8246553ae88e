//! The write-ahead journal in front of redb, which keeps flash wear low at a gateway's pace.
//!
//! A durable redb commit writes ≈ 32 KiB whatever it carries (the B-tree path, redb's own trees,
//! its header); at one 1 KB batch every 100 ms that is 33× the payload. So a small commit goes to
//! redb *without* an fsync (`Durability::None`: redb keeps its pages in memory) and its row
//! changes go to this journal, whose `fdatasync` makes it durable before anyone is answered: one
//! or two 4 KiB pages per commit. Now and then a durable redb commit — a *checkpoint* — makes
//! everything in the journal redundant, and the journal starts again from its beginning. At open,
//! the records the durable database lacks are replayed ([`replay`]).
//!
//! The file (`rill.journal`) is made once at its full size (`limits::JOURNAL_BYTES`, zeros written
//! through), so a record's `fdatasync` overwrites blocks the filesystem already allocated and has
//! no metadata to commit. Its first 4 KiB hold a header, written once and never again (so a torn
//! record cannot damage it): magic, version, and the cluster id of the database it belongs to.
//! Records follow, each `[body length: u32][CRC-32C of the rest: u32][sequence: u64][previous
//! record's sequence: u64][body]` (little-endian): a chain, each record naming the one before
//! it. A record that would cross into the next 4 KiB page but fits in one starts on the next page
//! instead (a reader that finds no record where one would follow looks there): a small commit's
//! sync then writes one page, not two. The
//! database's `meta` row `journal_seq` says which record a redb commit applied last. A scan stops
//! at the first record that is short, fails its CRC or does not name the one before it: a torn
//! tail, or what an earlier round left behind. Numbers only grow, and at every open they jump
//! past any the file could hold, so no leftover record can continue a newer chain.

pub(super) mod redo;
mod replay;
#[cfg(test)]
mod tests;

use redb::StorageBackend;
use rill_core::batch::crc32c;
use uuid::Uuid;

pub(super) use replay::open;

use crate::limits::JOURNAL_RECORD_BYTES_MAX;

/// The header's page. Records start after it.
const HEADER_BYTES: u64 = PAGE_BYTES;
/// What the page cache and the flash below it write at the least.
const PAGE_BYTES: u64 = 4096;
const MAGIC: [u8; 8] = *b"RILLJRNL";
/// Bumped when the record or header layout changes; a journal of another version is refused
/// (a migration would replay it first, with the code that wrote it).
const VERSION: u32 = 1;
/// Magic, version, cluster id, CRC-32C of those.
const HEADER_LEN: usize = 8 + 4 + 16 + 4;
/// A record's length, CRC, sequence number and the sequence number of the record before it.
pub(super) const RECORD_HEADER_BYTES: usize = 24;

/// Why a journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "journal header is damaged ({0}); if the previous start was cut off while it made the journal, remove rill.journal"
    )]
    Header(&'static str),
    #[error("journal version {0} is not one this build reads")]
    Version(u32),
    #[error(
        "journal belongs to the data of cluster {found}, not to this database's {expected}: rill.redb and \
         rill.journal were mixed up (restore them together, or move rill.journal aside to open the \
         database without its most recent commits)"
    )]
    Foreign { found: Uuid, expected: Uuid },
    #[error(
        "journal continues at record {first}, but the database applied up to record {applied}: records \
         are missing (move rill.journal aside to open the database without its most recent commits)"
    )]
    Gap { first: u64, applied: u64 },
    #[error("journal record {seq} is malformed: {detail}")]
    Record { seq: u64, detail: String },
}

/// One record read back: its sequence number and its row changes ([`redo`]).
#[derive(Debug)]
pub(super) struct Record {
    pub(super) seq: u64,
    /// The record before it in the chain (or the database's `journal_seq`, for a round's first).
    pub(super) prev: u64,
    pub(super) body: Vec<u8>,
}

/// The journal file, open for appending.
pub(super) struct Journal {
    file: Box<dyn StorageBackend>,
    /// The file's length: records never pass it.
    capacity: u64,
    /// Where the next record goes.
    end: u64,
    /// The sequence number the next record gets.
    next_seq: u64,
    /// The sequence number the next record names as the one before it.
    last_seq: u64,
    /// Records were written since the last `fdatasync`.
    unsynced: bool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("end", &self.end).field("next_seq", &self.next_seq).finish()
    }
}

impl Journal {
    /// Opens the journal of the database `cluster_id`, making it `new_bytes` long when the file is
    /// new, and reads its records, oldest first, up to the first that is torn or left from an
    /// earlier round.
    fn open_file(
        file: Box<dyn StorageBackend>,
        cluster_id: Uuid,
        new_bytes: u64,
    ) -> Result<(Journal, Vec<Record>), JournalError> {
        let len = file.len()?;
        let mut header = [0u8; HEADER_LEN];
        if len >= HEADER_BYTES {
            file.read(0, &mut header)?;
        }
        if len < HEADER_BYTES || header.iter().all(|&b| b == 0) {
            return Ok((Self::create(file, cluster_id, new_bytes)?, Vec::new()));
        }
        check_header(&header, cluster_id)?;
        let mut journal = Journal { file, capacity: len, end: HEADER_BYTES, next_seq: 1, last_seq: 0, unsynced: false };
        let records = journal.scan()?;
        Ok((journal, records))
    }

    /// Writes a new journal: zeros through its whole length first (synced), then the header.
    /// The zeros go one 4 KiB page per write: Linux caches a file in folios as large as the writes
    /// that made them, and a dirty folio is written back whole, so zeros written 64 KiB at a time
    /// made every later 1 KB record cost 64 KiB of writes (measured on ext4: 60× the record).
    fn create(file: Box<dyn StorageBackend>, cluster_id: Uuid, bytes: u64) -> Result<Journal, JournalError> {
        let bytes = bytes.max(2 * HEADER_BYTES);
        let zeros = vec![0u8; PAGE_BYTES as usize];
        let mut at = 0;
        while at < bytes {
            let n = (bytes - at).min(zeros.len() as u64);
            file.write(at, &zeros[..n as usize])?;
            at += n;
        }
        file.sync_data()?;
        file.write(0, &encode_header(cluster_id))?;
        file.sync_data()?;
        Ok(Journal { file, capacity: bytes, end: HEADER_BYTES, next_seq: 1, last_seq: 0, unsynced: false })
    }

    /// Reads the chain of records from the start. Where a record is not valid, the writer may
    /// have started it on the next page (see [`padding_before`]): that one place is tried too.
    fn scan(&mut self) -> Result<Vec<Record>, JournalError> {
        let mut records: Vec<Record> = Vec::new();
        let mut at = HEADER_BYTES;
        while at + RECORD_HEADER_BYTES as u64 <= self.capacity {
            if padding_before(at, RECORD_HEADER_BYTES as u64) > 0 {
                at = next_page(at);
                continue;
            }
            let previous = records.last().map(|record| record.seq);
            let found = match self.record_at(at, previous)? {
                None if !at.is_multiple_of(PAGE_BYTES) => {
                    at = next_page(at);
                    self.record_at(at, previous)?
                }
                found => found,
            };
            let Some(record) = found else { break };
            at += (RECORD_HEADER_BYTES + record.body.len()) as u64;
            records.push(record);
        }
        Ok(records)
    }

    /// The record at `at` if there is a whole one that follows `previous` (any, for the first).
    fn record_at(&self, at: u64, previous: Option<u64>) -> Result<Option<Record>, JournalError> {
        if at + RECORD_HEADER_BYTES as u64 > self.capacity {
            return Ok(None);
        }
        let mut head = [0u8; RECORD_HEADER_BYTES];
        self.file.read(at, &mut head)?;
        let (len, crc, seq, prev) = split_record_header(&head);
        let fits = at + (RECORD_HEADER_BYTES + len) as u64 <= self.capacity;
        let follows = seq > prev && previous.is_none_or(|previous| prev == previous);
        if len == 0 || len > JOURNAL_RECORD_BYTES_MAX || !fits || !follows {
            return Ok(None);
        }
        let mut record = vec![0u8; RECORD_HEADER_BYTES + len];
        self.file.read(at, &mut record)?;
        if crc32c(&record[8..]) != crc {
            return Ok(None);
        }
        record.drain(..RECORD_HEADER_BYTES);
        Ok(Some(Record { seq, prev, body: record }))
    }

    /// The sequence number the next record gets.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether a record of `body_len` bytes goes into the journal: small enough that journaling
    /// it writes less than a durable redb commit would, and room left before the next checkpoint.
    pub(super) fn takes(&self, body_len: usize) -> bool {
        if body_len > JOURNAL_RECORD_BYTES_MAX {
            return false;
        }
        let len = (RECORD_HEADER_BYTES + body_len) as u64;
        self.end + padding_before(self.end, len) + len <= self.capacity
    }

    /// Appends `record` (a [`redo::Redo`]'s bytes: the record header's room, then the body) as
    /// the next record. Not durable until [`Self::sync`].
    pub(super) fn append(&mut self, record: &mut [u8]) -> Result<(), std::io::Error> {
        let body_len = record.len() - RECORD_HEADER_BYTES;
        record[0..4].copy_from_slice(&(body_len as u32).to_le_bytes());
        record[8..16].copy_from_slice(&self.next_seq.to_le_bytes());
        record[16..24].copy_from_slice(&self.last_seq.to_le_bytes());
        // The CRC covers both sequence numbers: a stale record whose bytes sit where a new one
        // was expected cannot pass for it.
        let crc = crc32c(&record[8..]);
        record[4..8].copy_from_slice(&crc.to_le_bytes());
        self.unsynced = true;
        // Nothing is written in the padding: writing it would dirty the page the last sync
        // wrote, and cost a second page per record.
        self.end += padding_before(self.end, record.len() as u64);
        self.file.write(self.end, record)?;
        self.end += record.len() as u64;
        self.last_seq = self.next_seq;
        self.next_seq += 1;
        Ok(())
    }

    /// Makes every record appended so far durable.
    pub(super) fn sync(&mut self) -> Result<(), std::io::Error> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// A durable redb commit now holds everything the journal did: the next record goes to the
    /// start again (sequence numbers go on).
    pub(super) fn restart(&mut self) {
        self.end = HEADER_BYTES;
        self.unsynced = false;
    }

    /// Bytes of records appended since the last checkpoint.
    pub(super) fn pending_bytes(&self) -> u64 {
        self.end - HEADER_BYTES
    }

    /// Whether records were appended since the last checkpoint.
    pub(super) fn holds_records(&self) -> bool {
        self.end > HEADER_BYTES
    }

    /// After an open: the database applied every record through `applied`, and `highest` is the
    /// highest sequence number read. Records of a round cut short may lie past the chain's end
    /// (an unsynced tail that a power cut half kept), with numbers just above `highest`; numbers
    /// jump past any the file could hold, so none of them can ever follow a new record. The next
    /// record names `applied` as the one before it, which replay checks against the database.
    fn resume_after(&mut self, applied: u64, highest: u64) {
        let records_max = self.capacity / (RECORD_HEADER_BYTES as u64 + 1);
        self.last_seq = applied;
        self.next_seq = applied.max(highest) + 1 + records_max;
    }
}

/// Bytes left out before a record of `len` bytes at `at`: the rest of the page when the record
/// would cross into the next page but fits in one (each small record then dirties one page per
/// sync, not two), or when not even a record header fits in what is left of it. What the gap
/// holds (an older round's bytes) cannot pass for the record: its sequence number is too old.
fn padding_before(at: u64, len: u64) -> u64 {
    let room = PAGE_BYTES - at % PAGE_BYTES;
    let crosses = len > room && len <= PAGE_BYTES;
    if room < PAGE_BYTES && (crosses || room < RECORD_HEADER_BYTES as u64) { room } else { 0 }
}

fn next_page(at: u64) -> u64 {
    (at / PAGE_BYTES + 1) * PAGE_BYTES
}

fn encode_header(cluster_id: Uuid) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..28].copy_from_slice(cluster_id.as_bytes());
    let crc = crc32c(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

fn check_header(header: &[u8; HEADER_LEN], cluster_id: Uuid) -> Result<(), JournalError> {
    if header[0..8] != MAGIC {
        return Err(JournalError::Header("not a Rill journal"));
    }
    if crc32c(&header[..28]).to_le_bytes() != header[28..32] {
        return Err(JournalError::Header("checksum mismatch"));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(JournalError::Version(version));
    }
    let found = Uuid::from_slice(&header[12..28]).expect("16 bytes");
    if found != cluster_id {
        return Err(JournalError::Foreign { found, expected: cluster_id });
    }
    Ok(())
}

fn split_record_header(head: &[u8; RECORD_HEADER_BYTES]) -> (usize, u32, u64, u64) {
    let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    let prev = u64::from_le_bytes(head[16..24].try_into().expect("8 bytes"));
    (len, crc, seq, prev)
}
