//! The single writer thread: group commit, offset assignment, durability policy (recovery after
//! IO errors: [`super::recovery`]; its memory of each partition: [`super::logs`]).
//!
//! It takes the first queued command, then everything else already queued (up to
//! [`COMMIT_APPENDS_MAX`] appends and [`COMMIT_BYTES_MAX`] bytes), writes all appends in one
//! transaction and acknowledges them after the commit. No artificial wait: under load, appends
//! queue while the previous commit syncs, so batching grows with load and a lone append at low
//! rate is committed at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use redb::Durability;
use rill_core::batch;
use tokio::sync::mpsc;

use super::backend::BackendFactory;
use super::journal::Journal;
use super::journal::redo::{self, Txn};
use super::layout::{JOURNAL_SEQ_KEY, META};
use super::logs::{OpenGroup, PartitionLog, publish};
use super::meta;
use super::offsets::{self, CommittedOffset, TopicPartition};
use super::producers::{self, ProducerState, Producers, SequenceCheck, SequenceError};
use super::recovery::Broken;
use super::space::SpaceGuard;
use super::staged::{Groups, Mark, Staged, write_rows};
use super::validate::Checked;
use super::{AppendError, AppendOutcome, DocumentWrite, Documents, DurabilityPolicy, Shared, StoreConfig};
use super::{LogRefusal, StorageError};
use crate::limits::{COMMIT_APPENDS_MAX, COMMIT_BYTES_MAX, JOURNAL_RECORD_BYTES_MAX};
use bytes::Bytes;
use rill_core::batch::BatchHeader;

pub(super) use super::command::{Command, Reply};

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) factory: BackendFactory,
    /// Where small commits become durable (see [`super::journal`]).
    pub(super) journal: Journal,
    pub(super) config: StoreConfig,
    pub(super) logs: HashMap<u64, PartitionLog>,
    /// Idempotent producers' state, as committed.
    pub(super) producers: Producers,
    /// Producer ids reserved on disk and not yet handed out.
    pub(super) producer_ids: std::ops::Range<i64>,
    pub(super) inbox: mpsc::Receiver<Command>,
    /// Commits made since the journal was last synced (interval policy).
    pub(super) unsynced_since: Option<Instant>,
    /// Set after an IO error: the database must be reopened before the next write.
    pub(super) broken: Option<Broken>,
    /// Where each row of a commit is assembled (kept: a row is at most a part, 256 KiB).
    scratch: Vec<u8>,
    /// Refuses appends before the disk is full (see [`super::space`]).
    pub(super) space: SpaceGuard,
    /// When the free space was last read while appends are refused.
    pub(super) space_checked_at: Option<Instant>,
}

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        factory: BackendFactory,
        journal: Journal,
        config: StoreConfig,
        logs: HashMap<u64, PartitionLog>,
        producers: Producers,
        inbox: mpsc::Receiver<Command>,
    ) -> Self {
        Self {
            shared,
            factory,
            journal,
            logs,
            producers,
            producer_ids: 0..0,
            inbox,
            unsynced_since: None,
            broken: None,
            scratch: Vec::new(),
            space: SpaceGuard::new(config.reserve_bytes),
            space_checked_at: None,
            config,
        }
    }

    pub fn run(mut self) {
        // The writer is a plain thread (redb calls block on fsync); a tiny runtime lets it wait on
        // the async queue with a timeout, which the interval policy needs.
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "storage writer cannot start its runtime");
                return;
            }
        };
        loop {
            let first = match self.wake_deadline() {
                None => runtime.block_on(self.inbox.recv()),
                Some(deadline) => match runtime
                    .block_on(async { tokio::time::timeout_at(deadline.into(), self.inbox.recv()).await })
                {
                    Ok(command) => command,
                    Err(_elapsed) => {
                        self.on_wake();
                        continue;
                    }
                },
            };
            let Some(first) = first else { break };
            if !self.commit_queued(first) {
                return;
            }
        }
        self.shutdown();
    }

    /// Commits `first` with whatever else is queued behind it, up to the commit's bounds. An
    /// admin command commits what came before it, then runs on its own. `false` once the store
    /// shut down.
    fn commit_queued(&mut self, first: Command) -> bool {
        let mut appends = Pending::default();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Append { key, batches, reply } => {
                    bytes += batches.bytes.len();
                    appends.appends.push(PendingAppend { key, batches: Incoming::Produced(batches), reply });
                }
                Command::AppendReplica { key, batches, reply } => {
                    bytes += batches.len();
                    appends.appends.push(PendingAppend { key, batches: Incoming::Replica(batches), reply });
                }
                Command::CommitOffsets { group, offsets, reply } => {
                    appends.offsets.push(PendingOffsets { group, offsets, reply });
                }
                Command::Transact { appends: batches, documents, generation, reply } => {
                    bytes += batches.iter().map(|(_, b)| b.bytes.len()).sum::<usize>();
                    appends.transactions.push(PendingTransaction { appends: batches, documents, generation, reply });
                }
                other => {
                    // Keep order: appends queued before an admin command commit before it.
                    self.commit_appends(std::mem::take(&mut appends));
                    bytes = 0;
                    if let Command::Shutdown { reply } = other {
                        self.shutdown();
                        let _ = reply.send(());
                        return false;
                    }
                    self.handle_admin(other);
                }
            }
            if appends.len() < COMMIT_APPENDS_MAX && bytes < COMMIT_BYTES_MAX {
                next = self.inbox.try_recv().ok();
            }
        }
        self.commit_appends(appends);
        true
    }

    /// When the writer must act without a command: an interval sync or a reopen retry.
    fn wake_deadline(&self) -> Option<Instant> {
        let flush = match (self.config.durability, self.unsynced_since) {
            (DurabilityPolicy::Interval(interval), Some(since)) => Some(since + interval),
            _ => None,
        };
        [flush, self.reopen_deadline(), self.space_recheck_deadline()].into_iter().flatten().min()
    }

    fn on_wake(&mut self) {
        if self.reopen_deadline().is_some_and(|at| at <= Instant::now()) {
            let _ = self.retry_reopen();
        }
        if self.space_recheck_deadline().is_some_and(|at| at <= Instant::now()) {
            self.recheck_space();
        }
        self.sync_now();
    }

    fn shutdown(&mut self) {
        self.sync_now();
        if let Err(cause) = self.checkpoint() {
            tracing::error!(error = %cause, "storage checkpoint failed; the next start replays the journal");
        }
        // Dropping the last handle closes the database cleanly (no repair on the next open).
        let db = self.shared.db.write().unwrap_or_else(|p| p.into_inner()).take();
        drop(db);
        tracing::info!("storage closed");
    }
}

