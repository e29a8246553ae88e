//! rill-core alone reads the golden batches that the `kafka-protocol` crate wrote (see
//! `fixtures/README.md`; `host/tests/codec_crosscheck.rs` regenerates them and checks that they
//! still match). The expected values are written out here, not computed, so that a change in the
//! codec shows up as a failure rather than as a new expectation.
#![cfg(feature = "alloc")]

use rill_core::batch::{
    self, Batch, BatchError, BatchHeader, BatchParams, Compression, HEADER_LEN, LOG_OVERHEAD, RecordSpec, TimestampType,
};

const NONE: &[u8] = include_bytes!("fixtures/kafka_protocol_none.bin");
const GZIP: &[u8] = include_bytes!("fixtures/kafka_protocol_gzip.bin");
const SNAPPY: &[u8] = include_bytes!("fixtures/kafka_protocol_snappy.bin");
const LZ4: &[u8] = include_bytes!("fixtures/kafka_protocol_lz4.bin");
const ZSTD: &[u8] = include_bytes!("fixtures/kafka_protocol_zstd.bin");

/// Each fixture with its codec and the bytes its compressed records section starts with: the
/// gzip member header, the xerial snappy-java stream header (what Kafka's Java client writes),
/// the LZ4 frame magic, the zstd frame magic.
const FIXTURES: [(&[u8], Compression, &[u8]); 5] = [
    (NONE, Compression::None, &[]),
    (GZIP, Compression::Gzip, &[0x1f, 0x8b, 0x08]),
    (SNAPPY, Compression::Snappy, b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01"),
    (LZ4, Compression::Lz4, &[0x04, 0x22, 0x4d, 0x18]),
    (ZSTD, Compression::Zstd, &[0x28, 0xb5, 0x2f, 0xfd]),
];

/// 2023-11-14T22:13:20Z in ms: the first record's timestamp, and the smallest.
const T0: i64 = 1_700_000_000_000;

/// One expected record: offset, timestamp, key, value, headers.
type Expected =
    (i64, i64, Option<&'static [u8]>, Option<&'static [u8]>, &'static [(&'static [u8], Option<&'static [u8]>)]);

const RECORDS: [Expected; 4] = [
    (0, T0, Some(b"sensor-1"), Some(b"21.5"), &[(b"unit", Some(b"C"))]),
    (1, T0 + 250, None, Some(b"21.7"), &[]),
    (2, T0 + 125, Some(b"sensor-2"), None, &[(b"trace", None)]),
    (3, T0 + 1000, Some(b"sensor-1"), Some(b"22.0"), &[(b"unit", Some(b"C")), (b"seq", Some(&[0, 1]))]),
];

/// The header every fixture has but for `batchLength`, `crc` and the compression bits.
fn expected_header(bytes: &[u8], codec: Compression, crc: u32) -> BatchHeader {
    BatchHeader {
        base_offset: 0,
        batch_length: (bytes.len() - LOG_OVERHEAD) as i32,
        partition_leader_epoch: -1,
        magic: 2,
        crc,
        // CreateTime, not transactional, not control.
        attributes: i16::from(codec.id()),
        last_offset_delta: 3,
        // kafka-protocol's baseTimestamp is the smallest record timestamp.
        base_timestamp: T0,
        max_timestamp: T0 + 1000,
        producer_id: 4242,
        producer_epoch: 1,
        base_sequence: 17,
        records_count: 4,
    }
}

#[test]
fn headers_and_crcs() {
    for (bytes, codec, section_magic) in FIXTURES {
        let parsed = Batch::parse(bytes).unwrap_or_else(|error| panic!("{codec} fixture: {error}"));
        let header = *parsed.header();
        assert_eq!(header, expected_header(bytes, codec, header.crc), "{codec} fixture header");
        assert_eq!(batch::compute_crc(bytes), header.crc, "{codec}: CRC32C of bytes 21..");
        assert_eq!(batch::crc32c(&bytes[21..]), u32::from_be_bytes(bytes[17..21].try_into().unwrap()));
        assert_eq!(parsed.compression(), codec);
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        assert!(!header.is_transactional() && !header.is_control() && !header.has_delete_horizon());
        assert_eq!(parsed.last_offset(), 3);
        assert!(parsed.records_section().starts_with(section_magic), "{codec}: records section magic");
        assert_eq!(HEADER_LEN + parsed.records_section().len(), bytes.len());
    }
}

#[test]
fn uncompressed_records() {
    let parsed = Batch::parse(NONE).expect("the uncompressed fixture parses");
    let header = *parsed.header();
    let records: Vec<_> = parsed.records().expect("uncompressed").map(|r| r.expect("validated")).collect();
    assert_eq!(records.len(), RECORDS.len());
    for (index, (record, &(offset, timestamp, key, value, headers))) in records.iter().zip(&RECORDS).enumerate() {
        assert_eq!(record.offset(header.base_offset), offset, "record {index} offset");
        assert_eq!(record.offset_delta as usize, index);
        assert_eq!(record.timestamp(header.base_timestamp), timestamp, "record {index} timestamp");
        assert_eq!(record.timestamp_delta, timestamp - T0);
        assert_eq!(record.attributes, 0);
        assert_eq!(record.key, key, "record {index} key");
        assert_eq!(record.value, value, "record {index} value");
        let seen: Vec<_> = record.headers().map(|h| (h.key, h.value)).collect();
        assert_eq!(seen, headers, "record {index} headers");
        assert_eq!(record.headers_count() as usize, headers.len());
    }
}

#[test]
fn compressed_records_need_the_host() {
    for (bytes, codec, _) in &FIXTURES[1..] {
        let parsed = Batch::parse(bytes).expect("framing, CRC and counts are valid");
        assert_eq!(parsed.records().err(), Some(BatchError::Compressed(*codec)));
    }
}

/// rill's builder, given kafka-protocol's base timestamp, writes the same bytes.
#[test]
fn builder_writes_the_same_bytes() {
    let specs = RECORDS.map(|(_, timestamp, key, value, headers)| RecordSpec { timestamp, key, value, headers });
    let params = BatchParams {
        base_timestamp: Some(T0),
        producer_id: 4242,
        producer_epoch: 1,
        base_sequence: 17,
        ..BatchParams::default()
    };
    assert_eq!(batch::build_vec(params, &specs).expect("builds"), NONE);
}

/// The five fixtures back to back, as one produce request could carry them.
#[test]
fn concatenated() {
    let all: Vec<u8> = FIXTURES.iter().flat_map(|(bytes, _, _)| bytes.iter().copied()).collect();
    let mut batches = batch::batches(&all);
    for (bytes, codec, _) in FIXTURES {
        let position = batches.position();
        let parsed = batches.next().expect("a batch").expect("valid");
        assert_eq!((parsed.compression(), parsed.as_bytes()), (codec, bytes));
        assert_eq!(&all[position..position + bytes.len()], bytes);
    }
    assert!(batches.next().is_none());
}
