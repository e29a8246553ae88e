//! The Kafka v2 record batch ("magic 2", Kafka 0.11+): validate, iterate, build and rewrite in
//! place, on borrowed bytes, without allocating and without panicking on any input.
//!
//! # Batch layout
//!
//! All integers big-endian. Offsets in bytes from the start of the batch.
//!
//! | offset | size | field                  | meaning                                              |
//! |-------:|-----:|------------------------|------------------------------------------------------|
//! |      0 |    8 | `baseOffset`           | i64: offset of the first record (set by the broker)  |
//! |      8 |    4 | `batchLength`          | i32: bytes after this field                          |
//! |     12 |    4 | `partitionLeaderEpoch` | i32: leader epoch when appended (set by the broker)  |
//! |     16 |    1 | `magic`                | i8: format version, always 2                         |
//! |     17 |    4 | `crc`                  | u32: CRC32C (Castagnoli) of bytes 21 to the end      |
//! |     21 |    2 | `attributes`           | i16: bit flags, below                                |
//! |     23 |    4 | `lastOffsetDelta`      | i32: offset of the last record minus `baseOffset`    |
//! |     27 |    8 | `baseTimestamp`        | i64: ms; timestamp of the first record               |
//! |     35 |    8 | `maxTimestamp`         | i64: ms; largest record timestamp                    |
//! |     43 |    8 | `producerId`           | i64: idempotent/transactional producer, -1 if none   |
//! |     51 |    2 | `producerEpoch`        | i16: -1 if none                                      |
//! |     53 |    4 | `baseSequence`         | i32: sequence of the first record, -1 if none        |
//! |     57 |    4 | `recordsCount`         | i32: number of records                               |
//! |     61 |    … | records                | `recordsCount` records, compressed as one block      |
//!
//! The header is [`HEADER_LEN`] = 61 bytes; the first [`LOG_OVERHEAD`] = 12 (`baseOffset` and
//! `batchLength`) are Kafka's "log overhead", so a batch is `12 + batchLength` bytes.
//! `baseOffset` and `partitionLeaderEpoch` lie outside the CRC so that a broker can assign them
//! without recomputing it ([`set_base_offset`], [`set_partition_leader_epoch`]).
//!
//! `attributes` bits: 0–2 compression (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd);
//! 3 timestamp type (0 CreateTime, 1 LogAppendTime); 4 isTransactional; 5 isControl;
//! 6 hasDeleteHorizonMs; 7–15 unused.
//!
//! # Record layout
//!
//! Varints are zigzag-encoded (see [`crate::varint`]): varint ≤ 5 bytes, varlong ≤ 10.
//!
//! | field               | type    | meaning                                                |
//! |---------------------|---------|--------------------------------------------------------|
//! | `length`            | varint  | bytes of the record after this field                   |
//! | `attributes`        | i8      | unused, 0                                              |
//! | `timestampDelta`    | varlong | ms after `baseTimestamp`                               |
//! | `offsetDelta`       | varint  | offset after `baseOffset`                              |
//! | `keyLength`         | varint  | -1 for a null key                                      |
//! | `key`               | bytes   |                                                        |
//! | `valueLen`          | varint  | -1 for a null value                                    |
//! | `value`             | bytes   |                                                        |
//! | `headersCount`      | varint  |                                                        |
//! | `headerKeyLength`   | varint  | per header: ≥ 0                                        |
//! | `headerKey`         | bytes   | UTF-8 in Kafka, not checked                            |
//! | `headerValueLength` | varint  | -1 for a null value                                    |
//! | `headerValue`       | bytes   |                                                        |
//!
//! # Validation
//!
//! [`Batch::parse`] checks, in this order: `batchLength` within
//! `[HEADER_LEN - 12, BATCH_BYTES_MAX - 12]`, the slice length, `magic == 2`, the CRC, the
//! compression codec, `recordsCount ≥ 0`, `lastOffsetDelta ≥ max(recordsCount - 1, 0)`, and
//! for uncompressed batches every record: well-formed, offset deltas increasing and at most
//! `lastOffsetDelta`, exactly `recordsCount` records filling the section exactly. Compressed
//! records are checked by the host after decompression ([`validate_decompressed`]).

mod builder;
mod error;
mod header;
mod record;

