//! Wall-clock time as Kafka counts it.

/// Milliseconds since 1970 (0 for a clock set before it), the unit of Kafka timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The wall clock a component stamps things with: the system's, or one a test sets (the store
/// stamps appends with it, and ages data by it).
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// Milliseconds since 1970, moved only by [`Clock::set_ms`].
    Manual(std::sync::Arc<std::sync::atomic::AtomicI64>),
}

impl Clock {
    /// A clock that reads `start_ms` until it is set.
    pub fn manual(start_ms: i64) -> Clock {
        Clock::Manual(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(start_ms)))
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_ms(),
            Clock::Manual(at) => at.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    /// Sets a manual clock; the system's cannot be set (a test bug, caught in debug builds).
    pub fn set_ms(&self, ms: i64) {
        match self {
            Clock::System => debug_assert!(false, "the system clock cannot be set"),
            Clock::Manual(at) => at.store(ms, std::sync::atomic::Ordering::Release),
        }
    }
}
