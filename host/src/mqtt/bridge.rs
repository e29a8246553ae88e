//! One bridge: an MQTT client with a persistent session and manual acknowledgements, and a
//! worker that turns what arrives into records and appends them durably before acknowledging.
//!
//! - The poll task drives rumqttc's event loop: it subscribes whenever the broker's session lacks
//!   the bridge's filters (see [`super::session`]; rumqttc does not), and hands publishes to the
//!   worker through a channel of [`MQTT_INFLIGHT_MAX`]. When the worker falls behind, the channel
//!   fills and the poll task holds what keeps arriving while it goes on serving the connection
//!   (acknowledgements go out at once): QoS 1 deliveries are bounded by the MQTT broker's
//!   in-flight window (mosquitto's `max_inflight_messages`, MQTT 5's receive maximum), and the
//!   broker queues the rest for the session; QoS 0 messages past [`MQTT_STASH_MAX`] are dropped
//!   and counted.
//! - The worker ([`super::worker`]) takes what arrived while it committed the last batch (bounded
//!   by count and bytes), runs the ingest plugin for every MQTT topic of it in one blocking task,
//!   partitions the records, appends them (and the dead letters) in one transaction, and only then
//!   acknowledges the messages. A crash before the acknowledgement means redelivery, never loss;
//!   duplicates are bounded by the in-flight window, and none are stored when messages carry ids
//!   (see [`super::dedup`]).
//!
//! MQTT 3.1.1 and 5 are both spoken, through [`super::client`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::client::{self, Client, Connection, Happened, Received};
use super::dedup::DedupWindow;
use super::session;
use super::spec::{BridgeSpec, Template};
use super::stats::BridgeStats;
use super::worker::{Dedup, Handoff, Plugins, Worker};
use crate::limits::{
    MQTT_DISCONNECT_WAIT, MQTT_FINISH_RETRY_PAUSE, MQTT_INFLIGHT_MAX, MQTT_RECONNECT_BACKOFF_MAX,
    MQTT_RECONNECT_BACKOFF_MIN, MQTT_STASH_MAX, MQTT_WORKER_FINISH_WAIT,
};
use crate::plugins::{LoadError, PluginCatalog, PluginLimits, Slot, load_instance};
use crate::storage::Store;

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
        // A stored spec was checked when it was stored; one from an older build may not pass.
        let connected = Template::parse(&self.spec.target).map_err(|e| format!("target: {e}")).and_then(|template| {
            let (host, port, _) = self.spec.address().map_err(|e| e.to_string())?;
            Ok((template, client::connect(&self.spec, host, port, tls)?))
        });
        let (template, (client, connection)) = match connected {
            Ok(parts) => parts,
            Err(e) => {
                tracing::error!(bridge = %name, error = %e, "bridge cannot start");
                self.stats.set_error(Some(e));
                return;
            }
        };
        let (handoff, inbox) = mpsc::channel(MQTT_INFLIGHT_MAX);
        let session = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            session: Arc::clone(&session),
            template,
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
                Ok::<_, LoadError>(Plugins {
                    catalog,
                    ingest_stage: ingest,
                    ingest: Slot::new(instance),
                    ingest_label,
                    partitioner: partitioner.map_or_else(Slot::default, Slot::new),
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
        let mut state = PollState {
            filters: session::sorted(self.spec.subscriptions.iter().map(|s| (s.filter.clone(), s.qos)).collect()),
            // The session is the broker's: noted per broker and client id.
            session_key: format!("{} {}", self.spec.url, self.spec.client_id()),
            backoff: MQTT_RECONNECT_BACKOFF_MIN,
            stash: VecDeque::new(),
            awaiting_grant: false,
        };
        loop {
            if state.hand_off_stash(&handoff).is_err() {
                return;
            }
            let event = tokio::select! {
                event = connection.poll() => event,
                room = handoff.reserve(), if !state.stash.is_empty() => {
                    if let (Ok(room), Some(publish)) = (room, state.stash.pop_front()) {
                        room.send(publish);
                    }
                    continue;
                }
                _ = self.stopping.wait_for(|stop| *stop) => break,
            };
            match event {
                Ok(Happened::Connected { session_present }) => {
                    self.on_connected(&mut state, session_present, client, session);
                }
                Ok(Happened::Message(publish)) => self.on_message(&mut state, publish, session),
                Ok(Happened::Subscribed { refused }) => self.on_subscribed(&mut state, &refused),
                Ok(_) => {}
                Err(e) => {
                    let e = e.explain(&self.spec);
                    self.stats.connected.store(false, Ordering::Relaxed);
                    self.stats.set_error(Some(e.clone()));
                    tracing::warn!(bridge = %self.spec.name, error = %e, retry_ms = state.backoff.as_millis() as u64, "MQTT connection failed; reconnecting");
                    if self.sleep_or_stop(state.backoff).await {
                        break;
                    }
                    state.backoff = (state.backoff * 2).min(MQTT_RECONNECT_BACKOFF_MAX);
                }
            }
        }
        drop(handoff);
        finish(connection, client, worker).await;
    }

    fn on_connected(&self, state: &mut PollState, session_present: bool, client: &Client, session: &AtomicU64) {
        let name = &self.spec.name;
        state.backoff = MQTT_RECONNECT_BACKOFF_MIN;
        self.stats.set_error(None);
        BridgeStats::count(&self.stats.connects, 1);
        tracing::info!(bridge = %name, session_present, "connected to the MQTT broker");
        // A new connection: what arrived on the old one is not acknowledged (see `Handoff`); a
        // kept session sends it again, and its copies are.
        session.fetch_add(1, Ordering::AcqRel);
        // The broker kept no session (first connect, or it lost its state), or one subscribed to
        // other filters (the bridge was added again with the same client id): subscribe (rumqttc
        // does not), or nothing would arrive.
        let granted = session::granted(&self.store, &state.session_key);
        let (subscribe, unsubscribe) = session::plan(session_present, &state.filters, granted.as_ref());
        // Connected means receiving: where the session must subscribe first, not before the
        // SubAck (a message published before it would not reach the bridge).
        self.stats.connected.store(subscribe.is_empty(), Ordering::Relaxed);
        // Unsubscribing first: the broker handles a connection's packets in order, so the SubAck
        // that follows also says the old filters are gone.
        let mut unsubscribed = true;
        for filter in unsubscribe {
            tracing::info!(bridge = %name, %filter, "unsubscribing from a filter the bridge no longer has");
            if let Err(e) = client.try_unsubscribe(&filter) {
                tracing::warn!(bridge = %name, %filter, error = %e, "cannot unsubscribe");
                unsubscribed = false;
            }
        }
        if subscribe.is_empty() {
            return;
        }
        match client.try_subscribe(&subscribe) {
            Ok(()) => state.awaiting_grant = unsubscribed,
            Err(e) => {
                tracing::error!(bridge = %name, error = %e, "cannot subscribe");
                self.stats.connected.store(true, Ordering::Relaxed);
                self.stats.set_error(Some(format!("cannot subscribe: {e}")));
            }
        }
    }

    fn on_message(&self, state: &mut PollState, publish: Received, session: &AtomicU64) {
        if publish.qos() == 0 && state.stash.len() >= MQTT_STASH_MAX {
            // At most once, under overload: dropped, and counted.
            BridgeStats::count(&self.stats.qos0_dropped, 1);
            return;
        }
        if publish.redelivered() {
            BridgeStats::count(&self.stats.messages_redelivered, 1);
        }
        // QoS 1: the MQTT broker sends at most its in-flight window of messages not yet
        // acknowledged, which bounds the stash.
        state.stash.push_back((session.load(Ordering::Acquire), publish));
    }

    fn on_subscribed(&self, state: &mut PollState, refused: &[(usize, String)]) {
        let name = &self.spec.name;
        self.stats.connected.store(true, Ordering::Relaxed);
        if !refused.is_empty() {
            // Nothing arrives for a refused filter: say so where operators look.
            let filter = |i: usize| state.filters.get(i).map_or("?", |(f, _)| f.as_str()).to_owned();
            let refused: Vec<String> = refused.iter().map(|(i, why)| format!("{:?}: {why}", filter(*i))).collect();
            let error = format!("the MQTT broker refused subscriptions: {}", refused.join(", "));
            tracing::error!(bridge = %name, %error, "subscription refused");
            self.stats.set_error(Some(error));
            return;
        }
        tracing::info!(bridge = %name, "subscribed");
        if std::mem::take(&mut state.awaiting_grant) {
            let (store, key, filters) = (self.store.clone(), state.session_key.clone(), state.filters.clone());
            let name = name.clone();
            tokio::spawn(async move {
                if let Err(error) = session::note_granted(&store, &key, &filters).await {
                    tracing::warn!(bridge = %name, %error, "cannot note the subscriptions granted");
                }
            });
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

/// What the poll loop keeps between events.
struct PollState {
    filters: session::Filters,
    session_key: String,
    backoff: Duration,
    /// Publishes received while the worker's channel is full. The connection is always served
    /// (the worker's acknowledgements must go out, or it would wait on them while this task waits
    /// on it): QoS 1 messages are bounded by the MQTT broker's in-flight window, QoS 0 messages
    /// past `MQTT_STASH_MAX` are dropped (at most once) and counted.
    stash: VecDeque<Handoff>,
    /// A SUBSCRIBE is out: note the filters once the broker grants them.
    awaiting_grant: bool,
}

impl PollState {
    /// Hands the worker what it has room for; `Err` once the worker is gone.
    fn hand_off_stash(&mut self, handoff: &mpsc::Sender<Handoff>) -> Result<(), ()> {
        while let Some(publish) = self.stash.pop_front() {
            match handoff.try_send(publish) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(publish)) => {
                    self.stash.push_front(publish);
                    return Ok(());
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(()),
            }
        }
        Ok(())
    }
}

/// Lets the worker finish its batch, keeping the connection served so its acknowledgements go
/// out (anything received meanwhile is not acknowledged: it comes again), then sends what is
/// queued (the last acknowledgements) and the DISCONNECT.
async fn finish(mut connection: Connection, client: &Client, worker: &mut tokio::task::JoinHandle<()>) {
    let deadline = tokio::time::Instant::now() + MQTT_WORKER_FINISH_WAIT;
    loop {
        tokio::select! {
            _ = &mut *worker => break,
            event = connection.poll() => {
                if event.is_err() {
                    tokio::time::sleep(MQTT_FINISH_RETRY_PAUSE).await;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                worker.abort();
                break;
            }
        }
    }
    client.try_disconnect();
    let deadline = tokio::time::Instant::now() + MQTT_DISCONNECT_WAIT;
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, connection.poll()).await {
        if matches!(event, Happened::DisconnectSent) {
            break;
        }
    }
}
