//! One consumer group's membership under Kafka's classic protocol, as a state machine driven by
//! requests and a clock (`now` is always passed in, so tests control time).
//!
//! ```text
//!  Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
//!    ▲                 ▲      ▲                                   │ leader's SyncGroup
//!    │ last member     │      └──── join, leave, expiry ──────────┤
//!    └── leaves ───────┴──────────── join, leave, expiry ─── Stable ◀┘
//! ```
//!
//! JoinGroup and SyncGroup answers may have to wait for other members: such a request gets a
//! receiver, answered when the rebalance step completes (or with an error when it is abandoned).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use crate::limits::{
    GROUP_INITIAL_REBALANCE_DELAY, GROUP_MEMBERS_MAX, GROUP_SESSION_TIMEOUT_MAX, GROUP_SESSION_TIMEOUT_MIN,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The name Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A JoinGroup as the state machine needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Empty on a member's first join.
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a first join gets `MEMBER_ID_REQUIRED` and a member id to join with (KIP-394).
    pub member_id_required: bool,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Joined {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: every member's id, instance id and metadata for its protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Synced {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// An answer now, or one that comes when the rebalance step completes.
#[derive(Debug)]
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    awaiting_join: Option<oneshot::Sender<Joined>>,
    awaiting_sync: Option<oneshot::Sender<Synced>>,
    /// The member is removed when this passes without a heartbeat (or other request).
    expires: Instant,
}

impl Member {
    /// This member's metadata for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct Group {
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with `MEMBER_ID_REQUIRED`, until they join or expire.
    pending: HashMap<String, Instant>,
    /// When the current rebalance step stops waiting for missing members.
    deadline: Option<Instant>,
    /// The first rebalance of an empty group does not complete before this.
    not_before: Option<Instant>,
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl Default for Group {
    fn default() -> Self {
        Self::new()
    }
}

impl Group {
    pub fn new() -> Self {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            deadline: None,
            not_before: None,
        }
    }

