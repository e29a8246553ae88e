//! The read path: read transactions (MVCC), so readers never block the writer nor each other.

use redb::{ReadableDatabase, ReadableTable};
use rill_core::batch;

use super::StorageError;
use super::catalog::PartitionState;
use super::layout::BATCHES;
use super::{ReadError, Shared};
use crate::limits::DECOMPRESSED_BYTES_MAX;

/// Batches read from a partition, as stored (the bytes a Kafka Fetch response carries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Whole v2 batches, concatenated; the first one contains the requested offset.
    pub records: Vec<u8>,
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

/// One group of batches (see [`super::layout`]) with its parts joined.
#[derive(Debug)]
pub(super) struct Group {
    pub base_offset: u64,
    pub bytes: Vec<u8>,
}

/// Any table handle over `batches` (a read or a write transaction's).
pub(super) trait BatchRows: ReadableTable<(u64, u64, u32), &'static [u8]> {}
impl<T: ReadableTable<(u64, u64, u32), &'static [u8]>> BatchRows for T {}

/// The groups of partition `key` from the one whose base offset is `from_base`, oldest first.
pub(super) fn groups_from<'t>(
    table: &'t impl BatchRows,
    key: u64,
    from_base: u64,
) -> Result<impl Iterator<Item = Result<Group, StorageError>> + 't, StorageError> {
    let mut rows = table.range((key, from_base, 0)..=(key, u64::MAX, u32::MAX))?.peekable();
    Ok(std::iter::from_fn(move || {
        let (row_key, value) = match rows.next()? {
            Ok(row) => row,
            Err(e) => return Some(Err(e.into())),
        };
        let (_, base_offset, part) = row_key.value();
        if part != 0 {
            return Some(Err(StorageError::corrupt(
                "group",
                format!("at offset {base_offset} it starts with part {part}"),
            )));
        }
        let mut bytes = value.value().to_vec();
        while let Some(Ok((next_key, _))) = rows.peek() {
            if next_key.value().2 == 0 {
                break;
            }
            match rows.next() {
                Some(Ok((_, value))) => bytes.extend_from_slice(value.value()),
                Some(Err(e)) => return Some(Err(e.into())),
                None => break,
            }
        }
        Some(Ok(Group { base_offset, bytes }))
    }))
}

/// The base offset of the group holding `offset`, or of the first group if none starts at or
/// below it.
pub(super) fn containing_group(table: &impl BatchRows, key: u64, offset: u64) -> Result<u64, StorageError> {
    let below = table.range((key, 0, 0)..=(key, offset, u32::MAX))?;
    for row in below.rev() {
        let (row_key, _) = row?;
        let (_, base_offset, part) = row_key.value();
        if part == 0 {
            return Ok(base_offset);
        }
    }
    Ok(0)
}

/// `batches` as a read transaction sees it.
type ReadOnlyBatches = redb::ReadOnlyTable<(u64, u64, u32), &'static [u8]>;

/// The `batches` table in a new read transaction (the table keeps the transaction alive).
fn batches_table(shared: &Shared) -> Result<ReadOnlyBatches, ReadError> {
    let storage = ReadError::Storage;
    let db = shared.database().map_err(storage)?;
    let txn = db.begin_read().map_err(|e| storage(e.into()))?;
    txn.open_table(BATCHES).map_err(|e| storage(e.into()))
}

