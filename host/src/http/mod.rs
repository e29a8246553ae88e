//! The HTTP control plane: health, readiness, Prometheus metrics, the versioned JSON admin API
//! (`/v1/...`, documented in `docs/openapi.json`) and the status page.
//!
//! axum routes the requests; hyper serves each connection (HTTP/1.1) from our own accept loop,
//! which bounds connections as the Kafka listener does and drains requests in progress on
//! shutdown.

pub mod devices;
pub mod error;
mod groups;
pub mod mirrors;
pub mod mqtt;
pub mod pipelines;
pub mod plugins;
pub mod rates;
pub mod resources;
pub mod status;
#[cfg(test)]
pub(crate) mod tests;
mod topics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::HttpSection;
use crate::kafka::Broker;
use crate::limits::{HTTP_HEADER_READ_TIMEOUT, HTTP_SHUTDOWN_WAIT};
use crate::listener::{Accepted, accept_within, drain};
use crate::metrics::Metrics;
use crate::storage::{Store, WriterState};
pub use error::ApiError;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    /// The Kafka listener's shared state (consumer groups' membership).
    pub broker: Arc<Broker>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<HttpSection>,
    /// The listeners' state, and whether all are bound (readiness).
    pub listeners: Arc<crate::health::Listeners>,
    /// Topics' ingest rates over the last minutes (sampled by [`rates::RateHistory::run`]).
    pub rates: Arc<rates::RateHistory>,
    pub started: std::time::Instant,
    /// The broker's pipelines (and through them, its plugin catalog).
    pub pipelines: crate::pipelines::Pipelines,
    pub bridges: crate::mqtt::Bridges,
    /// This node's mirrors to aggregation nodes.
    pub mirrors: crate::replication::Mirrors,
    /// The edges this node accepts, when it is an aggregation node.
    pub cloud: Option<Arc<crate::replication::Cloud>>,
    /// The sensor nodes sending uplink frames, when the device listener runs.
    pub devices: Option<Arc<crate::devices::Devices>>,
}

/// The routes of the control plane.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .merge(topics::routes())
        .merge(groups::routes())
        .merge(plugins::routes())
        .merge(pipelines::routes())
        .merge(resources::routes::<crate::mqtt::BridgeKind>())
        .merge(mirrors::routes())
        .merge(devices::routes());
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(status::routes())
        .nest("/v1", v1)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Every route the router serves, as `METHOD /path` with axum's `{param}` syntax: the OpenAPI
/// test checks each is documented.
pub const ROUTES: &[&str] = &[
    "GET /",
    "GET /v1/status",
    "GET /health",
    "GET /ready",
    "GET /metrics",
    "GET /v1/topics",
    "POST /v1/topics",
    "GET /v1/topics/{name}",
    "PATCH /v1/topics/{name}",
    "DELETE /v1/topics/{name}",
    "GET /v1/groups",
    "GET /v1/groups/{group}",
    "DELETE /v1/groups/{group}",
    "POST /v1/groups/{group}/reset-offsets",
    "GET /v1/plugins",
    "POST /v1/plugins",
    "GET /v1/plugins/{name}/{version}",
    "POST /v1/plugins/{name}/{version}",
    "DELETE /v1/plugins/{name}/{version}",
    "GET /v1/plugins/{name}/{version}/component",
    "GET /v1/pipelines",
    "POST /v1/pipelines",
    "GET /v1/pipelines/{name}",
    "DELETE /v1/pipelines/{name}",
    "POST /v1/pipelines/{name}/pause",
    "POST /v1/pipelines/{name}/resume",
    "POST /v1/pipelines/{name}/upgrade",
    "GET /v1/mqtt",
    "POST /v1/mqtt",
    "GET /v1/mqtt/{name}",
    "DELETE /v1/mqtt/{name}",
    "GET /v1/mirrors",
    "POST /v1/mirrors",
    "GET /v1/mirrors/{name}",
    "DELETE /v1/mirrors/{name}",
    "GET /v1/replication",
    "GET /v1/devices",
    "GET /v1/devices/listener",
];

