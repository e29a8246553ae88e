//! `kill -9` loses nothing acknowledged: 100k records produced with acks=-1 and a consumer group's
//! committed offsets are all there, in order and once, after the broker is killed and restarted,
//! and librdkafka sees the same cluster id before and after. The batches (~20 KB each) and the
//! offset commits are small enough to be made durable by the storage journal alone, so the
//! restart replays them from `rill.journal` (`docs/storage.md`).

use std::collections::BTreeMap;

use chrono::Utc;
use rill_tests::{Running, kcat, stdout_lines};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

const RECORDS: usize = 100_000;
const PER_BATCH: usize = 1_000;

fn value(i: usize) -> Vec<u8> {
    format!("reading-{i}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_record_or_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rill, broker) = Running::serve_on(dir.path());
    let client = ClientBuilder::new(vec![broker.clone()]).build().await.unwrap();
    client.controller_client().unwrap().create_topic("durable", 1, 1, 5_000).await.unwrap();
    let partition = client.partition_client("durable", 0, UnknownTopicHandling::Error).await.unwrap();
    // rskafka produces with acks=-1: each call returns once the broker fsynced the batch.
    for start in (0..RECORDS).step_by(PER_BATCH) {
        let batch = (start..start + PER_BATCH)
            .map(|i| Record { key: None, value: Some(value(i)), headers: BTreeMap::new(), timestamp: Utc::now() })
            .collect();
        let offsets = partition.produce(batch, Compression::NoCompression).await.expect("acknowledged");
        assert_eq!(offsets.first().copied(), Some(start as i64));
    }
    // A consumer group reads everything and commits as it leaves.
    let group_args = ["-G", "survivors", "durable", "-e", "-X", "auto.offset.reset=earliest", "-f", "%o\\n"];
    let read = stdout_lines(&kcat(&broker, &group_args, None));
    assert_eq!(read.len(), RECORDS, "the group read every record once");
    drop(partition);
    drop(client);
    let cluster_id = rill_tests::python_client("confluent_kafka_cluster_id.py", &[&broker]);

    rill.signal(libc::SIGKILL);
    rill.wait_exit();
    let (mut rill, broker) = Running::serve_on(dir.path());
    let after = rill_tests::python_client("confluent_kafka_cluster_id.py", &[&broker]);
    assert_eq!(after, cluster_id, "a restart is the same cluster to clients");
    let client = ClientBuilder::new(vec![broker.clone()]).build().await.unwrap();
    let partition = client.partition_client("durable", 0, UnknownTopicHandling::Error).await.unwrap();
    let mut offset = 0i64;
    while (offset as usize) < RECORDS {
        let (records, high_watermark) = partition.fetch_records(offset, 1..4_000_000, 1_000).await.unwrap();
        assert_eq!(high_watermark, RECORDS as i64, "nothing more, nothing less");
        let from = offset;
        // A fetch from inside a batch returns the whole batch; skip what comes before.
        for record in records.into_iter().filter(|r| r.offset >= from) {
            assert_eq!(record.offset, offset, "in order, none missing");
            assert_eq!(record.record.value, Some(value(offset as usize)), "offset {offset}");
            offset += 1;
        }
    }
    // The group's committed offset survived: it reads only what came after.
    kcat(&broker, &["-P", "-t", "durable"], Some("after-1\nafter-2\n"));
    let read = stdout_lines(&kcat(&broker, &group_args, None));
    assert_eq!(read, vec![RECORDS.to_string(), (RECORDS + 1).to_string()]);
    drop(partition);
    drop(client);
    rill.stop();
}
