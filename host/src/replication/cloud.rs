//! The aggregation node: a listener for edges, and per connection a [`Follower`] whose writes go
//! to the copy topics.
//!
//! One connection per edge at a time: a new connection of the same edge (the old one died on a
//! bad link and the edge already reconnected) stops the old one and waits until its last commit
//! returned, so the new `Welcome` states the copy as it is on disk.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rill_core::replication::protocol;
use rill_core::replication::{
    Follower, FollowerConfig, FollowerEvent, FollowerWrite, GapReason, HelloRequest, SlotInit,
};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::listener::{Accepted, accept_within};
use uuid::Uuid;

use super::copies::{self, GAP_KIND};
use super::spec::ReplicationSection;
use super::wire;
use crate::limits::{
    FOLLOWER_PENDING_BYTES_MAX, REPLICATION_CONNECTIONS_MAX, REPLICATION_HANDSHAKE_TIMEOUT,
    REPLICATION_HELLO_BYTES_MAX, REPLICATION_LINK_TIMEOUT,
};
use crate::storage::{AppendError, DocumentWrite, DurabilityPolicy, ReplicaReset, Store};

/// The replication listener, bound and not yet accepting.
#[derive(Debug)]
pub struct ReplicationListener {
    listener: TcpListener,
    cloud: Arc<Cloud>,
}

/// What the aggregation node knows of its edges, shared with the control plane.
#[derive(Debug)]
pub struct Cloud {
    store: Store,
    section: ReplicationSection,
    /// The connection serving each edge (at most one).
    edges: Mutex<HashMap<String, EdgeConnection>>,
    status: Mutex<BTreeMap<String, EdgeStatus>>,
    next_connection: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct EdgeConnection {
    id: u64,
    stop: watch::Sender<bool>,
    /// Held by the connection until its last commit returned.
    done: Arc<tokio::sync::Mutex<()>>,
}

/// One edge as the status page shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EdgeStatus {
    pub edge: String,
    pub connected: bool,
    pub peer: Option<String>,
    pub connected_since_ms: Option<i64>,
    pub last_error: Option<String>,
    pub partitions: Vec<CopyStatus>,
    pub gaps: u64,
}

/// One partition's copy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyStatus {
    pub edge_topic: String,
    pub partition: u32,
    pub copy_topic: Option<String>,
    pub log_end: u64,
    pub durable_end: u64,
    pub stopped: Option<String>,
}

impl ReplicationListener {
    pub async fn bind(store: Store, section: ReplicationSection) -> std::io::Result<ReplicationListener> {
        let listener = TcpListener::bind(section.listen).await?;
        let cloud = Arc::new(Cloud {
            store,
            section,
            edges: Mutex::new(HashMap::new()),
            status: Mutex::new(BTreeMap::new()),
            next_connection: 0.into(),
        });
        Ok(ReplicationListener { listener, cloud })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn cloud(&self) -> Arc<Cloud> {
        Arc::clone(&self.cloud)
    }

    /// Accepts edges until `stopping` turns true.
    pub async fn run(self, mut stopping: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(REPLICATION_CONNECTIONS_MAX));
        let mut connections = tokio::task::JoinSet::new();
        while let Some(Accepted { socket, peer, permit }) =
            accept_within(&self.listener, &slots, &mut stopping, &mut connections, "replication", || {}).await
        {
            let (cloud, stopping) = (Arc::clone(&self.cloud), stopping.clone());
            connections.spawn(async move {
                serve_connection(cloud, socket, peer, stopping).await;
                drop(permit);
            });
        }
        // Connections finish their commit and close.
        while connections.join_next().await.is_some() {}
    }
}

impl Cloud {
    /// Every edge that connected since the process started, and every copy stored.
    pub fn status(&self) -> Vec<EdgeStatus> {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for copy in copies::all(&self.store) {
            status
                .entry(copy.edge.clone())
                .or_insert_with(|| EdgeStatus { edge: copy.edge.clone(), ..EdgeStatus::default() });
        }
        status.into_values().collect()
    }

