//! The consumer group coordinator (Kafka's classic protocol): this broker coordinates every group.
//!
//! - Membership ([`state`]): JoinGroup, SyncGroup, Heartbeat, LeaveGroup, in memory. After a
//!   restart members rejoin (their heartbeats get `UNKNOWN_MEMBER_ID`), as after a Kafka
//!   coordinator failover.
//! - Committed offsets: durable in redb through the store's group commit ([`offsets`]).
//! - Administration: FindCoordinator, ListGroups, DescribeGroups, DeleteGroups ([`admin`]).

mod admin;
mod membership;
mod offsets;
pub mod state;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

pub use admin::{delete_groups, describe_groups, find_coordinator, list_groups};
use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
pub use membership::{heartbeat, join_group, leave_group, sync_group};
pub use offsets::{offset_commit, offset_fetch};
use state::Group;

/// A group's membership at one moment.
#[derive(Debug, Clone)]
pub struct GroupSnapshot {
    pub id: String,
    pub state: &'static str,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberSnapshot>,
}

#[derive(Debug, Clone)]
pub struct MemberSnapshot {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The consumer protocol's assignment bytes (see [`assigned_partitions`]).
    pub assignment: Bytes,
}

impl GroupSnapshot {
    fn of(id: &str, group: &Group) -> Self {
        Self {
            id: id.to_owned(),
            state: group.state.name(),
            generation: group.generation,
            protocol_type: group.protocol_type.clone(),
            protocol: group.protocol.clone(),
            leader: group.leader.clone(),
            members: group
                .members
                .values()
                .map(|m| MemberSnapshot {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}

/// A consumer-protocol assignment (version, then topics with partitions), as (topic,
/// partitions); `None` when the bytes are not one (another protocol type, or empty before sync).
pub fn assigned_partitions(mut bytes: Bytes) -> Option<Vec<(String, Vec<i32>)>> {
    if bytes.remaining() < 2 {
        return None;
    }
    let version = bytes.get_i16();
    let assignment = ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, 3)).ok()?;
    Some(assignment.assigned_partitions.into_iter().map(|t| (t.topic.to_string(), t.partitions)).collect())
}

/// Every group with members (or about to have some). Groups known only by committed offsets live
/// in the store.
#[derive(Debug, Default)]
pub struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
}

impl Coordinator {
    fn groups(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        // Group methods leave a consistent state at every return; a panic mid-call is a bug, and
        // the groups are still worth serving.
        self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every group with members, as the control plane shows them.
    pub fn snapshots(&self) -> Vec<GroupSnapshot> {
        self.groups().iter().map(|(id, group)| GroupSnapshot::of(id, group)).collect()
    }

    /// One group with members, if it has any.
    pub fn snapshot(&self, id: &str) -> Option<GroupSnapshot> {
        self.groups().get(id).map(|group| GroupSnapshot::of(id, group))
    }

    /// Whether the group has members (or is rebalancing): then only its members may commit.
    pub fn has_members(&self, id: &str) -> bool {
        self.groups().get(id).is_some_and(|group| !group.is_idle())
    }

    /// Acts on session and rebalance deadlines, and forgets groups left without members.
    pub fn tick(&self, now: Instant) {
        let mut groups = self.groups();
        for group in groups.values_mut() {
            group.tick(now);
        }
        groups.retain(|_, group| !group.is_idle());
    }
}
