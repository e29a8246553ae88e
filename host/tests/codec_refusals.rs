//! Batches the store must refuse, checked in the codec (with kafka-protocol as a second opinion)
//! and through a real `Store`: corrupt compressed records, record counts that lie, and record
//! offsets past `lastOffsetDelta`.

mod codec;

use codec::*;

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
        let mut model = fixture_model();
        let mut request = BytesMut::new();
        for codec in CODECS {
            kafka_protocol_encode(&mut request, &model, codec);
            // One idempotent producer's batches follow each other in sequence.
            model.producer.base_sequence += model.records.len() as i32;
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
            wanted.producer.base_sequence = fixture_model().producer.base_sequence + 4 * index as i32;
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
