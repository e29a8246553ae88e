//! Checks a producer's batches before they reach the writer: run on the caller's task so that CRC
//! and decompression work spreads over connections instead of queueing in the single writer.

use rill_core::batch::{self, BatchError, Compression};

use super::AppendError;
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

/// Validates every batch in `bytes`: framing, CRC, records (decompressed where compressed), size.
pub fn validate_append(bytes: &[u8], max_message_bytes: u32) -> Result<(), AppendError> {
    if bytes.is_empty() {
        return Err(InvalidBatch::Empty.into());
    }
    for (index, parsed) in batch::batches(bytes).enumerate() {
        let parsed = parsed.map_err(|error| InvalidBatch::Codec { index, error })?;
        let header = parsed.header();
        let size = parsed.as_bytes().len();
        if size > max_message_bytes as usize {
            return Err(AppendError::MessageTooLarge { size, max: max_message_bytes });
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
        if codec != Compression::None {
            let records = compression::decompress(codec, parsed.records_section(), DECOMPRESSED_BYTES_MAX)
                .map_err(|error| InvalidBatch::Decompress { index, error })?;
            // Counts and offset deltas (within lastOffsetDelta), as for an uncompressed batch: a
            // record claiming an offset past its batch would collide with the next batch's.
            batch::validate_decompressed(header, &records)
                .map_err(|error: BatchError| InvalidBatch::Codec { index, error })?;
        }
    }
    Ok(())
}
