//! Topic and cluster administration over the Kafka protocol: CreateTopics, DeleteTopics,
//! CreatePartitions, DeleteRecords, DescribeCluster.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use kafka_protocol::messages::create_partitions_response::{CreatePartitionsResponse, CreatePartitionsTopicResult};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::create_topics_response::{CreatableTopicResult, CreateTopicsResponse};
use kafka_protocol::messages::delete_records_request::DeleteRecordsRequest;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::delete_topics_response::{DeletableTopicResult, DeleteTopicsResponse};
use kafka_protocol::messages::describe_cluster_response::{DescribeClusterBroker, DescribeClusterResponse};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, NODE_ID, codes};
use crate::storage::{TopicConfig, TopicError};

pub async fn create_topics(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.clone();
        let result = CreatableTopicResult::default().with_name(name);
        results.push(match create_one(broker, topic, request.validate_only).await {
            Ok((id, partitions)) => {
                // Kafka's message is null on success (the crate's default is an empty string).
                let result =
                    result.with_num_partitions(partitions as i32).with_replication_factor(1).with_error_message(None);
                if version >= 7 { result.with_topic_id(id) } else { result }
            }
            Err((code, message)) => {
                let result = result.with_error_code(code);
                // error_message exists from v1 on; Rill serves v2+.
                result.with_error_message(Some(StrBytes::from_string(message)))
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn create_one(
    broker: &Broker,
    topic: CreatableTopic,
    validate_only: bool,
) -> Result<(uuid::Uuid, u32), (i16, String)> {
    let refuse = |error: ResponseError, message: String| Err((error.code(), message));
    if !topic.assignments.is_empty() {
        return refuse(ResponseError::InvalidReplicaAssignment, "a single node assigns its own replicas".into());
    }
    if topic.replication_factor != -1 && topic.replication_factor != 1 {
        return refuse(
            ResponseError::InvalidReplicationFactor,
            format!("replication factor {} on a single node (use 1 or -1)", topic.replication_factor),
        );
    }
    let partitions = match topic.num_partitions {
        -1 => broker.config.default_partitions,
        n => u32::try_from(n).unwrap_or(0),
    };
    let mut config = TopicConfig::default();
    for entry in &topic.configs {
        let value = entry.value.as_ref().map(|v| v.as_str()).unwrap_or_default();
        config.set(entry.name.as_str(), value).map_err(|e| (codes::for_topic(&e), e.to_string()))?;
    }
    let topic_error = |e: TopicError| (codes::for_topic(&e), e.to_string());
    if validate_only {
        crate::storage::topic::validate_topic_name(topic.name.as_str()).map_err(topic_error)?;
        crate::storage::topic::validate_partition_count(partitions).map_err(topic_error)?;
        if broker.store.topic(topic.name.as_str()).is_some() {
            return Err(topic_error(TopicError::AlreadyExists(topic.name.to_string())));
        }
        return Ok((uuid::Uuid::nil(), partitions));
    }
    let created = broker.store.create_topic(topic.name.as_str(), partitions, config).await.map_err(topic_error)?;
    tracing::info!(topic = %created.name, partitions, "topic created");
    Ok((created.id, partitions))
}

pub async fn delete_topics(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    // v6 names topics in `topics` (by name or id); earlier versions in `topic_names`.
    let asked: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        request.topics.into_iter().map(|t| (t.name, t.topic_id)).collect()
    } else {
        request.topic_names.into_iter().map(|name| (Some(name), uuid::Uuid::nil())).collect()
    };
    let mut results = Vec::with_capacity(asked.len());
    for (name, id) in asked {
        let topic = match &name {
            Some(name) => broker.store.topic(name.as_str()),
            None => broker.store.topic_by_id(id),
        };
        let result = DeletableTopicResult::default().with_name(name.clone()).with_topic_id(id);
        let result = match topic {
            None => {
                let error =
                    if name.is_some() { ResponseError::UnknownTopicOrPartition } else { ResponseError::UnknownTopicId };
                result.with_error_code(error.code())
            }
            Some(topic) => match broker.store.delete_topic(&topic.name).await {
                Ok(()) => {
                    tracing::info!(topic = %topic.name, "topic deleted");
                    let result = result.with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))));
                    if version >= 6 { result.with_topic_id(topic.id) } else { result }
                }
                Err(e) => {
                    let result = result.with_error_code(codes::for_topic(&e));
                    if version >= 5 {
                        result.with_error_message(Some(StrBytes::from_string(e.to_string())))
                    } else {
                        result
                    }
                }
            },
        };
        results.push(result);
    }
    DeleteTopicsResponse::default().with_responses(results)
}

pub async fn create_partitions(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        results.push(
            match grow(
                broker,
                &topic.name,
                topic.count,
                topic.assignments.is_some_and(|a| !a.is_empty()),
                request.validate_only,
            )
            .await
            {
                Ok(()) => result,
                Err((code, message)) => {
                    result.with_error_code(code).with_error_message(Some(StrBytes::from_string(message)))
                }
            },
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}

async fn grow(
    broker: &Broker,
    name: &TopicName,
    count: i32,
    assigned: bool,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    if assigned {
        return Err((ResponseError::InvalidReplicaAssignment.code(), "a single node assigns its own replicas".into()));
    }
    let topic_error = |e: TopicError| (codes::for_topic(&e), e.to_string());
    let topic = broker.store.topic(name.as_str()).ok_or_else(|| topic_error(TopicError::Unknown(name.to_string())))?;
    let current = topic.partitions.len();
    let total = u32::try_from(count).unwrap_or(0);
    if total as usize <= current {
        return Err((
            ResponseError::InvalidPartitions.code(),
            format!(
                "topic {} has {current} partitions; partitions can only be added (asked for {count})",
                name.as_str()
            ),
        ));
    }
    crate::storage::topic::validate_partition_count(total).map_err(topic_error)?;
    if validate_only {
        return Ok(());
    }
    broker.store.create_partitions(name.as_str(), total).await.map_err(topic_error)?;
    tracing::info!(topic = %name.as_str(), partitions = total, "partitions added");
    Ok(())
}

/// DeleteRecords: advances each partition's log start offset (-1: to the high watermark).
pub async fn delete_records(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            let result = DeleteRecordsPartitionResult::default().with_partition_index(partition.partition_index);
            partitions.push(
                match delete_below(broker, topic.name.as_str(), partition.partition_index, partition.offset).await {
                    Ok(low_watermark) => result.with_low_watermark(low_watermark as i64),
                    Err(code) => result.with_low_watermark(-1).with_error_code(code),
                },
            );
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(topic.name).with_partitions(partitions));
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

async fn delete_below(broker: &Broker, topic: &str, partition: i32, offset: i64) -> Result<u64, i16> {
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    let index = u32::try_from(partition).map_err(|_| unknown)?;
    let state = broker.store.topic(topic).and_then(|t| t.partition(index)).ok_or(unknown)?;
    let high_watermark = state.offsets().high_watermark;
    let before = match offset {
        -1 => high_watermark,
        offset => match u64::try_from(offset) {
            Ok(offset) if offset <= high_watermark => offset,
            _ => return Err(ResponseError::OffsetOutOfRange.code()),
        },
    };
    broker.store.delete_records(topic, index, before).await.map_err(|e| codes::for_append(&e))
}

pub fn describe_cluster(broker: &Broker) -> DescribeClusterResponse {
    let node = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(NODE_ID))
        .with_host(StrBytes::from_string(broker.advertised_host.clone()))
        .with_port(broker.advertised_port.into());
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(NODE_ID))
        .with_brokers(vec![node])
}
