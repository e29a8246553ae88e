//! Building an uncompressed batch into a caller's buffer: a device fills a fixed buffer record
//! by record until one does not fit, then sends the batch. [`build_vec`] sizes a `Vec` for the
//! host and tests.

use super::{
    BatchHeader, BuildError, Compression, HEADER_LEN, LOG_OVERHEAD, MAGIC, RecordField, TimestampType, attributes,
    seal_crc,
};
use crate::limits::BATCH_BYTES_MAX;
use crate::varint::{BufferTooSmall, encode_varint, encode_varlong, varint_len, varlong_len};

/// The header fields a producer chooses. `Default` gives Kafka's values for a producer that is
/// neither idempotent nor transactional.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchParams {
    /// Usually 0: the broker assigns offsets on append.
    pub base_offset: i64,
    /// -1 from producers: the broker sets it on append.
    pub partition_leader_epoch: i32,
    /// `None`: the first record's timestamp, as Kafka producers do, which keeps deltas small.
    pub base_timestamp: Option<i64>,
    pub timestamp_type: TimestampType,
    /// -1: no idempotent producer.
    pub producer_id: i64,
    /// -1: no idempotent producer.
    pub producer_epoch: i16,
    /// -1: no idempotent producer.
    pub base_sequence: i32,
    pub is_transactional: bool,
}

impl Default for BatchParams {
    fn default() -> Self {
        Self {
            base_offset: 0,
            partition_leader_epoch: -1,
            base_timestamp: None,
            timestamp_type: TimestampType::CreateTime,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            is_transactional: false,
        }
    }
}

/// A record to add to a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordSpec<'a> {
    /// Absolute, in ms since the Unix epoch.
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// (key, value) pairs, in order.
    pub headers: &'a [(&'a [u8], Option<&'a [u8]>)],
}

/// Builds one uncompressed batch into a caller-supplied buffer, without allocating.
///
/// Records get offset deltas 0, 1, 2… unless placed with [`push_at`](Self::push_at).
/// [`finish`](Self::finish) writes the header and CRC.
#[derive(Debug)]
pub struct BatchBuilder<'buf> {
    buf: &'buf mut [u8],
    /// `buf.len()` capped at [`BATCH_BYTES_MAX`].
    capacity: usize,
    params: BatchParams,
    /// Known once the first record is in (or from the params).
    base_timestamp: Option<i64>,
    /// Bytes used, header space included.
    len: usize,
    records_count: i32,
    /// The offset delta of the last record pushed.
    last_delta: Option<i32>,
    /// The least `lastOffsetDelta` the batch gets (see [`cover_through`](Self::cover_through)).
    covers: i32,
    max_timestamp: i64,
}

impl<'buf> BatchBuilder<'buf> {
    /// A builder writing into `buf`, which must at least hold the header.
    pub fn new(buf: &'buf mut [u8], params: BatchParams) -> Result<Self, BuildError> {
        if buf.len() < HEADER_LEN {
            return Err(BuildError::BufferTooSmall { needed: HEADER_LEN, available: buf.len() });
        }
        Ok(Self {
            capacity: buf.len().min(BATCH_BYTES_MAX),
            buf,
            params,
            base_timestamp: params.base_timestamp,
            len: HEADER_LEN,
            records_count: 0,
            last_delta: None,
            covers: 0,
            max_timestamp: i64::MIN,
        })
    }

