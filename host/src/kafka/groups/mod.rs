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
pub use membership::{heartbeat, join_group, leave_group, sync_group};
pub use offsets::{offset_commit, offset_fetch};
use state::Group;

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

    /// Acts on session and rebalance deadlines, and forgets groups left without members.
    pub fn tick(&self, now: Instant) {
        let mut groups = self.groups();
        for group in groups.values_mut() {
            group.tick(now);
        }
        groups.retain(|_, group| !group.is_idle());
    }
}
