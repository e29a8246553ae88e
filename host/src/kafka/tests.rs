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
    broker_on(Store::open(Location::Dir(dir.path().to_owned()), StoreConfig::default()).expect("store opens"))
}

/// A broker with default settings over `store`.
pub(super) fn broker_on(store: Store) -> Broker {
    Broker {
        metrics: std::sync::Arc::new(crate::metrics::Metrics::new(&store)),
        store,
        config: KafkaSection::default(),
        advertised_host: "127.0.0.1".into(),
        advertised_port: 9092,
        cluster_id: "test-cluster".into(),
        groups: super::groups::Coordinator::default(),
    }
}

const PEER: std::net::SocketAddr =
    std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 50000));

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
        // Failed partitions carry empty records, never null: librdkafka rejects a whole
        // response with a null record set (`invalid MessageSetSize -1`).
        assert_eq!(t[1].records.as_deref(), Some(&[][..]), "v{version}: out of range");
        assert_eq!(response.responses[1].partitions[0].records.as_deref(), Some(&[][..]), "v{version}");
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

#[test]
fn huge_array_counts_are_refused_without_allocating() {
    // Metadata v0, correlation 7, client id "x", then a topics array claiming i32::MAX entries.
    let frame: &[u8] = &[0, 3, 0, 0, 0, 0, 0, 7, 0, 1, b'x', 0x7f, 0xff, 0xff, 0xff, 0, 1, b'a'];
    let answer = super::connection::parse(Bytes::copy_from_slice(frame));
    assert!(answer.is_err(), "{:?}", answer.err());
}

// ---- hostile bytes ------------------------------------------------------------------------------

mod hostile {
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
    use kafka_protocol::messages::{
        ApiKey, CreatePartitionsRequest, DeleteGroupsRequest, DeleteRecordsRequest, DescribeClusterRequest,
        DescribeConfigsRequest, DescribeGroupsRequest, FindCoordinatorRequest, HeartbeatRequest,
        IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
        OffsetCommitRequest, OffsetFetchRequest, RequestHeader, SyncGroupRequest,
    };
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
                ApiKey::InitProducerId => {
                    InitProducerIdRequest::default().with_transactional_id(None).encode(&mut out, version)
                }
                ApiKey::CreatePartitions => CreatePartitionsRequest::default().encode(&mut out, version),
                ApiKey::DeleteRecords => DeleteRecordsRequest::default().encode(&mut out, version),
                ApiKey::DescribeConfigs => DescribeConfigsRequest::default().encode(&mut out, version),
                ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::default().encode(&mut out, version),
                ApiKey::DescribeCluster => DescribeClusterRequest::default().encode(&mut out, version),
                ApiKey::FindCoordinator => FindCoordinatorRequest::default().encode(&mut out, version),
                ApiKey::JoinGroup => JoinGroupRequest::default().encode(&mut out, version),
                ApiKey::SyncGroup => SyncGroupRequest::default().encode(&mut out, version),
                ApiKey::Heartbeat => HeartbeatRequest::default().encode(&mut out, version),
                ApiKey::LeaveGroup => LeaveGroupRequest::default().encode(&mut out, version),
                ApiKey::OffsetCommit => OffsetCommitRequest::default().encode(&mut out, version),
                ApiKey::OffsetFetch => OffsetFetchRequest::default().encode(&mut out, version),
                ApiKey::ListGroups => ListGroupsRequest::default().encode(&mut out, version),
                ApiKey::DescribeGroups => DescribeGroupsRequest::default().encode(&mut out, version),
                ApiKey::DeleteGroups => DeleteGroupsRequest::default().encode(&mut out, version),
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
            // Bytes after a request are ignored, as Kafka ignores them.
            let mut longer = frame.clone();
            longer.extend_from_slice(&[0, 1, 2]);
            assert!(parse(Bytes::from(longer)).is_ok(), "{key:?} v{version}: trailing bytes refused");
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

// ---- consumer groups and producer ids -----------------------------------------------------------

mod group_apis {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
    use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
    use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
    use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
    use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
    use kafka_protocol::messages::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};
    use kafka_protocol::messages::leave_group_request::{LeaveGroupRequest, MemberIdentity};
    use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::sync_group_request::{SyncGroupRequest, SyncGroupRequestAssignment};
    use kafka_protocol::messages::{ApiKey, GroupId};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::kafka::groups;

    fn text(value: &str) -> StrBytes {
        StrBytes::from_string(value.to_owned())
    }

