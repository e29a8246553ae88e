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
//!   in-flight window.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeFilter,
};
use tokio::sync::{mpsc, watch};

use super::spec::{BridgeSpec, Template};
use crate::limits::{MQTT_INFLIGHT_MAX, MQTT_RECONNECT_BACKOFF_MAX, MQTT_RECONNECT_BACKOFF_MIN, MQTT_STASH_MAX};
use crate::pipelines::StageSpec;
use crate::pipelines::batches::{self, OwnedRecord};
use crate::pipelines::load_instance;
use crate::plugins::{PluginCatalog, PluginInstance, PluginLimits, SourceMessage};
use crate::storage::{AppendError, Documents, Store, TopicConfig, TopicError};

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
        // Without its plugins the bridge does not connect: the MQTT broker keeps queueing.
        let mut wait = MQTT_RECONNECT_BACKOFF_MIN;
        let plugins = loop {
            match self.load_plugins().await {
                Ok(plugins) => break plugins,
                Err(e) => {
                    tracing::warn!(bridge = %name, error = %e, retry_ms = wait.as_millis() as u64, "bridge plugins cannot be loaded (upload them with `rill plugin upload`); retrying");
                    self.stats.set_error(Some(format!("plugins cannot be loaded: {e}")));
                    if self.sleep_or_stop(wait).await {
                        return;
                    }
                    wait = (wait * 2).min(MQTT_RECONNECT_BACKOFF_MAX);
                }
            }
        };
        let (client, eventloop) = match self.client() {
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
            stopping: self.stopping.clone(),
        };
        let mut worker = tokio::spawn(worker.run(inbox));
        self.poll(eventloop, &client, handoff, &session, &mut worker).await;
        self.stats.connected.store(false, Ordering::Relaxed);
        tracing::info!(bridge = %name, "bridge stopped");
    }

    async fn load_plugins(&self) -> Result<Plugins, String> {
        let (catalog, ingest, partitioner) =
            (self.catalog.clone(), self.spec.ingest.clone(), self.spec.partitioner.clone());
        let ingest_stage_copy = ingest.clone();
        tokio::task::spawn_blocking(move || {
            let (ingest_label, ingest) = load_instance(&catalog, &ingest, PluginLimits::default())?;
            let partitioner = match partitioner {
                Some(stage) => Some(load_instance(&catalog, &stage, PluginLimits::default())?),
                None => None,
            };
            Ok(Plugins { catalog, ingest_stage: ingest_stage_copy, ingest: Some(ingest), ingest_label, partitioner })
        })
        .await
        .map_err(|e| e.to_string())?
    }

    fn client(&self) -> Result<(AsyncClient, EventLoop), String> {
        let (host, port) = self.spec.address().map_err(|e| e.to_string())?;
        let mut options = MqttOptions::new(self.spec.client_id(), host, port);
        options
            .set_keep_alive(Duration::from_secs(self.spec.keep_alive_s))
            // A persistent session: the MQTT broker queues while the gateway is down.
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(self.spec.batch_bytes.max(64 * 1024), 64 * 1024);
        if let Some(username) = &self.spec.username {
            options.set_credentials(username, self.spec.password.clone().unwrap_or_default());
        }
        // Room for every acknowledgement of a full window, so the worker never waits on it.
        Ok(AsyncClient::new(options, MQTT_INFLIGHT_MAX * 2 + 64))
    }

    /// Drives the connection until the broker stops; reconnects with back-off.
    async fn poll(
        &mut self,
        mut eventloop: EventLoop,
        client: &AsyncClient,
        handoff: mpsc::Sender<Handoff>,
        session: &AtomicU64,
        worker: &mut tokio::task::JoinHandle<()>,
    ) {
        let name = self.spec.name.clone();
        let filters: Vec<SubscribeFilter> =
            self.spec.subscriptions.iter().map(|s| SubscribeFilter::new(s.filter.clone(), qos(s.qos))).collect();
        let mut backoff = MQTT_RECONNECT_BACKOFF_MIN;
        // Publishes received while the worker's channel is full. The connection is always served
        // (the worker's acknowledgements must go out, or it would wait on them while this task
        // waits on it): QoS 1 messages are bounded by the MQTT broker's in-flight window, QoS 0
        // messages past MQTT_STASH_MAX are dropped (at most once) and counted.
        let mut stash: VecDeque<Handoff> = VecDeque::new();
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
                event = eventloop.poll() => event,
                room = handoff.reserve(), if !stash.is_empty() => {
                    if let (Ok(room), Some(publish)) = (room, stash.pop_front()) {
                        room.send(publish);
                    }
                    continue;
                }
                _ = self.stopping.wait_for(|stop| *stop) => break,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
                    backoff = MQTT_RECONNECT_BACKOFF_MIN;
                    self.stats.connected.store(true, Ordering::Relaxed);
                    self.stats.set_error(None);
                    BridgeStats::count(&self.stats.connects, 1);
                    tracing::info!(bridge = %name, session_present = ack.session_present, "connected to the MQTT broker");
                    if !ack.session_present {
                        // A new session: what arrived in the old one is no longer the
                        // broker's to acknowledge (see `Handoff`).
                        session.fetch_add(1, Ordering::AcqRel);
                    }
                    // The broker kept no session (first connect, or it lost its state):
                    // subscribe again, or nothing would arrive.
                    if !ack.session_present
                        && let Err(e) = client.try_subscribe_many(filters.clone())
                    {
                        tracing::error!(bridge = %name, error = %e, "cannot subscribe");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if publish.qos == QoS::AtMostOnce && stash.len() >= MQTT_STASH_MAX {
                        // At most once, under overload: dropped, and counted.
                        BridgeStats::count(&self.stats.qos0_dropped, 1);
                        continue;
                    }
                    // QoS 1: the MQTT broker sends at most its in-flight window of messages not
                    // yet acknowledged, which bounds the stash.
                    stash.push_back((session.load(Ordering::Acquire), publish));
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    tracing::info!(bridge = %name, codes = ?ack.return_codes, "subscribed");
                }
                Ok(_) => {}
                Err(e) => {
                    self.stats.connected.store(false, Ordering::Relaxed);
                    self.stats.set_error(Some(e.to_string()));
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
                event = eventloop.poll() => {
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
        let _ = client.try_disconnect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, eventloop.poll()).await {
            if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
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

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
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
    client: AsyncClient,
    plugins: Plugins,
    stopping: watch::Receiver<bool>,
    /// The MQTT session messages belong to (see [`Handoff`]).
    session: Arc<AtomicU64>,
}

/// A publish with the session it arrived in. A packet id means something only within its
/// session: when the broker starts a new one (it lost or dropped the old), acknowledging an old
/// id would acknowledge some other message of the new session.
type Handoff = (u64, Publish);

/// Messages of one MQTT topic in a batch.
struct Group {
    topic: String,
    messages: Vec<SourceMessage>,
}

/// A group's records, ready to append.
struct Prepared {
    messages: Vec<SourceMessage>,
    appends: Vec<(String, u32, Vec<u8>)>,
    records: u64,
}

/// A message the bridge could not turn into records.
struct Rejected {
    message: SourceMessage,
    plugin: String,
    error: String,
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
            let mut bytes = batch[0].1.payload.len();
            let deadline = tokio::time::Instant::now() + Duration::from_millis(self.spec.batch_window_ms);
            while batch.len() < self.spec.batch_messages && bytes < self.spec.batch_bytes {
                tokio::select! {
                    next = inbox.recv() => match next {
                        Some(handoff) => {
                            bytes += handoff.1.payload.len();
                            batch.push(handoff);
                        }
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            let publishes: Vec<&Publish> = batch.iter().map(|(_, publish)| publish).collect();
            if !self.commit(&publishes).await {
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
    /// letter saying why not.
    async fn commit(&mut self, batch: &[&Publish]) -> bool {
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
                }
            }
        }
    }

    async fn try_commit(&mut self, batch: &[&Publish]) -> Result<(), Transient> {
        let received_ms = crate::clock::now_ms();
        let mut groups: Vec<Group> = Vec::new();
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for publish in batch {
            let at = *index.entry(publish.topic.as_str()).or_insert_with(|| {
                groups.push(Group { topic: publish.topic.clone(), messages: Vec::new() });
                groups.len() - 1
            });
            groups[at].messages.push(SourceMessage {
                payload: publish.payload.to_vec(),
                topic: publish.topic.clone(),
                qos: publish.qos as u8,
                retained: publish.retain,
                properties: Vec::new(),
                received_ms,
            });
        }
        let mut prepared = Vec::new();
        let mut rejected = Vec::new();
        for group in groups {
            if let Some(ready) = self.prepare(group, &mut rejected).await? {
                prepared.push(ready);
            }
        }
        let appends: Vec<_> = prepared.iter().flat_map(|p| p.appends.iter().cloned()).collect();
        match self.append(appends).await? {
            Ok(()) => self.stored(&prepared),
            // Refused for good (a record too large for its topic, a topic deleted meanwhile):
            // group by group, so only the groups refused are dead-lettered.
            Err(_) => {
                for group in prepared {
                    match self.append(group.appends.clone()).await? {
                        Ok(()) => self.stored(std::slice::from_ref(&group)),
                        Err(error) => {
                            for message in group.messages {
                                rejected.push(Rejected { message, plugin: "log".into(), error: error.to_string() });
                            }
                        }
                    }
                }
            }
        }
        if rejected.is_empty() {
            return Ok(());
        }
        let letters = self.dead_letters(&rejected).await?;
        match self.append(vec![(self.spec.dead_letter_topic(), 0, letters)]).await? {
            Ok(()) => BridgeStats::count(&self.stats.messages_dead_lettered, rejected.len() as u64),
            Err(error) => tracing::error!(bridge = %self.spec.name, %error, messages = rejected.len(),
                "the dead-letter topic refused rejected messages: they cannot be stored anywhere and are dropped"),
        }
        Ok(())
    }

    fn stored(&self, groups: &[Prepared]) {
        BridgeStats::count(&self.stats.records_out, groups.iter().map(|g| g.records).sum());
    }

    /// Appends in one transaction: `Err(Transient)` for storage errors, `Ok(Err)` for refusals.
    async fn append(&self, appends: Vec<(String, u32, Vec<u8>)>) -> Result<Result<(), AppendError>, Transient> {
        match self.store.transact(appends, Documents(Box::new(|_| Vec::new())), None).await {
            Ok(_) => Ok(Ok(())),
            Err(e @ (AppendError::Storage(_) | AppendError::ShutDown)) => Err(Transient(format!("append failed: {e}"))),
            Err(refused) => Ok(Err(refused)),
        }
    }

    /// The records of one MQTT topic's messages, by partition of their target topic; messages
    /// that cannot become records are added to `rejected`.
    async fn prepare(&mut self, group: Group, rejected: &mut Vec<Rejected>) -> Result<Option<Prepared>, Transient> {
        let reject_all = |rejected: &mut Vec<Rejected>, messages: Vec<SourceMessage>, plugin: &str, error: String| {
            rejected.extend(messages.into_iter().map(|message| Rejected {
                message,
                plugin: plugin.to_owned(),
                error: error.clone(),
            }));
        };
        let target = match self.template.render(&group.topic) {
            Ok(target) => target,
            Err(error) => {
                reject_all(rejected, group.messages, "bridge", error);
                return Ok(None);
            }
        };
        let partitions = match self.ensure_topic(&target, self.spec.partitions).await {
            Ok(partitions) => partitions,
            Err(TopicError::Storage(e)) => return Err(Transient(format!("cannot create topic {target:?}: {e}"))),
            Err(error) => {
                reject_all(rejected, group.messages, "bridge", format!("cannot create topic {target:?}: {error}"));
                return Ok(None);
            }
        };
        let mut kept = Vec::new();
        let mut messages = Vec::new();
        match self.ingest(group.messages.clone()).await {
            Ok(records) => {
                kept.push(records);
                messages = group.messages;
            }
            // One call per message, so only the ones the plugin refuses are rejected.
            Err(_) if group.messages.len() > 1 => {
                for message in group.messages {
                    match self.ingest(vec![message.clone()]).await {
                        Ok(records) => {
                            kept.push(records);
                            messages.push(message);
                        }
                        Err(error) => self.reject(rejected, message, error),
                    }
                }
            }
            Err(error) => {
                let message = group.messages.into_iter().next().expect("a group has a message");
                self.reject(rejected, message, error);
            }
        }
        let mut records: Vec<OwnedRecord> = Vec::new();
        for bytes in &kept {
            match batches::owned_records(bytes) {
                Ok(mut decoded) => records.append(&mut decoded),
                Err(e) => {
                    reject_all(rejected, messages, &self.plugins.ingest_label, format!("unreadable output: {e}"));
                    return Ok(None);
                }
            }
        }
        if records.is_empty() {
            return Ok(None);
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
                Ok(Some(Prepared { messages, appends, records: count }))
            }
            Err(error) => {
                reject_all(rejected, messages, "bridge", error);
                Ok(None)
            }
        }
    }

    fn reject(&self, rejected: &mut Vec<Rejected>, message: SourceMessage, error: String) {
        BridgeStats::count(&self.stats.plugin_failures, 1);
        tracing::warn!(bridge = %self.spec.name, mqtt_topic = %message.topic, %error, "message rejected; dead-lettered");
        rejected.push(Rejected { message, plugin: self.plugins.ingest_label.clone(), error });
    }

    /// The topic's partition count, creating it with `partitions` on first use.
    async fn ensure_topic(&self, name: &str, partitions: u32) -> Result<u32, TopicError> {
        let topic = self.store.topic_or_create(name, partitions, TopicConfig::default()).await?;
        Ok(topic.partitions.len() as u32)
    }

    /// Runs the ingest plugin. A failure of the plugin's task itself (a bug, not a trap) is
    /// reported as the plugin's error, and the plugin is loaded afresh for the next call.
    async fn ingest(&mut self, messages: Vec<SourceMessage>) -> Result<Vec<u8>, String> {
        let instance = match self.plugins.ingest.take() {
            Some(instance) => instance,
            None => {
                let (catalog, stage) = (self.plugins.catalog.clone(), self.plugins.ingest_stage.clone());
                tokio::task::spawn_blocking(move || load_instance(&catalog, &stage, PluginLimits::default()))
                    .await
                    .map_err(|e| e.to_string())??
                    .1
            }
        };
        let mut instance = instance;
        let joined = tokio::task::spawn_blocking(move || {
            let result = instance.ingest(&messages).map_err(|e| e.to_string());
            (instance, result)
        })
        .await;
        match joined {
            Ok((instance, result)) => {
                self.plugins.ingest = Some(instance);
                result
            }
            Err(e) => Err(format!("the ingest plugin's task failed: {e}")),
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
                timestamp: r.message.received_ms,
                key: Some(r.message.topic.as_bytes().to_vec()),
                value: Some(r.message.payload.clone()),
                headers: [
                    (headers::MQTT_TOPIC, r.message.topic.clone()),
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
