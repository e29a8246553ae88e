//! The real `rill` binary against rskafka, a Kafka client nobody here wrote: topics, produce in
//! every compression codec, fetch from any offset, list offsets, restart.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use rill_tests::Running;
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

fn record(i: usize, value_len: usize) -> Record {
    Record {
        key: Some(format!("key-{i}").into_bytes()),
        value: Some(vec![(i % 251) as u8; value_len]),
        headers: BTreeMap::from([("sensor".to_owned(), format!("s{}", i % 7).into_bytes())]),
        // Recent: retention (7 days by default) would delete older records at the next start.
        timestamp: Utc.timestamp_millis_opt(Utc::now().timestamp_millis() + i as i64).unwrap(),
    }
}

async fn connect(addr: &str) -> Client {
    ClientBuilder::new(vec![addr.to_owned()]).build().await.expect("rskafka connects")
}

async fn partition(client: &Client, topic: &str, partition: i32) -> PartitionClient {
    client.partition_client(topic, partition, UnknownTopicHandling::Error).await.expect("partition client")
}

/// Fetches from `offset` until `count` records arrived.
async fn fetch_all(client: &PartitionClient, mut offset: i64, count: usize) -> Vec<(i64, Record)> {
    let mut out = Vec::new();
    while out.len() < count {
        let (records, high_watermark) = client.fetch_records(offset, 1..1_000_000, 1_000).await.expect("fetch");
        assert!(high_watermark >= offset);
        for r in records {
            assert!(r.offset >= offset, "records come in offset order");
            offset = r.offset + 1;
            out.push((r.offset, r.record));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rskafka_produces_and_consumes_in_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rill, addr) = Running::serve_on(dir.path());
    let client = connect(&addr).await;
    let controller = client.controller_client().unwrap();
    controller.create_topic("sensors", 2, 1, 5_000).await.expect("create topic");
    let err = controller.create_topic("sensors", 2, 1, 5_000).await.expect_err("a second create is refused");
    assert!(err.to_string().contains("TopicAlreadyExists"), "{err}");

    let p0 = partition(&client, "sensors", 0).await;
    let mut produced = Vec::new();
    let codecs =
        [Compression::NoCompression, Compression::Gzip, Compression::Lz4, Compression::Snappy, Compression::Zstd];
    for (round, codec) in codecs.into_iter().enumerate() {
        let batch: Vec<Record> = (0..50).map(|i| record(round * 50 + i, 100 + i)).collect();
        let offsets = p0.produce(batch.clone(), codec).await.expect("produce");
        assert_eq!(offsets, ((round * 50) as i64..(round * 50 + 50) as i64).collect::<Vec<_>>(), "{codec:?}");
        produced.extend(batch);
    }
    let fetched = fetch_all(&p0, 0, produced.len()).await;
    assert_eq!(fetched.len(), produced.len());
    for ((offset, got), (i, want)) in fetched.iter().zip(produced.iter().enumerate()) {
        assert_eq!(*offset, i as i64);
        assert_eq!(got, want, "record {i} comes back as produced");
    }
    // From the middle of a compressed batch: the batch holding it comes back, rskafka skips ahead.
    let from_middle = fetch_all(&p0, 125, 10).await;
    assert_eq!(from_middle[0].0, 125);
    assert_eq!(p0.get_offset(OffsetAt::Earliest).await.unwrap(), 0);
    assert_eq!(p0.get_offset(OffsetAt::Latest).await.unwrap(), 250);
    // Partition 1 is untouched and empty; an empty fetch waits at most max_wait_ms.
    let p1 = partition(&client, "sensors", 1).await;
    let (records, high_watermark) = p1.fetch_records(0, 1..1_000_000, 200).await.unwrap();
    assert!(records.is_empty() && high_watermark == 0);
    let err = p0.fetch_records(10_000, 1..1_000_000, 100).await.expect_err("beyond the end");
    assert!(err.to_string().contains("OffsetOutOfRange"), "{err}");

    // Topics are listed, and survive a restart with their records.
    let topics = client.list_topics().await.unwrap();
    assert!(topics.iter().any(|t| t.name == "sensors" && t.partitions.len() == 2), "{topics:?}");
    drop(client);
    rill.stop();
    let (mut rill, addr) = Running::serve_on(dir.path());
    let client = connect(&addr).await;
    let p0 = partition(&client, "sensors", 0).await;
    let again = fetch_all(&p0, 0, produced.len()).await;
    assert_eq!(again, fetched, "the same records at the same offsets after a restart");
    // DeleteRecords moves the log start; what is below it is gone, what is above stays.
    p0.delete_records(120, 5_000).await.expect("delete records");
    assert_eq!(p0.get_offset(OffsetAt::Earliest).await.unwrap(), 120);
    let err = p0.fetch_records(10, 1..1_000_000, 100).await.expect_err("below the log start");
    assert!(err.to_string().contains("OffsetOutOfRange"), "{err}");
    assert_eq!(fetch_all(&p0, 120, 1).await[0], fetched[120]);
    controller_delete(&client, "sensors").await;
    rill.stop();
}

async fn controller_delete(client: &Client, topic: &str) {
    let controller = client.controller_client().unwrap();
    controller.delete_topic(topic, 5_000).await.expect("delete topic");
    let topics = client.list_topics().await.unwrap();
    assert!(topics.iter().all(|t| t.name != topic), "{topics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_waiting_for_data_is_woken_by_an_append() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rill, addr) = Running::serve_on(dir.path());
    let client = connect(&addr).await;
    client.controller_client().unwrap().create_topic("wake", 1, 1, 5_000).await.unwrap();
    let consumer = partition(&client, "wake", 0).await;
    let producer_client = connect(&addr).await;
    let producer = partition(&producer_client, "wake", 0).await;
    let started = std::time::Instant::now();
    let waiting = tokio::spawn(async move { consumer.fetch_records(0, 1..1_000_000, 10_000).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    producer.produce(vec![record(1, 10)], Compression::NoCompression).await.unwrap();
    let (records, _) = waiting.await.unwrap().unwrap();
    assert_eq!(records.len(), 1);
    // Woken by the append, not by the 10 s max_wait_ms.
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    rill.stop();
}