    fn group(id: &str) -> GroupId {
        GroupId(text(id))
    }

    fn join_request(group_id: &str, member: &str) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(group(group_id))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(text(member))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default().with_name(text("range")).with_metadata(Bytes::from_static(b"meta")),
            ])
    }

    /// Joins through MEMBER_ID_REQUIRED where the version has it, ticking the coordinator past
    /// the initial delay; returns (member id, generation).
    async fn join(broker: &Arc<Broker>, group_id: &str, version: i16) -> (String, i32) {
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let mut member = String::new();
        if version >= 4 {
            let response = groups::join_group(broker, join_request(group_id, ""), version, "c", PEER, &stopping).await;
            let first = round_trip(ApiKey::JoinGroup, version, &response);
            assert_eq!(first.error_code, ResponseError::MemberIdRequired.code(), "v{version}");
            member = first.member_id.to_string();
        }
        let pending = tokio::spawn({
            let broker = Arc::clone(broker);
            let request = join_request(group_id, &member);
            async move {
                let (_stop, stopping) = tokio::sync::watch::channel(false);
                groups::join_group(&broker, request, version, "c", PEER, &stopping).await
            }
        });
        while !pending.is_finished() {
            broker.groups.tick(Instant::now() + Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let joined = round_trip(ApiKey::JoinGroup, version, &pending.await.unwrap());
        assert_eq!(joined.error_code, 0, "v{version}");
        assert_eq!(joined.leader, joined.member_id, "v{version}: a lone member leads");
        assert_eq!(joined.members.len(), 1, "v{version}");
        (joined.member_id.to_string(), joined.generation_id)
    }

    #[tokio::test]
    async fn membership_apis_encode_at_every_version() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(broker(&dir));
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        for version in versions_of(ApiKey::FindCoordinator) {
            let request = FindCoordinatorRequest::default()
                .with_key(text("g"))
                .with_coordinator_keys(if version >= 4 { vec![text("g")] } else { vec![] });
            let response =
                round_trip(ApiKey::FindCoordinator, version, &groups::find_coordinator(&broker, request, version));
            let (error, port) = match response.coordinators.first() {
                Some(c) => (c.error_code, c.port),
                None => (response.error_code, response.port),
            };
            assert_eq!((error, port), (0, 9092), "v{version}");
        }
        for version in versions_of(ApiKey::JoinGroup) {
            let id = format!("g{version}");
            let (member, generation) = join(&broker, &id, version).await;
            let sync_version = version.min(*versions_of(ApiKey::SyncGroup).end());
            let sync = SyncGroupRequest::default()
                .with_group_id(group(&id))
                .with_generation_id(generation)
                .with_member_id(text(&member))
                .with_assignments(vec![
                    SyncGroupRequestAssignment::default()
                        .with_member_id(text(&member))
                        .with_assignment(Bytes::from_static(b"mine")),
                ]);
            let synced = groups::sync_group(&broker, sync, sync_version, &stopping).await;
            let synced = round_trip(ApiKey::SyncGroup, sync_version, &synced);
            assert_eq!((synced.error_code, synced.assignment.as_ref()), (0, b"mine".as_ref()), "v{sync_version}");
            let beat_version = version.min(*versions_of(ApiKey::Heartbeat).end());
            let beat = HeartbeatRequest::default()
                .with_group_id(group(&id))
                .with_generation_id(generation)
                .with_member_id(text(&member));
            let beat = round_trip(ApiKey::Heartbeat, beat_version, &groups::heartbeat(&broker, beat));
            assert_eq!(beat.error_code, 0, "v{beat_version}");
            for list_version in versions_of(ApiKey::ListGroups) {
                let listed = groups::list_groups(&broker, ListGroupsRequest::default(), list_version);
                let listed = round_trip(ApiKey::ListGroups, list_version, &listed);
                let this = listed.groups.iter().find(|g| g.group_id.as_str() == id).expect("listed");
                let state = if list_version >= 4 { "Stable" } else { "" };
                assert_eq!((this.protocol_type.as_str(), this.group_state.as_str()), ("consumer", state));
            }
            for describe_version in versions_of(ApiKey::DescribeGroups) {
                let request = DescribeGroupsRequest::default().with_groups(vec![group(&id), group("nobody")]);
                let described = groups::describe_groups(&broker, request, describe_version);
                let described = round_trip(ApiKey::DescribeGroups, describe_version, &described);
                assert_eq!(described.groups[0].group_state.as_str(), "Stable");
                assert_eq!(described.groups[0].members[0].member_assignment.as_ref(), b"mine");
                assert_eq!(described.groups[1].group_state.as_str(), "Dead");
            }
            let leave_version = version.min(*versions_of(ApiKey::LeaveGroup).end());
            let leave = LeaveGroupRequest::default().with_group_id(group(&id));
            let leave = if leave_version >= 3 {
                leave.with_members(vec![MemberIdentity::default().with_member_id(text(&member))])
            } else {
                leave.with_member_id(text(&member))
            };
            let left =
                round_trip(ApiKey::LeaveGroup, leave_version, &groups::leave_group(&broker, leave, leave_version));
            let error = left.members.first().map_or(left.error_code, |m| m.error_code);
            assert_eq!(error, 0, "v{leave_version}");
        }
        for version in versions_of(ApiKey::InitProducerId) {
            let request =
                InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000);
            let first = produce::init_producer_id(&broker, request.clone()).await;
            let second =
                round_trip(ApiKey::InitProducerId, version, &produce::init_producer_id(&broker, request).await);
            assert_eq!(second.error_code, 0);
            assert!(second.producer_id.0 > first.producer_id.0, "v{version}: ids are never reused");
            let transactional = InitProducerIdRequest::default().with_transactional_id(Some(text("tx").into()));
            let refused = produce::init_producer_id(&broker, transactional).await;
            assert_ne!(round_trip(ApiKey::InitProducerId, version, &refused).error_code, 0);
        }
        broker.store.shutdown().await;
    }

    #[tokio::test]
    async fn offsets_commit_fetch_and_delete_at_every_version() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(broker(&dir));
        broker.store.create_topic("t", 2, crate::storage::TopicConfig::default()).await.unwrap();
        for version in versions_of(ApiKey::OffsetCommit) {
            let partition = |index: i32, offset: i64| {
                OffsetCommitRequestPartition::default()
                    .with_partition_index(index)
                    .with_committed_offset(offset)
                    .with_committed_metadata(Some(text("meta")))
            };
            let request = OffsetCommitRequest::default()
                .with_group_id(group("simple"))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    OffsetCommitRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![partition(0, 10 + i64::from(version)), partition(9, 1)]),
                ]);
            let response = round_trip(ApiKey::OffsetCommit, version, &groups::offset_commit(&broker, request).await);
            let errors: Vec<i16> = response.topics[0].partitions.iter().map(|p| p.error_code).collect();
            assert_eq!(errors, vec![0, ResponseError::UnknownTopicOrPartition.code()], "v{version}");
        }
        let last = 10 + i64::from(*versions_of(ApiKey::OffsetCommit).end());
        for version in versions_of(ApiKey::OffsetFetch) {
            let request = if version >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    OffsetFetchRequestGroup::default().with_group_id(group("simple")).with_topics(Some(vec![
                        OffsetFetchRequestTopics::default().with_name(name("t")).with_partition_indexes(vec![0, 1]),
                    ])),
                ])
            } else {
                OffsetFetchRequest::default().with_group_id(group("simple")).with_topics(Some(vec![
                    OffsetFetchRequestTopic::default().with_name(name("t")).with_partition_indexes(vec![0, 1]),
                ]))
            };
            let response = round_trip(ApiKey::OffsetFetch, version, &groups::offset_fetch(&broker, request, version));
            let offsets: Vec<i64> = match response.groups.first() {
                Some(g) => g.topics[0].partitions.iter().map(|p| p.committed_offset).collect(),
                None => response.topics[0].partitions.iter().map(|p| p.committed_offset).collect(),
            };
            assert_eq!(offsets, vec![last, -1], "v{version}: committed, and none");
        }
        // A commit from outside the group while it has members is refused.
        let (member, _) = join(&broker, "simple", 5).await;
        let outsider = OffsetCommitRequest::default()
            .with_group_id(group("simple"))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default().with_name(name("t")).with_partitions(vec![
                OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(0),
            ])]);
        let refused = groups::offset_commit(&broker, outsider).await;
        assert_eq!(refused.topics[0].partitions[0].error_code, ResponseError::UnknownMemberId.code());
        let delete = || DeleteGroupsRequest::default().with_groups_names(vec![group("simple"), group("nobody")]);
        let response = groups::delete_groups(&broker, delete()).await;
        let errors: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
        assert_eq!(errors, vec![ResponseError::NonEmptyGroup.code(), ResponseError::GroupIdNotFound.code()]);
        groups::leave_group(
            &broker,
            LeaveGroupRequest::default().with_group_id(group("simple")).with_member_id(text(&member)),
            0,
        );
        for version in versions_of(ApiKey::DeleteGroups) {
            let response = round_trip(ApiKey::DeleteGroups, version, &groups::delete_groups(&broker, delete()).await);
            let expected = if version == 0 { 0 } else { ResponseError::GroupIdNotFound.code() };
            assert_eq!(response.results[0].error_code, expected, "v{version}: deleted once");
        }
        assert!(broker.store.committed_offsets("simple").is_empty());
        broker.store.shutdown().await;
    }
}