    /// Bytes the batch takes so far, header included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.records_count == 0
    }

    pub fn records_count(&self) -> i32 {
        self.records_count
    }

    /// Bytes the batch may take in all.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes `record` would take if pushed next.
    pub fn encoded_len_of(&self, record: &RecordSpec<'_>) -> Result<usize, BuildError> {
        let (_, timestamp_delta, offset_delta) = self.next_deltas(record)?;
        encoded_record_len(record, timestamp_delta, offset_delta)
    }

    /// Appends `record`. On any error, including [`BuildError::BufferFull`], the builder is
    /// unchanged and still holds every record pushed before.
    pub fn push(&mut self, record: &RecordSpec<'_>) -> Result<(), BuildError> {
        let (base_timestamp, timestamp_delta, offset_delta) = self.next_deltas(record)?;
        self.push_with(record, base_timestamp, timestamp_delta, offset_delta)
    }

    /// Appends `record` at `offset_delta`, above every delta pushed before: a batch that keeps
    /// some records of another at their offsets, with gaps between them (as Kafka's compaction
    /// and Rill's mirror filters leave). Unchanged on error, as [`push`](Self::push).
    pub fn push_at(&mut self, record: &RecordSpec<'_>, offset_delta: i32) -> Result<(), BuildError> {
        let previous = self.last_delta;
        if offset_delta < 0 || previous.is_some_and(|previous| offset_delta <= previous) {
            return Err(BuildError::OffsetDeltaOutOfOrder { offset_delta, previous });
        }
        let (base_timestamp, timestamp_delta, _) = self.next_deltas(record)?;
        self.push_with(record, base_timestamp, timestamp_delta, offset_delta)
    }

    /// The batch spans at least the offsets up to `last_offset_delta`, though its last records
    /// may be gone (a filtered batch keeps the range of the one it came from).
    pub fn cover_through(&mut self, last_offset_delta: i32) {
        self.covers = self.covers.max(last_offset_delta);
    }

    fn push_with(
        &mut self,
        record: &RecordSpec<'_>,
        base_timestamp: i64,
        timestamp_delta: i64,
        offset_delta: i32,
    ) -> Result<(), BuildError> {
        let layout = Layout::of(record, timestamp_delta, offset_delta)?;
        let available = self.capacity - self.len;
        if layout.total > available {
            return Err(if self.is_empty() {
                BuildError::RecordTooLarge { needed: layout.total, capacity: self.capacity - HEADER_LEN }
            } else {
                BuildError::BufferFull { needed: layout.total, available }
            });
        }
        let end = self.len + layout.total;
        let out = self.buf.get_mut(self.len..end).unwrap_or_default();
        let mut w = Writer { out, pos: 0 };
        write_record(&mut w, record, &layout, timestamp_delta, offset_delta)
            .map_err(|_| BuildError::BufferFull { needed: layout.total, available })?;
        // Layout::of and write_record must agree, or lengths in the batch would lie.
        debug_assert_eq!(w.pos, layout.total);
        // Commit only now that the record is fully written.
        self.len = end;
        self.records_count += 1;
        self.last_delta = Some(offset_delta);
        self.base_timestamp = Some(base_timestamp);
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        Ok(())
    }

    /// Writes the header (with `lastOffsetDelta`, `maxTimestamp`, `recordsCount`) and the CRC;
    /// returns the batch, ready to send or append.
    pub fn finish(self) -> Result<&'buf [u8], BuildError> {
        self.finish_with(true)
    }

    /// Like [`finish`](Self::finish) but leaves the CRC at zero, for a receiver that computes
    /// it itself: a WebAssembly plugin has no CRC-32C instruction, and the broker seals what a
    /// plugin returns after validating it.
    pub fn finish_without_crc(self) -> Result<&'buf [u8], BuildError> {
        self.finish_with(false)
    }

    fn finish_with(self, crc: bool) -> Result<&'buf [u8], BuildError> {
        if self.is_empty() {
            return Err(BuildError::Empty);
        }
        let p = self.params;
        let header = BatchHeader {
            base_offset: p.base_offset,
            // `len` ≤ BATCH_BYTES_MAX, whose i32 fit is asserted in mod.rs.
            batch_length: (self.len - LOG_OVERHEAD) as i32,
            partition_leader_epoch: p.partition_leader_epoch,
            magic: MAGIC,
            crc: 0,
            attributes: attributes(Compression::None, p.timestamp_type, p.is_transactional, false),
            last_offset_delta: self.last_delta.unwrap_or(0).max(self.covers),
            base_timestamp: self.base_timestamp.unwrap_or(self.max_timestamp),
            max_timestamp: self.max_timestamp,
            producer_id: p.producer_id,
            producer_epoch: p.producer_epoch,
            base_sequence: p.base_sequence,
            records_count: self.records_count,
        };
        let batch = self.buf.get_mut(..self.len).unwrap_or_default();
        // Cannot fail: the builder sized and framed the batch itself. Were it to, the batch
        // would fail its CRC check at the receiver, a safe way to fail.
        let sealed = header.encode(batch).is_ok() && (!crc || seal_crc(batch).is_ok());
        debug_assert!(sealed, "a built batch must seal");
        let batch: &'buf [u8] = batch;
        // The paired check: what we wrote must read back.
        debug_assert_eq!(super::Batch::parse_without_crc(batch).map(|_| ()), Ok(()));
        debug_assert!(!crc || super::Batch::parse(batch).is_ok());
        Ok(batch)
    }

    /// The base timestamp and the deltas `record` gets if pushed next.
    fn next_deltas(&self, record: &RecordSpec<'_>) -> Result<(i64, i64, i32), BuildError> {
        let offset_delta = match self.last_delta {
            None => 0,
            Some(last) => last.checked_add(1).ok_or(BuildError::TooManyRecords)?,
        };
        let base_timestamp = self.base_timestamp.unwrap_or(record.timestamp);
        let timestamp_delta = record
            .timestamp
            .checked_sub(base_timestamp)
            .ok_or(BuildError::TimestampOutOfRange { timestamp: record.timestamp, base_timestamp })?;
        Ok((base_timestamp, timestamp_delta, offset_delta))
    }
}

