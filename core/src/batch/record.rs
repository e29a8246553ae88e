//! Records inside an uncompressed (or decompressed) records section: a validating iterator that
//! borrows the bytes and never allocates. Layout in the [module docs](super).

use super::{BatchError, BatchHeader, RecordError, RecordField};
use crate::varint::{decode_varint, decode_varlong};

/// One record, borrowing the batch's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Unused by Kafka so far; kept as read.
    pub attributes: i8,
    /// Milliseconds after the batch's `baseTimestamp`.
    pub timestamp_delta: i64,
    /// Offset after the batch's `baseOffset`.
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The validated headers, still encoded.
    headers: &'a [u8],
    headers_count: u32,
}

impl<'a> Record<'a> {
    /// The record's headers, in order. Validated when the record was read, so infallible.
    pub fn headers(&self) -> Headers<'a> {
        Headers { rest: self.headers, remaining: self.headers_count }
    }

    pub fn headers_count(&self) -> u32 {
        self.headers_count
    }

    /// The record's offset in a batch starting at `base_offset` (saturating: never overflows).
    pub fn offset(&self, base_offset: i64) -> i64 {
        base_offset.saturating_add(i64::from(self.offset_delta))
    }

    /// The record's timestamp in a batch with `base_timestamp` (saturating: never overflows).
    pub fn timestamp(&self, base_timestamp: i64) -> i64 {
        base_timestamp.saturating_add(self.timestamp_delta)
    }
}

