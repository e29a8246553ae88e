//! The Kafka wire protocol: a listener that lets unmodified Kafka clients (kcat, librdkafka,
//! kafka-python, rskafka) produce to and fetch from the store.
//!
//! - One task per connection, bounded by `max_connections`. A connection handles one request at
//!   a time, as Kafka brokers do (they mute a channel until its response is sent), so responses
//!   go out in request order and pipelined requests simply wait their turn.
//! - Frames are `i32` length + request; a length over `request_bytes_max` (or negative) closes
//!   that connection with a log line, never the broker.
//! - Messages are encoded and decoded by the `kafka-protocol` crate; record batches pass through
//!   as bytes (validated by `rill-core` on produce, returned as stored on fetch).
//!
//! Which APIs and versions are served: [`versions`].

mod admin;
mod bounds;
mod codes;
mod configs;
mod connection;
mod errors;
mod fetch;
mod frame;
pub mod groups;
mod metadata;
mod produce;
mod schemas;
pub mod versions;

#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::{KafkaSection, parse_host_port};
use crate::listener::{Accepted, accept_within, drain};
use crate::metrics::Metrics;
use crate::storage::Store;

/// What every connection shares: the store and how the broker presents itself.
#[derive(Debug)]
pub struct Broker {
    pub store: Store,
    pub config: KafkaSection,
    /// The host and port Metadata advertises.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Kafka's cluster id, for Metadata v2+ (stable for the life of the data directory would be
    /// better; a process-wide value is enough until the control plane stores one).
    pub cluster_id: String,
    /// Consumer groups' membership.
    pub groups: groups::Coordinator,
    pub metrics: Arc<Metrics>,
}

/// An owned string as the protocol's string type.
pub(crate) fn text(value: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(value.into())
}

/// This broker's node id: a single-node cluster.
pub const NODE_ID: i32 = 0;

/// A bound Kafka listener, not yet accepting.
#[derive(Debug)]
pub struct KafkaListener {
    listener: TcpListener,
    broker: Arc<Broker>,
}

impl KafkaListener {
    /// Binds `config.listen` (port 0: any free port) and works out what to advertise.
    pub async fn bind(config: KafkaSection, store: Store, metrics: Arc<Metrics>) -> std::io::Result<KafkaListener> {
        let listener = TcpListener::bind(config.listen).await?;
        let bound = listener.local_addr()?;
        let (advertised_host, advertised_port) = match &config.advertised {
            Some(text) => parse_host_port(text).map_err(|reason| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("kafka.advertised: {reason}"))
            })?,
            None => (bound.ip().to_string(), bound.port()),
        };
        let cluster_id = format!("rill-{}", store.cluster_id().simple());
        let broker = Arc::new(Broker {
            store,
            config,
            advertised_host,
            advertised_port,
            cluster_id,
            groups: groups::Coordinator::default(),
            metrics,
        });
        Ok(KafkaListener { listener, broker })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What connections share, for the control plane (groups' membership, metrics).
    pub fn broker(&self) -> Arc<Broker> {
        Arc::clone(&self.broker)
    }

    /// Accepts connections until `shutdown` turns true, then waits (bounded) for open connections
    /// to finish the request they are handling.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.broker.config.max_connections));
        let mut connections = JoinSet::new();
        let ticker = tokio::spawn(tick_groups(Arc::clone(&self.broker), shutdown.clone()));
        let refusals = self.broker.metrics.kafka.connections_refused.clone();
        while let Some(Accepted { socket, peer, permit }) =
            accept_within(&self.listener, &slots, &mut shutdown, &mut connections, "kafka", || {
                refusals.inc();
            })
            .await
        {
            let _ = socket.set_nodelay(true);
            let broker = Arc::clone(&self.broker);
            let shutdown = shutdown.clone();
            let open = broker.metrics.kafka.connection_opened();
            connections.spawn(async move {
                connection::serve(socket, peer, broker, shutdown).await;
                drop((permit, open));
            });
        }
        ticker.abort();
        drain(&mut connections, crate::limits::SHUTDOWN_DRAIN_WAIT, "kafka").await;
    }
}

/// Drives consumer groups' session and rebalance deadlines until shutdown.
async fn tick_groups(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(crate::limits::GROUP_TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => broker.groups.tick(std::time::Instant::now()),
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
