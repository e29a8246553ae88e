//! `/v1/topics`: the same topics Kafka clients see, with the same rules (names, partition
//! counts that only grow, config keys and values as `IncrementalAlterConfigs` takes them).

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, JsonBody};
use crate::storage::{TopicConfig, TopicState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/topics", get(list).post(create))
        .route("/topics/{name}", get(describe).patch(alter).delete(delete))
}

/// A topic in a listing.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicSummary {
    pub name: String,
    pub id: String,
    pub partitions: u32,
    /// Records between every partition's log start and end.
    pub records: u64,
    pub size_bytes: u64,
    pub config: BTreeMap<String, String>,
}

/// One topic with its partitions.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicDetail {
    pub name: String,
    pub id: String,
    pub config: BTreeMap<String, String>,
    pub partitions: Vec<PartitionView>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionView {
    pub partition: u32,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    pub high_watermark: u64,
    pub durable_offset: u64,
    pub size_bytes: u64,
    /// Since the broker started.
    pub records_in: u64,
    pub bytes_in: u64,
    pub records_out: u64,
    pub bytes_out: u64,
}

/// A config value as JSON may carry it: Kafka's string form, or a number for numeric keys.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Text(String),
    Number(i64),
}

impl ConfigValue {
    fn into_text(self) -> String {
        match self {
            ConfigValue::Text(text) => text,
            ConfigValue::Number(number) => number.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    pub name: String,
    /// Default: the broker's `kafka.default_partitions`.
    pub partitions: Option<u32>,
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlterTopic {
    /// A larger partition count (partitions are never removed, as in Kafka).
    pub partitions: Option<u32>,
    /// Keys to set; `null` resets a key to its default.
    #[serde(default)]
    pub config: BTreeMap<String, Option<ConfigValue>>,
}

fn config_map(config: &TopicConfig) -> BTreeMap<String, String> {
    config.describe().into_iter().map(|(key, value)| (key.to_owned(), value)).collect()
}

pub fn partitions(topic: &TopicState) -> Vec<PartitionView> {
    topic
        .partitions
        .iter()
        .map(|p| {
            let offsets = p.offsets();
            let traffic = p.traffic.counts();
            PartitionView {
                partition: p.index,
                log_start_offset: offsets.log_start_offset,
                log_end_offset: offsets.high_watermark,
                high_watermark: offsets.high_watermark,
                durable_offset: offsets.durable_offset,
                size_bytes: offsets.size_bytes,
                records_in: traffic.records_in,
                bytes_in: traffic.bytes_in,
                records_out: traffic.records_out,
                bytes_out: traffic.bytes_out,
            }
        })
        .collect()
}

pub fn summary(topic: &TopicState) -> TopicSummary {
    summary_of(topic, &partitions(topic))
}

/// A topic's summary from its partitions' views, read once by the caller.
pub fn summary_of(topic: &TopicState, views: &[PartitionView]) -> TopicSummary {
    TopicSummary {
        name: topic.name.clone(),
        id: topic.id.to_string(),
        partitions: topic.partitions.len() as u32,
        records: views.iter().map(|p| p.log_end_offset - p.log_start_offset).sum(),
        size_bytes: views.iter().map(|p| p.size_bytes).sum(),
        config: config_map(&topic.config),
    }
}

fn detail(topic: &TopicState) -> TopicDetail {
    TopicDetail {
        name: topic.name.clone(),
        id: topic.id.to_string(),
        config: config_map(&topic.config),
        partitions: partitions(topic),
    }
}

async fn list(State(state): State<AppState>) -> axum::Json<Vec<TopicSummary>> {
    axum::Json(state.store.topics().iter().map(|t| summary(t)).collect())
}

async fn describe(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<TopicDetail>, ApiError> {
    let topic = state.store.topic(&name).ok_or_else(|| unknown(&name))?;
    Ok(axum::Json(detail(&topic)))
}

fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!("unknown topic {name:?}"))
}

async fn create(State(state): State<AppState>, JsonBody(request): JsonBody<CreateTopic>) -> Result<Response, ApiError> {
    let mut config = TopicConfig::default();
    for (key, value) in request.config {
        config.set(&key, &value.into_text())?;
    }
    let partitions = request.partitions.unwrap_or(state.broker.config.default_partitions);
    let topic = state.store.create_topic(&request.name, partitions, config).await?;
    Ok((StatusCode::CREATED, axum::Json(detail(&topic))).into_response())
}

/// Validates the whole change before applying any of it, as `IncrementalAlterConfigs` does.
async fn alter(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<AlterTopic>,
) -> Result<axum::Json<TopicDetail>, ApiError> {
    let topic = state.store.topic(&name).ok_or_else(|| unknown(&name))?;
    let mut config = topic.config.clone();
    let defaults = TopicConfig::default();
    for (key, value) in request.config {
        match value {
            Some(value) => config.set(&key, &value.into_text())?,
            None => {
                let default = defaults.describe().into_iter().find(|(k, _)| *k == key).map(|(_, v)| v);
                let default = default.ok_or_else(|| {
                    ApiError::invalid_field(format!("config.{key}"), format!("unknown config key {key:?}"))
                })?;
                config.set(&key, &default)?;
            }
        }
    }
    let current = topic.partitions.len() as u32;
    if let Some(wanted) = request.partitions
        && wanted < current
    {
        return Err(ApiError::invalid_field(
            "partitions",
            format!("topic {name:?} has {current} partitions; partitions can be added, never removed"),
        ));
    }
    let mut topic = topic;
    if config != topic.config {
        topic = state.store.alter_topic_config(&name, config).await?;
    }
    if let Some(wanted) = request.partitions.filter(|&wanted| wanted > current) {
        topic = state.store.create_partitions(&name, wanted).await?;
    }
    Ok(axum::Json(detail(&topic)))
}

async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.store.delete_topic(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
