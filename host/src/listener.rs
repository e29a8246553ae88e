//! What the Kafka and HTTP listeners share: accepting under a connection limit, and draining the
//! connection tasks at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

/// How long to wait after a failed accept (EMFILE and friends) instead of spinning on it.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A connection accepted within the limit, holding its slot until dropped.
#[derive(Debug)]
pub struct Accepted {
    pub socket: TcpStream,
    pub peer: SocketAddr,
    pub permit: OwnedSemaphorePermit,
}

/// The next connection within `slots`; `None` once `shutdown` turns true. Connections over the
/// limit are closed at once with a log line and reported through `refused`. Finished tasks in
/// `connections` are reaped on the way, so the set does not grow with churn.
pub async fn accept_within<T: 'static>(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &mut watch::Receiver<bool>,
    connections: &mut JoinSet<T>,
    what: &'static str,
    mut refused: impl FnMut(),
) -> Option<Accepted> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return None,
        };
        while connections.try_join_next().is_some() {}
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        match Arc::clone(slots).try_acquire_owned() {
            Ok(permit) => return Some(Accepted { socket, peer, permit }),
            Err(_) => {
                refused();
                tracing::warn!(listener = what, %peer, "connection refused: too many connections");
            }
        }
    }
}

/// Waits up to `wait` for the connection tasks to finish, then aborts the rest.
pub async fn drain<T: 'static>(connections: &mut JoinSet<T>, wait: Duration, what: &'static str) {
    while connections.try_join_next().is_some() {}
    if connections.is_empty() {
        return;
    }
    tracing::info!(listener = what, connections = connections.len(), "closing connections");
    let drained = tokio::time::timeout(wait, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(listener = what, "connections still busy at shutdown; aborting them");
        connections.abort_all();
    }
}