pub use builder::{BatchBuilder, BatchParams, OffsetLayout, RecordSpec, encoded_record_len};
#[cfg(feature = "alloc")]
pub use builder::{build_vec, build_vec_at_without_crc, build_vec_without_crc};
pub use error::{BatchError, BuildError, RecordError, RecordField};
pub use header::{BatchHeader, Compression, TimestampType, attributes};
pub use record::{Header, Headers, Record, Records, records_in, validate_decompressed, validate_records};

use crate::limits::BATCH_BYTES_MAX;
pub use crate::varint::BufferTooSmall;
use header::at;

/// Bytes of the batch header, up to the first record.
pub const HEADER_LEN: usize = 61;
/// Bytes of `baseOffset` and `batchLength`, which `batchLength` does not count.
pub const LOG_OVERHEAD: usize = 12;
/// The only `magic` (format version) this codec reads and writes.
pub const MAGIC: i8 = 2;

// `batchLength` is an i32, and a batch must at least hold its header.
const _: () = assert!(BATCH_BYTES_MAX - LOG_OVERHEAD <= i32::MAX as usize);
const _: () = assert!(BATCH_BYTES_MAX >= HEADER_LEN);
const _: () = assert!(at::RECORDS_COUNT + 4 == HEADER_LEN);

/// CRC32C (Castagnoli, polynomial 0x1EDC6F41), Kafka's batch checksum. 16 lanes of tables
/// (16 KiB) run several times faster than one, which WebAssembly plugins want.
#[cfg(all(not(feature = "std"), not(target_os = "none")))]
static CRC32C: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// On a microcontroller one table (1 KiB of flash, not 16): a sensor node checksums a batch of a
/// few hundred bytes now and then, and flash is its scarcer resource.
#[cfg(all(not(feature = "std"), target_os = "none"))]
static CRC32C: crc::Crc<u32, crc::Table<1>> = crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISCSI);

/// CRC32C of `bytes`: the CPU's instruction where there is one (with `std`), else the tables.
pub fn crc32c(bytes: &[u8]) -> u32 {
    #[cfg(feature = "std")]
    return ::crc32c::crc32c(bytes);
    #[cfg(not(feature = "std"))]
    CRC32C.checksum(bytes)
}

/// The CRC a batch should store: CRC32C of everything from `attributes` (byte 21) to the end of
/// `batch`, which must be exactly one batch. Shorter input gives the CRC of nothing.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c(batch.get(at::ATTRIBUTES..).unwrap_or_default())
}

/// Recomputes and stores the CRC of `batch`, which must be exactly one v2 batch (its
/// `batchLength` matching its size). For batches assembled or modified by the host.
pub fn seal_crc(batch: &mut [u8]) -> Result<(), BatchError> {
    check_frame(batch)?;
    let crc = compute_crc(batch).to_be_bytes();
    put(batch, at::CRC, crc)
}

/// A batch without records over the offsets of `of`, sealed: what is left of a batch whose
/// records were all removed (as Kafka's compaction leaves for producer state, and Rill's mirror
/// filters for offsets a consumer must move past). Its timestamps are `of`'s max timestamp.
pub fn empty_like(of: &BatchHeader) -> [u8; HEADER_LEN] {
    let mut bytes = [0u8; HEADER_LEN];
    let header = BatchHeader {
        batch_length: (HEADER_LEN - LOG_OVERHEAD) as i32,
        crc: 0,
        attributes: attributes(Compression::None, of.timestamp_type(), of.is_transactional(), false),
        base_timestamp: of.max_timestamp,
        records_count: 0,
        ..*of
    };
    // A header always fits its own length, and a whole header-only batch always seals.
    let sealed = header.encode(&mut bytes).is_ok() && seal_crc(&mut bytes).is_ok();
    debug_assert!(sealed, "an empty batch must seal");
    bytes
}

/// Marks `batch` (exactly one v2 batch) as stamped by the broker, as Kafka does for a topic with
/// `message.timestamp.type=LogAppendTime`: the timestamp-type bit of `attributes` is set and
/// `maxTimestamp` becomes `append_time_ms`, which consumers then read as every record's
/// timestamp; the records keep their bytes. Both fields lie inside the CRC, which is resealed.
pub fn set_log_append_time(batch: &mut [u8], append_time_ms: i64) -> Result<(), BatchError> {
    check_frame(batch)?;
    let attributes = BatchHeader::decode(batch)?.attributes | header::TIMESTAMP_TYPE_BIT;
    put(batch, at::ATTRIBUTES, attributes.to_be_bytes())?;
    put(batch, at::MAX_TIMESTAMP, append_time_ms.to_be_bytes())?;
    seal_crc(batch)
}

