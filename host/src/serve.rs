//! `rill serve`: open storage, bind the Kafka listener, run retention, wait for a shutdown signal,
//! then stop accepting, let connections finish their request, and close storage cleanly.
//! The HTTP control plane binds after the Kafka listener, the replication listener (when edges
//! are accepted) after it; mirrors to aggregation nodes start once everything is up.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::devices::DeviceListener;
use crate::health::Listeners;
use crate::http::{AppState, HttpListener};
use crate::kafka::KafkaListener;
use crate::metrics::Metrics;
use crate::mqtt::Bridges;
use crate::pipelines::Pipelines;
use crate::plugins::{PluginCatalog, PluginRuntime};
use crate::replication::{Mirrors, ReplicationListener};
use crate::storage::{Location, OpenError, Store};

/// Compiled plugins are kept here, inside the data directory (see [`PluginCatalog`]).
pub const PLUGIN_CACHE_DIR: &str = "plugin-cache";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open storage in {dir}: {source}")]
    Storage { dir: String, source: OpenError },
    #[error("cannot listen for Kafka clients on {addr}: {source}")]
    KafkaListen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot start the plugin runtime: {0}")]
    Plugins(String),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    HttpListen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot listen for edges (replication) on {addr}: {source}")]
    ReplicationListen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot start the device listener{}: {source}", .addr.map(|a| format!(" on {a}")).unwrap_or_default())]
    Devices { addr: Option<std::net::SocketAddr>, source: std::io::Error },
}

/// Runs the broker until `shutdown` completes. Takes the shutdown signal as an argument so tests
/// can stop it without signals.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let dir = config.data_dir.display().to_string();
    let store = Store::open(Location::Dir(config.data_dir.clone()), config.store_config())
        .map_err(|source| ServeError::Storage { dir: dir.clone(), source })?;
    let topics = store.topics().len();
    tracing::info!(data_dir = %dir, topics, durability = ?config.storage.durability, "storage open");
    match Bound::bind(&config, &store).await {
        Ok(bound) => bound.run(&config, shutdown).await,
        Err(e) => {
            store.shutdown().await;
            return Err(e);
        }
    }
    store.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Every listener bound and every part made; nothing runs yet.
struct Bound {
    store: Store,
    kafka: KafkaListener,
    http: HttpListener,
    replication: Option<ReplicationListener>,
    devices: Option<DeviceListener>,
    pipelines: Pipelines,
    bridges: Bridges,
    mirrors: Mirrors,
    listeners: Arc<Listeners>,
    rates: Arc<crate::http::rates::RateHistory>,
    stop: watch::Sender<bool>,
}

impl Bound {
    async fn bind(config: &Config, store: &Store) -> Result<Bound, ServeError> {
        let metrics = Arc::new(Metrics::new(store));
        let kafka = KafkaListener::bind(config.kafka.clone(), store.clone(), Arc::clone(&metrics))
            .await
            .map_err(|source| ServeError::KafkaListen { addr: config.kafka.listen, source })?;
        let kafka_addr =
            kafka.local_addr().map_err(|source| ServeError::KafkaListen { addr: config.kafka.listen, source })?;
        tracing::info!("kafka listening on {kafka_addr}");
        let (stop, stopping) = watch::channel(false);
        let runtime = PluginRuntime::new().map_err(ServeError::Plugins)?;
        let catalog = PluginCatalog::new(runtime, store.clone(), Some(config.data_dir.join(PLUGIN_CACHE_DIR)));
        let pipelines = Pipelines::for_store(store.clone(), catalog.clone(), stopping);
        metrics.register_collector(pipelines.collector());
        let bridges = Bridges::for_store(store.clone(), catalog.clone());
        let mirrors = Mirrors::for_store(store.clone(), catalog.clone());
        metrics.register_collector(bridges.collector());
        let replication = bind_replication(config, store).await?;
        let devices = bind_devices(config, store, catalog).await?;
        if let Some(listener) = &devices {
            metrics.register_collector(Box::new(crate::devices::metrics::DevicesCollector(listener.devices())));
        }
        let cloud = replication.as_ref().map(ReplicationListener::cloud);
        metrics.register_collector(Box::new(crate::replication::metrics::ReplicationCollector {
            mirrors: mirrors.clone(),
            cloud: cloud.clone(),
        }));
        let listeners = Arc::new(Listeners::default());
        let state = AppState {
            store: store.clone(),
            broker: kafka.broker(),
            metrics,
            config: Arc::new(config.http.clone()),
            listeners: Arc::clone(&listeners),
            rates: Arc::default(),
            started: std::time::Instant::now(),
            pipelines: pipelines.clone(),
            bridges: bridges.clone(),
            mirrors: mirrors.clone(),
            cloud,
            devices: devices.as_ref().map(DeviceListener::devices),
        };
        let rates = Arc::clone(&state.rates);
        let http_addr = config.http.listen;
        let http =
            HttpListener::bind(state).await.map_err(|source| ServeError::HttpListen { addr: http_addr, source })?;
        let bound = http.local_addr().map_err(|source| ServeError::HttpListen { addr: http_addr, source })?;
        tracing::info!("http listening on {bound}");
        let store = store.clone();
        Ok(Bound { store, kafka, http, replication, devices, pipelines, bridges, mirrors, listeners, rates, stop })
    }

