//! Cross-check of `rill-core`'s batch codec against an implementation nobody here wrote, the
//! `kafka-protocol` crate, in both directions, with every compression codec:
//!
//! - kafka-protocol encodes, rill reads: `Batch::parse`, then `records()` or the host's
//!   `decompress` + `validate_decompressed` + `records_in`. Uncompressed batches must also be
//!   byte-identical to what rill's builder writes for the same records, and compressed ones must
//!   decompress to that builder's records section.
//! - rill encodes (`build_vec`, `BatchBuilder`, compressed sections sealed with `seal_crc`),
//!   kafka-protocol reads.
//! - Concatenated batches (a produce request may carry several, codecs mixed) both ways.
//! - Batches the store must refuse, checked in the codec and through a real `Store`.
//! - The golden fixtures in `core/tests/fixtures/` are regenerated and compared byte for byte;
//!   `RILL_BLESS_FIXTURES=1` rewrites them instead.
//!
//! Known differences of kafka-protocol 0.18, which the tests work around rather than hide:
//! - Its encoder never sets the timestamp-type bit (attributes bit 3), so a `LogAppend` record
//!   is encoded as CreateTime. Its decoder reads the bit; rill → kafka-protocol covers both types.
//! - It holds headers in an `IndexMap<StrBytes, _>`: header keys must be UTF-8 and distinct.
//!   Kafka allows duplicate keys and rill keeps them; the models here use distinct UTF-8 keys.
//! - It uses the smallest record timestamp as `baseTimestamp`; rill's builder uses the first
//!   record's (as Kafka's Java producer does) unless told otherwise. Both are valid: deltas are
//!   signed.
//! - It reads `recordsCount` records and ignores bytes after them; rill (like Kafka's broker)
//!   refuses trailing bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{self as kp, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use rill::compression::{DecompressError, decompress};
use rill::limits::DECOMPRESSED_BYTES_MAX;
use rill::storage::{AppendError, InvalidBatch, Location, Store, StoreConfig, TopicConfig};
use rill_core::batch::{
    self, Batch, BatchBuilder, BatchError, BatchHeader, BatchParams, Compression, HEADER_LEN, LOG_OVERHEAD, RecordSpec,
    TimestampType,
};

const CODECS: [Compression; 5] =
    [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

/// Cases per property test: each case encodes up to 3 batches with each of the 5 codecs.
const CASES: u32 = 300;

/// Size of the buffer `BatchBuilder` fills: larger than any batch the tests build.
const FIXED_BUFFER_BYTES: usize = 64 * 1024;

/// A record as plain owned data: what both implementations are compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Model {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    /// Distinct UTF-8 keys: all that kafka-protocol can represent (see the module docs).
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The batch fields a producer chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Producer {
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    is_transactional: bool,
}

/// One batch to encode: at least one record.
#[derive(Clone, Debug)]
struct BatchModel {
    producer: Producer,
    records: Vec<Model>,
}

impl BatchModel {
    fn min_timestamp(&self) -> i64 {
        self.records.iter().map(|record| record.timestamp).min().expect("a batch has records")
    }
}

/// What a decoder saw in one batch: the fields both implementations expose.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    compression: Compression,
    log_append_time: bool,
    producer: Producer,
    base_timestamp: i64,
    records: Vec<SeenRecord>,
}

