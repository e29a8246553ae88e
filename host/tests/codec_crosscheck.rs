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

mod codec;

use codec::*;

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
