//! The writer's non-append commands: topics, DeleteRecords, retention, flush. Each runs in its own
//! durable transaction (they are rare; making them durable also syncs earlier interval commits).

use std::collections::HashMap;
use std::sync::Arc;

use redb::{Durability, ReadableDatabase, ReadableTable, WriteTransaction};
use rill_core::batch;
use rill_core::retention::{self, RetentionPolicy, Summary};
use uuid::Uuid;

use super::ages;
use super::catalog::{PartitionState, TopicState};
use super::journal::redo::Txn;
use super::layout::extend_group;
use super::layout::{BATCHES, GROUP_TIMES, META, NEXT_PARTITION_KEY, NEXT_PRODUCER_ID_KEY, PARTITIONS, TOPICS};
use super::logs::PartitionLog;
use super::meta::{self, PartitionMeta, TopicMeta};
use super::read::{Group, containing_group, groups_from};
use super::resources::{self, ResourceError};
use super::topic::{TopicConfig, TopicError};
use super::writer::{Command, Writer};
use super::{AppendError, ReplicaReset, RetentionReport, SpaceUsage};
use super::{LogRefusal, StorageError};
use super::{offsets, producers};
use crate::limits::{BUDGET_GROUPS_PER_PASS, PRODUCER_ID_BLOCK};

impl Writer {
    pub(super) fn handle_admin(&mut self, command: Command) {
        match command {
            Command::CreateTopic { name, partitions, config, reply } => {
                let _ = reply.send(self.create_topic(name, partitions, config));
            }
            Command::DeleteTopic { name, reply } => {
                let _ = reply.send(self.delete_topic(&name));
            }
            Command::AlterTopicConfig { name, config, reply } => {
                let _ = reply.send(self.alter_topic_config(&name, config));
            }
            Command::CreatePartitions { name, total, reply } => {
                let _ = reply.send(self.create_partitions(&name, total));
            }
            Command::DeleteRecords { key, before_offset, reply } => {
                let _ = reply.send(self.delete_records(key, before_offset));
            }
            Command::EnforceRetention { now_ms, reply } => {
                let _ = reply.send(self.enforce_retention(now_ms));
            }
            Command::Flush { reply } => {
                let _ = reply.send(self.durable_txn(|_| Ok(())).map_err(AppendError::Storage));
            }
            Command::SpaceUsage { reply } => {
                let _ = reply.send(self.space_usage().map_err(AppendError::Storage));
            }
            Command::DeleteGroupOffsets { group, reply } => {
                let _ = reply.send(self.delete_group_offsets(&group).map_err(AppendError::Storage));
            }
            Command::AllocateProducerId { reply } => {
                let _ = reply.send(self.allocate_producer_id().map_err(AppendError::Storage));
            }
            Command::PutResource { kind, name, document, mode, blob, reply } => {
                // A plugin's component may be megabytes: it does not go into the reserve.
                let blob_bytes = blob.as_ref().map_or(0, |blob| blob.bytes.len() as u64);
                if blob_bytes > 0
                    && let Err(refusal) = self.admit_space(blob_bytes)
                {
                    let _ = reply.send(Err(ResourceError::Storage(refusal)));
                    return;
                }
                let written = self.durable_txn(|txn| resources::put(txn, &kind, &name, &document, mode, blob.as_ref()));
                let _ = reply.send(written.map_err(ResourceError::Storage).and_then(|put| put));
            }
            Command::DeleteResource { kind, name, references, reply } => {
                let deleted = self.durable_txn(|txn| resources::delete(txn, &kind, &name, references));
                let _ = reply.send(deleted.map_err(ResourceError::Storage));
            }
            Command::ResetReplica { key, reset, document, reply } => {
                let _ = reply.send(self.reset_replica(key, reset, document));
            }
            Command::LogState { key, reply } => {
                let _ = reply.send(self.logs.get(&key).map(|log| log.state.clone()));
            }
            Command::Append { .. }
            | Command::AppendReplica { .. }
            | Command::CommitOffsets { .. }
            | Command::Transact { .. }
            | Command::Shutdown { .. } => {
                unreachable!("the writer loop handles appends, offset commits and shutdown itself")
            }
        }
    }

