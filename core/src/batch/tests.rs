//! Golden bytes and targeted corruptions. Property tests live in `core/tests/batch_props.rs`.

use super::*;

const TS: i64 = 1_700_000_000_000;
const HEADERS: &[(&[u8], Option<&[u8]>)] = &[(b"h", Some(b"x")), (b"n", None)];
const SPECS: [RecordSpec<'static>; 3] = [
    RecordSpec { timestamp: TS, key: Some(b"k1"), value: Some(b"hello"), headers: &[] },
    RecordSpec { timestamp: TS + 5, key: None, value: Some(b"v2"), headers: HEADERS },
    RecordSpec { timestamp: TS + 1, key: Some(b""), value: None, headers: &[] },
];

/// The batch [`SPECS`] make with default params, written out by hand from Kafka's protocol
/// docs. The CRC was computed by a separate bitwise CRC32C (Python), not by this crate.
#[rustfmt::skip]
const GOLDEN: [u8; 98] = [
    0, 0, 0, 0, 0, 0, 0, 0,           // baseOffset 0
    0, 0, 0, 86,                      // batchLength 86 = 98 - 12
    0xff, 0xff, 0xff, 0xff,           // partitionLeaderEpoch -1
    2,                                // magic 2
    0xf1, 0x78, 0xdb, 0x2b,           // crc (CRC32C of bytes 21..98)
    0, 0,                             // attributes: no compression, CreateTime
    0, 0, 0, 2,                       // lastOffsetDelta 2
    0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // baseTimestamp 1_700_000_000_000
    0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x05, // maxTimestamp +5
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // producerId -1
    0xff, 0xff,                       // producerEpoch -1
    0xff, 0xff, 0xff, 0xff,           // baseSequence -1
    0, 0, 0, 3,                       // recordsCount 3
    // record 0 (14 bytes)
    0x1a,                             // length 13 (zigzag 26)
    0,                                // attributes
    0x00,                             // timestampDelta 0
    0x00,                             // offsetDelta 0
    0x04, b'k', b'1',                 // keyLength 2, key "k1"
    0x0a, b'h', b'e', b'l', b'l', b'o', // valueLen 5, value "hello"
    0x00,                             // headersCount 0
    // record 1 (16 bytes)
    0x1e,                             // length 15
    0,                                // attributes
    0x0a,                             // timestampDelta 5
    0x02,                             // offsetDelta 1
    0x01,                             // keyLength -1: null key
    0x04, b'v', b'2',                 // valueLen 2, value "v2"
    0x04,                             // headersCount 2
    0x02, b'h', 0x02, b'x',           // header "h" = "x"
    0x02, b'n', 0x01,                 // header "n" = null
    // record 2 (7 bytes)
    0x0c,                             // length 6
    0,                                // attributes
    0x02,                             // timestampDelta 1
    0x04,                             // offsetDelta 2
    0x00,                             // keyLength 0: empty key
    0x01,                             // valueLen -1: null value
    0x00,                             // headersCount 0
];

fn build_golden(buf: &mut [u8]) -> &[u8] {
    let mut builder = BatchBuilder::new(buf, BatchParams::default()).unwrap();
    for spec in &SPECS {
        builder.push(spec).unwrap();
    }
    builder.finish().unwrap()
}

#[test]
fn crc32c_check_values() {
    // The catalogue's check value, and RFC 3720 (iSCSI) B.4 test vectors.
    assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
    let ascending: [u8; 32] = core::array::from_fn(|i| i as u8);
    assert_eq!(crc32c(&ascending), 0x46dd_794e);
}

#[test]
fn golden_bytes() {
    let mut buf = [0u8; 128];
    let batch = build_golden(&mut buf);
    assert_eq!(batch, &GOLDEN[..]);
    assert_eq!(compute_crc(&GOLDEN), 0xf178_db2b);
}

