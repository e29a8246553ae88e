//! Topic administration over the Kafka protocol: CreateTopics, DeleteTopics.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::create_topics_response::{CreatableTopicResult, CreateTopicsResponse};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::delete_topics_response::{DeletableTopicResult, DeleteTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, codes};
use crate::storage::{TopicConfig, TopicError};

pub async fn create_topics(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.clone();
        let result = CreatableTopicResult::default().with_name(name);
        results.push(match create_one(broker, topic, request.validate_only).await {
            Ok((id, partitions)) => {
                let result = result.with_num_partitions(partitions as i32).with_replication_factor(1);
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
