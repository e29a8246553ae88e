//! Metadata: the one broker, and the topics asked for (creating unknown ones when allowed).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, NODE_ID, codes};
use crate::storage::{TopicConfig, TopicState};

/// The leader epoch Metadata reports: a single node never changes leader (replication will).
pub const LEADER_EPOCH: i32 = 0;

pub async fn metadata(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    // v4 added the client's say on auto-creation; before it, the broker's setting alone decides.
    let may_create = broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let topics = match request.topics {
        None => all_topics(broker),
        // v0 has no null: an empty list means every topic.
        Some(asked) if asked.is_empty() && version == 0 => all_topics(broker),
        Some(asked) => {
            let mut topics = Vec::with_capacity(asked.len());
            for topic in asked {
                topics.push(match topic.name {
                    Some(name) => named_topic(broker, name, may_create).await,
                    None => topic_by_id(broker, topic.topic_id),
                });
            }
            topics
        }
    };
    let host = StrBytes::from_string(broker.advertised_host.clone());
    let broker_entry = MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(host)
        .with_port(broker.advertised_port.into());
    MetadataResponse::default()
        .with_brokers(vec![broker_entry])
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(NODE_ID))
        .with_topics(topics)
}

fn all_topics(broker: &Broker) -> Vec<MetadataResponseTopic> {
    broker.store.topics().iter().map(|topic| describe(topic)).collect()
}

async fn named_topic(broker: &Broker, name: TopicName, may_create: bool) -> MetadataResponseTopic {
    match ensure_topic(broker, name.as_str(), may_create).await {
        Ok(topic) => describe(&topic),
        Err(code) => MetadataResponseTopic::default().with_name(Some(name)).with_error_code(code),
    }
}

fn topic_by_id(broker: &Broker, id: uuid::Uuid) -> MetadataResponseTopic {
    match broker.store.topic_by_id(id) {
        Some(topic) => describe(&topic),
        None => {
            MetadataResponseTopic::default().with_topic_id(id).with_error_code(ResponseError::UnknownTopicId.code())
        }
    }
}

/// The topic called `name`, created with the broker's defaults if it is unknown and `may_create`.
/// Errors are Kafka codes.
pub async fn ensure_topic(broker: &Broker, name: &str, may_create: bool) -> Result<Arc<TopicState>, i16> {
    if let Some(topic) = broker.store.topic(name) {
        return Ok(topic);
    }
    if !may_create {
        return Err(ResponseError::UnknownTopicOrPartition.code());
    }
    let partitions = broker.config.default_partitions;
    let topic = broker
        .store
        .topic_or_create(name, partitions, TopicConfig::default())
        .await
        .map_err(|e| codes::for_topic(&e))?;
    tracing::info!(topic = name, partitions, "topic auto-created");
    Ok(topic)
}

fn describe(topic: &TopicState) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            MetadataResponsePartition::default()
                .with_partition_index(partition.index as i32)
                .with_leader_id(BrokerId(NODE_ID))
                .with_leader_epoch(LEADER_EPOCH)
                .with_replica_nodes(vec![BrokerId(NODE_ID)])
                .with_isr_nodes(vec![BrokerId(NODE_ID)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_partitions(partitions)
}
