//! A bridge's worker: gathers what arrived into a batch, drops recognised duplicates, turns the
//! messages into records (the ingest plugin for every MQTT topic of the batch in one blocking
//! task, then the partitioner), appends them and the dead letters in one transaction with the ids
//! stored, and only then acknowledges the messages.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::client::{Client, Received};
use super::dedup::{self, DedupWindow};
use super::spec::{BridgeSpec, IdSource, Template};
use super::stats::{BridgeStats, headers};
use crate::limits::{MQTT_RECONNECT_BACKOFF_MAX, MQTT_RECONNECT_BACKOFF_MIN};
use crate::plugins::{
    AfterFailure, PluginCatalog, PluginInstance, PluginLimits, Slot, SlotError, SourceMessage, StageSpec,
    load_off_runtime,
};
use crate::records::{self, OwnedRecord};
use crate::storage::{AppendError, DocumentWrite, Documents, ResourceError, Store, TopicConfig, TopicError};

pub(super) struct Worker {
    pub spec: BridgeSpec,
    pub template: Template,
    pub store: Store,
    pub stats: Arc<BridgeStats>,
    pub client: Client,
    pub plugins: Plugins,
    /// Set when the bridge recognises redeliveries by id.
    pub dedup: Option<Dedup>,
    pub stopping: watch::Receiver<bool>,
    /// The MQTT session messages belong to (see [`Handoff`]).
    pub session: Arc<AtomicU64>,
}

/// A bridge's plugins, each in its slot between calls.
pub(super) struct Plugins {
    pub catalog: PluginCatalog,
    pub ingest_stage: StageSpec,
    /// Loaded afresh when a call's task failed.
    pub ingest: Slot<PluginInstance>,
    pub ingest_label: String,
    /// Empty without one, or once its task failed: the bridge then partitions by key.
    pub partitioner: Slot<(String, PluginInstance)>,
}

/// Where ids come from, and the ids stored.
pub(super) struct Dedup {
    pub source: IdSource,
    pub window: DedupWindow,
    /// The store generation the window was read at: a commit is refused once the store has
    /// been reopened since (it may have lost commits the window remembers), and the window is
    /// read again.
    pub generation: u64,
}

