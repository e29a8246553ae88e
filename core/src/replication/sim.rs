//! A seeded simulation of one edge and one aggregation node mirroring two partitions over a link
//! that drops, delays, duplicates and reorders frames and gets cut; either side crashes (the edge
//! losing its unsynced tail), the edge changes leader epoch and deletes old batches (sometimes
//! before they were mirrored, as when its disk budget runs out).
//!
//! After every step: the copy is a prefix of the edge's durable log (same offsets, same bytes,
//! gaps only where the edge has nothing). At the end the chaos stops and the copy must catch up
//! completely.
//!
//! `RILL_SIM_SECONDS` (default 60) bounds how long the seeds run; `RILL_SIM_SEED` replays one.
//! A failure prints its seed.

use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, println};

use super::protocol::{self, ToFollower};
use super::{
    Follower, FollowerConfig, FollowerWrite, Leader, LeaderConfig, LogSource, PartitionId, PartitionLog, ReadFailure,
    SlotInit,
};
use crate::batch::{self, BatchParams, RecordSpec};
use crate::log::MemLog;

const PARTITIONS: usize = 2;
const CHAOS_STEPS: u64 = 2_500;
const CALM_STEPS_MAX: u64 = 200_000;

/// SplitMix64: small, seedable, good enough to pick faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// True with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// How hostile this seed's world is (per mille per step or per frame).
#[derive(Debug, Clone, Copy)]
struct Chaos {
    drop: u64,
    duplicate: u64,
    delay_max_ms: u64,
    cut: u64,
    edge_crash: u64,
    cloud_crash: u64,
    epoch_bump: u64,
    retention: u64,
    /// Of retention passes, how many delete past what the follower acknowledged.
    budget_exhausted: u64,
    rate_limit: Option<u64>,
}

impl Chaos {
    fn pick(rng: &mut Rng) -> Self {
        Self {
            drop: rng.below(150),
            duplicate: rng.below(100),
            delay_max_ms: rng.below(40),
            cut: rng.below(6),
            edge_crash: rng.below(6),
            cloud_crash: rng.below(6),
            epoch_bump: rng.below(500),
            retention: rng.below(40),
            budget_exhausted: rng.below(300),
            rate_limit: if rng.chance(300) { Some(20_000 + rng.below(200_000)) } else { None },
        }
    }

    fn calm(self) -> Self {
        Self {
            drop: 0,
            duplicate: 0,
            delay_max_ms: 0,
            cut: 0,
            edge_crash: 0,
            cloud_crash: 0,
            epoch_bump: 0,
            retention: 0,
            budget_exhausted: 0,
            rate_limit: self.rate_limit,
        }
    }
}

struct EdgePartition {
    log: MemLog,
    /// Below this the log survives a crash.
    durable_end: u64,
    /// What the leader last reported acknowledged: retention keeps it unless the budget runs out.
    acked: u64,
}

struct World {
    rng: Rng,
    chaos: Chaos,
    now: u64,
    edge: Vec<EdgePartition>,
    cloud: Vec<MemLog>,
    leader: Option<Leader>,
    follower: Option<Follower>,
    /// Writes the cloud is making durable, and when they will be.
    persisting: Option<(u64, Vec<FollowerWrite>)>,
    to_follower: Vec<(u64, Vec<u8>)>,
    to_leader: Vec<(u64, Vec<u8>)>,
    reconnect_at: u64,
    next_value: u64,
    stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    connections: u64,
    frames: u64,
    batches_copied: u64,
    gaps: u64,
}

struct EdgeSource<'a>(&'a [EdgePartition]);

impl LogSource for EdgeSource<'_> {
    fn read(&mut self, slot: u32, offset: u64, max_bytes: usize) -> Result<Vec<u8>, ReadFailure> {
        let log = &self.0[slot as usize].log;
        match log.read(offset, max_bytes) {
            Ok(batches) => Ok(batches.concat()),
            Err(e) if offset < e.log_start_offset => Err(ReadFailure::OutOfRange { log_start: e.log_start_offset }),
            Err(e) => Err(ReadFailure::Failed(e.to_string())),
        }
    }
}

