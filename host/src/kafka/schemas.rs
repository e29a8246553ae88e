//! The wire layout of every request Rill serves, field by field, for [`super::bounds`] to walk
//! before a request is decoded.
//!
//! Transcribed from Kafka's message definitions as kafka-protocol 0.18 decodes them; the tests in
//! `bounds_tests.rs` generate random requests from these tables and decode them with
//! kafka-protocol, so a field missing, misplaced or of the wrong width fails there. A served API
//! without a table here fails them too (`versions::SERVED` is the list they check).
//!
//! Only what the walk needs is written down: widths, which fields are strings, bytes or arrays,
//! the versions each field exists in, and the in-memory size of each array element (to bound what
//! decoding allocates). Compact encodings follow from the message's first flexible version.

use std::mem::size_of;

use kafka_protocol::messages::{
    ApiKey, create_partitions_request as create_partitions, create_topics_request as create_topics,
    delete_records_request as delete_records, delete_topics_request as delete_topics,
    describe_configs_request as describe_configs, fetch_request as fetch,
    incremental_alter_configs_request as alter_configs, join_group_request as join_group,
    leave_group_request as leave_group, list_offsets_request as list_offsets, metadata_request as metadata,
    offset_commit_request as offset_commit, offset_fetch_request as offset_fetch, produce_request as produce,
    sync_group_request as sync_group,
};
use kafka_protocol::protocol::StrBytes;

/// How a field is laid out on the wire.
#[derive(Debug)]
pub enum Ty {
    /// A fixed number of bytes: int8 … int64, float64, boolean, uuid.
    Fixed(usize),
    /// A string, nullable or not: int16 length, or unsigned varint length + 1 when flexible.
    Str,
    /// Bytes or records: int32 length, or unsigned varint length + 1 when flexible.
    Bytes,
    /// An array of structs: int32 count, or unsigned varint count + 1 when flexible.
    Structs(&'static Struct),
    /// An array of int32.
    Int32s,
    /// An array of strings.
    Strs,
}

/// One field of a struct, present in versions `since..=until`.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub since: i16,
    pub until: i16,
    /// Tagged fields (flexible versions only) are read from the tagged section at the end of their
    /// struct, by tag, in any order.
    pub tag: Option<u32>,
}

impl Field {
    pub fn is_in(&self, version: i16) -> bool {
        (self.since..=self.until).contains(&version)
    }
}

/// A struct: the request body itself or an array's element.
#[derive(Debug)]
pub struct Struct {
    pub fields: &'static [Field],
    /// What one decoded element occupies in memory (what `Vec::with_capacity` reserves for it).
    pub in_memory: usize,
}

/// A request's layout: its body, and the first version whose encoding is flexible (compact
/// lengths, tagged fields).
#[derive(Debug)]
pub struct Schema {
    pub key: ApiKey,
    pub flexible_since: i16,
    pub body: &'static Struct,
}

/// The layout of `key`'s requests.
pub fn schema(key: ApiKey) -> Option<&'static Schema> {
    SCHEMAS.iter().find(|schema| schema.key == key)
}

/// In-memory size of an element of a string array.
pub const STR_IN_MEMORY: usize = size_of::<StrBytes>();

const I8: Ty = Ty::Fixed(1);
const I16: Ty = Ty::Fixed(2);
const I32: Ty = Ty::Fixed(4);
const I64: Ty = Ty::Fixed(8);
const BOOL: Ty = Ty::Fixed(1);
const UUID: Ty = Ty::Fixed(16);
const ANY: i16 = i16::MAX;

/// A field present in every version.
const fn always(name: &'static str, ty: Ty) -> Field {
    Field { name, ty, since: 0, until: ANY, tag: None }
}

/// A field present from `since` on.
const fn since(since: i16, name: &'static str, ty: Ty) -> Field {
    Field { name, ty, since, until: ANY, tag: None }
}

/// A field present up to `until`.
const fn until(until: i16, name: &'static str, ty: Ty) -> Field {
    Field { name, ty, since: 0, until, tag: None }
}

/// A field present in `since..=until`.
const fn between(since: i16, until: i16, name: &'static str, ty: Ty) -> Field {
    Field { name, ty, since, until, tag: None }
}

