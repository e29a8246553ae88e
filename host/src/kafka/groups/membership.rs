//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: requests in, [`Group`] calls, responses out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_request::JoinGroupRequest;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use tokio::sync::watch;

use super::state::{JoinRequest, Joined, Reply, Synced};
use crate::kafka::{Broker, text};
use crate::limits::GROUPS_MAX;

fn millis(value: i32) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

pub async fn join_group(
    broker: &Broker,
    request: JoinGroupRequest,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
    shutdown: &watch::Receiver<bool>,
) -> JoinGroupResponse {
    let group_id = request.group_id.to_string();
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|id| id.to_string()),
        client_id: client_id.to_owned(),
        client_host: format!("/{}", peer.ip()),
        session_timeout: millis(request.session_timeout_ms),
        // v0 has no rebalance timeout: the session timeout plays its part.
        rebalance_timeout: millis(if version >= 1 { request.rebalance_timeout_ms } else { request.session_timeout_ms }),
        protocol_type: request.protocol_type.to_string(),
        protocols: request.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        member_id_required: version >= 4,
    };
    let reply = {
        let mut groups = broker.groups.groups();
        if !groups.contains_key(&group_id) && groups.len() >= GROUPS_MAX {
            Reply::Now(Joined {
                error: ResponseError::CoordinatorNotAvailable.code(),
                generation: -1,
                member_id: join.member_id.clone(),
                ..Joined::default()
            })
        } else if group_id.is_empty() {
            Reply::Now(Joined { error: ResponseError::InvalidGroupId.code(), generation: -1, ..Joined::default() })
        } else {
            let new_id =
                || format!("{}-{}", if client_id.is_empty() { "member" } else { client_id }, uuid::Uuid::new_v4());
            groups.entry(group_id.clone()).or_default().join(join, Instant::now(), new_id)
        }
    };
    let joined = wait(reply, shutdown).await.unwrap_or_else(|| Joined {
        error: ResponseError::RebalanceInProgress.code(),
        generation: -1,
        ..Joined::default()
    });
    if joined.error == 0 {
        tracing::debug!(group = %group_id, member = %joined.member_id, generation = joined.generation, "member joined");
    }
    join_response(joined, version)
}

fn join_response(joined: Joined, version: i16) -> JoinGroupResponse {
    let members = joined
        .members
        .into_iter()
        .map(|(id, instance_id, metadata)| {
            let member = JoinGroupResponseMember::default().with_member_id(text(id)).with_metadata(metadata);
            // The instance id exists from v5 on.
            if version >= 5 { member.with_group_instance_id(instance_id.map(text)) } else { member }
        })
        .collect();
    let response = JoinGroupResponse::default()
        .with_error_code(joined.error)
        .with_generation_id(joined.generation)
        // Nullable from v7 on (null on an error, as Kafka sends it); before, an empty string
        // stands for "none".
        .with_protocol_name(if version >= 7 {
            joined.protocol_name.map(text)
        } else {
            Some(text(joined.protocol_name.unwrap_or_default()))
        })
        .with_leader(text(joined.leader))
        .with_member_id(text(joined.member_id))
        .with_members(members);
    if version >= 7 { response.with_protocol_type(joined.protocol_type.map(text)) } else { response }
}

pub async fn sync_group(
    broker: &Broker,
    request: SyncGroupRequest,
    version: i16,
    shutdown: &watch::Receiver<bool>,
) -> SyncGroupResponse {
    let group_id = request.group_id.to_string();
    let member_id = request.member_id.to_string();
    let assignments = request.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
    let reply = match broker.groups.groups().get_mut(&group_id) {
        Some(group) => group.sync(&member_id, request.generation_id, assignments, Instant::now()),
        None => Reply::Now(Synced { error: ResponseError::UnknownMemberId.code(), ..Synced::default() }),
    };
    let synced = wait(reply, shutdown)
        .await
        .unwrap_or_else(|| Synced { error: ResponseError::RebalanceInProgress.code(), ..Synced::default() });
    let response = SyncGroupResponse::default().with_error_code(synced.error).with_assignment(synced.assignment);
    // Both fields exist from v5 on.
    if version >= 5 {
        response.with_protocol_type(synced.protocol_type.map(text)).with_protocol_name(synced.protocol_name.map(text))
    } else {
        response
    }
}

pub fn heartbeat(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    let error = match broker.groups.groups().get_mut(request.group_id.as_str()) {
        Some(group) => group.heartbeat(request.member_id.as_str(), request.generation_id, Instant::now()),
        None => ResponseError::UnknownMemberId.code(),
    };
    HeartbeatResponse::default().with_error_code(error)
}

pub fn leave_group(broker: &Broker, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    // v0–v2 name one member; v3+ a batch of members (by id or instance id).
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|i| i.to_string())))
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let now = Instant::now();
    let results: Vec<(String, Option<String>, i16)> = match broker.groups.groups().get_mut(request.group_id.as_str()) {
        Some(group) => leaving
            .into_iter()
            .map(|(member_id, instance_id)| {
                let error = group.leave(&member_id, instance_id.as_deref(), now);
                (member_id, instance_id, error)
            })
            .collect(),
        None => leaving
            .into_iter()
            .map(|(id, instance_id)| (id, instance_id, ResponseError::UnknownMemberId.code()))
            .collect(),
    };
    if version >= 3 {
        let members = results
            .into_iter()
            .map(|(id, instance_id, error)| {
                MemberResponse::default()
                    .with_member_id(text(id))
                    .with_group_instance_id(instance_id.map(text))
                    .with_error_code(error)
            })
            .collect();
        LeaveGroupResponse::default().with_members(members)
    } else {
        LeaveGroupResponse::default().with_error_code(results.first().map_or(0, |(_, _, error)| *error))
    }
}

/// The answer now, or when the rebalance step completes; `None` when the broker shuts down first
/// or the member was dropped without an answer.
async fn wait<T>(reply: Reply<T>, shutdown: &watch::Receiver<bool>) -> Option<T> {
    match reply {
        Reply::Now(answer) => Some(answer),
        Reply::Later(receiver) => {
            let mut shutdown = shutdown.clone();
            tokio::select! {
                answer = receiver => answer.ok(),
                _ = shutdown.wait_for(|stop| *stop) => None,
            }
        }
    }
}