fn leader_config(rate_limit: Option<u64>) -> LeaderConfig {
    LeaderConfig {
        edge_id: "edge-1".into(),
        token: "t".into(),
        window_bytes: 4096,
        frame_bytes: 1024,
        rate_limit,
        heartbeat_ms: 50,
        link_timeout_ms: 1_000,
        retransmit_ms: 200,
    }
}

const FOLLOWER_CONFIG: FollowerConfig = FollowerConfig { pending_bytes_max: 64 * 1024, link_timeout_ms: 1_000 };

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let chaos = Chaos::pick(&mut rng);
        Self {
            rng,
            chaos,
            now: 0,
            edge: (0..PARTITIONS).map(|_| EdgePartition { log: MemLog::new(), durable_end: 0, acked: 0 }).collect(),
            cloud: (0..PARTITIONS).map(|_| MemLog::new()).collect(),
            leader: None,
            follower: None,
            persisting: None,
            to_follower: Vec::new(),
            to_leader: Vec::new(),
            reconnect_at: 0,
            next_value: 0,
            stats: Stats::default(),
        }
    }

    fn step(&mut self, appending: bool) -> Result<(), String> {
        self.now += 1 + self.rng.below(5);
        if appending {
            self.edge_writes();
        } else {
            self.sync_all();
        }
        self.faults();
        self.connect();
        self.deliver();
        self.tick();
        self.persist();
        self.pump();
        self.check()
    }

    fn edge_writes(&mut self) {
        let p = self.rng.below(PARTITIONS as u64) as usize;
        if self.rng.chance(400) {
            let count = 1 + self.rng.below(4) as usize;
            let values: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    self.next_value += 1;
                    let len = self.rng.below(200) as usize;
                    let mut value = format!("v{}-", self.next_value).into_bytes();
                    value.resize(value.len() + len, b'x');
                    value
                })
                .collect();
            let specs: Vec<RecordSpec<'_>> = values
                .iter()
                .enumerate()
                .map(|(i, v)| RecordSpec {
                    timestamp: self.now as i64 + i as i64,
                    key: None,
                    value: Some(v),
                    headers: &[],
                })
                .collect();
            let bytes = batch::build_vec(BatchParams::default(), &specs).expect("batch builds");
            self.edge[p].log.append(bytes, self.now as i64).expect("edge append");
        }
        if self.rng.chance(300) {
            let part = &mut self.edge[p];
            part.durable_end = part.log.state().next_offset();
            part.log.advance_high_watermark(part.durable_end);
        }
        if self.rng.chance(self.chaos.retention) {
            let part = &mut self.edge[p];
            let start = part.log.state().log_start_offset();
            let bound = if self.rng.chance(self.chaos.budget_exhausted) { part.durable_end } else { part.acked };
            if bound > start {
                let to = start + self.rng.below(bound - start + 1);
                part.log.advance_log_start(to);
            }
        }
    }

    fn sync_all(&mut self) {
        for part in &mut self.edge {
            part.durable_end = part.log.state().next_offset();
            part.log.advance_high_watermark(part.durable_end);
        }
    }

    /// The connection ends. Writes the cloud already started still complete: a new connection
    /// of the edge must read the copy after them (the host holds the edge's lock until its
    /// commit returns).
    fn disconnect(&mut self) {
        if let Some((_, writes)) = self.persisting.take() {
            self.apply(writes);
        }
        self.leader = None;
        self.follower = None;
        self.to_follower.clear();
        self.to_leader.clear();
        self.reconnect_at = self.now + self.rng.below(100);
    }

    fn faults(&mut self) {
        if self.rng.chance(self.chaos.cut) {
            self.disconnect();
        }
        if self.rng.chance(self.chaos.edge_crash) {
            // The unsynced tail is gone; sometimes the edge comes back as a new leader.
            let bump = self.rng.chance(self.chaos.epoch_bump);
            for part in &mut self.edge {
                part.log.truncate_to(part.durable_end).expect("durable end is inside the log");
                if bump {
                    let epoch = part.log.state().leader_epoch() + 1;
                    part.log.set_leader_epoch(epoch).expect("epoch bump");
                }
            }
            self.disconnect();
        }
        if self.rng.chance(self.chaos.cloud_crash) {
            self.persisting = None; // not yet durable: lost
            self.disconnect();
        }
    }

    fn connect(&mut self) {
        if self.leader.is_some() || self.now < self.reconnect_at {
            return;
        }
        let partitions = self
            .edge
            .iter()
            .enumerate()
            .map(|(p, part)| PartitionLog {
                id: PartitionId { topic: "t".into(), partition: p as u32 },
                incarnation: [1; 16],
                epochs: part.log.state().epochs().clone(),
                log_start: part.log.state().log_start_offset(),
                durable_end: part.durable_end,
            })
            .collect();
        self.leader = Some(Leader::new(leader_config(self.chaos.rate_limit), partitions, self.now));
        self.follower = Some(Follower::new(FOLLOWER_CONFIG, self.now));
        self.stats.connections += 1;
    }

    /// Sends one frame through the hostile link.
    fn transmit(rng: &mut Rng, chaos: Chaos, now: u64, queue: &mut Vec<(u64, Vec<u8>)>, frame: Vec<u8>) {
        if rng.chance(chaos.drop) {
            return;
        }
        if rng.chance(chaos.duplicate) {
            queue.push((now + rng.below(chaos.delay_max_ms + 1), frame.clone()));
        }
        queue.push((now + rng.below(chaos.delay_max_ms + 1), frame));
    }

    fn deliver(&mut self) {
        let now = self.now;
        let (Some(leader), Some(follower)) = (self.leader.as_mut(), self.follower.as_mut()) else { return };
        for (queue, to_follower) in [(&mut self.to_follower, true), (&mut self.to_leader, false)] {
            // Due frames, in the order they became due (equal times keep send order).
            let mut due: Vec<(u64, Vec<u8>)> = Vec::new();
            queue.retain(|(at, frame)| {
                if *at <= now {
                    due.push((*at, frame.clone()));
                    false
                } else {
                    true
                }
            });
            due.sort_by_key(|(at, _)| *at);
            for (_, frame) in due {
                self.stats.frames += 1;
                if std::env::var_os("RILL_SIM_TRACE").is_some() {
                    if to_follower {
                        println!(
                            "{now} -> {:?}",
                            protocol::decode_to_follower(&frame[4..]).map(|m| match m {
                                ToFollower::Batches { slot, bytes } => format!("Batches {slot} {}", bytes.len()),
                                m => format!("{m:?}"),
                            })
                        );
                    } else {
                        println!("{now} <- {:?}", protocol::decode_to_leader(&frame[4..]));
                    }
                }
                let len = protocol::frame_len(frame[..4].try_into().unwrap()).expect("frame length");
                assert_eq!(len, frame.len() - 4);
                if to_follower {
                    follower.step(protocol::decode_to_follower(&frame[4..]).expect("frame decodes"));
                } else {
                    leader.step(protocol::decode_to_leader(&frame[4..]).expect("frame decodes"));
                }
            }
        }
    }

    fn tick(&mut self) {
        if let Some(leader) = self.leader.as_mut() {
            leader.tick(self.now);
        }
        if let Some(follower) = self.follower.as_mut() {
            follower.tick(self.now);
        }
        let closed = self.leader.as_ref().is_some_and(|l| l.closed().is_some())
            || self.follower.as_ref().is_some_and(|f| f.closed().is_some());
        if closed {
            self.disconnect();
        }
    }

    fn persist(&mut self) {
        let Some((done_at, _)) = &self.persisting else { return };
        if *done_at > self.now {
            return;
        }
        let Some((_, writes)) = self.persisting.take() else { return };
        self.apply(writes);
        if let Some(follower) = self.follower.as_mut() {
            follower.advance();
        }
    }

    fn apply(&mut self, writes: Vec<FollowerWrite>) {
        for write in writes {
            match write {
                FollowerWrite::Truncate { slot, offset } => {
                    self.cloud[slot as usize].truncate_to(offset).expect("truncation inside the copy");
                }
                FollowerWrite::Append { slot, batches } => {
                    for parsed in batch::batches(&batches) {
                        let parsed = parsed.expect("follower validated the batch");
                        self.cloud[slot as usize]
                            .append_follower(parsed.as_bytes().to_vec(), self.now as i64)
                            .expect("copy append");
                        self.stats.batches_copied += 1;
                    }
                }
                FollowerWrite::Skip { slot, to, .. } => {
                    self.cloud[slot as usize].skip_to(to).expect("skip forward");
                    self.stats.gaps += 1;
                }
            }
        }
        for copy in &mut self.cloud {
            let end = copy.state().next_offset();
            copy.advance_high_watermark(end);
        }
    }

    fn pump(&mut self) {
        let now = self.now;
        if let Some(leader) = self.leader.as_mut() {
            for (slot, part) in self.edge.iter().enumerate() {
                leader.update_log(slot as u32, part.log.state().log_start_offset(), part.durable_end);
            }
            let ready = leader.ready(&mut EdgeSource(&self.edge));
            for message in &ready.send {
                let mut frame = Vec::new();
                protocol::encode_to_follower(message, &mut frame).expect("frame encodes");
                Self::transmit(&mut self.rng, self.chaos, now, &mut self.to_follower, frame);
            }
            for (slot, acked) in ready.acked {
                self.edge[slot as usize].acked = acked;
            }
            leader.advance();
        }
        if let Some(follower) = self.follower.as_mut() {
            let ready = follower.ready();
            if ready.hello.is_some() {
                follower.accept(self.cloud.iter().map(|copy| SlotInit::Follow(copy.state().clone())).collect());
            }
            let ready = if ready.hello.is_some() { follower.ready() } else { ready };
            for message in &ready.send {
                let mut frame = Vec::new();
                protocol::encode_to_leader(message, &mut frame).expect("frame encodes");
                Self::transmit(&mut self.rng, self.chaos, now, &mut self.to_leader, frame);
            }
            if !ready.writes.is_empty() {
                assert!(self.persisting.is_none(), "writes handed out before the last ones were durable");
                self.persisting = Some((now + self.rng.below(20), ready.writes));
            }
        }
    }

    /// The copy is a prefix of the edge's durable log: same batches at the same offsets, gaps
    /// only where the edge has nothing.
    fn check(&self) -> Result<(), String> {
        for (p, (edge, copy)) in self.edge.iter().zip(&self.cloud).enumerate() {
            let (copy_start, copy_end) = (copy.state().log_start_offset(), copy.state().next_offset());
            if copy_end > edge.durable_end {
                return Err(format!(
                    "partition {p}: the copy ends at {copy_end}, past the edge's durable end {}",
                    edge.durable_end
                ));
            }
            let edge_start = edge.log.state().log_start_offset();
            for bytes in copy.read(copy_start, usize::MAX).map_err(|e| e.to_string())? {
                let header = batch::BatchHeader::decode(bytes).map_err(|e| format!("{e}"))?;
                let (base, last) = (header.base_offset as u64, header.last_offset() as u64);
                if last < edge_start {
                    continue;
                }
                let on_edge = edge.log.read(base.max(edge_start), 1).map_err(|e| e.to_string())?;
                if on_edge.first().copied() != Some(bytes) {
                    return Err(format!("partition {p}: the copy's batch at {base} differs from the edge's"));
                }
            }
            // The copy has no retention of its own here: every batch the edge still has below the
            // copy's end must be in it, whatever the copy's start.
            if copy_end > edge_start {
                for bytes in edge.log.read(edge_start, usize::MAX).map_err(|e| e.to_string())? {
                    let header = batch::BatchHeader::decode(bytes).map_err(|e| format!("{e}"))?;
                    let (base, last) = (header.base_offset as u64, header.last_offset() as u64);
                    if base < edge_start {
                        continue;
                    }
                    if last >= copy_end {
                        break;
                    }
                    let in_copy = copy.read(base, 1).unwrap_or_default();
                    if in_copy.first().copied() != Some(bytes) {
                        return Err(format!("partition {p}: the edge's batch at {base} is missing from the copy"));
                    }
                }
            }
        }
        Ok(())
    }

    fn caught_up(&self) -> bool {
        self.edge.iter().zip(&self.cloud).all(|(edge, copy)| copy.state().next_offset() == edge.durable_end)
    }
}