/// A tagged field with `tag`, present from `since` on.
const fn tagged(tag: u32, since: i16, name: &'static str, ty: Ty) -> Field {
    Field { name, ty, since, until: ANY, tag: Some(tag) }
}

/// The request body itself (never in an array: its in-memory size is not counted).
const fn body(fields: &'static [Field]) -> Struct {
    Struct { fields, in_memory: 0 }
}

const SCHEMAS: &[Schema] = &[
    Schema { key: ApiKey::Produce, flexible_since: 9, body: &PRODUCE },
    Schema { key: ApiKey::Fetch, flexible_since: 12, body: &FETCH },
    Schema { key: ApiKey::ListOffsets, flexible_since: 6, body: &LIST_OFFSETS },
    Schema { key: ApiKey::Metadata, flexible_since: 9, body: &METADATA },
    Schema { key: ApiKey::ApiVersions, flexible_since: 3, body: &API_VERSIONS },
    Schema { key: ApiKey::CreateTopics, flexible_since: 5, body: &CREATE_TOPICS },
    Schema { key: ApiKey::DeleteTopics, flexible_since: 4, body: &DELETE_TOPICS },
    Schema { key: ApiKey::CreatePartitions, flexible_since: 2, body: &CREATE_PARTITIONS },
    Schema { key: ApiKey::DeleteRecords, flexible_since: 2, body: &DELETE_RECORDS },
    Schema { key: ApiKey::DescribeConfigs, flexible_since: 4, body: &DESCRIBE_CONFIGS },
    Schema { key: ApiKey::IncrementalAlterConfigs, flexible_since: 1, body: &INCREMENTAL_ALTER_CONFIGS },
    Schema { key: ApiKey::DescribeCluster, flexible_since: 0, body: &DESCRIBE_CLUSTER },
    Schema { key: ApiKey::InitProducerId, flexible_since: 2, body: &INIT_PRODUCER_ID },
    Schema { key: ApiKey::FindCoordinator, flexible_since: 3, body: &FIND_COORDINATOR },
    Schema { key: ApiKey::JoinGroup, flexible_since: 6, body: &JOIN_GROUP },
    Schema { key: ApiKey::SyncGroup, flexible_since: 4, body: &SYNC_GROUP },
    Schema { key: ApiKey::Heartbeat, flexible_since: 4, body: &HEARTBEAT },
    Schema { key: ApiKey::LeaveGroup, flexible_since: 4, body: &LEAVE_GROUP },
    Schema { key: ApiKey::OffsetCommit, flexible_since: 8, body: &OFFSET_COMMIT },
    Schema { key: ApiKey::OffsetFetch, flexible_since: 6, body: &OFFSET_FETCH },
    Schema { key: ApiKey::ListGroups, flexible_since: 3, body: &LIST_GROUPS },
    Schema { key: ApiKey::DescribeGroups, flexible_since: 5, body: &DESCRIBE_GROUPS },
    Schema { key: ApiKey::DeleteGroups, flexible_since: 2, body: &DELETE_GROUPS },
];

// ---- produce and fetch --------------------------------------------------------------------------

const PRODUCE: Struct = body(&[
    since(3, "transactional_id", Ty::Str),
    always("acks", I16),
    always("timeout_ms", I32),
    always("topic_data", Ty::Structs(&TOPIC_PRODUCE_DATA)),
]);
const TOPIC_PRODUCE_DATA: Struct = Struct {
    fields: &[
        until(12, "name", Ty::Str),
        since(13, "topic_id", UUID),
        always("partition_data", Ty::Structs(&PARTITION_PRODUCE_DATA)),
    ],
    in_memory: size_of::<produce::TopicProduceData>(),
};
const PARTITION_PRODUCE_DATA: Struct = Struct {
    fields: &[always("index", I32), always("records", Ty::Bytes)],
    in_memory: size_of::<produce::PartitionProduceData>(),
};

