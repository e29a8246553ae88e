//! Property tests of the batch codec: round trips against a plain model of the records, and
//! "never panics, errs precisely" on random, truncated and corrupted input.
//!
//! Case counts are fixed in the source (not read from `PROPTEST_CASES`) so that every run checks
//! as much as CI does.
#![cfg(feature = "alloc")]

use std::string::ToString;
use std::vec::Vec;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;
use rill_core::batch::{
    self, Batch, BatchBuilder, BatchError, BatchParams, BuildError, HEADER_LEN, LOG_OVERHEAD, RecordSpec, TimestampType,
};

/// A record as plain owned data: the model the codec's output is compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Model {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn bytes(len_max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..len_max)
}

fn model() -> impl Strategy<Value = Model> {
    (
        // Wide enough for multi-byte varlong deltas, narrow enough that deltas never overflow.
        -(1i64 << 40)..(1i64 << 40),
        option::of(bytes(24)),
        // Up to 200 bytes so that value and record lengths take 2-byte varints.
        option::of(bytes(200)),
        vec((bytes(8), option::of(bytes(8))), 0..3),
    )
        .prop_map(|(timestamp, key, value, headers)| Model { timestamp, key, value, headers })
}

fn params() -> impl Strategy<Value = BatchParams> {
    (
        any::<i64>(),
        any::<i32>(),
        option::of(-(1i64 << 40)..(1i64 << 40)),
        any::<bool>(),
        (any::<i64>(), any::<i16>(), any::<i32>()),
        any::<bool>(),
    )
        .prop_map(|(base_offset, epoch, base_ts, log_append, producer, txn)| BatchParams {
            base_offset,
            partition_leader_epoch: epoch,
            base_timestamp: base_ts,
            timestamp_type: if log_append { TimestampType::LogAppendTime } else { TimestampType::CreateTime },
            producer_id: producer.0,
            producer_epoch: producer.1,
            base_sequence: producer.2,
            is_transactional: txn,
        })
}

type HeaderRefs<'a> = Vec<(&'a [u8], Option<&'a [u8]>)>;

fn header_refs(models: &[Model]) -> Vec<HeaderRefs<'_>> {
    models.iter().map(model_header_refs).collect()
}

fn model_header_refs(model: &Model) -> HeaderRefs<'_> {
    let headers = model.headers.iter();
    headers.map(|(k, v)| (k.as_slice(), v.as_deref())).collect()
}

fn specs<'a>(models: &'a [Model], headers: &'a [HeaderRefs<'a>]) -> Vec<RecordSpec<'a>> {
    let spec = |(m, h): (&'a Model, &'a HeaderRefs<'a>)| RecordSpec {
        timestamp: m.timestamp,
        key: m.key.as_deref(),
        value: m.value.as_deref(),
        headers: h,
    };
    models.iter().zip(headers).map(spec).collect()
}

fn build(params: BatchParams, models: &[Model]) -> Vec<u8> {
    let headers = header_refs(models);
    batch::build_vec(params, &specs(models, &headers)).unwrap()
}

/// Reads a batch back into the model.
fn read_back(batch: &Batch<'_>) -> Vec<Model> {
    let h = batch.header();
    let to_model = |record: batch::Record<'_>| Model {
        timestamp: record.timestamp(h.base_timestamp),
        key: record.key.map(<[u8]>::to_vec),
        value: record.value.map(<[u8]>::to_vec),
        headers: record.headers().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect(),
    };
    batch.records().unwrap().map(|record| to_model(record.unwrap())).collect()
}

