//! What storage operations answer when they cannot do what was asked.

use std::path::PathBuf;
use std::sync::Arc;

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
    Storage(#[from] StorageError),
    #[error(transparent)]
    Meta(#[from] MetaDecodeError),
    #[error(transparent)]
    Journal(#[from] super::journal::JournalError),
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
    Log(#[from] LogRefusal),
    #[error("producer {producer_id}: sequence {found} where {expected} was expected")]
    OutOfOrderSequence { producer_id: i64, found: i32, expected: i32 },
    #[error("producer {producer_id}: epoch {found} is older than the current {current} (a newer instance took over)")]
    StaleProducerEpoch { producer_id: i64, found: i16, current: i16 },
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    #[error("store is shut down")]
    ShutDown,
    #[error("topic {topic:?} is read-only: {reason}")]
    ReadOnly { topic: String, reason: String },
    #[error("record batch {index}: {error}")]
    InvalidTimestamp { index: usize, error: TimestampOutOfRange },
}

/// Why a partition's log refused a write: the client (or the leader a copy follows) asked for
/// something the log's offsets do not allow. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogRefusal {
    #[error("partition was deleted")]
    PartitionDeleted,
    #[error("{0}")]
    Batch(#[from] rill_core::batch::BatchError),
    #[error("{0}")]
    Append(#[from] rill_core::log::AppendError),
    #[error("{0}")]
    Offsets(#[from] rill_core::log::StateError),
    #[error("offset {offset} is above the high watermark {high_watermark}")]
    AboveHighWatermark { offset: u64, high_watermark: u64 },
    #[error("a transaction's batches may not carry a producer id")]
    ProducerIdInTransaction,
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
    /// The partition cannot be served from `offset` on; the rest of the store can.
    #[error("stored batch at offset {offset} of partition key {partition_key} is unreadable: {cause}")]
    Corrupt { partition_key: u64, offset: u64, cause: StorageError },
    #[error("storage unavailable: {0}")]
    Storage(#[from] StorageError),
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
        /// The error was a full disk: freeing space ends it.
        disk_full: bool,
    },
    /// Free space is under the reserve: appends are refused, reads, deletions and metadata go on
    /// (the process is healthy; `/ready` says it takes no appends).
    RefusingAppends(super::space::NoSpace),
    /// The writer thread has ended (shut down, or it failed): nothing more is stored.
    Stopped,
}

/// What went wrong below a storage operation, by what a caller can do about it: a full disk
/// (retry later), another IO error (retry later; the writer reopens the database), corrupt data
/// (that partition or document cannot be served), a closed store (shutting down), or a broken
/// invariant of Rill's own. Built from redb's errors in one place ([`From`] below), keeping
/// their kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("disk full: {0}")]
    Full(IoFailure),
    /// Appends are refused before the disk is full: free space is under the reserve kept for
    /// deletions (see `storage::space`). Nothing failed; retrying once space is freed works.
    #[error("{0}")]
    NoSpace(super::space::NoSpace),
    #[error("I/O error: {0}")]
    Io(IoFailure),
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// The store is shut down, or its database is being reopened after an IO error.
    #[error("storage is closed")]
    Closed,
    /// After an IO error: writes are refused until the database is reopened and a backoff has
    /// passed (`cause` is the error that started it).
    #[error("{cause}; storage is recovering, writes resume in {resume_in_ms} ms at the earliest")]
    Recovering { cause: Box<StorageError>, resume_in_ms: u64 },
    /// The store was reopened after an IO error since the caller read what it prepared from.
    #[error("the store was reopened after an IO error since this transaction was prepared: read again")]
    Reopened,
    /// Rill broke one of its own rules (a bug): the operation is refused, nothing is written.
    #[error("internal: {0}")]
    Internal(String),
}

/// What [`StorageError::Corrupt`] names when redb found the file itself damaged.
const DATABASE: &str = "database";

impl StorageError {
    /// The disk (or quota) is full: freeing space, not retrying at once, helps.
    pub fn is_full(&self) -> bool {
        match self {
            StorageError::Full(_) | StorageError::NoSpace(_) => true,
            StorageError::Recovering { cause, .. } => cause.is_full(),
            _ => false,
        }
    }

    pub fn is_corrupt(&self) -> bool {
        matches!(self, StorageError::Corrupt { .. })
    }

    /// An error the writer recovers from by reopening the database: IO errors (redb refuses
    /// every later call until then) and a damaged file (reopening repairs it). A row that does
    /// not decode, or a broken rule of Rill's, leaves the database as it was.
    pub fn needs_reopen(&self) -> bool {
        matches!(self, StorageError::Full(_) | StorageError::Io(_) | StorageError::Corrupt { what: DATABASE, .. })
    }

    pub fn internal(message: impl Into<String>) -> Self {
        StorageError::Internal(message.into())
    }

    pub fn corrupt(what: &'static str, detail: impl ToString) -> Self {
        StorageError::Corrupt { what, detail: detail.to_string() }
    }
}

/// An IO error, shared (one failed commit answers every append in it) and compared by kind
/// and message.
#[derive(Debug, Clone)]
pub struct IoFailure(pub Arc<std::io::Error>);

impl IoFailure {
    pub fn kind(&self) -> std::io::ErrorKind {
        self.0.kind()
    }
}

impl PartialEq for IoFailure {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl Eq for IoFailure {}

impl std::fmt::Display for IoFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
                StorageError::Full(IoFailure(Arc::new(e)))
            }
            ErrorKind::InvalidData => StorageError::corrupt(DATABASE, e),
            _ => StorageError::Io(IoFailure(Arc::new(e))),
        }
    }
}

impl From<redb::StorageError> for StorageError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            redb::StorageError::Io(io) => io.into(),
            redb::StorageError::Corrupted(detail) => StorageError::Corrupt { what: DATABASE, detail },
            redb::StorageError::DatabaseClosed => StorageError::Closed,
            // redb refuses every call after an IO error until the database is reopened; the
            // writer remembers the first error.
            redb::StorageError::PreviousIo => {
                StorageError::Io(IoFailure(Arc::new(std::io::Error::other("an earlier IO error"))))
            }
            other => StorageError::Io(IoFailure(Arc::new(std::io::Error::other(other.to_string())))),
        }
    }
}

