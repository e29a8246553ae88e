//! The request schemas checked against kafka-protocol's decoders, and hostile requests checked
//! against the decode bound, with what `parse` allocates measured by the test allocator.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest,
    HeartbeatRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest,
    RequestHeader, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::bounds::{self, Refused};
use super::connection::parse;
use super::schemas::{self, Struct, Ty};
use super::versions::SERVED;
use crate::alloc::asked_by_this_thread;

/// Every served (api, version).
fn pairs() -> Vec<(ApiKey, i16)> {
    SERVED.iter().flat_map(|&(key, min, max)| (min..=max).map(move |v| (key, v))).collect()
}

/// xorshift64: the same requests on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Where a generated request holds an array count.
#[derive(Debug, Clone, Copy)]
struct CountAt {
    at: usize,
    len: usize,
    field: &'static str,
}

/// Writes random well-formed request bodies from a schema, remembering where each count is.
struct Generator<'r> {
    rng: &'r mut Rng,
    version: i16,
    flexible: bool,
    out: Vec<u8>,
    counts: Vec<CountAt>,
}

impl Generator<'_> {
    fn message(&mut self, shape: &Struct) {
        let version = self.version;
        for field in shape.fields.iter().filter(|f| f.tag.is_none() && f.is_in(version)) {
            self.field(field.name, &field.ty);
        }
        if self.flexible {
            self.tagged_fields(shape);
        }
    }

    /// Known tags (ascending) some of the time, then an unknown one above them some of the time.
    fn tagged_fields(&mut self, shape: &Struct) {
        let mut entries: Vec<(u32, Vec<u8>)> = Vec::new();
        let version = self.version;
        for field in shape.fields.iter().filter(|f| f.tag.is_some() && f.is_in(version)) {
            if self.rng.below(2) == 0 {
                let mut value =
                    Generator { rng: &mut *self.rng, version, flexible: true, out: Vec::new(), counts: Vec::new() };
                value.field(field.name, &field.ty);
                entries.push((field.tag.unwrap_or_default(), value.out));
            }
        }
        if self.rng.below(3) == 0 {
            let junk = (0..self.rng.below(6)).map(|_| self.rng.below(256) as u8).collect();
            entries.push((100 + self.rng.below(50) as u32, junk));
        }
        self.varint(entries.len() as u32);
        for (tag, value) in entries {
            self.varint(tag);
            self.varint(value.len() as u32);
            self.out.extend_from_slice(&value);
        }
    }

    fn field(&mut self, name: &'static str, ty: &Ty) {
        match ty {
            // 0 or 1, so that booleans re-encode as they were written.
            Ty::Fixed(1) => self.out.push(self.rng.below(2) as u8),
            Ty::Fixed(width) => (0..*width).for_each(|_| self.out.push(self.rng.below(256) as u8)),
            Ty::Str => {
                let len = self.rng.below(6) as usize;
                self.length(len, false);
                (0..len).for_each(|_| self.out.push(b'a' + self.rng.below(26) as u8));
            }
            Ty::Bytes => {
                let len = self.rng.below(9) as usize;
                self.length(len, true);
                (0..len).for_each(|_| self.out.push(self.rng.below(256) as u8));
            }
            Ty::Structs(element) => {
                let count = self.count(name, 3);
                (0..count).for_each(|_| self.message(element));
            }
            Ty::Int32s => {
                let count = self.count(name, 4);
                (0..count * 4).for_each(|_| self.out.push(self.rng.below(256) as u8));
            }
            Ty::Strs => {
                let count = self.count(name, 3);
                (0..count).for_each(|_| self.field(name, &Ty::Str));
            }
        }
    }

    fn count(&mut self, field: &'static str, most: u64) -> usize {
        let count = self.rng.below(most + 1) as usize;
        let at = self.out.len();
        self.length(count, true);
        self.counts.push(CountAt { at, len: self.out.len() - at, field });
        count
    }

    fn length(&mut self, len: usize, long: bool) {
        match (self.flexible, long) {
            (true, _) => self.varint(len as u32 + 1),
            (false, false) => self.out.put_i16(len as i16),
            (false, true) => self.out.put_i32(len as i32),
        }
    }

    fn varint(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.out.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }
}

