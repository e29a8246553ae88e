//! Checks a producer's batches before they reach the writer: run on the caller's task so that CRC
//! and decompression work spreads over connections instead of queueing in the single writer.

use bytes::{Bytes, BytesMut};
use rill_core::batch::{self, BatchError, BatchHeader, Compression};

use super::AppendError;
use super::topic::{MessageTimestampType, TopicConfig};
use crate::compression::{self, DecompressError};
use crate::limits::DECOMPRESSED_BYTES_MAX;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidBatch {
    #[error("no record batch in the request")]
    Empty,
    #[error("record batch {index}: {error}")]
    Codec { index: usize, error: BatchError },
    #[error("record batch {index}: {error}")]
    Decompress { index: usize, error: DecompressError },
    #[error("record batch {index}: control batches are written by the broker, not producers")]
    ControlBatch { index: usize },
    #[error("record batch {index}: transactional batches are not supported yet")]
    Transactional { index: usize },
    #[error("record batch {index}: producer id {producer_id} without a sequence number")]
    NoSequence { index: usize, producer_id: i64 },
}

/// A producer's batches after [`validate_append`]: the bytes as they arrived (sharing the
/// request frame's buffer, not a copy of it) and each batch's header, decoded once here, so the
/// writer reads none of them again.
#[derive(Debug, Clone)]
pub struct Checked {
    pub bytes: Bytes,
    /// One per batch, in order; each batch is `header.total_len()` bytes.
    pub headers: Vec<BatchHeader>,
}

#[cfg(test)]
impl Checked {
    /// Headers decoded, nothing checked: for tests that hand the writer batches directly.
    pub fn headers_only(bytes: Vec<u8>) -> Self {
        let bytes = Bytes::from(bytes);
        let headers = batch::batches(&bytes).map(|parsed| *parsed.expect("a test batch").header()).collect();
        Checked { bytes, headers }
    }
}

/// Validates every batch in `bytes` for `topic`: framing, CRC, records (decompressed where
/// compressed), size, and record timestamps against the topic's bounds at `now_ms`. On a
/// `LogAppendTime` topic the batches are then stamped with `now_ms` (Kafka's append time), which
/// is returned; stamping rewrites CRC-covered fields, so those topics' batches are copied first.
pub fn validate_append(bytes: Bytes, topic: &TopicConfig, now_ms: i64) -> Result<(Checked, Option<i64>), AppendError> {
    let headers = check_batches(&bytes, topic, now_ms)?;
    if topic.timestamp_type != MessageTimestampType::LogAppendTime {
        return Ok((Checked { bytes, headers }, None));
    }
    let mut stamped = BytesMut::from(&bytes[..]);
    let mut at = 0;
    for header in &headers {
        let one = stamped.get_mut(at..at + header.total_len()).ok_or(InvalidBatch::Empty)?;
        batch::set_log_append_time(one, now_ms).map_err(|error| InvalidBatch::Codec { index: 0, error })?;
        at += header.total_len();
    }
    let bytes = stamped.freeze();
    let headers = batch::batches(&bytes)
        .map(|parsed| parsed.map(|parsed| *parsed.header()))
        .collect::<Result<_, _>>()
        .map_err(|error| InvalidBatch::Codec { index: 0, error })?;
    Ok((Checked { bytes, headers }, Some(now_ms)))
}

/// Kafka's `RecordBatch.NO_TIMESTAMP`.
const NO_TIMESTAMP: i64 = -1;

fn check_batches(bytes: &[u8], topic: &TopicConfig, now_ms: i64) -> Result<Vec<BatchHeader>, AppendError> {
    if bytes.is_empty() {
        return Err(InvalidBatch::Empty.into());
    }
    let mut headers = Vec::new();
    for (index, parsed) in batch::batches(bytes).enumerate() {
        let parsed = parsed.map_err(|error| InvalidBatch::Codec { index, error })?;
        let header = parsed.header();
        let size = parsed.as_bytes().len();
        if size > topic.max_message_bytes as usize {
            return Err(AppendError::MessageTooLarge { size, max: topic.max_message_bytes });
        }
        if header.is_control() {
            return Err(InvalidBatch::ControlBatch { index }.into());
        }
        if header.is_transactional() {
            return Err(InvalidBatch::Transactional { index }.into());
        }
        if header.producer_id >= 0 && header.base_sequence < 0 {
            return Err(InvalidBatch::NoSequence { index, producer_id: header.producer_id }.into());
        }
        let codec = header.compression().map_err(|error| InvalidBatch::Codec { index, error })?;
        let decompressed = if codec == Compression::None {
            None
        } else {
            let records = compression::decompress(codec, parsed.records_section(), DECOMPRESSED_BYTES_MAX)
                .map_err(|error| InvalidBatch::Decompress { index, error })?;
            // Counts and offset deltas (within lastOffsetDelta), as for an uncompressed batch: a
            // record claiming an offset past its batch would collide with the next batch's.
            batch::validate_decompressed(header, &records)
                .map_err(|error: BatchError| InvalidBatch::Codec { index, error })?;
            Some(records)
        };
        if topic.bounds_timestamps() {
            let records = match &decompressed {
                Some(section) => batch::records_in(section, header.records_count),
                None => parsed.records().map_err(|error| InvalidBatch::Codec { index, error })?,
            };
            for record in records {
                let timestamp =
                    record.map_err(|error| InvalidBatch::Codec { index, error })?.timestamp(header.base_timestamp);
                // -1 is "no timestamp", which Kafka does not bound either.
                if timestamp != NO_TIMESTAMP {
                    topic
                        .check_timestamp(timestamp, now_ms)
                        .map_err(|error| AppendError::InvalidTimestamp { index, error })?;
                }
            }
        }
        headers.push(*header);
    }
    Ok(headers)
}
