//! Free space: appends stop *before* the filesystem is full.
//!
//! redb is copy-on-write: deleting batches writes new pages (and frees the old ones only once the
//! deletion has committed). On a full filesystem nothing commits — not retention, not
//! DeleteRecords, not a topic deletion — so the store could never make room again. The writer
//! therefore keeps a reserve of free space that only deletions and metadata (offsets, topics,
//! documents) use: appends are refused while free space is below it.
//!
//! Freed pages stay inside the database file (redb does not give them back to the filesystem), so
//! the filesystem's free space alone never recovers after retention. When free space falls below
//! the reserve the guard remembers how many batch bytes the store held then (the *ceiling*): the
//! file has pages for at least that much, so appends that keep the store under it reuse the pages
//! deletions freed instead of growing the file. Should the file grow anyway and free space fall
//! under half the reserve, the ceiling drops to what is stored then (and again for each further
//! eighth of the reserve lost): what the estimate misses is taken from the reserve in small,
//! bounded steps, never all of it at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::limits::{SPACE_RESERVE_FRACTION, SPACE_RESERVE_MAX, SPACE_RESERVE_MIN, SPACE_RESUME_BYTES};

/// How redb uses the file (its own accounting): what the row layout costs, apart from the
/// free space the file grows ahead of use (redb doubles a small file, then adds whole regions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpaceUsage {
    /// Pages in use, of every kind.
    pub allocated_bytes: u64,
    /// B-tree leaf pages (where values live).
    pub leaf_bytes: u64,
    pub branch_bytes: u64,
    /// Key and value bytes stored in leaves.
    pub stored_bytes: u64,
}

/// A filesystem's size and what is free on it for this process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    pub available: u64,
    pub total: u64,
}

type ReadSpace = dyn Fn() -> std::io::Result<FsSpace> + Send + Sync;

/// Reads the free space where the database lives.
#[derive(Clone)]
pub struct SpaceProbe(Arc<ReadSpace>);

impl SpaceProbe {
    /// Any source of readings (tests simulate a filling disk with one).
    pub fn new(read: impl Fn() -> std::io::Result<FsSpace> + Send + Sync + 'static) -> Self {
        Self(Arc::new(read))
    }

    /// The filesystem holding `dir` (`statvfs`: blocks available to an unprivileged user, so the
    /// root-only share of ext4 is not counted on).
    pub fn filesystem(dir: &Path) -> Self {
        let dir: PathBuf = dir.to_owned();
        Self::new(move || {
            let stat = rustix::fs::statvfs(&dir)?;
            Ok(FsSpace { available: stat.f_bavail * stat.f_frsize, total: stat.f_blocks * stat.f_frsize })
        })
    }

    pub fn read(&self) -> std::io::Result<FsSpace> {
        (self.0)()
    }
}

impl std::fmt::Debug for SpaceProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpaceProbe(..)")
    }
}

/// Why appends are refused: free space is under the reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error(
    "disk almost full: {available_bytes} bytes free, under the {reserve_bytes}-byte reserve kept for \
     deletions; appends are refused until retention, DeleteRecords or a topic deletion frees space"
)]
pub struct NoSpace {
    pub available_bytes: u64,
    pub reserve_bytes: u64,
}

/// The reserve for a filesystem of `total` bytes, unless configured: a twentieth of it, within
/// bounds (a 32 GB card keeps 256 MiB; a 24 MiB tmpfs keeps 4 MiB).
pub fn default_reserve(total: u64) -> u64 {
    (total / SPACE_RESERVE_FRACTION).clamp(SPACE_RESERVE_MIN, SPACE_RESERVE_MAX)
}

/// The low-space state, while it lasts.
#[derive(Debug, Clone, Copy)]
struct Low {
    /// Batch bytes the store may hold without growing the file (see the module's comment).
    ceiling: u64,
    /// Set while appends are refused (cleared once one fits again).
    refusing: Option<NoSpace>,
    /// Free space under which the ceiling next drops to what is stored (half the reserve, then
    /// an eighth of it lower each time the file still grew).
    ratchet_below: u64,
    since: Instant,
}

/// Decides whether appends may be written, from a free-space reading and the store's size. Pure:
/// the writer reads the filesystem and logs the transitions it returns.
#[derive(Debug, Default)]
pub struct SpaceGuard {
    /// `None`: [`default_reserve`] of the filesystem.
    configured_reserve: Option<u64>,
    low: Option<Low>,
    /// A failed reading was logged already (one line, not one per commit).
    unreadable_logged: bool,
}

/// A change of the guard's state worth one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    StartedRefusing(NoSpace),
    Resumed { refused_for_ms: u64 },
}

impl SpaceGuard {
    pub fn new(configured_reserve: Option<u64>) -> Self {
        Self { configured_reserve, low: None, unreadable_logged: false }
    }

    /// True the first time it is called: whether to log that the free space cannot be read.
    pub fn first_unreadable(&mut self) -> bool {
        !std::mem::replace(&mut self.unreadable_logged, true)
    }

    pub fn reserve(&self, space: FsSpace) -> u64 {
        self.configured_reserve.unwrap_or_else(|| default_reserve(space.total))
    }

    /// Why appends are refused now, if they are.
    pub fn refusing(&self) -> Option<NoSpace> {
        self.low.and_then(|low| low.refusing)
    }

