//! Where a follower's copy stops agreeing with the leader's log, found by leader epoch.
//!
//! Two logs that hold the same leader epoch at an offset were written by the same leader and
//! agree on everything up to it (Kafka's log-matching property, KIP-101/KIP-279). So the copy is
//! cut at the first offset, in the range both logs hold, where their epochs differ. The leader
//! decides it in one round, from the follower's stated epoch tail, instead of Kafka's
//! OffsetsForLeaderEpoch round trips.

use core::fmt;

use crate::log::{EpochEntry, EpochHistory};

/// Both sides' view of one partition.
#[derive(Debug, Clone, Copy)]
pub struct Logs<'a> {
    pub leader_epochs: &'a EpochHistory,
    pub leader_start: u64,
    /// The end of what the leader may ship: its durable end.
    pub leader_end: u64,
    /// The follower's newest epochs.
    pub follower_epochs: &'a [EpochEntry],
    /// Older follower epochs were not stated.
    pub follower_epochs_truncated: bool,
    pub follower_start: u64,
    pub follower_end: u64,
}

/// Why no safe truncation point exists. The partition stops with this as its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DivergenceError {
    /// The copy holds offsets past everything the leader has, with no offset in common to check:
    /// the leader lost data it had made durable (a restored backup, a lying disk).
    AheadOfLeader { follower_start: u64, follower_end: u64, leader_end: u64 },
    /// The logs differ already at the oldest epoch the follower stated.
    BeyondStatedEpochs { offset: u64 },
}

impl fmt::Display for DivergenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AheadOfLeader { follower_start, follower_end, leader_end } => write!(
                f,
                "the cloud copy holds offsets {follower_start}..{follower_end} but the edge's log ends at \
                 {leader_end}: the edge lost data it had made durable; mirroring of this partition stopped"
            ),
            Self::BeyondStatedEpochs { offset } => {
                write!(f, "the logs diverge at or before offset {offset}, older than the epochs the follower stated")
            }
        }
    }
}

impl core::error::Error for DivergenceError {}

/// The offset the follower truncates to: its log end when nothing diverged.
pub fn truncation_point(logs: Logs<'_>) -> Result<u64, DivergenceError> {
    let lo = logs.leader_start.max(logs.follower_start);
    let hi = logs.leader_end.min(logs.follower_end);
    if lo >= hi {
        // Nothing in common to compare: fine while the copy is not ahead of the leader (it is
        // behind the leader's start, or empty); the leader skips or streams from its end.
        if logs.follower_end <= logs.leader_end {
            return Ok(logs.follower_end);
        }
        return Err(DivergenceError::AheadOfLeader {
            follower_start: logs.follower_start,
            follower_end: logs.follower_end,
            leader_end: logs.leader_end,
        });
    }
    let known_from = match (logs.follower_epochs_truncated, logs.follower_epochs.first()) {
        (true, Some(oldest)) => lo.max(oldest.start_offset),
        _ => lo,
    };
    let leader = logs.leader_epochs.entries();
    let follower = logs.follower_epochs;
    // Epochs are constant between entry starts, so the first difference is at `known_from` or at
    // an entry start.
    let starts = leader.iter().chain(follower).map(|e| e.start_offset).filter(|&s| s > known_from && s < hi);
    let mut candidates: alloc::vec::Vec<u64> = core::iter::once(known_from).chain(starts).collect();
    candidates.sort_unstable();
    candidates.dedup();
    let diverged = candidates.into_iter().find(|&at| epoch_at(leader, at) != epoch_at(follower, at));
    match diverged {
        Some(at) if at == known_from && known_from > lo => Err(DivergenceError::BeyondStatedEpochs { offset: at }),
        Some(at) => Ok(at),
        None => Ok(hi),
    }
}

