//! Recovery after IO errors: the writer reopens the database and refuses writes for a backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::StorageError;
use super::backend;
use super::catalog;
use super::logs::{load_logs, publish};
use super::offsets;
use super::producers;
use super::writer::Writer;
use crate::limits::{READERS_RELEASE_WAIT, RECOVERY_BACKOFF_MAX, RECOVERY_BACKOFF_MIN};

#[derive(Debug, Clone)]
pub(super) struct Broken {
    pub(super) cause: StorageError,
    /// Failed commits and reopens in a row.
    failures: u32,
    pub(super) writes_refused_until: Instant,
    pub(super) reopened: bool,
}

// After an IO error redb refuses every later call, reads included, until the database is
// reopened; reopening repairs it (a scan of the whole file). So the writer reopens at once — reads
// resume as soon as the file can be opened — but refuses writes for a backoff that doubles with
// each failure in a row, so a disk that stays full costs one repair per backoff, not one per
// append.

impl Writer {
    pub(super) fn mark_broken(&mut self, cause: StorageError) {
        let failures = self.broken.as_ref().map_or(1, |b| b.failures + 1);
        let backoff = backoff_after(failures);
        tracing::error!(error = %cause, failures, backoff_ms = backoff.as_millis() as u64, "storage write failed; reopening the database");
        // What was committed but not synced is either in the file or gone; nothing to sync.
        self.unsynced_since = None;
        let reopened = self.reopen();
        if let Err(e) = &reopened {
            tracing::error!(error = %e, "storage reopen failed; reads and writes wait for the next attempt");
        }
        self.broken = Some(Broken {
            cause,
            failures,
            writes_refused_until: Instant::now() + backoff,
            reopened: reopened.is_ok(),
        });
        self.publish_broken();
    }

    /// Shows the recovery state to [`super::Store::writer_state`].
    fn publish_broken(&self) {
        *self.shared.recovery.lock().unwrap_or_else(|p| p.into_inner()) = self.broken.clone();
    }

    /// Whether writes may go ahead: not during the backoff, and only on a reopened database.
    pub(super) fn ensure_open(&mut self) -> Result<(), StorageError> {
        let Some(broken) = &self.broken else {
            return Ok(());
        };
        let wait = broken.writes_refused_until.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            let resume_in_ms = wait.as_millis() as u64;
            return Err(StorageError::Recovering { cause: Box::new(broken.cause.clone()), resume_in_ms });
        }
        if !broken.reopened {
            self.retry_reopen()?;
        }
        Ok(())
    }

    /// Called when the backoff ends with the database still closed (also without any writes, so
    /// that reads come back by themselves).
    pub(super) fn retry_reopen(&mut self) -> Result<(), StorageError> {
        let Some(broken) = self.broken.as_mut() else {
            return Ok(());
        };
        if broken.reopened {
            return Ok(());
        }
        match self.reopen() {
            Ok(()) => {
                tracing::info!("storage reopened after an IO error");
                if let Some(broken) = self.broken.as_mut() {
                    broken.reopened = true;
                }
                self.publish_broken();
                Ok(())
            }
            Err(e) => {
                let broken = self.broken.as_mut().expect("checked above");
                broken.failures += 1;
                let backoff = backoff_after(broken.failures);
                broken.writes_refused_until = Instant::now() + backoff;
                tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "storage reopen failed");
                let resume_in_ms = backoff.as_millis() as u64;
                let failed = StorageError::Recovering { cause: Box::new(broken.cause.clone()), resume_in_ms };
                self.publish_broken();
                Err(failed)
            }
        }
    }

    /// A successful commit ends the failure streak.
    pub(super) fn commit_succeeded(&mut self) {
        if self.broken.take().is_some() {
            tracing::info!("storage writes resumed");
            self.publish_broken();
        }
    }

    /// When the writer must wake up by itself to retry reopening.
    pub(super) fn reopen_deadline(&self) -> Option<Instant> {
        self.broken.as_ref().filter(|b| !b.reopened).map(|b| b.writes_refused_until)
    }

    fn reopen(&mut self) -> Result<(), StorageError> {
        // Whatever callers read before this may be gone from the file: transactions prepared
        // from it are refused (see `Store::generation`).
        self.shared.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let old = self.shared.db.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(old) = old {
            wait_for_readers(old);
        }
        let (db, journal) = backend::open_store(&self.factory, &self.config)?;
        self.journal = journal;
        let (_, metas) = catalog::load(&db)?;
        // The file is the truth now: commits that were not durable may be gone.
        self.logs = load_logs(&db, &metas)?;
        self.producers = producers::load(&db)?;
        *self.shared.offsets.write().unwrap_or_else(|p| p.into_inner()) = offsets::load(&db)?;
        self.unsynced_since = None;
        *self.shared.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
        let catalog = self.shared.catalog();
        for (key, log) in &self.logs {
            if let Some(partition) = catalog.partition(*key) {
                publish(&partition, log, true);
            }
        }
        Ok(())
    }
}

/// How long writes are refused after `failures` IO errors in a row: doubling, bounded.
fn backoff_after(failures: u32) -> Duration {
    (RECOVERY_BACKOFF_MIN * 2u32.saturating_pow(failures.saturating_sub(1))).min(RECOVERY_BACKOFF_MAX)
}

/// Waits until readers have dropped their handles, so the file lock is released before reopening.
fn wait_for_readers(mut db: Arc<redb::Database>) {
    let deadline = Instant::now() + READERS_RELEASE_WAIT;
    while Instant::now() < deadline {
        match Arc::try_unwrap(db) {
            Ok(db) => return drop(db),
            Err(shared) => db = shared,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::warn!(
        wait_ms = READERS_RELEASE_WAIT.as_millis() as u64,
        "readers still hold the database; reopening anyway"
    );
}
