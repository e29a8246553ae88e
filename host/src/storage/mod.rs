//! The log on disk: redb, one row per group of batches, one writer thread doing group commit.
//!
//! - [`Store::append`] validates batches on the caller's task (CRC, records, size), then hands them
//!   to the writer thread, which gathers appends from every caller into one write transaction,
//!   assigns offsets with `rill-core`'s log model, commits, and only then acknowledges each caller.
//! - Reads ([`Store::read`]) run in redb read transactions (MVCC) and never block the writer.
//! - Durability: `fsync every commit` (default) or `interval` (commits are visible at once and made
//!   durable together every N ms: a power cut loses at most the last N ms of acknowledged appends).
//!   A small commit becomes durable through the [`journal`] in front of redb (one page synced, not
//!   redb's ≈ 32 KiB), a large one through a durable redb commit, which is also a checkpoint.
//! - After an IO error (disk full, failed fsync) redb refuses every later write until the database
//!   is reopened; the writer reopens it by itself and appends resume once the cause is gone.
//!
//! Row layout: see [`layout`].

mod admin;
mod ages;
mod backend;
mod catalog;
mod command;
mod config;
mod errors;
mod journal;
pub mod layout;
mod logs;
pub mod meta;
mod migrate;
pub mod offsets;
pub mod producers;
mod read;
mod recovery;
pub mod resources;
mod space;
mod space_writer;
mod staged;
mod stats;
pub mod topic;
mod validate;
mod writer;

#[cfg(any(test, feature = "fault-injection"))]
pub mod fault;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod time_tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

pub use backend::{BackendFactory, StoreFile};
pub use catalog::{PartitionOffsets, PartitionState, TopicState, TrafficCounts};
pub use config::{DurabilityPolicy, Location, StoreConfig};
pub use errors::{AppendError, IoFailure, LogRefusal, OpenError, ReadError, StorageError, WriterState};
pub use journal::JournalError;
pub use offsets::{CommittedOffset, GroupOffsets, TopicPartition};
pub use read::ReadOutcome;
pub use resources::{Blob, PutMode, ResourceError};
pub use space::{FsSpace, NoSpace, SpaceProbe, SpaceUsage};
pub use stats::StoreStats;
pub use topic::{MessageTimestampType, TimestampOutOfRange, TopicConfig, TopicError};
use validate::Checked;
pub use validate::InvalidBatch;

use crate::clock::Clock;
use crate::limits::WRITER_QUEUE_MAX;
use catalog::Catalog;
use writer::{Command, Writer};

/// The resource kind that marks a topic read-only (the document says why).
pub const READ_ONLY_KIND: &str = "topic-read-only";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ReadOnlyDocument {
    reason: String,
}

/// The database file's name inside the data directory.
pub const DB_FILE_NAME: &str = "rill.redb";
/// The write-ahead journal beside it (see [`journal`]).
pub const JOURNAL_FILE_NAME: &str = "rill.journal";

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: u64,
    pub last_offset: u64,
    pub log_start_offset: u64,
    /// The time the batches were stamped with on a `LogAppendTime` topic (Kafka's
    /// `log_append_time_ms`); `None` where they keep their producer's timestamps.
    pub log_append_time_ms: Option<i64>,
}

/// A resource document to write (`Some`) or delete (`None`) with a [`Store::transact`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentWrite {
    pub kind: String,
    pub name: String,
    pub document: Option<Vec<u8>>,
}

/// Builds a transaction's documents once its appends have their offsets (a pipeline records which
/// output offsets it wrote in the same transaction as the output). Runs on the writer thread:
/// keep it short.
pub struct Documents(pub Box<BuildDocuments>);

/// See [`Documents`].
pub type BuildDocuments = dyn FnOnce(&[AppendOutcome]) -> Vec<DocumentWrite> + Send;

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Documents(..)")
    }
}

/// A queued append: its outcome arrives once the writer has committed it.
#[derive(Debug)]
pub struct AppendTicket {
    answer: oneshot::Receiver<Result<AppendOutcome, AppendError>>,
    /// Set when validation stamped the batches (a `LogAppendTime` topic).
    log_append_time_ms: Option<i64>,
}

