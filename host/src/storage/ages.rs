//! How old stored data is, by the broker's clock: `retention.ms` ages a group by when it was
//! appended, never by its records' timestamps (see `rill_core::retention`).
//!
//! Two facts are stored, both cheap to keep:
//!
//! | where | what | written |
//! |---|---|---|
//! | table `group_times`, key `(partition key, group base offset)` | `i64` ms: when the group was started | once, by the commit that starts the group |
//! | `PartitionMeta::last_append_ms` | when a batch was last appended to the partition | by every commit that appends (the row is rewritten anyway) |
//!
//! Append times never go backwards within a partition (each is at least the one before, whatever
//! the wall clock does), and a group is closed by the commit that starts the next one. So a
//! group's newest batch was appended no later than the next group's start, and the newest group's
//! no later than the partition's last append. [`appended_ms`] answers with that bound: data is
//! kept at least `retention.ms` after it arrived, never less, and at most one group longer.

use std::ops::Bound;

use redb::{ReadableTable, WriteTransaction};

use super::StorageError;
use super::journal::redo::{self, Txn};
use super::layout::GROUP_TIMES;

/// Records that the group of partition `key` at `base_offset` was started at `at_ms`.
pub(super) fn started(txn: &Txn<'_>, key: u64, base_offset: u64, at_ms: i64) -> Result<(), StorageError> {
    let mut times = txn.open(&redo::GROUP_TIMES)?;
    times.insert((key, base_offset), at_ms)
}

/// Forgets the start times of deleted groups.
pub(super) fn forget(
    txn: &WriteTransaction,
    key: u64,
    base_offsets: impl IntoIterator<Item = u64>,
) -> Result<(), StorageError> {
    let mut times = txn.open_table(GROUP_TIMES)?;
    for base in base_offsets {
        times.remove((key, base))?;
    }
    Ok(())
}

/// Forgets every start time of a deleted partition.
pub(super) fn forget_partition(txn: &WriteTransaction, key: u64) -> Result<(), StorageError> {
    let mut times = txn.open_table(GROUP_TIMES)?;
    times.retain_in((key, 0)..=(key, u64::MAX), |_, _| false)?;
    Ok(())
}

/// When the newest batch of the group at `base_offset` was appended, at the latest: the start of
/// the first group after it, or the partition's last append when it is the newest.
pub(super) fn appended_ms(
    times: &impl ReadableTable<(u64, u64), i64>,
    key: u64,
    base_offset: u64,
    last_append_ms: i64,
) -> Result<i64, StorageError> {
    let later = (Bound::Excluded((key, base_offset)), Bound::Included((key, u64::MAX)));
    let next_start = times.range::<(u64, u64)>(later)?.next();
    match next_start {
        Some(row) => Ok(row?.1.value()),
        None => Ok(last_append_ms),
    }
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;

    use super::*;

    #[test]
    fn a_group_is_as_old_as_the_next_start_or_the_last_append() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let db = redb::Database::create(file.path()).unwrap();
        let txn = db.begin_write().unwrap();
        started(&Txn::unjournaled(&txn), 7, 0, 1_000).unwrap();
        started(&Txn::unjournaled(&txn), 7, 50, 2_000).unwrap();
        started(&Txn::unjournaled(&txn), 7, 90, 3_000).unwrap();
        started(&Txn::unjournaled(&txn), 8, 0, 9_000).unwrap();
        forget(&txn, 7, [50]).unwrap();
        txn.commit().unwrap();

        let read = db.begin_read().unwrap();
        let times = read.open_table(GROUP_TIMES).unwrap();
        // Group 50's row is gone: group 0 is bounded by the next start that is left.
        assert_eq!(appended_ms(&times, 7, 0, 5_000), Ok(3_000));
        assert_eq!(appended_ms(&times, 7, 90, 5_000), Ok(5_000), "the newest group: the last append");
        assert_eq!(appended_ms(&times, 8, 0, 9_500), Ok(9_500), "partition 8's rows only");
        assert_eq!(appended_ms(&times, 9, u64::MAX, 1), Ok(1));
        drop((times, read));

        let txn = db.begin_write().unwrap();
        forget_partition(&txn, 7).unwrap();
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        let times = read.open_table(GROUP_TIMES).unwrap();
        assert_eq!(times.iter().unwrap().count(), 1, "only partition 8's row is left");
    }
}