    /// Runs `body` in a durable write transaction; on failure nothing of it is kept.
    fn durable_txn<T>(
        &mut self,
        body: impl FnOnce(&WriteTransaction) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.ensure_open()?;
        let db = self.shared.database()?;
        let result: Result<T, StorageError> = (|| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            let value = body(&txn)?;
            txn.commit()?;
            Ok(value)
        })();
        match &result {
            Ok(_) => {
                self.shared.stats.count_commit(true);
                self.commit_succeeded();
                // Everything the journal held is in the database, durably.
                self.journal.restart();
                self.after_commit(&HashMap::new(), true)
            }
            // After an IO error redb refuses every later call until the database is reopened;
            // any other failure (a document that does not decode, a rule of Rill's) left the
            // database as it was, and only this operation is refused.
            Err(cause) if cause.needs_reopen() => self.mark_broken(cause.clone()),
            Err(_) => {}
        }
        result
    }

    /// redb's page accounting. Needs a write transaction (redb computes it there); it is aborted.
    fn space_usage(&mut self) -> Result<SpaceUsage, StorageError> {
        self.ensure_open()?;
        let db = self.shared.database()?;
        let txn = db.begin_write()?;
        let stats = txn.stats()?;
        txn.abort()?;
        let page_bytes = stats.page_size() as u64;
        Ok(SpaceUsage {
            allocated_bytes: stats.allocated_pages() * page_bytes,
            leaf_bytes: stats.leaf_pages() * page_bytes,
            branch_bytes: stats.branch_pages() * page_bytes,
            stored_bytes: stats.stored_bytes(),
        })
    }

    fn create_topic(
        &mut self,
        name: String,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<Arc<TopicState>, TopicError> {
        if self.shared.catalog().get(&name).is_some() {
            return Err(TopicError::AlreadyExists(name));
        }
        let id = Uuid::new_v4();
        let topic_meta = |keys: Vec<u64>| TopicMeta {
            id: *id.as_bytes(),
            config: config.clone(),
            partition_keys: keys,
            created_ms: crate::clock::now_ms(),
        };
        let keys = self
            .durable_txn(|txn| {
                let keys = allocate_partition_keys(txn, partitions)?;
                write_new_partitions(txn, &keys)?;
                let mut topics = txn.open_table(TOPICS)?;
                topics.insert(name.as_str(), meta::encode(&topic_meta(keys.clone())).as_slice())?;
                Ok(keys)
            })
            .map_err(TopicError::Storage)?;
        let states = keys.iter().enumerate().map(|(index, key)| self.new_partition(index as u32, *key)).collect();
        let topic = Arc::new(TopicState { name, id, config, partitions: states });
        self.shared.catalog.write().unwrap_or_else(|p| p.into_inner()).insert(topic.clone());
        tracing::info!(topic = %topic.name, partitions, id = %id, "topic created");
        Ok(topic)
    }

    fn new_partition(&mut self, index: u32, key: u64) -> Arc<PartitionState> {
        let meta = fresh_partition();
        self.logs.insert(key, PartitionLog::from_meta(&meta).expect("a fresh partition is consistent"));
        Arc::new(PartitionState::new(index, key, super::catalog::offsets_of(&meta)))
    }

    fn delete_group_offsets(&mut self, group: &str) -> Result<bool, StorageError> {
        if !self.shared.offsets().contains_key(group) {
            return Ok(false);
        }
        self.durable_txn(|txn| offsets::delete_group(txn, group))?;
        self.shared.offsets.write().unwrap_or_else(|p| p.into_inner()).remove(group);
        Ok(true)
    }

    /// Hands out the next producer id, reserving a block of them on disk when none is left.
    fn allocate_producer_id(&mut self) -> Result<i64, StorageError> {
        if self.producer_ids.is_empty() {
            let block = self.durable_txn(|txn| {
                let mut table = txn.open_table(META)?;
                let start = table.get(NEXT_PRODUCER_ID_KEY)?.map_or(0, |v| v.value());
                let start = i64::try_from(start).map_err(|_| StorageError::internal("producer ids exhausted"))?;
                let end =
                    start.checked_add(PRODUCER_ID_BLOCK).ok_or(StorageError::internal("producer ids exhausted"))?;
                table.insert(NEXT_PRODUCER_ID_KEY, end as u64)?;
                Ok(start..end)
            })?;
            self.producer_ids = block;
        }
        let id = self.producer_ids.start;
        self.producer_ids.start += 1;
        Ok(id)
    }

    fn delete_topic(&mut self, name: &str) -> Result<(), TopicError> {
        let topic = self.shared.catalog().get(name).ok_or_else(|| TopicError::Unknown(name.to_owned()))?;
        let offset_rows = offsets::of_topic(&self.shared.offsets(), name);
        self.durable_txn(|txn| {
            offsets::delete_topic(txn, name, &offset_rows)?;
            for partition in &topic.partitions {
                producers::delete_partition(txn, partition.key)?;
            }
            let mut rows = txn.open_table(BATCHES)?;
            let mut partitions = txn.open_table(PARTITIONS)?;
            for partition in &topic.partitions {
                rows.retain_in((partition.key, 0, 0)..=(partition.key, u64::MAX, u32::MAX), |_, _| false)?;
                partitions.remove(partition.key)?;
                ages::forget_partition(txn, partition.key)?;
            }
            txn.open_table(TOPICS)?.remove(name)?;
            Ok(())
        })
        .map_err(TopicError::Storage)?;
        for partition in &topic.partitions {
            self.logs.remove(&partition.key);
            self.producers.remove_partition(partition.key);
        }
        let mut group_offsets = self.shared.offsets.write().unwrap_or_else(|p| p.into_inner());
        for offsets in group_offsets.values_mut() {
            offsets.retain(|(topic, _), _| topic != name);
        }
        // As after a reopen: a group whose only offsets were for this topic is gone.
        group_offsets.retain(|_, offsets| !offsets.is_empty());
        drop(group_offsets);
        self.shared.catalog.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        tracing::info!(topic = name, "topic deleted");
        self.recheck_space();
        Ok(())
    }

    fn alter_topic_config(&mut self, name: &str, config: TopicConfig) -> Result<Arc<TopicState>, TopicError> {
        let topic = self.shared.catalog().get(name).ok_or_else(|| TopicError::Unknown(name.to_owned()))?;
        self.durable_txn(|txn| update_topic_row(txn, name, |row| row.config = config.clone()))
            .map_err(TopicError::Storage)?;
        let updated = Arc::new(TopicState {
            name: topic.name.clone(),
            id: topic.id,
            config,
            partitions: topic.partitions.clone(),
        });
        self.shared.catalog.write().unwrap_or_else(|p| p.into_inner()).insert(updated.clone());
        Ok(updated)
    }

    /// Kafka's CreatePartitions: new partitions and the topic row that lists them, in one commit.
    fn create_partitions(&mut self, name: &str, total: u32) -> Result<Arc<TopicState>, TopicError> {
        let topic = self.shared.catalog().get(name).ok_or_else(|| TopicError::Unknown(name.to_owned()))?;
        let current = topic.partitions.len() as u32;
        if total <= current {
            return Err(TopicError::InvalidPartitions { count: total, max: crate::limits::PARTITIONS_PER_TOPIC_MAX });
        }
        let keys = self
            .durable_txn(|txn| {
                let keys = allocate_partition_keys(txn, total - current)?;
                write_new_partitions(txn, &keys)?;
                update_topic_row(txn, name, |row| row.partition_keys.extend_from_slice(&keys))?;
                Ok(keys)
            })
            .map_err(TopicError::Storage)?;
        let mut partitions = topic.partitions.clone();
        for (i, key) in keys.into_iter().enumerate() {
            partitions.push(self.new_partition(current + i as u32, key));
        }
        let updated =
            Arc::new(TopicState { name: topic.name.clone(), id: topic.id, config: topic.config.clone(), partitions });
        self.shared.catalog.write().unwrap_or_else(|p| p.into_inner()).insert(updated.clone());
        Ok(updated)
    }

    fn delete_records(&mut self, key: u64, before_offset: u64) -> Result<u64, AppendError> {
        let log = self.logs.get(&key).ok_or(AppendError::Log(LogRefusal::PartitionDeleted))?;
        let high_watermark = log.state.high_watermark();
        if before_offset > high_watermark {
            return Err(LogRefusal::AboveHighWatermark { offset: before_offset, high_watermark }.into());
        }
        let mut updated = log.clone();
        updated.state.advance_log_start(before_offset);
        let new_start = updated.state.log_start_offset();
        self.durable_txn(|txn| {
            // Delete whole groups that now lie entirely below the log start offset.
            let doomed = groups_below(txn, key, new_start)?;
            delete_groups(txn, key, &doomed, &mut updated)?;
            write_partition(txn, key, &updated)
        })
        .map_err(AppendError::Storage)?;
        self.logs.insert(key, updated);
        self.republish(key);
        // Before answering: whoever freed space sees appends accepted again.
        self.recheck_space();
        Ok(new_start)
    }

    /// Truncates a mirror copy (its log diverged from the leader's) or moves its end over a gap,
    /// with the document that records it, in one durable transaction.
    fn reset_replica(
        &mut self,
        key: u64,
        reset: ReplicaReset,
        document: Option<super::DocumentWrite>,
    ) -> Result<(), AppendError> {
        let log = self.logs.get(&key).ok_or(AppendError::Log(LogRefusal::PartitionDeleted))?;
        let mut updated = log.clone();
        // Either way the newest group no longer ends where the next batch starts.
        updated.open_group = None;
        match reset {
            ReplicaReset::SkipTo(offset) => {
                updated.state.skip_to(offset).map_err(LogRefusal::from)?;
                self.durable_txn(|txn| {
                    resources::write_documents(&Txn::unjournaled(txn), document.as_slice())?;
                    write_partition(txn, key, &updated)
                })
                .map_err(AppendError::Storage)?;
            }
            ReplicaReset::TruncateTo(offset) => {
                if offset >= updated.state.next_offset() {
                    return Ok(());
                }
                updated.state.truncate_to(offset).map_err(LogRefusal::from)?;
                self.durable_txn(|txn| {
                    truncate_groups(txn, key, offset, &mut updated)?;
                    resources::write_documents(&Txn::unjournaled(txn), document.as_slice())?;
                    write_partition(txn, key, &updated)
                })
                .map_err(AppendError::Storage)?;
            }
        }
        self.logs.insert(key, updated);
        self.republish(key);
        Ok(())
    }

    fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionReport, AppendError> {
        self.expire_producers(now_ms).map_err(AppendError::Storage)?;
        let mut report = RetentionReport::default();
        let budget = self.config.disk_budget_bytes;
        let topics = self.shared.catalog().all();
        for topic in topics {
            let policy = RetentionPolicy {
                retention_ms: topic.config.retention_ms,
                retention_bytes: topic.config.retention_bytes,
            };
            if policy.retention_ms.is_none() && policy.retention_bytes.is_none() {
                continue;
            }
            for partition in &topic.partitions {
                let Some(mut updated) = self.logs.get(&partition.key).cloned() else {
                    continue;
                };
                let key = partition.key;
                // Floors (what mirrors have not copied) hold here; only the disk budget below
                // overrides them, oldest group first and no further than needed.
                let floor = self.shared.floor(key, &topic.name);
                // Decide in a read transaction: most passes delete nothing and must not cost a sync.
                let (decision, scanned) =
                    self.decide(key, &updated, now_ms, policy, floor).map_err(AppendError::Storage)?;
                let Some(decision) = decision else { continue };
                let doomed: Vec<(u64, u64)> =
                    scanned.iter().take(decision.units as usize).map(|s| (s.base_offset, s.size_bytes)).collect();
                let trimmed = self
                    .durable_txn(|txn| {
                        updated.state.advance_log_start(decision.delete_below);
                        let bytes = delete_groups(txn, key, &doomed, &mut updated)?;
                        write_partition(txn, key, &updated)?;
                        Ok(Some((doomed.len() as u64, bytes)))
                    })
                    .map_err(AppendError::Storage)?;
                if let Some((groups, bytes)) = trimmed {
                    tracing::info!(topic = %topic.name, partition = partition.index, groups, bytes, log_start_offset = updated.state.log_start_offset(), "retention deleted old batches");
                    report.groups_deleted += groups;
                    report.bytes_deleted += bytes;
                    report.partitions_trimmed += 1;
                    self.logs.insert(key, updated);
                    self.republish(key);
                }
            }
        }
        if let Some(budget) = budget {
            self.enforce_budget(budget, &mut report).map_err(AppendError::Storage)?;
        }
        self.recheck_space();
        Ok(report)
    }

    /// Deletes the oldest group of the store (by when its newest batch was appended), one at a time,
    /// until the store is within `budget` (at most `BUDGET_GROUPS_PER_PASS` per pass). Only
    /// committed groups go (never above the high watermark), whatever floors say: loudly.
    fn enforce_budget(&mut self, budget: u64, report: &mut RetentionReport) -> Result<(), StorageError> {
        for _ in 0..BUDGET_GROUPS_PER_PASS {
            let stored = super::logs::stored_bytes(&self.logs);
            if stored <= budget {
                return Ok(());
            }
            let Some((topic, index, key, oldest)) = self.oldest_group()? else { return Ok(()) };
            let mut updated = self.logs.get(&key).cloned().ok_or(StorageError::internal("partition vanished"))?;
            let delete_below = oldest.last_offset + 1;
            let bytes = self.durable_txn(|txn| {
                updated.state.advance_log_start(delete_below);
                let bytes = delete_groups(txn, key, &[(oldest.base_offset, oldest.size_bytes)], &mut updated)?;
                write_partition(txn, key, &updated)?;
                Ok(bytes)
            })?;
            let unmirrored = self.shared.floor(key, &topic).filter(|&floor| floor < delete_below);
            tracing::error!(
                topic = %topic, partition = index, bytes, stored, budget, delete_below,
                unmirrored_from = ?unmirrored,
                "disk budget exhausted: deleted the oldest batches{}",
                if unmirrored.is_some() { " before a mirror copied them" } else { "" }
            );
            report.groups_deleted += 1;
            report.bytes_deleted += bytes;
            report.partitions_trimmed += 1;
            self.logs.insert(key, updated);
            self.republish(key);
        }
        Ok(())
    }

    /// The committed group whose newest batch was appended longest ago: (topic, partition index,
    /// key, summary).
    fn oldest_group(&self) -> Result<Option<(String, u32, u64, Summary)>, StorageError> {
        let db = self.shared.database()?;
        let txn = db.begin_read()?;
        let rows = txn.open_table(BATCHES)?;
        let times = txn.open_table(GROUP_TIMES)?;
        let mut oldest: Option<(String, u32, u64, Summary)> = None;
        for topic in self.shared.catalog().all() {
            for partition in &topic.partitions {
                let Some(log) = self.logs.get(&partition.key) else { continue };
                let first = groups_from(&rows, partition.key, 0)?.next();
                let Some(group) = first else { continue };
                let group = group?;
                let appended_ms = ages::appended_ms(&times, partition.key, group.base_offset, log.last_append_ms)?;
                let summary = summarize(&group, appended_ms)?;
                if summary.last_offset >= log.state.high_watermark() {
                    continue;
                }
                if oldest.as_ref().is_none_or(|(_, _, _, o)| summary.appended_ms < o.appended_ms) {
                    oldest = Some((topic.name.clone(), partition.index, partition.key, summary));
                }
            }
        }
        Ok(oldest)
    }

    /// Forgets producers idle past `producer.id.expiration.ms`, as Kafka does.
    fn expire_producers(&mut self, now_ms: i64) -> Result<(), StorageError> {
        let expired = self.producers.expired(now_ms);
        if expired.is_empty() {
            return Ok(());
        }
        self.durable_txn(|txn| producers::write(&Txn::unjournaled(txn), expired.iter().map(|&id| (id, None))))?;
        for &(key, producer_id) in &expired {
            self.producers.remove(key, producer_id);
        }
        tracing::info!(producers = expired.len(), "expired idle producer ids");
        Ok(())
    }

    fn republish(&self, key: u64) {
        let partition = self.shared.catalog().partition(key);
        if let (Some(partition), Some(log)) = (partition, self.logs.get(&key)) {
            super::logs::publish(&partition, log, true);
        }
    }
}

