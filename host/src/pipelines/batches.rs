//! The batch work around a pipeline's plugins: stored batches made into plugin input
//! (uncompressed, from a given offset), output split by partition, and failed batches made into
//! dead letters carrying why.

use std::ops::Range;

use rill_core::batch::{self, BatchParams};

use crate::compression;
use crate::limits::{DECOMPRESSED_BYTES_MAX, PIPELINE_INPUT_BYTES_MAX};
use crate::plugins::SourceMessage;
use crate::records::{HeaderRef, OwnedRecord, RecordsError, build_batches, build_one, owned_records, record_specs};

/// Batches read from a source partition, ready for the plugins: uncompressed, none starting
/// before the offset the pipeline is at, control batches left out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Input {
    pub bytes: Vec<u8>,
    /// Each batch's bytes in `bytes`, with its first and last offset.
    pub batches: Vec<Span>,
    /// Where the pipeline reads next once this input is done.
    pub next_offset: u64,
    pub records: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub range: Range<usize>,
    pub first_offset: u64,
    pub last_offset: u64,
    pub records: u64,
}

impl Input {
    /// The first offset this input holds a record of, or where it ends.
    pub fn first_offset(&self) -> u64 {
        self.batches.first().map_or(self.next_offset, |span| span.first_offset)
    }

    /// Each batch on its own (to find which one a plugin fails on).
    pub fn split(&self) -> Vec<Input> {
        self.batches
            .iter()
            .map(|span| Input {
                bytes: self.bytes[span.range.clone()].to_vec(),
                batches: vec![Span { range: 0..span.range.len(), ..span.clone() }],
                next_offset: span.last_offset + 1,
                records: span.records,
            })
            .collect()
    }
}

/// `records` (offsets from `base` up to `last`, gaps allowed) as one sealed batch at their
/// offsets, spanning `base..=last`.
fn build_at(records: &[OwnedRecord], base: u64, last: u64) -> Result<Vec<u8>, RecordsError> {
    let delta = |offset: u64| i32::try_from(offset - base).map_err(|_| RecordsError::OffsetTooFar { offset, base });
    let deltas = records.iter().map(|record| delta(record.offset)).collect::<Result<Vec<_>, _>>()?;
    let headers: Vec<Vec<HeaderRef<'_>>> =
        records.iter().map(|r| r.headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect()).collect();
    let specs = record_specs(records, &headers);
    let layout = batch::OffsetLayout { offset_deltas: &deltas, last_offset_delta: delta(last)? };
    let params = BatchParams { base_offset: base as i64, ..BatchParams::default() };
    let mut bytes = batch::build_vec_at_without_crc(params, &specs, layout)?;
    batch::seal_crc(&mut bytes)?;
    Ok(bytes)
}

/// Makes stored batches (as [`crate::storage::Store::read`] returns them, the first one
/// possibly starting before `from`) into plugin input, up to [`PIPELINE_INPUT_BYTES_MAX`]
/// decompressed (the rest is left for the next read).
pub fn plain_input(stored: &[u8], from: u64) -> Result<Input, RecordsError> {
    let mut input = Input { next_offset: from, ..Input::default() };
    for parsed in batch::batches(stored) {
        if input.bytes.len() >= PIPELINE_INPUT_BYTES_MAX {
            break;
        }
        let parsed = parsed?;
        let header = *parsed.header();
        let last_offset = header.last_offset() as u64;
        if last_offset < from {
            continue;
        }
        input.next_offset = last_offset + 1;
        if header.is_control() {
            continue;
        }
        let start = input.bytes.len();
        if header.base_offset as u64 >= from {
            // Uncompressed at the same offsets (a batch with gaps, such as a filtered mirror's
            // copy, keeps them).
            input.bytes.extend(compression::plain_batch(&parsed, DECOMPRESSED_BYTES_MAX)?);
        } else {
            // Starting before `from` (after DeleteRecords): rebuilt from `from`, records at
            // their offsets.
            let mut kept = owned_records(parsed.as_bytes())?;
            kept.retain(|record| record.offset >= from);
            let Some(first) = kept.first().map(|record| record.offset) else { continue };
            input.bytes.extend(build_at(&kept, first, last_offset)?);
        }
        let first_offset = (header.base_offset as u64).max(from);
        let records = last_offset - first_offset + 1;
        input.records += records;
        input.batches.push(Span { range: start..input.bytes.len(), first_offset, last_offset, records });
    }
    Ok(input)
}

