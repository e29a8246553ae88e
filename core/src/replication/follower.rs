//! The follower's side of one replication connection: the aggregation node, which keeps a copy
//! of the edge's partitions at the same offsets.
//!
//! A [`Follower`] lives as long as one connection. The `Hello` goes to the host, which checks the
//! edge and finds each partition's copy (or decides a new incarnation gets a new one) and answers
//! with [`Follower::accept`]; the follower states every copy's log end and newest epochs
//! (`Welcome`), takes each partition's `Start` (a truncation where the copy diverged), then
//! validates batches (CRC, contiguity, epochs) and hands them to the host to append at the
//! leader's offsets. Acknowledgements go out once the host says the writes are durable
//! ([`Follower::advance`]). Batches that do not continue the copy (duplicates, frames lost or
//! reordered on the way) are dropped and answered with the copy's position.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::protocol::{
    self, GapReason, PROTOCOL_VERSION, PartitionHello, SlotWelcome, ToFollower, ToLeader, bounded_text,
};
use crate::batch;
use crate::limits::REPLICATION_EPOCHS_STATED_MAX;
use crate::log::LogState;

/// How a follower connection behaves.
#[derive(Debug, Clone, Copy)]
pub struct FollowerConfig {
    /// Validated batch bytes waiting to be made durable; beyond it batches are dropped (and sent
    /// again by the leader once acknowledged ones free room).
    pub pending_bytes_max: usize,
    /// Close the connection when nothing came from the leader for this long.
    pub link_timeout_ms: u64,
}

/// A copy as the host has it, for one partition of the `Hello`.
#[derive(Debug, Clone)]
pub enum SlotInit {
    /// The durable copy's offsets and epochs.
    Follow(LogState),
    /// Not mirrored on this connection, and why.
    Stopped(String),
}

/// The `Hello`, for the host to check and resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloRequest {
    pub edge_id: String,
    pub token: String,
    pub partitions: Vec<PartitionHello>,
}

/// A change to a copy, in order; the host applies a [`FollowerReady`]'s writes together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowerWrite {
    /// Remove everything from `offset` on (the copy diverged).
    Truncate { slot: u32, offset: u64 },
    /// Append validated batches at the offsets they carry.
    Append { slot: u32, batches: Vec<u8> },
    /// The log end jumps from `from` to `to`: the leader has nothing there.
    Skip { slot: u32, from: u64, to: u64, reason: GapReason },
}

/// Something the host should log or count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowerEvent {
    /// The copy diverged and was cut from `to` (it ended at `from`).
    Truncated {
        slot: u32,
        from: u64,
        to: u64,
    },
    /// A gap `from..to` in the copy.
    Gap {
        slot: u32,
        from: u64,
        to: u64,
        reason: GapReason,
    },
    SlotStopped {
        slot: u32,
        reason: String,
    },
}

/// What the host does next.
#[derive(Debug, Default)]
pub struct FollowerReady {
    /// A `Hello` to resolve: answer with [`Follower::accept`] or [`Follower::refuse`].
    pub hello: Option<HelloRequest>,
    pub send: Vec<ToLeader>,
    /// Apply in order, make durable, then call [`Follower::advance`].
    pub writes: Vec<FollowerWrite>,
    pub events: Vec<FollowerEvent>,
}

/// One partition's copy as the follower sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerSlotStatus {
    pub log_start: u64,
    /// Validated, maybe not yet durable.
    pub log_end: u64,
    pub durable_end: u64,
    pub started: bool,
    pub stopped: Option<String>,
}

#[derive(Debug)]
struct Slot {
    /// The copy including writes not yet durable.
    log: LogState,
    durable_end: u64,
    started: bool,
    stopped: Option<String>,
    ack_due: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingHello,
    /// The host is resolving the `Hello`.
    Resolving,
    Streaming,
    Closed,
}

/// See the [module docs](self).
#[derive(Debug)]
pub struct Follower {
    config: FollowerConfig,
    phase: Phase,
    close_reason: Option<String>,
    /// The `Hello` until [`Follower::ready`] hands it to the host.
    hello: Option<HelloRequest>,
    /// How many partitions it named.
    hello_partitions: usize,
    welcome: Option<ToLeader>,
    slots: Vec<Slot>,
    outbox: Vec<ToLeader>,
    writes: Vec<FollowerWrite>,
    pending_bytes: usize,
    /// The log end of each slot written by the writes handed out and not yet durable.
    in_flight: Option<Vec<(u32, u64)>>,
    in_flight_bytes: usize,
    events: Vec<FollowerEvent>,
    now_ms: u64,
    last_received_ms: u64,
}

