//! Hostile Kafka frames against the real `rill` binary: each closes its own connection, unanswered,
//! and a well-behaved client (rskafka) on another connection keeps producing throughout.
//!
//! `cargo xtask cross` runs this file against the ARM binaries under qemu as well. On 32-bit armv7
//! the claims below are the dangerous ones: 2^24 … 2^28 elements ask kafka-protocol's decoder for
//! 64 MiB … 4 GiB up front, which a 3 GiB address space cannot give and the process would abort
//! on; the broker refuses them before decoding (`kafka::bounds`).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use rill_tests::Running;
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request frame: size, then a header v1 (or v2 when `flexible`) with client id "x", then `body`.
fn request(api_key: i16, version: i16, flexible: bool, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&7i32.to_be_bytes());
    frame.extend_from_slice(&[0, 1, b'x']);
    if flexible {
        frame.push(0); // no tagged fields in the header
    }
    frame.extend_from_slice(body);
    [&(frame.len() as i32).to_be_bytes()[..], &frame].concat()
}

/// An unsigned varint holding `count + 1`: a flexible version's array count.
fn compact_count(count: u32) -> Vec<u8> {
    let mut value = u64::from(count) + 1;
    let mut out = Vec::new();
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

/// Requests of the served APIs whose arrays claim `count` elements in a few bytes.
fn huge_claims(count: u32) -> Vec<(String, Vec<u8>)> {
    let big = count.to_be_bytes();
    let produce_head: &[u8] = &[0xff, 0xff, 0, 1, 0, 0, 0x03, 0xe8]; // null transactional id, acks 1, timeout
    let claims = [
        ("Metadata v0 topics", request(3, 0, false, &big)),
        ("Metadata v12 topics", request(3, 12, true, &compact_count(count))),
        ("Produce v3 topic_data", request(0, 3, false, &[produce_head, &big].concat())),
        ("Produce v7 partition_data", request(0, 7, false, &[produce_head, &[0, 0, 0, 1, 0, 1, b't'], &big].concat())),
        ("Produce v1 topic_data", request(0, 1, false, &[&[0, 1, 0, 0, 0x03, 0xe8], &big[..]].concat())),
        (
            "Fetch v11 topics",
            request(
                1,
                11,
                false,
                &[&[0xff; 4][..], &[0, 0, 0, 0], &[0, 0, 0, 1], &[0, 0, 0, 1], &[0], &[0; 8], &big].concat(),
            ),
        ),
        (
            "OffsetFetch v1 partition_indexes",
            request(9, 1, false, &[&[0, 1, b'g', 0, 0, 0, 1, 0, 1, b't'], &big[..]].concat()),
        ),
        ("DescribeGroups v5 groups", request(15, 5, true, &compact_count(count))),
        ("DeleteGroups v1 groups_names", request(42, 1, false, &big)),
        (
            "JoinGroup v5 protocols",
            request(
                11,
                5,
                false,
                &[&[0, 1, b'g', 0, 0, 0x27, 0x10, 0, 0, 0x27, 0x10, 0, 0, 0xff, 0xff, 0, 1, b'c'], &big[..]].concat(),
            ),
        ),
    ];
    claims.into_iter().map(|(what, frame)| (format!("{what} claiming {count}"), frame)).collect()
}

/// Frames a broker must survive.
fn hostile_frames() -> Vec<(String, Vec<u8>)> {
    let mut random = Vec::with_capacity(4096);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..4096 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        random.push(state as u8);
    }
    let mut frames = vec![
        ("oversized".to_owned(), i32::MAX.to_be_bytes().to_vec()),
        ("negative size".to_owned(), (-5i32).to_be_bytes().to_vec()),
        ("truncated".to_owned(), [&100i32.to_be_bytes()[..], &[0, 18, 0, 3, 0]].concat()),
        ("unknown api key".to_owned(), [&8i32.to_be_bytes()[..], &[0x03, 0xe7, 0, 0, 0, 0, 0, 1]].concat()),
        ("random bytes".to_owned(), random),
    ];
    for count in [i32::MAX as u32, 1 << 28, 1 << 26, 1 << 24] {
        frames.extend(huge_claims(count));
    }
    frames
}

fn record(i: usize) -> Record {
    Record {
        key: None,
        value: Some(format!("steady-{i}").into_bytes()),
        headers: BTreeMap::new(),
        timestamp: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_close_only_their_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rill, addr) = Running::serve_on(dir.path());
    let client = ClientBuilder::new(vec![addr.clone()]).build().await.expect("rskafka connects");
    client.controller_client().unwrap().create_topic("steady", 1, 1, 5_000).await.unwrap();
    let steady = client.partition_client("steady", 0, UnknownTopicHandling::Error).await.unwrap();
    let mut produced = 0;
    for (what, bytes) in hostile_frames() {
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let _ = socket.write_all(&bytes).await;
        let _ = socket.shutdown().await;
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "{what}: the broker kept the connection open");
        assert!(rest.is_empty(), "{what}: answered with {} bytes", rest.len());
        let offsets = steady.produce(vec![record(produced)], Compression::NoCompression).await;
        assert_eq!(offsets.unwrap(), vec![produced as i64], "{what}: the other client still works");
        produced += 1;
    }
    let (records, _) = steady.fetch_records(0, 1..1_000_000, 1_000).await.unwrap();
    assert_eq!(records.len(), produced);
    rill.stop();
    let refused = rill.log.iter().filter(|line| line.contains("refused before decoding")).count();
    assert!(refused >= 40, "{refused} refusals logged:\n{}", rill.log.join("\n"));
}
