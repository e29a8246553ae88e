//! The fixed 61-byte batch header (layout in the [module docs](super)) and its `attributes`.

use core::fmt;

use super::BatchError;
use crate::varint::BufferTooSmall;

/// Byte offsets of the header fields, from the start of the batch.
pub(crate) mod at {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LENGTH: usize = 8;
    pub const PARTITION_LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    /// The CRC covers everything from here to the end of the batch.
    pub const ATTRIBUTES: usize = 21;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const RECORDS_COUNT: usize = 57;
}

const COMPRESSION_MASK: i16 = 0b111;
pub(crate) const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// The codec of the records section (`attributes` bits 0–2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Kafka's codec id (0 to 4).
    pub const fn id(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// The codec with Kafka's id `id`, if there is one.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }

    /// Kafka's name for the codec (`compression.type`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where record timestamps come from (`attributes` bit 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer.
    #[default]
    CreateTime,
    /// Set by the broker on append; `maxTimestamp` holds the append time.
    LogAppendTime,
}

/// The 61-byte header of a v2 batch, decoded field by field, Kafka's names in snake case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after this field: `total_len() - 12`.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Reads the header fields from the first [`HEADER_LEN`](super::HEADER_LEN) bytes of
    /// `bytes`, checking nothing but their presence ([`Batch::parse`](super::Batch::parse)
    /// validates).
    pub fn decode(bytes: &[u8]) -> Result<Self, BatchError> {
        if let Some(needed) = super::HEADER_LEN.checked_sub(bytes.len()).filter(|&n| n > 0) {
            return Err(BatchError::Incomplete { needed });
        }
        let mut r = FieldReader { rest: bytes };
        let header = Self {
            base_offset: i64::from_be_bytes(r.take()?),
            batch_length: i32::from_be_bytes(r.take()?),
            partition_leader_epoch: i32::from_be_bytes(r.take()?),
            magic: i8::from_be_bytes(r.take()?),
            crc: u32::from_be_bytes(r.take()?),
            attributes: i16::from_be_bytes(r.take()?),
            last_offset_delta: i32::from_be_bytes(r.take()?),
            base_timestamp: i64::from_be_bytes(r.take()?),
            max_timestamp: i64::from_be_bytes(r.take()?),
            producer_id: i64::from_be_bytes(r.take()?),
            producer_epoch: i16::from_be_bytes(r.take()?),
            base_sequence: i32::from_be_bytes(r.take()?),
            records_count: i32::from_be_bytes(r.take()?),
        };
        debug_assert_eq!(bytes.len() - r.rest.len(), super::HEADER_LEN);
        Ok(header)
    }

    /// The header's 61 bytes, `crc` written as it is (see [`seal_crc`](super::seal_crc)).
    pub fn to_bytes(&self) -> [u8; super::HEADER_LEN] {
        let mut out = [0u8; super::HEADER_LEN];
        let mut w = FieldWriter { rest: &mut out };
        w.put(self.base_offset.to_be_bytes());
        w.put(self.batch_length.to_be_bytes());
        w.put(self.partition_leader_epoch.to_be_bytes());
        w.put(self.magic.to_be_bytes());
        w.put(self.crc.to_be_bytes());
        w.put(self.attributes.to_be_bytes());
        w.put(self.last_offset_delta.to_be_bytes());
        w.put(self.base_timestamp.to_be_bytes());
        w.put(self.max_timestamp.to_be_bytes());
        w.put(self.producer_id.to_be_bytes());
        w.put(self.producer_epoch.to_be_bytes());
        w.put(self.base_sequence.to_be_bytes());
        w.put(self.records_count.to_be_bytes());
        assert!(w.rest.is_empty(), "header fields must fill exactly HEADER_LEN bytes");
        out
    }

    /// Writes the header's 61 bytes at the start of `out`.
    pub fn encode(&self, out: &mut [u8]) -> Result<(), BufferTooSmall> {
        let available = out.len();
        let Some(out) = out.get_mut(..super::HEADER_LEN) else {
            return Err(BufferTooSmall { needed: super::HEADER_LEN, available });
        };
        out.copy_from_slice(&self.to_bytes());
        Ok(())
    }

    /// The codec of the records section; an unknown codec id is an error.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        let id = (self.attributes & COMPRESSION_MASK) as u8;
        Compression::from_id(id).ok_or(BatchError::UnknownCompression(id))
    }

    /// Replaces the compression bits of `attributes` (for a host assembling a compressed batch).
    pub fn set_compression(&mut self, compression: Compression) {
        self.attributes = (self.attributes & !COMPRESSION_MASK) | i16::from(compression.id());
    }

    /// The timestamp a consumer reads for `record` of this batch: the batch's `maxTimestamp`
    /// (the broker's append time) under `LogAppendTime`, else the record's own (Kafka's
    /// `DefaultRecord` rule).
    pub fn timestamp_of(&self, record: &super::Record<'_>) -> i64 {
        match self.timestamp_type() {
            TimestampType::LogAppendTime => self.max_timestamp,
            TimestampType::CreateTime => record.timestamp(self.base_timestamp),
        }
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT == 0 { TimestampType::CreateTime } else { TimestampType::LogAppendTime }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// A control batch holds transaction markers, not user records.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Set by log compaction: `base_timestamp` then holds the delete horizon.
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_BIT != 0
    }

    /// Offset of the batch's last record: `base_offset + last_offset_delta`, saturating so that
    /// a corrupt header cannot overflow.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// Bytes of the whole batch: the 12 bytes of log overhead plus `batch_length` (a negative
    /// `batch_length`, which [`Batch::parse`](super::Batch::parse) rejects, counts as 0).
    pub fn total_len(&self) -> usize {
        let length = usize::try_from(self.batch_length).unwrap_or(0);
        super::LOG_OVERHEAD.saturating_add(length)
    }
}

