//! Retention decisions, returned as values: the caller (the host's store, `log::MemLog`)
//! performs them. Nothing here allocates or touches storage.
//!
//! Semantics follow Kafka's `UnifiedLog.deleteOldSegments`, with a *unit* (one stored batch, or a
//! group of batches stored together) in place of a segment:
//!
//! - Units are considered oldest first, and deletion stops at the first unit that is kept, so
//!   the log start only moves forward over a contiguous prefix.
//! - By time (`retention.ms`): a unit is deletable when it was appended more than `retention_ms`
//!   ago: its [`Summary::appended_ms`] is older than `now - retention_ms`. Kafka measures a
//!   segment's age by its largest record timestamp, which a producer sets: a device with a wrong
//!   clock, or a backfill of old readings, makes data look expired the moment it arrives, and
//!   records stamped in the future would pin it forever. The broker's own append time has neither
//!   problem (it is what Kafka uses for `LogAppendTime` topics). A unit appended in the future (a
//!   clock that went backwards) is simply not expired. `now - retention_ms` saturates, so a huge
//!   retention means "never".
//! - By size (`retention.bytes`): delete the oldest unit while what remains after deleting it is
//!   still at least `retention_bytes` (Kafka: `size - retention_bytes - segment.size >= 0`).
//! - A unit is deleted when either rule says so. Kafka runs the time pass and then the size pass;
//!   the single pass here deletes the same prefix, plus any time-expired unit that directly
//!   follows size-deleted ones (which Kafka deletes on its next run anyway).
//! - `keep_from`: never delete a unit that holds any offset `>= keep_from` (not yet mirrored, above
//!   the high watermark, ...). The caller passes the minimum of every such bound.

use core::fmt;

/// A topic's retention settings. `None` is Kafka's `-1`: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// Kafka's `retention.ms`.
    pub retention_ms: Option<u64>,
    /// Kafka's `retention.bytes` (per partition).
    pub retention_bytes: Option<u64>,
}

/// One unit of deletion: a batch, or a group of batches stored together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The first offset in the unit.
    pub base_offset: u64,
    /// The last offset in the unit (inclusive).
    pub last_offset: u64,
    /// When the unit's newest batch was appended, by the broker's clock (or a later time: an
    /// upper bound keeps data longer, never shorter). Not a record timestamp: see the module doc.
    pub appended_ms: i64,
    /// Bytes the unit occupies, as counted in `total_bytes`.
    pub size_bytes: u64,
}

/// Which rule deleted the units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Every deleted unit was older than `retention_ms`.
    Time,
    /// At least one unit was deleted only because the partition was over `retention_bytes`.
    Size,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Time => f.write_str("retention.ms"),
            Self::Size => f.write_str("retention.bytes"),
        }
    }
}

/// What to delete: every unit whose offsets are all below `delete_below`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The new log start offset: one past the last deleted unit.
    pub delete_below: u64,
    /// How many units to delete.
    pub units: u64,
    /// How many bytes they hold.
    pub bytes: u64,
    /// Why.
    pub reason: Reason,
}