fn run_seed(seed: u64) -> Result<Stats, String> {
    let mut world = World::new(seed);
    for step in 0..CHAOS_STEPS {
        world.step(true).map_err(|e| format!("step {step}: {e}"))?;
    }
    world.chaos = world.chaos.calm();
    // Sometimes the edge ran out of disk while the link was down and deleted everything it
    // had: the copy must still end where the edge does.
    if world.rng.chance(300) {
        world.sync_all();
        let p = world.rng.below(PARTITIONS as u64) as usize;
        let end = world.edge[p].durable_end;
        world.edge[p].log.advance_log_start(end);
    }
    for step in 0..CALM_STEPS_MAX {
        world.step(false).map_err(|e| format!("calm step {step}: {e}"))?;
        if world.caught_up() {
            return Ok(world.stats);
        }
    }
    let ends: Vec<(u64, u64)> =
        world.edge.iter().zip(&world.cloud).map(|(e, c)| (e.durable_end, c.state().next_offset())).collect();
    Err(format!("the copy never caught up once the link was calm (edge durable end, copy end): {ends:?}"))
}

fn run_reporting(seed: u64) -> Stats {
    let outcome = std::panic::catch_unwind(|| run_seed(seed));
    match outcome {
        Ok(Ok(stats)) => stats,
        Ok(Err(e)) => panic!("replication simulation failed with seed {seed} (replay: RILL_SIM_SEED={seed}): {e}"),
        Err(panic) => {
            println!("replication simulation panicked with seed {seed} (replay: RILL_SIM_SEED={seed})");
            std::panic::resume_unwind(panic)
        }
    }
}