impl From<redb::TableError> for StorageError {
    fn from(e: redb::TableError) -> Self {
        match e {
            redb::TableError::Storage(e) => e.into(),
            // A table of another type or shape than this build defines: not a file Rill wrote.
            other => StorageError::corrupt("table", other),
        }
    }
}

impl From<redb::TransactionError> for StorageError {
    fn from(e: redb::TransactionError) -> Self {
        match e {
            redb::TransactionError::Storage(e) => e.into(),
            other => StorageError::internal(other.to_string()),
        }
    }
}

impl From<redb::CommitError> for StorageError {
    fn from(e: redb::CommitError) -> Self {
        match e {
            redb::CommitError::Storage(e) => e.into(),
            other => StorageError::internal(other.to_string()),
        }
    }
}

impl From<redb::SetDurabilityError> for StorageError {
    fn from(e: redb::SetDurabilityError) -> Self {
        StorageError::internal(e.to_string())
    }
}

impl From<redb::DatabaseError> for StorageError {
    fn from(e: redb::DatabaseError) -> Self {
        match e {
            redb::DatabaseError::Storage(e) => e.into(),
            other => StorageError::internal(other.to_string()),
        }
    }
}

impl From<MetaDecodeError> for StorageError {
    fn from(e: MetaDecodeError) -> Self {
        StorageError::corrupt("metadata row", e)
    }
}

impl From<rill_core::batch::BatchError> for StorageError {
    fn from(e: rill_core::batch::BatchError) -> Self {
        StorageError::corrupt("stored batch", e)
    }
}

impl From<postcard::Error> for StorageError {
    fn from(e: postcard::Error) -> Self {
        StorageError::corrupt("stored row", e)
    }
}

impl From<rill_core::log::StateError> for StorageError {
    fn from(e: rill_core::log::StateError) -> Self {
        StorageError::corrupt("partition metadata", e)
    }
}

impl From<rill_core::log::EpochError> for StorageError {
    fn from(e: rill_core::log::EpochError) -> Self {
        StorageError::corrupt("partition epochs", e)
    }
}

impl From<crate::compression::DecompressError> for StorageError {
    fn from(e: crate::compression::DecompressError) -> Self {
        StorageError::corrupt("compressed records", e)
    }
}

/// A reopen that fails answers as the open did.
impl From<OpenError> for StorageError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Storage(e) => e,
            OpenError::Database(e) => e.into(),
            OpenError::Meta(e) => e.into(),
            OpenError::CreateDir { source, .. } => source.into(),
            other => StorageError::internal(other.to_string()),
        }
    }
}

impl AppendError {
    /// What a failed request to the writer means for an operation that is not an append.
    pub fn into_storage(self) -> StorageError {
        match self {
            AppendError::Storage(e) => e,
            AppendError::ShutDown => StorageError::Closed,
            other => StorageError::internal(other.to_string()),
        }
    }
}
