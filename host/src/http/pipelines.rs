//! `/v1/pipelines`: create, list, describe, pause, resume, upgrade and delete pipelines (see
//! [`crate::pipelines`]).

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, JsonBody};
use super::resources::{Served, routes as resource_routes};
use crate::pipelines::{PipelineKind, PipelineView, Pipelines};
use crate::plugins::StageSpec;

pub fn routes() -> Router<AppState> {
    resource_routes::<PipelineKind>()
        .route("/pipelines/{name}/pause", post(pause))
        .route("/pipelines/{name}/resume", post(resume))
        .route("/pipelines/{name}/upgrade", post(upgrade))
}

impl Served for PipelineKind {
    const PATH: &'static str = "pipelines";

    fn registry(state: &AppState) -> &Pipelines {
        &state.pipelines
    }
}

/// The body of an upgrade: the new plugin chain (versions default to the newest stored).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upgrade {
    pub plugins: Vec<StageSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioner: Option<StageSpec>,
}

async fn pause(State(state): State<AppState>, Path(name): Path<String>) -> Result<axum::Json<PipelineView>, ApiError> {
    Ok(axum::Json(state.pipelines.pause(&name).await?))
}

async fn resume(State(state): State<AppState>, Path(name): Path<String>) -> Result<axum::Json<PipelineView>, ApiError> {
    Ok(axum::Json(state.pipelines.resume(&name).await?))
}

async fn upgrade(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Upgrade>,
) -> Result<axum::Json<PipelineView>, ApiError> {
    Ok(axum::Json(state.pipelines.upgrade(&name, body.plugins, body.partitioner).await?))
}