/// The first bytes of a batch: `baseOffset`, `batchLength` and `partitionLeaderEpoch`, which lie
/// outside the CRC and hold all a leader writes into a batch it appends.
pub const LEADER_FIELDS_LEN: usize = 16;

/// A batch's first [`LEADER_FIELDS_LEN`] bytes with `baseOffset` and `partitionLeaderEpoch` set:
/// what a host that keeps the rest of the batch where it arrived writes in front of it.
pub fn leader_fields(head: [u8; LEADER_FIELDS_LEN], base_offset: i64, epoch: i32) -> [u8; LEADER_FIELDS_LEN] {
    let mut stamped = head;
    stamped[at::BASE_OFFSET..at::BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    stamped[at::PARTITION_LEADER_EPOCH..at::PARTITION_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
    stamped
}

/// Sets `baseOffset` in place. It lies outside the CRC, so the batch stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    check_header(batch)?;
    put(batch, at::BASE_OFFSET, base_offset.to_be_bytes())
}

/// Sets `partitionLeaderEpoch` in place. It lies outside the CRC, so the batch stays valid.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    check_header(batch)?;
    put(batch, at::PARTITION_LEADER_EPOCH, epoch.to_be_bytes())
}

/// Length in bytes of the first batch in `bytes`, from its `batchLength` field: what a reader
/// must have before calling [`Batch::parse`]. Needs only the first 12 bytes; fewer give
/// `Incomplete`. The length is bounds-checked, nothing else is.
pub fn batch_len(bytes: &[u8]) -> Result<usize, BatchError> {
    let Some((_, rest)) = bytes.split_first_chunk::<{ at::BATCH_LENGTH }>() else {
        return Err(incomplete(bytes.len(), LOG_OVERHEAD));
    };
    let Some(length) = rest.first_chunk::<4>() else {
        return Err(incomplete(bytes.len(), LOG_OVERHEAD));
    };
    let length = i32::from_be_bytes(*length);
    match usize::try_from(length) {
        Ok(len) if (HEADER_LEN - LOG_OVERHEAD..=BATCH_BYTES_MAX - LOG_OVERHEAD).contains(&len) => {
            Ok(LOG_OVERHEAD + len)
        }
        _ => Err(BatchError::LengthOutOfRange { length }),
    }
}

/// A validated batch borrowing its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch<'a> {
    bytes: &'a [u8],
    header: BatchHeader,
    compression: Compression,
}

impl<'a> Batch<'a> {
    /// Validates `bytes` as exactly one batch (see the [module docs](self) for the checks).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BatchError> {
        check_frame(bytes)?;
        let header = BatchHeader::decode(bytes)?;
        let computed = compute_crc(bytes);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch { stored: header.crc, computed });
        }
        Self::parse_checked_frame(bytes, header, true)
    }

    /// The checks of [`parse`](Self::parse) but the walk over the records: the frame, the
    /// header's fields and counts, and the CRC. For batches whose records were validated before
    /// they were sealed — read back from storage, or replicated from the node that stored them —
    /// where a matching CRC proves them unchanged (as Kafka's log reads and replica fetchers
    /// trust it). Their [`records`](Self::records) still report a malformed record as an error.
    pub fn parse_sealed(bytes: &'a [u8]) -> Result<Self, BatchError> {
        check_frame(bytes)?;
        let header = BatchHeader::decode(bytes)?;
        let computed = compute_crc(bytes);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch { stored: header.crc, computed });
        }
        Self::parse_checked_frame(bytes, header, false)
    }

    /// Every check of [`parse`](Self::parse) but the CRC: for bytes whose CRC was checked
    /// already (a plugin reading what the broker stored) or is still to be computed (what a
    /// plugin returns; the broker validates and seals it).
    pub fn parse_without_crc(bytes: &'a [u8]) -> Result<Self, BatchError> {
        check_frame(bytes)?;
        let header = BatchHeader::decode(bytes)?;
        Self::parse_checked_frame(bytes, header, true)
    }

    fn parse_checked_frame(bytes: &'a [u8], header: BatchHeader, walk: bool) -> Result<Self, BatchError> {
        let compression = header.compression()?;
        record::check_counts(&header)?;
        let batch = Self { bytes, header, compression };
        if walk && compression == Compression::None {
            batch.walk_records().try_for_each(|record| record.map(drop))?;
        }
        Ok(batch)
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    pub fn base_offset(&self) -> i64 {
        self.header.base_offset
    }

    /// Offset of the last record (saturating; see [`BatchHeader::last_offset`]).
    pub fn last_offset(&self) -> i64 {
        self.header.last_offset()
    }

    /// The whole batch.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The bytes after the header: the records, possibly compressed.
    pub fn records_section(&self) -> &'a [u8] {
        self.bytes.get(HEADER_LEN..).unwrap_or_default()
    }

    /// The records; `Err(Compressed)` for a compressed batch (decompress the records section
    /// and use [`records_in`]). Validated already, so the iterator yields no errors, unless the
    /// batch came from [`parse_sealed`](Self::parse_sealed) and was sealed malformed.
    pub fn records(&self) -> Result<Records<'a>, BatchError> {
        match self.compression {
            Compression::None => Ok(self.walk_records()),
            codec => Err(BatchError::Compressed(codec)),
        }
    }

    fn walk_records(&self) -> Records<'a> {
        let h = &self.header;
        Records::new(self.records_section(), h.records_count, HEADER_LEN, Some(h.last_offset_delta))
    }
}

