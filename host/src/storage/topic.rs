//! Topics: names, configuration and the catalog entries the store keeps for them.

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_MESSAGE_BYTES_DEFAULT, PARTITIONS_PER_TOPIC_MAX, TOPIC_NAME_LEN_MAX};

/// Kafka's default `retention.ms`: 7 days.
pub const RETENTION_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;

/// A topic's configuration, with Kafka's names in [`TopicConfig::describe`] and `set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// `retention.ms`; `None` is Kafka's `-1` (keep forever).
    pub retention_ms: Option<u64>,
    /// `retention.bytes` per partition; `None` is Kafka's `-1` (no size limit).
    pub retention_bytes: Option<u64>,
    /// `max.message.bytes`: the largest record batch a producer may send.
    pub max_message_bytes: u32,
    /// `cleanup.policy`: only `delete` until compaction arrives.
    pub cleanup_policy: CleanupPolicy,
    /// `message.timestamp.type`: whether records keep the producer's timestamps or are stamped
    /// with the broker's append time.
    pub timestamp_type: MessageTimestampType,
    /// `message.timestamp.before.max.ms` (Kafka 3.6+): a `CreateTime` record stamped more than
    /// this long before the broker's clock is refused (`INVALID_TIMESTAMP`). `i64::MAX`: any.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (Kafka 3.6+): the same for records stamped after it.
    pub timestamp_after_max_ms: i64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            retention_ms: Some(RETENTION_MS_DEFAULT),
            retention_bytes: None,
            max_message_bytes: MAX_MESSAGE_BYTES_DEFAULT,
            cleanup_policy: CleanupPolicy::Delete,
            timestamp_type: MessageTimestampType::CreateTime,
            // Kafka 3.6–3.9's defaults (4.0 lowered `after` to an hour): a gateway stores what a
            // device with a wrong clock sends rather than refuse it, and time retention goes by
            // append time, so such stamps neither expire data early nor keep it forever.
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CleanupPolicy {
    Delete,
}

/// Kafka's `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageTimestampType {
    /// Records keep the timestamps their producer set.
    CreateTime,
    /// The broker stamps each batch with its append time (the batch's max timestamp, which
    /// consumers read as every record's timestamp), whatever the producer set.
    LogAppendTime,
}

impl MessageTimestampType {
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateTime => "CreateTime",
            Self::LogAppendTime => "LogAppendTime",
        }
    }
}

/// A record timestamp outside what a topic accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "timestamp {timestamp_ms} is out of range: the topic accepts [{earliest_ms}, {latest_ms}] now \
     (message.timestamp.before.max.ms / message.timestamp.after.max.ms)"
)]
pub struct TimestampOutOfRange {
    pub timestamp_ms: i64,
    pub earliest_ms: i64,
    pub latest_ms: i64,
}

/// Why a topic request was refused. Each maps to one Kafka error code in the protocol layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("topic {0:?} already exists")]
    AlreadyExists(String),
    #[error("unknown topic {0:?}")]
    Unknown(String),
    #[error("invalid partition count {count}: must be 1..={max}")]
    InvalidPartitions { count: u32, max: u32 },
    #[error("invalid config {key}={value:?}: {reason}")]
    InvalidConfig { key: String, value: String, reason: &'static str },
    #[error("storage failed: {0}")]
    Storage(#[from] super::StorageError),
}

/// Validates a topic name with Kafka's rules: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |reason| Err(TopicError::InvalidName { name: name.to_owned(), reason });
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return invalid("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are reserved");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

pub fn validate_partition_count(count: u32) -> Result<(), TopicError> {
    if count == 0 || count > PARTITIONS_PER_TOPIC_MAX {
        return Err(TopicError::InvalidPartitions { count, max: PARTITIONS_PER_TOPIC_MAX });
    }
    Ok(())
}

impl TopicConfig {
    /// Sets one config entry by its Kafka name, as `IncrementalAlterConfigs` and the config file do.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), TopicError> {
        let bad = |reason| TopicError::InvalidConfig { key: key.to_owned(), value: value.to_owned(), reason };
        match key {
            "retention.ms" => {
                self.retention_ms = parse_limit(value).ok_or_else(|| bad("expected -1 or a whole number"))?
            }
            "retention.bytes" => {
                self.retention_bytes = parse_limit(value).ok_or_else(|| bad("expected -1 or a whole number"))?
            }
            "max.message.bytes" => {
                let bytes: u32 = value.parse().map_err(|_| bad("expected a whole number"))?;
                if (bytes as usize) < rill_core::batch::HEADER_LEN
                    || bytes as usize > rill_core::limits::BATCH_BYTES_MAX
                {
                    return Err(bad("outside the range a record batch can have (61 B to 8 MiB)"));
                }
                self.max_message_bytes = bytes;
            }
            "cleanup.policy" => match value {
                "delete" => self.cleanup_policy = CleanupPolicy::Delete,
                _ => return Err(bad("only 'delete' is supported")),
            },
            "message.timestamp.type" => {
                self.timestamp_type = match value {
                    "CreateTime" => MessageTimestampType::CreateTime,
                    "LogAppendTime" => MessageTimestampType::LogAppendTime,
                    _ => return Err(bad("expected CreateTime or LogAppendTime")),
                }
            }
            "message.timestamp.before.max.ms" => {
                self.timestamp_before_max_ms =
                    parse_non_negative(value).ok_or_else(|| bad("expected a whole number, 0 or more"))?
            }
            "message.timestamp.after.max.ms" => {
                self.timestamp_after_max_ms =
                    parse_non_negative(value).ok_or_else(|| bad("expected a whole number, 0 or more"))?
            }
            _ => return Err(bad("unknown config key")),
        }
        Ok(())
    }

    /// Every entry by its Kafka name, as `DescribeConfigs` reports them.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let limit = |v: Option<u64>| v.map_or_else(|| "-1".to_owned(), |v| v.to_string());
        vec![
            ("retention.ms", limit(self.retention_ms)),
            ("retention.bytes", limit(self.retention_bytes)),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            ("cleanup.policy", "delete".to_owned()),
            ("message.timestamp.type", self.timestamp_type.name().to_owned()),
            ("message.timestamp.before.max.ms", self.timestamp_before_max_ms.to_string()),
            ("message.timestamp.after.max.ms", self.timestamp_after_max_ms.to_string()),
        ]
    }

    /// Checks a producer's record timestamp against `message.timestamp.before.max.ms` and
    /// `message.timestamp.after.max.ms` at `now_ms`, as Kafka (3.6+) does for `CreateTime`
    /// topics. A `LogAppendTime` topic accepts any: the broker replaces it.
    pub fn check_timestamp(&self, timestamp_ms: i64, now_ms: i64) -> Result<(), TimestampOutOfRange> {
        if self.timestamp_type == MessageTimestampType::LogAppendTime {
            return Ok(());
        }
        let earliest_ms = now_ms.saturating_sub(self.timestamp_before_max_ms);
        let latest_ms = now_ms.saturating_add(self.timestamp_after_max_ms);
        if (earliest_ms..=latest_ms).contains(&timestamp_ms) {
            Ok(())
        } else {
            Err(TimestampOutOfRange { timestamp_ms, earliest_ms, latest_ms })
        }
    }

    /// Whether any record timestamp could be refused (most topics accept any: no need to look).
    pub fn bounds_timestamps(&self) -> bool {
        self.timestamp_type == MessageTimestampType::CreateTime
            && (self.timestamp_before_max_ms < i64::MAX || self.timestamp_after_max_ms < i64::MAX)
    }
}

