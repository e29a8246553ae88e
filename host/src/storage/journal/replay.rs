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
    let applied = applied_seq(db)?.unwrap_or(0);
    let highest = records.iter().map(|record| record.seq).max().unwrap_or(0);
    let pending: Vec<_> = records.iter().filter(|record| record.seq > applied).collect();
    let mut covered = applied;
    if let Some(first) = pending.first() {
        // A round starts only after a durable commit applied everything before it, and its first
        // record names that commit's `journal_seq`: anything else means the journal lost some.
        if first.prev != applied {
            return Err(JournalError::Gap { first: first.seq, applied }.into());
        }
        let last = pending.last().map_or(first.seq, |record| record.seq);
        let txn = db.begin_write().map_err(StorageError::from)?;
        for record in &pending {
            redo::apply(&txn, record.seq, &record.body)?;
        }
        txn.open_table(META).map_err(StorageError::from)?.insert(JOURNAL_SEQ_KEY, last).map_err(StorageError::from)?;
        txn.commit().map_err(StorageError::from)?;
        tracing::info!(records = pending.len(), last, "storage journal replayed");
        covered = last;
    }
    journal.resume_after(covered, highest);
    journal.restart();
    Ok(journal)
}

/// The last journal record a durable commit of `db` applied (`None`: it never applied one).
fn applied_seq(db: &redb::Database) -> Result<Option<u64>, OpenError> {
    let txn = db.begin_read().map_err(StorageError::from)?;
    let table = txn.open_table(META).map_err(StorageError::from)?;
    Ok(table.get(JOURNAL_SEQ_KEY).map_err(StorageError::from)?.map(|seq| seq.value()))
}