/// Decides what retention deletes now. `oldest_first` yields the partition's units in offset
/// order; `total_bytes` is their total size. Returns `None` when nothing is to be deleted.
pub fn decide(
    oldest_first: impl Iterator<Item = Summary>,
    total_bytes: u64,
    now_ms: i64,
    policy: RetentionPolicy,
    keep_from: Option<u64>,
) -> Option<Decision> {
    // Timestamps strictly below this are expired. `None` = no time limit.
    let expired_below = policy.retention_ms.map(|ms| {
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        now_ms.saturating_sub(ms)
    });
    let mut remaining_bytes = total_bytes;
    let mut decision: Option<Decision> = None;
    for unit in oldest_first {
        debug_assert!(unit.base_offset <= unit.last_offset, "unit offsets reversed: {unit:?}");
        if keep_from.is_some_and(|keep| unit.last_offset >= keep) {
            break;
        }
        let by_time = expired_below.is_some_and(|below| unit.appended_ms < below);
        let by_size = policy
            .retention_bytes
            .is_some_and(|limit| remaining_bytes.checked_sub(unit.size_bytes).is_some_and(|left| left >= limit));
        if !by_time && !by_size {
            break;
        }
        // An offset of u64::MAX cannot be stored (offsets fit Kafka's i64), but stay panic-free.
        let Some(delete_below) = unit.last_offset.checked_add(1) else {
            break;
        };
        if let Some(previous) = &decision {
            debug_assert!(unit.base_offset >= previous.delete_below, "units out of order");
        }
        remaining_bytes = remaining_bytes.saturating_sub(unit.size_bytes);
        let reason = if by_time { Reason::Time } else { Reason::Size };
        decision = Some(match decision {
            None => Decision { delete_below, units: 1, bytes: unit.size_bytes, reason },
            Some(d) => Decision {
                delete_below,
                units: d.units + 1,
                bytes: d.bytes.saturating_add(unit.size_bytes),
                reason: if d.reason == Reason::Size { Reason::Size } else { reason },
            },
        });
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 86_400_000;

    /// Ten units of 100 bytes, offsets 10 per unit, appended one day apart starting at day 0.
    fn units() -> impl Iterator<Item = Summary> + Clone {
        (0..10u64).map(|i| Summary {
            base_offset: i * 10,
            last_offset: i * 10 + 9,
            appended_ms: (i * DAY_MS) as i64,
            size_bytes: 100,
        })
    }

    fn policy(retention_ms: Option<u64>, retention_bytes: Option<u64>) -> RetentionPolicy {
        RetentionPolicy { retention_ms, retention_bytes }
    }

    #[test]
    fn empty_log_or_unlimited_policy_deletes_nothing() {
        let now = (20 * DAY_MS) as i64;
        assert_eq!(decide(core::iter::empty(), 0, now, policy(Some(1), Some(0)), None), None);
        assert_eq!(decide(units(), 1000, now, RetentionPolicy::default(), None), None);
    }

    #[test]
    fn time_deletes_expired_prefix() {
        // now = day 10, retention 7 days: units appended before day 3 (units 0,1,2) expire.
        let now = (10 * DAY_MS) as i64;
        let d = decide(units(), 1000, now, policy(Some(7 * DAY_MS), None), None).unwrap();
        assert_eq!(d, Decision { delete_below: 30, units: 3, bytes: 300, reason: Reason::Time });
    }

    #[test]
    fn time_boundary_is_strict() {
        // Unit 3 was appended exactly at now - retention: kept (Kafka: `now - ts > retention`).
        let now = (10 * DAY_MS) as i64;
        let d = decide(units(), 1000, now, policy(Some(7 * DAY_MS), None), None).unwrap();
        assert_eq!(d.delete_below, 30);
    }

    #[test]
    fn all_expired_deletes_everything() {
        let now = (100 * DAY_MS) as i64;
        let d = decide(units(), 1000, now, policy(Some(DAY_MS), None), None).unwrap();
        assert_eq!(d, Decision { delete_below: 100, units: 10, bytes: 1000, reason: Reason::Time });
    }

    #[test]
    fn time_stops_at_first_kept_unit_even_if_later_ones_expired() {
        let mut list = [Summary { base_offset: 0, last_offset: 0, appended_ms: 0, size_bytes: 1 }; 3];
        list[1] = Summary { base_offset: 1, last_offset: 1, appended_ms: 1_000, size_bytes: 1 };
        list[2] = Summary { base_offset: 2, last_offset: 2, appended_ms: 0, size_bytes: 1 };
        let d = decide(list.into_iter(), 3, 600, policy(Some(100), None), None).unwrap();
        assert_eq!(d.delete_below, 1);
    }

    #[test]
    fn size_keeps_at_least_retention_bytes() {
        // 1000 bytes, limit 550: deleting 4 units leaves 600 >= 550, a 5th would leave 500.
        let d = decide(units(), 1000, 0, policy(None, Some(550)), None).unwrap();
        assert_eq!(d, Decision { delete_below: 40, units: 4, bytes: 400, reason: Reason::Size });
        // Exactly on the limit: 1000 - 500 = 500 >= 500 → 5 units.
        let d = decide(units(), 1000, 0, policy(None, Some(500)), None).unwrap();
        assert_eq!(d.units, 5);
        // Under the limit: nothing.
        assert_eq!(decide(units(), 1000, 0, policy(None, Some(1000)), None), None);
        // Zero bytes allowed: everything goes.
        assert_eq!(decide(units(), 1000, 0, policy(None, Some(0)), None).unwrap().units, 10);
    }

    #[test]
    fn both_policies_combine_and_report_size_when_size_was_needed() {
        let now = (10 * DAY_MS) as i64;
        // Time alone: 3 units. Size alone (limit 350): 6 units. Together: 6, reason Size.
        let both = policy(Some(7 * DAY_MS), Some(350));
        let d = decide(units(), 1000, now, both, None).unwrap();
        assert_eq!(d, Decision { delete_below: 60, units: 6, bytes: 600, reason: Reason::Size });
        // Size alone would delete 2, time deletes 3: time covers it all.
        let both = policy(Some(7 * DAY_MS), Some(800));
        let d = decide(units(), 1000, now, both, None).unwrap();
        assert_eq!(d, Decision { delete_below: 30, units: 3, bytes: 300, reason: Reason::Time });
    }

    #[test]
    fn keep_from_protects_units_holding_unmirrored_offsets() {
        let now = (100 * DAY_MS) as i64;
        let all = policy(Some(DAY_MS), Some(0));
        // Offset 25 lives in unit 2 (20..=29): units 0 and 1 may go.
        let d = decide(units(), 1000, now, all, Some(25)).unwrap();
        assert_eq!(d.delete_below, 20);
        // keep_from on a unit boundary: unit 2 starts at 20, keep 0 and 1 deleted.
        assert_eq!(decide(units(), 1000, now, all, Some(20)).unwrap().delete_below, 20);
        assert_eq!(decide(units(), 1000, now, all, Some(0)), None);
        assert_eq!(decide(units(), 1000, now, all, Some(5)), None);
    }

    #[test]
    fn clock_going_backwards_expires_nothing() {
        let d = decide(units(), 1000, -5 * DAY_MS as i64, policy(Some(DAY_MS), None), None);
        assert_eq!(d, None);
        // Units appended in the future relative to now are never expired by time.
        assert_eq!(decide(units(), 1000, 0, policy(Some(0), None), None), None);
    }

    #[test]
    fn huge_retention_ms_does_not_overflow() {
        let huge = policy(Some(u64::MAX), None);
        assert_eq!(decide(units(), 1000, i64::MIN, huge, None), None);
        assert_eq!(decide(units(), 1000, i64::MAX, huge, None), None);
        let max_i64 = policy(Some(i64::MAX as u64), None);
        assert_eq!(decide(units(), 1000, i64::MIN + 1, max_i64, None), None);
        // now = i64::MAX and retention 0: every unit with a timestamp below i64::MAX expires.
        let d = decide(units(), 1000, i64::MAX, policy(Some(0), None), None).unwrap();
        assert_eq!(d.units, 10);
    }

    #[test]
    fn inconsistent_total_bytes_does_not_underflow() {
        // total_bytes smaller than the units claim: the size rule just stops.
        let d = decide(units(), 150, 0, policy(None, Some(0)), None).unwrap();
        assert_eq!(d.units, 1);
    }

    #[test]
    fn last_offset_at_u64_max_stops_without_panic() {
        let unit = Summary { base_offset: u64::MAX, last_offset: u64::MAX, appended_ms: 0, size_bytes: 1 };
        assert_eq!(decide(core::iter::once(unit), 1, 10, policy(Some(1), None), None), None);
    }
}