#[derive(Debug, PartialEq, Eq)]
struct SeenRecord {
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// What a correct decoder sees in `model` encoded with these settings.
fn expected(model: &BatchModel, compression: Compression, log_append_time: bool, base_timestamp: i64) -> Seen {
    let records = model
        .records
        .iter()
        .zip(0..)
        .map(|(record, index)| SeenRecord {
            offset: model.producer.base_offset + index,
            timestamp: record.timestamp,
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record.headers.iter().map(|(key, value)| (key.as_bytes().to_vec(), value.clone())).collect(),
        })
        .collect();
    Seen { compression, log_append_time, producer: model.producer, base_timestamp, records }
}

// ---- kafka-protocol's side ----

fn to_kafka_protocol(codec: Compression) -> kp::Compression {
    match codec {
        Compression::None => kp::Compression::None,
        Compression::Gzip => kp::Compression::Gzip,
        Compression::Snappy => kp::Compression::Snappy,
        Compression::Lz4 => kp::Compression::Lz4,
        Compression::Zstd => kp::Compression::Zstd,
    }
}

fn from_kafka_protocol(codec: kp::Compression) -> Compression {
    match codec {
        kp::Compression::None => Compression::None,
        kp::Compression::Gzip => Compression::Gzip,
        kp::Compression::Snappy => Compression::Snappy,
        kp::Compression::Lz4 => Compression::Lz4,
        kp::Compression::Zstd => Compression::Zstd,
    }
}

fn kafka_protocol_records(model: &BatchModel, timestamp_type: kp::TimestampType) -> Vec<kp::Record> {
    let p = model.producer;
    model
        .records
        .iter()
        .zip(0..)
        .map(|(record, index)| kp::Record {
            transactional: p.is_transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: p.partition_leader_epoch,
            producer_id: p.producer_id,
            producer_epoch: p.producer_epoch,
            timestamp_type,
            offset: p.base_offset + i64::from(index),
            // kafka-protocol starts a new batch wherever `offset - sequence` changes.
            sequence: p.base_sequence.wrapping_add(index),
            timestamp: record.timestamp,
            key: record.key.clone().map(Bytes::from),
            value: record.value.clone().map(Bytes::from),
            headers: record
                .headers
                .iter()
                .map(|(key, value)| (StrBytes::from_string(key.clone()), value.clone().map(Bytes::from)))
                .collect(),
        })
        .collect()
}

/// Appends `model` as one batch encoded by kafka-protocol; returns its bytes.
fn kafka_protocol_encode(out: &mut BytesMut, model: &BatchModel, codec: Compression) -> Vec<u8> {
    let start = out.len();
    let options = RecordEncodeOptions { version: 2, compression: to_kafka_protocol(codec) };
    let records = kafka_protocol_records(model, kp::TimestampType::Creation);
    RecordBatchEncoder::encode(out, &records, &options).expect("kafka-protocol encodes");
    let batch = out[start..].to_vec();
    assert_eq!(batch::batch_len(&batch), Ok(batch.len()), "kafka-protocol wrote exactly one batch");
    batch
}

/// Every batch in `bytes` as kafka-protocol decodes it.
fn seen_by_kafka_protocol(bytes: &[u8]) -> Vec<Seen> {
    let infos = RecordBatchDecoder::decode_batch_info(&mut Bytes::copy_from_slice(bytes)).expect("batch headers");
    let sets = RecordBatchDecoder::decode_all(&mut Bytes::copy_from_slice(bytes)).expect("kafka-protocol decodes");
    assert_eq!(infos.len(), sets.len());
    let seen = infos.into_iter().zip(sets).map(|(info, set)| {
        assert_eq!(info.record_count as usize, set.records.len());
        assert_eq!(set.version, 2);
        let records = set
            .records
            .iter()
            .map(|record| {
                // kafka-protocol copies the batch fields into every record.
                let batch_fields = (record.transactional, record.control, record.timestamp_type);
                assert_eq!(batch_fields, (info.transactional, info.control, info.timestamp_type));
                let producer = (record.producer_id, record.producer_epoch, record.partition_leader_epoch);
                assert_eq!(producer, (info.producer_id, info.producer_epoch, info.partition_leader_epoch));
                let offset_delta = (record.offset - info.min_offset) as i32;
                assert_eq!(record.sequence, info.base_sequence.wrapping_add(offset_delta));
                SeenRecord {
                    offset: record.offset,
                    timestamp: record.timestamp,
                    key: record.key.as_deref().map(<[u8]>::to_vec),
                    value: record.value.as_deref().map(<[u8]>::to_vec),
                    headers: record
                        .headers
                        .iter()
                        .map(|(key, value)| (key.as_bytes().to_vec(), value.as_deref().map(<[u8]>::to_vec)))
                        .collect(),
                }
            })
            .collect();
        Seen {
            compression: from_kafka_protocol(set.compression),
            log_append_time: info.timestamp_type == kp::TimestampType::LogAppend,
            producer: Producer {
                base_offset: info.min_offset,
                partition_leader_epoch: info.partition_leader_epoch,
                producer_id: info.producer_id,
                producer_epoch: info.producer_epoch,
                base_sequence: info.base_sequence,
                is_transactional: info.transactional,
            },
            base_timestamp: info.min_timestamp,
            records,
        }
    });
    seen.collect()
}

// ---- rill's side ----

fn rill_params(producer: &Producer, base_timestamp: Option<i64>, log_append_time: bool) -> BatchParams {
    BatchParams {
        base_offset: producer.base_offset,
        partition_leader_epoch: producer.partition_leader_epoch,
        base_timestamp,
        timestamp_type: if log_append_time { TimestampType::LogAppendTime } else { TimestampType::CreateTime },
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        base_sequence: producer.base_sequence,
        is_transactional: producer.is_transactional,
    }
}

/// A record's headers as `RecordSpec` borrows them.
type HeaderRefs<'a> = Vec<(&'a [u8], Option<&'a [u8]>)>;

/// `model` as one uncompressed batch built by rill, with `build_vec` and checked against
/// `BatchBuilder` writing into a fixed buffer.
fn rill_build(model: &BatchModel, base_timestamp: Option<i64>, log_append_time: bool) -> Vec<u8> {
    let headers: Vec<HeaderRefs<'_>> = model
        .records
        .iter()
        .map(|record| record.headers.iter().map(|(key, value)| (key.as_bytes(), value.as_deref())).collect())
        .collect();
    let specs: Vec<RecordSpec<'_>> = model
        .records
        .iter()
        .zip(&headers)
        .map(|(record, headers)| RecordSpec {
            timestamp: record.timestamp,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers,
        })
        .collect();
    let params = rill_params(&model.producer, base_timestamp, log_append_time);
    let built = batch::build_vec(params, &specs).expect("rill builds");
    let mut buffer = vec![0u8; FIXED_BUFFER_BYTES];
    let mut builder = BatchBuilder::new(&mut buffer, params).expect("buffer holds a header");
    for spec in &specs {
        builder.push(spec).expect("record fits the fixed buffer");
    }
    assert_eq!(builder.finish().expect("builder finishes"), &built[..], "BatchBuilder and build_vec agree");
    built
}

/// `batch` (one valid batch) with its records section replaced by `section` compressed with
/// `codec`: header fields kept, `batchLength`, compression bits and CRC updated.
fn with_section(batch: &[u8], codec: Compression, section: &[u8]) -> Vec<u8> {
    let mut header = BatchHeader::decode(batch).expect("a header");
    header.set_compression(codec);
    header.batch_length = (HEADER_LEN - LOG_OVERHEAD + section.len()) as i32;
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(section);
    batch::seal_crc(&mut out).expect("a framed batch");
    out
}

/// `section` compressed with `codec`, by the same crates the host decompresses with but called
/// directly (not through kafka-protocol). Snappy is raw here; kafka-protocol's encoder covers
/// the xerial framing that Java clients write.
fn compress(codec: Compression, section: &[u8]) -> Vec<u8> {
    match codec {
        Compression::None => section.to_vec(),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(section).expect("gzip");
            encoder.finish().expect("gzip")
        }
        Compression::Snappy => snap::raw::Encoder::new().compress_vec(section).expect("snappy"),
        Compression::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new().build(Vec::new()).expect("lz4");
            encoder.write_all(section).expect("lz4");
            let (out, result) = encoder.finish();
            result.expect("lz4");
            out
        }
        Compression::Zstd => zstd::encode_all(section, 3).expect("zstd"),
    }
}

