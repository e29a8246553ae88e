//! The edge: each `[[mirror]]` is a task that dials its aggregation node and drives a [`Leader`]
//! over the connection, reading batches from the store as the window and the rate allow, and
//! waking when a mirrored partition's durable end moves. A broken link or a refusal is retried
//! with back-off; nothing is lost meanwhile (the log is the buffer).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_core::replication::protocol;
use rill_core::replication::{
    GapReason, Leader, LeaderConfig, LeaderEvent, LogSource, PartitionId, PartitionLog, ReadFailure, SlotPhase,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

use super::filter::{FilterKey, MirrorFilter};
use super::spec::MirrorSpec;
use super::wire;
use crate::limits::{
    MIRROR_BACKOFF_FIRST, MIRROR_BACKOFF_MAX, MIRROR_CONNECT_TIMEOUT, MIRROR_FRAME_BYTES, MIRROR_HEARTBEAT,
    MIRROR_RETRANSMIT, MIRROR_TOPIC_SCAN, REPLICATION_LINK_TIMEOUT,
};
use crate::plugins::PluginCatalog;
use crate::storage::{DocumentWrite, PartitionState, ReadError, Store};

/// A mirror's state for the status page, `rill mirror status` and metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MirrorStatus {
    pub name: String,
    pub upstream: String,
    pub edge_id: String,
    /// `connecting`, `connected`, `waiting` (back-off after a failure) or `stopped`.
    pub link: String,
    pub connected_since_ms: Option<i64>,
    pub last_error: Option<String>,
    pub connects: u64,
    pub bytes_sent: u64,
    /// Records the edge deleted before they were mirrored (its disk budget ran out).
    pub records_lost: u64,
    /// The filter plugin (`name@version`) once loaded.
    #[serde(default)]
    pub filter: Option<String>,
    /// Records the filter kept from going upstream (each time they were sent).
    #[serde(default)]
    pub records_filtered: u64,
    /// Batches the filter refused as invalid input: they went upstream without records.
    #[serde(default)]
    pub batches_refused_by_filter: u64,
    pub partitions: Vec<MirrorPartitionStatus>,
}

/// One mirrored partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MirrorPartitionStatus {
    pub topic: String,
    pub partition: u32,
    /// The edge's log end that may be shipped (durable).
    pub leader_offset: u64,
    /// Below this the aggregation node holds the copy durably.
    pub acked_offset: u64,
    pub lag_records: u64,
    /// Estimated from the partition's size per offset.
    pub lag_bytes: u64,
    /// Age of the oldest record the aggregation node has not acknowledged (0 when none).
    pub lag_seconds: f64,
    /// `streaming`, `starting`, `waiting` (no Welcome yet) or `stopped`.
    pub state: String,
    pub error: Option<String>,
}

