//! Errors of the batch codec: one enum for reading ([`BatchError`], with [`RecordError`] for the
//! inside of one record) and one for building ([`BuildError`]). Every message names the field,
//! the byte offset and what was expected, so a corrupt batch can be diagnosed from a log line.

use core::fmt;

use super::{Compression, HEADER_LEN, LOG_OVERHEAD};
use crate::limits::BATCH_BYTES_MAX;
use crate::varint::VarintError;

/// Why bytes are not a valid batch (or records section).
///
/// Byte offsets (`at`) count from the start of the batch for [`Batch`](super::Batch) and
/// [`batches`](super::batches), and from the start of the records section for
/// [`records_in`](super::records_in) and [`validate_records`](super::validate_records).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// The bytes end before the batch does: at least `needed` more bytes are required.
    Incomplete { needed: usize },
    /// `batchLength` is below the header's size or above [`BATCH_BYTES_MAX`].
    LengthOutOfRange { length: i32 },
    /// [`Batch::parse`](super::Batch::parse) got more bytes than `batchLength` declares.
    LengthMismatch { declared: usize, actual: usize },
    /// `magic` is not 2: only the v2 format (Kafka 0.11+) is supported.
    UnsupportedMagic(i8),
    /// The stored `crc` does not match the CRC32C of the bytes from `attributes` on.
    CrcMismatch { stored: u32, computed: u32 },
    /// The compression bits of `attributes` name no known codec.
    UnknownCompression(u8),
    /// The records are compressed: the host must decompress the records section first.
    Compressed(Compression),
    /// `recordsCount` is negative.
    InvalidRecordsCount(i32),
    /// `lastOffsetDelta` is below `max(recordsCount - 1, 0)`.
    InvalidLastOffsetDelta { last_offset_delta: i32, records_count: i32 },
    /// The records section ended after `found` records; `recordsCount` says `header`.
    RecordCountMismatch { header: i32, found: u32 },
    /// `count` bytes remain at `at` after the last of the `recordsCount` records.
    TrailingBytes { at: usize, count: usize },
    /// Record number `index` (from 0) is malformed at byte `at`.
    Record { index: u32, at: usize, error: RecordError },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Incomplete { needed } => {
                write!(f, "incomplete batch: at least {needed} more bytes needed")
            }
            Self::LengthOutOfRange { length } => write!(
                f,
                "batchLength (bytes 8..12) is {length}, expected {}..={}",
                HEADER_LEN - LOG_OVERHEAD,
                BATCH_BYTES_MAX - LOG_OVERHEAD
            ),
            Self::LengthMismatch { declared, actual } => {
                write!(f, "batchLength (bytes 8..12) makes the batch {declared} bytes, but {actual} were given")
            }
            Self::UnsupportedMagic(magic) => {
                write!(f, "magic (byte 16) is {magic}, expected 2")
            }
            Self::CrcMismatch { stored, computed } => {
                write!(f, "crc (bytes 17..21) is {stored:#010x}, but the CRC32C of bytes 21.. is {computed:#010x}")
            }
            Self::UnknownCompression(codec) => write!(
                f,
                "attributes (bytes 21..23) name compression codec {codec}, expected 0..=4 \
                 (none, gzip, snappy, lz4, zstd)"
            ),
            Self::Compressed(codec) => {
                write!(f, "records are {codec}-compressed: decompress the records section first")
            }
            Self::InvalidRecordsCount(count) => {
                write!(f, "recordsCount (bytes 57..61) is {count}, expected >= 0")
            }
            Self::InvalidLastOffsetDelta { last_offset_delta, records_count } => write!(
                f,
                "lastOffsetDelta (bytes 23..27) is {last_offset_delta}, expected >= \
                 max(recordsCount - 1, 0) with recordsCount {records_count}"
            ),
            Self::RecordCountMismatch { header, found } => write!(
                f,
                "recordsCount (bytes 57..61) is {header}, but the records section ends after \
                 {found} records"
            ),
            Self::TrailingBytes { at, count } => {
                write!(f, "{count} bytes at byte {at} follow the last of the recordsCount records")
            }
            Self::Record { index, at, error } => write!(f, "record {index}, byte {at}: {error}"),
        }
    }
}

impl core::error::Error for BatchError {}

/// A field of a record, named as in Kafka's protocol documentation.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordField {
    Length,
    Attributes,
    TimestampDelta,
    OffsetDelta,
    KeyLength,
    Key,
    ValueLength,
    Value,
    HeadersCount,
    HeaderKeyLength,
    HeaderKey,
    HeaderValueLength,
    HeaderValue,
}

impl RecordField {
    /// The field's name in Kafka's protocol documentation.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Length => "length",
            Self::Attributes => "attributes",
            Self::TimestampDelta => "timestampDelta",
            Self::OffsetDelta => "offsetDelta",
            Self::KeyLength => "keyLength",
            Self::Key => "key",
            Self::ValueLength => "valueLen",
            Self::Value => "value",
            Self::HeadersCount => "headersCount",
            Self::HeaderKeyLength => "headerKeyLength",
            Self::HeaderKey => "headerKey",
            Self::HeaderValueLength => "headerValueLength",
            Self::HeaderValue => "headerValue",
        }
    }
}

