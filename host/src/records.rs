//! Records and batches as the broker's own producers handle them (pipelines, MQTT bridges,
//! devices): records decoded with their bytes owned, rebuilt into sealed v2 batches, and split by
//! partition.

use std::collections::BTreeMap;

use rill_core::batch::{self, BatchError, BatchHeader, BatchParams, BuildError, Compression, Record, RecordSpec};

use crate::compression::{self, DecompressError, RebuildError};
use crate::limits::{DECOMPRESSED_BYTES_MAX, PIPELINE_OUTPUT_BATCH_BYTES};

/// Why records could not be read from batches, or built into them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("{partitions} partitions for {records} records")]
    PartitionCount { partitions: usize, records: usize },
    #[error("offset {offset} is too far from {base} for one batch")]
    OffsetTooFar { offset: u64, base: u64 },
}

/// A record with its bytes owned, for rebuilding batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl OwnedRecord {
    fn of(record: &Record<'_>, header: &BatchHeader) -> Self {
        Self {
            offset: record.offset(header.base_offset) as u64,
            timestamp: header.timestamp_of(record),
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.map(<[u8]>::to_vec),
            headers: record.headers().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect(),
        }
    }
}

/// Calls `each` with every record of `bytes` (whole batches, compressed or not) and its batch's
/// header.
pub fn for_each_record(bytes: &[u8], mut each: impl FnMut(&BatchHeader, &Record<'_>)) -> Result<(), RecordsError> {
    for parsed in batch::batches(bytes) {
        let parsed = parsed?;
        let header = *parsed.header();
        let decompressed;
        let records = match parsed.compression() {
            Compression::None => parsed.records()?,
            codec => {
                decompressed = compression::decompress(codec, parsed.records_section(), DECOMPRESSED_BYTES_MAX)?;
                batch::records_in(&decompressed, header.records_count)
            }
        };
        for record in records {
            each(&header, &record?);
        }
    }
    Ok(())
}

/// Every record of `bytes`, owned.
pub fn owned_records(bytes: &[u8]) -> Result<Vec<OwnedRecord>, RecordsError> {
    let mut out = Vec::new();
    for_each_record(bytes, |header, record| out.push(OwnedRecord::of(record, header)))?;
    Ok(out)
}

/// Records in uncompressed batches of at most [`PIPELINE_OUTPUT_BATCH_BYTES`] (one record may
/// make a batch larger on its own), CRCs computed.
pub fn build_batches(records: &[OwnedRecord]) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, record) in records.iter().enumerate() {
        let size = record.key.as_ref().map_or(0, Vec::len)
            + record.value.as_ref().map_or(0, Vec::len)
            + record.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum::<usize>()
            + 32;
        if i > start && bytes + size > PIPELINE_OUTPUT_BATCH_BYTES {
            out.extend(build_one(&records[start..i])?);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < records.len() {
        out.extend(build_one(&records[start..])?);
    }
    Ok(out)
}

/// A record header as the batch builder takes it.
pub type HeaderRef<'a> = (&'a [u8], Option<&'a [u8]>);

pub fn record_specs<'a>(records: &'a [OwnedRecord], headers: &'a [Vec<HeaderRef<'a>>]) -> Vec<RecordSpec<'a>> {
    records
        .iter()
        .zip(headers)
        .map(|(r, headers)| RecordSpec {
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers,
        })
        .collect()
}

pub fn build_one(records: &[OwnedRecord]) -> Result<Vec<u8>, RecordsError> {
    let headers: Vec<Vec<HeaderRef<'_>>> =
        records.iter().map(|r| r.headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect()).collect();
    Ok(batch::build_vec(BatchParams::default(), &record_specs(records, &headers))?)
}

/// Records in `bytes` (whole batches, as plugins return them).
pub fn records_count(bytes: &[u8]) -> usize {
    batch::batches(bytes).filter_map(Result::ok).map(|b| b.header().records_count.max(0) as usize).sum()
}

/// Splits `bytes` by record into one set of batches per partition, as `partitions` (one per
/// record, in order) says.
pub fn split_by_partition(bytes: &[u8], partitions: &[u32]) -> Result<BTreeMap<u32, Vec<u8>>, RecordsError> {
    build_by_partition(owned_records(bytes)?, partitions)
}

/// `records` built into one set of batches per partition, as `partitions` (one per record, in
/// order) says: each batch built once.
pub fn build_by_partition(
    records: Vec<OwnedRecord>,
    partitions: &[u32],
) -> Result<BTreeMap<u32, Vec<u8>>, RecordsError> {
    if records.len() != partitions.len() {
        return Err(RecordsError::PartitionCount { partitions: partitions.len(), records: records.len() });
    }
    let mut by_partition: BTreeMap<u32, Vec<OwnedRecord>> = BTreeMap::new();
    for (record, partition) in records.into_iter().zip(partitions) {
        by_partition.entry(*partition).or_default().push(record);
    }
    by_partition.into_iter().map(|(partition, records)| Ok((partition, build_batches(&records)?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: u64) -> OwnedRecord {
        OwnedRecord {
            offset,
            timestamp: 1_000 + offset as i64,
            key: Some(format!("k{offset}").into_bytes()),
            value: Some(b"v".to_vec()),
            headers: vec![(b"h".to_vec(), None)],
        }
    }

    #[test]
    fn output_splits_by_partition_in_record_order() {
        let output = build_batches(&(0..4).map(record).collect::<Vec<_>>()).unwrap();
        let split = split_by_partition(&output, &[1, 0, 1, 1]).unwrap();
        let values = |p: u32| -> Vec<Vec<u8>> {
            owned_records(&split[&p]).unwrap().into_iter().map(|r| r.key.unwrap()).collect()
        };
        assert_eq!(values(0), [b"k1".to_vec()]);
        assert_eq!(values(1), [b"k0".to_vec(), b"k2".to_vec(), b"k3".to_vec()]);
        assert!(split_by_partition(&output, &[0]).is_err(), "one partition per record");
        assert_eq!(records_count(&output), 4);
    }
}
