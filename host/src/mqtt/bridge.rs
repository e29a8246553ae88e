//! One bridge: an MQTT client with a persistent session and manual acknowledgements, and a
//! worker that turns what arrives into records and appends them durably before acknowledging.
//!
//! - The poll task drives rumqttc's event loop: it subscribes again whenever the broker says no
//!   session is present (rumqttc does not), and hands publishes to the worker through a channel of
//!   [`MQTT_INFLIGHT_MAX`]. When the worker falls behind, the channel fills and the poll task
//!   holds what keeps arriving while it goes on serving the connection (acknowledgements go out
//!   at once): QoS 1 deliveries are bounded by the MQTT broker's in-flight window (mosquitto's
//!   `max_inflight_messages`), and the broker queues the rest for the session; QoS 0 messages
//!   past [`MQTT_STASH_MAX`] are dropped and counted.
//! - The worker gathers what arrived within the batch window (bounded by count and bytes), calls
//!   the ingest plugin once per MQTT topic in the batch, partitions the records, appends them all
//!   (and the dead letters) in one transaction, and only then acknowledges the messages. A crash
//!   before the acknowledgement means redelivery, never loss; duplicates are bounded by the
//!   in-flight window, and none are stored when messages carry ids (see [`super::dedup`]).
//!
//! MQTT 3.1.1 and 5 are both spoken, through [`super::client`].

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::client::{self, Client, Connection, Happened, Received};
use super::dedup::{self, DedupWindow};
use super::session;
use super::spec::{BridgeSpec, IdSource, Template};
use crate::limits::{MQTT_INFLIGHT_MAX, MQTT_RECONNECT_BACKOFF_MAX, MQTT_RECONNECT_BACKOFF_MIN, MQTT_STASH_MAX};
use crate::pipelines::StageSpec;
use crate::pipelines::batches::{self, OwnedRecord};
use crate::pipelines::load_instance;
use crate::plugins::{PluginCatalog, PluginInstance, PluginLimits, SourceMessage};
use crate::storage::{AppendError, DocumentWrite, Documents, Store, TopicConfig, TopicError};

/// Headers on a dead-lettered MQTT message.
pub mod headers {
    pub const MQTT_TOPIC: &str = "rill.dlq.mqtt.topic";
    pub const ERROR: &str = "rill.dlq.error";
    pub const PLUGIN: &str = "rill.dlq.plugin";
    pub const BRIDGE: &str = "rill.dlq.bridge";
}

/// What a bridge has done, read by the admin API, the status page and `/metrics`.
#[derive(Debug, Default)]
pub struct BridgeStats {
    pub connected: AtomicBool,
    pub messages_in: AtomicU64,
    pub records_out: AtomicU64,
    pub messages_dead_lettered: AtomicU64,
    pub plugin_failures: AtomicU64,
    pub connects: AtomicU64,
    /// QoS 0 messages dropped because the bridge was behind.
    pub qos0_dropped: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    pub messages_redelivered: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl BridgeStats {
    fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }
}

pub(super) struct Bridge {
    pub spec: BridgeSpec,
    pub store: Store,
    pub catalog: PluginCatalog,
    pub stats: Arc<BridgeStats>,
    pub stopping: watch::Receiver<bool>,
}

