//! FindCoordinator, ListGroups, DescribeGroups, DeleteGroups.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::delete_groups_response::{DeletableGroupResult, DeleteGroupsResponse};
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::{BrokerId, GroupId};

use super::state::GroupState;
use crate::kafka::{Broker, NODE_ID, text};

/// FindCoordinator's `key_type` for consumer groups (1 is transactions, 2 share groups).
const KEY_TYPE_GROUP: i8 = 0;

pub fn find_coordinator(broker: &Broker, request: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let (error, message) = match request.key_type {
        KEY_TYPE_GROUP => (0, None),
        1 => (ResponseError::InvalidRequest.code(), Some("transactions are not supported by this broker yet")),
        _ => (ResponseError::InvalidRequest.code(), Some("only consumer groups have a coordinator here")),
    };
    let (node, host, port) = if error == 0 {
        (NODE_ID, broker.advertised_host.clone(), i32::from(broker.advertised_port))
    } else {
        (-1, String::new(), -1)
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node))
                    .with_host(text(host.clone()))
                    .with_port(port)
                    .with_error_code(error)
                    .with_error_message(message.map(text))
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default()
        .with_error_code(error)
        .with_node_id(BrokerId(node))
        .with_host(text(host))
        .with_port(port);
    // The message exists from v1 on.
    if version >= 1 { response.with_error_message(message.map(text)) } else { response }
}

/// What ListGroups and DescribeGroups say about a group: live groups from the coordinator, the
/// rest (offsets only) as Empty.
fn every_group(broker: &Broker) -> BTreeMap<String, (GroupState, String)> {
    let mut all: BTreeMap<String, (GroupState, String)> =
        broker.store.groups_with_offsets().into_iter().map(|id| (id, (GroupState::Empty, String::new()))).collect();
    for (id, group) in broker.groups.groups().iter() {
        all.insert(id.clone(), (group.state, group.protocol_type.clone().unwrap_or_default()));
    }
    all
}

pub fn list_groups(broker: &Broker, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let wanted_state = |state: GroupState| {
        request.states_filter.is_empty() || request.states_filter.iter().any(|s| s.eq_ignore_ascii_case(state.name()))
    };
    // Every group here is a classic group.
    let classic_wanted =
        request.types_filter.is_empty() || request.types_filter.iter().any(|t| t.eq_ignore_ascii_case("classic"));
    let groups = every_group(broker)
        .into_iter()
        .filter(|(_, (state, _))| classic_wanted && wanted_state(*state))
        .map(|(id, (state, protocol_type))| {
            let listed =
                ListedGroup::default().with_group_id(GroupId(text(id))).with_protocol_type(text(protocol_type));
            let listed = if version >= 4 { listed.with_group_state(text(state.name())) } else { listed };
            if version >= 5 { listed.with_group_type(text("classic")) } else { listed }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub fn describe_groups(broker: &Broker, request: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let with_offsets = broker.store.groups_with_offsets();
    let live = broker.groups.groups();
    let groups = request
        .groups
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default().with_group_id(id.clone());
            match live.get(id.as_str()) {
                Some(group) => {
                    // Kafka describes the protocol and the members' metadata and assignments
                    // only for a Stable group: during a rebalance they are last generation's.
                    let stable = group.state == GroupState::Stable;
                    let protocol = group.protocol.clone().filter(|_| stable).unwrap_or_default();
                    let members = group
                        .members
                        .values()
                        .map(|m| {
                            let member = DescribedGroupMember::default()
                                .with_member_id(text(m.id.clone()))
                                .with_client_id(text(m.client_id.clone()))
                                .with_client_host(text(m.client_host.clone()));
                            let member = if stable {
                                member
                                    .with_member_metadata(m.metadata(&protocol))
                                    .with_member_assignment(m.assignment.clone())
                            } else {
                                member
                            };
                            // The instance id exists from v4 on.
                            if version >= 4 {
                                member.with_group_instance_id(m.instance_id.clone().map(text))
                            } else {
                                member
                            }
                        })
                        .collect();
                    described
                        .with_group_state(text(group.state.name()))
                        .with_protocol_type(text(group.protocol_type.clone().unwrap_or_default()))
                        .with_protocol_data(text(protocol))
                        .with_members(members)
                }
                None if with_offsets.iter().any(|g| g == id.as_str()) => described.with_group_state(text("Empty")),
                // v6 reports an unknown group as an error; before, as a group in state Dead.
                None if version >= 6 => described
                    .with_group_state(text("Dead"))
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(text(format!("group {} does not exist", id.as_str())))),
                None => described.with_group_state(text("Dead")),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub async fn delete_groups(broker: &Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in request.groups_names {
        let live = broker.groups.groups().get(id.as_str()).map(|group| group.is_idle());
        let error = match live {
            Some(false) => ResponseError::NonEmptyGroup.code(),
            _ => match broker.store.delete_group_offsets(id.as_str()).await {
                Ok(true) => 0,
                Ok(false) if live.is_some() => 0,
                Ok(false) => ResponseError::GroupIdNotFound.code(),
                Err(e) => {
                    tracing::warn!(group = %id.as_str(), error = %e, "deleting a group's offsets failed");
                    ResponseError::CoordinatorNotAvailable.code()
                }
            },
        };
        if error == 0 {
            broker.groups.groups().retain(|group, state| group != id.as_str() || !state.is_idle());
            tracing::info!(group = %id.as_str(), "consumer group deleted");
        }
        results.push(DeletableGroupResult::default().with_group_id(id).with_error_code(error));
    }
    DeleteGroupsResponse::default().with_results(results)
}