/// Plugin output made fit to append as new records: a transform keeps its input's offsets
/// (gaps where it dropped records, for mirror filters), but an appended batch takes as many
/// offsets as its `lastOffsetDelta` says. Batches with gaps are rebuilt with offsets 0, 1, 2…;
/// batches without records are left out.
pub fn without_gaps(bytes: Vec<u8>) -> Result<Vec<u8>, RecordsError> {
    let dense = |parsed: &batch::Batch<'_>| parsed.header().last_offset_delta == parsed.header().records_count - 1;
    if batch::batches(&bytes).all(|parsed| parsed.is_ok_and(|parsed| dense(&parsed))) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    for parsed in batch::batches(&bytes) {
        let parsed = parsed?;
        if parsed.header().records_count == 0 {
            continue;
        }
        if dense(&parsed) {
            out.extend_from_slice(parsed.as_bytes());
        } else {
            out.extend(build_one(&owned_records(parsed.as_bytes())?)?);
        }
    }
    Ok(out)
}

/// Records as ingest messages: the value is the payload, the key (or else the source topic) the
/// topic, headers the properties, the timestamp the receive time.
pub fn source_messages(bytes: &[u8], source_topic: &str) -> Result<Vec<SourceMessage>, RecordsError> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    Ok(owned_records(bytes)?
        .into_iter()
        .map(|record| SourceMessage {
            payload: record.value.unwrap_or_default().into(),
            topic: record.key.as_deref().map_or_else(|| source_topic.to_owned(), text),
            qos: 0,
            retained: false,
            properties: record
                .headers
                .iter()
                .map(|(k, v)| (text(k), v.as_deref().map(text).unwrap_or_default()))
                .collect(),
            received_ms: record.timestamp,
        })
        .collect())
}

/// Why a batch went to the dead-letter topic: stamped on each of its records as headers.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// `name@version` of the plugin that failed (or `storage` when the output was refused).
    pub plugin: &'a str,
    pub error: &'a str,
    pub source_topic: &'a str,
    pub source_partition: u32,
}

/// The header names on dead letters.
pub mod headers {
    pub const PLUGIN: &str = "rill.dlq.plugin";
    pub const ERROR: &str = "rill.dlq.error";
    pub const SOURCE_TOPIC: &str = "rill.dlq.source.topic";
    pub const SOURCE_PARTITION: &str = "rill.dlq.source.partition";
    pub const SOURCE_OFFSET: &str = "rill.dlq.source.offset";
}

/// The input's records with the dead letter's headers added (after their own), in batches.
pub fn dead_letters(input: &Input, why: &DeadLetter<'_>) -> Result<Vec<u8>, RecordsError> {
    let mut records = owned_records(&input.bytes)?;
    for record in &mut records {
        let stamp = [
            (headers::PLUGIN, why.plugin.to_owned()),
            (headers::ERROR, why.error.to_owned()),
            (headers::SOURCE_TOPIC, why.source_topic.to_owned()),
            (headers::SOURCE_PARTITION, why.source_partition.to_string()),
            (headers::SOURCE_OFFSET, record.offset.to_string()),
        ];
        record.headers.extend(stamp.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), Some(v.into_bytes()))));
    }
    build_batches(&records)
}

#[cfg(test)]
mod tests {
    use rill_core::batch::{Compression, RecordSpec};

    use super::*;