pub(super) struct PendingAppend {
    key: u64,
    pub(super) batches: Incoming,
    pub(super) reply: Reply<Result<AppendOutcome, AppendError>>,
}

pub(super) enum Incoming {
    /// A producer's: offsets and epochs are assigned here.
    Produced(Checked),
    /// A mirror's copy: offsets and epochs came with the batches, and are kept.
    Replica(Bytes),
}

struct PendingOffsets {
    group: String,
    offsets: Vec<(TopicPartition, CommittedOffset)>,
    reply: Reply<Result<(), AppendError>>,
}

pub(super) struct PendingTransaction {
    pub(super) appends: Vec<(u64, Checked)>,
    documents: Documents,
    generation: Option<u64>,
    pub(super) reply: Reply<Result<Vec<AppendOutcome>, AppendError>>,
}

/// What one group commit writes.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) appends: Vec<PendingAppend>,
    offsets: Vec<PendingOffsets>,
    pub(super) transactions: Vec<PendingTransaction>,
}

impl Pending {
    pub(super) fn len(&self) -> usize {
        self.appends.len() + self.offsets.len() + self.transactions.len()
    }
}

/// A partition before a transaction touched it: its log, its staged bytes, its counts.
type Before = (Option<PartitionLog>, Mark, Option<(u64, u64)>);

/// A transaction's assigned appends, its documents, and who waits for it.
type TransactionResult = (Reply<Result<Vec<AppendOutcome>, AppendError>>, Result<Vec<AppendOutcome>, AppendError>);

/// An append's partition, who waits for it, and its offsets (or why it was refused).
type AppendResult = (u64, Reply<Result<AppendOutcome, AppendError>>, Result<(u64, u64), AppendError>);