#[test]
fn the_copy_stays_a_prefix_of_the_durable_log_and_catches_up() {
    if let Some(seed) = std::env::var("RILL_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        let stats = run_reporting(seed);
        println!("seed {seed}: {stats:?}");
        return;
    }
    let seconds: u64 = std::env::var("RILL_SIM_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let started = std::time::Instant::now();
    // Different seeds on every run (from the clock), printed on failure.
    let first =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut seeds = 0u64;
    let mut total = Stats::default();
    while seeds == 0 || started.elapsed().as_secs() < seconds {
        let stats = run_reporting(first.wrapping_add(seeds));
        total.connections += stats.connections;
        total.frames += stats.frames;
        total.batches_copied += stats.batches_copied;
        total.gaps += stats.gaps;
        seeds += 1;
    }
    println!("{seeds} seeds from {first} in {:.1} s: {total:?}", started.elapsed().as_secs_f64());
    assert!(total.batches_copied > 0 && total.connections > seeds);
}

/// The faults matter: a follower that took batches without checking contiguity would break the
/// prefix invariant, and the check must see it.
#[test]
fn the_check_catches_a_copy_that_is_not_a_prefix() {
    let mut world = World::new(7);
    world.chaos = world.chaos.calm();
    for _ in 0..200 {
        world.step(true).unwrap();
    }
    world.sync_all();
    let edge_batches: Vec<Vec<u8>> =
        world.edge[0].log.read(0, usize::MAX).unwrap().into_iter().map(<[u8]>::to_vec).collect();
    assert!(edge_batches.len() >= 2, "the edge wrote batches");
    let mut copy = MemLog::new();
    // The second batch where the first belongs: a skip, then a batch out of place.
    let second = batch::BatchHeader::decode(&edge_batches[1]).unwrap();
    copy.skip_to(second.base_offset as u64).unwrap();
    copy.append_follower(edge_batches[1].clone(), 0).unwrap();
    world.cloud[0] = copy;
    let error = world.check().unwrap_err();
    assert!(error.contains("missing from the copy"), "{error}");
}
