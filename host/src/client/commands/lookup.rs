//! What several commands ask the broker: a topic's partitions, and offsets by position or time.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::StartAt;
use crate::client::{Client, ClientError, check};
use crate::limits::{CLIENT_LEADER_WAIT, CLIENT_LEADER_WAIT_ATTEMPTS};

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Whether asking for a topic's partitions may create it, as Kafka producers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// An unknown topic is an error.
    Refuse,
    /// Ask the broker to create an unknown topic (Metadata with auto-creation allowed); it does
    /// when its `auto_create_topics` is on.
    Create,
}

/// A topic's id and partition count (an error naming the topic when it does not exist).
pub async fn partitions(client: &mut Client, topic: &str, missing: Missing) -> Result<(uuid::Uuid, u32), ClientError> {
    let version = client.version::<MetadataRequest>(12)?;
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
        .with_allow_auto_topic_creation(missing == Missing::Create);
    let mut attempts = 1;
    let found = loop {
        let response = client.send(&request, version).await?;
        let found = response
            .topics
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("Metadata answered no topic".into()))?;
        if found.error_code != ResponseError::LeaderNotAvailable.code() || attempts == CLIENT_LEADER_WAIT_ATTEMPTS {
            break found;
        }
        attempts += 1;
        tokio::time::sleep(CLIENT_LEADER_WAIT).await;
    };
    if found.error_code == ResponseError::UnknownTopicOrPartition.code() {
        let why = match missing {
            Missing::Refuse => "does not exist",
            Missing::Create => "does not exist, and the broker does not create topics on demand (auto_create_topics)",
        };
        return Err(ClientError::Refused(format!(
            "topic {topic} {why}; create it with `rill topic create {topic} --partitions N`"
        )));
    }
    check(found.error_code, || format!("topic {topic}"), None)?;
    Ok((found.topic_id, found.partitions.len() as u32))
}

/// Each partition's offset at `at` (Kafka's ListOffsets; an offset is taken as given). A
/// timestamp after every record gives the partition's end offset, where a reader would wait.
pub async fn offsets_at(
    client: &mut Client,
    topic: &str,
    partitions: &[u32],
    at: StartAt,
) -> Result<Vec<(u32, i64)>, ClientError> {
    let timestamp = match at {
        StartAt::Offset(offset) => return Ok(partitions.iter().map(|&p| (p, offset)).collect()),
        StartAt::Earliest => -2,
        StartAt::Latest => -1,
        StartAt::Timestamp(ms) => ms,
    };
    let version = client.version::<ListOffsetsRequest>(6)?;
    let asked = |timestamp: i64| {
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(
                partitions
                    .iter()
                    .map(|&p| ListOffsetsPartition::default().with_partition_index(p as i32).with_timestamp(timestamp))
                    .collect(),
            ),
        ])
    };
    let response = client.send(&asked(timestamp), version).await?;
    let mut found = Vec::with_capacity(partitions.len());
    let mut past_the_end = Vec::new();
    for partition in response.topics.into_iter().flat_map(|t| t.partitions) {
        check(partition.error_code, || format!("offsets of {topic}/{}", partition.partition_index), None)?;
        if partition.offset < 0 {
            past_the_end.push(partition.partition_index as u32);
        } else {
            found.push((partition.partition_index as u32, partition.offset));
        }
    }
    if !past_the_end.is_empty() {
        let latest = Box::pin(offsets_at(client, topic, &past_the_end, StartAt::Latest)).await?;
        found.extend(latest);
    }
    found.sort_unstable();
    Ok(found)
}
