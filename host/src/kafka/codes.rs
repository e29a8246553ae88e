//! Store errors as Kafka error codes: the mapping clients see, in one place.

use kafka_protocol::ResponseError;

use crate::storage::{AppendError, InvalidBatch, ReadError, StorageError, TopicError};

pub const NONE: i16 = 0;

pub fn for_append(error: &AppendError) -> i16 {
    match error {
        AppendError::UnknownTopic(_) | AppendError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
        AppendError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        AppendError::InvalidBatch(InvalidBatch::Codec { .. } | InvalidBatch::Decompress { .. }) => {
            ResponseError::CorruptMessage
        }
        AppendError::InvalidBatch(_) | AppendError::Log(_) => ResponseError::InvalidRecord,
        AppendError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        AppendError::StaleProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        // Retriable like a restart: the store is closing or reopening.
        AppendError::Storage(StorageError::Closed | StorageError::Reopened) => ResponseError::NotLeaderOrFollower,
        // A full disk, another IO error or a damaged file: Kafka's answer for an offline log
        // directory, which producers retry.
        AppendError::Storage(_) => ResponseError::KafkaStorageError,
        // Kafka's answer to a producer without write access to the topic: permanent, not retried.
        AppendError::ReadOnly { .. } => ResponseError::TopicAuthorizationFailed,
        AppendError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        // Retriable: the client refreshes metadata and tries again (after a restart).
        AppendError::ShutDown => ResponseError::NotLeaderOrFollower,
    }
    .code()
}

pub fn for_read(error: &ReadError) -> i16 {
    match error {
        ReadError::UnknownTopic(_) | ReadError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
        ReadError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        ReadError::Storage(StorageError::Closed) => ResponseError::NotLeaderOrFollower,
        ReadError::Corrupt { .. } | ReadError::Storage(_) => ResponseError::KafkaStorageError,
    }
    .code()
}

pub fn for_topic(error: &TopicError) -> i16 {
    match error {
        TopicError::InvalidName { .. } => ResponseError::InvalidTopicException,
        TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
        TopicError::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
        TopicError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        TopicError::Storage(_) => ResponseError::KafkaStorageError,
    }
    .code()
}