/// A random body for `key` at `version`, and where its counts are.
fn generate(rng: &mut Rng, key: ApiKey, version: i16) -> (Vec<u8>, Vec<CountAt>) {
    let schema = schemas::schema(key).unwrap_or_else(|| panic!("{key:?} has no schema"));
    let flexible = version >= schema.flexible_since;
    let mut generator = Generator { rng, version, flexible, out: Vec::new(), counts: Vec::new() };
    generator.message(schema.body);
    (generator.out, generator.counts)
}

/// Decodes `body` with kafka-protocol: how many bytes it read, and the request encoded again.
fn decode_and_encode(key: ApiKey, version: i16, body: &[u8]) -> Result<(usize, Vec<u8>), String> {
    fn round_trip<T: Decodable + Encodable>(version: i16, body: &[u8]) -> Result<(usize, Vec<u8>), String> {
        let mut buf = Bytes::copy_from_slice(body);
        let decoded = T::decode(&mut buf, version).map_err(|e| e.to_string())?;
        let mut out = BytesMut::new();
        decoded.encode(&mut out, version).map_err(|e| e.to_string())?;
        Ok((body.len() - buf.remaining(), out.to_vec()))
    }
    match key {
        // v0–v2 are v3 behind a null transactional id (see `produce::legacy_unsupported`).
        ApiKey::Produce if version < 3 => {
            let (read, encoded) = round_trip::<ProduceRequest>(3, &[&[0xff, 0xff], body].concat())?;
            Ok((read - 2, encoded[2..].to_vec()))
        }
        ApiKey::Produce => round_trip::<ProduceRequest>(version, body),
        ApiKey::Fetch => round_trip::<FetchRequest>(version, body),
        ApiKey::ListOffsets => round_trip::<ListOffsetsRequest>(version, body),
        ApiKey::Metadata => round_trip::<MetadataRequest>(version, body),
        ApiKey::ApiVersions => round_trip::<ApiVersionsRequest>(version, body),
        ApiKey::CreateTopics => round_trip::<CreateTopicsRequest>(version, body),
        ApiKey::DeleteTopics => round_trip::<DeleteTopicsRequest>(version, body),
        ApiKey::CreatePartitions => round_trip::<CreatePartitionsRequest>(version, body),
        ApiKey::DeleteRecords => round_trip::<DeleteRecordsRequest>(version, body),
        ApiKey::DescribeConfigs => round_trip::<DescribeConfigsRequest>(version, body),
        ApiKey::IncrementalAlterConfigs => round_trip::<IncrementalAlterConfigsRequest>(version, body),
        ApiKey::DescribeCluster => round_trip::<DescribeClusterRequest>(version, body),
        ApiKey::InitProducerId => round_trip::<InitProducerIdRequest>(version, body),
        ApiKey::FindCoordinator => round_trip::<FindCoordinatorRequest>(version, body),
        ApiKey::JoinGroup => round_trip::<JoinGroupRequest>(version, body),
        ApiKey::SyncGroup => round_trip::<SyncGroupRequest>(version, body),
        ApiKey::Heartbeat => round_trip::<HeartbeatRequest>(version, body),
        ApiKey::LeaveGroup => round_trip::<LeaveGroupRequest>(version, body),
        ApiKey::OffsetCommit => round_trip::<OffsetCommitRequest>(version, body),
        ApiKey::OffsetFetch => round_trip::<OffsetFetchRequest>(version, body),
        ApiKey::ListGroups => round_trip::<ListGroupsRequest>(version, body),
        ApiKey::DescribeGroups => round_trip::<DescribeGroupsRequest>(version, body),
        ApiKey::DeleteGroups => round_trip::<DeleteGroupsRequest>(version, body),
        other => Err(format!("no decoder listed for {other:?}: add it here and a schema in schemas.rs")),
    }
}