impl Writer {
    /// What retention would delete from one partition, decided by `rill-core`, and the group
    /// summaries it looked at (oldest first).
    fn decide(
        &self,
        key: u64,
        log: &PartitionLog,
        now_ms: i64,
        policy: RetentionPolicy,
        keep_from: Option<u64>,
    ) -> Result<(Option<retention::Decision>, Vec<Summary>), StorageError> {
        let db = self.shared.database()?;
        let txn = db.begin_read()?;
        let rows = txn.open_table(BATCHES)?;
        let times = txn.open_table(GROUP_TIMES)?;
        let mut failure = None;
        let mut scanned = Vec::new();
        let summarized = |group: Group| {
            let appended_ms = ages::appended_ms(&times, key, group.base_offset, log.last_append_ms)?;
            summarize(&group, appended_ms)
        };
        let summaries = groups_from(&rows, key, 0)?.map_while(|group| match group.and_then(summarized) {
            Ok(summary) => {
                scanned.push(summary);
                Some(summary)
            }
            Err(e) => {
                failure = Some(e);
                None
            }
        });
        let decision = retention::decide(summaries, log.size_bytes, now_ms, policy, keep_from);
        match failure {
            // A corrupt group stops the scan: never decide past what could be read.
            Some(e) => Err(StorageError::corrupt("group (retention stopped at it)", e)),
            None => Ok((decision, scanned)),
        }
    }
}

