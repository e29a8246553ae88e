//! The leader's side of one replication connection: the edge, which owns the log.
//!
//! One [`Leader`] lives as long as one connection. It says `Hello`, decides from the follower's
//! `Welcome` where each partition's copy must be cut ([`truncation_point`]), then streams whole
//! batches from there — only below the partition's durable end, so the copy never holds what a
//! crash of the edge could take back — within a window of unacknowledged bytes and an optional
//! byte rate. Lost or reordered frames are repaired by going back to the follower's stated end.
//!
//! Sans-IO: the host feeds frames ([`Leader::step`]), time ([`Leader::tick`]) and log changes
//! ([`Leader::update_log`]), and moves what [`Leader::ready`] returns.

use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::divergence::{Logs, truncation_point};
use super::protocol::{
    self, GapReason, Incarnation, PROTOCOL_VERSION, PartitionHello, PartitionId, SlotWelcome, ToFollower, ToLeader,
};
use crate::batch;
use crate::log::EpochHistory;

/// How a leader connection behaves. Every bound is the host's to choose (see its `limits.rs`).
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub edge_id: String,
    pub token: String,
    /// Bytes sent and not yet durably acknowledged, over all partitions of the connection.
    pub window_bytes: u64,
    /// Batch bytes read into one frame (a frame always holds at least one whole batch).
    pub frame_bytes: usize,
    /// Bytes of batches per second; `None` is unlimited. Bursts up to one second's worth (or one
    /// frame, if larger).
    pub rate_limit: Option<u64>,
    /// Send a `Ping` when nothing else went out for this long.
    pub heartbeat_ms: u64,
    /// Close the connection when nothing came back for this long.
    pub link_timeout_ms: u64,
    /// Data outstanding and no acknowledgement for this long: send again from the follower's end
    /// (and say `Hello` again while the handshake is unanswered).
    pub retransmit_ms: u64,
}

/// A mirrored partition of the leader's log, as the host knows it.
#[derive(Debug, Clone)]
pub struct PartitionLog {
    pub id: PartitionId,
    pub incarnation: Incarnation,
    pub epochs: EpochHistory,
    pub log_start: u64,
    /// Everything below is durable on the leader: the most that may be shipped.
    pub durable_end: u64,
}

/// Where the leader reads batches from (the host's store, a simulated log).
pub trait LogSource {
    /// Whole stored batches from the one containing `offset`, concatenated, up to `max_bytes`
    /// but at least one batch; empty at the log end.
    fn read(&mut self, slot: u32, offset: u64, max_bytes: usize) -> Result<Vec<u8>, ReadFailure>;
}

/// Why a read returned nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFailure {
    /// `offset` is below the log start (deleted meanwhile).
    OutOfRange { log_start: u64 },
    /// The storage failed; the connection closes and the host retries later.
    Failed(String),
    /// What is there cannot be shipped, and trying again would not change that (a filter that
    /// refuses it): this partition stops, the others go on.
    Unshippable(String),
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The follower refused the whole connection.
    Refused(String),
    /// The follower broke the protocol.
    Protocol(String),
    /// Nothing came back for [`LeaderConfig::link_timeout_ms`].
    LinkTimeout,
    /// Reading the log failed.
    Storage(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(reason) => write!(f, "refused by the aggregation node: {reason}"),
            Self::Protocol(reason) => write!(f, "protocol error: {reason}"),
            Self::LinkTimeout => f.write_str("link timed out: nothing received from the aggregation node"),
            Self::Storage(reason) => write!(f, "reading the log failed: {reason}"),
        }
    }
}

/// Something the host should log or count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderEvent {
    /// The follower's copy diverged and is cut from `to` (it ended at `from`).
    Truncating { slot: u32, from: u64, to: u64 },
    /// The follower skips `from..to`; with [`GapReason::Deleted`] those records are lost upstream.
    Skipped { slot: u32, from: u64, to: u64, reason: GapReason },
    /// The partition is no longer mirrored on this connection.
    SlotStopped { slot: u32, reason: String },
}