/// Exercises every read path on `bytes`; all must return, and errors must format.
fn read_everything(bytes: &[u8]) {
    let _ = batch::batch_len(bytes);
    match Batch::parse(bytes) {
        Ok(batch) => {
            // A batch that parses iterates without errors, exactly recordsCount records.
            if let Ok(records) = batch.records() {
                let mut count = 0;
                for record in records {
                    record.unwrap().headers().for_each(drop);
                    count += 1;
                }
                assert_eq!(count, batch.header().records_count as usize);
            }
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
    for item in batch::batches(bytes) {
        if let Err(error) = item {
            assert!(!error.to_string().is_empty());
        }
    }
}

/// Bits flipped at (byte index, bit) positions; returns the indices of bytes that changed.
fn flip(bytes: &mut [u8], flips: &[(Index, u8)], range: core::ops::Range<usize>) -> Vec<usize> {
    let original = bytes.to_vec();
    for (index, bit) in flips {
        let at = range.start + index.index(range.len());
        bytes[at] ^= 1 << bit;
    }
    (0..bytes.len()).filter(|&i| bytes[i] != original[i]).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn round_trip(params in params(), models in vec(model(), 1..8)) {
        let bytes = build(params, &models);
        let batch = Batch::parse(&bytes).unwrap();
        let h = batch.header();
        prop_assert_eq!(read_back(&batch), models.clone());
        prop_assert_eq!(h.records_count as usize, models.len());
        prop_assert_eq!(h.last_offset_delta as usize, models.len() - 1);
        prop_assert_eq!(h.max_timestamp, models.iter().map(|m| m.timestamp).max().unwrap());
        prop_assert_eq!(h.base_timestamp, params.base_timestamp.unwrap_or(models[0].timestamp));
        prop_assert_eq!(h.base_offset, params.base_offset);
        prop_assert_eq!(h.partition_leader_epoch, params.partition_leader_epoch);
        prop_assert_eq!(h.timestamp_type(), params.timestamp_type);
        prop_assert_eq!(h.is_transactional(), params.is_transactional);
        prop_assert_eq!(h.total_len(), bytes.len());
        // The records section on its own validates too, as after decompression.
        prop_assert_eq!(batch::validate_records(batch.records_section(), h.records_count), Ok(()));
        prop_assert_eq!(batch::validate_decompressed(h, batch.records_section()), Ok(()));
        // Two batches back to back come out of `batches` in order.
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        let parsed: Vec<_> = batch::batches(&two).collect();
        prop_assert_eq!(parsed.len(), 2);
        prop_assert!(parsed.iter().all(|b| b.as_ref().map(Batch::as_bytes) == Ok(&bytes[..])));
    }

    #[test]
    fn buffer_full_keeps_what_fit(models in vec(model(), 1..8), spare in 0usize..600) {
        let headers = header_refs(&models);
        let specs = specs(&models, &headers);
        let mut buf = vec![0u8; HEADER_LEN + spare];
        let mut builder = BatchBuilder::new(&mut buf, BatchParams::default()).unwrap();
        let mut pushed = 0;
        for spec in &specs {
            let len_before = builder.len();
            match builder.push(spec) {
                Ok(()) => pushed += 1,
                Err(BuildError::BufferFull { .. } | BuildError::RecordTooLarge { .. }) => {
                    prop_assert_eq!(builder.len(), len_before);
                    break;
                }
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
        match builder.finish() {
            Ok(bytes) => {
                let batch = Batch::parse(bytes).unwrap();
                prop_assert_eq!(read_back(&batch), models[..pushed].to_vec());
            }
            Err(error) => prop_assert!(pushed == 0 && error == BuildError::Empty),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn parse_random_bytes(bytes in bytes(160)) {
        read_everything(&bytes);
    }

    /// A valid header (length, magic, CRC all right) over random records, so that the record
    /// walker, not the CRC check, meets the garbage.
    #[test]
    fn parse_random_records_under_a_valid_header(
        section in bytes(160),
        count in -1i32..6,
        last_offset_delta in -1i32..8,
        attributes in 0i16..16,
    ) {
        let mut bytes = vec![0u8; HEADER_LEN];
        bytes.extend_from_slice(&section);
        let batch_length = (bytes.len() - LOG_OVERHEAD) as i32;
        bytes[8..12].copy_from_slice(&batch_length.to_be_bytes());
        bytes[16] = 2;
        bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
        bytes[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
        bytes[57..61].copy_from_slice(&count.to_be_bytes());
        batch::seal_crc(&mut bytes).unwrap();
        read_everything(&bytes);
        match Batch::parse(&bytes) {
            Err(BatchError::CrcMismatch { .. }) => prop_assert!(false, "sealed, yet {bytes:?}"),
            Err(BatchError::Record { at, .. } | BatchError::TrailingBytes { at, .. }) => {
                prop_assert!((HEADER_LEN..=bytes.len()).contains(&at));
            }
            _ => {}
        }
    }

    #[test]
    fn batches_random_bytes(bytes in bytes(300)) {
        let mut count = 0;
        let mut iter = batch::batches(&bytes);
        for item in iter.by_ref() {
            count += 1;
            if item.is_err() {
                break;
            }
        }
        prop_assert!(iter.next().is_none(), "nothing after an error");
        prop_assert!(count <= bytes.len() / HEADER_LEN + 1);
    }

    #[test]
    fn batch_len_random_bytes(bytes in bytes(20)) {
        match batch::batch_len(&bytes) {
            Ok(len) => {
                prop_assert!(bytes.len() >= LOG_OVERHEAD);
                prop_assert!((HEADER_LEN..=rill_core::limits::BATCH_BYTES_MAX).contains(&len));
            }
            Err(BatchError::Incomplete { needed }) => {
                prop_assert_eq!(needed, LOG_OVERHEAD - bytes.len());
            }
            Err(BatchError::LengthOutOfRange { .. }) => prop_assert!(bytes.len() >= LOG_OVERHEAD),
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    #[test]
    fn records_in_random_bytes(section in bytes(120), count in -2i32..6) {
        let validated = batch::validate_records(&section, count);
        let mut oks = 0;
        let mut first_error = None;
        for item in batch::records_in(&section, count) {
            match item {
                Ok(record) => {
                    oks += 1;
                    prop_assert!(record.headers().count() == record.headers_count() as usize);
                }
                Err(error) => {
                    prop_assert!(first_error.is_none(), "yields one error at most");
                    first_error = Some(error);
                }
            }
        }
        match validated {
            Ok(()) => prop_assert!(first_error.is_none() && oks == count),
            Err(error) => prop_assert_eq!(first_error, Some(error)),
        }
    }

    #[test]
    fn truncated_batches_are_incomplete(models in vec(model(), 1..5), cut in any::<Index>()) {
        let bytes = build(BatchParams::default(), &models);
        let cut = cut.index(bytes.len());
        let short = &bytes[..cut];
        let needed = if cut < LOG_OVERHEAD { LOG_OVERHEAD - cut } else { bytes.len() - cut };
        let expected = Err(BatchError::Incomplete { needed });
        prop_assert_eq!(Batch::parse(short), expected);
        let first = batch::batches(short).next();
        prop_assert_eq!(first, if cut == 0 { None } else { Some(expected) });
    }

    #[test]
    fn bit_flips_are_caught(
        models in vec(model(), 1..5),
        flips in vec((any::<Index>(), 0u8..8), 1..4),
    ) {
        let original = build(BatchParams::default(), &models);
        let mut bytes = original.clone();
        let len = bytes.len();
        let changed = flip(&mut bytes, &flips, 0..len);
        // baseOffset (0..8) and partitionLeaderEpoch (12..16) lie outside the CRC.
        let outside_crc = |&i: &usize| i < 8 || (12..16).contains(&i);
        let result = Batch::parse(&bytes);
        if changed.iter().all(outside_crc) {
            let batch = result.unwrap();
            prop_assert_eq!(read_back(&batch), models);
        } else if changed.iter().all(|&i| i >= 17) {
            // At most 3 flipped bits: CRC32C detects every such error at these lengths.
            prop_assert!(matches!(result, Err(BatchError::CrcMismatch { .. })), "{result:?}");
        } else {
            prop_assert!(result.is_err());
        }
    }

    /// Corrupt records under a correct CRC, as a buggy producer or plugin would send them:
    /// the record walker must err precisely or accept, never panic.
    #[test]
    fn corrupt_records_with_valid_crc(
        models in vec(model(), 1..5),
        flips in vec((any::<Index>(), 0u8..8), 1..6),
    ) {
        let mut bytes = build(BatchParams::default(), &models);
        let len = bytes.len();
        flip(&mut bytes, &flips, HEADER_LEN..len);
        batch::seal_crc(&mut bytes).unwrap();
        match Batch::parse(&bytes) {
            Ok(batch) => {
                let n = batch.records().unwrap().map(Result::unwrap).count();
                prop_assert_eq!(n, models.len());
            }
            Err(BatchError::Record { index, at, error }) => {
                prop_assert!((index as usize) < models.len());
                prop_assert!((HEADER_LEN..=len).contains(&at), "at {at}");
                prop_assert!(!error.to_string().is_empty());
            }
            Err(BatchError::RecordCountMismatch { header, found }) => {
                prop_assert!(header as usize == models.len() && (found as usize) < models.len());
            }
            Err(BatchError::TrailingBytes { at, count }) => prop_assert_eq!(at + count, len),
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }
}

#[test]
fn every_truncation_of_a_batch_is_incomplete() {
    let headers: &[(&[u8], Option<&[u8]>)] = &[(b"k", Some(b"v"))];
    let spec = RecordSpec { timestamp: 5, key: Some(b"key"), value: Some(b"value"), headers };
    let bytes = batch::build_vec(BatchParams::default(), &[spec, spec]).unwrap();
    for cut in 0..bytes.len() {
        let needed = if cut < LOG_OVERHEAD { LOG_OVERHEAD - cut } else { bytes.len() - cut };
        assert_eq!(Batch::parse(&bytes[..cut]), Err(BatchError::Incomplete { needed }), "cut at {cut}");
    }
    assert!(Batch::parse(&bytes).is_ok());
}
