//! The storage writer's counters and histograms, for benchmarks and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Counters and histograms of the storage writer, for benchmarks and `/metrics`.
#[derive(Debug)]
pub struct StoreStats {
    commits: AtomicU64,
    syncs: AtomicU64,
    /// Seconds from a group commit's first insert to its commit returning (fsync included when
    /// durable).
    pub commit_seconds: Histogram,
    /// Record batches per group commit.
    pub batches_per_commit: Histogram,
    /// Record batch bytes per group commit.
    pub bytes_per_commit: Histogram,
    /// Appends (and transactions with appends) refused because free space is under the reserve.
    pub appends_refused_no_space: Counter,
    /// Free bytes on the data directory's filesystem, as last read by the writer.
    pub free_bytes: Gauge,
    /// The free-space reserve in force (see `storage::space`).
    pub reserve_bytes: Gauge,
}

impl Default for StoreStats {
    fn default() -> Self {
        Self {
            commits: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            // 50 µs (page cache) .. ~3 s (a stalled SD card).
            commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 17)),
            batches_per_commit: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            // 256 B .. 16 MiB (COMMIT_BYTES_MAX is 8 MiB).
            bytes_per_commit: Histogram::new(exponential_buckets(256.0, 4.0, 9)),
            appends_refused_no_space: Counter::default(),
            free_bytes: Gauge::default(),
            reserve_bytes: Gauge::default(),
        }
    }
}

impl StoreStats {
    pub(super) fn count_commit(&self, synced: bool) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        if synced {
            self.syncs.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn observe_group_commit(&self, seconds: f64, batches: u64, bytes: u64) {
        self.commit_seconds.observe(seconds);
        self.batches_per_commit.observe(batches as f64);
        self.bytes_per_commit.observe(bytes as f64);
    }

    /// Write transactions committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Commits that were made durable (fsync).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}
