//! The CLI's client commands: `rill topic|produce|consume|group`.

mod consume;
mod group;
mod lookup;
mod mirror;
mod mqtt;
mod pipeline;
mod produce;
mod resources;
mod topic;

pub use mirror::{MirrorCommand, mirror};
pub use mqtt::{MqttCommand, mqtt};
pub use pipeline::{PipelineCommand, pipeline};
pub use resources::{PluginCommand, plugin, status};

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::{Client, ClientError};

/// Where the broker is; every client command takes it.
#[derive(Debug, Clone, Args)]
pub struct Bootstrap {
    /// A broker's Kafka address (also RILL_BOOTSTRAP).
    #[arg(long, value_name = "HOST:PORT", env = "RILL_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap: String,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// A topic setting, KEY=VALUE (e.g. retention.ms=86400000); repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics with their partition counts.
    List,
    /// Show a topic's partitions (start and end offsets) and settings.
    Describe { name: String },
    /// Change a topic's settings.
    Alter {
        name: String,
        /// Set KEY to VALUE; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Put KEY back to its default; repeatable.
        #[arg(long = "delete-config", value_name = "KEY")]
        deletes: Vec<String>,
    },
    /// Delete a topic and all its records.
    Delete { name: String },
}

/// Where to start reading (also where `group reset-offsets` moves a group to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    Offset(i64),
    /// The first record with a timestamp at or after this (ms since the epoch).
    Timestamp(i64),
}

impl std::str::FromStr for StartAt {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "earliest" | "beginning" => Ok(StartAt::Earliest),
            "latest" | "end" => Ok(StartAt::Latest),
            _ => match text.strip_prefix('@') {
                Some(ms) => {
                    ms.parse().map(StartAt::Timestamp).map_err(|_| format!("@{ms}: expected milliseconds since 1970"))
                }
                None => match text.parse::<i64>() {
                    Ok(offset) if offset >= 0 => Ok(StartAt::Offset(offset)),
                    _ => Err(format!("{text:?}: expected earliest, latest, an offset, or @TIMESTAMP_MS")),
                },
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The value, one record per line.
    Text,
    /// One JSON object per line: topic, partition, offset, timestamp, key, value, headers.
    Json,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// The key of every record (default: none, records spread over partitions batch by batch).
    #[arg(long)]
    pub key: Option<String>,
    /// Send every record to this partition (default: by key, as Kafka's partitioner does).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Read records from this file, one per line, with a progress bar (default: stdin).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Where to start: earliest, latest, an offset, or @TIMESTAMP_MS.
    #[arg(long, default_value = "earliest")]
    pub offset: StartAt,
    /// Stop after this many records.
    #[arg(long)]
    pub max: Option<u64>,
    /// Stop once every partition read is caught up (default: wait for new records).
    #[arg(long)]
    pub exit: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups and their states.
    List,
    /// Show a group's members, assignments, committed offsets and lag.
    Describe { group: String },
    /// Move a group's committed offsets (the group must have no members).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// Only this partition (default: all).
        #[arg(long)]
        partition: Option<u32>,
        /// earliest, latest, an offset, or @TIMESTAMP_MS.
        #[arg(long)]
        to: StartAt,
    },
    /// Delete a group (it must have no members) and its committed offsets.
    Delete { group: String },
}

pub async fn topic(bootstrap: &Bootstrap, command: TopicCommand) -> Result<(), ClientError> {
    let mut client = Client::connect(&bootstrap.bootstrap).await?;
    topic::run(&mut client, command).await
}

pub async fn produce(bootstrap: &Bootstrap, args: ProduceArgs) -> Result<(), ClientError> {
    let mut client = Client::connect(&bootstrap.bootstrap).await?;
    produce::run(&mut client, args).await
}

pub async fn consume(bootstrap: &Bootstrap, args: ConsumeArgs) -> Result<(), ClientError> {
    let mut client = Client::connect(&bootstrap.bootstrap).await?;
    consume::run(&mut client, args).await
}

pub async fn group(bootstrap: &Bootstrap, command: GroupCommand) -> Result<(), ClientError> {
    let mut client = Client::connect(&bootstrap.bootstrap).await?;
    group::run(&mut client, command).await
}

/// `KEY=VALUE` as a pair.
fn key_value(text: &str) -> Result<(String, String), ClientError> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| ClientError::Refused(format!("--config {text:?}: expected KEY=VALUE")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse_and_nonsense_is_refused() {
        assert_eq!("earliest".parse(), Ok(StartAt::Earliest));
        assert_eq!("latest".parse(), Ok(StartAt::Latest));
        assert_eq!("42".parse(), Ok(StartAt::Offset(42)));
        assert_eq!("@1700000000000".parse(), Ok(StartAt::Timestamp(1_700_000_000_000)));
        assert!("-3".parse::<StartAt>().is_err());
        assert!("@soon".parse::<StartAt>().is_err());
        assert!(key_value("retention.ms=1000").is_ok() && key_value("=1").is_err() && key_value("x").is_err());
    }
}
