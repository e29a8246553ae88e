//! The host decompresses librdkafka's batches (`core/tests/fixtures/librdkafka_*.bin`) to the
//! records librdkafka was given: gzip, snappy (librdkafka writes raw snappy, not the Java client's
//! xerial framing), LZ4 frames and zstd.

use rill::compression::decompress;
use rill::limits::DECOMPRESSED_BYTES_MAX;
use rill_core::batch::{Batch, Compression, records_in};

const COMPRESSED: [(&str, &[u8], bool); 5] = [
    ("gzip", include_bytes!("../../core/tests/fixtures/librdkafka_gzip.bin"), true),
    ("snappy", include_bytes!("../../core/tests/fixtures/librdkafka_snappy.bin"), true),
    ("lz4", include_bytes!("../../core/tests/fixtures/librdkafka_lz4.bin"), true),
    ("zstd", include_bytes!("../../core/tests/fixtures/librdkafka_zstd.bin"), true),
    ("idempotent zstd", include_bytes!("../../core/tests/fixtures/librdkafka_idempotent.bin"), false),
];

const RECORDS: [(&[u8], &[u8]); 3] = [(b"sensor-1", b"21.5"), (b"sensor-2", b"21.7"), (b"sensor-1", b"22.0")];

#[test]
fn librdkafka_batches_decompress_to_their_records() {
    for (name, bytes, with_headers) in COMPRESSED {
        let parsed = Batch::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_ne!(parsed.compression(), Compression::None, "{name}");
        let section = decompress(parsed.compression(), parsed.records_section(), DECOMPRESSED_BYTES_MAX)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let records: Vec<_> = records_in(&section, parsed.header().records_count)
            .map(|r| r.unwrap_or_else(|e| panic!("{name}: {e}")))
            .collect();
        assert_eq!(records.len(), RECORDS.len(), "{name}");
        for (record, (key, value)) in records.iter().zip(RECORDS) {
            assert_eq!((record.key, record.value), (Some(key), Some(value)), "{name}");
            let headers: Vec<_> = record.headers().map(|h| (h.key, h.value)).collect();
            let expected: Vec<(&[u8], Option<&[u8]>)> =
                if with_headers { vec![(b"unit", Some(b"C")), (b"seq", Some(b"1"))] } else { vec![] };
            assert_eq!(headers, expected, "{name}");
        }
    }
}