#[test]
fn golden_parses_back() {
    let batch = Batch::parse(&GOLDEN).unwrap();
    let h = batch.header();
    assert_eq!((h.records_count, h.last_offset_delta, h.max_timestamp), (3, 2, TS + 5));
    assert_eq!(h.compression(), Ok(Compression::None));
    assert_eq!(h.total_len(), GOLDEN.len());
    assert_eq!(batch.records_section().len(), 37);
    let mut records = batch.records().unwrap();
    for (offset_delta, spec) in SPECS.iter().enumerate() {
        let record = records.next().unwrap().unwrap();
        assert_eq!(record.offset(batch.base_offset()), offset_delta as i64);
        assert_eq!(record.timestamp(h.base_timestamp), spec.timestamp);
        assert_eq!((record.key, record.value), (spec.key, spec.value));
        assert!(record.headers().map(|h| (h.key, h.value)).eq(spec.headers.iter().copied()));
    }
    assert!(records.next().is_none());
    assert_eq!(batch_len(&GOLDEN), Ok(98));
    assert_eq!(batch_len(&GOLDEN[..12]), Ok(98));
    assert_eq!(batch_len(&GOLDEN[..5]), Err(BatchError::Incomplete { needed: 7 }));
}

#[test]
fn header_errors() {
    let mut bytes = GOLDEN;
    bytes[16] = 1;
    assert_eq!(Batch::parse(&bytes), Err(BatchError::UnsupportedMagic(1)));
    let mut bytes = GOLDEN;
    bytes[97] ^= 1;
    assert!(matches!(Batch::parse(&bytes), Err(BatchError::CrcMismatch { stored: 0xf178_db2b, .. })));
    let mut bytes = GOLDEN;
    bytes[22] = 5;
    seal_crc(&mut bytes).unwrap();
    assert_eq!(Batch::parse(&bytes), Err(BatchError::UnknownCompression(5)));
    let mut bytes = GOLDEN;
    bytes[26] = 1; // lastOffsetDelta 1 < recordsCount - 1
    seal_crc(&mut bytes).unwrap();
    let expected = BatchError::InvalidLastOffsetDelta { last_offset_delta: 1, records_count: 3 };
    assert_eq!(Batch::parse(&bytes), Err(expected));
    let mut bytes = GOLDEN;
    bytes[11] = 48; // one below the header's 49
    assert_eq!(Batch::parse(&bytes), Err(BatchError::LengthOutOfRange { length: 48 }));
    assert_eq!(Batch::parse(&GOLDEN[..97]), Err(BatchError::Incomplete { needed: 1 }));
    let mut longer = [0u8; 99];
    longer[..98].copy_from_slice(&GOLDEN);
    let expected = BatchError::LengthMismatch { declared: 98, actual: 99 };
    assert_eq!(Batch::parse(&longer), Err(expected));
}

#[test]
fn record_errors_are_batch_relative() {
    // Record 1's offsetDelta (byte 61 + 14 + 3 = 78) set to 0, equal to record 0's.
    let mut bytes = GOLDEN;
    bytes[78] = 0;
    seal_crc(&mut bytes).unwrap();
    let error = RecordError::OffsetDeltaNotIncreasing { previous: Some(0), found: 0 };
    assert_eq!(Batch::parse(&bytes), Err(BatchError::Record { index: 1, at: 78, error }));
    // Record 2's offsetDelta (byte 61 + 30 + 3 = 94) set to 3, above lastOffsetDelta 2.
    let mut bytes = GOLDEN;
    bytes[94] = 0x06;
    seal_crc(&mut bytes).unwrap();
    let error = RecordError::OffsetDeltaBeyondLast { offset_delta: 3, last_offset_delta: 2 };
    assert_eq!(Batch::parse(&bytes), Err(BatchError::Record { index: 2, at: 94, error }));
    // ...which becomes valid once lastOffsetDelta says 3 (a compacted batch has gaps).
    bytes[26] = 3;
    seal_crc(&mut bytes).unwrap();
    assert!(Batch::parse(&bytes).is_ok());
}

#[test]
fn compressed_records_are_not_walked() {
    let mut bytes = GOLDEN;
    bytes[22] = Compression::Zstd.id();
    bytes[70] ^= 0xff; // garbage in the "compressed" records
    seal_crc(&mut bytes).unwrap();
    let batch = Batch::parse(&bytes).unwrap();
    assert_eq!(batch.compression(), Compression::Zstd);
    assert_eq!(batch.records().err(), Some(BatchError::Compressed(Compression::Zstd)));
    // The host, after "decompressing", validates the section against the header.
    assert_eq!(validate_decompressed(batch.header(), &GOLDEN[HEADER_LEN..]), Ok(()));
}

