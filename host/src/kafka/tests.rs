//! Every served API at every served version: the handlers' responses must encode (kafka-protocol
//! refuses a field set in a version that lacks it) and decode again as a client would.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig, CreateTopicsRequest};
use kafka_protocol::messages::delete_topics_request::{DeleteTopicState, DeleteTopicsRequest};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kafka_protocol::messages::{ApiKey, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rill_core::batch::{BatchParams, RecordSpec, build_vec};

use super::versions::served;
use super::{Broker, admin, fetch, metadata, produce, versions};
use crate::config::KafkaSection;
use crate::storage::{Location, Store, StoreConfig};

fn broker(dir: &tempfile::TempDir) -> Broker {
    let store = Store::open(Location::Dir(dir.path().to_owned()), StoreConfig::default()).expect("store opens");
    Broker {
        store,
        config: KafkaSection::default(),
        advertised_host: "127.0.0.1".into(),
        advertised_port: 9092,
        cluster_id: "test-cluster".into(),
    }
}

fn name(text: &str) -> TopicName {
    TopicName(StrBytes::from_string(text.to_owned()))
}

fn versions_of(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (min, max) = served(key).expect("served");
    min..=max
}

/// Encodes `response` at `version` and decodes it back; panics naming the API on failure.
fn round_trip<R: Encodable + Decodable>(key: ApiKey, version: i16, response: &R) -> R {
    let mut out = BytesMut::new();
    response.encode(&mut out, version).unwrap_or_else(|e| panic!("{key:?} v{version} response does not encode: {e}"));
    R::decode(&mut out.freeze(), version).unwrap_or_else(|e| panic!("{key:?} v{version} response does not decode: {e}"))
}

fn records(count: usize) -> Bytes {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let specs: Vec<RecordSpec> =
        (0..count).map(|_| RecordSpec { timestamp: now, key: Some(b"k"), value: Some(b"v"), headers: &[] }).collect();
    Bytes::from(build_vec(BatchParams::default(), &specs).unwrap())
}

#[tokio::test]
async fn api_versions_and_metadata_encode_at_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(&dir);
    for version in versions_of(ApiKey::ApiVersions) {
        round_trip(ApiKey::ApiVersions, version, &versions::api_versions());
    }
    for version in versions_of(ApiKey::Metadata) {
        let asked = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("auto"))),
                MetadataRequestTopic::default().with_name(Some(name("bad name"))),
            ]))
            .with_allow_auto_topic_creation(true);
        let response = round_trip(ApiKey::Metadata, version, &metadata::metadata(&broker, asked, version).await);
        assert_eq!(response.brokers.len(), 1);
        assert_eq!(response.topics.len(), 2);
        assert_eq!(response.topics[0].error_code, 0, "v{version}: auto-created");
        assert_ne!(response.topics[1].error_code, 0, "v{version}: invalid name refused");
        let all = MetadataRequest::default().with_topics(if version == 0 { Some(vec![]) } else { None });
        let response = round_trip(ApiKey::Metadata, version, &metadata::metadata(&broker, all, version).await);
        assert_eq!(response.topics.len(), 1, "v{version}: every topic");
    }
    broker.store.shutdown().await;
}

#[tokio::test]
async fn topic_admin_encodes_at_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(&dir);
    for version in versions_of(ApiKey::CreateTopics) {
        let topic = format!("created-{version}");
        let config = CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("retention.ms"))
            .with_value(Some(StrBytes::from_static_str("60000")));
        let request = CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default().with_name(name(&topic)).with_num_partitions(2).with_replication_factor(1).with_configs(vec![config]),
            CreatableTopic::default().with_name(name("bad/name")).with_num_partitions(1).with_replication_factor(1),
            CreatableTopic::default().with_name(name(&topic)).with_num_partitions(1).with_replication_factor(3),
        ]);
        let response = round_trip(ApiKey::CreateTopics, version, &admin::create_topics(&broker, request, version).await);
        let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(codes[0], 0, "v{version}");
        assert!(codes[1] != 0 && codes[2] != 0, "v{version}: {codes:?}");
        assert_eq!(broker.store.topic(&topic).unwrap().config.retention_ms, Some(60_000));
    }
    for version in versions_of(ApiKey::DeleteTopics) {
        let topic = format!("created-{}", version + 1);
        let request = if version >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(name(&topic))),
                DeleteTopicState::default().with_name(Some(name("never-was"))),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&topic), name("never-was")])
        };
        let response = round_trip(ApiKey::DeleteTopics, version, &admin::delete_topics(&broker, request, version).await);
        assert_eq!(response.responses[0].error_code, 0, "v{version}");
        assert_ne!(response.responses[1].error_code, 0, "v{version}");
        assert!(broker.store.topic(&topic).is_none());
    }
    broker.store.shutdown().await;
}

#[tokio::test]
async fn produce_fetch_and_list_offsets_encode_at_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(&dir);
    broker.store.create_topic("t", 1, crate::storage::TopicConfig::default()).await.unwrap();
    let mut next = 0i64;
    for version in versions::PRODUCE_UNSUPPORTED_BELOW..=versions_of(ApiKey::Produce).end().to_owned() {
        let partition = |index: i32| PartitionProduceData::default().with_index(index).with_records(Some(records(3)));
        let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![
            TopicProduceData::default().with_name(name("t")).with_partition_data(vec![partition(0), partition(7)]),
            TopicProduceData::default().with_name(name("unknown")).with_partition_data(vec![partition(0)]),
        ]);
        let response = produce::produce(&broker, request, version).await.expect("acks=-1 answers");
        let response = round_trip(ApiKey::Produce, version, &response);
        let first = &response.responses[0].partition_responses;
        assert_eq!((first[0].error_code, first[0].base_offset), (0, next), "v{version}");
        assert_ne!(first[1].error_code, 0, "v{version}: no partition 7");
        assert_ne!(response.responses[1].partition_responses[0].error_code, 0, "v{version}: unknown topic");
        next += 3;
    }
    for version in versions_of(ApiKey::Fetch) {
        let partition = |offset: i64| {
            FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20)
        };
        let request = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default().with_topic(name("t")).with_partitions(vec![partition(0), partition(next + 5)]),
            FetchTopic::default().with_topic(name("unknown")).with_partitions(vec![partition(0)]),
        ]);
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let response = round_trip(ApiKey::Fetch, version, &fetch::fetch(&broker, request, version, stopping).await);
        let t = &response.responses[0].partitions;
        assert_eq!(t[0].error_code, 0, "v{version}");
        assert_eq!(t[0].high_watermark, next, "v{version}");
        assert!(!t[0].records.as_ref().unwrap().is_empty(), "v{version}");
        assert_ne!(t[1].error_code, 0, "v{version}: out of range");
        assert_ne!(response.responses[1].partitions[0].error_code, 0, "v{version}: unknown topic");
    }
    for version in versions_of(ApiKey::ListOffsets) {
        let at = |timestamp: i64| ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp);
        let request = ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default().with_name(name("t")).with_partitions(vec![at(-2), at(-1), at(0), at(i64::MAX)]),
            ListOffsetsTopic::default().with_name(name("unknown")).with_partitions(vec![at(-1)]),
        ]);
        let response =
            round_trip(ApiKey::ListOffsets, version, &fetch::list_offsets(&broker, request, version).await);
        let offsets: Vec<i64> = response.topics[0].partitions.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, vec![0, next, 0, -1], "v{version}");
        assert_ne!(response.topics[1].partitions[0].error_code, 0, "v{version}");
    }
    broker.store.shutdown().await;
}