/// One group as a unit of deletion, appended at `appended_ms` (see [`ages`]).
fn summarize(group: &Group, appended_ms: i64) -> Result<Summary, StorageError> {
    Ok(Summary {
        base_offset: group.base_offset,
        last_offset: last_offset(group)?,
        appended_ms,
        size_bytes: group.bytes.len() as u64,
    })
}

/// The offset of the group's last record (its base offset when it holds no batch).
fn last_offset(group: &Group) -> Result<u64, StorageError> {
    let mut last = group.base_offset;
    for parsed in batch::batches(&group.bytes) {
        last = parsed?.header().last_offset() as u64;
    }
    Ok(last)
}

/// The groups of `key` whose every offset is below `offset`: (base offset, bytes).
fn groups_below(txn: &WriteTransaction, key: u64, offset: u64) -> Result<Vec<(u64, u64)>, StorageError> {
    let rows = txn.open_table(BATCHES)?;
    let mut doomed = Vec::new();
    for group in groups_from(&rows, key, 0)? {
        let group = group?;
        if last_offset(&group)? >= offset {
            break;
        }
        doomed.push((group.base_offset, group.bytes.len() as u64));
    }
    Ok(doomed)
}

fn delete_groups(
    txn: &WriteTransaction,
    key: u64,
    doomed: &[(u64, u64)],
    log: &mut PartitionLog,
) -> Result<u64, StorageError> {
    let mut rows = txn.open_table(BATCHES)?;
    let mut bytes = 0;
    for (base, size) in doomed {
        rows.retain_in((key, *base, 0)..=(key, *base, u32::MAX), |_, _| false)?;
        bytes += size;
    }
    ages::forget(txn, key, doomed.iter().map(|(base, _)| *base))?;
    log.size_bytes = log.size_bytes.saturating_sub(bytes);
    // A deleted group can no longer grow: the next append starts a new one.
    if log.open_group.as_ref().is_some_and(|open| doomed.iter().any(|(base, _)| *base == open.base_offset)) {
        log.open_group = None;
    }
    Ok(bytes)
}