/// Bytes a record takes in a batch, `length` field included, given its deltas.
pub fn encoded_record_len(
    record: &RecordSpec<'_>,
    timestamp_delta: i64,
    offset_delta: i32,
) -> Result<usize, BuildError> {
    Layout::of(record, timestamp_delta, offset_delta).map(|layout| layout.total)
}

/// Sizes of an encoded record.
struct Layout {
    /// The `length` field's value.
    body_len: i32,
    /// Bytes in all, `length` field included.
    total: usize,
}

impl Layout {
    fn of(record: &RecordSpec<'_>, timestamp_delta: i64, offset_delta: i32) -> Result<Self, BuildError> {
        let headers_count = length_of(RecordField::HeadersCount, record.headers.len())?;
        // attributes (1 byte) + the three fixed varints.
        let mut body = 1 + varlong_len(timestamp_delta) + varint_len(offset_delta) + varint_len(headers_count);
        body = body.saturating_add(nullable_len(RecordField::Key, record.key)?);
        body = body.saturating_add(nullable_len(RecordField::Value, record.value)?);
        for &(key, value) in record.headers {
            let key_len = length_of(RecordField::HeaderKey, key.len())?;
            body = body.saturating_add(varint_len(key_len) + key.len());
            body = body.saturating_add(nullable_len(RecordField::HeaderValue, value)?);
        }
        // Saturation above turns into this error rather than a wrong length.
        let body_len = length_of(RecordField::Length, body)?;
        Ok(Self { body_len, total: varint_len(body_len) + body })
    }
}

fn length_of(field: RecordField, length: usize) -> Result<i32, BuildError> {
    i32::try_from(length).map_err(|_| BuildError::FieldTooLong { field, length })
}

/// Bytes of a nullable byte string with its length prefix (-1, one byte, for null).
fn nullable_len(field: RecordField, bytes: Option<&[u8]>) -> Result<usize, BuildError> {
    match bytes {
        None => Ok(varint_len(-1)),
        Some(bytes) => Ok(varint_len(length_of(field, bytes.len())?) + bytes.len()),
    }
}

fn write_record(
    w: &mut Writer<'_>,
    record: &RecordSpec<'_>,
    layout: &Layout,
    timestamp_delta: i64,
    offset_delta: i32,
) -> Result<(), BufferTooSmall> {
    w.varint(layout.body_len)?;
    w.bytes(&[0])?; // attributes: unused
    w.varlong(timestamp_delta)?;
    w.varint(offset_delta)?;
    w.nullable(record.key)?;
    w.nullable(record.value)?;
    // Counts and lengths were checked to fit an i32 by Layout::of.
    w.varint(record.headers.len() as i32)?;
    for &(key, value) in record.headers {
        w.varint(key.len() as i32)?;
        w.bytes(key)?;
        w.nullable(value)?;
    }
    Ok(())
}