#[test]
fn in_place_rewrites_keep_the_crc() {
    let mut bytes = GOLDEN;
    set_base_offset(&mut bytes, 1_000_000).unwrap();
    set_partition_leader_epoch(&mut bytes, 7).unwrap();
    let batch = Batch::parse(&bytes).unwrap();
    assert_eq!(batch.base_offset(), 1_000_000);
    assert_eq!(batch.last_offset(), 1_000_002);
    assert_eq!(batch.header().partition_leader_epoch, 7);
    assert_eq!(set_base_offset(&mut bytes[..60], 0), Err(BatchError::Incomplete { needed: 1 }));
    bytes[16] = 0;
    assert_eq!(set_partition_leader_epoch(&mut bytes, 0), Err(BatchError::UnsupportedMagic(0)));
}

#[test]
fn log_append_time_restamps_the_header_and_reseals() {
    let mut bytes = GOLDEN;
    set_log_append_time(&mut bytes, TS + 60_000).unwrap();
    let batch = Batch::parse(&bytes).expect("the CRC was resealed");
    assert_eq!(batch.header().timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(batch.header().max_timestamp, TS + 60_000);
    assert_eq!(batch.header().base_timestamp, TS, "only the max timestamp changes, as in Kafka");
    assert_eq!(batch.compression(), Compression::None);
    assert_eq!(&bytes[HEADER_LEN..], &GOLDEN[HEADER_LEN..], "records keep their bytes");
    let header = *batch.header();
    let read = batch.records().unwrap().map(|r| header.timestamp_of(&r.unwrap()));
    assert!(read.eq([TS + 60_000; 3]), "consumers read the append time for every record");
    let golden = Batch::parse(&GOLDEN).unwrap();
    let own = golden.records().unwrap().map(|r| golden.header().timestamp_of(&r.unwrap()));
    assert!(own.eq([TS, TS + 5, TS + 1]), "CreateTime: each record's own");
    assert_eq!(set_log_append_time(&mut bytes[..97], 0), Err(BatchError::Incomplete { needed: 1 }));
}

#[test]
fn batches_iterates_and_stops_at_the_first_error() {
    let mut two = [0u8; 196 + 20];
    two[..98].copy_from_slice(&GOLDEN);
    two[98..196].copy_from_slice(&GOLDEN);
    two[196..].copy_from_slice(&GOLDEN[..20]);
    let mut iter = batches(&two[..196]);
    assert_eq!(iter.by_ref().filter(Result::is_ok).count(), 2);
    assert_eq!(iter.position(), 196);
    let mut iter = batches(&two);
    assert!(iter.next().unwrap().is_ok());
    assert!(iter.next().unwrap().is_ok());
    assert_eq!(iter.next(), Some(Err(BatchError::Incomplete { needed: 78 })));
    assert_eq!(iter.position(), 196);
    assert_eq!(iter.next(), None);
    let mut bad = two;
    bad[20] ^= 1; // CRC of the first batch
    let mut iter = batches(&bad);
    assert!(matches!(iter.next(), Some(Err(BatchError::CrcMismatch { .. }))));
    assert_eq!(iter.next(), None);
    assert_eq!(batches(&[]).next(), None);
}

#[test]
fn buffer_full_keeps_earlier_records() {
    // Room for the header and the first two records (14 + 16 bytes), not the third (7).
    let mut buf = [0u8; HEADER_LEN + 30 + 6];
    let mut builder = BatchBuilder::new(&mut buf, BatchParams::default()).unwrap();
    builder.push(&SPECS[0]).unwrap();
    builder.push(&SPECS[1]).unwrap();
    assert_eq!(builder.encoded_len_of(&SPECS[2]), Ok(7));
    let full = BuildError::BufferFull { needed: 7, available: 6 };
    assert_eq!(builder.push(&SPECS[2]), Err(full));
    assert_eq!(builder.push(&SPECS[2]), Err(full), "still the same state");
    assert_eq!((builder.records_count(), builder.len()), (2, HEADER_LEN + 30));
    let batch = Batch::parse(builder.finish().unwrap()).unwrap();
    let values: [Option<&[u8]>; 2] = [Some(b"hello"), Some(b"v2")];
    assert!(batch.records().unwrap().map(|r| r.unwrap().value).eq(values));
}

#[test]
fn builder_refusals() {
    let mut small = [0u8; 60];
    let expected = BuildError::BufferTooSmall { needed: 61, available: 60 };
    assert_eq!(BatchBuilder::new(&mut small, BatchParams::default()).err(), Some(expected));
    let mut buf = [0u8; 70];
    let builder = BatchBuilder::new(&mut buf, BatchParams::default()).unwrap();
    assert_eq!(builder.finish(), Err(BuildError::Empty));
    let mut builder = BatchBuilder::new(&mut buf, BatchParams::default()).unwrap();
    let expected = BuildError::RecordTooLarge { needed: 14, capacity: 9 };
    assert_eq!(builder.push(&SPECS[0]), Err(expected));
    let params = BatchParams { base_timestamp: Some(i64::MIN), ..BatchParams::default() };
    let mut builder = BatchBuilder::new(&mut buf, params).unwrap();
    let expected = BuildError::TimestampOutOfRange { timestamp: TS, base_timestamp: i64::MIN };
    assert_eq!(builder.push(&SPECS[0]), Err(expected));
}

#[test]
fn builder_params_reach_the_header() {
    let params = BatchParams {
        base_offset: 42,
        partition_leader_epoch: 3,
        base_timestamp: Some(TS - 1_000),
        timestamp_type: TimestampType::LogAppendTime,
        producer_id: 9,
        producer_epoch: 1,
        base_sequence: 100,
        is_transactional: true,
    };
    let mut buf = [0u8; 256];
    let mut builder = BatchBuilder::new(&mut buf, params).unwrap();
    builder.push(&SPECS[0]).unwrap();
    let batch = Batch::parse(builder.finish().unwrap()).unwrap();
    let h = *batch.header();
    assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 3));
    assert_eq!((h.base_timestamp, h.max_timestamp), (TS - 1_000, TS));
    assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (9, 1, 100));
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    assert!(h.is_transactional() && !h.is_control());
    let record = batch.records().unwrap().next().unwrap().unwrap();
    assert_eq!(record.timestamp_delta, 1_000);
}