/// What the host does next: send these frames, in order, and note these events.
#[derive(Debug, Default)]
pub struct LeaderReady {
    pub send: Vec<ToFollower>,
    pub events: Vec<LeaderEvent>,
    /// Partitions whose durably acknowledged offset moved, with the new value: the host keeps it
    /// so retention does not delete what the follower lacks.
    pub acked: Vec<(u32, u64)>,
}

/// A partition's mirroring as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotPhase {
    /// No `Welcome` yet.
    Waiting,
    /// Batches flow; `started` once the follower confirmed the `Start`.
    Streaming {
        started: bool,
    },
    Stopped(String),
}

/// A partition's progress, for status pages and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStatus {
    pub phase: SlotPhase,
    pub log_start: u64,
    pub durable_end: u64,
    /// Below this the follower holds the copy durably.
    pub acked: u64,
    /// The next offset to send.
    pub sent: u64,
}

#[derive(Debug)]
struct Slot {
    log: PartitionLog,
    phase: SlotPhase,
    /// The `Start` to send again if the follower did not take it: (follower_end, truncate_to).
    start: (u64, u64),
    start_sent_ms: u64,
    acked: u64,
    /// The furthest log end the follower reported (received, maybe not yet durable).
    follower_end: u64,
    sent: u64,
    /// Sent and unacknowledged: (end offset, bytes), oldest first.
    in_flight: VecDeque<(u64, u64)>,
    last_progress_ms: u64,
    acked_moved: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshaking,
    Streaming,
}

/// See the [module docs](self).
#[derive(Debug)]
pub struct Leader {
    config: LeaderConfig,
    phase: Phase,
    closed: Option<CloseReason>,
    slots: Vec<Slot>,
    outbox: Vec<ToFollower>,
    events: Vec<LeaderEvent>,
    now_ms: u64,
    hello_sent_ms: u64,
    last_sent_ms: u64,
    last_received_ms: u64,
    in_flight_bytes: u64,
    /// Token bucket for the rate limit, in bytes (may go negative by one frame).
    tokens: i64,
    tokens_at_ms: u64,
    /// Round-robin start, so no partition starves the others.
    cursor: usize,
    nonce: u64,
}

impl Leader {
    /// A new connection: queues the `Hello`.
    pub fn new(config: LeaderConfig, partitions: Vec<PartitionLog>, now_ms: u64) -> Self {
        let slots = partitions
            .into_iter()
            .map(|log| Slot {
                phase: SlotPhase::Waiting,
                start: (0, 0),
                start_sent_ms: now_ms,
                acked: 0,
                follower_end: 0,
                sent: 0,
                in_flight: VecDeque::new(),
                last_progress_ms: now_ms,
                acked_moved: false,
                log,
            })
            .collect();
        let tokens = config.rate_limit.map_or(0, |rate| burst(rate, config.frame_bytes));
        let mut leader = Self {
            config,
            phase: Phase::Handshaking,
            closed: None,
            slots,
            outbox: Vec::new(),
            events: Vec::new(),
            now_ms,
            hello_sent_ms: now_ms,
            last_sent_ms: now_ms,
            last_received_ms: now_ms,
            in_flight_bytes: 0,
            tokens,
            tokens_at_ms: now_ms,
            cursor: 0,
            nonce: 0,
        };
        leader.send_hello();
        leader
    }

    fn send_hello(&mut self) {
        let partitions = self
            .slots
            .iter()
            .map(|slot| PartitionHello { id: slot.log.id.clone(), incarnation: slot.log.incarnation })
            .collect();
        self.outbox.push(ToFollower::Hello {
            version: PROTOCOL_VERSION,
            edge_id: self.config.edge_id.clone(),
            token: self.config.token.clone(),
            partitions,
        });
        self.hello_sent_ms = self.now_ms;
    }

    /// Why the connection ended; `None` while it lives. A closed leader sends nothing more: the
    /// host drops the connection and makes a new `Leader` for the next one.
    pub fn closed(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// The partitions, in `Hello` order.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionId> {
        self.slots.iter().map(|slot| &slot.log.id)
    }