/// Writes consecutive fields into `out`.
struct Writer<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn rest(&mut self) -> &mut [u8] {
        self.out.get_mut(self.pos..).unwrap_or_default()
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        let rest = self.rest();
        let available = rest.len();
        let slot = rest.get_mut(..bytes.len()).ok_or(BufferTooSmall { needed: bytes.len(), available })?;
        slot.copy_from_slice(bytes);
        self.pos += bytes.len();
        Ok(())
    }

    fn varint(&mut self, value: i32) -> Result<(), BufferTooSmall> {
        self.pos += encode_varint(value, self.rest())?;
        Ok(())
    }

    fn varlong(&mut self, value: i64) -> Result<(), BufferTooSmall> {
        self.pos += encode_varlong(value, self.rest())?;
        Ok(())
    }

    fn nullable(&mut self, bytes: Option<&[u8]>) -> Result<(), BufferTooSmall> {
        match bytes {
            None => self.varint(-1),
            Some(bytes) => {
                self.varint(bytes.len() as i32)?;
                self.bytes(bytes)
            }
        }
    }
}

/// Builds one uncompressed batch holding `records` into a `Vec` of exactly its size.
#[cfg(feature = "alloc")]
pub fn build_vec(params: BatchParams, records: &[RecordSpec<'_>]) -> Result<alloc::vec::Vec<u8>, BuildError> {
    build_vec_with(params, records, None, true)
}

/// [`build_vec`] with the CRC left at zero (see [`BatchBuilder::finish_without_crc`]).
#[cfg(feature = "alloc")]
pub fn build_vec_without_crc(
    params: BatchParams,
    records: &[RecordSpec<'_>],
) -> Result<alloc::vec::Vec<u8>, BuildError> {
    build_vec_with(params, records, None, false)
}

/// Where the records of a batch built by [`build_vec_at_without_crc`] sit: each record's offset
/// delta (strictly increasing), and the batch's `lastOffsetDelta` (at least the last record's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetLayout<'a> {
    pub offset_deltas: &'a [i32],
    pub last_offset_delta: i32,
}

/// [`build_vec_without_crc`] with the records at the given offset deltas, gaps between them: a
/// batch keeping some records of another at their offsets.
#[cfg(feature = "alloc")]
pub fn build_vec_at_without_crc(
    params: BatchParams,
    records: &[RecordSpec<'_>],
    layout: OffsetLayout<'_>,
) -> Result<alloc::vec::Vec<u8>, BuildError> {
    if layout.offset_deltas.len() != records.len() {
        return Err(BuildError::OffsetDeltaCount { records: records.len(), deltas: layout.offset_deltas.len() });
    }
    build_vec_with(params, records, Some(layout), false)
}

#[cfg(feature = "alloc")]
fn build_vec_with(
    params: BatchParams,
    records: &[RecordSpec<'_>],
    layout: Option<OffsetLayout<'_>>,
    crc: bool,
) -> Result<alloc::vec::Vec<u8>, BuildError> {
    let base_timestamp = params.base_timestamp.or(records.first().map(|record| record.timestamp));
    let delta_of = |index: usize| match layout {
        Some(layout) => layout.offset_deltas.get(index).copied().ok_or(BuildError::TooManyRecords),
        None => i32::try_from(index).map_err(|_| BuildError::TooManyRecords),
    };
    let mut total = HEADER_LEN;
    for (index, record) in records.iter().enumerate() {
        let offset_delta = delta_of(index)?;
        let base_timestamp = base_timestamp.unwrap_or(record.timestamp);
        let timestamp_delta = record
            .timestamp
            .checked_sub(base_timestamp)
            .ok_or(BuildError::TimestampOutOfRange { timestamp: record.timestamp, base_timestamp })?;
        total = total.saturating_add(encoded_record_len(record, timestamp_delta, offset_delta)?);
    }
    if total > BATCH_BYTES_MAX {
        return Err(BuildError::BatchTooLarge { needed: total, max: BATCH_BYTES_MAX });
    }
    let mut buf = alloc::vec![0u8; total];
    let mut builder = BatchBuilder::new(&mut buf, params)?;
    for (index, record) in records.iter().enumerate() {
        builder.push_at(record, delta_of(index)?)?;
    }
    if let Some(layout) = layout {
        builder.cover_through(layout.last_offset_delta);
    }
    let len = if crc { builder.finish()?.len() } else { builder.finish_without_crc()?.len() };
    debug_assert_eq!(len, total, "build_vec sized the batch exactly");
    buf.truncate(len);
    Ok(buf)
}