impl AppendTicket {
    pub async fn outcome(self) -> Result<AppendOutcome, AppendError> {
        let outcome = self.answer.await.unwrap_or(Err(AppendError::ShutDown))?;
        Ok(AppendOutcome { log_append_time_ms: self.log_append_time_ms, ..outcome })
    }
}

/// A change to a mirror copy's log end that no batch carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaReset {
    /// Remove everything from this offset on (a batch boundary): the copy diverged.
    TruncateTo(u64),
    /// The log end jumps here: the leader has no records in between.
    SkipTo(u64),
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub groups_deleted: u64,
    pub bytes_deleted: u64,
    pub partitions_trimmed: u64,
}

/// The storage engine. Cheap to clone; every clone talks to the same writer thread.
#[derive(Clone, Debug)]
pub struct Store {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    writer_thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// State that readers and the writer share.
#[derive(Debug)]
struct Shared {
    /// The open database; `None` while the writer reopens it after an IO error.
    db: RwLock<Option<Arc<redb::Database>>>,
    catalog: RwLock<Catalog>,
    /// Consumer groups' committed offsets as the file has them.
    offsets: RwLock<GroupOffsets>,
    /// Bumped whenever the writer reopens the database (see [`Store::generation`]).
    generation: AtomicU64,
    /// Topics only their owner appends to (mirror copies), with why; kept as documents of kind
    /// [`READ_ONLY_KIND`].
    read_only: RwLock<HashMap<String, String>>,
    stats: StoreStats,
    durability: DurabilityPolicy,
    /// Per partition key, per holder (a mirror): retention keeps every offset from the lowest
    /// floor on (see [`Store::set_retention_floor`]).
    floors: Mutex<HashMap<u64, HashMap<String, u64>>>,
    /// Per holder, the topics it protects whole until it sets a floor (a mirror's patterns: a
    /// topic made while its link is down is kept until it is copied).
    guards: Mutex<Guards>,
    /// See [`StoreConfig::clock`].
    clock: Clock,
    /// See [`Store::cluster_id`].
    cluster_id: uuid::Uuid,
    /// The writer's recovery from an IO error, while it lasts (see [`Store::writer_state`]).
    recovery: Mutex<Option<recovery::Broken>>,
    /// Why appends are refused for lack of space, while they are (see [`space`]).
    no_space: Mutex<Option<NoSpace>>,
}

/// The topic guards by holder (shown by holder name only).
#[derive(Default)]
struct Guards(HashMap<String, TopicGuard>);

impl std::fmt::Debug for Guards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// Which topics a retention holder protects (see [`Store::guard_topics`]).
pub type TopicGuard = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl Store {
    /// Opens (or creates) the store and starts its writer thread.
    pub fn open(location: Location, mut config: StoreConfig) -> Result<Store, OpenError> {
        let factory = match location {
            Location::Dir(dir) => {
                config.space_probe.get_or_insert_with(|| SpaceProbe::filesystem(&dir));
                backend::file_factory(&dir)?
            }
            Location::Backend(factory) => factory,
        };
        let (db, journal) = backend::open_store(&factory, &config)?;
        let (catalog, metas) = catalog::load(&db)?;
        let cluster_id = catalog::cluster_id(&db)?;
        let logs = logs::load_logs(&db, &metas).map_err(OpenError::Storage)?;
        let group_offsets = offsets::load(&db).map_err(OpenError::Storage)?;
        let producers = producers::load(&db).map_err(OpenError::Storage)?;
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            catalog: RwLock::new(catalog),
            offsets: RwLock::new(group_offsets),
            generation: AtomicU64::new(0),
            stats: StoreStats::default(),
            read_only: RwLock::new(HashMap::new()),
            durability: config.durability,
            floors: Mutex::new(HashMap::new()),
            guards: Mutex::new(Guards::default()),
            clock: config.clock.clone(),
            cluster_id,
            recovery: Mutex::new(None),
            no_space: Mutex::new(None),
        });
        let marked = resources::list(&shared, READ_ONLY_KIND).map_err(OpenError::Storage)?;
        let read_only = marked.into_iter().map(|(topic, document)| {
            let reason = serde_json::from_slice::<ReadOnlyDocument>(&document).map(|d| d.reason);
            (topic, reason.unwrap_or_else(|_| "read-only".into()))
        });
        shared.read_only.write().unwrap_or_else(|p| p.into_inner()).extend(read_only);
        let (commands, inbox) = mpsc::channel(WRITER_QUEUE_MAX);
        let writer = Writer::new(shared.clone(), factory, journal, config, logs, producers, inbox);
        let thread = std::thread::Builder::new()
            .name("rill-storage-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| OpenError::Storage(e.into()))?;
        Ok(Store { shared, commands, writer_thread: Arc::new(Mutex::new(Some(thread))) })
    }