/// A commit's appends with their offsets assigned: what to write, and whom to answer.
struct Assigned {
    touched: Touched,
    groups: Groups,
    results: Vec<AppendResult>,
    transacted: Vec<TransactionResult>,
    documents: Vec<DocumentWrite>,
}

/// Answers a whole commit with `cause` (the store takes no writes now).
fn refuse_all(
    appends: Vec<PendingAppend>,
    offsets: Vec<PendingOffsets>,
    transactions: Vec<PendingTransaction>,
    cause: &StorageError,
) {
    for append in appends {
        let _ = append.reply.send(Err(AppendError::Storage(cause.clone())));
    }
    for commit in offsets {
        let _ = commit.reply.send(Err(AppendError::Storage(cause.clone())));
    }
    for transaction in transactions {
        let _ = transaction.reply.send(Err(AppendError::Storage(cause.clone())));
    }
}

/// What a commit changes besides batch rows, with how to undo it in memory if the commit fails.
#[derive(Default)]
pub(super) struct Touched {
    /// Partitions' logs as they were before this commit.
    logs: HashMap<u64, PartitionLog>,
    /// Producers as they were before this commit (`None`: unknown before).
    producers: HashMap<(u64, i64), Option<ProducerState>>,
    /// Records and bytes appended per partition, counted once the commit succeeds.
    appended: HashMap<u64, (u64, u64)>,
    batches: u64,
}

impl Writer {
    fn commit_appends(&mut self, pending: Pending) {
        if pending.len() == 0 {
            return;
        }
        if let Err(cause) = self.ensure_open() {
            refuse_all(pending.appends, pending.offsets, pending.transactions, &cause);
            return;
        }
        let Pending { appends, offsets, transactions } = self.hold_back_for_space(pending);
        if appends.is_empty() && offsets.is_empty() && transactions.is_empty() {
            return;
        }
        let assigned = self.assign_pending(appends, transactions);
        let sync = self.sync_due();
        let started = Instant::now();
        let written = self.write_commit(&assigned.groups, &assigned.touched, &offsets, &assigned.documents, sync);
        match written {
            Ok(durable) => {
                let stats = &self.shared.stats;
                let bytes = assigned.groups.values().map(|group| group.len() as u64).sum();
                stats.observe_group_commit(started.elapsed().as_secs_f64(), assigned.touched.batches, bytes);
                stats.count_commit(durable);
                self.count_traffic(&assigned.touched.appended);
                self.commit_succeeded();
                self.after_commit(&assigned.touched.logs, durable);
                self.answer_committed(assigned, offsets);
            }
            Err(cause) => {
                self.take_back(assigned, offsets, &cause);
                if cause.needs_reopen() {
                    self.mark_broken(cause);
                } else {
                    tracing::error!(error = %cause, "storage commit failed; nothing of it was stored");
                }
            }
        }
    }

    /// Assigns offsets to a commit's appends and transactions, in queue order, gathering each
    /// partition's bytes. Refused ones keep their refusal and add nothing.
    fn assign_pending(&mut self, appends: Vec<PendingAppend>, transactions: Vec<PendingTransaction>) -> Assigned {
        let mut assigned = Assigned {
            touched: Touched::default(),
            groups: BTreeMap::new(),
            results: Vec::with_capacity(appends.len()),
            transacted: Vec::with_capacity(transactions.len()),
            documents: Vec::new(),
        };
        let (touched, groups) = (&mut assigned.touched, &mut assigned.groups);
        for PendingAppend { key, batches, reply } in appends {
            let result = match batches {
                Incoming::Produced(batches) => self.assign(key, batches, touched, groups),
                Incoming::Replica(batches) => self.assign_replica(key, batches, touched, groups),
            };
            assigned.results.push((key, reply, result));
        }
        let generation = self.shared.generation.load(std::sync::atomic::Ordering::Acquire);
        for PendingTransaction { appends, documents: build, generation: expected, reply } in transactions {
            let result = match expected {
                Some(expected) if expected != generation => Err(AppendError::Storage(StorageError::Reopened)),
                _ => self.assign_all(appends, touched, groups),
            };
            if let Ok(outcomes) = &result {
                assigned.documents.extend((build.0)(outcomes));
            }
            assigned.transacted.push((reply, result));
        }
        assigned
    }

