//! `/v1/mirrors`: add, list, describe and remove this edge's mirrors; `/v1/replication`: the edges
//! an aggregation node accepts and the state of their copies (see [`crate::replication`]).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, JsonBody};
use super::resources::validate_name;
use crate::replication::cloud::EdgeStatus;
use crate::replication::{MirrorError, MirrorSpec, MirrorView};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/mirrors", get(list).post(add))
        .route("/mirrors/{name}", get(describe).delete(remove))
        .route("/replication", get(replication))
}

impl From<MirrorError> for ApiError {
    fn from(e: MirrorError) -> Self {
        match e {
            MirrorError::Invalid(invalid) => ApiError::invalid_field(invalid.field, invalid.message),
            MirrorError::NotFound(_) => ApiError::not_found(e.to_string()),
            MirrorError::Conflict(message) => ApiError::conflict(message),
            MirrorError::Storage(message) => ApiError::storage(message),
        }
    }
}

async fn list(State(state): State<AppState>) -> axum::Json<Vec<MirrorView>> {
    axum::Json(state.mirrors.list())
}

async fn add(State(state): State<AppState>, JsonBody(spec): JsonBody<MirrorSpec>) -> Result<Response, ApiError> {
    validate_name("name", &spec.name)?;
    let view = state.mirrors.add(spec).await?;
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

async fn describe(State(state): State<AppState>, Path(name): Path<String>) -> Result<axum::Json<MirrorView>, ApiError> {
    state.mirrors.get(&name).map(axum::Json).ok_or_else(|| MirrorError::NotFound(name).into())
}

async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.mirrors.remove(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The aggregation node's side.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplicationView {
    /// Whether this node accepts edges (`[replication]` lists some).
    pub listening: bool,
    pub edges: Vec<EdgeStatus>,
}

async fn replication(State(state): State<AppState>) -> axum::Json<ReplicationView> {
    axum::Json(match &state.cloud {
        Some(cloud) => ReplicationView { listening: true, edges: cloud.status() },
        None => ReplicationView { listening: false, edges: Vec::new() },
    })
}