#[cfg(feature = "alloc")]
#[test]
fn build_vec_matches_the_builder() {
    let built = build_vec(BatchParams::default(), &SPECS).unwrap();
    assert_eq!(built, GOLDEN);
    assert_eq!(build_vec(BatchParams::default(), &[]), Err(BuildError::Empty));
}

#[test]
fn display_is_precise() {
    extern crate std;
    use std::string::ToString;
    let error = BatchError::Record {
        index: 1,
        at: 78,
        error: RecordError::OutOfBounds { field: RecordField::Key, needed: 10, available: 3 },
    };
    assert_eq!(error.to_string(), "record 1, byte 78: key needs 10 bytes, 3 remain");
    let error = BatchError::CrcMismatch { stored: 1, computed: 0xf178_db2b };
    assert_eq!(error.to_string(), "crc (bytes 17..21) is 0x00000001, but the CRC32C of bytes 21.. is 0xf178db2b");
}

#[test]
fn unsealed_batches_parse_without_crc_and_seal_to_the_golden_bytes() {
    let mut buf = [0u8; 256];
    let mut builder = BatchBuilder::new(&mut buf, BatchParams::default()).unwrap();
    for spec in &SPECS {
        builder.push(spec).unwrap();
    }
    let unsealed = builder.finish_without_crc().unwrap().to_vec();
    assert_eq!(&unsealed[17..21], &[0, 0, 0, 0], "the CRC is left at zero");
    assert!(matches!(Batch::parse(&unsealed), Err(BatchError::CrcMismatch { .. })));
    let parsed = Batch::parse_without_crc(&unsealed).unwrap();
    assert_eq!(parsed.records().unwrap().count(), 3);
    let mut sealed = unsealed.clone();
    seal_crc(&mut sealed).unwrap();
    assert_eq!(sealed, GOLDEN);
    // Everything but the CRC is still checked.
    let mut truncated_count = unsealed.clone();
    truncated_count[60] = 9;
    assert!(Batch::parse_without_crc(&truncated_count).is_err());
}