    /// Answers everyone in a commit that is stored.
    fn answer_committed(&mut self, assigned: Assigned, offsets: Vec<PendingOffsets>) {
        for (key, reply, result) in assigned.results {
            let log_start_offset = self.logs.get(&key).map_or(0, |log| log.state.log_start_offset());
            let _ = reply.send(result.map(|(base_offset, last_offset)| AppendOutcome {
                base_offset,
                last_offset,
                log_start_offset,
                log_append_time_ms: None,
            }));
        }
        for (reply, result) in assigned.transacted {
            let _ = reply.send(result);
        }
        let mut cache = self.shared.offsets.write().unwrap_or_else(|p| p.into_inner());
        for PendingOffsets { group, offsets, reply } in offsets {
            cache.entry(group).or_default().extend(offsets);
            let _ = reply.send(Ok(()));
        }
    }

    /// Nothing of a failed commit is on disk: its logs and producers go back to what they were
    /// (so the next commit reuses its offsets), and everyone in it gets `cause`.
    fn take_back(&mut self, assigned: Assigned, offsets: Vec<PendingOffsets>, cause: &StorageError) {
        self.logs.extend(assigned.touched.logs);
        for ((key, producer_id), state) in assigned.touched.producers {
            match state {
                Some(state) => {
                    self.producers.insert(key, producer_id, state);
                }
                None => self.producers.remove(key, producer_id),
            }
        }
        for (_, reply, _) in assigned.results {
            let _ = reply.send(Err(AppendError::Storage(cause.clone())));
        }
        for commit in offsets {
            let _ = commit.reply.send(Err(AppendError::Storage(cause.clone())));
        }
        for (reply, _) in assigned.transacted {
            let _ = reply.send(Err(AppendError::Storage(cause.clone())));
        }
    }

    /// Assigns offsets to every append of a transaction, or to none: when one is refused, those
    /// before it are taken back out of the commit. Transactions carry no idempotent producer ids
    /// ([`super::Store::transact`] refuses them), so producer state needs no undo here.
    fn assign_all(
        &mut self,
        appends: Vec<(u64, Checked)>,
        touched: &mut Touched,
        groups: &mut Groups,
    ) -> Result<Vec<AppendOutcome>, AppendError> {
        // What each partition looked like before this transaction: log, group length, counts.
        let mut before: HashMap<u64, Before> = HashMap::new();
        let batches_before = touched.batches;
        let mut outcomes = Vec::with_capacity(appends.len());
        for (key, batches) in appends {
            before.entry(key).or_insert_with(|| {
                let mark = groups.get(&key).map(Staged::mark).unwrap_or_default();
                (self.logs.get(&key).cloned(), mark, touched.appended.get(&key).copied())
            });
            match self.assign(key, batches, touched, groups) {
                Ok((base_offset, last_offset)) => {
                    let log_start_offset = self.logs.get(&key).map_or(0, |log| log.state.log_start_offset());
                    outcomes.push(AppendOutcome {
                        base_offset,
                        last_offset,
                        log_start_offset,
                        log_append_time_ms: None,
                    });
                }
                Err(e) => {
                    for (key, (log, mark, appended)) in before {
                        if let Some(log) = log {
                            self.logs.insert(key, log);
                        }
                        if let Some(group) = groups.get_mut(&key) {
                            group.truncate(mark);
                        }
                        match appended {
                            Some(counts) => touched.appended.insert(key, counts),
                            None => touched.appended.remove(&key),
                        };
                    }
                    touched.batches = batches_before;
                    return Err(e);
                }
            }
        }
        Ok(outcomes)
    }