/// The records section of `batch` after the host's decompression, checked against the header.
fn decompressed_section(parsed: &Batch<'_>) -> Vec<u8> {
    let section = decompress(parsed.compression(), parsed.records_section(), DECOMPRESSED_BYTES_MAX)
        .unwrap_or_else(|error| panic!("host decompresses: {error}"));
    batch::validate_decompressed(parsed.header(), &section)
        .unwrap_or_else(|error| panic!("decompressed records are valid: {error}"));
    section
}

/// Every batch in `bytes` as rill reads it, checking on the way the header fields kafka-protocol
/// does not expose (`lastOffsetDelta`, `maxTimestamp`, `recordsCount`, the control bit).
fn seen_by_rill(bytes: &[u8]) -> Vec<Seen> {
    let mut seen = Vec::new();
    for parsed in batch::batches(bytes) {
        let parsed = parsed.unwrap_or_else(|error| panic!("rill parses the batch: {error}"));
        let header = *parsed.header();
        let decompressed;
        let records = match parsed.records() {
            Ok(records) => records,
            Err(BatchError::Compressed(codec)) => {
                assert_eq!(codec, parsed.compression());
                decompressed = decompressed_section(&parsed);
                batch::records_in(&decompressed, header.records_count)
            }
            Err(error) => panic!("records of a parsed batch: {error}"),
        };
        let records: Vec<SeenRecord> = records
            .map(|record| {
                let record = record.unwrap_or_else(|error| panic!("rill reads the record: {error}"));
                assert_eq!(record.attributes, 0);
                SeenRecord {
                    offset: record.offset(header.base_offset),
                    timestamp: record.timestamp(header.base_timestamp),
                    key: record.key.map(<[u8]>::to_vec),
                    value: record.value.map(<[u8]>::to_vec),
                    headers: record.headers().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect(),
                }
            })
            .collect();
        assert_eq!(header.records_count as usize, records.len());
        let last = records.last().expect("the models have records");
        assert_eq!(parsed.last_offset(), last.offset, "lastOffsetDelta");
        assert_eq!(Some(header.max_timestamp), records.iter().map(|r| r.timestamp).max(), "maxTimestamp");
        assert!(!header.is_control() && !header.has_delete_horizon());
        assert_eq!(header.magic, 2);
        seen.push(Seen {
            compression: parsed.compression(),
            log_append_time: header.timestamp_type() == TimestampType::LogAppendTime,
            producer: Producer {
                base_offset: header.base_offset,
                partition_leader_epoch: header.partition_leader_epoch,
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                base_sequence: header.base_sequence,
                is_transactional: header.is_transactional(),
            },
            base_timestamp: header.base_timestamp,
            records,
        });
    }
    seen
}