const FETCH: Struct = body(&[
    tagged(0, 12, "cluster_id", Ty::Str),
    until(14, "replica_id", I32),
    always("max_wait_ms", I32),
    always("min_bytes", I32),
    always("max_bytes", I32),
    always("isolation_level", I8),
    since(7, "session_id", I32),
    since(7, "session_epoch", I32),
    always("topics", Ty::Structs(&FETCH_TOPIC)),
    since(7, "forgotten_topics_data", Ty::Structs(&FORGOTTEN_TOPIC)),
    since(11, "rack_id", Ty::Str),
]);
const FETCH_TOPIC: Struct = Struct {
    fields: &[
        until(12, "topic", Ty::Str),
        since(13, "topic_id", UUID),
        always("partitions", Ty::Structs(&FETCH_PARTITION)),
    ],
    in_memory: size_of::<fetch::FetchTopic>(),
};
const FETCH_PARTITION: Struct = Struct {
    fields: &[
        always("partition", I32),
        since(9, "current_leader_epoch", I32),
        always("fetch_offset", I64),
        since(12, "last_fetched_epoch", I32),
        since(5, "log_start_offset", I64),
        always("partition_max_bytes", I32),
    ],
    in_memory: size_of::<fetch::FetchPartition>(),
};
const FORGOTTEN_TOPIC: Struct = Struct {
    fields: &[until(12, "topic", Ty::Str), since(13, "topic_id", UUID), always("partitions", Ty::Int32s)],
    in_memory: size_of::<fetch::ForgottenTopic>(),
};

const LIST_OFFSETS: Struct = body(&[
    always("replica_id", I32),
    since(2, "isolation_level", I8),
    always("topics", Ty::Structs(&LIST_OFFSETS_TOPIC)),
    since(10, "timeout_ms", I32),
]);
const LIST_OFFSETS_TOPIC: Struct = Struct {
    fields: &[always("name", Ty::Str), always("partitions", Ty::Structs(&LIST_OFFSETS_PARTITION))],
    in_memory: size_of::<list_offsets::ListOffsetsTopic>(),
};
const LIST_OFFSETS_PARTITION: Struct = Struct {
    fields: &[always("partition_index", I32), since(4, "current_leader_epoch", I32), always("timestamp", I64)],
    in_memory: size_of::<list_offsets::ListOffsetsPartition>(),
};

// ---- metadata and admin -------------------------------------------------------------------------

const METADATA: Struct = body(&[
    always("topics", Ty::Structs(&METADATA_TOPIC)),
    since(4, "allow_auto_topic_creation", BOOL),
    between(8, 10, "include_cluster_authorized_operations", BOOL),
    since(8, "include_topic_authorized_operations", BOOL),
]);
const METADATA_TOPIC: Struct = Struct {
    fields: &[since(10, "topic_id", UUID), always("name", Ty::Str)],
    in_memory: size_of::<metadata::MetadataRequestTopic>(),
};

const API_VERSIONS: Struct =
    body(&[since(3, "client_software_name", Ty::Str), since(3, "client_software_version", Ty::Str)]);

const CREATE_TOPICS: Struct = body(&[
    always("topics", Ty::Structs(&CREATABLE_TOPIC)),
    always("timeout_ms", I32),
    since(1, "validate_only", BOOL),
]);
const CREATABLE_TOPIC: Struct = Struct {
    fields: &[
        always("name", Ty::Str),
        always("num_partitions", I32),
        always("replication_factor", I16),
        always("assignments", Ty::Structs(&CREATABLE_REPLICA_ASSIGNMENT)),
        always("configs", Ty::Structs(&CREATABLE_TOPIC_CONFIG)),
    ],
    in_memory: size_of::<create_topics::CreatableTopic>(),
};
const CREATABLE_REPLICA_ASSIGNMENT: Struct = Struct {
    fields: &[always("partition_index", I32), always("broker_ids", Ty::Int32s)],
    in_memory: size_of::<create_topics::CreatableReplicaAssignment>(),
};
const CREATABLE_TOPIC_CONFIG: Struct = Struct {
    fields: &[always("name", Ty::Str), always("value", Ty::Str)],
    in_memory: size_of::<create_topics::CreatableTopicConfig>(),
};

const DELETE_TOPICS: Struct = body(&[
    since(6, "topics", Ty::Structs(&DELETE_TOPIC_STATE)),
    until(5, "topic_names", Ty::Strs),
    always("timeout_ms", I32),
]);
const DELETE_TOPIC_STATE: Struct = Struct {
    fields: &[always("name", Ty::Str), always("topic_id", UUID)],
    in_memory: size_of::<delete_topics::DeleteTopicState>(),
};