    /// Serves until `shutdown`, then stops every part in order: listeners first (no new work),
    /// then what writes (bridges, mirrors, replication, devices, pipelines), the store last.
    async fn run(self, config: &Config, shutdown: impl Future<Output = ()>) {
        let Bound { store, kafka, http, replication, devices, pipelines, bridges, mirrors, listeners, rates, stop } =
            self;
        let stopping = stop.subscribe();
        let replication =
            replication.map(|listener| spawn_listener(&listeners, "replication", listener.run(stopping.clone())));
        let devices = devices.map(|listener| spawn_listener(&listeners, "devices", listener.run(stopping.clone())));
        let kafka = spawn_listener(&listeners, "kafka", kafka.run(stopping.clone()));
        let sampling = tokio::spawn({
            let (store, stopping) = (store.clone(), stopping.clone());
            async move { rates.run(store, stopping).await }
        });
        let http = spawn_listener(&listeners, "http", http.run(stopping));
        // Ready (`/ready`) once the stored resources run again too.
        for (kind, started) in [
            ("pipelines", pipelines.start(&[]).await),
            ("MQTT bridges", bridges.start(&config.mqtt).await),
            ("mirrors", mirrors.start(&config.mirror).await),
        ] {
            match started {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "{kind} started"),
                Err(e) => tracing::error!(error = %e, "{kind} cannot all be started"),
            }
        }
        listeners.set_ready(true);
        let retention = tokio::spawn(retention_loop(
            store.clone(),
            Duration::from_millis(config.storage.retention_check_interval_ms),
        ));
        tracing::info!("rill ready");
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
        let _ = kafka.await;
        let _ = http.await;
        let _ = sampling.await;
        bridges.shutdown().await;
        mirrors.shutdown().await;
        if let Some(replication) = replication {
            let _ = replication.await;
        }
        if let Some(devices) = devices {
            let _ = devices.await;
        }
        pipelines.shutdown().await;
        retention.abort();
        let _ = retention.await;
    }
}

async fn bind_replication(config: &Config, store: &Store) -> Result<Option<ReplicationListener>, ServeError> {
    if config.replication.edges.is_empty() {
        return Ok(None);
    }
    let addr = config.replication.listen;
    let listener = ReplicationListener::bind(store.clone(), config.replication.clone())
        .await
        .map_err(|source| ServeError::ReplicationListen { addr, source })?;
    let bound = listener.local_addr().map_err(|source| ServeError::ReplicationListen { addr, source })?;
    tracing::info!(edges = config.replication.edges.len(), "replication listening on {bound}");
    Ok(Some(listener))
}

async fn bind_devices(
    config: &Config,
    store: &Store,
    catalog: PluginCatalog,
) -> Result<Option<DeviceListener>, ServeError> {
    if !config.devices.enabled() {
        return Ok(None);
    }
    let addr = config.devices.listen;
    let listener = DeviceListener::bind(store.clone(), config.devices.clone(), catalog)
        .await
        .map_err(|source| ServeError::Devices { addr, source })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Devices { addr, source })?;
    if let Some(bound) = bound {
        tracing::info!(topic = %config.devices.topic, "devices listening on {bound}");
    }
    Ok(Some(listener))
}

async fn retention_loop(store: Store, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match store.enforce_retention(crate::clock::now_ms()).await {
            Ok(report) if report.groups_deleted > 0 => {
                tracing::info!(groups = report.groups_deleted, bytes = report.bytes_deleted, "retention pass");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention pass failed; will retry"),
        }
    }
}

/// Starts listening for SIGINT and SIGTERM now; the returned future completes on the first.
/// Call it before [`serve`]: a signal that arrived between "ready" and a lazily installed handler
/// would kill the process with the default action instead of stopping it cleanly.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Starts listening for Ctrl-C now; the returned future completes on it.
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Runs a listener's task, shown serving in `/health` while it runs.
fn spawn_listener<F>(listeners: &Arc<Listeners>, name: &'static str, run: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let serving = listeners.serving(name);
    tokio::spawn(async move {
        let _serving = serving;
        run.await
    })
}
