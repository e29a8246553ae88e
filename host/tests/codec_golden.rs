//! The golden fixtures in `core/tests/fixtures/`, made by the `kafka-protocol` crate, are
//! regenerated here and compared byte for byte; `RILL_BLESS_FIXTURES=1` rewrites them instead.
//! `core/tests/golden_fixtures.rs` checks the same files with `rill-core` alone.

mod codec;

use codec::*;

// ---- Golden fixtures ----

/// The fixture files, one batch each, all holding [`fixture_model`]'s records.
const FIXTURES: [(Compression, &str); 5] = [
    (Compression::None, "kafka_protocol_none.bin"),
    (Compression::Gzip, "kafka_protocol_gzip.bin"),
    (Compression::Snappy, "kafka_protocol_snappy.bin"),
    (Compression::Lz4, "kafka_protocol_lz4.bin"),
    (Compression::Zstd, "kafka_protocol_zstd.bin"),
];

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