// ---- The two directions, for fixed and random inputs ----

/// kafka-protocol encodes `models` with every codec into one buffer (batch after batch); rill
/// and kafka-protocol must both read back the models, and rill's own encoding of the same
/// records must match kafka-protocol's bytes.
fn check_kafka_protocol_to_rill(models: &[BatchModel]) {
    let mut buffer = BytesMut::new();
    let mut wanted = Vec::new();
    for &codec in &CODECS {
        for model in models {
            let encoded = kafka_protocol_encode(&mut buffer, model, codec);
            wanted.push(expected(model, codec, false, model.min_timestamp()));
            // rill, told kafka-protocol's base timestamp, writes the same bytes.
            let ours = rill_build(model, Some(model.min_timestamp()), false);
            let parsed = Batch::parse(&encoded).unwrap_or_else(|error| panic!("{codec}: rill parses: {error}"));
            if codec == Compression::None {
                assert_eq!(encoded, ours, "uncompressed batches are byte-identical");
            } else {
                assert_eq!(decompressed_section(&parsed), ours[HEADER_LEN..], "{codec}: decompressed records");
                let reassembled = with_section(&ours, codec, parsed.records_section());
                assert_eq!(encoded, reassembled, "{codec}: header bytes");
            }
        }
    }
    assert_eq!(seen_by_rill(&buffer), wanted, "rill reads what kafka-protocol wrote");
    assert_eq!(seen_by_kafka_protocol(&buffer), wanted, "kafka-protocol reads what it wrote");
}

/// One batch for rill to build: the model and the header choices kafka-protocol cannot make.
#[derive(Clone, Debug)]
struct RillBatch {
    model: BatchModel,
    base_timestamp: Option<i64>,
    log_append_time: bool,
}

/// rill builds `batches` with every codec (compressed sections sealed by rill) into one buffer;
/// kafka-protocol and rill must both read back the models.
fn check_rill_to_kafka_protocol(batches: &[RillBatch]) {
    let mut buffer = Vec::new();
    let mut wanted = Vec::new();
    for &codec in &CODECS {
        for b in batches {
            let built = rill_build(&b.model, b.base_timestamp, b.log_append_time);
            let first_timestamp = b.model.records[0].timestamp;
            let base_timestamp = b.base_timestamp.unwrap_or(first_timestamp);
            wanted.push(expected(&b.model, codec, b.log_append_time, base_timestamp));
            let built = match codec {
                Compression::None => built,
                codec => with_section(&built, codec, &compress(codec, &built[HEADER_LEN..])),
            };
            // Each batch alone, as a produce request with one batch would carry it.
            let mut alone = Bytes::from(built.clone());
            let set = RecordBatchDecoder::decode(&mut alone).unwrap_or_else(|e| panic!("{codec}: kafka-protocol: {e}"));
            assert!(alone.is_empty() && set.records.len() == b.model.records.len());
            buffer.extend_from_slice(&built);
        }
    }
    assert_eq!(seen_by_kafka_protocol(&buffer), wanted, "kafka-protocol reads what rill wrote");
    assert_eq!(seen_by_rill(&buffer), wanted, "rill reads what it wrote");
}

fn producer_none() -> Producer {
    Producer {
        base_offset: 0,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        is_transactional: false,
    }
}

fn record(timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]) -> Model {
    Model {
        timestamp,
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers: headers.iter().map(|&(key, value)| (key.to_owned(), value.map(<[u8]>::to_vec))).collect(),
    }
}