    pub fn slot_status(&self, slot: u32) -> Option<SlotStatus> {
        let s = self.slots.get(slot as usize)?;
        Some(SlotStatus {
            phase: s.phase.clone(),
            log_start: s.log.log_start,
            durable_end: s.log.durable_end,
            acked: s.acked,
            sent: s.sent,
        })
    }

    /// The partition's log changed: new log start (retention) or durable end (a commit synced).
    pub fn update_log(&mut self, slot: u32, log_start: u64, durable_end: u64) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.log.log_start = s.log.log_start.max(log_start);
            s.log.durable_end = s.log.durable_end.max(durable_end);
        }
    }

    /// A frame from the follower.
    pub fn step(&mut self, message: ToLeader) {
        if self.closed.is_some() {
            return;
        }
        self.last_received_ms = self.now_ms;
        match message {
            ToLeader::Welcome { partitions } => self.on_welcome(partitions),
            ToLeader::Refused { reason } => self.closed = Some(CloseReason::Refused(reason)),
            ToLeader::Ack { slot, started, log_end, durable_end } => self.on_ack(slot, started, log_end, durable_end),
            ToLeader::SlotStopped { slot, reason } => self.stop_slot(slot as usize, reason),
            ToLeader::Pong { .. } => {}
        }
    }

    fn on_welcome(&mut self, partitions: Vec<SlotWelcome>) {
        if self.phase != Phase::Handshaking {
            return; // a duplicate: the first one decided
        }
        if partitions.len() != self.slots.len() {
            self.closed = Some(CloseReason::Protocol(alloc::format!(
                "Welcome names {} partitions, Hello named {}",
                partitions.len(),
                self.slots.len()
            )));
            return;
        }
        self.phase = Phase::Streaming;
        for (index, welcome) in partitions.into_iter().enumerate() {
            let slot = index as u32;
            let s = &mut self.slots[index];
            match welcome {
                SlotWelcome::Stopped { reason } => {
                    s.phase = SlotPhase::Stopped(reason.clone());
                    self.events.push(LeaderEvent::SlotStopped { slot, reason });
                }
                SlotWelcome::Follows { log_start, log_end, epochs, epochs_truncated } => {
                    let logs = Logs {
                        leader_epochs: &s.log.epochs,
                        leader_start: s.log.log_start,
                        leader_end: s.log.durable_end,
                        follower_epochs: &epochs,
                        follower_epochs_truncated: epochs_truncated,
                        follower_start: log_start,
                        follower_end: log_end,
                    };
                    match truncation_point(logs) {
                        Ok(truncate_to) => {
                            if truncate_to < log_end {
                                self.events.push(LeaderEvent::Truncating { slot, from: log_end, to: truncate_to });
                            }
                            s.start = (log_end, truncate_to);
                            s.start_sent_ms = self.now_ms;
                            s.acked = truncate_to;
                            s.follower_end = truncate_to;
                            s.sent = truncate_to;
                            s.last_progress_ms = self.now_ms;
                            s.acked_moved = true;
                            s.phase = SlotPhase::Streaming { started: false };
                            self.outbox.push(ToFollower::Start { slot, follower_end: log_end, truncate_to });
                        }
                        Err(e) => {
                            let reason = e.to_string();
                            s.phase = SlotPhase::Stopped(reason.clone());
                            self.events.push(LeaderEvent::SlotStopped { slot, reason });
                        }
                    }
                }
            }
        }
    }

    fn on_ack(&mut self, slot: u32, started: bool, log_end: u64, durable_end: u64) {
        let now = self.now_ms;
        let retransmit_ms = self.config.retransmit_ms;
        let Some(s) = self.slots.get_mut(slot as usize) else {
            self.closed = Some(CloseReason::Protocol(alloc::format!("Ack for unknown partition slot {slot}")));
            return;
        };
        let SlotPhase::Streaming { started: confirmed } = s.phase else { return };
        if !started {
            // The follower has not taken the Start (lost, or still on its way): send it again,
            // at most once per retransmit interval, and everything after it.
            if !confirmed && now.saturating_sub(s.start_sent_ms) >= retransmit_ms {
                let (follower_end, truncate_to) = s.start;
                self.outbox.push(ToFollower::Start { slot, follower_end, truncate_to });
                s.start_sent_ms = now;
                s.sent = truncate_to;
                self.in_flight_bytes -= s.in_flight.drain(..).map(|(_, bytes)| bytes).sum::<u64>();
            }
            return;
        }
        s.phase = SlotPhase::Streaming { started: true };
        s.follower_end = s.follower_end.max(log_end);
        if durable_end > s.acked {
            s.acked = durable_end;
            s.acked_moved = true;
            s.last_progress_ms = now;
            while s.in_flight.front().is_some_and(|&(end, _)| end <= durable_end) {
                if let Some((_, bytes)) = s.in_flight.pop_front() {
                    self.in_flight_bytes -= bytes;
                }
            }
        }
    }

    /// Time passes: heartbeats, retransmissions, the link timeout, the rate limit's refill.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        if self.closed.is_some() {
            return;
        }
        let now = self.now_ms;
        if now.saturating_sub(self.last_received_ms) >= self.config.link_timeout_ms {
            self.closed = Some(CloseReason::LinkTimeout);
            return;
        }
        if self.phase == Phase::Handshaking && now.saturating_sub(self.hello_sent_ms) >= self.config.retransmit_ms {
            self.send_hello();
        }
        for s in &mut self.slots {
            let outstanding = s.sent > s.acked;
            if matches!(s.phase, SlotPhase::Streaming { .. })
                && outstanding
                && now.saturating_sub(s.last_progress_ms) >= self.config.retransmit_ms
            {
                // Frames were lost (or the follower is slow): continue from what it has.
                s.sent = s.follower_end.max(s.acked).min(s.sent);
                self.in_flight_bytes -= s.in_flight.drain(..).map(|(_, bytes)| bytes).sum::<u64>();
                s.last_progress_ms = now;
            }
        }
        if self.outbox.is_empty() && now.saturating_sub(self.last_sent_ms) >= self.config.heartbeat_ms {
            self.nonce += 1;
            self.outbox.push(ToFollower::Ping { nonce: self.nonce });
        }
    }

    /// When the host should call [`tick`](Self::tick) next, at the latest.
    pub fn next_wakeup(&self) -> u64 {
        let mut at = self.last_sent_ms + self.config.heartbeat_ms;
        at = at.min(self.last_received_ms + self.config.link_timeout_ms);
        if self.phase == Phase::Handshaking {
            at = at.min(self.hello_sent_ms + self.config.retransmit_ms);
        }
        for s in &self.slots {
            if s.sent > s.acked {
                at = at.min(s.last_progress_ms + self.config.retransmit_ms);
            }
        }
        if let (Some(rate), true) = (self.config.rate_limit, self.tokens <= 0) {
            let wait_ms = ((-self.tokens) as u64 * 1000).div_ceil(rate.max(1)).max(1);
            at = at.min(self.tokens_at_ms + wait_ms);
        }
        at.max(self.now_ms)
    }

    /// Whether [`ready`](Self::ready) has something, given the log's state (cheap).
    pub fn has_ready(&self) -> bool {
        !self.outbox.is_empty()
            || !self.events.is_empty()
            || self.slots.iter().any(|s| s.acked_moved)
            || self.can_send_data()
    }

    fn can_send_data(&self) -> bool {
        self.closed.is_none()
            && self.in_flight_bytes < self.config.window_bytes
            && (self.config.rate_limit.is_none() || self.tokens > 0)
            && self.slots.iter().any(|s| matches!(s.phase, SlotPhase::Streaming { .. }) && s.sent < s.log.durable_end)
    }

    /// What to send and note now, reading batches from `log` as the window and the rate allow.
    pub fn ready(&mut self, log: &mut impl LogSource) -> LeaderReady {
        self.refill_tokens();
        // About one frame's worth of batches per ready, so the host's write of it is short even
        // on a slow link (the window is what bounds the bytes in flight).
        let budget_until = self.in_flight_bytes.saturating_add(self.config.frame_bytes as u64);
        while self.closed.is_none() && self.can_send_data() && self.in_flight_bytes < budget_until {
            let count = self.slots.len();
            let mut progressed = false;
            for step in 0..count {
                let index = (self.cursor + step) % count;
                if !self.can_send_data() || self.in_flight_bytes >= budget_until {
                    break;
                }
                if self.fill(index, log) {
                    progressed = true;
                }
            }
            self.cursor = (self.cursor + 1) % count.max(1);
            if !progressed {
                break;
            }
        }
        let acked = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, s)| core::mem::take(&mut s.acked_moved).then_some((index as u32, s.acked)))
            .collect();
        LeaderReady { send: core::mem::take(&mut self.outbox), events: core::mem::take(&mut self.events), acked }
    }

    /// The frames of the last [`ready`](Self::ready) went out.
    pub fn advance(&mut self) {
        self.last_sent_ms = self.now_ms;
    }

    fn refill_tokens(&mut self) {
        if let Some(rate) = self.config.rate_limit {
            let elapsed = self.now_ms.saturating_sub(self.tokens_at_ms);
            let cap = burst(rate, self.config.frame_bytes);
            let added = (elapsed.saturating_mul(rate) / 1000) as i64;
            if added > 0 {
                self.tokens = self.tokens.saturating_add(added).min(cap);
                self.tokens_at_ms = self.now_ms;
            }
        }
    }

    /// Reads one frame's worth for slot `index`; true when something was queued.
    fn fill(&mut self, index: usize, log: &mut impl LogSource) -> bool {
        let slot = index as u32;
        let s = &mut self.slots[index];
        if !matches!(s.phase, SlotPhase::Streaming { .. }) || s.sent >= s.log.durable_end {
            return false;
        }
        let window_left = self.config.window_bytes.saturating_sub(self.in_flight_bytes);
        let max_bytes = (self.config.frame_bytes as u64).min(window_left) as usize;
        let from = s.sent.max(s.log.log_start);
        let mut bytes = match log.read(slot, from, max_bytes) {
            Ok(bytes) => bytes,
            Err(ReadFailure::OutOfRange { log_start }) => {
                // Deleted meanwhile: the next round reads from the new start.
                let moved = log_start > s.log.log_start;
                s.log.log_start = s.log.log_start.max(log_start);
                return moved;
            }
            Err(ReadFailure::Failed(reason)) => {
                self.closed = Some(CloseReason::Storage(reason));
                return false;
            }
            Err(ReadFailure::Unshippable(reason)) => {
                self.stop_slot(index, reason);
                return false;
            }
        };
        if bytes.is_empty() && s.sent < s.log.log_start {
            // Everything from the copy's end to the log start was deleted, and nothing follows
            // yet to anchor a skip on: skip to the log start itself.
            let (from, to) = (s.sent, s.log.log_start);
            self.outbox.push(ToFollower::Skip { slot, from, to, reason: GapReason::Deleted });
            self.events.push(LeaderEvent::Skipped { slot, from, to, reason: GapReason::Deleted });
            s.in_flight.push_back((to, 0));
            if s.sent == s.acked {
                s.last_progress_ms = self.now_ms;
            }
            s.sent = to;
            return true;
        }
        let mut next = s.sent;
        let mut keep = 0..0;
        let mut position = 0;
        let mut stop = None;
        // The edge's own stored batches: their records were validated when they were appended.
        for item in batch::sealed_batches(&bytes) {
            let parsed = match item {
                Ok(parsed) => parsed,
                Err(e) => {
                    stop = Some(alloc::format!("stored batch at or after offset {next} is invalid: {e}"));
                    break;
                }
            };
            let len = parsed.as_bytes().len();
            let (base, last) = (parsed.base_offset() as u64, parsed.last_offset() as u64);
            let at = position;
            position += len;
            if last < next {
                continue; // the follower has it
            }
            if base < next {
                stop = Some(alloc::format!("stored batch {base}..={last} straddles the follower's end {next}"));
                break;
            }
            if last >= s.log.durable_end {
                break; // not durable yet
            }
            if base > next {
                if !keep.is_empty() {
                    break; // send what we have; the skip comes next round
                }
                let reason = if next < s.log.log_start { GapReason::Deleted } else { GapReason::Hole };
                self.outbox.push(ToFollower::Skip { slot, from: next, to: base, reason });
                self.events.push(LeaderEvent::Skipped { slot, from: next, to: base, reason });
                s.in_flight.push_back((base, 0));
            }
            if keep.is_empty() {
                keep = at..at;
            }
            keep.end = at + len;
            next = last + 1;
        }
        if let Some(reason) = stop {
            self.stop_slot(index, reason);
            return false;
        }
        let skipped = next > s.sent;
        if !keep.is_empty() {
            protocol::keep_only(&mut bytes, keep);
            let len = bytes.len() as u64;
            self.in_flight_bytes += len;
            s.in_flight.push_back((next, len));
            if self.config.rate_limit.is_some() {
                self.tokens = self.tokens.saturating_sub(len as i64);
            }
            self.outbox.push(ToFollower::Batches { slot, bytes });
        }
        if skipped && s.sent == s.acked {
            s.last_progress_ms = self.now_ms;
        }
        s.sent = next;
        skipped
    }
}

