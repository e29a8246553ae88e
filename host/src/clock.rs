//! Wall-clock time as Kafka counts it.

/// Milliseconds since 1970 (0 for a clock set before it), the unit of Kafka timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
