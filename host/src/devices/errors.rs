//! Why a device's batch goes to the dead-letter topic, and why a device connection ends.

use std::time::Duration;

use rill_core::batch::{BatchError, BufferTooSmall, BuildError};
use rill_core::partitioner::PartitionerError;
use rill_core::uplink::EncodeError;

use crate::plugins::{PluginError, SlotError};
use crate::records::RecordsError;
use crate::storage::{AppendError, TopicError};

/// A batch that cannot be stored as readings, whatever happens next: it is kept in the
/// dead-letter topic with why, and acknowledged (the device sending it again would not help).
#[derive(Debug, thiserror::Error)]
pub enum BadBatch {
    #[error("not a valid record batch: {0}")]
    Invalid(BatchError),
    #[error("a device batch carries no producer id and is not transactional")]
    NotPlain,
    #[error("a timestamp out of range once on wall time")]
    TimestampOverflow,
    #[error("since-boot times {base}..={max} do not map to wall time before the frame's arrival")]
    Unmappable { base: i64, max: i64 },
    #[error("cannot restamp the batch: {0}")]
    Restamp(BatchError),
    #[error("cannot restamp the batch: {0}")]
    RestampHeader(BufferTooSmall),
    #[error(transparent)]
    Partition(#[from] PartitionRefusal),
    /// The store refused the batch itself (larger than the topic takes, corrupt compressed
    /// records, a timestamp out of the topic's bounds).
    #[error(transparent)]
    Refused(AppendError),
}

/// Why the partitioner put a batch nowhere.
#[derive(Debug, thiserror::Error)]
pub enum PartitionRefusal {
    #[error(transparent)]
    Key(#[from] PartitionerError),
    #[error(transparent)]
    Records(#[from] RecordsError),
    #[error("partitioner {label}: {error}")]
    Plugin { label: String, error: SlotError<PluginError> },
    #[error("the partitioner chose nothing")]
    NothingChosen,
}

/// Why a device connection ends. The device keeps what was not acknowledged and sends it again
/// on its next connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionEnd {
    #[error("device {device:?} refused: this gateway takes at most {max} devices")]
    TooManyDevices { device: String, max: usize },
    /// The partitioner cannot be loaded now (the message says why): frames wait for it.
    #[error("{0}")]
    PartitionerUnavailable(String),
    #[error("storage: {0}")]
    Storage(AppendError),
    #[error("the topic cannot be created: {0}")]
    Topic(TopicError),
    #[error("the store was reopened before the batch was durable; the device sends it again")]
    Reopened,
    #[error("dead letter not stored: {0}")]
    DeadLetterRefused(AppendError),
    #[error("dead letter not built: {0}")]
    DeadLetterBuild(BuildError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("a frame not finished in {0:?}")]
    FrameTimeout(Duration),
    #[error("nothing for {0:?}")]
    Idle(Duration),
    #[error("{0} bad frames in a row: not an uplink peer")]
    NotUplink(usize),
    #[error("frames for {first:?} and {other:?} on one connection")]
    MixedDevices { first: String, other: String },
    #[error("the ack does not encode: {0}")]
    Encode(EncodeError),
    #[error("an ack not taken for {0:?}")]
    AckTimeout(Duration),
}
