//! `/v1/groups`: consumer groups as Kafka's coordinator has them — members and assignments from
//! the live membership, committed offsets and lag from the store.

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, JsonBody};
use crate::kafka::groups::{GroupSnapshot, assigned_partitions};
use crate::storage::CommittedOffset;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/groups", get(list))
        .route("/groups/{group}", get(describe).delete(delete))
        .route("/groups/{group}/reset-offsets", post(reset_offsets))
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupSummary {
    pub group: String,
    /// Kafka's group state: `Stable`, `PreparingRebalance`, `CompletingRebalance`, or `Empty`
    /// for a group known only by its committed offsets.
    pub state: String,
    pub members: usize,
    /// Records behind the high watermark, summed over the partitions it committed.
    pub lag: u64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupDetail {
    pub group: String,
    pub state: String,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub members: Vec<MemberView>,
    pub offsets: Vec<OffsetView>,
    pub lag: u64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Partitions assigned, per topic (consumer protocol only).
    pub assignment: BTreeMap<String, Vec<i32>>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OffsetView {
    pub topic: String,
    pub partition: u32,
    pub committed_offset: i64,
    pub metadata: String,
    pub commit_time_ms: i64,
    /// `null` when the topic or partition no longer exists.
    pub high_watermark: Option<u64>,
    pub lag: Option<u64>,
}

/// Where to move a group's offsets.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ResetTarget {
    Earliest,
    Latest,
    Offset(u64),
    /// The first offset whose timestamp is at or after this many ms since the epoch (the end
    /// when there is none).
    Timestamp(i64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetOffsets {
    pub to: ResetTarget,
    /// Default: every topic the group has committed offsets for.
    pub topic: Option<String>,
    /// Default: every partition of the topic(s).
    pub partitions: Option<Vec<u32>>,
}

fn offsets_of(state: &AppState, group: &str) -> Vec<OffsetView> {
    state
        .store
        .committed_offsets(group)
        .into_iter()
        .map(|((topic, partition), committed)| {
            let high_watermark =
                state.store.topic(&topic).and_then(|t| t.partition(partition)).map(|p| p.offsets().high_watermark);
            let lag = high_watermark.map(|hw| hw.saturating_sub(committed.offset.max(0) as u64));
            OffsetView {
                topic,
                partition,
                committed_offset: committed.offset,
                metadata: committed.metadata,
                commit_time_ms: committed.commit_ms,
                high_watermark,
                lag,
            }
        })
        .collect()
}

fn total_lag(offsets: &[OffsetView]) -> u64 {
    offsets.iter().filter_map(|o| o.lag).sum()
}

/// Every group: those with members and those known by committed offsets alone.
pub fn summaries(state: &AppState) -> Vec<GroupSummary> {
    let live: BTreeMap<String, GroupSnapshot> =
        state.broker.groups.snapshots().into_iter().map(|g| (g.id.clone(), g)).collect();
    let ids: BTreeSet<String> = live.keys().cloned().chain(state.store.groups_with_offsets()).collect();
    ids.into_iter()
        .map(|id| {
            let lag = total_lag(&offsets_of(state, &id));
            let (group_state, members) = live.get(&id).map_or(("Empty", 0), |g| (g.state, g.members.len()));
            GroupSummary { group: id, state: group_state.to_owned(), members, lag }
        })
        .collect()
}

async fn list(State(state): State<AppState>) -> axum::Json<Vec<GroupSummary>> {
    axum::Json(summaries(&state))
}

async fn describe(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> Result<axum::Json<GroupDetail>, ApiError> {
    let offsets = offsets_of(&state, &group);
    let live = state.broker.groups.snapshot(&group);
    if live.is_none() && offsets.is_empty() {
        return Err(unknown(&group));
    }
    let lag = total_lag(&offsets);
    let detail = match live {
        Some(live) => GroupDetail {
            group,
            state: live.state.to_owned(),
            protocol_type: live.protocol_type,
            protocol: live.protocol,
            generation: live.generation,
            members: live
                .members
                .into_iter()
                .map(|m| MemberView {
                    assignment: assigned_partitions(m.assignment).unwrap_or_default().into_iter().collect(),
                    member_id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                })
                .collect(),
            offsets,
            lag,
        },
        None => GroupDetail {
            group,
            state: "Empty".to_owned(),
            protocol_type: None,
            protocol: None,
            generation: 0,
            members: Vec::new(),
            offsets,
            lag,
        },
    };
    Ok(axum::Json(detail))
}

fn unknown(group: &str) -> ApiError {
    ApiError::not_found(format!("unknown consumer group {group:?}"))
}

fn has_members(group: &str) -> ApiError {
    ApiError::conflict(format!("group {group:?} has members: stop its consumers first (as Kafka requires)"))
}

/// Moves a group's committed offsets, as `kafka-consumer-groups --reset-offsets` does: only
/// while the group has no members.
async fn reset_offsets(
    State(state): State<AppState>,
    Path(group): Path<String>,
    JsonBody(request): JsonBody<ResetOffsets>,
) -> Result<axum::Json<GroupDetail>, ApiError> {
    if state.broker.groups.has_members(&group) {
        return Err(has_members(&group));
    }
    let topics: Vec<String> = match &request.topic {
        Some(topic) => vec![topic.clone()],
        None => {
            let committed: BTreeSet<String> =
                state.store.committed_offsets(&group).into_keys().map(|(topic, _)| topic).collect();
            if committed.is_empty() {
                return Err(ApiError::invalid_field(
                    "topic",
                    format!("group {group:?} has no committed offsets: name the topic to reset"),
                ));
            }
            committed.into_iter().collect()
        }
    };
    let now = crate::clock::now_ms();
    let mut offsets = Vec::new();
    for name in &topics {
        let topic = state
            .store
            .topic(name)
            .ok_or_else(|| ApiError::invalid_field("topic", format!("unknown topic {name:?}")))?;
        let count = topic.partitions.len() as u32;
        let wanted: Vec<u32> = request.partitions.clone().unwrap_or_else(|| (0..count).collect());
        for index in wanted {
            let partition = topic.partition(index).ok_or_else(|| {
                ApiError::invalid_field(
                    "partitions",
                    format!("topic {name:?} has {count} partitions; no partition {index}"),
                )
            })?;
            let range = partition.offsets();
            let offset = match request.to {
                ResetTarget::Earliest => range.log_start_offset,
                ResetTarget::Latest => range.high_watermark,
                ResetTarget::Offset(offset) => offset.clamp(range.log_start_offset, range.high_watermark),
                ResetTarget::Timestamp(at) => state
                    .store
                    .offset_for_timestamp(name, index, at)
                    .map_err(|e| ApiError::storage(e.to_string()))?
                    .map_or(range.high_watermark, |(offset, _)| offset),
            };
            let committed =
                CommittedOffset { offset: offset as i64, leader_epoch: -1, metadata: String::new(), commit_ms: now };
            offsets.push(((name.clone(), index), committed));
        }
    }
    // Members may have joined since the check; Kafka's coordinator has the same window.
    if state.broker.groups.has_members(&group) {
        return Err(has_members(&group));
    }
    state.store.commit_offsets(&group, offsets).await?;
    tracing::info!(%group, topics = ?topics, "consumer group offsets reset through the admin API");
    describe(State(state), Path(group)).await
}

async fn delete(State(state): State<AppState>, Path(group): Path<String>) -> Result<StatusCode, ApiError> {
    if state.broker.groups.has_members(&group) {
        return Err(has_members(&group));
    }
    if !state.store.delete_group_offsets(&group).await? {
        return Err(unknown(&group));
    }
    tracing::info!(%group, "consumer group deleted through the admin API");
    Ok(StatusCode::NO_CONTENT)
}