/// One mirror's task and what it shares.
#[derive(Debug)]
pub struct MirrorTask {
    pub spec: MirrorSpec,
    pub status: Arc<Mutex<MirrorStatus>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl MirrorTask {
    pub fn start(spec: MirrorSpec, store: Store, catalog: PluginCatalog) -> MirrorTask {
        let status = Arc::new(Mutex::new(MirrorStatus {
            name: spec.name.clone(),
            upstream: spec.upstream.clone(),
            edge_id: spec.edge_id.clone(),
            link: "connecting".into(),
            ..MirrorStatus::default()
        }));
        let (stop, stopped) = watch::channel(false);
        // Retention must not run before the floors are set: set them before the task starts.
        let mut acks = Acks::load(&store, &spec.name);
        if spec.filter.is_some() {
            acks.hold_for_filter(&super::filter::saved_offsets(&store, &spec.name));
        }
        acks.protect(&store, &spec.name, &mirrored(&spec, &store));
        let patterns = spec.clone();
        store.guard_topics(&holder(&spec.name), Arc::new(move |topic| patterns.mirrors(topic)));
        let task = tokio::spawn(run(spec.clone(), store, catalog, Arc::clone(&status), stopped, acks));
        MirrorTask { spec, status, stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    pub fn status(&self) -> MirrorStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The storage kind of a mirror's acknowledged offsets (named after the mirror).
pub const ACKS_KIND: &str = "mirror-acks";

/// How often acknowledged offsets are written down (they only protect data from retention, so
/// an older value is safe: it keeps more).
const ACKS_PERSIST_EVERY: Duration = Duration::from_secs(5);

/// What the aggregation node acknowledged, per partition, kept so retention protects what it
/// lacks across restarts: `topic/partition` → (the topic's incarnation, offset).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Acks(BTreeMap<String, (uuid::Uuid, u64)>);

impl Acks {
    fn load(store: &Store, mirror: &str) -> Acks {
        let stored = store.resource(ACKS_KIND, mirror).ok().flatten();
        stored.and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
    }

    /// Writes the offsets down, with the filter's state at or below them.
    async fn save(&self, store: &Store, mirror: &str, filter: Option<&mut MirrorFilter>) {
        let Ok(document) = serde_json::to_vec(self) else { return };
        let write = DocumentWrite { kind: ACKS_KIND.into(), name: mirror.into(), document: Some(document) };
        let state = filter.as_deref().and_then(MirrorFilter::state_document);
        let writes = std::iter::once(write).chain(state.as_ref().map(|(write, _)| write.clone())).collect();
        match store.write_documents(writes).await {
            Ok(()) => {
                if let (Some(filter), Some((_, saved))) = (filter, state) {
                    filter.state_saved(saved);
                }
            }
            Err(e) => tracing::warn!(mirror, error = %e, "acknowledged offsets not saved; will retry"),
        }
    }

    /// A stateful filter replays from its saved state after a restart: retention must keep
    /// what lies above it, even where the aggregation node acknowledged more.
    fn hold_for_filter(&mut self, saved: &BTreeMap<String, (uuid::Uuid, u64)>) {
        for (partition, (incarnation, offset)) in &mut self.0 {
            if let Some(&(_, state_at)) = saved.get(partition).filter(|(of, _)| of == incarnation) {
                *offset = (*offset).min(state_at);
            }
        }
    }

    /// The acknowledged offset of `partition` in this incarnation (0: nothing yet).
    fn of(&self, partition: &Mirrored) -> u64 {
        match self.0.get(&partition.id.to_string()) {
            Some(&(incarnation, offset)) if incarnation == partition.topic_id => offset,
            _ => 0,
        }
    }

    /// Retention keeps what the aggregation node lacks, for every mirrored partition.
    fn protect(&self, store: &Store, mirror: &str, partitions: &[Mirrored]) {
        for partition in partitions {
            store.set_retention_floor(&holder(mirror), &partition.id.topic, partition.id.partition, self.of(partition));
        }
    }
}

/// The retention-floor holder name of a mirror.
pub(super) fn holder(mirror: &str) -> String {
    format!("mirror:{mirror}")
}

enum Ended {
    Stopped,
    /// The set of mirrored partitions changed: say `Hello` again.
    Reconnect,
    Failed(String),
}

async fn run(
    spec: MirrorSpec,
    store: Store,
    catalog: PluginCatalog,
    status: Arc<Mutex<MirrorStatus>>,
    mut stop: watch::Receiver<bool>,
    mut acks: Acks,
) {
    let mut backoff = MIRROR_BACKOFF_FIRST;
    let mut filter = None;
    loop {
        let started = Instant::now();
        let ended = match (&spec.filter, &filter) {
            // Nothing goes upstream unfiltered: without its plugin (not uploaded yet, say) the
            // mirror waits, showing why.
            (Some(stage), None) => match blocking(|| MirrorFilter::load(&catalog, &store, &spec.name, stage)) {
                Ok(loaded) => {
                    status.lock().unwrap_or_else(|p| p.into_inner()).filter = Some(loaded.label().to_owned());
                    filter = Some(loaded);
                    continue;
                }
                Err(e) => Ended::Failed(format!("filter {}: {e}", stage.label())),
            },
            _ => session(&spec, &store, &status, &mut stop, &mut acks, filter.as_mut()).await,
        };
        acks.save(&store, &spec.name, filter.as_mut()).await;
        let update = |change: &dyn Fn(&mut MirrorStatus)| change(&mut status.lock().unwrap_or_else(|p| p.into_inner()));
        match ended {
            Ended::Stopped => {
                update(&|s| s.link = "stopped".into());
                return;
            }
            Ended::Reconnect => backoff = MIRROR_BACKOFF_FIRST,
            Ended::Failed(error) => {
                tracing::warn!(mirror = %spec.name, upstream = %spec.upstream, %error, retry_in = ?backoff, "mirror link down");
                update(&|s| {
                    s.link = "waiting".into();
                    s.connected_since_ms = None;
                    s.last_error = Some(error.clone());
                });
                // A link that held a while starts over at the short back-off.
                if started.elapsed() > MIRROR_BACKOFF_MAX {
                    backoff = MIRROR_BACKOFF_FIRST;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {
                        update(&|s| s.link = "stopped".into());
                        return;
                    }
                }
                backoff = (backoff * 2).min(MIRROR_BACKOFF_MAX);
            }
        }
    }
}

/// A mirrored partition of the store.
#[derive(Clone)]
struct Mirrored {
    id: PartitionId,
    topic_id: uuid::Uuid,
    state: Arc<PartitionState>,
}

/// The partitions of every topic the mirror names, in a stable order.
fn mirrored(spec: &MirrorSpec, store: &Store) -> Vec<Mirrored> {
    let mut out = Vec::new();
    for topic in store.topics() {
        if !spec.mirrors(&topic.name) {
            continue;
        }
        for state in &topic.partitions {
            out.push(Mirrored {
                id: PartitionId { topic: topic.name.clone(), partition: state.index },
                topic_id: topic.id,
                state: Arc::clone(state),
            });
        }
    }
    out
}

impl Mirrored {
    fn filter_key(&self) -> FilterKey {
        FilterKey { partition: self.id.to_string(), incarnation: self.topic_id }
    }
}

fn same_partitions(a: &[Mirrored], b: &[Mirrored]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.id == y.id && x.topic_id == y.topic_id)
}

struct StoreSource<'a> {
    store: &'a Store,
    partitions: &'a [Mirrored],
    /// Per slot, the durable end the leader was last told.
    durable: &'a [u64],
    filter: Option<&'a mut MirrorFilter>,
}

impl LogSource for StoreSource<'_> {
    fn read(&mut self, slot: u32, offset: u64, max_bytes: usize) -> Result<Vec<u8>, ReadFailure> {
        let Some(mirrored) = self.partitions.get(slot as usize) else {
            return Err(ReadFailure::Failed(format!("no partition in slot {slot}")));
        };
        let raw = read_stored(self.store, mirrored, offset, max_bytes)?;
        let Some(filter) = self.filter.as_deref_mut().filter(|_| !raw.is_empty()) else { return Ok(raw) };
        // The leader's view, which it ships no further than: the store's may have moved since.
        let durable_end = self.durable.get(slot as usize).copied().unwrap_or(0);
        let store = self.store;
        filter.apply(
            &mirrored.filter_key(),
            (&mirrored.id.topic, mirrored.id.partition),
            (offset, durable_end, max_bytes),
            &raw,
            &mut |from, max| read_stored(store, mirrored, from, max),
        )
    }
}

/// Whole stored batches of `mirrored` from the one holding `offset`, about `max_bytes`.
fn read_stored(store: &Store, mirrored: &Mirrored, offset: u64, max_bytes: usize) -> Result<Vec<u8>, ReadFailure> {
    // The name may meanwhile be a new topic (deleted and made again): never ship its batches
    // into the old incarnation's copy.
    if store.topic(&mirrored.id.topic).is_none_or(|topic| topic.id != mirrored.topic_id) {
        return Err(ReadFailure::Failed(format!("topic {} was deleted", mirrored.id.topic)));
    }
    match store.read(&mirrored.id.topic, mirrored.id.partition, offset, max_bytes) {
        Ok(read) => Ok(read.records),
        Err(ReadError::OffsetOutOfRange { offset, log_start_offset, .. }) if offset < log_start_offset => {
            Err(ReadFailure::OutOfRange { log_start: log_start_offset })
        }
        Err(e) => Err(ReadFailure::Failed(e.to_string())),
    }
}

fn leader_config(spec: &MirrorSpec) -> LeaderConfig {
    LeaderConfig {
        edge_id: spec.edge_id.clone(),
        token: spec.token.clone(),
        window_bytes: spec.window_bytes,
        frame_bytes: MIRROR_FRAME_BYTES,
        rate_limit: spec.rate_limit_bytes_per_s,
        heartbeat_ms: MIRROR_HEARTBEAT.as_millis() as u64,
        link_timeout_ms: REPLICATION_LINK_TIMEOUT.as_millis() as u64,
        retransmit_ms: MIRROR_RETRANSMIT.as_millis() as u64,
    }
}

/// Store reads block: off the async worker when the runtime has others.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}

fn set_status(status: &Mutex<MirrorStatus>, change: impl FnOnce(&mut MirrorStatus)) {
    change(&mut status.lock().unwrap_or_else(|p| p.into_inner()));
}

/// One connection, from dialling to its end.
async fn session(
    spec: &MirrorSpec,
    store: &Store,
    status: &Mutex<MirrorStatus>,
    stop: &mut watch::Receiver<bool>,
    acks: &mut Acks,
    mut filter: Option<&mut MirrorFilter>,
) -> Ended {
    let partitions = mirrored(spec, store);
    if let Some(filter) = filter.as_deref_mut() {
        filter.retain(&partitions.iter().map(Mirrored::filter_key).collect::<Vec<_>>());
    }
    // Before anything else (the link may stay down for days): keep what upstream lacks.
    acks.protect(store, &spec.name, &partitions);
    if partitions.is_empty() {
        set_status(status, |s| {
            s.link = "waiting".into();
            s.last_error = Some(format!("no topic matches {:?} yet", spec.topics));
        });
        return tokio::select! {
            _ = tokio::time::sleep(MIRROR_TOPIC_SCAN) => Ended::Reconnect,
            _ = stop.changed() => Ended::Stopped,
        };
    }
    let logs = match partition_logs(store, &partitions).await {
        Ok(logs) => logs,
        Err(ended) => return ended,
    };
    set_status(status, |s| {
        s.link = "connecting".into();
        s.connects += 1;
    });
    let stream = match tokio::time::timeout(MIRROR_CONNECT_TIMEOUT, TcpStream::connect(&spec.upstream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Ended::Failed(format!("cannot connect to {}: {e}", spec.upstream)),
        Err(_) => return Ended::Failed(format!("cannot connect to {}: timed out", spec.upstream)),
    };
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let limit = Arc::new(std::sync::atomic::AtomicUsize::new(rill_core::limits::REPLICATION_FRAME_BYTES_MAX));
    let frames = wire::spawn_reader(reader, protocol::decode_to_leader, limit);
    let mut link = Link {
        spec,
        store,
        status,
        acks,
        filter,
        leader: Leader::new(leader_config(spec), logs, 0),
        durable: vec![0; partitions.len()],
        partitions,
        started: Instant::now(),
        acks_saved: Instant::now(),
        acks_changed: false,
        welcomed: false,
    };
    link.run(writer, frames, stop).await
}

/// Each mirrored partition as the leader starts from: its epochs, log start and durable end.
async fn partition_logs(store: &Store, partitions: &[Mirrored]) -> Result<Vec<PartitionLog>, Ended> {
    let mut logs = Vec::with_capacity(partitions.len());
    for mirrored in partitions {
        let state = match store.log_state(&mirrored.id.topic, mirrored.id.partition).await {
            Ok(state) => state,
            Err(e) => return Err(Ended::Failed(format!("reading {}: {e}", mirrored.id))),
        };
        let offsets = mirrored.state.offsets();
        logs.push(PartitionLog {
            id: mirrored.id.clone(),
            incarnation: mirrored.topic_id.into_bytes(),
            epochs: state.epochs().clone(),
            log_start: offsets.log_start_offset,
            durable_end: offsets.durable_offset,
        });
    }
    Ok(logs)
}

/// A connected link: the leader state machine and what the connection keeps beside it.
struct Link<'a> {
    spec: &'a MirrorSpec,
    store: &'a Store,
    status: &'a Mutex<MirrorStatus>,
    acks: &'a mut Acks,
    filter: Option<&'a mut MirrorFilter>,
    leader: Leader,
    partitions: Vec<Mirrored>,
    /// Per slot, the durable end the leader was last told.
    durable: Vec<u64>,
    started: Instant,
    acks_saved: Instant,
    acks_changed: bool,
    /// The aggregation node has welcomed a partition on this connection.
    welcomed: bool,
}

/// Any mirrored partition's offsets moving wakes the link (the tasks end with the set).
fn watch_offsets(partitions: &[Mirrored]) -> (Arc<Notify>, tokio::task::JoinSet<()>) {
    let moved = Arc::new(Notify::new());
    let mut watchers = tokio::task::JoinSet::new();
    for mirrored in partitions {
        let mut offsets = mirrored.state.subscribe();
        let moved = Arc::clone(&moved);
        watchers.spawn(async move {
            while offsets.changed().await.is_ok() {
                moved.notify_one();
            }
        });
    }
    (moved, watchers)
}

impl Link<'_> {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Ships what is ready and reacts to frames, timers and the partitions' offsets until the
    /// link ends.
    async fn run(
        &mut self,
        mut writer: tokio::net::tcp::OwnedWriteHalf,
        mut frames: tokio::sync::mpsc::Receiver<Result<Option<protocol::ToLeader>, wire::LinkError>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Ended {
        let (moved, _watchers) = watch_offsets(&self.partitions);
        let mut scan = tokio::time::interval(MIRROR_TOPIC_SCAN);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The status is refreshed at most every STATUS_EVERY, and always once things settle.
        let mut last_published = Instant::now().checked_sub(STATUS_EVERY).unwrap_or_else(Instant::now);
        let mut dirty = true;
        loop {
            if let Err(ended) = self.ship(&mut writer).await {
                return ended;
            }
            if let Some(reason) = self.leader.closed() {
                return Ended::Failed(reason.to_string());
            }
            self.note_welcome();
            if dirty && last_published.elapsed() >= STATUS_EVERY {
                publish(&self.leader, &self.partitions, self.status);
                (last_published, dirty) = (Instant::now(), false);
            }
            let wakeup =
                tokio::time::Instant::from_std(self.started + Duration::from_millis(self.leader.next_wakeup()));
            let publish_at = tokio::time::Instant::from_std(last_published + STATUS_EVERY);
            tokio::select! {
                _ = tokio::time::sleep_until(publish_at), if dirty => {}
                frame = frames.recv() => match frame {
                    Some(Ok(Some(message))) => {
                        // The frame arrived now, not at the last tick.
                        self.leader.tick(self.now_ms());
                        self.leader.step(message);
                    }
                    Some(Ok(None)) | None => return Ended::Failed("the aggregation node closed the connection".into()),
                    Some(Err(e)) => return Ended::Failed(e.to_string()),
                },
                _ = moved.notified() => {}
                _ = tokio::time::sleep_until(wakeup) => {}
                _ = scan.tick() => {
                    if !same_partitions(&self.partitions, &mirrored(self.spec, self.store)) {
                        publish(&self.leader, &self.partitions, self.status);
                        return Ended::Reconnect;
                    }
                }
                _ = stop.changed() => {
                    publish(&self.leader, &self.partitions, self.status);
                    return Ended::Stopped;
                }
            }
            self.leader.tick(self.now_ms());
            dirty = true;
        }
    }

    /// Tells the leader where each partition's log is, and sends what it has ready.
    async fn ship(&mut self, writer: &mut tokio::net::tcp::OwnedWriteHalf) -> Result<(), Ended> {
        for (slot, mirrored) in self.partitions.iter().enumerate() {
            let offsets = mirrored.state.offsets();
            self.leader.update_log(slot as u32, offsets.log_start_offset, offsets.durable_offset);
            self.durable[slot] = offsets.durable_offset;
        }
        if !self.leader.has_ready() {
            return Ok(());
        }
        let ready = blocking(|| {
            self.leader.ready(&mut StoreSource {
                store: self.store,
                partitions: &self.partitions,
                durable: &self.durable,
                filter: self.filter.as_deref_mut(),
            })
        });
        let bytes: u64 = ready
            .send
            .iter()
            .map(|m| if let protocol::ToFollower::Batches { bytes, .. } = m { bytes.len() as u64 } else { 0 })
            .sum();
        wire::write_all(writer, &ready.send, protocol::encode_to_follower)
            .await
            .map_err(|e| Ended::Failed(e.to_string()))?;
        self.leader.advance();
        note_events(self.spec, &self.partitions, &ready.events, self.status);
        let counts = self.filter.as_deref().map(MirrorFilter::counts).unwrap_or_default();
        set_status(self.status, |s| {
            s.bytes_sent += bytes;
            (s.records_filtered, s.batches_refused_by_filter) = (counts.records_dropped, counts.batches_refused);
        });
        self.note_acked(&ready.acked);
        if self.acks_changed && self.acks_saved.elapsed() >= ACKS_PERSIST_EVERY {
            self.acks.save(self.store, &self.spec.name, self.filter.as_deref_mut()).await;
            (self.acks_saved, self.acks_changed) = (Instant::now(), false);
        }
        Ok(())
    }

    /// Retention keeps what the copy lacks, and what a stateful filter would replay.
    fn note_acked(&mut self, acked: &[(u32, u64)]) {
        for &(slot, acked) in acked {
            let Some(partition) = self.partitions.get(slot as usize) else { continue };
            let mut floor = acked;
            if let Some(filter) = self.filter.as_deref_mut() {
                filter.acked(&partition.filter_key(), acked);
                floor = filter.replay_floor(&partition.filter_key()).map_or(acked, |at| at.min(acked));
            }
            self.acks.0.insert(partition.id.to_string(), (partition.topic_id, floor));
            let (topic, index) = (&partition.id.topic, partition.id.partition);
            self.store.set_retention_floor(&holder(&self.spec.name), topic, index, floor);
            self.acks_changed = true;
        }
    }

    /// Says "connected" once the aggregation node has welcomed a partition.
    fn note_welcome(&mut self) {
        let welcomed = (0..self.partitions.len())
            .any(|slot| self.leader.slot_status(slot as u32).is_some_and(|s| !matches!(s.phase, SlotPhase::Waiting)));
        if !welcomed || self.welcomed {
            return;
        }
        self.welcomed = true;
        let (spec, partitions) = (self.spec, self.partitions.len());
        tracing::info!(mirror = %spec.name, upstream = %spec.upstream, partitions, "mirror connected");
        set_status(self.status, |s| {
            s.link = "connected".into();
            s.connected_since_ms = Some(crate::clock::now_ms());
            s.last_error = None;
        });
    }
}

/// How often a connection refreshes its status (cheap, but not per frame).
const STATUS_EVERY: Duration = Duration::from_millis(200);

fn note_events(spec: &MirrorSpec, partitions: &[Mirrored], events: &[LeaderEvent], status: &Mutex<MirrorStatus>) {
    let name = |slot: u32| partitions.get(slot as usize).map_or_else(|| format!("slot {slot}"), |p| p.id.to_string());
    for event in events {
        match event {
            LeaderEvent::Truncating { slot, from, to } => {
                tracing::warn!(mirror = %spec.name, partition = %name(*slot), from, to, "the upstream copy diverged and is cut back");
            }
            LeaderEvent::Skipped { slot, from, to, reason: GapReason::Deleted } => {
                tracing::error!(
                    mirror = %spec.name, partition = %name(*slot), from, to, lost = to - from,
                    "records deleted before they were mirrored: they are missing upstream"
                );
                status.lock().unwrap_or_else(|p| p.into_inner()).records_lost += to - from;
            }
            LeaderEvent::Skipped { slot, from, to, reason: GapReason::Hole } => {
                tracing::debug!(mirror = %spec.name, partition = %name(*slot), from, to, "gap in the edge log skipped");
            }
            LeaderEvent::SlotStopped { slot, reason } => {
                tracing::warn!(mirror = %spec.name, partition = %name(*slot), %reason, "partition not mirrored");
            }
        }
    }
}

fn publish(leader: &Leader, partitions: &[Mirrored], status: &Mutex<MirrorStatus>) {
    let rows: Vec<MirrorPartitionStatus> = partitions
        .iter()
        .enumerate()
        .filter_map(|(slot, mirrored)| {
            let slot_status = leader.slot_status(slot as u32)?;
            let (state, error) = match slot_status.phase {
                SlotPhase::Waiting => ("waiting", None),
                SlotPhase::Streaming { started: false } => ("starting", None),
                SlotPhase::Streaming { started: true } => ("streaming", None),
                SlotPhase::Stopped(reason) => ("stopped", Some(reason)),
            };
            Some(MirrorPartitionStatus {
                topic: mirrored.id.topic.clone(),
                partition: mirrored.id.partition,
                leader_offset: slot_status.durable_end,
                acked_offset: slot_status.acked,
                lag_records: slot_status.durable_end.saturating_sub(slot_status.acked),
                // Read from the store when someone asks (see `with_lag`), not on every refresh.
                lag_bytes: 0,
                lag_seconds: 0.0,
                state: state.to_owned(),
                error,
            })
        })
        .collect();
    status.lock().unwrap_or_else(|p| p.into_inner()).partitions = rows;
}

/// Fills in the bytes (estimated from the partition's bytes per offset) and seconds (the age of
/// the first unacknowledged batch, by its timestamp) a partition's copy is behind.
pub(super) fn with_lag(store: &Store, mut row: MirrorPartitionStatus) -> MirrorPartitionStatus {
    let state = store.topic(&row.topic).and_then(|topic| topic.partition(row.partition));
    let Some(state) = state.filter(|_| row.lag_records > 0) else { return row };
    let offsets = state.offsets();
    let held = offsets.high_watermark.saturating_sub(offsets.log_start_offset).max(1);
    row.lag_bytes = (u128::from(offsets.size_bytes) * u128::from(row.lag_records) / u128::from(held)) as u64;
    let oldest = store
        .read(&row.topic, row.partition, row.acked_offset.max(offsets.log_start_offset), 1)
        .ok()
        .and_then(|read| rill_core::batch::batches(&read.records).next()?.ok().map(|b| b.header().base_timestamp));
    row.lag_seconds = oldest.map_or(0.0, |at| crate::clock::now_ms().saturating_sub(at).max(0) as f64 / 1000.0);
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stateful_filter_holds_retention_at_its_saved_state() {
        let (this, other) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let mut acks = Acks(BTreeMap::from([("t/0".to_owned(), (this, 100)), ("t/1".to_owned(), (this, 100))]));
        let saved = BTreeMap::from([("t/0".to_owned(), (this, 40)), ("t/1".to_owned(), (other, 10))]);
        acks.hold_for_filter(&saved);
        assert_eq!(acks.0["t/0"], (this, 40), "a restart replays from 40: keep it");
        assert_eq!(acks.0["t/1"], (this, 100), "a state of another incarnation holds nothing");
    }
}
