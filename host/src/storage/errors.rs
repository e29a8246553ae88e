//! What storage operations answer when they cannot do what was asked.

use std::path::PathBuf;

use super::meta::MetaDecodeError;
use super::topic::TimestampOutOfRange;
use super::validate::InvalidBatch;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open database: {0}")]
    Database(#[from] redb::DatabaseError),
    #[error("database is in use by another process (is another `rill serve` running on the same data dir?)")]
    Locked,
    #[error("database format version {found} is newer than this build supports ({supported}): upgrade rill")]
    NewerFormat { found: u64, supported: u64 },
    #[error("cannot read database: {0}")]
    Storage(String),
    #[error(transparent)]
    Meta(#[from] MetaDecodeError),
}

/// Why an append failed. Nothing of a failed append is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error(transparent)]
    InvalidBatch(#[from] InvalidBatch),
    #[error("record batch of {size} bytes exceeds max.message.bytes={max}")]
    MessageTooLarge { size: usize, max: u32 },
    #[error("append refused by the log: {0}")]
    Log(String),
    #[error("producer {producer_id}: sequence {found} where {expected} was expected")]
    OutOfOrderSequence { producer_id: i64, found: i32, expected: i32 },
    #[error("producer {producer_id}: epoch {found} is older than the current {current} (a newer instance took over)")]
    StaleProducerEpoch { producer_id: i64, found: i16, current: i16 },
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("store is shut down")]
    ShutDown,
    #[error("topic {topic:?} is read-only: {reason}")]
    ReadOnly { topic: String, reason: String },
    #[error("record batch {index}: {error}")]
    InvalidTimestamp { index: usize, error: TimestampOutOfRange },
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("offset {offset} is out of range [{log_start_offset}, {next_offset}]")]
    OffsetOutOfRange { offset: u64, log_start_offset: u64, next_offset: u64 },
    #[error("stored batch at offset {offset} of partition key {partition_key} is corrupt: {reason}")]
    Corrupt { partition_key: u64, offset: u64, reason: String },
    #[error("storage unavailable: {0}")]
    Storage(String),
}

/// Whether the store takes writes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum WriterState {
    Accepting,
    /// After an IO error (a full disk, a failing card): writes are refused until the database
    /// is reopened and a backoff has passed; `cause` is the error.
    Recovering {
        cause: String,
    },
    /// The writer thread has ended (shut down, or it failed): nothing more is stored.
    Stopped,
}