/// Removes every batch of `key` from `offset` on (a batch boundary): groups starting there or later
/// go, and the group holding `offset` is rewritten with the batches before it.
fn truncate_groups(txn: &WriteTransaction, key: u64, offset: u64, log: &mut PartitionLog) -> Result<(), StorageError> {
    let mut rows = txn.open_table(BATCHES)?;
    let start = containing_group(&rows, key, offset)?;
    let groups: Vec<Group> = groups_from(&rows, key, start)?.collect::<Result<_, _>>()?;
    for group in groups {
        let mut kept = Vec::new();
        for parsed in batch::batches(&group.bytes) {
            let parsed = parsed?;
            if (parsed.last_offset() as u64) < offset {
                kept.extend_from_slice(parsed.as_bytes());
            }
        }
        if kept.len() == group.bytes.len() {
            continue;
        }
        rows.retain_in((key, group.base_offset, 0)..=(key, group.base_offset, u32::MAX), |_, _| false)?;
        log.size_bytes = log.size_bytes.saturating_sub((group.bytes.len() - kept.len()) as u64);
        if kept.is_empty() {
            ages::forget(txn, key, [group.base_offset])?;
        } else {
            for (part, range) in extend_group(0, 0, kept.len()).rows {
                rows.insert((key, group.base_offset, part), &kept[range])?;
            }
        }
    }
    Ok(())
}