impl Follower {
    pub fn new(config: FollowerConfig, now_ms: u64) -> Self {
        Self {
            config,
            phase: Phase::AwaitingHello,
            close_reason: None,
            hello: None,
            hello_partitions: 0,
            welcome: None,
            slots: Vec::new(),
            outbox: Vec::new(),
            writes: Vec::new(),
            pending_bytes: 0,
            in_flight: None,
            in_flight_bytes: 0,
            events: Vec::new(),
            now_ms,
            last_received_ms: now_ms,
        }
    }

    /// Why the connection ended; `None` while it lives.
    pub fn closed(&self) -> Option<&str> {
        match self.phase {
            Phase::Closed => Some(self.close_reason.as_deref().unwrap_or("closed")),
            _ => None,
        }
    }

    pub fn slot_status(&self, slot: u32) -> Option<FollowerSlotStatus> {
        let s = self.slots.get(slot as usize)?;
        Some(FollowerSlotStatus {
            log_start: s.log.log_start_offset(),
            log_end: s.log.next_offset(),
            durable_end: s.durable_end,
            started: s.started,
            stopped: s.stopped.clone(),
        })
    }

    /// A frame from the leader.
    pub fn step(&mut self, message: ToFollower) {
        if self.phase == Phase::Closed {
            return;
        }
        self.last_received_ms = self.now_ms;
        match message {
            ToFollower::Hello { version, edge_id, token, partitions } => {
                self.on_hello(version, edge_id, token, partitions)
            }
            ToFollower::Ping { nonce } => self.outbox.push(ToLeader::Pong { nonce }),
            _ if self.phase != Phase::Streaming => {
                // Frames before the handshake finished (possible only on a lossy link): the
                // leader repeats them after the Welcome.
            }
            ToFollower::Start { slot, follower_end, truncate_to } => self.on_start(slot, follower_end, truncate_to),
            ToFollower::Batches { slot, bytes } => self.on_batches(slot, bytes),
            ToFollower::Skip { slot, from, to, reason } => self.on_skip(slot, from, to, reason),
        }
    }

    fn on_hello(&mut self, version: u16, edge_id: String, token: String, partitions: Vec<PartitionHello>) {
        match self.phase {
            Phase::AwaitingHello if version != PROTOCOL_VERSION => {
                self.refuse(alloc::format!(
                    "replication protocol version {version} is not supported (this node speaks {PROTOCOL_VERSION})"
                ));
            }
            Phase::AwaitingHello => {
                self.hello_partitions = partitions.len();
                self.hello = Some(HelloRequest { edge_id, token, partitions });
                self.phase = Phase::Resolving;
            }
            // The leader did not get the Welcome: nothing has started since, so it still holds.
            Phase::Streaming => self.outbox.extend(self.welcome.clone()),
            Phase::Resolving | Phase::Closed => {}
        }
    }

    /// Answers the `Hello` with a copy (or a refusal) for each of its partitions, in order.
    pub fn accept(&mut self, slots: Vec<SlotInit>) {
        if self.phase != Phase::Resolving {
            return;
        }
        let expected = self.hello_partitions;
        if slots.len() != expected {
            self.refuse(alloc::format!("internal error: {} copies resolved for {expected} partitions", slots.len()));
            return;
        }
        let mut welcome = Vec::with_capacity(slots.len());
        for init in slots {
            match init {
                SlotInit::Follow(log) => {
                    let entries = log.epochs().entries();
                    let stated = entries.len().saturating_sub(REPLICATION_EPOCHS_STATED_MAX);
                    welcome.push(SlotWelcome::Follows {
                        log_start: log.log_start_offset(),
                        log_end: log.next_offset(),
                        epochs: entries[stated..].to_vec(),
                        epochs_truncated: stated > 0,
                    });
                    let durable_end = log.next_offset();
                    self.slots.push(Slot { log, durable_end, started: false, stopped: None, ack_due: false });
                }
                SlotInit::Stopped(reason) => {
                    let reason = bounded_text(reason);
                    welcome.push(SlotWelcome::Stopped { reason: reason.clone() });
                    self.slots.push(Slot {
                        log: LogState::new(),
                        durable_end: 0,
                        started: false,
                        stopped: Some(reason),
                        ack_due: false,
                    });
                }
            }
        }
        let welcome = ToLeader::Welcome { partitions: welcome };
        self.outbox.push(welcome.clone());
        self.welcome = Some(welcome);
        self.phase = Phase::Streaming;
    }