    /// Assigns offsets to one append's batches and adds them to its partition's group. A retry
    /// of an idempotent producer's batch already stored gets its original offsets, and the append
    /// stores nothing. Only the headers decoded on the caller's task are read here.
    fn assign(
        &mut self,
        key: u64,
        batches: Checked,
        touched: &mut Touched,
        groups: &mut Groups,
    ) -> Result<(u64, u64), AppendError> {
        if let Some(duplicate) = self.find_duplicate(key, &batches.headers)? {
            return Ok(duplicate);
        }
        let log = self.logs.get_mut(&key).ok_or(AppendError::Log(LogRefusal::PartitionDeleted))?;
        touched.logs.entry(key).or_insert_with(|| log.clone());
        let undo = log.clone();
        let group = groups.entry(key).or_default();
        let mark = group.mark();
        let (mut at, mut first_offset, mut last_offset) = (0, None, 0);
        let mut sequenced = Vec::new();
        let mut records = 0;
        for header in &batches.headers {
            let len = header.total_len();
            let epoch = log.state.leader_epoch() as i32;
            let info = match log.state.prepare_append_header(header) {
                Ok(info) => info,
                Err(e) => {
                    *log = undo;
                    group.truncate(mark);
                    return Err(LogRefusal::from(e).into());
                }
            };
            group.push_stamped(batches.bytes.slice(at..at + len), info.base_offset as i64, epoch);
            records += info.last_offset - info.base_offset + 1;
            first_offset.get_or_insert(info.base_offset);
            last_offset = info.last_offset;
            log.size_bytes += len as u64;
            if header.producer_id >= 0 {
                sequenced.push((*header, info.base_offset, info.last_offset));
            }
            at += len;
        }
        let batches = batches.headers.len() as u64;
        let appended = touched.appended.entry(key).or_default();
        appended.0 += records;
        appended.1 += at as u64;
        touched.batches += batches;
        let now = self.config.clock.now_ms();
        for (header, base_offset, last_offset) in sequenced {
            let id = (key, header.producer_id);
            let current = self.producers.get(key, header.producer_id).cloned();
            touched.producers.entry(id).or_insert_with(|| current.clone());
            let state = ProducerState::record(current, &header, base_offset, last_offset, now);
            if let Some(forgotten) = self.producers.insert(key, header.producer_id, state) {
                tracing::warn!(
                    partition_key = key,
                    producer_id = forgotten,
                    "too many producers on one partition; forgot the one idle longest"
                );
                touched.producers.entry((key, forgotten)).or_insert(None);
            }
        }
        Ok((first_offset.unwrap_or(last_offset), last_offset))
    }

    /// Adds a mirror copy's batches to its partition's group at the offsets they carry: they must
    /// continue the log exactly (`LogState::append_follower`). Producer ids in them belong to
    /// the edge's producers and are not tracked here.
    fn assign_replica(
        &mut self,
        key: u64,
        batches: Bytes,
        touched: &mut Touched,
        groups: &mut Groups,
    ) -> Result<(u64, u64), AppendError> {
        let log = self.logs.get_mut(&key).ok_or(AppendError::Log(LogRefusal::PartitionDeleted))?;
        let mut updated = log.clone();
        let (mut first_offset, mut last_offset, mut records, mut count) = (None, 0, 0, 0);
        // Headers only: the follower checked CRCs and records on its own task, and this thread
        // is every partition's writer.
        let mut rest = &batches[..];
        while !rest.is_empty() {
            let len = batch::batch_len(rest).map_err(LogRefusal::from)?;
            let one = rest.get(..len).ok_or(LogRefusal::Batch(batch::BatchError::Incomplete { needed: len }))?;
            rest = &rest[len..];
            let info = updated.state.append_follower(one).map_err(LogRefusal::from)?;
            first_offset.get_or_insert(info.base_offset);
            last_offset = info.last_offset;
            records += info.last_offset - info.base_offset + 1;
            count += 1;
        }
        let Some(first_offset) = first_offset else {
            return Err(AppendError::InvalidBatch(super::InvalidBatch::Empty));
        };
        updated.size_bytes += batches.len() as u64;
        touched.logs.entry(key).or_insert_with(|| log.clone());
        *log = updated;
        let appended = touched.appended.entry(key).or_default();
        appended.0 += records;
        appended.1 += batches.len() as u64;
        touched.batches += count;
        // Stored as they came: the leader stamped them.
        groups.entry(key).or_default().push_as_is(batches);
        Ok((first_offset, last_offset))
    }