/// Fixed cases: every nullable field null and empty, extreme header fields, the widest timestamp
/// span (a 10-byte varlong delta), a 40 KB value (3-byte varints, two 32 KiB snappy blocks), 300
/// records (2-byte offset deltas), and the golden fixture's records.
fn fixed_cases() -> Vec<BatchModel> {
    let edges = BatchModel {
        producer: Producer {
            base_offset: i64::MAX - 100,
            partition_leader_epoch: i32::MAX,
            producer_id: i64::MAX,
            producer_epoch: i16::MAX,
            base_sequence: i32::MAX, // the second record's sequence wraps to i32::MIN
            is_transactional: true,
        },
        records: vec![
            record(-(1 << 62), None, None, &[]),
            record((1 << 62) - 1, Some(b""), Some(b""), &[("", None), ("e", Some(b""))]),
            record(0, Some(&[0xff, 0x00]), Some(&[0x80; 3]), &[("ünïcødé ☃", Some(&[0xc3, 0x28])), ("k", Some(b"v"))]),
        ],
    };
    let large_value = vec![b'x'; 40_000];
    let large = BatchModel {
        producer: Producer { base_offset: 1 << 40, ..producer_none() },
        records: vec![record(1, Some(b"big"), Some(&large_value), &[("h", Some(&large_value[..300]))])],
    };
    let many = BatchModel {
        producer: Producer { producer_id: 7, producer_epoch: 0, base_sequence: 0, ..producer_none() },
        records: (0..300).map(|i| record(1_000 + (i * 37) % 101, None, Some(&[i as u8; 3]), &[])).collect(),
    };
    vec![edges, large, many, fixture_model()]
}

#[test]
fn fixed_cases_kafka_protocol_to_rill() {
    for model in fixed_cases() {
        check_kafka_protocol_to_rill(std::slice::from_ref(&model));
    }
    check_kafka_protocol_to_rill(&fixed_cases());
}

#[test]
fn fixed_cases_rill_to_kafka_protocol() {
    let cases = fixed_cases();
    let with = |base_timestamp, log_append_time| {
        cases.iter().map(move |model| RillBatch { model: model.clone(), base_timestamp, log_append_time })
    };
    let batches: Vec<RillBatch> = with(None, false).chain(with(Some(0), true)).collect();
    for b in &batches {
        check_rill_to_kafka_protocol(std::slice::from_ref(b));
    }
    check_rill_to_kafka_protocol(&batches);
}

/// kafka-protocol's encoder drops `LogAppend` (see the module docs): whatever it writes, rill and
/// kafka-protocol's own decoder must read the same timestamp type from the bytes.
#[test]
fn timestamp_type_bit_read_alike() {
    let model = fixture_model();
    let records = kafka_protocol_records(&model, kp::TimestampType::LogAppend);
    let options = RecordEncodeOptions { version: 2, compression: kp::Compression::None };
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(&mut buffer, &records, &options).expect("kafka-protocol encodes");
    let rill = seen_by_rill(&buffer);
    let kafka_protocol = seen_by_kafka_protocol(&buffer);
    assert_eq!(rill, kafka_protocol);
}

/// Neither side writes anything for no records.
#[test]
fn no_records_no_batch() {
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: kp::Compression::None };
    RecordBatchEncoder::encode(&mut buffer, &Vec::<kp::Record>::new(), &options).expect("kafka-protocol encodes");
    assert!(buffer.is_empty());
    assert_eq!(batch::build_vec(BatchParams::default(), &[]), Err(rill_core::batch::BuildError::Empty));
}

fn bytes(len_max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=len_max)
}

fn model() -> impl Strategy<Value = Model> {
    (
        // Wide enough for multi-byte varlong deltas, negative ones included.
        -(1i64 << 40)..(1i64 << 40),
        option::of(bytes(24)),
        // Past 63 bytes the value's length takes a 2-byte varint.
        option::of(bytes(300)),
        // Any Unicode: header keys are UTF-8 strings in Kafka.
        btree_map("\\PC{0,6}", option::of(bytes(8)), 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| Model {
            timestamp,
            key,
            value,
            headers: headers.into_iter().collect(),
        })
}

fn batch_model() -> impl Strategy<Value = BatchModel> {
    let producer = (
        // Far from i64's ends, so that offsets and kafka-protocol's unchecked sums never overflow.
        -(1i64 << 62)..(1i64 << 62),
        any::<i32>(),
        any::<i64>(),
        any::<i16>(),
        any::<i32>(),
        any::<bool>(),
    )
        .prop_map(|(base_offset, epoch, producer_id, producer_epoch, base_sequence, is_transactional)| Producer {
            base_offset,
            partition_leader_epoch: epoch,
            producer_id,
            producer_epoch,
            base_sequence,
            is_transactional,
        });
    (producer, vec(model(), 1..8)).prop_map(|(producer, records)| BatchModel { producer, records })
}

fn rill_batch() -> impl Strategy<Value = RillBatch> {
    (batch_model(), option::of(-(1i64 << 40)..(1i64 << 40)), any::<bool>())
        .prop_map(|(model, base_timestamp, log_append_time)| RillBatch { model, base_timestamp, log_append_time })
}

/// Fixed seed and no failure files: every run checks the same cases.
fn config(seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(0x5249_4c4c_0001))]
    #[test]
    fn random_kafka_protocol_to_rill(models in vec(batch_model(), 1..=3)) {
        check_kafka_protocol_to_rill(&models);
    }
}

