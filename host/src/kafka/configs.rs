//! DescribeConfigs and IncrementalAlterConfigs: topic configuration (retention and size settings),
//! and the broker's few settings, read-only (they live in rill's config file).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_request::{DescribeConfigsRequest, DescribeConfigsResource};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, IncrementalAlterConfigsRequest,
};
use kafka_protocol::messages::incremental_alter_configs_response::{
    AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
};

use super::{Broker, NODE_ID, codes, text};
use crate::storage::TopicConfig;

/// Kafka's `ConfigResource.Type` codes.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Kafka's `ConfigSource` codes.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's `ConfigType` codes (DescribeConfigs v3+).
fn config_type(key: &str) -> i8 {
    match key {
        "retention.ms" | "retention.bytes" | "message.timestamp.before.max.ms" | "message.timestamp.after.max.ms" => 5, // LONG
        "max.message.bytes" | "num.partitions" => 3, // INT
        "cleanup.policy" => 7,                       // LIST
        "auto.create.topics.enable" => 1,            // BOOLEAN
        _ => 2,                                      // STRING
    }
}

/// `IncrementalAlterConfigs` operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub fn describe_configs(broker: &Broker, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = request.resources.into_iter().map(|resource| describe_one(broker, resource)).collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn describe_one(broker: &Broker, resource: DescribeConfigsResource) -> DescribeConfigsResult {
    let result = DescribeConfigsResult::default()
        .with_resource_type(resource.resource_type)
        .with_resource_name(resource.resource_name.clone());
    let refuse = |error: ResponseError, message: String| {
        result.clone().with_error_code(error.code()).with_error_message(Some(text(message)))
    };
    // (key, value, source, read-only)
    let entries: Vec<(String, String, i8, bool)> = match resource.resource_type {
        RESOURCE_TOPIC => {
            let Some(topic) = broker.store.topic(resource.resource_name.as_str()) else {
                return refuse(
                    ResponseError::UnknownTopicOrPartition,
                    format!("unknown topic {:?}", resource.resource_name.as_str()),
                );
            };
            let defaults = TopicConfig::default().describe();
            topic
                .config
                .describe()
                .into_iter()
                .map(|(key, value)| {
                    let source = if defaults.contains(&(key, value.clone())) { SOURCE_DEFAULT } else { SOURCE_TOPIC };
                    (key.to_owned(), value, source, false)
                })
                .collect()
        }
        RESOURCE_BROKER
            if resource.resource_name.is_empty() || resource.resource_name.as_str() == NODE_ID.to_string() =>
        {
            let config = &broker.config;
            [
                ("auto.create.topics.enable", config.auto_create_topics.to_string()),
                ("num.partitions", config.default_partitions.to_string()),
                ("socket.request.max.bytes", config.request_bytes_max.to_string()),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value, SOURCE_STATIC_BROKER, true))
            .collect()
        }
        RESOURCE_BROKER => {
            return refuse(ResponseError::InvalidRequest, format!("this broker's id is {NODE_ID}"));
        }
        other => return refuse(ResponseError::InvalidRequest, format!("config resource type {other} is not served")),
    };
    let wanted =
        |key: &str| resource.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k.as_str() == key));
    let configs = entries
        .into_iter()
        .filter(|(key, ..)| wanted(key))
        .map(|(key, value, source, read_only)| {
            // Type and documentation exist from v3 on; older versions skip them.
            DescribeConfigsResourceResult::default()
                .with_config_type(config_type(&key))
                .with_documentation(None)
                .with_name(text(key))
                .with_value(Some(text(value)))
                .with_read_only(read_only)
                .with_config_source(source)
        })
        .collect();
    result.with_configs(configs)
}

pub async fn incremental_alter_configs(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        responses.push(match alter_one(broker, resource, request.validate_only).await {
            // Kafka's message is null on success (the crate's default is an empty string).
            Ok(()) => response.with_error_message(None),
            Err((code, message)) => response.with_error_code(code).with_error_message(Some(text(message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

async fn alter_one(broker: &Broker, resource: AlterConfigsResource, validate_only: bool) -> Result<(), (i16, String)> {
    let refuse = |error: ResponseError, message: String| Err((error.code(), message));
    match resource.resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return refuse(ResponseError::InvalidRequest, "broker settings are read from rill's config file".into());
        }
        other => return refuse(ResponseError::InvalidRequest, format!("config resource type {other} is not served")),
    }
    let name = resource.resource_name.as_str();
    let Some(topic) = broker.store.topic(name) else {
        return refuse(ResponseError::UnknownTopicOrPartition, format!("unknown topic {name:?}"));
    };
    let mut config = topic.config.clone();
    let defaults = TopicConfig::default().describe();
    for entry in &resource.configs {
        let key = entry.name.as_str();
        let value = match entry.config_operation {
            OP_SET => entry.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
            // Back to the default.
            OP_DELETE => match defaults.iter().find(|(k, _)| *k == key) {
                Some((_, value)) => value.clone(),
                None => return refuse(ResponseError::InvalidConfig, format!("unknown config key {key:?}")),
            },
            OP_APPEND | OP_SUBTRACT => {
                return refuse(
                    ResponseError::InvalidConfig,
                    format!("{key}: the only list setting, cleanup.policy, has one value here (delete); use SET"),
                );
            }
            other => return refuse(ResponseError::InvalidRequest, format!("unknown config operation {other}")),
        };
        config.set(key, &value).map_err(|e| (codes::for_topic(&e), e.to_string()))?;
    }
    if validate_only || config == topic.config {
        return Ok(());
    }
    broker.store.alter_topic_config(name, config).await.map_err(|e| (codes::for_topic(&e), e.to_string()))?;
    tracing::info!(topic = name, "topic config altered");
    Ok(())
}