    /// Checks every idempotent batch of an append against its producer's sequence: `Some` with the
    /// original offsets when the (first) batch was stored already, an error on a gap or a fenced
    /// epoch. The batches of one append follow each other, so each is checked against the state
    /// the previous ones would leave.
    fn find_duplicate(&self, key: u64, headers: &[BatchHeader]) -> Result<Option<(u64, u64)>, AppendError> {
        let mut pending: HashMap<i64, ProducerState> = HashMap::new();
        for header in headers {
            let producer_id = header.producer_id;
            if producer_id < 0 {
                continue;
            }
            let earlier_in_append = pending.get(&producer_id);
            let state = earlier_in_append.or_else(|| self.producers.get(key, producer_id));
            match producers::check(state, header) {
                // A batch repeating one earlier in the same append is out of order, as in Kafka:
                // only batches already stored are retries.
                Ok(SequenceCheck::Duplicate { .. }) if earlier_in_append.is_some() => {
                    let newest = state.and_then(|s| s.batches.last()).map_or(-1, |b| b.last_sequence);
                    let expected = producers::next_sequence(newest);
                    return Err(AppendError::OutOfOrderSequence { producer_id, found: header.base_sequence, expected });
                }
                Ok(SequenceCheck::Duplicate { base_offset, last_offset }) => {
                    return Ok(Some((base_offset, last_offset)));
                }
                Ok(SequenceCheck::Append) => {
                    // Offsets are not known yet; only the sequences matter for the next batch.
                    let next = ProducerState::record(state.cloned(), header, 0, 0, 0);
                    pending.insert(producer_id, next);
                }
                Err(SequenceError::OutOfOrder { found, expected }) => {
                    return Err(AppendError::OutOfOrderSequence { producer_id, found, expected });
                }
                Err(SequenceError::StaleEpoch { found, current }) => {
                    return Err(AppendError::StaleProducerEpoch { producer_id, found, current });
                }
            }
        }
        Ok(None)
    }

    /// Whether this commit must be durable before it is answered.
    fn sync_due(&self) -> bool {
        match self.config.durability {
            DurabilityPolicy::EveryCommit => true,
            DurabilityPolicy::Interval(interval) => {
                self.unsynced_since.is_some_and(|since| since.elapsed() >= interval)
            }
        }
    }

    /// Writes a commit. A small one is journaled: redb commits it without an fsync and its row
    /// changes are appended to the journal, synced when `sync`. A large one, or one the journal
    /// has no room for, is a durable redb commit, which is also a checkpoint. Returns whether the
    /// commit is durable now.
    fn write_commit(
        &mut self,
        groups: &Groups,
        touched: &Touched,
        offsets: &[PendingOffsets],
        documents: &[DocumentWrite],
        sync: bool,
    ) -> Result<bool, StorageError> {
        let db = self.shared.database()?;
        let mut txn = db.begin_write()?;
        // A commit whose batches alone pass what the journal takes is not even recorded.
        let staged: usize = groups.values().map(Staged::len).sum();
        let rows = if staged > JOURNAL_RECORD_BYTES_MAX { Txn::unjournaled(&txn) } else { Txn::journaled(&txn) };
        self.write_rows_of(&rows, groups, touched, offsets, documents)?;
        let redo = rows.into_redo();
        if redo.as_ref().is_some_and(|redo| redo.body_len() == 0) {
            // Nothing changed (retries answered with their first offsets, refusals): nothing to
            // commit or journal, but what the journal holds may be due for its sync.
            txn.abort()?;
            if sync {
                self.journal.sync()?;
            }
            return Ok(sync);
        }
        let Some(mut redo) = redo.filter(|redo| self.journal.takes(redo.body_len())) else {
            txn.set_durability(Durability::Immediate)?;
            txn.commit()?;
            self.journal.restart();
            return Ok(true);
        };
        txn.open_table(META)?.insert(JOURNAL_SEQ_KEY, self.journal.next_seq())?;
        txn.set_durability(Durability::None)?;
        txn.commit()?;
        self.journal.append(redo.record_mut())?;
        if sync {
            self.journal.sync()?;
        } else {
            // Whatever the commit touched (offsets and documents too), the interval's sync is due.
            self.unsynced_since.get_or_insert_with(Instant::now);
        }
        Ok(sync)
    }