impl fmt::Display for RecordField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong inside one record; [`BatchError::Record`] says which record and where.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A varint field could not be decoded.
    Varint { field: RecordField, error: VarintError },
    /// A length or count is negative (only -1, meaning null, is allowed where Kafka allows null).
    NegativeLength { field: RecordField, length: i32 },
    /// A field needs `needed` bytes but only `available` remain in the record (or, for
    /// [`RecordField::Length`], in the records section).
    OutOfBounds { field: RecordField, needed: usize, available: usize },
    /// The record's fields end after `used` bytes of the `declared` body length.
    UnusedBytes { declared: usize, used: usize },
    /// `offsetDelta` is not above the previous record's (or negative for the first record).
    OffsetDeltaNotIncreasing { previous: Option<i32>, found: i32 },
    /// `offsetDelta` is above the batch's `lastOffsetDelta`.
    OffsetDeltaBeyondLast { offset_delta: i32, last_offset_delta: i32 },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Varint { field, error } => write!(f, "{field}: {error}"),
            Self::NegativeLength { field, length } => {
                let expected = match field {
                    RecordField::KeyLength | RecordField::ValueLength | RecordField::HeaderValueLength => ">= -1",
                    _ => ">= 0",
                };
                write!(f, "{field} is {length}, expected {expected}")
            }
            Self::OutOfBounds { field, needed, available } => {
                write!(f, "{field} needs {needed} bytes, {available} remain")
            }
            Self::UnusedBytes { declared, used } => {
                write!(f, "length says {declared} bytes, but the record's fields end after {used}")
            }
            Self::OffsetDeltaNotIncreasing { previous: Some(previous), found } => {
                write!(f, "offsetDelta is {found}, expected above the previous record's {previous}")
            }
            Self::OffsetDeltaNotIncreasing { previous: None, found } => {
                write!(f, "offsetDelta is {found}, expected >= 0")
            }
            Self::OffsetDeltaBeyondLast { offset_delta, last_offset_delta } => {
                write!(f, "offsetDelta is {offset_delta}, above the batch's lastOffsetDelta {last_offset_delta}")
            }
        }
    }
}

impl core::error::Error for RecordError {}

/// Why a [`BatchBuilder`](super::BatchBuilder) could not build or add to a batch.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The buffer cannot even hold the batch header.
    BufferTooSmall { needed: usize, available: usize },
    /// The record does not fit in what remains of the buffer (capped at [`BATCH_BYTES_MAX`]).
    /// The builder still holds every record pushed before: finish it and start another.
    BufferFull { needed: usize, available: usize },
    /// The record would not fit even in an empty batch of this buffer: it can never be sent.
    RecordTooLarge { needed: usize, capacity: usize },
    /// `build_vec` (with `alloc`): the records make a batch above [`BATCH_BYTES_MAX`].
    BatchTooLarge { needed: usize, max: usize },
    /// The batch already holds `i32::MAX` records, the most `lastOffsetDelta` can count.
    TooManyRecords,
    /// A key, value, header or the whole record is longer than an `i32` length can say.
    FieldTooLong { field: RecordField, length: usize },
    /// The record's timestamp minus the batch's base timestamp overflows an `i64`.
    TimestampOutOfRange { timestamp: i64, base_timestamp: i64 },
    /// [`finish`](super::BatchBuilder::finish) on a builder without records: Kafka never sends
    /// empty batches, and one would have no offsets.
    Empty,
    /// [`push_at`](super::BatchBuilder::push_at) with an offset delta that is negative or not
    /// above the previous record's: deltas must increase within a batch.
    OffsetDeltaOutOfOrder { offset_delta: i32, previous: Option<i32> },
    /// A different number of offset deltas than records.
    OffsetDeltaCount { records: usize, deltas: usize },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferTooSmall { needed, available } => {
                write!(f, "buffer of {available} bytes cannot hold a batch header of {needed}")
            }
            Self::BufferFull { needed, available } => write!(
                f,
                "record needs {needed} bytes, {available} remain in the batch: finish it and \
                 start another"
            ),
            Self::RecordTooLarge { needed, capacity } => {
                write!(f, "record needs {needed} bytes, more than an empty batch of {capacity} bytes holds")
            }
            Self::BatchTooLarge { needed, max } => {
                write!(f, "records make a batch of {needed} bytes, above the maximum of {max}")
            }
            Self::TooManyRecords => write!(f, "batch already holds {} records", i32::MAX),
            Self::FieldTooLong { field, length } => {
                write!(f, "{field} is {length} bytes, more than an i32 length can say")
            }
            Self::TimestampOutOfRange { timestamp, base_timestamp } => {
                write!(f, "timestamp {timestamp} minus base timestamp {base_timestamp} overflows an i64")
            }
            Self::Empty => f.write_str("batch has no records"),
            Self::OffsetDeltaOutOfOrder { offset_delta, previous: Some(previous) } => {
                write!(f, "offsetDelta {offset_delta} does not follow the previous record's {previous}")
            }
            Self::OffsetDeltaOutOfOrder { offset_delta, previous: None } => {
                write!(f, "offsetDelta {offset_delta} is negative")
            }
            Self::OffsetDeltaCount { records, deltas } => {
                write!(f, "{deltas} offset deltas for {records} records")
            }
        }
    }
}

impl core::error::Error for BuildError {}
