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
            CreatableTopic::default()
                .with_name(name(&topic))
                .with_num_partitions(2)
                .with_replication_factor(1)
                .with_configs(vec![config]),
            CreatableTopic::default().with_name(name("bad/name")).with_num_partitions(1).with_replication_factor(1),
            CreatableTopic::default().with_name(name(&topic)).with_num_partitions(1).with_replication_factor(3),
        ]);
        let response =
            round_trip(ApiKey::CreateTopics, version, &admin::create_topics(&broker, request, version).await);
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
        let response =
            round_trip(ApiKey::DeleteTopics, version, &admin::delete_topics(&broker, request, version).await);
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
        let response = round_trip(ApiKey::ListOffsets, version, &fetch::list_offsets(&broker, request, version).await);
        let offsets: Vec<i64> = response.topics[0].partitions.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, vec![0, next, 0, -1], "v{version}");
        assert_ne!(response.topics[1].partitions[0].error_code, 0, "v{version}");
    }
    broker.store.shutdown().await;
}

#[tokio::test]
async fn huge_array_counts_are_refused_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(&dir);
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    // Metadata v0, correlation 7, client id "x", then a topics array claiming i32::MAX entries.
    let frame: &[u8] = &[0, 3, 0, 0, 0, 0, 0, 7, 0, 1, b'x', 0x7f, 0xff, 0xff, 0xff, 0, 1, b'a'];
    let answer = super::connection::handle(&broker, Bytes::copy_from_slice(frame), &stopping).await;
    assert!(answer.is_err(), "{answer:?}");
    broker.store.shutdown().await;
}

// ---- hostile bytes ------------------------------------------------------------------------------

mod hostile {
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
    use kafka_protocol::messages::{ApiKey, RequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use proptest::prelude::*;

    use super::*;
    use crate::kafka::connection::parse;
    use crate::kafka::versions::SERVED;

    /// Every served (api, version).
    fn pairs() -> Vec<(ApiKey, i16)> {
        SERVED.iter().flat_map(|&(key, min, max)| (min..=max).map(move |v| (key, v))).collect()
    }

    /// A well-formed request frame body (no size prefix) for `key` at `version`.
    fn valid_frame(key: ApiKey, version: i16) -> Vec<u8> {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("prop")));
        let mut out = BytesMut::new();
        let header_version =
            if key == ApiKey::Produce && version < 3 { 1 } else { key.request_header_version(version) };
        header.encode(&mut out, header_version).unwrap();
        let encoded =
            match key {
                ApiKey::ApiVersions => ApiVersionsRequest::default().encode(&mut out, version),
                ApiKey::Metadata => MetadataRequest::default()
                    .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name("a")))]))
                    .encode(&mut out, version),
                ApiKey::Produce => {
                    let request = ProduceRequest::default().with_acks(1).with_timeout_ms(100).with_topic_data(vec![
                        TopicProduceData::default().with_name(name("a")).with_partition_data(vec![
                            PartitionProduceData::default().with_index(0).with_records(Some(records(2))),
                        ]),
                    ]);
                    if version < 3 {
                        // v0–v2 are v3 without the leading (null) transactional id.
                        let mut v3 = BytesMut::new();
                        request.encode(&mut v3, 3).unwrap();
                        out.put_slice(&v3[2..]);
                        Ok(())
                    } else {
                        request.encode(&mut out, version)
                    }
                }
                ApiKey::Fetch => FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_topics(vec![FetchTopic::default().with_topic(name("a")).with_partitions(vec![
                        FetchPartition::default().with_partition(0).with_partition_max_bytes(1000),
                    ])])
                    .encode(&mut out, version),
                ApiKey::ListOffsets => ListOffsetsRequest::default()
                    .with_topics(vec![
                        ListOffsetsTopic::default()
                            .with_name(name("a"))
                            .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)]),
                    ])
                    .encode(&mut out, version),
                ApiKey::CreateTopics => CreateTopicsRequest::default()
                    .with_topics(vec![CreatableTopic::default().with_name(name("c")).with_num_partitions(1)])
                    .encode(&mut out, version),
                ApiKey::DeleteTopics if version >= 6 => DeleteTopicsRequest::default()
                    .with_topics(vec![DeleteTopicState::default().with_name(Some(name("c")))])
                    .encode(&mut out, version),
                ApiKey::DeleteTopics => {
                    DeleteTopicsRequest::default().with_topic_names(vec![name("c")]).encode(&mut out, version)
                }
                other => panic!("no sample request for {other:?}"),
            };
        encoded.unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
        out.to_vec()
    }

    #[test]
    fn every_sample_request_parses_and_every_truncation_is_refused() {
        for (key, version) in pairs() {
            let frame = valid_frame(key, version);
            assert!(parse(Bytes::from(frame.clone())).is_ok(), "{key:?} v{version}");
            for cut in 0..frame.len() {
                // Never a panic; a cut request is refused, except where what is left still reads
                // as a complete request (a trailing tagged-field section, a legacy Produce answer).
                let _ = parse(Bytes::copy_from_slice(&frame[..cut]));
            }
            let mut longer = frame.clone();
            longer.push(0);
            assert!(parse(Bytes::from(longer)).is_err(), "{key:?} v{version}: trailing byte accepted");
        }
    }

    fn pair() -> impl Strategy<Value = (ApiKey, i16)> {
        let all = pairs();
        (0..all.len()).prop_map(move |i| all[i])
    }

    proptest! {
        // Fixed in the source so that every run checks as many cases (the foundation's rule).
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn random_bodies_behind_a_served_header_never_panic(
            (key, version) in pair(),
            body in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut frame = Vec::with_capacity(body.len() + 8);
            frame.extend_from_slice(&(key as i16).to_be_bytes());
            frame.extend_from_slice(&version.to_be_bytes());
            frame.extend_from_slice(&7i32.to_be_bytes());
            frame.extend_from_slice(&body);
            let _ = parse(Bytes::from(frame));
        }

        #[test]
        fn bit_flipped_requests_never_panic(
            (key, version) in pair(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 0..8u8), 1..6),
        ) {
            let mut frame = valid_frame(key, version);
            for (at, bit) in flips {
                let at = at.index(frame.len());
                frame[at] ^= 1 << bit;
            }
            let _ = parse(Bytes::from(frame));
        }

        #[test]
        fn random_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(Bytes::from(frame));
        }
    }
}