proptest! {
    #![proptest_config(config(0x5249_4c4c_0002))]
    #[test]
    fn random_rill_to_kafka_protocol(batches in vec(rill_batch(), 1..=3)) {
        check_rill_to_kafka_protocol(&batches);
    }
}

// ---- Batches the store must refuse ----

/// Sets `recordsCount` (and `lastOffsetDelta` to match) and reseals the CRC: a batch that lies
/// about its records but is otherwise well-framed.
fn with_records_count(batch: &[u8], records_count: i32) -> Vec<u8> {
    let mut header = BatchHeader::decode(batch).expect("a header");
    header.records_count = records_count;
    header.last_offset_delta = records_count - 1;
    let mut out = batch.to_vec();
    header.encode(&mut out).expect("room for the header");
    batch::seal_crc(&mut out).expect("a framed batch");
    out
}

/// Flips one byte of the records section at `at` (from the section's start), and reseals the
/// CRC when `reseal`, so that only decompression can tell.
fn corrupt_section(batch: &[u8], at: usize, reseal: bool) -> Vec<u8> {
    let mut out = batch.to_vec();
    out[HEADER_LEN + at] ^= 0x55;
    if reseal {
        batch::seal_crc(&mut out).expect("a framed batch");
    }
    out
}

fn gzip_fixture() -> Vec<u8> {
    kafka_protocol_encode(&mut BytesMut::new(), &fixture_model(), Compression::Gzip)
}

#[test]
fn corrupt_gzip_records_are_refused() {
    let gzip = gzip_fixture();
    let section_len = gzip.len() - HEADER_LEN;
    // Without a new CRC the batch CRC catches it before decompression.
    let unsealed = corrupt_section(&gzip, section_len / 2, false);
    assert!(matches!(Batch::parse(&unsealed), Err(BatchError::CrcMismatch { .. })));
    // With one, gzip's own checks must: the deflate stream, the header, the CRC32 and ISIZE trailer.
    for at in [2, 10, section_len / 2, section_len - 6, section_len - 2] {
        let resealed = corrupt_section(&gzip, at, true);
        let parsed = Batch::parse(&resealed).expect("a compressed batch's records are checked later");
        let result = decompress(Compression::Gzip, parsed.records_section(), DECOMPRESSED_BYTES_MAX);
        assert!(
            matches!(result, Err(DecompressError::Corrupt { codec: Compression::Gzip, .. })),
            "byte {at} of the gzip stream flipped: {result:?}"
        );
        assert!(RecordBatchDecoder::decode(&mut Bytes::from(resealed)).is_err(), "kafka-protocol refuses too");
    }
    // Truncated: the frame still matches its new batchLength, the gzip stream is cut short.
    let short = with_section(&gzip, Compression::Gzip, &gzip[HEADER_LEN..gzip.len() - 5]);
    let parsed = Batch::parse(&short).expect("framing is valid");
    assert!(decompress(Compression::Gzip, parsed.records_section(), DECOMPRESSED_BYTES_MAX).is_err());
}

#[test]
fn batches_claiming_more_records_than_they_hold_are_refused() {
    let none = kafka_protocol_encode(&mut BytesMut::new(), &fixture_model(), Compression::None);
    let liar = with_records_count(&none, 5);
    assert_eq!(Batch::parse(&liar), Err(BatchError::RecordCountMismatch { header: 5, found: 4 }));
    assert!(RecordBatchDecoder::decode(&mut Bytes::from(liar)).is_err(), "kafka-protocol refuses too");
    // Claiming fewer leaves bytes over: rill refuses, as Kafka's broker does ("Incorrect declared
    // batch size, records still remaining"). kafka-protocol ignores them (see the module docs).
    let short = with_records_count(&none, 3);
    assert!(matches!(Batch::parse(&short), Err(BatchError::TrailingBytes { .. })));
    // lastOffsetDelta below recordsCount - 1.
    let mut header = BatchHeader::decode(&none).expect("a header");
    header.last_offset_delta = 2;
    let mut bad_delta = none.clone();
    header.encode(&mut bad_delta).expect("room");
    batch::seal_crc(&mut bad_delta).expect("framed");
    assert!(matches!(Batch::parse(&bad_delta), Err(BatchError::InvalidLastOffsetDelta { .. })));

    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let compressed = kafka_protocol_encode(&mut BytesMut::new(), &fixture_model(), codec);
        let liar = with_records_count(&compressed, 5);
        let parsed = Batch::parse(&liar).expect("compressed records are checked after decompression");
        let section = decompress(codec, parsed.records_section(), DECOMPRESSED_BYTES_MAX).expect("valid stream");
        assert_eq!(
            batch::validate_decompressed(parsed.header(), &section),
            Err(BatchError::RecordCountMismatch { header: 5, found: 4 }),
            "{codec}"
        );
        let short = with_records_count(&compressed, 3);
        let parsed = Batch::parse(&short).expect("compressed records are checked after decompression");
        let section = decompress(codec, parsed.records_section(), DECOMPRESSED_BYTES_MAX).expect("valid stream");
        assert!(matches!(
            batch::validate_decompressed(parsed.header(), &section),
            Err(BatchError::TrailingBytes { .. })
        ));
    }
}

