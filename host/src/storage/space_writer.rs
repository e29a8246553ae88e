//! The writer's side of the free-space reserve ([`super::space`]): it reads the filesystem,
//! refuses what the guard refuses, logs the transitions, and publishes the state for `/ready`
//! and `/metrics`.

use std::time::Instant;

use super::StorageError;
use super::logs::stored_bytes;
use super::space::{FsSpace, Transition};
use super::writer::{Incoming, Pending, Writer};
use crate::limits::SPACE_RECHECK_INTERVAL;
use crate::storage::AppendError;

impl Writer {
    /// Answers the appends of `pending`, and its transactions that append, with a refusal when
    /// they would eat into the reserve; returns what goes ahead (offset commits, transactions of
    /// documents only).
    pub(super) fn hold_back_for_space(&mut self, mut pending: Pending) -> Pending {
        let incoming = incoming_bytes(&pending);
        if incoming == 0 {
            return pending;
        }
        let Err(cause) = self.admit_space(incoming) else { return pending };
        let (appending, documents_only): (Vec<_>, Vec<_>) =
            pending.transactions.into_iter().partition(|transaction| !transaction.appends.is_empty());
        // Counted before anyone hears of it: whoever got the refusal finds it in the metric.
        self.shared.stats.appends_refused_no_space.inc_by((pending.appends.len() + appending.len()) as u64);
        for append in pending.appends.drain(..) {
            let _ = append.reply.send(Err(AppendError::Storage(cause.clone())));
        }
        for transaction in appending {
            let _ = transaction.reply.send(Err(AppendError::Storage(cause.clone())));
        }
        pending.transactions = documents_only;
        pending
    }

    /// Whether `incoming` more bytes may be stored (appends, a plugin's blob): a
    /// [`StorageError::NoSpace`] while free space is under the reserve.
    pub(super) fn admit_space(&mut self, incoming: u64) -> Result<(), StorageError> {
        let Some(mut space) = self.read_space() else { return Ok(()) };
        let needed = self.space.reserve(space).saturating_add(incoming);
        if self.journal.holds_records() && space.available < needed.saturating_add(self.deferred_bytes()) {
            // Near the reserve, what the journal holds is checkpointed first, so that refusals
            // start at the reserve itself rather than a journal's worth before it.
            match self.checkpoint() {
                Ok(()) => space = self.read_space().unwrap_or(space),
                Err(cause) if cause.needs_reopen() => {
                    self.mark_broken(cause.clone());
                    return Err(cause);
                }
                Err(cause) => tracing::error!(error = %cause, "storage checkpoint failed"),
            }
        }
        let incoming = incoming.saturating_add(self.deferred_bytes());
        let logs = &self.logs;
        let (decision, transition) = self.space.admit(space, || stored_bytes(logs), incoming);
        self.space_changed(transition);
        decision.map_err(StorageError::NoSpace)
    }

    /// What the journal holds reaches the database's file only at the next checkpoint, and may
    /// take up to twice its size there (rewritten rows' old pages stay until then): the free space
    /// read now does not show it yet.
    fn deferred_bytes(&self) -> u64 {
        self.journal.pending_bytes().saturating_mul(2)
    }

    /// While appends are refused: reads the free space again (after every deletion, and every
    /// [`SPACE_RECHECK_INTERVAL`] without one) and ends the refusal once an append fits.
    pub(super) fn recheck_space(&mut self) {
        if self.space.refusing().is_none() {
            return;
        }
        let Some(space) = self.read_space() else { return };
        let transition = self.space.recheck(space, stored_bytes(&self.logs));
        self.space_changed(transition);
    }

    /// When the writer must read the free space again by itself (only while refusing).
    pub(super) fn space_recheck_deadline(&self) -> Option<Instant> {
        self.space_checked_at.map(|at| at + SPACE_RECHECK_INTERVAL)
    }

    fn read_space(&mut self) -> Option<FsSpace> {
        let probe = self.config.space_probe.as_ref()?;
        match probe.read() {
            Ok(space) => {
                let stats = &self.shared.stats;
                stats.free_bytes.set(space.available.min(i64::MAX as u64) as i64);
                stats.reserve_bytes.set(self.space.reserve(space).min(i64::MAX as u64) as i64);
                Some(space)
            }
            Err(e) => {
                // Without a reading no reserve can be kept: appends go ahead, as before there was
                // one, and a full disk is met by the IO error path.
                if self.space.first_unreadable() {
                    tracing::warn!(error = %e, "cannot read the free space of the data directory; no reserve is kept");
                }
                None
            }
        }
    }

    fn space_changed(&mut self, transition: Option<Transition>) {
        let refusing = self.space.refusing();
        self.space_checked_at = refusing.map(|_| Instant::now());
        *self.shared.no_space.lock().unwrap_or_else(|p| p.into_inner()) = refusing;
        match transition {
            Some(Transition::StartedRefusing(refusal)) => tracing::error!(
                available_bytes = refusal.available_bytes,
                reserve_bytes = refusal.reserve_bytes,
                "disk almost full: appends are refused until space is freed (retention, DeleteRecords, \
                 deleting a topic); reads, deletions and metadata go on"
            ),
            Some(Transition::Resumed { refused_for_ms }) => {
                tracing::info!(refused_for_ms, "free space is back: appends are accepted again")
            }
            None => {}
        }
    }
}

/// Batch bytes a commit would add.
fn incoming_bytes(pending: &Pending) -> u64 {
    let appends = pending.appends.iter().map(|append| match &append.batches {
        Incoming::Produced(batches) => batches.bytes.len(),
        Incoming::Replica(batches) => batches.len(),
    });
    let transactions =
        pending.transactions.iter().flat_map(|transaction| transaction.appends.iter().map(|(_, b)| b.bytes.len()));
    appends.chain(transactions).sum::<usize>() as u64
}