impl Leader {
    /// Stops mirroring slot `index` for the rest of the connection; what it had in flight no
    /// longer counts against the window.
    fn stop_slot(&mut self, index: usize, reason: String) {
        if let Some(s) = self.slots.get_mut(index) {
            self.in_flight_bytes -= s.in_flight.drain(..).map(|(_, bytes)| bytes).sum::<u64>();
            s.phase = SlotPhase::Stopped(reason.clone());
            self.events.push(LeaderEvent::SlotStopped { slot: index as u32, reason });
        }
    }
}

fn burst(rate: u64, frame_bytes: usize) -> i64 {
    rate.max(frame_bytes as u64).min(i64::MAX as u64) as i64
}

#[cfg(test)]
mod tests {
    use alloc::string::String;
    use alloc::vec;

    use super::*;
    use crate::batch::{BatchParams, RecordSpec, build_vec};
    use crate::log::LogState;
    use crate::replication::protocol::{PartitionId, SlotWelcome};

    /// Slot 0 holds what cannot be shipped; every other slot one record per read.
    struct HalfRefused;

    impl LogSource for HalfRefused {
        fn read(&mut self, slot: u32, offset: u64, _max_bytes: usize) -> Result<Vec<u8>, ReadFailure> {
            if slot == 0 {
                return Err(ReadFailure::Unshippable(String::from("the filter refuses it")));
            }
            let spec = RecordSpec { timestamp: 1, key: None, value: Some(b"v"), headers: &[] };
            let params =
                BatchParams { base_offset: offset as i64, partition_leader_epoch: 0, ..BatchParams::default() };
            Ok(build_vec(params, &[spec]).unwrap())
        }
    }