    /// Whether `incoming` more batch bytes may be written with the store holding `stored()` bytes
    /// (asked only when space is low: summing every partition is not for each commit), and the
    /// transition this decision makes, if any.
    pub fn admit(
        &mut self,
        space: FsSpace,
        stored: impl FnOnce() -> u64,
        incoming: u64,
    ) -> (Result<(), NoSpace>, Option<Transition>) {
        let reserve = self.reserve(space);
        let was_refusing = self.low.and_then(|low| low.refusing);
        let since = self.low.map(|low| low.since);
        let decision = if space.available >= reserve.saturating_add(incoming) {
            self.low = None;
            Ok(())
        } else {
            let stored = stored();
            let low = self.low.get_or_insert(Low {
                ceiling: stored,
                refusing: None,
                ratchet_below: reserve / 2,
                since: Instant::now(),
            });
            if space.available < low.ratchet_below {
                low.ceiling = low.ceiling.min(stored);
                low.ratchet_below = space.available.saturating_sub(reserve / 8);
            }
            if stored.saturating_add(incoming) <= low.ceiling {
                low.refusing = None;
                Ok(())
            } else {
                let refusal = NoSpace { available_bytes: space.available, reserve_bytes: reserve };
                low.refusing = Some(refusal);
                if was_refusing.is_none() {
                    low.since = Instant::now();
                }
                Err(refusal)
            }
        };
        let transition = match (was_refusing, decision) {
            (None, Err(refusal)) => Some(Transition::StartedRefusing(refusal)),
            (Some(_), Ok(())) => {
                let refused_for_ms = since.map_or(0, |since| since.elapsed().as_millis() as u64);
                Some(Transition::Resumed { refused_for_ms })
            }
            _ => None,
        };
        (decision, transition)
    }

    /// While refusing: whether a modest append would fit now (space came back, or deletions made
    /// room inside the file), ending the refusal without waiting for a producer to try.
    pub fn recheck(&mut self, space: FsSpace, stored: u64) -> Option<Transition> {
        self.refusing()?;
        let (_, transition) = self.admit(space, || stored, SPACE_RESUME_BYTES);
        transition
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn space(available: u64) -> FsSpace {
        FsSpace { available, total: 100 * MIB }
    }

    #[test]
    fn the_default_reserve_is_a_twentieth_within_bounds() {
        assert_eq!(default_reserve(24 * MIB), 4 * MIB);
        assert_eq!(default_reserve(1000 * MIB), 50 * MIB);
        assert_eq!(default_reserve(64_000 * MIB), 256 * MIB);
    }

    #[test]
    fn appends_stop_at_the_reserve_and_resume_when_space_comes_back() {
        let mut guard = SpaceGuard::new(Some(10 * MIB));
        assert_eq!(guard.admit(space(20 * MIB), || 50 * MIB, MIB), (Ok(()), None));
        // The append would eat into the reserve: refused, once logged.
        let refusal = NoSpace { available_bytes: 10 * MIB, reserve_bytes: 10 * MIB };
        assert_eq!(
            guard.admit(space(10 * MIB), || 60 * MIB, MIB),
            (Err(refusal), Some(Transition::StartedRefusing(refusal)))
        );
        assert_eq!(guard.admit(space(10 * MIB), || 60 * MIB, MIB).1, None, "one log line, not one per append");
        assert_eq!(guard.refusing(), Some(refusal));
        // Another program freed space on the filesystem.
        let (decision, transition) = guard.admit(space(30 * MIB), || 60 * MIB, MIB);
        assert_eq!(decision, Ok(()));
        assert!(matches!(transition, Some(Transition::Resumed { .. })));
        assert_eq!(guard.refusing(), None);
    }

    /// Deletions free pages inside the file, not on the filesystem: appends fill them again, up
    /// to what the store held when space ran low, and no further.
    #[test]
    fn deletions_make_room_inside_the_file() {
        let mut guard = SpaceGuard::new(Some(10 * MIB));
        assert!(guard.admit(space(9 * MIB), || 60 * MIB, MIB).0.is_err());
        // Retention deleted 5 MiB: the filesystem's free space did not change.
        assert!(matches!(guard.recheck(space(9 * MIB), 55 * MIB), Some(Transition::Resumed { .. })));
        assert!(guard.admit(space(9 * MIB), || 55 * MIB, 3 * MIB).0.is_ok());
        assert!(guard.admit(space(9 * MIB), || 58 * MIB, 2 * MIB).0.is_ok());
        assert!(guard.admit(space(9 * MIB), || 60 * MIB, MIB).0.is_err(), "the freed pages are used up");
    }

    /// Where reusing pages still grew the file, the guard lowers its ceiling below half the
    /// reserve: the rest is kept for deletions, and further deletions make room again.
    #[test]
    fn below_half_the_reserve_a_growing_file_lowers_the_ceiling() {
        let mut guard = SpaceGuard::new(Some(10 * MIB));
        assert!(guard.admit(space(9 * MIB), || 60 * MIB, MIB).0.is_err());
        assert!(guard.admit(space(9 * MIB), || 50 * MIB, MIB).0.is_ok(), "10 MiB deleted");
        assert!(guard.admit(space(4 * MIB), || 51 * MIB, MIB).0.is_err(), "the file grew anyway");
        assert_eq!(guard.recheck(space(4 * MIB), 51 * MIB), None, "still refusing");
        assert!(guard.admit(space(4 * MIB), || 40 * MIB, MIB).0.is_ok(), "until more is deleted");
        assert!(guard.admit(space(3 * MIB), || 45 * MIB, MIB).0.is_ok(), "less than an eighth more lost");
        assert!(guard.admit(space(2 * MIB), || 45 * MIB, MIB).0.is_err(), "an eighth more lost: ceiling drops again");
    }

    #[test]
    fn a_recheck_does_nothing_unless_refusing() {
        let mut guard = SpaceGuard::new(Some(10 * MIB));
        assert_eq!(guard.recheck(space(MIB), 60 * MIB), None);
        assert_eq!(guard.refusing(), None);
    }
}
