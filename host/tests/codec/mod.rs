//! Shared by the codec tests (`codec_crosscheck`, `codec_refusals`, `codec_golden`): record
//! models, and encoding and decoding them with `rill-core` and with the `kafka-protocol` crate.
//! Each test binary uses a part of it, so unused items are expected here.
#![allow(dead_code, unused_imports)]

pub use std::io::Write;
pub use std::path::{Path, PathBuf};

pub use bytes::{Bytes, BytesMut};
pub use kafka_protocol::protocol::StrBytes;
pub use kafka_protocol::records::{self as kp, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};
pub use proptest::collection::{btree_map, vec};
pub use proptest::option;
pub use proptest::prelude::*;
pub use proptest::test_runner::RngSeed;
pub use rill::compression::{DecompressError, decompress};
pub use rill::limits::DECOMPRESSED_BYTES_MAX;
pub use rill::storage::{AppendError, InvalidBatch, Location, Store, StoreConfig, TopicConfig};
pub use rill_core::batch::{
    self, Batch, BatchBuilder, BatchError, BatchHeader, BatchParams, Compression, HEADER_LEN, LOG_OVERHEAD, RecordSpec,
    TimestampType,
};

pub const CODECS: [Compression; 5] =
    [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

/// Cases per property test: each case encodes up to 3 batches with each of the 5 codecs.
pub const CASES: u32 = 300;

/// Size of the buffer `BatchBuilder` fills: larger than any batch the tests build.
pub const FIXED_BUFFER_BYTES: usize = 64 * 1024;

/// A record as plain owned data: what both implementations are compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Distinct UTF-8 keys: all that kafka-protocol can represent (see the module docs).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The batch fields a producer chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Producer {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub is_transactional: bool,
}

/// One batch to encode: at least one record.
#[derive(Clone, Debug)]
pub struct BatchModel {
    pub producer: Producer,
    pub records: Vec<Model>,
}

impl BatchModel {
    pub fn min_timestamp(&self) -> i64 {
        self.records.iter().map(|record| record.timestamp).min().expect("a batch has records")
    }
}

/// What a decoder saw in one batch: the fields both implementations expose.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub compression: Compression,
    pub log_append_time: bool,
    pub producer: Producer,
    pub base_timestamp: i64,
    pub records: Vec<SeenRecord>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct SeenRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// What a correct decoder sees in `model` encoded with these settings.
pub fn expected(model: &BatchModel, compression: Compression, log_append_time: bool, base_timestamp: i64) -> Seen {
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

pub fn to_kafka_protocol(codec: Compression) -> kp::Compression {
    match codec {
        Compression::None => kp::Compression::None,
        Compression::Gzip => kp::Compression::Gzip,
        Compression::Snappy => kp::Compression::Snappy,
        Compression::Lz4 => kp::Compression::Lz4,
        Compression::Zstd => kp::Compression::Zstd,
    }
}

pub fn from_kafka_protocol(codec: kp::Compression) -> Compression {
    match codec {
        kp::Compression::None => Compression::None,
        kp::Compression::Gzip => Compression::Gzip,
        kp::Compression::Snappy => Compression::Snappy,
        kp::Compression::Lz4 => Compression::Lz4,
        kp::Compression::Zstd => Compression::Zstd,
    }
}

pub fn kafka_protocol_records(model: &BatchModel, timestamp_type: kp::TimestampType) -> Vec<kp::Record> {
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
pub fn kafka_protocol_encode(out: &mut BytesMut, model: &BatchModel, codec: Compression) -> Vec<u8> {
    let start = out.len();
    let options = RecordEncodeOptions { version: 2, compression: to_kafka_protocol(codec) };
    let records = kafka_protocol_records(model, kp::TimestampType::Creation);
    RecordBatchEncoder::encode(out, &records, &options).expect("kafka-protocol encodes");
    let batch = out[start..].to_vec();
    assert_eq!(batch::batch_len(&batch), Ok(batch.len()), "kafka-protocol wrote exactly one batch");
    batch
}

/// Every batch in `bytes` as kafka-protocol decodes it.
pub fn seen_by_kafka_protocol(bytes: &[u8]) -> Vec<Seen> {
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

pub fn rill_params(producer: &Producer, base_timestamp: Option<i64>, log_append_time: bool) -> BatchParams {
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
pub type HeaderRefs<'a> = Vec<(&'a [u8], Option<&'a [u8]>)>;

/// `model` as one uncompressed batch built by rill, with `build_vec` and checked against
/// `BatchBuilder` writing into a fixed buffer.
pub fn rill_build(model: &BatchModel, base_timestamp: Option<i64>, log_append_time: bool) -> Vec<u8> {
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
pub fn with_section(batch: &[u8], codec: Compression, section: &[u8]) -> Vec<u8> {
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
pub fn compress(codec: Compression, section: &[u8]) -> Vec<u8> {
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
pub fn decompressed_section(parsed: &Batch<'_>) -> Vec<u8> {
    let section = decompress(parsed.compression(), parsed.records_section(), DECOMPRESSED_BYTES_MAX)
        .unwrap_or_else(|error| panic!("host decompresses: {error}"));
    batch::validate_decompressed(parsed.header(), &section)
        .unwrap_or_else(|error| panic!("decompressed records are valid: {error}"));
    section
}

/// Every batch in `bytes` as rill reads it, checking on the way the header fields kafka-protocol
/// does not expose (`lastOffsetDelta`, `maxTimestamp`, `recordsCount`, the control bit).
pub fn seen_by_rill(bytes: &[u8]) -> Vec<Seen> {
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
pub fn check_kafka_protocol_to_rill(models: &[BatchModel]) {
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
pub struct RillBatch {
    pub model: BatchModel,
    pub base_timestamp: Option<i64>,
    pub log_append_time: bool,
}

/// rill builds `batches` with every codec (compressed sections sealed by rill) into one buffer;
/// kafka-protocol and rill must both read back the models.
pub fn check_rill_to_kafka_protocol(batches: &[RillBatch]) {
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

pub fn producer_none() -> Producer {
    Producer {
        base_offset: 0,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        is_transactional: false,
    }
}

pub fn record(timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]) -> Model {
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
pub fn fixed_cases() -> Vec<BatchModel> {
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

/// 2023-11-14T22:13:20Z, the fixtures' first timestamp.
pub const T0: i64 = 1_700_000_000_000;

/// The fixtures' records; `core/tests/golden_fixtures.rs` and `core/tests/fixtures/README.md`
/// spell out the same values.
pub fn fixture_model() -> BatchModel {
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