    #[test]
    fn an_unshippable_partition_stops_and_the_others_go_on() {
        let config = LeaderConfig {
            edge_id: "e".into(),
            token: "t".into(),
            window_bytes: 1 << 20,
            frame_bytes: 1 << 16,
            rate_limit: None,
            heartbeat_ms: 1_000,
            link_timeout_ms: 10_000,
            retransmit_ms: 5_000,
        };
        let log = |partition| PartitionLog {
            id: PartitionId { topic: "t".into(), partition },
            incarnation: [0; 16],
            epochs: LogState::new().epochs().clone(),
            log_start: 0,
            durable_end: 3,
        };
        let mut leader = Leader::new(config, vec![log(0), log(1)], 0);
        assert!(matches!(leader.ready(&mut HalfRefused).send.as_slice(), [ToFollower::Hello { .. }]));
        let empty = SlotWelcome::Follows { log_start: 0, log_end: 0, epochs: vec![], epochs_truncated: false };
        leader.step(ToLeader::Welcome { partitions: vec![empty.clone(), empty] });
        let ready = leader.ready(&mut HalfRefused);
        let stopped = LeaderEvent::SlotStopped { slot: 0, reason: "the filter refuses it".into() };
        assert!(ready.events.contains(&stopped), "{:?}", ready.events);
        assert!(matches!(leader.slot_status(0).unwrap().phase, SlotPhase::Stopped(_)));
        assert_eq!(leader.slot_status(1).unwrap().sent, 3, "slot 1 is shipped whole");
        assert!(leader.closed().is_none(), "the connection goes on");
    }
}