    /// Refuses the whole connection (unknown edge, bad token...): the host sends the refusal and
    /// closes.
    pub fn refuse(&mut self, reason: String) {
        let reason = bounded_text(reason);
        self.outbox.push(ToLeader::Refused { reason: reason.clone() });
        self.close_reason = Some(reason);
        self.phase = Phase::Closed;
    }

    fn slot_mut(&mut self, slot: u32) -> Option<&mut Slot> {
        match self.slots.get_mut(slot as usize) {
            Some(s) if s.stopped.is_none() => Some(s),
            Some(_) => None,
            None => {
                self.close_reason = Some(alloc::format!("the leader named unknown partition slot {slot}"));
                self.phase = Phase::Closed;
                None
            }
        }
    }

    fn stop_slot(&mut self, slot: u32, reason: String) {
        let reason = bounded_text(reason);
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.stopped = Some(reason.clone());
        }
        self.outbox.push(ToLeader::SlotStopped { slot, reason: reason.clone() });
        self.events.push(FollowerEvent::SlotStopped { slot, reason });
    }

    fn on_start(&mut self, slot: u32, follower_end: u64, truncate_to: u64) {
        let Some(s) = self.slot_mut(slot) else { return };
        if s.started {
            return; // a repeat: the first one counted
        }
        let (start, end) = (s.log.log_start_offset(), s.log.next_offset());
        if follower_end != end || truncate_to > end || truncate_to < start {
            let reason = alloc::format!(
                "the edge asked to truncate the copy {start}..{end} (stated end {follower_end}) to {truncate_to}"
            );
            self.stop_slot(slot, reason);
            return;
        }
        if truncate_to < end {
            if let Err(e) = s.log.truncate_to(truncate_to) {
                let reason = e.to_string();
                self.stop_slot(slot, reason);
                return;
            }
            s.durable_end = s.durable_end.min(truncate_to);
            self.writes.push(FollowerWrite::Truncate { slot, offset: truncate_to });
            self.events.push(FollowerEvent::Truncated { slot, from: end, to: truncate_to });
        }
        let s = &mut self.slots[slot as usize];
        s.started = true;
        s.ack_due = true;
    }

    fn on_batches(&mut self, slot: u32, mut bytes: Vec<u8>) {
        let pending_full = self.pending_bytes + self.in_flight_bytes >= self.config.pending_bytes_max;
        let Some(s) = self.slot_mut(slot) else { return };
        s.ack_due = true; // whatever happens, the leader learns where the copy stands
        if !s.started || pending_full {
            return;
        }
        let mut keep = 0..0;
        let mut position = 0;
        let mut stop = None;
        // The CRC proves the batch is what the edge stored, and the edge validated its records
        // when they were produced: as Kafka's followers, the copy checks the CRC, not each record.
        for item in batch::sealed_batches(&bytes) {
            let parsed = match item {
                Ok(parsed) => parsed,
                Err(e) => {
                    stop = Some(alloc::format!("invalid batch from the edge at offset {}: {e}", s.log.next_offset()));
                    break;
                }
            };
            let at = position;
            position += parsed.as_bytes().len();
            let end = s.log.next_offset();
            if parsed.last_offset() < 0 || (parsed.last_offset() as u64) < end {
                continue; // a duplicate
            }
            if parsed.base_offset() != end as i64 {
                break; // a frame went missing (or the copy is ahead): the Ack says where to resume
            }
            if let Err(e) = s.log.append_follower(parsed.as_bytes()) {
                stop = Some(alloc::format!("batch from the edge refused at offset {end}: {e}"));
                break;
            }
            if keep.is_empty() {
                keep = at..at;
            }
            keep.end = position;
        }
        if !keep.is_empty() {
            protocol::keep_only(&mut bytes, keep);
            self.pending_bytes += bytes.len();
            match self.writes.last_mut() {
                Some(FollowerWrite::Append { slot: last, batches }) if *last == slot => {
                    batches.extend_from_slice(&bytes)
                }
                _ => self.writes.push(FollowerWrite::Append { slot, batches: bytes }),
            }
        }
        if let Some(reason) = stop {
            self.stop_slot(slot, reason);
        }
    }

    fn on_skip(&mut self, slot: u32, from: u64, to: u64, reason: GapReason) {
        let Some(s) = self.slot_mut(slot) else { return };
        s.ack_due = true;
        if !s.started || s.log.next_offset() != from || to <= from {
            return; // a repeat, or out of order: the Ack says where the copy stands
        }
        if let Err(e) = s.log.skip_to(to) {
            let reason = e.to_string();
            self.stop_slot(slot, reason);
            return;
        }
        self.writes.push(FollowerWrite::Skip { slot, from, to, reason });
        self.events.push(FollowerEvent::Gap { slot, from, to, reason });
    }

    /// Time passes: the link timeout.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        if self.phase != Phase::Closed
            && self.now_ms.saturating_sub(self.last_received_ms) >= self.config.link_timeout_ms
        {
            self.close_reason = Some("link timed out: nothing received from the edge".into());
            self.phase = Phase::Closed;
        }
    }

    /// When the host should call [`tick`](Self::tick) next, at the latest.
    pub fn next_wakeup(&self) -> u64 {
        (self.last_received_ms + self.config.link_timeout_ms).max(self.now_ms)
    }

    /// Whether [`ready`](Self::ready) has something (cheap).
    pub fn has_ready(&self) -> bool {
        if self.phase == Phase::Closed {
            // Only a refusal may still go out; nothing else is due on a closed connection.
            return !self.outbox.is_empty();
        }
        !self.outbox.is_empty()
            || !self.events.is_empty()
            || (self.phase == Phase::Resolving && self.hello.is_some())
            || (self.in_flight.is_none() && !self.writes.is_empty())
            || self.slots.iter().any(|s| s.ack_due)
    }

    /// What to do now. Writes are handed out one ready at a time: the next ones wait until
    /// [`advance`](Self::advance) says these are durable.
    pub fn ready(&mut self) -> FollowerReady {
        let hello = if self.phase == Phase::Resolving { self.hello.take() } else { None };
        let mut writes = Vec::new();
        if self.in_flight.is_none() && !self.writes.is_empty() {
            writes = core::mem::take(&mut self.writes);
            let mut ends: Vec<(u32, u64)> = Vec::new();
            for write in &writes {
                let slot = match write {
                    FollowerWrite::Truncate { slot, .. }
                    | FollowerWrite::Append { slot, .. }
                    | FollowerWrite::Skip { slot, .. } => *slot,
                };
                if !ends.iter().any(|&(s, _)| s == slot) {
                    ends.push((slot, 0));
                }
            }
            // The log end each slot reaches once these writes are applied: later frames only
            // ever add writes after them.
            for (slot, end) in &mut ends {
                *end = self.slots[*slot as usize].log.next_offset();
            }
            self.in_flight_bytes = core::mem::take(&mut self.pending_bytes);
            self.in_flight = Some(ends);
        }
        let mut send = core::mem::take(&mut self.outbox);
        let streaming = self.phase == Phase::Streaming;
        for (index, s) in self.slots.iter_mut().enumerate() {
            // Taken in every phase, so a closed connection has nothing left to do.
            if core::mem::take(&mut s.ack_due) && s.stopped.is_none() && streaming {
                send.push(ToLeader::Ack {
                    slot: index as u32,
                    started: s.started,
                    log_end: s.log.next_offset(),
                    durable_end: s.durable_end,
                });
            }
        }
        FollowerReady { hello, send, writes, events: core::mem::take(&mut self.events) }
    }

    /// The writes of the last [`ready`](Self::ready) that had any are durable: acknowledge them.
    pub fn advance(&mut self) {
        let Some(ends) = self.in_flight.take() else { return };
        self.in_flight_bytes = 0;
        for (slot, end) in ends {
            if let Some(s) = self.slots.get_mut(slot as usize) {
                s.durable_end = end;
                s.ack_due = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;
    use crate::batch::{BatchParams, RecordSpec, build_vec};
    use crate::replication::protocol::PartitionId;

    const CONFIG: FollowerConfig = FollowerConfig { pending_bytes_max: 1 << 20, link_timeout_ms: 1_000 };

    /// A batch as the leader stored it: `count` records at `base`, in `epoch`.
    fn stored(base: u64, count: usize, epoch: i32) -> Vec<u8> {
        let specs: Vec<RecordSpec<'_>> = (0..count)
            .map(|i| RecordSpec { timestamp: i as i64, key: None, value: Some(b"v"), headers: &[] })
            .collect();
        build_vec(
            BatchParams { base_offset: base as i64, partition_leader_epoch: epoch, ..BatchParams::default() },
            &specs,
        )
        .unwrap()
    }

    fn welcomed(copy: LogState) -> Follower {
        let mut follower = Follower::new(CONFIG, 0);
        let partitions =
            vec![PartitionHello { id: PartitionId { topic: "t".into(), partition: 0 }, incarnation: [0; 16] }];
        follower.step(ToFollower::Hello {
            version: PROTOCOL_VERSION,
            edge_id: "e".into(),
            token: "t".into(),
            partitions,
        });
        assert!(follower.ready().hello.is_some());
        follower.accept(vec![SlotInit::Follow(copy)]);
        assert!(matches!(follower.ready().send.as_slice(), [ToLeader::Welcome { .. }]));
        follower
    }

    #[test]
    fn start_truncates_once_and_batches_wait_for_it() {
        let mut copy = LogState::new();
        copy.append_follower(&stored(0, 5, 0)).unwrap();
        copy.append_follower(&stored(5, 5, 1)).unwrap();
        let mut follower = welcomed(copy);
        // Batches before the Start are not taken; the Ack says so.
        follower.step(ToFollower::Batches { slot: 0, bytes: stored(5, 3, 2) });
        let ready = follower.ready();
        assert!(ready.writes.is_empty());
        assert_eq!(ready.send, vec![ToLeader::Ack { slot: 0, started: false, log_end: 10, durable_end: 10 }]);
        follower.step(ToFollower::Start { slot: 0, follower_end: 10, truncate_to: 5 });
        follower.step(ToFollower::Batches { slot: 0, bytes: stored(5, 3, 2) });
        // A repeated Start (sent again by the leader, or duplicated) changes nothing.
        follower.step(ToFollower::Start { slot: 0, follower_end: 10, truncate_to: 5 });
        let ready = follower.ready();
        assert_eq!(ready.events, vec![FollowerEvent::Truncated { slot: 0, from: 10, to: 5 }]);
        assert_eq!(
            ready.writes,
            vec![
                FollowerWrite::Truncate { slot: 0, offset: 5 },
                FollowerWrite::Append { slot: 0, batches: stored(5, 3, 2) },
            ]
        );
        // Not acknowledged as durable until the host says so.
        assert_eq!(ready.send, vec![ToLeader::Ack { slot: 0, started: true, log_end: 8, durable_end: 5 }]);
        follower.advance();
        assert_eq!(follower.ready().send, vec![ToLeader::Ack { slot: 0, started: true, log_end: 8, durable_end: 8 }]);
    }

    #[test]
    fn duplicates_are_dropped_and_a_corrupt_batch_stops_the_partition() {
        let mut follower = welcomed(LogState::new());
        follower.step(ToFollower::Start { slot: 0, follower_end: 0, truncate_to: 0 });
        let mut both = stored(0, 2, 0);
        both.extend(stored(2, 2, 0));
        follower.step(ToFollower::Batches { slot: 0, bytes: stored(0, 2, 0) });
        follower.step(ToFollower::Batches { slot: 0, bytes: both });
        let ready = follower.ready();
        let appended: usize = ready
            .writes
            .iter()
            .map(|w| if let FollowerWrite::Append { batches, .. } = w { batches.len() } else { 0 })
            .sum();
        assert_eq!(appended, 2 * stored(0, 2, 0).len(), "the repeated batch is stored once");
        let mut corrupt = stored(4, 1, 0);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        follower.step(ToFollower::Batches { slot: 0, bytes: corrupt });
        let ready = follower.ready();
        assert!(
            matches!(ready.send.as_slice(), [ToLeader::SlotStopped { slot: 0, reason }] if reason.contains("invalid batch"))
        );
        assert_eq!(follower.slot_status(0).unwrap().log_end, 4);
    }

    #[test]
    fn a_closed_connection_has_nothing_ready() {
        let mut follower = welcomed(LogState::new());
        follower.step(ToFollower::Start { slot: 0, follower_end: 0, truncate_to: 0 });
        follower.tick(CONFIG.link_timeout_ms);
        assert!(follower.closed().is_some());
        let _ = follower.ready();
        assert!(!follower.has_ready(), "a host looping on has_ready would spin");
    }

    #[test]
    fn a_start_that_does_not_match_the_stated_copy_stops_the_partition() {
        let mut follower = welcomed(LogState::new());
        follower.step(ToFollower::Start { slot: 0, follower_end: 3, truncate_to: 0 });
        assert!(matches!(follower.ready().send.as_slice(), [ToLeader::SlotStopped { .. }]));
        // An unknown slot closes the connection.
        follower.step(ToFollower::Skip { slot: 9, from: 0, to: 1, reason: GapReason::Hole });
        assert!(follower.closed().is_some());
    }
}