#[test]
fn records_keep_their_offsets_with_gaps_between() {
    let params = BatchParams { base_offset: 100, ..BatchParams::default() };
    let layout = OffsetLayout { offset_deltas: &[1, 5], last_offset_delta: 9 };
    let mut bytes = build_vec_at_without_crc(params, &SPECS[..2], layout).unwrap();
    seal_crc(&mut bytes).unwrap();
    let batch = Batch::parse(&bytes).unwrap();
    let h = *batch.header();
    assert_eq!((h.base_offset, h.last_offset_delta, h.records_count), (100, 9, 2), "the range is the input's");
    let offsets: alloc::vec::Vec<i64> = batch.records().unwrap().map(|r| r.unwrap().offset(h.base_offset)).collect();
    assert_eq!(offsets, [101, 105]);

    let mut buf = [0u8; 256];
    let mut builder = BatchBuilder::new(&mut buf, BatchParams::default()).unwrap();
    builder.push_at(&SPECS[0], 3).unwrap();
    let refused = BuildError::OffsetDeltaOutOfOrder { offset_delta: 3, previous: Some(3) };
    assert_eq!(builder.push_at(&SPECS[1], 3), Err(refused), "deltas must increase");
    assert!(builder.push_at(&SPECS[1], -1).is_err());
    builder.push(&SPECS[1]).unwrap();
    let batch = Batch::parse(builder.finish().unwrap()).unwrap();
    assert_eq!(batch.header().last_offset_delta, 4, "push goes on after the last delta");
    let wrong = OffsetLayout { offset_deltas: &[0], last_offset_delta: 0 };
    assert_eq!(
        build_vec_at_without_crc(BatchParams::default(), &SPECS[..2], wrong),
        Err(BuildError::OffsetDeltaCount { records: 2, deltas: 1 })
    );
}

#[test]
fn an_empty_batch_keeps_the_range_it_stands_for() {
    let params = BatchParams { base_offset: 7, partition_leader_epoch: 2, ..BatchParams::default() };
    let full = build_vec(params, &SPECS).unwrap();
    let of = *Batch::parse(&full).unwrap().header();
    let empty = empty_like(&of);
    let batch = Batch::parse(&empty).expect("an empty batch is valid, CRC included");
    let h = *batch.header();
    assert_eq!((h.base_offset, h.last_offset_delta, h.partition_leader_epoch), (7, of.last_offset_delta, 2));
    assert_eq!((h.records_count, h.base_timestamp, h.max_timestamp), (0, of.max_timestamp, of.max_timestamp));
    assert_eq!(batch.records().unwrap().count(), 0);
    assert_eq!(batches(&[full.clone(), empty.to_vec()].concat()).filter(Result::is_ok).count(), 2);
}

#[test]
fn sealed_batches_check_the_crc_not_each_record() {
    // A record made malformed, then sealed: only a full parse walks into it.
    let mut sealed_bad = GOLDEN;
    sealed_bad[78] = 0;
    seal_crc(&mut sealed_bad).unwrap();
    assert!(batches(&sealed_bad).next().unwrap().is_err());
    let parsed = sealed_batches(&sealed_bad).next().unwrap().expect("the CRC matches");
    assert!(parsed.records().unwrap().any(|r| r.is_err()), "its records still report the fault");
    // A byte changed after sealing fails the CRC either way.
    let mut changed = GOLDEN;
    changed[HEADER_LEN + 5] ^= 1;
    assert!(matches!(sealed_batches(&changed).next(), Some(Err(BatchError::CrcMismatch { .. }))));
    assert_eq!(sealed_batches(&[GOLDEN, GOLDEN].concat()).filter(Result::is_ok).count(), 2);
}