fn write_partition(txn: &WriteTransaction, key: u64, log: &PartitionLog) -> Result<(), StorageError> {
    let mut partitions = txn.open_table(PARTITIONS)?;
    partitions.insert(key, meta::encode(&log.to_meta()).as_slice())?;
    Ok(())
}

/// Rewrites a topic's row with `change` applied.
fn update_topic_row(
    txn: &WriteTransaction,
    name: &str,
    change: impl FnOnce(&mut TopicMeta),
) -> Result<(), StorageError> {
    let mut topics = txn.open_table(TOPICS)?;
    let mut row: TopicMeta = {
        let stored = topics.get(name)?.ok_or_else(|| StorageError::internal(format!("topic {name:?} has no row")))?;
        meta::decode(|| format!("topic {name}"), stored.value())?
    };
    change(&mut row);
    topics.insert(name, meta::encode(&row).as_slice())?;
    Ok(())
}

fn allocate_partition_keys(txn: &WriteTransaction, count: u32) -> Result<Vec<u64>, StorageError> {
    let mut meta_table = txn.open_table(META)?;
    let next = meta_table.get(NEXT_PARTITION_KEY)?.map_or(0, |v| v.value());
    meta_table.insert(NEXT_PARTITION_KEY, next + u64::from(count))?;
    Ok((next..next + u64::from(count)).collect())
}

fn write_new_partitions(txn: &WriteTransaction, keys: &[u64]) -> Result<(), StorageError> {
    let mut partitions = txn.open_table(PARTITIONS)?;
    for key in keys {
        partitions.insert(*key, meta::encode(&fresh_partition()).as_slice())?;
    }
    Ok(())
}

fn fresh_partition() -> PartitionMeta {
    PartitionMeta {
        log_start_offset: 0,
        next_offset: 0,
        size_bytes: 0,
        leader_epoch: 0,
        epochs: Vec::new(),
        last_append_ms: 0,
    }
}