/// A compressed batch whose records' offset deltas run past `lastOffsetDelta`: the records
/// would claim offsets of the next batch.
fn gzip_with_offset_delta_past_last() -> Vec<u8> {
    let model = fixture_model();
    let ours = rill_build(&model, Some(model.min_timestamp()), false);
    let mut section = ours[HEADER_LEN..].to_vec();
    // Record 3's offsetDelta (varint 3 = 0x06) becomes 5 (0x0a); lengths are unchanged.
    let record_3 = batch::records_in(&section, 4).nth(3).expect("4 records").expect("valid");
    assert_eq!(record_3.offset_delta, 3);
    let at = position_of_offset_delta(&section, 3);
    assert_eq!(section[at], 0x06);
    section[at] = 0x0a;
    with_section(&ours, Compression::Gzip, &compress(Compression::Gzip, &section))
}

/// Byte position of record `index`'s `offsetDelta` in a records section.
fn position_of_offset_delta(section: &[u8], index: usize) -> usize {
    let mut at = 0;
    for _ in 0..index {
        // length varint (one byte for these small records) + body
        let length = (section[at] >> 1) as usize;
        at += 1 + length;
    }
    // length (1 byte), attributes (1 byte), then timestampDelta: a varlong.
    at += 2;
    while section[at] & 0x80 != 0 {
        at += 1;
    }
    at + 1
}

#[test]
fn offset_delta_past_last_offset_delta_is_refused_by_the_codec() {
    let batch = gzip_with_offset_delta_past_last();
    let parsed = Batch::parse(&batch).expect("framing and CRC are valid");
    let section = decompress(Compression::Gzip, parsed.records_section(), DECOMPRESSED_BYTES_MAX).expect("gzip");
    assert!(matches!(
        batch::validate_decompressed(parsed.header(), &section),
        Err(BatchError::Record { index: 3, .. })
    ));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
}

/// Through a real store: kafka-protocol's batches with every codec, sent as one produce
/// request, are accepted, get offsets, and read back through kafka-protocol; the bad batches
/// above are refused whole.
#[test]
fn store_accepts_every_codec_and_refuses_bad_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    runtime().block_on(async {
        let store = Store::open(Location::Dir(dir.path().into()), StoreConfig::default()).expect("store opens");
        store.create_topic("t", 1, TopicConfig::default()).await.expect("topic");
        let model = fixture_model();
        let mut request = BytesMut::new();
        for codec in CODECS {
            kafka_protocol_encode(&mut request, &model, codec);
        }
        let outcome = store.append("t", 0, request.to_vec()).await.expect("valid batches are stored");
        assert_eq!((outcome.base_offset, outcome.last_offset), (0, 19));

        let gzip = gzip_fixture();
        let none_len = batch::batch_len(&request).expect("a batch");
        let cases = [
            (corrupt_section(&gzip, (gzip.len() - HEADER_LEN) / 2, true), "corrupt gzip stream"),
            (with_records_count(&gzip, 5), "gzip batch claiming 5 of 4 records"),
            (with_records_count(&request[..none_len], 5), "uncompressed batch claiming 5 of 4 records"),
        ];
        for (bad, what) in cases {
            // A good batch first: the request is refused whole.
            let mut bad_request = request[..none_len].to_vec();
            bad_request.extend_from_slice(&bad);
            let result = store.append("t", 0, bad_request).await;
            assert!(
                matches!(
                    result,
                    Err(AppendError::InvalidBatch(
                        InvalidBatch::Decompress { index: 1, .. } | InvalidBatch::Codec { index: 1, .. }
                    ))
                ),
                "{what}: {result:?}"
            );
        }

        let read = store.read("t", 0, 0, 1 << 20).expect("read");
        assert_eq!(read.high_watermark, 20, "nothing of a refused request is stored");
        let seen = seen_by_kafka_protocol(&read.records);
        assert_eq!(seen.len(), 5);
        for (index, (seen, codec)) in seen.into_iter().zip(CODECS).enumerate() {
            let mut wanted = expected(&model, codec, false, model.min_timestamp());
            wanted.producer.base_offset = 4 * index as i64;
            for (offset, record) in (wanted.producer.base_offset..).zip(&mut wanted.records) {
                record.offset = offset;
            }
            // The broker sets partitionLeaderEpoch on append.
            wanted.producer.partition_leader_epoch = seen.producer.partition_leader_epoch;
            assert_eq!(seen, wanted, "{codec} batch read back");
        }
        store.shutdown().await;
    });
}

