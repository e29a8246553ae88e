//! Consumer groups' committed offsets: one row per (group, topic, partition) in `group_offsets`,
//! written by the writer thread in the same group commit as appends, and mirrored in memory so
//! OffsetFetch never touches redb.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::StorageError;
use super::journal::redo::{self, Txn};
use super::layout::GROUP_OFFSETS;
use super::meta;

/// What a consumer committed for one partition (Kafka's OffsetCommit fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// The next offset the group will consume.
    pub offset: i64,
    /// The leader epoch of the record before `offset`, or -1.
    pub leader_epoch: i32,
    /// The client's opaque metadata string.
    pub metadata: String,
    pub commit_ms: i64,
}

/// A partition as a group names it.
pub type TopicPartition = (String, u32);

/// Every group's committed offsets.
pub type GroupOffsets = BTreeMap<String, BTreeMap<TopicPartition, CommittedOffset>>;

/// Reads every committed offset (at open and after the writer reopens the database).
pub(super) fn load(db: &redb::Database) -> Result<GroupOffsets, StorageError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(GROUP_OFFSETS)?;
    let mut all = GroupOffsets::new();
    for row in table.iter()? {
        let (key, value) = row?;
        let (group, topic, partition) = key.value();
        let committed: CommittedOffset =
            meta::decode(|| format!("offset of group {group:?} for {topic}/{partition}"), value.value())?;
        all.entry(group.to_owned()).or_default().insert((topic.to_owned(), partition), committed);
    }
    Ok(all)
}

/// Writes one group's commit into `txn`.
pub(super) fn write(
    txn: &Txn<'_>,
    group: &str,
    offsets: &[(TopicPartition, CommittedOffset)],
) -> Result<(), StorageError> {
    let mut table = txn.open(&redo::GROUP_OFFSETS)?;
    for ((topic, partition), committed) in offsets {
        table.insert((group, topic.as_str(), *partition), meta::encode(committed).as_slice())?;
    }
    Ok(())
}

/// Deletes every row of `group` in `txn`.
pub(super) fn delete_group(txn: &WriteTransaction, group: &str) -> Result<(), StorageError> {
    let mut table = txn.open_table(GROUP_OFFSETS)?;
    table.retain_in((group, "", 0)..=(group, "\u{10FFFF}", u32::MAX), |_, _| false)?;
    Ok(())
}

/// The (group, partition) of every committed offset for `topic`.
pub(super) fn of_topic(known: &GroupOffsets, topic: &str) -> Vec<(String, u32)> {
    known
        .iter()
        .flat_map(|(group, offsets)| {
            offsets.keys().filter(|(name, _)| name == topic).map(move |(_, partition)| (group.clone(), *partition))
        })
        .collect()
}

/// Deletes the rows of `topic` named by [`of_topic`] in `txn` (the topic is being deleted; a new
/// topic of the same name must not inherit them).
pub(super) fn delete_topic(txn: &WriteTransaction, topic: &str, rows: &[(String, u32)]) -> Result<(), StorageError> {
    let mut table = txn.open_table(GROUP_OFFSETS)?;
    for (group, partition) in rows {
        table.remove((group.as_str(), topic, *partition))?;
    }
    Ok(())
}