impl Bridge {
    pub(super) async fn run(mut self) {
        let name = self.spec.name.clone();
        // Without its plugins (and its remembered ids) the bridge does not connect: the MQTT
        // broker keeps queueing.
        let mut wait = MQTT_RECONNECT_BACKOFF_MIN;
        let (plugins, dedup, tls) = loop {
            match self.load().await {
                Ok(loaded) => break loaded,
                Err(e) => {
                    tracing::warn!(bridge = %name, error = %e, retry_ms = wait.as_millis() as u64, "bridge cannot start (upload its plugins with `rill plugin upload`); retrying");
                    self.stats.set_error(Some(e));
                    if self.sleep_or_stop(wait).await {
                        return;
                    }
                    wait = (wait * 2).min(MQTT_RECONNECT_BACKOFF_MAX);
                }
            }
        };
        let connected = self
            .spec
            .address()
            .map_err(|e| e.to_string())
            .and_then(|(host, port, _)| client::connect(&self.spec, host, port, tls));
        let (client, connection) = match connected {
            Ok(pair) => pair,
            Err(e) => {
                self.stats.set_error(Some(e));
                return;
            }
        };
        let (handoff, inbox) = mpsc::channel(MQTT_INFLIGHT_MAX);
        let session = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            session: Arc::clone(&session),
            template: Template::parse(&self.spec.target).expect("checked when the bridge was stored"),
            spec: self.spec.clone(),
            store: self.store.clone(),
            stats: Arc::clone(&self.stats),
            client: client.clone(),
            plugins,
            dedup,
            stopping: self.stopping.clone(),
        };
        let mut worker = tokio::spawn(worker.run(inbox));
        self.poll(connection, &client, handoff, &session, &mut worker).await;
        self.stats.connected.store(false, Ordering::Relaxed);
        tracing::info!(bridge = %name, "bridge stopped");
    }

    /// The bridge's plugins, the ids it remembers when it deduplicates, and its TLS settings
    /// (whose files may be replaced while it waits).
    async fn load(&self) -> Result<(Plugins, Option<Dedup>, Option<Arc<rustls::ClientConfig>>), String> {
        let (catalog, ingest, partitioner) =
            (self.catalog.clone(), self.spec.ingest.clone(), self.spec.partitioner.clone());
        let (store, spec) = (self.store.clone(), self.spec.clone());
        tokio::task::spawn_blocking(move || {
            let plugins = (|| {
                let (ingest_label, instance) = load_instance(&catalog, &ingest, PluginLimits::default())?;
                let partitioner = match partitioner {
                    Some(stage) => Some(load_instance(&catalog, &stage, PluginLimits::default())?),
                    None => None,
                };
                Ok::<_, String>(Plugins {
                    catalog,
                    ingest_stage: ingest,
                    ingest: Some(instance),
                    ingest_label,
                    partitioner,
                })
            })()
            .map_err(|e| format!("plugins cannot be loaded: {e}"))?;
            let dedup = match &spec.dedup {
                Some(dedup) => Some(Dedup {
                    source: dedup.source().map_err(|e| e.to_string())?,
                    generation: store.generation(),
                    window: DedupWindow::load(&store, &spec.name, dedup.window)
                        .map_err(|e| format!("remembered ids cannot be read: {e}"))?,
                }),
                None => None,
            };
            let tls = spec.tls_config().map_err(|e| format!("TLS settings: {e}"))?;
            Ok((plugins, dedup, tls))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Drives the connection until the broker stops; reconnects with back-off.
    async fn poll(
        &mut self,
        mut connection: Connection,
        client: &Client,
        handoff: mpsc::Sender<Handoff>,
        session: &AtomicU64,
        worker: &mut tokio::task::JoinHandle<()>,
    ) {
        let name = self.spec.name.clone();
        let filters = session::sorted(self.spec.subscriptions.iter().map(|s| (s.filter.clone(), s.qos)).collect());
        // The session is the broker's: noted per broker and client id.
        let session_key = format!("{} {}", self.spec.url, self.spec.client_id());
        let mut backoff = MQTT_RECONNECT_BACKOFF_MIN;
        // Publishes received while the worker's channel is full. The connection is always served
        // (the worker's acknowledgements must go out, or it would wait on them while this task
        // waits on it): QoS 1 messages are bounded by the MQTT broker's in-flight window, QoS 0
        // messages past MQTT_STASH_MAX are dropped (at most once) and counted.
        let mut stash: VecDeque<Handoff> = VecDeque::new();
        // A SUBSCRIBE is out: note the filters once the broker grants them.
        let mut awaiting_grant = false;
        loop {
            while let Some(publish) = stash.pop_front() {
                match handoff.try_send(publish) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(publish)) => {
                        stash.push_front(publish);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            let event = tokio::select! {
                event = connection.poll() => event,
                room = handoff.reserve(), if !stash.is_empty() => {
                    if let (Ok(room), Some(publish)) = (room, stash.pop_front()) {
                        room.send(publish);
                    }
                    continue;
                }
                _ = self.stopping.wait_for(|stop| *stop) => break,
            };
            match event {
                Ok(Happened::Connected { session_present }) => {
                    backoff = MQTT_RECONNECT_BACKOFF_MIN;
                    self.stats.connected.store(true, Ordering::Relaxed);
                    self.stats.set_error(None);
                    BridgeStats::count(&self.stats.connects, 1);
                    tracing::info!(bridge = %name, session_present, "connected to the MQTT broker");
                    // A new connection: what arrived on the old one is not acknowledged (see
                    // `Handoff`); a kept session sends it again, and its copies are.
                    session.fetch_add(1, Ordering::AcqRel);
                    // The broker kept no session (first connect, or it lost its state), or one
                    // subscribed to other filters (the bridge was added again with the same
                    // client id): subscribe (rumqttc does not), or nothing would arrive.
                    let granted = session::granted(&self.store, &session_key);
                    let (subscribe, unsubscribe) = session::plan(session_present, &filters, granted.as_ref());
                    // Unsubscribing first: the broker handles a connection's packets in order, so
                    // the SubAck that follows also says the old filters are gone.
                    let mut unsubscribed = true;
                    for filter in unsubscribe {
                        tracing::info!(bridge = %name, %filter, "unsubscribing from a filter the bridge no longer has");
                        if let Err(e) = client.try_unsubscribe(&filter) {
                            tracing::warn!(bridge = %name, %filter, error = %e, "cannot unsubscribe");
                            unsubscribed = false;
                        }
                    }
                    if !subscribe.is_empty() {
                        match client.try_subscribe(&subscribe) {
                            Ok(()) => awaiting_grant = unsubscribed,
                            Err(e) => {
                                tracing::error!(bridge = %name, error = %e, "cannot subscribe");
                                self.stats.set_error(Some(format!("cannot subscribe: {e}")));
                            }
                        }
                    }
                }
                Ok(Happened::Message(publish)) => {
                    if publish.qos() == 0 && stash.len() >= MQTT_STASH_MAX {
                        // At most once, under overload: dropped, and counted.
                        BridgeStats::count(&self.stats.qos0_dropped, 1);
                        continue;
                    }
                    if publish.redelivered() {
                        BridgeStats::count(&self.stats.messages_redelivered, 1);
                    }
                    // QoS 1: the MQTT broker sends at most its in-flight window of messages not
                    // yet acknowledged, which bounds the stash.
                    stash.push_back((session.load(Ordering::Acquire), publish));
                }
                Ok(Happened::Subscribed { refused }) if refused.is_empty() => {
                    tracing::info!(bridge = %name, "subscribed");
                    if std::mem::take(&mut awaiting_grant) {
                        let (store, key, filters) = (self.store.clone(), session_key.clone(), filters.clone());
                        let name = name.clone();
                        tokio::spawn(async move {
                            if let Err(error) = session::note_granted(&store, &key, &filters).await {
                                tracing::warn!(bridge = %name, %error, "cannot note the subscriptions granted");
                            }
                        });
                    }
                }
                Ok(Happened::Subscribed { refused }) => {
                    // Nothing arrives for a refused filter: say so where operators look.
                    let refused: Vec<String> = refused
                        .iter()
                        .map(|(i, why)| format!("{:?}: {why}", filters.get(*i).map_or("?", |(f, _)| f.as_str())))
                        .collect();
                    let error = format!("the MQTT broker refused subscriptions: {}", refused.join(", "));
                    tracing::error!(bridge = %name, %error, "subscription refused");
                    self.stats.set_error(Some(error));
                }
                Ok(_) => {}
                Err(e) => {
                    let e = client::explain(e, &self.spec);
                    self.stats.connected.store(false, Ordering::Relaxed);
                    self.stats.set_error(Some(e.clone()));
                    tracing::warn!(bridge = %name, error = %e, retry_ms = backoff.as_millis() as u64, "MQTT connection failed; reconnecting");
                    if self.sleep_or_stop(backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(MQTT_RECONNECT_BACKOFF_MAX);
                }
            }
        }
        // Let the worker finish its batch, keeping the connection served so its acknowledgements
        // go out (anything received meanwhile is not acknowledged: it comes again).
        drop(handoff);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            tokio::select! {
                _ = &mut *worker => break,
                event = connection.poll() => {
                    if event.is_err() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    worker.abort();
                    break;
                }
            }
        }
        // Send what is queued (the last acknowledgements), then the DISCONNECT.
        client.try_disconnect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, connection.poll()).await {
            if matches!(event, Happened::DisconnectSent) {
                break;
            }
        }
    }

    /// `true` when the broker is stopping.
    async fn sleep_or_stop(&mut self, wait: Duration) -> bool {
        let stopped = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = self.stopping.wait_for(|stop| *stop) => true,
        };
        stopped || *self.stopping.borrow()
    }
}

/// A bridge's plugins; instances move into blocking tasks and back.
struct Plugins {
    catalog: PluginCatalog,
    ingest_stage: StageSpec,
    ingest: Option<PluginInstance>,
    ingest_label: String,
    partitioner: Option<(String, PluginInstance)>,
}

struct Worker {
    spec: BridgeSpec,
    template: Template,
    store: Store,
    stats: Arc<BridgeStats>,
    client: Client,
    plugins: Plugins,
    /// Set when the bridge recognises redeliveries by id.
    dedup: Option<Dedup>,
    stopping: watch::Receiver<bool>,
    /// The MQTT session messages belong to (see [`Handoff`]).
    session: Arc<AtomicU64>,
}

/// Where ids come from, and the ids stored.
struct Dedup {
    source: IdSource,
    window: DedupWindow,
    /// The store generation the window was read at: a commit is refused once the store has
    /// been reopened since (it may have lost commits the window remembers), and the window is
    /// read again.
    generation: u64,
}

/// A publish with the connection it arrived on. A packet id means something only on its
/// connection: after a reconnect the broker sends unacknowledged messages again (or, with a new
/// session, not at all) and may give a freed id to another message, which acknowledging the old
/// one would acknowledge unstored.
type Handoff = (u64, Received);

/// A message turned into what plugins see, with its id when it carries one.
#[derive(Clone)]
struct Message {
    source: SourceMessage,
    id: Option<String>,
}

/// Messages of one MQTT topic in a batch.
struct Group {
    topic: String,
    messages: Vec<Message>,
}

/// A group's records, ready to append.
struct Prepared {
    appends: Vec<(String, u32, Vec<u8>)>,
    records: u64,
    /// The ids stored with these records (messages' or records').
    ids: Vec<String>,
    messages: Vec<Message>,
}

/// A message the bridge could not turn into records.
struct Rejected {
    message: Message,
    plugin: String,
    error: String,
}

/// A group with its target topic.
struct Route {
    group: Group,
    target: String,
    partitions: u32,
}

/// What the ingest plugin made of a group: the output batches of the messages it took, and the
/// messages it refused with why.
struct Ingested {
    outputs: Vec<Vec<u8>>,
    kept: Vec<Message>,
    rejected: Vec<(Message, String)>,
}

/// One call for the group; when it fails, one call per message, so only the messages the
/// plugin refuses are rejected.
fn ingest_group(instance: &mut PluginInstance, messages: Vec<Message>) -> Ingested {
    let sources: Vec<SourceMessage> = messages.iter().map(|m| m.source.clone()).collect();
    match instance.ingest(&sources) {
        Ok(output) => Ingested { outputs: vec![output], kept: messages, rejected: Vec::new() },
        Err(error) if messages.len() == 1 => Ingested {
            outputs: Vec::new(),
            kept: Vec::new(),
            rejected: vec![(messages.into_iter().next().expect("one"), error.to_string())],
        },
        Err(_) => {
            let mut ingested = Ingested { outputs: Vec::new(), kept: Vec::new(), rejected: Vec::new() };
            for message in messages {
                match instance.ingest(std::slice::from_ref(&message.source)) {
                    Ok(output) => {
                        ingested.outputs.push(output);
                        ingested.kept.push(message);
                    }
                    Err(error) => ingested.rejected.push((message, error.to_string())),
                }
            }
            ingested
        }
    }
}

fn reject_all(rejected: &mut Vec<Rejected>, messages: Vec<Message>, plugin: &str, error: String) {
    rejected.extend(messages.into_iter().map(|message| Rejected {
        message,
        plugin: plugin.to_owned(),
        error: error.clone(),
    }));
}

/// A failure that may pass (storage recovering): nothing is acknowledged, the batch is tried
/// again after a back-off.
struct Transient(String);

impl Worker {
    async fn run(mut self, mut inbox: mpsc::Receiver<Handoff>) {
        while let Some(first) = inbox.recv().await {
            if *self.stopping.borrow() {
                return;
            }
            let mut batch = vec![first];
            let mut bytes = batch[0].1.payload().len();
            let deadline = tokio::time::Instant::now() + Duration::from_millis(self.spec.batch_window_ms);
            while batch.len() < self.spec.batch_messages && bytes < self.spec.batch_bytes {
                // What has arrived already, then (with a window) what arrives within it. With
                // no window the batch is what came while the last one was being committed:
                // group commit, without a timer (tokio's resolution is a millisecond).
                let next = match inbox.try_recv() {
                    Ok(handoff) => Some(handoff),
                    Err(_) if self.spec.batch_window_ms == 0 => None,
                    Err(_) => tokio::select! {
                        next = inbox.recv() => next,
                        _ = tokio::time::sleep_until(deadline) => None,
                    },
                };
                let Some(handoff) = next else { break };
                bytes += handoff.1.payload().len();
                batch.push(handoff);
            }
            let received: Vec<&Received> = batch.iter().map(|(_, publish)| publish).collect();
            if !self.commit(&received).await {
                return;
            }
            let session = self.session.load(Ordering::Acquire);
            for (arrived_in, publish) in &batch {
                // Waits for room in rumqttc's request queue, which the poll task always drains.
                // An error means the event loop is gone (stopping): the message comes again.
                if *arrived_in == session && self.client.ack(publish).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Turns `batch` into records and appends them durably; `false` when the broker stops first
    /// (nothing is acknowledged then). Every message ends up stored: as records, or as a dead
    /// letter saying why not (or it was stored before: a recognised duplicate).
    async fn commit(&mut self, batch: &[&Received]) -> bool {
        BridgeStats::count(&self.stats.messages_in, batch.len() as u64);
        let mut wait = MQTT_RECONNECT_BACKOFF_MIN;
        loop {
            match self.try_commit(batch).await {
                Ok(()) => return true,
                Err(Transient(error)) => {
                    self.stats.set_error(Some(error.clone()));
                    tracing::warn!(bridge = %self.spec.name, %error, retry_ms = wait.as_millis() as u64, "cannot store the batch yet; messages stay unacknowledged");
                    let stopped = tokio::select! {
                        _ = tokio::time::sleep(wait) => false,
                        _ = self.stopping.wait_for(|stop| *stop) => true,
                    };
                    if stopped {
                        return false;
                    }
                    wait = (wait * 2).min(MQTT_RECONNECT_BACKOFF_MAX);
                    // A failed commit may have landed after all: the ids on disk say which, so
                    // the retry drops what was stored.
                    if let Err(error) = self.reload_ids() {
                        tracing::warn!(bridge = %self.spec.name, %error, "cannot read the remembered ids yet");
                    }
                }
            }
        }
    }

    fn reload_ids(&mut self) -> Result<(), String> {
        if let (Some(dedup), Some(spec)) = (&mut self.dedup, &self.spec.dedup) {
            dedup.generation = self.store.generation();
            dedup.window = DedupWindow::load(&self.store, &self.spec.name, spec.window)?;
        }
        Ok(())
    }

    /// `received`'s id when the bridge takes ids from user properties and it carries one.
    fn message_id(&self, received: &Received) -> Option<String> {
        let Some(Dedup { source: IdSource::UserProperty(name), .. }) = &self.dedup else { return None };
        let (_, value) = received.user_properties().iter().find(|(key, _)| key == name)?;
        dedup::scoped(&received.topic(), value.as_bytes())
    }

    /// Whether `id` was stored before or is taken by an earlier message of this batch; else it
    /// is taken now.
    fn seen(&self, id: &str, batch_ids: &mut HashSet<String>) -> bool {
        let stored = self.dedup.as_ref().is_some_and(|d| d.window.contains(id));
        stored || !batch_ids.insert(id.to_owned())
    }

    async fn try_commit(&mut self, batch: &[&Received]) -> Result<(), Transient> {
        let received_ms = crate::clock::now_ms();
        let mut groups: Vec<Group> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut batch_ids = HashSet::new();
        let mut duplicates = 0;
        for publish in batch {
            let id = self.message_id(publish);
            if let Some(id) = &id
                && self.seen(id, &mut batch_ids)
            {
                duplicates += 1;
                continue;
            }
            let topic = publish.topic();
            let at = *index.entry(topic.clone()).or_insert_with(|| {
                groups.push(Group { topic: topic.clone(), messages: Vec::new() });
                groups.len() - 1
            });
            groups[at].messages.push(Message {
                source: SourceMessage {
                    payload: publish.payload().to_vec(),
                    topic,
                    qos: publish.qos(),
                    retained: publish.retained(),
                    properties: publish.user_properties().to_vec(),
                    received_ms,
                },
                id,
            });
        }
        let mut rejected = Vec::new();
        let mut routed = Vec::new();
        for group in groups {
            if let Some(route) = self.route(group, &mut rejected).await? {
                routed.push(route);
            }
        }
        // One blocking task runs the ingest plugin for every MQTT topic of the batch.
        let ingested = self.ingest(routed.iter().map(|r| r.group.messages.clone()).collect()).await;
        let mut prepared = Vec::new();
        for (route, ingested) in routed.into_iter().zip(ingested) {
            for (message, error) in ingested.rejected {
                self.reject(&mut rejected, message, error);
            }
            if let Some(ready) = self
                .prepare(route, ingested.outputs, ingested.kept, &mut rejected, &mut batch_ids, &mut duplicates)
                .await
            {
                prepared.push(ready);
            }
        }
        BridgeStats::count(&self.stats.duplicates_dropped, duplicates);
        // Records and dead letters in one transaction: a retry after a failure never finds half
        // of the batch stored.
        let letters = if rejected.is_empty() { None } else { Some(self.dead_letters(&rejected).await?) };
        let mut appends: Vec<_> = prepared.iter().flat_map(|p| p.appends.iter().cloned()).collect();
        let mut ids: Vec<String> = prepared.iter().flat_map(|p| p.ids.iter().cloned()).collect();
        if let Some(letters) = &letters {
            appends.push((self.spec.dead_letter_topic(), 0, letters.clone()));
            ids.extend(rejected.iter().filter_map(|r| r.message.id.clone()));
        }
        if self.append(appends, ids).await?.is_ok() {
            self.stored(&prepared);
            BridgeStats::count(&self.stats.messages_dead_lettered, rejected.len() as u64);
            return Ok(());
        }
        // Refused for good (a record too large for its topic, a topic deleted meanwhile): group
        // by group, so only the groups refused are dead-lettered.
        for group in prepared {
            match self.append(group.appends.clone(), group.ids.clone()).await? {
                Ok(()) => self.stored(std::slice::from_ref(&group)),
                Err(error) => {
                    for message in group.messages {
                        rejected.push(Rejected { message, plugin: "log".into(), error: error.to_string() });
                    }
                }
            }
        }
        if rejected.is_empty() {
            return Ok(());
        }
        let letters = self.dead_letters(&rejected).await?;
        let ids = rejected.iter().filter_map(|r| r.message.id.clone()).collect();
        match self.append(vec![(self.spec.dead_letter_topic(), 0, letters)], ids).await? {
            Ok(()) => BridgeStats::count(&self.stats.messages_dead_lettered, rejected.len() as u64),
            Err(error) => tracing::error!(bridge = %self.spec.name, %error, messages = rejected.len(),
                "the dead-letter topic refused rejected messages: they cannot be stored anywhere and are dropped"),
        }
        Ok(())
    }

    fn stored(&self, groups: &[Prepared]) {
        BridgeStats::count(&self.stats.records_out, groups.iter().map(|g| g.records).sum());
    }

    /// Appends in one transaction, with the ids stored (see [`DedupWindow`]): `Err(Transient)`
    /// for storage errors, `Ok(Err)` for refusals.
    async fn append(
        &mut self,
        appends: Vec<(String, u32, Vec<u8>)>,
        ids: Vec<String>,
    ) -> Result<Result<(), AppendError>, Transient> {
        let writes: Vec<DocumentWrite> = self.dedup.as_ref().map(|d| d.window.writes(&ids)).unwrap_or_default();
        let generation = self.dedup.as_ref().map(|d| d.generation);
        match self.store.transact(appends, Documents(Box::new(move |_| writes)), generation).await {
            Ok(_) => {
                if let Some(dedup) = &mut self.dedup {
                    dedup.window.committed(ids);
                }
                Ok(Ok(()))
            }
            Err(e @ (AppendError::Storage(_) | AppendError::ShutDown)) => Err(Transient(format!("append failed: {e}"))),
            Err(refused) => Ok(Err(refused)),
        }
    }

    /// The target topic of a group's messages, created on first use; `None` when there is none
    /// (the messages are added to `rejected`).
    async fn route(&mut self, group: Group, rejected: &mut Vec<Rejected>) -> Result<Option<Route>, Transient> {
        let target = match self.template.render(&group.topic) {
            Ok(target) => target,
            Err(error) => {
                reject_all(rejected, group.messages, "bridge", error);
                return Ok(None);
            }
        };
        match self.ensure_topic(&target, self.spec.partitions).await {
            Ok(partitions) => Ok(Some(Route { group, target, partitions })),
            Err(TopicError::Storage(e)) => Err(Transient(format!("cannot create topic {target:?}: {e}"))),
            Err(error) => {
                reject_all(rejected, group.messages, "bridge", format!("cannot create topic {target:?}: {error}"));
                Ok(None)
            }
        }
    }

    /// The records of one MQTT topic's messages (`kept`, which the plugin turned into
    /// `outputs`), by partition of their target topic; messages that cannot become records are
    /// added to `rejected`.
    async fn prepare(
        &mut self,
        route: Route,
        outputs: Vec<Vec<u8>>,
        messages: Vec<Message>,
        rejected: &mut Vec<Rejected>,
        batch_ids: &mut HashSet<String>,
        duplicates: &mut u64,
    ) -> Option<Prepared> {
        let Route { group, target, partitions } = route;
        let kept = outputs;
        let mut records: Vec<OwnedRecord> = Vec::new();
        for bytes in &kept {
            match batches::owned_records(bytes) {
                Ok(mut decoded) => records.append(&mut decoded),
                Err(e) => {
                    reject_all(rejected, messages, &self.plugins.ingest_label, format!("unreadable output: {e}"));
                    return None;
                }
            }
        }
        let mut ids: Vec<String> = messages.iter().filter_map(|m| m.id.clone()).collect();
        if let Some(Dedup { source: IdSource::RecordHeader(header), .. }) = &self.dedup {
            let header = header.clone();
            let before = records.len();
            records.retain(|record| {
                let value = record.headers.iter().find(|(k, _)| k == header.as_bytes()).and_then(|(_, v)| v.as_ref());
                let Some(id) = value.and_then(|value| dedup::scoped(&group.topic, value)) else {
                    return true;
                };
                if self.seen(&id, batch_ids) {
                    return false;
                }
                ids.push(id);
                true
            });
            *duplicates += (before - records.len()) as u64;
        }
        if records.is_empty() {
            return None;
        }
        // The record's key, or else the MQTT topic it came from.
        for record in &mut records {
            if record.key.is_none() {
                record.key = Some(group.topic.as_bytes().to_vec());
            }
        }
        let count = records.len() as u64;
        let built = batches::build_batches(&records);
        let chosen = match &built {
            // Kafka's default, on the records at hand.
            Ok(_) if self.plugins.partitioner.is_none() => by_key(&records, partitions),
            Ok(bytes) => match self.partition(&target, bytes, partitions, records.len()).await {
                Ok(chosen) => chosen,
                Err(error) => {
                    BridgeStats::count(&self.stats.plugin_failures, 1);
                    tracing::warn!(bridge = %self.spec.name, %error, "partitioner failed; partitioning by key");
                    by_key(&records, partitions)
                }
            },
            Err(_) => Vec::new(),
        };
        match built.and_then(|bytes| batches::split_by_partition(&bytes, &chosen)) {
            Ok(split) => {
                let appends = split.into_iter().map(|(p, bytes)| (target.clone(), p, bytes)).collect();
                Some(Prepared { appends, records: count, ids, messages })
            }
            Err(error) => {
                reject_all(rejected, messages, "bridge", error);
                None
            }
        }
    }

    fn reject(&self, rejected: &mut Vec<Rejected>, message: Message, error: String) {
        BridgeStats::count(&self.stats.plugin_failures, 1);
        tracing::warn!(bridge = %self.spec.name, mqtt_topic = %message.source.topic, %error, "message rejected; dead-lettered");
        rejected.push(Rejected { message, plugin: self.plugins.ingest_label.clone(), error });
    }

    /// The topic's partition count, creating it with `partitions` on first use.
    async fn ensure_topic(&self, name: &str, partitions: u32) -> Result<u32, TopicError> {
        let topic = self.store.topic_or_create(name, partitions, TopicConfig::default()).await?;
        Ok(topic.partitions.len() as u32)
    }

    /// Runs the ingest plugin on each group of messages, in one blocking task. A failure of the
    /// task itself (a bug, not a trap) is reported as the plugin's error for every message, and
    /// the plugin is loaded afresh for the next call.
    async fn ingest(&mut self, groups: Vec<Vec<Message>>) -> Vec<Ingested> {
        let rejected_all = |groups: Vec<Vec<Message>>, error: String| {
            groups
                .into_iter()
                .map(|messages| Ingested {
                    outputs: Vec::new(),
                    kept: Vec::new(),
                    rejected: messages.into_iter().map(|m| (m, error.clone())).collect(),
                })
                .collect()
        };
        let instance = match self.plugins.ingest.take() {
            Some(instance) => instance,
            None => {
                let (catalog, stage) = (self.plugins.catalog.clone(), self.plugins.ingest_stage.clone());
                let loaded =
                    tokio::task::spawn_blocking(move || load_instance(&catalog, &stage, PluginLimits::default()))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|loaded| loaded);
                match loaded {
                    Ok((_, instance)) => instance,
                    Err(error) => return rejected_all(groups, error),
                }
            }
        };
        let mut instance = instance;
        let copy = groups.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let ingested: Vec<Ingested> =
                groups.into_iter().map(|messages| ingest_group(&mut instance, messages)).collect();
            (instance, ingested)
        })
        .await;
        match joined {
            Ok((instance, ingested)) => {
                self.plugins.ingest = Some(instance);
                ingested
            }
            Err(e) => rejected_all(copy, format!("the ingest plugin's task failed: {e}")),
        }
    }

    async fn partition(
        &mut self,
        topic: &str,
        bytes: &[u8],
        partitions: u32,
        records: usize,
    ) -> Result<Vec<u32>, String> {
        let Some((label, mut instance)) = self.plugins.partitioner.take() else {
            let decoded = batches::owned_records(bytes)?;
            return Ok(by_key(&decoded, partitions));
        };
        let (topic, bytes) = (topic.to_owned(), bytes.to_vec());
        let joined = tokio::task::spawn_blocking(move || {
            let result = instance.partition(&topic, 0, &bytes, partitions, records).map_err(|e| e.to_string());
            (instance, result)
        })
        .await;
        match joined {
            Ok((instance, result)) => {
                self.plugins.partitioner = Some((label, instance));
                result
            }
            // Without its partitioner the bridge partitions by key from now on.
            Err(e) => Err(format!("the partitioner's task failed: {e}")),
        }
    }

    /// The rejected messages as records of the dead-letter topic (created on first use): the
    /// payload as value, the MQTT topic as key, and why in headers.
    async fn dead_letters(&self, rejected: &[Rejected]) -> Result<Vec<u8>, Transient> {
        let topic = self.spec.dead_letter_topic();
        self.ensure_topic(&topic, 1).await.map_err(|e| Transient(format!("cannot create {topic:?}: {e}")))?;
        let records: Vec<OwnedRecord> = rejected
            .iter()
            .map(|r| OwnedRecord {
                offset: 0,
                timestamp: r.message.source.received_ms,
                key: Some(r.message.source.topic.as_bytes().to_vec()),
                value: Some(r.message.source.payload.clone()),
                headers: [
                    (headers::MQTT_TOPIC, r.message.source.topic.clone()),
                    (headers::ERROR, r.error.clone()),
                    (headers::PLUGIN, r.plugin.clone()),
                    (headers::BRIDGE, self.spec.name.clone()),
                ]
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), Some(v.into_bytes())))
                .collect(),
            })
            .collect();
        batches::build_batches(&records).map_err(Transient)
    }
}

/// Kafka's default: murmur2 of the key.
fn by_key(records: &[OwnedRecord], partitions: u32) -> Vec<u32> {
    records
        .iter()
        .map(|r| {
            rill_core::partitioner::partition_for_key(r.key.as_deref().unwrap_or_default(), partitions).unwrap_or(0)
        })
        .collect()
}