/// A whole request frame (without the size prefix): header, then `body`.
fn frame(key: ApiKey, version: i16, body: &[u8]) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(9)
        .with_client_id(Some(StrBytes::from_static_str("bounds")));
    let header_version = if key == ApiKey::Produce && version < 3 { 1 } else { key.request_header_version(version) };
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).unwrap();
    out.put_slice(body);
    out.to_vec()
}

/// What `parse` allocates for `frame` in all, and whether it refused it.
fn parse_measured(frame: &[u8]) -> (usize, bool) {
    let frame = Bytes::copy_from_slice(frame);
    let before = asked_by_this_thread();
    let refused = parse(frame).is_err();
    (asked_by_this_thread() - before, refused)
}

/// Room for what `parse` allocates besides the arrays the walk accounts for: error messages,
/// unknown tagged fields' map nodes, the header.
const PARSE_SLACK: usize = 16 * 1024;

#[test]
fn every_served_request_is_walked_exactly_as_kafka_protocol_decodes_it() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (key, version) in pairs() {
        for round in 0..200 {
            let (body, _) = generate(&mut rng, key, version);
            let (read, encoded) = decode_and_encode(key, version, &body)
                .unwrap_or_else(|e| panic!("{key:?} v{version} round {round}: kafka-protocol refused {body:?}: {e}"));
            assert_eq!(read, body.len(), "{key:?} v{version}: kafka-protocol read a different length");
            assert_eq!(encoded, body, "{key:?} v{version}: the schema's field types differ from the decoder's");
            let walked = bounds::check(key, version, &body)
                .unwrap_or_else(|e| panic!("{key:?} v{version}: a well-formed request refused: {e}"));
            assert_eq!(walked.end, body.len(), "{key:?} v{version}: the walk ended elsewhere");
            // Bytes after the request are ignored, as Kafka ignores them.
            let longer = [&body[..], &[1, 2, 3]].concat();
            assert_eq!(bounds::check(key, version, &longer).map(|w| w.end), Ok(body.len()));
        }
    }
}

#[test]
fn a_count_beyond_the_bytes_left_is_refused_before_anything_is_allocated_for_it() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut claims = 0;
    for (key, version) in pairs() {
        for _ in 0..20 {
            let (body, counts) = generate(&mut rng, key, version);
            let flexible = version >= schemas::schema(key).map_or(i16::MAX, |s| s.flexible_since);
            for count in counts {
                for claimed in [i32::MAX as u32, 0x0400_0000, 1_000_000, 70_000] {
                    let encoded = if flexible {
                        let mut varint = Vec::new();
                        let mut value = claimed + 1;
                        while value >= 0x80 {
                            varint.push(value as u8 | 0x80);
                            value >>= 7;
                        }
                        varint.push(value as u8);
                        varint
                    } else {
                        claimed.to_be_bytes().to_vec()
                    };
                    let hostile = [&body[..count.at], &encoded, &body[count.at + count.len..]].concat();
                    let refusal = bounds::check(key, version, &hostile);
                    assert!(
                        matches!(refusal, Err(Refused::TooManyElements { field, .. }) if field == count.field),
                        "{key:?} v{version} {}: {refusal:?}",
                        count.field
                    );
                    let whole = frame(key, version, &hostile);
                    let (allocated, refused) = parse_measured(&whole);
                    assert!(refused, "{key:?} v{version}: parsed a request claiming {claimed} elements");
                    assert!(allocated < PARSE_SLACK, "{key:?} v{version}: {allocated} bytes allocated to refuse it");
                    claims += 1;
                }
            }
        }
    }
    assert!(claims > 1000, "only {claims} hostile counts tried");
}

#[test]
fn damaged_requests_never_allocate_past_the_bound() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for (key, version) in pairs() {
        for _ in 0..100 {
            let (body, _) = generate(&mut rng, key, version);
            let mut whole = frame(key, version, &body);
            let header = whole.len() - body.len();
            for _ in 0..=rng.below(4) {
                let at = header + rng.below(body.len().max(1) as u64) as usize;
                if at < whole.len() {
                    whole[at] = rng.below(256) as u8;
                }
            }
            let (allocated, _) = parse_measured(&whole);
            let bound = bounds::decode_limit(body.len()) + whole.len() + PARSE_SLACK;
            assert!(allocated <= bound, "{key:?} v{version}: {allocated} bytes allocated, bound {bound}");
        }
    }
}