/// The `attributes` value for these settings (no delete horizon: only compaction sets it).
pub const fn attributes(
    compression: Compression,
    timestamp_type: TimestampType,
    is_transactional: bool,
    is_control: bool,
) -> i16 {
    let mut value = compression.id() as i16;
    if let TimestampType::LogAppendTime = timestamp_type {
        value |= TIMESTAMP_TYPE_BIT;
    }
    if is_transactional {
        value |= TRANSACTIONAL_BIT;
    }
    if is_control {
        value |= CONTROL_BIT;
    }
    value
}

/// Reads consecutive fixed-size fields without indexing (no way to panic on short input).
struct FieldReader<'a> {
    rest: &'a [u8],
}

impl FieldReader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], BatchError> {
        let Some((field, rest)) = self.rest.split_first_chunk::<N>() else {
            return Err(BatchError::Incomplete { needed: N - self.rest.len() });
        };
        self.rest = rest;
        Ok(*field)
    }
}

/// Writes consecutive fixed-size fields into a buffer sized for them.
struct FieldWriter<'a> {
    rest: &'a mut [u8],
}

impl FieldWriter<'_> {
    fn put<const N: usize>(&mut self, field: [u8; N]) {
        let rest = core::mem::take(&mut self.rest);
        let (head, rest) = rest.split_at_mut(N);
        head.copy_from_slice(&field);
        self.rest = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_bits() {
        let value = attributes(Compression::Zstd, TimestampType::LogAppendTime, true, true);
        assert_eq!(value, 0b0011_1100);
        let header = BatchHeader { attributes: value | DELETE_HORIZON_BIT, ..BatchHeader::decode(&[0; 61]).unwrap() };
        assert_eq!(header.compression(), Ok(Compression::Zstd));
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert!(header.is_transactional() && header.is_control() && header.has_delete_horizon());
        for id in 5..=7 {
            let header = BatchHeader { attributes: id, ..header };
            assert_eq!(header.compression(), Err(BatchError::UnknownCompression(id as u8)));
        }
        let mut header = header;
        header.set_compression(Compression::Lz4);
        assert_eq!(header.attributes & !COMPRESSION_MASK, value & !COMPRESSION_MASK | DELETE_HORIZON_BIT);
        assert_eq!(header.compression(), Ok(Compression::Lz4));
    }

    #[test]
    fn decode_encode_round_trip() {
        let bytes: [u8; 61] = core::array::from_fn(|i| i as u8 * 3 + 1);
        let header = BatchHeader::decode(&bytes).unwrap();
        assert_eq!(header.to_bytes(), bytes);
        assert_eq!(header.magic, 49);
        assert_eq!(header.records_count, i32::from_be_bytes([172, 175, 178, 181]));
        assert_eq!(BatchHeader::decode(&bytes[..60]), Err(BatchError::Incomplete { needed: 1 }));
        let mut out = [0u8; 60];
        assert!(header.encode(&mut out).is_err());
    }

    #[test]
    fn last_offset_and_len_saturate() {
        let header = BatchHeader {
            base_offset: i64::MAX,
            last_offset_delta: 5,
            batch_length: -1,
            ..BatchHeader::decode(&[0; 61]).unwrap()
        };
        assert_eq!(header.last_offset(), i64::MAX);
        assert_eq!(header.total_len(), 12);
    }
}