/// One record header. Kafka reads the key as UTF-8 but never checks it, so neither do we.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// Iterator over a record's headers.
#[derive(Clone, Debug)]
pub struct Headers<'a> {
    rest: &'a [u8],
    remaining: u32,
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let mut cursor = Cursor::new(self.rest, 0, self.rest.len());
        match cursor.header() {
            Ok(header) => {
                self.rest = self.rest.get(cursor.pos..).unwrap_or_default();
                self.remaining -= 1;
                Some(header)
            }
            Err(_) => {
                // Unreachable: the record was validated when it was read.
                debug_assert!(false, "headers of a validated record failed to decode");
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.remaining as usize;
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for Headers<'_> {}

/// Iterator over the records of a records section, validating each record as it goes.
///
/// Yields `recordsCount` records, then an error if bytes remain. After the first error it yields
/// nothing more.
#[derive(Clone, Debug)]
pub struct Records<'a> {
    section: &'a [u8],
    pos: usize,
    /// Added to byte offsets in errors: the section's position in the batch, or 0.
    base: usize,
    records_count: i32,
    index: u32,
    last_offset_delta: Option<i32>,
    previous_offset_delta: Option<i32>,
    done: bool,
}

impl<'a> Records<'a> {
    /// `last_offset_delta`: the bound offset deltas must respect, when the header is known.
    pub(crate) fn new(section: &'a [u8], records_count: i32, base: usize, last_offset_delta: Option<i32>) -> Self {
        Self {
            section,
            pos: 0,
            base,
            records_count,
            index: 0,
            last_offset_delta,
            previous_offset_delta: None,
            done: false,
        }
    }

    fn step(&mut self) -> Option<Result<Record<'a>, BatchError>> {
        let Ok(count) = u32::try_from(self.records_count) else {
            return Some(Err(BatchError::InvalidRecordsCount(self.records_count)));
        };
        let rest = self.section.get(self.pos..).unwrap_or_default();
        let at = self.base.saturating_add(self.pos);
        if self.index == count {
            return match rest.len() {
                0 => None,
                count => Some(Err(BatchError::TrailingBytes { at, count })),
            };
        }
        if rest.is_empty() {
            return Some(Err(BatchError::RecordCountMismatch { header: self.records_count, found: self.index }));
        }
        let rule = OffsetRule { previous: self.previous_offset_delta, last: self.last_offset_delta };
        match parse_record(self.section, self.pos, rule) {
            Ok((record, end)) => {
                debug_assert!(end > self.pos, "a record takes at least one byte");
                self.pos = end;
                self.index += 1;
                self.previous_offset_delta = Some(record.offset_delta);
                Some(Ok(record))
            }
            Err((at, error)) => {
                Some(Err(BatchError::Record { index: self.index, at: self.base.saturating_add(at), error }))
            }
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

/// The records of a records section holding `records_count` records, e.g. a decompressed one.
/// Byte offsets in errors count from the start of `section`.
pub fn records_in(section: &[u8], records_count: i32) -> Records<'_> {
    Records::new(section, records_count, 0, None)
}

/// Checks that `section` holds exactly `records_count` well-formed records with increasing
/// offset deltas, and nothing else.
pub fn validate_records(section: &[u8], records_count: i32) -> Result<(), BatchError> {
    records_in(section, records_count).try_for_each(|record| record.map(drop))
}

/// [`validate_records`] for the decompressed records section of the batch with `header`: also
/// checks the header's counts and that no offset delta exceeds `lastOffsetDelta`.
pub fn validate_decompressed(header: &BatchHeader, section: &[u8]) -> Result<(), BatchError> {
    check_counts(header)?;
    Records::new(section, header.records_count, 0, Some(header.last_offset_delta))
        .try_for_each(|record| record.map(drop))
}

/// Kafka's rules for the counts in the header. After compaction `lastOffsetDelta` may exceed
/// `recordsCount - 1` (removed records keep their offsets), but never fall below it, and a
/// batch spans at least one offset even when compaction removed all its records.
pub(crate) fn check_counts(header: &BatchHeader) -> Result<(), BatchError> {
    let count = header.records_count;
    if count < 0 {
        return Err(BatchError::InvalidRecordsCount(count));
    }
    if header.last_offset_delta < 0 || header.last_offset_delta < count - 1 {
        return Err(BatchError::InvalidLastOffsetDelta {
            last_offset_delta: header.last_offset_delta,
            records_count: count,
        });
    }
    Ok(())
}

/// A byte offset in the records section with what went wrong there.
type Located = (usize, RecordError);

/// Offset deltas increase from record to record and stay within `lastOffsetDelta`.
#[derive(Clone, Copy)]
struct OffsetRule {
    previous: Option<i32>,
    last: Option<i32>,
}

impl OffsetRule {
    fn check(self, found: i32) -> Result<(), RecordError> {
        let lowest = self.previous.map_or(0, |previous| i64::from(previous) + 1);
        if i64::from(found) < lowest {
            return Err(RecordError::OffsetDeltaNotIncreasing { previous: self.previous, found });
        }
        match self.last {
            Some(last) if found > last => {
                Err(RecordError::OffsetDeltaBeyondLast { offset_delta: found, last_offset_delta: last })
            }
            _ => Ok(()),
        }
    }
}

/// Reads the record starting at `start`; returns it and the offset just past it.
fn parse_record(section: &[u8], start: usize, rule: OffsetRule) -> Result<(Record<'_>, usize), Located> {
    let mut c = Cursor::new(section, start, section.len());
    let length = c.length(RecordField::Length)?;
    let body_start = c.pos;
    let available = c.rest().len();
    if length > available {
        let error = RecordError::OutOfBounds { field: RecordField::Length, needed: length, available };
        return Err((start, error));
    }
    // From here on the cursor cannot read past this record's body.
    c.end = body_start + length;
    let attributes = c.take(1, RecordField::Attributes)?;
    let attributes = attributes.first().map_or(0, |&byte| byte as i8);
    let timestamp_delta = c.varlong(RecordField::TimestampDelta)?;
    let offset_delta_at = c.pos;
    let offset_delta = c.varint(RecordField::OffsetDelta)?;
    rule.check(offset_delta).map_err(|e| (offset_delta_at, e))?;
    let key = c.nullable(RecordField::KeyLength, RecordField::Key)?;
    let value = c.nullable(RecordField::ValueLength, RecordField::Value)?;
    let headers_count = c.length(RecordField::HeadersCount)?;
    let headers_start = c.pos;
    // Each header takes at least 2 bytes, so a huge count fails fast on a short body.
    for _ in 0..headers_count {
        c.header()?;
    }
    let headers = section.get(headers_start..c.pos).unwrap_or_default();
    if c.pos != c.end {
        let used = c.pos - body_start;
        let error = RecordError::UnusedBytes { declared: length, used };
        return Err((c.pos, error));
    }
    let record = Record {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
        // `length` returned a usize from a non-negative i32, which fits a u32.
        headers_count: headers_count as u32,
    };
    Ok((record, c.end))
}

/// Reads fields from `bytes[pos..end]`, reporting errors at offsets within `bytes`.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], pos: usize, end: usize) -> Self {
        debug_assert!(pos <= end && end <= bytes.len());
        Self { bytes, pos, end }
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..self.end).unwrap_or_default()
    }

    fn varint(&mut self, field: RecordField) -> Result<i32, Located> {
        let (value, len) =
            decode_varint(self.rest()).map_err(|error| (self.pos, RecordError::Varint { field, error }))?;
        self.pos += len;
        Ok(value)
    }

    fn varlong(&mut self, field: RecordField) -> Result<i64, Located> {
        let (value, len) =
            decode_varlong(self.rest()).map_err(|error| (self.pos, RecordError::Varint { field, error }))?;
        self.pos += len;
        Ok(value)
    }

    /// A varint that must not be negative.
    fn length(&mut self, field: RecordField) -> Result<usize, Located> {
        let at = self.pos;
        let length = self.varint(field)?;
        usize::try_from(length).map_err(|_| (at, RecordError::NegativeLength { field, length }))
    }

    fn take(&mut self, len: usize, field: RecordField) -> Result<&'a [u8], Located> {
        let rest = self.rest();
        let Some(taken) = rest.get(..len) else {
            let error = RecordError::OutOfBounds { field, needed: len, available: rest.len() };
            return Err((self.pos, error));
        };
        self.pos += len;
        Ok(taken)
    }

    /// A length-prefixed byte string where length -1 means null. Kafka reads any negative
    /// length as null; only -1 is ever written, so anything else is reported as corruption.
    fn nullable(&mut self, length_field: RecordField, field: RecordField) -> Result<Option<&'a [u8]>, Located> {
        let at = self.pos;
        match self.varint(length_field)? {
            -1 => Ok(None),
            length => match usize::try_from(length) {
                Ok(len) => self.take(len, field).map(Some),
                Err(_) => Err((at, RecordError::NegativeLength { field: length_field, length })),
            },
        }
    }

    fn header(&mut self) -> Result<Header<'a>, Located> {
        let key_len = self.length(RecordField::HeaderKeyLength)?;
        let key = self.take(key_len, RecordField::HeaderKey)?;
        let value = self.nullable(RecordField::HeaderValueLength, RecordField::HeaderValue)?;
        Ok(Header { key, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::varint::VarintError;

    /// length 7: attributes 0, timestampDelta 0, offsetDelta 0, key null, value "v", no headers.
    const ONE: [u8; 8] = [0x0e, 0x00, 0x00, 0x00, 0x01, 0x02, b'v', 0x00];

    #[test]
    fn one_record() {
        let mut records = records_in(&ONE, 1);
        let record = records.next().unwrap().unwrap();
        assert_eq!(record.key, None);
        assert_eq!(record.value, Some(&b"v"[..]));
        assert_eq!(record.headers().count(), 0);
        assert_eq!(records.next(), None);
        assert_eq!(validate_records(&ONE, 1), Ok(()));
    }

    #[test]
    fn count_mismatches() {
        assert_eq!(validate_records(&ONE, 2), Err(BatchError::RecordCountMismatch { header: 2, found: 1 }));
        assert_eq!(validate_records(&ONE, 0), Err(BatchError::TrailingBytes { at: 0, count: 8 }));
        assert_eq!(validate_records(&ONE, -1), Err(BatchError::InvalidRecordsCount(-1)));
        let mut records = records_in(&ONE, 2);
        assert!(records.next().unwrap().is_ok());
        assert!(records.next().unwrap().is_err());
        assert_eq!(records.next(), None, "stops after the first error");
    }

    #[test]
    fn record_errors_are_located() {
        let record = |index, at, error| Err(BatchError::Record { index, at, error });
        // Length says 9 but only 7 bytes follow.
        let mut bytes = ONE;
        bytes[0] = 0x12;
        let error = RecordError::OutOfBounds { field: RecordField::Length, needed: 9, available: 7 };
        assert_eq!(validate_records(&bytes, 1), record(0, 0, error));
        // Value length 3 runs past the record body.
        let mut bytes = ONE;
        bytes[5] = 0x06;
        let error = RecordError::OutOfBounds { field: RecordField::Value, needed: 3, available: 2 };
        assert_eq!(validate_records(&bytes, 1), record(0, 6, error));
        // Key length -2.
        let mut bytes = ONE;
        bytes[4] = 0x03;
        let error = RecordError::NegativeLength { field: RecordField::KeyLength, length: -2 };
        assert_eq!(validate_records(&bytes, 1), record(0, 4, error));
        // Offset delta -1 on the first record.
        let mut bytes = ONE;
        bytes[3] = 0x01;
        let error = RecordError::OffsetDeltaNotIncreasing { previous: None, found: -1 };
        assert_eq!(validate_records(&bytes, 1), record(0, 3, error));
        // Headers count runs off the end as an unterminated varint.
        let mut bytes = ONE;
        bytes[7] = 0x80;
        let error = RecordError::Varint { field: RecordField::HeadersCount, error: VarintError::Truncated };
        assert_eq!(validate_records(&bytes, 1), record(0, 7, error));
    }

    #[test]
    fn offset_deltas_must_increase() {
        let mut two = [0u8; 16];
        two[..8].copy_from_slice(&ONE);
        two[8..].copy_from_slice(&ONE);
        let error = RecordError::OffsetDeltaNotIncreasing { previous: Some(0), found: 0 };
        assert_eq!(validate_records(&two, 2), Err(BatchError::Record { index: 1, at: 11, error }));
        two[11] = 0x04; // offsetDelta 2: gaps are allowed (compaction)
        assert_eq!(validate_records(&two, 2), Ok(()));
    }
}