    fn update_status(&self, edge: &str, change: impl FnOnce(&mut EdgeStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let entry = status
            .entry(edge.to_owned())
            .or_insert_with(|| EdgeStatus { edge: edge.to_owned(), ..EdgeStatus::default() });
        change(entry);
    }

    /// Makes this connection the edge's only one: stops the previous and waits for its commits.
    async fn take_edge(&self, edge: &str) -> (u64, watch::Receiver<bool>, tokio::sync::OwnedMutexGuard<()>) {
        let id = self.next_connection.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (stop, stopped) = watch::channel(false);
        let done = Arc::new(tokio::sync::Mutex::new(()));
        // Held before anyone can see it: a later connection waits for this one, which waits for
        // the one before, so no two ever write at once.
        let guard = Arc::clone(&done).try_lock_owned().expect("a new mutex is free");
        let previous = {
            let mut edges = self.edges.lock().unwrap_or_else(|p| p.into_inner());
            edges.insert(edge.to_owned(), EdgeConnection { id, stop, done: Arc::clone(&done) })
        };
        if let Some(previous) = previous {
            let _ = previous.stop.send(true);
            let _ = previous.done.lock().await;
        }
        (id, stopped, guard)
    }

    fn release_edge(&self, edge: &str, id: u64) {
        let mut edges = self.edges.lock().unwrap_or_else(|p| p.into_inner());
        if edges.get(edge).is_some_and(|c| c.id == id) {
            edges.remove(edge);
        }
    }
}

/// An accepted edge's connection: which copy each slot writes to.
struct Session {
    edge: String,
    id: u64,
    copies: Vec<Option<(String, u32)>>,
    hello: HelloRequest,
    stopped: watch::Receiver<bool>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// A ready's writes on their way to disk.
type Commit = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CopyWriteError>> + Send>>;

/// Why a copy's writes were not stored (the connection ends; the edge sends them again).
#[derive(Debug, thiserror::Error)]
enum CopyWriteError {
    #[error("no copy for slot {0}")]
    NoCopy(u32),
    #[error(transparent)]
    Store(#[from] AppendError),
}

/// How often a connection refreshes its status (cheap, but not per frame).
const STATUS_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

fn now_ms(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// One edge's connection: the sans-IO follower driven by frames, its commit, its timers and the
/// node's shutdown, until the link ends. The select loop is long because every branch changes the
/// same few locals (follower, commit, status timing); the steps inside it are functions.
async fn serve_connection(cloud: Arc<Cloud>, stream: TcpStream, peer: SocketAddr, mut stopping: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    // Until the edge is accepted, only a Hello's worth per frame, and only for a while: a peer
    // without the token cannot make this node buffer megabytes or hold a connection.
    let limit = Arc::new(AtomicUsize::new(REPLICATION_HELLO_BYTES_MAX));
    let mut frames = wire::spawn_reader(reader, protocol::decode_to_follower, Arc::clone(&limit));
    let handshake_until = tokio::time::Instant::now() + REPLICATION_HANDSHAKE_TIMEOUT;
    let started = Instant::now();
    let config = FollowerConfig {
        pending_bytes_max: FOLLOWER_PENDING_BYTES_MAX,
        link_timeout_ms: REPLICATION_LINK_TIMEOUT.as_millis() as u64,
    };
    let mut follower = Follower::new(config, 0);
    let mut session: Option<Session> = None;
    let mut commit: Option<Commit> = None;
    // The status is refreshed at most every STATUS_EVERY, and always once things settle.
    let mut last_published = started.checked_sub(STATUS_EVERY).unwrap_or(started);
    let mut dirty = true;
    let error: Option<String> = loop {
        let failed =
            drain_ready(&cloud, &mut follower, &mut session, &mut commit, &mut writer, &limit, peer).await.err();
        if let Some(session) = &session
            && dirty
            && last_published.elapsed() >= STATUS_EVERY
        {
            publish(&cloud, session, &follower);
            last_published = Instant::now();
            dirty = false;
        }
        if let Some(e) = failed {
            break Some(e.to_string());
        }
        if let Some(reason) = follower.closed() {
            break Some(reason.to_owned());
        }
        let wakeup = tokio::time::Instant::from_std(started + std::time::Duration::from_millis(follower.next_wakeup()));
        let mut stopped = session.as_ref().map(|s| s.stopped.clone());
        let publish_at = tokio::time::Instant::from_std(last_published + STATUS_EVERY);
        tokio::select! {
            _ = tokio::time::sleep_until(publish_at), if dirty && session.is_some() => {}
            _ = tokio::time::sleep_until(handshake_until), if session.is_none() => {
                break Some(format!("no accepted Hello within {REPLICATION_HANDSHAKE_TIMEOUT:?}"));
            }
            frame = frames.recv() => match frame {
                Some(Ok(Some(message))) => {
                    // The frame arrived now, not at the last tick.
                    follower.tick(now_ms(started));
                    follower.step(message);
                }
                Some(Ok(None)) | None => break None,
                Some(Err(e)) => break Some(e.to_string()),
            },
            result = async { commit.as_mut().expect("guarded").await }, if commit.is_some() => {
                commit = None;
                match result {
                    Ok(()) => follower.advance(),
                    Err(e) => break Some(format!("storing the copy failed: {e}")),
                }
            }
            _ = tokio::time::sleep_until(wakeup) => follower.tick(now_ms(started)),
            _ = async { stopped.as_mut().expect("guarded").changed().await }, if stopped.is_some() => {
                break Some("replaced by a new connection of the same edge".into());
            }
            _ = stopping.changed() => break None,
        }
        follower.tick(now_ms(started));
        dirty = true;
    };
    // The copy must be on disk as the next connection will state it: finish the commit first.
    let last = match commit.take() {
        Some(commit) => commit.await.err().map(|e| e.to_string()),
        None => None,
    };
    let error = error.or(last);
    if let Some(session) = session {
        disconnected(&cloud, &session, &follower, peer, error);
    }
}

/// Moves everything the follower has ready: answers a Hello (accepting the edge, or refusing
/// it), sends what it has to send, notes its events and starts the commit of its writes. An
/// error is the link's.
async fn drain_ready(
    cloud: &Arc<Cloud>,
    follower: &mut Follower,
    session: &mut Option<Session>,
    commit: &mut Option<Commit>,
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    limit: &AtomicUsize,
    peer: SocketAddr,
) -> Result<(), wire::LinkError> {
    while follower.has_ready() {
        let ready = follower.ready();
        if let Some(hello) = ready.hello {
            match accept(cloud, hello, peer).await {
                Ok((accepted, slots)) => {
                    follower.accept(slots);
                    // The partitions show on the status page from the first moment.
                    publish(cloud, &accepted, follower);
                    *session = Some(accepted);
                    limit.store(rill_core::limits::REPLICATION_FRAME_BYTES_MAX, Ordering::Release);
                }
                Err(reason) => {
                    tracing::warn!(%peer, %reason, "replication connection refused");
                    follower.refuse(reason);
                }
            }
        }
        wire::write_all(writer, &ready.send, protocol::encode_to_leader).await?;
        if let Some(session) = session.as_ref() {
            note_events(cloud, session, ready.events);
        }
        if let (false, Some(session)) = (ready.writes.is_empty(), session.as_ref()) {
            let store = cloud.store.clone();
            let copies = session.copies.clone();
            *commit = Some(Box::pin(apply(store, copies, ready.writes)));
        }
    }
    Ok(())
}

/// An accepted edge's connection ended (with `error`, or closed).
fn disconnected(cloud: &Cloud, session: &Session, follower: &Follower, peer: SocketAddr, error: Option<String>) {
    publish(cloud, session, follower);
    tracing::info!(edge = %session.edge, %peer, reason = error.as_deref().unwrap_or("closed"), "edge disconnected");
    cloud.update_status(&session.edge, |status| {
        status.connected = false;
        if error.is_some() {
            status.last_error = error.clone();
        }
    });
    cloud.release_edge(&session.edge, session.id);
}

/// Checks the edge and finds (or makes) each partition's copy.
async fn accept(cloud: &Cloud, hello: HelloRequest, peer: SocketAddr) -> Result<(Session, Vec<SlotInit>), String> {
    if !cloud.section.accepts(&hello.edge_id, &hello.token) {
        return Err(format!(
            "edge {:?} is not accepted here: unknown edge id or wrong token (see [[replication.edges]])",
            hello.edge_id
        ));
    }
    let edge = hello.edge_id.clone();
    let (id, stopped, guard) = cloud.take_edge(&edge).await;
    // Partitions per edge topic, so a copy gets enough of them at once.
    let mut needed: BTreeMap<(&str, Uuid), u32> = BTreeMap::new();
    for partition in &hello.partitions {
        let key = (partition.id.topic.as_str(), Uuid::from_bytes(partition.incarnation));
        let count = needed.entry(key).or_default();
        *count = (*count).max(partition.id.partition.saturating_add(1));
    }
    let mut resolved: BTreeMap<(&str, Uuid), Result<String, String>> = BTreeMap::new();
    for (&(topic, incarnation), &partitions) in &needed {
        let copy = copies::resolve(&cloud.store, &cloud.section, &edge, topic, incarnation, partitions).await;
        if let Err(reason) = &copy {
            tracing::warn!(edge = %edge, topic, %reason, "edge topic not mirrored");
        }
        resolved.insert((topic, incarnation), copy);
    }
    if cloud.store.durability() != DurabilityPolicy::EveryCommit
        && let Err(e) = cloud.store.flush().await
    {
        // The Welcome states the copies; the edge takes that as durable and may delete below it.
        cloud.release_edge(&edge, id);
        return Err(format!("the copies cannot be made durable: {e}"));
    }
    let mut slots = Vec::with_capacity(hello.partitions.len());
    let mut copies = Vec::with_capacity(hello.partitions.len());
    for partition in &hello.partitions {
        let key = (partition.id.topic.as_str(), Uuid::from_bytes(partition.incarnation));
        match &resolved[&key] {
            Ok(copy) => match cloud.store.log_state(copy, partition.id.partition).await {
                Ok(state) => {
                    slots.push(SlotInit::Follow(state));
                    copies.push(Some((copy.clone(), partition.id.partition)));
                }
                Err(e) => {
                    slots.push(SlotInit::Stopped(format!("copy {copy:?} cannot be read: {e}")));
                    copies.push(None);
                }
            },
            Err(reason) => {
                slots.push(SlotInit::Stopped(reason.clone()));
                copies.push(None);
            }
        }
    }
    tracing::info!(edge = %edge, %peer, partitions = hello.partitions.len(), "edge connected");
    cloud.update_status(&edge, |status| {
        status.connected = true;
        status.peer = Some(peer.to_string());
        status.connected_since_ms = Some(crate::clock::now_ms());
    });
    let hello = HelloRequest { token: String::new(), ..hello };
    Ok((Session { edge, id, copies, hello, stopped, _guard: guard }, slots))
}

/// Applies one ready's writes in order: appends of several partitions share a commit; a
/// truncation or gap is its own durable transaction. Durable before it returns.
async fn apply(
    store: Store,
    copies: Vec<Option<(String, u32)>>,
    writes: Vec<FollowerWrite>,
) -> Result<(), CopyWriteError> {
    let copy_of = |slot: u32| -> Result<&(String, u32), CopyWriteError> {
        copies.get(slot as usize).and_then(Option::as_ref).ok_or(CopyWriteError::NoCopy(slot))
    };
    let mut tickets = Vec::new();
    for write in writes {
        match write {
            FollowerWrite::Append { slot, batches } => {
                let (topic, partition) = copy_of(slot)?;
                tickets.push(store.enqueue_replica(topic, *partition, batches).await?);
            }
            FollowerWrite::Truncate { slot, offset } => {
                wait_all(&mut tickets).await?;
                let (topic, partition) = copy_of(slot)?;
                store.reset_replica(topic, *partition, ReplicaReset::TruncateTo(offset), None).await?;
            }
            FollowerWrite::Skip { slot, from, to, reason } => {
                wait_all(&mut tickets).await?;
                let (topic, partition) = copy_of(slot)?;
                let record = serde_json::json!({
                    "from": from, "to": to, "reason": gap_reason(reason), "at_ms": crate::clock::now_ms(),
                });
                let document = DocumentWrite {
                    kind: GAP_KIND.into(),
                    name: format!("{topic}/{partition}/{from:020}"),
                    document: Some(record.to_string().into_bytes()),
                };
                store.reset_replica(topic, *partition, ReplicaReset::SkipTo(to), Some(document)).await?;
            }
        }
    }
    wait_all(&mut tickets).await?;
    if store.durability() != DurabilityPolicy::EveryCommit {
        // The edge may drop what the copy acknowledges: it must be on disk, whatever the policy.
        store.flush().await?;
    }
    Ok(())
}

async fn wait_all(tickets: &mut Vec<crate::storage::AppendTicket>) -> Result<(), AppendError> {
    for ticket in tickets.drain(..) {
        ticket.outcome().await?;
    }
    Ok(())
}

fn gap_reason(reason: GapReason) -> &'static str {
    match reason {
        GapReason::Deleted => "deleted on the edge before it was mirrored",
        GapReason::Hole => "no records on the edge",
    }
}

fn note_events(cloud: &Cloud, session: &Session, events: Vec<FollowerEvent>) {
    let name = |slot: u32| {
        session.hello.partitions.get(slot as usize).map_or_else(|| format!("slot {slot}"), |p| p.id.to_string())
    };
    for event in events {
        match event {
            FollowerEvent::Truncated { slot, from, to } => {
                tracing::warn!(edge = %session.edge, partition = %name(slot), from, to, "copy diverged from the edge: truncated");
            }
            FollowerEvent::Gap { slot, from, to, reason } => {
                tracing::warn!(edge = %session.edge, partition = %name(slot), from, to, reason = gap_reason(reason), "gap in the copy");
                cloud.update_status(&session.edge, |status| status.gaps += 1);
            }
            FollowerEvent::SlotStopped { slot, reason } => {
                tracing::warn!(edge = %session.edge, partition = %name(slot), %reason, "partition no longer mirrored");
            }
        }
    }
}

fn publish(cloud: &Cloud, session: &Session, follower: &Follower) {
    let partitions = session
        .hello
        .partitions
        .iter()
        .enumerate()
        .map(|(slot, partition)| {
            let status = follower.slot_status(slot as u32);
            CopyStatus {
                edge_topic: partition.id.topic.clone(),
                partition: partition.id.partition,
                copy_topic: session.copies.get(slot).and_then(|c| c.as_ref()).map(|(topic, _)| topic.clone()),
                log_end: status.as_ref().map_or(0, |s| s.log_end),
                durable_end: status.as_ref().map_or(0, |s| s.durable_end),
                stopped: status.and_then(|s| s.stopped),
            }
        })
        .collect();
    cloud.update_status(&session.edge, |status| status.partitions = partitions);
}