#[derive(Serialize)]
struct Health {
    /// `ok`, or `failing` (503): the store takes no writes, or a listener has stopped.
    status: &'static str,
    writer: WriterState,
    /// Each listener: `serving` or `stopped`.
    listeners: std::collections::BTreeMap<&'static str, &'static str>,
}

/// Liveness: the process serves HTTP, its storage writer takes writes and its listeners serve.
async fn health(State(state): State<AppState>) -> Response {
    let writer = state.store.writer_state();
    let listeners: std::collections::BTreeMap<_, _> = state
        .listeners
        .states()
        .iter()
        .map(|(name, serving)| (*name, if *serving { "serving" } else { "stopped" }))
        .collect();
    // Refusing appends for lack of space is the broker working as designed (a restart would not
    // help): healthy, but not ready (`/ready`).
    let writer_ok = matches!(writer, WriterState::Accepting | WriterState::RefusingAppends(_));
    let ok = writer_ok && listeners.values().all(|state| *state == "serving");
    let body = Health { status: if ok { "ok" } else { "failing" }, writer, listeners };
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    storage: &'static str,
    listeners: &'static str,
    /// `accepted`, or `refused` with why (free space under the reserve: `reason`, the bytes free
    /// and the reserve).
    appends: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    space: Option<crate::storage::NoSpace>,
}

/// Readiness: storage open, listeners bound, appends accepted (503 otherwise, with why).
async fn ready(State(state): State<AppState>) -> Response {
    let storage_open = state.store.is_open();
    let listeners_up = state.listeners.ready();
    let refusal = state.store.appends_refused();
    let body = Readiness {
        ready: storage_open && listeners_up && refusal.is_none(),
        storage: if storage_open { "open" } else { "unavailable" },
        listeners: if listeners_up { "bound" } else { "starting" },
        appends: if refusal.is_some() { "refused" } else { "accepted" },
        reason: refusal.map(|refusal| refusal.to_string()),
        space: refusal,
    };
    let status = if body.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.render() {
        Ok(text) => {
            let content_type = HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
            ([(header::CONTENT_TYPE, content_type)], text).into_response()
        }
        Err(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "metrics_failed", "cannot encode the metrics")
            .into_response(),
    }
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// With an admin token configured, every call that changes something needs it as a bearer token.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = state.config.admin_token.as_deref() else {
        return next.run(request).await;
    };
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "the admin token does not match").into_response(),
        None => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this call changes the broker: send the admin token as `Authorization: Bearer <token>`",
            )
            .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Compares without an early exit, so response timing does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A bound HTTP listener, not yet accepting.
#[derive(Debug)]
pub struct HttpListener {
    listener: TcpListener,
    state: AppState,
}

impl HttpListener {
    pub async fn bind(state: AppState) -> std::io::Result<HttpListener> {
        let listener = TcpListener::bind(state.config.listen).await?;
        Ok(HttpListener { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections until `shutdown` turns true, then lets requests in progress finish
    /// (bounded by [`HTTP_SHUTDOWN_WAIT`]).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let max_connections = self.state.config.max_connections;
        let slots = Arc::new(Semaphore::new(max_connections));
        let service = TowerToHyperService::new(router(self.state.clone()));
        let mut connections = JoinSet::new();
        while let Some(Accepted { socket, peer, permit }) =
            accept_within(&self.listener, &slots, &mut shutdown, &mut connections, "http", || ()).await
        {
            let service = service.clone();
            let mut stopping = shutdown.clone();
            connections.spawn(async move {
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HTTP_HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(socket), service);
                tokio::pin!(connection);
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "http connection ended with an error");
                        }
                    }
                    () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                    }
                }
                drop(permit);
            });
        }
        drain(&mut connections, HTTP_SHUTDOWN_WAIT, "http").await;
    }
}