const CREATE_PARTITIONS: Struct = body(&[
    always("topics", Ty::Structs(&CREATE_PARTITIONS_TOPIC)),
    always("timeout_ms", I32),
    always("validate_only", BOOL),
]);
const CREATE_PARTITIONS_TOPIC: Struct = Struct {
    fields: &[
        always("name", Ty::Str),
        always("count", I32),
        always("assignments", Ty::Structs(&CREATE_PARTITIONS_ASSIGNMENT)),
    ],
    in_memory: size_of::<create_partitions::CreatePartitionsTopic>(),
};
const CREATE_PARTITIONS_ASSIGNMENT: Struct = Struct {
    fields: &[always("broker_ids", Ty::Int32s)],
    in_memory: size_of::<create_partitions::CreatePartitionsAssignment>(),
};

const DELETE_RECORDS: Struct = body(&[always("topics", Ty::Structs(&DELETE_RECORDS_TOPIC)), always("timeout_ms", I32)]);
const DELETE_RECORDS_TOPIC: Struct = Struct {
    fields: &[always("name", Ty::Str), always("partitions", Ty::Structs(&DELETE_RECORDS_PARTITION))],
    in_memory: size_of::<delete_records::DeleteRecordsTopic>(),
};
const DELETE_RECORDS_PARTITION: Struct = Struct {
    fields: &[always("partition_index", I32), always("offset", I64)],
    in_memory: size_of::<delete_records::DeleteRecordsPartition>(),
};

const DESCRIBE_CONFIGS: Struct = body(&[
    always("resources", Ty::Structs(&DESCRIBE_CONFIGS_RESOURCE)),
    since(1, "include_synonyms", BOOL),
    since(3, "include_documentation", BOOL),
]);
const DESCRIBE_CONFIGS_RESOURCE: Struct = Struct {
    fields: &[always("resource_type", I8), always("resource_name", Ty::Str), always("configuration_keys", Ty::Strs)],
    in_memory: size_of::<describe_configs::DescribeConfigsResource>(),
};

const INCREMENTAL_ALTER_CONFIGS: Struct =
    body(&[always("resources", Ty::Structs(&ALTER_CONFIGS_RESOURCE)), always("validate_only", BOOL)]);
const ALTER_CONFIGS_RESOURCE: Struct = Struct {
    fields: &[
        always("resource_type", I8),
        always("resource_name", Ty::Str),
        always("configs", Ty::Structs(&ALTERABLE_CONFIG)),
    ],
    in_memory: size_of::<alter_configs::AlterConfigsResource>(),
};
const ALTERABLE_CONFIG: Struct = Struct {
    fields: &[always("name", Ty::Str), always("config_operation", I8), always("value", Ty::Str)],
    in_memory: size_of::<alter_configs::AlterableConfig>(),
};

const DESCRIBE_CLUSTER: Struct = body(&[
    always("include_cluster_authorized_operations", BOOL),
    since(1, "endpoint_type", I8),
    since(2, "include_fenced_brokers", BOOL),
]);

const INIT_PRODUCER_ID: Struct = body(&[
    always("transactional_id", Ty::Str),
    always("transaction_timeout_ms", I32),
    since(3, "producer_id", I64),
    since(3, "producer_epoch", I16),
]);

// ---- consumer groups ----------------------------------------------------------------------------

const FIND_COORDINATOR: Struct =
    body(&[until(3, "key", Ty::Str), since(1, "key_type", I8), since(4, "coordinator_keys", Ty::Strs)]);

const JOIN_GROUP: Struct = body(&[
    always("group_id", Ty::Str),
    always("session_timeout_ms", I32),
    since(1, "rebalance_timeout_ms", I32),
    always("member_id", Ty::Str),
    since(5, "group_instance_id", Ty::Str),
    always("protocol_type", Ty::Str),
    always("protocols", Ty::Structs(&JOIN_GROUP_PROTOCOL)),
    since(8, "reason", Ty::Str),
]);
const JOIN_GROUP_PROTOCOL: Struct = Struct {
    fields: &[always("name", Ty::Str), always("metadata", Ty::Bytes)],
    in_memory: size_of::<join_group::JoinGroupRequestProtocol>(),
};

