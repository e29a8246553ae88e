//! OffsetCommit and OffsetFetch: committed offsets, durable in the store.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::Broker;
use crate::limits::OFFSET_METADATA_BYTES_MAX;
use crate::storage::{AppendError, CommittedOffset, TopicPartition};

pub async fn offset_commit(broker: &Broker, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = request.group_id.to_string();
    let group_error = if group_id.is_empty() {
        ResponseError::InvalidGroupId.code()
    } else {
        match broker.groups.groups().get(&group_id) {
            Some(group) => group.check_commit(request.member_id.as_str(), request.generation_id_or_member_epoch),
            // No live group: only a commit from outside any group (generation -1) goes.
            None if request.generation_id_or_member_epoch < 0 => 0,
            None => ResponseError::UnknownMemberId.code(),
        }
    };
    let now_ms = crate::clock::now_ms();
    // Each partition's error, in request order; 0 where it is to be committed.
    let mut errors: Vec<(TopicName, Vec<(i32, i16)>)> = Vec::with_capacity(request.topics.len());
    let mut commits: Vec<(TopicPartition, CommittedOffset)> = Vec::new();
    for topic in request.topics {
        let known = broker.store.topic(topic.name.as_str());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            let index = partition.partition_index;
            let metadata = partition.committed_metadata.map(|m| m.to_string()).unwrap_or_default();
            let error = if group_error != 0 {
                group_error
            } else if !known.as_ref().is_some_and(|t| u32::try_from(index).is_ok_and(|i| t.partition(i).is_some())) {
                ResponseError::UnknownTopicOrPartition.code()
            } else if metadata.len() > OFFSET_METADATA_BYTES_MAX {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                let committed = CommittedOffset {
                    offset: partition.committed_offset,
                    leader_epoch: partition.committed_leader_epoch,
                    metadata,
                    commit_ms: now_ms,
                };
                commits.push(((topic.name.to_string(), index as u32), committed));
                0
            };
            partitions.push((index, error));
        }
        errors.push((topic.name, partitions));
    }
    let stored =
        if commits.is_empty() { 0 } else { commit_error(broker.store.commit_offsets(&group_id, commits).await) };
    let topics = errors
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, error)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(if error == 0 { stored } else { error })
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(name).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

fn commit_error(result: Result<(), AppendError>) -> i16 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::warn!(error = %e, "offset commit failed");
            // Retriable for the client, as a Kafka coordinator answers when its log is unavailable.
            ResponseError::CoordinatorNotAvailable.code()
        }
    }
}

/// One partition's committed offset as OffsetFetch reports it: -1 when nothing is committed.
struct Fetched {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
}

/// A group's committed offsets for the topics asked (`None`: every topic it committed).
fn fetch_group(
    broker: &Broker,
    group: &str,
    asked: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Vec<(TopicName, Vec<Fetched>)> {
    let committed = broker.store.committed_offsets(group);
    let asked = asked.unwrap_or_else(|| {
        let mut all: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in committed.keys() {
            all.entry(topic.clone()).or_default().push(*partition as i32);
        }
        all.into_iter().map(|(topic, partitions)| (TopicName(StrBytes::from_string(topic)), partitions)).collect()
    });
    asked
        .into_iter()
        .map(|(name, partitions)| {
            let fetched = partitions
                .into_iter()
                .map(|partition| {
                    let key = (name.to_string(), u32::try_from(partition).unwrap_or(u32::MAX));
                    match committed.get(&key) {
                        Some(c) => Fetched {
                            partition,
                            offset: c.offset,
                            leader_epoch: c.leader_epoch,
                            metadata: c.metadata.clone(),
                        },
                        None => Fetched { partition, offset: -1, leader_epoch: -1, metadata: String::new() },
                    }
                })
                .collect();
            (name, fetched)
        })
        .collect()
}

pub fn offset_fetch(broker: &Broker, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|group| {
                let asked =
                    group.topics.map(|topics| topics.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
                let topics = fetch_group(broker, group.group_id.as_str(), asked)
                    .into_iter()
                    .map(|(name, fetched)| {
                        let partitions = fetched
                            .into_iter()
                            .map(|f| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(f.partition)
                                    .with_committed_offset(f.offset)
                                    .with_committed_leader_epoch(f.leader_epoch)
                                    .with_metadata(Some(StrBytes::from_string(f.metadata)))
                            })
                            .collect();
                        OffsetFetchResponseTopics::default().with_name(name).with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default().with_group_id(group.group_id).with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let asked = request.topics.map(|topics| topics.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
    let topics = fetch_group(broker, request.group_id.as_str(), asked)
        .into_iter()
        .map(|(name, fetched)| {
            let partitions = fetched
                .into_iter()
                .map(|f| {
                    let partition = OffsetFetchResponsePartition::default()
                        .with_partition_index(f.partition)
                        .with_committed_offset(f.offset)
                        .with_metadata(Some(StrBytes::from_string(f.metadata)));
                    // The leader epoch exists from v5 on.
                    if version >= 5 { partition.with_committed_leader_epoch(f.leader_epoch) } else { partition }
                })
                .collect();
            OffsetFetchResponseTopic::default().with_name(name).with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