/// Parses Kafka's non-negative longs.
fn parse_non_negative(value: &str) -> Option<i64> {
    value.trim().parse::<i64>().ok().filter(|v| *v >= 0)
}

/// Parses Kafka's "-1 means unlimited" numbers.
fn parse_limit(value: &str) -> Option<Option<u64>> {
    if value.trim() == "-1" {
        return Some(None);
    }
    value.trim().parse::<u64>().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        for ok in ["a", "sensors.temp", "A_b-9", &"x".repeat(249)] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "ü", "a/b", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_set_and_describe_round_trip() {
        let mut config = TopicConfig::default();
        config.set("retention.ms", "-1").unwrap();
        config.set("retention.bytes", "1000").unwrap();
        config.set("max.message.bytes", "2000").unwrap();
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.retention_bytes, Some(1000));
        let described = config.describe();
        assert!(described.contains(&("retention.ms", "-1".to_owned())));
        assert!(described.contains(&("max.message.bytes", "2000".to_owned())));
        assert!(config.set("retention.ms", "soon").is_err());
        assert!(config.set("max.message.bytes", "10").is_err());
        assert!(config.set("segment.bytes", "1").is_err());
        assert!(config.set("cleanup.policy", "compact").is_err());
    }

    #[test]
    fn timestamp_settings_bound_create_time_records_only() {
        let now = 1_800_000_000_000;
        let mut config = TopicConfig::default();
        assert!(!config.bounds_timestamps(), "Kafka's defaults accept any timestamp");
        assert_eq!(config.check_timestamp(0, now), Ok(()));
        assert_eq!(config.check_timestamp(i64::MAX, now), Ok(()));
        config.set("message.timestamp.before.max.ms", "3600000").unwrap();
        config.set("message.timestamp.after.max.ms", "60000").unwrap();
        assert!(config.bounds_timestamps());
        assert_eq!(config.check_timestamp(now - 3_600_000, now), Ok(()));
        assert_eq!(config.check_timestamp(now + 60_000, now), Ok(()));
        let refused = config.check_timestamp(now - 3_600_001, now).unwrap_err();
        assert_eq!((refused.earliest_ms, refused.latest_ms), (now - 3_600_000, now + 60_000));
        assert!(config.check_timestamp(now + 60_001, now).is_err());
        config.set("message.timestamp.type", "LogAppendTime").unwrap();
        assert!(!config.bounds_timestamps());
        assert_eq!(config.check_timestamp(0, now), Ok(()), "the broker's stamp replaces it");
        let described = config.describe();
        assert!(described.contains(&("message.timestamp.type", "LogAppendTime".to_owned())));
        assert!(described.contains(&("message.timestamp.after.max.ms", "60000".to_owned())));
        assert!(config.set("message.timestamp.type", "EventTime").is_err());
        assert!(config.set("message.timestamp.before.max.ms", "-1").is_err());
    }
}