// ---- partitions, records, configs, cluster --------------------------------------------------------

mod cluster_admin {
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::create_partitions_request::{CreatePartitionsRequest, CreatePartitionsTopic};
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::describe_configs_request::{DescribeConfigsRequest, DescribeConfigsResource};
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
    };

    use super::*;
    use crate::kafka::configs;

    fn text(value: &str) -> StrBytes {
        StrBytes::from_string(value.to_owned())
    }

    #[tokio::test]
    async fn partitions_records_configs_and_cluster_at_every_version() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(&dir);
        broker.store.create_topic("t", 1, crate::storage::TopicConfig::default()).await.unwrap();
        for version in versions_of(ApiKey::CreatePartitions) {
            let grow = |count| CreatePartitionsTopic::default().with_name(name("t")).with_count(count);
            let want = 2 + i32::from(version);
            let request = CreatePartitionsRequest::default().with_topics(vec![
                grow(want),
                grow(1),
                CreatePartitionsTopic::default().with_name(name("nope")).with_count(3),
            ]);
            let response = admin::create_partitions(&broker, request).await;
            let response = round_trip(ApiKey::CreatePartitions, version, &response);
            let errors: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
            assert_eq!(errors[0], 0, "v{version}: {:?}", response.results[0].error_message);
            assert_eq!(errors[1], ResponseError::InvalidPartitions.code(), "v{version}: shrinking is refused");
            assert_eq!(errors[2], ResponseError::UnknownTopicOrPartition.code());
            assert_eq!(broker.store.topic("t").unwrap().partitions.len(), want as usize);
        }
        broker.store.append("t", 0, records(10).to_vec()).await.unwrap();
        for version in versions_of(ApiKey::DeleteRecords) {
            let below = |offset| DeleteRecordsPartition::default().with_partition_index(0).with_offset(offset);
            let request = DeleteRecordsRequest::default().with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![below(2 + i64::from(version)), below(11)]),
            ]);
            let response = round_trip(ApiKey::DeleteRecords, version, &admin::delete_records(&broker, request).await);
            let parts = &response.topics[0].partitions;
            assert_eq!((parts[0].error_code, parts[0].low_watermark), (0, 2 + i64::from(version)), "v{version}");
            assert_eq!(parts[1].error_code, ResponseError::OffsetOutOfRange.code(), "v{version}: past the end");
        }
        let set = |key: &str, value: &str| {
            AlterableConfig::default().with_name(text(key)).with_config_operation(0).with_value(Some(text(value)))
        };
        for version in versions_of(ApiKey::IncrementalAlterConfigs) {
            let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default().with_resource_type(2).with_resource_name(text("t")).with_configs(vec![
                    set("retention.ms", "60000"),
                    set("retention.bytes", &format!("{}", 1000 + version)),
                ]),
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(text("t"))
                    .with_configs(vec![set("retention.ms", "soon")]),
                AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(text("0"))
                    .with_configs(vec![set("num.partitions", "3")]),
            ]);
            let response = configs::incremental_alter_configs(&broker, request).await;
            let response = round_trip(ApiKey::IncrementalAlterConfigs, version, &response);
            let errors: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
            assert_eq!(errors[0], 0, "v{version}");
            assert_eq!(errors[1], ResponseError::InvalidConfig.code(), "v{version}: a bad value changes nothing");
            assert_eq!(errors[2], ResponseError::InvalidRequest.code(), "v{version}: broker settings are read-only");
            let config = broker.store.topic("t").unwrap().config.clone();
            assert_eq!((config.retention_ms, config.retention_bytes), (Some(60_000), Some(1000 + version as u64)));
        }
        for version in versions_of(ApiKey::DescribeConfigs) {
            let request = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(text("t"))
                    .with_configuration_keys(None),
                DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(text("0"))
                    .with_configuration_keys(None),
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(text("nope"))
                    .with_configuration_keys(None),
            ]);
            let response = round_trip(ApiKey::DescribeConfigs, version, &configs::describe_configs(&broker, request));
            let topic = &response.results[0];
            let value = |key: &str| {
                topic
                    .configs
                    .iter()
                    .find(|c| c.name.as_str() == key)
                    .and_then(|c| c.value.as_ref())
                    .map(|v| v.to_string())
            };
            assert_eq!(value("retention.ms").as_deref(), Some("60000"), "v{version}");
            assert_eq!(value("max.message.bytes").as_deref(), Some("1048588"), "v{version}");
            assert!(!response.results[1].configs.is_empty(), "v{version}: broker settings");
            assert_eq!(response.results[2].error_code, ResponseError::UnknownTopicOrPartition.code());
        }
        for version in versions_of(ApiKey::DescribeCluster) {
            let response = round_trip(ApiKey::DescribeCluster, version, &admin::describe_cluster(&broker));
            assert_eq!((response.brokers.len(), response.cluster_id.as_str()), (1, "test-cluster"));
        }
        broker.store.shutdown().await;
    }
}

