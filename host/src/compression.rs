//! Decompression of a record batch's records section, bounded so that a small hostile batch cannot
//! make the broker allocate gigabytes (a "decompression bomb").
//!
//! Kafka's codecs: gzip (RFC 1952), snappy in the xerial framing that the Java client writes (a
//! 16-byte magic header, then blocks of `u32` big-endian length + raw snappy) or raw snappy, LZ4
//! frame format, and zstd frames.

use std::io::Read;

use rill_core::batch::{self, Batch, BatchError, BatchHeader, BufferTooSmall, Compression};

/// xerial snappy-java's stream header: `\x82SNAPPY\0`, version 1, compatible version 1.
const XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecompressError {
    #[error("decompressed records exceed {limit} bytes")]
    TooLarge { limit: usize },
    #[error("corrupt {codec:?} data: {reason}")]
    Corrupt { codec: Compression, reason: String },
}

/// Decompresses `input` (a batch's records section), failing once the output would pass `limit`.
pub fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |reason: String| DecompressError::Corrupt { codec, reason };
    match codec {
        Compression::None => bounded_copy(input, limit),
        Compression::Gzip => {
            read_bounded(flate2::read::GzDecoder::new(input), limit).map_err(|e| e.or_corrupt(corrupt))
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt(e.to_string()))?;
            read_bounded(decoder, limit).map_err(|e| e.or_corrupt(corrupt))
        }
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(input).map_err(|e| corrupt(e.to_string()))?;
            read_bounded(decoder, limit).map_err(|e| e.or_corrupt(corrupt))
        }
        Compression::Snappy => snappy(input, limit),
    }
}

