//! How a store is opened: where its files live, what an acknowledgement promises, its sizes.

use std::path::PathBuf;
use std::time::Duration;

use super::{BackendFactory, SpaceProbe};
use crate::clock::Clock;
use crate::limits::{CACHE_BYTES_DEFAULT, GROUP_BYTES_MAX_DEFAULT, JOURNAL_BYTES};

/// When an acknowledged append is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurabilityPolicy {
    /// fsync before every acknowledgement (the default). Nothing acknowledged is ever lost.
    EveryCommit,
    /// Acknowledge once committed (visible to readers), fsync at most this often. A power cut or
    /// kernel crash loses at most this window of acknowledged appends; a process crash loses
    /// nothing (the data is in the page cache).
    Interval(Duration),
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub durability: DurabilityPolicy,
    /// redb's page cache (`[storage] cache_bytes`).
    pub cache_bytes: usize,
    /// When a partition's newest row group closes (see [`layout`]).
    pub group_bytes_max: usize,
    /// Past this many stored bytes, retention ignores retention floors and deletes the oldest
    /// groups until the store is within it (`[storage] disk_budget_bytes`).
    pub disk_budget_bytes: Option<u64>,
    /// Free space kept for deletions and metadata: appends are refused below it
    /// (`[storage] reserve_bytes`; `None`: [`space::default_reserve`]). See [`space`].
    pub reserve_bytes: Option<u64>,
    /// Reads the free space; `None`: the data directory's filesystem (a [`Location::Dir`]), or
    /// no reserve at all (a [`Location::Backend`]).
    pub space_probe: Option<SpaceProbe>,
    /// What appends are stamped with: their age for `retention.ms`, the time of
    /// `LogAppendTime` topics, the "now" of timestamp bounds.
    pub clock: Clock,
    /// The size of a journal made new (see [`journal`]; one made earlier keeps its size).
    pub journal_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            durability: DurabilityPolicy::EveryCommit,
            cache_bytes: CACHE_BYTES_DEFAULT,
            group_bytes_max: GROUP_BYTES_MAX_DEFAULT,
            disk_budget_bytes: None,
            reserve_bytes: None,
            space_probe: None,
            clock: Clock::System,
            journal_bytes: JOURNAL_BYTES,
        }
    }
}

/// Where the database lives.
#[derive(Clone)]
pub enum Location {
    /// `<dir>/rill.redb`, created with the directory when missing.
    Dir(PathBuf),
    /// Any redb backend; tests use it to inject power cuts and full disks.
    Backend(BackendFactory),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(dir) => f.debug_tuple("Dir").field(dir).finish(),
            Location::Backend(_) => f.write_str("Backend(..)"),
        }
    }
}