// ---- pipelining ---------------------------------------------------------------------------------

mod pipelining {
    use bytes::{Buf, BufMut};
    use kafka_protocol::messages::produce_response::ProduceResponse;
    use kafka_protocol::messages::{ListOffsetsResponse, RequestHeader, ResponseHeader};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::kafka::KafkaListener;

    fn frame<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, request: &R) -> Vec<u8> {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id);
        let mut body = BytesMut::new();
        header.encode(&mut body, key.request_header_version(version)).unwrap();
        request.encode(&mut body, version).unwrap();
        let mut out = Vec::with_capacity(body.len() + 4);
        out.put_i32(body.len() as i32);
        out.extend_from_slice(&body);
        out
    }

    async fn read_response(socket: &mut tokio::net::TcpStream, key: ApiKey, version: i16) -> (i32, Bytes) {
        let size = socket.read_i32().await.unwrap() as usize;
        let mut body = vec![0u8; size];
        socket.read_exact(&mut body).await.unwrap();
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
        (header.correlation_id, body)
    }

    /// A producer's requests written back to back, then the write side closed: stored in request
    /// order and answered in request order, every one of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_produce_requests_are_stored_and_answered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Location::Dir(dir.path().to_owned()), StoreConfig::default()).unwrap();
        store.create_topic("t", 1, crate::storage::TopicConfig::default()).await.unwrap();
        let config = KafkaSection { listen: ([127, 0, 0, 1], 0).into(), ..KafkaSection::default() };
        let listener =
            KafkaListener::bind(config, store.clone(), std::sync::Arc::new(crate::metrics::Metrics::new(&store)))
                .await
                .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(listener.run(stopped));

        const REQUESTS: i32 = 30;
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let latest = ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)]),
        ]);
        let mut written = frame(ApiKey::ListOffsets, 6, -1, &latest);
        for i in 0..REQUESTS {
            let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(5_000).with_topic_data(vec![
                TopicProduceData::default().with_name(name("t")).with_partition_data(vec![
                    PartitionProduceData::default().with_records(Some(records(i as usize + 1))),
                ]),
            ]);
            written.extend(frame(ApiKey::Produce, 9, i, &request));
        }
        socket.write_all(&written).await.unwrap();
        // Done sending while produce requests are still in progress: a half-closed connection
        // still gets every answer.
        socket.shutdown().await.unwrap();

        let (correlation, mut body) = read_response(&mut socket, ApiKey::ListOffsets, 6).await;
        assert_eq!(correlation, -1);
        let offsets = ListOffsetsResponse::decode(&mut body, 6).unwrap();
        assert_eq!(offsets.topics[0].partitions[0].offset, 0, "answered before the produce requests after it");
        let mut expected_base = 0i64;
        for i in 0..REQUESTS {
            let (correlation, mut body) = read_response(&mut socket, ApiKey::Produce, 9).await;
            assert_eq!(correlation, i, "responses in request order");
            let response = ProduceResponse::decode(&mut body, 9).unwrap();
            assert!(!body.has_remaining());
            let partition = &response.responses[0].partition_responses[0];
            assert_eq!((partition.error_code, partition.base_offset), (0, expected_base), "request {i}");
            expected_base += i64::from(i) + 1;
        }
        assert_eq!(store.topic("t").unwrap().partition(0).unwrap().offsets().high_watermark, expected_base as u64);
        stop.send(true).unwrap();
        server.await.unwrap();
        store.shutdown().await;
    }
}