    fn record(offset: u64, value: &str) -> OwnedRecord {
        OwnedRecord {
            offset,
            timestamp: 1_000 + offset as i64,
            key: Some(format!("k{offset}").into_bytes()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![(b"h".to_vec(), None)],
        }
    }

    /// A stored batch of `count` records from `base`.
    fn stored(base: u64, count: u64) -> Vec<u8> {
        let records: Vec<OwnedRecord> = (base..base + count).map(|o| record(o, "v")).collect();
        let mut bytes = build_one(&records).unwrap();
        batch::set_base_offset(&mut bytes, base as i64).unwrap();
        batch::seal_crc(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn input_starts_at_the_offset_asked_even_inside_a_batch() {
        let log = [stored(0, 3), stored(3, 4), stored(7, 1)].concat();
        let input = plain_input(&log, 5).unwrap();
        assert_eq!((input.first_offset(), input.next_offset, input.records), (5, 8, 3));
        let offsets: Vec<u64> = owned_records(&input.bytes).unwrap().iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [5, 6, 7]);
        let parts = input.split();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].first_offset(), parts[0].next_offset, parts[1].next_offset), (5, 7, 8));
        assert_eq!(plain_input(&log, 8).unwrap(), Input { next_offset: 8, ..Input::default() });
    }

    #[test]
    fn compressed_batches_with_gaps_keep_their_offsets_as_input() {
        // A filtered mirror's copy: records at 11 and 15 of 10..=19, gzip-compressed.
        let records = [record(11, "a"), record(15, "b")];
        let plain = build_at(&records, 10, 19).unwrap();
        let header = *batch::Batch::parse(&plain).unwrap().header();
        let packed = compression::compress(Compression::Gzip, &plain[batch::HEADER_LEN..]).unwrap();
        let stored = compression::with_records(&header, &packed, Compression::Gzip).unwrap();
        let offsets =
            |input: &Input| -> Vec<u64> { owned_records(&input.bytes).unwrap().iter().map(|r| r.offset).collect() };
        let input = plain_input(&stored, 10).unwrap();
        assert_eq!((offsets(&input), input.next_offset), (vec![11, 15], 20));
        let input = plain_input(&stored, 12).unwrap();
        assert_eq!((offsets(&input), input.first_offset(), input.next_offset), (vec![15], 12, 20));
    }

    #[test]
    fn output_with_gaps_is_rebuilt_to_take_one_offset_per_record() {
        let dense = stored(0, 3);
        assert_eq!(without_gaps(dense.clone()).unwrap(), dense, "dense output passes untouched");
        let spec = RecordSpec { timestamp: 5, key: None, value: Some(b"kept"), headers: &[] };
        let layout = batch::OffsetLayout { offset_deltas: &[2, 6], last_offset_delta: 9 };
        let mut gappy = batch::build_vec_at_without_crc(BatchParams::default(), &[spec, spec], layout).unwrap();
        batch::seal_crc(&mut gappy).unwrap();
        let empty = batch::empty_like(batch::batches(&dense).next().unwrap().unwrap().header()).to_vec();
        let fixed = without_gaps([dense.clone(), gappy, empty].concat()).unwrap();
        let headers: Vec<(i32, i32)> = batch::batches(&fixed)
            .map(|b| b.map(|b| (b.header().records_count, b.header().last_offset_delta)).unwrap())
            .collect();
        assert_eq!(headers, [(3, 2), (2, 1)], "the gaps are closed and the empty batch left out");
        assert_eq!(owned_records(&fixed).unwrap()[4].value.as_deref(), Some(b"kept".as_slice()));
    }

    #[test]
    fn dead_letters_keep_records_and_say_why() {
        let input = plain_input(&stored(10, 2), 10).unwrap();
        let why = DeadLetter { plugin: "f@1.0.0", error: "boom", source_topic: "in", source_partition: 3 };
        let letters = owned_records(&dead_letters(&input, &why).unwrap()).unwrap();
        assert_eq!(letters.len(), 2);
        assert_eq!(letters[1].value.as_deref(), Some(b"v".as_slice()));
        let header = |name: &str| letters[1].headers.iter().find(|(k, _)| k == name.as_bytes()).unwrap().1.clone();
        assert_eq!(header(headers::ERROR).as_deref(), Some(b"boom".as_slice()));
        assert_eq!(header(headers::SOURCE_OFFSET).as_deref(), Some(b"11".as_slice()));
        assert_eq!(letters[1].headers[0], (b"h".to_vec(), None), "the record's own headers come first");
    }
}
