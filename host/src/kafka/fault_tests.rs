//! What Kafka clients see when the disk fills: produce answers KAFKA_STORAGE_ERROR (retriable:
//! the client backs off and tries again), reads keep being served, and produce works again once
//! there is room.

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kafka_protocol::protocol::StrBytes;
use rill_core::batch::{BatchParams, RecordSpec, build_vec};

use super::{Broker, fetch, produce};
use crate::storage::fault::SimDisk;
use crate::storage::{Location, Store, StoreConfig, TopicConfig};

fn batch(records: usize, value_len: usize) -> Bytes {
    let value = vec![b'x'; value_len];
    let specs: Vec<RecordSpec> = (0..records)
        .map(|_| RecordSpec { timestamp: crate::clock::now_ms(), key: None, value: Some(&value), headers: &[] })
        .collect();
    Bytes::from(build_vec(BatchParams::default(), &specs).unwrap())
}

/// The error code of producing `records` to partition 0 of `t` with acks=-1.
async fn produce_code(broker: &Broker, records: Bytes) -> i16 {
    let partition = PartitionProduceData::default().with_index(0).with_records(Some(records));
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partition_data(vec![partition]);
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![topic]);
    let response = produce::produce(broker, request, 9).await.expect("acks=-1 answers");
    response.responses[0].partition_responses[0].error_code
}

#[tokio::test]
async fn a_full_disk_answers_storage_error_and_keeps_serving_reads() {
    let disk = SimDisk::new();
    let store = Store::open(Location::Backend(disk.factory()), StoreConfig::default()).unwrap();
    let broker = super::tests::broker_on(store);
    broker.store.create_topic("t", 1, TopicConfig::default()).await.unwrap();
    assert_eq!(produce_code(&broker, batch(3, 100)).await, 0);
    disk.set_capacity(Some(disk.size_bytes()));
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(produce_code(&broker, batch(10, 4000)).await);
        if codes.last() != Some(&0) {
            break;
        }
    }
    assert_eq!(codes.last().copied(), Some(ResponseError::KafkaStorageError.code()), "{codes:?}");

    // The writer reopens the database after the failed commit; a fetch that comes meanwhile gets
    // the retriable NOT_LEADER_OR_FOLLOWER, as from a restarting broker, and the retry is served.
    let mut read = None;
    for _ in 0..100 {
        let partition =
            FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20);
        let topic = FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![partition]);
        let request = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![topic]);
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let response = fetch::fetch(&broker, request, 12, stopping).await;
        let answer = response.responses[0].partitions[0].clone();
        if answer.error_code != ResponseError::NotLeaderOrFollower.code() {
            read = Some(answer);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let read = read.expect("the reopen ends");
    assert_eq!(read.error_code, 0, "reads are served while the disk is full");
    assert!(!read.records.as_ref().unwrap().is_empty());

    disk.set_capacity(None);
    let mut resumed = false;
    for _ in 0..200 {
        if produce_code(&broker, batch(1, 10)).await == 0 {
            resumed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(resumed, "produce works again once there is room");
    broker.store.shutdown().await;
}