    pub fn join(
        &mut self,
        request: JoinRequest,
        now: Instant,
        new_member_id: impl FnOnce() -> String,
    ) -> Reply<Joined> {
        let refuse = |e: ResponseError, member_id: &str| {
            Reply::Now(Joined { error: code(e), generation: -1, member_id: member_id.to_owned(), ..Joined::default() })
        };
        if !(GROUP_SESSION_TIMEOUT_MIN..=GROUP_SESSION_TIMEOUT_MAX).contains(&request.session_timeout) {
            return refuse(ResponseError::InvalidSessionTimeout, &request.member_id);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() || !self.supports(&request) {
            return refuse(ResponseError::InconsistentGroupProtocol, &request.member_id);
        }
        let member_id = if request.member_id.is_empty() {
            if self.members.len() + self.pending.len() >= GROUP_MEMBERS_MAX {
                return refuse(ResponseError::GroupMaxSizeReached, "");
            }
            let id = new_member_id();
            if request.member_id_required {
                self.pending.insert(id.clone(), now + request.session_timeout);
                return refuse(ResponseError::MemberIdRequired, &id);
            }
            id
        } else if self.members.contains_key(&request.member_id) || self.pending.remove(&request.member_id).is_some() {
            request.member_id.clone()
        } else {
            return refuse(ResponseError::UnknownMemberId, &request.member_id);
        };
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        let (sender, receiver) = oneshot::channel();
        let member = Member {
            id: member_id.clone(),
            instance_id: request.instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout: request.session_timeout,
            rebalance_timeout: request.rebalance_timeout,
            protocols: request.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(sender),
            awaiting_sync: None,
            expires: now + request.session_timeout,
        };
        self.members.insert(member_id, member);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.try_complete_join(now);
        Reply::Later(receiver)
    }

    /// Whether a member asking for `request`'s protocols fits the group: same protocol type, and
    /// at least one protocol every member supports.
    fn supports(&self, request: &JoinRequest) -> bool {
        let others: Vec<&Member> = self.members.values().filter(|m| m.id != request.member_id).collect();
        if others.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(request.protocol_type.as_str())
            && request
                .protocols
                .iter()
                .any(|(name, _)| others.iter().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Reply<Synced> {
        let refuse = |e: ResponseError| Reply::Now(Synced { error: code(e), ..Synced::default() });
        let Some(member) = self.members.get_mut(member_id) else {
            return refuse(ResponseError::UnknownMemberId);
        };
        if generation != self.generation {
            return refuse(ResponseError::IllegalGeneration);
        }
        member.expires = now + member.session_timeout;
        match self.state {
            GroupState::Empty => refuse(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => refuse(ResponseError::RebalanceInProgress),
            GroupState::Stable => Reply::Now(self.synced(member_id)),
            GroupState::CompletingRebalance => {
                let (sender, receiver) = oneshot::channel();
                member.awaiting_sync = Some(sender);
                if self.leader.as_deref() == Some(member_id) {
                    for (id, assignment) in assignments {
                        if let Some(member) = self.members.get_mut(&id) {
                            member.assignment = assignment;
                        }
                    }
                    self.state = GroupState::Stable;
                    self.deadline = None;
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let answer = self.synced(&id);
                        if let Some(waiter) = self.members.get_mut(&id).and_then(|m| m.awaiting_sync.take()) {
                            let _ = waiter.send(answer);
                        }
                    }
                }
                Reply::Later(receiver)
            }
        }
    }

    fn synced(&self, member_id: &str) -> Synced {
        Synced {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    /// Heartbeat: the error code to answer with.
    pub fn heartbeat(&mut self, member_id: &str, generation: i32, now: Instant) -> i16 {
        let Some(member) = self.members.get_mut(member_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        if generation != self.generation {
            return code(ResponseError::IllegalGeneration);
        }
        member.expires = now + member.session_timeout;
        match self.state {
            GroupState::PreparingRebalance => code(ResponseError::RebalanceInProgress),
            _ => 0,
        }
    }

    /// LeaveGroup for one member (by id, or by instance id when the id is empty): the error code.
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now: Instant) -> i16 {
        let id = if member_id.is_empty() {
            self.members
                .values()
                .find(|m| m.instance_id.is_some() && m.instance_id.as_deref() == instance_id)
                .map(|m| m.id.clone())
        } else {
            self.members.contains_key(member_id).then(|| member_id.to_owned())
        };
        let Some(id) = id else {
            return code(ResponseError::UnknownMemberId);
        };
        self.remove_member(&id, now);
        0
    }

    /// Whether an offset commit from `member_id` in `generation` is accepted: the error code.
    /// Generation -1 with no member id is a commit from outside any group (a "simple" consumer or
    /// an admin tool): only allowed while the group has no members.
    pub fn check_commit(&self, member_id: &str, generation: i32) -> i16 {
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() { 0 } else { code(ResponseError::UnknownMemberId) };
        }
        if !self.members.contains_key(member_id) {
            return code(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return code(ResponseError::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            return code(ResponseError::RebalanceInProgress);
        }
        0
    }

    /// Acts on deadlines: expired sessions and pending ids, rebalance and sync timeouts.
    pub fn tick(&mut self, now: Instant) {
        self.pending.retain(|_, expires| *expires > now);
        let expired: Vec<String> = self
            .members
            .values()
            // A member waiting in JoinGroup is alive: it cannot heartbeat until answered.
            .filter(|m| m.awaiting_join.is_none() && m.expires <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(member = %id, "consumer group member's session expired");
            self.remove_member(&id, now);
        }
        match self.state {
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::CompletingRebalance if self.deadline.is_some_and(|d| d <= now) => {
                // The leader never sent its assignment: drop the members that did not sync either.
                let silent: Vec<String> =
                    self.members.values().filter(|m| m.awaiting_sync.is_none()).map(|m| m.id.clone()).collect();
                for id in &silent {
                    self.members.remove(id);
                }
                self.restart_rebalance(now);
            }
            _ => {}
        }
    }

    /// Whether nothing is left to keep in memory (no members, none about to join).
    pub fn is_idle(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    fn remove_member(&mut self, id: &str, now: Instant) {
        if let Some(mut member) = self.members.remove(id)
            && let Some(waiter) = member.awaiting_join.take()
        {
            let _ = waiter.send(Joined {
                error: code(ResponseError::UnknownMemberId),
                generation: -1,
                member_id: id.to_owned(),
                ..Joined::default()
            });
        }
        match self.state {
            GroupState::PreparingRebalance => self.try_complete_join(now),
            _ => self.restart_rebalance(now),
        }
    }

    /// Starts over after membership changed outside a join: or becomes empty.
    fn restart_rebalance(&mut self, now: Instant) {
        if self.members.is_empty() {
            self.become_empty();
        } else {
            self.prepare_rebalance(now);
            self.try_complete_join(now);
        }
    }

    fn become_empty(&mut self) {
        // Kafka bumps the generation when a group empties, so stale commits are refused.
        if self.state != GroupState::Empty {
            self.generation += 1;
        }
        self.state = GroupState::Empty;
        self.protocol = None;
        self.leader = None;
        self.deadline = None;
        self.not_before = None;
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        // Members waiting for an assignment of the abandoned generation must rejoin.
        for member in self.members.values_mut() {
            if let Some(waiter) = member.awaiting_sync.take() {
                let _ = waiter.send(Synced { error: code(ResponseError::RebalanceInProgress), ..Synced::default() });
            }
        }
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        self.not_before = (self.state == GroupState::Empty).then(|| now + GROUP_INITIAL_REBALANCE_DELAY.min(timeout));
        self.state = GroupState::PreparingRebalance;
        self.deadline = Some(now + timeout);
    }

    /// Completes the join step once every member has rejoined (after the initial delay), or at
    /// the rebalance timeout without the members that did not.
    fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let timed_out = self.deadline.is_some_and(|d| d <= now);
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some());
        let delayed = self.not_before.is_some_and(|t| now < t);
        // Done at the timeout, or once everyone is in and the initial delay has passed.
        if !timed_out && (!all_joined || delayed) {
            return;
        }
        if timed_out {
            self.members.retain(|_, m| m.awaiting_join.is_some());
        }
        if self.members.is_empty() {
            self.become_empty();
            return;
        }
        self.generation += 1;
        self.protocol = self.choose_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        self.not_before = None;
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        self.deadline = Some(now + timeout);
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let roster: Vec<(String, Option<String>, Bytes)> =
            self.members.values().map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol))).collect();
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
            member.expires = now + member.session_timeout;
            if let Some(waiter) = member.awaiting_join.take() {
                let _ = waiter.send(Joined {
                    error: 0,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: member.id.clone(),
                    members: if member.id == leader { roster.clone() } else { Vec::new() },
                });
            }
        }
    }

    /// Kafka's choice: among the protocols every member supports, the one most members list first
    /// among them (ties: the first such protocol in the leader's order).
    fn choose_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let common: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
            .collect();
        let mut votes: Vec<(usize, &str)> = common.iter().map(|name| (0, *name)).collect();
        for member in self.members.values() {
            if let Some((name, _)) = member.protocols.iter().find(|(n, _)| common.contains(&n.as_str()))
                && let Some(vote) = votes.iter_mut().find(|(_, candidate)| *candidate == name)
            {
                vote.0 += 1;
            }
        }
        let best = votes.iter().map(|(count, _)| *count).max()?;
        votes.iter().find(|(count, _)| *count == best).map(|(_, name)| (*name).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_secs(10);
    const REBALANCE: Duration = Duration::from_secs(30);

    fn request(member_id: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_owned(),
            instance_id: None,
            client_id: "test".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: SESSION,
            rebalance_timeout: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m")), ("roundrobin".into(), Bytes::new())],
            member_id_required: true,
        }
    }

    fn now_answer<T>(reply: Reply<T>) -> T {
        match reply {
            Reply::Now(answer) => answer,
            Reply::Later(_) => panic!("expected an answer now"),
        }
    }

    fn later<T>(reply: Reply<T>) -> oneshot::Receiver<T> {
        match reply {
            Reply::Later(receiver) => receiver,
            Reply::Now(_) => panic!("expected to wait"),
        }
    }

    /// Joins a new member through MEMBER_ID_REQUIRED; returns its id and its join receiver.
    fn join_new(group: &mut Group, name: &str, now: Instant) -> (String, oneshot::Receiver<Joined>) {
        let first = now_answer(group.join(request(""), now, || name.to_owned()));
        assert_eq!(first.error, code(ResponseError::MemberIdRequired));
        assert_eq!(first.member_id, name);
        (name.to_owned(), later(group.join(request(name), now, || unreachable!())))
    }

    #[test]
    fn a_lone_member_waits_for_the_initial_delay_then_leads_and_syncs() {
        let t0 = Instant::now();
        let mut group = Group::new();
        let (a, mut joined) = join_new(&mut group, "a", t0);
        assert!(joined.try_recv().is_err(), "the initial delay holds the first rebalance");
        group.tick(t0 + GROUP_INITIAL_REBALANCE_DELAY);
        let joined = joined.try_recv().expect("joined after the delay");
        assert_eq!((joined.error, joined.generation, joined.leader.as_str()), (0, 1, "a"));
        assert_eq!(joined.protocol_name.as_deref(), Some("range"));
        assert_eq!(joined.members.len(), 1);
        let synced = later(group.sync(&a, 1, vec![(a.clone(), Bytes::from_static(b"all"))], t0));
        assert_eq!(synced.blocking_recv_now().assignment, Bytes::from_static(b"all"));
        assert_eq!(group.state, GroupState::Stable);
        assert_eq!(group.heartbeat(&a, 1, t0), 0);
    }

    trait RecvNow<T> {
        fn blocking_recv_now(self) -> T;
    }
    impl<T> RecvNow<T> for oneshot::Receiver<T> {
        fn blocking_recv_now(mut self) -> T {
            self.try_recv().expect("answered")
        }
    }

    fn stable_with_one(t0: Instant) -> (Group, String) {
        let mut group = Group::new();
        let (a, joined) = join_new(&mut group, "a", t0);
        group.tick(t0 + GROUP_INITIAL_REBALANCE_DELAY);
        joined.blocking_recv_now();
        group.sync(&a, 1, vec![(a.clone(), Bytes::from_static(b"all"))], t0);
        (group, a)
    }

    #[test]
    fn a_second_member_triggers_a_rebalance_that_the_first_learns_of_by_heartbeat() {
        let t0 = Instant::now();
        let (mut group, a) = stable_with_one(t0);
        let (b, mut b_joined) = join_new(&mut group, "b", t0);
        assert_eq!(group.state, GroupState::PreparingRebalance);
        assert!(b_joined.try_recv().is_err(), "waits for a to rejoin");
        assert_eq!(group.heartbeat(&a, 1, t0), code(ResponseError::RebalanceInProgress));
        assert_eq!(group.check_commit(&a, 1), 0, "commits of the old generation still go while preparing");
        let a_joined = later(group.join(request(&a), t0, || unreachable!())).blocking_recv_now();
        let b_joined = b_joined.try_recv().expect("both joined");
        assert_eq!((a_joined.generation, b_joined.generation), (2, 2));
        assert_eq!(a_joined.leader, "a");
        assert_eq!((a_joined.members.len(), b_joined.members.len()), (2, 0), "only the leader gets the roster");
        let b_synced = later(group.sync(&b, 2, vec![], t0));
        assert_eq!(group.check_commit(&a, 2), code(ResponseError::RebalanceInProgress));
        group.sync(&a, 2, vec![(a.clone(), Bytes::from_static(b"p0")), (b.clone(), Bytes::from_static(b"p1"))], t0);
        assert_eq!(b_synced.blocking_recv_now().assignment, Bytes::from_static(b"p1"));
        assert_eq!(group.check_commit(&a, 1), code(ResponseError::IllegalGeneration));
    }

    #[test]
    fn a_member_that_stops_heartbeating_is_removed_and_the_rest_rebalance() {
        let t0 = Instant::now();
        let (mut group, a) = stable_with_one(t0);
        let (b, b_joined) = join_new(&mut group, "b", t0);
        later(group.join(request(&a), t0, || unreachable!()));
        b_joined.blocking_recv_now();
        group.sync(&b, 2, vec![], t0);
        group.sync(&a, 2, vec![], t0);
        // b keeps heartbeating; a goes silent.
        let t1 = t0 + SESSION - Duration::from_millis(1);
        assert_eq!(group.heartbeat(&b, 2, t1), 0);
        group.tick(t0 + SESSION);
        assert!(!group.members.contains_key(&a));
        assert_eq!(group.state, GroupState::PreparingRebalance);
        assert_eq!(group.heartbeat(&b, 2, t0 + SESSION), code(ResponseError::RebalanceInProgress));
        let joined = later(group.join(request(&b), t0 + SESSION, || unreachable!())).blocking_recv_now();
        assert_eq!((joined.generation, joined.leader.as_str()), (3, "b"));
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
        let t0 = Instant::now();
        let (mut group, a) = stable_with_one(t0);
        let (_, mut b_joined) = join_new(&mut group, "b", t0);
        // a neither rejoins nor expires (it keeps heartbeating), so only the timeout completes it.
        let mut t = t0;
        while t < t0 + REBALANCE {
            t += Duration::from_secs(1);
            group.heartbeat(&a, 1, t);
            group.tick(t);
        }
        let joined = b_joined.try_recv().expect("completed at the timeout");
        assert_eq!((joined.error, joined.leader.as_str()), (0, "b"));
        assert!(!group.members.contains_key(&a));
        assert_eq!(group.heartbeat(&a, 1, t), code(ResponseError::UnknownMemberId));
    }

    #[test]
    fn the_last_member_leaving_empties_the_group_and_allows_simple_commits() {
        let t0 = Instant::now();
        let (mut group, a) = stable_with_one(t0);
        assert_eq!(group.check_commit("", -1), code(ResponseError::UnknownMemberId));
        assert_eq!(group.leave(&a, None, t0), 0);
        assert_eq!(group.state, GroupState::Empty);
        assert_eq!(group.check_commit("", -1), 0);
        assert_eq!(group.leave(&a, None, t0), code(ResponseError::UnknownMemberId));
        assert!(group.is_idle());
    }

    #[test]
    fn joins_that_cannot_fit_the_group_are_refused() {
        let t0 = Instant::now();
        let (mut group, _) = stable_with_one(t0);
        let mut other = request("");
        other.protocols = vec![("sticky".into(), Bytes::new())];
        assert_eq!(
            now_answer(group.join(other, t0, || "x".into())).error,
            code(ResponseError::InconsistentGroupProtocol)
        );
        let mut short = request("");
        short.session_timeout = Duration::from_secs(1);
        assert_eq!(now_answer(group.join(short, t0, || "x".into())).error, code(ResponseError::InvalidSessionTimeout));
        assert_eq!(
            now_answer(group.join(request("nobody"), t0, || "x".into())).error,
            code(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            now_answer(group.sync("a", 7, vec![], t0)).error,
            code(ResponseError::IllegalGeneration),
            "a sync of another generation"
        );
    }

    #[test]
    fn the_protocol_most_members_prefer_wins() {
        let t0 = Instant::now();
        let mut group = Group::new();
        let mut prefers_rr = request("");
        prefers_rr.member_id_required = false;
        prefers_rr.protocols.reverse();
        for name in ["a", "b"] {
            let _ = group.join(prefers_rr.clone(), t0, || name.to_owned());
        }
        let mut c = request("");
        c.member_id_required = false;
        let mut joined = later(group.join(c, t0, || "c".into()));
        group.tick(t0 + GROUP_INITIAL_REBALANCE_DELAY);
        assert_eq!(joined.try_recv().expect("joined").protocol_name.as_deref(), Some("roundrobin"));
    }
}
