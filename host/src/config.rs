//! `rill serve` configuration: embedded defaults, then a TOML file (`--config`), then flags.
//! Unknown keys are errors, so a typo never silently falls back to a default.
//!
//! ```toml
//! data_dir = "./rill-data"
//!
//! [storage]
//! durability = "every-commit"      # or "interval"
//! flush_interval_ms = 100          # with durability = "interval": the loss window on power cut
//! cache_bytes = 67108864           # redb page cache
//! retention_check_interval_ms = 60000
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::limits::{CACHE_BYTES_DEFAULT, FLUSH_INTERVAL_MS_MAX, RETENTION_CHECK_INTERVAL_MS_DEFAULT};
use crate::storage::{DurabilityPolicy, StoreConfig};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    pub storage: StorageSection,
}

impl Default for Config {
    fn default() -> Self {
        Self { data_dir: PathBuf::from("./rill-data"), storage: StorageSection::default() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// fsync before acknowledging every commit.
    EveryCommit,
    /// fsync every `flush_interval_ms`.
    Interval,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    pub durability: Durability,
    pub flush_interval_ms: u64,
    pub cache_bytes: usize,
    pub retention_check_interval_ms: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            durability: Durability::EveryCommit,
            flush_interval_ms: 100,
            cache_bytes: CACHE_BYTES_DEFAULT,
            retention_check_interval_ms: RETENTION_CHECK_INTERVAL_MS_DEFAULT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.message().to_owned() + &span_hint(text, e.span()))?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let storage = &self.storage;
        if storage.durability == Durability::Interval
            && !(1..=FLUSH_INTERVAL_MS_MAX).contains(&storage.flush_interval_ms)
        {
            return Err(ConfigError::Invalid(format!("storage.flush_interval_ms must be 1..={FLUSH_INTERVAL_MS_MAX}")));
        }
        if storage.cache_bytes < 1024 * 1024 {
            return Err(ConfigError::Invalid("storage.cache_bytes must be at least 1 MiB".into()));
        }
        if storage.retention_check_interval_ms == 0 {
            return Err(ConfigError::Invalid("storage.retention_check_interval_ms must be positive".into()));
        }
        Ok(())
    }

    pub fn store_config(&self) -> StoreConfig {
        let durability = match self.storage.durability {
            Durability::EveryCommit => DurabilityPolicy::EveryCommit,
            Durability::Interval => DurabilityPolicy::Interval(Duration::from_millis(self.storage.flush_interval_ms)),
        };
        StoreConfig { durability, cache_bytes: self.storage.cache_bytes, ..StoreConfig::default() }
    }
}

/// " (line N)" for a parse error's position, so the message names where to look.
fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|span| {
        format!(" (line {})", text.as_bytes()[..span.start.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1)
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = Config::parse("data_dir = \"x\"\n[storage]\ndurabilty = \"interval\"\n").unwrap_err();
        assert!(err.contains("durabilty"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(Config::parse("colour = 1").unwrap_err().contains("colour"));
    }

    #[test]
    fn interval_policy_is_parsed_and_bounded() {
        let config = Config::parse("[storage]\ndurability = \"interval\"\nflush_interval_ms = 50\n").unwrap();
        assert_eq!(config.store_config().durability, DurabilityPolicy::Interval(Duration::from_millis(50)));
        assert!(Config::parse("[storage]\ndurability = \"interval\"\nflush_interval_ms = 0\n").is_err());
        assert!(Config::parse("[storage]\ndurability = \"sometimes\"\n").is_err());
    }
}
