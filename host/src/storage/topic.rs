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
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            retention_ms: Some(RETENTION_MS_DEFAULT),
            retention_bytes: None,
            max_message_bytes: MAX_MESSAGE_BYTES_DEFAULT,
            cleanup_policy: CleanupPolicy::Delete,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CleanupPolicy {
    Delete,
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
    Storage(String),
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
        ]
    }
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
}