    /// The id of the cluster this data belongs to: made with the data, kept across restarts (Kafka
    /// clients compare it to know they talk to the same cluster).
    pub fn cluster_id(&self) -> uuid::Uuid {
        self.shared.cluster_id
    }

    /// The topic `name`, created with `partitions` and `config` when missing (another task
    /// creating it at the same moment is no error).
    pub async fn topic_or_create(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<Arc<TopicState>, TopicError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        match self.create_topic(name, partitions, config).await {
            Err(TopicError::AlreadyExists(_)) => self.topic(name).ok_or_else(|| {
                TopicError::Storage(StorageError::internal(format!("topic {name:?} vanished as it was made")))
            }),
            created => created,
        }
    }

    /// Creates a topic with a fresh topic id.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<Arc<TopicState>, TopicError> {
        topic::validate_topic_name(name)?;
        topic::validate_partition_count(partitions)?;
        let name = name.to_owned();
        self.request(|reply| Command::CreateTopic { name, partitions, config, reply })
            .await
            .unwrap_or_else(|e| Err(TopicError::Storage(e.into_storage())))
    }

    /// Deletes a topic and all its batches (and its read-only mark).
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        let owned = name.to_owned();
        self.request(|reply| Command::DeleteTopic { name: owned, reply })
            .await
            .unwrap_or_else(|e| Err(TopicError::Storage(e.into_storage())))?;
        self.unmark_read_only(name).await.map_err(|e| TopicError::Storage(e.into_storage()))
    }

    /// Lets producers write to `topic` again.
    pub async fn unmark_read_only(&self, topic: &str) -> Result<(), AppendError> {
        if self.read_only_reason(topic).is_none() {
            return Ok(());
        }
        let unmark = DocumentWrite { kind: READ_ONLY_KIND.into(), name: topic.into(), document: None };
        self.write_documents(vec![unmark]).await?;
        self.shared.read_only.write().unwrap_or_else(|p| p.into_inner()).remove(topic);
        Ok(())
    }

    /// Marks a topic read-only for every writer but [`append_replica`](Self::append_replica)
    /// (producers get [`AppendError::ReadOnly`] with `reason`). Durable; survives restarts.
    pub async fn mark_read_only(&self, topic: &str, reason: &str) -> Result<(), AppendError> {
        let document = serde_json::to_vec(&ReadOnlyDocument { reason: reason.to_owned() })
            .map_err(|e| StorageError::internal(format!("cannot encode a read-only mark: {e}")))?;
        let mark = DocumentWrite { kind: READ_ONLY_KIND.into(), name: topic.into(), document: Some(document) };
        self.write_documents(vec![mark]).await?;
        self.shared.read_only.write().unwrap_or_else(|p| p.into_inner()).insert(topic.to_owned(), reason.to_owned());
        Ok(())
    }

    /// Why `topic` is read-only, if it is.
    pub fn read_only_reason(&self, topic: &str) -> Option<String> {
        self.shared.read_only.read().unwrap_or_else(|p| p.into_inner()).get(topic).cloned()
    }

    /// Replaces a topic's configuration.
    pub async fn alter_topic_config(&self, name: &str, config: TopicConfig) -> Result<Arc<TopicState>, TopicError> {
        let name = name.to_owned();
        self.request(|reply| Command::AlterTopicConfig { name, config, reply })
            .await
            .unwrap_or_else(|e| Err(TopicError::Storage(e.into_storage())))
    }

    /// Grows a topic to `total` partitions (Kafka's CreatePartitions: partitions are never removed).
    pub async fn create_partitions(&self, name: &str, total: u32) -> Result<Arc<TopicState>, TopicError> {
        topic::validate_partition_count(total)?;
        let name = name.to_owned();
        self.request(|reply| Command::CreatePartitions { name, total, reply })
            .await
            .unwrap_or_else(|e| Err(TopicError::Storage(e.into_storage())))
    }

    /// Whether the store takes writes (`/health`).
    pub fn writer_state(&self) -> WriterState {
        if self.commands.is_closed() {
            return WriterState::Stopped;
        }
        let recovery = self.shared.recovery.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match recovery {
            Some(broken) if !broken.reopened || broken.writes_refused_until > std::time::Instant::now() => {
                WriterState::Recovering { cause: broken.cause.to_string(), disk_full: broken.cause.is_full() }
            }
            _ if self.shared.database().is_err() => {
                WriterState::Recovering { cause: "the database is being reopened".into(), disk_full: false }
            }
            _ => match self.appends_refused() {
                Some(refusal) => WriterState::RefusingAppends(refusal),
                None => WriterState::Accepting,
            },
        }
    }

    /// Why appends are refused for lack of space, while they are (see [`space`]).
    pub fn appends_refused(&self) -> Option<NoSpace> {
        *self.shared.no_space.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the database is open and the writer runs (readiness): false while the writer
    /// reopens the file after an IO error, and after shutdown.
    pub fn is_open(&self) -> bool {
        self.shared.database().is_ok() && !self.commands.is_closed()
    }

    /// Retention keeps `topic`/`partition` from `offset` on for `holder` (a mirror: what its
    /// aggregation node has not acknowledged), until the disk budget runs out. In memory: the
    /// holder sets it again after a restart, before the first retention pass.
    pub fn set_retention_floor(&self, holder: &str, topic: &str, partition: u32, offset: u64) {
        let Some(key) = self.topic(topic).and_then(|t| t.partition(partition)).map(|p| p.key) else { return };
        let mut floors = self.shared.floors.lock().unwrap_or_else(|p| p.into_inner());
        floors.entry(key).or_default().insert(holder.to_owned(), offset);
    }

    /// Retention keeps every partition of the topics `guard` accepts whole, until `holder` sets
    /// a floor for it (a mirror protects the topics its patterns name before it first sees them).
    pub fn guard_topics(&self, holder: &str, guard: TopicGuard) {
        self.shared.guards.lock().unwrap_or_else(|p| p.into_inner()).0.insert(holder.to_owned(), guard);
    }

    /// Drops every floor and guard `holder` set (the mirror was removed).
    pub fn clear_retention_floors(&self, holder: &str) {
        self.shared.guards.lock().unwrap_or_else(|p| p.into_inner()).0.remove(holder);
        let mut floors = self.shared.floors.lock().unwrap_or_else(|p| p.into_inner());
        for holders in floors.values_mut() {
            holders.remove(holder);
        }
        floors.retain(|_, holders| !holders.is_empty());
    }

    /// When acknowledged appends are durable.
    pub fn durability(&self) -> DurabilityPolicy {
        self.shared.durability
    }

    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicState>> {
        self.shared.catalog().get(name)
    }

    pub fn topics(&self) -> Vec<Arc<TopicState>> {
        self.shared.catalog().all()
    }

    /// Appends one or more concatenated v2 record batches (as a Kafka producer sends them) to a
    /// partition. Returns once they are committed under the durability policy.
    pub async fn append(&self, topic: &str, partition: u32, batches: Vec<u8>) -> Result<AppendOutcome, AppendError> {
        self.enqueue_append(topic, partition, Bytes::from(batches)).await?.outcome().await
    }

    /// The first half of [`Store::append`]: validates the batches and queues them for the writer,
    /// returning once they are queued. Appends queued one after another are stored in that order,
    /// so a connection can queue its next produce request while the previous one commits.
    /// `batches` may share a request frame's buffer: they are not copied before the commit.
    pub async fn enqueue_append(
        &self,
        topic: &str,
        partition: u32,
        batches: Bytes,
    ) -> Result<AppendTicket, AppendError> {
        let (partition_state, batches, log_append_time_ms) = self.partition_for_append(topic, partition, batches)?;
        let key = partition_state.key;
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Append { key, batches, reply }).await.map_err(|_| AppendError::ShutDown)?;
        Ok(AppendTicket { answer, log_append_time_ms })
    }

    /// The partition an append goes to, after its batches were validated (and stamped, on a
    /// `LogAppendTime` topic: the time is returned).
    fn partition_for_append(
        &self,
        topic: &str,
        partition: u32,
        batches: Bytes,
    ) -> Result<(Arc<PartitionState>, Checked, Option<i64>), AppendError> {
        let topic_state = self.topic(topic).ok_or_else(|| AppendError::UnknownTopic(topic.to_owned()))?;
        let partition_state = topic_state
            .partition(partition)
            .ok_or_else(|| AppendError::UnknownPartition { topic: topic.to_owned(), partition })?;
        if let Some(reason) = self.read_only_reason(topic) {
            return Err(AppendError::ReadOnly { topic: topic.to_owned(), reason });
        }
        let (checked, log_append_time_ms) =
            validate::validate_append(batches, &topic_state.config, self.shared.clock.now_ms())?;
        Ok((partition_state, checked, log_append_time_ms))
    }

    /// Appends batches whose offsets and epochs a leader assigned (a mirror's copy): they must
    /// start at the partition's log end. Committed with concurrent appends; the caller (the
    /// replication follower) validated them already (CRC, records).
    pub async fn append_replica(
        &self,
        topic: &str,
        partition: u32,
        batches: Vec<u8>,
    ) -> Result<AppendOutcome, AppendError> {
        self.enqueue_replica(topic, partition, batches).await?.outcome().await
    }

    /// The first half of [`append_replica`](Self::append_replica): queues the batches for the
    /// writer, so that several partitions' copies share one commit.
    pub async fn enqueue_replica(
        &self,
        topic: &str,
        partition: u32,
        batches: Vec<u8>,
    ) -> Result<AppendTicket, AppendError> {
        let key = self.partition_key(topic, partition)?;
        let (reply, answer) = oneshot::channel();
        let batches = Bytes::from(batches);
        self.commands.send(Command::AppendReplica { key, batches, reply }).await.map_err(|_| AppendError::ShutDown)?;
        Ok(AppendTicket { answer, log_append_time_ms: None })
    }

    /// Truncates a mirror copy or moves its end over a gap, writing `document` in the same
    /// durable transaction.
    pub async fn reset_replica(
        &self,
        topic: &str,
        partition: u32,
        reset: ReplicaReset,
        document: Option<DocumentWrite>,
    ) -> Result<(), AppendError> {
        let key = self.partition_key(topic, partition)?;
        self.request(|reply| Command::ResetReplica { key, reset, document, reply }).await.unwrap_or_else(Err)
    }

    /// A partition's offsets and leader-epoch history as the writer has them (committed state).
    pub async fn log_state(&self, topic: &str, partition: u32) -> Result<rill_core::log::LogState, AppendError> {
        let key = self.partition_key(topic, partition)?;
        self.request(|reply| Command::LogState { key, reply })
            .await?
            .ok_or_else(|| AppendError::UnknownPartition { topic: topic.to_owned(), partition })
    }

    fn partition_key(&self, topic: &str, partition: u32) -> Result<u64, AppendError> {
        let topic_state = self.topic(topic).ok_or_else(|| AppendError::UnknownTopic(topic.to_owned()))?;
        Ok(topic_state
            .partition(partition)
            .ok_or_else(|| AppendError::UnknownPartition { topic: topic.to_owned(), partition })?
            .key)
    }

    /// Reads batches from the one containing `offset`, up to `max_bytes` but always at least one
    /// whole batch (KIP-74), never past the high watermark. `max_bytes == 0` checks the offset and
    /// returns the partition's offsets without reading anything (a Fetch whose response is full).
    /// Blocking: call it from `spawn_blocking` on a busy runtime.
    pub fn read(&self, topic: &str, partition: u32, offset: u64, max_bytes: usize) -> Result<ReadOutcome, ReadError> {
        let topic_state = self.topic(topic).ok_or_else(|| ReadError::UnknownTopic(topic.to_owned()))?;
        let partition_state = topic_state
            .partition(partition)
            .ok_or_else(|| ReadError::UnknownPartition { topic: topic.to_owned(), partition })?;
        read::read(&self.shared, &partition_state, offset, max_bytes)
    }

    /// The first offset whose record timestamp is at least `timestamp_ms`, with that timestamp
    /// (Kafka's ListOffsets by time); `None` when no record is that recent. Blocking, like
    /// [`Store::read`].
    pub fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<Option<(u64, i64)>, ReadError> {
        let topic_state = self.topic(topic).ok_or_else(|| ReadError::UnknownTopic(topic.to_owned()))?;
        let partition_state = topic_state
            .partition(partition)
            .ok_or_else(|| ReadError::UnknownPartition { topic: topic.to_owned(), partition })?;
        read::offset_for_timestamp(&self.shared, &partition_state, timestamp_ms)
    }

    /// The topic whose id (Kafka's topic id) is `id`.
    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<Arc<TopicState>> {
        self.topics().into_iter().find(|topic| topic.id == id)
    }

    /// Advances a partition's log start offset (Kafka's DeleteRecords). Batches wholly below it are
    /// deleted; the rest stay but are no longer readable below the new start.
    pub async fn delete_records(&self, topic: &str, partition: u32, before_offset: u64) -> Result<u64, AppendError> {
        let topic_state = self.topic(topic).ok_or_else(|| AppendError::UnknownTopic(topic.to_owned()))?;
        let key = topic_state
            .partition(partition)
            .ok_or_else(|| AppendError::UnknownPartition { topic: topic.to_owned(), partition })?
            .key;
        self.request(|reply| Command::DeleteRecords { key, before_offset, reply }).await.unwrap_or_else(Err)
    }

    /// Appends batches to several partitions and writes resource documents, all or nothing, in
    /// one transaction (under the durability policy, in the same group commit as concurrent
    /// appends). Outcomes come in the order of `appends`. The batches may not carry idempotent
    /// producer ids: a transaction is its own deduplication.
    ///
    /// With `generation`, the transaction is refused (a storage error) when the store has been
    /// reopened since that [`generation`](Self::generation): a caller whose state was read before
    /// a reopen must read it again, as commits it saw may be gone.
    pub async fn transact<B: Into<Bytes>>(
        &self,
        appends: Vec<(String, u32, B)>,
        documents: Documents,
        generation: Option<u64>,
    ) -> Result<Vec<AppendOutcome>, AppendError> {
        let mut keyed = Vec::with_capacity(appends.len());
        for (topic, partition, batches) in appends {
            let (partition, batches, _) = self.partition_for_append(&topic, partition, batches.into())?;
            let key = partition.key;
            if batches.headers.iter().any(|header| header.producer_id >= 0) {
                return Err(LogRefusal::ProducerIdInTransaction.into());
            }
            keyed.push((key, batches));
        }
        self.request(|reply| Command::Transact { appends: keyed, documents, generation, reply })
            .await
            .unwrap_or_else(Err)
    }

    /// Writes (or deletes) resource documents, all or nothing, upserting: a transaction without
    /// appends, committed with the appends gathered around it.
    pub async fn write_documents(&self, writes: Vec<DocumentWrite>) -> Result<(), AppendError> {
        self.transact(Vec::<(String, u32, Bytes)>::new(), Documents(Box::new(move |_| writes)), None).await.map(drop)
    }

    /// Counts the times the writer reopened the database after an IO error. Commits that were
    /// acknowledged but not yet durable (the interval policy) may be gone after a reopen, so
    /// state derived from the store before it is suspect: read the generation, then the state,
    /// and pass the generation to [`transact`](Self::transact).
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Commits a consumer group's offsets durably (under the durability policy, in the same group
    /// commit as concurrent appends).
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<(), AppendError> {
        let group = group.to_owned();
        self.request(|reply| Command::CommitOffsets { group, offsets, reply }).await.unwrap_or_else(Err)
    }

    /// Stores a resource document (and its blob) durably.
    pub async fn put_resource(
        &self,
        kind: &str,
        name: &str,
        document: Vec<u8>,
        mode: PutMode,
        blob: Option<Blob>,
    ) -> Result<(), ResourceError> {
        let (kind, name) = (kind.to_owned(), name.to_owned());
        self.request(|reply| Command::PutResource { kind, name, document, mode, blob, reply })
            .await
            .map_err(|e| ResourceError::Storage(e.into_storage()))?
    }

    /// Deletes a resource document; `references` names the blob a document holds, so a blob no
    /// document of the kind names any more is deleted with it. `false`: there was none.
    pub async fn delete_resource(
        &self,
        kind: &str,
        name: &str,
        references: fn(&[u8]) -> Option<String>,
    ) -> Result<bool, ResourceError> {
        let (kind, name) = (kind.to_owned(), name.to_owned());
        self.request(|reply| Command::DeleteResource { kind, name, references, reply })
            .await
            .map_err(|e| ResourceError::Storage(e.into_storage()))?
    }

    pub fn resource(&self, kind: &str, name: &str) -> Result<Option<Vec<u8>>, ResourceError> {
        resources::get(&self.shared, kind, name).map_err(ResourceError::Storage)
    }

    /// Every document of `kind`, ordered by name.
    pub fn resources(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, ResourceError> {
        resources::list(&self.shared, kind).map_err(ResourceError::Storage)
    }

    pub fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, ResourceError> {
        resources::blob(&self.shared, sha256).map_err(ResourceError::Storage)
    }

    /// A group's committed offsets (empty when it has none).
    pub fn committed_offsets(&self, group: &str) -> std::collections::BTreeMap<TopicPartition, CommittedOffset> {
        self.shared.offsets().get(group).cloned().unwrap_or_default()
    }

    /// Every group that has committed offsets.
    pub fn groups_with_offsets(&self) -> Vec<String> {
        self.shared.offsets().keys().cloned().collect()
    }

    /// Deletes a group's committed offsets; `false` when it had none.
    pub async fn delete_group_offsets(&self, group: &str) -> Result<bool, AppendError> {
        let group = group.to_owned();
        self.request(|reply| Command::DeleteGroupOffsets { group, reply }).await.unwrap_or_else(Err)
    }

    /// A new idempotent producer id, never handed out before by this data directory.
    pub async fn allocate_producer_id(&self) -> Result<i64, AppendError> {
        self.request(|reply| Command::AllocateProducerId { reply }).await.unwrap_or_else(Err)
    }

    /// Applies every topic's retention policy now (the broker also does it on a timer).
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport, AppendError> {
        self.request(|reply| Command::EnforceRetention { now_ms, reply }).await.unwrap_or_else(Err)
    }

    /// Makes everything committed so far durable (an fsync), whatever the policy.
    pub async fn flush(&self) -> Result<(), AppendError> {
        self.request(|reply| Command::Flush { reply }).await.unwrap_or_else(Err)
    }

    /// How much of the file redb has allocated, and to what.
    pub async fn space_usage(&self) -> Result<SpaceUsage, AppendError> {
        self.request(|reply| Command::SpaceUsage { reply }).await.unwrap_or_else(Err)
    }

    /// Stops the writer after it has finished what was queued, flushed and closed the database.
    pub async fn shutdown(&self) {
        let _ = self.request(|reply| Command::Shutdown { reply }).await;
        let thread = self.writer_thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    async fn request<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.map_err(|_| AppendError::ShutDown)?;
        answer.await.map_err(|_| AppendError::ShutDown)
    }

    /// A receiver that changes whenever the partition's offsets do (for long-polling fetches).
    pub fn watch_offsets(&self, topic: &str, partition: u32) -> Option<watch::Receiver<PartitionOffsets>> {
        Some(self.topic(topic)?.partition(partition)?.subscribe())
    }
}

impl Shared {
    /// The lowest retention floor of partition `key` of `topic`: what its holders set, and 0 for
    /// a holder guarding the topic that set none yet.
    fn floor(&self, key: u64, topic: &str) -> Option<u64> {
        let floors = self.floors.lock().unwrap_or_else(|p| p.into_inner());
        let set = floors.get(&key);
        let guards = self.guards.lock().unwrap_or_else(|p| p.into_inner());
        let unset_guard =
            guards.0.iter().any(|(holder, guard)| set.is_none_or(|s| !s.contains_key(holder)) && guard(topic));
        let lowest_set = set.and_then(|holders| holders.values().copied().min());
        if unset_guard { Some(0) } else { lowest_set }
    }

    fn catalog(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        // A poisoned lock means a writer panicked mid-update: the catalog it left is still a
        // consistent set of Arcs (updates swap whole entries), so keep serving it.
        self.catalog.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn offsets(&self) -> std::sync::RwLockReadGuard<'_, GroupOffsets> {
        self.offsets.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn database(&self) -> Result<Arc<redb::Database>, StorageError> {
        let guard = self.db.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.clone().ok_or(StorageError::Closed)
    }
}