const SYNC_GROUP: Struct = body(&[
    always("group_id", Ty::Str),
    always("generation_id", I32),
    always("member_id", Ty::Str),
    since(3, "group_instance_id", Ty::Str),
    since(5, "protocol_type", Ty::Str),
    since(5, "protocol_name", Ty::Str),
    always("assignments", Ty::Structs(&SYNC_GROUP_ASSIGNMENT)),
]);
const SYNC_GROUP_ASSIGNMENT: Struct = Struct {
    fields: &[always("member_id", Ty::Str), always("assignment", Ty::Bytes)],
    in_memory: size_of::<sync_group::SyncGroupRequestAssignment>(),
};

const HEARTBEAT: Struct = body(&[
    always("group_id", Ty::Str),
    always("generation_id", I32),
    always("member_id", Ty::Str),
    since(3, "group_instance_id", Ty::Str),
]);

const LEAVE_GROUP: Struct = body(&[
    always("group_id", Ty::Str),
    until(2, "member_id", Ty::Str),
    since(3, "members", Ty::Structs(&MEMBER_IDENTITY)),
]);
const MEMBER_IDENTITY: Struct = Struct {
    fields: &[always("member_id", Ty::Str), always("group_instance_id", Ty::Str), since(5, "reason", Ty::Str)],
    in_memory: size_of::<leave_group::MemberIdentity>(),
};

const OFFSET_COMMIT: Struct = body(&[
    always("group_id", Ty::Str),
    since(1, "generation_id_or_member_epoch", I32),
    since(1, "member_id", Ty::Str),
    since(7, "group_instance_id", Ty::Str),
    between(2, 4, "retention_time_ms", I64),
    always("topics", Ty::Structs(&OFFSET_COMMIT_TOPIC)),
]);
const OFFSET_COMMIT_TOPIC: Struct = Struct {
    fields: &[always("name", Ty::Str), always("partitions", Ty::Structs(&OFFSET_COMMIT_PARTITION))],
    in_memory: size_of::<offset_commit::OffsetCommitRequestTopic>(),
};
const OFFSET_COMMIT_PARTITION: Struct = Struct {
    fields: &[
        always("partition_index", I32),
        always("committed_offset", I64),
        since(6, "committed_leader_epoch", I32),
        always("committed_metadata", Ty::Str),
    ],
    in_memory: size_of::<offset_commit::OffsetCommitRequestPartition>(),
};

const OFFSET_FETCH: Struct = body(&[
    until(7, "group_id", Ty::Str),
    until(7, "topics", Ty::Structs(&OFFSET_FETCH_TOPIC)),
    since(8, "groups", Ty::Structs(&OFFSET_FETCH_GROUP)),
    since(7, "require_stable", BOOL),
]);
const OFFSET_FETCH_TOPIC: Struct = Struct {
    fields: &[always("name", Ty::Str), always("partition_indexes", Ty::Int32s)],
    in_memory: size_of::<offset_fetch::OffsetFetchRequestTopic>(),
};
const OFFSET_FETCH_GROUP: Struct = Struct {
    fields: &[
        always("group_id", Ty::Str),
        since(9, "member_id", Ty::Str),
        since(9, "member_epoch", I32),
        always("topics", Ty::Structs(&OFFSET_FETCH_GROUP_TOPIC)),
    ],
    in_memory: size_of::<offset_fetch::OffsetFetchRequestGroup>(),
};
const OFFSET_FETCH_GROUP_TOPIC: Struct = Struct {
    fields: &[always("name", Ty::Str), always("partition_indexes", Ty::Int32s)],
    in_memory: size_of::<offset_fetch::OffsetFetchRequestTopics>(),
};

const LIST_GROUPS: Struct = body(&[since(4, "states_filter", Ty::Strs), since(5, "types_filter", Ty::Strs)]);

const DESCRIBE_GROUPS: Struct = body(&[always("groups", Ty::Strs), since(3, "include_authorized_operations", BOOL)]);

const DELETE_GROUPS: Struct = body(&[always("groups_names", Ty::Strs)]);