/// A publish with the connection it arrived on. A packet id means something only on its
/// connection: after a reconnect the broker sends unacknowledged messages again (or, with a new
/// session, not at all) and may give a freed id to another message, which acknowledging the old
/// one would acknowledge unstored.
pub(super) type Handoff = (u64, Received);

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
    /// Shared, not copied, when a refused transaction is retried group by group.
    appends: Vec<(String, u32, Bytes)>,
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
    match instance.ingest(messages.iter().map(|m| &m.source)) {
        Ok(output) => Ingested { outputs: vec![output], kept: messages, rejected: Vec::new() },
        Err(error) if messages.len() == 1 => Ingested {
            outputs: Vec::new(),
            kept: Vec::new(),
            rejected: vec![(messages.into_iter().next().expect("one"), error.to_string())],
        },
        Err(_) => {
            let mut ingested = Ingested { outputs: Vec::new(), kept: Vec::new(), rejected: Vec::new() };
            for message in messages {
                match instance.ingest([&message.source]) {
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
    pub(super) async fn run(mut self, mut inbox: mpsc::Receiver<Handoff>) {
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

    fn reload_ids(&mut self) -> Result<(), ResourceError> {
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
        let mut batch_ids = HashSet::new();
        let (groups, mut duplicates) = self.gather(batch, &mut batch_ids);
        let mut rejected = Vec::new();
        let mut routed = Vec::new();
        for group in groups {
            if let Some(route) = self.route(group, &mut rejected).await? {
                routed.push(route);
            }
        }
        // One blocking task runs the ingest plugin for every MQTT topic of the batch.
        let ingested = self.ingest(routed.iter_mut().map(|r| std::mem::take(&mut r.group.messages)).collect()).await;
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
            appends.push((self.spec.dead_letter_topic(), 0, Bytes::from(letters.clone())));
            ids.extend(rejected.iter().filter_map(|r| r.message.id.clone()));
        }
        if self.append(appends, ids).await?.is_ok() {
            self.stored(&prepared);
            BridgeStats::count(&self.stats.messages_dead_lettered, rejected.len() as u64);
            return Ok(());
        }
        self.store_separately(prepared, rejected).await
    }

    /// The batch's messages grouped by MQTT topic, in arrival order, and how many repeated ones
    /// were left out.
    fn gather(&self, batch: &[&Received], batch_ids: &mut HashSet<String>) -> (Vec<Group>, u64) {
        let received_ms = crate::clock::now_ms();
        let mut groups: Vec<Group> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut duplicates = 0;
        for publish in batch {
            let id = self.message_id(publish);
            if let Some(id) = &id
                && self.seen(id, batch_ids)
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
                    payload: publish.payload_bytes(),
                    topic,
                    qos: publish.qos(),
                    retained: publish.retained(),
                    properties: publish.user_properties().to_vec(),
                    received_ms,
                },
                id,
            });
        }
        (groups, duplicates)
    }

    /// After the batch's transaction was refused for good (a record too large for its topic, a
    /// topic deleted meanwhile): group by group, so only the groups refused are dead-lettered.
    async fn store_separately(
        &mut self,
        prepared: Vec<Prepared>,
        mut rejected: Vec<Rejected>,
    ) -> Result<(), Transient> {
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
        match self.append(vec![(self.spec.dead_letter_topic(), 0, Bytes::from(letters))], ids).await? {
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
        appends: Vec<(String, u32, Bytes)>,
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
        let mut records: Vec<OwnedRecord> = Vec::new();
        for bytes in &outputs {
            match records::owned_records(bytes) {
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
        let chosen = match self.partition(&target, &records, partitions).await {
            Ok(chosen) => chosen,
            Err(error) => {
                BridgeStats::count(&self.stats.plugin_failures, 1);
                tracing::warn!(bridge = %self.spec.name, %error, "partitioner failed; partitioning by key");
                by_key(&records, partitions)
            }
        };
        // Each partition's batch is built once, from the records decoded once.
        match records::build_by_partition(records, &chosen) {
            Ok(split) => {
                let appends = split.into_iter().map(|(p, bytes)| (target.clone(), p, Bytes::from(bytes))).collect();
                Some(Prepared { appends, records: count, ids, messages })
            }
            Err(error) => {
                reject_all(rejected, messages, "bridge", error.to_string());
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
        if !self.plugins.ingest.is_loaded() {
            let plugins = &self.plugins;
            match load_off_runtime(&plugins.catalog, &plugins.ingest_stage, PluginLimits::default()).await {
                Ok((_, instance)) => self.plugins.ingest.put(instance),
                Err(error) => return rejected_all(groups, error.to_string()),
            }
        }
        let copy = groups.clone();
        let ingested = self
            .plugins
            .ingest
            .call(AfterFailure::Keep, move |instance| {
                Ok::<_, std::convert::Infallible>(
                    groups.into_iter().map(|messages| ingest_group(instance, messages)).collect::<Vec<Ingested>>(),
                )
            })
            .await;
        ingested.unwrap_or_else(|e| rejected_all(copy, format!("the ingest plugin's task failed: {e}")))
    }

    /// Each record's partition: the partitioner plugin's choice (it reads the records built into
    /// batches, built for it alone), or Kafka's default on the records at hand.
    async fn partition(&mut self, topic: &str, records: &[OwnedRecord], partitions: u32) -> Result<Vec<u32>, String> {
        if !self.plugins.partitioner.is_loaded() {
            return Ok(by_key(records, partitions));
        }
        let (topic, count) = (topic.to_owned(), records.len());
        let bytes = records::build_batches(records).map_err(|e| e.to_string())?;
        let chosen = self
            .plugins
            .partitioner
            .call(AfterFailure::Keep, move |(_, instance)| instance.partition(&topic, 0, &bytes, partitions, count))
            .await;
        match chosen {
            Ok(chosen) => Ok(chosen),
            Err(SlotError::Empty) => Ok(by_key(records, partitions)),
            // A failed task takes the partitioner with it: the bridge partitions by key from now on.
            Err(e) => Err(e.to_string()),
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
                value: Some(r.message.source.payload.to_vec()),
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
        records::build_batches(&records).map_err(|e| Transient(e.to_string()))
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
