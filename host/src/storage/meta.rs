//! Metadata rows, postcard-encoded. Fields are only ever appended (postcard is not self-describing),
//! and any incompatible change bumps [`FORMAT_VERSION`](super::layout::FORMAT_VERSION).

use serde::{Deserialize, Serialize};

use super::topic::TopicConfig;

/// A topic's row in `topics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Kafka's topic id (a UUID), made when the topic is created.
    pub id: [u8; 16],
    pub config: TopicConfig,
    /// The storage key of each partition, by partition index.
    pub partition_keys: Vec<u64>,
    pub created_ms: i64,
}

/// A partition's row in `partitions`, rewritten by every commit that changes the partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub log_start_offset: u64,
    pub next_offset: u64,
    /// Bytes of batches stored (whole groups), for `retention.bytes`.
    pub size_bytes: u64,
    pub leader_epoch: u32,
    /// Leader epoch history: (epoch, first offset written in it).
    pub epochs: Vec<(u32, u64)>,
    /// When a batch was last appended (the broker's clock, ms since 1970; 0: never): the age of
    /// the newest group, for `retention.ms` (format 2; see [`super::ages`]).
    pub last_append_ms: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt metadata row {what}: {source}")]
pub struct MetaDecodeError {
    pub what: String,
    #[source]
    pub source: postcard::Error,
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain structs into a Vec cannot fail: postcard fails only on a full buffer or
    // on types it does not support, and these are fixed at compile time.
    postcard::to_allocvec(value).expect("postcard encodes metadata structs")
}

pub fn decode<T: for<'de> Deserialize<'de>>(what: impl FnOnce() -> String, bytes: &[u8]) -> Result<T, MetaDecodeError> {
    postcard::from_bytes(bytes).map_err(|source| MetaDecodeError { what: what(), source })
}