/// The store must refuse what the codec refuses: a compressed batch whose records claim offsets
/// past `lastOffsetDelta` would give consumers the next batch's offsets a second time. Kafka's
/// broker never stores such a batch (it reassigns inner offsets), and rill's own check of
/// uncompressed batches refuses it; accepting it would leave offset 5 in the log twice.
#[test]
fn store_refuses_offset_delta_past_last_offset_delta() {
    let dir = tempfile::tempdir().expect("tempdir");
    runtime().block_on(async {
        let store = Store::open(Location::Dir(dir.path().into()), StoreConfig::default()).expect("store opens");
        store.create_topic("t", 1, TopicConfig::default()).await.expect("topic");
        let result = store.append("t", 0, gzip_with_offset_delta_past_last()).await;
        store.shutdown().await;
        assert!(matches!(result, Err(AppendError::InvalidBatch(InvalidBatch::Codec { index: 0, .. }))), "{result:?}");
    });
}

// ---- Golden fixtures ----

/// The fixture files, one batch each, all holding [`fixture_model`]'s records.
const FIXTURES: [(Compression, &str); 5] = [
    (Compression::None, "kafka_protocol_none.bin"),
    (Compression::Gzip, "kafka_protocol_gzip.bin"),
    (Compression::Snappy, "kafka_protocol_snappy.bin"),
    (Compression::Lz4, "kafka_protocol_lz4.bin"),
    (Compression::Zstd, "kafka_protocol_zstd.bin"),
];

/// 2023-11-14T22:13:20Z, the fixtures' first timestamp.
const T0: i64 = 1_700_000_000_000;

/// The fixtures' records; `core/tests/golden_fixtures.rs` and `core/tests/fixtures/README.md`
/// spell out the same values.
fn fixture_model() -> BatchModel {
    BatchModel {
        producer: Producer {
            base_offset: 0,
            partition_leader_epoch: -1,
            producer_id: 4242,
            producer_epoch: 1,
            base_sequence: 17,
            is_transactional: false,
        },
        records: vec![
            record(T0, Some(b"sensor-1"), Some(b"21.5"), &[("unit", Some(b"C"))]),
            record(T0 + 250, None, Some(b"21.7"), &[]),
            record(T0 + 125, Some(b"sensor-2"), None, &[("trace", None)]),
            record(T0 + 1000, Some(b"sensor-1"), Some(b"22.0"), &[("unit", Some(b"C")), ("seq", Some(&[0, 1]))]),
        ],
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures")
}

/// Regenerates the fixtures with kafka-protocol and compares them byte for byte with the
/// committed files; `RILL_BLESS_FIXTURES=1` rewrites the files instead.
#[test]
fn golden_fixtures_match_kafka_protocol() {
    let bless = std::env::var("RILL_BLESS_FIXTURES").is_ok_and(|value| value == "1");
    let model = fixture_model();
    let mut uncompressed_section = None;
    for (codec, name) in FIXTURES {
        let fresh = kafka_protocol_encode(&mut BytesMut::new(), &model, codec);
        let path = fixtures_dir().join(name);
        if bless {
            std::fs::create_dir_all(fixtures_dir()).expect("create the fixtures directory");
            std::fs::write(&path, &fresh).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        }
        let committed = std::fs::read(&path).unwrap_or_else(|error| {
            panic!("read {}: {error} (RILL_BLESS_FIXTURES=1 creates the fixtures)", path.display())
        });
        let wanted = vec![expected(&model, codec, false, model.min_timestamp())];
        assert_eq!(seen_by_rill(&committed), wanted, "{name} holds the fixture records");
        if committed != fresh {
            let records_still_equal = seen_by_rill(&fresh) == wanted;
            panic!(
                "{name}: kafka-protocol now encodes the fixture records into different bytes ({} committed, {} now). \
                 Decoded records equal: {records_still_equal}; if so, only a compressor's output changed (a \
                 dependency update), else the codec drifted. Check, then rerun with RILL_BLESS_FIXTURES=1.",
                committed.len(),
                fresh.len()
            );
        }
        // Every compressed fixture decompresses to the uncompressed fixture's records section.
        let parsed = Batch::parse(&committed).expect("the fixture parses");
        let section = match codec {
            Compression::None => parsed.records_section().to_vec(),
            _ => decompressed_section(&parsed),
        };
        assert_eq!(uncompressed_section.get_or_insert_with(|| section.clone()), &section, "{name}");
    }
}
