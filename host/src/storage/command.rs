//! What the storage writer is asked to do: one command per operation, each with the channel its
//! answer goes back on. Appends, offset commits and transactions are gathered into group commits;
//! the rest run on their own (see [`super::writer`] and [`super::admin`]).

use std::sync::Arc;

use bytes::Bytes;
use rill_core::log::LogState;
use tokio::sync::oneshot;

use super::catalog::TopicState;
use super::offsets::{CommittedOffset, TopicPartition};
use super::resources::{Blob, PutMode, ResourceError};
use super::topic::{TopicConfig, TopicError};
use super::validate::Checked;
use super::{AppendError, AppendOutcome, DocumentWrite, Documents, RetentionReport, SpaceUsage};

pub(super) type Reply<T> = oneshot::Sender<T>;

#[derive(Debug)]
pub(super) enum Command {
    Append {
        key: u64,
        batches: Checked,
        reply: Reply<Result<AppendOutcome, AppendError>>,
    },
    /// Batches a leader already assigned offsets to (a mirror's copy), committed with the appends
    /// gathered around it.
    AppendReplica {
        key: u64,
        batches: Bytes,
        reply: Reply<Result<AppendOutcome, AppendError>>,
    },
    /// Cuts or moves a mirror copy's log end (its own durable transaction).
    ResetReplica {
        key: u64,
        reset: super::ReplicaReset,
        document: Option<DocumentWrite>,
        reply: Reply<Result<(), AppendError>>,
    },
    /// A partition's offsets and epochs as the writer has them.
    LogState {
        key: u64,
        reply: Reply<Option<LogState>>,
    },
    CreateTopic {
        name: String,
        partitions: u32,
        config: TopicConfig,
        reply: Reply<Result<Arc<TopicState>, TopicError>>,
    },
    DeleteTopic {
        name: String,
        reply: Reply<Result<(), TopicError>>,
    },
    AlterTopicConfig {
        name: String,
        config: TopicConfig,
        reply: Reply<Result<Arc<TopicState>, TopicError>>,
    },
    CreatePartitions {
        name: String,
        total: u32,
        reply: Reply<Result<Arc<TopicState>, TopicError>>,
    },
    DeleteRecords {
        key: u64,
        before_offset: u64,
        reply: Reply<Result<u64, AppendError>>,
    },
    EnforceRetention {
        now_ms: i64,
        reply: Reply<Result<RetentionReport, AppendError>>,
    },
    Flush {
        reply: Reply<Result<(), AppendError>>,
    },
    /// redb's page accounting, for benchmarks and metrics.
    SpaceUsage {
        reply: Reply<Result<SpaceUsage, AppendError>>,
    },
    Shutdown {
        reply: Reply<()>,
    },
    /// All or nothing, committed with the appends gathered around it.
    Transact {
        appends: Vec<(u64, Checked)>,
        documents: Documents,
        /// Refused unless the store is still at this generation.
        generation: Option<u64>,
        reply: Reply<Result<Vec<AppendOutcome>, AppendError>>,
    },
    /// Committed with the appends gathered around it (one transaction).
    CommitOffsets {
        group: String,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
        reply: Reply<Result<(), AppendError>>,
    },
    DeleteGroupOffsets {
        group: String,
        reply: Reply<Result<bool, AppendError>>,
    },
    AllocateProducerId {
        reply: Reply<Result<i64, AppendError>>,
    },
    PutResource {
        kind: String,
        name: String,
        document: Vec<u8>,
        mode: PutMode,
        blob: Option<Blob>,
        reply: Reply<Result<(), ResourceError>>,
    },
    DeleteResource {
        kind: String,
        name: String,
        references: fn(&[u8]) -> Option<String>,
        reply: Reply<Result<bool, ResourceError>>,
    },
}