/// The epoch of the batch at `offset` according to `entries` (sorted by start offset).
fn epoch_at(entries: &[EpochEntry], offset: u64) -> Option<u32> {
    let at_or_below = entries.partition_point(|e| e.start_offset <= offset);
    at_or_below.checked_sub(1).map(|i| entries[i].epoch)
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    fn entries(pairs: &[(u32, u64)]) -> Vec<EpochEntry> {
        pairs.iter().map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset }).collect()
    }

    fn point(
        leader: &[(u32, u64)],
        leader_end: u64,
        follower: &[(u32, u64)],
        follower_end: u64,
    ) -> Result<u64, DivergenceError> {
        let leader_epochs = EpochHistory::from_entries(&entries(leader)).unwrap();
        truncation_point(Logs {
            leader_epochs: &leader_epochs,
            leader_start: 0,
            leader_end,
            follower_epochs: &entries(follower),
            follower_epochs_truncated: false,
            follower_start: 0,
            follower_end,
        })
    }

    #[test]
    fn same_history_keeps_the_copy_and_a_longer_copy_is_cut_at_the_leader_end() {
        assert_eq!(point(&[(0, 0)], 100, &[(0, 0)], 40), Ok(40));
        assert_eq!(point(&[(0, 0)], 100, &[(0, 0)], 100), Ok(100));
        assert_eq!(point(&[(0, 0)], 100, &[(0, 0)], 120), Ok(100));
        assert_eq!(point(&[(0, 0)], 100, &[], 0), Ok(0));
    }

    #[test]
    fn a_copy_written_in_an_epoch_the_leader_never_had_is_cut_where_the_epochs_part() {
        // The follower took epoch 1 at 50 from an old leader; the leader went to epoch 2 at 60.
        assert_eq!(point(&[(0, 0), (2, 60)], 100, &[(0, 0), (1, 50)], 80), Ok(50));
        // Same epochs, but the leader started epoch 1 later than the copy says.
        assert_eq!(point(&[(0, 0), (1, 70)], 100, &[(0, 0), (1, 50)], 80), Ok(50));
        // The copy stopped before the leader's new epoch: nothing to cut.
        assert_eq!(point(&[(0, 0), (1, 70)], 100, &[(0, 0)], 60), Ok(60));
        // Diverged at the very start.
        assert_eq!(point(&[(3, 0)], 100, &[(1, 0)], 60), Ok(0));
    }

    #[test]
    fn a_copy_behind_the_leader_start_is_kept_for_a_skip() {
        let leader_epochs = EpochHistory::from_entries(&entries(&[(0, 500)])).unwrap();
        let logs = Logs {
            leader_epochs: &leader_epochs,
            leader_start: 500,
            leader_end: 900,
            follower_epochs: &entries(&[(0, 0)]),
            follower_epochs_truncated: false,
            follower_start: 0,
            follower_end: 300,
        };
        assert_eq!(truncation_point(logs), Ok(300));
        // An empty copy restarted past the leader's end, or a copy past it: the leader lost data.
        let ahead = Logs { follower_start: 950, follower_end: 1000, ..logs };
        assert!(matches!(truncation_point(ahead), Err(DivergenceError::AheadOfLeader { .. })));
        let empty_ahead = Logs { follower_epochs: &[], follower_start: 1000, follower_end: 1000, ..logs };
        assert!(matches!(truncation_point(empty_ahead), Err(DivergenceError::AheadOfLeader { .. })));
        let empty_inside = Logs { follower_epochs: &[], follower_start: 600, follower_end: 600, ..logs };
        assert_eq!(truncation_point(empty_inside), Ok(600));
    }

    #[test]
    fn a_divergence_older_than_the_stated_epochs_is_an_error() {
        let leader_epochs = EpochHistory::from_entries(&entries(&[(0, 0), (5, 40)])).unwrap();
        let logs = Logs {
            leader_epochs: &leader_epochs,
            leader_start: 0,
            leader_end: 100,
            follower_epochs: &entries(&[(7, 50)]),
            follower_epochs_truncated: true,
            follower_start: 0,
            follower_end: 80,
        };
        assert_eq!(truncation_point(logs), Err(DivergenceError::BeyondStatedEpochs { offset: 50 }));
        // Agreement at the oldest stated epoch vouches for everything below it.
        let agreeing = Logs { follower_epochs: &entries(&[(5, 50)]), ..logs };
        assert_eq!(truncation_point(agreeing), Ok(80));
    }
}