/// The batches of `bytes`, one after another (a produce request or a segment holds several).
pub fn batches(bytes: &[u8]) -> Batches<'_> {
    Batches { bytes, pos: 0, failed: false, walk: true }
}

/// [`batches`] checked as [`Batch::parse_sealed`] does: for batches read back from storage or
/// replicated from the node that stored them, whose records were validated before they were
/// sealed.
pub fn sealed_batches(bytes: &[u8]) -> Batches<'_> {
    Batches { bytes, pos: 0, failed: false, walk: false }
}

/// Iterator over concatenated batches; yields the first error (a trailing partial batch is
/// `Incomplete`) and then stops.
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    bytes: &'a [u8],
    /// Start of the next batch, or of the one that failed.
    pos: usize,
    failed: bool,
    /// Whether each batch's records are walked ([`Batch::parse`]) or not ([`Batch::parse_sealed`]).
    walk: bool,
}

impl Batches<'_> {
    /// Byte offset in the input of the batch the next call reads (after an error: of the batch
    /// that failed), to locate errors, whose byte offsets count from the start of their batch.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<Batch<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        if self.failed || rest.is_empty() {
            return None;
        }
        let item = batch_len(rest).and_then(|len| match rest.get(..len) {
            Some(batch) if self.walk => Batch::parse(batch),
            Some(batch) => Batch::parse_sealed(batch),
            None => Err(incomplete(rest.len(), len)),
        });
        match &item {
            Ok(batch) => self.pos += batch.as_bytes().len(),
            Err(_) => self.failed = true,
        }
        Some(item)
    }
}

fn incomplete(have: usize, need: usize) -> BatchError {
    debug_assert!(have < need);
    BatchError::Incomplete { needed: need.saturating_sub(have) }
}

/// `bytes` is exactly one batch as far as `batchLength` and `magic` tell, so the fixed header
/// fields are all present.
fn check_frame(bytes: &[u8]) -> Result<(), BatchError> {
    let len = batch_len(bytes)?;
    if bytes.len() < len {
        return Err(incomplete(bytes.len(), len));
    }
    if bytes.len() > len {
        return Err(BatchError::LengthMismatch { declared: len, actual: bytes.len() });
    }
    check_header(bytes)
}

/// `bytes` starts with a whole v2 header.
fn check_header(bytes: &[u8]) -> Result<(), BatchError> {
    if bytes.len() < HEADER_LEN {
        return Err(incomplete(bytes.len(), HEADER_LEN));
    }
    match bytes.get(at::MAGIC).map(|&byte| byte as i8) {
        Some(MAGIC) => Ok(()),
        Some(magic) => Err(BatchError::UnsupportedMagic(magic)),
        None => Err(incomplete(bytes.len(), HEADER_LEN)),
    }
}

fn put<const N: usize>(bytes: &mut [u8], at: usize, field: [u8; N]) -> Result<(), BatchError> {
    let end = at.saturating_add(N);
    match bytes.get_mut(at..end) {
        Some(slot) => {
            slot.copy_from_slice(&field);
            Ok(())
        }
        None => Err(incomplete(bytes.len(), end)),
    }
}

#[cfg(test)]
mod tests;