pub(super) fn read(
    shared: &Shared,
    partition: &PartitionState,
    offset: u64,
    max_bytes: usize,
) -> Result<ReadOutcome, ReadError> {
    // Offsets first: a read transaction begun afterwards sees at least everything below them.
    let offsets = partition.offsets();
    let mut outcome = ReadOutcome {
        records: Vec::new(),
        high_watermark: offsets.high_watermark,
        log_start_offset: offsets.log_start_offset,
    };
    if offset < offsets.log_start_offset || offset > offsets.high_watermark {
        return Err(ReadError::OffsetOutOfRange {
            offset,
            log_start_offset: offsets.log_start_offset,
            next_offset: offsets.high_watermark,
        });
    }
    if offset == offsets.high_watermark || max_bytes == 0 {
        return Ok(outcome);
    }
    let storage = ReadError::Storage;
    let table = batches_table(shared)?;
    let start = containing_group(&table, partition.key, offset).map_err(storage)?;
    let corrupt = |at: u64, cause: StorageError| ReadError::Corrupt { partition_key: partition.key, offset: at, cause };
    'groups: for group in groups_from(&table, partition.key, start).map_err(storage)? {
        let group = group.map_err(storage)?;
        for parsed in batch::sealed_batches(&group.bytes) {
            // The CRC is checked again after reading: a bad disk must not reach consumers. (The
            // records were validated on append; the CRC proves them unchanged.)
            let parsed = parsed.map_err(|e| corrupt(group.base_offset, e.into()))?;
            let header = parsed.header();
            if header.base_offset as u64 >= offsets.high_watermark {
                break 'groups;
            }
            if (header.last_offset() as u64) < offset {
                continue;
            }
            let bytes = parsed.as_bytes();
            if !outcome.records.is_empty() && outcome.records.len() + bytes.len() > max_bytes {
                break 'groups;
            }
            outcome.records.extend_from_slice(bytes);
        }
    }
    Ok(outcome)
}

/// Kafka's ListOffsets by time: the first offset at or above the log start whose record timestamp
/// is at least `timestamp_ms`, with that timestamp; `None` when no record has one. Batches whose
/// `maxTimestamp` is below the target are skipped by their header; only candidates are
/// decompressed. There is no time index yet, so this scans the partition from its log start.
pub(super) fn offset_for_timestamp(
    shared: &Shared,
    partition: &PartitionState,
    timestamp_ms: i64,
) -> Result<Option<(u64, i64)>, ReadError> {
    let offsets = partition.offsets();
    let storage = ReadError::Storage;
    let table = batches_table(shared)?;
    let start = containing_group(&table, partition.key, offsets.log_start_offset).map_err(storage)?;
    let corrupt = |at: u64, cause: StorageError| ReadError::Corrupt { partition_key: partition.key, offset: at, cause };
    for group in groups_from(&table, partition.key, start).map_err(storage)? {
        let group = group.map_err(storage)?;
        for parsed in batch::batches(&group.bytes) {
            let parsed = parsed.map_err(|e| corrupt(group.base_offset, e.into()))?;
            let header = *parsed.header();
            if header.base_offset as u64 >= offsets.high_watermark {
                return Ok(None);
            }
            if header.max_timestamp < timestamp_ms || (header.last_offset() as u64) < offsets.log_start_offset {
                continue;
            }
            let found = first_record_at_or_after(&parsed, offsets.log_start_offset, timestamp_ms)
                .map_err(|cause| corrupt(header.base_offset as u64, cause))?;
            if found.is_some() {
                return Ok(found);
            }
        }
    }
    Ok(None)
}

/// Within one batch: the first record at or above `log_start` with a timestamp at least
/// `timestamp_ms`. Under LogAppendTime every record carries the batch's `maxTimestamp`.
fn first_record_at_or_after(
    parsed: &batch::Batch<'_>,
    log_start: u64,
    timestamp_ms: i64,
) -> Result<Option<(u64, i64)>, StorageError> {
    let header = parsed.header();
    if header.timestamp_type() == batch::TimestampType::LogAppendTime {
        let first = (header.base_offset as u64).max(log_start);
        return Ok(Some((first, header.max_timestamp)));
    }
    let codec = header.compression()?;
    let decompressed;
    let records = if codec == batch::Compression::None {
        parsed.records()?
    } else {
        decompressed = crate::compression::decompress(codec, parsed.records_section(), DECOMPRESSED_BYTES_MAX)?;
        batch::records_in(&decompressed, header.records_count)
    };
    for record in records {
        let record = record?;
        let offset = record.offset(header.base_offset) as u64;
        let timestamp = record.timestamp(header.base_timestamp);
        if offset >= log_start && timestamp >= timestamp_ms {
            return Ok(Some((offset, timestamp)));
        }
    }
    Ok(None)
}
