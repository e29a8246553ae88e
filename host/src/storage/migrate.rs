//! Opening data written by earlier builds: each older format version is brought to the current
//! one ([`FORMAT_VERSION`]) in one durable transaction when the store opens, before anything
//! reads it. A crash in the middle leaves the old version, and the next start migrates again.
//!
//! | from | to | what changes |
//! |---|---|---|
//! | 1 | 2 | topic rows gain the timestamp settings (Kafka's defaults); partition rows gain `last_append_ms`; every group gets a row in `group_times` |
//! | 2 | 3 | nothing in the file: the version says that commits may live in the journal (`rill.journal`, [`super::journal`]) until a checkpoint, so a build that does not replay it refuses the data instead of losing them |
//!
//! Format 1 kept no append times, so its data is taken to have been appended when it is
//! migrated: time retention then keeps it at least `retention.ms` longer, never deletes it
//! sooner than it was promised (by its record timestamps, format 1 might have deleted it at
//! once).

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use serde::Deserialize;

use super::StorageError;
use super::journal::redo::Txn;
use super::layout::{BATCHES, FORMAT_VERSION, FORMAT_VERSION_KEY, META, PARTITIONS, TOPICS};
use super::meta::{self, PartitionMeta, TopicMeta};
use super::topic::{CleanupPolicy, TopicConfig};
use super::{OpenError, ages};

/// Brings a database of format `found` to [`FORMAT_VERSION`]; `now_ms` stands in for the append
/// time format 1 did not keep.
pub(super) fn to_current(db: &redb::Database, found: u64, now_ms: i64) -> Result<(), OpenError> {
    if found >= FORMAT_VERSION {
        return Ok(());
    }
    let txn = db.begin_write().map_err(|e| OpenError::Storage(e.into()))?;
    match found {
        1 => v1_to_v2(&txn, now_ms).map_err(OpenError::Storage)?,
        2 => {}
        unknown => {
            return Err(OpenError::Storage(StorageError::corrupt(
                "database",
                format!("storage format version {unknown} was never written by Rill"),
            )));
        }
    }
    txn.open_table(META)
        .map_err(|e| OpenError::Storage(e.into()))?
        .insert(FORMAT_VERSION_KEY, FORMAT_VERSION)
        .map_err(|e| OpenError::Storage(e.into()))?;
    txn.commit().map_err(|e| OpenError::Storage(e.into()))?;
    tracing::info!(from = found, to = FORMAT_VERSION, "storage format migrated");
    Ok(())
}

/// A topic's config as format 1 wrote it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct TopicConfigV1 {
    pub(super) retention_ms: Option<u64>,
    pub(super) retention_bytes: Option<u64>,
    pub(super) max_message_bytes: u32,
    pub(super) cleanup_policy: CleanupPolicy,
}

/// A topic row as format 1 wrote it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct TopicMetaV1 {
    pub(super) id: [u8; 16],
    pub(super) config: TopicConfigV1,
    pub(super) partition_keys: Vec<u64>,
    pub(super) created_ms: i64,
}

/// A partition row as format 1 wrote it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct PartitionMetaV1 {
    pub(super) log_start_offset: u64,
    pub(super) next_offset: u64,
    pub(super) size_bytes: u64,
    pub(super) leader_epoch: u32,
    pub(super) epochs: Vec<(u32, u64)>,
}

fn v1_to_v2(txn: &WriteTransaction, now_ms: i64) -> Result<(), StorageError> {
    let mut topics = txn.open_table(TOPICS)?;
    let mut rewritten = Vec::new();
    for row in topics.iter()? {
        let (name, value) = row?;
        let old: TopicMetaV1 = meta::decode(|| format!("topic {} (format 1)", name.value()), value.value())?;
        let config = TopicConfig {
            retention_ms: old.config.retention_ms,
            retention_bytes: old.config.retention_bytes,
            max_message_bytes: old.config.max_message_bytes,
            cleanup_policy: old.config.cleanup_policy,
            ..TopicConfig::default()
        };
        let new = TopicMeta { id: old.id, config, partition_keys: old.partition_keys, created_ms: old.created_ms };
        rewritten.push((name.value().to_owned(), meta::encode(&new)));
    }
    for (name, row) in &rewritten {
        topics.insert(name.as_str(), row.as_slice())?;
    }

    let mut partitions = txn.open_table(PARTITIONS)?;
    let mut rewritten = Vec::new();
    for row in partitions.iter()? {
        let (key, value) = row?;
        let old: PartitionMetaV1 = meta::decode(|| format!("partition {} (format 1)", key.value()), value.value())?;
        let new = PartitionMeta {
            log_start_offset: old.log_start_offset,
            next_offset: old.next_offset,
            size_bytes: old.size_bytes,
            leader_epoch: old.leader_epoch,
            epochs: old.epochs,
            last_append_ms: now_ms,
        };
        rewritten.push((key.value(), meta::encode(&new)));
    }
    for (key, row) in &rewritten {
        partitions.insert(*key, row.as_slice())?;
    }

    // Every group's first part (part 0) names a group: each gets the migration time.
    let batches = txn.open_table(BATCHES)?;
    let mut groups = Vec::new();
    for row in batches.iter()? {
        let (key, _) = row?;
        let (partition, base_offset, part) = key.value();
        if part == 0 {
            groups.push((partition, base_offset));
        }
    }
    for (partition, base_offset) in groups {
        ages::started(&Txn::unjournaled(txn), partition, base_offset, now_ms)?;
    }
    Ok(())
}

/// The format version of a database, read before anything else.
pub(super) fn found_version(db: &redb::Database) -> Result<Option<u64>, OpenError> {
    let txn = db.begin_read().map_err(|e| OpenError::Storage(e.into()))?;
    let table = txn.open_table(META).map_err(|e| OpenError::Storage(e.into()))?;
    Ok(table.get(FORMAT_VERSION_KEY).map_err(|e| OpenError::Storage(e.into()))?.map(|v| v.value()))
}
