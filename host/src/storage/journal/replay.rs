//! Opening the journal beside a database: the records the durable database lacks are applied in
//! one durable commit, and the journal starts a new round.

use redb::ReadableDatabase;
use uuid::Uuid;

use super::{Journal, JournalError, redo};
use crate::storage::backend::{BackendFactory, StoreFile};
use crate::storage::layout::{JOURNAL_SEQ_KEY, META};
use crate::storage::{OpenError, StorageError};

/// Opens the journal of `db` (whose cluster id is `cluster_id`), replays what the database lacks
/// and returns the journal ready for new records. Run before anything reads the database. A
/// database made just now (`fresh`: someone removed `rill.redb` to start again) replaces a
/// journal left by the data it replaces, whose records could not apply to it.
pub(in crate::storage) fn open(
    factory: &BackendFactory,
    db: &redb::Database,
    cluster_id: Uuid,
    new_bytes: u64,
    fresh: bool,
) -> Result<Journal, OpenError> {
    let file = || factory(StoreFile::Journal).map_err(|e| OpenError::Journal(e.into()));
    let (mut journal, records) = match Journal::open_file(file()?, cluster_id, new_bytes) {
        Err(JournalError::Foreign { found, .. }) if fresh => {
            tracing::warn!(%found, "the journal belonged to data that is gone; a new database gets a new journal");
            (Journal::create(file()?, cluster_id, new_bytes)?, Vec::new())
        }
        opened => opened?,
    };
    let applied = applied_seq(db)?;
    let pending: Vec<_> = records.iter().filter(|record| applied.is_none_or(|applied| record.seq > applied)).collect();
    if let Some(first) = pending.first() {
        let expected = applied.map_or(0, |applied| applied + 1);
        // Records never skip a number, and a round starts only after a durable commit applied
        // everything before it: a later first record means the journal lost some.
        if first.seq != expected {
            return Err(JournalError::Gap { first: first.seq, applied: expected.saturating_sub(1) }.into());
        }
        let last = pending.last().map_or(first.seq, |record| record.seq);
        let txn = db.begin_write().map_err(StorageError::from)?;
        for record in &pending {
            redo::apply(&txn, record.seq, &record.body)?;
        }
        txn.open_table(META).map_err(StorageError::from)?.insert(JOURNAL_SEQ_KEY, last).map_err(StorageError::from)?;
        txn.commit().map_err(StorageError::from)?;
        tracing::info!(records = pending.len(), last, "storage journal replayed");
        journal.continue_after(last);
    } else if let Some(applied) = applied {
        journal.continue_after(applied);
    }
    journal.restart();
    Ok(journal)
}

/// The last journal record a durable commit of `db` applied (`None`: it never applied one).
fn applied_seq(db: &redb::Database) -> Result<Option<u64>, OpenError> {
    let txn = db.begin_read().map_err(StorageError::from)?;
    let table = txn.open_table(META).map_err(StorageError::from)?;
    Ok(table.get(JOURNAL_SEQ_KEY).map_err(StorageError::from)?.map(|seq| seq.value()))
}