    /// Writes a commit's rows in `txn`.
    fn write_rows_of(
        &mut self,
        txn: &Txn<'_>,
        groups: &Groups,
        touched: &Touched,
        offsets: &[PendingOffsets],
        documents: &[DocumentWrite],
    ) -> Result<(), StorageError> {
        for commit in offsets {
            offsets::write(txn, &commit.group, &commit.offsets)?;
        }
        super::resources::write_documents(txn, documents)?;
        if !touched.producers.is_empty() {
            let changes = touched.producers.keys().map(|&(key, id)| ((key, id), self.producers.get(key, id).cloned()));
            producers::write(txn, changes)?;
        }
        if groups.iter().all(|(_, staged)| staged.is_empty()) {
            // Offsets or documents alone (a consumer's commit): no partition table to open.
            return Ok(());
        }
        let now_ms = self.config.clock.now_ms();
        let mut rows = txn.open(&redo::BATCHES)?;
        let mut partitions = txn.open(&redo::PARTITIONS)?;
        for (key, staged) in groups.iter().filter(|(_, staged)| !staged.is_empty()) {
            let log = self.logs.get_mut(key).ok_or(StorageError::internal("partition vanished during commit"))?;
            // Never before the partition's previous append, whatever the wall clock did.
            log.last_append_ms = log.last_append_ms.max(now_ms);
            // Extend the open group (rewriting its partial last part), or start a new one.
            let (base_offset, first_part, tail, bytes_before) = match log.open_group.take() {
                Some(open) if open.bytes < self.config.group_bytes_max => {
                    (open.base_offset, open.next_part, open.tail, open.bytes)
                }
                // A new group is keyed by its first batch's base offset.
                Some(_) | None => {
                    let base_offset = staged.first_base_offset().unwrap_or_default() as u64;
                    super::ages::started(txn, *key, base_offset, log.last_append_ms)?;
                    (base_offset, 0, Vec::new(), 0)
                }
            };
            let tail = write_rows(&mut rows, (*key, base_offset, first_part), &tail, staged, &mut self.scratch)?;
            log.open_group = Some(OpenGroup {
                base_offset,
                bytes: bytes_before + staged.len(),
                next_part: tail.next_part,
                tail: tail.bytes,
            });
            partitions.insert(*key, meta::encode(&log.to_meta()).as_slice())?;
        }
        Ok(())
    }

    fn count_traffic(&self, appended: &HashMap<u64, (u64, u64)>) {
        let catalog = self.shared.catalog();
        for (key, (records, bytes)) in appended {
            if let Some(partition) = catalog.partition(*key) {
                partition.traffic.count_in(*records, *bytes);
            }
        }
    }

    /// Publishes what a successful commit made visible (and durable).
    pub(super) fn after_commit(&mut self, touched: &HashMap<u64, PartitionLog>, durable: bool) {
        if durable {
            self.unsynced_since = None;
        } else if !touched.is_empty() {
            self.unsynced_since.get_or_insert_with(Instant::now);
        }
        let catalog = self.shared.catalog();
        for key in touched.keys() {
            if let Some(log) = self.logs.get_mut(key) {
                let next = log.state.next_offset();
                log.state.advance_high_watermark(next);
            }
        }
        // A durable commit makes every partition durable; otherwise only the touched ones change.
        let changed: Vec<u64> =
            if durable { self.logs.keys().copied().collect() } else { touched.keys().copied().collect() };
        for key in changed {
            if let (Some(partition), Some(log)) = (catalog.partition(key), self.logs.get(&key)) {
                publish(&partition, log, durable);
            }
        }
    }

    /// Makes all commits so far durable: the journal's records are synced. Not while the
    /// database is broken: its unsynced commits cannot be made durable any more (the reopen reads
    /// back what the files kept), and trying would count one more failure per wake-up.
    fn sync_now(&mut self) {
        if self.unsynced_since.is_none() || self.broken.is_some() {
            return;
        }
        match self.journal.sync().map_err(StorageError::from) {
            Ok(()) => {
                self.shared.stats.count_commit(true);
                self.commit_succeeded();
                self.after_commit(&HashMap::new(), true)
            }
            Err(cause) => self.mark_broken(cause),
        }
    }

    /// Makes the database hold everything the journal does (a durable redb commit): the journal
    /// starts a new round, and the next start replays nothing.
    pub(super) fn checkpoint(&mut self) -> Result<(), StorageError> {
        if !self.journal.holds_records() || self.broken.is_some() {
            return Ok(());
        }
        let db = self.shared.database()?;
        let txn = db.begin_write()?;
        txn.commit()?;
        self.journal.restart();
        self.shared.stats.count_commit(true);
        self.after_commit(&HashMap::new(), true);
        Ok(())
    }
}
