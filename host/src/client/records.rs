//! Building a producer's batch and reading a Fetch response's records, with `rill-core`'s codec.

use rill_core::batch::{self, BatchParams, Compression, RecordSpec};

use super::ClientError;
use crate::compression;
use crate::limits::DECOMPRESSED_BYTES_MAX;

/// One record as `rill consume` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// One uncompressed v2 batch of `(key, value)` records stamped `timestamp`.
pub fn build_batch(records: &[(Option<Vec<u8>>, Vec<u8>)], timestamp: i64) -> Result<Vec<u8>, ClientError> {
    let specs: Vec<RecordSpec> = records
        .iter()
        .map(|(key, value)| RecordSpec { timestamp, key: key.as_deref(), value: Some(value), headers: &[] })
        .collect();
    batch::build_vec(BatchParams::default(), &specs)
        .map_err(|e| ClientError::Protocol(format!("cannot build a batch: {e}")))
}

/// The records of a Fetch response's record bytes at or after `from` (a fetch from the middle of a
/// batch returns the whole batch). A partial batch at the end (a broker cutting at its byte limit)
/// is left for the next fetch.
pub fn decode_records(bytes: &[u8], from: i64) -> Result<Vec<ConsumedRecord>, ClientError> {
    let corrupt = |e: &dyn std::fmt::Display| ClientError::Protocol(format!("corrupt record batch: {e}"));
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Ok(len) = batch::batch_len(rest) else { break };
        if len > rest.len() {
            break;
        }
        let parsed = batch::Batch::parse(&rest[..len]).map_err(|e| corrupt(&e))?;
        rest = &rest[len..];
        let header = *parsed.header();
        if header.is_control() {
            continue;
        }
        let decompressed;
        let records = match parsed.compression() {
            Compression::None => parsed.records().map_err(|e| corrupt(&e))?,
            codec => {
                decompressed = compression::decompress(codec, parsed.records_section(), DECOMPRESSED_BYTES_MAX)
                    .map_err(|e| corrupt(&e))?;
                batch::records_in(&decompressed, header.records_count)
            }
        };
        for record in records {
            let record = record.map_err(|e| corrupt(&e))?;
            let offset = record.offset(header.base_offset);
            if offset < from {
                continue;
            }
            out.push(ConsumedRecord {
                offset,
                timestamp: header.timestamp_of(&record),
                key: record.key.map(<[u8]>::to_vec),
                value: record.value.map(<[u8]>::to_vec),
                headers: record
                    .headers()
                    .map(|h| (String::from_utf8_lossy(h.key).into_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_batches_decode_from_any_offset_and_a_cut_batch_waits() {
        let records = vec![(Some(b"k".to_vec()), b"one".to_vec()), (None, b"two".to_vec()), (None, b"three".to_vec())];
        let mut bytes = build_batch(&records, 1_000).unwrap();
        batch::set_base_offset(&mut bytes, 10).unwrap();
        let all = decode_records(&bytes, 0).unwrap();
        assert_eq!(all.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![10, 11, 12]);
        assert_eq!(
            (all[0].key.as_deref(), all[0].value.as_deref(), all[0].timestamp),
            (Some(&b"k"[..]), Some(&b"one"[..]), 1_000)
        );
        assert_eq!(decode_records(&bytes, 12).unwrap().len(), 1);
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes[..bytes.len() / 2]);
        assert_eq!(decode_records(&two, 0).unwrap().len(), 3, "the cut second batch is not read");
    }
}