#[test]
fn large_requests_from_real_clients_pass_and_a_swarm_of_tiny_elements_does_not() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{GroupId, TopicName};

    fn encoded(request: &impl Encodable, version: i16) -> Vec<u8> {
        let mut out = BytesMut::new();
        request.encode(&mut out, version).unwrap();
        out.to_vec()
    }
    let name = |prefix: &str, i: usize| StrBytes::from_string(format!("{prefix}-{i}"));
    // A consumer fetching 2,000 partitions of 50 topics.
    let topics = (0..50)
        .map(|t| {
            FetchTopic::default()
                .with_topic(TopicName(name("sensors", t)))
                .with_partitions((0..40).map(|p| FetchPartition::default().with_partition(p)).collect())
        })
        .collect();
    let fetch = encoded(&FetchRequest::default().with_topics(topics), 12);
    // Metadata for 5,000 topics; describing 5,000 groups.
    let metadata = MetadataRequest::default().with_topics(Some(
        (0..5000).map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(name("t", t))))).collect(),
    ));
    let describe = DescribeGroupsRequest::default().with_groups((0..5000).map(|g| GroupId(name("g", g))).collect());
    for (key, version, body) in [
        (ApiKey::Fetch, 12, fetch),
        (ApiKey::Metadata, 12, encoded(&metadata, 12)),
        (ApiKey::DescribeGroups, 5, encoded(&describe, 5)),
    ] {
        let walked = bounds::check(key, version, &body).unwrap_or_else(|e| panic!("{key:?}: {e}"));
        let ratio = walked.decoded as f64 / body.len() as f64;
        assert!(walked.decoded <= bounds::decode_limit(body.len()), "{key:?}: {ratio:.1} bytes per byte");
        let (allocated, refused) = parse_measured(&frame(key, version, &body));
        assert!(!refused && allocated <= bounds::decode_limit(body.len()) + body.len() + PARSE_SLACK, "{key:?}");
    }
    // 100,000 members with null ids in 300 KB: well formed, and ~40 bytes of memory per byte.
    let members = (0..100_000).map(|_| MemberIdentity::default().with_group_instance_id(None)).collect();
    let leave = encoded(&LeaveGroupRequest::default().with_members(members), 5);
    assert!(matches!(bounds::check(ApiKey::LeaveGroup, 5, &leave), Err(Refused::Amplified { .. })));
    let (allocated, refused) = parse_measured(&frame(ApiKey::LeaveGroup, 5, &leave));
    assert!(refused && allocated < PARSE_SLACK, "{allocated}");
}

#[test]
fn every_schema_element_costs_the_sender_at_least_a_byte() {
    // Else a count of zero-byte elements could pass the walk whatever its size.
    fn smallest(shape: &Struct, version: i16, flexible: bool) -> usize {
        let fields = shape.fields.iter().filter(|f| f.tag.is_none() && f.is_in(version));
        fields.map(|f| if let Ty::Fixed(width) = f.ty { width } else { 1 }).sum::<usize>() + usize::from(flexible)
    }
    fn visit(shape: &Struct, version: i16, flexible: bool, key: ApiKey) {
        for field in shape.fields.iter().filter(|f| f.is_in(version)) {
            if let Ty::Structs(element) = field.ty {
                assert!(smallest(element, version, flexible) > 0, "{key:?} v{version} {}", field.name);
                assert!(element.in_memory > 0, "{key:?} {}", field.name);
                visit(element, version, flexible, key);
            }
        }
    }
    for (key, version) in pairs() {
        let schema = schemas::schema(key).unwrap_or_else(|| panic!("{key:?} is served without a schema"));
        visit(schema.body, version, version >= schema.flexible_since, key);
    }
}