/// Compresses a records section with `codec` as Kafka's clients do (the snappy in xerial
/// framing, which Java consumers require): for batches the broker itself rewrites, such as a
/// mirror filter's output of compressed input, which then crosses the link compressed as stored.
pub fn compress(codec: Compression, records: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    match codec {
        Compression::None => Ok(records.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(records)?;
            encoder.finish()
        }
        Compression::Zstd => zstd::encode_all(records, zstd::DEFAULT_COMPRESSION_LEVEL),
        Compression::Lz4 => {
            // As Kafka's own LZ4 output: independent blocks and no content checksum (Java
            // consumers refuse linked blocks).
            let mut encoder = lz4::EncoderBuilder::new()
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())?;
            encoder.write_all(records)?;
            let (out, finished) = encoder.finish();
            finished.map(|()| out)
        }
        Compression::Snappy => {
            let mut out = XERIAL_MAGIC.to_vec();
            let mut encoder = snap::raw::Encoder::new();
            // snappy-java's default block size.
            for block in records.chunks(32 * 1024) {
                let compressed = encoder.compress_vec(block).map_err(std::io::Error::other)?;
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
    }
}

/// Why a batch could not be rebuilt with other records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RebuildError {
    #[error("batch at offset {base_offset}: {error}")]
    Decompress { base_offset: i64, error: DecompressError },
    #[error("batch at offset {base_offset} is too large")]
    TooLarge { base_offset: i64 },
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Header(#[from] BufferTooSmall),
}

/// `parsed` with its records uncompressed, sealed, at the same offsets (a batch with gaps keeps
/// them); the stored bytes when it is not compressed.
pub fn plain_batch(parsed: &Batch<'_>, limit: usize) -> Result<Vec<u8>, RebuildError> {
    if parsed.compression() == Compression::None {
        return Ok(parsed.as_bytes().to_vec());
    }
    let records = decompress(parsed.compression(), parsed.records_section(), limit)
        .map_err(|error| RebuildError::Decompress { base_offset: parsed.base_offset(), error })?;
    with_records(parsed.header(), &records, Compression::None)
}

/// A batch with `header`'s fields but `records` (a records section encoded by `codec`): its
/// length, attributes and CRC made to fit.
pub fn with_records(header: &BatchHeader, records: &[u8], codec: Compression) -> Result<Vec<u8>, RebuildError> {
    let mut bytes = vec![0u8; batch::HEADER_LEN];
    bytes.extend_from_slice(records);
    let length = i32::try_from(bytes.len() - batch::LOG_OVERHEAD)
        .map_err(|_| RebuildError::TooLarge { base_offset: header.base_offset })?;
    let header = BatchHeader {
        batch_length: length,
        attributes: batch::attributes(codec, header.timestamp_type(), header.is_transactional(), header.is_control()),
        ..*header
    };
    header.encode(&mut bytes)?;
    batch::seal_crc(&mut bytes)?;
    Ok(bytes)
}

fn bounded_copy(input: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    if input.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(input.to_vec())
}

enum ReadFailure {
    TooLarge(usize),
    Io(std::io::Error),
}

impl ReadFailure {
    fn or_corrupt(self, corrupt: impl FnOnce(String) -> DecompressError) -> DecompressError {
        match self {
            ReadFailure::TooLarge(limit) => DecompressError::TooLarge { limit },
            ReadFailure::Io(e) => corrupt(e.to_string()),
        }
    }
}

fn read_bounded(reader: impl Read, limit: usize) -> Result<Vec<u8>, ReadFailure> {
    let mut out = Vec::new();
    // One byte more than the limit tells "exactly at the limit" from "over it".
    reader.take(limit as u64 + 1).read_to_end(&mut out).map_err(ReadFailure::Io)?;
    if out.len() > limit {
        return Err(ReadFailure::TooLarge(limit));
    }
    Ok(out)
}

fn snappy(input: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let Some(mut blocks) = input.strip_prefix(XERIAL_MAGIC.as_slice()) else {
        return snappy_raw(input, limit, Vec::new());
    };
    let mut out = Vec::new();
    while !blocks.is_empty() {
        let corrupt = |reason: &str| DecompressError::Corrupt { codec: Compression::Snappy, reason: reason.to_owned() };
        let (len, rest) = blocks.split_first_chunk::<4>().ok_or_else(|| corrupt("truncated block length"))?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = rest.get(..len).ok_or_else(|| corrupt("block longer than the data"))?;
        out = snappy_raw(block, limit, out)?;
        blocks = &rest[len..];
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its declared length before allocating.
fn snappy_raw(block: &[u8], limit: usize, mut out: Vec<u8>) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |e: snap::Error| DecompressError::Corrupt { codec: Compression::Snappy, reason: e.to_string() };
    let len = snap::raw::decompress_len(block).map_err(corrupt)?;
    let start = out.len();
    if start.saturating_add(len) > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    out.resize(start + len, 0);
    let written = snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(corrupt)?;
    out.truncate(start + written);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_codec_compresses_what_it_decompresses() {
        let records: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let compressed = compress(codec, &records).unwrap();
            assert!(codec == Compression::None || compressed.len() < records.len() / 2, "{codec:?}");
            assert_eq!(decompress(codec, &compressed, records.len()).unwrap(), records, "{codec:?}");
        }
        assert!(compress(Compression::Snappy, &[]).unwrap().starts_with(XERIAL_MAGIC));
        // LZ4 frame FLG byte (after the 4-byte magic): version 01, block independence (0x20) set,
        // no content checksum (0x04) — what Kafka's Java consumers accept.
        let flg = compress(Compression::Lz4, &records).unwrap()[4];
        assert_eq!(flg & 0xC0, 0x40);
        assert_eq!(flg & 0x20, 0x20, "independent blocks");
        assert_eq!(flg & 0x04, 0, "no content checksum");
    }

    #[test]
    fn gzip_round_trip_and_bomb() {
        let data = vec![7u8; 100_000];
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&data).unwrap();
        let compressed = encoder.finish().unwrap();
        assert_eq!(decompress(Compression::Gzip, &compressed, 100_000).unwrap(), data);
        assert_eq!(
            decompress(Compression::Gzip, &compressed, 99_999),
            Err(DecompressError::TooLarge { limit: 99_999 })
        );
    }

    #[test]
    fn snappy_xerial_and_raw() {
        let data = b"sensor reading sensor reading sensor reading".repeat(50);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(Compression::Snappy, &raw, 1 << 20).unwrap(), data);
        let mut framed = XERIAL_MAGIC.to_vec();
        for chunk in data.chunks(700) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
            framed.extend_from_slice(&block);
        }
        assert_eq!(decompress(Compression::Snappy, &framed, 1 << 20).unwrap(), data);
        assert!(matches!(decompress(Compression::Snappy, &framed, 1000), Err(DecompressError::TooLarge { .. })));
        assert!(matches!(
            decompress(Compression::Snappy, &framed[..framed.len() - 3], 1 << 20),
            Err(DecompressError::Corrupt { .. })
        ));
    }

    #[test]
    fn zstd_and_lz4_round_trip() {
        let data = b"0123456789".repeat(1000);
        let zstd = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(decompress(Compression::Zstd, &zstd, 10_000).unwrap(), data);
        assert!(matches!(decompress(Compression::Zstd, &zstd, 9_999), Err(DecompressError::TooLarge { .. })));
        let mut encoder = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        encoder.write_all(&data).unwrap();
        let (lz4, result) = encoder.finish();
        result.unwrap();
        assert_eq!(decompress(Compression::Lz4, &lz4, 10_000).unwrap(), data);
        assert!(matches!(decompress(Compression::Lz4, b"garbage", 10_000), Err(DecompressError::Corrupt { .. })));
    }
}
